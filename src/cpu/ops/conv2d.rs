//! PyTorch `Conv2d` (square kernel, zero padding, no dilation or groups) on one image, as
//! im2col + GEMM. The output is channels-last `[oh*ow, out]` because every caller (patch
//! embedding, the encoder neck) works on token maps.

use crate::cpu::ops::gemm::{matmul, MatRef, Par};
use crate::cpu::ops::layer_norm::transpose;
use crate::error::{Error, Result};
use rayon::prelude::*;

/// Where element (c, y, x) of a 3-D input lives: `c*c_stride + y*y_stride + x*x_stride`.
/// Lets one im2col read both CHW images and HWC token maps without a transpose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub c_stride: usize,
    pub y_stride: usize,
    pub x_stride: usize,
}

impl Layout {
    /// Channel-first `[C, H, W]`.
    pub fn chw(channels: usize, height: usize, width: usize) -> Self {
        Layout {
            channels,
            height,
            width,
            c_stride: height * width,
            y_stride: width,
            x_stride: 1,
        }
    }
    /// Channels-last `[H, W, C]` (a token map).
    pub fn hwc(channels: usize, height: usize, width: usize) -> Self {
        Layout {
            channels,
            height,
            width,
            c_stride: 1,
            y_stride: width * channels,
            x_stride: channels,
        }
    }
    fn len(&self) -> usize {
        self.channels * self.height * self.width
    }
}

/// Kernel geometry: square `kernel`, equal `stride` and `pad` on both axes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeom {
    pub kernel: usize,
    pub stride: usize,
    pub pad: usize,
}

impl ConvGeom {
    /// Output side for an input side, as PyTorch floors it.
    pub fn out_size(&self, input: usize) -> Option<usize> {
        let span = input + 2 * self.pad;
        if self.kernel == 0 || self.stride == 0 || span < self.kernel {
            return None;
        }
        Some((span - self.kernel) / self.stride + 1)
    }
}

/// Output pixels per parallel task: big enough for an efficient GEMM, small enough that the
/// im2col block of the 3x3 neck conv (256 x 2304 floats) stays in L2/L3.
const PIXELS_PER_TASK: usize = 256;

/// Convolves `input` (described by `layout`) with `weight` `[out, C, k, k]`.
/// Returns `(y, oh, ow)` with `y` channels-last `[oh*ow, out]`.
pub fn conv2d(
    input: &[f32],
    layout: Layout,
    weight: &[f32],
    out_channels: usize,
    geom: ConvGeom,
    bias: Option<&[f32]>,
) -> Result<(Vec<f32>, usize, usize)> {
    let shape_err = |name: &str, expected: Vec<usize>, got: Vec<usize>| Error::Shape {
        name: name.to_string(),
        expected,
        got,
    };
    let last = (layout.channels.max(1) - 1) * layout.c_stride
        + (layout.height.max(1) - 1) * layout.y_stride
        + (layout.width.max(1) - 1) * layout.x_stride;
    if layout.len() == 0 || input.len() <= last {
        return Err(shape_err(
            "conv2d input",
            vec![layout.channels, layout.height, layout.width],
            vec![input.len()],
        ));
    }
    let k = geom.kernel;
    let cols = layout.channels * k * k;
    if weight.len() != out_channels * cols {
        return Err(shape_err(
            "conv2d weight",
            vec![out_channels, layout.channels, k, k],
            vec![weight.len()],
        ));
    }
    if let Some(b) = bias {
        if b.len() != out_channels {
            return Err(shape_err("conv2d bias", vec![out_channels], vec![b.len()]));
        }
    }
    let (oh, ow) = match (geom.out_size(layout.height), geom.out_size(layout.width)) {
        (Some(h), Some(w)) => (h, w),
        _ => {
            return Err(Error::Unsupported(format!(
                "conv2d kernel {k} stride {} pad {} on a {}x{} input",
                geom.stride, geom.pad, layout.height, layout.width
            )))
        }
    };
    let pixels = oh * ow;
    // [cols, out] row-major: the GEMM kernels prefer it to a strided view of [out, cols].
    let wt = transpose(weight, out_channels, cols);
    let mut y = vec![0.0f32; pixels * out_channels];
    // A 1x1 stride-1 conv on a dense channels-last map is a plain Linear: skip the copy.
    let direct = k == 1
        && geom.stride == 1
        && geom.pad == 0
        && layout == Layout::hwc(layout.channels, layout.height, layout.width);
    y.par_chunks_mut(PIXELS_PER_TASK * out_channels)
        .enumerate()
        .for_each(|(task, out)| {
            let p0 = task * PIXELS_PER_TASK;
            let np = out.len() / out_channels;
            if let Some(b) = bias {
                out.chunks_mut(out_channels)
                    .for_each(|r| r.copy_from_slice(b));
            }
            let alpha = if bias.is_some() { 1.0 } else { 0.0 };
            let w = MatRef::rows(&wt, cols, out_channels);
            if direct {
                let a = &input[p0 * cols..(p0 + np) * cols];
                matmul(
                    MatRef::rows(a, np, cols),
                    w,
                    out,
                    out_channels,
                    alpha,
                    Par::Seq,
                );
                return;
            }
            let mut col = vec![0.0f32; np * cols];
            im2col(input, &layout, geom, ow, p0, &mut col);
            matmul(
                MatRef::rows(&col, np, cols),
                w,
                out,
                out_channels,
                alpha,
                Par::Seq,
            );
        });
    Ok((y, oh, ow))
}

/// Fills `col` (`[np, C*k*k]`, column order (c, ky, kx) to match the weight layout) for the
/// output pixels starting at `p0`; taps in the padding stay zero.
fn im2col(input: &[f32], l: &Layout, g: ConvGeom, ow: usize, p0: usize, col: &mut [f32]) {
    let k = g.kernel;
    let cols = l.channels * k * k;
    for (i, row) in col.chunks_mut(cols).enumerate() {
        let (oy, ox) = ((p0 + i) / ow, (p0 + i) % ow);
        for ky in 0..k {
            let iy = (oy * g.stride + ky) as isize - g.pad as isize;
            if iy < 0 || iy >= l.height as isize {
                continue;
            }
            for kx in 0..k {
                let ix = (ox * g.stride + kx) as isize - g.pad as isize;
                if ix < 0 || ix >= l.width as isize {
                    continue;
                }
                let base = iy as usize * l.y_stride + ix as usize * l.x_stride;
                for c in 0..l.channels {
                    row[c * k * k + ky * k + kx] = input[base + c * l.c_stride];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_shapes() {
        let x = vec![1.0; 2 * 4 * 4];
        let l = Layout::chw(2, 4, 4);
        let g = ConvGeom {
            kernel: 3,
            stride: 1,
            pad: 1,
        };
        assert!(conv2d(&x, l, &[0.5; 17], 1, g, None).is_err());
        assert!(conv2d(&x[..31], l, &[0.5; 18], 1, g, None).is_err());
        let big = ConvGeom {
            kernel: 9,
            stride: 1,
            pad: 0,
        };
        assert!(conv2d(&x, l, &[0.5; 2 * 81], 1, big, None).is_err());
        assert!(conv2d(&x, l, &[0.5; 18], 1, g, None).is_ok());
    }
}
