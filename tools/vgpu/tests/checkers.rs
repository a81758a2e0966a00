//! Every sanitizer check provoked by a deliberately wrong kernel: the launch must fail with
//! the right [`FaultKind`] and a message naming the kernel, block, thread, PTX line (which
//! must point at the offending instruction) and address. Correct kernels of the same shapes
//! must run cleanly (no false positives), and unsupported PTX must fail at load time.

mod common;
use common::*;

use cuda::sim::{Fault, FaultKind, Module, Profile};

const SRC: &str = include_str!("cu/checkers.cu");

fn ptx() -> String {
    compile("checkers", SRC)
}

fn m() -> std::sync::Arc<Module> {
    module("checkers", SRC, &[])
}

/// The text of the PTX line a message names ("... line N ...").
fn named_line(ptx: &str, msg: &str) -> String {
    let i = msg
        .find("line ")
        .unwrap_or_else(|| panic!("no PTX line in: {msg}"));
    let n: usize = msg[i + 5..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect::<String>()
        .parse()
        .unwrap_or_else(|_| panic!("no line number in: {msg}"));
    assert!(n > 0, "line 0 in: {msg}");
    ptx.lines().nth(n - 1).unwrap_or("").trim().to_string()
}

/// Asserts a launch failed with `kind` in kernel `name`, with block/thread/line context, the
/// PTX line naming `opcode`, and every string of `needles` in the message.
fn expect(
    res: Result<Profile, Fault>,
    kind: FaultKind,
    name: &str,
    opcode: &str,
    needles: &[&str],
) -> Fault {
    let f = match res {
        Ok(p) => panic!("`{name}` must fail with {kind:?} but ran: {p:?}"),
        Err(f) => f,
    };
    assert_eq!(f.kind, kind, "{f}");
    let msg = &f.message;
    for s in [name, "block", "thread", "line"].iter().chain(needles) {
        assert!(msg.contains(s), "message lacks {s:?}: {msg}");
    }
    let line = named_line(&ptx(), msg);
    assert!(
        line.contains(opcode),
        "the named PTX line `{line}` is not a `{opcode}`: {msg}"
    );
    assert!(kind.is_sticky());
    f
}

fn hex(a: u64) -> String {
    format!("{a:#x}")
}

// ---- memcheck --------------------------------------------------------------------------

#[test]
fn global_read_one_past_an_allocation() {
    let d = Dev::new();
    let x: Vec<f32> = (0..100).map(|i| i as f32 + 0.5).collect();
    let pin = d.upload(&x);
    let out = d.alloc::<f32>(128);
    let r = d.try_launch(&m(), "oob_read", 2, 64, 0, &[Arg::Ptr(pin), Arg::Ptr(out)]);
    // thread 100 = block 1, thread 36 reads in[100], 400 bytes past the start
    expect(
        r,
        FaultKind::IllegalAddress,
        "oob_read",
        "ld.global",
        &[
            "out-of-bounds",
            "block (1,0,0)",
            "thread (36,0,0)",
            &hex(pin + 400),
        ],
    );
    // the same kernel with exactly as many threads as elements is fine
    d.launch(&m(), "oob_read", 1, 100, 0, &[Arg::Ptr(pin), Arg::Ptr(out)]);
    assert_eq!(d.download::<f32>(out, 100), x);
}

#[test]
fn global_write_one_past_an_allocation() {
    let d = Dev::new();
    let out = d.alloc::<f32>(100);
    let r = d.try_launch(&m(), "oob_write", 1, 128, 0, &[Arg::Ptr(out)]);
    expect(
        r,
        FaultKind::IllegalAddress,
        "oob_write",
        "st.global",
        &[
            "out-of-bounds",
            "write",
            "thread (100,0,0)",
            &hex(out + 400),
        ],
    );
}

#[test]
fn wild_pointer() {
    let d = Dev::new();
    let out = d.alloc::<f32>(32);
    let r = d.try_launch(
        &m(),
        "oob_read",
        1,
        32,
        0,
        &[Arg::U64(0x1000), Arg::Ptr(out)],
    );
    expect(
        r,
        FaultKind::IllegalAddress,
        "oob_read",
        "ld.global",
        &["out-of-bounds", "block (0,0,0)", "thread (0,0,0)", "0x1000"],
    );
}

#[test]
fn misaligned_float_load() {
    let d = Dev::new();
    let pin = d.upload(&[7u8; 64]);
    let out = d.alloc::<f32>(8);
    let r = d.try_launch(&m(), "misaligned", 1, 8, 0, &[Arg::Ptr(pin), Arg::Ptr(out)]);
    expect(
        r,
        FaultKind::MisalignedAddress,
        "misaligned",
        "ld.global",
        &["misaligned", "thread (0,0,0)", &hex(pin + 2)],
    );
}

#[test]
fn shared_index_past_a_static_array() {
    let d = Dev::new();
    let out = d.alloc::<f32>(64);
    d.launch(
        &m(),
        "shared_oob_static",
        1,
        64,
        0,
        &[Arg::Ptr(out), Arg::I32(63)],
    );
    assert_eq!(d.download::<f32>(out, 64)[63], 2.0);
    let r = d.try_launch(
        &m(),
        "shared_oob_static",
        1,
        64,
        0,
        &[Arg::Ptr(out), Arg::I32(64)],
    );
    expect(
        r,
        FaultKind::IllegalAddress,
        "shared_oob_static",
        "st.shared",
        &["out-of-bounds", "shared", "thread (5,0,0)", "0x100"],
    );
}

#[test]
fn shared_index_past_the_dynamic_size() {
    let d = Dev::new();
    let out = d.alloc::<f32>(64);
    d.launch(
        &m(),
        "shared_oob_dynamic",
        1,
        64,
        256,
        &[Arg::Ptr(out), Arg::I32(10)],
    );
    let r = d.try_launch(
        &m(),
        "shared_oob_dynamic",
        1,
        64,
        256,
        &[Arg::Ptr(out), Arg::I32(64)],
    );
    expect(
        r,
        FaultKind::IllegalAddress,
        "shared_oob_dynamic",
        "ld.shared",
        &["out-of-bounds", "shared", "thread (3,0,0)", "0x100"],
    );
}

#[test]
fn local_access_past_the_frame() {
    let d = Dev::new();
    let out = d.alloc::<u32>(32);
    let r = d.try_launch(
        &m(),
        "local_oob",
        1,
        32,
        0,
        &[Arg::Ptr(out), Arg::U64(1 << 20)],
    );
    expect(
        r,
        FaultKind::IllegalAddress,
        "local_oob",
        "ld.local",
        &["out-of-bounds", "local", "0x100000"],
    );
}

// ---- racecheck / initcheck -------------------------------------------------------------

#[test]
fn shared_race_two_warps_write_one_word() {
    let d = Dev::new();
    let out = d.alloc::<i32>(64);
    let r = d.try_launch(&m(), "race_waw", 1, 64, 0, &[Arg::Ptr(out)]);
    expect(
        r,
        FaultKind::LaunchFailed,
        "race_waw",
        "st.shared",
        &["race"],
    );
    // one warp alone has no other writer
    d.launch(&m(), "race_waw", 1, 32, 0, &[Arg::Ptr(out)]);
}

#[test]
fn shared_race_read_after_write_without_barrier() {
    let d = Dev::new();
    let out = d.alloc::<i32>(64);
    let r = d.try_launch(&m(), "race_raw", 1, 64, 0, &[Arg::Ptr(out)]);
    // Warp 0 writes, warp 1 reads: RAW, or WAR if the simulator ran warp 1 first.
    let f = expect(r, FaultKind::LaunchFailed, "race_raw", ".shared", &["race"]);
    assert!(
        f.message.contains("RAW") || f.message.contains("WAR"),
        "{f}"
    );
}

#[test]
fn shared_race_write_after_read_without_barrier() {
    let d = Dev::new();
    let out = d.alloc::<i32>(64);
    let r = d.try_launch(&m(), "race_war", 1, 64, 0, &[Arg::Ptr(out)]);
    let f = expect(r, FaultKind::LaunchFailed, "race_war", ".shared", &["race"]);
    assert!(
        f.message.contains("WAR") || f.message.contains("RAW"),
        "{f}"
    );
}

#[test]
fn read_of_shared_memory_never_written() {
    let d = Dev::new();
    let out = d.alloc::<f32>(64);
    let r = d.try_launch(&m(), "uninit_shared", 1, 64, 0, &[Arg::Ptr(out)]);
    expect(
        r,
        FaultKind::LaunchFailed,
        "uninit_shared",
        "ld.shared",
        &["uninitialised", "thread (0,0,0)"],
    );
}

// ---- cp.async --------------------------------------------------------------------------

#[test]
fn cp_async_read_without_wait() {
    let d = Dev::new();
    let pin = d.upload(&vec![3i32; 4 * 64]);
    let out = d.alloc::<i32>(4 * 64);
    let r = d.try_launch(
        &m(),
        "cp_no_wait",
        1,
        64,
        0,
        &[Arg::Ptr(pin), Arg::Ptr(out)],
    );
    expect(
        r,
        FaultKind::LaunchFailed,
        "cp_no_wait",
        "ld.shared",
        &["cp.async", "thread (0,0,0)"],
    );
}

#[test]
fn cp_async_wait_group_1_leaves_the_newest_group_pending() {
    let d = Dev::new();
    let pin = d.upload(&vec![5i32; 4 * 128]);
    let out = d.alloc::<i32>(4 * 128);
    let r = d.try_launch(
        &m(),
        "cp_wait_one",
        1,
        64,
        0,
        &[Arg::Ptr(pin), Arg::Ptr(out)],
    );
    let f = expect(
        r,
        FaultKind::LaunchFailed,
        "cp_wait_one",
        "ld.shared",
        &["cp.async"],
    );
    // it is the second load (of the newest group) that is caught, not the first
    let text = ptx();
    let start = text.find(".entry cp_wait_one").unwrap();
    let first_line = text[..start].lines().count();
    let body: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .skip(first_line)
        .take_while(|(_, l)| !l.starts_with('}'))
        .filter(|(_, l)| l.contains("ld.shared"))
        .collect();
    assert_eq!(body.len(), 2, "two shared loads expected: {body:?}");
    assert!(
        f.message.contains(&format!("line {}", body[1].0 + 1)),
        "{f} vs {body:?}"
    );
}

// ---- launch configuration --------------------------------------------------------------

#[test]
fn dynamic_shared_above_48k_needs_the_opt_in() {
    let d = Dev::new();
    let out = d.alloc::<f32>(128);
    let module = m();
    let k = Dev::kernel(&module, "dyn_big");
    let n = 16 * 1024; // floats: 64 KB
    let args = [Arg::Ptr(out), Arg::I32(n)];
    let r = d.try_launch_cfg(
        &module,
        "dyn_big",
        1,
        128,
        64 * 1024,
        Some(48 * 1024 - k.static_shared_bytes()),
        &args,
    );
    let f = r.expect_err("64 KB without the attribute must fail");
    assert_eq!(f.kind, FaultKind::InvalidValue, "{f}");
    assert!(f.message.contains("dyn_big") && !f.kind.is_sticky(), "{f}");
    let optin = 227 * 1024 - k.static_shared_bytes();
    d.try_launch_cfg(&module, "dyn_big", 1, 128, 64 * 1024, Some(optin), &args)
        .unwrap_or_else(|f| panic!("64 KB with the opt-in must run: {f}"));
    let g = d.download::<f32>(out, 128);
    for (t, &got) in g.iter().enumerate() {
        let want: f32 = (t..n as usize)
            .step_by(128)
            .map(|i| i as f32)
            .fold(0.0, |a, x| a + x);
        assert_eq!(got, want, "thread {t}");
    }
    // above the 227 KB per-block maximum even with the attribute
    let too_much = 228 * 1024;
    let f = d
        .try_launch_cfg(&module, "dyn_big", 1, 128, too_much, Some(too_much), &args)
        .expect_err("228 KB must fail");
    assert!(
        matches!(f.kind, FaultKind::OutOfResources | FaultKind::InvalidValue)
            && !f.kind.is_sticky(),
        "{f}"
    );
    assert!(f.message.contains("shared"), "{f}");
}

#[test]
fn bad_block_and_grid_dimensions() {
    let d = Dev::new();
    let out = d.alloc::<f32>(4096);
    let module = m();
    for (grid, block) in [
        ([1u32, 1, 1], [1025u32, 1, 1]),
        ([1, 1, 1], [32, 32, 2]),
        ([0, 1, 1], [32, 1, 1]),
        ([4, 0, 1], [32, 1, 1]),
        ([1, 1, 1], [0, 1, 1]),
    ] {
        let f = d
            .try_launch(&module, "oob_write", grid, block, 0, &[Arg::Ptr(out)])
            .expect_err("must fail");
        assert_eq!(
            f.kind,
            FaultKind::InvalidValue,
            "grid {grid:?} block {block:?}: {f}"
        );
        assert!(f.message.contains("oob_write"), "{f}");
    }
    // the largest legal block runs
    d.launch(&module, "oob_write", 1, 1024, 0, &[Arg::Ptr(out)]);
}

// ---- synccheck -------------------------------------------------------------------------

#[test]
fn divergent_syncthreads() {
    let d = Dev::new();
    let out = d.alloc::<i32>(64);
    let r = d.try_launch(&m(), "divergent_syncthreads", 1, 64, 0, &[Arg::Ptr(out)]);
    expect(
        r,
        FaultKind::LaunchFailed,
        "divergent_syncthreads",
        "bar.sync",
        &[],
    );
}

#[test]
fn mma_by_half_a_warp() {
    let d = Dev::new();
    let out = d.alloc::<f32>(32);
    let r = d.try_launch(&m(), "mma_partial_warp", 1, 32, 0, &[Arg::Ptr(out)]);
    expect(
        r,
        FaultKind::LaunchFailed,
        "mma_partial_warp",
        "mma.sync",
        &[],
    );
}

#[test]
fn shfl_with_diverged_members() {
    let d = Dev::new();
    let pin = d.upload(&(0..32).collect::<Vec<i32>>());
    let out = d.alloc::<i32>(32);
    let r = d.try_launch(
        &m(),
        "shfl_diverged",
        1,
        32,
        0,
        &[Arg::Ptr(pin), Arg::Ptr(out)],
    );
    expect(
        r,
        FaultKind::LaunchFailed,
        "shfl_diverged",
        "shfl.sync",
        &[],
    );
}

// ---- no false positives ----------------------------------------------------------------

#[test]
fn tree_reduction_is_clean() {
    let mut r = Rng::new(41);
    let x: Vec<f32> = (0..4 * 256).map(|_| r.f32(-1.0, 1.0)).collect();
    let d = Dev::new();
    let pin = d.upload(&x);
    let out = d.alloc::<f32>(4);
    d.launch(
        &m(),
        "tree_reduce",
        4,
        256,
        0,
        &[Arg::Ptr(pin), Arg::Ptr(out)],
    );
    let g = d.download::<f32>(out, 4);
    for b in 0..4 {
        let mut s = x[b * 256..b * 256 + 256].to_vec();
        let mut st = 128;
        while st > 0 {
            for t in 0..st {
                s[t] += s[t + st]; // the kernel's order: exact equality
            }
            st /= 2;
        }
        assert_eq!(g[b], s[0], "block {b}");
    }
}

#[test]
fn cp_async_pipeline_with_correct_waits_is_clean() {
    let ntiles = 4;
    let mut r = Rng::new(42);
    let x: Vec<i32> = (0..ntiles * 64 * 4).map(|_| r.u32() as i32 | 1).collect();
    let d = Dev::new();
    let pin = d.upload(&x);
    let out = d.alloc::<i32>(ntiles * 64 * 4);
    d.launch(
        &m(),
        "cp_pipeline_ok",
        1,
        64,
        0,
        &[Arg::Ptr(pin), Arg::Ptr(out), Arg::I32(ntiles as i32)],
    );
    let g = d.download::<i32>(out, ntiles * 64 * 4);
    for k in 0..ntiles {
        for t in 0..64 {
            let s = (k * 64 + 63 - t) * 4;
            assert_eq!(
                &g[(k * 64 + t) * 4..(k * 64 + t) * 4 + 4],
                &x[s..s + 4],
                "tile {k} thread {t}"
            );
        }
    }
}

#[test]
fn reading_back_own_writes_is_clean() {
    let x: Vec<i32> = (0..128).map(|i| i * 7 - 300).collect();
    let d = Dev::new();
    let pin = d.upload(&x);
    let out = d.alloc::<i32>(128);
    d.launch(
        &m(),
        "own_write_readback",
        1,
        128,
        0,
        &[Arg::Ptr(pin), Arg::Ptr(out)],
    );
    let g = d.download::<i32>(out, 128);
    for t in 0..128 {
        let nb = t - t % 32 + (t % 32 + 1) % 32;
        assert_eq!(g[t], (x[t] * 3 + 1) + (x[nb] * 3 + 1), "thread {t}");
    }
}

// ---- unsupported PTX -------------------------------------------------------------------

const HEADER: &str = ".version 8.0\n.target sm_80\n.address_size 64\n";

#[test]
fn unknown_instruction_fails_at_load_naming_it_and_its_line() {
    let text = format!(
        "{HEADER}\n.visible .entry frob(\n\t.param .u64 p\n)\n{{\n\t.reg .b32 %r<3>;\n\tmov.u32 %r2, 7;\n\tfrobnicate.b32 %r1, %r2;\n\tret;\n}}\n"
    );
    let line = text.lines().position(|l| l.contains("frobnicate")).unwrap() + 1;
    let f = Module::load(&text).err().expect("frobnicate must not load");
    assert_eq!(f.kind, FaultKind::InvalidPtx, "{f}");
    assert!(f.message.contains("frobnicate"), "{f}");
    assert!(
        f.message.contains(&format!("line {line}")),
        "expected line {line}: {f}"
    );
    // the same module without the made-up instruction loads
    Module::load(&text.replace("\tfrobnicate.b32 %r1, %r2;\n", ""))
        .unwrap_or_else(|f| panic!("{f}"));
}

#[test]
fn device_function_call_fails_at_load() {
    let text = format!(
        "{HEADER}\n.func (.reg .b32 r) helper(.reg .b32 a)\n{{\n\tadd.s32 r, a, 1;\n\tret;\n}}\n\n\
         .visible .entry caller(\n\t.param .u64 p\n)\n{{\n\t.reg .b32 %r<3>;\n\tmov.u32 %r1, 5;\n\t\
         call (%r2), helper, (%r1);\n\tret;\n}}\n"
    );
    let f = Module::load(&text)
        .err()
        .expect(".func calls must not load");
    assert_eq!(f.kind, FaultKind::InvalidPtx, "{f}");
    assert!(
        f.message.contains("helper") && f.message.contains("line"),
        "{f}"
    );
    let func_line = text.lines().position(|l| l.starts_with(".func")).unwrap() + 1;
    let call_line = text.lines().position(|l| l.contains("call")).unwrap() + 1;
    assert!(
        f.message.contains(&format!("line {func_line}"))
            || f.message.contains(&format!("line {call_line}")),
        "the message must name the .func or the call line: {f}"
    );
}
