//! What the user typed: clap structures, validated into engine types by
//! [`ModelArgs::to_options`] and friends before anything runs.

use std::path::PathBuf;
use std::time::Duration;

use candle_core::quantized::GgmlDType;
use candle_core::{DType, Device};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::agent::{ModelOptions, ModelSource};
use crate::generate::SamplingParams;
use crate::grammar::{GrammarMode, GrammarOptions, DEFAULT_MAX_STRING_LEN};
use crate::model::{hub::DEFAULT_REPO, GgufOptions, Requantize};
use crate::sql::ExecLimits;

/// Local, offline text-to-SQL: ask a SQLite database a question in plain
/// English; a Llama model running on this machine writes the query.
#[derive(Debug, Parser)]
#[command(name = "sqlagent", version, about, long_about = None)]
pub struct Cli {
    /// CPU threads for the model (default: all cores).
    #[arg(long, global = true, env = "SQLAGENT_THREADS")]
    pub threads: Option<usize>,
    /// More log output on stderr (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Answer a question: write SQL with the model, run it read-only, print the rows.
    Ask(AskArgs),
    /// Ask question after question in the terminal, the model loaded once.
    Chat(ChatArgs),
    /// List the models this machine can load offline (the model folder and the hub cache).
    Models(ModelsArgs),
    /// Print the schema of a database as the prompt sees it.
    Schema(SchemaArgs),
    /// Import a CSV file into a table, inferring INTEGER/REAL/TEXT columns.
    Import(ImportArgs),
    /// Build the demo music-streaming database from data/demo/music.sql.
    DemoDb(DemoDbArgs),
    /// Print the Lark grammar (llguidance dialect) generated for a database.
    Grammar(GrammarArgs),
    /// Measure speed: prefill and decode tokens/s, grammar overhead, mask cost.
    Bench(BenchArgs),
    /// Evaluate on a question set: valid-SQL % and execution accuracy against gold SQL.
    Eval(EvalArgs),
    /// Train a LoRA adapter on question/SQL pairs (PEFT format out).
    Tune(TuneArgs),
    /// Generate question/SQL training pairs for a database, verified by running them.
    Synth(SynthArgs),
    /// From a database to a tuned adapter: synthesize pairs, hold some out, tune, evaluate base vs adapter.
    Adapt(AdaptArgs),
    /// Serve the model over HTTP: OpenAI-compatible chat and completions, /v1/sql, metrics.
    Serve(ServeArgs),
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Human-readable text and tables.
    Text,
    /// One JSON object.
    Json,
}

/// Where to run the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeviceArg {
    /// The CPU.
    Cpu,
    /// The first CUDA GPU (build with `--features cuda`).
    Cuda,
    /// The Apple GPU (build with `--features metal`).
    Metal,
}

/// Dtype for safetensors weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DTypeArg {
    /// 32-bit floats.
    F32,
    /// 16-bit floats.
    F16,
    /// bfloat16.
    Bf16,
}

/// Re-quantization of GGUF weights at load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RequantizeArg {
    /// Slow-kernel types (Q4_1, Q5_0, Q5_1) become Q8_0.
    Auto,
    /// Keep the file's types.
    Never,
    /// Everything to Q8_0.
    Q8_0,
    /// Everything to Q4_0.
    Q4_0,
    /// Everything to Q4_K.
    Q4k,
    /// Everything to dense f32 (exact but large).
    F32,
}

/// Quantization of weights made or loaded dense.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum QuantizeArg {
    /// q8_0 on the CPU (safetensors checkpoints: above 1B parameters);
    /// none on GPUs.
    Auto,
    /// Keep them dense (in --dtype).
    None,
    /// 8-bit blocks of 32.
    #[value(name = "q8_0")]
    Q8_0,
    /// 4-bit blocks of 32.
    #[value(name = "q4_0")]
    Q4_0,
    /// 4-bit K-quants (256-value super-blocks).
    Q4k,
    /// 6-bit K-quants.
    Q6k,
}

impl QuantizeArg {
    /// The GGML type, `None` for dense (and for `auto`, which the caller
    /// decides).
    pub fn ggml(self) -> Option<GgmlDType> {
        match self {
            QuantizeArg::Auto | QuantizeArg::None => None,
            QuantizeArg::Q8_0 => Some(GgmlDType::Q8_0),
            QuantizeArg::Q4_0 => Some(GgmlDType::Q4_0),
            QuantizeArg::Q4k => Some(GgmlDType::Q4K),
            QuantizeArg::Q6k => Some(GgmlDType::Q6K),
        }
    }
}

impl Command {
    /// Whether the command was asked for JSON output (`--format json`).
    pub fn json_output(&self) -> bool {
        let format = match self {
            Command::Ask(a) => a.format,
            Command::Chat(a) => a.format,
            Command::Models(a) => a.format,
            Command::Schema(a) => a.format,
            Command::Bench(a) => a.format,
            Command::Eval(a) => match &a.command {
                Some(EvalCommand::Compare(c)) => c.format,
                _ => a.format,
            },
            Command::Import(a) => a.format,
            Command::DemoDb(a) => a.format,
            Command::Grammar(a) => a.format,
            Command::Synth(a) => a.format,
            Command::Tune(a) => a.format,
            Command::Adapt(a) => a.format,
            Command::Serve(a) => a.format,
        };
        format == Format::Json
    }
}

