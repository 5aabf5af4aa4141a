//! The LoRA training loop: trainable factors as candle `Var`s attached to a
//! frozen, dense base; loss on the answer tokens only; AdamW with warm-up
//! and cosine decay; gradient accumulation; validation loss per epoch;
//! checkpoints that a resumed run continues from exactly.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::adamw::{learning_rate, AdamW, AdamWParams};
use super::data::TrainExample;
use crate::error::{Error, Result};
use crate::lora::{Adapter, LoraDelta, ADAPTER_WEIGHTS_FILE};
use crate::model::{Cache, Llama, Logits};

/// Hyper-parameters of one training run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TuneOptions {
    /// LoRA rank.
    pub rank: usize,
    /// LoRA alpha (scale `alpha / rank`).
    pub alpha: f64,
    /// Projections to adapt (`q_proj`, `v_proj`, …).
    pub targets: Vec<String>,
    /// Peak learning rate.
    pub learning_rate: f64,
    /// Passes over the training examples.
    pub epochs: usize,
    /// Share of the optimizer steps spent warming up (0 to 1).
    pub warmup_ratio: f64,
    /// Examples per optimizer step.
    pub grad_accum: usize,
    /// AdamW's decoupled weight decay.
    pub weight_decay: f64,
    /// Seed of initialisation and shuffling.
    pub seed: u64,
    /// Optimizer steps between checkpoints (0: only at epoch ends).
    pub checkpoint_every: usize,
}

impl Default for TuneOptions {
    fn default() -> Self {
        Self {
            rank: 8,
            alpha: 16.0,
            targets: vec!["q_proj".into(), "v_proj".into()],
            learning_rate: 2e-4,
            epochs: 2,
            warmup_ratio: 0.06,
            grad_accum: 8,
            weight_decay: 0.0,
            seed: 0,
            checkpoint_every: 25,
        }
    }
}

/// Loss and speed of one epoch.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EpochLog {
    /// 1-based.
    pub epoch: usize,
    /// Mean cross-entropy over the epoch's answer tokens.
    pub train_loss: f64,
    /// Mean cross-entropy over the validation answers (`None` without a
    /// validation split).
    pub val_loss: Option<f64>,
    /// Tokens fed to the model in the epoch.
    pub tokens: usize,
    /// Seconds the epoch took (this process's share, when resumed).
    pub seconds: f64,
}

/// Where a run is, saved with every checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrainState {
    /// The options the run was started with (a resume must match them).
    pub options: TuneOptions,
    /// 0-based epoch in progress.
    pub epoch: usize,
    /// Examples of that epoch already used.
    pub next_example: usize,
    /// Optimizer steps taken.
    pub steps: usize,
    /// Sum of answer-token losses and answer tokens so far in the epoch.
    pub epoch_loss_sum: f64,
    /// Answer tokens so far in the epoch.
    pub epoch_answer_tokens: usize,
    /// Tokens fed so far in the epoch.
    pub epoch_tokens: usize,
    /// Seconds spent so far in the epoch.
    pub epoch_seconds: f64,
    /// Finished epochs.
    pub epochs: Vec<EpochLog>,
    /// Tokens fed in the whole run.
    pub tokens: usize,
    /// Seconds of training in the whole run.
    pub seconds: f64,
}

/// Progress reported for every example, once its optimizer step is done.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Examples done over the whole run.
    pub done: usize,
    /// Examples in the whole run.
    pub total: usize,
    /// Mean loss so far in the epoch.
    pub loss: f64,
    /// Tokens per second so far.
    pub tokens_per_s: f64,
    /// 1-based epoch.
    pub epoch: usize,
}

/// What a finished run produced.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    /// The final state (losses per epoch, steps, tokens, seconds).
    pub state: TrainState,
    /// The trained factors by module path.
    pub deltas: BTreeMap<String, LoraDelta>,
    /// False when `on_progress` stopped the run early (a checkpoint was
    /// saved; `resume` continues it).
    pub finished: bool,
}

/// The checkpoint directory inside an output directory.
pub fn checkpoint_dir(out: &Path) -> PathBuf {
    out.join("checkpoint")
}

