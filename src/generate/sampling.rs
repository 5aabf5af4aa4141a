//! Choosing the next token from logits: greedy, or seeded temperature /
//! top-p sampling (candle's `LogitsProcessor`).

use candle_core::Tensor;
use candle_transformers::generation::{LogitsProcessor, Sampling};

use crate::error::Result;

/// How to pick tokens, and how many.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct SamplingParams {
    /// 0 means greedy (argmax); otherwise logits are divided by it.
    pub temperature: f64,
    /// Nucleus sampling: keep the smallest set of tokens whose probability
    /// mass reaches `top_p` (ignored when greedy).
    pub top_p: Option<f64>,
    /// Seed of the random generator: equal seeds give equal outputs.
    pub seed: u64,
    /// Maximum number of generated tokens.
    pub max_tokens: usize,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_p: None,
            seed: 299_792_458,
            max_tokens: super::DEFAULT_MAX_TOKENS,
        }
    }
}

/// A seeded token picker.
pub struct Sampler {
    inner: LogitsProcessor,
    greedy: bool,
}

impl Sampler {
    /// A sampler for `params`.
    pub fn new(params: &SamplingParams) -> Self {
        let sampling = if params.temperature <= 0.0 {
            Sampling::ArgMax
        } else {
            match params.top_p {
                Some(p) if p > 0.0 && p < 1.0 => Sampling::TopP {
                    p,
                    temperature: params.temperature,
                },
                _ => Sampling::All {
                    temperature: params.temperature,
                },
            }
        };
        Self {
            greedy: matches!(sampling, Sampling::ArgMax),
            inner: LogitsProcessor::from_sampling(params.seed, sampling),
        }
    }

    /// Whether it always takes the highest logit (temperature 0): no
    /// random draw, so a caller may pick the best allowed token itself.
    pub fn is_greedy(&self) -> bool {
        self.greedy
    }

    /// Picks one id from `logits` of shape `(vocab,)`.
    pub fn sample(&mut self, logits: &Tensor) -> Result<u32> {
        Ok(self.inner.sample(logits)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn greedy_takes_the_argmax() {
        let logits = Tensor::new(&[0.1f32, 3.0, -1.0, 2.9], &Device::Cpu).unwrap();
        let mut s = Sampler::new(&SamplingParams::default());
        assert_eq!(s.sample(&logits).unwrap(), 1);
    }

    #[test]
    fn equal_seeds_give_equal_samples() {
        let logits = Tensor::new(&[1.0f32, 1.1, 0.9, 1.05, 0.95], &Device::Cpu).unwrap();
        let params = SamplingParams {
            temperature: 1.0,
            top_p: Some(0.95),
            seed: 7,
            max_tokens: 8,
        };
        let draw = |p: &SamplingParams| -> Vec<u32> {
            let mut s = Sampler::new(p);
            (0..32).map(|_| s.sample(&logits).unwrap()).collect()
        };
        let a = draw(&params);
        assert_eq!(a, draw(&params));
        assert!(
            a.iter().collect::<std::collections::HashSet<_>>().len() > 1,
            "sampling varies"
        );
        let other = draw(&SamplingParams { seed: 8, ..params });
        assert_ne!(a, other);
    }
}
