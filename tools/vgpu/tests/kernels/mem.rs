//! End to end: atomics under contention, local memory, `__constant__`/`__device__`
//! variables, dynamic + static shared memory, vector accesses, cp.async pipelines, and the
//! profile counters of kernels whose exact counts are known.

use crate::common::*;

const SRC: &str = include_str!("../cu/mem.cu");

fn m() -> std::sync::Arc<cuda::sim::Module> {
    module("mem", SRC, &[])
}

fn inputs(n: usize, seed: u64) -> Vec<i32> {
    let mut r = Rng::new(seed);
    (0..n).map(|_| (r.u32() >> 1) as i32 - (1 << 30)).collect()
}

#[test]
fn global_atomics_with_many_blocks_contending() {
    let (grid, bs) = (64u32, 128u32);
    let n = (grid * bs) as usize;
    let v = inputs(n, 21);
    let d = Dev::new();
    let pv = d.upload(&v);
    let ci = d.upload(&[1000i32]);
    let cu64 = d.upload(&[5u64]);
    let cf = d.upload(&[0.0f32]);
    let cmin = d.upload(&[5i32]);
    let cmax = d.upload(&[-5i32]);
    let cinc = d.upload(&[0u32]);
    let cexch = d.upload(&[-1i32]);
    let old = d.alloc::<i32>(n);
    let ccas = d.upload(&[7i32]);
    let args = [pv, ci, cu64, cf, cmin, cmax, cinc, cexch, old, ccas].map(Arg::Ptr);
    let mut args = args.to_vec();
    args.push(Arg::I32(n as i32));
    d.launch(&m(), "atomics_global", grid, bs, 0, &args);
    let sum = v.iter().fold(1000i32, |a, &x| a.wrapping_add(x));
    assert_eq!(d.download::<i32>(ci, 1)[0], sum, "atomicAdd int");
    let s64 = v.iter().fold(5u64, |a, &x| {
        a.wrapping_add((x as u32 as u64) * 3 + (1 << 33))
    });
    assert_eq!(d.download::<u64>(cu64, 1)[0], s64, "atomicAdd u64");
    // multiples of 1/8 with a sum below 2^21: every partial sum is exact in f32, so the
    // result does not depend on the order of the additions.
    let sf: f64 = v.iter().map(|&x| (x & 255) as f64 * 0.125).sum();
    assert_eq!(d.download::<f32>(cf, 1)[0] as f64, sf, "atomicAdd float");
    assert_eq!(
        d.download::<i32>(cmin, 1)[0],
        *v.iter().min().unwrap().min(&5)
    );
    assert_eq!(
        d.download::<i32>(cmax, 1)[0],
        *v.iter().max().unwrap().max(&-5)
    );
    // atomicInc(p, 1000): old >= 1000 ? 0 : old + 1, n times from 0
    assert_eq!(
        d.download::<u32>(cinc, 1)[0],
        (n % 1001) as u32,
        "atomicInc wraps"
    );
    // atomicExch: the old values and the final value are a permutation of {-1, 0..n}
    let mut seen = d.download::<i32>(old, n);
    seen.push(d.download::<i32>(cexch, 1)[0]);
    seen.sort_unstable();
    assert_eq!(seen, (-1..n as i32).collect::<Vec<_>>(), "atomicExch");
    assert_eq!(
        d.download::<i32>(ccas, 1)[0],
        7 + 3 * n as i32,
        "atomicCAS loop"
    );
}

