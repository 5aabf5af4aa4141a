//! `sqlagent bench`: how fast this machine runs the model and the grammar.
//! The model answers a few questions (prefill and decode tokens/s, the share
//! of decode time spent in the grammar); then every gold query of the set
//! is replayed through the grammar with the model's tokenizer to time the
//! full mask and the one-token check per step.

use anyhow::{Context, Result};
use serde_json::json;

use super::args::{BenchArgs, Format};
use super::output;
use crate::agent::AskOptions;
use crate::chat::PromptSpec;
use crate::eval::load_set;
use crate::grammar::percentile;
use crate::sql::build_demo_db;

/// Runs `sqlagent bench`.
pub fn bench(args: BenchArgs) -> Result<()> {
    if let Some(path) = &args.prompt_ids {
        return bench_forward(path, &args);
    }
    if args.questions == 0 {
        return Err(crate::Error::invalid("--questions", "must be at least 1").into());
    }
    let sampling = args.sampling.to_params()?;
    let grammar_options = args.grammar.to_options()?;
    let items = load_set(&args.set)?;
    let tmp = tempfile::tempdir().context("creating a temporary directory")?;
    let db_path = match &args.db {
        Some(p) => p.clone(),
        None => {
            let p = tmp.path().join("music.db");
            build_demo_db(&p)?;
            p
        }
    };
    let prompt = PromptSpec::load(&args.prompt)?;
    let (engine, adapter) = args.model.load_engine()?;
    let db = engine.database(&db_path, &grammar_options)?;
    let options = AskOptions {
        sampling,
        adapter,
        ..AskOptions::new(prompt)
    };
    let questions: Vec<String> = items
        .iter()
        .take(args.questions)
        .map(|i| i.question.clone())
        .collect();
    let gold: Vec<String> = items.iter().map(|i| i.sql.clone()).collect();
    let spinner = output::spinner("answering");
    let report = engine.measure_speed(&db, &questions, &gold, &options, &mut |q| {
        spinner.set_message(format!("answering {q:?}"))
    });
    spinner.finish_and_clear();
    let r = report?;
    let masks = &r.masks;
    let mask_json = masks.as_ref().map(|m| {
        json!({
            "queries": m.queries,
            "rejected": m.rejected,
            "tokens": m.tokens(),
            "full_mask_us": {"median": percentile(&m.mask_us, 0.5), "p99": percentile(&m.mask_us, 0.99)},
            "check_us": {"median": percentile(&m.check_us, 0.5), "p99": percentile(&m.check_us, 0.99)},
        })
    });
    let (prompt_tokens, prefill_tps, decode_tps) = (
        r.prompt_tokens_mean,
        r.prefill_tokens_per_s,
        r.decode_tokens_per_s,
    );
    let (decode_ms, grammar_ms, overhead_pct) = (r.decode_ms, r.grammar_ms, r.grammar_overhead_pct);
    let info = &engine.info;
    let threads = candle_core::utils::get_num_threads();
    match args.format {
        Format::Json => outln!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "model": info.path,
                "weight_type": info.weight_type,
                "requantized": info.requantized,
                "device": format!("{:?}", engine.model.device()),
                "threads": threads,
                "load_ms": info.load_ms,
                "grammar": grammar_options.mode,
                "questions": r.questions,
                "prompt_tokens_mean": prompt_tokens,
                "prefill_tokens_per_s": prefill_tps,
                "decode_tokens_per_s": decode_tps,
                "decode_ms": decode_ms,
                "grammar_ms": grammar_ms,
                "grammar_overhead_pct": overhead_pct,
                "full_masks": r.full_masks,
                "forced_tokens": r.forced_tokens,
                "mask_replay": mask_json,
                "vocabulary": engine.tokenizer.vocab_size(),
            }))?
        ),
        Format::Text => {
            outln!(
                "model      {} ({}{}), {:?}, {threads} threads, loaded in {:.0} ms",
                info.path.display(),
                info.weight_type,
                info.requantized
                    .as_deref()
                    .map(|r| format!(", re-quantized {r}"))
                    .unwrap_or_default(),
                engine.model.device(),
                info.load_ms
            );
            outln!(
                "questions  {} (prompts of {prompt_tokens:.0} tokens on average), grammar {}",
                r.questions,
                grammar_options.mode
            );
            outln!("prefill    {prefill_tps:.1} tokens/s (median)");
            outln!("decode     {decode_tps:.1} tokens/s (median)");
            outln!(
                "grammar    {overhead_pct:.2}% of decode time ({grammar_ms:.1} ms of {decode_ms:.0} ms; {} full masks, {} forced tokens)",
                r.full_masks,
                r.forced_tokens
            );
            if let Some(m) = &masks {
                outln!(
                    "mask       full mask median {:.1} µs, p99 {:.1} µs; one-token check median {:.1} µs, p99 {:.1} µs",
                    percentile(&m.mask_us, 0.5),
                    percentile(&m.mask_us, 0.99),
                    percentile(&m.check_us, 0.5),
                    percentile(&m.check_us, 0.99)
                );
                outln!(
                    "           over {} tokens of {} gold queries ({} rejected), vocabulary of {} tokens",
                    m.tokens(),
                    m.queries,
                    m.rejected,
                    engine.tokenizer.vocab_size()
                );
            }
        }
    }
    Ok(())
}

/// `sqlagent bench --prompt-ids FILE`: the network alone on given ids.
fn bench_forward(path: &std::path::Path, args: &BenchArgs) -> Result<()> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading prompt ids from {}", path.display()))?;
    let ids: Vec<u32> = serde_json::from_str(&text).with_context(|| {
        format!(
            "{}: expected a JSON array of token ids (integers)",
            path.display()
        )
    })?;
    if args.runs == 0 {
        return Err(crate::Error::invalid("--runs", "must be at least 1").into());
    }
    let (engine, _adapter) = args.model.load_engine()?;
    let spinner = output::spinner("measuring");
    let runs = engine.measure_forward(&ids, args.decode_steps, args.runs);
    spinner.finish_and_clear();
    let runs = runs?;
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        percentile(&v, 0.5)
    };
    let prefill = median(runs.iter().map(|r| r.prefill_tokens_per_s()).collect());
    let decode = median(runs.iter().map(|r| r.decode_tokens_per_s()).collect());
    let steps: Vec<f64> = runs.iter().flat_map(|r| r.step_ms.clone()).collect();
    let step_median = median(steps.clone());
    let info = &engine.info;
    let threads = candle_core::utils::get_num_threads();
    match args.format {
        Format::Json => outln!(
            "{}",
            serde_json::to_string(&json!({
                "model": info.path,
                "weight_type": info.weight_type,
                "requantized": info.requantized,
                "threads": threads,
                "prompt_tokens": ids.len(),
                "decode_steps": args.decode_steps,
                "prefill_tokens_per_s": prefill,
                "decode_tokens_per_s": decode,
                "decode_step_ms_median": step_median,
                "runs": runs,
            }))?
        ),
        Format::Text => {
            outln!(
                "model    {} ({}), {threads} threads",
                info.path.display(),
                info.weight_type
            );
            outln!(
                "prefill  {prefill:.1} tokens/s (median of {} runs, {} tokens)",
                runs.len(),
                ids.len()
            );
            outln!(
                "decode   {decode:.1} tokens/s (median; {step_median:.1} ms a step, {} steps a run)",
                args.decode_steps
            );
        }
    }
    Ok(())
}
