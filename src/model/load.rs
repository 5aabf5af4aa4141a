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

/// A Hugging Face model directory's configuration file.
const CONFIG: &str = "config.json";

/// Loads a Llama from a Hugging Face model directory in `dtype`.
pub fn load_safetensors_dir(dir: &Path, dtype: DType, device: &Device) -> Result<Llama> {
    let (cfg, files) = hf_dir(dir)?;
    let weights = Weights::from_safetensors(&files, dtype, device)?;
    Llama::load(&weights.described_by(&dir.join(CONFIG)), cfg)
}

/// Loads a Llama from a Hugging Face model directory in f32 with the
/// projections and embeddings quantized to `quantize` as they are read;
/// returns it with what the quantization did (tensors, bytes as f32,
/// bytes after).
pub fn load_safetensors_dir_quantized(
    dir: &Path,
    device: &Device,
    quantize: candle_core::quantized::GgmlDType,
) -> Result<(Llama, (usize, usize, usize))> {
    let (cfg, files) = hf_dir(dir)?;
    let weights = Weights::from_safetensors_quantized(&files, device, quantize)?
        .described_by(&dir.join(CONFIG));
    let model = Llama::load(&weights, cfg)?;
    Ok((model, weights.quantized_at_load()))
}

/// The configuration and safetensors files of a Hugging Face directory.
fn hf_dir(dir: &Path) -> Result<(Config, Vec<PathBuf>)> {
    if !dir.is_dir() {
        return Err(Error::model(dir, "not a directory"));
    }
    let config_path = dir.join(CONFIG);
    if !config_path.is_file() {
        return Err(Error::model(dir, "no config.json in this directory"));
    }
    let cfg = RawConfig::from_file(&config_path)?.into_config(&config_path)?;
    Ok((cfg, safetensors_files(dir)?))
}

/// The number of weight elements the safetensors files of `dir` hold,
/// from their headers.
pub fn safetensors_parameters(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for file in safetensors_files(dir)? {
        total +=
            super::catalog::safetensors_elements(&file).map_err(|why| Error::model(&file, why))?;
    }
    Ok(total)
}

/// An opened GGUF file: its metadata is available (for the tokenizer and the
/// chat template) before the tensors are read.
pub struct GgufFile {
    path: PathBuf,
    content: gguf_file::Content,
    file: File,
    /// The further files of a split GGUF (`-00002-of-00003.gguf`…).
    parts: Vec<super::weights::GgufPart>,
}

/// The number of files a split GGUF's first part says it has (1 when it is
/// not split).
fn split_count(content: &gguf_file::Content) -> usize {
    match content.metadata.get("split.count") {
        Some(gguf_file::Value::U16(n)) => usize::from(*n),
        Some(gguf_file::Value::U32(n)) => *n as usize,
        Some(gguf_file::Value::I32(n)) => (*n).max(1) as usize,
        _ => 1,
    }
}

/// The path of part `index` (1-based) of `count` of the split GGUF whose
/// first part is `first` (`…-00001-of-00003.gguf`).
fn split_part_path(first: &Path, index: usize, count: usize) -> Option<PathBuf> {
    let name = first.file_name()?.to_str()?;
    let from = format!("-00001-of-{count:05}.gguf");
    let stem = name.strip_suffix(&from)?;
    Some(first.with_file_name(format!("{stem}-{index:05}-of-{count:05}.gguf")))
}

fn read_gguf(path: &Path) -> Result<(gguf_file::Content, File)> {
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
    Ok((content, file))
}

impl GgufFile {
    /// Opens `path` and parses the GGUF header and metadata.
    /// A split GGUF is opened from its first part, with the others found
    /// next to it by name.
    pub fn open(path: &Path) -> Result<Self> {
        let (content, file) = read_gguf(path)?;
        let count = split_count(&content);
        let mut parts = Vec::new();
        if count > 1 {
            for index in 2..=count {
                let part = split_part_path(path, index, count).ok_or_else(|| {
                    Error::model(
                        path,
                        format!(
                            "the first of a GGUF split in {count} files must be named …-00001-of-{count:05}.gguf"
                        ),
                    )
                })?;
                if !part.is_file() {
                    return Err(Error::model(
                        &part,
                        format!("part {index} of {count} of {} is missing", path.display()),
                    ));
                }
                let (content, file) = read_gguf(&part)?;
                parts.push(super::weights::GgufPart {
                    content,
                    file: std::sync::Mutex::new(file),
                    path: part,
                });
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            content,
            file,
            parts,
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
        // The shape from the tensor table before any data is read.
        let dims = self.content.tensor_infos[NAME].shape.dims();
        if dims != [n] {
            return Err(bad(format!("shape {dims:?}, expected [{n}]")));
        }
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
        let weights = Weights::from_gguf(
            &self.path,
            self.content,
            self.file,
            self.parts,
            device,
            options,
        );
        let model = Llama::load(&weights, cfg)?;
        Ok((model, weights.requantized()))
    }
}
