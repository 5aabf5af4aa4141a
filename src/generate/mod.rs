//! The decode loop: prefill the prompt, then sample one token at a time
//! from KV-cached forward passes until an end token or the token budget,
//! streaming text as it is produced.

mod cancel;
mod sampling;
mod throughput;

pub use cancel::CancelFlag;
pub use sampling::{Sampler, SamplingParams};
pub use throughput::{measure_forward, ForwardSpeed};

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use candle_core::Tensor;

use crate::error::{Error, Result};
use crate::grammar::{Constraint, TokenMask};
use crate::model::{Cache, Llama, Logits};
use crate::tokenizer::{StreamDecoder, Tokenizer};

/// Prompt tokens fed per forward pass during prefill, in chunks that start
/// at multiples of it. Bounds the attention score matrix (heads × chunk ×
/// context) for long prompts, and is the unit a kept cache is reused in.
pub const PREFILL_CHUNK: usize = 256;

/// Default budget of generated tokens: enough for any SQL query we expect.
pub const DEFAULT_MAX_TOKENS: usize = 256;

/// A language model as the decode loop sees it: tokens in, logits for the
/// next token out. [`LlamaSession`] runs a [`Llama`]; tests drive the loop
/// with other sources (e.g. uniform logits for random walks).
pub trait TokenModel {
    /// Most tokens (prompt and output) it can attend to.
    fn context_length(&self) -> usize;
    /// Feeds `ids` after everything fed so far and returns the logits (one
    /// row) for the token that follows the last of them.
    fn feed(&mut self, ids: &[u32]) -> Result<Tensor>;
    /// Forgets everything after the first `len` tokens fed.
    fn truncate(&mut self, len: usize);
    /// Tokens fed so far.
    fn fed(&self) -> usize;
    /// Before a new generation: keeps the longest start of `prompt` that is
    /// already fed and ends at one of `chunk_ends` (where the prefill of
    /// `prompt` ends its chunks, see [`prefill_chunk_ends`]), never all of
    /// it (the last prompt token must be fed for its logits); forgets the
    /// rest and returns how many tokens were kept. By default nothing is
    /// kept.
    fn reuse_prefix(&mut self, prompt: &[u32], chunk_ends: &[usize]) -> usize {
        let _ = (prompt, chunk_ends);
        self.truncate(0);
        0
    }
}

/// The keys and values of an earlier generation and the ids they belong
/// to, kept so that the next prompt skips the prefill of the start it
/// shares (the system prompt and schema, when only the question changes).
#[derive(Debug)]
pub struct KeptCache {
    cache: Cache,
    ids: Vec<u32>,
    feed_ends: Vec<usize>,
    adapter: Option<usize>,
}

impl KeptCache {
    /// The ids whose keys and values it holds.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// The adapter slot it was computed with (`None`: the base model).
    pub fn adapter(&self) -> Option<usize> {
        self.adapter
    }
}

/// A [`Llama`] (with one of its attached adapters, or none) and the KV
/// cache of one generation.
pub struct LlamaSession<'m> {
    model: &'m Llama,
    adapter: Option<usize>,
    cache: Cache,
    /// The ids whose keys and values `cache` holds.
    ids: Vec<u32>,
    /// Where each forward pass that filled `cache` ended (ascending).
    feed_ends: Vec<usize>,
}

impl<'m> LlamaSession<'m> {
    /// A session of the base model with an empty cache.
    pub fn new(model: &'m Llama) -> Self {
        Self::with_adapter(model, None)
    }

    /// A session that applies the adapter in slot `adapter` (see
    /// [`Llama::attach_adapter`]), with an empty cache.
    pub fn with_adapter(model: &'m Llama, adapter: Option<usize>) -> Self {
        Self {
            model,
            adapter,
            cache: Cache::new(model),
            ids: Vec::new(),
            feed_ends: Vec::new(),
        }
    }

    /// A session that starts from `kept`, the cache of an earlier session
    /// of the same model ([`LlamaSession::keep`]). A cache computed with
    /// another adapter is not reused.
    pub fn from_kept(model: &'m Llama, adapter: Option<usize>, kept: KeptCache) -> Self {
        if kept.adapter != adapter {
            return Self::with_adapter(model, adapter);
        }
        Self {
            model,
            adapter,
            cache: kept.cache,
            ids: kept.ids,
            feed_ends: kept.feed_ends,
        }
    }

    /// The cache and the ids it holds, for the next session.
    pub fn keep(self) -> KeptCache {
        KeptCache {
            cache: self.cache,
            ids: self.ids,
            feed_ends: self.feed_ends,
            adapter: self.adapter,
        }
    }
}

impl TokenModel for LlamaSession<'_> {
    fn context_length(&self) -> usize {
        self.model.config().context_length
    }

    fn feed(&mut self, ids: &[u32]) -> Result<Tensor> {
        let input = Tensor::new(ids, self.model.device())?.unsqueeze(0)?;
        let logits = self
            .model
            .forward_with(&input, Some(&mut self.cache), Logits::Last, self.adapter)?
            .squeeze(0)?;
        self.ids.extend_from_slice(ids);
        self.feed_ends.push(self.ids.len());
        Ok(logits)
    }

    fn truncate(&mut self, len: usize) {
        self.cache.truncate(len);
        self.ids.truncate(self.cache.len());
        let len = self.ids.len();
        self.feed_ends.retain(|&end| end <= len);
    }

    fn fed(&self) -> usize {
        self.cache.len()
    }

    fn reuse_prefix(&mut self, prompt: &[u32], chunk_ends: &[usize]) -> usize {
        let shared = self
            .ids
            .iter()
            .zip(prompt)
            .take_while(|(a, b)| a == b)
            .count()
            .min(prompt.len().saturating_sub(1));
        // Only up to a point where the kept cache was fed in the very
        // chunks the prefill of `prompt` feeds (same rows, same kernels),
        // so that keeping a cache changes no answer.
        let same_chunks = |at: usize| {
            let kept = self.feed_ends.iter().take_while(|&&e| e <= at);
            let planned = chunk_ends.iter().take_while(|&&e| e <= at);
            kept.eq(planned)
        };
        let keep = chunk_ends
            .iter()
            .rev()
            .copied()
            .filter(|&end| end <= shared)
            .find(|&end| same_chunks(end))
            .unwrap_or(0);
        self.truncate(keep);
        keep
    }
}

