//! Loading everything a model needs to answer: weights, tokenizer, chat
//! template and stop tokens, from whatever `--model` names.

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device};

use crate::chat::ChatTemplate;
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::prompt_cache::{PromptCache, DEFAULT_PROMPT_CACHES};
use super::DatabaseHandle;
use crate::grammar::GrammarFactory;
use crate::grammar::GrammarOptions;
use crate::lora::{Adapter, ADAPTER_WEIGHTS_FILE};
use crate::model::{self, GgufFile, GgufOptions, Llama};
use crate::tokenizer::{SpecialTokens, Tokenizer};

/// Where the weights come from, as resolved from `--model`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// A GGUF file (llama.cpp / Ollama).
    Gguf(PathBuf),
    /// A Hugging Face model directory.
    HfDir(PathBuf),
    /// A Hugging Face hub repo id, fetched into the hub cache.
    Hub(String),
    /// One GGUF file of a hub repo (`owner/repo:Q4_K_M`), fetched into the
    /// hub cache.
    HubGguf {
        /// The repo id.
        repo: String,
        /// Which of its GGUF files.
        choice: model::hub::GgufChoice,
    },
}

impl ModelSource {
    /// Resolves a `--model` value: an existing `.gguf` file, an existing
    /// directory, an `owner/name` repo id, or `owner/name:QUANT` for one
    /// GGUF file of a repo.
    pub fn parse(spec: &str) -> Result<Self> {
        let path = Path::new(spec);
        if path.is_dir() {
            return Ok(ModelSource::HfDir(path.to_path_buf()));
        }
        if path.is_file() {
            return Ok(ModelSource::Gguf(path.to_path_buf()));
        }
        if model::hub::looks_like_repo_id(spec) {
            return Ok(ModelSource::Hub(spec.to_string()));
        }
        if let Some((repo, quant)) = spec.rsplit_once(':') {
            if model::hub::looks_like_repo_id(repo) && !quant.is_empty() {
                return Ok(ModelSource::HubGguf {
                    repo: repo.to_string(),
                    choice: model::hub::GgufChoice::Quant(quant.to_string()),
                });
            }
        }
        Err(Error::model(
            path,
            "no such file or directory (a model is a .gguf file, a Hugging Face model directory, or a hub repo id such as meta-llama/Meta-Llama-3-8B-Instruct)",
        ))
    }
}

/// Everything needed to load a model.
#[derive(Debug, Clone)]
pub struct ModelOptions {
    /// What to load.
    pub source: ModelSource,
    /// Activation/weight dtype for safetensors models (GGUF runs in f32
    /// activations over its quantized weights).
    pub dtype: DType,
    /// Where to run.
    pub device: Device,
    /// GGUF loading options (re-quantization, dense prefill).
    pub gguf: GgufOptions,
    /// Hub revision (branch, tag or commit).
    pub revision: Option<String>,
    /// Hub token (from `HF_TOKEN` or `.env`).
    pub hf_token: Option<String>,
    /// Show download progress bars.
    pub progress: bool,
    /// Quantizing safetensors weights as they load.
    pub quantize: QuantizeAtLoad,
}

/// Whether safetensors weights are quantized as they load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QuantizeAtLoad {
    /// To Q8_0 on the CPU for models of more than a billion parameters;
    /// never on GPUs.
    #[default]
    Auto,
    /// Never.
    Off,
    /// To this type.
    To(candle_core::quantized::GgmlDType),
}

/// Parameters above which `Auto` quantizes on the CPU.
const AUTO_QUANTIZE_ABOVE: u64 = 1_000_000_000;

/// What was loaded, for logs and reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelInfo {
    /// The file or directory the weights were read from.
    pub path: PathBuf,
    /// `gguf`, `safetensors`, or `random` (weights built in memory).
    pub format: &'static str,
    /// Weight type of the projections (`q8_0`, `f32`, `bf16`, …).
    pub weight_type: String,
    /// Re-quantization done at load, e.g. `q4_1 -> q8_0 (211 tensors)`.
    pub requantized: Option<String>,
    /// The chat template in use.
    pub chat_template: String,
    /// Context window in tokens.
    pub context_length: usize,
    /// Milliseconds spent loading.
    pub load_ms: f64,
}

