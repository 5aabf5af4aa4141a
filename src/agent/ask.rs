//! The use case: a question about a database → SQL written by the model
//! under the database's grammar → rows, read-only and within limits, with
//! the optional reflection retry (a failed query and SQLite's error shown
//! to the model, which writes another).

use std::time::Instant;

use serde::Serialize;

use super::SqlCheck;
use super::{AdapterInfo, DatabaseHandle, Engine, Timings};
use crate::chat::PromptSpec;
use crate::error::{Error, Result};
use crate::generate::{self, CancelFlag, GenerateRequest, SamplingParams, StopReason};
use crate::grammar::CompiledGrammar;
use crate::sql::{self, ExecLimits, QueryResult};

/// How to answer one question: plain values, shared by every caller.
#[derive(Debug, Clone)]
pub struct AskOptions {
    /// The text-to-SQL prompt.
    pub prompt: PromptSpec,
    /// Sampling and token budget.
    pub sampling: SamplingParams,
    /// Limits for running the SQL.
    pub limits: ExecLimits,
    /// The attached adapter that answers, by name (`None`: the model as
    /// loaded, with any merged adapter).
    pub adapter: Option<String>,
    /// Further attempts after a query that fails to run, each shown the
    /// failed query and SQLite's error.
    pub retries: usize,
    /// Run the SQL (off: only write it).
    pub execute: bool,
}

impl AskOptions {
    /// Greedy answers with `prompt`, the default limits, no adapter, no
    /// retries, executed.
    pub fn new(prompt: PromptSpec) -> Self {
        Self {
            prompt,
            sampling: SamplingParams::default(),
            limits: ExecLimits::default(),
            adapter: None,
            retries: 0,
            execute: true,
        }
    }
}

/// What the caller hears of a generation while it runs, and how it stops
/// one.
#[derive(Default)]
pub struct Listener<'a> {
    /// Receives the reply as it streams (after a repair the final text is
    /// [`Draft::reply`]).
    pub on_text: Option<&'a mut dyn FnMut(&str)>,
    /// Set to stop the generation ([`Error::Cancelled`]).
    pub cancel: Option<&'a CancelFlag>,
}

/// The SQL the model wrote for a question, before it runs.
#[derive(Debug, Clone, Serialize)]
pub struct Draft {
    /// The question.
    pub question: String,
    /// The model's whole reply.
    pub reply: String,
    /// The SQL extracted from the reply (empty when none was found).
    pub sql: String,
    /// Why generation stopped.
    pub stop: StopReason,
    /// Where the time went.
    pub timings: Timings,
    /// What the grammar cost (zero without one).
    pub grammar: generate::GrammarStats,
}

/// What running an attempt's SQL gave.
#[derive(Debug)]
pub enum Execution {
    /// Not run (execution was off).
    Skipped,
    /// The rows.
    Rows(QueryResult),
    /// The attempt did not give rows: no query ([`Error::NoQuery`]), out
    /// of tokens ([`Error::OutOfTokens`]), or SQLite's error or timeout.
    Failed(Error),
    /// A retry could not be written at all (an engine error); the attempts
    /// before it stand.
    NotWritten(Error),
}

/// One try at the question.
#[derive(Debug)]
pub struct Attempt {
    /// What the model wrote.
    pub draft: Draft,
    /// What running it gave.
    pub execution: Execution,
}

impl Attempt {
    /// Why it gave no rows, if it did not.
    pub fn execution_error(&self) -> Option<&Error> {
        match &self.execution {
            Execution::Failed(e) | Execution::NotWritten(e) => Some(e),
            _ => None,
        }
    }
}

/// A question answered: every attempt, the last one final.
#[derive(Debug)]
pub struct Answer {
    /// The attempts in order (at least one).
    pub attempts: Vec<Attempt>,
    /// The adapter that answered, if any.
    pub adapter: Option<AdapterInfo>,
}

impl Answer {
    /// The final attempt.
    pub fn last(&self) -> &Attempt {
        self.attempts.last().expect("an answer has an attempt")
    }

    /// The final attempt's draft.
    pub fn draft(&self) -> &Draft {
        &self.last().draft
    }

    /// The final rows, when the last attempt ran.
    pub fn rows(&self) -> Option<&QueryResult> {
        match &self.last().execution {
            Execution::Rows(r) => Some(r),
            _ => None,
        }
    }

    /// Why the final attempt gave no rows, if it did not.
    pub fn error(&self) -> Option<&Error> {
        self.last().execution_error()
    }