/// Where the prefill of a `len`-token prompt ends its forward passes: at
/// multiples of [`PREFILL_CHUNK`], at `split` (where the part that changes
/// from one request to the next begins, e.g. the question after a schema)
/// and at the end. A kept cache is reused up to one of these points only.
pub fn prefill_chunk_ends(len: usize, split: Option<usize>) -> Vec<usize> {
    let mut ends: Vec<usize> = (1..=len / PREFILL_CHUNK)
        .map(|k| k * PREFILL_CHUNK)
        .collect();
    ends.extend(split.filter(|&s| s > 0 && s < len));
    ends.push(len);
    ends.sort_unstable();
    ends.dedup();
    ends
}

/// What a check of finished text found (see [`GenerateRequest::check`]).
/// The decode loop knows nothing of what is checked (SQL, JSON, …): only
/// whether the text stands, and where to back up to when it does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The text stands.
    Pass,
    /// It fails because of what starts at this byte of the text: back up
    /// there and choose differently.
    Blame(usize),
    /// It fails only because it ended too early: more text can fix it.
    Incomplete,
    /// It fails, and nothing in particular is to blame.
    Fail,
}

/// Checks of the text beyond the grammar, plugged in by the caller (e.g.
/// SQLite's `prepare`: names in scope, function arities).
pub trait TextCheck {
    /// The verdict on finished text.
    fn finished(&self, text: &str) -> Verdict;

    /// Asked after each step while the text is being written: `text` has
    /// just been continued with `next`. A [`Verdict::Blame`] of a byte of
    /// `text` says that no continuation can make it pass (e.g. a FROM
    /// clause closed by `WHERE` lacks a column named before it), so
    /// decoding backs up there at once instead of at the end. Anything
    /// else lets decoding go on. By default nothing is checked early.
    fn continued(&self, text: &str, next: &str) -> Verdict {
        let _ = (text, next);
        Verdict::Pass
    }

    /// What the text may go on with, when the check knows (e.g. the rest of
    /// one of a column's values and its closing quote, inside a string
    /// compared with that column): the next token must spell the start of
    /// one of these, or one of them and more. `None`: anything the grammar
    /// allows. By default nothing is restricted.
    fn allowed_next(&self, text: &str) -> Option<Vec<String>> {
        let _ = text;
        None
    }
}

/// A function of finished text is a check of finished text only.
impl<F: Fn(&str) -> Verdict> TextCheck for F {
    fn finished(&self, text: &str) -> Verdict {
        self(text)
    }
}

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
    /// A check of the finished text beyond the grammar (e.g. SQLite's
    /// `prepare`: names in scope, function arities). On failure, decoding
    /// backs up to what the verdict blames and chooses differently. Used
    /// only with a constraint.
    pub check: Option<&'a dyn TextCheck>,
    /// Set by the caller to stop the generation ([`Error::Cancelled`]).
    pub cancel: Option<&'a CancelFlag>,
    /// Text that ends free-text generation, itself left out of the output
    /// and never streamed ([`StopReason::StopText`]). Ignored under a
    /// constraint: the grammar decides where its text ends.
    pub stop_text: &'a [String],
    /// Where in the prompt the part that changes between requests begins
    /// (the question after the system prompt and schema): the prefill ends
    /// a chunk there, so that the next request reuses a kept cache up to
    /// exactly that point (see [`prefill_chunk_ends`]).
    pub prompt_split: Option<usize>,
    /// When to compute the grammar's mask for the next step while the model
    /// computes its logits.
    pub mask_ahead: MaskAhead,
}

impl MaskAhead {
    /// The policy for a vocabulary of `tokens`: [`MaskAhead::Always`] from
    /// [`MASK_AHEAD_ALWAYS_FROM`] tokens, where a mask computed when asked
    /// would be the slowest part of a step, else
    /// [`MaskAhead::AfterRejection`].
    pub fn for_vocabulary(tokens: usize) -> Self {
        if tokens >= MASK_AHEAD_ALWAYS_FROM {
            Self::Always
        } else {
            Self::AfterRejection
        }
    }
}

/// Vocabulary size from which every step's mask is computed during the
/// forward pass. Measured with `bench` on 2 threads: on Llama 3's 128,256
/// tokens a full mask takes a median of 0.26 ms and a p99 of 0.92 ms (p99
/// of a step's grammar time 1.6 ms when computed ahead after rejections
/// only, 0.3 ms always); on SmolLM2's 49,152 a median of about 0.1 ms, and
/// computing it every step slowed its decode by about 5% (a thread beside
/// candle's pool on two cores).
pub const MASK_AHEAD_ALWAYS_FROM: usize = 100_000;

/// When the decode loop computes the next step's full mask on another
/// thread while the forward pass runs. The mask is needed only when the
/// model's preferred token is rejected; computed ahead, the step waits only
/// for what is left of it when the logits are ready (usually nothing),
/// at the price of a thread beside the model's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MaskAhead {
    /// After a step whose preferred token was rejected, and after a
    /// repair's back-up (the model will likely prefer the banned token
    /// again): a model that agrees with the grammar computes no mask it
    /// does not use, but the first rejection after a run of accepted
    /// tokens computes its mask then.
    #[default]
    AfterRejection,
    /// Every step: no step computes a mask after its forward pass, at the
    /// price of a thread beside every forward pass (reported as
    /// `mask_ahead_ms`).
    Always,
    /// Never: the mask is computed when a rejection asks for it.
    Never,
}

/// Back-ups to a failing name before falling back to the longest prefix
/// that passes the check.
pub const MAX_REPAIRS: usize = 8;

/// Back-ups while the text is written (see [`TextCheck::continued`]). A
/// model that writes what cannot pass once more after that many is
/// running away (on Spider's dev databases with SmolLM2-135M, nested
/// subqueries and lists that never close): the output is then finished
/// from what stands, as when the token budget runs out, rather than
/// after the rest of the budget is spent on more of the same.
pub const MAX_EARLY_REPAIRS: usize = 24;

