//! A tiny random-weight Llama written as a Hugging Face directory
//! (config.json + safetensors), for fast model tests.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Shape options of the tiny model.
#[derive(Clone, Copy)]
pub struct Tiny {
    pub hidden: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub layers: usize,
    pub intermediate: usize,
    pub vocab: usize,
    pub tie: bool,
    pub llama3_rope: bool,
    pub shards: usize,
    pub seed: u64,
}

impl Default for Tiny {
    fn default() -> Self {
        Self {
            hidden: 64,
            heads: 4,
            kv_heads: 2,
            layers: 2,
            intermediate: 96,
            vocab: 128,
            tie: false,
            llama3_rope: true,
            shards: 1,
            seed: 42,
        }
    }
}

impl Tiny {
    pub fn config_json(&self) -> String {
        let rope = if self.llama3_rope {
            r#","rope_scaling":{"factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":32,"rope_type":"llama3"}"#
        } else {
            ""
        };
        format!(
            r#"{{"architectures":["LlamaForCausalLM"],"model_type":"llama","hidden_size":{},"intermediate_size":{},"vocab_size":{},"num_hidden_layers":{},"num_attention_heads":{},"num_key_value_heads":{},"rms_norm_eps":1e-5,"rope_theta":10000.0,"max_position_embeddings":256,"tie_word_embeddings":{},"bos_token_id":1,"eos_token_id":2,"hidden_act":"silu"{}}}"#,
            self.hidden,
            self.intermediate,
            self.vocab,
            self.layers,
            self.heads,
            self.kv_heads,
            self.tie,
            rope
        )
    }

    /// Random tensors with HF names, deterministic in `seed`.
    pub fn tensors(&self) -> Vec<(String, Tensor)> {
        let mut rng = StdRng::seed_from_u64(self.seed);
        let mut t = |shape: &[usize], scale: f32| -> Tensor {
            let n: usize = shape.iter().product();
            let data: Vec<f32> = (0..n)
                .map(|_| rng.random_range(-1.0f32..1.0) * scale)
                .collect();
            Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
        };
        let hd = self.hidden / self.heads;
        let (h, i) = (self.hidden, self.intermediate);
        let mut out = vec![(
            "model.embed_tokens.weight".to_string(),
            t(&[self.vocab, h], 1.0),
        )];
        for l in 0..self.layers {
            let p = format!("model.layers.{l}");
            let s = 1.0 / (h as f32).sqrt();
            out.push((
                format!("{p}.input_layernorm.weight"),
                (t(&[h], 0.2) + 1.0).unwrap(),
            ));
            out.push((
                format!("{p}.self_attn.q_proj.weight"),
                t(&[self.heads * hd, h], s),
            ));
            out.push((
                format!("{p}.self_attn.k_proj.weight"),
                t(&[self.kv_heads * hd, h], s),
            ));
            out.push((
                format!("{p}.self_attn.v_proj.weight"),
                t(&[self.kv_heads * hd, h], s),
            ));
            out.push((
                format!("{p}.self_attn.o_proj.weight"),
                t(&[h, self.heads * hd], s),
            ));
            out.push((
                format!("{p}.post_attention_layernorm.weight"),
                (t(&[h], 0.2) + 1.0).unwrap(),
            ));
            out.push((format!("{p}.mlp.gate_proj.weight"), t(&[i, h], s)));
            out.push((format!("{p}.mlp.up_proj.weight"), t(&[i, h], s)));
            out.push((
                format!("{p}.mlp.down_proj.weight"),
                t(&[h, i], 1.0 / (i as f32).sqrt()),
            ));
        }
        out.push((
            "model.norm.weight".to_string(),
            (t(&[h], 0.2) + 1.0).unwrap(),
        ));
        if !self.tie {
            out.push((
                "lm_head.weight".to_string(),
                t(&[self.vocab, h], 1.0 / (h as f32).sqrt()),
            ));
        }
        out
    }

    /// Writes config.json and the weights (sharded with an index when
    /// `shards > 1`) into `dir`.
    pub fn write(&self, dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("config.json"), self.config_json()).unwrap();
        let tensors = self.tensors();
        if self.shards <= 1 {
            let map: HashMap<String, Tensor> = tensors.into_iter().collect();
            candle_core::safetensors::save(&map, dir.join("model.safetensors")).unwrap();
            return;
        }
        let per = tensors.len().div_ceil(self.shards);
        let mut weight_map = serde_json::Map::new();
        for (s, chunk) in tensors.chunks(per).enumerate() {
            let name = format!("model-{:05}-of-{:05}.safetensors", s + 1, self.shards);
            for (k, _) in chunk {
                weight_map.insert(k.clone(), serde_json::Value::String(name.clone()));
            }
            let map: HashMap<String, Tensor> = chunk.iter().cloned().collect();
            candle_core::safetensors::save(&map, dir.join(&name)).unwrap();
        }
        let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
        std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
    }
}

/// A random-weight Llama with the real Llama 3 tokenizer and chat template
/// in `dir`, with a context window of `context` tokens. `None` when the
/// tokenizer fixture is absent.
pub fn tiny_llama3_dir(dir: &Path, context: u64) -> Option<std::path::PathBuf> {
    tiny_llama3_dir_sharded(dir, context, 1)
}

/// [`tiny_llama3_dir`] with its weights in `shards` files and an index.
pub fn tiny_llama3_dir_sharded(
    dir: &Path,
    context: u64,
    shards: usize,
) -> Option<std::path::PathBuf> {
    let tok = crate::common::llama3_tokenizer_dir()?;
    // The embedding must cover the tokenizer's 128,256 ids; everything else
    // is as small as possible (head dim = hidden / heads = 16).
    Tiny {
        vocab: 128_256,
        hidden: 32,
        heads: 2,
        kv_heads: 1,
        intermediate: 48,
        layers: 1,
        tie: true,
        shards,
        ..Default::default()
    }
    .write(dir);
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(tok.join(f), dir.join(f)).expect("copy tokenizer file");
    }
    let config_path = dir.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    config["max_position_embeddings"] = serde_json::json!(context);
    std::fs::write(&config_path, config.to_string()).unwrap();
    Some(dir.to_path_buf())
}
