//! Training examples: each question/SQL pair rendered with the same prompt
//! and chat template as inference, then the answer as an assistant turn
//! writes it, then the end-of-turn token. The loss covers only the answer.

use crate::agent::Engine;
use crate::chat::PromptSpec;
use crate::error::{Error, Result};
use crate::sql::Schema;

/// One tokenized example.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainExample {
    /// Prompt ids followed by answer ids.
    pub ids: Vec<u32>,
    /// How many of the last ids are the answer (the loss's targets).
    pub answer_len: usize,
}

impl TrainExample {
    /// Tokens fed to the model for it (all but the last).
    pub fn fed_tokens(&self) -> usize {
        self.ids.len().saturating_sub(1)
    }
}

/// Renders `question` over `schema` exactly as inference does (see
/// [`crate::agent::prompt_ids`]) and appends `sql` as the assistant's
/// reply ([`PromptSpec::assistant_reply`]) plus the end-of-turn id.
pub fn example(
    engine: &Engine,
    prompt: &PromptSpec,
    schema: &Schema,
    question: &str,
    sql: &str,
) -> Result<TrainExample> {
    let mut ids = crate::agent::prompt_ids(engine, prompt, schema, question, &[])?;
    let mut answer = engine.tokenizer.encode(&prompt.assistant_reply(sql))?;
    let end = engine
        .special
        .eot
        .or(engine.special.eos)
        .ok_or_else(|| Error::invalid("model", "has no end-of-turn or EOS token to train"))?;
    answer.push(end);
    let answer_len = answer.len();
    ids.extend(answer);
    Ok(TrainExample { ids, answer_len })
}
