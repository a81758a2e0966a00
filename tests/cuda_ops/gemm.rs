//! The tensor-core GEMM (bias, GELU and fp32-residual epilogues, their fp16-overflow
//! scales) and the 3x3 convolution as an implicit GEMM, against f32 CPU references.
//!
//! Every epilogue computes y = acc * in_scale * row_scale[m] + bias[n] and stores
//! f16(out_scale * y), f16(out_scale * gelu(y)) or residual += y. The references apply the
//! same formula in f32 to the CPU product of the same fp16-rounded inputs. Comparisons are
//! per row in accumulator units: both sides are divided by the row's factor
//! out_scale * in_scale * row_scale[m] (powers of two here, so the division is exact), and
//! then one tolerance fits every row:
//! * atol 1e-3: the fp32 sums of K <= 2304 fp16 products differ only in order, about
//!   sqrt(K) * 2^-24 * sum|terms| < 1e-4 for these inputs;
//! * rtol 1e-3 for fp16 outputs: one rounding to fp16 is at most 2^-11 = 4.9e-4 relative
//!   (the 2x margin covers erff against libm's erf and the fp32 rounding of the factors);
//! * rtol 1e-5 for the fp32 residual: only fp32 rounding of resid + y remains.
//!
//! The unscaled rows (`plain`, factor 1) are the plain GEMM: both sides sum exact fp16
//! products in fp32, in different orders: about sqrt(k) * 2^-24 * |terms| apart (< 1e-4
//! here). The fp16 outputs add 2^-11 relative rounding.

use crate::common::gpu::{assert_close, round_f16, Rng};
use crate::refs::{bits_differ, ref_conv3x3, ref_epilogue, Epi, Epi::*};
use samrt::cpu::ops::gemm::{conv3x3_weight_layout, linear, Par};
use samrt::cuda::ops::gemm::{
    conv3x3_tiled, gemm_tiled_build, Conv3x3Shape, Epilogue, GemmBuild, GemmScales, GemmShape,
    GemmTile,
};
use samrt::cuda::GpuContext;
use samrt::graph::ops::GemmEpilogue;

/// Which epilogue, and the scales and optional inputs to exercise.
#[derive(Clone, Copy, Debug)]
pub struct ScaleCase {
    epi: Epi,
    bias: bool,
    row_scale: bool,
    in_scale: f32,
    out_scale: f32,
    /// `Some(share)`: inputs in [0.5, 1) instead of [-1, 1), every product positive, so
    /// |acc| ~ 0.56 K (the overflow rows), and more than 1/share of the reference outputs
    /// must be past the fp16 range without out_scale.
    overflow: Option<usize>,
}

impl ScaleCase {
    pub fn no_bias(self) -> Self {
        ScaleCase {
            bias: false,
            ..self
        }
    }
}

/// Bias, no row scales, the given in/out scales.
pub fn norows(epi: Epi, in_scale: f32, out_scale: f32) -> ScaleCase {
    ScaleCase {
        epi,
        bias: true,
        row_scale: false,
        in_scale,
        out_scale,
        overflow: None,
    }
}

/// The unscaled epilogue with bias (`GemmScales::default()`).
pub fn plain(epi: Epi) -> ScaleCase {
    norows(epi, 1.0, 1.0)
}

/// Bias and row scales 2^-3..2^4.
pub fn rows(epi: Epi, in_scale: f32, out_scale: f32) -> ScaleCase {
    ScaleCase {
        row_scale: true,
        ..norows(epi, in_scale, out_scale)
    }
}

/// No bias, row scales, in_scale 1/2, out_scale 1/4.
pub fn halved() -> ScaleCase {
    rows(Bias, 0.5, 0.25).no_bias()
}

/// in_scale 2048 on positive inputs, row scales 1 or 2.
pub fn overflow(epi: Epi, out_scale: f32, share: usize) -> ScaleCase {
    ScaleCase {
        overflow: Some(share),
        ..rows(epi, 2048.0, out_scale)
    }
}

/// Row scales 2^e with e drawn from `lo..=hi`.
fn pow2_rows(rng: &mut Rng, rows: usize, lo: i32, hi: i32) -> Vec<f32> {
    (0..rows)
        .map(|_| 2f32.powi(lo + (rng.next() % (hi - lo + 1) as u64) as i32))
        .collect()
}

