//! `wgmma.mma_async` (sm_90a) as pure functions: the shared-memory matrix descriptor, where
//! each operand element lives in shared memory, the register fragments of A and D, and the
//! f32 product.
//!
//! Written from the PTX ISA (9.0) sections "Matrix Descriptor", "Shared Memory Matrix
//! Layout" and "Register Fragments" of the asynchronous warpgroup-level MMA. Only 16-bit
//! inputs (f16, bf16) with K = 16 are modelled, so a row of a core matrix is 8 elements.
//!
//! Shared-memory layouts, in bytes, for an operand whose non-K dimension is "MN" (M of A,
//! N of B). A swizzle mode of `s` bytes (16 for none) is an atom of 8 rows of `s` bytes:
//! - K-major, no swizzle: 8x16-byte core matrices, 16 contiguous bytes per MN index; LBO
//!   steps from the K core matrix 0 to 1, SBO from one group of 8 MN indices to the next.
//! - K-major, swizzled: one `s`-byte row per MN index holding K contiguously (K = 16 fills
//!   32 bytes of it); SBO steps between groups of 8 rows; LBO is unused.
//! - MN-major, no swizzle: core matrices of 8 K rows of 8 contiguous MN elements; SBO steps
//!   along MN between core matrices, LBO along K.
//! - MN-major, swizzled: one `s`-byte row per K index holding `s/2` MN elements; LBO steps
//!   between atoms along MN, SBO between groups of 8 K rows.
//!
//! Swizzling then permutes the 16-byte chunks of the computed address: bits [4, 4+b) are
//! XORed with bits [7, 7+b), b = 3, 2, 1 for 128, 64, 32 bytes. The pattern repeats every
//! 1024, 512, 256 bytes; a descriptor with a non-zero base offset (an atom not aligned to
//! that) is refused by the simulator rather than guessed at.

use super::half::{bf16_to_f32, f16_to_f32};

/// Swizzle mode of a descriptor (bits 62-63: 0 none, 1 128B, 2 64B, 3 32B).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Swizzle {
    None,
    B128,
    B64,
    B32,
}

impl Swizzle {
    /// Bytes of one row of the swizzle atom (16, one core-matrix row, when not swizzled).
    pub fn row_bytes(self) -> u32 {
        match self {
            Swizzle::None => 16,
            Swizzle::B32 => 32,
            Swizzle::B64 => 64,
            Swizzle::B128 => 128,
        }
    }

    /// The shared-memory address the swizzle maps `addr` to.
    pub fn apply(self, addr: u32) -> u32 {
        let bits = match self {
            Swizzle::None => return addr,
            Swizzle::B32 => 1,
            Swizzle::B64 => 2,
            Swizzle::B128 => 3,
        };
        addr ^ (((addr >> 7) & ((1 << bits) - 1)) << 4)
    }
}

/// A decoded 64-bit matrix descriptor; offsets in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Desc {
    pub start: u32,
    pub lbo: u32,
    pub sbo: u32,
    pub base_offset: u32,
    pub swizzle: Swizzle,
}

/// Splits a descriptor into its fields (each 14-bit field holds its value >> 4).
pub fn decode_desc(d: u64) -> Desc {
    let field = |shift: u32| (((d >> shift) & 0x3fff) << 4) as u32;
    Desc {
        start: field(0),
        lbo: field(16),
        sbo: field(32),
        base_offset: ((d >> 49) & 7) as u32,
        swizzle: match d >> 62 {
            0 => Swizzle::None,
            1 => Swizzle::B128,
            2 => Swizzle::B64,
            _ => Swizzle::B32,
        },
    }
}