/// Tokens the salvage of an output may skip back at once, toward a name
/// the check blamed.
const MAX_SALVAGE_JUMP: usize = 16;

/// Tokens of the budget kept, under a grammar, to finish a query the model
/// has not finished (a quarter of the budget at most).
pub const COMPLETION_RESERVE: usize = 32;

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// A stop id (EOS or end-of-turn) was sampled.
    EndToken,
    /// The token budget ran out.
    MaxTokens,
    /// One of the request's stop texts was generated.
    StopText,
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
    /// Of those, the ones not fed again because a kept cache held them.
    pub reused_prompt_tokens: usize,
    /// Wall time of the prefill (prompt forward passes and first sample).
    pub prefill_ms: f64,
    /// Wall time of the decode steps after the first token.
    pub decode_ms: f64,
    /// Tokens fed to the model after the prompt, including any later taken
    /// back by a repair: what `decode_ms` was spent on.
    pub decode_steps: usize,
    /// Grammar statistics (zero without a grammar).
    pub grammar: GrammarStats,
    /// The grammar's time in each decode step (the last one includes
    /// finishing a query the budget cut short); without a grammar
    /// it is all zeros.
    pub grammar_steps: Vec<StepGrammar>,
}

impl Generation {
    /// The grammar's total time in each decode step, in ms.
    pub fn grammar_step_ms(&self) -> Vec<f64> {
        self.grammar_steps
            .iter()
            .map(StepGrammar::total_ms)
            .collect()
    }
}

/// Where the grammar's time in one decode step went, in ms.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct StepGrammar {
    /// Choosing the token: the one-token check of the model's preferred
    /// token and, when it is rejected, the choice among the tokens the full
    /// mask allows (the mask computed then, or during the forward pass).
    pub mask_ms: f64,
    /// Waiting, after the forward pass, for the mask computed during it.
    pub mask_wait_ms: f64,
    /// Committing the token and finding the tokens it forces.
    pub commit_ms: f64,
    /// The text check while writing ([`TextCheck::continued`]).
    pub check_ms: f64,
    /// Checking a finished query and finishing one the model left
    /// unfinished (the search for completion pieces, the salvage).
    pub finish_ms: f64,
}

impl StepGrammar {
    /// The step's whole grammar time.
    pub fn total_ms(&self) -> f64 {
        self.parts().iter().sum()
    }

    /// The mean of each part over `steps` (zeros when there are none).
    pub fn mean_of<'a>(steps: impl IntoIterator<Item = &'a StepGrammar>) -> StepGrammar {
        let mut mean = StepGrammar::default();
        let mut n = 0usize;
        for s in steps {
            for (m, p) in mean.parts_mut().into_iter().zip(s.parts()) {
                *m += p;
            }
            n += 1;
        }
        for m in mean.parts_mut() {
            *m /= n.max(1) as f64;
        }
        mean
    }

    fn parts(&self) -> [f64; 5] {
        [
            self.mask_ms,
            self.mask_wait_ms,
            self.commit_ms,
            self.check_ms,
            self.finish_ms,
        ]
    }

    /// The parts in [`Part`]'s order.
    fn parts_mut(&mut self) -> [&mut f64; 5] {
        [
            &mut self.mask_ms,
            &mut self.mask_wait_ms,
            &mut self.commit_ms,
            &mut self.check_ms,
            &mut self.finish_ms,
        ]
    }
}

/// A part of [`StepGrammar`], in the order of its fields.
#[derive(Clone, Copy)]
enum Part {
    Mask,
    MaskWait,
    Commit,
    Check,
    Finish,
}

/// What the grammar cost during one generation.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct GrammarStats {
    /// Time spent in grammar checks, masks and commits, and in the text
    /// checks while writing and at the end.
    pub grammar_ms: f64,
    /// Steps where the model's preferred token was rejected and the full
    /// mask was computed.
    pub masks: usize,
    /// Tokens the grammar forced (no choice), fed without sampling.
    pub forced_tokens: usize,
    /// Tokens dropped at the end to return to the last point where the
    /// grammar could end (the token budget ran out mid-query, or the
    /// finished text failed the check).
    pub trimmed_tokens: usize,
    /// Times decoding backed up because the finished text failed the check.
    pub repairs: usize,
    /// Times decoding backed up while writing, because the text so far
    /// could no longer pass the check (see [`TextCheck::continued`]).
    pub early_repairs: usize,
    /// Tokens taken back by all repairs (what they cost in decode steps).
    pub repaired_tokens: usize,
    /// Tokens added without the model to finish a query the budget cut
    /// short (closing strings, parentheses, clauses).
    pub completed_tokens: usize,
    /// Masks computed ahead, while the forward pass ran ([`MaskAhead`]).
    pub masks_ahead: usize,
    /// Their compute time: spent beside the model, not waited for (the
    /// wait, if any, is in `grammar_ms`).
    pub mask_ahead_ms: f64,
    /// Whether the returned text failed the check even so.
    pub check_failed: bool,
}

/// Feeds `prefix` (the start every later prompt shares, e.g. a system
/// prompt and schema) ahead of any generation, in the chunks that the
/// prefill of a prompt split at its end feeds it ([`prefill_chunk_ends`]),
/// so that a generation whose prompt starts with it and splits there reuses
/// its keys and values exactly. What `model` already holds of it in those
/// chunks is kept. Returns how many tokens were fed.
pub fn prefill_ahead(model: &mut dyn TokenModel, prefix: &[u32]) -> Result<usize> {
    let Some(&first) = prefix.first() else {
        return Ok(0);
    };
    if prefix.len() >= model.context_length() {
        return Err(Error::PromptTooLong {
            prompt_tokens: prefix.len(),
            context: model.context_length(),
            reserved: 0,
        });
    }
    // Asked as for a prompt one token longer, so that all of `prefix` may
    // be kept (the last token of a prompt is always fed for its logits).
    let mut asked = prefix.to_vec();
    asked.push(first);
    let kept = model.reuse_prefix(&asked, &prefill_chunk_ends(asked.len(), Some(prefix.len())));
    let mut start = kept;
    for end in prefill_chunk_ends(prefix.len(), None) {
        if end > start {
            let _span = tracing::debug_span!("prefill ahead", tokens = end - start).entered();
            model.feed(&prefix[start..end])?;
            start = end;
        }
    }
    Ok(prefix.len() - kept)
}