#[test]
fn shared_atomics_per_block() {
    let (grid, bs) = (16u32, 256u32);
    let n = (grid * bs) as usize;
    let v = inputs(n, 22);
    let d = Dev::new();
    let pv = d.upload(&v);
    let out = d.alloc::<i32>(grid as usize * 6);
    d.launch(
        &m(),
        "atomics_shared",
        grid,
        bs,
        0,
        &[Arg::Ptr(pv), Arg::Ptr(out)],
    );
    let g = d.download::<i32>(out, grid as usize * 6);
    for b in 0..grid as usize {
        let blk = &v[b * 256..b * 256 + 256];
        let want = [
            blk.iter().fold(0i32, |a, &x| a.wrapping_add(x)),
            *blk.iter().min().unwrap(),
            *blk.iter().max().unwrap(),
            256 % 51, // atomicInc with limit 50, 256 times
            128.0f32.to_bits() as i32,
            blk.iter().fold(0, |a, &x| a ^ (x & 0xffff)),
        ];
        assert_eq!(&g[b * 6..b * 6 + 6], &want, "block {b}");
    }
}

#[test]
fn local_memory_array() {
    let n = 256usize;
    let mut r = Rng::new(23);
    let idx: Vec<i32> = (0..n).map(|_| r.range(1 << 16) as i32).collect();
    let d = Dev::new();
    let pi = d.upload(&idx);
    let out = d.alloc::<i32>(n);
    let module = m();
    assert!(
        Dev::kernel(&module, "local_array").local_bytes() >= 192,
        "the array must live in local memory"
    );
    d.launch(
        &module,
        "local_array",
        4,
        64,
        0,
        &[Arg::Ptr(pi), Arg::Ptr(out)],
    );
    let g = d.download::<i32>(out, n);
    for t in 0..n {
        let mut a: Vec<i32> = (0..48)
            .map(|i| (t as i32).wrapping_mul(i) ^ (i << 4))
            .collect();
        let (j, k) = ((idx[t] % 48) as usize, ((idx[t] >> 8) % 48) as usize);
        a[j] = a[j].wrapping_add(a[k].wrapping_mul(3));
        assert_eq!(
            g[t],
            a[j].wrapping_sub(a[(j + 1) % 48]).wrapping_add(a[k]),
            "thread {t}"
        );
    }
}

#[test]
fn constant_and_device_variables_with_initialisers() {
    let ctab = [
        0.5f32, 1.5, -2.0, 3.25, 4.0, -5.5, 6.0, 7.75, 8.0, -9.0, 10.5, 11.0, 12.25, -13.0, 14.0,
        15.5,
    ];
    let gtab = [3i32, 1, 4, 1, 5, 9, 2, 6];
    let n = 200usize;
    let idx: Vec<i32> = (0..n as i32).map(|i| i * 37 + 5).collect();
    let d = Dev::new();
    let pi = d.upload(&idx);
    let out = d.alloc::<f32>(n);
    let module = m();
    let names: Vec<&str> = module.globals().iter().map(|g| g.0).collect();
    assert!(
        names.contains(&"ctab") && names.contains(&"gtab"),
        "module globals: {names:?}"
    );
    d.launch(
        &module,
        "tables",
        4,
        64,
        0,
        &[Arg::Ptr(pi), Arg::Ptr(out), Arg::I32(n as i32)],
    );
    let g = d.download::<f32>(out, n);
    for t in 0..n {
        let i = idx[t];
        assert_eq!(
            g[t],
            ctab[(i & 15) as usize] * gtab[((i >> 4) & 7) as usize] as f32,
            "thread {t}"
        );
    }
}

fn dyn_static_case(n: usize, max_dynamic: Option<u32>) {
    let mut r = Rng::new(24);
    let x: Vec<f32> = (0..n).map(|_| r.f32(-8.0, 8.0)).collect();
    let d = Dev::new();
    let px = d.upload(&x);
    let out = d.alloc::<f32>(256);
    d.try_launch_cfg(
        &m(),
        "dyn_static",
        1,
        256,
        (n * 4) as u32,
        max_dynamic,
        &[Arg::Ptr(px), Arg::Ptr(out), Arg::I32(n as i32)],
    )
    .unwrap_or_else(|f| panic!("dyn_static with {} bytes: {f}", n * 4));
    let g = d.download::<f32>(out, 256);
    for tid in 0..256 {
        let mut s = 0.0f32;
        let mut i = tid;
        while i < n {
            s += x[n - 1 - i] * 2.0 + (i & 31) as f32; // same order as the kernel: exact
            i += 256;
        }
        assert_eq!(g[tid], s, "thread {tid} with n={n}");
    }
}

