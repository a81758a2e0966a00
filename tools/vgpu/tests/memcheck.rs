//! Memcheck's guard gaps and initcheck, provoked: an access one element past (or before)
//! an allocation is refused even though the host allocator would place a live neighbour
//! there; reads and atomics on global memory nothing wrote, and atomics on shared memory
//! the block never wrote, are refused; copies and memsets through the driver count as
//! writes, and a device-to-device copy carries its source's unwritten holes.

mod common;
use common::driver::{check, Ctx};
use common::*;

use std::ffi::{c_void, CString};
use std::ptr::null_mut;

use cuda::driver::*;
use cuda::mem::REDZONE;
use cuda::sim::{Fault, FaultKind, Module, Profile};

const SRC: &str = include_str!("cu/memcheck.cu");

fn ptx() -> String {
    compile("memcheck", SRC)
}

fn m() -> std::sync::Arc<Module> {
    module("memcheck", SRC, &[])
}

/// Asserts a launch failed with `kind` in kernel `name`, naming block, thread and a PTX
/// line whose text contains every string of `opcode`, and every string of `needles`.
#[track_caller]
fn expect(
    res: Result<Profile, Fault>,
    kind: FaultKind,
    name: &str,
    opcode: &[&str],
    needles: &[&str],
) -> String {
    let f = match res {
        Ok(p) => panic!("`{name}` must fail with {kind:?} but ran: {p:?}"),
        Err(f) => f,
    };
    assert_eq!(f.kind, kind, "{f}");
    let msg = f.message;
    for s in [name, "block", "thread", "line "].iter().chain(needles) {
        assert!(msg.contains(s), "message lacks {s:?}: {msg}");
    }
    let i = msg.find("line ").unwrap() + 5;
    let n: usize = msg[i..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect::<String>()
        .parse()
        .unwrap();
    let text = ptx();
    let line = text.lines().nth(n - 1).unwrap_or("");
    for op in opcode {
        assert!(
            line.contains(op),
            "PTX line {n} `{line}` is not a {op}: {msg}"
        );
    }
    msg
}

fn hex(a: u64) -> String {
    format!("{a:#x}")
}

// ---- guard gaps --------------------------------------------------------------------------

#[test]
fn overflows_into_the_guard_gaps_are_refused_though_neighbours_are_live() {
    let d = Dev::new();
    // Many small buffers in a row. Without guard gaps the host allocator spaced 256-byte
    // blocks 512 bytes apart, so `in[128]` of one buffer was `in[0]` of the next, live one,
    // and the read was accepted.
    let bufs: Vec<u64> = (0..32).map(|k| d.upload(&[k as f32; 64])).collect();
    let out = d.upload(&[0f32; 64]);
    let mut sorted = bufs.clone();
    sorted.sort_unstable();
    assert!(sorted.windows(2).all(|p| p[1] - p[0] >= 256 + 2 * REDZONE));
    let gap = (REDZONE / 4) as i64;
    for &b in &bufs {
        // One past the end, where the old neighbour began, the end of the gap after, and
        // the gap before.
        for off in [64, 128, 64 + gap - 1, -1, -gap] {
            let at = b.wrapping_add_signed(4 * off);
            let r = d.try_launch(
                &m(),
                "read_at",
                1,
                1,
                0,
                &[Arg::Ptr(b), Arg::U64(off as u64), Arg::Ptr(out)],
            );
            expect(
                r,
                FaultKind::IllegalAddress,
                "read_at",
                &["ld.global"],
                &["out-of-bounds global read", "no live allocation", &hex(at)],
            );
        }
        let r = d.try_launch(&m(), "write_at", 1, 1, 0, &[Arg::Ptr(b), Arg::U64(128)]);
        expect(
            r,
            FaultKind::IllegalAddress,
            "write_at",
            &["st.global"],
            &["out-of-bounds global write", &hex(b + 512)],
        );
        // In bounds, the same kernels run.
        d.launch(
            &m(),
            "read_at",
            1,
            64,
            0,
            &[Arg::Ptr(b), Arg::U64(0), Arg::Ptr(out)],
        );
    }
    assert_eq!(d.download::<f32>(out, 64), vec![31.0; 64]);
}

// ---- initcheck, global memory ------------------------------------------------------------

#[test]
fn read_of_global_memory_never_written_is_refused() {
    let d = Dev::new();
    let fresh = d.alloc::<f32>(64);
    let out = d.alloc::<f32>(64);
    let r = d.try_launch(
        &m(),
        "read_at",
        1,
        64,
        0,
        &[Arg::Ptr(fresh), Arg::U64(0), Arg::Ptr(out)],
    );
    expect(
        r,
        FaultKind::LaunchFailed,
        "read_at",
        &["ld.global"],
        &[
            "read of uninitialised global memory",
            "thread (0,0,0)",
            &hex(fresh),
            "offset 0 of the 256-byte allocation",
            "never written",
        ],
    );
    // A kernel store writes it; the next launch reads it.
    d.launch(&m(), "fill", 1, 64, 0, &[Arg::Ptr(fresh), Arg::F32(2.5)]);
    d.launch(
        &m(),
        "read_at",
        1,
        64,
        0,
        &[Arg::Ptr(fresh), Arg::U64(0), Arg::Ptr(out)],
    );
    assert_eq!(d.download::<f32>(out, 64), vec![2.5; 64]);
}

#[test]
fn read_past_the_written_prefix_names_the_first_unwritten_byte() {
    let d = Dev::new();
    // 128 floats allocated, 100 uploaded: the tail holds stale data.
    let p = d.alloc::<f32>(128);
    d.write(p, &[1f32; 100]);
    let out = d.alloc::<f32>(128);
    let r = d.try_launch(
        &m(),
        "read_at",
        2,
        64,
        0,
        &[Arg::Ptr(p), Arg::U64(0), Arg::Ptr(out)],
    );
    expect(
        r,
        FaultKind::LaunchFailed,
        "read_at",
        &["ld.global"],
        &[
            "uninitialised",
            "block (1,0,0)",
            "thread (36,0,0)",
            &hex(p + 400),
            "offset 400",
        ],
    );
    // A 16-byte vector load with one float of its four unwritten.
    let v = d.alloc::<f32>(8);
    d.write(v, &[1f32; 7]);
    let vout = d.alloc::<f32>(8);
    let r = d.try_launch(&m(), "read_v4", 1, 2, 0, &[Arg::Ptr(v), Arg::Ptr(vout)]);
    expect(
        r,
        FaultKind::LaunchFailed,
        "read_v4",
        &["ld.global", "v4"],
        &["16 bytes", "thread (1,0,0)", &hex(v + 28), "offset 28"],
    );
    d.launch(&m(), "read_v4", 1, 1, 0, &[Arg::Ptr(v), Arg::Ptr(vout)]);
}

#[test]
fn global_atomic_on_memory_never_written_is_refused() {
    let d = Dev::new();
    let c = d.alloc::<u32>(1);
    let r = d.try_launch(&m(), "global_count", 2, 64, 0, &[Arg::Ptr(c)]);
    expect(
        r,
        FaultKind::LaunchFailed,
        "global_count",
        &[".global", "add"],
        &["atomic of uninitialised global memory", &hex(c)],
    );
    d.write(c, &[5u32]);
    d.launch(&m(), "global_count", 2, 64, 0, &[Arg::Ptr(c)]);
    assert_eq!(d.download::<u32>(c, 1), [133]);
}

// ---- initcheck, shared-memory atomics ----------------------------------------------------

#[test]
fn shared_atomic_on_a_word_never_written_is_refused() {
    let d = Dev::new();
    let out = d.alloc::<u32>(1);
    let r = d.try_launch(
        &m(),
        "shared_count",
        1,
        96,
        0,
        &[Arg::Ptr(out), Arg::U32(0)],
    );
    expect(
        r,
        FaultKind::LaunchFailed,
        "shared_count",
        &[".shared", "add"],
        &[
            "atomic on uninitialised shared memory",
            "never written in this block",
        ],
    );
    d.launch(
        &m(),
        "shared_count",
        1,
        96,
        0,
        &[Arg::Ptr(out), Arg::U32(1)],
    );
    assert_eq!(d.download::<u32>(out, 1), [96]);

    // An atomic whose old value is used (atom, not red) too.
    let out = d.alloc::<u32>(65);
    let r = d.try_launch(&m(), "shared_max", 1, 64, 0, &[Arg::Ptr(out), Arg::U32(0)]);
    expect(
        r,
        FaultKind::LaunchFailed,
        "shared_max",
        &["atom", ".shared", "max"],
        &["atomic on uninitialised shared memory", "thread (0,0,0)"],
    );
    d.launch(&m(), "shared_max", 1, 64, 0, &[Arg::Ptr(out), Arg::U32(1)]);
    assert_eq!(d.download::<u32>(out, 1), [63]);
}

// ---- through the driver: copies and memsets are writes -----------------------------------

fn load(ctx: &Ctx) -> CUmodule {
    let _ = ctx;
    let text = CString::new(ptx()).unwrap();
    let mut module = null_mut();
    check(unsafe { cuModuleLoadData(&mut module, text.as_ptr().cast()) });
    module
}

/// Launches `read_at(src, 0, dst)` over `n` floats with one block.
fn read_all(module: CUmodule, src: u64, dst: u64, n: u32) -> CUresult {
    let name = CString::new("read_at").unwrap();
    let mut f = null_mut();
    check(unsafe { cuModuleGetFunction(&mut f, module, name.as_ptr()) });
    let (mut a, mut off, mut b) = (src, 0u64, dst);
    let mut args: [*mut c_void; 3] = [
        (&mut a as *mut u64).cast(),
        (&mut off as *mut u64).cast(),
        (&mut b as *mut u64).cast(),
    ];
    unsafe {
        cuLaunchKernel(
            f,
            1,
            1,
            1,
            n,
            1,
            1,
            0,
            null_mut(),
            args.as_mut_ptr(),
            null_mut(),
        )
    }
}

#[test]
fn driver_copies_and_memsets_write_and_device_copies_carry_holes() {
    let ctx = Ctx::new();
    let module = load(&ctx);
    let (a, b, out) = (
        common::driver::alloc(256),
        common::driver::alloc(256),
        common::driver::alloc(256),
    );
    // a: floats 0..32 from the host, 32..64 memset; b: a device copy of a; all written.
    let host = [3f32; 32];
    unsafe {
        check(cuMemcpyHtoD_v2(a, host.as_ptr().cast(), 128));
        check(cuMemsetD32_v2(a + 128, 0, 32));
        check(cuMemcpyDtoD_v2(b, a, 256));
    }
    check(read_all(module, b, out, 64));
    check(unsafe { cuCtxSynchronize() });
    let got = common::driver::download(out, 256);
    assert_eq!(&got[..4], &3f32.to_le_bytes());
    assert_eq!(&got[252..], &[0; 4]);

    // c: only its second half copied from a (memset part of a); its first half never
    // written, and copying c to d carries that hole into d.
    let (c, d) = (common::driver::alloc(256), common::driver::alloc(256));
    unsafe {
        check(cuMemcpyDtoD_v2(c + 128, a + 128, 128));
        check(cuMemcpyDtoD_v2(d, c, 256));
    }
    let r = read_all(module, d, out, 64);
    assert_eq!(r, CUDA_ERROR_LAUNCH_FAILED, "{}", error_name(r));
    // The bookkeeping behind it: d's first half unwritten, its second half written.
    let s = cuda::driver::global_mem().snapshot();
    let i = s.find(d, 256).unwrap();
    assert_eq!(s.first_unwritten(i, d, 256), Some(d));
    assert!(s.written(i, d + 128, 128) && !s.written(i, d + 127, 1));
}

/// Shared addresses are 32-bit offsets: `[r + imm]` wraps modulo 2^32, as on the chip. NVVM
/// folds `(x - c) + c` into a register below zero and an immediate (seen in
/// attn_relpos_s64.cu's rel_w scatter), which must land on x, not past the window.
#[test]
fn shared_address_plus_immediate_wraps_at_32_bits() {
    let text = ".version 8.0\n.target sm_80\n.address_size 64\n\n\
        .visible .entry wrap(.param .u64 out)\n{\n\
        \t.reg .b32 %r<4>;\n\t.reg .b64 %rd<3>;\n\
        \t.shared .align 4 .b8 buf[64];\n\
        \tmov.u32 %r1, buf;\n\
        \tsub.s32 %r2, %r1, 2212;\n\
        \tst.shared.u32 [%r2+2220], 77;\n\
        \tld.shared.u32 %r3, [%r1+8];\n\
        \tld.param.u64 %rd1, [out];\n\
        \tcvta.to.global.u64 %rd2, %rd1;\n\
        \tst.global.u32 [%rd2], %r3;\n\
        \tret;\n}\n";
    let m = std::sync::Arc::new(Module::load(text).unwrap_or_else(|f| panic!("{f}")));
    let d = Dev::new();
    let out = d.upload(&[0u32]);
    d.launch(&m, "wrap", 1, 1, 0, &[Arg::Ptr(out)]);
    assert_eq!(d.download::<u32>(out, 1), vec![77]);
}