/// Options naming and placing the model.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// A .gguf file, a Hugging Face model directory, or a hub repo id.
    #[arg(long, env = "SQLAGENT_MODEL", default_value = DEFAULT_REPO)]
    pub model: String,
    /// Hub revision (branch, tag or commit) for a repo id.
    #[arg(long, env = "SQLAGENT_REVISION")]
    pub revision: Option<String>,
    /// With a repo id as --model: load this GGUF file of the repo.
    #[arg(long, value_name = "NAME.gguf")]
    pub gguf_file: Option<String>,
    /// Quantize dense weights as they load: safetensors checkpoints (auto:
    /// q8_0 on the CPU above 1B parameters) and bench --shape's (auto:
    /// q8_0 on the CPU); none on GPUs.
    #[arg(long, value_enum, env = "SQLAGENT_QUANTIZE", default_value = "auto")]
    pub quantize: QuantizeArg,
    /// Device.
    #[arg(long, value_enum, env = "SQLAGENT_DEVICE", default_value = "cpu")]
    pub device: DeviceArg,
    /// Dtype of safetensors weights (default: f32 on CPU, bf16 on GPUs).
    #[arg(long, value_enum, env = "SQLAGENT_DTYPE")]
    pub dtype: Option<DTypeArg>,
    /// Re-quantize GGUF weights at load.
    #[arg(long, value_enum, env = "SQLAGENT_REQUANTIZE", default_value = "auto")]
    pub requantize: RequantizeArg,
    /// A LoRA adapter directory in PEFT format (adapter_config.json +
    /// adapter_model.safetensors), as DIR or NAME=DIR; repeat to load
    /// several and choose one with --use.
    #[arg(long = "adapter", value_name = "[NAME=]DIR")]
    pub adapters: Vec<String>,
    /// The loaded adapter that answers, by name (default: the only one
    /// loaded).
    #[arg(long = "use", value_name = "NAME")]
    pub use_adapter: Option<String>,
    /// Add the adapter into the weights at load instead of applying it at
    /// every step (one adapter only; a quantized projection it touches
    /// becomes dense f32).
    #[arg(long)]
    pub merge_adapter: bool,
}

impl ModelArgs {
    /// The directory of the adapter that answers: the one `--use` names,
    /// the only one, or the merged one (`None` for the base model).
    pub fn answering_adapter_dir(&self) -> crate::Result<Option<PathBuf>> {
        let specs = self.adapter_specs()?;
        let chosen = match (&self.use_adapter, specs.as_slice()) {
            (Some(name), _) => specs.iter().find(|(n, _)| n == name),
            (None, [only]) => Some(only),
            (None, [first, ..]) if self.merge_adapter => Some(first),
            _ => None,
        };
        Ok(chosen.map(|(_, dir)| dir.clone()))
    }

    /// The prompt to answer with: `given` (`--prompt`) when set, else the
    /// prompt the answering adapter carries, else `default`.
    pub fn answer_prompt(&self, given: Option<&str>) -> crate::Result<crate::chat::PromptSpec> {
        prompt_for(given, self.answering_adapter_dir()?.as_deref())
    }

