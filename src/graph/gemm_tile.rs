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
/// (`kernels/gemm.cu`, any sm_80+) or the wgmma one (`kernels/gemm_sm90a.cu`, which replaces
/// it on compute capability 9.0). Same entry points and results; the launch geometry
/// differs ([`GemmTile::threads`], [`GemmTile::smem_bytes`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GemmBuild {
    Portable,
    Sm90a,
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
    /// warps become 8).
    pub fn threads(self, build: GemmBuild) -> usize {
        match build {
            GemmBuild::Portable => self.dims().2 * 32,
            GemmBuild::Sm90a => self.block_m() / 64 * 128,
        }
    }

    /// Dynamic shared memory: [`GEMM_STAGES`] (portable) or [`GEMM_STAGES_SM90A`] stages of
    /// one A and one W tile of fp16.
    pub fn smem_bytes(self, build: GemmBuild) -> usize {
        let stages = match build {
            GemmBuild::Portable => GEMM_STAGES,
            GemmBuild::Sm90a => GEMM_STAGES_SM90A,
        };
        stages * (self.block_m() + self.block_n()) * GEMM_BLOCK_K * 2
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
        for t in GemmTile::ALL {
            assert!(t.smem_bytes(h) <= 227 * 1024, "{t:?}");
        }
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
