//! Model configuration. Never read from a side file: it is inferred from tensor shapes
//! (spec §1), so any checkpoint with official names describes itself.

/// Image encoder (ViT) hyper-parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct EncoderConfig {
    pub embed_dim: usize,
    pub depth: usize,
    pub num_heads: usize,
    pub head_dim: usize,
    pub mlp_dim: usize,
    pub window_size: usize,
    /// Blocks that attend over the whole 64x64 grid; every other block is windowed.
    pub global_attn_indexes: Vec<usize>,
    pub img_size: usize,
    pub patch_size: usize,
    pub out_chans: usize,
}

impl EncoderConfig {
    /// Side of the patch grid (64 for 1024/16).
    pub fn grid(&self) -> usize {
        self.img_size / self.patch_size
    }

    pub fn vit_b() -> Self {
        Self::standard(768, 12, 12, vec![2, 5, 8, 11])
    }
    pub fn vit_l() -> Self {
        Self::standard(1024, 24, 16, vec![5, 11, 17, 23])
    }
    pub fn vit_h() -> Self {
        Self::standard(1280, 32, 16, vec![7, 15, 23, 31])
    }

    pub fn standard(embed_dim: usize, depth: usize, num_heads: usize, global: Vec<usize>) -> Self {
        EncoderConfig {
            embed_dim,
            depth,
            num_heads,
            head_dim: embed_dim / num_heads,
            mlp_dim: embed_dim * 4,
            window_size: 14,
            global_attn_indexes: global,
            img_size: 1024,
            patch_size: 16,
            out_chans: 256,
        }
    }
}

/// Whole-model configuration. The prompt encoder and mask decoder sizes are fixed by the
/// official architecture and checked against the shapes at load.
#[derive(Debug, Clone, PartialEq)]
pub struct SamConfig {
    pub encoder: EncoderConfig,
    /// Prompt embedding / transformer dim (256).
    pub prompt_embed_dim: usize,
    /// Channels of the mask-downscaling hidden layer (16).
    pub mask_in_chans: usize,
    /// Mask tokens = multimask outputs + 1 (4).
    pub num_mask_tokens: usize,
    pub transformer_depth: usize,
    pub transformer_mlp_dim: usize,
    pub transformer_heads: usize,
    pub iou_head_hidden_dim: usize,
}

impl SamConfig {
    pub fn with_encoder(encoder: EncoderConfig) -> Self {
        SamConfig {
            encoder,
            prompt_embed_dim: 256,
            mask_in_chans: 16,
            num_mask_tokens: 4,
            transformer_depth: 2,
            transformer_mlp_dim: 2048,
            transformer_heads: 8,
            iou_head_hidden_dim: 256,
        }
    }

    /// Named official configuration: "vit_b", "vit_l" or "vit_h".
    pub fn by_name(name: &str) -> Option<Self> {
        let e = match name {
            "vit_b" => EncoderConfig::vit_b(),
            "vit_l" => EncoderConfig::vit_l(),
            "vit_h" => EncoderConfig::vit_h(),
            _ => return None,
        };
        Some(Self::with_encoder(e))
    }
}