    /// The adapters as (name, directory): `NAME=DIR`, or `DIR` named after
    /// its last path component.
    pub fn adapter_specs(&self) -> crate::Result<Vec<(String, PathBuf)>> {
        let mut specs = Vec::new();
        for spec in &self.adapters {
            let (name, dir) = match spec.split_once('=') {
                Some((name, dir))
                    if !name.is_empty()
                        && name
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) =>
                {
                    (name.to_string(), PathBuf::from(dir))
                }
                _ => {
                    let dir = PathBuf::from(spec);
                    let name = dir
                        .components()
                        .next_back()
                        .map(|c| c.as_os_str().to_string_lossy().into_owned())
                        .filter(|n| !n.is_empty() && n != "." && n != "..")
                        .unwrap_or_else(|| "adapter".into());
                    (name, dir)
                }
            };
            if dir.as_os_str().is_empty() {
                return Err(crate::Error::invalid(
                    "--adapter",
                    format!("{spec:?} names no directory"),
                ));
            }
            specs.push((name, dir));
        }
        if self.merge_adapter && specs.len() != 1 {
            return Err(crate::Error::invalid(
                "--merge-adapter",
                format!("needs exactly one --adapter ({} given)", specs.len()),
            ));
        }
        Ok(specs)
    }

    /// Loads the model (a spinner on a terminal meanwhile) and its
    /// adapters; returns the engine and the name of the adapter that answers.
    pub fn load_engine(&self) -> crate::Result<(crate::agent::Engine, Option<String>)> {
        use std::io::IsTerminal;
        let options = self.to_options(std::io::stderr().is_terminal())?;
        let spinner = super::output::spinner(&format!("loading model {}", self.model));
        let engine = crate::agent::Engine::load(&options);
        spinner.finish_and_clear();
        let mut engine = engine?;
        let adapter = self.apply_adapters(&mut engine)?;
        Ok((engine, adapter))
    }

    /// Loads the adapters into `engine` (attached, or merged with
    /// `--merge-adapter`) and returns the name of the one that answers
    /// (`None`: the base model, or the merged adapter).
    pub fn apply_adapters(
        &self,
        engine: &mut crate::agent::Engine,
    ) -> crate::Result<Option<String>> {
        let specs = self.adapter_specs()?;
        if self.merge_adapter {
            let (name, dir) = &specs[0];
            engine.merge_adapter(name, dir)?;
            if let Some(u) = self.use_adapter.as_ref().filter(|u| *u != name) {
                return Err(crate::Error::invalid(
                    "--use",
                    format!("no adapter named {u:?} (loaded: {name})"),
                ));
            }
            return Ok(None);
        }
        for (name, dir) in &specs {
            engine.attach_adapter(name, dir)?;
        }
        let chosen = match (&self.use_adapter, specs.as_slice()) {
            (Some(name), _) => name,
            (None, []) => return Ok(None),
            (None, [(name, _)]) => name,
            (None, _) => Err(crate::Error::invalid(
                "--use",
                format!(
                    "{} adapters are loaded: say which answers ({})",
                    specs.len(),
                    specs
                        .iter()
                        .map(|s| s.0.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ))?,
        };
        engine.adapter_slot(chosen).map_err(|e| match e {
            crate::Error::UnknownAdapter { name, loaded } => crate::Error::invalid(
                "--use",
                format!("no adapter named {name:?} (loaded: {loaded})"),
            ),
            other => other,
        })?;
        Ok(Some(chosen.clone()))
    }
}

/// Grammar constraint on decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GrammarArg {
    /// SQLite SELECT syntax with the database's table and column names.
    Schema,
    /// SQLite SELECT syntax with any identifier.
    Generic,
    /// No constraint: free text.
    None,
}

impl From<GrammarArg> for GrammarMode {
    fn from(g: GrammarArg) -> Self {
        match g {
            GrammarArg::Schema => GrammarMode::Schema,
            GrammarArg::Generic => GrammarMode::Generic,
            GrammarArg::None => GrammarMode::None,
        }
    }
}

/// Options of the grammar.
#[derive(Debug, Clone, Args)]
pub struct GrammarFlags {
    /// Constrain decoding to valid SQL: `schema` (names from the database),
    /// `generic` (any identifier) or `none`.
    #[arg(long, value_enum, env = "SQLAGENT_GRAMMAR", default_value = "schema")]
    pub grammar: GrammarArg,
    /// Longest string literal the grammar allows, in characters.
    #[arg(long, default_value_t = DEFAULT_MAX_STRING_LEN)]
    pub max_string_len: usize,
    /// A string compared with a text column of at most N distinct values
    /// must be one of them, as stored (0: any string).
    #[arg(long, value_name = "N", default_value_t = crate::grammar::DEFAULT_LITERAL_VALUES)]
    pub literal_values: usize,
}

impl GrammarFlags {
    /// Validates into [`GrammarOptions`].
    pub fn to_options(&self) -> crate::Result<GrammarOptions> {
        if self.max_string_len == 0 {
            return Err(crate::Error::invalid(
                "--max-string-len",
                "must be at least 1",
            ));
        }
        Ok(GrammarOptions {
            mode: self.grammar.into(),
            max_string_len: self.max_string_len,
            literal_values: self.literal_values,
        })
    }
}

/// Options for decoding.
#[derive(Debug, Clone, Args)]
pub struct SamplingArgs {
    /// 0 = greedy; higher values sample more freely.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub temperature: f64,
    /// Nucleus sampling threshold (with --temperature > 0).
    #[arg(long, allow_negative_numbers = true)]
    pub top_p: Option<f64>,
    /// Random seed for sampling.
    #[arg(long, default_value_t = SamplingParams::default().seed)]
    pub seed: u64,
    /// Maximum tokens to generate.
    #[arg(long, default_value_t = crate::generate::DEFAULT_MAX_TOKENS)]
    pub max_tokens: usize,
}

/// Options for running SQL.
#[derive(Debug, Clone, Args)]
pub struct ExecArgs {
    /// Stop reading after this many rows.
    #[arg(long, default_value_t = ExecLimits::default().max_rows)]
    pub max_rows: usize,
    /// Abort a query running longer than this (milliseconds).
    #[arg(long, default_value_t = ExecLimits::default().timeout.as_millis() as u64)]
    pub timeout_ms: u64,
}

/// `sqlagent ask`.
#[derive(Debug, Args)]
pub struct AskArgs {
    /// The question, in plain English.
    pub question: String,
    /// The SQLite database (opened read-only).
    #[arg(long, env = "SQLAGENT_DB")]
    pub db: PathBuf,
    /// Prompt: a name under prompts/ or a directory (default: the prompt the answering adapter
    /// carries, else `default`).
    #[arg(long, env = "SQLAGENT_PROMPT")]
    pub prompt: Option<String>,
    /// Focus the prompt's schema on the question's tables when the whole
    /// prompt would be longer than this many tokens.
    #[arg(long, value_name = "TOKENS")]
    pub schema_budget: Option<usize>,
    /// Similar pairs as few-shot examples.
    #[command(flatten)]
    pub retrieval: RetrievalArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Print the SQL without running it.
    #[arg(long)]
    pub no_execute: bool,
    /// Further attempts after a query that fails to run, each shown the
    /// failed query and SQLite's error.
    #[arg(long, default_value_t = 0)]
    pub retries: usize,
    /// Model options.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Grammar options.
    #[command(flatten)]
    pub grammar: GrammarFlags,
    /// Sampling options.
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Execution limits.
    #[command(flatten)]
    pub exec: ExecArgs,
}

