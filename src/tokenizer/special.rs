//! Which ids begin a sequence and end a sequence or a turn, from GGUF
//! metadata or a Hugging Face model directory; and the GGUF chat template.

use std::path::Path;

use candle_core::quantized::gguf_file::{self, Value};

use super::gguf::Meta;
use super::{tok_err, Tokenizer};
use crate::error::{Error, Result};

/// End-of-turn tokens of the chat formats we know, looked up when the
/// source does not name one (Llama 3, ChatML/SmolLM2, Phi-3, Gemma, …).
const END_OF_TURN_NAMES: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|end_of_turn|>",
    "<EOT>",
];

/// The ids that begin a sequence and end a sequence or a turn.
///
/// Generation stops at any of [`SpecialTokens::stop_ids`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecialTokens {
    /// Beginning of sequence (`<|begin_of_text|>`).
    pub bos: Option<u32>,
    /// End of sequence (`<|end_of_text|>`, or what the model config names).
    pub eos: Option<u32>,
    /// End of turn (`<|eot_id|>`, `<|im_end|>`).
    pub eot: Option<u32>,
    /// Further ids that end generation: the rest of a config's
    /// `eos_token_id` list, GGUF `tokenizer.ggml.eom_token_id` (`<|eom_id|>`).
    pub extra_eos: Vec<u32>,
}

impl SpecialTokens {
    /// Reads `tokenizer.ggml.bos_token_id`, `eos_token_id`, `eot_token_id`
    /// and `eom_token_id`. Without an `eot_token_id`, the end-of-turn token
    /// is looked up by name among the special tokens (`<|eot_id|>`,
    /// `<|im_end|>`, …). Ids outside the vocabulary are an error.
    pub fn from_gguf(content: &gguf_file::Content, tokenizer: &Tokenizer) -> Result<Self> {
        let context = tokenizer.context();
        let meta = Meta::new(&content.metadata, context);
        let checked = |key: &str| -> Result<Option<u32>> {
            let id = meta.id(key)?;
            match id {
                Some(id) if id as usize >= tokenizer.vocab_size() => Err(tok_err(
                    context,
                    format!(
                        "{key} = {id} is outside the vocabulary of {} tokens",
                        tokenizer.vocab_size()
                    ),
                )),
                id => Ok(id),
            }
        };
        let bos = checked("tokenizer.ggml.bos_token_id")?;
        let eos = checked("tokenizer.ggml.eos_token_id")?;
        let eot = match checked("tokenizer.ggml.eot_token_id")? {
            Some(id) => Some(id),
            None => end_of_turn_by_name(tokenizer),
        };
        let mut special = Self {
            bos,
            eos,
            eot,
            extra_eos: Vec::new(),
        };
        if let Some(eom) = checked("tokenizer.ggml.eom_token_id")? {
            special.push_extra(eom);
        }
        Ok(special)
    }

    /// Reads a Hugging Face model directory: `tokenizer_config.json`
    /// (`bos_token`, `eos_token`: a string or `{"content": ...}`), then
    /// `config.json` and `generation_config.json` (`bos_token_id`,
    /// `eos_token_id`: a number or a list). Missing files are fine; a file
    /// that is not JSON, or a token the tokenizer does not know, is an error.
    ///
    /// `eos` is the tokenizer config's `eos_token`, else the first config id;
    /// the other config ids go to `extra_eos`. `eot` is looked up by name.
    pub fn from_hf_dir(dir: &Path, tokenizer: &Tokenizer) -> Result<Self> {
        let tok_config_path = dir.join("tokenizer_config.json");
        let tok_config = read_json(&tok_config_path)?;
        let resolve = |key: &str| -> Result<Option<u32>> {
            let Some(config) = &tok_config else {
                return Ok(None);
            };
            let Some(text) = token_text(config.get(key)) else {
                return Ok(None);
            };
            tokenizer.token_to_id(text).map(Some).ok_or_else(|| {
                tok_err(
                    &tok_config_path.display().to_string(),
                    format!(
                        "{key} {text:?} is not in the vocabulary of {}",
                        tokenizer.context()
                    ),
                )
            })
        };
        let mut special = Self {
            bos: resolve("bos_token")?,
            eos: resolve("eos_token")?,
            eot: end_of_turn_by_name(tokenizer),
            extra_eos: Vec::new(),
        };

        for name in ["config.json", "generation_config.json"] {
            let path = dir.join(name);
            let Some(config) = read_json(&path)? else {
                continue;
            };
            let context = path.display().to_string();
            let check = |id: u32| -> Result<u32> {
                if (id as usize) < tokenizer.vocab_size() {
                    Ok(id)
                } else {
                    Err(tok_err(
                        &context,
                        format!(
                            "token id {id} is outside the vocabulary of {} tokens",
                            tokenizer.vocab_size()
                        ),
                    ))
                }
            };
            if special.bos.is_none() {
                if let Some(&id) = ids_of(config.get("bos_token_id"), &context)?.first() {
                    special.bos = Some(check(id)?);
                }
            }
            for id in ids_of(config.get("eos_token_id"), &context)? {
                let id = check(id)?;
                if special.eos.is_none() {
                    special.eos = Some(id);
                } else {
                    special.push_extra(id);
                }
            }
        }
        Ok(special)
    }

    /// Every id that ends generation (eos, eot, extras), without repeats.
    pub fn stop_ids(&self) -> Vec<u32> {
        let mut ids = Vec::new();
        for id in self.eos.iter().chain(&self.eot).chain(&self.extra_eos) {
            if !ids.contains(id) {
                ids.push(*id);
            }
        }
        ids
    }

    /// Whether `id` ends generation.
    pub fn is_stop(&self, id: u32) -> bool {
        self.eos == Some(id) || self.eot == Some(id) || self.extra_eos.contains(&id)
    }

