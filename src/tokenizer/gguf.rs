//! A `tokenizers::Tokenizer` rebuilt from GGUF `tokenizer.ggml.*` metadata.
//!
//! Follows llama.cpp (`src/llama-vocab.cpp`), which defines what these keys
//! mean:
//!
//! - `tokenizer.ggml.model = "gpt2"`: byte-level BPE. `tokenizer.ggml.merges`
//!   holds `"left right"` pairs in rank order; `tokenizer.ggml.pre` names the
//!   pre-tokenizer, a list of regexes each of which splits every piece the
//!   previous one produced (matches and the text between them both become
//!   pieces). Where llama.cpp rewrote a Hugging Face regex for `std::regex`
//!   (case-insensitive contractions), we use the original from
//!   `tokenizer.json`, which fancy-regex understands.
//! - `tokenizer.ggml.model = "llama"`: SentencePiece BPE. Pieces merge by the
//!   score of the merged piece (`tokenizer.ggml.scores`), unknown characters
//!   fall back to `<0xNN>` byte tokens, spaces are `▁`, and a space is put in
//!   front of the text and after every special token
//!   (`tokenizer.ggml.add_space_prefix`, default true).
//!
//! Token types (`tokenizer.ggml.token_type`): 1 normal, 2 unknown, 3 control,
//! 4 user-defined, 5 unused, 6 byte. Unknown and control tokens become special
//! added tokens, user-defined ones plain added tokens, so that llama.cpp's
//! "parse special" behaviour holds: `<|im_start|>` in the text is one id.

use std::collections::HashMap;

use candle_core::quantized::gguf_file::Value;
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::{BpeBuilder, Vocab};
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence as PreSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{
    AddedToken, DecoderWrapper, NormalizerWrapper, PreTokenizerWrapper, SplitDelimiterBehavior,
};

use super::tok_err;
use crate::error::Result;

/// GPT-2's pre-tokenizer regex (`tokenizers` `ByteLevel`, llama.cpp `gpt-2`).
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

/// Llama 3's regex, as in its `tokenizer.json`.
const LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Qwen2's regex: Llama 3's with single digits.
const QWEN2: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Mistral's Tekken regex, as in its `tokenizer.json`.
const TEKKEN: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// One pre-tokenizer family: the regexes applied in turn, and whether a
/// piece that is itself a vocabulary entry skips the merges.
struct PreRules {
    regexes: &'static [&'static str],
    ignore_merges: bool,
}