/// Runs the prompt through `model` and decodes until a stop id or the budget.
/// `on_text` receives text as soon as it is complete (for streaming; after a
/// back-up, [`Generation::text`] is what counts).
///
/// With a grammar, the model's preferred token is checked first and the full
/// mask is computed only when it is rejected; forced tokens are fed without
/// sampling; end tokens are allowed only where the grammar can end. A
/// finished text that fails `check` makes decoding back up to the offending
/// name and ban the token chosen there. If the budget runs out mid-query, or
/// repairs run out, the output is cut back to the longest prefix where the
/// grammar could end and the check passes.
pub fn generate(
    model: &Llama,
    tokenizer: &Tokenizer,
    request: GenerateRequest<'_>,
    on_text: &mut dyn FnMut(&str),
) -> Result<Generation> {
    generate_with(&mut LlamaSession::new(model), tokenizer, request, on_text)
}

/// [`generate`] with any [`TokenModel`]. What it was fed before counts only
/// as far as it matches the start of the prompt (see
/// [`TokenModel::reuse_prefix`]).
pub fn generate_with(
    model: &mut dyn TokenModel,
    tokenizer: &Tokenizer,
    request: GenerateRequest<'_>,
    on_text: &mut dyn FnMut(&str),
) -> Result<Generation> {
    let GenerateRequest {
        prompt_ids: prompt,
        stop_ids,
        sampling,
        constraint,
        check,
        cancel,
        stop_text,
        prompt_split,
        mask_ahead,
    } = request;
    let stop_text: &[String] = if constraint.is_some() { &[] } else { stop_text };
    let max_tokens = sampling.max_tokens;
    let context = model.context_length();
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
    let chunk_ends = prefill_chunk_ends(prompt.len(), prompt_split);
    let reused = model.reuse_prefix(prompt, &chunk_ends);
    let mut d = Decoder {
        model,
        tokenizer,
        prompt,
        chunk_ends,
        reused,
        stop_ids,
        max_tokens,
        sampler: Sampler::new(&sampling),
        constraint,
        check,
        tokens: Vec::new(),
        last_step_start: 0,
        banned: HashMap::new(),
        decoded: None,
        stats: GrammarStats::default(),
        decode_steps: 0,
        mask_ahead,
        ahead: None,
        last_rejected: false,
        step: StepGrammar::default(),
    };
    let start = Instant::now();
    let mut logits = d.prefill()?;
    let mut prefill_ms = None;
    let decode_start = Instant::now();
    let mut stream = StreamDecoder::with_skip_special(tokenizer, true);
    let mut streamed = String::new();
    // Bytes of `streamed` passed to `on_text` (the rest could be the start
    // of a stop text).
    let mut emitted = 0usize;
    let mut stop = StopReason::MaxTokens;
    // Every step, including ones later taken back, counts toward this bound.
    let mut steps = 0usize;
    let step_limit = max_tokens * (MAX_REPAIRS + 2);
    // Under a grammar, keep part of the budget to finish the query.
    let budget = if d.constraint.is_some() {
        max_tokens - (max_tokens / 4).min(COMPLETION_RESERVE)
    } else {
        max_tokens
    };

    // Grammar time of each step (masks, commits, checks while writing).
    let mut grammar_steps = Vec::new();
    'decode: while d.tokens.len() < budget && steps < step_limit {
        if steps > 0 {
            grammar_steps.push(std::mem::take(&mut d.step));
        }
        steps += 1;
        if cancel.is_some_and(CancelFlag::is_cancelled) {
            return Err(Error::Cancelled);
        }
        let _span = tracing::trace_span!("decode_step").entered();
        let picked = d.pick(&logits)?;
        if prefill_ms.is_none() {
            prefill_ms = Some(start.elapsed().as_secs_f64() * 1000.0);
        }
        let Some(next) = picked else {
            // Repairs banned every token the grammar allows here: the
            // choice before this position leads nowhere. Take it back and
            // ban it too; at the very start, finish without the model.
            if let Some(previous) = d.tokens.len().checked_sub(1) {
                logits = d.back_up(previous)?;
                continue;
            }
            d.salvage()?;
            stop = StopReason::EndToken;
            break;
        };
        if stop_ids.contains(&next) {
            match d.check_finished()? {
                Repair::Pass => {
                    stop = StopReason::EndToken;
                    break;
                }
                Repair::BackUp(position) => {
                    logits = d.back_up(position)?;
                    continue;
                }
                Repair::KeepGoing => {
                    // Choose again from the same logits, without ending here.
                    let here = d.tokens.len();
                    d.banned.entry(here).or_default().extend(stop_ids);
                    continue;
                }
            }
        }
        let step = d.commit(next, budget)?;
        for &id in &step {
            if let Some(piece) = stream.push(id)? {
                let from = streamed.len();
                streamed.push_str(&piece);
                if let Some(cut) = find_stop_text(&streamed, stop_text, from) {
                    streamed.truncate(cut);
                    if cut > emitted {
                        on_text(&streamed[emitted..]);
                    }
                    stop = StopReason::StopText;
                    break 'decode;
                }
                let upto = streamed.len() - held_back(&streamed, stop_text);
                if upto > emitted {
                    on_text(&streamed[emitted..upto]);
                    emitted = upto;
                }
            }
        }
        match d.check_continued()? {
            Continued::Fine => {}
            Continued::BackUp(position) => {
                logits = d.back_up(position)?;
                continue;
            }
            Continued::GiveUp => {
                // The model keeps writing what cannot pass: what it writes
                // next would be more of it. Keep what stands now.
                d.salvage()?;
                stop = StopReason::EndToken;
                break;
            }
        }
        if d.constraint.as_deref().is_some_and(Constraint::is_stopped) {
            // The grammar ended (after `;`): the next token can only end the turn.
            continue_or_stop(&mut d, &mut logits, &mut stop)?;
            if stop == StopReason::EndToken {
                break;
            }
            continue;
        }
        if d.tokens.len() >= budget {
            break;
        }
        logits = d.forward_and_mask(&step)?;
    }
    if stop != StopReason::StopText {
        if let Some(piece) = stream.finish()? {
            streamed.push_str(&piece);
        }
        if streamed.len() > emitted {
            on_text(&streamed[emitted..]);
        }
    }
    if d.constraint.is_some() && stop == StopReason::MaxTokens {
        d.salvage()?;
    }
    if steps > 0 {
        grammar_steps.push(std::mem::take(&mut d.step));
    }
    let text = if d.stats.repairs > 0
        || d.stats.early_repairs > 0
        || d.stats.trimmed_tokens > 0
        || d.stats.completed_tokens > 0
    {
        tokenizer.decode(&d.tokens, true)?
    } else {
        streamed
    };
    let prefill_ms = prefill_ms.unwrap_or_else(|| start.elapsed().as_secs_f64() * 1000.0);
    Ok(Generation {
        tokens: d.tokens,
        text,
        stop,
        prompt_tokens: prompt.len(),
        reused_prompt_tokens: reused,
        prefill_ms,
        decode_ms: decode_start.elapsed().as_secs_f64() * 1000.0,
        decode_steps: d.decode_steps,
        grammar: d.stats,
        grammar_steps,
    })
}

