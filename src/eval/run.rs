//! Evaluating one item: run the gold query, let the agent write SQL for the
//! question, run that, and grade it (valid SQL, execution match, an error
//! category).

use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::set::SetItem;
use crate::agent::{
    answer, AskOptions, Attempt, DatabaseHandle, Draft, Execution, Listener, SqlWriter, Timings,
};
use crate::error::Error;
use crate::generate::StopReason;
use crate::sql::{orders_rows, results_match, QueryResult};

/// Why an item was not answered correctly (or `Correct`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Same rows as the gold query.
    Correct,
    /// SQLite could not parse it (or the reply held no SQL).
    Syntax,
    /// It names a table the database lacks.
    NoSuchTable,
    /// It names a column the database lacks.
    NoSuchColumn,
    /// It ran but returned other rows.
    WrongResult,
    /// It ran and returned no rows where the gold query returns some.
    EmptyResult,
    /// It ran past the time limit.
    Timeout,
    /// The model failed to produce an answer (an engine error).
    GenerationError,
    /// Any other SQLite error (ambiguous name, misuse of aggregate, a
    /// refused statement, …).
    OtherError,
}

impl Category {
    /// Every category, in report order.
    pub const ALL: [Category; 9] = [
        Category::Correct,
        Category::WrongResult,
        Category::EmptyResult,
        Category::Syntax,
        Category::NoSuchTable,
        Category::NoSuchColumn,
        Category::OtherError,
        Category::Timeout,
        Category::GenerationError,
    ];

    /// The snake_case name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Category::Correct => "correct",
            Category::Syntax => "syntax",
            Category::NoSuchTable => "no_such_table",
            Category::NoSuchColumn => "no_such_column",
            Category::WrongResult => "wrong_result",
            Category::EmptyResult => "empty_result",
            Category::Timeout => "timeout",
            Category::GenerationError => "generation_error",
            Category::OtherError => "other_error",
        }
    }

    /// The category of a failed execution.
    pub fn of_error(e: &Error) -> Category {
        match e {
            Error::Timeout { .. } => Category::Timeout,
            Error::NoQuery { .. } | Error::OutOfTokens { .. } => Category::Syntax,
            Error::Query { message, .. } => {
                if message.contains("no such table") {
                    Category::NoSuchTable
                } else if message.contains("no such column") {
                    Category::NoSuchColumn
                } else if message.contains("syntax error")
                    || message.contains("incomplete input")
                    || message.contains("unrecognized token")
                {
                    Category::Syntax
                } else {
                    Category::OtherError
                }
            }
            _ => Category::OtherError,
        }
    }
}

/// The graded result of one item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemResult {
    /// Position of the item in the set file (0-based, blank lines skipped).
    pub index: usize,
    /// The question.
    pub question: String,
    /// The database it ran on.
    pub db: String,
    /// The gold query.
    pub gold_sql: String,
    /// The generated query (empty when none).
    pub sql: String,
    /// The model's whole reply to the last attempt (the query plus any
    /// prose or code fences around it), to see why an item failed.
    #[serde(default)]
    pub reply: String,
    /// Prepared and executed without error within the time limit.
    pub valid_sql: bool,
    /// Same rows as the gold query.
    pub execution_match: bool,
    /// Why not correct (or `correct`).
    pub category: Category,
    /// The error message, when it failed.
    pub error: Option<String>,
    /// Tokens the model generated.
    pub generated_tokens: usize,
    /// Question in, rows out (milliseconds, model load excluded).
    pub latency_ms: f64,
    /// Decode time (milliseconds), for tokens/s.
    pub decode_ms: f64,
    /// Tokens fed to the model while decoding (including any a grammar
    /// repair took back): what `decode_ms` was spent on.
    pub decode_steps: usize,
    /// The item's tags.
    pub tags: Vec<String>,
    /// Attempts made (1 without `--retries`).
    #[serde(default)]
    pub attempts: usize,
    /// The first attempt's grade (the same as the final one after a
    /// single attempt).
    #[serde(default)]
    pub first_attempt: Option<FirstAttempt>,
}

/// An item whose gold query itself fails: reported, not counted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BrokenItem {
    /// Position of the item in the set file.
    pub index: usize,
    /// The question.
    pub question: String,
    /// The gold query.
    pub gold_sql: String,
    /// What SQLite said.
    pub error: String,
}

/// What evaluating one item gave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// Graded.
    Graded(ItemResult),
    /// The gold query fails.
    Broken(BrokenItem),
}

impl Outcome {
    /// The item's index in the set.
    pub fn index(&self) -> usize {
        match self {
            Outcome::Graded(r) => r.index,
            Outcome::Broken(b) => b.index,
        }
    }
}

/// The grade of the first attempt, kept when `--retries` gave more.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FirstAttempt {
    /// The first query was valid SQL.
    pub valid_sql: bool,
    /// The first query had the gold rows.
    pub execution_match: bool,
    /// Its category.
    pub category: Category,
}

/// A hosted model answering with the same prompt as the local one.
pub struct HostedWriter {
    /// The endpoint.
    pub client: crate::hosted::HostedClient,
    /// The prompt (the same files as for local models).
    pub prompt: crate::chat::PromptSpec,
}

