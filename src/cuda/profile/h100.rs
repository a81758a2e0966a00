//! The H100 SXM timing model: one kernel launch's counters in, a modelled time, its roofline
//! floor and the term that bounds it out. Pure functions over fixed constants, so that a
//! number it gives today means the same thing after the first GPU run calibrates it
//! (docs/kernels.md, "The H100 model", states and sources every constant).
//!
//! time = max(floor, LAUNCH_S + max(tensor, issue, smem, dram)) where, on the busiest SM
//! (it holds `ceil(blocks / 132)` blocks: wave quantisation),
//! - tensor = its mma.sync FLOPs at the mma.sync rate (63 % of the wgmma peak), plus its
//!   wgmma FLOPs at the wgmma peak;
//! - issue  = its warp instructions at 4 per clock, scaled down when fewer than 16 warps
//!   are resident (a warp issues a dependent instruction about every 4 clocks), or its
//!   special-function instructions (exp, rsqrt, ...) at 16 lanes per clock, if slower;
//! - smem   = its shared wavefronts plus bank conflicts at one per clock (128 B/clk);
//! - dram   = compulsory bytes, plus re-reads in the proportion the footprint exceeds L2,
//!   at 3.35 TB/s for the whole chip.
//!
//! The terms overlap perfectly (the max), which is the optimistic end; the docs list what
//! the model leaves out.

/// Streaming multiprocessors of an H100 SXM5.
pub const SMS: f64 = 132.0;
/// SM clock: the boost clock at which 132 SMs x 4096 dense fp16 FLOP/clk give 989 TF/s.
pub const CLOCK_HZ: f64 = 1.83e9;
/// Dense fp16 tensor FLOP/s with fp32 accumulation through wgmma (NVIDIA's H100 SXM figure).
pub const WGMMA_FLOPS: f64 = 989e12;
/// What mma.sync (the portable kernels' tensor instruction) reaches of the wgmma peak:
/// ~63 %, as measured by Spector et al., "ThunderKittens" (2024).
pub const MMA_SYNC_FRACTION: f64 = 0.63;
/// HBM3 bandwidth.
pub const DRAM_BYTES_PER_S: f64 = 3.35e12;
/// L2 cache (50 MiB).
pub const L2_BYTES: f64 = 50.0 * 1024.0 * 1024.0;
/// Shared-memory bandwidth per SM: one 128-byte wavefront per clock.
pub const SHARED_WAVEFRONTS_PER_CLK: f64 = 1.0;
/// Warp schedulers per SM, each issuing one warp instruction per clock.
pub const SCHEDULERS: f64 = 4.0;
/// Clocks between two dependent instructions of one warp: a scheduler needs this many
/// warps to issue every clock.
pub const DEPENDENT_ISSUE_CLK: f64 = 4.0;
/// Special-function (MUFU) warp instructions per clock per SM: 16 lanes, 4 per scheduler
/// (132 x 16 x 1.83 GHz = 3.9 T exp/s, the rate the FlashAttention-3 paper quotes).
pub const SFU_WARP_INSTRUCTIONS_PER_CLK: f64 = 0.5;
/// Fixed cost of one launch inside a CUDA graph: the gap between consecutive kernels plus
/// the ramp of the first wave.
pub const LAUNCH_S: f64 = 1.5e-6;
/// Residency limits per SM (sm_90).
pub const MAX_WARPS_PER_SM: u64 = 64;
pub const MAX_BLOCKS_PER_SM: u64 = 32;
pub const SHARED_PER_SM: u64 = 228 * 1024;
/// Shared memory the driver reserves per resident block.
pub const SHARED_RESERVED_PER_BLOCK: u64 = 1024;

/// The peak a FLOP floor divides by: the chip's, so that the floor is a true roofline.
pub const PEAK_FLOPS: f64 = WGMMA_FLOPS;

