//! The block tile of `kernels/gemm.cu`, chosen per layer shape by one function,
//! [`GemmTile::select`]. Host-side (no device), so a plan names the kernels it launches and
//! the launcher calls the same function.
//!
//! Why per shape: a 132-SM H100 runs `ceil(blocks / 132)` blocks on its busiest SM, so a
//! grid of 96 blocks (vit_b's N = 768 at 128x256) leaves 27 % of the SMs idle and a grid of
//! 32 (the neck, N = 256) 76 %. The choice reads only N, at the encoder's 4096 rows per
//! image (64x64 tokens at 1024 px), never the launch's M, so it cannot depend on the batch
//! size; and no tile changes any output's k-summation order, so every choice gives the
//! same bits anyway.

/// Rows per image the choice is made for: the encoder's 64x64 token grid at 1024 px.
pub const SELECT_ROWS: usize = 4096;
/// SMs of the H100 SXM the grid is sized for.
pub const SELECT_SMS: usize = 132;
/// BK of every variant (fp16 per shared tile row).
pub const GEMM_BLOCK_K: usize = 64;
/// cp.async stages of every portable (`kernels/gemm.cu`) variant.
pub const GEMM_STAGES: usize = 3;
/// Stages of the Hopper variants (`kernels/gemm_sm90a.cu`): one more, because a wgmma
/// group stays in flight while the next tiles load.
pub const GEMM_STAGES_SM90A: usize = 4;

/// Which build of a tile's kernel a launch runs: the portable mma.sync one
/// (`kernels/gemm.cu`, any sm_80+), the TMA-fed, warp-specialised, persistent wgmma one
/// (`kernels/gemm_ws_sm90a.cu`, which replaces its entry points on compute capability 9.0,
/// so the graph's kernel names hold on every device), its M-pair form (entry points
/// suffixed [`GEMM_PAIR_SUFFIX`]: each block step computes two vertically adjacent tiles,
/// one per consumer warpgroup, which share every stage's W box), or the cp.async-fed wgmma
/// one (`kernels/gemm_sm90a.cu`, entry points suffixed [`GEMM_CP_SUFFIX`]), Hopper's
/// fallback. Same results (bit for bit between the Hopper builds); the launch geometry
/// differs ([`GemmTile::threads`], [`GemmTile::smem_bytes`], [`GemmTile::persistent_blocks`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GemmBuild {
    Portable,
    Sm90a,
    Sm90aWs,
    Sm90aWsPair,
}

/// Suffix of the cp.async wgmma entry points (`gemm_bias_f16_128x192_cp`, ...).
pub const GEMM_CP_SUFFIX: &str = "_cp";
/// Suffix of the M-pair warp-specialised entry points (`gemm_bias_f16_128x192_m2`, ...).
pub const GEMM_PAIR_SUFFIX: &str = "_m2";
/// Bytes of the full and empty mbarriers after the stages of a [`GemmBuild::Sm90aWs`]
/// block: 2 x [`GEMM_STAGES_SM90A`] x 8.
pub const GEMM_WS_BARRIER_BYTES: usize = 2 * GEMM_STAGES_SM90A * 8;
/// The H100's L2 (50 MiB) and its DRAM rate over its tensor rate (3.35 TB/s over 989
/// TFLOP/s), as `cuda::profile::h100` models them: what [`GemmTile::pair_wins`] weighs.
/// (Kept here because graph/ sits below cuda/; `cuda::profile::h100`'s tests check that
/// the two agree.)
pub const SELECT_L2_BYTES: f64 = 50.0 * 1024.0 * 1024.0;
pub const SELECT_FLOPS_PER_DRAM_BYTE: f64 = 989e12 / 3.35e12;

impl GemmBuild {
    /// The one choice of build for a GEMM launch. `sm90a`: the tile's entry point was
    /// loaded from an `*_sm90a` module (compute capability 9.0, not `SAMRT_CUDA_ARCH=sm_80`),
    /// which makes it the warp-specialised one; `tma_ok`: both operands pass
    /// [`tma_operand_ok`]; `pair`: [`GemmTile::pair_wins`] for the layer. Reads nothing that
    /// depends on M, so a batch of images runs the same build as each image alone (and
    /// every build gives the same bits anyway).
    pub fn select(sm90a: bool, tma_ok: bool, pair: bool) -> GemmBuild {
        match (sm90a, tma_ok, pair) {
            (false, _, _) => GemmBuild::Portable,
            (true, true, true) => GemmBuild::Sm90aWsPair,
            (true, true, false) => GemmBuild::Sm90aWs,
            (true, false, _) => GemmBuild::Sm90a,
        }
    }

