//! `sqlagent adapt`: from a database to a tuned adapter and a report of base
//! vs adapter, in one run ([`crate::tune::adapt`]).

use anyhow::Result;

use super::args::AdaptArgs;
use super::output;
use crate::chat::PromptSpec;
use crate::tune::adapt::{AdaptPlan, AdaptProgress, Phase};
use crate::tune::TuneOptions;

/// Runs `sqlagent adapt`.
pub fn adapt(args: AdaptArgs) -> Result<()> {
    if !args.model.adapters.is_empty() {
        usage_bail!(
            "--adapter: adapt tunes a new adapter on the base model; it does not start from one"
        );
    }
    let budget = (args.schema_budget > 0).then_some(args.schema_budget);
    let plan = AdaptPlan {
        db: args.db.clone(),
        out: args.out.clone(),
        model: args
            .model
            .to_options(std::io::IsTerminal::is_terminal(&std::io::stderr()))?,
        model_name: args.model.model.clone(),
        prompt: PromptSpec::load(&args.prompt)?.with_schema_budget(budget),
        base_prompt: PromptSpec::load(&args.base_prompt)?.with_schema_budget(budget),
        pairs: args.pairs,
        min_pairs: args.min_pairs,
        max_per_skeleton: args.max_per_skeleton,
        held_out: args.held_out,
        eval_sets: args.eval.clone(),
        options: TuneOptions {
            rank: args.rank,
            alpha: args.alpha,
            targets: args.targets.clone(),
            learning_rate: args.lr,
            epochs: args.epochs,
            grad_accum: args.grad_accum,
            seed: args.seed,
            ..TuneOptions::default()
        },
        val_fraction: 0.05,
        max_len: args.max_len,
        seed: args.seed,
        resume: args.resume,
    };

    let bar = output::progress(1);
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut last: Option<(Phase, std::time::Instant)> = None;
    let report = plan.run(&mut |p: &AdaptProgress| {
        let line = progress_line(p);
        bar.set_length(p.total.max(1) as u64);
        bar.set_position(p.done as u64);
        bar.set_message(line.clone());
        // Without a terminal (a log, CI): a line per phase and every half
        // minute.
        let due = match last {
            Some((phase, at)) => phase != p.phase || at.elapsed().as_secs() >= 30,
            None => true,
        };
        if !terminal && due {
            eprintln!("adapt: {}/{} {line}", p.done, p.total);
            last = Some((p.phase, std::time::Instant::now()));
        }
        true
    });
    bar.finish_and_clear();
    let report = report.map_err(flag_names)?;
    if args.format == super::args::Format::Json {
        let obj = serde_json::json!({
            "adapter": args.out, "train_pairs": report.train_pairs,
            "held_out_pairs": report.held_out_pairs, "report": args.out.join("report.md"),
        });
        outln!("{obj}");
        return Ok(());
    }
    outln!("adapter written to {}", args.out.display());
    outln!(
        "pairs: {} to train on, {} held out",
        report.train_pairs,
        report.held_out_pairs
    );
    outln!("{}", report.table().trim_end());
    outln!("report: {}", args.out.join("report.md").display());
    Ok(())
}

/// `phase 4/6 tune: epoch 1 loss 0.41 … ~23 min left`.
fn progress_line(p: &AdaptProgress) -> String {
    let left = match p.eta_s {
        Some(s) if s >= 90.0 => format!("~{:.0} min left", s / 60.0),
        Some(s) => format!("~{s:.0} s left"),
        None => "estimating time left".into(),
    };
    format!(
        "phase {}/{} {}: {} ({left})",
        p.phase.number(),
        Phase::ALL.len(),
        p.phase.name(),
        p.detail
    )
}

/// Library errors in the words of this command's flags.
fn flag_names(e: crate::Error) -> anyhow::Error {
    match e {
        crate::Error::Invalid { field, message }
            if field == "resume" && message.contains("resume it") =>
        {
            anyhow::anyhow!(
                "{}",
                message.replace(
                    "resume it, or choose another directory",
                    "pass --resume to continue it, or choose another --out"
                )
            )
        }
        crate::Error::Invalid { field, message } if field == "resume" => anyhow::anyhow!(
            "--resume: {}",
            message.replace(
                "start it again in another directory",
                "start again with another --out"
            )
        ),
        crate::Error::Invalid { field, message } if field == "output directory" => {
            anyhow::anyhow!("--out: {message}; choose another --out")
        }
        crate::Error::Invalid { field, message } if field == "pairs" => {
            anyhow::anyhow!("--pairs: {message}")
        }
        crate::Error::Invalid { field, message } if field == "min pairs" => anyhow::anyhow!(
            "{message}; to tune anyway, resume with --resume and a lower --min-pairs"
        ),
        crate::Error::Invalid { field, message } if field == "held out" => {
            anyhow::anyhow!("--held-out: {message}")
        }
        other => other.into(),
    }
}
