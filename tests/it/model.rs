//! Integration tests: the Llama implementation against independent
//! references (candle-transformers' `llama` and `quantized_llama`, and
//! Hugging Face transformers' float32 outputs recorded in
//! `../shared/fixtures/smollm2-reference.json`).

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use sqlagent::model::{self, Cache, GgufFile, GgufOptions, Llama, Logits, Requantize};

use crate::common;
use crate::tiny::Tiny;

/// The SmolLM2 chat prompt of `smollm2-reference.json` (`chat_prompt.ids`),
/// tokenized by transformers 5.24 and cross-checked with llama.cpp.
const CHAT_PROMPT_IDS: [u32; 62] = [
    1, 9690, 198, 2683, 359, 253, 15142, 663, 4507, 30, 43655, 42, 198, 38965, 37206, 8786, 365,
    7260, 48962, 28, 6949, 48962, 28, 476, 4961, 10265, 18, 48962, 28, 713, 31174, 46856, 28, 9338,
    31174, 46856, 4258, 198, 21350, 351, 582, 15142, 8520, 30, 2, 198, 1, 4093, 198, 14413, 6949,
    553, 260, 768, 8786, 47, 2, 198, 1, 520, 9531, 198,
];

/// transformers 5.24 + torch 2.15, GGUF dequantized to float32: the top-10
/// logits at the last position of [`CHAT_PROMPT_IDS`]
/// (`chat_prompt.last_position_top10`).
#[allow(clippy::excessive_precision)] // digits exactly as recorded in the fixture
const F32_TOP10: [(u32, f32); 10] = [
    (2068, 30.98734474182129),
    (504, 30.050777435302734),
    (2683, 29.77098846435547),
    (788, 29.03727912902832),
    (57, 28.851215362548828),
    (1348, 28.80033302307129),
    (11192, 28.556392669677734),
    (33, 28.4288272857666),
    (4590, 28.420509338378906),
    (2122, 28.186689376831055),
];

/// The same reference's 32-token greedy continuation (`chat_prompt.greedy_32`).
const F32_GREEDY_32: [u32; 32] = [
    2068, 1042, 260, 6949, 351, 260, 768, 8786, 28, 346, 416, 722, 260, 2179, 33740, 80, 1517, 288,
    820, 260, 1230, 282, 8786, 327, 971, 6949, 30, 3875, 346, 416, 722, 253,
];

/// max |a − b| / max |b|.
fn rel_diff(a: &Tensor, b: &Tensor) -> f32 {
    let a: Vec<f32> = a.flatten_all().unwrap().to_vec1().unwrap();
    let b: Vec<f32> = b.flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(a.len(), b.len(), "shapes differ");
    let scale = b.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-12);
    let diff = a
        .iter()
        .zip(&b)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    diff / scale
}

fn ids(v: &[u32]) -> Tensor {
    Tensor::new(v, &Device::Cpu).unwrap().unsqueeze(0).unwrap()
}

/// candle-transformers' own Llama on the same files: last-position logits.
fn reference_last_logits(dir: &std::path::Path, tokens: &[u32]) -> Tensor {
    use candle_transformers::models::llama as reference;
    let cfg: reference::LlamaConfig =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let cfg = cfg.into_config(false);
    let files = model::hub::safetensors_files(dir).unwrap();
    let vb =
        unsafe { VarBuilder::from_mmaped_safetensors(&files, DType::F32, &Device::Cpu) }.unwrap();
    let m = reference::Llama::load(vb, &cfg).unwrap();
    let mut cache = reference::Cache::new(true, DType::F32, &cfg, &Device::Cpu).unwrap();
    m.forward(&ids(tokens), 0, &mut cache)
        .unwrap()
        .squeeze(0)
        .unwrap()
}

const TOKENS: [u32; 9] = [1, 17, 99, 3, 64, 127, 5, 42, 8];

