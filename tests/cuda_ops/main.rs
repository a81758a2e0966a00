//! Every CUDA op against its CPU reference, from one table in the style of ggml's
//! test-backend-ops. Each row of `op_cases!` below is a [`Case`] (the op, its shapes, the
//! dtypes, scales or storage to exercise, sizes awkward for the kernel's tiles) and becomes
//! one #[test] named after the row: a failure names the op and the case, the harness runs the
//! rows in parallel (vgpu is slow), and `cargo test --test cuda_ops attn_relpos` runs one op.
//! One runner per op family (the modules below) draws fresh random inputs (the seed is
//! printed; `SAMRT_TEST_SEED` replays it), runs the op on the GPU (or vgpu, the PTX simulator
//! posing as libcuda) and compares with the CPU reference (`refs`, which also checks the
//! attention references against direct formulas, or the library's CPU twin of the op) at a
//! tolerance whose reason it states.
//!
//! Inputs are rounded to fp16 before the reference sees them, so each comparison measures
//! the kernel (fp32 accumulation, fp16 output rounding), not the input quantisation. Without
//! an NVIDIA driver or GPU every row prints why it skips and passes (`SAMRT_REQUIRE_GPU=1`
//! makes it fail instead). Shape and launch validation, which needs no table, is in
//! `validation`.
//!
//! A new op needs a `Case` variant, its rows, a runner (an arm of [`run`]) and its CPU
//! reference.
#![cfg(feature = "cuda")]

mod attention;
mod attn_fold_i2t;
mod attn_fold_t2i;
#[path = "../common/mod.rs"]
mod common;
mod decoder_ops;
mod encoder_glue;
mod executor;
mod gemm;
mod gemm_model;
mod layer_norm;
mod mask_ops;
mod refs;
mod speed;
mod validation;

use common::gpu::{gpu_or_skip, Rng};

use attention::QkvStorage::{self, Plain, ScaledQ, ScaledQkv};
use attn_fold_t2i::fold;
use cudarc::driver::CudaSlice;
use decoder_ops::LinearCase;
use gemm::{halved, norows, overflow, plain, rows, ScaleCase};
use refs::Epi::{Bias, Gelu, Residual};
use samrt::cpu::ops::postprocess::MaskFrame;
use samrt::cuda::ops::attention::{AttnPlainShape, AttnRelposShape};
use samrt::cuda::ops::attn_decoder::{AttnDecoderKind, AttnDecoderShape};
use samrt::cuda::ops::gemm::{Conv3x3Shape, GemmShape, GemmTile};
use samrt::cuda::ops::preprocess_patchify::PatchGeom;
use samrt::cuda::ops::residual_init::ResidualInitShape;
use samrt::cuda::GpuContext;
use samrt::graph::fold_ops::AttnFoldShape;

