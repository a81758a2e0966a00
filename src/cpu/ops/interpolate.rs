//! `F.interpolate` for the encoder's position tables, run once at load when a model runs at
//! an input size other than the one its checkpoint was made for.
//!
//! - Rel-pos tables: the official `get_rel_pos` resizes a table whose length is not
//!   `2S-1` with `mode="linear"` (align_corners False), in the model's dtype: computed here
//!   in f32 as PyTorch's CPU kernel does.
//! - `pos_embed`: the official `ImageEncoderViT` adds it as stored, so a checkpoint made for
//!   another grid does not run there at all. samrt resizes it the way the encoder's ViTDet
//!   ancestor does (`get_abs_pos`: bicubic, align_corners False); computed in f64 and
//!   rounded once, so it is as close to PyTorch's f32 result as that is to the exact one.

/// PyTorch's source coordinate for output index `dst` (align_corners False):
/// `scale * (dst + 0.5) - 0.5`, `scale = in / out`.
fn source_f32(scale: f32, dst: usize) -> f32 {
    scale * (dst as f32 + 0.5) - 0.5
}

/// A rel-pos table `[rows, hd]` resized to `[out_rows, hd]` along its rows:
/// `F.interpolate(t.reshape(1, rows, hd).permute(0, 2, 1), size=out_rows, mode="linear")`
/// permuted back, as `get_rel_pos` does. The source index is clamped at 0, the upper
/// neighbour at the last row.
pub fn linear_rows(table: &[f32], rows: usize, hd: usize, out_rows: usize) -> Vec<f32> {
    assert_eq!(table.len(), rows * hd, "table is [rows, hd]");
    assert!(rows > 0 && out_rows > 0, "resizing an empty table");
    let scale = rows as f32 / out_rows as f32;
    let mut out = Vec::with_capacity(out_rows * hd);
    for dst in 0..out_rows {
        let src = source_f32(scale, dst).max(0.0);
        let i0 = (src.floor() as usize).min(rows - 1);
        let l1 = (src - i0 as f32).clamp(0.0, 1.0);
        let l0 = 1.0 - l1;
        let i1 = if i0 < rows - 1 { i0 + 1 } else { i0 };
        let (r0, r1) = (
            &table[i0 * hd..(i0 + 1) * hd],
            &table[i1 * hd..(i1 + 1) * hd],
        );
        out.extend(r0.iter().zip(r1).map(|(&a, &b)| l0 * a + l1 * b));
    }
    out
}

/// PyTorch's cubic convolution weights (A = -0.75) for the four taps around a source
/// coordinate with fractional part `t`.
fn cubic_weights(t: f64) -> [f64; 4] {
    const A: f64 = -0.75;
    let near = |x: f64| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let far = |x: f64| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
    [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)]
}

/// Per output index: the four clamped source indices and their weights.
fn cubic_axis(n_in: usize, n_out: usize) -> Vec<([usize; 4], [f64; 4])> {
    let scale = n_in as f64 / n_out as f64;
    (0..n_out)
        .map(|dst| {
            let src = scale * (dst as f64 + 0.5) - 0.5;
            let base = src.floor();
            let at = |k: i64| (base as i64 + k).clamp(0, n_in as i64 - 1) as usize;
            ([at(-1), at(0), at(1), at(2)], cubic_weights(src - base))
        })
        .collect()
}

/// A `[g, g, d]` (HWC) map resized to `[out, out, d]`:
/// `F.interpolate(x.permute(0, 3, 1, 2), size=(out, out), mode="bicubic",
/// align_corners=False)` permuted back. Samples outside the map take the nearest edge
/// value, as PyTorch's bounded access does.
pub fn bicubic_hwc(map: &[f32], g: usize, d: usize, out: usize) -> Vec<f32> {
    assert_eq!(map.len(), g * g * d, "map is [g, g, d]");
    assert!(g > 0 && out > 0, "resizing an empty map");
    let ax = cubic_axis(g, out);
    let mut res = vec![0.0f32; out * out * d];
    let mut acc = vec![0.0f64; d];
    for (oy, (ys, wy)) in ax.iter().enumerate() {
        for (ox, (xs, wx)) in ax.iter().enumerate() {
            acc.fill(0.0);
            for (&y, &fy) in ys.iter().zip(wy) {
                for (&x, &fx) in xs.iter().zip(wx) {
                    let f = fy * fx;
                    let px = &map[(y * g + x) * d..(y * g + x + 1) * d];
                    for (a, &v) in acc.iter_mut().zip(px) {
                        *a += f * v as f64;
                    }
                }
            }
            let o = &mut res[(oy * out + ox) * d..(oy * out + ox + 1) * d];
            for (r, &a) in o.iter_mut().zip(&acc) {
                *r = a as f32;
            }
        }
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_size_is_the_identity() {
        let t: Vec<f32> = (0..27 * 3).map(|i| (i as f32 * 0.37).sin()).collect();
        assert_eq!(linear_rows(&t, 27, 3, 27), t);
        let m: Vec<f32> = (0..5 * 5 * 2).map(|i| (i as f32 * 0.11).cos()).collect();
        assert_eq!(bicubic_hwc(&m, 5, 2, 5), m);
    }

    #[test]
    fn linear_rows_follow_pytorch() {
        // F.interpolate(torch.tensor([[[0., 1., 4., 9.]]]), size=7, mode="linear"):
        // scale 4/7, sources max(0, (i + 0.5) * 4/7 - 0.5).
        let t = [0.0f32, 1.0, 4.0, 9.0];
        let got = linear_rows(&t, 4, 1, 7);
        let want: Vec<f32> = (0..7)
            .map(|i| {
                let s = ((i as f64 + 0.5) * 4.0 / 7.0 - 0.5).max(0.0);
                let i0 = s.floor() as usize;
                let i1 = (i0 + 1).min(3);
                let l = s - i0 as f64;
                ((1.0 - l) * t[i0] as f64 + l * t[i1] as f64) as f32
            })
            .collect();
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-6, "{got:?} vs {want:?}");
        }
        assert_eq!(got[0], 0.0);
        assert_eq!(got[6], 9.0);
    }

    #[test]
    fn bicubic_keeps_constants_and_linear_ramps_inside() {
        // Cubic weights sum to 1, so a constant map stays constant.
        let c = vec![2.5f32; 8 * 8 * 3];
        assert!(bicubic_hwc(&c, 8, 3, 5)
            .iter()
            .all(|&v| (v - 2.5).abs() < 1e-6));
        // Away from the clamped border a linear ramp is reproduced exactly (Keys cubic is
        // exact on linear functions).
        let ramp: Vec<f32> = (0..16 * 16).map(|i| (i % 16) as f32).collect();
        let out = bicubic_hwc(&ramp, 16, 1, 8);
        for x in 2..6 {
            let want = (x as f64 + 0.5) * 2.0 - 0.5;
            assert!(
                (out[3 * 8 + x] as f64 - want).abs() < 1e-5,
                "{x}: {}",
                out[3 * 8 + x]
            );
        }
    }
}
