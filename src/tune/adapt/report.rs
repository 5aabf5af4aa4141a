//! What an adapt run found: base vs adapter on each set with McNemar's
//! exact test, the pairs, the tuning record; as `report.json` and
//! `report.md`.

use std::path::Path;

use serde::Serialize;

use super::{AdaptPlan, Phase};
use crate::error::Result;
use crate::eval::{compare_runs, Report};

/// Base vs adapter on one set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SetResult {
    /// The set's name (`held-out`, or an evaluation file's stem).
    pub set: String,
    /// Questions graded in both runs.
    pub items: usize,
    /// Correct answers of the base model.
    pub base_correct: usize,
    /// Correct answers with the adapter.
    pub adapter_correct: usize,
    /// Valid SQL of the base model (%).
    pub base_valid_pct: f64,
    /// Valid SQL with the adapter (%).
    pub adapter_valid_pct: f64,
    /// Right with the base model only.
    pub only_base: usize,
    /// Right with the adapter only.
    pub only_adapter: usize,
    /// McNemar's exact two-sided p-value over those flips.
    pub p_value: f64,
}

impl SetResult {
    /// Compares a base run with an adapter run of the same set.
    pub fn new(set: &str, base: &Report, adapter: &Report) -> Self {
        let pair = compare_runs(&[base.clone(), adapter.clone()]);
        let c = &pair[0];
        let correct = |r: &Report| r.items.iter().filter(|i| i.execution_match).count();
        SetResult {
            set: set.to_string(),
            items: c.common,
            base_correct: correct(base),
            adapter_correct: correct(adapter),
            base_valid_pct: base.summary.valid_sql_pct,
            adapter_valid_pct: adapter.summary.valid_sql_pct,
            only_base: c.only_a.len(),
            only_adapter: c.only_b.len(),
            p_value: c.p_value,
        }
    }
}

/// The whole run's report.
#[derive(Debug, Clone, Serialize)]
pub struct AdaptReport {
    /// The database.
    pub db: String,
    /// The base model as named.
    pub model: String,
    /// The prompt the adapter answers with, and the base model's.
    pub prompt: String,
    /// The base model's prompt.
    pub base_prompt: String,
    /// Prompts longer than this showed the tables a question needs.
    pub schema_budget: Option<usize>,
    /// Pairs trained on (validation share included).
    pub train_pairs: usize,
    /// Held-out pairs (SQL shapes not trained on).
    pub held_out_pairs: usize,
    /// Base vs adapter on each set.
    pub sets: Vec<SetResult>,
    /// Seconds each phase took in the process that finished the run.
    pub phase_seconds: Vec<(Phase, f64)>,
    /// `training.json` as `tune` wrote it.
    pub training: serde_json::Value,
}

impl AdaptReport {
    /// The report of `plan`, from the (train, held-out) sizes, the names
    /// of the sets with the base and adapter runs of each (same order), the
    /// tuning record and the phase times.
    pub fn new(
        plan: &AdaptPlan,
        (train, held_out): (usize, usize),
        names: &[String],
        base: &[Report],
        adapter: &[Report],
        training: serde_json::Value,
        phase_seconds: &[(Phase, f64)],
    ) -> Self {
        let sets = names
            .iter()
            .zip(base.iter().zip(adapter))
            .map(|(name, (b, a))| SetResult::new(name, b, a))
            .collect();
        AdaptReport {
            db: plan.db.display().to_string(),
            model: plan.model_name.clone(),
            prompt: plan.prompt.name().to_string(),
            base_prompt: plan.base_prompt.name().to_string(),
            schema_budget: plan.prompt.schema_budget(),
            train_pairs: train,
            held_out_pairs: held_out,
            sets,
            phase_seconds: phase_seconds.to_vec(),
            training,
        }
    }

    /// The report as Markdown.
    pub fn markdown(&self) -> String {
        let mut out = format!(
            "# adapt: {}\n\nmodel {}; adapter prompt `{}`, base prompt `{}`; schema budget {}\n\n",
            self.db,
            self.model,
            self.prompt,
            self.base_prompt,
            self.schema_budget
                .map_or("none".into(), |b| format!("{b} tokens"))
        );
        out.push_str(&format!(
            "pairs: {} to train on, {} held out (SQL shapes not trained on)\n\n",
            self.train_pairs, self.held_out_pairs
        ));
        out.push_str(&self.table());
        let t = &self.training;
        if let Some(epochs) = t["epochs"].as_array() {
            out.push_str(
                "\n| epoch | train loss | validation loss | seconds |\n|---|---|---|---|\n",
            );
            for e in epochs {
                out.push_str(&format!(
                    "| {} | {:.4} | {} | {:.0} |\n",
                    e["epoch"],
                    e["train_loss"].as_f64().unwrap_or(f64::NAN),
                    e["val_loss"]
                        .as_f64()
                        .map_or("-".into(), |v| format!("{v:.4}")),
                    e["seconds"].as_f64().unwrap_or(0.0)
                ));
            }
        }
        out.push_str(&format!(
            "\ntuning: {} tokens/s, peak memory {}\n",
            t["tokens_per_s"]
                .as_f64()
                .map_or("?".into(), |v| format!("{v:.0}")),
            t["peak_rss_mb"]
                .as_f64()
                .map_or("unknown".into(), |m| format!("{m:.0} MB"))
        ));
        let phases: Vec<String> = self
            .phase_seconds
            .iter()
            .map(|(p, s)| format!("{} {:.0} s", p.name(), s))
            .collect();
        out.push_str(&format!("time (this process): {}\n", phases.join(", ")));
        out
    }

    /// The base-vs-adapter table alone.
    pub fn table(&self) -> String {
        let mut out = String::from(
            "| set | questions | base correct | adapter correct | base only | adapter only | McNemar p |\n|---|---|---|---|---|---|---|\n",
        );
        for s in &self.sets {
            let pct = |n: usize| 100.0 * n as f64 / s.items.max(1) as f64;
            let p = if s.p_value < 0.001 {
                "<0.001".to_string()
            } else {
                format!("{:.3}", s.p_value)
            };
            out.push_str(&format!(
                "| {} | {} | {} ({:.0}%) | {} ({:.0}%) | {} | {} | {} |\n",
                s.set,
                s.items,
                s.base_correct,
                pct(s.base_correct),
                s.adapter_correct,
                pct(s.adapter_correct),
                s.only_base,
                s.only_adapter,
                p
            ));
        }
        out
    }

    /// Writes `report.json` and `report.md` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let json = serde_json::to_value(self)
            .map_err(|e| crate::Error::invalid("report", e.to_string()))?;
        super::write_json(&dir.join("report.json"), &json)?;
        let path = dir.join("report.md");
        std::fs::write(&path, self.markdown()).map_err(|e| crate::Error::io(&path, e))
    }
}
