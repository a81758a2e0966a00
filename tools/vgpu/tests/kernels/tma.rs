//! Hopper's bulk tensor copies (TMA) and mbarriers, end to end: tensor maps from
//! `cuTensorMapEncodeTiled`, boxes loaded into shared memory with each swizzle mode, the
//! out-of-bounds fill, a multi-stage producer/consumer ring on parity waits, token waits,
//! the plain bulk copy, `setmaxnreg`, a wgmma reading TMA-loaded operands, and the checks
//! (transaction mismatch, read before the wait, a phase that never completes, use before
//! init, arrive overflow).
//!
//! Expected shared-memory images are built here from the PTX ISA's description of the
//! tensor copy and its swizzle modes, not from the simulator: the box is laid out dimension
//! 0 first, packed; with a swizzle of span S bytes (32, 64, 128) the 16-byte chunk `c` of
//! each 128-byte line `L` of the shared destination is stored at chunk `c ^ (L mod S/16)`
//! of the same line, so the pattern repeats every S * 8 bytes.

use crate::common::*;
use cuda::driver::{cuTensorMapEncodeTiled, CUtensorMap, CUDA_SUCCESS};
use cuda::sim::FaultKind;

const SRC: &str = include_str!("../cu/tma.cu");

fn m() -> std::sync::Arc<cuda::sim::Module> {
    module("tma", SRC, &["-arch=compute_90a"])
}

const F16: u32 = 6;
const F32: u32 = 7;

