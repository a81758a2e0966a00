//! vit_b's encoder GEMMs on the H100 model, from vgpu's counters (issue 23, item 2): each
//! shape's selected tile runs one block (M = BM, N = BN, the real K) on vgpu, its counters
//! are scaled to the real grid (every interior block executes the same instructions; on
//! Hopper's persistent warp-specialised build, one block per tile gives the busiest SM the same share
//! of the work as the persistent grid, whose blocks hold ceil(tiles / 132) tiles) and
//! `samrt::cuda::profile::h100::model` times the launch. Prints per shape the tile, blocks,
//! fill, warp instructions per mma (per m16n8k16 of work, so that the wgmma build on
//! Hopper compares) and the modelled time; asserts the counter targets:
//! <= 6 warp instructions per mma over the whole kernel (main loop and epilogue), no bank
//! conflicts, and a grid that fills the 132 SMs (fill >= 0.9 or >= 1.5 waves). Runs on
//! vgpu only (a GPU records no counters); elsewhere it prints why it skips.

use crate::common::gpu::{gpu_or_skip, Rng};
use samrt::cuda::ops::gemm::{
    conv3x3_tiled, gemm_tiled, Conv3x3Shape, Epilogue, GemmScales, GemmShape, GemmTile,
};
use samrt::cuda::profile::h100::{model, Compulsory, Launch, SMS};
use samrt::cuda::profile::vgpu::{is_vgpu, Recording};
use samrt::cuda::GpuContext;

/// The 4096 tokens of a 1024-px image.
const ROWS: usize = 4096;
/// FLOPs of one mma.sync.m16n8k16, the unit "per mma" counts in (whichever instruction ran).
const MMA_16816_FLOPS: f64 = 2.0 * 16.0 * 8.0 * 16.0;

#[derive(Clone, Copy, Debug)]
enum Kind {
    Bias,
    Gelu,
    Residual,
    /// 3x3 conv on the 64x64 map, cin = k / 9.
    Conv,
}

/// Runs one block of `tile` for the layer `(n, k)` and returns its launch's counters.
fn one_block(gpu: &GpuContext, rng: &mut Rng, kind: Kind, k: usize, tile: GemmTile) -> Launch {
    let s = gpu.stream();
    let (bm, bn) = (tile.block_m(), tile.block_n());
    let a = gpu.upload_f16(s, &rng.vec(bm * k, -1.0, 1.0)).unwrap();
    let w = gpu.upload_f16(s, &rng.vec(bn * k, -1.0, 1.0)).unwrap();
    let bias = gpu.upload_f32(s, &rng.vec(bn, -1.0, 1.0)).unwrap();
    let shape = GemmShape { m: bm, n: bn, k };
    let mut rec = Recording::start().unwrap();
    let sc = GemmScales::default();
    let (mut o16, mut o32) = (
        gpu.zeros_f16(s, bm * bn).unwrap(),
        gpu.upload_f32(s, &rng.vec(bm * bn, -1.0, 1.0)).unwrap(),
    );
    let b = Some(&bias as _);
    let ops = (&a as _, &w as _);
    match kind {
        Kind::Bias => gemm_tiled(gpu, s, ops, b, shape, sc, Epilogue::Bias(&mut o16), tile),
        Kind::Gelu => gemm_tiled(
            gpu,
            s,
            ops,
            b,
            shape,
            sc,
            Epilogue::BiasGelu(&mut o16),
            tile,
        ),
        Kind::Residual => {
            let e = Epilogue::BiasResidual(&mut o32);
            gemm_tiled(gpu, s, ops, b, shape, sc, e, tile)
        }
        Kind::Conv => {
            // An 8 x (bm / 8) map is one block of output pixels; its border taps are
            // zero-filled but issue the same instructions as inside ones.
            let cs = Conv3x3Shape {
                batch: 1,
                h: 8,
                w: bm / 8,
                cin: k / 9,
                cout: bn,
            };
            conv3x3_tiled(gpu, s, ops, None, cs, sc, &mut o16, tile)
        }
    }
    .unwrap();
    s.synchronize().unwrap();
    // Rows running in parallel record into the same file: ours is the one launch of this
    // entry point with exactly this block's FLOPs (every K here is a multiple of BK).
    let flops = (2 * bm * bn * k) as u64;
    let ours: Vec<Launch> = rec
        .take()
        .unwrap()
        .into_iter()
        .filter(|r| r.kernel.ends_with(tile.suffix()) && r.launch.mma_flops == flops)
        .map(|r| r.launch)
        .collect();
    assert_eq!(ours.len(), 1, "{ours:?}");
    ours[0]
}

