//! Dense f32 matrix products on the `gemm` crate. Every model matmul goes through here so
//! that threading is decided in one place.

use crate::cpu::vmath::simd_dispatch;
use gemm::Parallelism;

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
