//! Uncompressed RLE in pycocotools' layout and its COCO compressed string.
//!
//! Layout (`mask_to_rle_pytorch`): the mask is read column-major (index = x * h + y) and
//! `counts` alternate zero-run, one-run, ... starting with a zero-run (0 when the first
//! pixel is set). Runs of length 0 never appear elsewhere.

use crate::error::{Error, Result};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rle {
    pub h: usize,
    pub w: usize,
    pub counts: Vec<u32>,
}

/// Appends pixels in column-major order, merging equal neighbours into runs.
pub struct RunBuilder {
    counts: Vec<u32>,
    current: bool,
    run: u64,
}

impl Default for RunBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl RunBuilder {
    pub fn new() -> Self {
        RunBuilder {
            counts: Vec::new(),
            current: false,
            run: 0,
        }
    }

    /// Adds `n` pixels of value `v`.
    pub fn push(&mut self, v: bool, n: usize) {
        if n == 0 {
            return;
        }
        if v != self.current {
            self.counts.push(self.run as u32);
            self.current = v;
            self.run = 0;
        }
        self.run += n as u64;
    }

    /// Adds pixels, skipping 8 at a time through a run: a mask is a few long runs, so
    /// most of it is passed over word by word.
    pub fn push_pixels(&mut self, px: &[bool]) {
        // A bool is one byte, 0 or 1, so runs of equal bytes are runs of equal pixels.
        self.push_bytes(bytemuck::cast_slice(px));
    }

    /// [`Self::push_pixels`] on bytes that are each 0 or 1 (another value would never end
    /// its run).
    fn push_bytes(&mut self, px: &[u8]) {
        let mut i = 0;
        while i < px.len() {
            let end = first_not(px, i, self.current as u8);
            self.run += (end - i) as u64;
            if end < px.len() {
                self.counts.push(self.run as u32);
                self.current = !self.current;
                self.run = 0;
            }
            i = end;
        }
    }

    pub fn finish(mut self, h: usize, w: usize) -> Rle {
        self.counts.push(self.run as u32);
        Rle {
            h,
            w,
            counts: self.counts,
        }
    }
}

