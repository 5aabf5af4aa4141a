//! The Llama architecture: configuration, weights (safetensors, hub or
//! GGUF), the one [`Linear`] type, rotary embeddings and the KV [`Cache`].

mod attention;
pub mod catalog;
mod causal_attention;
mod config;
mod gemv;
pub mod hub;
mod kv_cache;
mod linear;
mod llama;
mod load;
mod rope;
mod shapes;
mod softmax;
mod weights;

pub use config::{Config, Llama3RopeScaling, OneOrMany, RawConfig, RawRopeScaling, MAX_CONTEXT};
pub use gemv::supported as gemv_runs_here;
pub use kv_cache::{LayerKv, KV_CHUNK};
pub use linear::{has_fast_quantized_gemm, Linear, DENSE_PREFILL_MIN_ROWS};
pub use llama::{causal_mask, Cache, Llama, Logits};
pub use load::{
    load_safetensors_dir, load_safetensors_dir_quantized, safetensors_parameters, GgufFile,
};
pub use rope::{inverse_frequencies, RopeTables};
pub use shapes::ModelShape;
pub use softmax::softmax_last_dim_trainable;
pub use weights::{gguf_name, EmbeddingTable, GgufOptions, GgufPart, Requantize, Weights};

/// The largest absolute difference between two tensors of one shape (f32).
#[cfg(test)]
pub(crate) fn max_abs_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
    (a - b)
        .and_then(|d| d.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>())
        .expect("tensors of one shape")
}

/// llama.cpp's name of a GGML type (`q4_k`, `q8_0`, `f16`).
pub fn ggml_type_name(dtype: candle_core::quantized::GgmlDType) -> String {
    let name = format!("{dtype:?}").to_lowercase();
    match name.strip_suffix('k') {
        Some(stem) if stem.starts_with('q') && !stem.contains('_') => format!("{stem}_k"),
        _ => name,
    }
}