/// `name: case,` rows -> `#[test] fn name() { run("name", case) }`.
macro_rules! op_cases {
    ($($name:ident: $case:expr,)*) => {
        $(#[test] fn $name() { run(stringify!($name), $case) })*
    };
}

op_cases! {
    // ---- gemm(m, n, k, epilogue): the tensor-core GEMM on GemmTile::select's tile for n
    // (BK 64). M not a multiple of 128, N and K multiples of 8 but not of the tiles.
    gemm_bias_4100x776x776: gemm(4100, 776, 776, plain(Bias)),
    gemm_bias_1x2x8: gemm(1, 2, 8, plain(Bias)),
    gemm_bias_gelu_4097x3080x768: gemm(4097, 3080, 768, plain(Gelu)),
    // N even but not a multiple of 8; K = 3080 = 96 full BK tiles + a 8-wide tail.
    gemm_bias_residual_4099x770x3080: gemm(4099, 770, 3080, plain(Residual)),
    gemm_bias_residual_130x130x40: gemm(130, 130, 40, plain(Residual)),
    // Scales on every epilogue, with and without bias and row scales 2^-3..2^4 (`rows`):
    // 2 x 2 tiles, the second of each ragged; K = 200 = 6 BK tiles + an 8-wide tail.
    gemm_scales_bias_nobias_rows: gemm(200, 138, 200, rows(Bias, 0.75, 0.25).no_bias()),
    gemm_scales_bias_rows: gemm(200, 138, 200, rows(Bias, 0.5, 2.0)),
    gemm_scales_gelu_rows: gemm(200, 138, 200, rows(Gelu, 0.25, 0.125)),
    gemm_scales_gelu_nobias_norows: gemm(200, 138, 200, norows(Gelu, 1.5, 0.5).no_bias()),
    gemm_scales_residual_rows: gemm(200, 138, 200, rows(Residual, 0.5, 1.0)),
    gemm_scales_residual_nobias_norows:
        gemm(200, 138, 200, norows(Residual, 3.0, 1.0).no_bias()),
    // Values that overflow fp16 (|y| up to ~6e5 > 65504) stay finite with out_scale 2^-4; the
    // point of the rows: most outputs (over 1/2) would be inf in fp16 without out_scale.
    gemm_overflow_bias_136x130x136: gemm(136, 130, 136, overflow(Bias, 1.0 / 16.0, 2)),
    gemm_overflow_gelu_136x130x136: gemm(136, 130, 136, overflow(Gelu, 1.0 / 16.0, 2)),
    gemm_overflow_residual_136x130x136: gemm(136, 130, 136, overflow(Residual, 1.0, 2)),
    // Each block tile on its own, whatever select picks: M and N ragged in both tile
    // directions (3 x 3 tiles, the last of each partial), K = 200 or 136 = whole BK stages
    // plus an 8-wide tail.
    gemm_tile_128x256_gelu_300x520x200: gemm_on(GemmTile::T128x256, 300, 520, 200, plain(Gelu)),
    gemm_tile_128x192_residual_300x394x136:
        gemm_on(GemmTile::T128x192, 300, 394, 136, rows(Residual, 0.5, 1.0)),
    gemm_tile_64x128_bias_150x266x200:
        gemm_on(GemmTile::T64x128, 150, 266, 200, rows(Bias, 0.5, 2.0)),
    // The Hopper builds (vgpu reports compute capability 9.0): the TMA-fed warp-specialised
    // persistent kernel (the default there) against the reference and bit for bit against
    // the cp.async wgmma fallback, each epilogue and tile. M, N and K ragged (K = 72, 136:
    // a whole BK stage plus an 8-wide tail the tensor map zero-fills). 1093 x 1018 on
    // 64x128 is 18 x 8 = 144 tiles on vgpu's 132 SMs: 72 blocks of 2 tiles each; 4097 x
    // 3080 on 128x256 (the MLP row above) runs 429 tiles as 108 blocks of 3 or 4.
    gemm_ws_64x128_gelu_1093x1018x72:
        gemm_builds(GemmTile::T64x128, 1093, 1018, 72, rows(Gelu, 0.5, 0.5)),
    gemm_ws_128x192_residual_300x394x136:
        gemm_builds(GemmTile::T128x192, 300, 394, 136, rows(Residual, 0.5, 1.0)),
    gemm_ws_128x256_bias_1x520x136:
        gemm_builds(GemmTile::T128x256, 1, 520, 136, norows(Bias, 2.0, 0.5)),
    // 128x192's M pair (`_m2`: two tiles per block step, one per consumer warpgroup) also
    // runs in the rows above and here, bit for bit against the single-tile steps and the
    // fallback: 300 rows leave the second tile of the last step wholly outside M, 700 rows
    // keep its first tile whole and cut its second. N = 1280, K = 1280 with the fp32
    // residual is where select pairs (GemmTile::pair_wins: vit_h's proj), on 3 steps of 2
    // M tiles, the last holding 8 rows.
    gemm_ws_128x192_bias_700x394x200:
        gemm_builds(GemmTile::T128x192, 700, 394, 200, rows(Bias, 0.5, 2.0)),
    gemm_ws_pair_residual_520x1280x1280:
        gemm_builds(GemmTile::T128x192, 520, 1280, 1280, rows(Residual, 0.5, 1.0)),

    // ---- conv3x3(batch, h, w, cin, cout, epilogue): implicit GEMM, K = 9 cin
    // `plain`: bias, no scales; `halved`: no bias, row scales, in_scale 1/2, out_scale 1/4.
    conv3x3_b2_5x5_16to16: conv3x3(2, 5, 5, 16, 16, plain(Bias)),
    conv3x3_b2_5x5_32to32: conv3x3(2, 5, 5, 32, 32, halved()),
    conv3x3_b2_7x9_16to16: conv3x3(2, 7, 9, 16, 16, halved()),
    conv3x3_b2_7x9_32to32: conv3x3(2, 7, 9, 32, 32, plain(Bias)),
    // Cout over one 128-wide tile and not a multiple of it; M = 162 over two M tiles, with
    // an image boundary inside the first.
    conv3x3_b2_9x9_32to136: conv3x3(2, 9, 9, 32, 136, halved()),
    // Cin 8: four taps per BK stage; Cin 24: taps straddle stages.
    conv3x3_b2_7x9_8to18: conv3x3(2, 7, 9, 8, 18, halved()),
    conv3x3_b2_5x7_24to40: conv3x3(2, 5, 7, 24, 40, plain(Bias)),
    // The neck's channel count on a small map: K = 2304, 72 stages.
    conv3x3_b1_6x8_256to256: conv3x3(1, 6, 8, 256, 256, halved()),
    // K = 144: acc ~ 81 (up to 144), times 2048 * row_scale (1 or 2): |y| up to ~6e5; over
    // 1/4 of the outputs would overflow fp16 without out_scale 2^-4.
    conv3x3_overflow_b2_7x9_16to32: conv3x3(2, 7, 9, 16, 32, overflow(Bias, 1.0 / 16.0, 4)),
    // The wide tiles, which select gives no conv of SAM: M = 162 over two M tiles with an
    // image boundary inside the first, Cout over one N tile, Cin 24 (taps straddle stages).
    conv3x3_tile_128x256_b2_9x9_24to260:
        conv3x3_tile(Some(GemmTile::T128x256), [2, 9, 9, 24, 260], halved()),
    conv3x3_tile_128x192_b2_9x9_16to200:
        conv3x3_tile(Some(GemmTile::T128x192), [2, 9, 9, 16, 200], plain(Bias)),

    // ---- relpos(batch, grid, dim, heads, window, qkv storage): encoder attention with the
    // decomposed relative position; head_dim = dim / heads. vit_b/l/h shapes (grid 64):
    attn_relpos_windowed_hd64: relpos(2, 64, 128, 2, 14, Plain),
    attn_relpos_windowed_hd80: relpos(1, 64, 160, 2, 14, Plain),
    attn_relpos_global_hd64: relpos(1, 64, 128, 2, 64, Plain),
    attn_relpos_global_hd80: relpos(1, 64, 160, 2, 64, Plain),
    // The s64 hd 64 kernel (attn_relpos_s64.cu) at batch 2, and on 2x2 squares of 64 (grid
    // 128: squares off the origin).
    attn_relpos_global_b2_hd64: relpos(2, 64, 64, 1, 64, ScaledQ(0.5)),
    attn_relpos_grid128_window64_hd64: relpos(1, 128, 64, 1, 64, ScaledQkv(0.25)),
    // The same for hd 80 (on sm_90a its own wgmma kernel, attn_relpos_s64_d80_sm90a.cu).
    attn_relpos_global_b2_hd80: relpos(2, 64, 80, 1, 64, ScaledQ(0.5)),
    attn_relpos_grid128_window64_hd80: relpos(1, 128, 80, 1, 64, ScaledQkv(0.25)),
    // Other image sizes: img_size 256 -> grid 16, 320 -> 20, 480 -> 30, and a tiny grid 7.
    attn_relpos_global_s16_hd64: relpos(2, 16, 128, 2, 16, ScaledQ(0.25)),
    attn_relpos_global_s20_hd80: relpos(1, 20, 160, 2, 20, ScaledQkv(0.25)),
    // 49 keys: one key tile with 15 masked columns; 13-row rel tables.
    attn_relpos_global_s7_hd64: relpos(2, 7, 64, 1, 7, Plain),
    // 2x2 windows of 14 over 16 padded to 28: three of four windows hold padding.
    attn_relpos_windowed_grid16_hd64: relpos(2, 16, 128, 2, 14, ScaledQ(0.25)),
    attn_relpos_windowed_grid20_hd80: relpos(2, 20, 80, 1, 14, Plain),
    // 3x3 windows over 30 padded to 42.
    attn_relpos_windowed_grid30_hd64: relpos(1, 30, 64, 1, 14, ScaledQkv(0.25)),
    // Window 8 takes the run-time-S kernel: 8 over 20 padded to 24 (3x3 windows, 64 keys
    // each). A window larger than the grid (the s14 kernel, 14 over 5: one window, 171 of
    // its 196 tokens padding).
    attn_relpos_grid20_window8: relpos(2, 20, 160, 2, 8, ScaledQ(0.5)),
    attn_relpos_grid5_window14: relpos(2, 5, 64, 1, 14, ScaledQ(0.5)),
    // Window 64 on a grid that is not a multiple of 64 takes the run-time-S kernel (64 over
    // 40: 2496 of its 4096 tokens padding).
    attn_relpos_grid40_window64: relpos(1, 40, 64, 1, 64, ScaledQkv(0.25)),

    // ---- plain_attn(batch, heads, head_dim, lq, lk): the decoder's attention
    attn_plain_hd16_7x4096: plain_attn(2, 8, 16, 7, 4096), // token to image
    attn_plain_hd32_4100x7: plain_attn(1, 8, 32, 4100, 7), // image to token
    attn_plain_hd64_100x333: plain_attn(2, 3, 64, 100, 333),

    // ---- LayerNorm, fp16 output, fp32 (residual stream) or fp16 input
    layer_norm_f32_residual_input: LayerNorm { rows: 4099, dim: 768, f32_in: true, eps: 1e-6 },
    layer_norm_f16_input_d1280: LayerNorm { rows: 4100, dim: 1280, f32_in: false, eps: 1e-6 },
    // 264 columns: the last 256-column chunk is almost empty.
    layer_norm_f16_input_d264: LayerNorm { rows: 333, dim: 264, f32_in: false, eps: 1e-5 },
    layer_norm_f16_input_d2048: LayerNorm { rows: 65, dim: 2048, f32_in: false, eps: 1e-5 },
    // The per-row scaled fp16 cast, then LayerNorm of it with the row scales (and of the
    // fp32 rows divided by them). 264 columns: the last 256-column chunk of a warp's loop
    // holds 8 values.
    cast_rows_ln_d264: CastRowsLayerNorm { rows: 77, dim: 264, f32_ln_check: true },
    cast_rows_ln_d768: CastRowsLayerNorm { rows: 23, dim: 768, f32_ln_check: false },
    // A scalar in_scale (and per-row scales on top): 2^-10 makes the true std ~1e-3, the
    // variance ~1.3e-6 against eps 1e-6; 0.37 is not a power of two.
    layer_norm_in_scale_2pow_minus10: LayerNormInScale { in_scale: 1.0 / 1024.0, per_row: false },
    layer_norm_in_scale_0_37: LayerNormInScale { in_scale: 0.37, per_row: false },
    layer_norm_in_scale_2pow_minus9_per_row:
        LayerNormInScale { in_scale: 1.0 / 512.0, per_row: true },
    // fp32 channel-first output. 7x7 tokens: one full and one 17-token block per image; 264
    // channels: two column slices, the second 8 wide.
    layer_norm_cf_b2_t49_c264: LayerNormCf { batch: 2, tokens: 49, dim: 264, scaled: false },
    layer_norm_cf_b3_t64_c256_scaled: LayerNormCf { batch: 3, tokens: 64, dim: 256, scaled: true },
    layer_norm_cf_b1_t20_c1288: LayerNormCf { batch: 1, tokens: 20, dim: 1288, scaled: false },

    // ---- Patchify(geometry, original (w, h) sizes): preprocessing fused with im2col
    // 640x427 -> 256x171 (landscape), 300x517 -> 149x256 (portrait, ragged last patch
    // column), 256x256 (no resize), 37x1000 -> 9x256 (narrower than one patch).
    preprocess_patchify_256:
        Patchify(geom(256, 16), &[(640, 427), (300, 517), (256, 256), (37, 1000)]),
    // Patch 8 on a 5x5 grid and patch 32 on a 3x3 grid (4 chunks per patch row).
    preprocess_patchify_p8: Patchify(geom(40, 8), &[(60, 40), (13, 40), (40, 40)]),
    preprocess_patchify_p32: Patchify(geom(96, 32), &[(50, 100), (97, 31)]),
    preprocess_patchify_1024: Patchify(geom(1024, 16), &[(1500, 1001)]),

    // ---- residual(batch, tokens, dim): the fp32 residual stream from the fp16 pos-embed
    // 7x7 grid, D = 40 (1,960 values: a partial last block), batch 3; then 16x16 x 768.
    residual_init_7x7_d40: residual(3, 49, 40),
    residual_init_16x16_d768: residual(2, 256, 768),

    // ---- post(masks, input size, original size, torch threads): mask post-processing
    // The 1500x2250 photo; a portrait crop; a tiny original (channels-last kernel in stage
    // 2: out_h + out_w <= 128); 3 masks with one torch thread (channels-last in both
    // stages); one mask of an odd size; an all-negative mask (empty box, zero area).
    postprocess_3_to_1500x2250: post(3, (683, 1024), (1500, 2250), 2),
    postprocess_2_to_1200x900: post(2, (1024, 768), (1200, 900), 2),
    postprocess_3_to_50x70: post(3, (731, 1024), (50, 70), 2),
    postprocess_3_to_300x450_one_thread: post(3, (683, 1024), (300, 450), 1),
    postprocess_1_odd_997x995: post(1, (1024, 1023), (997, 995), 2),
    postprocess_1_all_negative: Postprocess {
        frame: MaskFrame::OFFICIAL, masks: 1, input: (683, 1024), orig: (100, 150), threads: 2,
        all_negative: true
    },
    // Models built for other input sizes: 64 -> 256 (img_size 256) and 128 -> 512.
    postprocess_3_frame_256_to_90x120: Postprocess {
        frame: MaskFrame::new(16, 256), masks: 3, input: (192, 256), orig: (90, 120),
        threads: 2, all_negative: false
    },
    postprocess_2_frame_512_to_700x1050: Postprocess {
        frame: MaskFrame::new(32, 512), masks: 2, input: (341, 512), orig: (700, 1050),
        threads: 2, all_negative: false
    },

    // ---- prompt encoder and AMG ops
    mask_downscaling_3_masks: MaskDownscaling { masks: 3 },
    // 37 prompts: 0-4 points with labels -1/0/1, with and without a box.
    prompt_sparse_37_prompts: PromptSparse { prompts: 37 },
    // Box counts across tile boundaries, integer and float boxes, thresholds 0.7/0.3/0/1.
    nms_1_to_3000_boxes: Nms(&[1, 63, 64, 65, 1000, 3000]),

    // ---- the mask decoder. Prompt counts 1, 3 and 65; tokens per prompt T = 5 output
    // tokens + sparse: one point (+ pad) 7, 17 points (+ pad) 23, box only 7, mask only 5.
    // token_linear(m, n, k): fp32 Linears on token rows (8 rows x 8 or 32 columns a block, K
    // in steps of 256 across the lanes), several of one shape per launch. Rows and weights are
    // 16 B aligned as in the decoder (float4 path) unless misaligned or K is odd (scalar).
    token_linear_1x7_qkv_pe: TokenLinear(lin(7, 256, 256).a2().jobs(3)),
    token_linear_3x23_lin1_relu: TokenLinear(lin(3 * 23, 2048, 256).relu()),
    token_linear_65x5_lin2_residual: TokenLinear(lin(65 * 5, 256, 2048).acc()),
    // The heads: one token row per prompt (row stride 7 tokens), the IoU head's 4 outputs;
    // the IoU head's and 4 hypernetworks' hidden layers in one launch.
    token_linear_65_heads_strided: TokenLinear(LinearCase { lda_pad: 6 * 256, ..lin(65, 4, 256) }),
    token_linear_3_heads_5_jobs_misaligned: TokenLinear(LinearCase { lda_pad: 6 * 256, ..lin(3, 256, 256).relu().jobs(5).misaligned() }),
    token_linear_odd_33x37: TokenLinear(lin(3, 33, 37).a2().acc().jobs(2)),
    // Enough blocks for four columns per warp (TokenLinearVariant::select): odd K (scalar
    // loop), and rows off 16 B (scalar staging, float4 weights).
    token_linear_odd_c4_300x260x37: TokenLinear(lin(300, 260, 37).a2().relu()),
    token_linear_c4_325x256_misaligned: TokenLinear(lin(65 * 5, 256, 256).a2().acc().misaligned()),
    // With the post-norm fused (rows LayerNorm'ed as staged, then the PE added): q/k/v at
    // 3 prompts, the heads after the final norm, an odd width.
    token_linear_3x7_qkv_norm_pe: TokenLinear(lin(3 * 7, 256, 256).a2().jobs(3).norm()),
    token_linear_65_heads_norm: TokenLinear(LinearCase { lda_pad: 6 * 256, ..lin(65, 256, 256).relu().jobs(5).norm() }),
    token_linear_odd_norm_9x37: TokenLinear(lin(9, 40, 37).a2().jobs(2).norm()),
    // attn_decoder(kind, batch, lq, lk, head_dim, q shared, kv shared): 8 heads.
    attn_decoder_self_1x7: AttnDec(attn(SELF, 1, 7, 7, 32, false, false)),
    attn_decoder_self_3x23_17_points: AttnDec(attn(SELF, 3, 23, 23, 32, false, false)),
    attn_decoder_self_65x5_mask_only: AttnDec(attn(SELF, 65, 5, 5, 32, false, false)),
    // Token to image: 4096 keys per prompt; a shared image side of 1000 keys (not a multiple
    // of the 32 lanes) for 65 prompts.
    attn_decoder_t2i_3x7_4096: AttnDec(attn(T2I, 3, 7, 4096, 16, false, false)),
    attn_decoder_t2i_65x7_shared_1000: AttnDec(attn(T2I, 65, 7, 1000, 16, false, true)),
    attn_decoder_t2i_1x23_hd32: AttnDec(attn(T2I, 1, 23, 333, 32, false, false)),
    // Token to image split over the keys (t2i_chunks(lk) chunks of ceil(lk / chunks) keys,
    // then the combine pass): 4100 keys make 32 chunks of 129 (the last of 101; neither a
    // multiple of the 32 lanes), a shared side of 1000 keys (8 chunks of 125) for 65
    // prompts at hd 32, and 333 keys (3 chunks of 111) at hd 64.
    attn_decoder_t2i_split_1x7_4100: AttnDec(attn(T2IS, 1, 7, 4100, 16, false, false)),
    attn_decoder_t2i_split_65x7_shared_1000_hd32: AttnDec(attn(T2IS, 65, 7, 1000, 32, false, true)),
    attn_decoder_t2i_split_3x23_333_hd64: AttnDec(attn(T2IS, 3, 23, 333, 64, false, false)),
    // Image to token: a shared image side (layer 0) and per-prompt queries.
    attn_decoder_i2t_3x4100x7_shared: AttnDec(attn(I2T, 3, 4100, 7, 16, true, false)),
    attn_decoder_i2t_65x256x5: AttnDec(attn(I2T, 65, 256, 5, 16, false, false)),
    attn_decoder_i2t_1x100x23_hd64: AttnDec(attn(I2T, 1, 100, 23, 64, false, false)),
    // attn_fold_t2i(batch, tokens, heads, hw, dim, image shared): folded token->image
    // attention, split into fold_chunks(hw) chunks of image rows, then combined. One point at
    // 64x64 (56 rows in one 64-row tile, 16 chunks of 256); 17 points for 3 prompts (184
    // rows: the third tile ragged) over 1000 rows (4 chunks of 250, the last 32-row tile of
    // each 26: the second warp group's half 10), own and shared image sides, each prompt
    // also run alone (bit-identical); dim 128 over 37 rows (one chunk, a 5-row tile); one
    // chunk of 64 rows; 10 image rows (pass 1's second warp group sees none: its empty state
    // merges with weight 0).
    attn_fold_t2i_1x7x8_4096_d256: FoldT2i(fold(1, 7, 8, 4096, 256, false)),
    attn_fold_t2i_3x23x8_1000_d256: FoldT2i(fold(3, 23, 8, 1000, 256, false)),
    attn_fold_t2i_3x23x8_1000_d256_shared: FoldT2i(fold(3, 23, 8, 1000, 256, true)),
    attn_fold_t2i_2x3x4_37_d128: FoldT2i(fold(2, 3, 4, 37, 128, false)),
    attn_fold_t2i_1x7x8_64_d256: FoldT2i(fold(1, 7, 8, 64, 256, false)),
    // attn_fold_i2t::case(batch, tokens, heads, hw, dim, image shared): image->token folded,
    // 64-row tiles. One point at 1024 px; 17 points (23 tokens: two 16-token k-steps) over a
    // ragged last tile (1000 = 15 x 64 + 40), shared and per prompt, each prompt also alone
    // (bit-identical); the most tokens (32); one token; dim 128 with 16 tokens (one full
    // k-step) at head_dim 32; dim 128, 4 heads, 5 tokens, 37 rows (one part-filled tile).
    attn_fold_i2t_1x7_8h_4096_d256: FoldI2t(attn_fold_i2t::case(1, 7, 8, 4096, 256, false)),
    attn_fold_i2t_3x23_1000_shared: FoldI2t(attn_fold_i2t::case(3, 23, 8, 1000, 256, true)),
    attn_fold_i2t_3x23_1000_dense: FoldI2t(attn_fold_i2t::case(3, 23, 8, 1000, 256, false)),
    attn_fold_i2t_2x32_max_tokens: FoldI2t(attn_fold_i2t::case(2, 32, 8, 300, 256, false)),
    attn_fold_i2t_2x1_token: FoldI2t(attn_fold_i2t::case(2, 1, 8, 200, 256, true)),
    attn_fold_i2t_d128_2x16_hd32: FoldI2t(AttnFoldShape { head_dim: 32, ..attn_fold_i2t::case(2, 16, 2, 130, 128, false) }),
    attn_fold_i2t_d128_4h_5t_37: FoldI2t(attn_fold_i2t::case(1, 5, 4, 37, 128, false)),
    attn_fold_t2i_2x5x8_10_d128_shared: FoldT2i(fold(2, 5, 8, 10, 128, true)),
    // 65 prompts (the 64 bucket's chunk plus one): box only (4 + 2 tokens) for token->image,
    // mask input only (4 + 1 pad token) for image->token, each prompt also alone.
    attn_fold_t2i_65x6x8_64_box_only: FoldT2i(fold(65, 6, 8, 64, 256, false)),
    attn_fold_i2t_65x5_64_mask_only: FoldI2t(attn_fold_i2t::case(65, 5, 8, 64, 256, false)),
    // layer_norm_pe(rows, dim, pe rows): token rows (no PE), image rows with the PE cycling.
    layer_norm_pe_65x7_tokens: LayerNormPe { rows: 65 * 7, dim: 256, pe_rows: 65 * 7 },
    layer_norm_pe_3x300_image: LayerNormPe { rows: 3 * 300, dim: 256, pe_rows: 300 },
    layer_norm_pe_odd_dim_200: LayerNormPe { rows: 37, dim: 200, pe_rows: 5 },
    // image_tokens(sides, batch, hw): one shared side copied to 3 prompts; a dense input per
    // prompt on a grid that is no multiple of the 32-token tile.
    image_tokens_shared_3x4096: ImageTokens { sides: 1, batch: 3, hw: 4096 },
    image_tokens_dense_3x250: ImageTokens { sides: 3, batch: 3, hw: 250 },
    image_tokens_shared_65x256: ImageTokens { sides: 1, batch: 65, hw: 256 },
    // decoder_tokens(prompts, points, box): output tokens + sparse embeddings.
    decoder_tokens_1x1_point: DecoderTokens { prompts: 1, points: 1, with_box: false },
    decoder_tokens_3x17_points: DecoderTokens { prompts: 3, points: 17, with_box: false },
    decoder_tokens_65_box_only: DecoderTokens { prompts: 65, points: 0, with_box: true },
    decoder_tokens_3_mask_only: DecoderTokens { prompts: 3, points: 0, with_box: false },
    decoder_tokens_3_points_and_box: DecoderTokens { prompts: 3, points: 2, with_box: true },
    // conv_transpose2x2 (batch, grid, cin, cout): the decoder's first upscaling at 64x64 and
    // 7x7 for 3 prompts; 40 channels (a warp's loop not a multiple of 32).
    conv_transpose2x2_ln_gelu_1x64_256to64: CtLnGelu { batch: 1, grid: 64, cin: 256, cout: 64 },
    conv_transpose2x2_ln_gelu_3x7_256to64: CtLnGelu { batch: 3, grid: 7, cin: 256, cout: 64 },
    conv_transpose2x2_ln_gelu_2x5_64to40: CtLnGelu { batch: 2, grid: 5, cin: 64, cout: 40 },
    // The second upscaling's scatter and mask product (batch, grid, channels, masks).
    conv_transpose2x2_masks_3x128: CtMasks { batch: 3, grid: 128, c: 32, masks: 4 },
    conv_transpose2x2_masks_65x9: CtMasks { batch: 65, grid: 9, c: 32, masks: 4 },
    conv_transpose2x2_masks_odd: CtMasks { batch: 2, grid: 5, c: 24, masks: 3 },
}

fn lin(m: usize, n: usize, k: usize) -> LinearCase {
    LinearCase {
        m,
        n,
        k,
        lda_pad: 0,
        a2: false,
        relu: false,
        accumulate: false,
        jobs: 1,
        norm: false,
        misaligned: false,
    }
}

trait LinearFlags {
    fn jobs(self, jobs: usize) -> Self;
    fn norm(self) -> Self;
    fn a2(self) -> Self;
    fn relu(self) -> Self;
    fn acc(self) -> Self;
    fn misaligned(self) -> Self;
}

impl LinearFlags for LinearCase {
    fn jobs(self, jobs: usize) -> Self {
        LinearCase { jobs, ..self }
    }
    fn norm(self) -> Self {
        LinearCase { norm: true, ..self }
    }
    fn a2(self) -> Self {
        LinearCase { a2: true, ..self }
    }
    fn relu(self) -> Self {
        LinearCase { relu: true, ..self }
    }
    fn acc(self) -> Self {
        LinearCase {
            accumulate: true,
            ..self
        }
    }
    fn misaligned(self) -> Self {
        LinearCase {
            misaligned: true,
            ..self
        }
    }
}

const SELF: AttnDecoderKind = AttnDecoderKind::SelfAttn;
const T2I: AttnDecoderKind = AttnDecoderKind::TokenToImage;
const T2IS: AttnDecoderKind = AttnDecoderKind::TokenToImageSplit;
const I2T: AttnDecoderKind = AttnDecoderKind::ImageToToken;

#[allow(clippy::too_many_arguments)]
fn attn(
    kind: AttnDecoderKind,
    batch: usize,
    lq: usize,
    lk: usize,
    head_dim: usize,
    q_shared: bool,
    kv_shared: bool,
) -> AttnDecoderShape {
    AttnDecoderShape {
        kind,
        batch,
        lq,
        lk,
        heads: 8,
        head_dim,
        q_shared,
        kv_shared,
    }
}

/// One row of the table.
#[derive(Clone, Copy, Debug)]
enum Case {
    /// The tile is `GemmTile::select`'s when `None`.
    Gemm(GemmShape, Option<GemmTile>, ScaleCase),
    /// The GEMM on the default build and, on Hopper, the cp.async wgmma fallback too: same
    /// bits.
    GemmBuilds(GemmShape, GemmTile, ScaleCase),
    Conv3x3(Conv3x3Shape, Option<GemmTile>, ScaleCase),
    AttnRelpos(AttnRelposShape, QkvStorage),
    AttnPlain(AttnPlainShape),
    LayerNorm {
        rows: usize,
        dim: usize,
        f32_in: bool,
        eps: f32,
    },
    CastRowsLayerNorm {
        rows: usize,
        dim: usize,
        f32_ln_check: bool,
    },
    /// 45 rows of 136 whose true variance is comparable to eps (so eps / s^2 decides).
    LayerNormInScale {
        in_scale: f32,
        per_row: bool,
    },
    LayerNormCf {
        batch: usize,
        tokens: usize,
        dim: usize,
        scaled: bool,
    },
    Patchify(PatchGeom, &'static [(usize, usize)]),
    ResidualInit(ResidualInitShape),
    Postprocess {
        frame: MaskFrame,
        masks: usize,
        input: (usize, usize),
        orig: (usize, usize),
        threads: usize,
        /// All logits -1 instead of random.
        all_negative: bool,
    },
    /// vit_b's prompt encoder on `masks` low-res masks.
    MaskDownscaling {
        masks: usize,
    },
    /// vit_b's prompt encoder on `prompts` random prompts.
    PromptSparse {
        prompts: usize,
    },
    /// Box counts.
    Nms(&'static [usize]),
    TokenLinear(LinearCase),
    AttnDec(AttnDecoderShape),
    FoldT2i(samrt::cuda::ops::attn_fold_t2i::AttnFoldShape),
    FoldI2t(AttnFoldShape),
    LayerNormPe {
        rows: usize,
        dim: usize,
        pe_rows: usize,
    },
    ImageTokens {
        sides: usize,
        batch: usize,
        hw: usize,
    },
    DecoderTokens {
        prompts: usize,
        points: usize,
        with_box: bool,
    },
    CtLnGelu {
        batch: usize,
        grid: usize,
        cin: usize,
        cout: usize,
    },
    CtMasks {
        batch: usize,
        grid: usize,
        c: usize,
        masks: usize,
    },
}
use Case::*;

fn gemm(m: usize, n: usize, k: usize, c: ScaleCase) -> Case {
    Gemm(GemmShape { m, n, k }, None, c)
}

/// `gemm` on block tile `t`, whatever `GemmTile::select` would pick.
fn gemm_on(t: GemmTile, m: usize, n: usize, k: usize, c: ScaleCase) -> Case {
    Gemm(GemmShape { m, n, k }, Some(t), c)
}

/// `gemm_on`, and on Hopper also on the fallback build, bit for bit.
fn gemm_builds(t: GemmTile, m: usize, n: usize, k: usize, c: ScaleCase) -> Case {
    GemmBuilds(GemmShape { m, n, k }, t, c)
}

fn conv3x3(batch: usize, h: usize, w: usize, cin: usize, cout: usize, c: ScaleCase) -> Case {
    conv3x3_tile(None, [batch, h, w, cin, cout], c)
}

fn conv3x3_tile(
    tile: Option<GemmTile>,
    [batch, h, w, cin, cout]: [usize; 5],
    c: ScaleCase,
) -> Case {
    let shape = Conv3x3Shape {
        batch,
        h,
        w,
        cin,
        cout,
    };
    Conv3x3(shape, tile, c)
}

fn relpos(
    batch: usize,
    grid: usize,
    dim: usize,
    heads: usize,
    window: usize,
    s: QkvStorage,
) -> Case {
    AttnRelpos(
        AttnRelposShape {
            batch,
            grid,
            dim,
            heads,
            window,
        },
        s,
    )
}

fn plain_attn(batch: usize, heads: usize, head_dim: usize, lq: usize, lk: usize) -> Case {
    AttnPlain(AttnPlainShape {
        batch,
        heads,
        head_dim,
        lq,
        lk,
    })
}

fn geom(img_size: usize, patch: usize) -> PatchGeom {
    PatchGeom { img_size, patch }
}

fn post(masks: usize, input: (usize, usize), orig: (usize, usize), threads: usize) -> Case {
    Postprocess {
        frame: MaskFrame::OFFICIAL,
        masks,
        input,
        orig,
        threads,
        all_negative: false,
    }
}

fn residual(batch: usize, tokens: usize, dim: usize) -> Case {
    ResidualInit(ResidualInitShape { batch, tokens, dim })
}

/// Runs one row: the GPU (or a reasoned skip), a fresh generator, the op's runner.
fn run(test: &str, case: Case) {
    let Some(gpu) = gpu_or_skip(test) else { return };
    let mut rng = Rng::new(test);
    println!("{test}: {case:?}");
    let (g, r) = (&gpu, &mut rng);
    match case {
        Gemm(shape, tile, c) => gemm::run_gemm(g, r, test, (shape, tile, false), c),
        GemmBuilds(shape, tile, c) => gemm::run_gemm(g, r, test, (shape, Some(tile), true), c),
        Conv3x3(shape, tile, c) => gemm::run_conv3x3(g, r, test, (shape, tile), c),
        AttnRelpos(shape, storage) => attention::run_attn_relpos(g, r, test, shape, storage),
        AttnPlain(shape) => attention::run_attn_plain(g, r, test, shape),
        LayerNorm {
            rows,
            dim,
            f32_in,
            eps,
        } => layer_norm::run_layer_norm(g, r, test, rows, dim, f32_in, eps),
        CastRowsLayerNorm {
            rows,
            dim,
            f32_ln_check,
        } => layer_norm::run_cast_then_layer_norm(g, r, test, rows, dim, f32_ln_check),
        LayerNormInScale { in_scale, per_row } => {
            layer_norm::run_layer_norm_in_scale(g, r, test, in_scale, per_row)
        }
        LayerNormCf {
            batch,
            tokens,
            dim,
            scaled,
        } => layer_norm::run_layer_norm_cf(g, r, test, batch, tokens, dim, scaled),
        Patchify(geom, originals) => encoder_glue::run_patchify(g, r, test, geom, originals),
        ResidualInit(shape) => encoder_glue::run_residual_init(g, r, test, shape),
        Postprocess {
            frame,
            masks,
            input,
            orig,
            threads,
            all_negative,
        } => mask_ops::run_postprocess(g, r, frame, masks, input, orig, threads, all_negative),
        MaskDownscaling { masks } => mask_ops::run_mask_downscaling(g, r, masks),
        PromptSparse { prompts } => mask_ops::run_prompt_sparse(g, r, prompts),
        Nms(sizes) => mask_ops::run_nms(g, r, sizes),
        TokenLinear(c) => decoder_ops::run_token_linear(g, r, c),
        AttnDec(c) => decoder_ops::run_attn_decoder(g, r, c),
        FoldT2i(c) => attn_fold_t2i::run_attn_fold_t2i(g, r, c),
        FoldI2t(c) => attn_fold_i2t::run_attn_fold_i2t(g, r, c),
        LayerNormPe { rows, dim, pe_rows } => {
            decoder_ops::run_layer_norm_pe(g, r, rows, dim, pe_rows)
        }
        ImageTokens { sides, batch, hw } => decoder_ops::run_image_tokens(g, r, sides, batch, hw),
        DecoderTokens {
            prompts,
            points,
            with_box,
        } => decoder_ops::run_decoder_tokens(g, r, prompts, points, with_box),
        CtLnGelu {
            batch,
            grid,
            cin,
            cout,
        } => decoder_ops::run_conv_transpose2x2_ln_gelu(g, r, batch, grid, cin, cout),
        CtMasks {
            batch,
            grid,
            c,
            masks,
        } => decoder_ops::run_conv_transpose2x2_masks(g, r, batch, grid, c, masks),
    }
}

/// fp16 bit patterns of a device buffer (for bit-exact comparisons).
fn download_bits(gpu: &GpuContext, dev: &CudaSlice<u16>) -> Vec<u16> {
    gpu.stream().clone_dtoh(dev).unwrap()
}
