//! The GEMM launch that vgpu's speed is measured on (issue 18, part 4): one
//! `gemm_bias_gelu_f16` of 4097 x 3080 x 768 (vit_b's MLP up-projection at 64x64 tokens),
//! timed per launch after a warm-up launch that also loads the module. Ignored by default: a
//! benchmark, not a test. `tools/vgpu_speed.sh OLD_DIR NEW_DIR` runs it on two vgpu builds
//! in one go and reports warp instructions per second (the count comes from VGPU_PROFILE).

use crate::common::gpu::{gpu_or_skip, Rng};
use samrt::cuda::ops::gemm::{gemm, Epilogue, GemmScales, GemmShape};

#[test]
#[ignore = "benchmark for tools/vgpu_speed.sh"]
fn vgpu_gemm_speed() {
    let Some(gpu) = gpu_or_skip("vgpu_gemm_speed") else {
        return;
    };
    let launches: usize = std::env::var("VGPU_SPEED_LAUNCHES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let shape = GemmShape {
        m: 4097,
        n: 3080,
        k: 768,
    };
    let mut rng = Rng::new("vgpu_gemm_speed");
    let s = gpu.stream();
    let a = gpu
        .upload_f16(s, &rng.vec(shape.m * shape.k, -1.0, 1.0))
        .unwrap();
    let w = gpu
        .upload_f16(s, &rng.vec(shape.n * shape.k, -1.0, 1.0))
        .unwrap();
    let bias = gpu.upload_f32(s, &rng.vec(shape.n, -1.0, 1.0)).unwrap();
    let mut out = gpu.zeros_f16(s, shape.m * shape.n).unwrap();
    let mut ms = Vec::new();
    for i in 0..=launches {
        let t = std::time::Instant::now();
        let e = Epilogue::BiasGelu(&mut out);
        gemm(
            &gpu,
            s,
            &a,
            &w,
            Some(&bias),
            shape,
            GemmScales::default(),
            e,
        )
        .unwrap();
        s.synchronize().unwrap();
        if i > 0 {
            ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    ms.sort_by(f64::total_cmp);
    println!(
        "vgpu_gemm_speed: median_ms={:.1} launches_ms={ms:?}",
        ms[ms.len() / 2]
    );
}
