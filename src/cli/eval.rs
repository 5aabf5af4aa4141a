//! `sqlagent eval`: answer every question of a set, grade the SQL against
//! the gold query's rows, and report valid-SQL % and execution accuracy.
//! With `--out`, every graded item is appended to `items.jsonl` as soon as
//! it is done, so an interrupted run loses nothing and `--resume` goes on.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};

use super::args::{CompareArgs, EvalArgs, EvalCommand, Format, SetFormat};
use super::output;
use crate::agent::{AskOptions, DatabaseHandle, LocalWriter, SqlWriter};
use crate::chat::PromptSpec;
use crate::eval::{
    compare_runs, file_sha256, is_spider_format, load_set, load_spider, model_fingerprint,
    run_plan, subset, EvalConfig, EvalPlan, HostedWriter, Report, RunDir, SetItem,
};
use crate::hosted::{HostedClient, HostedOptions};

/// The hosted writer for `--hosted URL --hosted-model NAME`, and the name.
fn hosted_writer(
    args: &EvalArgs,
    url: &str,
    prompt: &PromptSpec,
    sampling: &crate::generate::SamplingParams,
) -> Result<(HostedWriter, String)> {
    let Some(name) = &args.hosted_model else {
        usage_bail!("--hosted needs --hosted-model (the model name the endpoint serves)");
    };
    let api_key = std::env::var(&args.hosted_key_env)
        .ok()
        .filter(|k| !k.trim().is_empty());
    let client = HostedClient::new(HostedOptions {
        url: url.to_string(),
        model: name.clone(),
        api_key,
        key_env: args.hosted_key_env.clone(),
        timeout: std::time::Duration::from_secs(args.hosted_timeout_s.max(1)),
        max_retries: args.hosted_retries,
        backoff: std::time::Duration::from_millis(500),
        temperature: sampling.temperature,
        max_tokens: sampling.max_tokens,
        seed: sampling.seed,
    })?;
    Ok((
        HostedWriter {
            client,
            prompt: prompt.clone(),
        },
        name.clone(),
    ))
}