/// Where the first stop text in `text` starts, looking only at matches that
/// end after byte `new_from` (earlier ones were looked for already).
fn find_stop_text(text: &str, stops: &[String], new_from: usize) -> Option<usize> {
    stops
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| {
            let mut start = new_from.saturating_sub(s.len() - 1);
            while !text.is_char_boundary(start) {
                start -= 1;
            }
            text[start..].find(s.as_str()).map(|at| start + at)
        })
        .min()
}

/// How many bytes at the end of `text` could be the start of a stop text
/// (held back from streaming until the next piece decides).
fn held_back(text: &str, stops: &[String]) -> usize {
    stops
        .iter()
        .map(|s| {
            (1..s.len().min(text.len() + 1))
                .rev()
                .find(|&n| {
                    text.is_char_boundary(text.len() - n) && s.starts_with(&text[text.len() - n..])
                })
                .unwrap_or(0)
        })
        .max()
        .unwrap_or(0)
}

/// After the grammar has stopped: check the text; stop, or back up.
fn continue_or_stop(
    d: &mut Decoder<'_, '_>,
    logits: &mut Tensor,
    stop: &mut StopReason,
) -> Result<()> {
    match d.check_finished()? {
        Repair::Pass => *stop = StopReason::EndToken,
        Repair::BackUp(position) => *logits = d.back_up(position)?,
        // Take back the step that ended the query (`;`) and ban it there.
        Repair::KeepGoing => {
            let start = d.last_step_start;
            *logits = d.back_up(start)?;
        }
    }
    Ok(())
}

/// What to do after a step, by [`TextCheck::continued`].
enum Continued {
    /// Nothing is wrong yet: go on.
    Fine,
    /// Take back tokens from this position on and choose differently there.
    BackUp(usize),
    /// It went wrong again after [`MAX_EARLY_REPAIRS`] back-ups: finish
    /// with what stands instead of writing more of the same.
    GiveUp,
}

/// What to do about a finished text that failed the check.
enum Repair {
    /// It passes (or there is nothing to check): finish.
    Pass,
    /// Take back tokens from this position on and choose differently there.
    BackUp(usize),
    /// Do not end here: what is missing can still come (e.g. a FROM clause
    /// for the columns already named).
    KeepGoing,
}

/// The state of one generation.
struct Decoder<'m, 'r> {
    model: &'m mut dyn TokenModel,
    tokenizer: &'m Tokenizer,
    prompt: &'r [u32],
    /// Where the prefill ends its forward passes.
    chunk_ends: Vec<usize>,
    /// Prompt tokens already fed before this generation (kept cache).
    reused: usize,
    stop_ids: &'r [u32],
    max_tokens: usize,
    sampler: Sampler,
    constraint: Option<&'r mut Constraint>,
    check: Option<&'r dyn TextCheck>,
    tokens: Vec<u32>,
    /// Where the last committed step (a token and what it forced) began.
    last_step_start: usize,
    /// Tokens banned at a position (after a failed check pointed there).
    banned: HashMap<usize, HashSet<u32>>,
    /// The last text decoded for the check, and the tokens it was
    /// decoded from: each step's checks ask for the same text more than
    /// once (what may follow it, then what came before the step).
    decoded: Option<(Vec<u32>, String)>,
    stats: GrammarStats,
    /// Tokens fed after the prompt (see [`Generation::decode_steps`]).
    decode_steps: usize,
    mask_ahead: MaskAhead,
    /// The mask computed during the last forward pass, and the output
    /// length it was computed at.
    ahead: Option<(usize, TokenMask)>,
    /// Whether the last pick rejected the model's preferred token.
    last_rejected: bool,
    /// The grammar's time in the current step.
    step: StepGrammar,
}

impl Decoder<'_, '_> {
    /// Counts `elapsed` as grammar time of the current step, in `part`.
    fn spent(&mut self, part: Part, elapsed: std::time::Duration) {
        let ms = elapsed.as_secs_f64() * 1000.0;
        self.stats.grammar_ms += ms;
        let [mask, wait, commit, check, finish] = self.step.parts_mut();
        *match part {
            Part::Mask => mask,
            Part::MaskWait => wait,
            Part::Commit => commit,
            Part::Check => check,
            Part::Finish => finish,
        } += ms;
    }

    fn forward(&mut self, ids: &[u32]) -> Result<Tensor> {
        self.count_decode_steps(ids);
        self.model.feed(ids)
    }

    /// Counts `ids` as decode steps when fed after the whole prompt.
    fn count_decode_steps(&mut self, ids: &[u32]) {
        if self.model.fed() >= self.prompt.len() {
            self.decode_steps += ids.len();
        }
    }

    /// [`Decoder::forward`], computing the next step's mask on another
    /// thread meanwhile when [`MaskAhead`] says so. Only the wait for the
    /// mask after the logits are ready counts as grammar time.
    fn forward_and_mask(&mut self, ids: &[u32]) -> Result<Tensor> {
        let likely_needed = self.last_rejected;
        self.forward_masking_ahead(ids, likely_needed)
    }

