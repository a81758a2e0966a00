//! wgmma.mma_async m64nNk16 against tables written here from the PTX ISA text, never from
//! the simulator's helpers: where each element of A and B sits in shared memory for every
//! swizzle mode and major-ness (the ISA's swizzle-atom figures, read as "row r of an atom,
//! 16-byte chunk c, lands at chunk c XOR pattern(r)"), how the 64-bit matrix descriptor is
//! packed, which thread and register holds which element of the A and D fragments. A
//! simulator that misread a swizzle the way the kernel does would still match a host
//! product; it cannot match these tables.
//!
//! Values are small integers, so every product and sum is exact in f32 and the results are
//! compared for equality with a host f64 product.

use crate::common::*;
use cuda::sim::{Fault, Profile};

const SRC: &str = include_str!("../cu/wgmma.cu");

fn m() -> std::sync::Arc<cuda::sim::Module> {
    module("wgmma", SRC, &["-arch=sm_90a"])
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Sw {
    None,
    B32,
    B64,
    B128,
}

impl Sw {
    /// Bytes in a row of the swizzle atom (none: one 16-byte core-matrix row).
    fn row(self) -> u32 {
        match self {
            Sw::None => 16,
            Sw::B32 => 32,
            Sw::B64 => 64,
            Sw::B128 => 128,
        }
    }
    /// The ISA figures: 128B swizzles chunk c of atom row r (8 chunks) to c ^ r; 64B (4
    /// chunks) keeps rows in pairs, c ^ (r / 2); 32B (2 chunks) in fours, c ^ (r / 4).
    fn chunk(self, r: u32, c: u32) -> u32 {
        match self {
            Sw::None => c,
            Sw::B32 => c ^ (r / 4),
            Sw::B64 => c ^ (r / 2),
            Sw::B128 => c ^ r,
        }
    }
    /// Descriptor bits 62-63: 0 none, 1 128B, 2 64B, 3 32B.
    fn mode(self) -> u64 {
        match self {
            Sw::None => 0,
            Sw::B128 => 1,
            Sw::B64 => 2,
            Sw::B32 => 3,
        }
    }
}

/// One operand (`rows` = M or N, `kt` = K stored, 16 or 32) laid out in shared memory.
#[derive(Clone, Copy, Debug)]
struct Layout {
    sw: Sw,
    mn_major: bool,
    rows: u32,
    kt: u32,
    start: u32,
    lbo: u32,
    sbo: u32,
}

impl Layout {
    /// Strides that leave gaps where the layout allows, so a misread LBO/SBO shows.
    fn new(sw: Sw, mn_major: bool, rows: u32, kt: u32, start: u32) -> Layout {
        let atom = 8 * sw.row();
        let (lbo, sbo) = match (sw, mn_major) {
            // Core matrices of 8 MN rows x 16 bytes; 8-row groups 128 bytes apart, the K
            // halves after all of them with a gap.
            (Sw::None, false) => (rows / 8 * 128 + 48, 128),
            // Core matrices of 8 K rows x 16 bytes of MN; MN neighbours 144 apart (a gap),
            // K groups after them.
            (Sw::None, true) => (rows / 8 * 144 + 32, 144),
            // One atom row per MN index holding all of K (kt * 2 <= row bytes); atoms along
            // MN, with an atom-sized gap when small.
            (_, false) => (0, if rows <= 64 { 2 * atom } else { atom }),
            // Atom rows along K (8 per atom), row bytes of MN; K groups of 8 are `sbo`
            // apart, MN atoms `lbo` apart after all K groups.
            (_, true) => (atom * (kt / 8) + atom, atom),
        };
        Layout {
            sw,
            mn_major,
            rows,
            kt,
            start,
            lbo,
            sbo,
        }
    }

    /// Byte offset of element (mn, k) from the shared base.
    fn offset(&self, mn: u32, k: u32) -> u32 {
        let s = self.sw.row();
        let o = match (self.sw, self.mn_major) {
            (Sw::None, false) => {
                (mn / 8) * self.sbo + (k / 8) * self.lbo + (mn % 8) * 16 + (k % 8) * 2
            }
            (Sw::None, true) => {
                (mn / 8) * self.sbo + (k / 8) * self.lbo + (k % 8) * 16 + (mn % 8) * 2
            }
            (sw, false) => {
                // K beyond one row continues in the next column of atoms, after all MN.
                let (kcol, kin) = (k / (s / 2), k % (s / 2));
                let r = mn % 8;
                let c = (2 * kin) / 16;
                kcol * self.katom()
                    + (mn / 8) * self.sbo
                    + r * s
                    + sw.chunk(r, c) * 16
                    + (k % 8) * 2
            }
            (sw, true) => {
                let per_row = s / 2;
                let r = k % 8;
                let c = (mn % per_row) / 8;
                (mn / per_row) * self.lbo
                    + (k / 8) * self.sbo
                    + r * s
                    + sw.chunk(r, c) * 16
                    + (mn % 8) * 2
            }
        };
        self.start + o
    }

    /// K-major swizzled: distance between columns of atoms along K.
    fn katom(&self) -> u32 {
        self.rows.div_ceil(8) * self.sbo
    }

    /// End of the bytes this layout can touch.
    fn end(&self) -> u32 {
        let mut e = 0;
        for mn in 0..self.rows {
            for k in 0..self.kt {
                e = e.max(self.offset(mn, k) + 2);
            }
        }
        e
    }

    /// The descriptor of the K = 16 slice starting at `k0`, relative to the shared base:
    /// start >> 4 in bits 0-13, LBO >> 4 in 16-29, SBO >> 4 in 32-45, mode in 62-63.
    fn desc(&self, k0: u32) -> u64 {
        let start = self.slice_start(k0) as u64;
        (start >> 4)
            | ((self.lbo as u64 >> 4) << 16)
            | ((self.sbo as u64 >> 4) << 32)
            | (self.sw.mode() << 62)
    }

    /// Where the slice starting at `k0` begins: K-major advances along the row (32 bytes
    /// per 16 elements; swizzled rows keep their pattern because it is applied to the
    /// address), MN-major by whole K groups.
    fn slice_start(&self, k0: u32) -> u32 {
        match (self.sw, self.mn_major) {
            (Sw::None, false) => self.start + (k0 / 8) * self.lbo,
            (sw, false) => {
                let s = sw.row() / 2;
                self.start + (k0 / s) * self.katom() + (k0 % s) * 2
            }
            (Sw::None, true) => self.start + (k0 / 8) * self.lbo,
            (_, true) => self.start + (k0 / 8) * self.sbo,
        }
    }
}

/// Accumulator register `i` of thread `tid` (ISA figure for the m64nNk16 D fragment): warp
/// w holds rows 16w..16w+15; in each 8-column block, lane (g = lane / 4, t = lane % 4) holds
/// rows g and g + 8, columns 2t and 2t + 1.
fn d_at(tid: u32, i: u32) -> (u32, u32) {
    let (w, lane) = (tid / 32, tid % 32);
    (
        16 * w + lane / 4 + 8 * ((i % 4) / 2),
        8 * (i / 4) + 2 * (lane % 4) + i % 2,
    )
}

/// A-fragment element `e` (register e / 2, low half for even e) of thread `tid`: rows g and
/// g + 8 of the warp's 16, columns 2t, 2t + 1 and those plus 8.
fn a_at(tid: u32, e: u32) -> (u32, u32) {
    let (w, lane) = (tid / 32, tid % 32);
    (
        16 * w + lane / 4 + 8 * ((e % 4) / 2),
        2 * (lane % 4) + e % 2 + 8 * (e / 4),
    )
}

fn enc(v: i32, bf16: bool) -> u16 {
    if bf16 {
        ((v as f32).to_bits() >> 16) as u16
    } else {
        f64_to_h(v as f64, Mode::Rn)
    }
}

/// One wgmma case.
#[derive(Clone, Copy, Debug)]
struct Case {
    n: u32,
    bf16: bool,
    /// A from shared memory (`Some(layout)`) or registers.
    a: Option<(Sw, bool)>,
    b: (Sw, bool),
    /// A second wgmma on k 16..31 accumulating into the first.
    chain: bool,
    /// Immediate mode: 0..3 trans bits, 4 negated A, 5 negated B (see wgmma.cu).
    mode: u32,
    scale_d: bool,
    flags: u32,
    threads: u32,
}

const LEGAL: u32 = 1 | 2;

impl Case {
    fn new(n: u32, bf16: bool, a: Option<(Sw, bool)>, b: (Sw, bool)) -> Case {
        let mode = a.map_or(0, |x| x.1 as u32) | (b.1 as u32) << 1;
        Case {
            n,
            bf16,
            a,
            b,
            chain: false,
            mode,
            scale_d: true,
            flags: LEGAL,
            threads: 128,
        }
    }
}

/// Runs `c`; returns the launch result and the expected raw accumulators.
/// The raw accumulators and profile of a launch, or its fault.
type Outcome = Result<(Vec<f32>, Profile), Fault>;

fn run(c: Case) -> (Outcome, Vec<f32>) {
    let kt = if c.chain { 32 } else { 16 };
    let mut rng = Rng::new(c.n as u64 * 7 + c.mode as u64 + c.bf16 as u64);
    let mut small = || rng.range(15) as i32 - 7;
    let av: Vec<i32> = (0..64 * kt).map(|_| small()).collect(); // [m][k]
    let bv: Vec<i32> = (0..kt * c.n).map(|_| small()).collect(); // [k][n]
    let cv: Vec<i32> = (0..64 * c.n).map(|_| small()).collect(); // [m][n]
    let (neg_a, neg_b) = (c.mode == 4, c.mode == 5);
    // Host product over the K actually multiplied.
    let h = c.n / 2;
    let mut want = vec![0f32; 128 * h as usize];
    for tid in 0..128 {
        for i in 0..h {
            let (r, col) = d_at(tid, i);
            let mut acc = if c.scale_d {
                cv[(r * c.n + col) as usize] as f64
            } else {
                0.0
            };
            for k in 0..kt {
                let mut p = av[(r * kt + k) as usize] as f64 * bv[(k * c.n + col) as usize] as f64;
                if neg_a != neg_b {
                    p = -p;
                }
                acc += p;
            }
            want[(tid * h + i) as usize] = acc as f32;
        }
    }
    let la = c.a.map(|(sw, mj)| Layout::new(sw, mj, 64, kt, 0));
    let b_start = la.map_or(0, |l| l.end().next_multiple_of(1024));
    let lb = Layout::new(c.b.0, c.b.1, c.n, kt, b_start);
    let (mut a_bits, mut a_off) = (Vec::new(), Vec::new());
    if let Some(l) = la {
        for mn in 0..64 {
            for k in 0..kt {
                a_bits.push(enc(av[(mn * kt + k) as usize], c.bf16));
                a_off.push(l.offset(mn, k));
            }
        }
    }
    let (mut b_bits, mut b_off) = (Vec::new(), Vec::new());
    for mn in 0..c.n {
        for k in 0..kt {
            b_bits.push(enc(bv[(k * c.n + mn) as usize], c.bf16));
            b_off.push(lb.offset(mn, k));
        }
    }
    // A registers: two sets (k 0..15, k 16..31) of 4 per thread.
    let mut areg = vec![0u32; 2 * 128 * 4];
    for set in 0..2u32 {
        for tid in 0..128 {
            for e in 0..8 {
                let (r, k) = a_at(tid, e);
                let k = k + 16 * set;
                let v = if k < kt { av[(r * kt + k) as usize] } else { 0 };
                areg[((set * 128 + tid) * 4 + e / 2) as usize] |=
                    (enc(v, c.bf16) as u32) << (16 * (e % 2));
            }
        }
    }
    let mut craw = vec![0f32; 128 * h as usize];
    for tid in 0..128 {
        for i in 0..h {
            let (r, col) = d_at(tid, i);
            craw[(tid * h + i) as usize] = cv[(r * c.n + col) as usize] as f32;
        }
    }
    let smem = lb.end() + 1024;
    let (da, dka) = la.map_or((0, 0), |l| (l.desc(0), l.desc(16) - l.desc(0)));
    let (db, dkb) = (lb.desc(0), lb.desc(16) - lb.desc(0));
    let flags = c.flags | (c.scale_d as u32) << 3 | (c.chain as u32) << 6 | c.mode << 8;
    let d = Dev::new();
    let ptrs = [
        d.upload(&a_bits),
        d.upload(&a_off),
        d.upload(&b_bits),
        d.upload(&b_off),
        d.upload(&areg),
        d.upload(&craw),
    ];
    let pd = d.alloc::<f32>(128 * h as usize);
    let name = format!(
        "wg_{}_n{}_{}",
        if c.bf16 { "bf16" } else { "f16" },
        c.n,
        if c.a.is_some() { "s" } else { "r" }
    );
    let args = [
        Arg::Ptr(ptrs[0]),
        Arg::Ptr(ptrs[1]),
        Arg::I32(a_bits.len() as i32),
        Arg::Ptr(ptrs[2]),
        Arg::Ptr(ptrs[3]),
        Arg::I32(b_bits.len() as i32),
        Arg::U64(da),
        Arg::U64(db),
        Arg::U64(dka),
        Arg::U64(dkb),
        Arg::Ptr(ptrs[4]),
        Arg::Ptr(ptrs[5]),
        Arg::Ptr(pd),
        Arg::I32(flags as i32),
    ];
    let r = d
        .try_launch_cfg(&m(), &name, 1, c.threads, smem, Some(200 * 1024), &args)
        .map(|p| (d.download::<f32>(pd, 128 * h as usize), p));
    (r, want)
}

fn check(c: Case) {
    let (got, want) = run(c);
    let (got, _) = got.unwrap_or_else(|f| panic!("{c:?}: {f}"));
    let h = c.n / 2;
    for (k, (g, w)) in got.iter().zip(&want).enumerate() {
        let (tid, i) = (k as u32 / h, k as u32 % h);
        assert_eq!(g, w, "{c:?}: thread {tid} d{i} = D{:?}", d_at(tid, i));
    }
}

const SWS: [Sw; 4] = [Sw::None, Sw::B32, Sw::B64, Sw::B128];

#[test]
fn every_swizzle_and_majorness_of_a_and_b() {
    for bf16 in [false, true] {
        for sa in SWS {
            for sb in SWS {
                for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                    if bf16 && sa != sb {
                        continue;
                    }
                    check(Case::new(64, bf16, Some((sa, ta)), (sb, tb)));
                }
            }
        }
    }
}

