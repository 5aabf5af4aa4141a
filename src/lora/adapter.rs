//! A loaded adapter: its configuration and one low-rank delta per module.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use super::{AdapterConfig, AdapterError, LLAMA_MODULES, MAX_RANK};
use crate::error::{Error, Result};

/// The configuration file of a PEFT adapter directory.
pub const ADAPTER_CONFIG_FILE: &str = "adapter_config.json";
/// The weights file of a PEFT adapter directory.
pub const ADAPTER_WEIGHTS_FILE: &str = "adapter_model.safetensors";

/// What PEFT puts before a module path in tensor names.
const PEFT_PREFIX: &str = "base_model.model.";

/// The update one adapter makes to one projection:
/// `y = W x + scale · B (A x)`.
#[derive(Debug, Clone)]
pub struct LoraDelta {
    /// `A`, `(rank, in_features)`.
    pub a: Tensor,
    /// `B`, `(out_features, rank)`.
    pub b: Tensor,
    /// `lora_alpha / r` (or `/ √r`).
    pub scale: f64,
}

impl LoraDelta {
    /// Rank of the update.
    pub fn rank(&self) -> usize {
        self.a.dims()[0]
    }

    /// Input width.
    pub fn in_features(&self) -> usize {
        self.a.dims()[1]
    }

    /// Output width.
    pub fn out_features(&self) -> usize {
        self.b.dims()[0]
    }

    /// `scale · B (A x)` for `x` of shape `(.., in_features)`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = x.to_dtype(self.a.dtype())?;
        let h = x.broadcast_matmul(&self.a.t()?)?;
        Ok((h.broadcast_matmul(&self.b.t()?)? * self.scale)?)
    }

    /// The dense update `scale · B A`, `(out_features, in_features)`.
    pub fn weight(&self) -> Result<Tensor> {
        Ok((self.b.matmul(&self.a)? * self.scale)?)
    }

    /// The same delta with its factors in `dtype` on `device`.
    pub fn to(&self, dtype: DType, device: &Device) -> Result<Self> {
        Ok(Self {
            a: self.a.to_device(device)?.to_dtype(dtype)?,
            b: self.b.to_device(device)?.to_dtype(dtype)?,
            scale: self.scale,
        })
    }
}

/// A PEFT LoRA adapter: `adapter_config.json` plus
/// `adapter_model.safetensors`, one [`LoraDelta`] per adapted module.
#[derive(Debug, Clone)]
pub struct Adapter {
    /// The name requests choose it by.
    pub name: String,
    /// The directory it was loaded from.
    pub dir: PathBuf,
    /// Its configuration.
    pub config: AdapterConfig,
    /// Deltas by module path (`model.layers.3.self_attn.q_proj`, `lm_head`).
    pub deltas: BTreeMap<String, LoraDelta>,
}

impl Adapter {
    /// Loads the adapter in `dir` (tensors on the CPU, in f32).
    pub fn load(name: &str, dir: &Path) -> Result<Self> {
        let fail = |kind: AdapterError| Error::Adapter {
            path: dir.to_path_buf(),
            kind,
        };
        if !dir.is_dir() {
            return Err(fail(AdapterError::MissingFile(
                "the adapter directory".into(),
            )));
        }
        let config_path = dir.join(ADAPTER_CONFIG_FILE);
        if !config_path.is_file() {
            return Err(fail(AdapterError::MissingFile(ADAPTER_CONFIG_FILE.into())));
        }
        let text = std::fs::read_to_string(&config_path).map_err(|source| Error::Io {
            path: config_path.clone(),
            source,
        })?;
        let config = AdapterConfig::from_json(&text).map_err(fail)?;
        let weights_path = dir.join(ADAPTER_WEIGHTS_FILE);
        if !weights_path.is_file() {
            let hint = if dir.join("adapter_model.bin").is_file() {
                " (adapter_model.bin is a pickle: save the adapter with safe_serialization=True)"
            } else {
                ""
            };
            return Err(fail(AdapterError::MissingFile(format!(
                "{ADAPTER_WEIGHTS_FILE}{hint}"
            ))));
        }
        let tensors = candle_core::safetensors::load(&weights_path, &Device::Cpu)
            .map_err(|e| fail(AdapterError::Tensors(e.to_string())))?;
        let deltas = deltas_from_tensors(&config, tensors).map_err(fail)?;
        Ok(Self {
            name: name.to_string(),
            dir: dir.to_path_buf(),
            config,
            deltas,
        })
    }

    /// Writes the adapter as PEFT does: `adapter_config.json` (`config`,
    /// a full PEFT LoraConfig as JSON) and `adapter_model.safetensors` with
    /// PEFT's tensor names.
    pub fn save(
        dir: &Path,
        config: &serde_json::Value,
        deltas: &BTreeMap<String, LoraDelta>,
    ) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let config_path = dir.join(ADAPTER_CONFIG_FILE);
        let text = serde_json::to_string_pretty(config)
            .map_err(|e| Error::invalid("adapter config", e.to_string()))?;
        std::fs::write(&config_path, text).map_err(|source| Error::Io {
            path: config_path,
            source,
        })?;
        let mut tensors = HashMap::new();
        for (module, d) in deltas {
            tensors.insert(format!("{PEFT_PREFIX}{module}.lora_A.weight"), d.a.clone());
            tensors.insert(format!("{PEFT_PREFIX}{module}.lora_B.weight"), d.b.clone());
        }
        candle_core::safetensors::save(&tensors, dir.join(ADAPTER_WEIGHTS_FILE))?;
        Ok(())
    }
}

