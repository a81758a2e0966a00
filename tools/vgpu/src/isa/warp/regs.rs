//! `mma.m16n8k16.f32.f16.f16.f32` on whole-warp registers (`[u64; 32]`, lane `l`'s 32-bit
//! value in the low half of element `l`), as the simulator's register file holds them.
//!
//! The fragment layout makes four consecutive lanes of one A or B register eight
//! consecutive halves of one matrix row (A reg r, lanes 4g..4g+3: row g + 8(r&1), columns
//! 8(r>>1)..+8; B reg r, lanes 4g..4g+3: column g, rows 8r..+8), so each group converts with
//! one F16C instruction straight into the matrices, without per-lane fragment tables. The
//! sums are [`super::accumulate_k16`]'s, so the result is bit-identical to
//! [`super::mma_m16n8k16_f32_f16`] (tested).

use super::{accumulate_k16, to_f32};
use crate::isa::half::f16_to_f32;

/// One 32-bit register of all 32 lanes.
pub type Lanes = [u64; 32];

/// `d = a * b + c` for the f16 m16n8k16 with f32 accumulators, exact products summed in
/// f64 in the order of [`super::mma_m16n8k16_f32_f16`].
pub fn mma_m16n8k16_f32_f16_lanes(
    a: [&Lanes; 4],
    b: [&Lanes; 2],
    c: [&Lanes; 4],
    d: &mut [Lanes; 4],
) {
    let mut am = [[0f64; 16]; 16];
    let mut bt = [[0f64; 16]; 8];
    load(&a, &b, &mut am, &mut bt);
    let mut acc = [[0f64; 8]; 16];
    for (i, ci) in c.iter().enumerate() {
        for (lane, &v) in ci.iter().enumerate() {
            let (g, t) = (lane >> 2, lane & 3);
            acc[g + 8 * (i >> 1)][2 * t + (i & 1)] = f32::from_bits(v as u32) as f64;
        }
    }
    accumulate_k16(&mut acc, &am, &bt);
    for (i, di) in d.iter_mut().enumerate() {
        for (lane, o) in di.iter_mut().enumerate() {
            let (g, t) = (lane >> 2, lane & 3);
            *o = to_f32(acc[g + 8 * (i >> 1)][2 * t + (i & 1)]).to_bits() as u64;
        }
    }
}

/// The eight halves held by lanes `4g..4g+4` of `reg`, in order.
#[inline(always)]
fn group(reg: &Lanes, g: usize) -> [u32; 4] {
    std::array::from_fn(|t| reg[4 * g + t] as u32)
}

fn load(a: &[&Lanes; 4], b: &[&Lanes; 2], am: &mut [[f64; 16]; 16], bt: &mut [[f64; 16]; 8]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("f16c") && std::is_x86_feature_detected!("avx") {
        // SAFETY: the CPU supports F16C and AVX (checked just above).
        unsafe { load_f16c(a, b, am, bt) };
        return;
    }
    let halves = |w: [u32; 4]| -> [f64; 8] {
        std::array::from_fn(|k| f16_to_f32((w[k / 2] >> (16 * (k % 2))) as u16) as f64)
    };
    for (r, reg) in a.iter().enumerate() {
        for g in 0..8 {
            let k0 = 8 * (r >> 1);
            am[g + 8 * (r & 1)][k0..k0 + 8].copy_from_slice(&halves(group(reg, g)));
        }
    }
    for (r, reg) in b.iter().enumerate() {
        for (g, col) in bt.iter_mut().enumerate() {
            col[8 * r..8 * r + 8].copy_from_slice(&halves(group(reg, g)));
        }
    }
}

/// [`load`] with F16C conversions, eight halves at a time. fp16 -> f32 -> f64 is exact, so
/// this equals the scalar form (a NaN may keep its payload, which no result shows).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx,f16c")]
unsafe fn load_f16c(
    a: &[&Lanes; 4],
    b: &[&Lanes; 2],
    am: &mut [[f64; 16]; 16],
    bt: &mut [[f64; 16]; 8],
) {
    use std::arch::x86_64::{
        __m128i, _mm256_castps256_ps128, _mm256_cvtph_ps, _mm256_cvtps_pd, _mm256_extractf128_ps,
        _mm256_storeu_pd, _mm_loadu_si128,
    };
    let put = |w: [u32; 4], out: &mut [f64]| {
        assert!(out.len() >= 8);
        // SAFETY: `w` is 16 bytes (unaligned load); `out` holds at least 8 f64 (checked
        // above; unaligned stores); AVX and F16C are enabled for this function.
        unsafe {
            let v = _mm256_cvtph_ps(_mm_loadu_si128(w.as_ptr() as *const __m128i));
            let lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
            let hi = _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(v));
            _mm256_storeu_pd(out.as_mut_ptr(), lo);
            _mm256_storeu_pd(out.as_mut_ptr().add(4), hi);
        }
    };
    for (r, reg) in a.iter().enumerate() {
        for g in 0..8 {
            put(group(reg, g), &mut am[g + 8 * (r & 1)][8 * (r >> 1)..]);
        }
    }
    for (r, reg) in b.iter().enumerate() {
        for (g, col) in bt.iter_mut().enumerate() {
            put(group(reg, g), &mut col[8 * r..]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Equal, bit for bit, to the per-lane fragment form on random fragments, infinities,
    /// NaN and subnormal halves included.
    #[test]
    fn register_form_equals_the_fragment_form() {
        let mut s = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        for round in 0..60 {
            let special = round >= 40;
            let h = |x: u64| -> u32 {
                if special {
                    (x & 0xffff) as u32
                } else {
                    ((x & 0x83ff) | ((x >> 16) % 30) << 10) as u32
                }
            };
            let mut regs = [[0u64; 32]; 10];
            for (k, reg) in regs.iter_mut().enumerate() {
                for v in reg.iter_mut() {
                    let x = next();
                    *v = if k < 6 {
                        (h(x) | h(x >> 32) << 16) as u64
                    } else {
                        // C: f32 values of modest range, some negative.
                        ((x as i32 as f32) * 2f32.powi(-24)).to_bits() as u64
                    };
                }
            }
            let mut d = [[0u64; 32]; 4];
            let a = [&regs[0], &regs[1], &regs[2], &regs[3]];
            let b = [&regs[4], &regs[5]];
            let c = [&regs[6], &regs[7], &regs[8], &regs[9]];
            mma_m16n8k16_f32_f16_lanes(a, b, c, &mut d);
            let fa = std::array::from_fn(|l| std::array::from_fn(|r| a[r][l] as u32));
            let fb = std::array::from_fn(|l| std::array::from_fn(|r| b[r][l] as u32));
            let fc =
                std::array::from_fn(|l| std::array::from_fn(|r| f32::from_bits(c[r][l] as u32)));
            let want = super::super::mma_m16n8k16_f32_f16(&fa, &fb, &fc);
            for l in 0..32 {
                for r in 0..4 {
                    assert_eq!(
                        d[r][l],
                        want[l][r].to_bits() as u64,
                        "round {round} lane {l} reg {r}"
                    );
                }
            }
        }
    }
}