/// `sqlagent models`.
#[derive(Debug, Args)]
pub struct ModelsArgs {
    /// The folder searched for GGUF files and model directories (the hub
    /// cache, HF_HUB_CACHE or $HF_HOME/hub, is listed as well).
    #[arg(long, env = "SQLAGENT_MODELS_DIR", default_value = "models")]
    pub dir: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

/// `sqlagent chat`.
#[derive(Debug, Args)]
pub struct ChatArgs {
    /// The SQLite database (opened read-only).
    #[arg(long, env = "SQLAGENT_DB")]
    pub db: PathBuf,
    /// Prompt: a name under prompts/ or a directory (default: the prompt
    /// each adapter carries, else `default`).
    #[arg(long, env = "SQLAGENT_PROMPT")]
    pub prompt: Option<String>,
    /// Focus the prompt's schema on the question's tables when the whole
    /// prompt would be longer than this many tokens.
    #[arg(long, value_name = "TOKENS")]
    pub schema_budget: Option<usize>,
    /// Output format of each answer (json: one object per question, as
    /// `ask --format json` prints it).
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Further attempts after a query that fails to run.
    #[arg(long, default_value_t = 0)]
    pub retries: usize,
    /// Where the line history is kept (default: sqlagent/chat_history in
    /// the user's data directory).
    #[arg(long, value_name = "FILE")]
    pub history: Option<PathBuf>,
    /// Keep no history file.
    #[arg(long)]
    pub no_history: bool,
    /// Model options.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Grammar options.
    #[command(flatten)]
    pub grammar: GrammarFlags,
    /// Sampling options.
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Execution limits.
    #[command(flatten)]
    pub exec: ExecArgs,
}

/// `sqlagent serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Output format (json: the result, or the error, as one object on stdout).
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// A database to serve, as NAME=FILE (or FILE, named after its file
    /// stem); repeat to serve several. Opened read-only.
    #[arg(long = "db", value_name = "[NAME=]FILE", required = true)]
    pub databases: Vec<String>,
    /// Address to listen on (loopback unless you mean otherwise).
    #[arg(long, env = "SQLAGENT_HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// Port (0: any free one, printed at start).
    #[arg(long, env = "SQLAGENT_PORT", default_value_t = 8080)]
    pub port: u16,
    /// Generation workers (default: half the cores, 1 to 4).
    #[arg(long)]
    pub parallel: Option<usize>,
    /// Requests that may wait for a worker; beyond, the server answers 429.
    #[arg(long, default_value_t = 16)]
    pub queue: usize,
    /// The environment variable holding the API key every /v1/* and
    /// /metrics request must send as "Authorization: Bearer <key>".
    #[arg(long, value_name = "VAR")]
    pub api_key_env: Option<String>,
    /// The name clients use for the base model (default: the model file's
    /// stem, or the repo id).
    #[arg(long)]
    pub model_name: Option<String>,
    /// Largest request body, in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    pub max_body_bytes: usize,
    /// Longest question, in characters.
    #[arg(long, default_value_t = 4000)]
    pub max_question_chars: usize,
    /// Most tokens one request may ask for.
    #[arg(long, default_value_t = 1024)]
    pub max_request_tokens: usize,
    /// Wall time limit of one request, queue included, in seconds.
    #[arg(long, default_value_t = 120)]
    pub request_timeout_s: u64,
    /// Seconds a shutdown waits for requests in flight before cancelling them.
    #[arg(long, default_value_t = 10)]
    pub shutdown_grace_s: u64,
    /// Prompt: a name under prompts/ or a directory (default: the prompt the answering adapter
    /// carries, else `default`).
    #[arg(long, env = "SQLAGENT_PROMPT")]
    pub prompt: Option<String>,
    /// Further attempts after a query that fails to run (chat and /v1/sql).
    #[arg(long, default_value_t = 0)]
    pub retries: usize,
    /// Model options (--adapter NAME=DIR serves the adapter as model NAME).
    #[command(flatten)]
    pub model: ModelArgs,
    /// Grammar options.
    #[command(flatten)]
    pub grammar: GrammarFlags,
    /// Sampling defaults (a request may override them).
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Execution limits.
    #[command(flatten)]
    pub exec: ExecArgs,
}

/// `sqlagent schema`.
#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// The SQLite database (opened read-only).
    #[arg(long, env = "SQLAGENT_DB")]
    pub db: PathBuf,
    /// Prompt whose schema rendering to use.
    #[arg(long, env = "SQLAGENT_PROMPT", default_value = "default")]
    pub prompt: String,
    /// `text`: the schema as the prompt renders it; `json`: everything introspected.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

