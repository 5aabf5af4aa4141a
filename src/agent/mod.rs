//! Question → SQL → rows: the facade the CLI (and later the server and the
//! evaluation harness) use.

mod engine;

pub use engine::{AdapterInfo, Engine, ModelInfo, ModelOptions, ModelSource};

use std::time::Instant;

use serde::Serialize;

use crate::chat::PromptSpec;
use crate::error::{Error, Result};
use crate::generate::{self, GenerateRequest, GrammarStats, SamplingParams, StopReason};
use crate::grammar::{self, CompiledGrammar, GrammarOptions};
use crate::sql::{self, Database, ExecLimits, QueryResult, Schema};

/// Where the time of one answer went.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timings {
    /// Loading the model (reported once per process).
    pub load_ms: f64,
    /// Tokens in the rendered prompt.
    pub prompt_tokens: usize,
    /// Of those, the ones whose keys and values were kept from the last
    /// generation (not fed again).
    pub reused_prompt_tokens: usize,
    /// Prompt forward passes (and the first sampled token).
    pub prefill_ms: f64,
    /// Tokens generated.
    pub generated_tokens: usize,
    /// Decode steps after the first token.
    pub decode_ms: f64,
    /// Tokens fed to the model during decoding, including any a repair took
    /// back (decode speed = `decode_steps / decode_ms`).
    pub decode_steps: usize,
    /// Running the SQL.
    pub execute_ms: f64,
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
    pub grammar: GrammarStats,
}

/// A question answered: the SQL and its rows.
#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    /// The draft the rows come from.
    #[serde(flatten)]
    pub draft: Draft,
    /// Result of running the SQL.
    pub result: QueryResult,
}

/// The token ids fed to `engine` for `question` over `schema` with
/// `prompt`, after the failed attempts `failures` (each `(sql, error)`).
/// Inference and training both build their prompts here, so the two never
/// drift apart.
pub fn prompt_ids(
    engine: &Engine,
    prompt: &PromptSpec,
    schema: &Schema,
    question: &str,
    failures: &[(String, String)],
) -> Result<Vec<u32>> {
    let mut messages = prompt.messages(schema, question)?;
    for (sql, error) in failures {
        messages.extend(prompt.retry_messages(sql, error)?);
    }
    let text = engine.template.render(&messages, true)?;
    engine.tokenizer.encode(&text)
}

/// A loaded model plus the prompt and sampling to answer with.
pub struct Agent {
    /// The model.
    pub engine: Engine,
    /// The text-to-SQL prompt.
    pub prompt: PromptSpec,
    /// Sampling and token budget.
    pub sampling: SamplingParams,
    /// Limits for running the SQL.
    pub limits: ExecLimits,
    /// The grammar answers must follow (`None`: unconstrained).
    pub grammar: Option<CompiledGrammar>,
    /// The attached adapter that answers (its slot; `None`: the model as
    /// loaded, with any merged adapter).
    pub adapter: Option<usize>,
}

impl Agent {
    /// Compiles the grammar for `schema` (none for `GrammarMode::None`).
    pub fn compile_grammar(
        engine: &Engine,
        schema: &Schema,
        options: &GrammarOptions,
    ) -> Result<Option<CompiledGrammar>> {
        let Some(lark) = grammar::lark::lark_grammar(schema, options) else {
            return Ok(None);
        };
        Ok(Some(
            engine
                .grammar_factory()?
                .compile(&lark)?
                .with_schema(schema)?,
        ))
    }

    /// The adapter behind the answers: the attached one chosen, or one
    /// merged into the weights.
    pub fn adapter_info(&self) -> Option<&AdapterInfo> {
        self.engine
            .adapters()
            .iter()
            .find(|a| a.slot.is_none() || a.slot == self.adapter)
    }

    /// The exact text fed to the model for `question` over `schema`.
    pub fn render_prompt(&self, schema: &Schema, question: &str) -> Result<String> {
        let messages = self.prompt.messages(schema, question)?;
        self.engine.template.render(&messages, true)
    }

    /// Writes SQL for `question` about `db`; `on_text` receives the reply as
    /// it streams. Under a grammar, the finished query is also checked with
    /// SQLite's `prepare` against `db`, and decoding backs up when it fails.
    pub fn draft(
        &self,
        db: &Database,
        schema: &Schema,
        question: &str,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Draft> {
        self.draft_after(db, schema, question, &[], on_text)
    }

    /// [`Agent::draft`] after failed attempts: each `(sql, error)` is shown
    /// to the model as its earlier reply and SQLite's error (the prompt's
    /// `retry.j2`), and it writes another query.
    pub fn draft_after(
        &self,
        db: &Database,
        schema: &Schema,
        question: &str,
        failures: &[(String, String)],
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Draft> {
        let prompt_ids = prompt_ids(&self.engine, &self.prompt, schema, question, failures)?;
        let stop_ids = self.engine.stop_ids();
        let mut constraint = self.grammar.as_ref().map(CompiledGrammar::constraint);
        let check = |text: &str| -> std::result::Result<(), String> {
            // The check runs only under a grammar: the reply is the query.
            let sql = sql::constrained_sql(text);
            db.check(&sql).map_err(|e| match e {
                Error::Query { message, .. } => message,
                other => other.to_string(),
            })
        };
        let mut session = self.engine.session(self.adapter);
        let generation = generate::generate_with(
            &mut session,
            &self.engine.tokenizer,
            GenerateRequest {
                prompt_ids: &prompt_ids,
                stop_ids: &stop_ids,
                sampling: self.sampling,
                constraint: constraint.as_mut(),
                check: Some(&check),
            },
            on_text,
        );
        // Kept even after an error: it holds whatever was fed, all valid.
        self.engine.keep(session);
        let generation = generation?;
        let sql = if self.grammar.is_some() {
            sql::constrained_sql(&generation.text)
        } else {
            sql::extract_sql(&generation.text).unwrap_or_default()
        };
        Ok(Draft {
            question: question.trim().to_string(),
            sql,
            stop: generation.stop,
            timings: Timings {
                load_ms: self.engine.info.load_ms,
                prompt_tokens: generation.prompt_tokens,
                reused_prompt_tokens: generation.reused_prompt_tokens,
                prefill_ms: generation.prefill_ms,
                generated_tokens: generation.tokens.len(),
                decode_ms: generation.decode_ms,
                decode_steps: generation.decode_steps,
                execute_ms: 0.0,
            },
            reply: generation.text,
            grammar: generation.grammar,
        })
    }

    /// Writes SQL for `question` and runs it read-only against `db`.
    pub fn ask(
        &self,
        db: &Database,
        schema: &Schema,
        question: &str,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Answer> {
        let mut draft = self.draft(db, schema, question, on_text)?;
        if draft.sql.is_empty() {
            return Err(Error::Query {
                sql: draft.reply.clone(),
                message: "the model's reply contains no SQL query".into(),
            });
        }
        let start = Instant::now();
        let result = db.execute(&draft.sql, &self.limits)?;
        draft.timings.execute_ms = start.elapsed().as_secs_f64() * 1000.0;
        Ok(Answer { draft, result })
    }
}
