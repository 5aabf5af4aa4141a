//! The use cases, on one shared engine: [`Engine`] (a loaded model,
//! immutable and `Send + Sync`, shared as `Arc<Engine>`), a
//! [`DatabaseHandle`] per database (the file, its schema and its compiled
//! grammar, built once), plain [`AskOptions`] per request, and
//! [`Engine::ask`]: question → SQL → rows ([`Engine::complete`] for raw
//! text). The CLI, the evaluation harness
//! and the server all call these.

mod ask;
mod complete;
mod conversation;
mod database;
mod engine;
mod focus;
mod intent;
mod prompt_cache;
mod speed;
mod verdict;

pub use ask::{
    answer, Answer, AskOptions, Attempt, Draft, Execution, Listener, LocalWriter, SqlWriter,
};
pub use complete::{Completion, CompletionRequest};
pub use conversation::{ChatCommand, Conversation, TableSummary, BASE_MODEL, CHAT_HELP};
pub use database::DatabaseHandle;
pub use engine::{AdapterInfo, Engine, ModelInfo, ModelOptions, ModelSource, QuantizeAtLoad};
pub use focus::{focus_schema, rank_tables};
pub use intent::requested_change;
pub use prompt_cache::{PromptCache, DEFAULT_PROMPT_CACHES};
pub use speed::{measure_model, SpeedReport};
pub use verdict::{sql_verdict, SqlCheck};

use serde::Serialize;

use crate::chat::PromptSpec;
use crate::error::Result;
use crate::sql::Schema;

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
    /// The grammar's time in each decode step, by part (see
    /// [`crate::generate::Generation::grammar_steps`]); not serialized.
    #[serde(skip)]
    pub grammar_steps: Vec<crate::generate::StepGrammar>,
}

/// The token ids fed to `engine` for `question` over `schema` with
/// `prompt`, after the failed attempts `failures` (each `(sql, error)`).
/// Inference and training both build their prompts here, so the two never
impl Timings {
    /// The timings of `generation` on an engine loaded in `load_ms`
    /// (nothing executed yet).
    pub fn of(generation: &crate::generate::Generation, load_ms: f64) -> Self {
        Self {
            load_ms,
            prompt_tokens: generation.prompt_tokens,
            reused_prompt_tokens: generation.reused_prompt_tokens,
            prefill_ms: generation.prefill_ms,
            generated_tokens: generation.tokens.len(),
            decode_ms: generation.decode_ms,
            decode_steps: generation.decode_steps,
            execute_ms: 0.0,
            grammar_steps: generation.grammar_steps.clone(),
        }
    }
}

/// drift apart.
pub fn prompt_ids(
    engine: &Engine,
    prompt: &PromptSpec,
    schema: &Schema,
    question: &str,
    failures: &[(String, String)],
) -> Result<Vec<u32>> {
    let render = |schema: &Schema| -> Result<Vec<u32>> {
        let mut messages = prompt.messages(schema, question)?;
        for (sql, error) in failures {
            messages.extend(prompt.retry_messages(sql, error)?);
        }
        let text = engine.template.render(&messages, true)?;
        engine.tokenizer.encode(&text)
    };
    let ids = render(schema)?;
    match prompt.schema_budget() {
        Some(budget) if ids.len() > budget => {
            let focused =
                focus::focus_schema(schema, question, &mut |s| Ok(render(s)?.len() <= budget))?;
            render(&focused)
        }
        _ => Ok(ids),
    }
}

/// A question no one asks, whose prompt is compared with a real one.
const PROBE_QUESTION: &str = "\u{1}?";

/// Where the prompt `ids` (for some question about `schema`) begins to
/// depend on the question: how far it agrees with the prompt of a probe
/// question. The same for every question about the schema (save one that
/// happens to start like the probe), so that prefills split there and a
/// kept cache of the schema part is reused exactly.
pub fn question_start(
    engine: &Engine,
    prompt: &PromptSpec,
    schema: &Schema,
    ids: &[u32],
) -> Result<usize> {
    let probe = prompt_ids(engine, prompt, schema, PROBE_QUESTION, &[])?;
    Ok(ids.iter().zip(&probe).take_while(|(a, b)| a == b).count())
}

/// The ids every prompt about `schema` starts with, up to where a
/// question's part begins ([`question_start`], found with a second probe).
pub fn schema_prefix_ids(
    engine: &Engine,
    prompt: &PromptSpec,
    schema: &Schema,
) -> Result<Vec<u32>> {
    let mut ids = prompt_ids(engine, prompt, schema, "\u{2}?", &[])?;
    let split = question_start(engine, prompt, schema, &ids)?;
    ids.truncate(split);
    Ok(ids)
}
