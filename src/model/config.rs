//! Model configuration: a serde mirror of Hugging Face `config.json`
//! ([`RawConfig`], full of `Option`s) and the resolved [`Config`] the model
//! uses. GGUF metadata resolves into the same [`Config`].

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::gguf_file;
use serde::Deserialize;

use crate::error::{Error, Result};

/// Largest context window for which RoPE tables are precomputed, whatever the
/// model advertises (Llama 3.1 advertises 131,072). 16 MiB of tables at most.
pub const MAX_CONTEXT: usize = 32_768;

/// The largest attention head a configuration may give (models use 64-256;
/// RoPE tables for [`MAX_CONTEXT`] positions then take 64 MiB at most).
const MAX_HEAD_DIM: usize = 512;

/// The most elements one weight of a configuration may have (2^40: far
/// beyond any model, far below an overflow).
const MAX_TENSOR_ELEMENTS: usize = 1 << 40;

/// `rope_scaling` as written in `config.json`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct RawRopeScaling {
    /// `"llama3"` (Llama 3.1/3.2) or `"default"`; older files say `type`.
    #[serde(alias = "type")]
    pub rope_type: Option<String>,
    /// Overall scaling factor (Llama 3.1: 8.0, Llama 3.2: 32.0).
    pub factor: Option<f32>,
    /// Llama 3 low-frequency factor (1.0).
    pub low_freq_factor: Option<f32>,
    /// Llama 3 high-frequency factor (4.0).
    pub high_freq_factor: Option<f32>,
    /// Context length the base model was trained with (8192).
    pub original_max_position_embeddings: Option<usize>,
}

/// A number or a list of numbers (`eos_token_id` in `config.json`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum OneOrMany {
    /// A single id.
    One(u32),
    /// Several ids.
    Many(Vec<u32>),
}

impl OneOrMany {
    /// All ids, as a list.
    pub fn to_vec(&self) -> Vec<u32> {
        match self {
            OneOrMany::One(id) => vec![*id],
            OneOrMany::Many(ids) => ids.clone(),
        }
    }
}

/// Mirror of a Llama-family `config.json` (Llama 2/3/3.1/3.2, SmolLM2,
/// TinyLlama…). Unknown fields are ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct RawConfig {
    /// `model_type`; must be `llama` when present.
    pub model_type: Option<String>,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the MLP.
    pub intermediate_size: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Number of decoder layers.
    pub num_hidden_layers: usize,
    /// Number of query heads.
    pub num_attention_heads: usize,
    /// Number of key/value heads (GQA); defaults to `num_attention_heads`.
    pub num_key_value_heads: Option<usize>,
    /// Per-head width; defaults to `hidden_size / num_attention_heads`.
    pub head_dim: Option<usize>,
    /// RMSNorm epsilon; defaults to 1e-6.
    pub rms_norm_eps: Option<f64>,
    /// RoPE base; defaults to 10,000.
    pub rope_theta: Option<f32>,
    /// RoPE scaling (Llama 3.1/3.2).
    pub rope_scaling: Option<RawRopeScaling>,
    /// Advertised context window; defaults to 4096.
    pub max_position_embeddings: Option<usize>,
    /// Whether the output projection reuses the token embeddings.
    pub tie_word_embeddings: Option<bool>,
    /// Begin-of-sequence id.
    pub bos_token_id: Option<u32>,
    /// End-of-sequence id(s).
    pub eos_token_id: Option<OneOrMany>,
    /// `hidden_act`; only `silu` is supported.
    pub hidden_act: Option<String>,
    /// Bias on the attention projections (some Llama variants).
    pub attention_bias: Option<bool>,
    /// Bias on the MLP projections.
    pub mlp_bias: Option<bool>,
}

/// Llama 3 frequency-dependent RoPE scaling (`rope_type: "llama3"`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Llama3RopeScaling {
    /// Overall scaling factor.
    pub factor: f32,
    /// Low-frequency factor.
    pub low_freq_factor: f32,
    /// High-frequency factor.
    pub high_freq_factor: f32,
    /// Original training context.
    pub original_max_position_embeddings: usize,
}