/// A loaded model with its tokenizer, chat template and stop tokens:
/// immutable once loaded (adapters are attached before it is shared) and
/// `Send + Sync`, so one `Arc<Engine>` answers requests on many threads.
pub struct Engine {
    /// The grammar factory for this tokenizer, built on first use.
    grammar_factory: std::sync::OnceLock<GrammarFactory>,
    /// KV caches of recent generations, for prompts that start the same way.
    prompt_cache: PromptCache,
    /// Databases opened for answering, by path and grammar.
    databases: Mutex<HashMap<(PathBuf, GrammarOptions), Arc<DatabaseHandle>>>,
    /// Adapters attached or merged, in the order they were loaded.
    adapters: Vec<AdapterInfo>,
    /// The network.
    pub model: Llama,
    /// Its tokenizer.
    pub tokenizer: Tokenizer,
    /// Its chat template.
    pub template: ChatTemplate,
    /// Its BOS/EOS/end-of-turn ids.
    pub special: SpecialTokens,
    /// What was loaded.
    pub info: ModelInfo,
}

impl Engine {
    /// Loads the model named by `options`.
    pub fn load(options: &ModelOptions) -> Result<Self> {
        let start = Instant::now();
        let mut engine = match &options.source {
            ModelSource::Gguf(path) => Self::load_gguf(path, options)?,
            ModelSource::HfDir(dir) => Self::load_hf_dir(dir, options)?,
            ModelSource::Hub(repo) => {
                let dir = model::hub::fetch(
                    repo,
                    options.revision.as_deref(),
                    options.hf_token.clone(),
                    options.progress,
                )?;
                Self::load_hf_dir(&dir, options)?
            }
            ModelSource::HubGguf { repo, choice } => {
                let path = model::hub::fetch_gguf(
                    repo,
                    choice,
                    options.revision.as_deref(),
                    options.hf_token.clone(),
                    options.progress,
                )?;
                Self::load_gguf(&path, options)?
            }
        };
        engine.info.load_ms = start.elapsed().as_secs_f64() * 1000.0;
        tracing::info!(
            path = %engine.info.path.display(),
            weights = %engine.info.weight_type,
            requantized = engine.info.requantized.as_deref().unwrap_or("no"),
            load_ms = engine.info.load_ms,
            "model loaded"
        );
        Ok(engine)
    }

    fn load_gguf(path: &Path, options: &ModelOptions) -> Result<Self> {
        let gguf = GgufFile::open(path)?;
        let context = path.display().to_string();
        let tokenizer = Tokenizer::from_gguf(gguf.content(), &context)?;
        let special = SpecialTokens::from_gguf(gguf.content(), &tokenizer)?;
        let template =
            ChatTemplate::from_gguf(gguf.content(), path)?.unwrap_or_else(ChatTemplate::llama3);
        let (model, changes) = gguf.into_model(&options.device, options.gguf)?;
        let requantized = summarize_requantization(&changes);
        if let Some(r) = &requantized {
            tracing::info!(
                "re-quantized {r} at load (no fast CPU kernel for the stored type here)"
            );
        }
        let parts = Parts {
            model,
            tokenizer,
            template,
            special,
        };
        parts.into_engine(path, "gguf", requantized)
    }