/// `sqlagent grammar`.
#[derive(Debug, Args)]
pub struct GrammarArgs {
    /// Output format (json: the result, or the error, as one object on stdout).
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// The SQLite database whose schema the grammar names.
    #[arg(long, env = "SQLAGENT_DB")]
    pub db: PathBuf,
    /// Grammar options (`--grammar none` prints nothing).
    #[command(flatten)]
    pub grammar: GrammarFlags,
}

/// `sqlagent bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The SQLite database (default: the demo database, built in a temporary directory).
    #[arg(long, env = "SQLAGENT_DB")]
    pub db: Option<PathBuf>,
    /// Questions with gold SQL (JSONL, as test-set.jsonl). The model answers
    /// the first --questions of them; every gold query is replayed through
    /// the grammar to time masks.
    #[arg(long, default_value = "test-set.jsonl")]
    pub set: PathBuf,
    /// How many questions the model answers.
    #[arg(long, default_value_t = 5)]
    pub questions: usize,
    /// Measure the raw network instead, on these prompt token ids (a JSON
    /// array of integers): a warm-up pass, then --runs prefills and
    /// --decode-steps greedy steps each, no grammar, no database.
    #[arg(long, value_name = "FILE")]
    pub prompt_ids: Option<PathBuf>,
    /// Measure random weights of this model's exact shape, built in memory
    /// (no download): smollm2-135m, llama3.2-1b, llama3.2-3b or llama3-8b.
    /// Uses --device, --dtype and --quantize; --model is not read.
    #[arg(long, value_name = "NAME", conflicts_with = "prompt_ids")]
    pub shape: Option<String>,
    /// With --shape: also answer --questions under the grammar, with the
    /// tokenizer and chat template of this directory (`tokenizer.json`,
    /// `tokenizer_config.json`; its vocabulary must be the shape's, e.g.
    /// models/llama3-tokenizer for the Llama 3 shapes). Random weights
    /// make the grammar reject the model's preferred token at almost every
    /// step: its worst case.
    #[arg(long, value_name = "DIR", requires = "shape")]
    pub tokenizer: Option<PathBuf>,
    /// Prompt length with --shape (random token ids).
    #[arg(long, default_value_t = 512)]
    pub prompt_tokens: usize,
    /// Greedy decode steps per run with --prompt-ids or --shape.
    #[arg(long, default_value_t = 32)]
    pub decode_steps: usize,
    /// Measured runs with --prompt-ids or --shape (after one warm-up).
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
    /// Prompt: a name under prompts/ or a directory (default: the prompt the answering adapter
    /// carries, else `default`).
    #[arg(long, env = "SQLAGENT_PROMPT")]
    pub prompt: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Model options.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Grammar options.
    #[command(flatten)]
    pub grammar: GrammarFlags,
    /// Sampling options.
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

/// Subcommands of `sqlagent eval`.
#[derive(Debug, Subcommand)]
pub enum EvalCommand {
    /// Compare runs (report.json files): valid % and correct % per run, and
    /// for each pair the items that flipped with McNemar's exact p-value.
    Compare(CompareArgs),
}

/// `sqlagent eval compare`.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Output format (json: the result, or the error, as one object on stdout).
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Two or more report.json files (or --out directories holding one).
    #[arg(required = true, num_args = 2..)]
    pub reports: Vec<PathBuf>,
}

/// The format of a question set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SetFormat {
    /// Spider when the file is a `.json` array, else JSONL.
    Auto,
    /// One `{"question", "sql", "db"?, "tags"?}` per line.
    Jsonl,
    /// Spider's `dev.json` (needs --db-dir).
    Spider,
}

