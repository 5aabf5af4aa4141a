//! The decode loop: prefill the prompt, then sample one token at a time
//! from KV-cached forward passes until an end token or the token budget,
//! streaming text as it is produced.

mod sampling;

pub use sampling::{Sampler, SamplingParams};

use std::time::Instant;

use candle_core::Tensor;

use crate::error::{Error, Result};
use crate::grammar::Constraint;
use crate::model::{Cache, Llama, Logits};
use crate::tokenizer::{StreamDecoder, Tokenizer};

/// Prompt tokens fed per forward pass during prefill. Bounds the attention
/// score matrix (heads × chunk × context) for long prompts.
pub const PREFILL_CHUNK: usize = 512;

/// Default budget of generated tokens: enough for any SQL query we expect.
pub const DEFAULT_MAX_TOKENS: usize = 256;

/// What to generate from.
pub struct GenerateRequest<'a> {
    /// The rendered, tokenized prompt.
    pub prompt_ids: &'a [u32],
    /// Ids that end generation (EOS, end-of-turn); never part of the output.
    pub stop_ids: &'a [u32],
    /// Token budget and sampling.
    pub sampling: SamplingParams,
    /// A grammar every generated token must follow (`None`: free text).
    pub constraint: Option<&'a mut Constraint>,
}

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// A stop id (EOS or end-of-turn) was sampled.
    EndToken,
    /// The token budget ran out.
    MaxTokens,
}

/// The result of one generation.
#[derive(Debug, Clone)]
pub struct Generation {
    /// Generated ids (stop token excluded).
    pub tokens: Vec<u32>,
    /// Their text.
    pub text: String,
    /// Why it stopped.
    pub stop: StopReason,
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Wall time of the prefill (prompt forward passes and first sample).
    pub prefill_ms: f64,
    /// Wall time of the decode steps after the first token.
    pub decode_ms: f64,
    /// Grammar statistics (zero without a grammar).
    pub grammar: GrammarStats,
}

/// What the grammar cost during one generation.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct GrammarStats {
    /// Time spent in grammar checks, masks and commits.
    pub grammar_ms: f64,
    /// Steps where the model's preferred token was rejected and the full
    /// mask was computed.
    pub masks: usize,
    /// Tokens the grammar forced (no choice), fed without sampling.
    pub forced_tokens: usize,
    /// Tokens dropped at the end to return to the last point where the
    /// grammar could end (the token budget ran out mid-query).
    pub trimmed_tokens: usize,
}

impl Generation {
    /// Decode speed in tokens per second (tokens after the first one).
    pub fn decode_tokens_per_s(&self) -> f64 {
        let n = self.tokens.len().saturating_sub(1) as f64;
        if self.decode_ms > 0.0 {
            n * 1000.0 / self.decode_ms
        } else {
            0.0
        }
    }

    /// Prefill speed in tokens per second.
    pub fn prefill_tokens_per_s(&self) -> f64 {
        if self.prefill_ms > 0.0 {
            self.prompt_tokens as f64 * 1000.0 / self.prefill_ms
        } else {
            0.0
        }
    }
}