    fn load_hf_dir(dir: &Path, options: &ModelOptions) -> Result<Self> {
        // The model configuration first, so a broken config.json is reported
        // as what it is before the tokenizer files (which read it too).
        let config_path = dir.join("config.json");
        let missing: Vec<&str> = ["config.json", "tokenizer.json"]
            .into_iter()
            .filter(|f| !dir.join(f).is_file())
            .chain(
                (!dir.join("model.safetensors").is_file()
                    && !dir.join("model.safetensors.index.json").is_file())
                .then_some("model.safetensors"),
            )
            .collect();
        if !missing.is_empty() {
            return Err(Error::model(
                dir,
                format!(
                    "not a Hugging Face model directory: missing {}",
                    missing.join(", ")
                ),
            ));
        }
        model::RawConfig::from_file(&config_path)?.into_config(&config_path)?;
        let (tokenizer, special, template) = hf_tokenizer(dir)?;
        let quantize = match options.quantize {
            QuantizeAtLoad::Off => None,
            QuantizeAtLoad::To(t) => Some(t),
            QuantizeAtLoad::Auto
                if options.device.is_cpu()
                    && model::safetensors_parameters(dir)? > AUTO_QUANTIZE_ABOVE =>
            {
                Some(candle_core::quantized::GgmlDType::Q8_0)
            }
            QuantizeAtLoad::Auto => None,
        };
        let (model, quantized) = match quantize {
            None => (
                model::load_safetensors_dir(dir, options.dtype, &options.device)?,
                None,
            ),
            Some(t) => {
                let (model, (tensors, before, after)) =
                    model::load_safetensors_dir_quantized(dir, &options.device, t)?;
                let said = format!(
                    "{} at load ({tensors} tensors: {:.2} GB as f32 -> {:.2} GB)",
                    model::ggml_type_name(t),
                    before as f64 / 1e9,
                    after as f64 / 1e9
                );
                tracing::info!(weights = %said, "quantized at load");
                (model, Some(said))
            }
        };
        let parts = Parts {
            model,
            tokenizer,
            template,
            special,
        };
        parts.into_engine(dir, "safetensors", quantized)
    }

    /// An engine around `model` (e.g. random weights of a known shape,
    /// named `name` in its info) with the tokenizer, special tokens and
    /// chat template of a Hugging Face tokenizer directory
    /// (`tokenizer.json`, `tokenizer_config.json`).
    pub fn with_tokenizer_dir(model: Llama, dir: &Path, name: &Path) -> Result<Self> {
        let (tokenizer, special, template) = hf_tokenizer(dir)?;
        let parts = Parts {
            model,
            tokenizer,
            template,
            special,
        };
        parts.into_engine(name, "random", None)
    }

    /// The grammar factory for this model's tokenizer (built once, on
    /// first use: ~65 ms for a 128k vocabulary).
    pub fn grammar_factory(&self) -> Result<&GrammarFactory> {
        if let Some(f) = self.grammar_factory.get() {
            return Ok(f);
        }
        let factory = GrammarFactory::new(
            &self.tokenizer,
            self.model.config().vocab_size,
            &self.stop_ids(),
        )?;
        Ok(self.grammar_factory.get_or_init(|| factory))
    }

    /// Loads the PEFT adapter in `dir` and attaches it under `name` for
    /// unmerged use; returns its slot (what [`Engine::session`] takes).
    pub fn attach_adapter(&mut self, name: &str, dir: &Path) -> Result<usize> {
        self.check_new_adapter(name, dir)?;
        let adapter = Adapter::load(name, dir)?;
        let slot = self.model.attach_adapter(&adapter)?;
        self.adapters.push(AdapterInfo::new(&adapter, Some(slot))?);
        Ok(slot)
    }

    /// Loads the PEFT adapter in `dir` and adds it into the weights for
    /// good: every answer then uses it, at the base model's speed.
    pub fn merge_adapter(&mut self, name: &str, dir: &Path) -> Result<()> {
        self.check_new_adapter(name, dir)?;
        let adapter = Adapter::load(name, dir)?;
        self.model.merge_adapter(&adapter)?;
        self.adapters.push(AdapterInfo::new(&adapter, None)?);
        // Keys and values computed before the merge no longer hold.
        self.prompt_cache.clear();
        self.info.weight_type = weight_type(&self.model);
        Ok(())
    }

