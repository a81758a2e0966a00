//! The official `ResizeLongestSide`: Pillow-exact bilinear resize and the prompt coordinate maps.
//!
//! The official predictor resizes with torchvision's `resize` on a PIL image, i.e. Pillow's
//! `Image.resize(size, BILINEAR)`, which is integer arithmetic once its weights are known.
//! Reproducing Pillow's double-precision weight computation and fixed-point rounding step by
//! step is what makes our resized pixels bit-identical, so the encoder sees the same input.

use super::rgb::RgbImage;
use rayon::prelude::*;

/// `ResizeLongestSide.get_preprocess_shape`: (new_h, new_w) with the long side = `target`.
pub fn resize_shape(h: usize, w: usize, target: usize) -> (usize, usize) {
    let scale = target as f64 * 1.0 / h.max(w).max(1) as f64;
    let newh = (h as f64 * scale + 0.5) as usize;
    let neww = (w as f64 * scale + 0.5) as usize;
    (newh, neww)
}

/// Pillow's fixed-point precision for 8-bit images (PRECISION_BITS = 32 - 8 - 2).
const PRECISION_BITS: u32 = 22;

/// Per-axis convolution taps: for output `o`, source pixels `start[o]..start[o]+len[o]`
/// with weights `k[o*ksize..]`.
struct Taps {
    start: Vec<usize>,
    len: Vec<usize>,
    ksize: usize,
    k: Vec<i32>,
}

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for the bilinear (triangle)
/// filter over the full box `[0, in_size)`. Operation order follows Resample.c exactly:
/// the weights are doubles, normalised by their sum, then rounded half away from zero.
fn pillow_taps(in_size: usize, out_size: usize) -> Taps {
    // Pillow passes the box as C floats; `(double)(in1 - in0)` is exact for our sizes.
    let scale = (in_size as f32) as f64 / out_size as f64;
    let filterscale = if scale < 1.0 { 1.0 } else { scale };
    let support = 1.0 * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let ss = 1.0 / filterscale;
    let mut start = Vec::with_capacity(out_size);
    let mut len = Vec::with_capacity(out_size);
    let mut k = vec![0i32; out_size * ksize];
    let mut w = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = 0.0 + (xx as f64 + 0.5) * scale;
        // C `(int)` truncates toward zero; clamping to 0 afterwards matches Pillow.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64).max(0) as usize;
        let n = xmax.saturating_sub(xmin).min(ksize);
        let mut ww = 0.0f64;
        for (x, wx) in w.iter_mut().enumerate().take(n) {
            let t = ((x + xmin) as f64 - center + 0.5) * ss;
            let v = bilinear_filter(t);
            *wx = v;
            ww += v;
        }
        for (x, wx) in w.iter().enumerate().take(n) {
            let v = if ww != 0.0 { wx / ww } else { *wx };
            let scaled = v * (1u32 << PRECISION_BITS) as f64;
            k[xx * ksize + x] = if v < 0.0 {
                (-0.5 + scaled) as i32
            } else {
                (0.5 + scaled) as i32
            };
        }
        start.push(xmin);
        len.push(n);
    }
    Taps {
        start,
        len,
        ksize,
        k,
    }
}

fn bilinear_filter(x: f64) -> f64 {
    let x = if x < 0.0 { -x } else { x };
    if x < 1.0 {
        1.0 - x
    } else {
        0.0
    }
}

/// Pillow's clip8: the accumulator already holds the +0.5 rounding term.
#[inline]
fn clip8(acc: i32) -> u8 {
    if acc >= (1 << PRECISION_BITS << 8) {
        255
    } else if acc <= 0 {
        0
    } else {
        (acc >> PRECISION_BITS) as u8
    }
}

/// Horizontal pass over source rows `row0..row0+rows` (RGB interleaved).
fn resample_horizontal(src: &[u8], src_w: usize, row0: usize, rows: usize, t: &Taps) -> Vec<u8> {
    let out_w = t.start.len();
    let mut out = vec![0u8; rows * out_w * 3];
    out.par_chunks_mut(out_w * 3)
        .enumerate()
        .for_each(|(r, orow)| {
            let srow = &src[(row0 + r) * src_w * 3..(row0 + r + 1) * src_w * 3];
            for xx in 0..out_w {
                let k = &t.k[xx * t.ksize..xx * t.ksize + t.len[xx]];
                let base = t.start[xx] * 3;
                let init = 1i32 << (PRECISION_BITS - 1);
                let (mut s0, mut s1, mut s2) = (init, init, init);
                let px = &srow[base..base + k.len() * 3];
                for (p, &kx) in px.chunks_exact(3).zip(k) {
                    s0 += p[0] as i32 * kx;
                    s1 += p[1] as i32 * kx;
                    s2 += p[2] as i32 * kx;
                }
                orow[xx * 3] = clip8(s0);
                orow[xx * 3 + 1] = clip8(s1);
                orow[xx * 3 + 2] = clip8(s2);
            }
        });
    out
}