/// The resolved configuration the model is built from.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the MLP.
    pub intermediate_size: usize,
    /// Vocabulary size (rows of the embedding).
    pub vocab_size: usize,
    /// Number of decoder layers.
    pub num_layers: usize,
    /// Number of query heads.
    pub num_heads: usize,
    /// Number of key/value heads (GQA: divides `num_heads`).
    pub num_kv_heads: usize,
    /// Per-head width.
    pub head_dim: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// RoPE base frequency.
    pub rope_theta: f32,
    /// Llama 3 RoPE scaling, if any.
    pub rope_scaling: Option<Llama3RopeScaling>,
    /// Per-frequency divisors of the inverse frequencies, when the weights
    /// carry them: llama.cpp's converter writes Llama 3.1+ scaling as a
    /// `rope_freqs.weight` tensor instead of metadata. They replace
    /// `rope_scaling`.
    pub rope_freq_factors: Option<Vec<f32>>,
    /// RoPE pairs interleaved dimensions (2i, 2i+1), as in GGUF files converted
    /// by llama.cpp; `false` pairs (i, i + d/2) as in Hugging Face checkpoints.
    pub rope_interleaved: bool,
    /// Context window used (the advertised one, capped at [`MAX_CONTEXT`]).
    pub context_length: usize,
    /// Output projection shares the token embedding.
    pub tie_word_embeddings: bool,
    /// Bias on q/k/v/o projections.
    pub attention_bias: bool,
    /// Bias on gate/up/down projections.
    pub mlp_bias: bool,
    /// End-of-sequence ids declared by the model config (may be empty).
    pub eos_token_ids: Vec<u32>,
}

impl RawConfig {
    /// Reads and parses `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        serde_json::from_str(&text)
            .map_err(|e| Error::model(path, format!("invalid config.json: {e}")))
    }

    /// Validates and resolves into a [`Config`]; `path` names the file in errors.
    pub fn into_config(self, path: &Path) -> Result<Config> {
        let bad = |m: String| Error::model(path, m);
        if let Some(t) = &self.model_type {
            if t != "llama" {
                return Err(bad(format!(
                    "model_type is \"{t}\"; sqlagent runs Llama-architecture models (model_type \"llama\")"
                )));
            }
        }
        if let Some(act) = &self.hidden_act {
            if act != "silu" {
                return Err(bad(format!(
                    "hidden_act \"{act}\" is not supported (only silu)"
                )));
            }
        }
        let rope_scaling = match &self.rope_scaling {
            None => None,
            Some(rs) => match rs.rope_type.as_deref() {
                None | Some("default") => None,
                Some("llama3") => Some(Llama3RopeScaling {
                    factor: rs
                        .factor
                        .ok_or_else(|| bad("rope_scaling.factor is missing".into()))?,
                    low_freq_factor: rs.low_freq_factor.unwrap_or(1.0),
                    high_freq_factor: rs.high_freq_factor.unwrap_or(4.0),
                    original_max_position_embeddings: rs
                        .original_max_position_embeddings
                        .unwrap_or(8192),
                }),
                Some(other) => {
                    return Err(bad(format!(
                    "rope_scaling type \"{other}\" is not supported (supported: llama3, default)"
                )))
                }
            },
        };
        let cfg = Config {
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            vocab_size: self.vocab_size,
            num_layers: self.num_hidden_layers,
            num_heads: self.num_attention_heads,
            num_kv_heads: self.num_key_value_heads.unwrap_or(self.num_attention_heads),
            head_dim: self
                .head_dim
                .unwrap_or(self.hidden_size / self.num_attention_heads.max(1)),
            rms_norm_eps: self.rms_norm_eps.unwrap_or(1e-6),
            rope_theta: self.rope_theta.unwrap_or(10_000.0),
            rope_scaling,
            rope_freq_factors: None,
            rope_interleaved: false,
            context_length: self
                .max_position_embeddings
                .unwrap_or(4096)
                .min(MAX_CONTEXT),
            tie_word_embeddings: self.tie_word_embeddings.unwrap_or(false),
            attention_bias: self.attention_bias.unwrap_or(false),
            mlp_bias: self.mlp_bias.unwrap_or(false),
            eos_token_ids: self.eos_token_id.map(|e| e.to_vec()).unwrap_or_default(),
        };
        cfg.validate().map_err(bad)?;
        Ok(cfg)
    }
}

