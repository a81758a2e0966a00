//! Image normalisation fused with the patch embedding's im2col: the CPU twin of
//! `kernels/preprocess_patchify.cu`.
//!
//! The input is the Pillow-resized image (HWC uint8, long side = `img_size`); the output is
//! the patch matrix `[grid*grid, 3*patch*patch]` whose row `py*grid + px` holds patch
//! (py, px) in the column order (c, ky, kx) of the official Conv2d weight `[D, 3, P, P]`
//! flattened, so `patches @ weight.view(D, -1)^T + bias` is the patch embedding. Values are
//! `(pixel as f32 - mean[c]) / std[c]` in f32, the operations and their order of
//! [`crate::cpu::ops::preprocess_patchify::preprocess`]; the official zero padding (bottom/right, after
//! normalisation) fills pixels outside the image.

use crate::error::{Error, Result};
use crate::io::image::resize::{resize_bilinear_pillow, resize_shape};
use crate::io::image::rgb::RgbImage;
use rayon::prelude::*;

/// SAM's pixel statistics (RGB, 0..255 scale); not stored in the checkpoint.
pub const PIXEL_MEAN: [f32; 3] = [123.675, 116.28, 103.53];
pub const PIXEL_STD: [f32; 3] = [58.395, 57.12, 57.375];

/// `SamPredictor.set_image` input: Pillow resize to the long side `target`, then
/// `(x - mean) / std` in f32, then zero padding bottom/right to `target x target`.
///
/// Returns the CHW tensor and `input_size` = (resized h, resized w). Fails when the
/// resized image would have a zero side (aspect ratio beyond 2*target:1), where the
/// official pipeline errors too.
pub fn preprocess(img: &RgbImage, target: usize) -> Result<(Vec<f32>, (usize, usize))> {
    let resized = resize_longest_side(img, target)?;
    let (nh, nw) = (resized.height, resized.width);
    let plane = target * target;
    let mut out = vec![0f32; 3 * plane];
    out.par_chunks_mut(target)
        .enumerate()
        .for_each(|(row_idx, orow)| {
            let (c, y) = (row_idx / target, row_idx % target);
            if y >= nh {
                return;
            }
            let (mean, std) = (PIXEL_MEAN[c], PIXEL_STD[c]);
            let srow = &resized.data[y * nw * 3..(y + 1) * nw * 3];
            for (x, o) in orow.iter_mut().take(nw).enumerate() {
                *o = (srow[x * 3 + c] as f32 - mean) / std;
            }
        });
    Ok((out, (nh, nw)))
}

/// The Pillow resize to the long side `target` that both [`preprocess`] and
/// [`preprocess_patchify`] start from; an error when a side would be 0.
pub fn resize_longest_side(img: &RgbImage, target: usize) -> Result<RgbImage> {
    img.check()?;
    let (nh, nw) = resize_shape(img.height, img.width, target);
    if nh == 0 || nw == 0 || nh > target || nw > target {
        return Err(Error::Image(format!(
            "{}x{} image cannot be resized to long side {target} (gives {nw}x{nh})",
            img.width, img.height
        )));
    }
    Ok(resize_bilinear_pillow(img, nw, nh))
}

/// Input channels (RGB).
pub const PATCHIFY_CHANS: usize = 3;

/// Square input side and patch side; `img_size` is a multiple of `patch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PatchGeom {
    pub img_size: usize,
    pub patch: usize,
}

impl PatchGeom {
    /// Patches per side.
    pub fn grid(&self) -> usize {
        self.img_size / self.patch
    }

    /// Rows of the patch matrix per image: `grid^2`.
    pub fn rows(&self) -> usize {
        self.grid() * self.grid()
    }

    /// Columns of the patch matrix: `3 * patch^2` (the GEMM's K).
    pub fn cols(&self) -> usize {
        PATCHIFY_CHANS * self.patch * self.patch
    }

