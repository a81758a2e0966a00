//! Random, well-conditioned weights with the official names and shapes, for tests,
//! benchmarks and `examples/random_checkpoint.rs`: weights scaled by fan-in as in trained
//! models, so that activations keep their scale through the layers and float32 rounding is
//! not amplified chaotically.

use crate::io::config::{EncoderConfig, SamConfig};
use crate::io::weights::{MapWeights, Rng};

/// Input channels of the patch embedding (RGB).
const IN_CHANS: usize = 3;

/// Random `image_encoder.*` weights with the official names and shapes: linear/conv
/// weights N(0, 1/fan_in), biases small, LayerNorm weights near 1, non-zero rel-pos tables.
pub fn random_encoder_weights(cfg: &EncoderConfig, seed: u64) -> MapWeights {
    let mut r = Rng::new(seed);
    let mut m = MapWeights::default();
    let (d, g, p, hd, oc) = (
        cfg.embed_dim,
        cfg.grid(),
        cfg.patch_size,
        cfg.head_dim,
        cfg.out_chans,
    );
    let mut put = |m: &mut MapWeights, name: String, shape: Vec<usize>, mean: f64, std: f64| {
        let n = shape.iter().product();
        m.insert(name, shape, r.fill(n, mean, std));
    };
    let pre = "image_encoder";
    let fan = |n: usize| 1.0 / (n as f64).sqrt();
    put(
        &mut m,
        format!("{pre}.pos_embed"),
        vec![1, g, g, d],
        0.0,
        0.1,
    );
    let pk = IN_CHANS * p * p;
    put(
        &mut m,
        format!("{pre}.patch_embed.proj.weight"),
        vec![d, IN_CHANS, p, p],
        0.0,
        fan(pk),
    );
    put(
        &mut m,
        format!("{pre}.patch_embed.proj.bias"),
        vec![d],
        0.0,
        0.02,
    );
    for i in 0..cfg.depth {
        let b = format!("{pre}.blocks.{i}");
        let side = if cfg.global_attn_indexes.contains(&i) {
            g
        } else {
            cfg.window_size
        };
        for n in ["norm1", "norm2"] {
            put(&mut m, format!("{b}.{n}.weight"), vec![d], 1.0, 0.1);
            put(&mut m, format!("{b}.{n}.bias"), vec![d], 0.0, 0.05);
        }
        let lin = [
            ("attn.qkv", d, 3 * d),
            ("attn.proj", d, d),
            ("mlp.lin1", d, cfg.mlp_dim),
            ("mlp.lin2", cfg.mlp_dim, d),
        ];
        for (n, inp, out) in lin {
            put(
                &mut m,
                format!("{b}.{n}.weight"),
                vec![out, inp],
                0.0,
                fan(inp),
            );
            put(&mut m, format!("{b}.{n}.bias"), vec![out], 0.0, 0.02);
        }
        for n in ["rel_pos_h", "rel_pos_w"] {
            put(
                &mut m,
                format!("{b}.attn.{n}"),
                vec![2 * side.max(1) - 1, hd],
                0.0,
                0.1,
            );
        }
    }
    put(
        &mut m,
        format!("{pre}.neck.0.weight"),
        vec![oc, d, 1, 1],
        0.0,
        fan(d),
    );
    put(
        &mut m,
        format!("{pre}.neck.2.weight"),
        vec![oc, oc, 3, 3],
        0.0,
        fan(oc * 9),
    );
    for n in ["neck.1", "neck.3"] {
        put(&mut m, format!("{pre}.{n}.weight"), vec![oc], 1.0, 0.1);
        put(&mut m, format!("{pre}.{n}.bias"), vec![oc], 0.0, 0.05);
    }
    m
}

/// How a tensor is filled by [`random_decoder_weights`].
#[derive(Clone, Copy)]
enum Init {
    /// Uniform +-1/sqrt(fan_in), PyTorch's default bound for Linear/Conv: biases.
    Fan(usize),
    /// Uniform +-sqrt(3/fan_in), unit variance: weights, so that activations keep their
    /// scale through the layers and mask logits reach several units.
    Unit(usize),
    /// Roughly N(0, 1) (sum of three uniforms): embeddings and the Fourier matrix.
    Normal,
    /// 1 +- 0.2: norm scales.
    One,
    /// +-0.1: norm shifts.
    Small,
}