    /// [`Decoder::forward`], computing the next step's mask meanwhile
    /// unless [`MaskAhead`] says never, or says only after a rejection and
    /// `likely_needed` is false.
    fn forward_masking_ahead(&mut self, ids: &[u32], likely_needed: bool) -> Result<Tensor> {
        let wanted = match self.mask_ahead {
            MaskAhead::Never => false,
            MaskAhead::Always => true,
            MaskAhead::AfterRejection => likely_needed,
        };
        if !wanted
            || self
                .constraint
                .as_deref()
                .is_none_or(Constraint::is_stopped)
        {
            return self.forward(ids);
        }
        self.count_decode_steps(ids);
        let Some(c) = self.constraint.as_deref_mut() else {
            return self.forward(ids);
        };
        let model = &mut *self.model;
        let (logits, mask, waited, took) = std::thread::scope(|s| {
            let helper = s.spawn(|| {
                let t = Instant::now();
                let mask = c.mask();
                (mask, t.elapsed())
            });
            let logits = model.feed(ids);
            let t = Instant::now();
            let (mask, took) = helper
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (logits, mask, t.elapsed(), took)
        });
        self.spent(Part::MaskWait, waited);
        self.stats.mask_ahead_ms += took.as_secs_f64() * 1000.0;
        self.stats.masks_ahead += 1;
        // A grammar error here is met again (and reported) if the step
        // needs the mask.
        self.ahead = mask.ok().map(|m| (self.tokens.len(), m));
        logits
    }

    fn prefill(&mut self) -> Result<Tensor> {
        let mut logits = None;
        // Chunks end where they would without a kept cache (the reused
        // part ends at one of those points): every position is computed in
        // the same chunk shape either way.
        let mut start = self.reused;
        let ends: Vec<usize> = self
            .chunk_ends
            .iter()
            .copied()
            .filter(|&e| e > start)
            .collect();
        let last = ends.last().copied();
        for end in ends {
            let chunk = &self.prompt[start..end];
            let _span = tracing::debug_span!("prefill", tokens = chunk.len()).entered();
            // The first step's mask (the grammar's start, the same for every
            // request) is computed during the last chunk: it costs a thread
            // beside the prefill, where it would otherwise be the slowest
            // step of a request whose model starts with a rejected token.
            logits = Some(if Some(end) == last {
                self.forward_masking_ahead(chunk, true)?
            } else {
                self.forward(chunk)?
            });
            start = end;
        }
        logits.ok_or_else(|| Error::invalid("prompt", "the prompt has no tokens"))
    }

    /// The next token: the sampler's choice if allowed, else a sample from
    /// the masked logits. `None` when the grammar allows only tokens that
    /// repairs have banned at this position (a dead end).
    fn pick(&mut self, logits: &Tensor) -> Result<Option<u32>> {
        let mut banned = self.bans_here();
        // What the check allows next, as more bans: every token the
        // grammar allows that spells something else (unless that bans
        // them all).
        if let Some(extra) = self.restricted_here()? {
            banned.get_or_insert_with(HashSet::new).extend(extra);
        }
        let banned = banned.as_ref();
        let Some(c) = self.constraint.as_deref_mut() else {
            return self.sampler.sample(logits).map(Some);
        };
        if c.is_stopped() {
            return self
                .stop_ids
                .first()
                .copied()
                .map(Some)
                .ok_or_else(|| Error::invalid("stop ids", "no end token to end the turn with"));
        }
        let here = self.tokens.len();
        // Borrowed, not taken: a second pick at the same position (an end
        // token turned down, a dead end) needs the same mask.
        let ahead = self
            .ahead
            .as_ref()
            .filter(|(at, _)| *at == here)
            .map(|(_, m)| m);
        // Sampling the preferred token costs the same without a grammar:
        // only what follows counts as grammar time.
        let preferred = self.sampler.sample(logits)?;
        let t = Instant::now();
        let mut rejected = false;
        let result = (|| {
            let allowed = match ahead {
                // End tokens are allowed where the grammar can end.
                Some(mask) if !c.is_stop(preferred) => mask.allows(preferred),
                _ => c.allows(preferred)?,
            };
            if !banned.is_some_and(|b| b.contains(&preferred)) && allowed {
                return Ok(Some(preferred));
            }
            rejected = true;
            self.stats.masks += 1;
            if self.sampler.is_greedy() {
                let values: Vec<f32> = logits.to_vec1()?;
                return match ahead {
                    Some(mask) => mask.best_allowed(&values, banned),
                    None => c.mask()?.best_allowed(&values, banned),
                };
            }
            let mut values: Vec<f32> = logits.to_vec1()?;
            match ahead {
                Some(mask) => mask.apply(&mut values)?,
                None => c.mask_logits(&mut values)?,
            }
            for &b in banned.into_iter().flatten() {
                if let Some(v) = values.get_mut(b as usize) {
                    *v = f32::NEG_INFINITY;
                }
            }
            if values.iter().all(|v| *v == f32::NEG_INFINITY) {
                return Ok(None);
            }
            let masked = Tensor::from_vec(values, logits.shape(), logits.device())?;
            self.sampler.sample(&masked).map(Some)
        })();
        self.spent(Part::Mask, t.elapsed());
        self.last_rejected = rejected;
        result
    }

    /// The tokens the grammar allows next that the check's
    /// [`TextCheck::allowed_next`] rules out; `None` when it rules nothing
    /// out, or would rule out every token the grammar allows.
    fn restricted_here(&mut self) -> Result<Option<HashSet<u32>>> {
        let Some(check) = self.check else {
            return Ok(None);
        };
        if self.constraint.as_deref().is_none_or(|c| c.is_stopped()) {
            return Ok(None);
        }
        let text = self.text_of(self.tokens.len())?;
        let Some(allowed) = check.allowed_next(&text) else {
            return Ok(None);
        };
        let Some(c) = self.constraint.as_deref_mut() else {
            return Ok(None);
        };
        let t = Instant::now();
        let mask = c.mask()?;
        let mut out = HashSet::new();
        let mut any_fits = false;
        for token in mask.allowed_tokens() {
            let bytes = c.token_bytes(token);
            let fits = !bytes.is_empty()
                && allowed.iter().any(|a| {
                    let a = a.as_bytes();
                    a.starts_with(bytes) || bytes.starts_with(a)
                });
            if fits {
                any_fits = true;
            } else {
                out.insert(token);
            }
        }
        self.spent(Part::Mask, t.elapsed());
        Ok(any_fits.then_some(out))
    }