    /// Elements of one image's patch matrix.
    pub fn len(&self) -> usize {
        self.rows() * self.cols()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A positive patch dividing a positive image side.
    pub fn validate(&self) -> Result<()> {
        if self.patch == 0 || self.img_size == 0 || !self.img_size.is_multiple_of(self.patch) {
            return Err(Error::Unsupported(format!(
                "patchify: img_size {} is not a positive multiple of patch {}",
                self.img_size, self.patch
            )));
        }
        Ok(())
    }

    /// A resized image as the official pipeline produces it: both sides in
    /// `1..=img_size`, the long side equal to `img_size` (`ResizeLongestSide`).
    pub fn check_image(&self, height: usize, width: usize) -> Result<()> {
        if height == 0 || width == 0 || height.max(width) != self.img_size {
            return Err(Error::Image(format!(
                "patchify: a {width}x{height} image is not resized to long side {}",
                self.img_size
            )));
        }
        Ok(())
    }
}

/// The patch matrix of one resized image (`rgb`: HWC, `height * width * 3` bytes), f32
/// before the fp16 rounding the GPU applies.
pub fn preprocess_patchify(
    rgb: &[u8],
    height: usize,
    width: usize,
    geom: PatchGeom,
) -> Result<Vec<f32>> {
    geom.validate()?;
    geom.check_image(height, width)?;
    if rgb.len() != height * width * PATCHIFY_CHANS {
        return Err(Error::Image(format!(
            "patchify: a {width}x{height} RGB image needs {} bytes, got {}",
            height * width * PATCHIFY_CHANS,
            rgb.len()
        )));
    }
    let (g, p) = (geom.grid(), geom.patch);
    let mut out = vec![0f32; geom.len()];
    for (patch, row) in out.chunks_exact_mut(geom.cols()).enumerate() {
        let (py, px) = (patch / g, patch % g);
        for (c, plane) in row.chunks_exact_mut(p * p).enumerate() {
            let (mean, std) = (PIXEL_MEAN[c], PIXEL_STD[c]);
            for (ky, prow) in plane.chunks_exact_mut(p).enumerate() {
                let y = py * p + ky;
                if y >= height {
                    continue;
                }
                for (kx, o) in prow.iter_mut().enumerate() {
                    let x = px * p + kx;
                    if x < width {
                        *o = (rgb[(y * width + x) * PATCHIFY_CHANS + c] as f32 - mean) / std;
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Rearranges a CHW image `[chans, size, size]` into the patch matrix `[grid^2,
/// chans*patch^2]` (im2col for a kernel = stride = `patch` convolution), e.g. the output of
/// [`crate::cpu::ops::preprocess_patchify::preprocess`].
pub fn patchify_chw(chw: &[f32], chans: usize, geom: PatchGeom) -> Result<Vec<f32>> {
    geom.validate()?;
    let (s, g, p) = (geom.img_size, geom.grid(), geom.patch);
    if chw.len() != chans * s * s {
        return Err(Error::Shape {
            name: "image".into(),
            expected: vec![chans, s, s],
            got: vec![chw.len()],
        });
    }
    let mut out = Vec::with_capacity(chw.len());
    for py in 0..g {
        for px in 0..g {
            for c in 0..chans {
                for ky in 0..p {
                    let base = (c * s + py * p + ky) * s + px * p;
                    out.extend_from_slice(&chw[base..base + p]);
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_preprocess_then_im2col() {
        // 40x23 resized to long side 32: 32x18, 4x4 patches of 8 with a padded band.
        let (w, h) = (40, 23);
        let data: Vec<u8> = (0..w * h * 3).map(|i| (i * 37 % 251) as u8).collect();
        let img = crate::io::image::from_rgb(w, h, data).unwrap();
        let geom = PatchGeom {
            img_size: 32,
            patch: 8,
        };
        let (chw, (nh, nw)) = crate::cpu::ops::preprocess_patchify::preprocess(&img, 32).unwrap();
        let resized = crate::io::image::resize_bilinear_pillow(&img, nw, nh);
        let fused = preprocess_patchify(&resized.data, nh, nw, geom).unwrap();
        let want = patchify_chw(&chw, 3, geom).unwrap();
        assert_eq!(fused.len(), 16 * 192);
        assert!(fused
            .iter()
            .zip(&want)
            .all(|(a, b)| a.to_bits() == b.to_bits()));
    }

    #[test]
    fn rejects_bad_geometry_and_images() {
        let geom = PatchGeom {
            img_size: 32,
            patch: 8,
        };
        assert!(PatchGeom {
            img_size: 30,
            patch: 8
        }
        .validate()
        .is_err());
        assert!(PatchGeom {
            img_size: 32,
            patch: 0
        }
        .validate()
        .is_err());
        assert!(geom.check_image(32, 0).is_err());
        assert!(geom.check_image(31, 20).is_err());
        assert!(geom.check_image(33, 20).is_err());
        assert!(geom.check_image(20, 32).is_ok());
        assert!(preprocess_patchify(&[0; 3], 32, 20, geom).is_err());
    }
}
