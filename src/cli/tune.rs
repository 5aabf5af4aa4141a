//! `sqlagent tune`: LoRA training on question/SQL pairs, written as a PEFT
//! adapter plus `training.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::args::{TuneArgs, TuneBackend};
use super::output;
use crate::chat::PromptSpec;
use crate::eval::{file_sha256, load_set, model_fingerprint};
use crate::lora::Adapter;
use crate::sql::{Database, Schema};
use crate::tune::{self, TrainExample, TuneOptions};

/// Runs `sqlagent tune`.
pub fn tune(args: TuneArgs) -> Result<()> {
    if args.backend == TuneBackend::Lamini {
        return lamini(&args);
    }
    if !args.model.adapters.is_empty() {
        bail!("--adapter: tune trains a new adapter on the base model; it does not start from one");
    }
    if !(0.0..1.0).contains(&args.val_fraction) {
        bail!("--val-fraction must be in [0, 1)");
    }
    if !(0.0..=1.0).contains(&args.warmup) {
        bail!("--warmup must be in [0, 1]");
    }
    let checkpoint = tune::checkpoint_dir(&args.out);
    if !args.resume && checkpoint.exists() {
        bail!(
            "{} holds an unfinished run: continue it with --resume, or remove it",
            checkpoint.display()
        );
    }
    let items = pairs_with_schemas(&args)?;
    let prompt = PromptSpec::load(&args.prompt)?;
    let (mut engine, _) = args.model.load_engine()?;

    // Every pair, rendered by the inference prompt code.
    let mut schemas: BTreeMap<PathBuf, Schema> = BTreeMap::new();
    let mut examples = Vec::new();
    let mut too_long = 0usize;
    for (i, (item, db)) in items.iter().enumerate() {
        if !schemas.contains_key(db) {
            let schema = Database::open(db).and_then(|d| d.schema())?;
            schemas.insert(db.clone(), schema);
        }
        let ex = tune::example(&engine, &prompt, &schemas[db], &item.question, &item.sql)
            .with_context(|| format!("{}: pair {}", args.train.display(), i + 1))?;
        if ex.ids.len() > args.max_len {
            too_long += 1;
            continue;
        }
        examples.push(ex);
    }
    if examples.is_empty() {
        bail!("every pair is longer than --max-len {}", args.max_len);
    }
    let (train, val) = split(examples, args.val_fraction, args.seed);

    let options = TuneOptions {
        rank: args.rank,
        alpha: args.alpha,
        targets: args.targets.clone(),
        learning_rate: args.lr,
        epochs: args.epochs,
        warmup_ratio: args.warmup,
        grad_accum: args.grad_accum,
        weight_decay: args.weight_decay,
        seed: args.seed,
        checkpoint_every: args.checkpoint_every,
    };
    engine.model.make_dense()?;
    let bar = output::progress((train.len() * options.epochs) as u64);
    let started = std::time::Instant::now();
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut last_line = started;
    let outcome = tune::train(
        &mut engine.model,
        &train,
        &val,
        &options,
        &args.out,
        args.resume,
        &mut |p| {
            let line = format!(
                "epoch {} loss {:.3} {:.0} tok/s",
                p.epoch, p.loss, p.tokens_per_s
            );
            bar.set_position(p.done as u64);
            bar.set_message(line.clone());
            // Without a terminal (a log file, CI) the bar is hidden: a
            // plain line every half minute instead.
            if !terminal && (last_line.elapsed().as_secs() >= 30 || p.done == p.total) {
                eprintln!("tune: {}/{} pairs, {line}", p.done, p.total);
                last_line = std::time::Instant::now();
            }
            true
        },
    );
    bar.finish_and_clear();
    let outcome = outcome?;

    let base = args.model.model.clone();
    Adapter::save(
        &args.out,
        &tune::peft_config(&options, Some(&base)),
        &outcome.deltas,
    )?;
    let state = &outcome.state;
    let record = serde_json::json!({
        "tool_version": env!("CARGO_PKG_VERSION"),
        "base_model": base,
        "model_fingerprint": model_fingerprint(&engine.info.path)?,
        "device": format!("{:?}", engine.model.device()),
        "train_file": args.train.display().to_string(),
        "data_sha256": file_sha256(&args.train)?,
        "prompt": prompt.name(),
        "prompt_hash": prompt.content_hash(),
        "pairs": {
            "total": items.len(),
            "train": train.len(),
            "validation": val.len(),
            "skipped_longer_than_max_len": too_long,
        },
        "max_len": args.max_len,
        "hyper_parameters": options,
        "epochs": state.epochs,
        "optimizer_steps": state.steps,
        "tokens": state.tokens,
        "train_seconds": state.seconds,
        "tokens_per_s": state.tokens as f64 / state.seconds.max(1e-9),
        "wall_seconds_this_process": started.elapsed().as_secs_f64(),
        "peak_rss_mb": peak_rss_mb(),
    });
    let path = args.out.join("training.json");
    std::fs::write(&path, serde_json::to_string_pretty(&record)?)
        .with_context(|| format!("writing {}", path.display()))?;
    std::fs::remove_dir_all(&checkpoint)
        .with_context(|| format!("removing {}", checkpoint.display()))?;

    outln!("adapter written to {}", args.out.display());
    outln!(
        "pairs: {} train, {} validation, {} skipped (longer than {} tokens)",
        train.len(),
        val.len(),
        too_long,
        args.max_len
    );
    outln!("| epoch | train loss | validation loss | tokens | seconds |");
    outln!("|---|---|---|---|---|");
    for e in &state.epochs {
        outln!(
            "| {} | {:.4} | {} | {} | {:.0} |",
            e.epoch,
            e.train_loss,
            e.val_loss.map_or("-".into(), |v| format!("{v:.4}")),
            e.tokens,
            e.seconds
        );
    }
    outln!(
        "{:.0} tokens/s over {:.0} s; peak memory {}",
        state.tokens as f64 / state.seconds.max(1e-9),
        state.seconds,
        peak_rss_mb().map_or("unknown".into(), |m| format!("{m:.0} MB"))
    );
    Ok(())
}