/// `sqlagent eval`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct EvalArgs {
    /// `compare`: put finished runs side by side.
    #[command(subcommand)]
    pub command: Option<EvalCommand>,
    /// Questions with gold SQL: JSONL with "question", "sql", optional "db"
    /// (relative to the set file) and "tags"; or Spider's dev.json.
    #[arg(long, required = true)]
    pub set: Option<PathBuf>,
    /// The set's format (`--format` is the output format, as in every command).
    #[arg(long, value_enum, default_value = "auto")]
    pub set_format: SetFormat,
    /// Spider databases: each item's is DIR/<db_id>/<db_id>.sqlite.
    #[arg(long)]
    pub db_dir: Option<PathBuf>,
    /// The database for items without their own "db" (opened read-only).
    #[arg(long, env = "SQLAGENT_DB")]
    pub db: Option<PathBuf>,
    /// Evaluate a random subset of this many items.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Seed of the --limit subset (the same seed gives the same items).
    #[arg(long, default_value_t = 0)]
    pub sample_seed: u64,
    /// Write items.jsonl (item by item, as they finish), report.json and
    /// report.md into this directory.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in --out: items already in items.jsonl are kept.
    #[arg(long, requires = "out")]
    pub resume: bool,
    /// After a query SQLite rejects, show the model the query and the error
    /// and let it try again, up to this many times (the report gives
    /// first-attempt and final figures).
    #[arg(long, default_value_t = 0)]
    pub retries: usize,
    /// Evaluate a hosted model instead of a local one: an OpenAI-compatible
    /// API base (`https://api.lamini.ai/inf/v1`, `http://localhost:11434/v1`)
    /// or its full /chat/completions URL.
    #[arg(long)]
    pub hosted: Option<String>,
    /// The hosted model's name.
    #[arg(long, requires = "hosted")]
    pub hosted_model: Option<String>,
    /// The environment variable (or .env entry) holding the API key.
    #[arg(long, default_value = "OPENAI_API_KEY")]
    pub hosted_key_env: String,
    /// Time limit for one hosted request, in seconds.
    #[arg(long, default_value_t = 120)]
    pub hosted_timeout_s: u64,
    /// Further tries after a rate limit, a server error or a lost connection
    /// (waits double from 0.5 s, or as Retry-After says).
    #[arg(long, default_value_t = 4)]
    pub hosted_retries: u32,
    /// Prompt: a name under prompts/ or a directory (default: the prompt the answering adapter
    /// carries, else `default`).
    #[arg(long, env = "SQLAGENT_PROMPT")]
    pub prompt: Option<String>,
    /// Focus each prompt's schema on the question's tables when the whole
    /// prompt would be longer than this many tokens.
    #[arg(long, value_name = "TOKENS")]
    pub schema_budget: Option<usize>,
    /// Similar pairs as few-shot examples.
    #[command(flatten)]
    pub retrieval: RetrievalArgs,
    /// `text`: a Markdown summary; `json`: the whole report.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Model options.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Grammar options.
    #[command(flatten)]
    pub grammar: GrammarFlags,
    /// Sampling options.
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Execution limits.
    #[command(flatten)]
    pub exec: ExecArgs,
}

/// `sqlagent import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Output format (json: the result, or the error, as one object on stdout).
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// The CSV file (first line: column names).
    pub csv: PathBuf,
    /// The database to write (created if missing).
    #[arg(long)]
    pub db: PathBuf,
    /// The table to create.
    #[arg(long)]
    pub table: String,
    /// Replace the table if it exists.
    #[arg(long)]
    pub replace: bool,
}

/// `sqlagent demo-db`.
#[derive(Debug, Args)]
pub struct DemoDbArgs {
    /// Output format (json: the result, or the error, as one object on stdout).
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Where to write the database.
    #[arg(long, default_value = "data/music.db")]
    pub out: PathBuf,
}

/// The prompt to answer with: `given` (`--prompt`) when set, else the one
/// the adapter in `adapter_dir` carries, else `default`.
pub fn prompt_for(
    given: Option<&str>,
    adapter_dir: Option<&std::path::Path>,
) -> crate::Result<crate::chat::PromptSpec> {
    use crate::chat::PromptSpec;
    if let Some(name) = given {
        return PromptSpec::load(name);
    }
    if let Some(dir) = adapter_dir {
        if let Some(carried) = PromptSpec::carried_by(dir)? {
            return Ok(carried);
        }
    }
    PromptSpec::load(crate::chat::DEFAULT_PROMPT)
}

impl ModelArgs {
    /// Validates into [`ModelOptions`].
    pub fn to_options(&self, progress: bool) -> crate::Result<ModelOptions> {
        let device = match self.device {
            DeviceArg::Cpu => Device::Cpu,
            DeviceArg::Cuda => Device::new_cuda(0).map_err(|e| {
                crate::Error::invalid("--device", format!("cuda is not available: {e}"))
            })?,
            DeviceArg::Metal => Device::new_metal(0).map_err(|e| {
                crate::Error::invalid("--device", format!("metal is not available: {e}"))
            })?,
        };
        let dtype = match self.dtype {
            Some(DTypeArg::F32) => DType::F32,
            Some(DTypeArg::F16) => DType::F16,
            Some(DTypeArg::Bf16) => DType::BF16,
            None if device.is_cpu() => DType::F32,
            None => DType::BF16,
        };
        let requantize = match self.requantize {
            RequantizeArg::Auto => Requantize::Auto,
            RequantizeArg::Never => Requantize::Never,
            RequantizeArg::Q8_0 => Requantize::To(GgmlDType::Q8_0),
            RequantizeArg::Q4_0 => Requantize::To(GgmlDType::Q4_0),
            RequantizeArg::Q4k => Requantize::To(GgmlDType::Q4K),
            RequantizeArg::F32 => Requantize::To(GgmlDType::F32),
        };
        let source = match (&self.gguf_file, ModelSource::parse(&self.model)?) {
            (None, source) => source,
            (Some(file), ModelSource::Hub(repo) | ModelSource::HubGguf { repo, .. }) => {
                ModelSource::HubGguf {
                    repo,
                    choice: crate::model::hub::GgufChoice::File(file.clone()),
                }
            }
            (Some(_), _) => {
                return Err(crate::Error::invalid(
                    "--gguf-file",
                    "names a file of a hub repo: give the repo id (owner/name) as --model",
                ))
            }
        };
        Ok(ModelOptions {
            source,
            dtype,
            device,
            gguf: GgufOptions {
                requantize,
                ..GgufOptions::default()
            },
            revision: self.revision.clone(),
            hf_token: std::env::var("HF_TOKEN").ok().filter(|t| !t.is_empty()),
            progress,
            quantize: match (self.quantize, self.quantize.ggml()) {
                (QuantizeArg::Auto, _) => crate::agent::QuantizeAtLoad::Auto,
                (_, None) => crate::agent::QuantizeAtLoad::Off,
                (_, Some(t)) => crate::agent::QuantizeAtLoad::To(t),
            },
        })
    }
}

