//! LoRA adapters in Hugging Face PEFT format: the configuration
//! (`adapter_config.json`), the low-rank factors
//! (`adapter_model.safetensors`), and the delta `s·B(Ax)` they add to a
//! projection. The model applies deltas through its one `Linear` type,
//! unmerged at run time or merged into dense weights.

mod adapter;
mod config;

pub use adapter::{Adapter, LoraDelta, ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE};
pub use config::{AdapterConfig, TargetModules};

/// Highest rank an adapter may have: beyond it an adapter is no longer
/// "low-rank" for any model we run, and is almost surely a broken file.
pub const MAX_RANK: usize = 1024;

/// The projections of a Llama block an adapter may target (PEFT's module
/// names), plus the output head.
pub const LLAMA_MODULES: [&str; 8] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
    "lm_head",
];

/// What is wrong with an adapter (the file it concerns is in
/// [`crate::Error::Adapter`]).
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    /// A required file is not there.
    #[error("missing {0}")]
    MissingFile(String),
    /// `adapter_config.json` is not valid JSON or has a bad field.
    #[error("adapter_config.json: {0}")]
    Config(String),
    /// A feature of PEFT this engine does not implement.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The tensors name a module the model does not have.
    #[error("adapter_model.safetensors: unknown target module {module:?} (this model's adapters may target: {known})")]
    UnknownTargetModule {
        /// The module path from the tensor name.
        module: String,
        /// What may be targeted.
        known: String,
    },
    /// A tensor's shape does not fit its module or its partner.
    #[error("adapter_model.safetensors: {tensor}: shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        /// The tensor name.
        tensor: String,
        /// The shape it should have.
        expected: Vec<usize>,
        /// The shape it has.
        found: Vec<usize>,
    },
    /// The rank is above [`MAX_RANK`].
    #[error("adapter_model.safetensors: rank {rank} of {module} is above the limit of {limit}")]
    RankTooHigh {
        /// The module.
        module: String,
        /// Its rank.
        rank: usize,
        /// The limit.
        limit: usize,
    },
    /// A module has `lora_A` without `lora_B` or the reverse.
    #[error("adapter_model.safetensors: {module} has {present} but no {missing}")]
    Unpaired {
        /// The module.
        module: String,
        /// The factor present.
        present: &'static str,
        /// The factor missing.
        missing: &'static str,
    },
    /// A module's rank in the tensors is not the one the configuration
    /// gives it.
    #[error("adapter_model.safetensors: {module} has rank {rank}, but adapter_config.json gives it rank {configured}")]
    RankDiffers {
        /// The module.
        module: String,
        /// Its rank in the tensors.
        rank: usize,
        /// Its rank in the configuration.
        configured: usize,
    },
    /// The safetensors file could not be read.
    #[error("adapter_model.safetensors: {0}")]
    Tensors(String),
}
