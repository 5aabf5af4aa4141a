//! LoRA training with candle's autograd on a tiny random Llama: the loss
//! on the answer tokens falls, runs are reproducible by seed, a stopped
//! run resumed from its checkpoint ends where an uninterrupted one does,
//! and the adapter it writes loads and answers like the trained model.

use candle_core::{DType, Device};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlagent::lora::Adapter;
use sqlagent::model::{self, Llama};
use sqlagent::tune::{self, TrainExample, TuneOptions};

use crate::common;
use crate::tiny::Tiny;

fn tiny_model(dir: &std::path::Path) -> Llama {
    Tiny::default().write(dir);
    model::load_safetensors_dir(dir, DType::F32, &Device::Cpu).unwrap()
}

/// Random "prompts" of 6-12 ids, each followed by the same 4-id answer
/// that depends on the prompt's first id (so there is something to learn).
fn examples(n: usize, seed: u64) -> Vec<TrainExample> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let len = rng.random_range(6..12);
            let mut ids: Vec<u32> = (0..len).map(|_| rng.random_range(10..120)).collect();
            let key = ids[0] % 2;
            ids.extend([3 + key, 7, 9 - key, 2]);
            TrainExample { ids, answer_len: 4 }
        })
        .collect()
}

/// The largest absolute entry of `t`.
fn max_abs(t: &candle_core::Tensor) -> f32 {
    t.abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

fn options() -> TuneOptions {
    TuneOptions {
        rank: 4,
        alpha: 8.0,
        targets: vec![
            "q_proj".into(),
            "v_proj".into(),
            "down_proj".into(),
            "lm_head".into(),
        ],
        learning_rate: 1e-2,
        epochs: 3,
        warmup_ratio: 0.1,
        grad_accum: 4,
        weight_decay: 0.0,
        seed: 5,
        checkpoint_every: 3,
    }
}

#[test]
fn training_lowers_the_answer_loss_and_is_reproducible() {
    let tmp = common::temp_dir();
    let train = examples(32, 1);
    let val = examples(8, 2);
    let mut m = tiny_model(&tmp.path().join("m"));
    let out = tmp.path().join("out");
    let first = tune::train(&mut m, &train, &val, &options(), &out, false, &mut |_| true).unwrap();
    assert!(first.finished);
    let logs = &first.state.epochs;
    assert_eq!(logs.len(), 3);
    let (start, end) = (logs[0].val_loss.unwrap(), logs[2].val_loss.unwrap());
    assert!(end < 0.7 * start, "validation loss {start} -> {end}");
    assert!(logs[2].train_loss < logs[0].train_loss);
    assert_eq!(first.state.steps, 3 * 8);

    // Same seed, same data: the same factors.
    let mut m2 = tiny_model(&tmp.path().join("m2"));
    let again = tune::train(
        &mut m2,
        &train,
        &val,
        &options(),
        &tmp.path().join("out2"),
        false,
        &mut |_| true,
    )
    .unwrap();
    for (k, d) in &first.deltas {
        let e = &again.deltas[k];
        let diff = max_abs(&(&d.a - &e.a).unwrap());
        assert!(diff < 1e-6, "{k}: runs differ by {diff}");
    }

    // The factors written as a PEFT adapter give the trained model's loss.
    let dir = tmp.path().join("adapter");
    Adapter::save(&dir, &tune::peft_config(&options(), None), &first.deltas).unwrap();
    let adapter = Adapter::load("trained", &dir).unwrap();
    let mut fresh = tiny_model(&tmp.path().join("m3"));
    let slot = fresh.attach_adapter(&adapter).unwrap();
    let loss = tune::mean_loss(&fresh, &val, slot).unwrap();
    assert!(
        (loss - end).abs() < 1e-4,
        "reloaded adapter loss {loss} vs {end}"
    );
}

#[test]
fn a_stopped_run_resumed_from_its_checkpoint_ends_like_an_uninterrupted_one() {
    let tmp = common::temp_dir();
    let train = examples(24, 3);
    let val = examples(4, 4);
    let mut whole = tiny_model(&tmp.path().join("m1"));
    let full = tune::train(
        &mut whole,
        &train,
        &val,
        &options(),
        &tmp.path().join("a"),
        false,
        &mut |_| true,
    )
    .unwrap();

    let out = tmp.path().join("b");
    let mut part = tiny_model(&tmp.path().join("m2"));
    // Ask to stop in the middle of the second epoch.
    let mut calls = 0;
    let stopped = tune::train(
        &mut part,
        &train,
        &val,
        &options(),
        &out,
        false,
        &mut |_| {
            calls += 1;
            calls < 35
        },
    )
    .unwrap();
    assert!(!stopped.finished);
    assert!(tune::checkpoint_dir(&out).join("state.json").exists());
    let mut resumed_model = tiny_model(&tmp.path().join("m3"));
    let resumed = tune::train(
        &mut resumed_model,
        &train,
        &val,
        &options(),
        &out,
        true,
        &mut |_| true,
    )
    .unwrap();
    assert!(resumed.finished);
    assert_eq!(resumed.state.steps, full.state.steps);
    for (k, d) in &full.deltas {
        let e = &resumed.deltas[k];
        let diff = max_abs(&(&d.b - &e.b).unwrap());
        assert!(diff < 1e-5, "{k}: resumed run differs by {diff}");
    }
    let (a, b) = (
        full.state.epochs[2].val_loss.unwrap(),
        resumed.state.epochs[2].val_loss.unwrap(),
    );
    assert!((a - b).abs() < 1e-5, "{a} vs {b}");

    // Other hyper-parameters cannot resume that checkpoint.
    let mut other = options();
    other.learning_rate = 1e-3;
    let err = tune::train(
        &mut tiny_model(&tmp.path().join("m4")),
        &train,
        &val,
        &other,
        &out,
        true,
        &mut |_| true,
    )
    .unwrap_err();
    assert!(err.to_string().contains("other hyper-parameters"), "{err}");
}

#[test]
fn a_prompt_shared_by_a_step_runs_once_with_the_losses_and_gradients_of_separate_passes() {
    use candle_core::{Tensor, Var};
    use sqlagent::lora::{AdapterConfig, LoraDelta};
    use sqlagent::model::Logits;
    use std::collections::BTreeMap;

    let tmp = common::temp_dir();
    let mut m = tiny_model(tmp.path());
    m.set_differentiable(true);
    let mut rng = StdRng::seed_from_u64(9);
    let mut random =
        |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-0.3..0.3)).collect() };
    let (mut vars, mut deltas) = (Vec::new(), BTreeMap::new());
    for (path, (o, i)) in m.projections(&["q_proj", "v_proj", "down_proj", "lm_head"]) {
        let a = Var::from_tensor(&Tensor::from_vec(random(4 * i), (4, i), &Device::Cpu).unwrap())
            .unwrap();
        let b = Var::from_tensor(&Tensor::from_vec(random(o * 4), (o, 4), &Device::Cpu).unwrap())
            .unwrap();
        deltas.insert(
            path,
            LoraDelta {
                a: a.as_tensor().clone(),
                b: b.as_tensor().clone(),
                scale: 2.0,
            },
        );
        vars.extend([a, b]);
    }
    let config = tune::peft_config(&options(), None).to_string();
    let adapter = Adapter {
        name: "t".into(),
        dir: tmp.path().to_path_buf(),
        config: AdapterConfig::from_json(&config).unwrap(),
        deltas,
    };
    let slot = m.attach_adapter(&adapter).unwrap();

    // A 12-id "schema prompt" shared by every example, then its own
    // question (2-4 ids) and a 4-id answer.
    let mut rng = StdRng::seed_from_u64(10);
    let prompt: Vec<u32> = (0..12).map(|_| rng.random_range(10..120)).collect();
    let examples: Vec<TrainExample> = (0..5)
        .map(|_| {
            let mut ids = prompt.clone();
            let tail = rng.random_range(2..5);
            ids.extend((0..tail).map(|_| rng.random_range(10..120)));
            ids.extend((0..4).map(|_| rng.random_range(3..10)));
            TrainExample { ids, answer_len: 4 }
        })
        .collect();

    let separate: Vec<Tensor> = examples
        .iter()
        .map(|ex| {
            let n = ex.ids.len();
            let input = Tensor::new(&ex.ids[..n - 1], &Device::Cpu)
                .unwrap()
                .unsqueeze(0)
                .unwrap();
            let logits = m
                .forward_with(&input, None, Logits::Tail(4), Some(slot))
                .unwrap()
                .squeeze(0)
                .unwrap();
            let targets = Tensor::new(&ex.ids[n - 4..], &Device::Cpu).unwrap();
            candle_nn::loss::cross_entropy(&logits, &targets).unwrap()
        })
        .collect();
    let refs: Vec<&TrainExample> = examples.iter().collect();
    let (losses, grads) = tune::step_gradients(&m, &refs, slot, &vars, 1.0).unwrap();
    assert_eq!(losses.len(), separate.len());
    for (s, t) in losses.iter().zip(&separate) {
        let t = t.to_scalar::<f32>().unwrap() as f64;
        assert!(
            (s - t).abs() < 1e-5,
            "loss {s} with the shared prompt vs {t}"
        );
    }
    let sum = Tensor::stack(&separate, 0).unwrap().sum_all().unwrap();
    let by_separate_passes = sum.backward().unwrap();
    for (v, a) in vars.iter().zip(&grads) {
        let b = by_separate_passes.get(v.as_tensor()).unwrap();
        let (scale, diff) = (max_abs(b), max_abs(&(a - b).unwrap()));
        assert!(scale > 0.0, "zero gradient");
        assert!(
            diff <= 1e-4 * scale.max(1.0),
            "gradients differ by {diff} (scale {scale})"
        );
    }
}