impl SamplingArgs {
    /// Validates into [`SamplingParams`].
    pub fn to_params(&self) -> crate::Result<SamplingParams> {
        if self.temperature.is_nan() || self.temperature < 0.0 {
            return Err(crate::Error::invalid("--temperature", "must be 0 or more"));
        }
        if let Some(p) = self.top_p {
            if p.is_nan() || p <= 0.0 || p > 1.0 {
                return Err(crate::Error::invalid("--top-p", "must be in (0, 1]"));
            }
        }
        if self.max_tokens == 0 {
            return Err(crate::Error::invalid("--max-tokens", "must be at least 1"));
        }
        Ok(SamplingParams {
            temperature: self.temperature,
            top_p: self.top_p,
            seed: self.seed,
            max_tokens: self.max_tokens,
        })
    }
}

impl ExecArgs {
    /// Validates into [`ExecLimits`].
    pub fn to_limits(&self) -> crate::Result<ExecLimits> {
        if self.max_rows == 0 {
            return Err(crate::Error::invalid("--max-rows", "must be at least 1"));
        }
        Ok(ExecLimits {
            timeout: Duration::from_millis(self.timeout_ms.max(1)),
            max_rows: self.max_rows,
        })
    }
}

/// `sqlagent tune`.
#[derive(Debug, Args)]
pub struct TuneArgs {
    /// Output format (json: the result, or the error, as one object on stdout).
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Training pairs: JSONL with "question", "sql" and optional "db"
    /// (relative to the file).
    #[arg(long)]
    pub train: PathBuf,
    /// The database of items without "db".
    #[arg(long, env = "SQLAGENT_DB")]
    pub db: Option<PathBuf>,
    /// Where the adapter goes (adapter_config.json,
    /// adapter_model.safetensors, training.json).
    #[arg(long)]
    pub out: PathBuf,
    /// Prompt: a name under prompts/ or a directory; answer with the same
    /// one after tuning.
    #[arg(long, env = "SQLAGENT_PROMPT", default_value = "default")]
    pub prompt: String,
    /// Focus each pair's schema on its question's tables when the whole
    /// prompt would be longer than this many tokens (recorded with the
    /// adapter, which then answers the same way).
    #[arg(long, value_name = "TOKENS")]
    pub schema_budget: Option<usize>,
    /// LoRA rank.
    #[arg(long, default_value_t = 8)]
    pub rank: usize,
    /// LoRA alpha (the update is scaled by alpha / rank).
    #[arg(long, default_value_t = 16.0)]
    pub alpha: f64,
    /// Projections to adapt, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "q_proj,v_proj")]
    pub targets: Vec<String>,
    /// Passes over the training pairs.
    #[arg(long, default_value_t = 2)]
    pub epochs: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 2e-4)]
    pub lr: f64,
    /// Share of the steps spent warming the learning rate up.
    #[arg(long, default_value_t = 0.06)]
    pub warmup: f64,
    /// Pairs per optimizer step.
    #[arg(long, default_value_t = 8)]
    pub grad_accum: usize,
    /// AdamW weight decay.
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// Share of the pairs held out to report validation loss per epoch.
    #[arg(long, default_value_t = 0.1)]
    pub val_fraction: f64,
    /// Pairs longer than this many tokens (prompt and answer) are skipped.
    #[arg(long, default_value_t = 2048)]
    pub max_len: usize,
    /// Seed of initialisation, split and shuffling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Optimizer steps between checkpoints (and at every epoch's end).
    #[arg(long, default_value_t = 25)]
    pub checkpoint_every: usize,
    /// Continue from the checkpoint in --out (or, with --backend lamini,
    /// keep following the job recorded in --out/lamini.json).
    #[arg(long)]
    pub resume: bool,
    /// Where to train: this machine, or a tuning job on Lamini.
    #[arg(long, value_enum, default_value = "local")]
    pub backend: TuneBackend,
    /// Lamini's API base.
    #[arg(long, default_value = crate::tune::lamini::DEFAULT_URL)]
    pub lamini_url: String,
    /// The base model Lamini tunes.
    #[arg(long, default_value = "meta-llama/Meta-Llama-3.1-8B-Instruct")]
    pub lamini_model: String,
    /// Extra `finetune_args` for Lamini, as a JSON object.
    #[arg(long)]
    pub lamini_args: Option<String>,
    /// The environment variable (or .env entry) holding the Lamini API key.
    #[arg(long, default_value = "LAMINI_API_KEY")]
    pub lamini_key_env: String,
    /// Seconds between polls of a Lamini job's status.
    #[arg(long, default_value_t = 30)]
    pub poll_s: u64,
    /// The model.
    #[command(flatten)]
    pub model: ModelArgs,
}