pub fn eval(args: EvalArgs) -> Result<()> {
    if let Some(EvalCommand::Compare(c)) = &args.command {
        return compare(c);
    }
    let set = args.set.clone().context("--set is required")?;
    let sampling = args.sampling.to_params()?;
    let grammar_options = args.grammar.to_options()?;
    let limits = args.exec.to_limits()?;
    let items = read_set(&args, &set)?;
    if args.limit == Some(0) {
        return Err(crate::Error::invalid("--limit", "must be at least 1").into());
    }
    // Every chosen item needs a database.
    let mut chosen = Vec::new();
    for i in subset(items.len(), args.limit, args.sample_seed) {
        let path = match (&items[i].db, &args.db) {
            (Some(p), _) => p.clone(),
            (None, Some(p)) => p.clone(),
            (None, None) => usage_bail!(
                "{}: item {} ({:?}) has no \"db\"; pass --db",
                set.display(),
                i + 1,
                items[i].question
            ),
        };
        chosen.push((i, path));
    }

    let prompt = super::with_retrieval(
        super::with_budget(
            args.model.answer_prompt(args.prompt.as_deref())?,
            args.schema_budget,
        ),
        &args.model,
        &args.retrieval,
    )?;
    let mut options = AskOptions {
        sampling,
        limits,
        retries: args.retries,
        ..AskOptions::new(prompt.clone())
    };
    // The local model, or a hosted one.
    let (engine, hosted, model, fingerprint, grammar_name) = match &args.hosted {
        Some(url) => {
            if !args.model.adapters.is_empty() {
                usage_bail!("--adapter applies to the local model, not to --hosted ones");
            }
            let hosted = hosted_writer(&args, url, &prompt, &sampling)?;
            let model = format!("{} @ {}", hosted.1, hosted.0.client.endpoint());
            (
                None,
                Some(hosted.0),
                model,
                String::new(),
                "none (hosted)".to_string(),
            )
        }
        None => {
            let (engine, adapter) = args.model.load_engine()?;
            let fingerprint = model_fingerprint(&engine.info.path)?;
            options.adapter = adapter;
            (
                Some(engine),
                None,
                args.model.model.clone(),
                fingerprint,
                grammar_options.mode.to_string(),
            )
        }
    };
    let adapters = match &engine {
        Some(engine) => {
            let answering = engine.answering_adapter(options.adapter.as_deref())?;
            engine
                .adapters()
                .iter()
                .map(|a| match (a.slot, &answering) {
                    (Some(_), Some(b)) if b.name == a.name => format!("{} [answers]", a.describe()),
                    _ => a.describe(),
                })
                .collect()
        }
        None => Vec::new(),
    };
    let config = EvalConfig {
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        model,
        model_fingerprint: fingerprint,
        prompt: prompt.name().to_string(),
        prompt_hash: prompt.content_hash(),
        grammar: grammar_name,
        sampling: serde_json::to_value(sampling)?,
        set: set.display().to_string(),
        set_hash: file_sha256(&set)?,
        db: args.db.as_ref().map(|p| p.display().to_string()),
        db_dir: args.db_dir.as_ref().map(|p| p.display().to_string()),
        limit: args.limit,
        sample_seed: args.limit.map(|_| args.sample_seed),
        retries: args.retries,
        adapters,
        schema_budget: prompt.schema_budget(),
        retrieval: retrieval_record(&args.retrieval, &prompt)?,
    };

    // Items already done (--resume), and where new ones go.
    let (done, mut sink) = match &args.out {
        Some(dir) => {
            let (done, run_dir) = RunDir::open(dir, &config, args.resume).map_err(flag_names)?;
            (done, Some(run_dir))
        }
        None => (Vec::new(), None),
    };
    let plan = EvalPlan {
        config,
        items: &items,
        chosen,
        options: options.clone(),
    };
    let local;
    let (writer, open_db): (&dyn SqlWriter, Box<OpenDb<'_>>) = match (&engine, &hosted) {
        (Some(engine), _) => {
            local = LocalWriter {
                engine,
                options: &options,
            };
            (
                &local,
                Box::new(|path: &Path| engine.database(path, &grammar_options)),
            )
        }
        (None, Some(h)) => (
            h,
            Box::new(|path: &Path| DatabaseHandle::without_grammar(path).map(Arc::new)),
        ),
        (None, None) => unreachable!("a local or a hosted writer"),
    };
    let todo = plan.chosen.len().saturating_sub(done.len());
    let bar = output::progress(todo as u64);
    let report = run_plan(
        writer,
        &*open_db,
        &plan,
        done,
        sink.as_mut(),
        &mut |report| {
            bar.set_message(format!(
                "valid {:.0}%  correct {:.0}%",
                report.summary.valid_sql_pct, report.summary.execution_accuracy_pct
            ));
            bar.inc(1);
        },
    )?;
    bar.finish_and_clear();
    if let Some(sink) = &sink {
        sink.write_reports(&report)?;
    }
    match args.format {
        Format::Json => outln!("{}", serde_json::to_string_pretty(&report)?),
        Format::Text => outln!("{}", report.markdown().trim_end()),
    }
    Ok(())
}

/// Opens an item's database for the writer.
type OpenDb<'a> = dyn Fn(&Path) -> crate::Result<Arc<DatabaseHandle>> + 'a;

/// A run-directory error in the words of this command's flags.
fn flag_names(e: crate::Error) -> anyhow::Error {
    match e {
        crate::Error::Invalid { field, message } if field == "resume" => {
            anyhow::anyhow!(
                "--resume: {}",
                message.replace("start another run directory", "use another --out")
            )
        }
        crate::Error::Invalid { field, message } if field == "run directory" => anyhow::anyhow!(
            "{}",
            message.replace(
                "resume it, or use another directory",
                "pass --resume to continue it, or use another --out"
            )
        ),
        other => other.into(),
    }
}