/// A tensor map for a tensor at `global`; `strides` are the byte strides of dims 1...
fn encode(dtype: u32, global: u64, dims: &[u64], strides: &[u64], bx: &[u32], swz: u32) -> Vec<u8> {
    let mut tm = CUtensorMap { opaque: [0; 16] };
    let es = vec![1u32; dims.len()];
    let r = unsafe {
        cuTensorMapEncodeTiled(
            &mut tm,
            dtype,
            dims.len() as u32,
            global as *mut _,
            dims.as_ptr(),
            strides.as_ptr(),
            bx.as_ptr(),
            es.as_ptr(),
            0,
            swz,
            2,
            0,
        )
    };
    assert_eq!(r, CUDA_SUCCESS, "encode {dims:?} {bx:?} swizzle {swz}");
    tm.opaque.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// One load case: a tensor of `dims` elements of `eb` bytes (element i holds the bytes of
/// i + 1, so none is zero), rows padded to `pitch` bytes, a box of `bx` at `at`.
struct Case {
    dtype: u32,
    eb: usize,
    dims: Vec<u64>,
    pitch: u64,
    bx: Vec<u32>,
    at: Vec<i32>,
    /// Swizzle enum value and its span in bytes (0: none).
    swz: (u32, usize),
}

/// Coordinates of flat index `i` in a shape, dimension 0 fastest.
fn coords(mut i: u64, shape: &[u64]) -> Vec<u64> {
    shape
        .iter()
        .map(|&n| {
            let c = i % n;
            i /= n;
            c
        })
        .collect()
}

/// The expected shared image of the box, from the ISA rules in the module comment.
fn expected(c: &Case) -> Vec<u8> {
    let shape: Vec<u64> = c.bx.iter().map(|&b| b as u64).collect();
    let n: u64 = shape.iter().product();
    let mut img = vec![0u8; n as usize * c.eb];
    for i in 0..n {
        let g: Vec<i64> = coords(i, &shape)
            .iter()
            .zip(&c.at)
            .map(|(&k, &a)| a as i64 + k as i64)
            .collect();
        let inside = g
            .iter()
            .zip(&c.dims)
            .all(|(&x, &d)| x >= 0 && (x as u64) < d);
        let val: u32 = if inside {
            let idx = g
                .iter()
                .rev()
                .zip(c.dims.iter().rev())
                .fold(0, |acc, (&x, &d)| acc * d + x as u64);
            idx as u32 + 1
        } else {
            0
        };
        let lin = i as usize * c.eb;
        let (line, chunk, within) = (lin / 128, (lin % 128) / 16, lin % 16);
        let key = if c.swz.1 == 0 {
            0
        } else {
            line % (c.swz.1 / 16)
        };
        let at = line * 128 + (chunk ^ key) * 16 + within;
        img[at..at + c.eb].copy_from_slice(&val.to_le_bytes()[..c.eb]);
    }
    img
}

fn run(c: &Case) {
    let d = Dev::new();
    // Byte strides: dimension 1 is `pitch`, each further one the product of the previous.
    let mut strides = vec![c.eb as u64, c.pitch];
    for k in 2..c.dims.len() {
        strides.push(strides[k - 1] * c.dims[k - 1]);
    }
    let r = c.dims.len();
    let total: u64 = c.dims.iter().product();
    let mut g = vec![0u8; (strides[r - 1] * c.dims[r - 1]) as usize];
    for e in 0..total {
        let x = coords(e, &c.dims);
        let o = x.iter().zip(&strides).map(|(a, s)| a * s).sum::<u64>() as usize;
        g[o..o + c.eb].copy_from_slice(&(e as u32 + 1).to_le_bytes()[..c.eb]);
    }
    let pg = d.upload(&g);
    let map = encode(c.dtype, pg, &c.dims, &strides[1..r], &c.bx, c.swz.0);
    let want = expected(c);
    let out = d.alloc::<u8>(want.len());
    let mut args = vec![Arg::Bytes(map), Arg::Ptr(out), Arg::I32(r as i32)];
    args.extend((0..5).map(|k| Arg::I32(*c.at.get(k).unwrap_or(&0))));
    args.push(Arg::U32(want.len() as u32));
    let p = d.launch(&m(), "tma_load", 1, 128, 0, &args);
    let got = d.download::<u8>(out, want.len());
    for (k, (a, b)) in got.iter().zip(&want).enumerate() {
        assert_eq!(
            a, b,
            "byte {k} of the box (swizzle {:?}, at {:?})",
            c.swz, c.at
        );
    }
    let inside: usize = want
        .chunks(c.eb)
        .filter(|e| e.iter().any(|&x| x != 0))
        .count();
    // The copy reads only in-bounds elements; the kernel then reads each byte back once.
    assert!(p.global_bytes_read >= (inside * c.eb) as u64, "{p:?}");
}

#[test]
fn tma_2d_f16_every_swizzle() {
    // Box rows are exactly the swizzle span (16, 32 or 64 halves); 16 rows, from row 3.
    for (swz, span) in [(0u32, 0usize), (1, 32), (2, 64), (3, 128)] {
        let halves = if span == 0 { 40 } else { span / 2 } as u32;
        run(&Case {
            dtype: F16,
            eb: 2,
            dims: vec![200, 40],
            pitch: 416,
            bx: vec![halves, 16],
            at: vec![8, 3],
            swz: (swz, span),
        });
    }
}

#[test]
fn tma_2d_f32_out_of_bounds_is_zero_filled() {
    // 128B swizzle, 32 floats x 12 rows starting left of and below the tensor's edges.
    for at in [vec![-8, -2], vec![20, 35], vec![-40, 0]] {
        run(&Case {
            dtype: F32,
            eb: 4,
            dims: vec![44, 40],
            pitch: 192,
            bx: vec![32, 12],
            at,
            swz: (3, 128),
        });
    }
}

#[test]
fn tma_3d_f32_and_f16_boxes() {
    run(&Case {
        dtype: F32,
        eb: 4,
        dims: vec![16, 5, 3],
        pitch: 64,
        bx: vec![8, 4, 2],
        at: vec![4, 2, 1],
        swz: (1, 32),
    });
    run(&Case {
        dtype: F16,
        eb: 2,
        dims: vec![64, 6, 4],
        pitch: 128,
        bx: vec![32, 8, 3],
        at: vec![0, -1, 2],
        swz: (2, 64),
    });
}

#[test]
fn tma_1d_and_5d_boxes() {
    run(&Case {
        dtype: F32,
        eb: 4,
        dims: vec![100],
        pitch: 0,
        bx: vec![64],
        at: vec![-16],
        swz: (0, 0),
    });
    run(&Case {
        dtype: F16,
        eb: 2,
        dims: vec![24, 3, 2, 2, 3],
        pitch: 64,
        bx: vec![16, 2, 2, 2, 2],
        at: vec![16, 2, 0, -1, 2],
        swz: (1, 32),
    });
}

/// The tensor-map operand named as the parameter itself (a .param address), in PTX written
/// by hand: one thread, one box, the second float read back.
#[test]
fn tensor_map_operand_can_name_the_parameter() {
    let ptx = ".version 9.0\n.target sm_90a\n.address_size 64\n\
        .visible .entry k(.param .align 64 .b8 k_param_0[128], .param .u64 k_param_1)\n{\n\
        .reg .b32 %r<8>;\n.reg .b64 %rd<4>;\n.reg .pred %p<2>;\n\
        .shared .align 1024 .b8 buf[1024];\n.shared .align 8 .b64 bar;\n\
        mov.u32 %r1, bar;\nmov.u32 %r2, buf;\nmov.u32 %r3, 0;\n\
        mbarrier.init.shared::cta.b64 [%r1], 1;\n\
        mbarrier.arrive.expect_tx.shared::cta.b64 _, [%r1], 1024;\n\
        cp.async.bulk.tensor.2d.shared::cta.global.tile.mbarrier::complete_tx::bytes [%r2], \
        [k_param_0, {%r3, %r3}], [%r1];\n\
        W: mbarrier.try_wait.parity.shared::cta.b64 %p1, [%r1], 0;\n@!%p1 bra W;\n\
        ld.shared.u32 %r4, [buf+4];\nld.param.u64 %rd1, [k_param_1];\n\
        st.global.u32 [%rd1], %r4;\nret;\n}\n";
    let module = cuda::sim::Module::load(ptx).unwrap_or_else(|f| panic!("{f}"));
    let d = Dev::new();
    let v: Vec<u32> = (0..256).map(|i| i * 3 + 1).collect();
    let pv = d.upload(&v);
    let out = d.alloc::<u32>(1);
    let map = encode(F32, pv, &[32, 8], &[128], &[32, 8], 0);
    d.launch(&module, "k", 1, 1, 0, &[Arg::Bytes(map), Arg::Ptr(out)]);
    assert_eq!(d.download::<u32>(out, 1), vec![4]);
}

#[test]
fn three_stage_ring_with_parity_waits() {
    let d = Dev::new();
    let ntiles = 10u32;
    let rows = 8 * ntiles as u64;
    let v: Vec<f32> = (0..rows * 32).map(|i| i as f32 * 0.5 - 7.0).collect();
    let pv = d.upload(&v);
    let map = encode(F32, pv, &[32, rows], &[128], &[32, 8], 0);
    let out = d.alloc::<f32>(v.len());
    let args = [
        Arg::Bytes(map.clone()),
        Arg::Ptr(out),
        Arg::I32(ntiles as i32),
        Arg::I32(0),
    ];
    d.launch(&m(), "tma_ring", 1, 96, 0, &args);
    let got = d.download::<f32>(out, v.len());
    for (i, (a, b)) in got.iter().zip(&v).enumerate() {
        assert_eq!(*a, 2.0 * b, "element {i}");
    }
    // Without the wait on `empty`, tile 3 overwrites stage 0 before anyone waited for tile 0.
    let args = [
        Arg::Bytes(map),
        Arg::Ptr(out),
        Arg::I32(ntiles as i32),
        Arg::I32(1),
    ];
    fails(
        &d,
        "tma_ring",
        &args,
        96,
        &["bulk copy", "(WAW)", "thread 0"],
    );
}

#[test]
fn token_waits_and_parity_of_the_completed_phase() {
    let d = Dev::new();
    let out = d.alloc::<u32>(64);
    d.launch(&m(), "token_wait", 1, 64, 0, &[Arg::Ptr(out)]);
    // parity 0 complete (bit 0), parity 1 (the current phase) not (bit 1), spun (bit 2).
    assert_eq!(d.download::<u32>(out, 64), vec![0b101; 64]);
}

#[test]
fn expect_tx_complete_tx_and_arrive_drop() {
    let d = Dev::new();
    let out = d.alloc::<u32>(4);
    d.launch(&m(), "tx_ops", 1, 32, 0, &[Arg::Ptr(out)]);
    // 32 of 64 bytes outstanding: incomplete; then complete. The dropped thread's barrier
    // completes its second phase with one arrival: parity 0 (phase 2) open, parity 1 done.
    assert_eq!(d.download::<u32>(out, 4), vec![0, 1, 0, 1]);
}

#[test]
fn plain_bulk_copy_completes_on_the_mbarrier() {
    let d = Dev::new();
    let v: Vec<f32> = (0..1000).map(|i| i as f32 + 0.25).collect();
    let pin = d.upload(&v);
    let out = d.alloc::<f32>(1000);
    let p = d.launch(
        &m(),
        "bulk_copy",
        1,
        128,
        0,
        &[Arg::Ptr(pin), Arg::Ptr(out), Arg::U32(1000)],
    );
    assert_eq!(d.download::<f32>(out, 1000), v);
    assert_eq!(p.global_bytes_read, 4000);
}

#[test]
fn setmaxnreg_by_whole_warpgroups() {
    let d = Dev::new();
    let out = d.alloc::<u32>(256);
    d.launch(&m(), "maxnreg", 1, 256, 0, &[Arg::Ptr(out), Arg::U32(0)]);
    let got = d.download::<u32>(out, 256);
    assert!(got[..128].iter().all(|&x| x == 40) && got[128..].iter().all(|&x| x == 232));
    // A block of 96 threads has no complete warpgroup.
    let f = d
        .try_launch(&m(), "maxnreg", 1, 96, 0, &[Arg::Ptr(out), Arg::U32(0)])
        .unwrap_err();
    assert!(
        f.message.contains("warpgroup (warps 0..4) is incomplete"),
        "{f}"
    );
    // Warp 3 of the first warpgroup takes the other branch.
    let f = d
        .try_launch(&m(), "maxnreg", 1, 256, 0, &[Arg::Ptr(out), Arg::U32(32)])
        .unwrap_err();
    assert!(f.message.contains("same warpgroup"), "{f}");
}

/// A one-kernel module around `body`.
fn load(body: &str) -> Result<std::sync::Arc<cuda::sim::Module>, cuda::sim::Fault> {
    let ptx = format!(
        ".version 9.0\n.target sm_90a\n.address_size 64\n.visible .entry k()\n{{\n\
         .reg .b32 %r<4>;\n.reg .b64 %rd<4>;\n{body}\nret;\n}}\n"
    );
    cuda::sim::Module::load(&ptx)
}

#[test]
fn async_forms_vgpu_does_not_model_fail_at_load() {
    let cases = [
        (
            "cp.async.bulk.global.shared::cta.bulk_group [%rd1], [%r1], 16;",
            "global to shared",
        ),
        (
            "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes\
             .multicast::cluster [%r1], [%rd1, {%r2, %r3}], [%r1], 3;",
            "multicast",
        ),
        (
            "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes \
             [%r1], [%rd1, {%r2}], [%r1];",
            "with 1 coordinates",
        ),
        (
            "mbarrier.arrive.noComplete.shared::cta.b64 %rd2, [%r1], 1;",
            "noComplete",
        ),
        ("mbarrier.pending_count.b64 %r1, %rd1;", "not supported"),
    ];
    for (body, needle) in cases {
        let f = load(body).err().unwrap_or_else(|| panic!("{body} loaded"));
        assert!(f.message.contains(needle), "{body}: {f}");
    }
}

#[test]
fn setmaxnreg_counts_are_checked_at_load() {
    for (n, ok) in [
        (24, true),
        (256, true),
        (20, false),
        (100, false),
        (264, false),
    ] {
        match load(&format!("setmaxnreg.inc.sync.aligned.u32 {n};")) {
            Ok(_) => assert!(ok, "{n} accepted"),
            Err(f) => {
                assert!(!ok, "{n}: {f}");
                assert!(f.message.contains("multiple of 8 in 24..=256"), "{f}");
            }
        }
    }
}

/// TMA feeding wgmma, as a Hopper GEMM's mainloop does: A (rows 64..127 of a 128 x 64 f16
/// matrix) and B (K 64..127 of 32 rows of 128) land in 128B swizzle on one mbarrier, and
/// the warpgroup multiplies them through 128B-swizzle descriptors with no fence.proxy.async,
/// which the copies (async-proxy writes) do not need. Bytes rewritten by ordinary stores
/// after the wait do need it, before the barrier that orders them for the other warps.
#[test]
fn tma_load_in_128b_swizzle_feeds_wgmma_without_a_proxy_fence() {
    let d = Dev::new();
    let mut rng = Rng::new(90);
    let mut small = || rng.range(15) as i32 - 7;
    let av: Vec<i32> = (0..128 * 64).map(|_| small()).collect(); // [m][k]
    let bv: Vec<i32> = (0..32 * 128).map(|_| small()).collect(); // [n][k]
    let h = |v: &[i32]| -> Vec<u16> { v.iter().map(|&x| f64_to_h(x as f64, Mode::Rn)).collect() };
    let (pa, pb) = (d.upload(&h(&av)), d.upload(&h(&bv)));
    let ma = encode(F16, pa, &[64, 128], &[128], &[64, 64], 3);
    let mb = encode(F16, pb, &[128, 32], &[256], &[64, 32], 3);
    // Products of integers in -7..7 summed 64 at a time are exact in f32.
    let mut want = vec![0f32; 64 * 32];
    for m in 0..64 {
        for n in 0..32 {
            let dot: i32 = (0..64)
                .map(|k| av[(64 + m) * 64 + k] * bv[n * 128 + 64 + k])
                .sum();
            want[m * 32 + n] = dot as f32;
        }
    }
    let out = d.alloc::<f32>(64 * 32);
    let args = |touch: i32| {
        vec![
            Arg::Bytes(ma.clone()),
            Arg::Bytes(mb.clone()),
            Arg::Ptr(out),
            Arg::I32(64),
            Arg::I32(64),
            Arg::I32(touch),
        ]
    };
    for touch in [0, 2] {
        d.write(out, &vec![f32::NAN; 64 * 32]);
        let p = d.launch(&m(), "tma_wgmma", 1, 128, 0, &args(touch));
        assert_eq!(d.download::<f32>(out, 64 * 32), want, "touch {touch}");
        assert_eq!(p.global_bytes_read, 64 * 128 + 32 * 128, "{p:?}");
    }
    fails(
        &d,
        "tma_wgmma",
        &args(1),
        128,
        &["no fence.proxy.async", "proxycheck"],
    );
}

// ---- checks -----------------------------------------------------------------------------

fn f32_map(d: &Dev) -> Vec<u8> {
    let pv = d.upload(&vec![1.5f32; 32 * 8]);
    encode(F32, pv, &[32, 8], &[128], &[32, 8], 0)
}

fn fails(d: &Dev, name: &str, args: &[Arg], threads: u32, needles: &[&str]) {
    let r = d.try_launch(&m(), name, 1, threads, 0, args);
    let f = r.expect_err(name);
    assert_eq!(f.kind, FaultKind::LaunchFailed, "{f}");
    for n in needles {
        assert!(f.message.contains(n), "`{n}` not in: {f}");
    }
}

/// `one_box` with `bytes` announced; must fail with every string of `needles`.
fn one_box(map: Option<Vec<u8>>, bytes: u32, wait_first: bool, needles: &[&str]) {
    let d = Dev::new();
    let out = d.alloc::<f32>(64);
    let map = map.unwrap_or_else(|| f32_map(&d));
    let args = [
        Arg::Bytes(map),
        Arg::Ptr(out),
        Arg::U32(bytes),
        Arg::I32(wait_first as i32),
    ];
    fails(&d, "one_box", &args, 64, needles);
}

#[test]
fn expect_tx_smaller_than_the_copy_is_reported() {
    one_box(
        None,
        1008,
        true,
        &["16 more bytes than expect_tx announced"],
    );
}

#[test]
fn expect_tx_larger_than_the_copy_is_a_deadlock_naming_the_bytes() {
    let needles = ["deadlock", "transaction count 16", "announced more bytes"];
    one_box(None, 1040, true, &needles);
}

#[test]
fn reading_the_destination_before_the_wait_is_reported() {
    one_box(None, 1024, false, &["bulk copy", "missing mbarrier wait"]);
}

#[test]
fn a_map_that_was_not_encoded_is_refused() {
    one_box(Some(vec![0xCD; 128]), 1024, true, &["not a CUtensorMap"]);
}

#[test]
fn a_phase_that_never_completes_is_a_deadlock_not_a_hang() {
    let d = Dev::new();
    let out = d.alloc::<u32>(64);
    let t = std::time::Instant::now();
    fails(
        &d,
        "never_completes",
        &[Arg::Ptr(out)],
        64,
        &[
            "deadlock",
            "waits on the mbarrier",
            "1 of 2 arrivals pending",
        ],
    );
    assert!(t.elapsed().as_secs() < 20, "took {:?}", t.elapsed());
}

#[test]
fn use_before_init_and_arrive_overflow() {
    let d = Dev::new();
    let out = d.alloc::<u32>(32);
    fails(
        &d,
        "uninit_arrive",
        &[Arg::Ptr(out)],
        32,
        &["before mbarrier.init"],
    );
    fails(
        &d,
        "arrive_overflow",
        &[Arg::Ptr(out)],
        32,
        &["arrive count overflow"],
    );
}