/// Few-shot examples chosen per question.
#[derive(Debug, Args)]
pub struct RetrievalArgs {
    /// Put the K question/SQL pairs most like the question into the prompt
    /// as examples: from --examples, else from the pairs the answering
    /// adapter was trained on (default 3 with --examples, else 0).
    #[arg(long, value_name = "K")]
    pub retrieve: Option<usize>,
    /// Question/SQL pairs (JSONL) to draw examples from, such as a team's
    /// own past questions.
    #[arg(long, value_name = "FILE.jsonl")]
    pub examples: Option<PathBuf>,
}

/// `sqlagent adapt`.
#[derive(Debug, Args)]
pub struct AdaptArgs {
    /// Output format (json: the result, or the error, as one object on stdout).
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// The database to adapt to (opened read-only).
    #[arg(long, env = "SQLAGENT_DB")]
    pub db: PathBuf,
    /// Where the adapter, the report and the run's files go.
    #[arg(long)]
    pub out: PathBuf,
    /// A question set (JSONL) to evaluate base and adapter on as well;
    /// its questions are kept out of the synthesized pairs. Repeatable.
    #[arg(long = "eval", value_name = "SET.jsonl")]
    pub eval: Vec<PathBuf>,
    /// Pairs to synthesize (training and held-out together).
    #[arg(long, default_value_t = 400)]
    pub pairs: usize,
    /// Stop before tuning when the templates give fewer pairs than this
    /// (an adapter tuned on a few SQL shapes narrows the model).
    #[arg(long, default_value_t = 200)]
    pub min_pairs: usize,
    /// Held-out pairs to evaluate on (whole SQL shapes, at most a quarter
    /// of the pairs).
    #[arg(long, default_value_t = 60)]
    pub held_out: usize,
    /// At most this many pairs of one SQL shape.
    #[arg(long, default_value_t = 5)]
    pub max_per_skeleton: usize,
    /// Prompt the adapter is trained with and answers with.
    #[arg(long, default_value = crate::chat::TUNED_PROMPT)]
    pub prompt: String,
    /// Prompt the base model answers with in the comparison.
    #[arg(long, default_value = crate::chat::DEFAULT_PROMPT)]
    pub base_prompt: String,
    /// Prompts longer than this many tokens show only the tables a
    /// question needs, in training and answering alike (0: never).
    #[arg(long, value_name = "TOKENS", default_value_t = 1024)]
    pub schema_budget: usize,
    /// LoRA rank.
    #[arg(long, default_value_t = 8)]
    pub rank: usize,
    /// LoRA alpha (the update is scaled by alpha / rank).
    #[arg(long, default_value_t = 16.0)]
    pub alpha: f64,
    /// Projections to adapt, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"
    )]
    pub targets: Vec<String>,
    /// Passes over the training pairs.
    #[arg(long, default_value_t = 1)]
    pub epochs: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Pairs per optimizer step.
    #[arg(long, default_value_t = 8)]
    pub grad_accum: usize,
    /// Pairs longer than this many tokens (prompt and answer) are skipped.
    #[arg(long, default_value_t = 2048)]
    pub max_len: usize,
    /// Seed of synthesis, the split and training.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Continue the run in --out where it stopped.
    #[arg(long)]
    pub resume: bool,
    /// The base model.
    #[command(flatten)]
    pub model: ModelArgs,
}

/// Where `tune` trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TuneBackend {
    /// This machine, with candle.
    Local,
    /// A hosted tuning job on the Lamini platform.
    Lamini,
}

/// `sqlagent synth`.
#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Output format (json: the result, or the error, as one object on stdout).
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// The database to write pairs for (opened read-only).
    #[arg(long, env = "SQLAGENT_DB")]
    pub db: PathBuf,
    /// Where the pairs go (JSONL: question, sql, source).
    #[arg(long)]
    pub out: PathBuf,
    /// How many pairs to keep.
    #[arg(short = 'n', long = "count", default_value_t = 200)]
    pub count: usize,
    /// Evaluation sets to stay clear of (no identical SQL, no near-identical
    /// question); repeat for several.
    #[arg(long)]
    pub exclude: Vec<PathBuf>,
    /// Most pairs of one query shape (SQL with literals abstracted).
    #[arg(long, default_value_t = 3)]
    pub max_per_skeleton: usize,
    /// Seed of phrasing and order.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Replace --out if it exists.
    #[arg(long)]
    pub force: bool,
    /// How many of the pairs the model writes itself (questions sampled
    /// after seed questions, SQL under the grammar); the rest come from
    /// templates.
    #[arg(long, default_value_t = 0)]
    pub from_model: usize,
    /// Seed questions shown to the model (JSONL with "question"); needed
    /// with --from-model.
    #[arg(long)]
    pub seed_set: Option<PathBuf>,
    /// Prompt the model answers with: a name under prompts/ or a directory (default: the prompt the answering adapter
    /// carries, else `default`).
    #[arg(long, env = "SQLAGENT_PROMPT")]
    pub prompt: Option<String>,
    /// The model (used with --from-model).
    #[command(flatten)]
    pub model: ModelArgs,
}
