//! One synthesis run over a database: the filter set up from its schema and
//! the evaluation items to stay clear of, then template candidates kept
//! until enough pass.

use std::collections::BTreeMap;

use rand::rngs::StdRng;

use super::templates::{candidates, interleave, with_values};
use super::Filter;
use crate::error::Result;
use crate::sql::{Database, Schema};

/// A kept pair and where it came from (`template:NAME` or `model`).
#[derive(Debug, Clone, PartialEq)]
pub struct SynthPair {
    /// The question.
    pub question: String,
    /// Its SQL.
    pub sql: String,
    /// `template:NAME` or `model`.
    pub source: String,
}

impl SynthPair {
    /// The JSONL line of a training file.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({"question": self.question, "sql": self.sql, "source": self.source})
    }
}

/// The filter for pairs over `schema`: table and column names, nothing
/// overlapping `eval` (question, SQL), at most `max_per_skeleton` of one
/// shape.
pub fn filter_for(schema: &Schema, eval: &[(String, String)], max_per_skeleton: usize) -> Filter {
    let tables: Vec<String> = schema.tables.iter().map(|t| t.name.clone()).collect();
    let columns: Vec<String> = schema
        .tables
        .iter()
        .flat_map(|t| t.columns.iter().map(|c| c.name.clone()))
        .collect();
    Filter::new(&tables, eval, max_per_skeleton).with_columns(&columns)
}

/// Up to `count` template pairs over `db` that `filter` keeps, the kinds of
/// question dealt in turn; with how many each template gave.
pub fn template_pairs(
    db: &Database,
    filter: &mut Filter,
    count: usize,
    rng: &mut StdRng,
) -> Result<(Vec<SynthPair>, BTreeMap<&'static str, usize>)> {
    let schema = db.schema()?;
    let all = interleave(candidates(&with_values(db, &schema), rng), rng);
    let mut kept = Vec::new();
    let mut by_template: BTreeMap<&'static str, usize> = BTreeMap::new();
    for c in all {
        if kept.len() == count {
            break;
        }
        if filter.keep(db, &c.question, &c.sql) {
            *by_template.entry(c.template).or_default() += 1;
            kept.push(SynthPair {
                question: c.question,
                sql: c.sql,
                source: format!("template:{}", c.template),
            });
        }
    }
    Ok((kept, by_template))
}
