//! Dense f32 matrix products on the `gemm` crate. Every model matmul goes through here so
//! that threading is decided in one place. The gemm kernel family's CPU side: `Linear`
//! (the `gemm_bias*` ops' reference), and the 3x3 convolution (`conv3x3`), which the GPU
//! computes as an implicit GEMM in the same `kernels/gemm.cu`.

use crate::cpu::ops::layer_norm::transpose;
use crate::cpu::ops::vmath::simd_dispatch;
use crate::error::Result;
use crate::io::weights::WeightSource;
use gemm::Parallelism;
use rayon::prelude::*;

/// How a [`Linear`] keeps its weight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightLayout {
    /// `[out, in]` as the checkpoint stores it: [`linear`] (dot products for a few rows,
    /// the gemm crate for many).
    OutIn,
    /// `[in, out]`: for many-row products on one thread, where the gemm kernels run ~30%
    /// faster on a row-major right-hand side than on the strided view of `[out, in]`.
    InOut,
}

/// PyTorch `Linear` with its weights: the one Linear of the CPU model.
pub struct Linear {
    /// In `layout` order.
    pub w: Vec<f32>,
    pub b: Vec<f32>,
    pub inp: usize,
    pub out: usize,
    pub layout: WeightLayout,
}

impl Linear {
    /// `{prefix}.weight` `[out, in]` and `{prefix}.bias` `[out]`, kept in `layout`.
    pub fn load(
        src: &dyn WeightSource,
        prefix: &str,
        inp: usize,
        out: usize,
        layout: WeightLayout,
    ) -> Result<Self> {
        let w = src.f32(&format!("{prefix}.weight"), &[out, inp])?;
        Ok(Linear {
            w: match layout {
                WeightLayout::OutIn => w,
                WeightLayout::InOut => transpose(&w, out, inp),
            },
            b: src.f32(&format!("{prefix}.bias"), &[out])?,
            inp,
            out,
            layout,
        })
    }

    /// `x @ w^T + b` for `x` `[rows, in]`.
    pub fn forward(&self, x: &[f32], rows: usize, par: Par) -> Vec<f32> {
        match self.layout {
            WeightLayout::OutIn => linear(x, rows, &self.w, Some(&self.b), self.out, par),
            WeightLayout::InOut => {
                let mut y = vec![0.0f32; rows * self.out];
                self.forward_into(x, &mut y, par);
                y
            }
        }
    }

    /// `y = x @ w^T + b` into `y` (which may be longer); `x` is `[m, in]`. An `OutIn`
    /// weight goes through [`linear`]; an `InOut` one is one product onto the bias rows.
    pub fn forward_into(&self, x: &[f32], y: &mut [f32], par: Par) {
        let m = x.len() / self.inp;
        let y = &mut y[..m * self.out];
        match self.layout {
            WeightLayout::OutIn => y.copy_from_slice(&self.forward(x, m, par)),
            WeightLayout::InOut => {
                y.chunks_exact_mut(self.out)
                    .for_each(|r| r.copy_from_slice(&self.b));
                matmul(
                    MatRef::rows(x, m, self.inp),
                    MatRef::rows(&self.w, self.inp, self.out),
                    y,
                    self.out,
                    1.0,
                    par,
                );
            }
        }
    }
}

/// Whether a product may fan out over the rayon pool. Callers already inside a parallel
/// loop (per head, per window) pass `Seq` so threads are not oversubscribed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Par {
    Seq,
    Threads,
}

impl Par {
    fn to_gemm(self) -> Parallelism {
        match self {
            Par::Seq => Parallelism::None,
            Par::Threads => {
                let n = rayon::current_num_threads();
                if n <= 1 {
                    Parallelism::None
                } else {
                    Parallelism::Rayon(n)
                }
            }
        }
    }
}

/// A strided read-only matrix view: element (i, j) is `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub struct MatRef<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a> MatRef<'a> {
    /// Row-major `rows x cols`.
    pub fn rows(data: &'a [f32], rows: usize, cols: usize) -> Self {
        MatRef {
            data,
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }
    /// Transposed view of a row-major `[cols, rows]` buffer (e.g. a Linear weight [out,in]
    /// viewed as [in,out]).
    pub fn transposed(data: &'a [f32], rows: usize, cols: usize) -> Self {
        MatRef {
            data,
            rows,
            cols,
            rs: 1,
            cs: rows,
        }
    }
    /// Row-major with an explicit row stride (a column slice of a wider matrix).
    pub fn strided(data: &'a [f32], rows: usize, cols: usize, rs: usize) -> Self {
        MatRef {
            data,
            rows,
            cols,
            rs,
            cs: 1,
        }
    }
    fn check(&self) {
        if self.rows > 0 && self.cols > 0 {
            let last = (self.rows - 1) * self.rs + (self.cols - 1) * self.cs;
            assert!(last < self.data.len(), "matrix view out of bounds");
        }
    }
}