/// `tokenizer.ggml.pre` values we understand, grouped by the rules they
/// share in llama.cpp. `gpt2` is accepted as a spelling of `gpt-2`.
const PRE_FAMILIES: &[(&[&str], PreRules)] = &[
    (
        &[
            "llama3",
            "llama-v3",
            "llama-bpe",
            "falcon3",
            "falcon-h1",
            "pixtral",
            "midm-2.0",
            "lfm2",
        ],
        PreRules {
            regexes: &[LLAMA3],
            ignore_merges: true,
        },
    ),
    (
        &["dbrx", "smaug-bpe"],
        PreRules {
            regexes: &[LLAMA3],
            ignore_merges: false,
        },
    ),
    (
        &[
            "smollm",
            "starcoder",
            "refact",
            "command-r",
            "codeshell",
            "exaone",
            "minerva-7b",
        ],
        PreRules {
            regexes: &[r"\p{N}", GPT2],
            ignore_merges: false,
        },
    ),
    (
        &[
            "gpt-2",
            "gpt2",
            "phi-2",
            "mpt",
            "olmo",
            "jais",
            "roberta-bpe",
            "exaone4",
            "trillion",
            "granite-docling",
        ],
        PreRules {
            regexes: &[GPT2],
            ignore_merges: false,
        },
    ),
    (
        &[
            "qwen2",
            "deepseek-r1-qwen",
            "megrez",
            "stablelm2",
            "hunyuan",
            "kormo",
        ],
        PreRules {
            regexes: &[QWEN2],
            ignore_merges: false,
        },
    ),
    (
        &["tekken"],
        PreRules {
            regexes: &[TEKKEN],
            ignore_merges: true,
        },
    ),
    (
        &["falcon"],
        PreRules {
            regexes: &[r"[\p{P}\$\+<=>\^~\|`]+", GPT2, r"[0-9][0-9][0-9]"],
            ignore_merges: false,
        },
    ),
    (
        &["default"],
        PreRules {
            regexes: &[r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"],
            ignore_merges: false,
        },
    ),
];

/// Every `tokenizer.ggml.pre` value [`Tokenizer::from_gguf`](super::Tokenizer::from_gguf)
/// accepts for `tokenizer.ggml.model = "gpt2"`.
pub const SUPPORTED_PRE_TOKENIZERS: &[&str] = &[
    "llama3",
    "llama-v3",
    "llama-bpe",
    "falcon3",
    "falcon-h1",
    "pixtral",
    "midm-2.0",
    "lfm2",
    "dbrx",
    "smaug-bpe",
    "smollm",
    "starcoder",
    "refact",
    "command-r",
    "codeshell",
    "exaone",
    "minerva-7b",
    "gpt-2",
    "gpt2",
    "phi-2",
    "mpt",
    "olmo",
    "jais",
    "roberta-bpe",
    "exaone4",
    "trillion",
    "granite-docling",
    "qwen2",
    "deepseek-r1-qwen",
    "megrez",
    "stablelm2",
    "hunyuan",
    "kormo",
    "tekken",
    "falcon",
    "default",
];

fn pre_rules(name: &str) -> Option<&'static PreRules> {
    PRE_FAMILIES
        .iter()
        .find(|(names, _)| names.contains(&name))
        .map(|(_, rules)| rules)
}

const TYPE_NORMAL: i64 = 1;
const TYPE_UNKNOWN: i64 = 2;
const TYPE_CONTROL: i64 = 3;
const TYPE_USER_DEFINED: i64 = 4;
const TYPE_BYTE: i64 = 6;

/// Typed, error-reporting access to GGUF metadata.
pub(crate) struct Meta<'a> {
    map: &'a HashMap<String, Value>,
    context: &'a str,
}

impl<'a> Meta<'a> {
    pub(crate) fn new(map: &'a HashMap<String, Value>, context: &'a str) -> Self {
        Self { map, context }
    }

    fn wrong_type(&self, key: &str, want: &str, got: &Value) -> crate::Error {
        tok_err(
            self.context,
            format!("{key} should be {want}, found {:?}", got.value_type()),
        )
    }

    pub(crate) fn string(&self, key: &str) -> Result<Option<&'a str>> {
        match self.map.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(v) => Err(self.wrong_type(key, "a string", v)),
        }
    }

    pub(crate) fn bool(&self, key: &str) -> Result<Option<bool>> {
        match self.map.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => match int_of(v) {
                Some(i) => Ok(Some(i != 0)),
                None => Err(self.wrong_type(key, "a boolean", v)),
            },
        }
    }

    /// A token id: a non-negative integer of any width.
    pub(crate) fn id(&self, key: &str) -> Result<Option<u32>> {
        match self.map.get(key) {
            None => Ok(None),
            Some(v) => match int_of(v).and_then(|i| u32::try_from(i).ok()) {
                Some(id) => Ok(Some(id)),
                None => Err(self.wrong_type(key, "a token id", v)),
            },
        }
    }

    fn array(&self, key: &str) -> Result<Option<&'a [Value]>> {
        match self.map.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) => Ok(Some(items.as_slice())),
            Some(v) => Err(self.wrong_type(key, "an array", v)),
        }
    }

    fn strings(&self, key: &str) -> Result<Option<Vec<&'a str>>> {
        let Some(items) = self.array(key)? else {
            return Ok(None);
        };
        items
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s.as_str()),
                v => Err(self.wrong_type(&format!("{key}[{i}]"), "a string", v)),
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    fn ints(&self, key: &str) -> Result<Option<Vec<i64>>> {
        let Some(items) = self.array(key)? else {
            return Ok(None);
        };
        items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                int_of(v).ok_or_else(|| self.wrong_type(&format!("{key}[{i}]"), "an integer", v))
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    fn floats(&self, key: &str) -> Result<Option<Vec<f32>>> {
        let Some(items) = self.array(key)? else {
            return Ok(None);
        };
        items
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::F32(f) => Ok(*f),
                Value::F64(f) => Ok(*f as f32),
                v => match int_of(v) {
                    Some(n) => Ok(n as f32),
                    None => Err(self.wrong_type(&format!("{key}[{i}]"), "a number", v)),
                },
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    fn require<T>(&self, key: &str, value: Option<T>) -> Result<T> {
        value.ok_or_else(|| tok_err(self.context, format!("missing metadata key {key}")))
    }
}

/// Any GGUF integer as i64 (u64 values past i64::MAX are rejected).
fn int_of(v: &Value) -> Option<i64> {
    match *v {
        Value::U8(x) => Some(i64::from(x)),
        Value::I8(x) => Some(i64::from(x)),
        Value::U16(x) => Some(i64::from(x)),
        Value::I16(x) => Some(i64::from(x)),
        Value::U32(x) => Some(i64::from(x)),
        Value::I32(x) => Some(i64::from(x)),
        Value::U64(x) => i64::try_from(x).ok(),
        Value::I64(x) => Some(x),
        _ => None,
    }
}

/// The vocabulary as read from the metadata.
struct GgufVocab<'a> {
    tokens: Vec<String>,
    types: Vec<i64>,
    meta: &'a Meta<'a>,
}

