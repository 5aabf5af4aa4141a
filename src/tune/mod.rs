//! LoRA tuning on the local machine with candle's autograd: examples built
//! by the inference prompt code ([`data`]), the training loop with
//! checkpoints ([`train`]), one whole run with its record ([`job`]), and AdamW with saveable state; or as a job on
//! the hosted Lamini platform ([`lamini`]); and [`adapt`], from a database to
//! an evaluated adapter in one run.

mod adamw;
pub mod adapt;
pub mod data;
pub mod job;
pub mod lamini;
pub mod train;

pub use adamw::{learning_rate, AdamW, AdamWParams};
pub use data::{example, TrainExample};
pub use job::{
    pairs_with_databases, peak_rss_mb, schemas_of, LocalTune, Pair, TuneReport, TRAINING_PAIRS_FILE,
};
pub use train::{
    checkpoint_dir, mean_loss, peft_config, step_gradients, train, EpochLog, Progress,
    TrainOutcome, TrainState, TuneOptions,
};
