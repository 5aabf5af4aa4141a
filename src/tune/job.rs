//! One local tuning run end to end: the pairs rendered by the inference
//! prompt, a seeded validation split, training with checkpoints, then the
//! PEFT adapter and its `training.json` record.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::data::{example, TrainExample};
use super::train::{checkpoint_dir, peft_config, train, Progress, TrainState, TuneOptions};
use crate::agent::Engine;
use crate::chat::{PromptSpec, CARRIED_PROMPT_DIR};
use crate::error::{Error, Result};
use crate::eval::{file_sha256, load_set, model_fingerprint, SetItem};
use crate::lora::Adapter;
use crate::sql::{Database, Schema};

/// Where in an adapter directory the pairs it was trained on are kept
/// (JSONL `{"question", "sql"}`): the examples retrieval draws from when
/// the adapter answers.
pub const TRAINING_PAIRS_FILE: &str = "training-pairs.jsonl";

/// A question/SQL pair with the database it is about.
pub type Pair = (SetItem, PathBuf);

/// The pairs of a JSONL file, each with its database: its own `db` field,
/// else `default_db`.
pub fn pairs_with_databases(file: &Path, default_db: Option<&Path>) -> Result<Vec<Pair>> {
    let items = load_set(file)?;
    if items.is_empty() {
        return Err(Error::invalid(
            "training pairs",
            format!("{}: no training pairs", file.display()),
        ));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let db = match (&item.db, default_db) {
                (Some(p), _) => p.clone(),
                (None, Some(p)) => p.to_path_buf(),
                (None, None) => {
                    return Err(Error::invalid(
                        "db",
                        format!(
                        "{}: pair {} ({:?}) has no \"db\" and no database is given for such pairs",
                        file.display(),
                        i + 1,
                        item.question
                    ),
                    ))
                }
            };
            Ok((item, db))
        })
        .collect()
}

/// Each pair's database schema, read once per database.
pub fn schemas_of(pairs: &[Pair]) -> Result<BTreeMap<PathBuf, Schema>> {
    let mut schemas = BTreeMap::new();
    for (_, db) in pairs {
        if !schemas.contains_key(db) {
            let schema = Database::open(db).and_then(|d| d.schema())?;
            schemas.insert(db.clone(), schema);
        }
    }
    Ok(schemas)
}

/// What one local run is asked to do.
#[derive(Debug, Clone)]
pub struct LocalTune<'a> {
    /// The JSONL file the pairs came from (recorded with its hash).
    pub train_file: &'a Path,
    /// The pairs.
    pub pairs: &'a [Pair],
    /// The prompt the pairs are rendered with (and the adapter answers with).
    pub prompt: &'a PromptSpec,
    /// How the base model was named (recorded in the adapter's config).
    pub base_model: &'a str,
    /// Pairs longer than this many tokens are skipped.
    pub max_len: usize,
    /// Share of the pairs held out for validation, in `[0, 1)`.
    pub val_fraction: f64,
    /// Hyper-parameters.
    pub options: TuneOptions,
    /// The adapter's directory (its checkpoint lives inside).
    pub out: &'a Path,
    /// Continue the unfinished run whose checkpoint is in `out`.
    pub resume: bool,
}

/// What a finished local run did.
#[derive(Debug, Clone)]
pub struct TuneReport {
    /// Examples trained on.
    pub train: usize,
    /// Examples held out for validation.
    pub validation: usize,
    /// Pairs skipped for being longer than the limit.
    pub skipped: usize,
    /// Losses per epoch, steps, tokens and seconds.
    pub state: TrainState,
    /// Peak resident memory of the process, in MB (where known).
    pub peak_rss_mb: Option<f64>,
    /// Where the record went.
    pub record: PathBuf,
}

