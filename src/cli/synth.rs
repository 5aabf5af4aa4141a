//! `sqlagent synth`: template-generated question/SQL pairs for a database,
//! kept only when they run, return rows, are not one more copy of a shape,
//! and stay clear of the evaluation sets.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use rand::SeedableRng;

use super::args::{Format, SynthArgs};
use crate::agent::AskOptions;
use crate::eval::load_set;
use crate::grammar::GrammarOptions;
use crate::sql::Database;
use crate::synth::{filter_for, model, template_pairs, Filter, SynthPair};

/// Runs `sqlagent synth`.
pub fn synth(args: SynthArgs) -> Result<()> {
    if args.count == 0 {
        usage_bail!("-n must be at least 1");
    }
    if args.from_model > 0 && args.seed_set.is_none() {
        usage_bail!("--from-model needs --seed-set (questions to show the model)");
    }
    if args.out.exists() && !args.force {
        usage_bail!("{} exists; pass --force to replace it", args.out.display());
    }
    let db = Database::open(&args.db)?;
    let schema = db.schema()?;
    let mut eval = Vec::new();
    for set in &args.exclude {
        for item in load_set(set)? {
            eval.push((item.question, item.sql));
        }
    }
    if eval.is_empty() {
        eprintln!(
            "note: no --exclude set given; nothing keeps these pairs apart from an evaluation set"
        );
    }
    if args.from_model > args.count {
        usage_bail!(
            "--from-model {} is more than -n {}",
            args.from_model,
            args.count
        );
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed);
    let mut filter = filter_for(&schema, &eval, args.max_per_skeleton);
    let mut kept = Vec::new();
    let mut by_template: BTreeMap<&str, usize> = BTreeMap::new();
    if args.from_model > 0 {
        let model_kept = from_model(&args, &db, &mut filter, &mut rng)?;
        by_template.insert("model", model_kept.len());
        kept.extend(model_kept);
    }
    let (templated, counts) = template_pairs(&db, &mut filter, args.count - kept.len(), &mut rng)?;
    by_template.extend(counts);
    kept.extend(templated.iter().map(SynthPair::to_json));
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let text: String = kept.iter().map(|v| format!("{v}\n")).collect();
    std::fs::write(&args.out, text).with_context(|| format!("writing {}", args.out.display()))?;

    let rejected: usize = filter.rejected.values().sum();
    if args.format == Format::Json {
        let reasons: serde_json::Map<String, serde_json::Value> = filter
            .rejected
            .iter()
            .map(|(reason, n)| (reason.name().to_string(), serde_json::json!(n)))
            .collect();
        let obj = serde_json::json!({
            "out": args.out, "kept": kept.len(), "candidates": kept.len() + rejected,
            "rejected": reasons, "kept_by_template": by_template,
        });
        outln!("{obj}");
        return Ok(());
    }
    outln!(
        "kept {} of {} candidates into {} ({} rejected)",
        kept.len(),
        kept.len() + rejected,
        args.out.display(),
        rejected
    );
    for (reason, n) in &filter.rejected {
        outln!("  rejected {:>5}  {}", n, reason.name());
    }
    for (template, n) in &by_template {
        outln!("  kept     {:>5}  {}", n, template);
    }
    if kept.len() < args.count {
        outln!(
            "the templates gave {} pairs, fewer than the {} asked for (raise --max-per-skeleton for more variants)",
            kept.len(),
            args.count
        );
    }
    Ok(())
}

/// Up to `--from-model` pairs written by the model, filtered; tries at
/// most four times as many questions.
fn from_model(
    args: &SynthArgs,
    db: &Database,
    filter: &mut Filter,
    rng: &mut rand::rngs::StdRng,
) -> Result<Vec<serde_json::Value>> {
    let Some(seed_set) = &args.seed_set else {
        usage_bail!("--from-model needs --seed-set (questions to show the model)");
    };
    let seeds: Vec<String> = load_set(seed_set)?
        .into_iter()
        .map(|i| i.question)
        .collect();
    if seeds.is_empty() {
        usage_bail!("{}: no seed questions", seed_set.display());
    }
    let (engine, adapter) = args.model.load_engine()?;
    let handle = engine.database(db.path(), &GrammarOptions::default())?;
    let options = AskOptions {
        adapter,
        execute: false,
        ..AskOptions::new(args.model.answer_prompt(args.prompt.as_deref())?)
    };
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(args.from_model as u64),
        indicatif::ProgressDrawTarget::stderr(),
    );
    let (kept, no_question) = model::ModelPairs {
        engine: &engine,
        db: &handle,
        options: &options,
        seeds: &seeds,
        count: args.from_model,
    }
    .write(filter, rng, &mut || bar.inc(1))?;
    bar.finish_and_clear();
    if no_question > 0 {
        eprintln!("the model gave {no_question} replies that were not a question");
    }
    Ok(kept)
}