/// Which factor a tensor name holds, and of which module.
fn parse_name(name: &str) -> Result<(String, Factor), AdapterError> {
    let path = name.strip_prefix(PEFT_PREFIX).unwrap_or(name);
    for (marker, factor) in [(".lora_A", Factor::A), (".lora_B", Factor::B)] {
        if let Some(at) = path.find(marker) {
            // `….lora_A.weight`, or `….lora_A.<adapter name>.weight`.
            let rest = &path[at + marker.len()..];
            if rest.starts_with('.') && rest.ends_with(".weight") {
                return Ok((path[..at].to_string(), factor));
            }
        }
    }
    if path.contains("lora_embedding") || path.contains("lora_magnitude") {
        return Err(AdapterError::Unsupported(format!(
            "adapter_model.safetensors: tensor {name} (embedding adapters and DoRA)"
        )));
    }
    Err(AdapterError::Tensors(format!(
        "unexpected tensor {name} (PEFT LoRA tensors end in lora_A.weight / lora_B.weight)"
    )))
}

#[derive(Clone, Copy, PartialEq)]
enum Factor {
    A,
    B,
}

/// Whether `path` names a module a Llama adapter can target.
fn known_module(path: &str) -> bool {
    if path == "lm_head" {
        return true;
    }
    let parts: Vec<&str> = path.split('.').collect();
    match parts.as_slice() {
        ["model", "layers", i, group, module] => {
            i.parse::<usize>().is_ok()
                && match *group {
                    "self_attn" => ["q_proj", "k_proj", "v_proj", "o_proj"].contains(module),
                    "mlp" => ["gate_proj", "up_proj", "down_proj"].contains(module),
                    _ => false,
                }
        }
        _ => false,
    }
}

fn deltas_from_tensors(
    config: &AdapterConfig,
    tensors: HashMap<String, Tensor>,
) -> Result<BTreeMap<String, LoraDelta>, AdapterError> {
    let mut pairs: BTreeMap<String, (Option<Tensor>, Option<Tensor>)> = BTreeMap::new();
    let mut names: Vec<String> = tensors.keys().cloned().collect();
    names.sort();
    let mut tensors = tensors;
    for name in names {
        let (module, factor) = parse_name(&name)?;
        if !known_module(&module) {
            return Err(AdapterError::UnknownTargetModule {
                module,
                known: LLAMA_MODULES.join(", "),
            });
        }
        let t = tensors.remove(&name).expect("listed above");
        let t = t
            .to_dtype(DType::F32)
            .map_err(|e| AdapterError::Tensors(format!("{name}: {e}")))?;
        if t.rank() != 2 {
            return Err(AdapterError::ShapeMismatch {
                tensor: name,
                expected: vec![0, 0],
                found: t.dims().to_vec(),
            });
        }
        let slot = pairs.entry(module).or_default();
        match factor {
            Factor::A => slot.0 = Some(t),
            Factor::B => slot.1 = Some(t),
        }
    }
    let mut deltas = BTreeMap::new();
    for (module, pair) in pairs {
        let (a, b) = match pair {
            (Some(a), Some(b)) => (a, b),
            (Some(_), None) => {
                return Err(AdapterError::Unpaired {
                    module,
                    present: "lora_A",
                    missing: "lora_B",
                })
            }
            (None, _) => {
                return Err(AdapterError::Unpaired {
                    module,
                    present: "lora_B",
                    missing: "lora_A",
                })
            }
        };
        let rank = a.dims()[0];
        if rank > MAX_RANK {
            return Err(AdapterError::RankTooHigh {
                module,
                rank,
                limit: MAX_RANK,
            });
        }
        let want = config.rank_of(&module);
        if rank != want {
            return Err(AdapterError::RankDiffers {
                module,
                rank,
                configured: want,
            });
        }
        if b.dims()[1] != rank {
            return Err(AdapterError::ShapeMismatch {
                tensor: format!("{module}.lora_B.weight"),
                expected: vec![b.dims()[0], rank],
                found: b.dims().to_vec(),
            });
        }
        let scale = config.scale_of(&module);
        deltas.insert(module, LoraDelta { a, b, scale });
    }
    if deltas.is_empty() {
        return Err(AdapterError::Tensors("no LoRA tensors in the file".into()));
    }
    Ok(deltas)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peft_tensor_names() {
        let (m, f) = parse_name("base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight")
            .ok()
            .unwrap();
        assert_eq!(m, "model.layers.3.self_attn.q_proj");
        assert!(f == Factor::A);
        let (m, f) =
            parse_name("base_model.model.model.layers.0.mlp.down_proj.lora_B.default.weight")
                .ok()
                .unwrap();
        assert_eq!(m, "model.layers.0.mlp.down_proj");
        assert!(f == Factor::B);
        assert!(parse_name("base_model.model.model.embed_tokens.lora_embedding_A").is_err());
        assert!(known_module("model.layers.12.mlp.gate_proj"));
        assert!(known_module("lm_head"));
        assert!(!known_module("model.layers.1.self_attn.rotary_emb"));
        assert!(!known_module("model.embed_tokens"));
    }
}
