//! `sqlagent synth`: template-generated question/SQL pairs for a database,
//! kept only when they run, return rows, are not one more copy of a shape,
//! and stay clear of the evaluation sets.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::args::SynthArgs;
use crate::eval::load_set;
use crate::sql::Database;
use crate::synth::{candidates, Filter};

/// Runs `sqlagent synth`.
pub fn synth(args: SynthArgs) -> Result<()> {
    if args.count == 0 {
        bail!("-n must be at least 1");
    }
    if args.out.exists() && !args.force {
        bail!("{} exists; pass --force to replace it", args.out.display());
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
    let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed);
    let mut all = candidates(&schema, &mut rng);
    all.shuffle(&mut rng);
    let mut filter = Filter::new(&eval, args.max_per_skeleton);
    let mut kept = Vec::new();
    let mut by_template: BTreeMap<&str, usize> = BTreeMap::new();
    for c in &all {
        if kept.len() == args.count {
            break;
        }
        if filter.keep(&db, &c.question, &c.sql) {
            *by_template.entry(c.template).or_default() += 1;
            kept.push(serde_json::json!({
                "question": c.question,
                "sql": c.sql,
                "source": format!("template:{}", c.template),
            }));
        }
    }
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let text: String = kept.iter().map(|v| format!("{v}\n")).collect();
    std::fs::write(&args.out, text).with_context(|| format!("writing {}", args.out.display()))?;

    let rejected: usize = filter.rejected.values().sum();
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