#[test]
fn tiny_llama_logits_match_candle_transformers_reference() {
    let variants = [
        ("gqa + llama3 rope", Tiny::default()),
        (
            "tied embeddings",
            Tiny {
                tie: true,
                seed: 7,
                ..Tiny::default()
            },
        ),
        (
            "multi-head, plain rope",
            Tiny {
                kv_heads: 4,
                llama3_rope: false,
                seed: 9,
                ..Tiny::default()
            },
        ),
    ];
    for (name, tiny) in variants {
        let dir = common::temp_dir();
        tiny.write(dir.path());
        let ours = model::load_safetensors_dir(dir.path(), DType::F32, &Device::Cpu).unwrap();
        let all = ours
            .forward(&ids(&TOKENS), None, Logits::All)
            .unwrap()
            .squeeze(0)
            .unwrap();
        assert_eq!(all.dims(), &[TOKENS.len(), tiny.vocab]);
        // Every position of the full-sequence logits against the reference
        // run on the prefix ending there.
        for t in [0, 3, TOKENS.len() - 1] {
            let reference = reference_last_logits(dir.path(), &TOKENS[..=t]);
            let d = rel_diff(&all.get(t).unwrap(), &reference);
            assert!(d < 1e-4, "{name}: position {t} differs by {d}");
        }
        let last = ours
            .forward(&ids(&TOKENS), None, Logits::Last)
            .unwrap()
            .squeeze(0)
            .unwrap();
        assert!(
            rel_diff(&last, &all.get(TOKENS.len() - 1).unwrap()) < 1e-6,
            "{name}: Last ≠ All[-1]"
        );
    }
}

#[test]
fn kv_cached_decoding_equals_full_sequence_forward() {
    let dir = common::temp_dir();
    Tiny::default().write(dir.path());
    let m = model::load_safetensors_dir(dir.path(), DType::F32, &Device::Cpu).unwrap();
    let full = m
        .forward(&ids(&TOKENS), None, Logits::All)
        .unwrap()
        .squeeze(0)
        .unwrap();
    let mut cache = Cache::new(&m);
    // Prefill 4 tokens, then one at a time.
    let first = m
        .forward(&ids(&TOKENS[..4]), Some(&mut cache), Logits::Last)
        .unwrap();
    assert!(rel_diff(&first.squeeze(0).unwrap(), &full.get(3).unwrap()) < 1e-5);
    for (t, tok) in TOKENS.iter().enumerate().skip(4) {
        let step = m
            .forward(&ids(&[*tok]), Some(&mut cache), Logits::Last)
            .unwrap();
        let d = rel_diff(&step.squeeze(0).unwrap(), &full.get(t).unwrap());
        assert!(d < 1e-5, "position {t}: cached decode differs by {d}");
    }
    assert_eq!(cache.len(), TOKENS.len());
}

#[test]
fn sharded_checkpoint_loads_like_a_single_file() {
    let single = common::temp_dir();
    let sharded = common::temp_dir();
    Tiny::default().write(single.path());
    Tiny {
        shards: 3,
        ..Tiny::default()
    }
    .write(sharded.path());
    assert!(sharded.path().join("model.safetensors.index.json").exists());
    let a = model::load_safetensors_dir(single.path(), DType::F32, &Device::Cpu).unwrap();
    let b = model::load_safetensors_dir(sharded.path(), DType::F32, &Device::Cpu).unwrap();
    let la = a.forward(&ids(&TOKENS), None, Logits::Last).unwrap();
    let lb = b.forward(&ids(&TOKENS), None, Logits::Last).unwrap();
    assert_eq!(rel_diff(&la, &lb), 0.0);
}

/// A config.json whose sizes disagree with the weights: the error names
/// the tensor, both shapes, the shard that holds it and the configuration,
/// whether the weights load as they are or quantized at load.
#[test]
fn a_config_that_disagrees_with_the_weights_names_the_tensor_shard_and_config() {
    let dir = common::temp_dir();
    let tiny = Tiny {
        shards: 2,
        ..Tiny::default()
    };
    tiny.write(dir.path());
    let wrong = Tiny {
        intermediate: tiny.intermediate + 32,
        ..Tiny::default()
    };
    std::fs::write(dir.path().join("config.json"), wrong.config_json()).unwrap();
    let errors = [
        model::load_safetensors_dir(dir.path(), DType::F32, &Device::Cpu)
            .err()
            .unwrap()
            .to_string(),
        model::load_safetensors_dir_quantized(
            dir.path(),
            &Device::Cpu,
            candle_core::quantized::GgmlDType::Q8_0,
        )
        .err()
        .unwrap()
        .to_string(),
    ];
    for e in errors {
        assert!(
            e.contains("mlp.") && e.contains("has shape") && e.contains(", expected ["),
            "{e}"
        );
        assert!(e.contains("-of-") && e.contains(".safetensors"), "{e}");
        assert!(e.contains("config.json describes the model"), "{e}");
    }
}