#[test]
fn dynamic_and_static_shared_memory() {
    dyn_static_case(3000, None);
    // 60 KB of dynamic shared memory with the opt-in limit (227 KB - static)
    let k = Dev::kernel(&m(), "dyn_static");
    dyn_static_case(15000, Some(227 * 1024 - k.static_shared_bytes()));
}

#[test]
fn vector_loads_and_stores() {
    let n = 100usize;
    let mut r = Rng::new(25);
    let a: Vec<f32> = (0..4 * n).map(|_| r.f32(-10.0, 10.0)).collect();
    let b: Vec<i32> = (0..2 * n).map(|_| r.u32() as i32 >> 2).collect();
    let c: Vec<u32> = (0..4 * n).map(|_| r.u32()).collect();
    let d = Dev::new();
    let (pa, pb, pc) = (d.upload(&a), d.upload(&b), d.upload(&c));
    let (oa, ob, oc) = (
        d.alloc::<f32>(4 * n),
        d.alloc::<i32>(2 * n),
        d.alloc::<u32>(4 * n),
    );
    let ptx = compile_with("mem", SRC, &[]);
    assert!(
        ptx.contains("ld.global.v4.f32")
            && ptx.contains("ld.global.v2.u32")
            && ptx.contains("st.global.v4.u32")
    );
    d.launch(
        &m(),
        "vectors",
        2,
        64,
        0,
        &[
            Arg::Ptr(pa),
            Arg::Ptr(pb),
            Arg::Ptr(pc),
            Arg::Ptr(oa),
            Arg::Ptr(ob),
            Arg::Ptr(oc),
            Arg::I32(n as i32),
        ],
    );
    let (ga, gb, gc) = (
        d.download::<f32>(oa, 4 * n),
        d.download::<i32>(ob, 2 * n),
        d.download::<u32>(oc, 4 * n),
    );
    for t in 0..n {
        let (x, y, z) = (
            &a[4 * t..4 * t + 4],
            &b[2 * t..2 * t + 2],
            &c[4 * t..4 * t + 4],
        );
        assert_eq!(
            &ga[4 * t..4 * t + 4],
            &[x[3], x[2] * 2.0, x[1], x[0] + 1.0],
            "float4 {t}"
        );
        assert_eq!(
            &gb[2 * t..2 * t + 2],
            &[y[1], y[0].wrapping_sub(y[1])],
            "int2 {t}"
        );
        assert_eq!(
            &gc[4 * t..4 * t + 4],
            &[z[1], z[2], z[3] ^ z[0], z[0]],
            "uint4 {t}"
        );
    }
}

#[test]
fn cp_async_double_buffered_with_zero_fill() {
    let ntiles = 5usize;
    let mut r = Rng::new(26);
    let x: Vec<i32> = (0..ntiles * 128 * 4)
        .map(|_| (r.u32() | 1) as i32)
        .collect(); // never 0
    let d = Dev::new();
    let px = d.upload(&x);
    let out = d.alloc::<i32>(ntiles * 128 * 4);
    d.launch(
        &m(),
        "cp_async_pipeline",
        1,
        128,
        0,
        &[Arg::Ptr(px), Arg::Ptr(out), Arg::I32(ntiles as i32)],
    );
    let g = d.download::<i32>(out, ntiles * 128 * 4);
    for k in 0..ntiles {
        for tid in 0..128 {
            let src = (tid + 1) & 127;
            // the thread that copied element `src` asked for 16, 8 or 0 source bytes; the rest
            // of its 16 is zero-filled
            let words = match src % 4 {
                3 => 0,
                2 => 2,
                _ => 4,
            };
            let e = &x[(k * 128 + src) * 4..(k * 128 + src) * 4 + 4];
            let mut want: Vec<i32> = (0..4).map(|c| if c < words { e[c] } else { 0 }).collect();
            want[0] = want[0].wrapping_add(k as i32);
            let o = (k * 128 + tid) * 4;
            assert_eq!(&g[o..o + 4], &want[..], "tile {k} thread {tid}");
        }
    }
}

