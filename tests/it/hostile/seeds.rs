//! The good files that hostile cases start from: real files, or small
//! models built from real files' metadata (so that one case takes
//! milliseconds).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value as Json;

use crate::common;
use crate::tiny::Tiny;

/// Token ids kept from a real vocabulary.
const KEPT_IDS: usize = 600;

/// The Llama 3 tokenizer files cut to the first [`KEPT_IDS`] ids and
/// their merges, with the 256 special tokens moved down to follow them;
/// returns `(tokenizer.json, tokenizer_config.json, vocabulary size)`.
pub fn llama3_tokenizer_files() -> Option<(String, String, usize)> {
    let dir = common::llama3_tokenizer_dir()?;
    let read = |f: &str| -> Json {
        serde_json::from_str(&std::fs::read_to_string(dir.join(f)).unwrap()).unwrap()
    };
    let (mut tokenizer, mut config) = (read("tokenizer.json"), read("tokenizer_config.json"));
    const FIRST_SPECIAL: u64 = 128_000;
    let moved = |id: u64| {
        if id >= FIRST_SPECIAL {
            id - FIRST_SPECIAL + KEPT_IDS as u64
        } else {
            id
        }
    };
    let model = &mut tokenizer["model"];
    let vocab = model["vocab"].as_object_mut().unwrap();
    vocab.retain(|_, id| id.as_u64().unwrap() < KEPT_IDS as u64);
    let kept: std::collections::HashSet<String> = vocab.keys().cloned().collect();
    model["merges"].as_array_mut().unwrap().retain(|m| {
        match m.as_str().and_then(|m| m.split_once(' ')) {
            Some((a, b)) => {
                kept.contains(a) && kept.contains(b) && kept.contains(&format!("{a}{b}"))
            }
            None => false,
        }
    });
    for token in tokenizer["added_tokens"].as_array_mut().unwrap() {
        token["id"] = Json::from(moved(token["id"].as_u64().unwrap()));
    }
    let decoder = config["added_tokens_decoder"].as_object_mut().unwrap();
    let entries: Vec<(String, Json)> = std::mem::take(decoder).into_iter().collect();
    for (id, token) in entries {
        decoder.insert(moved(id.parse().unwrap()).to_string(), token);
    }
    Some((
        serde_json::to_string(&tokenizer).unwrap(),
        serde_json::to_string_pretty(&config).unwrap(),
        KEPT_IDS + 256,
    ))
}

/// A tiny random-weight Llama with the cut Llama 3 tokenizer in `dir`
/// (`shards` safetensors files, with an index when more than one).
pub fn hf_dir(dir: &Path, shards: usize) -> Option<PathBuf> {
    let (tokenizer, config, vocab) = llama3_tokenizer_files()?;
    Tiny {
        vocab,
        hidden: 32,
        heads: 2,
        kv_heads: 1,
        intermediate: 48,
        layers: 2,
        tie: true,
        shards,
        ..Default::default()
    }
    .write(dir);
    std::fs::write(dir.join("tokenizer.json"), tokenizer).unwrap();
    std::fs::write(dir.join("tokenizer_config.json"), config).unwrap();
    Some(dir.to_path_buf())
}

/// A GGUF model made from the SmolLM2 GGUF's metadata: its tokenizer cut to
/// the first [`KEPT_IDS`] ids and their merges, its shape shrunk to two
/// layers of width 64, random weights in its types (Q8_0 embedding, Q4_1
/// projections, F32 norms).
pub struct GgufSeed {
    /// Metadata entries in the order of the real file.
    pub metadata: Vec<(String, Value)>,
    /// The tensors, named as in the real file.
    pub tensors: Vec<(String, QTensor)>,
}