#[test]
fn every_n_with_a_from_registers_and_from_shared() {
    for (k, n) in [8u32, 16, 64, 128, 192, 256].into_iter().enumerate() {
        for bf16 in [false, true] {
            let sw = SWS[(k + bf16 as usize) % 4];
            let tb = k % 2 == 1;
            check(Case::new(n, bf16, None, (sw, tb)));
            check(Case::new(n, bf16, Some((SWS[(k + 2) % 4], !tb)), (sw, tb)));
        }
    }
}

#[test]
fn two_k_slices_accumulate_with_advanced_descriptors() {
    // K = 32 stored; the second wgmma's descriptors start 32 bytes further along a K-major
    // row (inside a swizzled row: the pattern follows the address), or two K groups on.
    for sw in SWS {
        for mj in [false, true] {
            let mut c = Case::new(128, false, Some((sw, mj)), (sw, mj));
            c.chain = true;
            check(c);
            let mut c = Case::new(64, true, None, (sw, mj));
            c.chain = true;
            check(c);
        }
    }
}

#[test]
fn negated_operands_and_scale_d_zero() {
    for (mode, a, b) in [
        (4, (Sw::B128, true), (Sw::B64, false)),
        (5, (Sw::None, false), (Sw::B32, true)),
    ] {
        let mut c = Case::new(64, false, Some(a), b);
        c.mode = mode;
        check(c);
        let mut c = Case::new(16, true, None, b);
        c.mode = mode;
        c.scale_d = false;
        check(c);
    }
}

