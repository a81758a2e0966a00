//! Conv2d whose stride equals its kernel size and has no padding (the prompt encoder's mask
//! downscaling, k2 s2). Windows do not overlap, so each output is one bias plus one dot
//! product over `cin*k*k` inputs; the maps are small (at most 256x256), so direct loops are
//! fast enough and keep the summation order obvious.

use crate::error::{Error, Result};

/// `x` is CHW `[cin, h, w]`, `weight` the official `[cout, cin, k, k]`, `bias` `[cout]`.
/// Returns CHW `[cout, h/k, w/k]` (floor, as PyTorch does).
pub fn strided_conv2d(
    x: &[f32],
    cin: usize,
    h: usize,
    w: usize,
    weight: &[f32],
    bias: &[f32],
    k: usize,
) -> Result<Vec<f32>> {
    let cout = bias.len();
    if k == 0 || x.len() != cin * h * w || weight.len() != cout * cin * k * k {
        return Err(Error::Shape {
            name: "strided_conv2d".into(),
            expected: vec![cout, cin, k, k],
            got: vec![weight.len(), x.len()],
        });
    }
    let (oh, ow) = (h / k, w / k);
    let mut out = vec![0.0f32; cout * oh * ow];
    for o in 0..cout {
        let wo = &weight[o * cin * k * k..(o + 1) * cin * k * k];
        let plane = &mut out[o * oh * ow..(o + 1) * oh * ow];
        for y in 0..oh {
            for xx in 0..ow {
                let mut acc = 0.0f32;
                for i in 0..cin {
                    for dy in 0..k {
                        let row = &x[(i * h + y * k + dy) * w + xx * k..][..k];
                        let wr = &wo[(i * k + dy) * k..][..k];
                        for (a, b) in row.iter().zip(wr) {
                            acc += a * b;
                        }
                    }
                }
                plane[y * ow + xx] = acc + bias[o];
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values_k2() {
        // One input channel 2x4, two output channels.
        let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
        let w = [1.0, 0.0, 0.0, 1.0, 0.5, 0.5, 0.5, 0.5];
        let out = strided_conv2d(&x, 1, 2, 4, &w, &[0.25, -1.0], 2).unwrap();
        // ch0: x[0,0]+x[1,1] = 1+6, 3+8; ch1: mean*2 of each window.
        assert_eq!(out, vec![7.25, 11.25, 6.0, 10.0]);
    }

    #[test]
    fn rejects_mismatched_input() {
        assert!(strided_conv2d(&[1.0; 7], 1, 2, 4, &[1.0; 4], &[0.0], 2).is_err());
    }
}