    /// The builds that can run where `select` chose `self` (the op rows compare them bit
    /// for bit): on Hopper with tensor maps both warp-specialised forms (the pair where
    /// `tile` has one) and the cp.async fallback.
    pub fn can_replace(self, chosen: GemmBuild, tile: GemmTile) -> bool {
        use GemmBuild::*;
        match (self, chosen) {
            (b, c) if b == c => true,
            (Sm90a, Sm90aWs | Sm90aWsPair) | (Sm90aWs, Sm90aWsPair) => true,
            (Sm90aWsPair, Sm90aWs) => tile.has_pair(),
            _ => false,
        }
    }
}

/// Whether a tensor map can describe a row-major fp16 `[rows][k]` operand at device
/// address `addr` for the warp-specialised kernels: the global address 16-byte aligned, the row
/// stride (`k * 2` bytes) a multiple of 16 and below 2^40, and every dimension below 2^32.
/// The boxes ([64 k][BM or BN rows], 128 B inner extent under the 128-byte swizzle, at
/// most 256 rows) hold by construction for every [`GemmTile`]. Where this fails the
/// cp.async wgmma build runs instead.
pub fn tma_operand_ok(addr: u64, rows: usize, k: usize) -> bool {
    let stride = k as u64 * 2;
    addr.is_multiple_of(16)
        && stride.is_multiple_of(16)
        && stride < 1 << 40
        && (rows as u64) < 1 << 32
        && (k as u64) < 1 << 32
}

/// One block tile (`BMxBN`), the suffix of its entry points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GemmTile {
    /// 8 warps of 64x64.
    T128x256,
    /// 6 warps of 64x64.
    T128x192,
    /// 8 warps of 32x32: narrow N (the neck's 256 channels).
    T64x128,
}

impl GemmTile {
    pub const ALL: [GemmTile; 3] = [GemmTile::T128x256, GemmTile::T128x192, GemmTile::T64x128];

    /// (BM, BN, portable warps).
    fn dims(self) -> (usize, usize, usize) {
        match self {
            GemmTile::T128x256 => (128, 256, 8),
            GemmTile::T128x192 => (128, 192, 6),
            GemmTile::T64x128 => (64, 128, 8),
        }
    }

    pub fn block_m(self) -> usize {
        self.dims().0
    }

    pub fn block_n(self) -> usize {
        self.dims().1
    }

    /// Threads per block. Portable: the warp grid of `kernels/gemm.cu`. Sm90a: one
    /// warpgroup (4 warps) per 64 rows, since wgmma needs whole warpgroups (128x192's 6
    /// warps become 8). Sm90aWs: those consumer warpgroups plus one producer warpgroup;
    /// Sm90aWsPair the same (each consumer warpgroup takes a whole tile).
    pub fn threads(self, build: GemmBuild) -> usize {
        match build {
            GemmBuild::Portable => self.dims().2 * 32,
            GemmBuild::Sm90a => self.block_m() / 64 * 128,
            GemmBuild::Sm90aWs | GemmBuild::Sm90aWsPair => (self.block_m() / 64 + 1) * 128,
        }
    }

    /// Rows of A one block step covers: BM, or two tiles' worth for Sm90aWsPair.
    pub fn step_rows(self, build: GemmBuild) -> usize {
        match build {
            GemmBuild::Sm90aWsPair => 2 * self.block_m(),
            _ => self.block_m(),
        }
    }

    /// Dynamic shared memory: [`GEMM_STAGES`] (portable) or [`GEMM_STAGES_SM90A`] stages of
    /// one A (of [`Self::step_rows`]) and one W tile of fp16, and for the warp-specialised
    /// builds their mbarriers after them.
    pub fn smem_bytes(self, build: GemmBuild) -> usize {
        let (stages, extra) = match build {
            GemmBuild::Portable => (GEMM_STAGES, 0),
            GemmBuild::Sm90a => (GEMM_STAGES_SM90A, 0),
            GemmBuild::Sm90aWs | GemmBuild::Sm90aWsPair => {
                (GEMM_STAGES_SM90A, GEMM_WS_BARRIER_BYTES)
            }
        };
        stages * (self.step_rows(build) + self.block_n()) * GEMM_BLOCK_K * 2 + extra
    }

