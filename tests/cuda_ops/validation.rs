//! Shape validation and launch checks of the op launchers, outside the table: most need no
//! GPU (host-side validation); the launch checks open one (or skip, or fail under
//! `SAMRT_REQUIRE_GPU=1`) and expect errors, not results.

use crate::common::gpu::{f16r, gpu_or_skip, require_gpu};
use samrt::cuda::cuda_available;
use samrt::cuda::ops::attention::{AttnPlainShape, AttnRelposShape, AttnRelposVariant};
use samrt::cuda::ops::cast_rows::{cast_rows, CastRowsShape};
use samrt::cuda::ops::gemm::{
    conv3x3 as gpu_conv3x3, gemm as gpu_gemm, Conv3x3Shape, Epilogue, GemmScales, GemmShape,
};
use samrt::cuda::ops::layer_norm::{layer_norm_ex, LayerNormShape, LnInput, LnOutput, LnScale};
use samrt::cuda::ops::preprocess_patchify::{
    pack_images, preprocess_patchify, slot_bytes, validate as validate_patchify, PatchGeom,
};
use samrt::cuda::ops::residual_init::{residual_init, ResidualInitShape};
use samrt::Error;

#[test]
fn launchers_reject_short_buffers() {
    let Some(gpu) = gpu_or_skip("launchers_reject_short_buffers") else {
        return;
    };
    let s = gpu.stream();
    let a = gpu.zeros_f16(s, 64 * 64).unwrap();
    let w = gpu.zeros_f16(s, 64 * 64).unwrap();
    let bias = gpu.zeros_f32(s, 64).unwrap();
    let mut out = gpu.zeros_f16(s, 64 * 63).unwrap();
    let shape = GemmShape {
        m: 64,
        n: 64,
        k: 64,
    };
    let r = gpu_gemm(
        &gpu,
        s,
        &a,
        &w,
        Some(&bias),
        shape,
        GemmScales::default(),
        Epilogue::Bias(&mut out),
    );
    assert!(matches!(r, Err(Error::Cuda(_))), "{r:?}");
}

#[test]
fn cuda_available_fails_cleanly_or_reports_a_device() {
    match cuda_available() {
        Ok(info) => {
            println!("CUDA device: {info:?}");
            assert!(!info.name.is_empty());
        }
        Err(Error::Cuda(msg)) if require_gpu() => {
            panic!("SAMRT_REQUIRE_GPU=1 but no usable GPU: {msg}")
        }
        Err(Error::Cuda(msg)) => {
            println!("skipping device checks: {msg}");
            assert!(!msg.is_empty());
        }
        Err(e) => panic!("unexpected error kind: {e}"),
    }
}

#[test]
fn embedded_ptx_lists_every_launcher_kernel() {
    let names: Vec<&str> = samrt::cuda::embedded_kernels()
        .flat_map(|(_, e)| e.iter().copied())
        .collect();
    for k in [
        "layer_norm_f16",
        "layer_norm_f32_f16",
        "attn_relpos_s14_d64_f16",
        "attn_relpos_s14_d80_f16",
        "attn_relpos_s64_d64_f16",
        "attn_relpos_s64_d80_f16",
        "attn_relpos_any_d64_f16",
        "attn_relpos_any_d80_f16",
        "attn_plain_d16_f16",
        "attn_plain_d32_f16",
        "attn_plain_d64_f16",
        "bilinear_w_f32",
        "bilinear_h_f32",
        "bilinear_channels_last_f32",
        "mask_threshold_pack",
        "prompt_sparse_f32",
        "mask_stability_counts",
        "nms_mask_f32",
        "mask_downscaling_f32",
    ] {
        assert!(names.contains(&k), "{k} missing from {names:?}");
    }
    // Every GEMM epilogue and the conv on every block tile.
    use samrt::cuda::ops::gemm::GemmTile;
    use samrt::graph::ops::{conv3x3_entry, GemmEpilogue};
    for t in GemmTile::ALL {
        let epis = [
            GemmEpilogue::Bias,
            GemmEpilogue::BiasGelu,
            GemmEpilogue::BiasResidual,
        ];
        for k in epis
            .map(|e| e.entry_point(t))
            .into_iter()
            .chain([conv3x3_entry(t)])
        {
            assert!(names.contains(&k.as_str()), "{k} missing from {names:?}");
        }
    }
    // Every kernel a decoder schedule names (folded and unfolded cross attentions, with
    // and without mask inputs, and the per-image prep), for both folded widths.
    use samrt::cuda::model::decoder_image::build_image_graph;
    use samrt::cuda::model::mask_decoder::{build_graph, DecoderDims, DecoderKey};
    use samrt::graph::OpDesc;
    for (dim, heads) in [(256, 8), (128, 4)] {
        let mut cfg = samrt::io::config::SamConfig::by_name("vit_b").unwrap();
        (cfg.prompt_embed_dim, cfg.transformer_heads) = (dim, heads);
        cfg.encoder.out_chans = dim;
        let d = DecoderDims::new(&cfg).unwrap();
        let mut graphs = vec![build_image_graph(&d).0];
        for (sparse, mask_input) in [(2, false), (2, true), (40, false)] {
            let key = DecoderKey {
                batch: 2,
                sparse,
                mask_input,
            };
            graphs.push(build_graph(&d, key).0);
        }
        for n in graphs.iter().flat_map(|g| g.nodes.iter()) {
            let e = n.op.entry_point();
            assert!(
                names.contains(&e.as_str()),
                "{e} ({}) is not embedded",
                n.label
            );
        }
    }
}