/// Random inputs for `c`: (a or x, w, bias, row scales (ones without `c.row_scale`),
/// residual).
fn scale_inputs(
    rng: &mut Rng,
    c: ScaleCase,
    rows: usize,
    n: usize,
    a_len: usize,
    w_len: usize,
) -> [Vec<f32>; 5] {
    let positive = c.overflow.is_some();
    let (lo, hi) = if positive { (0.5, 1.0) } else { (-1.0, 1.0) };
    let a = round_f16(&rng.vec(a_len, lo, hi));
    let w = round_f16(&rng.vec(w_len, lo, hi));
    let bias = rng.vec(n, -2.0, 2.0);
    let rs = if !c.row_scale {
        vec![1.0; rows]
    } else if positive {
        pow2_rows(rng, rows, 0, 1)
    } else {
        pow2_rows(rng, rows, -3, 4)
    };
    let resid = rng.vec(rows * n, -4.0, 4.0);
    [a, w, bias, rs, resid]
}

/// `acc` through `c`'s epilogue: the reference and each row's factor.
fn ref_scaled(c: ScaleCase, acc: &[f32], n: usize, ins: &[Vec<f32>; 5]) -> (Vec<f32>, Vec<f32>) {
    let [_, _, bias, rs, resid] = ins;
    let bias = c.bias.then_some(bias.as_slice());
    ref_epilogue(c.epi, acc, n, bias, c.in_scale, rs, c.out_scale, resid)
}

/// Uploads the bias / row scales when `c` asks for them, runs `launch`, downloads the
/// output (`resid.len()` elements, the size of every epilogue's output).
fn run_epilogue<L>(gpu: &GpuContext, c: ScaleCase, ins: &[Vec<f32>; 5], launch: L) -> Vec<f32>
where
    L: FnOnce(Option<&dyn cudarc::driver::DevicePtr<f32>>, GemmScales<'_>, Epilogue<'_>),
{
    let [_, _, bias, rs, resid] = ins;
    let s = gpu.stream();
    let bd = gpu.upload_f32(s, bias).unwrap();
    let rd = gpu.upload_f32(s, rs).unwrap();
    let scales = GemmScales {
        row_scale: c.row_scale.then_some(&rd as _),
        in_scale: c.in_scale,
        out_scale: c.out_scale,
    };
    let bias = c.bias.then_some(&bd as _);
    match c.epi {
        Bias | Gelu => {
            let mut out = gpu.zeros_f16(s, resid.len()).unwrap();
            let e = if matches!(c.epi, Bias) {
                Epilogue::Bias(&mut out)
            } else {
                Epilogue::BiasGelu(&mut out)
            };
            launch(bias, scales, e);
            gpu.download_f16(s, &out).unwrap()
        }
        Residual => {
            let mut r = gpu.upload_f32(s, resid).unwrap();
            launch(bias, scales, Epilogue::BiasResidual(&mut r));
            gpu.download_f32(s, &r).unwrap()
        }
    }
}

/// assert_close on both sides divided by each row's factor (see the banner); for the
/// overflow rows also that the case overflows fp16 without out_scale.
fn assert_close_rows(
    test: &str,
    got: &[f32],
    want: &[f32],
    n: usize,
    factor: &[f32],
    c: ScaleCase,
) {
    let norm = |v: &[f32]| -> Vec<f32> {
        v.iter()
            .enumerate()
            .map(|(i, &x)| x / factor[i / n])
            .collect()
    };
    let rtol = if matches!(c.epi, Residual) {
        1e-5
    } else {
        1e-3
    };
    assert_close(test, &norm(got), &norm(want), 1e-3, rtol);
    if let Some(share) = c.overflow {
        let over = want
            .iter()
            .filter(|&&v| (v / c.out_scale).abs() > 65504.0)
            .count();
        assert!(
            over > want.len() / share,
            "{test}: only {over} large values"
        );
    }
}

/// Every tile sums each output's k16 steps in the same order (and the plain epilogue starts
/// from the bias in all of them), so all tiles give the same bits: that is what lets
/// `GemmTile::select` look at the layer alone. A row that names its tile (`named`) re-runs
/// on every other tile of the same build and compares bits.
fn assert_same_bits_on_every_tile(
    test: &str,
    named: Option<GemmTile>,
    got: &[f32],
    run: impl Fn(GemmTile) -> Vec<f32>,
) {
    let Some(tile) = named else { return };
    for other in GemmTile::ALL.into_iter().filter(|&t| t != tile) {
        let d = bits_differ(got, &run(other));
        assert!(
            d == 0,
            "{test}: tile {other:?} differs from {tile:?} in {d} outputs"
        );
    }
}