#[test]
fn cp_async_4_and_8_byte_copies() {
    let mut r = Rng::new(27);
    let x: Vec<i32> = (0..192).map(|_| r.u32() as i32 >> 3).collect();
    let d = Dev::new();
    let px = d.upload(&x);
    let out = d.alloc::<i32>(64);
    d.launch(
        &m(),
        "cp_async_small",
        1,
        64,
        0,
        &[Arg::Ptr(px), Arg::Ptr(out)],
    );
    let g = d.download::<i32>(out, 64);
    for t in 0..64 {
        let s = 63 - t;
        let (lo, hi) = (x[64 + 2 * s], x[64 + 2 * s + 1]);
        assert_eq!(
            g[t],
            x[s].wrapping_add(hi.wrapping_mul(2)).wrapping_add(lo),
            "thread {t}"
        );
    }
}

#[test]
fn profile_counts_global_bytes_of_a_copy() {
    let n = 1000usize;
    let x: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 + 1.0).collect();
    let d = Dev::new();
    let px = d.upload(&x);
    let out = d.alloc::<f32>(n);
    let p = d.launch(
        &m(),
        "copy",
        4,
        256,
        0,
        &[Arg::Ptr(px), Arg::Ptr(out), Arg::I32(n as i32)],
    );
    assert_eq!(d.download::<f32>(out, n), x);
    assert_eq!(p.global_bytes_read, 4 * n as u64, "{p:?}");
    assert_eq!(p.global_bytes_written, 4 * n as u64, "{p:?}");
    assert_eq!(p.mma, 0);
    assert_eq!(p.shared_accesses, 0);
    assert!(p.warp_instructions.iter().map(|c| c.1).sum::<u64>() > 0);
}

#[test]
fn profile_counts_bank_conflicts() {
    // (stride in words, extra wavefronts per warp access): stride 32 puts all 32 lanes on
    // bank 0 (31 extra), stride 2 pairs lanes l and l+16 (1 extra), strides 1 and 33 are
    // conflict free. The kernel makes one warp store and one warp load.
    for (stride, per_access) in [(32, 31u64), (2, 1), (1, 0), (33, 0)] {
        let d = Dev::new();
        let out = d.alloc::<f32>(32);
        let p = d.launch(&m(), "bank", 1, 32, 0, &[Arg::Ptr(out), Arg::I32(stride)]);
        let g = d.download::<f32>(out, 32);
        assert_eq!(
            g,
            (0..32).map(|l| ((l + 1) % 32) as f32).collect::<Vec<_>>()
        );
        assert_eq!(p.shared_accesses, 2, "stride {stride}: {p:?}");
        assert_eq!(p.bank_conflicts, 2 * per_access, "stride {stride}: {p:?}");
    }
}