/// A tensor the index puts in a shard that lacks it: the error names that
/// shard, whether the weights load as they are or quantized at load.
#[test]
fn a_tensor_missing_from_its_shard_is_blamed_on_that_shard() {
    let dir = common::temp_dir();
    Tiny {
        shards: 2,
        ..Tiny::default()
    }
    .write(dir.path());
    let shard = dir.path().join("model-00002-of-00002.safetensors");
    let mut tensors = candle_core::safetensors::load(&shard, &Device::Cpu).unwrap();
    let gone = tensors
        .keys()
        .find(|name| name.contains("layers"))
        .unwrap()
        .clone();
    tensors.remove(&gone);
    candle_core::safetensors::save(&tensors, &shard).unwrap();
    let errors = [
        model::load_safetensors_dir(dir.path(), DType::F32, &Device::Cpu)
            .err()
            .unwrap(),
        model::load_safetensors_dir_quantized(
            dir.path(),
            &Device::Cpu,
            candle_core::quantized::GgmlDType::Q8_0,
        )
        .err()
        .unwrap(),
    ];
    for e in errors {
        assert_eq!(e.path(), Some(shard.as_path()), "{e}");
        assert!(e.to_string().contains(&format!("no tensor {gone}")), "{e}");
    }
}

#[test]
fn half_precision_dtypes_run_close_to_f32() {
    let dir = common::temp_dir();
    Tiny::default().write(dir.path());
    let f32m = model::load_safetensors_dir(dir.path(), DType::F32, &Device::Cpu).unwrap();
    let want = f32m.forward(&ids(&TOKENS), None, Logits::Last).unwrap();
    for dtype in [DType::F16, DType::BF16] {
        let m = model::load_safetensors_dir(dir.path(), dtype, &Device::Cpu).unwrap();
        assert_eq!(m.dtype(), dtype);
        let got = m.forward(&ids(&TOKENS), None, Logits::Last).unwrap();
        assert_eq!(got.dtype(), DType::F32, "logits are returned in f32");
        let d = rel_diff(&got, &want);
        assert!(d < 5e-2, "{dtype:?} differs from f32 by {d}");
    }
}

fn smollm2(options: GgufOptions) -> Option<Llama> {
    let path = common::smollm2_gguf()?;
    let (m, _) = GgufFile::open(&path)
        .unwrap()
        .into_model(&Device::Cpu, options)
        .unwrap();
    Some(m)
}

fn greedy(m: &Llama, prompt: &[u32], n: usize) -> Vec<u32> {
    let mut cache = Cache::new(m);
    let mut logits = m
        .forward(&ids(prompt), Some(&mut cache), Logits::Last)
        .unwrap();
    let mut out = Vec::new();
    for _ in 0..n {
        let next = logits
            .squeeze(0)
            .unwrap()
            .argmax(0)
            .unwrap()
            .to_scalar::<u32>()
            .unwrap();
        out.push(next);
        logits = m
            .forward(&ids(&[next]), Some(&mut cache), Logits::Last)
            .unwrap();
    }
    out
}

#[test]
fn smollm2_quantized_matches_candle_quantized_llama() {
    let exact = GgufOptions {
        requantize: Requantize::Never,
        fast_kernels: false,
    };
    let Some(ours) = smollm2(exact) else { return };
    let path = common::smollm2_gguf().unwrap();
    let mut file = std::fs::File::open(&path).unwrap();
    let content = candle_core::quantized::gguf_file::Content::read(&mut file).unwrap();
    let mut reference = candle_transformers::models::quantized_llama::ModelWeights::from_gguf(
        content,
        &mut file,
        &Device::Cpu,
    )
    .unwrap();
    let want = reference.forward(&ids(&CHAT_PROMPT_IDS), 0).unwrap();
    let got = ours
        .forward(&ids(&CHAT_PROMPT_IDS), None, Logits::Last)
        .unwrap();
    let d = rel_diff(&got, &want);
    assert!(d < 1e-3, "logits differ from quantized_llama by {d}");

    // Greedy decoding: 32 tokens, same as the reference's.
    let mut ref_tokens = Vec::new();
    let mut logits = want;
    for i in 0..32 {
        let next = logits
            .squeeze(0)
            .unwrap()
            .argmax(0)
            .unwrap()
            .to_scalar::<u32>()
            .unwrap();
        ref_tokens.push(next);
        logits = reference
            .forward(&ids(&[next]), CHAT_PROMPT_IDS.len() + i)
            .unwrap();
    }
    assert_eq!(greedy(&ours, &CHAT_PROMPT_IDS, 32), ref_tokens);
}