/// Trains a LoRA adapter on `train` (loss reported on `val` after each
/// epoch) into `model`, which must be dense (see [`Llama::make_dense`]).
/// Checkpoints go to `out/checkpoint`; with `resume`, the run continues
/// from the one there. `on_progress` is called for every example once its
/// optimizer step is done; when it returns false, the run stops there,
/// saving a checkpoint.
pub fn train(
    model: &mut Llama,
    train: &[TrainExample],
    val: &[TrainExample],
    options: &TuneOptions,
    out: &Path,
    resume: bool,
    on_progress: &mut dyn FnMut(Progress) -> bool,
) -> Result<TrainOutcome> {
    if train.is_empty() {
        return Err(Error::invalid("training pairs", "no training examples"));
    }
    if options.rank == 0 || options.epochs == 0 || options.grad_accum == 0 {
        return Err(Error::invalid(
            "tune options",
            "rank, epochs and examples per step must be at least 1",
        ));
    }
    let names: Vec<&str> = options.targets.iter().map(String::as_str).collect();
    let modules = model.projections(&names);
    if modules.is_empty() {
        return Err(Error::invalid(
            "targets",
            format!("names no projection of this model: {}", names.join(", ")),
        ));
    }
    model.set_differentiable(true);
    let device = model.device().clone();

    // Factors: A uniform in ±1/√in (PEFT's Kaiming init), B zero.
    let mut rng = StdRng::seed_from_u64(options.seed);
    let scale = options.alpha / options.rank as f64;
    let mut vars = Vec::new();
    let mut deltas = BTreeMap::new();
    for (path, (out_f, in_f)) in &modules {
        let bound = 1.0 / (*in_f as f32).sqrt();
        let a: Vec<f32> = (0..options.rank * in_f)
            .map(|_| rng.random_range(-bound..bound))
            .collect();
        let a = Var::from_tensor(&Tensor::from_vec(a, (options.rank, *in_f), &device)?)?;
        let b = Var::zeros((*out_f, options.rank), DType::F32, &device)?;
        deltas.insert(
            path.clone(),
            LoraDelta {
                a: a.as_tensor().clone(),
                b: b.as_tensor().clone(),
                scale,
            },
        );
        vars.push(a);
        vars.push(b);
    }
    let adapter = Adapter {
        name: "training".into(),
        dir: out.to_path_buf(),
        config: crate::lora::AdapterConfig::from_json(&peft_config(options, None).to_string())
            .map_err(|kind| Error::Adapter {
                path: out.to_path_buf(),
                kind,
            })?,
        deltas,
    };
    let slot = model.attach_adapter(&adapter)?;
    let params = AdamWParams {
        weight_decay: options.weight_decay,
        ..AdamWParams::default()
    };
    let mut opt = AdamW::new(vars.clone(), params)?;

    let steps_per_epoch = train.len().div_ceil(options.grad_accum);
    let total_steps = steps_per_epoch * options.epochs;
    let warmup = ((total_steps as f64) * options.warmup_ratio).round() as usize;
    let mut state = TrainState {
        options: options.clone(),
        epoch: 0,
        next_example: 0,
        steps: 0,
        epoch_loss_sum: 0.0,
        epoch_answer_tokens: 0,
        epoch_tokens: 0,
        epoch_seconds: 0.0,
        epochs: Vec::new(),
        tokens: 0,
        seconds: 0.0,
    };
    let ckpt = checkpoint_dir(out);
    if resume {
        let paths: Vec<&str> = modules.iter().map(|(p, _)| p.as_str()).collect();
        state = load_checkpoint(&ckpt, options, &paths, &vars, &mut opt)?;
    }

    let total_examples = train.len() * options.epochs;
    let mut stop = false;
    while state.epoch < options.epochs {
        let order = epoch_order(train, options, state.epoch);
        let mut started = Instant::now();
        while state.next_example < order.len() {
            // One optimizer step: its examples run together, so the prompt
            // they share is computed once (see `step_gradients`).
            let end = (state.next_example + options.grad_accum).min(order.len());
            let group: Vec<&TrainExample> = order[state.next_example..end]
                .iter()
                .map(|&i| &train[i])
                .collect();
            let (values, step_grads) =
                step_gradients(model, &group, slot, &vars, options.grad_accum as f64)?;
            let lr = learning_rate(state.steps, total_steps, warmup, options.learning_rate);
            opt.step(&step_grads, lr)?;
            state.steps += 1;
            state.next_example = end;
            for (ex, value) in group.iter().zip(&values) {
                state.epoch_loss_sum += value * ex.answer_len as f64;
                state.epoch_answer_tokens += ex.answer_len;
                state.epoch_tokens += ex.fed_tokens();
                state.tokens += ex.fed_tokens();
            }
            let elapsed = started.elapsed().as_secs_f64();
            started = Instant::now();
            state.epoch_seconds += elapsed;
            state.seconds += elapsed;
            let end_of_epoch = state.next_example == order.len();
            for done in (end - group.len() + 1)..=end {
                stop |= !on_progress(Progress {
                    done: state.epoch * train.len() + done,
                    total: total_examples,
                    loss: state.epoch_loss_sum / state.epoch_answer_tokens.max(1) as f64,
                    tokens_per_s: state.tokens as f64 / state.seconds.max(1e-9),
                    epoch: state.epoch + 1,
                });
            }
            let due = options.checkpoint_every > 0
                && state.steps.is_multiple_of(options.checkpoint_every);
            if (due || stop) && !end_of_epoch {
                save_checkpoint(&ckpt, &state, &adapter, options, &opt)?;
            }
            if stop && !end_of_epoch {
                return finish(model, state, &adapter, false);
            }
        }
        let val_loss = if val.is_empty() {
            None
        } else {
            Some(mean_loss(model, val, slot)?)
        };
        state.epochs.push(EpochLog {
            epoch: state.epoch + 1,
            train_loss: state.epoch_loss_sum / state.epoch_answer_tokens.max(1) as f64,
            val_loss,
            tokens: state.epoch_tokens,
            seconds: state.epoch_seconds,
        });
        state.epoch += 1;
        state.next_example = 0;
        state.epoch_loss_sum = 0.0;
        state.epoch_answer_tokens = 0;
        state.epoch_tokens = 0;
        state.epoch_seconds = 0.0;
        save_checkpoint(&ckpt, &state, &adapter, options, &opt)?;
        if stop && state.epoch < options.epochs {
            return finish(model, state, &adapter, false);
        }
    }
    finish(model, state, &adapter, true)
}

