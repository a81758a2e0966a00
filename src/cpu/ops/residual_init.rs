//! The residual stream's starting value, the CPU twin of `kernels/residual_init.cu`: the
//! absolute position embedding `[T, D]` repeated for each image of the batch (the
//! patch-embedding GEMM then adds conv + bias onto it).

/// `[batch, T, D]`: `pos_embed` (`[T*D]`, `[1, G, G, D]` flattened) repeated `batch` times.
pub fn residual_init(pos_embed: &[f32], batch: usize) -> Vec<f32> {
    pos_embed.repeat(batch)
}
