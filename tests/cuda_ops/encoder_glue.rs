//! The image encoder's glue kernels against their CPU twins: preprocessing fused with the
//! patch im2col, and residual-stream initialisation.

use crate::common::gpu::{f16r, Rng};
use crate::download_bits;
use half::f16;
use samrt::cpu::ops::preprocess_patchify::{
    patchify_chw, preprocess, preprocess_patchify as cpu_patchify,
};
use samrt::cpu::ops::residual_init::residual_init as cpu_residual_init;
use samrt::cuda::ops::preprocess_patchify::{
    pack_images, preprocess_patchify, slot_bytes, PatchGeom,
};
use samrt::cuda::ops::residual_init::{residual_init, ResidualInitShape};
use samrt::cuda::GpuContext;
use samrt::io::image::{from_rgb, resize_bilinear_pillow, resize_shape, RgbImage};

fn random_image(rng: &mut Rng, w: usize, h: usize) -> RgbImage {
    // Smooth gradients plus noise, so the resize sees structure as well as extremes.
    let (gx, gy) = (rng.uniform(-2.0, 2.0), rng.uniform(-2.0, 2.0));
    let mut data = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            for c in 0..3 {
                let base = 128.0 + gx * x as f32 * (c + 1) as f32 * 0.3 + gy * y as f32 * 0.4;
                let v = base + rng.uniform(-90.0, 90.0);
                data.push(v.clamp(0.0, 255.0) as u8);
            }
        }
    }
    from_rgb(w, h, data).unwrap()
}

/// Originals (w, h) -> resized to long side `img_size` (Pillow-exact), packed into their
/// slots; the GPU patch matrix must equal the CPU one bit for bit after the fp16 rounding
/// (same f32 operations, both round to nearest even), and the CPU one must equal im2col of
/// the official-order `preprocess` output bit for bit.
pub fn run_patchify(
    gpu: &GpuContext,
    rng: &mut Rng,
    test: &str,
    geom: PatchGeom,
    originals: &[(usize, usize)],
) {
    let s = gpu.stream();
    let mut resized = Vec::new();
    let mut want = Vec::new();
    for &(w, h) in originals {
        let orig = random_image(rng, w, h);
        let (nh, nw) = resize_shape(h, w, geom.img_size);
        let r = resize_bilinear_pillow(&orig, nw, nh);
        let fused = cpu_patchify(&r.data, nh, nw, geom).unwrap();
        let (chw, input_size) = preprocess(&orig, geom.img_size).unwrap();
        assert_eq!(input_size, (nh, nw));
        let official = patchify_chw(&chw, 3, geom).unwrap();
        assert!(
            fused
                .iter()
                .zip(&official)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{test}: CPU fused preprocess differs from preprocess + im2col ({w}x{h})"
        );
        println!("{test}: {w}x{h} -> {nw}x{nh}");
        want.extend(fused.iter().map(|&v| f16::from_f32(v).to_bits()));
        resized.push(r);
    }
    let images: Vec<(&[u8], usize, usize)> = resized
        .iter()
        .map(|r| (r.data.as_slice(), r.height, r.width))
        .collect();
    let (mut pixels, sizes) = pack_images(geom, &images).unwrap();
    // Garbage in the unused part of every slot: the kernel must not read it.
    let slot = slot_bytes(geom);
    for (b, r) in resized.iter().enumerate() {
        let used = r.data.len();
        pixels[b * slot + used..(b + 1) * slot]
            .iter_mut()
            .for_each(|p| *p = rng.next() as u8);
    }
    let dev_pixels = s.clone_htod(&pixels).unwrap();
    let dev_sizes = s.clone_htod(&sizes).unwrap();
    let batch = images.len();
    let mut out = gpu.zeros_f16(s, want.len()).unwrap();
    preprocess_patchify(gpu, s, &dev_pixels, &dev_sizes, batch, geom, &mut out).unwrap();
    let got = download_bits(gpu, &out);
    let bad: Vec<usize> = (0..want.len()).filter(|&i| got[i] != want[i]).collect();
    let (rows, cols) = (geom.rows(), geom.cols());
    assert!(
        bad.is_empty(),
        "{test}: {} of {} values differ; first at image {} patch {} col {}: got {:#06x} want {:#06x}",
        bad.len(),
        want.len(),
        bad[0] / (rows * cols),
        bad[0] / cols % rows,
        bad[0] % cols,
        got[bad[0]],
        want[bad[0]]
    );
    println!("{test}: {} fp16 values bit-identical", want.len());
}

pub fn run_residual_init(gpu: &GpuContext, rng: &mut Rng, test: &str, shape: ResidualInitShape) {
    let s = gpu.stream();
    let n = shape.tokens * shape.dim;
    let pos: Vec<f32> = rng.vec(n, -3.0, 3.0).into_iter().map(f16r).collect();
    let want = cpu_residual_init(&pos, shape.batch);
    let dev_pos = gpu.upload_f16(s, &pos).unwrap();
    // Garbage first: the kernel must overwrite every element.
    let mut res = gpu.upload_f32(s, &vec![f32::NAN; want.len()]).unwrap();
    residual_init(gpu, s, &dev_pos, &mut res, shape).unwrap();
    let got = gpu.download_f32(s, &res).unwrap();
    assert!(
        got.iter()
            .zip(&want)
            .all(|(a, b)| a.to_bits() == b.to_bits()),
        "{test}: residual stream differs from the widened position embedding"
    );
    println!("{test}: {} values bit-identical", want.len());
}