fn finish(
    model: &mut Llama,
    state: TrainState,
    adapter: &Adapter,
    finished: bool,
) -> Result<TrainOutcome> {
    model.set_differentiable(false);
    Ok(TrainOutcome {
        state,
        deltas: cpu_copy(&adapter.deltas)?,
        finished,
    })
}

/// The current factors, detached from the graph, on the CPU.
fn cpu_copy(deltas: &BTreeMap<String, LoraDelta>) -> Result<BTreeMap<String, LoraDelta>> {
    deltas
        .iter()
        .map(|(k, d)| {
            Ok((
                k.clone(),
                LoraDelta {
                    a: d.a.detach().to_device(&Device::Cpu)?.copy()?,
                    b: d.b.detach().to_device(&Device::Cpu)?.copy()?,
                    scale: d.scale,
                },
            ))
        })
        .collect()
}

/// The answer losses of one optimizer step's `examples`, and the gradient
/// of their sum, each divided by `divisor`, for every var in `vars` (zeros
/// where none reaches it).
///
/// The prompt the examples share (the schema prompt, when they are over
/// one database) runs forward once. Each example continues it from the
/// prompt's keys and values held as leaves and backpropagates on its own,
/// so that only one example's graph is alive at a time; last, the leaves'
/// summed gradients go back through the prompt once. The result equals
/// separate full passes, for a fraction of the work.
pub fn step_gradients(
    model: &Llama,
    examples: &[&TrainExample],
    slot: usize,
    vars: &[Var],
    divisor: f64,
) -> Result<(Vec<f64>, Vec<Tensor>)> {
    let shared = shared_prefix(examples);
    let prompt = prompt_tensors(model, examples, shared, slot)?;
    let leaves = prompt
        .iter()
        .map(|(k, v)| {
            Ok((
                Var::from_tensor(&k.detach())?,
                Var::from_tensor(&v.detach())?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut grads: Vec<Option<Tensor>> = vec![None; vars.len()];
    let mut leaf_grads: Vec<Option<Tensor>> = vec![None; 2 * leaves.len()];
    let mut losses = Vec::with_capacity(examples.len());
    for ex in examples {
        let kv = leaves
            .iter()
            .map(|(k, v)| (k.as_tensor().clone(), v.as_tensor().clone()))
            .collect();
        let loss = answer_loss(model, Cache::tracked_from(model, kv)?, ex, shared, slot)?;
        losses.push(loss.to_scalar::<f32>()? as f64);
        let store = (loss / divisor)?.backward()?;
        accumulate(&mut grads, vars.iter().map(|v| store.get(v.as_tensor())))?;
        accumulate(
            &mut leaf_grads,
            leaves
                .iter()
                .flat_map(|(k, v)| [store.get(k.as_tensor()), store.get(v.as_tensor())]),
        )?;
    }
    // ⟨K, ∂L/∂K⟩ + ⟨V, ∂L/∂V⟩ summed over layers: its gradient through the
    // prompt is the prompt's share of the examples' gradient.
    let mut through_prompt: Option<Tensor> = None;
    let tensors = prompt.iter().flat_map(|(k, v)| [k, v]);
    for (t, g) in tensors.zip(&leaf_grads) {
        if let Some(g) = g {
            let term = (t * g)?.sum_all()?;
            through_prompt = Some(match through_prompt {
                Some(sum) => (sum + term)?,
                None => term,
            });
        }
    }
    if let Some(surrogate) = through_prompt {
        let store = surrogate.backward()?;
        accumulate(&mut grads, vars.iter().map(|v| store.get(v.as_tensor())))?;
    }
    let grads = grads
        .into_iter()
        .zip(vars)
        .map(|(g, v)| g.map(Ok).unwrap_or_else(|| v.as_tensor().zeros_like()))
        .collect::<candle_core::Result<Vec<_>>>()?;
    Ok((losses, grads))
}

/// Adds each new gradient into its running sum.
fn accumulate<'a>(
    sums: &mut [Option<Tensor>],
    new: impl Iterator<Item = Option<&'a Tensor>>,
) -> Result<()> {
    for (sum, g) in sums.iter_mut().zip(new) {
        if let Some(g) = g {
            *sum = Some(match sum.take() {
                Some(s) => (s + g)?,
                None => g.clone(),
            });
        }
    }
    Ok(())
}

/// Every layer's keys and values of the first `shared` ids of
/// `examples[0]` (with their graph), or nothing when `shared` is 0.
fn prompt_tensors(
    model: &Llama,
    examples: &[&TrainExample],
    shared: usize,
    slot: usize,
) -> Result<Vec<(Tensor, Tensor)>> {
    let Some(first) = examples.first().filter(|_| shared > 0) else {
        return Ok(Vec::new());
    };
    let mut cache = Cache::tracked(model);
    let ids = Tensor::new(&first.ids[..shared], model.device())?.unsqueeze(0)?;
    model.forward_with(&ids, Some(&mut cache), Logits::Tail(1), Some(slot))?;
    cache.layer_tensors()
}

/// Mean cross-entropy of `ex`'s answer tokens, its ids after the first
/// `shared` fed on top of `cache` (which holds those).
fn answer_loss(
    model: &Llama,
    mut cache: Cache,
    ex: &TrainExample,
    shared: usize,
    slot: usize,
) -> Result<Tensor> {
    let device = model.device();
    let n = ex.ids.len();
    let k = ex.answer_len.min(n - 1);
    let input = Tensor::new(&ex.ids[shared..n - 1], device)?.unsqueeze(0)?;
    let logits = model
        .forward_with(&input, Some(&mut cache), Logits::Tail(k), Some(slot))?
        .squeeze(0)?;
    let targets = Tensor::new(&ex.ids[n - k..], device)?;
    Ok(candle_nn::loss::cross_entropy(&logits, &targets)?)
}

/// How many leading ids every example shares, leaving each at least its
/// answer (and one id) to feed after them.
fn shared_prefix(examples: &[&TrainExample]) -> usize {
    let Some(first) = examples.first() else {
        return 0;
    };
    examples
        .iter()
        .map(|ex| {
            let n = ex.ids.len();
            let common = first
                .ids
                .iter()
                .zip(&ex.ids)
                .take_while(|(a, b)| a == b)
                .count();
            common.min(n.saturating_sub(1 + ex.answer_len.max(1)))
        })
        .min()
        .unwrap_or(0)
}

/// Answer-token-weighted mean loss over `examples`, without gradients
/// (in groups of 8 whose shared prompt runs once).
pub fn mean_loss(model: &Llama, examples: &[TrainExample], slot: usize) -> Result<f64> {
    let (mut sum, mut tokens) = (0.0, 0usize);
    for chunk in examples.chunks(8) {
        let group: Vec<&TrainExample> = chunk.iter().collect();
        let shared = shared_prefix(&group);
        let prompt: Vec<(Tensor, Tensor)> = prompt_tensors(model, &group, shared, slot)?
            .into_iter()
            .map(|(k, v)| (k.detach(), v.detach()))
            .collect();
        for ex in chunk {
            let cache = Cache::tracked_from(model, prompt.clone())?;
            let loss = answer_loss(model, cache, ex, shared, slot)?.detach();
            sum += loss.to_scalar::<f32>()? as f64 * ex.answer_len as f64;
            tokens += ex.answer_len;
        }
    }
    Ok(sum / tokens.max(1) as f64)
}

/// The order of the examples in `epoch`: a shuffle that depends only on
/// the seed and the epoch, so a resumed run sees the same order.
fn epoch_order(train: &[TrainExample], options: &TuneOptions, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..train.len()).collect();
    let mut rng = StdRng::seed_from_u64(
        options.seed ^ (0x9e37_79b9_7f4a_7c15u64.wrapping_mul(epoch as u64 + 1)),
    );
    order.shuffle(&mut rng);
    // Within each window of a few steps, examples with alike prompts go
    // next to each other, so the steps' examples share longer prompts
    // (computed once, see `step_gradients`). Prompts focused on a
    // question's tables differ from question to question; sorted, those
    // over the same tables share all of their schema part.
    let window = options.grad_accum.max(1) * SHARING_WINDOW_STEPS;
    for chunk in order.chunks_mut(window) {
        chunk.sort_by(|&a, &b| {
            let prompt = |i: usize| &train[i].ids[..train[i].ids.len() - train[i].answer_len];
            prompt(a).cmp(prompt(b)).then(a.cmp(&b))
        });
    }
    order
}

/// Optimizer steps whose examples are ordered by prompt together.
const SHARING_WINDOW_STEPS: usize = 8;

/// PEFT's `adapter_config.json` for a run with `options`.
pub fn peft_config(options: &TuneOptions, base_model: Option<&str>) -> serde_json::Value {
    serde_json::json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model,
        "r": options.rank,
        "lora_alpha": options.alpha,
        "lora_dropout": 0.0,
        "target_modules": options.targets,
        "bias": "none",
        "fan_in_fan_out": false,
        "use_rslora": false,
        "use_dora": false,
        "modules_to_save": null,
        "rank_pattern": {},
        "alpha_pattern": {},
        "inference_mode": true,
        "init_lora_weights": true,
    })
}