    /// Blocks of a persistent (Sm90aWs, Sm90aWsPair) launch of `build` over `m x n` on
    /// `sms` SMs, a block step covering [`Self::step_rows`]: each block walks steps b,
    /// b + blocks, ...,
    /// so with per_block = ceil(steps / sms) and blocks = ceil(steps / per_block) every
    /// block gets per_block steps or one fewer, and no SM holds two blocks. Fewer blocks
    /// than SMs where that evens the load (288 tiles on 132 SMs: 96 blocks of 3, not 132
    /// blocks of 2 or 3), so the wave model, which spreads work evenly over blocks, sees
    /// the imbalance a real run has.
    pub fn persistent_blocks(self, build: GemmBuild, m: usize, n: usize, sms: usize) -> usize {
        let steps = m.div_ceil(self.step_rows(build)) * n.div_ceil(self.block_n());
        let per_block = steps.div_ceil(sms.max(1));
        steps.div_ceil(per_block.max(1))
    }

    /// Whether this tile has M-pair entry points: 128x192, whose pair holds 192
    /// accumulators per consumer thread (128x256's would need 256).
    pub fn has_pair(self) -> bool {
        self == GemmTile::T128x192
    }

    /// Whether the M-pair build is faster than the plain warp-specialised one for a layer
    /// of `n` outputs, depth `k` and `out_bytes` of output traffic per element (2 for fp16,
    /// 8 for the fp32 residual read and written), at [`SELECT_ROWS`] rows on
    /// [`SELECT_SMS`] SMs, on the terms `cuda::profile::h100` models: the tensor time of
    /// the busiest block, against DRAM traffic of the compulsory bytes plus the share of
    /// the tile re-reads (A once per N tile, W once per M step) that the L2 cannot hold.
    /// Pairing halves W's re-reads and halves the block steps: it wins where the operands
    /// overflow the L2 and there are enough steps to keep the SMs busy (vit_h's MLP lin2,
    /// K = 5120: 97 MB), and loses on vit_b's 128 steps of N = 768, which pairing would
    /// leave on 64 SMs.
    pub fn pair_wins(self, n: usize, k: usize, out_bytes: usize) -> bool {
        if !self.has_pair() {
            return false;
        }
        let cost = |build: GemmBuild| {
            let (rows, bn, step_rows) = (SELECT_ROWS, self.block_n(), self.step_rows(build));
            let (tm, tn) = (rows.div_ceil(step_rows), n.div_ceil(bn));
            let blocks = self.persistent_blocks(build, rows, n, SELECT_SMS);
            let flops = 2.0 * (tm * step_rows * tn * bn * k) as f64 / blocks as f64;
            let tensor = flops * SELECT_SMS as f64;
            let (a, w) = ((rows * k * 2) as f64, (n * k * 2) as f64);
            let footprint = a + w + (rows * n * out_bytes) as f64;
            let again = a * (tn - 1) as f64 + w * (tm - 1) as f64;
            let miss = (1.0 - SELECT_L2_BYTES / footprint).max(0.0);
            let dram = (footprint + miss * again) * SELECT_FLOPS_PER_DRAM_BYTE;
            tensor.max(dram)
        };
        cost(GemmBuild::Sm90aWsPair) < cost(GemmBuild::Sm90aWs)
    }