impl SqlWriter for HostedWriter {
    fn write_sql(
        &self,
        db: &DatabaseHandle,
        question: &str,
        failures: &[(String, String)],
        _listener: &mut Listener<'_>,
    ) -> crate::Result<Draft> {
        let mut messages = self.prompt.messages(db.schema(), question)?;
        for (sql, error) in failures {
            messages.extend(self.prompt.retry_messages(sql, error)?);
        }
        let reply = self.client.chat(&messages)?;
        let tokens = reply.completion_tokens.unwrap_or(0);
        Ok(Draft {
            question: question.trim().to_string(),
            sql: crate::sql::extract_sql(&reply.text).unwrap_or_default(),
            reply: reply.text,
            stop: StopReason::EndToken,
            timings: Timings {
                generated_tokens: tokens,
                decode_ms: reply.latency_ms,
                decode_steps: tokens,
                ..Timings::default()
            },
            grammar: Default::default(),
        })
    }
}

/// Where to evaluate an item.
pub struct ItemContext<'a> {
    /// What writes the SQL.
    pub writer: &'a dyn SqlWriter,
    /// The database with its schema (and grammar, for the local model).
    pub db: &'a DatabaseHandle,
    /// Limits for running the gold and the generated queries, and the
    /// further attempts after a query SQLite rejects (each shown the failed
    /// query and the error).
    pub options: &'a AskOptions,
}

/// Evaluates `item` (number `index`). Errors only when no item can work
/// (a hosted endpoint refused the API key); other failures are graded.
pub fn evaluate_item(cx: &ItemContext<'_>, index: usize, item: &SetItem) -> crate::Result<Outcome> {
    let gold = match cx.db.execute(&item.sql, &cx.options.limits) {
        Ok(rows) => rows,
        Err(e) => {
            return Ok(Outcome::Broken(BrokenItem {
                index,
                question: item.question.clone(),
                gold_sql: item.sql.clone(),
                error: e.to_string(),
            }))
        }
    };
    let start = Instant::now();
    let mut result = ItemResult {
        index,
        question: item.question.clone(),
        db: cx.db.path().display().to_string(),
        gold_sql: item.sql.clone(),
        sql: String::new(),
        reply: String::new(),
        valid_sql: false,
        execution_match: false,
        category: Category::GenerationError,
        error: None,
        generated_tokens: 0,
        latency_ms: 0.0,
        decode_ms: 0.0,
        decode_steps: 0,
        tags: item.tags.clone(),
        attempts: 1,
        first_attempt: None,
    };
    let options = AskOptions {
        execute: true,
        ..cx.options.clone()
    };
    match answer(
        cx.writer,
        cx.db,
        &item.question,
        &options,
        &mut Listener::default(),
    ) {
        Err(e @ Error::HostedAuth { .. }) => return Err(e),
        Err(e) => {
            result.error = Some(e.to_string());
            result.first_attempt = Some(FirstAttempt {
                valid_sql: false,
                execution_match: false,
                category: Category::GenerationError,
            });
        }
        Ok(answer) => {
            for attempt in &answer.attempts {
                if !matches!(attempt.execution, Execution::NotWritten(_)) {
                    result.generated_tokens += attempt.draft.timings.generated_tokens;
                    result.decode_ms += attempt.draft.timings.decode_ms;
                    result.decode_steps += attempt.draft.timings.decode_steps;
                }
                grade(&gold, item, attempt, &mut result);
                let first = FirstAttempt {
                    valid_sql: result.valid_sql,
                    execution_match: result.execution_match,
                    category: result.category,
                };
                result.first_attempt.get_or_insert(first);
            }
            result.attempts = answer.attempts.len();
        }
    }
    result.latency_ms = start.elapsed().as_secs_f64() * 1000.0;
    Ok(Outcome::Graded(result))
}

/// Grades one attempt against `gold` into `result`.
fn grade(gold: &QueryResult, item: &SetItem, attempt: &Attempt, result: &mut ItemResult) {
    result.sql = attempt.draft.sql.clone();
    result.reply = attempt.draft.reply.clone();
    result.valid_sql = false;
    result.execution_match = false;
    result.error = None;
    match &attempt.execution {
        Execution::Skipped => unreachable!("evaluation runs every query"),
        Execution::NotWritten(e) => {
            result.sql.clear();
            result.reply.clear();
            result.category = Category::GenerationError;
            result.error = Some(e.to_string());
        }
        Execution::Failed(e) => {
            result.category = Category::of_error(e);
            result.error = Some(match e {
                Error::NoQuery { .. } | Error::OutOfTokens { .. } => {
                    "the reply holds no SQL query".to_string()
                }
                other => other.to_string(),
            });
        }
        Execution::Rows(rows) => {
            result.valid_sql = true;
            result.execution_match = results_match(gold, rows, orders_rows(&item.sql));
            result.category = if result.execution_match {
                Category::Correct
            } else if rows.rows.is_empty() && !gold.rows.is_empty() {
                Category::EmptyResult
            } else {
                Category::WrongResult
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_errors_map_to_categories() {
        let q = |m: &str| Error::Query {
            sql: "x".into(),
            message: m.into(),
        };
        assert_eq!(
            Category::of_error(&q("no such table: x")),
            Category::NoSuchTable
        );
        assert_eq!(
            Category::of_error(&q("no such column: a.b")),
            Category::NoSuchColumn
        );
        assert_eq!(
            Category::of_error(&q("near \"FROM\": syntax error")),
            Category::Syntax
        );
        assert_eq!(Category::of_error(&q("incomplete input")), Category::Syntax);
        assert_eq!(
            Category::of_error(&q("misuse of aggregate: max()")),
            Category::OtherError
        );
        let timeout = Error::Timeout {
            sql: "x".into(),
            timeout_ms: 1,
        };
        assert_eq!(Category::of_error(&timeout), Category::Timeout);
    }
}
