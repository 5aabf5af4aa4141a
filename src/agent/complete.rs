//! A raw completion: prompt text → generated text, with no chat template
//! and no SQL prompt; under a database's grammar when one is given (the
//! text then continues as one query over that database).

use super::SqlCheck;
use super::{DatabaseHandle, Engine, Listener, Timings};
use crate::error::{Error, Result};
use crate::generate::{self, GenerateRequest, GrammarStats, SamplingParams, StopReason};
use crate::grammar::CompiledGrammar;

/// What to complete.
#[derive(Debug, Clone)]
pub struct CompletionRequest<'a> {
    /// The prompt, as text (special tokens written in it count as such;
    /// the beginning-of-text token is added when missing).
    pub prompt: &'a str,
    /// Sampling and token budget.
    pub sampling: SamplingParams,
    /// Texts that end the completion, left out of it (free text only).
    pub stop: &'a [String],
    /// The attached adapter that answers, by name.
    pub adapter: Option<&'a str>,
    /// A database whose grammar (and check) the text must follow.
    pub db: Option<&'a DatabaseHandle>,
}

/// A finished completion.
#[derive(Debug, Clone)]
pub struct Completion {
    /// The generated text.
    pub text: String,
    /// Why it stopped.
    pub stop: StopReason,
    /// Where the time went.
    pub timings: Timings,
    /// What the grammar cost (zero without one).
    pub grammar: GrammarStats,
}

impl Engine {
    /// Completes `request.prompt`, streaming the text to `listener`.
    pub fn complete(
        &self,
        request: &CompletionRequest<'_>,
        listener: &mut Listener<'_>,
    ) -> Result<Completion> {
        if request.prompt.is_empty() {
            return Err(Error::invalid("prompt", "is empty"));
        }
        let adapter = self.adapter_slot_for(request.adapter)?;
        let mut prompt_ids = self.tokenizer.encode(request.prompt)?;
        if let Some(bos) = self.special.bos {
            if prompt_ids.first() != Some(&bos) {
                prompt_ids.insert(0, bos);
            }
        }
        let stop_ids = self.stop_ids();
        let grammar = request.db.and_then(DatabaseHandle::grammar);
        let mut constraint = grammar.map(CompiledGrammar::constraint);
        let db = request.db;
        let check = db.map(SqlCheck::new);
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
                sampling: request.sampling,
                constraint: constraint.as_mut(),
                check: grammar
                    .and(check.as_ref())
                    .map(|c| c as &dyn generate::TextCheck),
                cancel: listener.cancel,
                stop_text: request.stop,
                prompt_split: None,
                mask_ahead: self.mask_ahead(),
            },
            on_text,
        );
        self.prompt_cache().checkin(session);
        let generation = generation?;
        Ok(Completion {
            stop: generation.stop,
            timings: Timings::of(&generation, self.info.load_ms),
            text: generation.text,
            grammar: generation.grammar,
        })
    }
}