/// `c[m, n] = alpha * c + a[m, k] @ b[k, n]`, with `c` row-major of row stride `ldc`.
/// `alpha = 0` overwrites `c`.
pub fn matmul(a: MatRef, b: MatRef, c: &mut [f32], ldc: usize, alpha: f32, par: Par) {
    assert_eq!(a.cols, b.rows, "inner dimensions differ");
    a.check();
    b.check();
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if m == 0 || n == 0 {
        return;
    }
    assert!((m - 1) * ldc + n <= c.len(), "output too small");
    if k == 0 {
        c.chunks_mut(ldc)
            .take(m)
            .for_each(|r| r[..n].iter_mut().for_each(|v| *v *= alpha));
        return;
    }
    // SAFETY: bounds of all three views were checked above; the views do not alias because
    // `c` is a unique borrow.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            ldc as isize,
            alpha != 0.0,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            alpha,
            1.0,
            false,
            false,
            false,
            par.to_gemm(),
        )
    }
}

/// PyTorch `Linear`: `y[m, out] = x[m, in] @ w[out, in]^T + bias`.
pub fn linear(
    x: &[f32],
    m: usize,
    w: &[f32],
    bias: Option<&[f32]>,
    out: usize,
    par: Par,
) -> Vec<f32> {
    let inp = w.len() / out;
    assert_eq!(x.len(), m * inp);
    let mut y = vec![0.0f32; m * out];
    if let Some(b) = bias {
        assert_eq!(b.len(), out);
        y.chunks_mut(out).for_each(|r| r.copy_from_slice(b));
    }
    if m <= SMALL_ROWS {
        linear_few_rows(x, m, w, out, &mut y);
    } else {
        linear_into(x, m, w, out, &mut y, bias.is_some(), par);
    }
    y
}

/// Up to this many rows, `linear` takes dot products against the weight rows instead of
/// calling the gemm crate, which packs the whole weight matrix on every call: for the mask
/// decoder's 7 prompt tokens through a 256x2048 MLP, packing cost ~15x the arithmetic.
const SMALL_ROWS: usize = 16;

/// `y[t, o] += x[t] . w[o]`, reading each weight row once for all rows of `x`.
fn linear_few_rows(x: &[f32], m: usize, w: &[f32], out: usize, y: &mut [f32]) {
    let inp = w.len() / out.max(1);
    if inp == 0 {
        return;
    }
    simd_dispatch!((x: &[f32], m: usize, w: &[f32], inp: usize, out: usize, y: &mut [f32]) -> () {
        for (o, wr) in w.chunks_exact(inp).enumerate() {
            for (t, xr) in x.chunks_exact(inp).take(m).enumerate() {
                y[t * out + o] += dot(xr, wr);
            }
        }
    })
}

/// Dot product with 16 independent FMA accumulators so it vectorises.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..16 {
            acc[i] = x[i].mul_add(y[i], acc[i]);
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `y += x @ w^T` (or `=` when `accumulate` is false); `y` is `[m, out]` row-major.
pub fn linear_into(
    x: &[f32],
    m: usize,
    w: &[f32],
    out: usize,
    y: &mut [f32],
    accumulate: bool,
    par: Par,
) {
    let inp = w.len() / out;
    matmul(
        MatRef::rows(x, m, inp),
        MatRef::transposed(w, inp, out),
        y,
        out,
        if accumulate { 1.0 } else { 0.0 },
        par,
    );
}

/// `[out, in, 3, 3]` -> 9 transposed `[in, out]` matrices, one per tap in (ky, kx) order.
pub fn split_taps(w: &[f32], out: usize, inp: usize) -> Vec<Vec<f32>> {
    (0..9)
        .map(|t| {
            let tap: Vec<f32> = (0..out * inp).map(|i| w[i * 9 + t]).collect();
            transpose(&tap, out, inp)
        })
        .collect()
}

/// Output pixels per parallel task of [`conv3x3`].
const TAP_PIXELS: usize = 256;

/// 3x3 conv, stride 1, zero padding 1, no bias, on a channels-last `[g*g, c]` map:
/// `[g*g, out]`. One GEMM per tap (K = c) and the 9 tap results added in (ky, kx) order,
/// rather than one K = 9c GEMM over an im2col matrix: each f32 accumulation chain is 9x
/// shorter, which brings the neck's rounding error (vit_b: 3.9e-7 relative with im2col)
/// down to torch float32's (2.3e-7) against float64. It is also faster at 1024 (64x64x256:
/// 130 ms against 165 ms on 2 cores): no 9c-wide im2col rows.
pub fn conv3x3(x: &[f32], g: usize, c: usize, taps: &[Vec<f32>], out: usize) -> Vec<f32> {
    let mut y = vec![0.0f32; g * g * out];
    y.par_chunks_mut(TAP_PIXELS * out)
        .enumerate()
        .for_each_init(
            || (vec![0.0f32; TAP_PIXELS * c], vec![0.0f32; TAP_PIXELS * out]),
            |(a, tmp), (task, yc)| {
                let p0 = task * TAP_PIXELS;
                let np = yc.len() / out;
                for (t, w) in taps.iter().enumerate() {
                    let (dy, dx) = ((t / 3) as isize - 1, (t % 3) as isize - 1);
                    for (i, row) in a.chunks_exact_mut(c).take(np).enumerate() {
                        let (oy, ox) = (((p0 + i) / g) as isize, ((p0 + i) % g) as isize);
                        let (iy, ix) = (oy + dy, ox + dx);
                        if iy < 0 || ix < 0 || iy >= g as isize || ix >= g as isize {
                            row.fill(0.0);
                        } else {
                            let src = (iy as usize * g + ix as usize) * c;
                            row.copy_from_slice(&x[src..src + c]);
                        }
                    }
                    let dst: &mut [f32] = if t == 0 { yc } else { &mut tmp[..np * out] };
                    matmul(
                        MatRef::rows(&a[..np * c], np, c),
                        MatRef::rows(w, c, out),
                        dst,
                        out,
                        0.0,
                        Par::Seq,
                    );
                    if t > 0 {
                        add_assign(yc, &tmp[..np * out]);
                    }
                }
            },
        );
    y
}

