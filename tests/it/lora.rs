//! LoRA adapters at inference: unmerged deltas equal merged weights, a
//! zero update changes nothing, PEFT's files are read as PEFT writes them,
//! and broken adapters give typed errors naming the directory.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlagent::lora::{Adapter, AdapterError, LoraDelta};
use sqlagent::model::{self, GgufFile, GgufOptions, Llama, Logits};
use sqlagent::Error;

use crate::common;
use crate::tiny::Tiny;

const IDS: [u32; 7] = [3, 17, 42, 99, 5, 64, 127];

fn tiny_model(dir: &Path) -> Llama {
    Tiny::default().write(dir);
    model::load_safetensors_dir(dir, DType::F32, &Device::Cpu).unwrap()
}

fn logits(m: &Llama, adapter: Option<usize>) -> Vec<f32> {
    logits_of(m, &IDS, adapter)
}

fn logits_of(m: &Llama, ids: &[u32], adapter: Option<usize>) -> Vec<f32> {
    let ids = Tensor::new(ids, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    m.forward_with(&ids, None, Logits::All, adapter)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn random(rng: &mut StdRng, rows: usize, cols: usize, scale: f32) -> Tensor {
    let data: Vec<f32> = (0..rows * cols)
        .map(|_| rng.random_range(-scale..scale))
        .collect();
    Tensor::from_vec(data, (rows, cols), &Device::Cpu).unwrap()
}

/// Writes an adapter of rank 4 (alpha 8) on q/v/o/down/lm_head of the
/// tiny model; `zero_b` makes every B zero.
fn write_adapter(dir: &Path, zero_b: bool) {
    let t = Tiny::default();
    let hd = t.hidden / t.heads;
    let mut shapes = vec![("lm_head".to_string(), (t.vocab, t.hidden))];
    for l in 0..t.layers {
        shapes.push((
            format!("model.layers.{l}.self_attn.q_proj"),
            (t.heads * hd, t.hidden),
        ));
        shapes.push((
            format!("model.layers.{l}.self_attn.v_proj"),
            (t.kv_heads * hd, t.hidden),
        ));
        shapes.push((
            format!("model.layers.{l}.self_attn.o_proj"),
            (t.hidden, t.heads * hd),
        ));
        shapes.push((
            format!("model.layers.{l}.mlp.down_proj"),
            (t.hidden, t.intermediate),
        ));
    }
    let mut rng = StdRng::seed_from_u64(11);
    let mut deltas = BTreeMap::new();
    for (path, (out, inp)) in shapes {
        let a = random(&mut rng, 4, inp, 0.3);
        let b = if zero_b {
            Tensor::zeros((out, 4), DType::F32, &Device::Cpu).unwrap()
        } else {
            random(&mut rng, out, 4, 0.3)
        };
        deltas.insert(path, LoraDelta { a, b, scale: 2.0 });
    }
    let config = serde_json::json!({
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 4, "lora_alpha": 8,
        "target_modules": ["q_proj", "v_proj", "o_proj", "down_proj", "lm_head"],
        "lora_dropout": 0.0, "bias": "none", "use_rslora": false, "fan_in_fan_out": false
    });
    Adapter::save(dir, &config, &deltas).unwrap();
}

#[test]
fn unmerged_adapter_gives_the_logits_of_the_merged_dense_weights() {
    let tmp = common::temp_dir();
    let adapter_dir = tmp.path().join("adapter");
    write_adapter(&adapter_dir, false);
    let adapter = Adapter::load("a", &adapter_dir).unwrap();
    assert_eq!(adapter.deltas.len(), 9);

    let mut unmerged = tiny_model(&tmp.path().join("m1"));
    let base = logits(&unmerged, None);
    let slot = unmerged.attach_adapter(&adapter).unwrap();
    let with_adapter = logits(&unmerged, Some(slot));
    assert!(
        max_diff(&base, &with_adapter) > 1e-2,
        "the adapter changes the output"
    );
    assert_eq!(logits(&unmerged, None), base, "slot None is the base model");

    let mut merged = tiny_model(&tmp.path().join("m2"));
    merged.merge_adapter(&adapter).unwrap();
    let merged_logits = logits(&merged, None);
    let diff = max_diff(&with_adapter, &merged_logits);
    assert!(diff < 1e-4, "unmerged vs merged differ by {diff}");
}

#[test]
fn an_adapter_whose_b_is_zero_leaves_the_logits_unchanged() {
    let tmp = common::temp_dir();
    let adapter_dir = tmp.path().join("adapter");
    write_adapter(&adapter_dir, true);
    let adapter = Adapter::load("zero", &adapter_dir).unwrap();
    let mut m = tiny_model(&tmp.path().join("m"));
    let base = logits(&m, None);
    let slot = m.attach_adapter(&adapter).unwrap();
    assert_eq!(logits(&m, Some(slot)), base);
}

#[test]
fn two_adapters_are_chosen_per_request() {
    let tmp = common::temp_dir();
    write_adapter(&tmp.path().join("one"), false);
    write_adapter(&tmp.path().join("zero"), true);
    let one = Adapter::load("one", &tmp.path().join("one")).unwrap();
    let zero = Adapter::load("zero", &tmp.path().join("zero")).unwrap();
    let mut m = tiny_model(&tmp.path().join("m"));
    let base = logits(&m, None);
    let s_one = m.attach_adapter(&one).unwrap();
    let s_zero = m.attach_adapter(&zero).unwrap();
    assert_eq!((s_one, s_zero), (0, 1));
    assert_eq!(logits(&m, Some(s_zero)), base);
    assert!(max_diff(&logits(&m, Some(s_one)), &base) > 1e-2);
    let ids = Tensor::new(&IDS[..], &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let err = m
        .forward_with(&ids, None, Logits::Last, Some(2))
        .unwrap_err();
    assert!(err.to_string().contains("no adapter in slot 2"), "{err}");
}

/// The fixture written by `scripts/make-peft-fixture.py` in PEFT's layout.
fn peft_fixture() -> std::path::PathBuf {
    common::root().join("tests/fixtures/peft-tiny")
}

#[test]
fn peft_names_config_and_scaling_match_an_adapter_saved_the_peft_way() {
    let adapter = Adapter::load("peft", &peft_fixture()).unwrap();
    let cfg = &adapter.config;
    assert_eq!((cfg.r, cfg.lora_alpha, cfg.use_rslora), (4, 8.0, true));
    assert_eq!(
        cfg.base_model_name_or_path.as_deref(),
        Some("sqlagent/tiny-llama-test")
    );
    let modules: Vec<&str> = adapter.deltas.keys().map(String::as_str).collect();
    assert_eq!(
        modules,
        [
            "model.layers.0.mlp.down_proj",
            "model.layers.0.self_attn.q_proj",
            "model.layers.0.self_attn.v_proj",
            "model.layers.1.mlp.down_proj",
            "model.layers.1.self_attn.q_proj",
            "model.layers.1.self_attn.v_proj",
        ]
    );
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(peft_fixture().join("expected.json")).unwrap(),
    )
    .unwrap();
    for (path, want) in expected.as_object().unwrap() {
        let delta = &adapter.deltas[path];
        assert_eq!(
            delta.rank() as u64,
            want["rank"].as_u64().unwrap(),
            "{path}"
        );
        let scale = want["scale"].as_f64().unwrap();
        assert!(
            (delta.scale - scale).abs() < 1e-12,
            "{path}: {} vs {scale}",
            delta.scale
        );
        let x: Vec<f32> = serde_json::from_value(want["x"].clone()).unwrap();
        let n = x.len();
        let x = Tensor::from_vec(x, (1, n), &Device::Cpu).unwrap();
        let got: Vec<f32> = delta
            .forward(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let want: Vec<f32> = serde_json::from_value(want["delta"].clone()).unwrap();
        let diff = max_diff(&got, &want);
        assert!(diff < 1e-4, "{path}: differs from numpy by {diff}");
    }
    // It fits the tiny model it was made for.
    let tmp = common::temp_dir();
    let mut m = tiny_model(tmp.path());
    let base = logits(&m, None);
    let slot = m.attach_adapter(&adapter).unwrap();
    assert!(max_diff(&logits(&m, Some(slot)), &base) > 1e-3);
}

/// Copies the fixture, lets `change` break it, and returns the load or
/// attach error.
fn broken(change: impl FnOnce(&Path)) -> Error {
    let tmp = common::temp_dir();
    let dir = tmp.path().join("broken");
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["adapter_config.json", "adapter_model.safetensors"] {
        std::fs::copy(peft_fixture().join(f), dir.join(f)).unwrap();
    }
    change(&dir);
    let adapter = match Adapter::load("broken", &dir) {
        Ok(a) => a,
        Err(e) => return e,
    };
    let mut m = tiny_model(&tmp.path().join("m"));
    m.attach_adapter(&adapter).expect_err("attach should fail")
}

fn rewrite_tensors(dir: &Path, edit: impl FnOnce(&mut BTreeMap<String, Tensor>)) {
    let path = dir.join("adapter_model.safetensors");
    let mut tensors: BTreeMap<String, Tensor> = candle_core::safetensors::load(&path, &Device::Cpu)
        .unwrap()
        .into_iter()
        .collect();
    edit(&mut tensors);
    let map: std::collections::HashMap<String, Tensor> = tensors.into_iter().collect();
    candle_core::safetensors::save(&map, &path).unwrap();
}

const Q0_A: &str = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight";
const Q0_B: &str = "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight";

#[test]
fn broken_adapters_give_typed_errors_naming_the_directory() {
    let kind = |e: Error| match e {
        Error::Adapter { path, kind } => {
            assert!(path.ends_with("broken"), "{}", path.display());
            kind
        }
        other => panic!("not an adapter error: {other}"),
    };
    let e = kind(broken(|d| {
        std::fs::remove_file(d.join("adapter_model.safetensors")).unwrap()
    }));
    assert!(
        matches!(e, AdapterError::MissingFile(ref f) if f.contains("adapter_model.safetensors")),
        "{e}"
    );
    let e = kind(broken(|d| {
        std::fs::remove_file(d.join("adapter_config.json")).unwrap()
    }));
    assert!(
        matches!(e, AdapterError::MissingFile(ref f) if f == "adapter_config.json"),
        "{e}"
    );
    let e = kind(broken(|d| std::fs::remove_dir_all(d).unwrap()));
    assert!(matches!(e, AdapterError::MissingFile(_)), "{e}");
    let e = kind(broken(|d| {
        std::fs::write(d.join("adapter_config.json"), "{\"r\": 4,").unwrap()
    }));
    assert!(matches!(e, AdapterError::Config(_)), "{e}");

    // A module no Llama has.
    let e = kind(broken(|d| {
        rewrite_tensors(d, |t| {
            let a = t.remove(Q0_A).unwrap();
            let b = t.remove(Q0_B).unwrap();
            t.insert(Q0_A.replace("q_proj", "rotary_emb"), a);
            t.insert(Q0_B.replace("q_proj", "rotary_emb"), b);
        })
    }));
    assert!(
        matches!(e, AdapterError::UnknownTargetModule { ref module, .. } if module.contains("rotary_emb")),
        "{e}"
    );
    // A layer this model does not have (caught when attaching).
    let e = kind(broken(|d| {
        rewrite_tensors(d, |t| {
            let a = t.remove(Q0_A).unwrap();
            let b = t.remove(Q0_B).unwrap();
            t.insert(Q0_A.replace("layers.0", "layers.9"), a);
            t.insert(Q0_B.replace("layers.0", "layers.9"), b);
        })
    }));
    assert!(
        matches!(e, AdapterError::UnknownTargetModule { ref module, .. } if module.contains("layers.9")),
        "{e}"
    );
    // A does not fit the projection's input width.
    let e = kind(broken(|d| {
        rewrite_tensors(d, |t| {
            t.insert(
                Q0_A.into(),
                Tensor::zeros((4, 63), DType::F32, &Device::Cpu).unwrap(),
            );
        })
    }));
    assert!(matches!(e, AdapterError::ShapeMismatch { .. }), "{e}");
    // B's rank differs from A's.
    let e = kind(broken(|d| {
        rewrite_tensors(d, |t| {
            t.insert(
                Q0_B.into(),
                Tensor::zeros((64, 3), DType::F32, &Device::Cpu).unwrap(),
            );
        })
    }));
    assert!(matches!(e, AdapterError::ShapeMismatch { .. }), "{e}");
    // A rank above the limit.
    let e = kind(broken(|d| {
        rewrite_tensors(d, |t| {
            t.insert(
                Q0_A.into(),
                Tensor::zeros((2000, 64), DType::F32, &Device::Cpu).unwrap(),
            );
            t.insert(
                Q0_B.into(),
                Tensor::zeros((64, 2000), DType::F32, &Device::Cpu).unwrap(),
            );
        })
    }));
    assert!(
        matches!(e, AdapterError::RankTooHigh { rank: 2000, .. }),
        "{e}"
    );
    // lora_A without lora_B.
    let e = kind(broken(|d| {
        rewrite_tensors(d, |t| {
            t.remove(Q0_B);
        })
    }));
    assert!(matches!(e, AdapterError::Unpaired { .. }), "{e}");
    // The configuration gives another rank than the tensors have: both
    // files are named, since either may be the wrong one.
    let e = kind(broken(|d| {
        let path = d.join("adapter_config.json");
        let mut config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        config["r"] = serde_json::json!(2);
        std::fs::write(&path, config.to_string()).unwrap();
    }));
    assert!(
        matches!(
            e,
            AdapterError::RankDiffers {
                rank: 4,
                configured: 2,
                ..
            }
        ),
        "{e}"
    );
    let text = e.to_string();
    assert!(
        text.contains("adapter_config.json") && text.contains("adapter_model.safetensors"),
        "{text}"
    );
    // A target module no Llama has, in the configuration.
    let e = kind(broken(|d| {
        let path = d.join("adapter_config.json");
        let mut config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        config["target_modules"] = serde_json::json!(["q_proj", "V_proj"]);
        std::fs::write(&path, config.to_string()).unwrap();
    }));
    assert!(
        matches!(e, AdapterError::Config(ref m) if m.contains("V_proj")),
        "{e}"
    );
}

#[test]
fn adapters_apply_unmerged_and_merged_on_a_quantized_gguf_base() {
    let Some(path) = common::smollm2_gguf() else {
        return;
    };
    let load = || {
        GgufFile::open(&path)
            .unwrap()
            .into_model(&Device::Cpu, GgufOptions::default())
            .unwrap()
            .0
    };
    let mut m = load();
    assert!(m.weight_type().is_some(), "quantized base");
    let cfg = m.config().clone();
    let (h, hd) = (cfg.hidden_size, cfg.head_dim);
    let tmp = common::temp_dir();
    let mut rng = StdRng::seed_from_u64(3);
    let mut deltas = BTreeMap::new();
    deltas.insert(
        "model.layers.0.self_attn.q_proj".to_string(),
        LoraDelta {
            a: random(&mut rng, 8, h, 0.2),
            b: random(&mut rng, cfg.num_heads * hd, 8, 0.2),
            scale: 2.0,
        },
    );
    deltas.insert(
        "model.layers.3.mlp.down_proj".to_string(),
        LoraDelta {
            a: random(&mut rng, 8, cfg.intermediate_size, 0.2),
            b: random(&mut rng, h, 8, 0.2),
            scale: 2.0,
        },
    );
    // The head is tied to the embeddings (held once): merging into it must
    // leave the embeddings as they were.
    deltas.insert(
        "lm_head".to_string(),
        LoraDelta {
            a: random(&mut rng, 8, h, 0.2),
            b: random(&mut rng, cfg.vocab_size, 8, 0.2),
            scale: 2.0,
        },
    );
    let config = serde_json::json!(
        {"r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "down_proj", "lm_head"]}
    );
    Adapter::save(tmp.path(), &config, &deltas).unwrap();
    let adapter = Adapter::load("smol", tmp.path()).unwrap();

    let ids: Vec<u32> = (0..24).map(|i| 100 + 37 * i).collect();
    let base = logits_of(&m, &ids, None);
    let slot = m.attach_adapter(&adapter).unwrap();
    let unmerged = logits_of(&m, &ids, Some(slot));
    assert!(
        max_diff(&base, &unmerged) > 1e-2,
        "the adapter changes the output"
    );
    let mut merged = load();
    merged.merge_adapter(&adapter).unwrap();
    let merged_logits = logits_of(&merged, &ids, None);
    // On dequantized weights throughout, unmerged and merged agree to
    // float precision.
    let mut dense = load();
    dense.make_dense().unwrap();
    let dense_slot = dense.attach_adapter(&adapter).unwrap();
    merged.make_dense().unwrap();
    let diff = max_diff(
        &logits_of(&dense, &ids, Some(dense_slot)),
        &logits_of(&merged, &ids, None),
    );
    assert!(diff < 1e-3, "unmerged vs merged differ by {diff}");
    // Quantized, the merged layers are dense while the unmerged ones
    // quantize their activations: within a few percent of the logits'
    // range.
    let range = merged_logits.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = max_diff(&unmerged, &merged_logits);
    assert!(
        diff < 0.06 * range,
        "quantized unmerged vs merged differ by {diff} (range {range})"
    );
    // One row (a decode step) takes the quantized kernels, adapter included.
    let one = logits_of(&m, &ids[..1], Some(slot));
    assert!(max_diff(&one, &logits_of(&m, &ids[..1], None)) > 1e-2);
}

#[test]
fn the_committed_adapters_carry_the_prompt_they_were_trained_with() {
    for name in ["spotify-songs", "music-demo"] {
        let dir = common::root().join("adapters").join(name);
        let record: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("training.json")).unwrap())
                .unwrap();
        let prompt = sqlagent::chat::PromptSpec::carried_by(&dir)
            .unwrap()
            .unwrap_or_else(|| panic!("{name} carries no prompt"));
        assert_eq!(prompt.name(), record["prompt"].as_str().unwrap());
        assert_eq!(
            prompt.content_hash(),
            record["prompt_hash"].as_str().unwrap()
        );
    }
}
