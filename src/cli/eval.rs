//! `sqlagent eval`: answer every question of a set, grade the SQL against
//! the gold query's rows, and report valid-SQL % and execution accuracy.
//! With `--out`, every graded item is appended to `items.jsonl` as soon as
//! it is done, so an interrupted run loses nothing and `--resume` goes on.

use std::collections::{BTreeMap, HashSet};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::args::{CompareArgs, EvalArgs, EvalCommand, Format, SetFormat};
use super::output;
use crate::agent::Agent;
use crate::chat::PromptSpec;
use crate::eval::{
    compare_runs, evaluate_item, file_sha256, is_spider_format, load_set, load_spider,
    model_fingerprint, subset, BrokenItem, EvalConfig, HostedWriter, ItemContext, Outcome, Report,
    SetItem, SqlWriter,
};
use crate::grammar::CompiledGrammar;
use crate::hosted::{HostedClient, HostedOptions};
use crate::sql::{Database, Schema};

/// What writes the SQL.
enum Writer {
    Local(Box<Agent>),
    Hosted(Box<HostedWriter>),
}

/// The hosted writer for `--hosted URL --hosted-model NAME`, and the name.
fn hosted_writer(
    args: &EvalArgs,
    url: &str,
    prompt: &PromptSpec,
    sampling: &crate::generate::SamplingParams,
) -> Result<(HostedWriter, String)> {
    let Some(name) = &args.hosted_model else {
        bail!("--hosted needs --hosted-model (the model name the endpoint serves)");
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

/// One database of the set, opened once, with its grammar.
struct Db {
    db: Database,
    schema: Schema,
    grammar: Option<CompiledGrammar>,
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
    let chosen = subset(items.len(), args.limit, args.sample_seed);
    // Every chosen item needs a database.
    let mut db_paths: Vec<PathBuf> = Vec::new();
    for &i in &chosen {
        let path = match (&items[i].db, &args.db) {
            (Some(p), _) => p.clone(),
            (None, Some(p)) => p.clone(),
            (None, None) => bail!(
                "{}: item {} ({:?}) has no \"db\"; pass --db",
                set.display(),
                i + 1,
                items[i].question
            ),
        };
        db_paths.push(path);
    }

    let prompt = PromptSpec::load(&args.prompt)?;
    // The local model, or a hosted one.
    let (mut writer, model, fingerprint, grammar_name) = match &args.hosted {
        Some(url) => {
            if !args.model.adapters.is_empty() {
                bail!("--adapter applies to the local model, not to --hosted ones");
            }
            let hosted = hosted_writer(&args, url, &prompt, &sampling)?;
            let model = format!("{} @ {}", hosted.1, hosted.0.client.endpoint());
            (
                Writer::Hosted(Box::new(hosted.0)),
                model,
                String::new(),
                "none (hosted)".to_string(),
            )
        }
        None => {
            let (engine, adapter) = args.model.load_engine()?;
            let fingerprint = model_fingerprint(&engine.info.path)?;
            let agent = Agent {
                engine,
                prompt: prompt.clone(),
                sampling,
                limits: limits.clone(),
                grammar: None,
                adapter,
            };
            (
                Writer::Local(Box::new(agent)),
                args.model.model.clone(),
                fingerprint,
                grammar_options.mode.to_string(),
            )
        }
    };
    let adapters = match &writer {
        Writer::Local(agent) => agent
            .engine
            .adapters()
            .iter()
            .map(|a| match a.slot {
                Some(slot) if Some(slot) == agent.adapter => format!("{} [answers]", a.describe()),
                _ => a.describe(),
            })
            .collect(),
        Writer::Hosted(_) => Vec::new(),
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
    };

    // Items already done (--resume), and where new ones go.
    let mut outcomes: Vec<Outcome> = Vec::new();
    let mut sink = None;
    if let Some(dir) = &args.out {
        let (done, file) = open_run_dir(dir, &config, args.resume)?;
        outcomes = done;
        sink = Some(file);
    }
    let done: HashSet<usize> = outcomes.iter().map(Outcome::index).collect();

    // A database that cannot be opened makes its items broken (Spider's
    // wta_1 ships without data), not the whole run fail.
    let mut dbs: BTreeMap<PathBuf, std::result::Result<Db, String>> = BTreeMap::new();
    let todo: Vec<(usize, &PathBuf)> = chosen
        .iter()
        .copied()
        .zip(&db_paths)
        .filter(|(i, _)| !done.contains(i))
        .collect();
    let bar = output::progress(todo.len() as u64);
    for (i, path) in todo {
        if !dbs.contains_key(path) {
            let local = match &writer {
                Writer::Local(agent) => Some(agent.as_ref()),
                Writer::Hosted(_) => None,
            };
            let opened = open_db(local, path, &grammar_options)?;
            dbs.insert(path.clone(), opened);
        }
        let outcome = match dbs.get_mut(path).expect("inserted above") {
            Err(message) => Outcome::Broken(BrokenItem {
                index: i,
                question: items[i].question.clone(),
                gold_sql: items[i].sql.clone(),
                error: message.clone(),
            }),
            Ok(entry) => {
                // The local agent takes the grammar of this item's database.
                if let Writer::Local(agent) = &mut writer {
                    agent.grammar = entry.grammar.take();
                }
                let sql_writer: &dyn SqlWriter = match &writer {
                    Writer::Local(agent) => agent.as_ref(),
                    Writer::Hosted(h) => h.as_ref(),
                };
                let cx = ItemContext {
                    writer: sql_writer,
                    limits: &limits,
                    db: &entry.db,
                    db_path: path,
                    schema: &entry.schema,
                    retries: args.retries,
                };
                let outcome = evaluate_item(&cx, i, &items[i])?;
                if let Writer::Local(agent) = &mut writer {
                    entry.grammar = agent.grammar.take();
                }
                outcome
            }
        };
        if let Some(file) = sink.as_mut() {
            writeln!(file, "{}", serde_json::to_string(&outcome)?)
                .and_then(|()| file.flush())
                .context("writing items.jsonl")?;
        }
        outcomes.push(outcome);
        let report = Report::new(config.clone(), &outcomes);
        bar.set_message(format!(
            "valid {:.0}%  correct {:.0}%",
            report.summary.valid_sql_pct, report.summary.execution_accuracy_pct
        ));
        bar.inc(1);
    }
    bar.finish_and_clear();

    let report = Report::new(config, &outcomes);
    if let Some(dir) = &args.out {
        write(dir, "report.json", &serde_json::to_string_pretty(&report)?)?;
        write(dir, "report.md", &report.markdown())?;
        write(
            dir,
            "report.svg",
            &crate::eval::chart::summary_svg(&report)?,
        )?;
    }
    match args.format {
        Format::Json => outln!("{}", serde_json::to_string_pretty(&report)?),
        Format::Text => outln!("{}", report.markdown().trim_end()),
    }
    Ok(())
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
        bail!(
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

/// Opens an item's database and compiles its grammar; a database that
/// cannot be opened or has no tables is `Err(reason)`. Grammar errors
/// stop the run.
fn open_db(
    agent: Option<&Agent>,
    path: &Path,
    options: &crate::grammar::GrammarOptions,
) -> Result<std::result::Result<Db, String>> {
    let opened = Database::open(path).and_then(|db| {
        let schema = db.schema()?;
        Ok((db, schema))
    });
    let (db, schema) = match opened {
        Ok(pair) => pair,
        Err(e) => return Ok(Err(e.to_string())),
    };
    if schema.tables.is_empty() {
        return Ok(Err(format!("database {} has no tables", path.display())));
    }
    let grammar = match agent {
        Some(agent) => Agent::compile_grammar(&agent.engine, &schema, options)?,
        None => None,
    };
    Ok(Ok(Db {
        db,
        schema,
        grammar,
    }))
}

/// Prepares `dir` for a run: writes `config.json`, or with `resume` reads
/// the outcomes already in `items.jsonl` (the config must be the same).
/// Returns those outcomes and `items.jsonl` open for appending.
fn open_run_dir(
    dir: &Path,
    config: &EvalConfig,
    resume: bool,
) -> Result<(Vec<Outcome>, std::fs::File)> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let config_path = dir.join("config.json");
    let items_path = dir.join("items.jsonl");
    let mut done = Vec::new();
    if resume {
        let text = std::fs::read_to_string(&config_path)
            .with_context(|| format!("--resume: reading {}", config_path.display()))?;
        let old: EvalConfig = serde_json::from_str(&text)
            .with_context(|| format!("--resume: {} is not a run config", config_path.display()))?;
        let (old_v, new_v) = (serde_json::to_value(&old)?, serde_json::to_value(config)?);
        if let (Some(o), Some(n)) = (old_v.as_object(), new_v.as_object()) {
            for (key, value) in n {
                if o.get(key) != Some(value) {
                    bail!(
                        "--resume: {} was run with {key} = {}, now {value}; use another --out",
                        dir.display(),
                        o.get(key).cloned().unwrap_or_default()
                    );
                }
            }
        }
        if items_path.exists() {
            let text = std::fs::read_to_string(&items_path)
                .with_context(|| format!("reading {}", items_path.display()))?;
            // A last line without its newline was cut short by a crash: drop
            // it (that item runs again); complete lines are never rewritten.
            let complete = match text.rfind('\n') {
                Some(p) => p + 1,
                None => 0,
            };
            if complete < text.len() {
                OpenOptions::new()
                    .write(true)
                    .open(&items_path)
                    .and_then(|f| f.set_len(complete as u64))
                    .with_context(|| format!("truncating {}", items_path.display()))?;
            }
            for (n, line) in text[..complete].lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let o: Outcome = serde_json::from_str(line)
                    .with_context(|| format!("{}:{}", items_path.display(), n + 1))?;
                done.push(o);
            }
        }
    } else {
        if items_path.exists() {
            bail!(
                "{} already holds a run; pass --resume to continue it, or use another --out",
                dir.display()
            );
        }
        write(dir, "config.json", &serde_json::to_string_pretty(config)?)?;
    }
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&items_path)
        .with_context(|| format!("opening {}", items_path.display()))?;
    Ok((done, file))
}

fn write(dir: &Path, name: &str, text: &str) -> Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
}