/// A seeded split: `fraction` of the examples (at least one when there
/// are two or more and the fraction is positive) for validation.
fn split(
    mut all: Vec<TrainExample>,
    fraction: f64,
    seed: u64,
) -> (Vec<TrainExample>, Vec<TrainExample>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    all.shuffle(&mut rng);
    let mut n_val = (all.len() as f64 * fraction).round() as usize;
    if fraction > 0.0 && all.len() >= 2 {
        n_val = n_val.max(1);
    }
    let n_val = n_val.min(all.len().saturating_sub(1));
    let train = all.split_off(n_val);
    (train, all)
}

/// Peak resident memory of this process (Linux `VmHWM`), in MB.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string(Path::new("/proc/self/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// The pairs of `--train` with the database each is about.
fn pairs_with_schemas(args: &TuneArgs) -> Result<Vec<(crate::eval::SetItem, PathBuf)>> {
    let items = load_set(&args.train)?;
    if items.is_empty() {
        bail!("{}: no training pairs", args.train.display());
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let db = match (&item.db, &args.db) {
                (Some(p), _) | (None, Some(p)) => p.clone(),
                (None, None) => bail!(
                    "{}: pair {} ({:?}) has no \"db\"; pass --db",
                    args.train.display(),
                    i + 1,
                    item.question
                ),
            };
            Ok((item, db))
        })
        .collect()
}

