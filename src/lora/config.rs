//! `adapter_config.json` as Hugging Face PEFT writes it for LoRA.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{AdapterError, LLAMA_MODULES};

/// Which modules an adapter applies to: PEFT's `target_modules`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum TargetModules {
    /// Module names (`q_proj`) or full paths; a module matches when its path
    /// equals an entry or ends with `.entry`.
    Names(Vec<String>),
    /// A regular expression the whole module path must match, or
    /// `all-linear`.
    Pattern(String),
}

/// The fields of PEFT's `LoraConfig` that change what an adapter computes.
/// Training-only fields (`lora_dropout`, `init_lora_weights`, …) are
/// accepted and ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct AdapterConfig {
    /// `LORA` (other PEFT methods are refused).
    #[serde(default = "lora")]
    pub peft_type: String,
    /// Rank of the factors.
    pub r: usize,
    /// Scale numerator: the delta is `lora_alpha / r · B A` (or
    /// `lora_alpha / √r` with `use_rslora`).
    pub lora_alpha: f64,
    /// Modules the adapter was trained on.
    #[serde(default)]
    pub target_modules: Option<TargetModules>,
    /// Rank-stabilised scaling `alpha / √r`.
    #[serde(default)]
    pub use_rslora: bool,
    /// Base weights stored `(in, out)` (GPT-2's Conv1D). Meaningless for a
    /// Llama's linear layers: PEFT itself resets it to false there, and so
    /// does this engine.
    #[serde(default)]
    pub fan_in_fan_out: bool,
    /// Bias training: only `none` is supported.
    #[serde(default = "none")]
    pub bias: String,
    /// Per-module ranks, by pattern.
    #[serde(default)]
    pub rank_pattern: BTreeMap<String, usize>,
    /// Per-module alphas, by pattern.
    #[serde(default)]
    pub alpha_pattern: BTreeMap<String, f64>,
    /// DoRA (refused: not implemented).
    #[serde(default)]
    pub use_dora: bool,
    /// Fully trained extra modules (refused when not empty).
    #[serde(default)]
    pub modules_to_save: Option<Vec<String>>,
    /// The base model the adapter was trained on, as PEFT recorded it.
    #[serde(default)]
    pub base_model_name_or_path: Option<String>,
}

fn lora() -> String {
    "LORA".into()
}

fn none() -> String {
    "none".into()
}

