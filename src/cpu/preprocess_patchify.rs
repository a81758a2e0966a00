//! Image normalisation fused with the patch embedding's im2col: the CPU twin of
//! `kernels/preprocess_patchify.cu`.
//!
//! The input is the Pillow-resized image (HWC uint8, long side = `img_size`); the output is
//! the patch matrix `[grid*grid, 3*patch*patch]` whose row `py*grid + px` holds patch
//! (py, px) in the column order (c, ky, kx) of the official Conv2d weight `[D, 3, P, P]`
//! flattened, so `patches @ weight.view(D, -1)^T + bias` is the patch embedding. Values are
//! `(pixel as f32 - mean[c]) / std[c]` in f32, the operations and their order of
//! [`crate::preprocess::preprocess`]; the official zero padding (bottom/right, after
//! normalisation) fills pixels outside the image.

use crate::error::{Error, Result};
use crate::preprocess::{PIXEL_MEAN, PIXEL_STD};

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
/// [`crate::preprocess::preprocess`].
pub fn patchify_chw(chw: &[f32], chans: usize, geom: PatchGeom) -> Result<Vec<f32>> {
    geom.validate()?;
    let (s, g, p) = (geom.img_size, geom.grid(), geom.patch);
    if chw.len() != chans * s * s {
        return Err(Error::Shape {
            name: "patchify input".into(),
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
        let img = crate::preprocess::from_rgb(w, h, data).unwrap();
        let geom = PatchGeom {
            img_size: 32,
            patch: 8,
        };
        let (chw, (nh, nw)) = crate::preprocess::preprocess(&img, 32).unwrap();
        let resized = crate::preprocess::resize_bilinear_pillow(&img, nw, nh);
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
