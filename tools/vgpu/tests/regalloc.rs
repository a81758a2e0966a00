//! Register compaction (`sim::regalloc`) must not change what a program computes. The
//! kernel below is hand-written PTX, so the registers are exactly as written: one read
//! before any write (must read 0), a loop-carried sum with temporaries that die in each
//! iteration, a guarded write that keeps the old value in lanes whose guard is false,
//! divergent paths that define one register differently, values carried across the
//! divergence, a `shfl` reading other lanes, and many short-lived registers that can share
//! slots. Every lane's result is checked against a host model. Every register that dies
//! before the guarded write holds a non-zero value in the lanes that skip it, so a slot
//! handed over too early shows.

mod common;
use common::*;

const PTX: &str = r#"
.version 8.0
.target sm_80
.address_size 64

.visible .entry regs(.param .u64 out)
{
    .reg .pred %p<4>;
    .reg .b32 %r<40>;
    .reg .b64 %rd<4>;

    ld.param.u64 %rd1, [out];
    mov.u32 %r1, %tid.x;
    add.u32 %r3, %r2, 7;
    mov.u32 %r4, 0;
    mov.u32 %r9, 0;
LOOP:
    add.u32 %r5, %r1, %r9;
    mul.lo.u32 %r6, %r5, 3;
    add.u32 %r4, %r4, %r6;
    add.u32 %r9, %r9, 1;
    setp.ge.u32 %p1, %r9, 5;
    @!%p1 bra LOOP;
    add.u32 %r11, %r1, 51;
    and.b32 %r14, %r11, 1;
    setp.eq.u32 %p2, %r14, 0;
    @%p2 mov.u32 %r10, 100;
    setp.lt.u32 %p3, %r1, 8;
    @%p3 bra LOW;
    add.u32 %r12, %r1, 1000;
    mul.lo.u32 %r20, %r12, 2;
    add.u32 %r12, %r20, %r4;
    bra.uni JOIN;
LOW:
    mul.lo.u32 %r21, %r1, 2;
    add.u32 %r22, %r21, 5;
    add.u32 %r12, %r22, %r3;
JOIN:
    shfl.sync.down.b32 %r13, %r4, 1, 31, -1;
    add.u32 %r30, %r3, %r4;
    add.u32 %r31, %r30, %r10;
    add.u32 %r32, %r31, %r12;
    add.u32 %r33, %r32, %r13;
    mul.wide.u32 %rd2, %r1, 4;
    add.s64 %rd3, %rd1, %rd2;
    st.global.u32 [%rd3], %r33;
    ret;
}
"#;

#[test]
fn compaction_keeps_every_value() {
    let m = cuda::sim::Module::load(PTX).expect("hand-written PTX loads");
    let k = m.kernel("regs").expect("kernel");
    // 4 + 40 + 4 virtual registers; far fewer are ever live at once.
    assert!(
        k.register_slots() < 20,
        "{} slots for a program with at most ~12 live registers",
        k.register_slots()
    );
    let d = Dev::new();
    let out = d.alloc::<u32>(32);
    d.launch(&m, "regs", 1, 32, 0, &[Arg::Ptr(out)]);
    let got = d.download::<u32>(out, 32);
    let sum = |t: u32| (0..5).map(|i| (t + i) * 3).sum::<u32>();
    for t in 0..32u32 {
        let r3 = 7; // %r2 is never written: it reads 0.
        let r4 = sum(t);
        let r10 = if t & 1 == 1 { 100 } else { 0 };
        let r12 = if t < 8 {
            t * 2 + 5 + r3
        } else {
            (t + 1000) * 2 + r4
        };
        // shfl.down by 1 with clamp 31: the last lane reads its own value.
        let r13 = if t < 31 { sum(t + 1) } else { r4 };
        assert_eq!(got[t as usize], r3 + r4 + r10 + r12 + r13, "lane {t}");
    }
}