/// Official names and shapes of every prompt encoder and mask decoder tensor.
fn decoder_tensors(cfg: &SamConfig) -> Vec<(String, Vec<usize>, Init)> {
    let d = cfg.prompt_embed_dim;
    let mic = cfg.mask_in_chans;
    let mut v: Vec<(String, Vec<usize>, Init)> = Vec::new();
    let mut add = |n: String, s: Vec<usize>, i: Init| v.push((n, s, i));
    let pe = "prompt_encoder";
    add(
        format!("{pe}.pe_layer.positional_encoding_gaussian_matrix"),
        vec![2, d / 2],
        Init::Normal,
    );
    for i in 0..4 {
        add(
            format!("{pe}.point_embeddings.{i}.weight"),
            vec![1, d],
            Init::Normal,
        );
    }
    add(
        format!("{pe}.not_a_point_embed.weight"),
        vec![1, d],
        Init::Normal,
    );
    add(
        format!("{pe}.no_mask_embed.weight"),
        vec![1, d],
        Init::Normal,
    );
    let md = format!("{pe}.mask_downscaling");
    for (i, o, inp, k) in [(0, mic / 4, 1, 2), (3, mic, mic / 4, 2), (6, d, mic, 1)] {
        add(
            format!("{md}.{i}.weight"),
            vec![o, inp, k, k],
            Init::Unit(inp * k * k),
        );
        add(format!("{md}.{i}.bias"), vec![o], Init::Fan(inp * k * k));
    }
    for (i, c) in [(1, mic / 4), (4, mic)] {
        add(format!("{md}.{i}.weight"), vec![c], Init::One);
        add(format!("{md}.{i}.bias"), vec![c], Init::Small);
    }
    let linear = |add: &mut dyn FnMut(String, Vec<usize>, Init), p: String, i: usize, o: usize| {
        add(format!("{p}.weight"), vec![o, i], Init::Unit(i));
        add(format!("{p}.bias"), vec![o], Init::Fan(i));
    };
    let norm = |add: &mut dyn FnMut(String, Vec<usize>, Init), p: String, c: usize| {
        add(format!("{p}.weight"), vec![c], Init::One);
        add(format!("{p}.bias"), vec![c], Init::Small);
    };
    let attn = |add: &mut dyn FnMut(String, Vec<usize>, Init), p: String, internal: usize| {
        for n in ["q_proj", "k_proj", "v_proj"] {
            linear(add, format!("{p}.{n}"), d, internal);
        }
        linear(add, format!("{p}.out_proj"), internal, d);
    };
    let t = "mask_decoder.transformer";
    for l in 0..cfg.transformer_depth {
        let p = format!("{t}.layers.{l}");
        attn(&mut add, format!("{p}.self_attn"), d);
        attn(&mut add, format!("{p}.cross_attn_token_to_image"), d / 2);
        attn(&mut add, format!("{p}.cross_attn_image_to_token"), d / 2);
        for n in 1..=4 {
            norm(&mut add, format!("{p}.norm{n}"), d);
        }
        linear(
            &mut add,
            format!("{p}.mlp.lin1"),
            d,
            cfg.transformer_mlp_dim,
        );
        linear(
            &mut add,
            format!("{p}.mlp.lin2"),
            cfg.transformer_mlp_dim,
            d,
        );
    }
    attn(&mut add, format!("{t}.final_attn_token_to_image"), d / 2);
    norm(&mut add, format!("{t}.norm_final_attn"), d);
    let m = "mask_decoder";
    let nm = cfg.num_mask_tokens;
    add(format!("{m}.iou_token.weight"), vec![1, d], Init::Normal);
    add(format!("{m}.mask_tokens.weight"), vec![nm, d], Init::Normal);
    add(
        format!("{m}.output_upscaling.0.weight"),
        vec![d, d / 4, 2, 2],
        Init::Unit(d),
    );
    add(
        format!("{m}.output_upscaling.0.bias"),
        vec![d / 4],
        Init::Fan(d),
    );
    norm(&mut add, format!("{m}.output_upscaling.1"), d / 4);
    add(
        format!("{m}.output_upscaling.3.weight"),
        vec![d / 4, d / 8, 2, 2],
        Init::Unit(d / 4),
    );
    add(
        format!("{m}.output_upscaling.3.bias"),
        vec![d / 8],
        Init::Fan(d / 4),
    );
    for i in 0..nm {
        let p = format!("{m}.output_hypernetworks_mlps.{i}.layers");
        linear(&mut add, format!("{p}.0"), d, d);
        linear(&mut add, format!("{p}.1"), d, d);
        linear(&mut add, format!("{p}.2"), d, d / 8);
    }
    let hid = cfg.iou_head_hidden_dim;
    let p = format!("{m}.iou_prediction_head.layers");
    linear(&mut add, format!("{p}.0"), d, hid);
    linear(&mut add, format!("{p}.1"), hid, hid);
    linear(&mut add, format!("{p}.2"), hid, nm);
    v
}

/// Every `prompt_encoder.*` and `mask_decoder.*` tensor under its official name and shape,
/// filled deterministically from `seed` at PyTorch-like scales, every value f16-representable
/// and non-zero (so a checkpoint stored in half precision holds them exactly, and a
/// mis-wired zero tensor cannot hide).
pub fn random_decoder_weights(cfg: &SamConfig, seed: u64) -> MapWeights {
    let mut rng = Rng::new(seed);
    let mut w = MapWeights::default();
    for (name, shape, init) in decoder_tensors(cfg) {
        let n: usize = shape.iter().product();
        let data = (0..n)
            .map(|_| {
                let v = match init {
                    Init::Fan(f) => rng.uniform_pm1() / (f as f32).sqrt(),
                    Init::Unit(f) => rng.uniform_pm1() * (3.0 / f as f32).sqrt(),
                    Init::Normal => rng.uniform_pm1() + rng.uniform_pm1() + rng.uniform_pm1(),
                    Init::One => 1.0 + 0.2 * rng.uniform_pm1(),
                    Init::Small => 0.1 * rng.uniform_pm1(),
                };
                let h = half::f16::from_f32(v).to_f32();
                if h == 0.0 {
                    half::f16::MIN_POSITIVE.to_f32()
                } else {
                    h
                }
            })
            .collect();
        w.insert(name, shape, data);
    }
    w
}
