//! The evaluation report: what was run (config), the summary (valid-SQL %,
//! execution accuracy, by category and by tag, speed) and every item; as
//! JSON and as a Markdown table.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::run::{BrokenItem, Category, ItemResult, Outcome};

/// Everything needed to reproduce a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalConfig {
    /// sqlagent's version.
    pub tool_version: String,
    /// The model as given (`--model`).
    pub model: String,
    /// A fingerprint of the weights: SHA-256 of the size, the first and the
    /// last MiB of each weight file (hashing many GiB would take minutes).
    pub model_fingerprint: String,
    /// The prompt's name and the SHA-256 of its files.
    pub prompt: String,
    /// SHA-256 of the prompt files.
    pub prompt_hash: String,
    /// Grammar mode.
    pub grammar: String,
    /// Sampling (temperature, top-p, seed, max tokens).
    pub sampling: serde_json::Value,
    /// The question set and its SHA-256.
    pub set: String,
    /// SHA-256 of the set file.
    pub set_hash: String,
    /// The database (`--db`), when one was given.
    pub db: Option<String>,
    /// The Spider database directory (`--db-dir`), when one was given.
    pub db_dir: Option<String>,
    /// `--limit`, when a subset was evaluated.
    pub limit: Option<usize>,
    /// `--sample-seed` of the subset.
    pub sample_seed: Option<u64>,
    /// `--retries`: further attempts after a rejected query.
    #[serde(default)]
    pub retries: usize,
    /// The adapters loaded (name, directory, weights hash, merged or not);
    /// the one that answered first when several are loaded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adapters: Vec<String>,
    /// `--schema-budget`: prompts longer than this showed only the tables
    /// their question needs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_budget: Option<usize>,
    /// Pairs retrieved per question as few-shot examples, and from where.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrieval: Option<String>,
}

/// Counts for one tag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TagSummary {
    /// Items with the tag.
    pub items: usize,
    /// Of those, valid SQL (%).
    pub valid_sql_pct: f64,
    /// Of those, same rows as gold (%).
    pub execution_accuracy_pct: f64,
}

/// The headline numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Items graded (broken items excluded).
    pub items: usize,
    /// Items whose gold query fails.
    pub broken: usize,
    /// Items whose SQL prepared and ran.
    pub valid_sql: usize,
    /// `valid_sql / items`, in percent.
    pub valid_sql_pct: f64,
    /// Items with the gold query's rows.
    pub execution_matches: usize,
    /// `execution_matches / items`, in percent.
    pub execution_accuracy_pct: f64,
    /// Valid SQL at the first attempt (%), before any `--retries`.
    pub first_attempt_valid_sql_pct: f64,
    /// Correct at the first attempt (%), before any `--retries`.
    pub first_attempt_execution_accuracy_pct: f64,
    /// Items per category.
    pub by_category: BTreeMap<String, usize>,
    /// Per tag.
    pub by_tag: BTreeMap<String, TagSummary>,
    /// Decoding speed over all items: tokens fed per second of decoding.
    pub tokens_per_s: f64,
    /// Mean question-to-rows latency (milliseconds).
    pub mean_latency_ms: f64,
    /// Question-to-rows latency per item (milliseconds).
    #[serde(default)]
    pub latency_ms: Spread,
    /// Decode steps (tokens fed) per emitted token per item: just under
    /// 1.0 without repairs (the last token is never fed); every step a
    /// grammar repair takes back counts.
    #[serde(default)]
    pub steps_per_token: Spread,
}

/// Median, 90th percentile and maximum of a per-item figure.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    /// The median.
    pub median: f64,
    /// The 90th percentile (nearest rank).
    pub p90: f64,
    /// The largest.
    pub max: f64,
}

impl Spread {
    /// The spread of `values` (all zero when there are none).
    pub fn of(values: impl IntoIterator<Item = f64>) -> Self {
        let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return Self::default();
        }
        v.sort_by(f64::total_cmp);
        Self {
            median: crate::grammar::percentile(&v, 0.5),
            p90: crate::grammar::percentile(&v, 0.9),
            max: v[v.len() - 1],
        }
    }
}