impl GgufSeed {
    /// Built from the SmolLM2 GGUF fixture (`None` when it is absent).
    pub fn from_smollm2() -> Option<Self> {
        let path = common::smollm2_gguf()?;
        let content = gguf_file::Content::read(&mut File::open(&path).unwrap()).unwrap();
        let (hidden, ffn, heads, kv_heads, layers) = (64usize, 96usize, 4usize, 2usize, 2usize);
        let mut keys: Vec<&String> = content.metadata.keys().collect();
        keys.sort();
        let mut metadata = Vec::new();
        let tokens = match &content.metadata["tokenizer.ggml.tokens"] {
            Value::Array(t) => t[..KEPT_IDS].to_vec(),
            _ => unreachable!("SmolLM2 has a token list"),
        };
        for key in keys {
            let value = content.metadata[key].clone();
            let value = match (key.as_str(), value) {
                ("tokenizer.ggml.tokens", _) => Value::Array(tokens.clone()),
                ("tokenizer.ggml.token_type", Value::Array(t)) => {
                    Value::Array(t[..KEPT_IDS].to_vec())
                }
                ("tokenizer.ggml.merges", Value::Array(m)) => {
                    let kept: std::collections::HashSet<&str> = tokens
                        .iter()
                        .filter_map(|t| t.to_string().ok())
                        .map(|s| s.as_str())
                        .collect();
                    let keep = |m: &Value| match m.to_string().ok().and_then(|m| m.split_once(' '))
                    {
                        Some((a, b)) => {
                            kept.contains(a)
                                && kept.contains(b)
                                && kept.contains(format!("{a}{b}").as_str())
                        }
                        None => false,
                    };
                    Value::Array(m.into_iter().filter(|m| keep(m)).collect())
                }
                ("llama.block_count", _) => Value::U32(layers as u32),
                ("llama.context_length", _) => Value::U32(256),
                ("llama.embedding_length", _) => Value::U32(hidden as u32),
                ("llama.feed_forward_length", _) => Value::U32(ffn as u32),
                ("llama.attention.head_count", _) => Value::U32(heads as u32),
                ("llama.attention.head_count_kv", _) => Value::U32(kv_heads as u32),
                ("llama.vocab_size", _) => Value::U32(KEPT_IDS as u32),
                ("llama.rope.dimension_count", _) => Value::U32((hidden / heads) as u32),
                (_, v) => v,
            };
            metadata.push((key.clone(), value));
        }
        let mut rng = StdRng::seed_from_u64(5);
        let mut random = |shape: &[usize], dtype: GgmlDType| {
            let n: usize = shape.iter().product();
            let data: Vec<f32> = (0..n).map(|_| rng.random_range(-0.5f32..0.5)).collect();
            let t = Tensor::from_vec(data, shape, &Device::Cpu).unwrap();
            QTensor::quantize(&t, dtype).unwrap()
        };
        let head_dim = hidden / heads;
        let mut tensors = vec![(
            "token_embd.weight".to_string(),
            random(&[KEPT_IDS, hidden], GgmlDType::Q8_0),
        )];
        for l in 0..layers {
            let p = format!("blk.{l}");
            for (name, shape, dtype) in [
                ("attn_norm", vec![hidden], GgmlDType::F32),
                ("ffn_down", vec![hidden, ffn], GgmlDType::Q4_1),
                ("ffn_gate", vec![ffn, hidden], GgmlDType::Q4_1),
                ("ffn_up", vec![ffn, hidden], GgmlDType::Q4_1),
                ("ffn_norm", vec![hidden], GgmlDType::F32),
                ("attn_k", vec![kv_heads * head_dim, hidden], GgmlDType::Q4_1),
                ("attn_output", vec![hidden, hidden], GgmlDType::Q4_1),
                ("attn_q", vec![hidden, hidden], GgmlDType::Q4_1),
                ("attn_v", vec![kv_heads * head_dim, hidden], GgmlDType::Q4_1),
            ] {
                tensors.push((format!("{p}.{name}.weight"), random(&shape, dtype)));
            }
        }
        tensors.push((
            "output_norm.weight".to_string(),
            random(&[hidden], GgmlDType::F32),
        ));
        Some(Self { metadata, tensors })
    }

    /// The file's bytes with `metadata` in place of the seed's.
    pub fn bytes_with(&self, metadata: &[(String, Value)]) -> Vec<u8> {
        let mut out = std::io::Cursor::new(Vec::new());
        let meta: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let tensors: Vec<(&str, &QTensor)> =
            self.tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
        gguf_file::write(&mut out, &meta, &tensors).unwrap();
        out.into_inner()
    }
}

/// The PEFT adapter fixture (saved by PEFT for the default tiny model) and
/// that model, written into `dir/base`.
pub fn peft_adapter_and_base(dir: &Path) -> (PathBuf, PathBuf) {
    let base = dir.join("base");
    Tiny::default().write(&base);
    (common::root().join("tests/fixtures/peft-tiny"), base)
}

/// Files of a directory by name, read once.
pub fn read_dir_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

/// Writes `files` into `dir`, emptied first.
pub fn write_dir_files(dir: &Path, files: &BTreeMap<String, Vec<u8>>) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

/// The first `n` items of the Spider dev set (`None` without the shared
/// data) and its database folder.
pub fn spider_dev(n: usize) -> Option<(String, PathBuf)> {
    let spider = common::shared_data()?.join("spider");
    let all: Json =
        serde_json::from_str(&std::fs::read_to_string(spider.join("dev.json")).ok()?).ok()?;
    let some: Vec<Json> = all.as_array()?.iter().take(n).cloned().collect();
    Some((
        serde_json::to_string_pretty(&some).unwrap(),
        spider.join("database"),
    ))
}

/// The first `n` lines of the Spotify prototype's CSV (`None` without the
/// shared data).
pub fn spotify_csv(n: usize) -> Option<String> {
    let path = common::shared_data()?.join("spotify-prototype/Top100MostStreamed.csv");
    let text = std::fs::read_to_string(path).ok()?;
    Some(text.lines().take(n).map(|l| format!("{l}\n")).collect())
}