/// D[r][c] = r * 256 + c read back raw: each register names its own (row, col), which must
/// be the ISA figure's.
#[test]
fn accumulator_fragment_layout_is_the_isa_table() {
    let la = Layout::new(Sw::None, false, 64, 16, 0);
    let lb = Layout::new(Sw::None, false, 256, 16, la.end().next_multiple_of(1024));
    let (mut a_bits, mut a_off, mut b_bits, mut b_off) = (vec![], vec![], vec![], vec![]);
    for r in 0..64 {
        for k in 0..16 {
            let v = match k {
                0 => r as i32,
                1 => 1,
                _ => 0,
            };
            a_bits.push(enc(v, false));
            a_off.push(la.offset(r, k));
        }
    }
    for col in 0..256 {
        for k in 0..16 {
            let v = match k {
                0 => 256,
                1 => col as i32,
                _ => 0,
            };
            b_bits.push(enc(v, false));
            b_off.push(lb.offset(col, k));
        }
    }
    let d = Dev::new();
    let zeros = vec![0u32; 1024];
    let pd = d.alloc::<f32>(128 * 128);
    let args = [
        Arg::Ptr(d.upload(&a_bits)),
        Arg::Ptr(d.upload(&a_off)),
        Arg::I32(1024),
        Arg::Ptr(d.upload(&b_bits)),
        Arg::Ptr(d.upload(&b_off)),
        Arg::I32(4096),
        Arg::U64(la.desc(0)),
        Arg::U64(lb.desc(0)),
        Arg::U64(0),
        Arg::U64(0),
        Arg::Ptr(d.upload(&zeros)),
        Arg::Ptr(d.upload(&vec![0f32; 128 * 128])),
        Arg::Ptr(pd),
        Arg::I32(LEGAL as i32),
    ];
    d.launch(&m(), "wg_f16_n256_s", 1, 128, lb.end() + 1024, &args);
    let got = d.download::<f32>(pd, 128 * 128);
    for tid in 0..128u32 {
        for i in 0..128u32 {
            let (r, col) = d_at(tid, i);
            assert_eq!(
                got[(tid * 128 + i) as usize],
                (r * 256 + col) as f32,
                "thread {tid} register d{i}"
            );
        }
    }
}