    fn push_extra(&mut self, id: u32) {
        if self.eos != Some(id) && self.eot != Some(id) && !self.extra_eos.contains(&id) {
            self.extra_eos.push(id);
        }
    }
}

/// The chat template stored in a GGUF file (`tokenizer.chat_template`), if any.
pub fn chat_template_from_gguf(content: &gguf_file::Content) -> Option<String> {
    match content.metadata.get("tokenizer.chat_template") {
        Some(Value::String(template)) if !template.is_empty() => Some(template.clone()),
        _ => None,
    }
}

/// The first end-of-turn name that is a special token of `tokenizer`.
fn end_of_turn_by_name(tokenizer: &Tokenizer) -> Option<u32> {
    END_OF_TURN_NAMES
        .iter()
        .filter_map(|name| tokenizer.token_to_id(name))
        .find(|&id| tokenizer.is_special(id))
}

/// Parses a JSON file; `None` when it does not exist.
fn read_json(path: &Path) -> Result<Option<serde_json::Value>> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| tok_err(&path.display().to_string(), format!("not valid JSON: {e}")))
}

/// `"<s>"` or `{"content": "<s>", ...}`; `null` and other shapes are `None`.
fn token_text(value: Option<&serde_json::Value>) -> Option<&str> {
    match value? {
        serde_json::Value::String(s) => Some(s),
        serde_json::Value::Object(map) => map.get("content")?.as_str(),
        _ => None,
    }
}

/// `2`, `[128001, 128009]` or `null`/absent (empty).
fn ids_of(value: Option<&serde_json::Value>, context: &str) -> Result<Vec<u32>> {
    let one = |v: &serde_json::Value| -> Result<u32> {
        v.as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| tok_err(context, format!("{v} is not a token id")))
    };
    match value {
        None | Some(serde_json::Value::Null) => Ok(Vec::new()),
        Some(serde_json::Value::Array(items)) => items.iter().map(one).collect(),
        Some(v) => Ok(vec![one(v)?]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::gguf::tests::{content, tiny_byte_level};

    fn tokenizer() -> Tokenizer {
        Tokenizer::from_gguf(&tiny_byte_level("gpt-2", &[]), "t").unwrap()
    }

    #[test]
    fn gguf_ids_and_end_of_turn_lookup() {
        let tok = tokenizer();
        let mut c = tiny_byte_level("gpt-2", &[]);
        c.metadata
            .insert("tokenizer.ggml.bos_token_id".into(), Value::U32(0));
        c.metadata
            .insert("tokenizer.ggml.eos_token_id".into(), Value::U32(5));
        let special = SpecialTokens::from_gguf(&c, &tok).unwrap();
        assert_eq!(special.bos, Some(0));
        assert_eq!(special.eos, Some(5));
        assert_eq!(special.eot, Some(1), "<|im_end|> found by name");
        assert_eq!(special.stop_ids(), vec![5, 1]);
        assert!(special.is_stop(1) && !special.is_stop(0));

        c.metadata
            .insert("tokenizer.ggml.eot_token_id".into(), Value::I32(7));
        c.metadata
            .insert("tokenizer.ggml.eom_token_id".into(), Value::U64(8));
        let special = SpecialTokens::from_gguf(&c, &tok).unwrap();
        assert_eq!((special.eot, special.extra_eos.clone()), (Some(7), vec![8]));

        c.metadata
            .insert("tokenizer.ggml.eos_token_id".into(), Value::U32(99_999));
        let err = SpecialTokens::from_gguf(&c, &tok).unwrap_err().to_string();
        assert!(err.contains("eos_token_id"), "{err}");
        c.metadata
            .insert("tokenizer.ggml.eos_token_id".into(), Value::I32(-1));
        assert!(SpecialTokens::from_gguf(&c, &tok).is_err());
    }

    #[test]
    fn hf_dir_strings_objects_and_lists() {
        let tok = tokenizer();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("tokenizer_config.json"),
            r#"{"bos_token": {"content": "<|im_start|>", "lstrip": false}, "eos_token": "<|im_end|>", "pad_token": null}"#,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"bos_token_id": 0, "eos_token_id": [1, 40, 41]}"#,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("generation_config.json"),
            r#"{"eos_token_id": 42}"#,
        )
        .unwrap();
        let special = SpecialTokens::from_hf_dir(dir.path(), &tok).unwrap();
        assert_eq!(
            special,
            SpecialTokens {
                bos: Some(0),
                eos: Some(1),
                eot: Some(1),
                extra_eos: vec![40, 41, 42],
            }
        );
        assert_eq!(special.stop_ids(), vec![1, 40, 41, 42]);

        std::fs::write(
            dir.path().join("tokenizer_config.json"),
            r#"{"eos_token": "<|nope|>"}"#,
        )
        .unwrap();
        let err = SpecialTokens::from_hf_dir(dir.path(), &tok)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("<|nope|>") && err.contains("tokenizer_config.json"),
            "{err}"
        );

        std::fs::write(dir.path().join("tokenizer_config.json"), "{").unwrap();
        assert!(SpecialTokens::from_hf_dir(dir.path(), &tok).is_err());

        let empty = tempfile::tempdir().unwrap();
        let special = SpecialTokens::from_hf_dir(empty.path(), &tok).unwrap();
        assert_eq!((special.bos, special.eos), (None, None));
    }

    #[test]
    fn chat_template_key() {
        assert_eq!(chat_template_from_gguf(&content(vec![])), None);
        let c = content(vec![(
            "tokenizer.chat_template",
            Value::String("{{ x }}".into()),
        )]);
        assert_eq!(chat_template_from_gguf(&c).as_deref(), Some("{{ x }}"));
    }
}