#[test]
fn more_atomic_operations_and_types() {
    let (grid, bs) = (32u32, 128u32);
    let n = (grid * bs) as usize;
    let v = inputs(n, 28);
    let d = Dev::new();
    let pv = d.upload(&v);
    let cd = d.upload(&[1.5f64]);
    let csub = d.upload(&[77i32]);
    let cand = d.upload(&[-1i32]);
    let cor = d.upload(&[0x100i32]);
    let cxor = d.upload(&[0x5a5a_5a5ai32]);
    let cdec = d.upload(&[0u32]);
    let cmax64 = d.upload(&[3u64]);
    let ccas64 = d.upload(&[0u64]);
    let cexf = d.upload(&[-1.0f32]);
    let old = d.alloc::<f32>(n);
    let mut args: Vec<Arg> = [
        pv, cd, csub, cand, cor, cxor, cdec, cmax64, ccas64, cexf, old,
    ]
    .into_iter()
    .map(Arg::Ptr)
    .collect();
    args.push(Arg::I32(n as i32));
    d.launch(&m(), "atomics_more", grid, bs, 0, &args);
    // quarter-integers with a small sum: exact in any order
    let sd: f64 = 1.5 + v.iter().map(|&x| (x & 1023) as f64 * 0.25).sum::<f64>();
    assert_eq!(d.download::<f64>(cd, 1)[0], sd, "atomicAdd double");
    assert_eq!(
        d.download::<i32>(csub, 1)[0],
        v.iter().fold(77i32, |a, &x| a.wrapping_sub(x)),
        "atomicSub"
    );
    let and = (0..n).fold(-1i32, |a, t| a & (v[t] | 1 << (t % 31)));
    let or = (0..n).fold(0x100i32, |a, t| a | (v[t] & (7 << (t % 29))));
    let xor = v.iter().fold(0x5a5a_5a5ai32, |a, &x| a ^ x);
    assert_eq!(d.download::<i32>(cand, 1)[0], and, "atomicAnd");
    assert_eq!(d.download::<i32>(cor, 1)[0], or, "atomicOr");
    assert_eq!(d.download::<i32>(cxor, 1)[0], xor, "atomicXor");
    // atomicDec(p, 100): (old == 0 || old > 100) ? 100 : old - 1, n times from 0
    assert_eq!(
        d.download::<u32>(cdec, 1)[0],
        100 - ((n as u32 - 1) % 101),
        "atomicDec"
    );
    let max64 = (0..n)
        .map(|t| (v[t] as u32 as u64) << (t % 32))
        .max()
        .unwrap()
        .max(3);
    assert_eq!(d.download::<u64>(cmax64, 1)[0], max64, "atomicMax u64");
    assert_eq!(
        d.download::<u64>(ccas64, 1)[0],
        n as u64 * ((1 << 33) + 1),
        "64-bit atomicCAS loop"
    );
    let mut seen = d.download::<f32>(old, n);
    seen.push(d.download::<f32>(cexf, 1)[0]);
    seen.sort_by(f32::total_cmp);
    assert_eq!(
        seen,
        (-1..n as i32).map(|x| x as f32).collect::<Vec<_>>(),
        "atomicExch float"
    );
}

#[test]
fn generic_pointers_to_shared_global_and_local() {
    let module = m();
    assert!(
        compile_with("mem", SRC, &[]).contains("ld.f32"),
        "the kernel must use generic loads"
    );
    for sel in 0..3 {
        let g0: Vec<f32> = (0..64).map(|i| i as f32 * 0.5 - 3.0).collect();
        let d = Dev::new();
        let pg = d.upload(&g0);
        let out = d.alloc::<f32>(64);
        d.launch(
            &module,
            "generic_ptrs",
            1,
            64,
            0,
            &[Arg::Ptr(pg), Arg::Ptr(out), Arg::I32(sel)],
        );
        let g = d.download::<f32>(out, 64);
        for t in 0..64usize {
            let (mut s, mut gl, mut l) = (t as f32, g0[t], (t * (t & 7)) as f32);
            match sel {
                0 => s = s * 2.0 + 1.0,
                1 => gl = gl * 2.0 + 1.0,
                _ => l = l * 2.0 + 1.0,
            }
            assert_eq!(g[t], s + l + gl, "sel {sel} thread {t}");
        }
        assert_eq!(
            d.download::<f32>(pg, 64)[5],
            if sel == 1 { g0[5] * 2.0 + 1.0 } else { g0[5] }
        );
    }
}