/// What one launch did, as vgpu counts it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Launch {
    pub blocks: u64,
    pub threads_per_block: u64,
    /// Static plus dynamic shared memory per block.
    pub shared_bytes_per_block: u64,
    pub warp_instructions: u64,
    /// Warp instructions of the fp16/fp32/fp64 classes (non-tensor arithmetic).
    pub fp_instructions: u64,
    /// Warp instructions of the special-function unit (vgpu's `sfu` class).
    pub sfu_instructions: u64,
    pub mma: u64,
    /// Tensor FLOPs, wgmma's included.
    pub mma_flops: u64,
    /// The part of `mma_flops` done by wgmma, which runs at the full tensor rate.
    pub wgmma_flops: u64,
    pub global_bytes_read: u64,
    pub global_bytes_written: u64,
    pub shared_requests: u64,
    /// Conflict-free wavefronts of those requests (one per 128 bytes).
    pub shared_wavefronts: u64,
    /// Extra wavefronts from bank conflicts.
    pub bank_conflicts: u64,
}

impl Launch {
    /// The arithmetic as executed: mma FLOPs of the padded tiles, plus one FLOP per lane of
    /// every floating-point warp instruction (an FMA counts one).
    pub fn flops(&self) -> u64 {
        self.mma_flops + 32 * self.fp_instructions
    }
}

/// Bytes a launch must move at least: the op's buffers and weights, once each.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Compulsory {
    pub read: u64,
    pub written: u64,
}

/// Which term sets a launch's time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    Tensor,
    Issue,
    Smem,
    Dram,
    Latency,
}

impl Bound {
    pub fn name(self) -> &'static str {
        match self {
            Bound::Tensor => "tensor",
            Bound::Issue => "issue",
            Bound::Smem => "smem",
            Bound::Dram => "dram",
            Bound::Latency => "latency",
        }
    }
}

/// The model's terms for one launch (or summed over launches), in seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Terms {
    pub tensor: f64,
    pub issue: f64,
    pub smem: f64,
    pub dram: f64,
    pub latency: f64,
}

impl Terms {
    pub fn add(&mut self, o: &Terms) {
        self.tensor += o.tensor;
        self.issue += o.issue;
        self.smem += o.smem;
        self.dram += o.dram;
        self.latency += o.latency;
    }

    /// The largest term; a tie goes to the earlier of tensor, issue, smem, dram, latency.
    pub fn bound(&self) -> Bound {
        let all = [
            (Bound::Tensor, self.tensor),
            (Bound::Issue, self.issue),
            (Bound::Smem, self.smem),
            (Bound::Dram, self.dram),
            (Bound::Latency, self.latency),
        ];
        all.iter()
            .fold(all[0], |best, &t| if t.1 > best.1 { t } else { best })
            .0
    }
}

/// One launch, modelled.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Modelled {
    pub time_s: f64,
    pub floor_s: f64,
    /// [`Launch::flops`].
    pub flops: u64,
    /// Compulsory bytes (read + written), the floor's bytes.
    pub bytes: u64,
    /// Bytes the model charges to DRAM (compulsory plus L2 misses of re-reads).
    pub dram_bytes: f64,
    pub terms: Terms,
    pub bound: Bound,
    /// Blocks resident per SM, and waves of them over the chip.
    pub blocks_per_sm: u64,
    pub waves: u64,
}

/// The roofline floor of `flops` and `bytes`: max(FLOPs / peak, bytes / bandwidth), in s.
pub fn floor_s(flops: u64, bytes: u64) -> f64 {
    (flops as f64 / PEAK_FLOPS).max(bytes as f64 / DRAM_BYTES_PER_S)
}

/// Blocks of this shape one SM holds at once (threads and shared memory; registers are
/// not modelled: vgpu sees PTX's virtual registers, not ptxas's allocation).
pub fn blocks_per_sm(threads_per_block: u64, shared_bytes_per_block: u64) -> u64 {
    let warps = threads_per_block.div_ceil(32).max(1);
    let by_warps = MAX_WARPS_PER_SM / warps;
    let by_shared = if shared_bytes_per_block == 0 {
        MAX_BLOCKS_PER_SM
    } else {
        SHARED_PER_SM / (shared_bytes_per_block + SHARED_RESERVED_PER_BLOCK)
    };
    by_warps.min(by_shared).clamp(1, MAX_BLOCKS_PER_SM)
}