fn add_assign(x: &mut [f32], y: &[f32]) {
    x.iter_mut().zip(y).for_each(|(a, b)| *a += b);
}

/// PyTorch's Conv2d weight `[cout][cin][3][3]` permuted to `[cout][ky][kx][cin]`, the
/// K-contiguous layout `conv3x3_f16` reads (column `k = (ky*3 + kx)*cin + c` of output
/// channel `o`). Done once, when the weights are uploaded.
///
/// # Panics
/// If `weight.len() != cout * cin * 9` (the caller has checked the checkpoint tensor's
/// shape against `[cout, cin, 3, 3]`).
pub fn conv3x3_weight_layout<T: Copy>(weight: &[T], cout: usize, cin: usize) -> Vec<T> {
    assert_eq!(
        Some(weight.len()),
        cout.checked_mul(cin).and_then(|v| v.checked_mul(9)),
        "conv3x3 weight of {} elements is not [{cout}, {cin}, 3, 3]",
        weight.len()
    );
    let mut out = Vec::with_capacity(weight.len());
    if weight.is_empty() {
        return out;
    }
    for src in weight.chunks_exact(cin * 9) {
        for tap in 0..9 {
            out.extend((0..cin).map(|c| src[c * 9 + tap]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0f64;
                for t in 0..k {
                    s += a[i * k + t] as f64 * b[t * n + j] as f64;
                }
                c[i * n + j] = s as f32;
            }
        }
        c
    }

    #[test]
    fn matmul_matches_naive_on_odd_shapes() {
        let (m, k, n) = (37, 53, 29);
        let a: Vec<f32> = (0..m * k)
            .map(|i| ((i * 7919) % 113) as f32 / 57.0 - 1.0)
            .collect();
        let b: Vec<f32> = (0..k * n)
            .map(|i| ((i * 104729) % 97) as f32 / 49.0 - 1.0)
            .collect();
        let want = naive(&a, &b, m, k, n);
        for par in [Par::Seq, Par::Threads] {
            let mut c = vec![1.0; m * n];
            matmul(
                MatRef::rows(&a, m, k),
                MatRef::rows(&b, k, n),
                &mut c,
                n,
                0.0,
                par,
            );
            for (x, y) in c.iter().zip(&want) {
                assert!((x - y).abs() < 1e-4, "{x} vs {y}");
            }
        }
    }

    #[test]
    fn linear_adds_bias_and_transposes_weight() {
        let x = [1.0, 2.0, 3.0, 4.0]; // [2,2]
        let w = [1.0, 0.0, 1.0, 1.0, 0.0, 2.0]; // [3,2]
        let y = linear(&x, 2, &w, Some(&[0.5, 0.5, 0.5]), 3, Par::Seq);
        assert_eq!(y, vec![1.5, 3.5, 4.5, 3.5, 7.5, 8.5]);
    }

    #[test]
    fn linear_few_and_many_rows_match_naive() {
        // 7 rows (the decoder's tokens), 16 (last small), 17 (gemm); 37 inputs leave a
        // tail after the 16-lane chunks.
        for (m, inp, out) in [(7, 256, 33), (16, 37, 5), (17, 37, 5), (1, 3, 2)] {
            let x: Vec<f32> = (0..m * inp)
                .map(|i| ((i * 7919) % 113) as f32 / 57.0 - 1.0)
                .collect();
            let w: Vec<f32> = (0..out * inp)
                .map(|i| ((i * 104729) % 97) as f32 / 49.0 - 1.0)
                .collect();
            let b: Vec<f32> = (0..out).map(|i| i as f32 * 0.25 - 0.5).collect();
            let wt: Vec<f32> = (0..inp * out)
                .map(|i| w[(i % out) * inp + i / out])
                .collect();
            let want = naive(&x, &wt, m, inp, out);
            let got = linear(&x, m, &w, Some(&b), out, Par::Seq);
            for (i, (g, v)) in got.iter().zip(&want).enumerate() {
                // Sums of up to 256 products of O(1): f32 vs f64 within 1e-4.
                assert!((g - (v + b[i % out])).abs() < 1e-4, "m {m}: {g} vs {v}");
            }
        }
    }
}