/// The first index at or after `i` whose byte is not `v`, or `px.len()`.
fn first_not(px: &[u8], mut i: usize, v: u8) -> usize {
    let pattern = u64::from_le_bytes([v; 8]);
    while i + 8 <= px.len() {
        let word = u64::from_le_bytes(px[i..i + 8].try_into().expect("8 bytes"));
        let diff = word ^ pattern;
        if diff != 0 {
            return i + (diff.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < px.len() && px[i] == v {
        i += 1;
    }
    i
}

/// Row-major `rows x cols` pixels -> column-major, as bytes 0 or 1.
fn column_major(m: &[bool], rows: usize, cols: usize) -> Vec<u8> {
    let m: &[u8] = bytemuck::cast_slice(m);
    let mut out = vec![0u8; rows * cols];
    let (r8, c8) = (rows - rows % 8, cols - cols % 8);
    let word = |i: usize| u64::from_le_bytes(m[i..i + 8].try_into().expect("8 bytes"));
    for y in (0..r8).step_by(8) {
        for x in (0..c8).step_by(8) {
            let mut r: [u64; 8] = std::array::from_fn(|i| word((y + i) * cols + x));
            transpose8(&mut r);
            for (j, c) in r.iter().enumerate() {
                out[(x + j) * rows + y..(x + j) * rows + y + 8].copy_from_slice(&c.to_le_bytes());
            }
        }
    }
    // The last rows % 8 rows and cols % 8 columns, one byte at a time.
    for y in 0..rows {
        let xs = if y < r8 { c8..cols } else { 0..cols };
        for x in xs {
            out[x * rows + y] = m[y * cols + x];
        }
    }
    out
}

/// Transposes an 8 x 8 byte matrix held as 8 little-endian rows: swaps 4 x 4, then 2 x 2,
/// then 1 x 1 blocks across the diagonal.
fn transpose8(r: &mut [u64; 8]) {
    for (shift, mask, pairs) in [
        (32, 0x0000_0000_ffff_ffffu64, [0, 1, 2, 3]),
        (16, 0x0000_ffff_0000_ffff, [0, 1, 4, 5]),
        (8, 0x00ff_00ff_00ff_00ff, [0, 2, 4, 6]),
    ] {
        let step = shift / 8;
        for i in pairs {
            let t = ((r[i] >> shift) ^ r[i + step]) & mask;
            r[i] ^= t << shift;
            r[i + step] ^= t;
        }
    }
}

/// A crop mask of `len` values (`need` expected) fits at `(x0, y0)` in an `h x w` image
/// whose pixel count fits the u32 counts.
fn check_crop(
    len: usize,
    need: usize,
    ch: usize,
    cw: usize,
    (x0, y0): (usize, usize),
    h: usize,
    w: usize,
) -> Result<()> {
    if len != need || x0 + cw > w || y0 + ch > h || (h as u64) * (w as u64) > u32::MAX as u64 {
        return Err(Error::Shape {
            name: "RLE crop mask (len, crop h, w, image h, w)".into(),
            expected: vec![need, ch, cw, h, w],
            got: vec![len, y0 + ch, x0 + cw, h, w],
        });
    }
    Ok(())
}

impl Rle {
    /// Encodes a row-major `h x w` mask.
    pub fn from_mask(mask: &[bool], h: usize, w: usize) -> Result<Rle> {
        Self::from_crop(mask, h, w, (0, 0), h, w)
    }

    /// Encodes a row-major `ch x cw` crop mask placed at `(x0, y0)` in an `h x w` image of
    /// zeros: `uncrop_masks` (zero padding) followed by `mask_to_rle_pytorch`, without ever
    /// materialising the padded mask.
    pub fn from_crop(
        crop: &[bool],
        ch: usize,
        cw: usize,
        origin: (usize, usize),
        h: usize,
        w: usize,
    ) -> Result<Rle> {
        check_crop(crop.len(), ch * cw, ch, cw, origin, h, w)?;
        // Runs go down columns, the mask is stored by rows, and a strided walk costs a cache
        // line per pixel: copy the mask column-major once (8 x 8 byte blocks transposed in
        // registers), then scan each column 8 pixels a word.
        let cols = column_major(crop, ch, cw);
        let (x0, y0) = origin;
        let mut b = RunBuilder::new();
        b.push(false, x0 * h);
        for x in 0..cw {
            b.push(false, y0);
            b.push_bytes(&cols[x * ch..(x + 1) * ch]);
            b.push(false, h - y0 - ch);
        }
        b.push(false, (w - x0 - cw) * h);
        Ok(b.finish(h, w))
    }

    /// [`Rle::from_crop`] of a bit-packed crop mask as the device packs it: pixel `x` of row
    /// `y` is bit `x % 32` of word `y * words_per_row + x / 32`.
    pub fn from_packed_crop(
        bits: &[u32],
        words_per_row: usize,
        (ch, cw): (usize, usize),
        origin: (usize, usize),
        h: usize,
        w: usize,
    ) -> Result<Rle> {
        let words = if words_per_row * 32 >= cw {
            ch * words_per_row
        } else {
            usize::MAX
        };
        check_crop(bits.len(), words, ch, cw, origin, h, w)?;
        Ok(Self::encode_crop(ch, cw, origin, h, w, |y, x| {
            bits[y * words_per_row + x / 32] >> (x % 32) & 1 == 1
        }))
    }

    fn encode_crop(
        ch: usize,
        cw: usize,
        (x0, y0): (usize, usize),
        h: usize,
        w: usize,
        pixel: impl Fn(usize, usize) -> bool,
    ) -> Rle {
        let mut b = RunBuilder::new();
        b.push(false, x0 * h);
        for x in 0..cw {
            b.push(false, y0);
            for y in 0..ch {
                b.push(pixel(y, x), 1);
            }
            b.push(false, h - y0 - ch);
        }
        b.push(false, (w - x0 - cw) * h);
        b.finish(h, w)
    }

    /// `area_from_rle`: the sum of the one-runs.
    pub fn area(&self) -> u64 {
        self.counts
            .iter()
            .skip(1)
            .step_by(2)
            .map(|&c| c as u64)
            .sum()
    }

    /// `rle_to_mask`: a row-major `h x w` mask. Errors if the counts do not cover it exactly.
    pub fn to_mask(&self) -> Result<Vec<bool>> {
        let n = self.h * self.w;
        let total: u64 = self.counts.iter().map(|&c| c as u64).sum();
        if total != n as u64 {
            return Err(Error::Shape {
                name: "RLE counts sum".into(),
                expected: vec![n],
                got: vec![total as usize],
            });
        }
        let mut out = vec![false; n];
        let mut idx = 0usize;
        for (k, &c) in self.counts.iter().enumerate() {
            if k % 2 == 1 {
                for i in idx..idx + c as usize {
                    out[(i % self.h) * self.w + i / self.h] = true;
                }
            }
            idx += c as usize;
        }
        Ok(out)
    }

    /// pycocotools `rleToString`: per count, the delta against the count two back (only
    /// for index > 2, pycocotools' own quirk), in 5-bit groups with 0x20 meaning "more",
    /// sign-extended from bit 0x10, each offset by 48.
    pub fn coco_string(&self) -> String {
        let mut s = String::with_capacity(self.counts.len() * 2);
        for i in 0..self.counts.len() {
            let mut x = self.counts[i] as i64;
            if i > 2 {
                x -= self.counts[i - 2] as i64;
            }
            loop {
                let mut c = (x & 0x1f) as u8;
                x >>= 5;
                let more = if c & 0x10 != 0 { x != -1 } else { x != 0 };
                if more {
                    c |= 0x20;
                }
                s.push((c + 48) as char);
                if !more {
                    break;
                }
            }
        }
        s
    }

    /// pycocotools `rleFrString`, the inverse of [`Rle::coco_string`].
    pub fn from_coco_string(s: &str, h: usize, w: usize) -> Result<Rle> {
        let bytes = s.as_bytes();
        let mut counts: Vec<u32> = Vec::new();
        let mut p = 0;
        while p < bytes.len() {
            let mut x: i64 = 0;
            let mut k = 0;
            loop {
                let Some(&ch) = bytes.get(p) else {
                    return Err(Error::Config(format!(
                        "COCO RLE string `{s}` ends mid-number"
                    )));
                };
                if !(48..48 + 64).contains(&ch) || k > 12 {
                    return Err(Error::Config(format!("COCO RLE string `{s}` is malformed")));
                }
                let c = (ch - 48) as i64;
                x |= (c & 0x1f) << (5 * k);
                p += 1;
                k += 1;
                if c & 0x20 == 0 {
                    if c & 0x10 != 0 {
                        x |= -1i64 << (5 * k);
                    }
                    break;
                }
            }
            let i = counts.len();
            if i > 2 {
                x += counts[i - 2] as i64;
            }
            let v = u32::try_from(x)
                .map_err(|_| Error::Config(format!("COCO RLE string `{s}` has a negative run")))?;
            counts.push(v);
        }
        Ok(Rle { h, w, counts })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random blobs (runs of 1-40 pixels of either value) in a row-major `ch x cw` mask.
    fn blobs(ch: usize, cw: usize, seed: u64) -> Vec<bool> {
        let mut x = seed | 1;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut out = Vec::with_capacity(ch * cw);
        let mut v = false;
        while out.len() < ch * cw {
            let n = 1 + (next() % 40) as usize;
            out.extend(std::iter::repeat_n(v, n.min(ch * cw - out.len())));
            v = !v;
        }
        out
    }

    /// The word-skipping column scan against the pixel-by-pixel definition, for crops with
    /// and without padding on every side, all-zero and all-one masks, 1-pixel sides.
    #[test]
    fn from_crop_matches_pixel_walk() {
        let cases = [
            (17, 23, (0, 0), 17, 23),
            (17, 23, (3, 5), 30, 31),
            (1, 9, (2, 0), 1, 12),
            (9, 1, (0, 4), 20, 1),
            (130, 67, (1, 2), 140, 70),
            (0, 5, (1, 1), 3, 8),
            (4, 0, (2, 1), 6, 3),
        ];
        for (k, &(ch, cw, origin, h, w)) in cases.iter().enumerate() {
            for mask in [
                blobs(ch, cw, k as u64 + 7),
                vec![false; ch * cw],
                vec![true; ch * cw],
            ] {
                let fast = Rle::from_crop(&mask, ch, cw, origin, h, w).unwrap();
                let slow = Rle::encode_crop(ch, cw, origin, h, w, |y, x| mask[y * cw + x]);
                assert_eq!(fast, slow, "case {k}");
                assert_eq!(
                    fast.counts.iter().map(|&c| c as usize).sum::<usize>(),
                    h * w
                );
            }
        }
    }
}