    /// The final draft and its rows (`None` when not run), or why there
    /// are none.
    pub fn into_result(mut self) -> Result<(Draft, Option<QueryResult>)> {
        let last = self.attempts.pop().expect("an answer has an attempt");
        match last.execution {
            Execution::Skipped => Ok((last.draft, None)),
            Execution::Rows(r) => Ok((last.draft, Some(r))),
            Execution::Failed(e) | Execution::NotWritten(e) => Err(e),
        }
    }
}

/// Writes SQL for a question about a database: the local engine, or a
/// hosted model behind the same prompt.
pub trait SqlWriter {
    /// SQL for `question` over `db`, after the `failures` (query, error) of
    /// earlier attempts.
    fn write_sql(
        &self,
        db: &DatabaseHandle,
        question: &str,
        failures: &[(String, String)],
        listener: &mut Listener<'_>,
    ) -> Result<Draft>;

    /// The adapter behind the answers, if any.
    fn adapter(&self) -> Option<AdapterInfo> {
        None
    }

    /// Gets ready for questions about `db` before the first one is timed
    /// (the local engine prefills the schema into its prompt cache).
    fn prepare(&self, db: &DatabaseHandle) -> Result<()> {
        let _ = db;
        Ok(())
    }
}

/// The local engine answering with `options`.
pub struct LocalWriter<'a> {
    /// The model.
    pub engine: &'a Engine,
    /// How to answer.
    pub options: &'a AskOptions,
}

impl SqlWriter for LocalWriter<'_> {
    fn write_sql(
        &self,
        db: &DatabaseHandle,
        question: &str,
        failures: &[(String, String)],
        listener: &mut Listener<'_>,
    ) -> Result<Draft> {
        self.engine
            .draft(db, question, failures, self.options, listener)
    }

    fn adapter(&self) -> Option<AdapterInfo> {
        self.engine
            .answering_adapter(self.options.adapter.as_deref())
            .ok()
            .flatten()
    }

    fn prepare(&self, db: &DatabaseHandle) -> Result<()> {
        self.engine.prefill_schema(db, self.options).map(|_| ())
    }
}

/// THE use case: `writer` writes SQL for `question` about `db`, which runs
/// read-only under `limits` (unless `execute` is off); a query that fails
/// is shown to the writer with SQLite's error up to `retries` more times.
/// Errors only when the first attempt cannot be written (an engine error);
/// a query that fails is an [`Execution::Failed`] attempt.
pub fn answer(
    writer: &dyn SqlWriter,
    db: &DatabaseHandle,
    question: &str,
    options: &AskOptions,
    listener: &mut Listener<'_>,
) -> Result<Answer> {
    if question.trim().is_empty() {
        return Err(Error::invalid(
            "question",
            "is empty; ask something about the database",
        ));
    }
    if let Some(verb) = super::requested_change(question) {
        return Err(Error::ChangeRequested { verb });
    }
    let mut attempts: Vec<Attempt> = Vec::new();
    let mut failures: Vec<(String, String)> = Vec::new();
    for _ in 0..=options.retries {
        let draft = match writer.write_sql(db, question, &failures, listener) {
            Ok(d) => d,
            Err(e) if attempts.is_empty() => return Err(e),
            Err(e) => {
                let draft = attempts.last().expect("not empty").draft.clone();
                attempts.push(Attempt {
                    draft,
                    execution: Execution::NotWritten(e),
                });
                break;
            }
        };
        let attempt = run(db, draft, options);
        let retry = match &attempt.execution {
            Execution::Failed(e) => Some(feedback(e)),
            _ => None,
        };
        if let Some(error) = &retry {
            let shown = if attempt.draft.sql.is_empty() {
                "(no query)".to_string()
            } else {
                attempt.draft.sql.clone()
            };
            failures.push((shown, error.clone()));
        }
        attempts.push(attempt);
        if retry.is_none() {
            break;
        }
    }
    Ok(Answer {
        attempts,
        adapter: writer.adapter(),
    })
}