    /// The tokens banned at the next position: its own bans and those of
    /// the positions before it that only blanks were written at since (a
    /// banned name stays banned after a space or a newline).
    fn bans_here(&self) -> Option<HashSet<u32>> {
        let c = self.constraint.as_deref()?;
        let here = self.tokens.len();
        let mut from = here;
        while from > 0 && c.token_bytes(self.tokens[from - 1]).trim_ascii().is_empty() {
            from -= 1;
        }
        let mut all: Option<HashSet<u32>> = None;
        for bans in (from..=here).filter_map(|k| self.banned.get(&k)) {
            all.get_or_insert_with(HashSet::new).extend(bans);
        }
        all
    }

    /// Appends `next` and the tokens the grammar then forces (within the
    /// budget); returns what was appended.
    fn commit(&mut self, next: u32, max_tokens: usize) -> Result<Vec<u32>> {
        let mut step = vec![next];
        self.last_step_start = self.tokens.len();
        if let Some(c) = self.constraint.as_deref_mut() {
            let t = Instant::now();
            c.commit(next)?;
            let room = max_tokens.saturating_sub(self.tokens.len() + 1);
            let forced: Vec<u32> = c.forced_tokens().into_iter().take(room).collect();
            for &f in &forced {
                c.commit(f)?;
            }
            self.stats.forced_tokens += forced.len();
            step.extend(forced);
            self.tokens.extend(&step);
            self.spent(Part::Commit, t.elapsed());
        } else {
            self.tokens.extend(&step);
        }
        Ok(step)
    }

    /// Checks the finished text and says how to repair it.
    fn check_finished(&mut self) -> Result<Repair> {
        let (Some(check), Some(_)) = (self.check, self.constraint.as_ref()) else {
            return Ok(Repair::Pass);
        };
        let t = Instant::now();
        let text = self.tokenizer.decode(&self.tokens, true)?;
        let verdict = check.finished(&text);
        self.spent(Part::Finish, t.elapsed());
        if verdict == Verdict::Pass {
            return Ok(Repair::Pass);
        }
        tracing::debug!(?verdict, sql = %text, "finished text failed the check");
        if self.stats.repairs < MAX_REPAIRS {
            self.stats.repairs += 1;
            if verdict == Verdict::Incomplete {
                // Finish from here with completion pieces if that passes,
                // else let the model go on.
                let culprit = std::cell::Cell::new(None);
                let stopped = self.constraint.as_ref().is_some_and(|c| c.is_stopped());
                if !stopped && self.complete_from_here(&culprit)? {
                    return Ok(Repair::Pass);
                }
                return Ok(Repair::KeepGoing);
            }
            if let Verdict::Blame(at) = verdict {
                return Ok(Repair::BackUp(self.token_at_byte(at)?));
            }
        }
        // Nothing to blame, or repairs exhausted: keep as much as passes.
        self.salvage()?;
        Ok(Repair::Pass)
    }

    /// After a step: asks the check whether the text so far can still
    /// pass, and says what to do.
    fn check_continued(&mut self) -> Result<Continued> {
        let t = Instant::now();
        let what = self.after_step();
        self.spent(Part::Check, t.elapsed());
        what
    }

    /// The text of the first `len` output tokens, decoded once for all the
    /// checks that ask for it.
    fn text_of(&mut self, len: usize) -> Result<String> {
        let tokens = &self.tokens[..len];
        if let Some((ids, text)) = &self.decoded {
            if ids.as_slice() == tokens {
                return Ok(text.clone());
            }
        }
        let text = self.tokenizer.decode(tokens, true)?;
        self.decoded = Some((tokens.to_vec(), text.clone()));
        Ok(text)
    }

    /// [`Decoder::check_continued`], untimed.
    fn after_step(&mut self) -> Result<Continued> {
        let (Some(check), Some(_)) = (self.check, self.constraint.as_ref()) else {
            return Ok(Continued::Fine);
        };
        let before = self.text_of(self.last_step_start)?;
        let all = self.text_of(self.tokens.len())?;
        let Some(next) = all.strip_prefix(before.as_str()) else {
            return Ok(Continued::Fine);
        };
        let Verdict::Blame(at) = check.continued(&before, next) else {
            return Ok(Continued::Fine);
        };
        if at >= before.len() {
            return Ok(Continued::Fine);
        }
        tracing::debug!(at, sql = %before, next, "text so far failed the check");
        if self.stats.early_repairs >= MAX_EARLY_REPAIRS {
            return Ok(Continued::GiveUp);
        }
        self.stats.early_repairs += 1;
        Ok(Continued::BackUp(self.token_at_byte(at)?))
    }

    /// Index of the token whose text contains byte `at` of the output.
    fn token_at_byte(&self, at: usize) -> Result<usize> {
        for i in 0..self.tokens.len() {
            let len = self.tokenizer.decode(&self.tokens[..=i], true)?.len();
            if len > at {
                return Ok(i);
            }
        }
        Ok(self.tokens.len().saturating_sub(1))
    }

    /// Takes back tokens from `position` on, bans the one chosen there (in
    /// every spelling), and returns the logits for choosing again.
    fn back_up(&mut self, position: usize) -> Result<Tensor> {
        self.ahead = None;
        let removed = self.tokens.len() - position;
        self.stats.repaired_tokens += removed;
        if let Some(&was) = self.tokens.get(position) {
            // Every spelling of the choice: the same name in another case
            // or after other blanks is the same mistake.
            let same = match self.constraint.as_deref() {
                Some(c) => c.spellings_of(was),
                None => vec![was],
            };
            self.banned.entry(position).or_default().extend(same);
        }
        // Bans further along belonged to the text being taken back.
        self.banned.retain(|&p, _| p <= position);
        if let Some(c) = self.constraint.as_deref_mut() {
            c.rollback(removed)?;
        }
        self.tokens.truncate(position);
        // Re-run the last kept token (or the last prompt token) for fresh logits.
        let kept = self.prompt.len() + position;
        self.model.truncate(kept - 1);
        let last = if position == 0 {
            self.prompt[self.prompt.len() - 1]
        } else {
            self.tokens[position - 1]
        };
        // The model will likely prefer the token just banned: the mask is
        // needed, so compute it during the forward pass.
        self.forward_masking_ahead(&[last], true)
    }