impl AdapterConfig {
    /// Parses and checks `adapter_config.json` text.
    pub fn from_json(text: &str) -> Result<Self, AdapterError> {
        let cfg: Self =
            serde_json::from_str(text).map_err(|e| AdapterError::Config(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), AdapterError> {
        if !self.peft_type.eq_ignore_ascii_case("lora") {
            return Err(AdapterError::Unsupported(format!(
                "adapter_config.json: peft_type {:?} (only LORA adapters)",
                self.peft_type
            )));
        }
        if self.r == 0 {
            return Err(AdapterError::Config("r must be at least 1".into()));
        }
        if !self.lora_alpha.is_finite() {
            return Err(AdapterError::Config("lora_alpha must be a number".into()));
        }
        if self.use_dora {
            return Err(AdapterError::Unsupported(
                "adapter_config.json: use_dora (DoRA adapters)".into(),
            ));
        }
        if self.bias != "none" {
            return Err(AdapterError::Unsupported(format!(
                "adapter_config.json: bias {:?} (only \"none\")",
                self.bias
            )));
        }
        if let Some(m) = self.modules_to_save.as_ref().filter(|m| !m.is_empty()) {
            return Err(AdapterError::Unsupported(format!(
                "adapter_config.json: modules_to_save {m:?} (fully trained modules)"
            )));
        }
        if let Some(TargetModules::Names(names)) = &self.target_modules {
            for name in names {
                let last = name.rsplit('.').next().unwrap_or(name);
                if !LLAMA_MODULES.contains(&last) {
                    return Err(AdapterError::Config(format!(
                        "target_modules names {name:?}, which a Llama does not have (it has: {})",
                        LLAMA_MODULES.join(", ")
                    )));
                }
            }
        }
        if let Some(TargetModules::Pattern(p)) = &self.target_modules {
            if p != "all-linear" {
                regex::Regex::new(p).map_err(|e| {
                    AdapterError::Config(format!("target_modules is not a valid pattern: {e}"))
                })?;
            }
        }
        for key in self.rank_pattern.keys().chain(self.alpha_pattern.keys()) {
            pattern(key)?;
        }
        Ok(())
    }

    /// Whether the module at `path` (`model.layers.3.self_attn.q_proj`) is
    /// one the adapter targets, by PEFT's rules.
    pub fn targets(&self, path: &str) -> bool {
        match &self.target_modules {
            None => true,
            Some(TargetModules::Names(names)) => names
                .iter()
                .any(|n| path == n || path.ends_with(&format!(".{n}"))),
            Some(TargetModules::Pattern(p)) if p == "all-linear" => !path.ends_with("lm_head"),
            Some(TargetModules::Pattern(p)) => regex::Regex::new(&format!("^(?:{p})$"))
                .map(|re| re.is_match(path))
                .unwrap_or(false),
        }
    }

    /// Rank of the module at `path` (`rank_pattern`, else `r`).
    pub fn rank_of(&self, path: &str) -> usize {
        matching(&self.rank_pattern, path).unwrap_or(self.r)
    }

    /// Scale `s` of the module at `path`: `alpha / r`, or `alpha / √r` with
    /// `use_rslora` (alpha and r per module when patterns say so).
    pub fn scale_of(&self, path: &str) -> f64 {
        let alpha = matching(&self.alpha_pattern, path).unwrap_or(self.lora_alpha);
        let r = self.rank_of(path) as f64;
        if self.use_rslora {
            alpha / r.sqrt()
        } else {
            alpha / r
        }
    }
}

/// A `rank_pattern`/`alpha_pattern` key as PEFT matches it: the end of the
/// module path, at a dot boundary.
fn pattern(key: &str) -> Result<regex::Regex, AdapterError> {
    regex::Regex::new(&format!(r"^(?:.*\.)?(?:{key})$"))
        .map_err(|e| AdapterError::Config(format!("pattern {key:?}: {e}")))
}

fn matching<T: Copy>(patterns: &BTreeMap<String, T>, path: &str) -> Option<T> {
    patterns
        .iter()
        .find(|(k, _)| pattern(k).is_ok_and(|re| re.is_match(path)))
        .map(|(_, v)| *v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_rank_and_targets_follow_peft() {
        let cfg = AdapterConfig::from_json(
            r#"{"peft_type":"LORA","r":8,"lora_alpha":16,"target_modules":["q_proj","v_proj"],
                "rank_pattern":{"layers.1.self_attn.v_proj":4},"alpha_pattern":{},
                "lora_dropout":0.05,"task_type":"CAUSAL_LM"}"#,
        )
        .unwrap();
        let q0 = "model.layers.0.self_attn.q_proj";
        let v1 = "model.layers.1.self_attn.v_proj";
        assert!(cfg.targets(q0) && cfg.targets(v1));
        assert!(!cfg.targets("model.layers.0.self_attn.k_proj"));
        assert_eq!(cfg.rank_of(q0), 8);
        assert_eq!(cfg.scale_of(q0), 2.0);
        assert_eq!(cfg.rank_of(v1), 4);
        assert_eq!(cfg.scale_of(v1), 4.0);
        // "layers.1…" must not match layer 11.
        assert_eq!(cfg.rank_of("model.layers.11.self_attn.v_proj"), 8);

        let rs = AdapterConfig::from_json(r#"{"r":16,"lora_alpha":8,"use_rslora":true}"#).unwrap();
        assert_eq!(rs.scale_of(q0), 2.0);

        let re = AdapterConfig::from_json(
            r#"{"r":2,"lora_alpha":2,"target_modules":".*\\.(q|v)_proj"}"#,
        )
        .unwrap();
        assert!(re.targets(q0) && !re.targets("model.layers.0.mlp.up_proj"));
    }

    #[test]
    fn configs_this_engine_cannot_honour_are_refused() {
        let cases = [
            (r#"{"r":8}"#, "lora_alpha"),
            (r#"{"r":0,"lora_alpha":1}"#, "at least 1"),
            (r#"{"peft_type":"IA3","r":8,"lora_alpha":1}"#, "IA3"),
            (r#"{"r":8,"lora_alpha":1,"use_dora":true}"#, "DoRA"),
            (r#"{"r":8,"lora_alpha":1,"bias":"all"}"#, "bias"),
            (
                r#"{"r":8,"lora_alpha":1,"modules_to_save":["lm_head"]}"#,
                "modules_to_save",
            ),
            (
                r#"{"r":8,"lora_alpha":1,"target_modules":["embed_tokens"]}"#,
                "embed_tokens",
            ),
            (r#"{"r":8,"lora_alpha":1,"target_modules":"("}"#, "pattern"),
            ("not json", "expected"),
        ];
        for (json, needle) in cases {
            let err = AdapterConfig::from_json(json).unwrap_err().to_string();
            assert!(err.contains(needle), "{json}: {err}");
        }
    }
}