fn fails(c: Case, needle: &str) {
    let (got, _) = run(c);
    match got {
        Ok(_) => panic!("{c:?}: launched without the expected error ({needle})"),
        Err(f) => assert!(f.message.contains(needle), "{c:?}: {}", f.message),
    }
}

#[test]
fn checks_fire_on_broken_kernels_and_not_on_legal_ones() {
    let base = Case::new(64, false, Some((Sw::B128, false)), (Sw::B128, true));
    check(base);
    let with = |flags: u32| Case { flags, ..base };
    // Accumulator stored between the wgmma and its wait_group.
    fails(with(LEGAL | 4), "before the wgmma.wait_group");
    // Generic-proxy stores read by wgmma with no fence.proxy.async.
    fails(with(2), "no fence.proxy.async");
    // The fence after the barrier does not order the other warps' stores.
    fails(with(2 | 16), "not ordered before this async-proxy read");
    // No wgmma.fence before the first wgmma.
    fails(with(1), "wgmma.fence");
    // Only two warps: no warpgroup.
    fails(
        Case {
            threads: 64,
            ..base
        },
        "warpgroup",
    );
    // Warp 3 skips the wgmma and exits.
    fails(with(LEGAL | 32), "without executing");
    // Two groups: wait_group 1 completes the first only; the second's accumulators (the
    // same registers) stay undefined until wait_group 0.
    let two = Case {
        chain: true,
        flags: LEGAL | 2048,
        ..base
    };
    check(two);
    fails(
        Case {
            flags: LEGAL | 2048 | 4096,
            ..two
        },
        "before the wgmma.wait_group",
    );
    // Registers A: the same legal run passes, the missing fence fails.
    let r = Case::new(64, true, None, (Sw::B64, false));
    check(r);
    fails(Case { flags: 1, ..r }, "wgmma.fence");
    // An A-fragment register read while the wgmma may still be reading it.
    fails(
        Case {
            flags: LEGAL | 8192,
            ..r
        },
        "accesses an A-fragment register",
    );
}

#[test]
fn profile_counts_wgmma_as_mma() {
    let c = Case::new(128, false, Some((Sw::B64, false)), (Sw::B32, true));
    let (got, _) = run(c);
    let (_, p) = got.expect("legal");
    // One warpgroup instruction: mma counts it once, with 2*M*N*K flops, as mma.sync is
    // counted per instruction; the four warps' wgmma.* instructions are their own class.
    assert_eq!(p.mma, 1, "{p:?}");
    assert_eq!(p.mma_flops, 2 * 64 * 128 * 16, "{p:?}");
    assert_eq!(p.wgmma_flops, p.mma_flops, "all of it by wgmma: {p:?}");
    let wg = p.warp_instructions.iter().find(|(c, _)| *c == "wgmma");
    assert_eq!(
        wg.map(|x| x.1),
        Some(4 * 5),
        "fence, mma, commit and two waits per warp: {p:?}"
    );
}