/// Vertical pass; `t.start` is relative to the first row of `src`.
fn resample_vertical(src: &[u8], w: usize, t: &Taps, first_row: usize) -> Vec<u8> {
    let out_h = t.start.len();
    let row_len = w * 3;
    let mut out = vec![0u8; out_h * row_len];
    out.par_chunks_mut(row_len).enumerate().for_each_init(
        || vec![0i32; row_len],
        |acc, (yy, orow)| {
            acc.fill(1 << (PRECISION_BITS - 1));
            let k = &t.k[yy * t.ksize..yy * t.ksize + t.len[yy]];
            let y0 = t.start[yy] - first_row;
            for (y, &ky) in k.iter().enumerate() {
                let srow = &src[(y0 + y) * row_len..(y0 + y + 1) * row_len];
                for (a, &p) in acc.iter_mut().zip(srow) {
                    *a += p as i32 * ky;
                }
            }
            for (o, &a) in orow.iter_mut().zip(acc.iter()) {
                *o = clip8(a);
            }
        },
    );
    out
}

/// Bit-identical to Pillow's `Image.resize((new_w, new_h), Image.BILINEAR)` on RGB.
///
/// Separable, each pass rounding to uint8; a pass whose size is unchanged is skipped, and
/// equal sizes return a copy, as Pillow does. Antialiased when shrinking (support grows
/// with the scale). Pass order follows Pillow 13's `ImagingResampleInner`: horizontal
/// first (over only the source rows the vertical pass reads) unless the height shrinks by
/// more than twice as many pixels as the width, then vertical first. The order changes
/// the rounding, so it matters for bit-exactness. A zero target side yields an empty image
/// (Pillow raises; callers check first).
pub fn resize_bilinear_pillow(img: &RgbImage, new_w: usize, new_h: usize) -> RgbImage {
    if new_w == 0 || new_h == 0 || img.width == 0 || img.height == 0 {
        return RgbImage {
            width: new_w,
            height: new_h,
            data: Vec::new(),
        };
    }
    let need_h = new_w != img.width;
    let need_v = new_h != img.height;
    if !need_h && !need_v {
        return img.clone();
    }
    let dh = img.height as i64 - new_h as i64;
    let dw = img.width as i64 - new_w as i64;
    let horizontal_first = !(dh > 0 && dh > dw * 2);
    let taps_v = need_v.then(|| pillow_taps(img.height, new_h));
    let taps_h = need_h.then(|| pillow_taps(img.width, new_w));
    let data = match (&taps_h, &taps_v) {
        (Some(th), Some(tv)) if horizontal_first => {
            let n = new_h - 1;
            let (first, last) = (tv.start[0], tv.start[n] + tv.len[n]);
            let mid = resample_horizontal(&img.data, img.width, first, last - first, th);
            resample_vertical(&mid, new_w, tv, first)
        }
        (Some(th), Some(tv)) => {
            let mid = resample_vertical(&img.data, img.width, tv, 0);
            resample_horizontal(&mid, img.width, 0, new_h, th)
        }
        (Some(th), None) => resample_horizontal(&img.data, img.width, 0, img.height, th),
        (None, Some(tv)) => resample_vertical(&img.data, img.width, tv, 0),
        (None, None) => img.data.clone(),
    };
    RgbImage {
        width: new_w,
        height: new_h,
        data,
    }
}

/// `ResizeLongestSide.apply_coords` for one point: f64 maths as numpy does, then rounded
/// to f32 as `torch.as_tensor(..., dtype=torch.float)` does. `orig`/`input` are (h, w).
pub fn transform_coords(x: f32, y: f32, orig: (usize, usize), input: (usize, usize)) -> (f32, f32) {
    transform_coords_f64(x as f64, y as f64, orig, input)
}

/// As [`transform_coords`] for coordinates that arrive as f64 (JSON, numpy float64):
/// rounding them to f32 first could change the result's last bit.
pub fn transform_coords_f64(
    x: f64,
    y: f64,
    orig: (usize, usize),
    input: (usize, usize),
) -> (f32, f32) {
    let (old_h, old_w) = (orig.0 as f64, orig.1 as f64);
    let (new_h, new_w) = (input.0 as f64, input.1 as f64);
    ((x * (new_w / old_w)) as f32, (y * (new_h / old_h)) as f32)
}

/// `ResizeLongestSide.apply_boxes` for one XYXY box.
pub fn transform_box(b: [f32; 4], orig: (usize, usize), input: (usize, usize)) -> [f32; 4] {
    let (x0, y0) = transform_coords(b[0], b[1], orig, input);
    let (x1, y1) = transform_coords(b[2], b[3], orig, input);
    [x0, y0, x1, y1]
}
