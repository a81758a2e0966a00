//! `SAMRT_CUDA_ARCH` picks the kernel builds (README, "CUDA"): unset, a compute capability
//! 9.0 device (vgpu included) loads the `*_sm90a` modules over the portable ones; `sm_80`
//! keeps the portable kernels; anything else is an error. One test, because the variable
//! is the process's: it opens a context per setting, runs the same GEMM on each and checks
//! which build ran (on vgpu, from the profile: a wgmma counts 2*64*N*16 FLOPs per mma, an
//! mma.sync 4096) and that both give the same product.
#![cfg(feature = "cuda")]

mod common;

use common::gpu::{assert_close, gpu_or_skip, round_f16, Rng};
use samrt::cuda::ops::gemm::{gemm_tiled, Epilogue, GemmScales, GemmShape, GemmTile};
use samrt::cuda::profile::vgpu::{is_vgpu, Recording};
use samrt::cuda::{GpuContext, CUDA_ARCH_VAR};
use samrt::Error;

const SHAPE: GemmShape = GemmShape {
    m: 100,
    n: 136,
    k: 72,
};
const TILE: GemmTile = GemmTile::T64x128;

/// Opens a context with `CUDA_ARCH_VAR` set to `arch` (removed for `None`).
fn open(arch: Option<&str>) -> samrt::Result<GpuContext> {
    match arch {
        Some(v) => std::env::set_var(CUDA_ARCH_VAR, v),
        None => std::env::remove_var(CUDA_ARCH_VAR),
    }
    let r = GpuContext::new();
    std::env::remove_var(CUDA_ARCH_VAR);
    r
}

/// The GEMM's fp16 output and, on vgpu, the FLOPs per mma instruction it recorded.
fn run(gpu: &GpuContext, a: &[f32], w: &[f32]) -> (Vec<f32>, Option<u64>) {
    let s = gpu.stream();
    let (ad, wd) = (gpu.upload_f16(s, a).unwrap(), gpu.upload_f16(s, w).unwrap());
    let mut out = gpu.zeros_f16(s, SHAPE.m * SHAPE.n).unwrap();
    let mut rec = is_vgpu(&gpu.info().name).then(|| Recording::start().unwrap());
    let e = Epilogue::Bias(&mut out);
    gemm_tiled(
        gpu,
        s,
        (&ad, &wd),
        None,
        SHAPE,
        GemmScales::default(),
        e,
        TILE,
    )
    .unwrap();
    s.synchronize().unwrap();
    let per_mma = rec.as_mut().map(|r| {
        let ours: Vec<_> = r
            .take()
            .unwrap()
            .into_iter()
            .filter(|r| r.kernel == "gemm_bias_f16_64x128")
            .collect();
        assert_eq!(ours.len(), 1, "{ours:?}");
        ours[0].launch.mma_flops / ours[0].launch.mma
    });
    (gpu.download_f16(s, &out).unwrap(), per_mma)
}

#[test]
fn cuda_arch_selects_the_kernel_build() {
    let test = "cuda_arch_selects_the_kernel_build";
    let Some(probe) = gpu_or_skip(test) else {
        return;
    };
    let hopper = probe.info().is_sm90();
    // vgpu's default numerics sum each k16 step exactly in either instruction.
    let name = &probe.info().name;
    let exact = is_vgpu(name) && !name.contains("numerics:");
    drop(probe);
    let mut rng = Rng::new(test);
    let a = round_f16(&rng.vec(SHAPE.m * SHAPE.k, -1.0, 1.0));
    let w = round_f16(&rng.vec(SHAPE.n * SHAPE.k, -1.0, 1.0));

    let auto = open(None).unwrap();
    assert_eq!(auto.sm90a_loaded(), hopper);
    assert_eq!(auto.is_sm90a_entry("gemm_bias_f16_64x128"), hopper);
    assert_eq!(auto.is_sm90a_entry("attn_relpos_s64_d64_f16"), hopper);
    assert_eq!(auto.is_sm90a_entry("attn_relpos_s64_d80_f16"), hopper);
    // The 3x3 convolution has no Hopper build: always the portable entry.
    assert!(!auto.is_sm90a_entry("conv3x3_f16_64x128"));
    let (got_auto, per_auto) = run(&auto, &a, &w);
    drop(auto);

    let portable = open(Some("sm_80")).unwrap();
    assert!(!portable.sm90a_loaded());
    assert!(!portable.is_sm90a_entry("gemm_bias_f16_64x128"));
    let (got_portable, per_portable) = run(&portable, &a, &w);
    drop(portable);

    if let (Some(pa), Some(pp)) = (per_auto, per_portable) {
        assert_eq!(pp, 2 * 16 * 8 * 16, "sm_80 ran mma.sync");
        assert_eq!(pa, if hopper { 2 * 64 * 128 * 16 } else { pp }, "auto");
    }
    // Both builds sum each output's k16 steps in k order; they may differ only in how a
    // chip rounds inside one step, far below one fp16 rounding of the output.
    if exact {
        assert_eq!(
            got_auto, got_portable,
            "{test}: the builds differ on exact numerics"
        );
    }
    assert_close(test, &got_auto, &got_portable, 1e-3, 1e-3);

    match open(Some("sm_90a")) {
        Ok(g) => assert!(hopper && g.sm90a_loaded()),
        Err(e) => assert!(!hopper && matches!(e, Error::Unsupported(_)), "{e}"),
    }
    let bad = open(Some("sm_75"));
    assert!(matches!(bad, Err(Error::Unsupported(_))), "{:?}", bad.err());
}