#[test]
fn struct_parameter_by_value() {
    let n = 100usize;
    let x: Vec<f32> = (0..n).map(|i| i as f32 * 0.25 - 7.0).collect();
    let d = Dev::new();
    let (pin, pout) = (d.upload(&x), d.alloc::<f32>(n));
    let k = Dev::kernel(&m(), "struct_param");
    assert_eq!(k.params().len(), 1);
    assert_eq!(
        (k.params()[0].size, k.params()[0].align),
        (48, 8),
        "{:?}",
        k.params()
    );
    // struct Params { in @0, out @8, n @16, scale @20, bias @24, off @32, tag @40 } (48 B)
    let mut p = vec![0xEEu8; 48];
    p[0..8].copy_from_slice(&pin.to_le_bytes());
    p[8..16].copy_from_slice(&pout.to_le_bytes());
    p[16..20].copy_from_slice(&(n as i32).to_le_bytes());
    p[20..24].copy_from_slice(&1.5f32.to_le_bytes());
    p[24..32].copy_from_slice(&0.75f64.to_le_bytes());
    p[32..36].copy_from_slice(&10i32.to_le_bytes());
    p[36..40].copy_from_slice(&4i32.to_le_bytes());
    p[40] = 3;
    d.launch(&m(), "struct_param", 1, 128, 0, &[Arg::Bytes(p)]);
    let g = d.download::<f32>(pout, n);
    for t in 0..n {
        assert_eq!(g[t], x[t] * 1.5 + 0.75 + 6.0 + 3.0, "thread {t}");
    }
}

#[test]
fn dynamic_shared_is_aligned_after_odd_static_shared() {
    let n = 64usize;
    let x: Vec<f32> = (0..4 * n).map(|i| i as f32 + 0.5).collect();
    let d = Dev::new();
    let (pin, pout) = (d.upload(&x), d.alloc::<f32>(4 * n));
    d.launch(
        &m(),
        "dyn_align",
        1,
        n as u32,
        (16 * n) as u32,
        &[Arg::Ptr(pin), Arg::Ptr(pout)],
    );
    let g = d.download::<f32>(pout, 4 * n);
    for t in 0..n {
        let s = n - 1 - t;
        let want = [
            x[4 * s] + (t % 5 + 1) as f32,
            x[4 * s + 1],
            x[4 * s + 2],
            x[4 * s + 3],
        ];
        assert_eq!(&g[4 * t..4 * t + 4], &want, "thread {t}");
    }
}

#[test]
fn sub_word_loads_extend_and_stores_truncate() {
    let n = 64usize;
    let mut r = Rng::new(29);
    let a: Vec<i8> = (0..n)
        .map(|i| if i == 0 { -128 } else { r.u32() as i8 })
        .collect();
    let b: Vec<i16> = (0..n)
        .map(|i| if i == 0 { -32768 } else { r.u32() as i16 })
        .collect();
    let c: Vec<u8> = (0..n).map(|_| r.u32() as u8 | 0x80).collect();
    let e: Vec<u16> = (0..n).map(|_| r.u32() as u16 | 0x8000).collect();
    let d = Dev::new();
    let p = [d.upload(&a), d.upload(&b), d.upload(&c), d.upload(&e)];
    let (o, o64, o8, o16) = (
        d.alloc::<i32>(4 * n),
        d.alloc::<i64>(2 * n),
        d.alloc::<i8>(n),
        d.alloc::<i16>(n),
    );
    let args: Vec<Arg> = p
        .iter()
        .chain(&[o, o64, o8, o16])
        .map(|&x| Arg::Ptr(x))
        .collect();
    d.launch(&m(), "subword", 1, n as u32, 0, &args);
    let (g, g64) = (d.download::<i32>(o, 4 * n), d.download::<i64>(o64, 2 * n));
    let (g8, g16) = (d.download::<i8>(o8, n), d.download::<i16>(o16, n));
    for i in 0..n {
        assert_eq!(
            &g[4 * i..4 * i + 4],
            &[a[i] as i32, b[i] as i32, c[i] as i32, e[i] as i32],
            "thread {i}"
        );
        assert_eq!(
            &g64[2 * i..2 * i + 2],
            &[a[i] as i64, b[i] as i64],
            "thread {i}"
        );
        assert_eq!(g8[i], (a[i] as i32 * 3) as i8, "thread {i}");
        assert_eq!(g16[i], (b[i] as i32 + e[i] as i32) as i16, "thread {i}");
    }
}