#[test]
fn gemm_model_vit_b() {
    let test = "gemm_model_vit_b";
    let Some(gpu) = gpu_or_skip(test) else { return };
    if !is_vgpu(&gpu.info().name) {
        println!(
            "{test}: skipped: counters come from vgpu, this is {}",
            gpu.info().name
        );
        return;
    }
    let mut rng = Rng::new(test);
    let c = 768;
    // (layer, epilogue, n, k, launches per encode): 12 blocks; the patch embedding is a
    // 768 x 768 residual GEMM like proj.
    let layers = [
        ("qkv", Kind::Bias, 3 * c, c, 12),
        ("proj + patch", Kind::Residual, c, c, 13),
        ("mlp.lin1", Kind::Gelu, 4 * c, c, 12),
        ("mlp.lin2", Kind::Residual, c, 4 * c, 12),
        ("neck.0 (1x1)", Kind::Bias, 256, c, 1),
        ("neck.2 (3x3)", Kind::Conv, 256, 9 * 256, 1),
    ];
    let mut total = 0.0;
    for (name, kind, n, k, launches) in layers {
        let tile = GemmTile::select(n);
        let one = one_block(&gpu, &mut rng, kind, k, tile);
        let blocks = (ROWS.div_ceil(tile.block_m()) * n.div_ceil(tile.block_n())) as u64;
        let scaled = Launch {
            blocks,
            warp_instructions: one.warp_instructions * blocks,
            fp_instructions: one.fp_instructions * blocks,
            sfu_instructions: one.sfu_instructions * blocks,
            mma: one.mma * blocks,
            mma_flops: one.mma_flops * blocks,
            wgmma_flops: one.wgmma_flops * blocks,
            global_bytes_read: one.global_bytes_read * blocks,
            global_bytes_written: one.global_bytes_written * blocks,
            shared_requests: one.shared_requests * blocks,
            shared_wavefronts: one.shared_wavefronts * blocks,
            bank_conflicts: one.bank_conflicts * blocks,
            ..one
        };
        let (rows, n64, k64) = (ROWS as u64, n as u64, k as u64);
        let (a_bytes, out16) = match kind {
            Kind::Conv => (rows * 256 * 2, rows * n64 * 2),
            _ => (rows * k64 * 2, rows * n64 * 2),
        };
        let compulsory = match kind {
            Kind::Residual => Compulsory {
                read: a_bytes + n64 * k64 * 2 + n64 * 4 + rows * n64 * 4,
                written: rows * n64 * 4,
            },
            _ => Compulsory {
                read: a_bytes + n64 * k64 * 2 + n64 * 4,
                written: out16,
            },
        };
        let m = model(&scaled, compulsory);
        // Per m16n8k16 of tensor work (4096 FLOPs): one mma.sync on the portable build, 1/64
        // to 1/128 of a wgmma (one `mma` in vgpu's count) on the sm_90a one.
        let mma_units = one.mma_flops as f64 / MMA_16816_FLOPS;
        let per_mma = one.warp_instructions as f64 / mma_units;
        let fill = tile.fill(ROWS, n);
        let waves = blocks as f64 / SMS;
        let t = &m.terms;
        println!(
            "{test}: {name:<13} x{launches:<2} n={n:<5} k={k:<5} {kind:?}: tile {} blocks {blocks} \
             (waves {waves:.2}, fill {fill:.3}) warp_instr/mma {per_mma:.2} \
             wavefronts/mma {:.3} conflicts {} | model {:.1} us ({}; tensor {:.1} issue \
             {:.1} smem {:.1} dram {:.1}) floor {:.1} us",
            tile.suffix(),
            one.shared_wavefronts as f64 / mma_units,
            one.bank_conflicts,
            m.time_s * 1e6,
            m.bound.name(),
            t.tensor * 1e6,
            t.issue * 1e6,
            t.smem * 1e6,
            t.dram * 1e6,
            m.floor_s * 1e6,
        );
        total += m.time_s * launches as f64;
        assert!(
            per_mma <= 6.0,
            "{name}: {per_mma} warp instructions per mma"
        );
        assert_eq!(one.bank_conflicts, 0, "{name}: bank conflicts");
        assert!(
            fill >= 0.9 || waves >= 1.5,
            "{name}: fill {fill}, {waves} waves"
        );
    }
    println!(
        "{test}: the encode's GEMM and conv launches: {:.1} us modelled",
        total * 1e6
    );
}
