//! Raw forward-pass speed: a given prompt prefilled the way generation
//! prefills it, then greedy steps one token at a time, each timed. No
//! grammar, no tokenizer: what a side-by-side comparison with another
//! runtime fed the same ids needs.

use std::time::Instant;

use super::{TokenModel, PREFILL_CHUNK};
use crate::error::{Error, Result};

/// Timings of one prefill and the decode steps after it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ForwardSpeed {
    /// Prompt tokens prefilled.
    pub prompt_tokens: usize,
    /// Wall time of the prefill, in ms.
    pub prefill_ms: f64,
    /// Wall time of each decode step (one token fed, its logits read and
    /// the next token picked greedily), in ms.
    pub step_ms: Vec<f64>,
    /// The tokens picked.
    pub tokens: Vec<u32>,
}

impl ForwardSpeed {
    /// Prefill tokens per second.
    pub fn prefill_tokens_per_s(&self) -> f64 {
        self.prompt_tokens as f64 / (self.prefill_ms / 1000.0)
    }

    /// Decode tokens per second over all steps.
    pub fn decode_tokens_per_s(&self) -> f64 {
        let total: f64 = self.step_ms.iter().sum();
        self.step_ms.len() as f64 / (total / 1000.0)
    }
}

/// Prefills `prompt` from an empty cache in [`PREFILL_CHUNK`]s, then takes
/// `steps` greedy decode steps.
pub fn measure_forward(
    model: &mut dyn TokenModel,
    prompt: &[u32],
    steps: usize,
) -> Result<ForwardSpeed> {
    if prompt.is_empty() {
        return Err(Error::invalid("prompt", "no token ids to prefill"));
    }
    if prompt.len() + steps > model.context_length() {
        return Err(Error::PromptTooLong {
            prompt_tokens: prompt.len(),
            context: model.context_length(),
            reserved: steps,
        });
    }
    model.truncate(0);
    let start = Instant::now();
    let mut logits = None;
    for chunk in prompt.chunks(PREFILL_CHUNK) {
        logits = Some(model.feed(chunk)?);
    }
    let mut logits = logits.expect("the prompt is not empty");
    let mut next = argmax(&logits.to_vec1()?);
    let prefill_ms = start.elapsed().as_secs_f64() * 1000.0;
    let mut step_ms = Vec::with_capacity(steps);
    let mut tokens = Vec::with_capacity(steps);
    for _ in 0..steps {
        let t = Instant::now();
        logits = model.feed(&[next])?;
        tokens.push(next);
        next = argmax(&logits.to_vec1()?);
        step_ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(ForwardSpeed {
        prompt_tokens: prompt.len(),
        prefill_ms,
        step_ms,
        tokens,
    })
}

fn argmax(values: &[f32]) -> u32 {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    /// Logits that prefer `(last fed + 1) % vocab`; counts what was fed.
    struct Counting {
        fed: Vec<u32>,
        feeds: Vec<usize>,
    }

    impl TokenModel for Counting {
        fn context_length(&self) -> usize {
            1024
        }
        fn feed(&mut self, ids: &[u32]) -> Result<Tensor> {
            self.fed.extend_from_slice(ids);
            self.feeds.push(ids.len());
            let mut v = vec![0f32; 10];
            v[((*ids.last().unwrap() + 1) % 10) as usize] = 1.0;
            Ok(Tensor::new(v, &Device::Cpu)?)
        }
        fn truncate(&mut self, len: usize) {
            self.fed.truncate(len);
        }
        fn fed(&self) -> usize {
            self.fed.len()
        }
    }

    #[test]
    fn prefills_in_chunks_then_steps_greedily() {
        let mut m = Counting {
            fed: vec![7; 3],
            feeds: Vec::new(),
        };
        let prompt: Vec<u32> = (0..PREFILL_CHUNK as u32 + 5).map(|i| i % 10).collect();
        let s = measure_forward(&mut m, &prompt, 3).unwrap();
        assert_eq!(m.feeds, vec![PREFILL_CHUNK, 5, 1, 1, 1]);
        assert_eq!(m.fed.len(), prompt.len() + 3, "started from an empty cache");
        let last = *prompt.last().unwrap();
        assert_eq!(
            s.tokens,
            vec![(last + 1) % 10, (last + 2) % 10, (last + 3) % 10]
        );
        assert_eq!(s.step_ms.len(), 3);
        assert!(s.prefill_tokens_per_s() > 0.0);
    }

    #[test]
    fn refuses_an_empty_prompt_and_one_past_the_context() {
        let mut m = Counting {
            fed: Vec::new(),
            feeds: Vec::new(),
        };
        assert!(measure_forward(&mut m, &[], 1).is_err());
        assert!(matches!(
            measure_forward(&mut m, &[1; 1000], 100),
            Err(Error::PromptTooLong { .. })
        ));
    }
}