#[test]
fn threadfence_last_block_reduction_and_scoped_atomics() {
    let (grid, bs) = (48u32, 128u32);
    let v: Vec<i32> = inputs((grid * bs) as usize, 30)
        .iter()
        .map(|x| x >> 8)
        .collect();
    let d = Dev::new();
    let pv = d.upload(&v);
    let partial = d.alloc::<i32>(grid as usize);
    let count = d.upload(&[0u32]);
    let result = d.upload(&[0i32, 0]);
    let scoped = d.upload(&[0i32, 10, 20]);
    for rep in 0..2 {
        d.launch(
            &m(),
            "fence_reduce",
            grid,
            bs,
            0,
            &[
                Arg::Ptr(pv),
                Arg::Ptr(partial),
                Arg::Ptr(count),
                Arg::Ptr(result),
                Arg::Ptr(scoped),
            ],
        );
        let total = v.iter().fold(0i32, |a, &x| a.wrapping_add(x));
        assert_eq!(
            d.download::<i32>(result, 2),
            vec![total, 5],
            "launch {rep}: the last block sums every partial"
        );
        assert_eq!(
            d.download::<u32>(count, 1)[0],
            0,
            "atomicInc wrapped for the next launch"
        );
        let k = (rep + 1) * (grid * bs) as i32;
        assert_eq!(
            d.download::<i32>(scoped, 3),
            vec![k, 10 + 2 * k, 20 + 3 * k],
            "cta/sys atomics and red"
        );
    }
}

#[test]
fn acquire_release_and_libcu_atomics() {
    let module = module("ordering", include_str!("../cu/ordering.cu"), &[]);
    let (grid, bs) = (4u32, 64u32);
    let d = Dev::new();
    let p = d.upload(&[100i32, i32::MIN, i32::MIN, i32::MIN, i32::MIN]);
    let c = d.upload(&[11u32, 0, 13, 20]);
    let out = d.alloc::<i32>(1);
    d.launch(
        &module,
        "ordering",
        grid,
        bs,
        0,
        &[Arg::Ptr(p), Arg::Ptr(c), Arg::Ptr(out)],
    );
    let n = (grid * bs) as i32;
    let g = d.download::<i32>(p, 5);
    assert_eq!(g[0], 100 + 3 * n, "relaxed + acq_rel fetch_add");
    // each block's max over the values fetch_add(2) returned: all below 100 + 3n, above 100
    for b in 1..5 {
        assert!(g[b] > 100 && g[b] < 100 + 3 * n, "block {b} max {}", g[b]);
    }
    assert_eq!(d.download::<u32>(c, 4), vec![11, 16, 13, 27]);
    assert_eq!(d.download::<i32>(out, 1)[0], 13);
}

#[test]
fn special_registers() {
    let d = Dev::new();
    let out = d.alloc::<u32>(64 * 7);
    d.launch(&m(), "special_regs", 1, 64, 1000, &[Arg::Ptr(out)]);
    let g = d.download::<u32>(out, 64 * 7);
    for t in 0..64 {
        let l = (t % 32) as u32;
        let eq = 1u32 << l;
        let want = [
            1000,
            l,
            eq - 1,
            (eq - 1) | eq,
            eq,
            !((eq - 1) | eq),
            !(eq - 1),
        ];
        assert_eq!(&g[t * 7..t * 7 + 7], &want, "thread {t}");
    }
}