/// Bytes DRAM serves: the compulsory bytes (at most what the kernel touched), plus its
/// re-reads and re-writes beyond them in the proportion of the footprint L2 cannot hold.
pub fn dram_bytes(l: &Launch, c: Compulsory) -> f64 {
    let read = c.read.min(l.global_bytes_read) as f64;
    let written = c.written.min(l.global_bytes_written) as f64;
    let footprint = read + written;
    let miss = if footprint > L2_BYTES {
        1.0 - L2_BYTES / footprint
    } else {
        0.0
    };
    let again = (l.global_bytes_read as f64 - read) + (l.global_bytes_written as f64 - written);
    footprint + miss * again
}

/// Models one launch on an H100 SXM (see the module docs for the formula).
pub fn model(l: &Launch, c: Compulsory) -> Modelled {
    let blocks = l.blocks.max(1);
    let on_busiest = blocks.div_ceil(SMS as u64);
    let share = on_busiest as f64 / blocks as f64;
    let per_sm = blocks_per_sm(l.threads_per_block, l.shared_bytes_per_block);
    let resident_warps = on_busiest.min(per_sm) * l.threads_per_block.div_ceil(32).max(1);
    let issue_per_clk =
        SCHEDULERS * (resident_warps as f64 / (SCHEDULERS * DEPENDENT_ISSUE_CLK)).min(1.0);
    let mma_sync_per_sm = WGMMA_FLOPS * MMA_SYNC_FRACTION / SMS;
    let wgmma_per_sm = WGMMA_FLOPS / SMS;
    let wgmma = l.wgmma_flops.min(l.mma_flops);
    let dram = dram_bytes(l, c);
    let terms = Terms {
        tensor: ((l.mma_flops - wgmma) as f64 / mma_sync_per_sm + wgmma as f64 / wgmma_per_sm)
            * share,
        issue: (l.warp_instructions as f64 / issue_per_clk)
            .max(l.sfu_instructions as f64 / SFU_WARP_INSTRUCTIONS_PER_CLK)
            * share
            / CLOCK_HZ,
        smem: (l.shared_wavefronts + l.bank_conflicts) as f64 * share
            / (SHARED_WAVEFRONTS_PER_CLK * CLOCK_HZ),
        dram: dram / DRAM_BYTES_PER_S,
        latency: LAUNCH_S,
    };
    let flops = l.flops();
    let bytes = c.read.min(l.global_bytes_read) + c.written.min(l.global_bytes_written);
    let floor = floor_s(flops, bytes);
    let busy = terms
        .tensor
        .max(terms.issue)
        .max(terms.smem)
        .max(terms.dram);
    Modelled {
        time_s: floor.max(LAUNCH_S + busy),
        floor_s: floor,
        flops,
        bytes,
        dram_bytes: dram,
        terms,
        bound: terms.bound(),
        blocks_per_sm: per_sm,
        waves: blocks.div_ceil(per_sm * SMS as u64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * b.abs().max(1e-12)
    }

    /// `GemmTile::pair_wins` weighs the GEMM's forms with this model's L2 and rates; its
    /// copies of them must be these.
    #[test]
    fn gemm_selection_uses_this_models_constants() {
        use crate::graph::gemm_tile::{SELECT_FLOPS_PER_DRAM_BYTE, SELECT_L2_BYTES, SELECT_SMS};
        assert_eq!(SELECT_L2_BYTES, L2_BYTES);
        assert_eq!(SELECT_FLOPS_PER_DRAM_BYTE, WGMMA_FLOPS / DRAM_BYTES_PER_S);
        assert_eq!(SELECT_SMS as f64, SMS);
    }

    /// Pure mma: 528 blocks of 4 warps (4 per SM, 16 warps: full issue), 1024 m16n8k16 per
    /// warp and nothing else. Busiest SM: 16 warps x 1024 x 4096 FLOP = 67.1 MFLOP at
    /// 623.07e12 / 132 = 4.720e12 FLOP/s = 14.22 us; issue: 16,384 instructions at
    /// 4 x 1.83e9 = 2.24 us.
    #[test]
    fn pure_mma_kernel_is_tensor_bound_at_the_mma_sync_rate() {
        let mma = 528 * 4 * 1024;
        let l = Launch {
            blocks: 528,
            threads_per_block: 128,
            warp_instructions: mma,
            mma,
            mma_flops: mma * 4096,
            ..Default::default()
        };
        let m = model(&l, Compulsory::default());
        let tensor = 16.0 * 1024.0 * 4096.0 / (989e12 * 0.63 / 132.0);
        assert!(close(m.terms.tensor, tensor), "{m:?}");
        assert!(
            close(m.terms.issue, 16.0 * 1024.0 / (4.0 * 1.83e9)),
            "{m:?}"
        );
        assert_eq!(m.bound, Bound::Tensor);
        assert!(close(m.time_s, 1.5e-6 + tensor));
        assert!(close(m.floor_s, (mma * 4096) as f64 / 989e12));
        assert_eq!((m.blocks_per_sm, m.waves), (16, 1));
        // One more block of the same work: the busiest SM runs 5, a quantisation step of
        // 25 % for 0.2 % more work.
        let more = model(
            &Launch {
                blocks: 529,
                mma_flops: 529 * 4 * 1024 * 4096,
                ..l
            },
            Compulsory::default(),
        );
        assert!(close(
            more.terms.tensor,
            5.0 * 4.0 * 1024.0 * 4096.0 / (989e12 * 0.63 / 132.0)
        ));
    }

    /// The same work through wgmma runs at the full peak (0.63 of the mma.sync time); a mix
    /// adds the two parts at their own rates.
    #[test]
    fn wgmma_flops_run_at_the_full_tensor_rate() {
        let flops = 528 * 4 * 1024 * 4096u64;
        let sync = Launch {
            blocks: 528,
            threads_per_block: 128,
            warp_instructions: 528 * 4 * 1024,
            mma: 528 * 4 * 1024,
            mma_flops: flops,
            ..Default::default()
        };
        let wg = Launch {
            mma: 528 * 16,
            wgmma_flops: flops,
            ..sync
        };
        let (ts, tw) = (
            model(&sync, Compulsory::default()).terms.tensor,
            model(&wg, Compulsory::default()).terms.tensor,
        );
        let busiest = 16.0 * 1024.0 * 4096.0;
        assert!(close(ts, busiest / (989e12 * 0.63 / 132.0)), "{ts}");
        assert!(close(tw, busiest / (989e12 / 132.0)), "{tw}");
        let half = Launch {
            wgmma_flops: flops / 2,
            ..sync
        };
        let th = model(&half, Compulsory::default()).terms.tensor;
        assert!(close(th, (ts + tw) / 2.0), "{th}");
        // A record claiming more wgmma than tensor FLOPs is held to mma_flops.
        let over = Launch {
            wgmma_flops: 2 * flops,
            ..sync
        };
        assert!(close(model(&over, Compulsory::default()).terms.tensor, tw));
    }

    /// Pure copy of 256 MiB: compulsory bytes at 3.35 TB/s; the counted re-reads are free
    /// while the footprint fits L2, and miss in proportion once it does not.
    #[test]
    fn pure_copy_kernel_is_dram_bound_and_l2_serves_rereads() {
        let n: u64 = 256 << 20;
        let l = Launch {
            blocks: 132 * 64,
            threads_per_block: 256,
            warp_instructions: n / 512 * 4,
            global_bytes_read: n,
            global_bytes_written: n,
            ..Default::default()
        };
        let c = Compulsory {
            read: n,
            written: n,
        };
        let m = model(&l, c);
        let dram = 2.0 * n as f64 / 3.35e12;
        assert!(close(m.terms.dram, dram), "{m:?}");
        assert_eq!(m.bound, Bound::Dram);
        assert!(close(m.time_s, 1.5e-6 + dram));
        assert!(close(m.floor_s, dram));
        assert_eq!(m.bytes, 2 * n);
        // Each byte read twice: footprint 512 MiB, L2 holds 50 of it, so 462/512 of the
        // 256 MiB re-read come from DRAM again.
        let twice = model(
            &Launch {
                global_bytes_read: 2 * n,
                ..l
            },
            c,
        );
        let again = n as f64 * (1.0 - 50.0 / 512.0);
        assert!(close(twice.dram_bytes, 2.0 * n as f64 + again));
        // A 4 MiB copy read twice: L2 holds it all, the re-read costs nothing.
        let small = Launch {
            global_bytes_read: 8 << 20,
            global_bytes_written: 4 << 20,
            ..l
        };
        let s = model(
            &small,
            Compulsory {
                read: 4 << 20,
                written: 4 << 20,
            },
        );
        assert!(close(s.dram_bytes, (8 << 20) as f64));
    }

    /// 32-way bank conflicts: 1,000 wavefronts per SM become 32,000, 0.55 us -> 17.5 us.
    #[test]
    fn bank_conflicted_kernel_is_smem_bound() {
        let base = Launch {
            blocks: 132,
            threads_per_block: 512,
            warp_instructions: 132 * 2000,
            shared_requests: 132 * 1000,
            shared_wavefronts: 132 * 1000,
            ..Default::default()
        };
        let clean = model(&base, Compulsory::default());
        assert!(close(clean.terms.smem, 1000.0 / 1.83e9));
        let conflicted = model(
            &Launch {
                bank_conflicts: 132 * 1000 * 31,
                ..base
            },
            Compulsory::default(),
        );
        assert!(close(conflicted.terms.smem, 32_000.0 / 1.83e9));
        assert_eq!(conflicted.bound, Bound::Smem);
        assert!(close(conflicted.time_s, 1.5e-6 + 32_000.0 / 1.83e9));
    }

    /// One warp per SM issues once every 4 clocks; one tiny block is all launch cost.
    #[test]
    fn low_occupancy_slows_issue_and_tiny_kernels_are_latency_bound() {
        let l = Launch {
            blocks: 132,
            threads_per_block: 32,
            warp_instructions: 132 * 10_000,
            ..Default::default()
        };
        let m = model(&l, Compulsory::default());
        assert!(close(m.terms.issue, 10_000.0 / (0.25 * 1.83e9)));
        assert_eq!(m.bound, Bound::Issue);
        let tiny = model(
            &Launch {
                blocks: 1,
                warp_instructions: 10,
                ..l
            },
            Compulsory::default(),
        );
        assert_eq!(tiny.bound, Bound::Latency);
        assert!(tiny.time_s >= 1.5e-6 && tiny.time_s < 1.6e-6);
    }

    /// exp-heavy: 10,000 SFU warp instructions of 40,000 per SM take 20,000 clocks, not
    /// 10,000.
    #[test]
    fn special_functions_issue_at_16_lanes_per_clock() {
        let l = Launch {
            blocks: 132,
            threads_per_block: 512,
            warp_instructions: 132 * 40_000,
            sfu_instructions: 132 * 10_000,
            ..Default::default()
        };
        let m = model(&l, Compulsory::default());
        assert!(close(m.terms.issue, 20_000.0 / 1.83e9), "{m:?}");
        assert_eq!(m.bound, Bound::Issue);
    }

    #[test]
    fn occupancy_limits() {
        assert_eq!(blocks_per_sm(1024, 0), 2);
        assert_eq!(blocks_per_sm(32, 0), 32);
        assert_eq!(blocks_per_sm(128, 100 * 1024), 2);
        assert_eq!(blocks_per_sm(128, 227 * 1024), 1);
    }

    proptest! {
        /// Whatever the counters, a launch never beats its own roofline floor.
        #[test]
        fn time_is_never_below_the_floor(
            blocks in 1u64..100_000, threads in 1u64..1025, smem in 0u64..200_000,
            w in 0u64..1 << 40, fp in 0u64..1 << 40, sfu in 0u64..1 << 36,
            mma in 0u64..1 << 30, wgmma in 0u64..1 << 40,
            rd in 0u64..1 << 36, wr in 0u64..1 << 36, req in 0u64..1 << 30,
            conf in 0u64..1 << 30, cr in 0u64..1 << 36, cw in 0u64..1 << 36,
        ) {
            let l = Launch {
                blocks,
                threads_per_block: threads,
                shared_bytes_per_block: smem,
                warp_instructions: w + fp + sfu + mma,
                fp_instructions: fp,
                sfu_instructions: sfu,
                mma,
                mma_flops: mma * 4096,
                wgmma_flops: wgmma,
                global_bytes_read: rd,
                global_bytes_written: wr,
                shared_requests: req,
                shared_wavefronts: req,
                bank_conflicts: conf,
            };
            let m = model(&l, Compulsory { read: cr, written: cw });
            prop_assert!(m.time_s >= m.floor_s);
            prop_assert!(m.time_s >= LAUNCH_S);
            prop_assert!(m.time_s >= LAUNCH_S + m.terms.tensor.max(m.terms.dram));
        }
    }
}