/// Shared address of the 16-byte chunk holding element (`mn`, `k`) of a K = 16 operand of
/// 16-bit elements, and the element's index in it. K-major chunks run along K (`k % 8`),
/// MN-major chunks along MN (`mn % 8`); swizzling moves whole chunks only.
pub fn chunk_of(desc: &Desc, mn_major: bool, mn: u32, k: u32) -> (u32, u32) {
    let s = desc.swizzle.row_bytes();
    let unswizzled = match (mn_major, desc.swizzle) {
        (false, Swizzle::None) => (mn / 8) * desc.sbo + (k / 8) * desc.lbo + (mn % 8) * 16,
        (false, _) => (mn / 8) * desc.sbo + (mn % 8) * s + (k / 8) * 16,
        (true, Swizzle::None) => (mn / 8) * desc.sbo + (k / 8) * desc.lbo + (k % 8) * 16,
        (true, _) => {
            let per_row = s / 2;
            (mn / per_row) * desc.lbo + (k / 8) * desc.sbo + (k % 8) * s + (mn % per_row) / 8 * 16
        }
    };
    let addr = desc.swizzle.apply(desc.start.wrapping_add(unswizzled));
    (addr, if mn_major { mn % 8 } else { k % 8 })
}

/// (row, col) of f32 accumulator `i` of `lane` in warp `warp` (0..4) of the warpgroup:
/// each warp owns 16 rows, and each 8-column block is laid out as the m16n8 C fragment.
pub fn d_coord(warp: u32, lane: u32, i: u32) -> (u32, u32) {
    (
        16 * warp + lane / 4 + 8 * ((i / 2) % 2),
        8 * (i / 4) + 2 * (lane % 4) + i % 2,
    )
}

/// (row, k) of element `e` (0..8, register `e / 2`, low half first) of the A fragment in
/// registers of `lane` in warp `warp` of the warpgroup.
pub fn a_coord(warp: u32, lane: u32, e: u32) -> (u32, u32) {
    (
        16 * warp + lane / 4 + 8 * ((e / 2) % 2),
        2 * (lane % 4) + e % 2 + 8 * (e / 4),
    )
}

/// Value of a 16-bit input.
pub fn input(bits: u16, bf16: bool) -> f64 {
    if bf16 {
        bf16_to_f32(bits) as f64
    } else {
        f16_to_f32(bits) as f64
    }
}

/// `c + sum_k a[k] * b[k]` over K = 16: products exact in f64, the sum in f64 in k order,
/// rounded once to f32 (NaN canonical), as the exact `mma.sync` model computes.
pub fn dot_f32(c: f64, a: &[f64; 16], b: &[f64; 16]) -> f32 {
    let mut acc = c;
    for (x, y) in a.iter().zip(b) {
        acc += x * y;
    }
    if acc.is_nan() {
        f32::from_bits(0x7fff_ffff)
    } else {
        acc as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_fields() {
        let d = (1u64 << 62) | (3 << 49) | (64 << 32) | (1 << 16) | (0x1230 >> 4);
        let x = decode_desc(d);
        assert_eq!(
            x,
            Desc {
                start: 0x1230,
                lbo: 16,
                sbo: 1024,
                base_offset: 3,
                swizzle: Swizzle::B128
            }
        );
        assert_eq!(decode_desc(3 << 62).swizzle, Swizzle::B32);
        assert_eq!(decode_desc(2 << 62).swizzle, Swizzle::B64);
    }

    #[test]
    fn swizzle_128_permutes_chunks_by_row() {
        // Row r of a 1024-byte atom: chunk c lands at chunk c ^ r.
        for r in 0..8u32 {
            for c in 0..8u32 {
                assert_eq!(
                    Swizzle::B128.apply(r * 128 + c * 16),
                    r * 128 + ((c ^ r) * 16)
                );
            }
        }
        // 64B: rows of 64 bytes, chunk c ^ (r / 2) % 4: row 3 chunk 1 lands at chunk 0.
        assert_eq!(Swizzle::B64.apply(192 + 16), 192);
        // 32B: rows of 32 bytes, chunk c ^ (r / 4) % 2.
        assert_eq!(Swizzle::B32.apply(5 * 32), 5 * 32 + 16);
    }

    #[test]
    fn fragments_match_the_m16n8_layouts_per_warp() {
        assert_eq!(d_coord(0, 0, 0), (0, 0));
        assert_eq!(d_coord(1, 5, 3), (16 + 1 + 8, 2 + 1));
        assert_eq!(d_coord(3, 31, 127), (48 + 7 + 8, 248 + 6 + 1));
        assert_eq!(a_coord(2, 6, 5), (32 + 1, 4 + 1 + 8));
    }
}