impl Config {
    /// Resolves the configuration from GGUF metadata (`llama.*` keys).
    pub fn from_gguf(content: &gguf_file::Content, path: &Path) -> Result<Config> {
        let md = &content.metadata;
        let arch = get_str(md, "general.architecture").unwrap_or_else(|| "llama".into());
        if arch != "llama" {
            return Err(Error::model(
                path,
                format!(
                    "general.architecture is \"{arch}\"; sqlagent runs Llama-architecture models"
                ),
            ));
        }
        let req = |key: &str| -> Result<usize> {
            get_u64(md, key).map(|v| v as usize).ok_or_else(|| {
                Error::model(
                    path,
                    format!("GGUF metadata key {key} is missing or not a number"),
                )
            })
        };
        let hidden_size = req("llama.embedding_length")?;
        let num_heads = req("llama.attention.head_count")?;
        let num_kv_heads = get_u64(md, "llama.attention.head_count_kv")
            .map(|v| v as usize)
            .unwrap_or(num_heads);
        let head_dim = get_u64(md, "llama.rope.dimension_count")
            .map(|v| v as usize)
            .unwrap_or(hidden_size / num_heads.max(1));
        let vocab_size = match get_u64(md, "llama.vocab_size") {
            Some(v) => v as usize,
            None => match md.get("tokenizer.ggml.tokens") {
                Some(gguf_file::Value::Array(a)) => a.len(),
                _ => 0,
            },
        };
        let rope_scaling = match get_str(md, "llama.rope.scaling.type").as_deref() {
            Some("llama3") => Some(Llama3RopeScaling {
                factor: get_f64(md, "llama.rope.scaling.factor").unwrap_or(8.0) as f32,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: get_u64(
                    md,
                    "llama.rope.scaling.original_context_length",
                )
                .unwrap_or(8192) as usize,
            }),
            _ => None,
        };
        let cfg = Config {
            hidden_size,
            intermediate_size: req("llama.feed_forward_length")?,
            vocab_size,
            num_layers: req("llama.block_count")?,
            num_heads,
            num_kv_heads,
            head_dim,
            rms_norm_eps: get_f64(md, "llama.attention.layer_norm_rms_epsilon").unwrap_or(1e-5),
            rope_theta: get_f64(md, "llama.rope.freq_base").unwrap_or(10_000.0) as f32,
            rope_scaling,
            rope_freq_factors: None,
            rope_interleaved: true,
            context_length: get_u64(md, "llama.context_length")
                .map(|v| v as usize)
                .unwrap_or(4096)
                .min(MAX_CONTEXT),
            tie_word_embeddings: !content.tensor_infos.contains_key("output.weight"),
            attention_bias: content.tensor_infos.contains_key("blk.0.attn_q.bias"),
            mlp_bias: false,
            eos_token_ids: get_u64(md, "tokenizer.ggml.eos_token_id")
                .map(|v| vec![v as u32])
                .unwrap_or_default(),
        };
        cfg.validate().map_err(|m| Error::model(path, m))?;
        Ok(cfg)
    }

    /// Checks the shapes fit together (heads divide, non-zero sizes).
    pub fn validate(&self) -> std::result::Result<(), String> {
        let sizes = [
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("vocab_size", self.vocab_size),
            ("num_hidden_layers", self.num_layers),
            ("num_attention_heads", self.num_heads),
            ("num_key_value_heads", self.num_kv_heads),
            ("head_dim", self.head_dim),
        ];
        for (name, v) in sizes {
            if v == 0 {
                return Err(format!("{name} must be positive"));
            }
        }
        // Products the weights and tables are made of: an absurd size is
        // a broken file, not a model (and must not reach an allocation).
        if self.head_dim > MAX_HEAD_DIM {
            return Err(format!(
                "head_dim ({}) is above {MAX_HEAD_DIM}",
                self.head_dim
            ));
        }
        let products = [
            (
                "num_attention_heads x head_dim",
                self.num_heads,
                self.head_dim,
            ),
            (
                "num_key_value_heads x head_dim",
                self.num_kv_heads,
                self.head_dim,
            ),
            (
                "vocab_size x hidden_size",
                self.vocab_size,
                self.hidden_size,
            ),
            (
                "intermediate_size x hidden_size",
                self.intermediate_size,
                self.hidden_size,
            ),
            (
                "num_hidden_layers x hidden_size",
                self.num_layers,
                self.hidden_size,
            ),
        ];
        for (name, a, b) in products {
            if a.checked_mul(b).is_none_or(|n| n > MAX_TENSOR_ELEMENTS) {
                return Err(format!("{name} ({a} x {b}) is more than a model holds"));
            }
        }
        if !self.num_heads.is_multiple_of(self.num_kv_heads) {
            return Err(format!(
                "num_attention_heads ({}) is not a multiple of num_key_value_heads ({})",
                self.num_heads, self.num_kv_heads
            ));
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err(format!(
                "head_dim ({}) must be even for RoPE",
                self.head_dim
            ));
        }
        Ok(())
    }
}