    /// The output cannot stand as it is (the budget ran out mid-query, or
    /// it fails the check for good): keep as much of it as possible. From
    /// the end backwards, finish the query with completion pieces (see
    /// [`crate::grammar::complete`]) from each earlier token; when a
    /// completed query fails the check at a name, jump back to before that
    /// name. At worst the query is finished from the very start; only if
    /// even that fails (or the grammar engine errs) is the output empty.
    fn salvage(&mut self) -> Result<()> {
        let total = self.tokens.len();
        if tracing::enabled!(tracing::Level::DEBUG) {
            let text = self.tokenizer.decode(&self.tokens, true)?;
            tracing::debug!(tokens = total, sql = ?text, "salvaging the output");
        }
        let mut n = total;
        loop {
            let culprit = std::cell::Cell::new(None);
            let finished = self
                .take_back_to(n)
                .and_then(|()| self.complete_from_here(&culprit));
            match finished {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => {
                    // The grammar state is unusable after an engine error.
                    tracing::debug!(error = %e, "completion failed");
                    break;
                }
            }
            if n == 0 {
                break;
            }
            // Before the blamed name, but never far at once: a name can be
            // blamed for what is really missing after it (a FROM clause).
            let floor = n.saturating_sub(MAX_SALVAGE_JUMP);
            n -= 1;
            if let Some(at) = culprit.get() {
                n = n.min(self.token_at_byte(at)?.max(floor));
            }
        }
        self.stats.trimmed_tokens += self.tokens.len();
        self.tokens.clear();
        if total > 0 || self.check.is_some() {
            self.stats.check_failed = true;
        }
        Ok(())
    }

    /// Searches for completion pieces that finish the query from the
    /// current state within the budget; appends them on success. The
    /// latest byte of the current text that a failed check blamed is left
    /// in `culprit` (no completion can pass while that name stands).
    fn complete_from_here(&mut self, culprit: &std::cell::Cell<Option<usize>>) -> Result<bool> {
        let room = self.max_tokens.saturating_sub(self.tokens.len());
        let Some(c) = self.constraint.as_deref_mut() else {
            return Ok(false);
        };
        let (tokenizer, check) = (self.tokenizer, self.check);
        let prefix_len = tokenizer.decode(&self.tokens, true)?.len();
        let finished = |ids: &[u32]| {
            let Ok(text) = tokenizer.decode(ids, true) else {
                return false;
            };
            let Some(check) = check else {
                return true;
            };
            match check.finished(&text) {
                Verdict::Pass => true,
                Verdict::Blame(at) => {
                    if at < prefix_len {
                        culprit.set(Some(culprit.get().map_or(at, |c: usize| c.max(at))));
                    }
                    false
                }
                // What is missing comes at the end, not at a name.
                Verdict::Incomplete | Verdict::Fail => false,
            }
        };
        let t = Instant::now();
        let done = crate::grammar::complete(c, &self.tokens, room, &finished)?;
        self.spent(Part::Finish, t.elapsed());
        Ok(match done {
            Some(extra) => {
                self.stats.completed_tokens += extra.len();
                self.tokens.extend(extra);
                true
            }
            None => false,
        })
    }

    /// Takes the output (and the grammar state) back to its first `n` tokens.
    fn take_back_to(&mut self, n: usize) -> Result<()> {
        self.ahead = None;
        let removed = self.tokens.len().saturating_sub(n);
        if removed == 0 {
            return Ok(());
        }
        if let Some(c) = self.constraint.as_deref_mut() {
            c.rollback(removed)?;
        }
        self.tokens.truncate(n);
        self.stats.trimmed_tokens += removed;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stops(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn masks_are_computed_ahead_every_step_on_large_vocabularies_only() {
        assert_eq!(MaskAhead::for_vocabulary(128_256), MaskAhead::Always);
        assert_eq!(MaskAhead::for_vocabulary(49_152), MaskAhead::AfterRejection);
    }

    #[test]
    fn prefill_chunks_end_at_chunk_multiples_the_split_and_the_end() {
        let c = PREFILL_CHUNK;
        assert_eq!(prefill_chunk_ends(10, None), vec![10]);
        assert_eq!(prefill_chunk_ends(c + 5, Some(7)), vec![7, c, c + 5]);
        assert_eq!(prefill_chunk_ends(2 * c, Some(c)), vec![c, 2 * c]);
        // A split at either end splits nothing.
        assert_eq!(prefill_chunk_ends(10, Some(0)), vec![10]);
        assert_eq!(prefill_chunk_ends(10, Some(10)), vec![10]);
        assert_eq!(prefill_chunk_ends(10, Some(99)), vec![10]);
    }

    #[test]
    fn a_stop_text_is_found_where_it_starts_even_across_pieces() {
        let s = stops(&["\n\n", "END"]);
        assert_eq!(find_stop_text("abc\n", &s, 3), None);
        // The second newline arrives in a new piece starting at byte 4.
        assert_eq!(find_stop_text("abc\n\nmore", &s, 4), Some(3));
        assert_eq!(find_stop_text("xEN", &s, 1), None);
        assert_eq!(find_stop_text("xEND", &s, 3), Some(1));
        assert_eq!(find_stop_text("anything", &[], 0), None);
    }

    #[test]
    fn text_that_may_start_a_stop_text_is_held_back() {
        let s = stops(&["END", "é!"]);
        assert_eq!(held_back("the E", &s), 1);
        assert_eq!(held_back("the EN", &s), 2);
        assert_eq!(held_back("the ENx", &s), 0);
        assert_eq!(held_back("café", &s), "é".len());
        assert_eq!(held_back("plain", &[]), 0);
    }
}