fn save_checkpoint(
    dir: &Path,
    state: &TrainState,
    adapter: &Adapter,
    options: &TuneOptions,
    opt: &AdamW,
) -> Result<()> {
    // Written beside, then renamed: a crash mid-save keeps the last one.
    let tmp = dir.with_extension("partial");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|source| Error::Io {
            path: tmp.clone(),
            source,
        })?;
    }
    Adapter::save(
        &tmp,
        &peft_config(options, None),
        &cpu_copy(&adapter.deltas)?,
    )?;
    opt.save(&tmp.join("optimizer.safetensors"))?;
    let text = serde_json::to_string_pretty(state)
        .map_err(|e| Error::invalid("checkpoint", e.to_string()))?;
    let state_path = tmp.join("state.json");
    std::fs::write(&state_path, text).map_err(|source| Error::Io {
        path: state_path,
        source,
    })?;
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    std::fs::rename(&tmp, dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })
}

fn load_checkpoint(
    dir: &Path,
    options: &TuneOptions,
    paths: &[&str],
    vars: &[Var],
    opt: &mut AdamW,
) -> Result<TrainState> {
    let bad = |m: String| Error::invalid("checkpoint", format!("{}: {m}", dir.display()));
    let state_path = dir.join("state.json");
    let text = std::fs::read_to_string(&state_path)
        .map_err(|_| bad("no checkpoint to resume from (state.json is missing)".into()))?;
    let state: TrainState =
        serde_json::from_str(&text).map_err(|e| bad(format!("state.json: {e}")))?;
    if state.options != *options {
        return Err(bad(
            "the checkpoint was made with other hyper-parameters; pass the same ones".into(),
        ));
    }
    let saved = Adapter::load("checkpoint", dir)?;
    // Vars are in module order, A then B (see `train`).
    for (path, pair) in paths.iter().zip(vars.chunks(2)) {
        let d = saved
            .deltas
            .get(*path)
            .ok_or_else(|| bad(format!("{ADAPTER_WEIGHTS_FILE} has no {path}")))?;
        pair[0].set(&d.a.to_device(pair[0].device())?)?;
        pair[1].set(&d.b.to_device(pair[1].device())?)?;
    }
    opt.load(&dir.join("optimizer.safetensors"))?;
    if opt.steps() != state.steps {
        return Err(bad("optimizer and state disagree on the step count".into()));
    }
    Ok(state)
}