fn get_u64(md: &HashMap<String, gguf_file::Value>, key: &str) -> Option<u64> {
    use gguf_file::Value as V;
    match md.get(key)? {
        V::U8(v) => Some(*v as u64),
        V::U16(v) => Some(*v as u64),
        V::U32(v) => Some(*v as u64),
        V::U64(v) => Some(*v),
        V::I8(v) => u64::try_from(*v).ok(),
        V::I16(v) => u64::try_from(*v).ok(),
        V::I32(v) => u64::try_from(*v).ok(),
        V::I64(v) => u64::try_from(*v).ok(),
        _ => None,
    }
}

fn get_f64(md: &HashMap<String, gguf_file::Value>, key: &str) -> Option<f64> {
    use gguf_file::Value as V;
    match md.get(key)? {
        V::F32(v) => Some(*v as f64),
        V::F64(v) => Some(*v),
        _ => get_u64(md, key).map(|v| v as f64),
    }
}

fn get_str(md: &HashMap<String, gguf_file::Value>, key: &str) -> Option<String> {
    match md.get(key)? {
        gguf_file::Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(json: &str) -> Result<Config> {
        let raw: RawConfig = serde_json::from_str(json).expect("valid json");
        raw.into_config(Path::new("config.json"))
    }

    #[test]
    fn llama31_config_resolves_rope_scaling_and_gqa() {
        let cfg = raw(
            r#"{"architectures":["LlamaForCausalLM"],"model_type":"llama",
            "hidden_size":4096,"intermediate_size":14336,"vocab_size":128256,
            "num_hidden_layers":32,"num_attention_heads":32,"num_key_value_heads":8,
            "rms_norm_eps":1e-05,"rope_theta":500000.0,"max_position_embeddings":131072,
            "rope_scaling":{"factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,
            "original_max_position_embeddings":8192,"rope_type":"llama3"},
            "eos_token_id":[128001,128008,128009],"tie_word_embeddings":false}"#,
        )
        .unwrap();
        assert_eq!(cfg.num_kv_heads, 8);
        assert_eq!(cfg.head_dim, 128);
        assert_eq!(cfg.context_length, MAX_CONTEXT);
        assert_eq!(cfg.eos_token_ids, vec![128001, 128008, 128009]);
        assert_eq!(cfg.rope_scaling.unwrap().factor, 8.0);
        assert!(!cfg.rope_interleaved);
    }

    #[test]
    fn llama32_tied_embeddings() {
        let cfg = raw(
            r#"{"model_type":"llama","hidden_size":2048,"intermediate_size":8192,
            "vocab_size":128256,"num_hidden_layers":16,"num_attention_heads":32,
            "num_key_value_heads":8,"head_dim":64,"rope_theta":500000.0,
            "rope_scaling":{"factor":32.0,"rope_type":"llama3"},"tie_word_embeddings":true,
            "eos_token_id":128001}"#,
        )
        .unwrap();
        assert!(cfg.tie_word_embeddings);
        assert_eq!(cfg.eos_token_ids, vec![128001]);
        assert_eq!(
            cfg.rope_scaling.unwrap().original_max_position_embeddings,
            8192
        );
    }

    #[test]
    fn rejects_other_architectures_and_bad_heads() {
        let err = raw(
            r#"{"model_type":"mistral","hidden_size":8,"intermediate_size":8,
            "vocab_size":8,"num_hidden_layers":1,"num_attention_heads":2}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("mistral"), "{err}");
        let err = raw(r#"{"hidden_size":8,"intermediate_size":8,"vocab_size":8,
            "num_hidden_layers":1,"num_attention_heads":4,"num_key_value_heads":3}"#)
        .unwrap_err();
        assert!(err.to_string().contains("multiple"), "{err}");
    }
}