    fn check_new_adapter(&self, name: &str, dir: &Path) -> Result<()> {
        if self.adapters.iter().any(|a| a.name == name) {
            return Err(Error::invalid(
                "adapter",
                format!(
                    "two adapters are named {name:?} (the second at {})",
                    dir.display()
                ),
            ));
        }
        Ok(())
    }

    /// The adapters loaded, attached or merged.
    pub fn adapters(&self) -> &[AdapterInfo] {
        &self.adapters
    }

    /// The slot of the attached adapter called `name`.
    pub fn adapter_slot(&self, name: &str) -> Result<usize> {
        let found = self.adapters.iter().find(|a| a.name == name);
        match found {
            Some(AdapterInfo { slot: Some(s), .. }) => Ok(*s),
            Some(_) => Err(Error::invalid(
                "adapter",
                format!("adapter {name:?} is merged into the weights: it is always on"),
            )),
            None => Err(Error::UnknownAdapter {
                name: name.to_string(),
                loaded: if self.adapters.is_empty() {
                    "none".to_string()
                } else {
                    self.adapters
                        .iter()
                        .map(|a| a.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            }),
        }
    }

    /// The slot a request naming `adapter` runs with (`None`: the model as
    /// loaded).
    pub fn adapter_slot_for(&self, adapter: Option<&str>) -> Result<Option<usize>> {
        adapter.map(|name| self.adapter_slot(name)).transpose()
    }

    /// The adapter behind answers that name `adapter`: that attached one,
    /// or one merged into the weights.
    pub fn answering_adapter(&self, adapter: Option<&str>) -> Result<Option<AdapterInfo>> {
        let slot = self.adapter_slot_for(adapter)?;
        Ok(self
            .adapters
            .iter()
            .find(|a| a.slot.is_none() || (slot.is_some() && a.slot == slot))
            .cloned())
    }

    /// The KV caches kept between generations.
    pub fn prompt_cache(&self) -> &PromptCache {
        &self.prompt_cache
    }

    /// Turns keeping caches between generations on (the default) or off
    /// (every prompt is then fed whole, e.g. to measure prefill).
    pub fn set_keep_cache(&self, on: bool) {
        self.prompt_cache
            .set_capacity(if on { DEFAULT_PROMPT_CACHES } else { 0 });
    }

    /// The database at `path` with its schema and the grammar `options`
    /// ask for: opened and compiled on first use, then shared.
    pub fn database(&self, path: &Path, options: &GrammarOptions) -> Result<Arc<DatabaseHandle>> {
        let key = (
            std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()),
            *options,
        );
        if let Some(found) = self.lock_databases().get(&key) {
            return Ok(Arc::clone(found));
        }
        // Compiled outside the lock: a grammar takes a while, and other
        // databases need not wait for it.
        let handle = Arc::new(DatabaseHandle::open(self, path, options)?);
        Ok(Arc::clone(
            self.lock_databases().entry(key).or_insert(handle),
        ))
    }

    fn lock_databases(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(PathBuf, GrammarOptions), Arc<DatabaseHandle>>> {
        self.databases.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ids that end generation.
    pub fn stop_ids(&self) -> Vec<u32> {
        let mut ids = self.special.stop_ids();
        for id in &self.model.config().eos_token_ids {
            if !ids.contains(id) {
                ids.push(*id);
            }
        }
        ids
    }

    /// When decoding computes the grammar's mask during the forward pass:
    /// every step on a large vocabulary (see
    /// [`crate::generate::MaskAhead::for_vocabulary`]).
    pub fn mask_ahead(&self) -> crate::generate::MaskAhead {
        crate::generate::MaskAhead::for_vocabulary(self.model.config().vocab_size)
    }
}

/// An adapter the engine has loaded.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AdapterInfo {
    /// The name requests choose it by.
    pub name: String,
    /// Its directory.
    pub dir: PathBuf,
    /// SHA-256 of its `adapter_model.safetensors`.
    pub sha256: String,
    /// Its slot when attached unmerged; `None` when merged into the weights.
    pub slot: Option<usize>,
}

impl AdapterInfo {
    fn new(adapter: &Adapter, slot: Option<usize>) -> Result<Self> {
        Ok(Self {
            name: adapter.name.clone(),
            dir: adapter.dir.clone(),
            sha256: crate::eval::file_sha256(&adapter.dir.join(ADAPTER_WEIGHTS_FILE))?,
            slot,
        })
    }

    /// One line for reports: name, directory, hash prefix, merged or not.
    pub fn describe(&self) -> String {
        format!(
            "{} ({}, sha256 {}{})",
            self.name,
            self.dir.display(),
            &self.sha256[..self.sha256.len().min(12)],
            if self.slot.is_none() { ", merged" } else { "" }
        )
    }
}

/// The loaded pieces, before they are checked against each other.
/// The tokenizer, special tokens and chat template of a Hugging Face
/// directory (the Llama 3 template when it names none).
fn hf_tokenizer(dir: &Path) -> Result<(Tokenizer, SpecialTokens, ChatTemplate)> {
    let tokenizer_path = dir.join("tokenizer.json");
    if !tokenizer_path.is_file() {
        return Err(Error::model(dir, "no tokenizer.json in this directory"));
    }
    let tokenizer = Tokenizer::from_file(&tokenizer_path)?;
    let special = SpecialTokens::from_hf_dir(dir, &tokenizer)?;
    let config_path = dir.join("tokenizer_config.json");
    let template = if config_path.is_file() {
        ChatTemplate::from_tokenizer_config(&config_path)?
    } else {
        None
    }
    .unwrap_or_else(ChatTemplate::llama3);
    Ok((tokenizer, special, template))
}

struct Parts {
    model: Llama,
    tokenizer: Tokenizer,
    template: ChatTemplate,
    special: SpecialTokens,
}

impl Parts {
    fn into_engine(
        self,
        path: &Path,
        format: &'static str,
        requantized: Option<String>,
    ) -> Result<Engine> {
        check_vocab(&self.model, &self.tokenizer, path)?;
        Ok(Engine {
            grammar_factory: std::sync::OnceLock::new(),
            prompt_cache: PromptCache::new(DEFAULT_PROMPT_CACHES),
            databases: Mutex::new(HashMap::new()),
            adapters: Vec::new(),
            info: ModelInfo {
                path: path.to_path_buf(),
                format,
                weight_type: weight_type(&self.model),
                requantized,
                chat_template: self.template.name().to_string(),
                context_length: self.model.config().context_length,
                load_ms: 0.0,
            },
            model: self.model,
            tokenizer: self.tokenizer,
            template: self.template,
            special: self.special,
        })
    }
}

fn weight_type(model: &Llama) -> String {
    match model.weight_type() {
        Some(t) => model::ggml_type_name(t),
        None => format!("{:?}", model.dtype()).to_lowercase(),
    }
}

fn summarize_requantization(
    changes: &[(
        candle_core::quantized::GgmlDType,
        candle_core::quantized::GgmlDType,
    )],
) -> Option<String> {
    let (from, to) = changes.first()?;
    let n = changes.iter().filter(|c| c == &&(*from, *to)).count();
    let mut s = format!(
        "{} -> {} ({n} tensors)",
        model::ggml_type_name(*from),
        model::ggml_type_name(*to)
    );
    let others = changes.len() - n;
    if others > 0 {
        s.push_str(&format!(" and {others} other tensors"));
    }
    Some(s)
}

fn check_vocab(model: &Llama, tokenizer: &Tokenizer, path: &Path) -> Result<()> {
    let (m, t) = (model.config().vocab_size, tokenizer.vocab_size());
    if t > m {
        return Err(Error::model(
            path,
            format!(
                "the tokenizer ({}) has {t} tokens but the model's embedding only {m}",
                tokenizer.context()
            ),
        ));
    }
    Ok(())
}