/// Runs the prompt through `model` and decodes until a stop id or the budget.
/// `on_text` receives text as soon as it is complete (for streaming).
///
/// With a grammar, the model's preferred token is checked first and the full
/// mask is computed only when it is rejected; forced tokens are fed without
/// sampling; end tokens are allowed only where the grammar can end. If the
/// budget runs out mid-query, the output is cut back to the last point where
/// the grammar could end.
pub fn generate(
    model: &Llama,
    tokenizer: &Tokenizer,
    request: GenerateRequest<'_>,
    on_text: &mut dyn FnMut(&str),
) -> Result<Generation> {
    let GenerateRequest {
        prompt_ids: prompt,
        stop_ids,
        sampling,
        mut constraint,
    } = request;
    let max_tokens = sampling.max_tokens;
    let context = model.config().context_length;
    if prompt.is_empty() {
        return Err(Error::invalid("prompt", "the prompt has no tokens"));
    }
    if prompt.len() + max_tokens > context {
        return Err(Error::PromptTooLong {
            prompt_tokens: prompt.len(),
            context,
            reserved: max_tokens,
        });
    }
    let device = model.device();
    let mut cache = Cache::new(model);
    let mut sampler = Sampler::new(&sampling);
    let mut stream = StreamDecoder::with_skip_special(tokenizer, true);
    let mut tokens: Vec<u32> = Vec::new();
    let mut text = String::new();
    let mut stats = GrammarStats::default();
    let mut last_accepting = 0usize;

    let start = Instant::now();
    let mut logits = None;
    for chunk in prompt.chunks(PREFILL_CHUNK) {
        let _span = tracing::debug_span!("prefill", tokens = chunk.len()).entered();
        let ids = Tensor::new(chunk, device)?.unsqueeze(0)?;
        logits = Some(model.forward(&ids, Some(&mut cache), Logits::Last)?);
    }
    let mut logits = logits
        .ok_or_else(|| Error::invalid("prompt", "the prompt has no tokens"))?
        .squeeze(0)?;
    let mut prefill_ms = None;
    let decode_start = Instant::now();
    let mut stop = StopReason::MaxTokens;

    while tokens.len() < max_tokens {
        let _span = tracing::trace_span!("decode_step").entered();
        let next = match constraint.as_deref_mut() {
            None => sampler.sample(&logits)?,
            Some(c) => {
                let t = Instant::now();
                let next = constrained_pick(c, &mut sampler, &logits, stop_ids, &mut stats)?;
                stats.grammar_ms += t.elapsed().as_secs_f64() * 1000.0;
                next
            }
        };
        if prefill_ms.is_none() {
            prefill_ms = Some(start.elapsed().as_secs_f64() * 1000.0);
        }
        if stop_ids.contains(&next) {
            stop = StopReason::EndToken;
            break;
        }
        let mut step = vec![next];
        if let Some(c) = constraint.as_deref_mut() {
            let t = Instant::now();
            c.commit(next)?;
            // Fast-forward what the grammar leaves no choice about.
            let room = max_tokens - tokens.len() - 1;
            let forced: Vec<u32> = c.forced_tokens().into_iter().take(room).collect();
            for &f in &forced {
                c.commit(f)?;
            }
            stats.forced_tokens += forced.len();
            step.extend(forced);
            stats.grammar_ms += t.elapsed().as_secs_f64() * 1000.0;
        }
        for &id in &step {
            tokens.push(id);
            if let Some(piece) = stream.push(id)? {
                on_text(&piece);
                text.push_str(&piece);
            }
        }
        if let Some(c) = constraint.as_deref_mut() {
            if c.is_accepting()? {
                last_accepting = tokens.len();
            }
            if c.is_stopped() {
                stop = StopReason::EndToken;
                break;
            }
        }
        if tokens.len() == max_tokens {
            break;
        }
        let ids = Tensor::new(step.as_slice(), device)?.unsqueeze(0)?;
        logits = model
            .forward(&ids, Some(&mut cache), Logits::Last)?
            .squeeze(0)?;
    }
    if let Some(piece) = stream.finish()? {
        on_text(&piece);
        text.push_str(&piece);
    }
    if constraint.is_some() && stop == StopReason::MaxTokens && last_accepting < tokens.len() {
        stats.trimmed_tokens = tokens.len() - last_accepting;
        tokens.truncate(last_accepting);
        text = tokenizer.decode(&tokens, true)?;
    }
    let prefill_ms = prefill_ms.unwrap_or_else(|| start.elapsed().as_secs_f64() * 1000.0);
    let decode_ms = decode_start.elapsed().as_secs_f64() * 1000.0;
    Ok(Generation {
        tokens,
        text,
        stop,
        prompt_tokens: prompt.len(),
        prefill_ms,
        decode_ms,
        grammar: stats,
    })
}

/// Picks the next token under `constraint`: the sampler's choice if the
/// grammar allows it, else a sample from the masked logits.
fn constrained_pick(
    constraint: &mut Constraint,
    sampler: &mut Sampler,
    logits: &Tensor,
    stop_ids: &[u32],
    stats: &mut GrammarStats,
) -> Result<u32> {
    if constraint.is_stopped() {
        // The query is complete: end the turn.
        return stop_ids
            .first()
            .copied()
            .ok_or_else(|| Error::invalid("stop ids", "no end token to end the turn with"));
    }
    let preferred = sampler.sample(logits)?;
    if constraint.allows(preferred)? {
        return Ok(preferred);
    }
    stats.masks += 1;
    let mut values: Vec<f32> = logits.to_vec1()?;
    constraint.mask_logits(&mut values)?;
    let masked = Tensor::from_vec(values, logits.shape(), logits.device())?;
    sampler.sample(&masked)
}
