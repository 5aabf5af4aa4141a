//! `sqlagent bench`: how fast this machine runs the model and the grammar.
//! The model answers a few questions (prefill and decode tokens/s, the share
//! of decode time spent in the grammar); then every gold query of the set
//! is replayed through the grammar with the model's tokenizer to time the
//! full mask and the one-token check per step.

use anyhow::{Context, Result};
use serde_json::json;

use super::args::{BenchArgs, Format};
use super::output;
use crate::agent::{AskOptions, Listener};
use crate::chat::PromptSpec;
use crate::eval::load_set;
use crate::grammar::{percentile, MaskTimings};
use crate::sql::build_demo_db;

/// Timings of one answered question.
struct Run {
    prompt_tokens: usize,
    prefill_ms: f64,
    decode_steps: usize,
    decode_ms: f64,
    grammar_ms: f64,
    masks: usize,
    forced: usize,
}

pub fn bench(args: BenchArgs) -> Result<()> {
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
    // Every question's prompt is fed whole, so prefill speed means the same
    // for each.
    engine.set_keep_cache(false);
    let db = engine.database(&db_path, &grammar_options)?;
    let options = AskOptions {
        sampling,
        adapter,
        execute: false,
        ..AskOptions::new(prompt)
    };

    let mut runs = Vec::new();
    for item in items.iter().take(args.questions) {
        let spinner = output::spinner(&format!("answering {:?}", item.question));
        let draft = engine.draft(&db, &item.question, &[], &options, &mut Listener::default());
        spinner.finish_and_clear();
        let draft = draft?;
        runs.push(Run {
            prompt_tokens: draft.timings.prompt_tokens,
            prefill_ms: draft.timings.prefill_ms,
            decode_steps: draft.timings.decode_steps,
            decode_ms: draft.timings.decode_ms,
            grammar_ms: draft.grammar.grammar_ms,
            masks: draft.grammar.masks,
            forced: draft.grammar.forced_tokens,
        });
    }
    let masks = match db.grammar() {
        Some(g) => {
            let sqls: Vec<String> = items.iter().map(|i| i.sql.clone()).collect();
            Some(MaskTimings::replay(g, &engine.tokenizer, &sqls)?)
        }
        None => None,
    };

    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        percentile(&v, 0.5)
    };
    let prefill_tps = median(
        runs.iter()
            .map(|r| r.prompt_tokens as f64 / (r.prefill_ms / 1000.0))
            .collect(),
    );
    let decode_tps = median(
        runs.iter()
            .filter(|r| r.decode_steps > 0)
            .map(|r| r.decode_steps as f64 / (r.decode_ms / 1000.0))
            .collect(),
    );
    let decode_ms: f64 = runs.iter().map(|r| r.decode_ms).sum();
    let grammar_ms: f64 = runs.iter().map(|r| r.grammar_ms).sum();
    let overhead_pct = if decode_ms > 0.0 {
        100.0 * grammar_ms / decode_ms
    } else {
        0.0
    };
    let prompt_tokens =
        runs.iter().map(|r| r.prompt_tokens).sum::<usize>() as f64 / runs.len() as f64;
    let mask_json = masks.as_ref().map(|m| {
        json!({
            "queries": m.queries,
            "rejected": m.rejected,
            "tokens": m.tokens(),
            "full_mask_us": {"median": percentile(&m.mask_us, 0.5), "p99": percentile(&m.mask_us, 0.99)},
            "check_us": {"median": percentile(&m.check_us, 0.5), "p99": percentile(&m.check_us, 0.99)},
        })
    });
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
                "questions": runs.len(),
                "prompt_tokens_mean": prompt_tokens,
                "prefill_tokens_per_s": prefill_tps,
                "decode_tokens_per_s": decode_tps,
                "decode_ms": decode_ms,
                "grammar_ms": grammar_ms,
                "grammar_overhead_pct": overhead_pct,
                "full_masks": runs.iter().map(|r| r.masks).sum::<usize>(),
                "forced_tokens": runs.iter().map(|r| r.forced).sum::<usize>(),
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
                runs.len(),
                grammar_options.mode
            );
            outln!("prefill    {prefill_tps:.1} tokens/s (median)");
            outln!("decode     {decode_tps:.1} tokens/s (median)");
            outln!(
                "grammar    {overhead_pct:.2}% of decode time ({grammar_ms:.1} ms of {decode_ms:.0} ms; {} full masks, {} forced tokens)",
                runs.iter().map(|r| r.masks).sum::<usize>(),
                runs.iter().map(|r| r.forced).sum::<usize>()
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