    /// The entry-point suffix, `BMxBN`.
    pub fn suffix(self) -> &'static str {
        match self {
            GemmTile::T128x256 => "128x256",
            GemmTile::T128x192 => "128x192",
            GemmTile::T64x128 => "64x128",
        }
    }

    /// Main-loop clocks per mma on one SM, relative to the tensor rate, as the H100 model
    /// gives them from vgpu's counters (docs/kernels.md, "GEMM"): the 64x64 warp tiles are
    /// tensor-bound; the 32x32 one is bound by shared memory (2 ldmatrix wavefronts plus
    /// 0.75 of cp.async fill per mma against 1.59 clocks of tensor time). Its 8 warps issue
    /// at twice the rate of the 4 warps of 32x64 it replaced, which were issue-bound.
    fn relative_cost(self) -> f64 {
        match self {
            GemmTile::T128x256 | GemmTile::T128x192 => 1.0,
            GemmTile::T64x128 => 1.73,
        }
    }

    /// Share of the machine's block slots doing useful work for `rows x n`: blocks over
    /// (SMs x blocks on the busiest SM), times the share of the tiles inside the matrix.
    pub fn fill(self, rows: usize, n: usize) -> f64 {
        let (bm, bn) = (self.block_m(), self.block_n());
        let (tm, tn) = (rows.div_ceil(bm), n.div_ceil(bn));
        let blocks = tm * tn;
        let slots = SELECT_SMS * blocks.div_ceil(SELECT_SMS);
        let inside = (rows * n) as f64 / ((tm * bm) * (tn * bn)) as f64;
        blocks as f64 / slots as f64 * inside
    }

    /// The tile for a GEMM with `n` output columns: the best fill over relative cost at
    /// [`SELECT_ROWS`] rows; a tie goes to the earlier (larger) tile. Depends on nothing else.
    pub fn select(n: usize) -> GemmTile {
        let score = |t: GemmTile| t.fill(SELECT_ROWS, n.max(1)) / t.relative_cost();
        GemmTile::ALL.into_iter().fold(GemmTile::ALL[0], |best, t| {
            if score(t) > score(best) + 1e-9 {
                t
            } else {
                best
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every vit_b/l/h encoder GEMM at 1024 px (qkv 3C, proj C, MLP 4C and C, neck 256,
    /// and the 768-wide patch embedding): the chosen grid fills the H100 to within 10 %,
    /// or runs at least 1.5 waves; the table in docs/kernels.md lists these.
    #[test]
    fn every_encoder_gemm_fills_the_machine() {
        for c in [768, 1024, 1280] {
            for n in [3 * c, c, 4 * c, 256] {
                let t = GemmTile::select(n);
                let blocks = SELECT_ROWS.div_ceil(t.block_m()) * n.div_ceil(t.block_n());
                let waves = blocks as f64 / SELECT_SMS as f64;
                let fill = t.fill(SELECT_ROWS, n);
                assert!(fill >= 0.9 || waves >= 1.5, "n={n}: {t:?} {fill} {waves}");
            }
        }
        assert_eq!(GemmTile::select(768), GemmTile::T128x192);
        assert_eq!(GemmTile::select(3072), GemmTile::T128x256);
        assert_eq!(GemmTile::select(256), GemmTile::T64x128);
    }

    /// The geometry `kernels/gemm.cu` and `kernels/gemm_sm90a.cu` are written for (their
    /// `Tile` / `WgTile` parameters), and both builds within H100's 227 KiB per block.
    #[test]
    fn launch_geometry_per_build() {
        let p = GemmBuild::Portable;
        let h = GemmBuild::Sm90a;
        let got: Vec<_> = GemmTile::ALL
            .iter()
            .map(|&t| (t.threads(p), t.smem_bytes(p), t.threads(h), t.smem_bytes(h)))
            .collect();
        assert_eq!(
            got,
            [
                (256, 147_456, 256, 196_608),
                (192, 122_880, 256, 163_840),
                (256, 73_728, 128, 98_304)
            ]
        );
        // `kernels/gemm_ws_sm90a.cu`'s `WsTile`: a producer warpgroup more, the barriers
        // after the same stages; TMA boxes of at most 256 rows.
        let ws = GemmBuild::Sm90aWs;
        let got: Vec<_> = GemmTile::ALL
            .iter()
            .map(|&t| (t.threads(ws), t.smem_bytes(ws)))
            .collect();
        assert_eq!(got, [(384, 196_672), (384, 163_904), (256, 98_368)]);
        // The M pair of 128x192 (`Tile128x192M2`): 4 stages of 256 + 192 rows, 224 KiB +
        // barriers, under the 227 KiB a block may have.
        let pair = GemmBuild::Sm90aWsPair;
        let t = GemmTile::T128x192;
        assert_eq!((t.threads(pair), t.smem_bytes(pair)), (384, 229_440));
        assert!(t.smem_bytes(pair) <= 227 * 1024 && t.step_rows(pair) <= 256);
        for t in GemmTile::ALL {
            assert!(t.smem_bytes(h) <= 227 * 1024, "{t:?}");
            assert!(t.smem_bytes(ws) <= 227 * 1024, "{t:?}");
            assert!(t.block_m() <= 256 && t.block_n() <= 256, "{t:?}");
        }
    }

    /// Persistent grids: even tiles per block, never more blocks than SMs.
    #[test]
    fn persistent_blocks_even_out_the_tiles() {
        let (t, ws) = (GemmTile::T128x256, GemmBuild::Sm90aWs);
        // vit_b qkv (4096 x 2304): 32 x 9 = 288 tiles, 3 per block.
        assert_eq!(t.persistent_blocks(ws, 4096, 2304, 132), 96);
        // MLP lin1 (4096 x 3072): 384 tiles, 3 per block on 128 blocks.
        assert_eq!(t.persistent_blocks(ws, 4096, 3072, 132), 128);
        // vit_b proj (4096 x 768 on 128x192): 128 tiles, one each.
        assert_eq!(
            GemmTile::T128x192.persistent_blocks(ws, 4096, 768, 132),
            128
        );
        // vit_h lin2 (4096 x 1280) in M pairs: 16 x 7 = 112 steps, one each.
        assert_eq!(
            GemmTile::T128x192.persistent_blocks(GemmBuild::Sm90aWsPair, 4096, 1280, 132),
            112
        );
        assert_eq!(GemmTile::T64x128.persistent_blocks(ws, 1, 2, 132), 1);
        for (m, n) in [(1, 2), (4097, 3080), (300, 520), (65536, 4096)] {
            for sms in [1, 7, 132] {
                let b = t.persistent_blocks(ws, m, n, sms);
                let tiles = m.div_ceil(128) * n.div_ceil(256);
                let per = tiles.div_ceil(b);
                assert!(b <= sms && b <= tiles, "{m}x{n} on {sms}: {b}");
                // The last round is short by fewer than `b` tiles: counts differ by <= 1.
                assert!(
                    per * b >= tiles && (per - 1) * b < tiles,
                    "{m}x{n} on {sms}"
                );
                assert_eq!(per, tiles.div_ceil(sms), "{m}x{n} on {sms}");
            }
        }
    }

    #[test]
    fn build_selection_and_tma_preconditions() {
        use GemmBuild::*;
        for pair in [false, true] {
            assert_eq!(GemmBuild::select(false, true, pair), Portable);
            assert_eq!(GemmBuild::select(false, false, pair), Portable);
            assert_eq!(GemmBuild::select(true, false, pair), Sm90a);
        }
        assert_eq!(GemmBuild::select(true, true, false), Sm90aWs);
        assert_eq!(GemmBuild::select(true, true, true), Sm90aWsPair);
        let (pairable, other) = (GemmTile::T128x192, GemmTile::T128x256);
        for t in [pairable, other] {
            assert!(Sm90a.can_replace(Sm90aWs, t) && Sm90a.can_replace(Sm90aWsPair, t));
            assert!(Sm90aWs.can_replace(Sm90aWsPair, t));
            assert!(!Portable.can_replace(Sm90aWs, t) && !Sm90aWs.can_replace(Portable, t));
            assert!(!Sm90aWs.can_replace(Sm90a, t) && !Sm90aWsPair.can_replace(Sm90a, t));
        }
        assert!(Sm90aWsPair.can_replace(Sm90aWs, pairable));
        assert!(!Sm90aWsPair.can_replace(Sm90aWs, other));
        assert!(tma_operand_ok(0x7f00_0000_0000, 4096, 768));
        assert!(tma_operand_ok(256, 1, 8));
        // A 16-byte misaligned base, or rows of K * 2 bytes not a multiple of 16.
        assert!(!tma_operand_ok(0x7f00_0000_0008, 4096, 768));
        assert!(!tma_operand_ok(256, 4096, 12));
        assert!(!tma_operand_ok(256, 4096, 1 << 39));
        assert!(!tma_operand_ok(256, 1 << 32, 64));
    }

    /// The M pair where the H100 model says it pays: vit_h's MLP lin2 (K = 5120, fp32
    /// residual, 97 MB of operands against 50 MB of L2) and proj (56 MB); not where it
    /// would idle SMs (vit_b's N = 768 layers: 64 steps for 132 SMs) or
    /// where the operands fit in the L2 and the steps would drop below the SMs (vit_h's
    /// qkv), nor on a tile without pair entry points.
    #[test]
    fn pairs_where_the_l2_overflows() {
        let t = GemmTile::T128x192;
        assert!(t.pair_wins(1280, 5120, 8));
        assert!(t.pair_wins(1280, 1280, 8));
        assert!(!t.pair_wins(3840, 1280, 2));
        for (n, k) in [(768, 3072), (768, 768)] {
            assert!(!t.pair_wins(n, k, 8) && !t.pair_wins(n, k, 2), "{n}x{k}");
        }
        assert!(!t.pair_wins(2304, 768, 2));
        assert!(!GemmTile::T128x256.pair_wins(1280, 5120, 8));
        assert!(!GemmTile::T64x128.pair_wins(1280, 5120, 8));
    }

    #[test]
    fn fill_counts_idle_slots_and_padding() {
        // 96 blocks on 132 SMs.
        assert!((GemmTile::T128x256.fill(4096, 768) - 96.0 / 132.0).abs() < 1e-12);
        // 22 x 2 = 44 blocks, the M tiles padded from 2800 to 2816 rows.
        let f = GemmTile::T128x192.fill(2800, 384);
        assert!((f - 44.0 / 132.0 * 2800.0 / 2816.0).abs() < 1e-12);
    }
}
