//! `sqlagent tune`: LoRA training on question/SQL pairs, written as a PEFT
//! adapter plus `training.json`.

use std::path::Path;

use anyhow::{Context, Result};

use super::args::{Format, TuneArgs, TuneBackend};
use super::output;
use crate::chat::PromptSpec;
use crate::eval::file_sha256;
use crate::tune::lamini::render_pairs;
use crate::tune::{pairs_with_databases, LocalTune, TuneOptions};

/// Runs `sqlagent tune`.
pub fn tune(args: TuneArgs) -> Result<()> {
    if args.backend == TuneBackend::Lamini {
        return lamini(&args);
    }
    if !args.model.adapters.is_empty() {
        usage_bail!(
            "--adapter: tune trains a new adapter on the base model; it does not start from one"
        );
    }
    let pairs = pairs_with_databases(&args.train, args.db.as_deref())?;
    let prompt = PromptSpec::load(&args.prompt)?.with_schema_budget(args.schema_budget);
    let job = LocalTune {
        train_file: &args.train,
        pairs: &pairs,
        prompt: &prompt,
        base_model: &args.model.model,
        max_len: args.max_len,
        val_fraction: args.val_fraction,
        options: TuneOptions {
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
        },
        out: &args.out,
        resume: args.resume,
    };
    // Mistakes in the job fail before the model loads.
    job.validate()?;
    let (mut engine, _) = args.model.load_engine()?;

    let total = pairs.len() * args.epochs;
    let bar = output::progress(total as u64);
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut last_line = std::time::Instant::now();
    let report = job.run(&mut engine, &mut |p| {
        let line = format!(
            "epoch {} loss {:.3} {:.0} tok/s",
            p.epoch, p.loss, p.tokens_per_s
        );
        bar.set_length(p.total as u64);
        bar.set_position(p.done as u64);
        bar.set_message(line.clone());
        // Without a terminal (a log file, CI) the bar is hidden: a plain
        // line every half minute instead.
        if !terminal && (last_line.elapsed().as_secs() >= 30 || p.done == p.total) {
            eprintln!("tune: {}/{} pairs, {line}", p.done, p.total);
            last_line = std::time::Instant::now();
        }
        true
    });
    bar.finish_and_clear();
    let report = report?;

    let state = &report.state;
    if args.format == Format::Json {
        let obj = serde_json::json!({
            "adapter": args.out, "train": report.train, "validation": report.validation,
            "skipped": report.skipped, "tokens": state.tokens, "seconds": state.seconds,
            "record": args.out.join("training.json"),
        });
        outln!("{obj}");
        return Ok(());
    }
    outln!("adapter written to {}", args.out.display());
    outln!(
        "pairs: {} train, {} validation, {} skipped (longer than {} tokens)",
        report.train,
        report.validation,
        report.skipped,
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
        report
            .peak_rss_mb
            .map_or("unknown".into(), |m| format!("{m:.0} MB"))
    );
    Ok(())
}

/// `tune --backend lamini`: submits the pairs as a Lamini tuning job (or,
/// with `--resume`, follows the one recorded in `--out/lamini.json`), polls
/// it to the end, and records the job and the tuned model's name.
fn lamini(args: &TuneArgs) -> Result<()> {
    use crate::tune::lamini::LaminiClient;
    let record_path = args.out.join("lamini.json");
    // A failed request is tried again after the poll interval, at most a
    // second at first (doubling from there).
    let client = LaminiClient::new(
        &args.lamini_url,
        &args.lamini_key_env,
        std::time::Duration::from_secs(120),
    )?
    .with_backoff(std::time::Duration::from_secs(args.poll_s.min(1)));
    let mut record: serde_json::Value = if args.resume {
        let text = std::fs::read_to_string(&record_path)
            .with_context(|| format!("--resume: reading {}", record_path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("--resume: {} is not a job record", record_path.display()))?
    } else {
        if record_path.exists() {
            usage_bail!(
                "{} records a job already: follow it with --resume, or choose another --out",
                record_path.display()
            );
        }
        if args.schema_budget.is_some() {
            usage_bail!("--schema-budget applies to local tuning only (the hosted job renders whole schemas)");
        }
        let prompt = PromptSpec::load(&args.prompt)?;
        let pairs = render_pairs(
            &pairs_with_databases(&args.train, args.db.as_deref())?,
            &prompt,
        )
        .with_context(|| args.train.display().to_string())?;
        let finetune_args: serde_json::Value = match &args.lamini_args {
            Some(text) => serde_json::from_str(text).context("--lamini-args is not JSON")?,
            None => serde_json::json!({}),
        };
        if !finetune_args.is_object() {
            usage_bail!("--lamini-args must be a JSON object");
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
        Err(e @ crate::Error::JobUnreachable { .. }) => {
            // The job may well be running: the record stays as it was.
            return Err(anyhow::anyhow!(
                "{e}; follow it again later with --resume (recorded in {})",
                record_path.display()
            ));
        }
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
    if args.format == Format::Json {
        let obj = serde_json::json!({
            "job_id": job_id, "status": status.status, "model_name": name, "record": record_path,
        });
        outln!("{obj}");
        return Ok(());
    }
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
