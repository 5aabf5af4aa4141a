//! How fast this machine runs the model and the grammar: a few questions
//! answered with the prompt cache off (prefill and decode tokens/s, the
//! share of decode time spent in the grammar, steps per emitted token),
//! then again warm (latency with the prompt cache on), then every gold query
//! replayed through the grammar to time the full mask and the one-token
//! check per step.

use super::{AskOptions, DatabaseHandle, Engine, Listener};
use crate::error::{Error, Result};
use crate::eval::Spread;
use crate::generate::{measure_forward, ForwardSpeed, LlamaSession, StepGrammar};
use crate::grammar::{percentile, MaskTimings};
use crate::model::Llama;

/// What a speed measurement found.
#[derive(Debug, Clone)]
pub struct SpeedReport {
    /// Questions answered.
    pub questions: usize,
    /// Mean prompt length, in tokens.
    pub prompt_tokens_mean: f64,
    /// Median prefill speed over the questions.
    pub prefill_tokens_per_s: f64,
    /// Median decode speed (every step fed, repairs included).
    pub decode_tokens_per_s: f64,
    /// Decode time of all questions, in ms.
    pub decode_ms: f64,
    /// Of which the grammar, in ms.
    pub grammar_ms: f64,
    /// The grammar's share of decode time, in percent.
    pub grammar_overhead_pct: f64,
    /// Full masks computed.
    pub full_masks: usize,
    /// Tokens the grammar forced.
    pub forced_tokens: usize,
    /// Masks computed during the forward pass, beside the model.
    pub masks_ahead: usize,
    /// The replay of the gold queries (without a grammar: none).
    pub masks: Option<MaskTimings>,
    /// The grammar's time per decode step over all questions (ms).
    pub grammar_step_ms: Spread,
    /// Its 99th percentile (nearest rank, ms).
    pub grammar_step_p99_ms: f64,
    /// Where the time of the slowest steps went (those at or above the
    /// 99th percentile): the mean of each part over them.
    pub slowest_steps: StepGrammar,
    /// How many steps that is.
    pub slowest_step_count: usize,
    /// Decode steps per emitted token, per question (repairs count).
    pub steps_per_token: Spread,
    /// Wall time per question answered warm: the same questions again,
    /// in process, with the prompt cache on (ms).
    pub warm_latency_ms: Spread,
}

impl Engine {
    /// Answers `questions` about `db` (not executed) and replays
    /// `gold_sql` through its grammar. The first pass keeps no prompt
    /// cache, so every prefill is measured whole; a second pass answers
    /// the same questions warm (cache on, as it is left). `on_question` hears each
    /// question before it is answered.
    pub fn measure_speed(
        &self,
        db: &DatabaseHandle,
        questions: &[String],
        gold_sql: &[String],
        options: &AskOptions,
        on_question: &mut dyn FnMut(&str),
    ) -> Result<SpeedReport> {
        self.set_keep_cache(false);
        let options = AskOptions {
            execute: false,
            ..options.clone()
        };
        let mut drafts = Vec::new();
        for question in questions {
            on_question(question);
            drafts.push(self.draft(db, question, &[], &options, &mut Listener::default())?);
        }
        self.set_keep_cache(true);
        let mut warm = Vec::with_capacity(questions.len());
        for question in questions {
            on_question(question);
            let start = std::time::Instant::now();
            self.draft(db, question, &[], &options, &mut Listener::default())?;
            warm.push(start.elapsed().as_secs_f64() * 1000.0);
        }
        let masks = match db.grammar() {
            Some(g) => Some(MaskTimings::replay(g, &self.tokenizer, gold_sql)?),
            None => None,
        };
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            percentile(&v, 0.5)
        };
        let prefill_tokens_per_s = median(
            drafts
                .iter()
                .map(|d| d.timings.prompt_tokens as f64 / (d.timings.prefill_ms / 1000.0))
                .collect(),
        );
        let decode_tokens_per_s = median(
            drafts
                .iter()
                .filter(|d| d.timings.decode_steps > 0)
                .map(|d| d.timings.decode_steps as f64 / (d.timings.decode_ms / 1000.0))
                .collect(),
        );
        let steps: Vec<&StepGrammar> = drafts
            .iter()
            .flat_map(|d| d.timings.grammar_steps.iter())
            .collect();
        let mut step_ms: Vec<f64> = steps.iter().map(|s| s.total_ms()).collect();
        step_ms.sort_by(f64::total_cmp);
        let p99 = percentile(&step_ms, 0.99);
        let slowest: Vec<&StepGrammar> = steps
            .iter()
            .copied()
            .filter(|s| !step_ms.is_empty() && s.total_ms() >= p99)
            .collect();
        let decode_ms: f64 = drafts.iter().map(|d| d.timings.decode_ms).sum();
        let grammar_ms: f64 = drafts.iter().map(|d| d.grammar.grammar_ms).sum();
        Ok(SpeedReport {
            questions: drafts.len(),
            prompt_tokens_mean: drafts
                .iter()
                .map(|d| d.timings.prompt_tokens)
                .sum::<usize>() as f64
                / drafts.len().max(1) as f64,
            prefill_tokens_per_s,
            decode_tokens_per_s,
            decode_ms,
            grammar_ms,
            grammar_overhead_pct: if decode_ms > 0.0 {
                100.0 * grammar_ms / decode_ms
            } else {
                0.0
            },
            full_masks: drafts.iter().map(|d| d.grammar.masks).sum(),
            forced_tokens: drafts.iter().map(|d| d.grammar.forced_tokens).sum(),
            masks_ahead: drafts.iter().map(|d| d.grammar.masks_ahead).sum(),
            masks,
            grammar_step_p99_ms: p99,
            slowest_steps: StepGrammar::mean_of(slowest.iter().copied()),
            slowest_step_count: slowest.len(),
            grammar_step_ms: Spread::of(step_ms),
            steps_per_token: Spread::of(
                drafts
                    .iter()
                    .filter(|d| d.timings.generated_tokens > 0)
                    .map(|d| d.timings.decode_steps as f64 / d.timings.generated_tokens as f64),
            ),
            warm_latency_ms: Spread::of(warm),
        })
    }

    /// The raw speed of the network on `prompt` (token ids): one warm-up
    /// pass, then `runs` measured ones, each a prefill from an empty cache
    /// and `steps` greedy decode steps (see [`measure_forward`]). No
    /// grammar, no prompt cache: what a comparison with another runtime
    /// fed the same ids needs.
    pub fn measure_forward(
        &self,
        prompt: &[u32],
        steps: usize,
        runs: usize,
    ) -> Result<Vec<ForwardSpeed>> {
        let vocab = self.model.config().vocab_size;
        if let Some(bad) = prompt.iter().find(|&&id| id as usize >= vocab) {
            return Err(Error::invalid(
                "prompt ids",
                format!("token id {bad} is outside the vocabulary of {vocab}"),
            ));
        }
        measure_model(&self.model, prompt, steps, runs)
    }
}

/// [`Engine::measure_forward`] for a bare network (e.g. random weights
/// of a known shape): one warm-up pass, then `runs` measured ones.
pub fn measure_model(
    model: &Llama,
    prompt: &[u32],
    steps: usize,
    runs: usize,
) -> Result<Vec<ForwardSpeed>> {
    let mut session = LlamaSession::new(model);
    measure_forward(&mut session, prompt, steps)?;
    (0..runs)
        .map(|_| measure_forward(&mut session, prompt, steps))
        .collect()
}