#[test]
fn smollm2_dequantized_to_f32_matches_transformers() {
    let f32_opts = GgufOptions {
        requantize: Requantize::To(candle_core::quantized::GgmlDType::F32),
        fast_kernels: false,
    };
    let Some(m) = smollm2(f32_opts) else { return };
    assert_eq!(m.weight_type(), None, "weights are dense f32");
    let logits: Vec<f32> = m
        .forward(&ids(&CHAT_PROMPT_IDS), None, Logits::Last)
        .unwrap()
        .squeeze(0)
        .unwrap()
        .to_vec1()
        .unwrap();
    for (id, want) in F32_TOP10 {
        let got = logits[id as usize];
        assert!(
            (got - want).abs() < 2e-3,
            "logit of {id}: {got} vs transformers {want}"
        );
    }
    assert_eq!(greedy(&m, &CHAT_PROMPT_IDS, 32), F32_GREEDY_32);
}

#[test]
fn smollm2_default_fast_path_agrees_with_the_exact_kernels() {
    // Default load: Q4_1 kept for the block GEMV where this CPU runs it
    // (else re-quantized to Q8_0), prompts multiplied densely.
    let Some(fast) = smollm2(GgufOptions::default()) else {
        return;
    };
    let kept = sqlagent::model::gemv_runs_here();
    assert_eq!(
        fast.weight_type(),
        Some(if kept {
            candle_core::quantized::GgmlDType::Q4_1
        } else {
            candle_core::quantized::GgmlDType::Q8_0
        })
    );
    let logits: Vec<f32> = fast
        .forward(&ids(&CHAT_PROMPT_IDS), None, Logits::Last)
        .unwrap()
        .squeeze(0)
        .unwrap()
        .to_vec1()
        .unwrap();
    // 8-bit activations (and re-quantization) perturb logits slightly; the reference's best token
    // stays on top and the top-10 logits stay close.
    let best = logits
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i as u32)
        .unwrap();
    assert_eq!(best, F32_TOP10[0].0);
    for (id, want) in F32_TOP10 {
        let got = logits[id as usize];
        assert!(
            (got - want).abs() < 0.6,
            "logit of {id}: {got} vs f32 {want}"
        );
    }
}

#[test]
fn truncated_cache_continues_like_a_fresh_one() {
    let dir = common::temp_dir();
    Tiny::default().write(dir.path());
    let m = model::load_safetensors_dir(dir.path(), DType::F32, &Device::Cpu).unwrap();
    let full = m
        .forward(&ids(&TOKENS), None, Logits::All)
        .unwrap()
        .squeeze(0)
        .unwrap();
    let mut cache = Cache::new(&m);
    // Feed a wrong continuation, take it back, feed the right one.
    m.forward(&ids(&TOKENS[..4]), Some(&mut cache), Logits::Last)
        .unwrap();
    m.forward(&ids(&[7, 7, 7]), Some(&mut cache), Logits::Last)
        .unwrap();
    cache.truncate(4);
    assert_eq!(cache.len(), 4);
    let got = m
        .forward(&ids(&TOKENS[4..]), Some(&mut cache), Logits::Last)
        .unwrap();
    let d = rel_diff(
        &got.squeeze(0).unwrap(),
        &full.get(TOKENS.len() - 1).unwrap(),
    );
    assert!(d < 1e-5, "after truncation the logits differ by {d}");
}