/// What the model is told about a failed attempt.
fn feedback(e: &Error) -> String {
    match e {
        Error::Query { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// Runs a draft's SQL (or says why there is none to run).
fn run(db: &DatabaseHandle, mut draft: Draft, options: &AskOptions) -> Attempt {
    if draft.sql.is_empty() {
        // Under a grammar the reply is the query: it ran out of tokens.
        let e = if draft.stop == StopReason::MaxTokens && db.grammar().is_some() {
            Error::OutOfTokens {
                max_tokens: options.sampling.max_tokens,
            }
        } else {
            Error::NoQuery {
                reply: draft.reply.chars().take(200).collect(),
            }
        };
        return Attempt {
            draft,
            execution: Execution::Failed(e),
        };
    }
    if !options.execute {
        return Attempt {
            draft,
            execution: Execution::Skipped,
        };
    }
    let start = Instant::now();
    let result = db.execute(&draft.sql, &options.limits);
    draft.timings.execute_ms = start.elapsed().as_secs_f64() * 1000.0;
    let execution = match result {
        Ok(rows) => Execution::Rows(rows),
        Err(e) => Execution::Failed(e),
    };
    Attempt { draft, execution }
}

impl Engine {
    /// Asks `question` about `db` with `options`: [`answer`] with this
    /// engine writing the SQL.
    pub fn ask(
        &self,
        db: &DatabaseHandle,
        question: &str,
        options: &AskOptions,
        listener: &mut Listener<'_>,
    ) -> Result<Answer> {
        let writer = LocalWriter {
            engine: self,
            options,
        };
        answer(&writer, db, question, options, listener)
    }

    /// Prefills what every prompt about `db` with `options` shares (the
    /// system prompt and the schema, up to where the question starts) into
    /// the prompt cache, so that the first question about `db` starts as
    /// warm as the later ones: what a session that opens a database does
    /// before its first question. Returns the tokens fed (0 when the cache
    /// already held them or keeps nothing).
    pub fn prefill_schema(&self, db: &DatabaseHandle, options: &AskOptions) -> Result<usize> {
        if self.prompt_cache().capacity() == 0 {
            return Ok(0);
        }
        let adapter = self.adapter_slot_for(options.adapter.as_deref())?;
        let prefix = super::schema_prefix_ids(self, &options.prompt, db.schema())?;
        let mut session = self.prompt_cache().checkout(&self.model, adapter, &prefix);
        let fed = generate::prefill_ahead(&mut session, &prefix);
        self.prompt_cache().checkin(session);
        fed
    }

    /// Writes SQL for `question` about `db` after the failed attempts
    /// `failures` (each `(sql, error)`, shown to the model with the
    /// prompt's `retry.j2`). Under the database's grammar, the finished
    /// query is also checked with SQLite's `prepare`, and decoding backs up
    /// when it fails.
    pub fn draft(
        &self,
        db: &DatabaseHandle,
        question: &str,
        failures: &[(String, String)],
        options: &AskOptions,
        listener: &mut Listener<'_>,
    ) -> Result<Draft> {
        let adapter = self.adapter_slot_for(options.adapter.as_deref())?;
        let prompt_ids = super::prompt_ids(self, &options.prompt, db.schema(), question, failures)?;
        let split = super::question_start(self, &options.prompt, db.schema(), &prompt_ids)?;
        let stop_ids = self.stop_ids();
        let grammar = db.grammar();
        let mut constraint = grammar.map(CompiledGrammar::constraint);
        let check = SqlCheck::new(db);
        let mut session = self
            .prompt_cache()
            .checkout(&self.model, adapter, &prompt_ids);
        let mut ignore = |_: &str| {};
        let on_text: &mut dyn FnMut(&str) = match listener.on_text.as_deref_mut() {
            Some(f) => f,
            None => &mut ignore,
        };
        let generation = generate::generate_with(
            &mut session,
            &self.tokenizer,
            GenerateRequest {
                prompt_ids: &prompt_ids,
                stop_ids: &stop_ids,
                sampling: options.sampling,
                constraint: constraint.as_mut(),
                check: Some(&check),
                cancel: listener.cancel,
                stop_text: &[],
                prompt_split: Some(split),
                mask_ahead: self.mask_ahead(),
            },
            on_text,
        );
        // Kept even after an error: it holds whatever was fed, all valid.
        self.prompt_cache().checkin(session);
        let generation = generation?;
        let sql = if grammar.is_some() {
            sql::constrained_sql(&generation.text)
        } else {
            sql::extract_sql(&generation.text).unwrap_or_default()
        };
        Ok(Draft {
            question: question.trim().to_string(),
            sql,
            stop: generation.stop,
            timings: Timings::of(&generation, self.info.load_ms),
            reply: generation.text,
            grammar: generation.grammar,
        })
    }
}