/// A whole run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// What was run.
    pub config: EvalConfig,
    /// The numbers.
    pub summary: Summary,
    /// Every graded item, in set order.
    pub items: Vec<ItemResult>,
    /// Items whose gold query fails.
    pub broken: Vec<BrokenItem>,
}

fn pct(n: usize, of: usize) -> f64 {
    if of == 0 {
        0.0
    } else {
        100.0 * n as f64 / of as f64
    }
}

impl Report {
    /// Builds the report from the outcomes (any order).
    pub fn new(config: EvalConfig, outcomes: &[Outcome]) -> Self {
        let mut items: Vec<ItemResult> = Vec::new();
        let mut broken = Vec::new();
        for o in outcomes {
            match o {
                Outcome::Graded(r) => items.push(r.clone()),
                Outcome::Broken(b) => broken.push(b.clone()),
            }
        }
        items.sort_by_key(|r| r.index);
        broken.sort_by_key(|b| b.index);
        let summary = summarize(&items, broken.len());
        Report {
            config,
            summary,
            items,
            broken,
        }
    }

    /// The summary as a Markdown table (one row: this run), with counts by
    /// category and by tag.
    pub fn markdown(&self) -> String {
        let s = &self.summary;
        let mut out = String::new();
        out.push_str(&format!(
            "Model `{}`, prompt `{}`, grammar `{}`, set `{}`\n\n",
            self.config.model, self.config.prompt, self.config.grammar, self.config.set
        ));
        out.push_str("| items | valid SQL | correct | tokens/s |\n|---|---|---|---|\n");
        out.push_str(&format!(
            "| {} | {:.1}% ({}) | {:.1}% ({}) | {:.1} |\n",
            s.items,
            s.valid_sql_pct,
            s.valid_sql,
            s.execution_accuracy_pct,
            s.execution_matches,
            s.tokens_per_s
        ));
        let (l, t) = (&s.latency_ms, &s.steps_per_token);
        out.push_str(&format!(
            "\nLatency per question: median {:.0} ms, p90 {:.0} ms, max {:.0} ms. \
             Decode steps per emitted token: median {:.2}, p90 {:.2}, max {:.2}.\n",
            l.median, l.p90, l.max, t.median, t.p90, t.max
        ));
        if self.config.retries > 0 {
            out.push_str(&format!(
                "\nAt the first attempt (before up to {} retries): valid SQL {:.1}%, correct {:.1}%.\n",
                self.config.retries, s.first_attempt_valid_sql_pct, s.first_attempt_execution_accuracy_pct
            ));
        }
        if s.broken > 0 {
            out.push_str(&format!(
                "\n{} item(s) not counted: their gold query fails.\n",
                s.broken
            ));
        }
        out.push_str("\n| category | items |\n|---|---|\n");
        for c in Category::ALL {
            if let Some(n) = s.by_category.get(c.name()) {
                out.push_str(&format!("| {} | {n} |\n", c.name()));
            }
        }
        if !s.by_tag.is_empty() {
            out.push_str("\n| tag | items | valid SQL | correct |\n|---|---|---|---|\n");
            for (tag, t) in &s.by_tag {
                out.push_str(&format!(
                    "| {tag} | {} | {:.1}% | {:.1}% |\n",
                    t.items, t.valid_sql_pct, t.execution_accuracy_pct
                ));
            }
        }
        out
    }
}