/// The GEMM on `GemmBuild::select`'s build (on Hopper and vgpu, which reports compute
/// capability 9.0: the TMA-fed warp-specialised one) against the reference. With
/// `fallback`, also on the cp.async wgmma build (`GemmBuild::Sm90a`) with the same inputs,
/// which must give the same bits: both sum the same k16 wgmma steps in the same order from
/// the same start values and share the epilogue. Off Hopper there is no second build and the
/// row says so. A row that names its tile also runs on the other tiles (same bits).
pub fn run_gemm(
    gpu: &GpuContext,
    rng: &mut Rng,
    test: &str,
    (shape, named, fallback): (GemmShape, Option<GemmTile>, bool),
    c: ScaleCase,
) {
    let GemmShape { m, n, k } = shape;
    let tile = named.unwrap_or(GemmTile::select(n));
    let s = gpu.stream();
    let ins = scale_inputs(rng, c, m, n, m * k, n * k);
    let (a, w) = (&ins[0], &ins[1]);
    let acc = linear(a, m, w, None, n, Par::Threads);
    let (want, factor) = ref_scaled(c, &acc, n, &ins);
    let ad = gpu.upload_f16(s, a).unwrap();
    let wd = gpu.upload_f16(s, w).unwrap();
    let run = |t, build| {
        run_epilogue(gpu, c, &ins, |b, sc, e| {
            gemm_tiled_build(gpu, s, (&ad, &wd), b, shape, sc, e, (t, build)).unwrap()
        })
    };
    let got = run(tile, None);
    assert_close_rows(test, &got, &want, n, &factor, c);
    assert_same_bits_on_every_tile(test, named, &got, |t| run(t, None));
    if !fallback {
        return;
    }
    if !gpu.sm90a_loaded() {
        println!("{test}: no sm_90a build on this device; the fallback comparison is moot");
        return;
    }
    let d = bits_differ(&got, &run(tile, Some(GemmBuild::Sm90a)));
    assert!(
        d == 0,
        "{test}: the TMA and cp.async builds differ in {d} outputs"
    );
    // The warp-specialised form select did not take: the M pair where the tile has one
    // (or the single-tile steps where select paired).
    let epi = match c.epi {
        Bias => GemmEpilogue::Bias,
        Gelu => GemmEpilogue::BiasGelu,
        Residual => GemmEpilogue::BiasResidual,
    };
    let pair = tile.pair_wins(n, k, epi.out_bytes());
    let other = if pair {
        GemmBuild::Sm90aWs
    } else {
        GemmBuild::Sm90aWsPair
    };
    if other.can_replace(GemmBuild::select(true, true, pair), tile) {
        let o = run(tile, Some(other));
        let d = bits_differ(&got, &o);
        assert!(
            d == 0,
            "{test}: {other:?} differs from select's build in {d} outputs"
        );
    }
}

pub fn run_conv3x3(
    gpu: &GpuContext,
    rng: &mut Rng,
    test: &str,
    (sh, named): (Conv3x3Shape, Option<GemmTile>),
    c: ScaleCase,
) {
    let tile = named.unwrap_or(GemmTile::select(sh.cout));
    let s = gpu.stream();
    let m = sh.batch * sh.h * sh.w;
    let ins = scale_inputs(rng, c, m, sh.cout, m * sh.cin, sh.cout * sh.cin * 9);
    let (x, w_official) = (&ins[0], &ins[1]);
    let acc = ref_conv3x3(x, w_official, sh);
    let (want, factor) = ref_scaled(c, &acc, sh.cout, &ins);
    let xd = gpu.upload_f16(s, x).unwrap();
    let wd = gpu
        .upload_f16(s, &conv3x3_weight_layout(w_official, sh.cout, sh.cin))
        .unwrap();
    let run = |t| {
        run_epilogue(gpu, c, &ins, |b, sc, e| match e {
            Epilogue::Bias(out) => conv3x3_tiled(gpu, s, (&xd, &wd), b, sh, sc, out, t).unwrap(),
            _ => unreachable!("conv3x3 has the fp16 bias epilogue only"),
        })
    };
    let got = run(tile);
    assert_close_rows(test, &got, &want, sh.cout, &factor, c);
    assert_same_bits_on_every_tile(test, named, &got, run);
}