/// What retrieval the run used: `k` pairs from a file (and its hash).
fn retrieval_record(
    args: &super::args::RetrievalArgs,
    prompt: &PromptSpec,
) -> Result<Option<String>> {
    let Some((k, n)) = prompt.retrieval() else {
        return Ok(None);
    };
    let from = match &args.examples {
        Some(file) => format!("{} ({})", file.display(), file_sha256(file)?),
        None => "the adapter's training pairs".to_string(),
    };
    Ok(Some(format!("{k} of {n} pairs from {from}")))
}

/// The set, in the format asked for (or guessed).
fn read_set(args: &EvalArgs, set: &Path) -> Result<Vec<SetItem>> {
    let spider = match args.set_format {
        SetFormat::Spider => true,
        SetFormat::Jsonl => false,
        SetFormat::Auto => is_spider_format(set),
    };
    if !spider {
        return Ok(load_set(set)?);
    }
    let Some(dir) = &args.db_dir else {
        usage_bail!(
            "{} is a Spider-format set; pass --db-dir (the directory holding <db_id>/<db_id>.sqlite)",
            set.display()
        );
    };
    Ok(load_spider(set, dir)?)
}

/// `sqlagent eval compare`: the table of runs, then each pair's flips.
fn compare(args: &CompareArgs) -> Result<()> {
    let mut reports = Vec::new();
    let mut names = Vec::new();
    for path in &args.reports {
        let file = if path.is_dir() {
            path.join("report.json")
        } else {
            path.clone()
        };
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        let report: Report = serde_json::from_str(&text)
            .with_context(|| format!("{} is not an eval report", file.display()))?;
        names.push(path.display().to_string());
        reports.push(report);
    }
    if args.format == Format::Json {
        let runs: Vec<serde_json::Value> = names
            .iter()
            .zip(&reports)
            .map(|(name, r)| {
                serde_json::json!({
                    "run": name, "model": r.config.model, "prompt": r.config.prompt,
                    "grammar": r.config.grammar, "items": r.summary.items,
                    "valid_sql_pct": r.summary.valid_sql_pct,
                    "execution_accuracy_pct": r.summary.execution_accuracy_pct,
                })
            })
            .collect();
        let pairs: Vec<serde_json::Value> = compare_runs(&reports)
            .iter()
            .map(|p| {
                serde_json::json!({
                    "a": names[p.a], "b": names[p.b], "common": p.common,
                    "only_a": p.only_a, "only_b": p.only_b, "p_value": p.p_value,
                })
            })
            .collect();
        outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"runs": runs, "pairs": pairs}))?
        );
        return Ok(());
    }
    outln!("| run | model | prompt | grammar | items | valid SQL % | correct % |");
    outln!("|---|---|---|---|---|---|---|");
    for (name, r) in names.iter().zip(&reports) {
        outln!(
            "| {name} | {} | {} | {} | {} | {:.1} | {:.1} |",
            r.config.model,
            r.config.prompt,
            r.config.grammar,
            r.summary.items,
            r.summary.valid_sql_pct,
            r.summary.execution_accuracy_pct
        );
    }
    for pair in compare_runs(&reports) {
        let (a, b) = (&names[pair.a], &names[pair.b]);
        outln!();
        outln!(
            "{a} vs {b}: {} items in common, {} correct only in {a}, {} only in {b}; McNemar exact p = {:.4}{}",
            pair.common,
            pair.only_a.len(),
            pair.only_b.len(),
            pair.p_value,
            if pair.p_value < 0.05 {
                " (a real difference at the 5% level)"
            } else {
                " (could be noise)"
            }
        );
        for q in &pair.only_a {
            outln!("  + {a}: {q}");
        }
        for q in &pair.only_b {
            outln!("  + {b}: {q}");
        }
    }
    Ok(())
}