impl LocalTune<'_> {
    /// Checks what can be checked before the model loads: the split, the
    /// warm-up share, and that an unfinished run is not overwritten.
    pub fn validate(&self) -> Result<()> {
        if !(0.0..1.0).contains(&self.val_fraction) {
            return Err(Error::invalid("validation fraction", "must be in [0, 1)"));
        }
        if !(0.0..=1.0).contains(&self.options.warmup_ratio) {
            return Err(Error::invalid("warm-up share", "must be in [0, 1]"));
        }
        let checkpoint = checkpoint_dir(self.out);
        if !self.resume && checkpoint.exists() {
            return Err(Error::invalid(
                "resume",
                format!(
                    "{} holds an unfinished run: resume it, or remove it",
                    checkpoint.display()
                ),
            ));
        }
        Ok(())
    }

    /// Runs the job on `engine` (made dense for training): renders the
    /// pairs, splits them, trains, writes the adapter and `training.json`,
    /// and removes the checkpoint. `on_progress` sees every example; when
    /// it returns false the run stops with a checkpoint to resume from.
    pub fn run(
        &self,
        engine: &mut Engine,
        on_progress: &mut dyn FnMut(Progress) -> bool,
    ) -> Result<TuneReport> {
        self.validate()?;
        let started = Instant::now();
        let schemas = schemas_of(self.pairs)?;
        let mut examples = Vec::new();
        let mut skipped = 0usize;
        for (i, (item, db)) in self.pairs.iter().enumerate() {
            let ex = example(engine, self.prompt, &schemas[db], &item.question, &item.sql)
                .map_err(|e| {
                    Error::invalid(
                        "training pairs",
                        format!("{}: pair {}: {e}", self.train_file.display(), i + 1),
                    )
                })?;
            if ex.ids.len() > self.max_len {
                skipped += 1;
                continue;
            }
            examples.push(ex);
        }
        if examples.is_empty() {
            return Err(Error::invalid(
                "maximum length",
                format!(
                    "every pair is longer than {} tokens; allow longer pairs",
                    self.max_len
                ),
            ));
        }
        let (train_set, val_set) = split(examples, self.val_fraction, self.options.seed);

        engine.model.make_dense()?;
        let outcome = train(
            &mut engine.model,
            &train_set,
            &val_set,
            &self.options,
            self.out,
            self.resume,
            on_progress,
        )?;
        if !outcome.finished {
            return Err(Error::Cancelled);
        }
        Adapter::save(
            self.out,
            &peft_config(&self.options, Some(self.base_model)),
            &outcome.deltas,
        )?;
        // The adapter carries the prompt it was trained with, and its pairs.
        self.prompt.save_to(&self.out.join(CARRIED_PROMPT_DIR))?;
        let pairs_path = self.out.join(TRAINING_PAIRS_FILE);
        let text: String = self
            .pairs
            .iter()
            .map(|(item, _)| {
                format!(
                    "{}\n",
                    serde_json::json!({"question": item.question, "sql": item.sql})
                )
            })
            .collect();
        std::fs::write(&pairs_path, text).map_err(|e| Error::io(&pairs_path, e))?;
        let state = outcome.state;
        let peak = peak_rss_mb();
        let record = serde_json::json!({
            "tool_version": env!("CARGO_PKG_VERSION"),
            "base_model": self.base_model,
            "model_fingerprint": model_fingerprint(&engine.info.path)?,
            "device": format!("{:?}", engine.model.device()),
            "train_file": self.train_file.display().to_string(),
            "data_sha256": file_sha256(self.train_file)?,
            "prompt": self.prompt.name(),
            "prompt_hash": self.prompt.content_hash(),
            "prompt_dir": CARRIED_PROMPT_DIR,
            "training_pairs": TRAINING_PAIRS_FILE,
            "schema_budget": self.prompt.schema_budget(),
            "pairs": {
                "total": self.pairs.len(),
                "train": train_set.len(),
                "validation": val_set.len(),
                "skipped_longer_than_max_len": skipped,
            },
            "max_len": self.max_len,
            "hyper_parameters": self.options,
            "epochs": state.epochs,
            "optimizer_steps": state.steps,
            "tokens": state.tokens,
            "train_seconds": state.seconds,
            "tokens_per_s": state.tokens as f64 / state.seconds.max(1e-9),
            "wall_seconds_this_process": started.elapsed().as_secs_f64(),
            "peak_rss_mb": peak,
        });
        let path = self.out.join("training.json");
        write_json(&path, &record)?;
        let checkpoint = checkpoint_dir(self.out);
        std::fs::remove_dir_all(&checkpoint).map_err(|e| Error::io(&checkpoint, e))?;
        Ok(TuneReport {
            train: train_set.len(),
            validation: val_set.len(),
            skipped,
            state,
            peak_rss_mb: peak,
            record: path,
        })
    }
}

/// A seeded split: `fraction` of the examples (at least one when there
/// are two or more and the fraction is positive) for validation.
pub fn split(
    mut all: Vec<TrainExample>,
    fraction: f64,
    seed: u64,
) -> (Vec<TrainExample>, Vec<TrainExample>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    all.shuffle(&mut rng);
    let mut n_val = (all.len() as f64 * fraction).round() as usize;
    if fraction > 0.0 && all.len() >= 2 {
        n_val = n_val.max(1);
    }
    let n_val = n_val.min(all.len().saturating_sub(1));
    let train = all.split_off(n_val);
    (train, all)
}

pub use crate::machine::peak_rss_mb;

/// Writes `value` as pretty JSON, creating the directory.
pub(crate) fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let text =
        serde_json::to_string_pretty(value).map_err(|e| Error::invalid("record", e.to_string()))?;
    std::fs::write(path, text).map_err(|e| Error::io(path, e))
}
