//! The decode loop: prefill the prompt, then sample one token at a time
//! from KV-cached forward passes until an end token or the token budget,
//! streaming text as it is produced.

mod sampling;

pub use sampling::{Sampler, SamplingParams};

use std::time::Instant;

use candle_core::Tensor;

use crate::error::{Error, Result};
use crate::model::{Cache, Llama, Logits};
use crate::tokenizer::{StreamDecoder, Tokenizer};

/// Prompt tokens fed per forward pass during prefill. Bounds the attention
/// score matrix (heads × chunk × context) for long prompts.
pub const PREFILL_CHUNK: usize = 512;

/// Default budget of generated tokens: enough for any SQL query we expect.
pub const DEFAULT_MAX_TOKENS: usize = 256;

/// What to generate from.
#[derive(Debug, Clone)]
pub struct GenerateRequest<'a> {
    /// The rendered, tokenized prompt.
    pub prompt_ids: &'a [u32],
    /// Ids that end generation (EOS, end-of-turn); never part of the output.
    pub stop_ids: &'a [u32],
    /// Token budget and sampling.
    pub sampling: SamplingParams,
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
pub fn generate(
    model: &Llama,
    tokenizer: &Tokenizer,
    request: &GenerateRequest<'_>,
    on_text: &mut dyn FnMut(&str),
) -> Result<Generation> {
    let prompt = request.prompt_ids;
    let max_tokens = request.sampling.max_tokens;
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
    let mut sampler = Sampler::new(&request.sampling);
    let mut stream = StreamDecoder::with_skip_special(tokenizer, true);
    let mut tokens = Vec::new();
    let mut text = String::new();
    let mut emit = |piece: Option<String>, text: &mut String| {
        if let Some(p) = piece {
            on_text(&p);
            text.push_str(&p);
        }
    };

    let start = Instant::now();
    let mut logits = None;
    for chunk in prompt.chunks(PREFILL_CHUNK) {
        let _span = tracing::debug_span!("prefill", tokens = chunk.len()).entered();
        let ids = Tensor::new(chunk, device)?.unsqueeze(0)?;
        logits = Some(model.forward(&ids, Some(&mut cache), Logits::Last)?);
    }
    let logits = logits.ok_or_else(|| Error::invalid("prompt", "the prompt has no tokens"))?;
    let mut next = sampler.sample(&logits.squeeze(0)?)?;
    let prefill_ms = start.elapsed().as_secs_f64() * 1000.0;

    let decode_start = Instant::now();
    let mut stop = StopReason::MaxTokens;
    while tokens.len() < max_tokens {
        if request.stop_ids.contains(&next) {
            stop = StopReason::EndToken;
            break;
        }
        tokens.push(next);
        emit(stream.push(next)?, &mut text);
        if tokens.len() == max_tokens {
            break;
        }
        let _span = tracing::trace_span!("decode_step").entered();
        let ids = Tensor::new(&[next], device)?.unsqueeze(0)?;
        let logits = model.forward(&ids, Some(&mut cache), Logits::Last)?;
        next = sampler.sample(&logits.squeeze(0)?)?;
    }
    emit(stream.finish()?, &mut text);
    let decode_ms = decode_start.elapsed().as_secs_f64() * 1000.0;
    Ok(Generation {
        tokens,
        text,
        stop,
        prompt_tokens: prompt.len(),
        prefill_ms,
        decode_ms,
    })
}