/// `tune --backend lamini`: submits the pairs as a Lamini tuning job (or,
/// with `--resume`, follows the one recorded in `--out/lamini.json`), polls
/// it to the end, and records the job and the tuned model's name.
fn lamini(args: &TuneArgs) -> Result<()> {
    use crate::tune::lamini::{LaminiClient, LaminiPair};
    let record_path = args.out.join("lamini.json");
    let client = LaminiClient::new(
        &args.lamini_url,
        &args.lamini_key_env,
        std::time::Duration::from_secs(120),
    )?;
    let mut record: serde_json::Value = if args.resume {
        let text = std::fs::read_to_string(&record_path)
            .with_context(|| format!("--resume: reading {}", record_path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("--resume: {} is not a job record", record_path.display()))?
    } else {
        if record_path.exists() {
            bail!(
                "{} records a job already: follow it with --resume, or choose another --out",
                record_path.display()
            );
        }
        let prompt = PromptSpec::load(&args.prompt)?;
        // Lamini tunes Llama 3 models: their chat template renders the input.
        let template = crate::chat::ChatTemplate::llama3();
        let mut schemas: BTreeMap<PathBuf, Schema> = BTreeMap::new();
        let mut pairs = Vec::new();
        for (i, (item, db)) in pairs_with_schemas(args)?.into_iter().enumerate() {
            if !schemas.contains_key(&db) {
                let schema = Database::open(&db).and_then(|d| d.schema())?;
                schemas.insert(db.clone(), schema);
            }
            let messages = prompt
                .messages(&schemas[&db], &item.question)
                .with_context(|| format!("{}: pair {}", args.train.display(), i + 1))?;
            pairs.push(LaminiPair {
                input: template.render(&messages, true)?,
                output: prompt.assistant_reply(&item.sql),
            });
        }
        let finetune_args: serde_json::Value = match &args.lamini_args {
            Some(text) => serde_json::from_str(text).context("--lamini-args is not JSON")?,
            None => serde_json::json!({}),
        };
        if !finetune_args.is_object() {
            bail!("--lamini-args must be a JSON object");
        }
        let job = client.submit(&args.lamini_model, &pairs, &finetune_args)?;
        let record = serde_json::json!({
            "backend": "lamini",
            "url": args.lamini_url,
            "job_id": job.job_id,
            "status": job.status,
            "base_model": args.lamini_model,
            "model_name": job.model_name,
            "train_file": args.train.display().to_string(),
            "data_sha256": file_sha256(&args.train)?,
            "prompt": prompt.name(),
            "prompt_hash": prompt.content_hash(),
            "pairs": pairs.len(),
            "finetune_args": finetune_args,
            "tool_version": env!("CARGO_PKG_VERSION"),
        });
        write_record(&record_path, &record)?;
        outln!(
            "submitted Lamini tuning job {} ({} pairs)",
            job.job_id,
            pairs.len()
        );
        record
    };
    let job_id = record["job_id"]
        .as_str()
        .context("lamini.json has no job_id")?
        .to_string();
    let spinner = output::spinner(&format!("Lamini job {job_id}"));
    let result = client.wait(
        &job_id,
        std::time::Duration::from_secs(args.poll_s),
        &mut |s| spinner.set_message(format!("Lamini job {job_id}: {}", s.status)),
    );
    spinner.finish_and_clear();
    let status = match result {
        Ok(s) => s,
        Err(e) => {
            record["status"] = serde_json::json!("FAILED");
            write_record(&record_path, &record)?;
            return Err(e.into());
        }
    };
    record["status"] = serde_json::json!(status.status);
    record["model_name"] = serde_json::json!(status.model_name);
    write_record(&record_path, &record)?;
    let name = status.model_name.unwrap_or_default();
    outln!("job {job_id} {}: tuned model {name:?}", status.status);
    outln!("recorded in {}", record_path.display());
    outln!(
        "evaluate it with: sqlagent eval --hosted <Lamini's OpenAI-compatible base URL> --hosted-model {name} --set SET.jsonl --db FILE.db"
    );
    Ok(())
}

fn write_record(path: &Path, record: &serde_json::Value) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, serde_json::to_string_pretty(record)?)
        .with_context(|| format!("writing {}", path.display()))
}