#[test]
fn gemm_shapes_are_validated() {
    let ok = GemmShape {
        m: 4097,
        n: 770,
        k: 3080,
    };
    assert!(ok.validate().is_ok());
    for bad in [
        GemmShape {
            m: 4096,
            n: 768,
            k: 770,
        },
        GemmShape {
            m: 4096,
            n: 767,
            k: 768,
        },
        GemmShape {
            m: 0,
            n: 768,
            k: 768,
        },
    ] {
        assert!(
            matches!(bad.validate(), Err(Error::Unsupported(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn layer_norm_shapes_are_validated() {
    assert!(LayerNormShape { rows: 5, dim: 2048 }.validate().is_ok());
    for bad in [
        LayerNormShape { rows: 5, dim: 2056 },
        LayerNormShape { rows: 5, dim: 772 },
        LayerNormShape { rows: 0, dim: 768 },
    ] {
        assert!(
            matches!(bad.validate(), Err(Error::Unsupported(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn postprocess_shapes_are_validated() {
    let Some(gpu) = gpu_or_skip("postprocess_shapes_are_validated") else {
        return;
    };
    let stream = gpu.stream().clone();
    let dev = gpu.upload_f32(&stream, &vec![0.5f32; 65536]).unwrap();
    use samrt::cpu::ops::postprocess::MaskFrame;
    let pp_in = |frame, m, input, orig| {
        samrt::cuda::ops::postprocess::postprocess_masks(
            &gpu, &stream, frame, &dev, m, input, orig, 2,
        )
    };
    let pp = |m, input, orig| pp_in(MaskFrame::OFFICIAL, m, input, orig);
    assert!(pp(0, (683, 1024), (10, 10)).is_err());
    assert!(pp(1, (1025, 1024), (10, 10)).is_err());
    assert!(pp(1, (683, 1024), (0, 10)).is_err());
    // Two masks need two planes.
    assert!(pp(2, (683, 1024), (10, 10)).is_err());
    // A 256-px model's frame: 16 planes of 64x64 fit the buffer, the input is within 256.
    let small = MaskFrame::new(16, 256);
    assert!(pp_in(small, 16, (192, 256), (10, 10)).is_ok());
    assert!(pp_in(small, 1, (257, 256), (10, 10)).is_err());
    assert!(pp_in(MaskFrame::new(0, 256), 1, (192, 256), (10, 10)).is_err());
    // A plane list picks planes of the buffer (one here): in range only, one per mask.
    use samrt::cuda::ops::postprocess::{postprocess_into, PostScratch};
    let mut scratch = PostScratch::default();
    let mut pick = |masks: usize, planes: &[i32]| {
        let frame = MaskFrame::OFFICIAL;
        let (input, orig) = ((683, 1024), (10, 10));
        let list = (masks, Some(planes));
        postprocess_into(
            &gpu,
            &stream,
            frame,
            &dev,
            list,
            input,
            orig,
            2,
            &mut scratch,
        )
    };
    assert!(pick(1, &[0]).is_ok());
    assert!(pick(2, &[0, 0]).is_ok());
    assert!(pick(1, &[1]).is_err());
    assert!(pick(1, &[-1]).is_err());
    assert!(pick(2, &[0]).is_err());
}

#[test]
fn gemm_scales_and_conv3x3_launch_checks() {
    // Host-side validation, no GPU needed.
    let neck = Conv3x3Shape {
        batch: 1,
        h: 64,
        w: 64,
        cin: 256,
        cout: 256,
    };
    assert!(neck.validate().is_ok());
    assert_eq!(
        neck.gemm().unwrap(),
        GemmShape {
            m: 4096,
            n: 256,
            k: 2304
        }
    );
    assert!(matches!(
        Conv3x3Shape { cin: 20, ..neck }.validate(),
        Err(Error::Unsupported(_))
    ));
    assert!(matches!(
        Conv3x3Shape { cout: 255, ..neck }.validate(),
        Err(Error::Unsupported(_))
    ));

    let Some(gpu) = gpu_or_skip("gemm_scales_and_conv3x3_launch_checks") else {
        return;
    };
    let s = gpu.stream();
    let (m, n, k) = (64, 64, 64);
    let shape = GemmShape { m, n, k };
    let a = gpu.zeros_f16(s, m * k).unwrap();
    let w = gpu.zeros_f16(s, n * k).unwrap();
    let short_rows = gpu.zeros_f32(s, m - 1).unwrap();
    let rows = gpu.zeros_f32(s, m).unwrap();
    let mut out = gpu.zeros_f16(s, m * n).unwrap();
    let mut res = gpu.zeros_f32(s, m * n).unwrap();
    let short = GemmScales {
        row_scale: Some(&short_rows),
        ..GemmScales::default()
    };
    let r = gpu_gemm(
        &gpu,
        s,
        &a,
        &w,
        None,
        shape,
        short,
        Epilogue::Bias(&mut out),
    );
    assert!(matches!(r, Err(Error::Cuda(_))), "short row_scale: {r:?}");
    let residual_scaled = GemmScales {
        out_scale: 0.5,
        ..GemmScales::default()
    };
    let r = gpu_gemm(
        &gpu,
        s,
        &a,
        &w,
        None,
        shape,
        residual_scaled,
        Epilogue::BiasResidual(&mut res),
    );
    assert!(
        matches!(r, Err(Error::Unsupported(_))),
        "residual out_scale: {r:?}"
    );
    let zero = GemmScales {
        in_scale: 0.0,
        row_scale: Some(&rows),
        ..GemmScales::default()
    };
    let r = gpu_gemm(&gpu, s, &a, &w, None, shape, zero, Epilogue::Bias(&mut out));
    assert!(matches!(r, Err(Error::Unsupported(_))), "in_scale 0: {r:?}");
    // conv3x3: Cin not a multiple of 8, and a short input.
    let csh = Conv3x3Shape {
        batch: 1,
        h: 4,
        w: 4,
        cin: 12,
        cout: 8,
    };
    let x = gpu.zeros_f16(s, 16 * 16).unwrap();
    let cw = gpu.zeros_f16(s, 8 * 9 * 16).unwrap();
    let mut cout = gpu.zeros_f16(s, 16 * 8).unwrap();
    let r = gpu_conv3x3(
        &gpu,
        s,
        &x,
        &cw,
        None,
        csh,
        GemmScales::default(),
        &mut cout,
    );
    assert!(matches!(r, Err(Error::Unsupported(_))), "cin 12: {r:?}");
    let r = gpu_conv3x3(
        &gpu,
        s,
        &x,
        &cw,
        None,
        Conv3x3Shape {
            cin: 16,
            h: 5,
            ..csh
        },
        GemmScales::default(),
        &mut cout,
    );
    assert!(matches!(r, Err(Error::Cuda(_))), "short input: {r:?}");
}

#[test]
fn attention_shapes_are_validated() {
    let vit_b = AttnRelposShape {
        batch: 1,
        grid: 64,
        dim: 768,
        heads: 12,
        window: 14,
    };
    assert!(vit_b.validate().is_ok());
    assert_eq!(vit_b.kernel_name(), "attn_relpos_s14_d64_f16");
    assert_eq!(vit_b.windows_per_side(), 5);
    let vit_h_global = AttnRelposShape {
        dim: 1280,
        heads: 16,
        window: 64,
        ..vit_b
    };
    assert!(vit_h_global.validate().is_ok());
    assert_eq!(vit_h_global.kernel_name(), "attn_relpos_s64_d80_f16");
    assert_eq!(vit_h_global.variant(), AttnRelposVariant::Side64);
    // img_size 256: grid 16, global S = 16 and windows of 14 over 16 padded to 28.
    let small_global = AttnRelposShape {
        grid: 16,
        window: 16,
        ..vit_b
    };
    assert!(small_global.validate().is_ok());
    assert_eq!(small_global.variant(), AttnRelposVariant::AnySide);
    assert_eq!(small_global.kernel_name(), "attn_relpos_any_d64_f16");
    let small_windowed = AttnRelposShape { grid: 16, ..vit_b };
    assert!(small_windowed.validate().is_ok());
    assert_eq!(small_windowed.variant(), AttnRelposVariant::Side14);
    assert_eq!(small_windowed.windows_per_side(), 2);
    for ok in [1, 7, 63, 65, 256] {
        let shape = AttnRelposShape {
            grid: ok,
            window: ok,
            ..vit_b
        };
        assert!(shape.validate().is_ok(), "{shape:?}");
    }
    for bad in [
        AttnRelposShape { heads: 16, ..vit_b }, // head_dim 48
        AttnRelposShape { window: 0, ..vit_b },
        AttnRelposShape {
            grid: 257,
            window: 257,
            ..vit_b
        }, // past ENCODER_MAX_SIDE
        AttnRelposShape { grid: 0, ..vit_b },
    ] {
        assert!(
            matches!(bad.validate(), Err(Error::Unsupported(_))),
            "{bad:?}"
        );
    }
    let dec = AttnPlainShape {
        batch: 1,
        heads: 8,
        head_dim: 16,
        lq: 7,
        lk: 4096,
    };
    assert!(dec.validate().is_ok());
    assert!(matches!(
        AttnPlainShape {
            head_dim: 80,
            ..dec
        }
        .validate(),
        Err(Error::Unsupported(_))
    ));
    assert!(matches!(
        AttnPlainShape { lk: 0, ..dec }.validate(),
        Err(Error::Unsupported(_))
    ));
}

#[test]
fn launchers_reject_bad_buffers() {
    let test = "launchers_reject_bad_buffers";
    let Some(gpu) = gpu_or_skip(test) else { return };
    let s = gpu.stream();
    let geom = PatchGeom {
        img_size: 32,
        patch: 16,
    };
    let slot = slot_bytes(geom);
    let pixels = s.clone_htod(&vec![7u8; 2 * slot]).unwrap();
    // Malformed device-side sizes are clamped to [0, img_size]: no read outside the slot
    // (vgpu would fault), padding (zero) for h = 0.
    let sizes = s.clone_htod(&[-5i32, 1 << 30, 1 << 30, 20]).unwrap();
    let mut out = gpu.zeros_f16(s, 2 * geom.len() + 8).unwrap();
    preprocess_patchify(&gpu, s, &pixels, &sizes, 2, geom, &mut out).unwrap();
    let got = gpu.download_f16(s, &out).unwrap();
    assert!(got[..geom.len()].iter().all(|&v| v == 0.0));
    let seven = f16r((7.0 - 123.675) / 58.395);
    assert_eq!(got[geom.len()], seven);
    // Pixel buffer one byte short, sizes short, output too short for three images, output
    // view 8 bytes in (misaligned).
    let short = s.clone_htod(&vec![7u8; 2 * slot - 1]).unwrap();
    for r in [
        preprocess_patchify(&gpu, s, &short, &sizes, 2, geom, &mut out),
        preprocess_patchify(&gpu, s, &pixels, &sizes.slice(1..), 2, geom, &mut out),
        preprocess_patchify(&gpu, s, &pixels, &sizes, 3, geom, &mut out),
    ] {
        assert!(matches!(r, Err(Error::Cuda(_))));
    }
    let mut view = out.slice_mut(4..);
    assert!(matches!(
        preprocess_patchify(&gpu, s, &pixels, &sizes, 2, geom, &mut view),
        Err(Error::Cuda(_))
    ));

    let pos = gpu.zeros_f16(s, 64).unwrap();
    let mut res = gpu.zeros_f32(s, 128).unwrap();
    let ri = ResidualInitShape {
        batch: 2,
        tokens: 8,
        dim: 8,
    };
    assert!(residual_init(&gpu, s, &pos, &mut res, ri).is_ok());
    assert!(matches!(
        residual_init(
            &gpu,
            s,
            &pos,
            &mut res,
            ResidualInitShape { batch: 3, ..ri }
        ),
        Err(Error::Cuda(_))
    ));
    let mut res_view = res.slice_mut(2..);
    assert!(matches!(
        residual_init(
            &gpu,
            s,
            &pos,
            &mut res_view,
            ResidualInitShape { batch: 1, ..ri }
        ),
        Err(Error::Cuda(_))
    ));

    let x = gpu.zeros_f32(s, 64).unwrap();
    let mut xh = gpu.zeros_f16(s, 64).unwrap();
    let mut rs = gpu.zeros_f32(s, 3).unwrap();
    let cr = CastRowsShape { rows: 4, dim: 16 };
    assert!(matches!(
        cast_rows(&gpu, s, &x, &mut xh, &mut rs, cr),
        Err(Error::Cuda(_))
    ));

    let gamma = gpu.zeros_f32(s, 16).unwrap();
    let mut y32 = gpu.zeros_f32(s, 64).unwrap();
    let ln = LayerNormShape { rows: 4, dim: 16 };
    // 4 rows are not whole images of 3 tokens; fp32 input has no channel-first variant;
    // row_scale shorter than the rows.
    for (tokens, f32_in) in [(3, false), (2, true)] {
        let input = if f32_in {
            LnInput::F32(&x)
        } else {
            LnInput::F16(&xh)
        };
        let r = layer_norm_ex(
            &gpu,
            s,
            input,
            LnScale::NONE,
            &gamma,
            &gamma,
            LnOutput::F32ChannelFirst {
                out: &mut y32,
                tokens,
            },
            ln,
            1e-6,
        );
        assert!(matches!(r, Err(Error::Unsupported(_))), "tokens {tokens}");
    }
    let short = LnScale {
        row_scale: Some(&rs),
        in_scale: 1.0,
    };
    let r = layer_norm_ex(
        &gpu,
        s,
        LnInput::F16(&xh),
        short,
        &gamma,
        &gamma,
        LnOutput::F32ChannelFirst {
            out: &mut y32,
            tokens: 2,
        },
        ln,
        1e-6,
    );
    assert!(matches!(r, Err(Error::Cuda(_))));
    gpu.synchronize(s).unwrap();
}

#[test]
fn encoder_op_shapes_are_validated() {
    let geom = PatchGeom {
        img_size: 1024,
        patch: 16,
    };
    assert!(validate_patchify(geom, 1).is_ok());
    assert!(matches!(
        validate_patchify(geom, 0),
        Err(Error::Unsupported(_))
    ));
    assert!(matches!(
        validate_patchify(geom, 65_536),
        Err(Error::Unsupported(_))
    ));
    for bad in [
        PatchGeom {
            img_size: 1024,
            patch: 12,
        },
        PatchGeom {
            img_size: 1000,
            patch: 16,
        },
        PatchGeom {
            img_size: 32768,
            patch: 16,
        },
    ] {
        assert!(
            matches!(validate_patchify(bad, 1), Err(Error::Unsupported(_))),
            "{bad:?}"
        );
    }
    let small = PatchGeom {
        img_size: 32,
        patch: 16,
    };
    let rgb = vec![0u8; 32 * 20 * 3];
    let (pixels, sizes) = pack_images(small, &[(&rgb, 20, 32), (&rgb, 32, 20)]).unwrap();
    assert_eq!(pixels.len(), 2 * slot_bytes(small));
    assert_eq!(sizes, vec![20, 32, 32, 20]);
    for (h, w) in [(20, 31), (33, 20), (0, 32)] {
        let r = pack_images(small, &[(&rgb, h, w)]);
        assert!(matches!(r, Err(Error::Image(_))), "{h}x{w}");
    }
    assert!(matches!(
        pack_images(small, &[(&rgb[1..], 20, 32)]),
        Err(Error::Image(_))
    ));

    assert!(CastRowsShape { rows: 3, dim: 8 }.validate().is_ok());
    for bad in [
        CastRowsShape { rows: 0, dim: 8 },
        CastRowsShape { rows: 3, dim: 12 },
    ] {
        assert!(
            matches!(bad.validate(), Err(Error::Unsupported(_))),
            "{bad:?}"
        );
    }
    let ri = ResidualInitShape {
        batch: 1,
        tokens: 4096,
        dim: 768,
    };
    assert!(ri.validate().is_ok());
    for bad in [
        ResidualInitShape { batch: 0, ..ri },
        ResidualInitShape {
            tokens: 5,
            dim: 3,
            ..ri
        },
        ResidualInitShape {
            batch: usize::MAX,
            ..ri
        },
    ] {
        assert!(
            matches!(bad.validate(), Err(Error::Unsupported(_))),
            "{bad:?}"
        );
    }
    assert!(LnScale::NONE.validate(1e-6).is_ok());
    for s in [0.0, -1.0, f32::NAN, f32::INFINITY, 1e-30] {
        let sc = LnScale {
            row_scale: None,
            in_scale: s,
        };
        assert!(
            matches!(sc.validate(1e-6), Err(Error::Unsupported(_))),
            "{s}"
        );
    }
}

#[test]
fn decoder_launchers_reject_bad_shapes() {
    let Some(gpu) = gpu_or_skip("decoder_launchers_reject_bad_shapes") else {
        return;
    };
    crate::decoder_ops::run_decoder_validation(&gpu);
}
