//! Helpers of the CUDA test files: the GPU or a reasoned skip (a failure under
//! `SAMRT_REQUIRE_GPU=1`), a seeded generator that prints its seed, fp16 rounding and
//! elementwise closeness checks.

use samrt::cuda::GpuContext;

/// The GPU, or `None` (the test skips) when there is none. With `SAMRT_REQUIRE_GPU=1`
/// (CI under vgpu, tools/gpu-run.sh) a missing GPU fails the test instead: a CUDA test that
/// silently skips there would prove nothing.
pub fn gpu_or_skip(test: &str) -> Option<GpuContext> {
    match GpuContext::new() {
        Ok(g) => Some(g),
        Err(e) if require_gpu() => panic!("{test}: SAMRT_REQUIRE_GPU=1 but no usable GPU: {e}"),
        Err(e) => {
            println!("skipping {test}: no CUDA driver or GPU: {e}");
            None
        }
    }
}

/// Whether a CUDA device is usable, without opening a context (for tests that go through the
/// library or the CLI); otherwise says the test skips, or fails as [`gpu_or_skip`] does.
pub fn cuda_or_skip(test: &str) -> bool {
    match samrt::cuda::cuda_available() {
        Ok(_) => true,
        Err(e) if require_gpu() => panic!("{test}: SAMRT_REQUIRE_GPU=1 but no usable GPU: {e}"),
        Err(e) => {
            println!("skipping {test}: no CUDA device: {e}");
            false
        }
    }
}

pub fn require_gpu() -> bool {
    std::env::var("SAMRT_REQUIRE_GPU").is_ok_and(|v| v == "1")
}

/// SplitMix64 seeded from the clock: fresh inputs every run, seed printed for replay.
pub struct Rng(u64);

impl Rng {
    pub fn new(test: &str) -> Self {
        let seed = std::env::var("SAMRT_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0x5eed, |d| d.as_nanos() as u64)
            });
        println!("{test}: SAMRT_TEST_SEED={seed}");
        Rng(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * ((self.next() >> 40) as f32 / (1u64 << 24) as f32)
    }
    pub fn vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform(lo, hi)).collect()
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

pub fn f16r(x: f32) -> f32 {
    half::f16::from_f32(x).to_f32()
}

pub fn round_f16(v: &[f32]) -> Vec<f32> {
    v.iter().map(|&x| f16r(x)).collect()
}

/// Asserts |got - want| <= atol + rtol*|want| everywhere; reports the worst element.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], atol: f32, rtol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst = (0usize, 0.0f32);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(g.is_finite(), "{what}: non-finite {g} at {i} (want {w})");
        let excess = (g - w).abs() - (atol + rtol * w.abs());
        if excess > worst.1 || i == 0 {
            worst = (i, excess);
        }
    }
    let max_abs = got
        .iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs())
        .fold(0.0f32, f32::max);
    println!("{what}: max |err| = {max_abs:.3e}");
    let (i, excess) = worst;
    assert!(
        excess <= 0.0,
        "{what}: element {i} got {} want {} (atol {atol}, rtol {rtol})",
        got[i],
        want[i]
    );
}

/// Asserts |got - want| <= tol elementwise; reports the worst element and the max error.
pub fn assert_within(what: &str, got: &[f32], want: &[f32], tol: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    assert_eq!(tol.len(), want.len(), "{what}: tolerance length");
    let mut worst = (0usize, f32::NEG_INFINITY);
    let mut max_abs = 0.0f32;
    for (i, ((&g, &w), &t)) in got.iter().zip(want).zip(tol).enumerate() {
        assert!(g.is_finite(), "{what}: non-finite {g} at {i} (want {w})");
        let err = (g - w).abs();
        max_abs = max_abs.max(err);
        if err - t > worst.1 {
            worst = (i, err - t);
        }
    }
    println!("{what}: max |err| = {max_abs:.3e}");
    let (i, excess) = worst;
    assert!(
        excess <= 0.0,
        "{what}: element {i} got {} want {} (tolerance {})",
        got[i],
        want[i],
        tol[i]
    );
}
