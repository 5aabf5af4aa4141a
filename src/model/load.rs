//! Opening model files: a Hugging Face directory (config.json +
//! safetensors, single or sharded) or a GGUF file.

use std::fs::File;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file;
use candle_core::{DType, Device};

use super::config::{Config, RawConfig};
use super::hub::safetensors_files;
use super::llama::Llama;
use super::weights::{GgufOptions, Weights};
use crate::error::{candle_message, Error, Result};

/// Loads a Llama from a Hugging Face model directory in `dtype`.
pub fn load_safetensors_dir(dir: &Path, dtype: DType, device: &Device) -> Result<Llama> {
    if !dir.is_dir() {
        return Err(Error::model(dir, "not a directory"));
    }
    let config_path = dir.join("config.json");
    if !config_path.is_file() {
        return Err(Error::model(dir, "no config.json in this directory"));
    }
    let cfg = RawConfig::from_file(&config_path)?.into_config(&config_path)?;
    let files = safetensors_files(dir)?;
    let weights = Weights::from_safetensors(&files, dtype, device)?;
    Llama::load(&weights, cfg)
}

/// An opened GGUF file: its metadata is available (for the tokenizer and the
/// chat template) before the tensors are read.
pub struct GgufFile {
    path: PathBuf,
    content: gguf_file::Content,
    file: File,
}

impl GgufFile {
    /// Opens `path` and parses the GGUF header and metadata.
    pub fn open(path: &Path) -> Result<Self> {
        let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
        let content = gguf_file::Content::read(&mut file).map_err(|e| {
            Error::model(
                path,
                format!(
                    "not a readable GGUF file ({}); is it truncated or another format?",
                    candle_message(&e)
                ),
            )
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            content,
            file,
        })
    }

    /// The parsed header: metadata and tensor index.
    pub fn content(&self) -> &gguf_file::Content {
        &self.content
    }

    /// The file path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Resolves the configuration from the metadata, and the per-frequency
    /// RoPE factors from `rope_freqs.weight` where the file has one.
    pub fn config(&mut self) -> Result<Config> {
        let mut cfg = Config::from_gguf(&self.content, &self.path)?;
        cfg.rope_freq_factors = self.rope_freq_factors(cfg.head_dim / 2)?;
        Ok(cfg)
    }

    /// The `rope_freqs.weight` tensor (one divisor per frequency), if present.
    fn rope_freq_factors(&mut self, n: usize) -> Result<Option<Vec<f32>>> {
        const NAME: &str = "rope_freqs.weight";
        if !self.content.tensor_infos.contains_key(NAME) {
            return Ok(None);
        }
        let bad = |why: String| Error::model(&self.path, format!("{NAME}: {why}"));
        let factors: Vec<f32> = self
            .content
            .tensor(&mut self.file, NAME, &Device::Cpu)
            .and_then(|q| q.dequantize(&Device::Cpu))
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1())
            .map_err(|e| bad(candle_message(&e)))?;
        if factors.len() != n {
            return Err(bad(format!(
                "{} factors for {n} RoPE frequencies",
                factors.len()
            )));
        }
        if factors.iter().any(|k| !k.is_finite() || *k <= 0.0) {
            return Err(bad("a factor is not a positive number".into()));
        }
        Ok(Some(factors))
    }

    /// Reads the tensors and builds the model. Returns the model and the
    /// weight-type changes made at load (see [`GgufOptions::requantize`]).
    pub fn into_model(
        mut self,
        device: &Device,
        options: GgufOptions,
    ) -> Result<(
        Llama,
        Vec<(
            candle_core::quantized::GgmlDType,
            candle_core::quantized::GgmlDType,
        )>,
    )> {
        let cfg = self.config()?;
        let weights = Weights::from_gguf(&self.path, self.content, self.file, device, options);
        let model = Llama::load(&weights, cfg)?;
        Ok((model, weights.requantized()))
    }
}