/// The summary of graded `items`.
pub fn summarize(items: &[ItemResult], broken: usize) -> Summary {
    let n = items.len();
    let valid = items.iter().filter(|r| r.valid_sql).count();
    let matches = items.iter().filter(|r| r.execution_match).count();
    let mut by_category = BTreeMap::new();
    for r in items {
        *by_category
            .entry(r.category.name().to_string())
            .or_insert(0) += 1;
    }
    let mut tags: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new();
    for r in items {
        for t in &r.tags {
            let e = tags.entry(t.clone()).or_default();
            e.0 += 1;
            e.1 += usize::from(r.valid_sql);
            e.2 += usize::from(r.execution_match);
        }
    }
    let by_tag = tags
        .into_iter()
        .map(|(t, (n, v, m))| {
            (
                t,
                TagSummary {
                    items: n,
                    valid_sql_pct: pct(v, n),
                    execution_accuracy_pct: pct(m, n),
                },
            )
        })
        .collect();
    let first = |r: &ItemResult| {
        r.first_attempt
            .map_or((r.valid_sql, r.execution_match), |f| {
                (f.valid_sql, f.execution_match)
            })
    };
    let first_valid = items.iter().filter(|r| first(r).0).count();
    let first_matches = items.iter().filter(|r| first(r).1).count();
    let tokens: usize = items.iter().map(|r| r.decode_steps).sum();
    let decode_s: f64 = items.iter().map(|r| r.decode_ms).sum::<f64>() / 1000.0;
    Summary {
        items: n,
        broken,
        valid_sql: valid,
        valid_sql_pct: pct(valid, n),
        execution_matches: matches,
        execution_accuracy_pct: pct(matches, n),
        first_attempt_valid_sql_pct: pct(first_valid, n),
        first_attempt_execution_accuracy_pct: pct(first_matches, n),
        by_category,
        by_tag,
        tokens_per_s: if decode_s > 0.0 {
            tokens as f64 / decode_s
        } else {
            0.0
        },
        mean_latency_ms: if n == 0 {
            0.0
        } else {
            items.iter().map(|r| r.latency_ms).sum::<f64>() / n as f64
        },
        latency_ms: Spread::of(items.iter().map(|r| r.latency_ms)),
        steps_per_token: Spread::of(
            items
                .iter()
                .filter(|r| r.generated_tokens > 0)
                .map(|r| r.decode_steps as f64 / r.generated_tokens as f64),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(
        index: usize,
        valid: bool,
        matched: bool,
        category: Category,
        tags: &[&str],
    ) -> ItemResult {
        ItemResult {
            index,
            question: format!("q{index}"),
            db: "d.db".into(),
            gold_sql: "SELECT 1".into(),
            sql: "SELECT 1".into(),
            reply: "SELECT 1".into(),
            valid_sql: valid,
            execution_match: matched,
            category,
            error: None,
            generated_tokens: 10,
            latency_ms: 100.0,
            decode_ms: 500.0,
            decode_steps: 10,
            attempts: 1,
            first_attempt: None,
            tags: tags.iter().map(|t| t.to_string()).collect(),
        }
    }

    #[test]
    fn summary_spreads_latency_and_steps_per_token() {
        let mut items: Vec<ItemResult> = (0..10)
            .map(|i| item(i, true, true, Category::Correct, &[]))
            .collect();
        for (i, r) in items.iter_mut().enumerate() {
            r.latency_ms = 100.0 * (i + 1) as f64;
            r.decode_steps = 10 + i; // 10 tokens each: 1.0 .. 1.9 steps a token
        }
        items[9].decode_steps = 40;
        items[0].generated_tokens = 0; // no token: no ratio
        let s = summarize(&items, 0);
        assert_eq!(s.latency_ms.max, 1000.0);
        assert_eq!(s.latency_ms.p90, 900.0);
        assert!((s.steps_per_token.max - 4.0).abs() < 1e-9);
        assert!((s.steps_per_token.median - 1.5).abs() < 1e-9);
        assert!((s.steps_per_token.p90 - 1.8).abs() < 1e-9);
        assert_eq!(Spread::of(Vec::new()), Spread::default());
    }

    #[test]
    fn summary_counts_percentages_categories_and_tags() {
        let items = vec![
            item(0, true, true, Category::Correct, &["easy"]),
            item(1, true, false, Category::WrongResult, &["easy", "join"]),
            item(2, false, false, Category::NoSuchColumn, &["join"]),
            item(3, true, true, Category::Correct, &[]),
        ];
        let s = summarize(&items, 1);
        assert_eq!(
            (s.items, s.broken, s.valid_sql, s.execution_matches),
            (4, 1, 3, 2)
        );
        assert_eq!(s.valid_sql_pct, 75.0);
        assert_eq!(s.execution_accuracy_pct, 50.0);
        assert_eq!(s.by_category["correct"], 2);
        assert_eq!(s.by_category["no_such_column"], 1);
        assert_eq!(s.by_tag["join"].items, 2);
        assert_eq!(s.by_tag["join"].execution_accuracy_pct, 0.0);
        assert_eq!(s.by_tag["easy"].valid_sql_pct, 100.0);
        // 40 tokens over 2 s of decoding.
        assert_eq!(s.tokens_per_s, 20.0);
    }
}
