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
use crate::eval::{load_set, Spread};
use crate::grammar::percentile;
use crate::sql::build_demo_db;

/// Runs `sqlagent bench`.
pub fn bench(args: BenchArgs) -> Result<()> {
    if let Some(path) = &args.prompt_ids {
        return bench_forward(path, &args);
    }
    if let Some(shape) = &args.shape {
        return bench_shape(shape, &args);
    }
    // The set is read first: a bad line is reported before the model loads.
    let items = questions_of(&args)?;
    let (engine, adapter) = args.model.load_engine()?;
    let answers = answer_questions(&engine, adapter, &items, &args)?;
    let info = &engine.info;
    let threads = candle_core::utils::get_num_threads();
    match args.format {
        Format::Json => {
            let mut v = json!({
                "model": info.path,
                "weight_type": info.weight_type,
                "requantized": info.requantized,
                "device": format!("{:?}", engine.model.device()),
                "threads": threads,
                "load_ms": info.load_ms,
            });
            merge(&mut v, answers.json());
            outln!("{}", serde_json::to_string_pretty(&v)?)
        }
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
            for line in answers.lines() {
                outln!("{line}");
            }
        }
    }
    Ok(())
}

/// Adds the fields of `extra` (an object) to `v` (an object).
fn merge(v: &mut serde_json::Value, extra: serde_json::Value) {
    if let (Some(v), serde_json::Value::Object(extra)) = (v.as_object_mut(), extra) {
        v.extend(extra);
    }
}

/// What answering the questions of a bench gave.
struct Answers {
    report: crate::agent::SpeedReport,
    grammar: crate::grammar::GrammarMode,
    vocabulary: usize,
}

/// The items of `--set` (there must be `--questions` to ask).
fn questions_of(args: &BenchArgs) -> Result<Vec<crate::eval::SetItem>> {
    if args.questions == 0 {
        return Err(crate::Error::invalid("--questions", "must be at least 1").into());
    }
    Ok(load_set(&args.set)?)
}

/// The model of `engine` answers the first `--questions` of `items` over
/// `--db` (the demo database by default), cold and then warm, and every
/// gold query is replayed through the grammar.
fn answer_questions(
    engine: &crate::agent::Engine,
    adapter: Option<String>,
    items: &[crate::eval::SetItem],
    args: &BenchArgs,
) -> Result<Answers> {
    let sampling = args.sampling.to_params()?;
    let grammar_options = args.grammar.to_options()?;
    let tmp = tempfile::tempdir().context("creating a temporary directory")?;
    let db_path = match &args.db {
        Some(p) => p.clone(),
        None => {
            let p = tmp.path().join("music.db");
            build_demo_db(&p)?;
            p
        }
    };
    let prompt = args.model.answer_prompt(args.prompt.as_deref())?;
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
    Ok(Answers {
        report: report?,
        grammar: grammar_options.mode,
        vocabulary: engine.tokenizer.vocab_size(),
    })
}

impl Answers {
    /// The `--format json` fields.
    fn json(&self) -> serde_json::Value {
        let r = &self.report;
        let mask_json = r.masks.as_ref().map(|m| {
            json!({
                "queries": m.queries,
                "rejected": m.rejected,
                "tokens": m.tokens(),
                "full_mask_us": {"median": percentile(&m.mask_us, 0.5), "p99": percentile(&m.mask_us, 0.99)},
                "check_us": {"median": percentile(&m.check_us, 0.5), "p99": percentile(&m.check_us, 0.99)},
            })
        });
        json!({
            "grammar": self.grammar,
            "questions": r.questions,
            "prompt_tokens_mean": r.prompt_tokens_mean,
            "prefill_tokens_per_s": r.prefill_tokens_per_s,
            "decode_tokens_per_s": r.decode_tokens_per_s,
            "decode_ms": r.decode_ms,
            "grammar_ms": r.grammar_ms,
            "grammar_overhead_pct": r.grammar_overhead_pct,
            "grammar_step_ms": r.grammar_step_ms,
            "grammar_step_p99_ms": r.grammar_step_p99_ms,
            "slowest_steps": {"steps": r.slowest_step_count, "mean_ms": r.slowest_steps},
            "masks_ahead": r.masks_ahead,
            "full_masks": r.full_masks,
            "forced_tokens": r.forced_tokens,
            "mask_replay": mask_json,
            "steps_per_token": r.steps_per_token,
            "warm_latency_ms": r.warm_latency_ms,
            "vocabulary": self.vocabulary,
        })
    }