impl<'a> GgufVocab<'a> {
    fn read(meta: &'a Meta<'a>) -> Result<Self> {
        let raw = meta.require(
            "tokenizer.ggml.tokens",
            meta.strings("tokenizer.ggml.tokens")?,
        )?;
        if raw.is_empty() {
            return Err(tok_err(meta.context, "tokenizer.ggml.tokens is empty"));
        }
        if u32::try_from(raw.len()).is_err() {
            return Err(tok_err(meta.context, "tokenizer.ggml.tokens is too long"));
        }
        // llama.cpp names empty entries so that every id keeps a token.
        let tokens = raw
            .iter()
            .enumerate()
            .map(|(i, t)| {
                if t.is_empty() {
                    format!("[PAD{i}]")
                } else {
                    (*t).to_string()
                }
            })
            .collect::<Vec<_>>();
        let types = match meta.ints("tokenizer.ggml.token_type")? {
            Some(types) if types.len() != tokens.len() => {
                return Err(tok_err(
                    meta.context,
                    format!(
                        "tokenizer.ggml.token_type has {} entries for {} tokens",
                        types.len(),
                        tokens.len()
                    ),
                ))
            }
            Some(types) => types,
            None => vec![TYPE_NORMAL; tokens.len()],
        };
        Ok(Self {
            tokens,
            types,
            meta,
        })
    }

    /// token → id; like llama.cpp, a repeated token string keeps its last id.
    fn map(&self) -> Vocab {
        self.tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect()
    }

    /// Control, unknown and user-defined tokens as added tokens.
    fn added_tokens(&self) -> Vec<AddedToken> {
        self.tokens
            .iter()
            .zip(&self.types)
            .filter_map(|(token, &ty)| match ty {
                TYPE_CONTROL | TYPE_UNKNOWN => {
                    Some(AddedToken::from(token.clone(), true).normalized(false))
                }
                TYPE_USER_DEFINED => Some(AddedToken::from(token.clone(), false).normalized(false)),
                _ => None,
            })
            .collect()
    }
}

