//! Rotary position embeddings: the cos/sin tables, including Llama 3's
//! frequency-dependent scaling (`rope_type: "llama3"`, Llama 3.1/3.2), as in
//! Hugging Face `transformers`' `_compute_llama3_parameters`.

use candle_core::{DType, Device, Tensor};

use super::config::{Config, Llama3RopeScaling};
use crate::error::Result;

/// Precomputed `cos`/`sin` tables of shape `(context_length, head_dim / 2)`.
#[derive(Debug, Clone)]
pub struct RopeTables {
    /// Cosines.
    pub cos: Tensor,
    /// Sines.
    pub sin: Tensor,
}

/// The inverse frequencies `θ_i = base^(-2i/d)`, scaled for Llama 3 when
/// configured: divided by the weights' per-frequency factors where given
/// (as llama.cpp does with `rope_freqs.weight`), else by the
/// `rope_scaling` rule.
pub fn inverse_frequencies(cfg: &Config) -> Vec<f32> {
    let d = cfg.head_dim;
    let base: Vec<f32> = (0..d)
        .step_by(2)
        .map(|i| 1f32 / cfg.rope_theta.powf(i as f32 / d as f32))
        .collect();
    if let Some(factors) = &cfg.rope_freq_factors {
        return base.iter().zip(factors).map(|(f, k)| f / k).collect();
    }
    match &cfg.rope_scaling {
        None => base,
        Some(s) => base.into_iter().map(|f| llama3_scale(f, s)).collect(),
    }
}

fn llama3_scale(freq: f32, s: &Llama3RopeScaling) -> f32 {
    let old = s.original_max_position_embeddings as f32;
    let low_freq_wavelen = old / s.low_freq_factor;
    let high_freq_wavelen = old / s.high_freq_factor;
    let wavelen = 2.0 * std::f32::consts::PI / freq;
    if wavelen < high_freq_wavelen {
        freq
    } else if wavelen > low_freq_wavelen {
        freq / s.factor
    } else {
        let smooth = (old / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
        (1.0 - smooth) * freq / s.factor + smooth * freq
    }
}

impl RopeTables {
    /// Builds the tables for every position of the context window.
    pub fn new(cfg: &Config, dtype: DType, device: &Device) -> Result<Self> {
        let inv = inverse_frequencies(cfg);
        let n = inv.len();
        let inv = Tensor::from_vec(inv, (1, n), device)?;
        let positions = Tensor::arange(0u32, cfg.context_length as u32, device)?
            .to_dtype(DType::F32)?
            .reshape((cfg.context_length, 1))?;
        let angles = positions.matmul(&inv)?;
        Ok(Self {
            cos: angles.cos()?.to_dtype(dtype)?,
            sin: angles.sin()?.to_dtype(dtype)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(scaling: Option<Llama3RopeScaling>) -> Config {
        Config {
            hidden_size: 4096,
            intermediate_size: 1,
            vocab_size: 1,
            num_layers: 1,
            num_heads: 32,
            num_kv_heads: 8,
            head_dim: 128,
            rms_norm_eps: 1e-5,
            rope_theta: 500_000.0,
            rope_scaling: scaling,
            rope_freq_factors: None,
            rope_interleaved: false,
            context_length: 16,
            tie_word_embeddings: false,
            attention_bias: false,
            mlp_bias: false,
            eos_token_ids: vec![],
        }
    }

    /// Llama 3.1's `rope_scaling`.
    fn llama31_scaling() -> Llama3RopeScaling {
        Llama3RopeScaling {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 8192,
        }
    }

    #[test]
    fn llama3_scaling_keeps_high_and_divides_low_frequencies() {
        let s = llama31_scaling();
        let plain = inverse_frequencies(&cfg(None));
        let scaled = inverse_frequencies(&cfg(Some(s)));
        // The highest frequency (wavelength 2π < 2048) is untouched.
        assert_eq!(plain[0], scaled[0]);
        // The lowest frequency (wavelength > 8192) is divided by the factor.
        let last = plain.len() - 1;
        assert!((plain[last] / 8.0 - scaled[last]).abs() < 1e-12);
        // In between, scaled frequencies lie between f/8 and f.
        for (p, q) in plain.iter().zip(&scaled) {
            assert!(*q <= *p && *q >= p / 8.0 - 1e-12);
        }
    }

    #[test]
    fn per_frequency_factors_replace_the_scaling_rule() {
        let s = llama31_scaling();
        let plain = inverse_frequencies(&cfg(None));
        let factors: Vec<f32> = (0..plain.len()).map(|i| 1.0 + i as f32).collect();
        let mut c = cfg(Some(s));
        c.rope_freq_factors = Some(factors.clone());
        let got = inverse_frequencies(&c);
        for ((p, k), g) in plain.iter().zip(&factors).zip(&got) {
            assert_eq!(*g, p / k);
        }
    }

    #[test]
    fn tables_have_one_row_per_position() {
        let t = RopeTables::new(&cfg(None), DType::F32, &Device::Cpu).unwrap();
        assert_eq!(t.cos.dims(), &[16, 64]);
        let row0: Vec<f32> = t.cos.get(0).unwrap().to_vec1().unwrap();
        assert!(row0.iter().all(|c| (*c - 1.0).abs() < 1e-7), "cos(0) = 1");
    }
}