    /// The text report's lines.
    fn lines(&self) -> Vec<String> {
        let r = &self.report;
        let (t, l, g) = (&r.steps_per_token, &r.warm_latency_ms, &r.grammar_step_ms);
        let mut lines = vec![
            format!(
                "questions  {} (prompts of {:.0} tokens on average), grammar {}",
                r.questions, r.prompt_tokens_mean, self.grammar
            ),
            format!("prefill    {:.1} tokens/s (median)", r.prefill_tokens_per_s),
            format!("decode     {:.1} tokens/s (median)", r.decode_tokens_per_s),
            format!(
                "steps      {:.2} decode steps per emitted token (median; p90 {:.2}, max {:.2})",
                t.median, t.p90, t.max
            ),
            format!(
                "warm       {:.0} ms a question with the prompt cache (median; p90 {:.0}, max {:.0})",
                l.median, l.p90, l.max
            ),
            format!(
                "grammar    {:.2}% of decode time ({:.1} ms of {:.0} ms; {} full masks, {} forced tokens)",
                r.grammar_overhead_pct, r.grammar_ms, r.decode_ms, r.full_masks, r.forced_tokens
            ),
            format!(
                "           a step: median {:.3} ms, p99 {:.3} ms, max {:.3} ms; {} masks computed during the forward pass",
                g.median, r.grammar_step_p99_ms, g.max, r.masks_ahead
            ),
            format!(
                "           the slowest {} steps (≥ p99), mean ms: choosing {:.3} (waiting for the mask {:.3}), committing {:.3}, checking {:.3}, finishing {:.3}",
                r.slowest_step_count,
                r.slowest_steps.mask_ms + r.slowest_steps.mask_wait_ms,
                r.slowest_steps.mask_wait_ms,
                r.slowest_steps.commit_ms,
                r.slowest_steps.check_ms,
                r.slowest_steps.finish_ms
            ),
        ];
        if let Some(m) = &r.masks {
            lines.push(format!(
                "mask       full mask median {:.1} µs, p99 {:.1} µs; one-token check median {:.1} µs, p99 {:.1} µs",
                percentile(&m.mask_us, 0.5),
                percentile(&m.mask_us, 0.99),
                percentile(&m.check_us, 0.5),
                percentile(&m.check_us, 0.99)
            ));
            lines.push(format!(
                "           over {} tokens of {} gold queries ({} rejected), vocabulary of {} tokens",
                m.tokens(),
                m.queries,
                m.rejected,
                self.vocabulary
            ));
        }
        lines
    }
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
    // Before the bandwidth measurement, whose buffer is not the model's.
    let peak = crate::machine::peak_rss_mb();
    let prefill = Spread::of(runs.iter().map(|r| r.prefill_tokens_per_s())).median;
    let decode = Spread::of(runs.iter().map(|r| r.decode_tokens_per_s())).median;
    let step_median = Spread::of(runs.iter().flat_map(|r| r.step_ms.iter().copied())).median;
    let info = &engine.info;
    let threads = candle_core::utils::get_num_threads();
    let weight_gb = engine.model.weight_bytes() as f64 / 1e9;
    let bound = MemoryBound::measure(engine.model.device(), threads, weight_gb);
    match args.format {
        Format::Json => outln!(
            "{}",
            serde_json::to_string(&json!({
                "model": info.path,
                "weight_gb": weight_gb,
                "read_bandwidth_gb_s": bound.map(|b| b.read_gb_s),
                "decode_bound_tokens_per_s": bound.map(|b| b.tokens_per_s),
                "weight_type": info.weight_type,
                "requantized": info.requantized,
                "threads": threads,
                "prompt_tokens": ids.len(),
                "decode_steps": args.decode_steps,
                "prefill_tokens_per_s": prefill,
                "decode_tokens_per_s": decode,
                "decode_step_ms_median": step_median,
                "peak_rss_mb": peak,
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
                "decode   {decode:.1} tokens/s (median; {step_median:.1} ms a step, {} steps a run){}",
                args.decode_steps,
                MemoryBound::note(bound, decode)
            );
            if let Some(mb) = peak {
                outln!("memory   {mb:.0} MB peak resident");
            }
        }
    }
    Ok(())
}

/// The decode speed a CPU's memory allows: every step reads every weight
/// once, so tokens/s cannot pass the read bandwidth over the weights' size.
#[derive(Clone, Copy)]
struct MemoryBound {
    read_gb_s: f64,
    tokens_per_s: f64,
}

impl MemoryBound {
    /// Measures this machine's read bandwidth with `threads` threads
    /// (`None` off the CPU, where it is not measured).
    fn measure(device: &candle_core::Device, threads: usize, weight_gb: f64) -> Option<Self> {
        device.is_cpu().then(|| {
            let read_gb_s = crate::machine::read_bandwidth_gb_s(threads);
            Self {
                read_gb_s,
                tokens_per_s: read_gb_s / weight_gb,
            }
        })
    }

    /// `"; memory bound …"` for the decode line, empty without a bound.
    fn note(bound: Option<Self>, decode: f64) -> String {
        bound
            .map(|b| {
                format!(
                    "; memory bound {:.1} tokens/s ({:.1} GB/s read, {:.0}% of it)",
                    b.tokens_per_s,
                    b.read_gb_s,
                    100.0 * decode / b.tokens_per_s
                )
            })
            .unwrap_or_default()
    }
}

/// `sqlagent bench --shape NAME`: random weights of a known shape.
fn bench_shape(name: &str, args: &BenchArgs) -> Result<()> {
    use crate::machine::{peak_rss_mb, Machine};
    use crate::model::ModelShape;

    let shape = ModelShape::parse(name)?;
    let items = args
        .tokenizer
        .as_ref()
        .map(|_| questions_of(args))
        .transpose()?;
    if args.runs == 0 {
        return Err(crate::Error::invalid("--runs", "must be at least 1").into());
    }
    if args.prompt_tokens == 0 {
        return Err(crate::Error::invalid("--prompt-tokens", "must be at least 1").into());
    }
    let options = args.model.to_options(false)?;
    let device = options.device.clone();
    let quantize = match args.model.quantize {
        super::args::QuantizeArg::Auto if device.is_cpu() => {
            Some(candle_core::quantized::GgmlDType::Q8_0)
        }
        q => q.ggml(),
    };
    let machine = Machine::describe();
    let threads = candle_core::utils::get_num_threads();
    let spinner = output::spinner(&format!("building random {} weights", shape.name()));
    let start = std::time::Instant::now();
    let model = shape.random_model(options.dtype, quantize, &device);
    spinner.finish_and_clear();
    let model = model?;
    let build_ms = start.elapsed().as_secs_f64() * 1000.0;
    let vocab = model.config().vocab_size as u64;
    // Token ids from a fixed linear congruential sequence: the same prompt every run.
    let ids: Vec<u32> = (0..args.prompt_tokens as u64)
        .map(|i| ((i * 2_654_435_761 + 12_345) % vocab) as u32)
        .collect();
    let spinner = output::spinner("measuring");
    let runs = crate::agent::measure_model(&model, &ids, args.decode_steps, args.runs);
    spinner.finish_and_clear();
    let runs = runs?;
    let prefill = Spread::of(runs.iter().map(|r| r.prefill_tokens_per_s())).median;
    let decode = Spread::of(runs.iter().map(|r| r.decode_tokens_per_s())).median;
    let weight_gb = model.weight_bytes() as f64 / 1e9;
    let bound = MemoryBound::measure(&device, threads, weight_gb);
    let dtype = match quantize {
        Some(q) => format!("{q:?}").to_lowercase(),
        None => format!("{:?}", options.dtype).to_lowercase(),
    };
    let device_name = match &device {
        candle_core::Device::Cpu => "cpu".to_string(),
        candle_core::Device::Cuda(_) => "cuda:0".to_string(),
        candle_core::Device::Metal(_) => "metal:0".to_string(),
    };
    let activations = format!("{:?}", model.dtype()).to_lowercase();
    let answers = match (&args.tokenizer, items) {
        (Some(dir), Some(items)) => {
            let name = std::path::PathBuf::from(format!("{} shape", shape.name()));
            let engine = crate::agent::Engine::with_tokenizer_dir(model, dir, &name)?;
            Some(answer_questions(&engine, None, &items, args)?)
        }
        _ => None,
    };
    let peak = peak_rss_mb();
    match args.format {
        Format::Json => {
            let mut v = json!({
                "machine": machine,
                "device": device_name,
                "threads": threads,
                "shape": shape.name(),
                "weights": dtype,
                "activations": activations,
                "weight_gb": weight_gb,
                "build_ms": build_ms,
                "prompt_tokens": ids.len(),
                "decode_steps": args.decode_steps,
                "prefill_tokens_per_s": prefill,
                "decode_tokens_per_s": decode,
                "peak_rss_mb": peak,
                "read_bandwidth_gb_s": bound.map(|b| b.read_gb_s),
                "decode_bound_tokens_per_s": bound.map(|b| b.tokens_per_s),
                "tokens": runs[0].tokens,
            });
            if let Some(a) = &answers {
                merge(&mut v, json!({ "answers": a.json() }));
            }
            outln!("{}", serde_json::to_string_pretty(&v)?)
        }
        Format::Text => {
            outln!(
                "machine  {} ({} cores{}){}",
                machine.cpu.as_deref().unwrap_or("unknown CPU"),
                machine.cores,
                machine
                    .memory_gib
                    .map(|g| format!(", {g:.0} GiB"))
                    .unwrap_or_default(),
                if machine.gpus.is_empty() {
                    String::new()
                } else {
                    format!("; GPU {}", machine.gpus.join(", "))
                }
            );
            outln!(
                "model    {} shape, random weights {dtype} ({weight_gb:.2} GB), on {device_name}, {threads} threads, built in {:.1} s",
                shape.name(),
                build_ms / 1000.0
            );
            outln!(
                "prefill  {prefill:.1} tokens/s (median of {} runs, {} tokens)",
                runs.len(),
                ids.len()
            );
            outln!(
                "decode   {decode:.1} tokens/s (median, {} steps a run){}",
                args.decode_steps,
                MemoryBound::note(bound, decode)
            );
            if let Some(mb) = peak {
                outln!("memory   {:.0} MB peak resident", mb);
            }
            for line in answers.iter().flat_map(Answers::lines) {
                outln!("{line}");
            }
        }
    }
    Ok(())
}