/// Builds the tokenizer described by the metadata.
pub(crate) fn build(
    metadata: &HashMap<String, Value>,
    context: &str,
) -> Result<tokenizers::Tokenizer> {
    let meta = Meta::new(metadata, context);
    let model = meta.require("tokenizer.ggml.model", meta.string("tokenizer.ggml.model")?)?;
    let vocab = GgufVocab::read(&meta)?;
    let mut tokenizer = match model {
        "gpt2" => build_byte_level_bpe(&vocab)?,
        "llama" => build_sentencepiece_bpe(&vocab)?,
        other => {
            return Err(tok_err(
                context,
                format!("unsupported tokenizer.ggml.model '{other}' (supported: gpt2, llama)"),
            ))
        }
    };
    let (special, user): (Vec<AddedToken>, Vec<AddedToken>) =
        vocab.added_tokens().into_iter().partition(|t| t.special);
    tokenizer
        .add_special_tokens(special)
        .map_err(|e| tok_err(context, format!("adding special tokens: {e}")))?;
    tokenizer
        .add_tokens(user)
        .map_err(|e| tok_err(context, format!("adding user-defined tokens: {e}")))?;
    Ok(tokenizer)
}

/// `tokenizer.ggml.model = "gpt2"`.
fn build_byte_level_bpe(vocab: &GgufVocab<'_>) -> Result<tokenizers::Tokenizer> {
    let meta = vocab.meta;
    let context = meta.context;
    // llama.cpp: a missing key means "default" (older files predate the key).
    let pre = meta.string("tokenizer.ggml.pre")?.unwrap_or("default");
    let rules = pre_rules(pre).ok_or_else(|| {
        tok_err(
            context,
            format!(
                "unknown pre-tokenizer '{pre}' (tokenizer.ggml.pre); supported: {}",
                SUPPORTED_PRE_TOKENIZERS.join(", ")
            ),
        )
    })?;

    let raw_merges = meta.require(
        "tokenizer.ggml.merges",
        meta.strings("tokenizer.ggml.merges")?,
    )?;
    let merges = raw_merges
        .iter()
        .enumerate()
        .map(|(i, m)| {
            // llama.cpp splits at the first space after the first byte.
            let split = m.bytes().skip(1).position(|b| b == b' ').map(|p| p + 1);
            match split {
                Some(p) => Ok((m[..p].to_string(), m[p + 1..].to_string())),
                None => Err(tok_err(
                    context,
                    format!("tokenizer.ggml.merges[{i}] = {m:?} is not \"left right\""),
                )),
            }
        })
        .collect::<Result<Vec<_>>>()?;

    let bpe = BpeBuilder::new()
        .vocab_and_merges(vocab.map(), merges)
        .ignore_merges(rules.ignore_merges)
        .build()
        .map_err(|e| tok_err(context, format!("invalid BPE vocabulary or merges: {e}")))?;

    let mut steps = Vec::with_capacity(rules.regexes.len() + 1);
    for regex in rules.regexes {
        let split = Split::new(
            SplitPattern::Regex((*regex).to_string()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(|e| tok_err(context, format!("pre-tokenizer '{pre}': {e}")))?;
        steps.push(PreTokenizerWrapper::Split(split));
    }
    steps.push(PreTokenizerWrapper::ByteLevel(ByteLevel::new(
        false, false, false,
    )));

    let mut tokenizer = tokenizers::Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(PreSequence::new(steps)));
    tokenizer.with_decoder(Some(ByteLevel::new(false, false, false)));
    Ok(tokenizer)
}

/// `tokenizer.ggml.model = "llama"`.
fn build_sentencepiece_bpe(vocab: &GgufVocab<'_>) -> Result<tokenizers::Tokenizer> {
    let meta = vocab.meta;
    let context = meta.context;
    let scores = meta.require(
        "tokenizer.ggml.scores",
        meta.floats("tokenizer.ggml.scores")?,
    )?;
    if scores.len() != vocab.tokens.len() {
        return Err(tok_err(
            context,
            format!(
                "tokenizer.ggml.scores has {} entries for {} tokens",
                scores.len(),
                vocab.tokens.len()
            ),
        ));
    }
    let add_space_prefix = meta
        .bool("tokenizer.ggml.add_space_prefix")?
        .unwrap_or(true);
    let unk = meta.id("tokenizer.ggml.unknown_token_id")?.unwrap_or(0);

    let map = vocab.map();
    let merges = sentencepiece_merges(&vocab.tokens, &vocab.types, &scores, &map);
    let byte_fallback = vocab.types.contains(&TYPE_BYTE) || map.contains_key("<0x00>");
    let mut builder = BpeBuilder::new()
        .vocab_and_merges(map, merges)
        .byte_fallback(byte_fallback)
        .fuse_unk(true);
    if let Some(unk_token) = vocab.tokens.get(unk as usize) {
        builder = builder.unk_token(unk_token.clone());
    }
    let bpe = builder
        .build()
        .map_err(|e| tok_err(context, format!("invalid SentencePiece vocabulary: {e}")))?;

    let replace_space = Replace::new(" ", "▁").map_err(|e| tok_err(context, e.to_string()))?;
    let normalizer: NormalizerWrapper = if add_space_prefix {
        NormalizerSequence::new(vec![
            Prepend::new("▁".to_string()).into(),
            replace_space.into(),
        ])
        .into()
    } else {
        replace_space.into()
    };
    let mut decoders: Vec<DecoderWrapper> = vec![
        Replace::new("▁", " ")
            .map_err(|e| tok_err(context, e.to_string()))?
            .into(),
        ByteFallback::new().into(),
        Fuse::new().into(),
    ];
    if add_space_prefix {
        decoders.push(Strip::new(' ', 1, 0).into());
    }

    let mut tokenizer = tokenizers::Tokenizer::new(bpe);
    tokenizer
        .with_normalizer(Some(normalizer))
        .map_err(|e| tok_err(context, e.to_string()))?;
    tokenizer.with_decoder(Some(DecoderSequence::new(decoders)));
    Ok(tokenizer)
}

/// Merge list equivalent to SentencePiece BPE: every way to cut a normal
/// piece into two normal pieces is a merge, ranked by the score of the merged
/// piece (higher first; ties: lower merged id, then lower left id, then lower
/// right id), as transformers' `SentencePieceExtractor` does.
fn sentencepiece_merges(
    tokens: &[String],
    types: &[i64],
    scores: &[f32],
    map: &Vocab,
) -> Vec<(String, String)> {
    let is_normal = |id: u32| types.get(id as usize) == Some(&TYPE_NORMAL);
    let mut found: Vec<(f32, u32, u32, u32)> = Vec::new();
    for (id, token) in tokens.iter().enumerate() {
        let id = id as u32;
        if !is_normal(id) || map.get(token) != Some(&id) {
            continue;
        }
        for (cut, _) in token.char_indices().skip(1) {
            let (left, right) = token.split_at(cut);
            if let (Some(&l), Some(&r)) = (map.get(left), map.get(right)) {
                if is_normal(l) && is_normal(r) {
                    found.push((scores[id as usize], id, l, r));
                }
            }
        }
    }
    found.sort_by(|a, b| {
        b.0.total_cmp(&a.0)
            .then(a.1.cmp(&b.1))
            .then(a.2.cmp(&b.2))
            .then(a.3.cmp(&b.3))
    });
    found
        .into_iter()
        .map(|(_, _, l, r)| (tokens[l as usize].clone(), tokens[r as usize].clone()))
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::tokenizer::bytes::bytes_to_byte_level;
    use crate::tokenizer::Tokenizer;
    use candle_core::quantized::gguf_file::{Content, VersionedMagic};

    pub(crate) fn content(metadata: Vec<(&str, Value)>) -> Content {
        Content {
            magic: VersionedMagic::GgufV3,
            metadata: metadata
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            tensor_infos: HashMap::new(),
            tensor_data_offset: 0,
        }
    }

    fn strings(items: &[&str]) -> Value {
        Value::Array(items.iter().map(|s| Value::String(s.to_string())).collect())
    }

    /// A byte-level vocabulary: control tokens, the 256 byte characters, and
    /// the merges given (each merged token is appended to the vocabulary).
    pub(crate) fn tiny_byte_level(pre: &str, merges: &[&str]) -> Content {
        let mut tokens = vec!["<|im_start|>".to_string(), "<|im_end|>".to_string()];
        let mut types = vec![Value::I32(3), Value::I32(3)];
        for b in 0..=255u8 {
            tokens.push(bytes_to_byte_level(&[b]));
            types.push(Value::I32(1));
        }
        for m in merges {
            tokens.push(m.replace(' ', ""));
            types.push(Value::I32(1));
        }
        content(vec![
            ("tokenizer.ggml.model", Value::String("gpt2".into())),
            ("tokenizer.ggml.pre", Value::String(pre.into())),
            (
                "tokenizer.ggml.tokens",
                Value::Array(tokens.into_iter().map(Value::String).collect()),
            ),
            ("tokenizer.ggml.token_type", Value::Array(types)),
            ("tokenizer.ggml.merges", strings(merges)),
        ])
    }

    #[test]
    fn every_supported_pre_tokenizer_builds() {
        for name in SUPPORTED_PRE_TOKENIZERS {
            let tok = Tokenizer::from_gguf(&tiny_byte_level(name, &["Ġ t"]), "test")
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let text = "It's 2024: naïve 日本語 <|im_start|>x\n\n  y";
            let ids = tok.encode(text).unwrap();
            assert_eq!(tok.decode(&ids, false).unwrap(), text, "{name}");
        }
        for (names, _) in PRE_FAMILIES {
            for name in *names {
                assert!(SUPPORTED_PRE_TOKENIZERS.contains(name), "{name} not listed");
            }
        }
    }

    #[test]
    fn byte_level_merges_and_special_tokens() {
        let tok =
            Tokenizer::from_gguf(&tiny_byte_level("gpt-2", &["Ġ t", "Ġt h"]), "test").unwrap();
        let gt = tok.token_to_id("Ġt").unwrap();
        let gth = tok.token_to_id("Ġth").unwrap();
        let h = tok.token_to_id("h").unwrap();
        let e = tok.token_to_id("e").unwrap();
        assert_eq!(tok.encode(" the").unwrap(), vec![gth, e]);
        assert_eq!(tok.encode(" t").unwrap(), vec![gt]);
        assert_eq!(tok.encode("<|im_end|>h").unwrap(), vec![1, h]);
        assert!(tok.is_special(1));
        assert!(!tok.is_special(h));
        assert_eq!(tok.decode(&[0, gth, e, 1], true).unwrap(), " the");
        assert_eq!(tok.token_bytes(gth).unwrap(), b" th");
        assert_eq!(tok.vocab_size(), 2 + 256 + 2);
    }

    #[test]
    fn smollm_splits_digits() {
        // With "1 2" merged, only a pre-tokenizer that isolates digits keeps them apart.
        let smollm = Tokenizer::from_gguf(&tiny_byte_level("smollm", &["1 2"]), "t").unwrap();
        let gpt2 = Tokenizer::from_gguf(&tiny_byte_level("gpt-2", &["1 2"]), "t").unwrap();
        assert_eq!(smollm.encode("12").unwrap().len(), 2);
        assert_eq!(gpt2.encode("12").unwrap().len(), 1);
    }

    #[test]
    fn unknown_pre_tokenizer_is_named() {
        let err = Tokenizer::from_gguf(&tiny_byte_level("no-such-pre", &[]), "my.gguf")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no-such-pre"), "{err}");
        assert!(err.contains("my.gguf"), "{err}");
        assert!(err.contains("tokenizer.ggml.pre"), "{err}");
    }

    #[test]
    fn malformed_metadata_is_an_error_not_a_panic() {
        let mut c = tiny_byte_level("gpt-2", &[]);
        c.metadata
            .insert("tokenizer.ggml.merges".into(), strings(&["nospace"]));
        assert!(Tokenizer::from_gguf(&c, "t").is_err());

        let mut c = tiny_byte_level("gpt-2", &[]);
        c.metadata
            .insert("tokenizer.ggml.merges".into(), strings(&["Ġ zz"]));
        assert!(Tokenizer::from_gguf(&c, "t").is_err());

        let mut c = tiny_byte_level("gpt-2", &[]);
        c.metadata
            .insert("tokenizer.ggml.tokens".into(), Value::U32(3));
        let err = Tokenizer::from_gguf(&c, "t").unwrap_err().to_string();
        assert!(err.contains("tokenizer.ggml.tokens"), "{err}");

        let mut c = tiny_byte_level("gpt-2", &[]);
        c.metadata
            .insert("tokenizer.ggml.token_type".into(), Value::Array(vec![]));
        assert!(Tokenizer::from_gguf(&c, "t").is_err());

        let mut c = tiny_byte_level("gpt-2", &[]);
        c.metadata
            .insert("tokenizer.ggml.model".into(), Value::String("t5".into()));
        let err = Tokenizer::from_gguf(&c, "t").unwrap_err().to_string();
        assert!(err.contains("t5"), "{err}");

        let c = content(vec![]);
        let err = Tokenizer::from_gguf(&c, "t").unwrap_err().to_string();
        assert!(err.contains("tokenizer.ggml.model"), "{err}");
    }

    /// A SentencePiece vocabulary: <unk>, <s>, </s>, byte tokens for the
    /// bytes of "é", and pieces with scores.
    fn tiny_sentencepiece(add_space_prefix: Option<bool>) -> Content {
        let entries: &[(&str, f32, i32)] = &[
            ("<unk>", 0.0, 2),
            ("<s>", 0.0, 3),
            ("</s>", 0.0, 3),
            ("<0x0A>", 0.0, 6),
            ("<0xC3>", 0.0, 6),
            ("<0xA9>", 0.0, 6),
            ("▁", -1.0, 1),
            ("a", -2.0, 1),
            ("b", -3.0, 1),
            ("c", -4.0, 1),
            ("ab", -5.0, 1),
            ("▁a", -6.0, 1),
            ("▁ab", -7.0, 1),
            ("bc", -0.5, 1),
        ];
        let mut md = vec![
            ("tokenizer.ggml.model", Value::String("llama".into())),
            (
                "tokenizer.ggml.tokens",
                Value::Array(
                    entries
                        .iter()
                        .map(|e| Value::String(e.0.to_string()))
                        .collect(),
                ),
            ),
            (
                "tokenizer.ggml.scores",
                Value::Array(entries.iter().map(|e| Value::F32(e.1)).collect()),
            ),
            (
                "tokenizer.ggml.token_type",
                Value::Array(entries.iter().map(|e| Value::I32(e.2)).collect()),
            ),
        ];
        if let Some(flag) = add_space_prefix {
            md.push(("tokenizer.ggml.add_space_prefix", Value::Bool(flag)));
        }
        content(md)
    }

    #[test]
    fn sentencepiece_merges_by_score() {
        let tok = Tokenizer::from_gguf(&tiny_sentencepiece(None), "t").unwrap();
        let id = |t: &str| tok.token_to_id(t).unwrap();
        // "▁abc": "bc" (-0.5) beats "▁a" (-6) and "ab" (-5) → ▁a | bc.
        assert_eq!(tok.encode("abc").unwrap(), vec![id("▁a"), id("bc")]);
        // "▁ab": ab (-5) first, then ▁ + ab → ▁ab.
        assert_eq!(tok.encode("ab").unwrap(), vec![id("▁ab")]);
        // A space after a special token, like llama.cpp; é and \n fall back to bytes.
        assert_eq!(
            tok.encode("<s>a\né").unwrap(),
            vec![1, id("▁a"), id("<0x0A>"), id("<0xC3>"), id("<0xA9>")]
        );
        assert_eq!(tok.decode(&[id("▁a"), id("bc")], false).unwrap(), "abc");
        let ids = tok.encode("ab a\né").unwrap();
        assert_eq!(tok.decode(&ids, false).unwrap(), "ab a\né");
        assert_eq!(tok.token_bytes(id("▁ab")).unwrap(), b" ab");
        assert_eq!(tok.token_bytes(id("<0xC3>")).unwrap(), vec![0xC3]);
    }

    #[test]
    fn sentencepiece_without_space_prefix() {
        let tok = Tokenizer::from_gguf(&tiny_sentencepiece(Some(false)), "t").unwrap();
        let id = |t: &str| tok.token_to_id(t).unwrap();
        assert_eq!(tok.encode("ab").unwrap(), vec![id("ab")]);
        assert_eq!(
            tok.decode(&tok.encode(" ab").unwrap(), false).unwrap(),
            " ab"
        );
    }
}