/// Writes `gguf` as a GGUF split in two files (`…-00001-of-00002.gguf`
/// with the metadata and half the tensors, `…-00002-of-00002.gguf` with
/// the rest), as llama.cpp's gguf-split lays it out; returns the first.
fn split_in_two(gguf: &std::path::Path, dir: &std::path::Path) -> std::path::PathBuf {
    use candle_core::quantized::gguf_file::{self, Value};
    let mut file = std::fs::File::open(gguf).unwrap();
    let content = gguf_file::Content::read(&mut file).unwrap();
    let mut names: Vec<String> = content.tensor_infos.keys().cloned().collect();
    names.sort();
    let tensors: Vec<(String, candle_core::quantized::QTensor)> = names
        .iter()
        .map(|n| {
            (
                n.clone(),
                content.tensor(&mut file, n, &Device::Cpu).unwrap(),
            )
        })
        .collect();
    let (first, second) = tensors.split_at(tensors.len() / 2);
    let count = Value::U16(2);
    let write = |path: &std::path::Path,
                 index: u16,
                 metadata: Vec<(&str, &Value)>,
                 part: &[(String, candle_core::quantized::QTensor)]| {
        let no = Value::U16(index);
        let mut metadata = metadata;
        metadata.push(("split.no", &no));
        metadata.push(("split.count", &count));
        let refs: Vec<(&str, &candle_core::quantized::QTensor)> =
            part.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let mut out = std::fs::File::create(path).unwrap();
        gguf_file::write(&mut out, &metadata, &refs).unwrap();
    };
    let first_path = dir.join("smol-Q4_1-00001-of-00002.gguf");
    let metadata: Vec<(&str, &Value)> = content
        .metadata
        .iter()
        .filter(|(k, _)| !k.starts_with("split."))
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    write(&first_path, 0, metadata, first);
    write(
        &dir.join("smol-Q4_1-00002-of-00002.gguf"),
        1,
        Vec::new(),
        second,
    );
    first_path
}

#[test]
fn a_split_gguf_loads_from_its_first_part_and_answers_as_the_whole_file() {
    let Some(gguf) = common::smollm2_gguf() else {
        return;
    };
    let tmp = common::temp_dir();
    let first = split_in_two(&gguf, tmp.path());
    let whole = common::load_engine(sqlagent::agent::ModelSource::Gguf(gguf));
    let split = common::load_engine(sqlagent::agent::ModelSource::Gguf(first.clone()));
    let db_path = tmp.path().join("music.db");
    sqlagent::sql::build_demo_db(&db_path).unwrap();
    let ask = |engine: &sqlagent::agent::Engine| {
        let db = engine
            .database(&db_path, &sqlagent::grammar::GrammarOptions::default())
            .unwrap();
        let mut options = sqlagent::agent::AskOptions::new(
            sqlagent::chat::PromptSpec::builtin_default().unwrap(),
        );
        options.sampling.max_tokens = 32;
        engine
            .ask(
                &db,
                "How many tracks are there?",
                &options,
                &mut sqlagent::agent::Listener::default(),
            )
            .unwrap()
            .draft()
            .sql
            .clone()
    };
    assert_eq!(ask(&split), ask(&whole));

    // A missing part is named.
    std::fs::remove_file(tmp.path().join("smol-Q4_1-00002-of-00002.gguf")).unwrap();
    let err = GgufFile::open(&first).err().expect("a missing part fails");
    assert!(err.to_string().contains("part 2 of 2"), "{err}");
}

#[test]
fn safetensors_quantized_at_load_run_close_to_f32_and_report_what_they_saved() {
    let dir = common::temp_dir();
    Tiny {
        hidden: 64,
        intermediate: 128,
        ..Tiny::default()
    }
    .write(dir.path());
    let dense = model::load_safetensors_dir(dir.path(), DType::F32, &Device::Cpu).unwrap();
    let want = dense.forward(&ids(&TOKENS), None, Logits::Last).unwrap();
    let (q, (tensors, before, after)) = model::load_safetensors_dir_quantized(
        dir.path(),
        &Device::Cpu,
        candle_core::quantized::GgmlDType::Q8_0,
    )
    .unwrap();
    let got = q.forward(&ids(&TOKENS), None, Logits::Last).unwrap();
    let d = rel_diff(&got, &want);
    assert!(d < 2e-2, "q8_0 differs from f32 by {d}");
    assert!(tensors > 0);
    // Q8_0 keeps 34 bytes of every 32 values (f32: 128).
    assert_eq!(after * 128, before * 34, "{before} -> {after}");
}
