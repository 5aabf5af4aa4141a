//! The shapes of well-known Llama-architecture models, to benchmark a
//! machine on random weights built in memory, before downloading any.

use std::path::Path;

use candle_core::quantized::GgmlDType;
use candle_core::{DType, Device};
use serde_json::json;

use super::config::{Config, RawConfig};
use super::llama::Llama;
use super::weights::Weights;
use crate::error::{Error, Result};

/// A model whose exact shape (not its weights) is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelShape {
    /// SmolLM2-135M(-Instruct).
    Smollm2_135m,
    /// Llama-3.2-1B(-Instruct).
    Llama32_1b,
    /// Llama-3.2-3B(-Instruct).
    Llama32_3b,
    /// Meta-Llama-3-8B(-Instruct).
    Llama3_8b,
}

impl ModelShape {
    /// Every shape, in size order.
    pub const ALL: [ModelShape; 4] = [
        ModelShape::Smollm2_135m,
        ModelShape::Llama32_1b,
        ModelShape::Llama32_3b,
        ModelShape::Llama3_8b,
    ];

    /// Its name: `smollm2-135m`, `llama3.2-1b`, `llama3.2-3b`, `llama3-8b`.
    pub fn name(self) -> &'static str {
        match self {
            ModelShape::Smollm2_135m => "smollm2-135m",
            ModelShape::Llama32_1b => "llama3.2-1b",
            ModelShape::Llama32_3b => "llama3.2-3b",
            ModelShape::Llama3_8b => "llama3-8b",
        }
    }

    /// The shape called `name`.
    pub fn parse(name: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|s| s.name() == name)
            .ok_or_else(|| {
                let known: Vec<&str> = Self::ALL.iter().map(|s| s.name()).collect();
                Error::invalid(
                    "shape",
                    format!("unknown shape {name:?} (known: {})", known.join(", ")),
                )
            })
    }

    /// Its configuration, as its `config.json` gives it.
    pub fn config(self) -> Result<Config> {
        let llama3_scaling = |factor: f32| {
            json!({"rope_type": "llama3", "factor": factor, "low_freq_factor": 1.0,
                   "high_freq_factor": 4.0, "original_max_position_embeddings": 8192})
        };
        let raw = match self {
            ModelShape::Smollm2_135m => json!({
                "hidden_size": 576, "intermediate_size": 1536, "vocab_size": 49152,
                "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
                "rms_norm_eps": 1e-5, "rope_theta": 100000.0, "max_position_embeddings": 8192,
                "tie_word_embeddings": true, "bos_token_id": 1, "eos_token_id": 2}),
            ModelShape::Llama32_1b => json!({
                "hidden_size": 2048, "intermediate_size": 8192, "vocab_size": 128256,
                "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8,
                "head_dim": 64, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
                "rope_scaling": llama3_scaling(32.0), "max_position_embeddings": 131072,
                "tie_word_embeddings": true, "bos_token_id": 128000, "eos_token_id": 128009}),
            ModelShape::Llama32_3b => json!({
                "hidden_size": 3072, "intermediate_size": 8192, "vocab_size": 128256,
                "num_hidden_layers": 28, "num_attention_heads": 24, "num_key_value_heads": 8,
                "head_dim": 128, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
                "rope_scaling": llama3_scaling(32.0), "max_position_embeddings": 131072,
                "tie_word_embeddings": true, "bos_token_id": 128000, "eos_token_id": 128009}),
            ModelShape::Llama3_8b => json!({
                "hidden_size": 4096, "intermediate_size": 14336, "vocab_size": 128256,
                "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
                "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "max_position_embeddings": 8192,
                "tie_word_embeddings": false, "bos_token_id": 128000, "eos_token_id": 128009}),
        };
        let raw: RawConfig = serde_json::from_value(raw)
            .map_err(|e| Error::invalid("shape", format!("{}: {e}", self.name())))?;
        raw.into_config(Path::new(self.name()))
    }

    /// The model with random weights (see [`Weights::random`]): dense in
    /// `dtype`, or quantized to `quantize` as each weight is made.
    pub fn random_model(
        self,
        dtype: DType,
        quantize: Option<GgmlDType>,
        device: &Device,
    ) -> Result<Llama> {
        let weights = Weights::random(self.name(), dtype, quantize, device, 0);
        Llama::load(&weights, self.config()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shape_has_its_parameter_count() {
        // Published sizes, embeddings counted once when tied.
        let want = [
            (135e6, 0.02),
            (1.24e9, 0.02),
            (3.21e9, 0.02),
            (8.03e9, 0.02),
        ];
        for (shape, (params, tol)) in ModelShape::ALL.into_iter().zip(want) {
            let c = shape.config().unwrap();
            let attn = c.hidden_size * c.head_dim * (2 * c.num_heads + 2 * c.num_kv_heads);
            let mlp = 3 * c.hidden_size * c.intermediate_size;
            let embed = c.vocab_size * c.hidden_size;
            let heads = if c.tie_word_embeddings { 1 } else { 2 };
            let n = (c.num_layers * (attn + mlp) + heads * embed) as f64;
            assert!(((n - params) / params).abs() < tol, "{}: {n}", shape.name());
            assert_eq!(ModelShape::parse(shape.name()).unwrap(), shape);
        }
        assert!(ModelShape::parse("llama-70b").is_err());
    }

    #[test]
    fn a_random_small_model_runs_quantized() {
        let m = ModelShape::Smollm2_135m
            .random_model(DType::F32, Some(GgmlDType::Q8_0), &Device::Cpu)
            .unwrap();
        assert_eq!(m.weight_type(), Some(GgmlDType::Q8_0));
        let ids = candle_core::Tensor::new(&[[1u32, 2, 3]], &Device::Cpu).unwrap();
        let logits = m.forward(&ids, None, crate::model::Logits::Last).unwrap();
        assert_eq!(logits.dims(), &[1, 49152]);
        let v: Vec<f32> = logits.flatten_all().unwrap().to_vec1().unwrap();
        assert!(v.iter().all(|x| x.is_finite()));
    }
}
