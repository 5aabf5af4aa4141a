//! One command from a database to a tuned adapter and a report: template
//! pairs synthesized and filtered ([`crate::synth`]), a held-out split by
//! SQL shape ([`split`]), the base model evaluated, LoRA tuning
//! ([`super::LocalTune`]), the adapter evaluated, and the comparison
//! ([`report`]). Every phase leaves its result in the output directory, so
//! a stopped run resumes where it was.
//!
//! Layout of the output directory `DIR`:
//! - the adapter as `tune` writes it (`adapter_config.json`,
//!   `adapter_model.safetensors`, `training.json`, `prompt/`), so
//!   `--adapter DIR` loads it;
//! - `report.md`, `report.json`: base vs adapter on every set;
//! - `adapt/`: `plan.json` (what was asked, checked on resume),
//!   `pairs.jsonl`, `train.jsonl`, `heldout.jsonl`, and one evaluation run
//!   directory per set and model under `adapt/eval/`.

pub mod report;
pub mod split;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use rand::SeedableRng;

use super::job::{pairs_with_databases, write_json, LocalTune};
use super::train::{checkpoint_dir, TuneOptions};
use crate::agent::{AskOptions, DatabaseHandle, Engine, LocalWriter, ModelOptions};
use crate::chat::PromptSpec;
use crate::error::{Error, Result};
use crate::eval::{
    file_sha256, load_set, model_fingerprint, run_plan, EvalConfig, EvalPlan, Report, RunDir,
    SetItem,
};
use crate::grammar::GrammarOptions;
use crate::sql::Database;
use crate::synth::{filter_for, template_pairs, SynthPair};
pub use report::{AdaptReport, SetResult};
pub use split::split_by_shape;

/// The name the adapter is attached under while it is evaluated.
const ADAPTER_NAME: &str = "adapted";

/// The phases of a run, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Template pairs, filtered.
    Synth,
    /// The held-out split.
    Split,
    /// The base model on every set.
    BaseEval,
    /// LoRA tuning.
    Tune,
    /// The adapter on every set.
    AdapterEval,
    /// The comparison written.
    Report,
}

impl Phase {
    /// Every phase, in order.
    pub const ALL: [Phase; 6] = [
        Phase::Synth,
        Phase::Split,
        Phase::BaseEval,
        Phase::Tune,
        Phase::AdapterEval,
        Phase::Report,
    ];

    /// A short name for progress lines.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Synth => "synthesize",
            Phase::Split => "split",
            Phase::BaseEval => "evaluate base",
            Phase::Tune => "tune",
            Phase::AdapterEval => "evaluate adapter",
            Phase::Report => "report",
        }
    }

    /// 1-based position.
    pub fn number(self) -> usize {
        Phase::ALL.iter().position(|p| *p == self).unwrap_or(0) + 1
    }
}

/// Where a run is, reported as it goes.
#[derive(Debug, Clone)]
pub struct AdaptProgress {
    /// The phase running.
    pub phase: Phase,
    /// Units of the phase done (questions, training examples).
    pub done: usize,
    /// Units of the phase in all.
    pub total: usize,
    /// What the phase is at, in a few words.
    pub detail: String,
    /// Seconds left for the whole run, once they can be estimated.
    pub eta_s: Option<f64>,
}

/// What one run is asked to do.
#[derive(Debug, Clone)]
pub struct AdaptPlan {
    /// The database.
    pub db: PathBuf,
    /// The output directory (the adapter, the report, `adapt/`).
    pub out: PathBuf,
    /// How to load the base model.
    pub model: ModelOptions,
    /// How the base model was named (recorded).
    pub model_name: String,
    /// The prompt the adapter is trained with and answers with.
    pub prompt: PromptSpec,
    /// The prompt the base model answers with.
    pub base_prompt: PromptSpec,
    /// Pairs to synthesize (training and held out together).
    pub pairs: usize,
    /// Fewer synthesized pairs than this stop the run before tuning: an
    /// adapter tuned on a few shapes narrows the model (flight_2: 112 pairs,
    /// Spider questions 16/60 right before, 10/60 after). Not part of the
    /// plan a resumed run must agree on.
    pub min_pairs: usize,
    /// At most this many pairs of one SQL shape.
    pub max_per_skeleton: usize,
    /// Held-out pairs wanted (at most a quarter of the pairs).
    pub held_out: usize,
    /// Further question sets to evaluate on (their pairs are kept out of
    /// the synthesized ones).
    pub eval_sets: Vec<PathBuf>,
    /// Hyper-parameters.
    pub options: TuneOptions,
    /// Share of the training pairs for the validation loss.
    pub val_fraction: f64,
    /// Pairs longer than this many tokens are not trained on.
    pub max_len: usize,
    /// Seed of synthesis and the split.
    pub seed: u64,
    /// Continue the run in `out`.
    pub resume: bool,
}

/// The files of a run.
struct Layout {
    out: PathBuf,
    work: PathBuf,
}

impl Layout {
    fn new(out: &Path) -> Self {
        Self {
            out: out.to_path_buf(),
            work: out.join("adapt"),
        }
    }
    fn plan(&self) -> PathBuf {
        self.work.join("plan.json")
    }
    fn pairs(&self) -> PathBuf {
        self.work.join("pairs.jsonl")
    }
    fn train(&self) -> PathBuf {
        self.work.join("train.jsonl")
    }
    fn held_out(&self) -> PathBuf {
        self.work.join("heldout.jsonl")
    }
    fn eval_dir(&self, set: &str, model: &str) -> PathBuf {
        self.work.join("eval").join(format!("{set}-{model}"))
    }
    fn adapter_done(&self) -> bool {
        self.out.join("adapter_model.safetensors").is_file()
            && self.out.join("training.json").is_file()
    }
}

/// A set to evaluate on: its name in the report, its file and items.
struct EvalSet {
    name: String,
    file: PathBuf,
    items: Vec<SetItem>,
}

impl AdaptPlan {
    /// What a resumed run must agree on.
    fn record(&self) -> Result<serde_json::Value> {
        let sets = self
            .eval_sets
            .iter()
            .map(|s| {
                Ok(serde_json::json!({"file": s.display().to_string(), "sha256": file_sha256(s)?}))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(serde_json::json!({
            "db": self.db.display().to_string(),
            "db_sha256": file_sha256(&self.db)?,
            "model": self.model_name,
            "prompt": self.prompt.name(),
            "prompt_hash": self.prompt.content_hash(),
            "base_prompt": self.base_prompt.name(),
            "base_prompt_hash": self.base_prompt.content_hash(),
            "schema_budget": self.prompt.schema_budget(),
            "pairs": self.pairs,
            "max_per_skeleton": self.max_per_skeleton,
            "held_out": self.held_out,
            "eval_sets": sets,
            "hyper_parameters": self.options,
            "val_fraction": self.val_fraction,
            "max_len": self.max_len,
            "seed": self.seed,
        }))
    }

    /// Checks what can be checked before the model loads: the numbers, the
    /// database and sets, and that a run in `out` is resumed, not
    /// overwritten (and resumed with the same plan).
    pub fn validate(&self) -> Result<()> {
        self.checked_record().map(|_| ())
    }

    /// [`AdaptPlan::validate`], returning the plan's record (hashing the
    /// database once).
    fn checked_record(&self) -> Result<serde_json::Value> {
        if self.pairs < 8 {
            return Err(Error::invalid(
                "pairs",
                "at least 8 pairs are needed to train and hold some out",
            ));
        }
        if self.held_out == 0 {
            return Err(Error::invalid("held out", "at least 1 held-out pair"));
        }
        Database::open(&self.db)?;
        for set in &self.eval_sets {
            load_set(set)?;
        }
        let layout = Layout::new(&self.out);
        let plan = layout.plan();
        let record = self.record()?;
        if plan.exists() {
            if !self.resume {
                return Err(Error::invalid(
                    "resume",
                    format!(
                        "{} holds a run already: resume it, or choose another directory",
                        self.out.display()
                    ),
                ));
            }
            let text = std::fs::read_to_string(&plan).map_err(|e| Error::io(&plan, e))?;
            let old: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                Error::invalid("resume", format!("{}: not a run plan: {e}", plan.display()))
            })?;
            for (key, value) in record.as_object().into_iter().flatten() {
                if old.get(key) != Some(value) {
                    return Err(Error::invalid(
                        "resume",
                        format!(
                            "{} was started with {key} = {}, now {value}; start it again in another directory",
                            self.out.display(),
                            old.get(key).cloned().unwrap_or_default()
                        ),
                    ));
                }
            }
        } else if self.out.join("adapter_model.safetensors").exists() {
            return Err(Error::invalid(
                "output directory",
                format!("{} holds an adapter already", self.out.display()),
            ));
        }
        Ok(record)
    }

    /// Runs every phase not done yet and writes the report. `on_progress`
    /// hears where the run is; when it returns false during tuning, the
    /// run stops with a checkpoint to resume from ([`Error::Cancelled`]).
    pub fn run(&self, on_progress: &mut dyn FnMut(&AdaptProgress) -> bool) -> Result<AdaptReport> {
        let record = self.checked_record()?;
        let layout = Layout::new(&self.out);
        write_json(&layout.plan(), &record)?;
        let mut clock = Clock::default();

        clock.start();
        on_progress(&clock.progress(Phase::Synth, 0, 1, "template pairs"));
        let pairs = self.synthesized(&layout)?;
        clock.finish(Phase::Synth);

        clock.start();
        let (train, held_out) = self.split(&layout, pairs)?;
        clock.finish(Phase::Split);
        let mut sets = vec![EvalSet {
            name: "held-out".into(),
            file: layout.held_out(),
            items: load_set(&layout.held_out())?,
        }];
        for file in &self.eval_sets {
            sets.push(EvalSet {
                name: set_name(file),
                file: file.clone(),
                items: load_set(file)?,
            });
        }
        let questions: usize = sets.iter().map(|s| s.items.len()).sum();
        clock.questions = questions;
        clock.train_examples = train * self.options.epochs;

        let mut engine = Engine::load(&self.model)?;
        let base_options = AskOptions::new(self.base_prompt.clone());
        clock.start();
        let base = self.evaluate(
            &engine,
            &base_options,
            &sets,
            Phase::BaseEval,
            &layout,
            questions,
            &mut clock,
            on_progress,
        )?;
        clock.finish(Phase::BaseEval);

        clock.start();
        if !layout.adapter_done() {
            self.tune(&mut engine, &layout, &mut clock, on_progress)?;
        }
        clock.finish(Phase::Tune);
        drop(engine);

        // Evaluated as it is used: the base weights as loaded, the adapter
        // attached.
        let mut engine = Engine::load(&self.model)?;
        engine.attach_adapter(ADAPTER_NAME, &self.out)?;
        let adapter_options = AskOptions {
            adapter: Some(ADAPTER_NAME.to_string()),
            ..AskOptions::new(self.prompt.clone())
        };
        clock.start();
        let tuned = self.evaluate(
            &engine,
            &adapter_options,
            &sets,
            Phase::AdapterEval,
            &layout,
            questions,
            &mut clock,
            on_progress,
        )?;
        clock.finish(Phase::AdapterEval);

        clock.start();
        on_progress(&clock.progress(Phase::Report, 0, 1, "writing"));
        let training: serde_json::Value = {
            let path = self.out.join("training.json");
            let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
            serde_json::from_str(&text).map_err(|e| {
                Error::invalid("training record", format!("{}: {e}", path.display()))
            })?
        };
        clock.finish(Phase::Report);
        let report = AdaptReport::new(
            self,
            (train, held_out),
            &sets.iter().map(|s| s.name.clone()).collect::<Vec<_>>(),
            &base,
            &tuned,
            training,
            &clock.seconds,
        );
        report.write(&self.out)?;
        Ok(report)
    }

    /// The synthesized pairs: read back when a resumed run has them.
    fn synthesized(&self, layout: &Layout) -> Result<Vec<SynthPair>> {
        let path = layout.pairs();
        if path.is_file() {
            let pairs: Vec<SynthPair> = load_set(&path)?
                .into_iter()
                .map(|i| SynthPair {
                    question: i.question,
                    sql: i.sql,
                    source: i.source.unwrap_or_default(),
                })
                .collect();
            self.check_enough(pairs.len())?;
            return Ok(pairs);
        }
        let db = Database::open(&self.db)?;
        let schema = db.schema()?;
        let mut eval = Vec::new();
        for set in &self.eval_sets {
            eval.extend(load_set(set)?.into_iter().map(|i| (i.question, i.sql)));
        }
        let mut filter = filter_for(&schema, &eval, self.max_per_skeleton);
        let mut rng = rand::rngs::StdRng::seed_from_u64(self.seed);
        let (pairs, _) = template_pairs(&db, &mut filter, self.pairs, &mut rng)?;
        // Written before the check, so that few pairs can be read.
        write_pairs(&path, &pairs)?;
        self.check_enough(pairs.len())?;
        Ok(pairs)
    }

    /// Refuses to go on with fewer pairs than [`AdaptPlan::min_pairs`] (and
    /// never with fewer than 8).
    fn check_enough(&self, pairs: usize) -> Result<()> {
        let least = self.min_pairs.max(8);
        if pairs >= least {
            return Ok(());
        }
        let why = if pairs < 8 {
            "too few to tune on".to_string()
        } else {
            format!(
                "fewer than the {least} asked for; an adapter tuned on so few SQL shapes \
                 answers other questions worse than the base model"
            )
        };
        Err(Error::invalid(
            "min pairs",
            format!(
                "{}: the templates gave only {pairs} pairs that run and return rows ({}); {why}",
                self.db.display(),
                Layout::new(&self.out).pairs().display()
            ),
        ))
    }

    /// Writes (or, resumed, reads) the training and held-out files; returns
    /// their sizes.
    fn split(&self, layout: &Layout, pairs: Vec<SynthPair>) -> Result<(usize, usize)> {
        let (train_path, test_path) = (layout.train(), layout.held_out());
        if !(train_path.is_file() && test_path.is_file()) {
            let (train, test) = split_by_shape(pairs, self.held_out, self.seed);
            write_pairs(&test_path, &test)?;
            write_pairs(&train_path, &train)?;
        }
        Ok((load_set(&train_path)?.len(), load_set(&test_path)?.len()))
    }

    fn tune(
        &self,
        engine: &mut Engine,
        layout: &Layout,
        clock: &mut Clock,
        on_progress: &mut dyn FnMut(&AdaptProgress) -> bool,
    ) -> Result<()> {
        let train_file = layout.train();
        let pairs = pairs_with_databases(&train_file, Some(&self.db))?;
        let job = LocalTune {
            train_file: &train_file,
            pairs: &pairs,
            prompt: &self.prompt,
            base_model: &self.model_name,
            max_len: self.max_len,
            val_fraction: self.val_fraction,
            options: self.options.clone(),
            out: &self.out,
            resume: checkpoint_dir(&self.out).join("state.json").is_file(),
        };
        job.run(engine, &mut |p| {
            clock.train_examples = p.total;
            clock.note_training(p.done);
            on_progress(&clock.progress(
                Phase::Tune,
                p.done,
                p.total,
                &format!(
                    "epoch {} loss {:.3} {:.0} tok/s",
                    p.epoch, p.loss, p.tokens_per_s
                ),
            ))
        })?;
        Ok(())
    }

    /// Every set evaluated with `options` on `engine`, into
    /// `adapt/eval/SET-which` (resumed where a run is there).
    #[allow(clippy::too_many_arguments)]
    fn evaluate(
        &self,
        engine: &Engine,
        options: &AskOptions,
        sets: &[EvalSet],
        phase: Phase,
        layout: &Layout,
        questions: usize,
        clock: &mut Clock,
        on_progress: &mut dyn FnMut(&AdaptProgress) -> bool,
    ) -> Result<Vec<Report>> {
        let which = if phase == Phase::BaseEval {
            "base"
        } else {
            "adapter"
        };
        let grammar = GrammarOptions::default();
        let writer = LocalWriter { engine, options };
        let open_db =
            |path: &Path| -> Result<Arc<DatabaseHandle>> { engine.database(path, &grammar) };
        let adapters: Vec<String> = engine
            .adapters()
            .iter()
            .map(|a| format!("{} [answers]", a.describe()))
            .collect();
        let mut reports = Vec::new();
        let mut before = 0usize;
        for set in sets {
            let dir = layout.eval_dir(&set.name, which);
            let config = EvalConfig {
                tool_version: env!("CARGO_PKG_VERSION").to_string(),
                model: self.model_name.clone(),
                model_fingerprint: model_fingerprint(&engine.info.path)?,
                prompt: options.prompt.name().to_string(),
                prompt_hash: options.prompt.content_hash(),
                grammar: grammar.mode.to_string(),
                sampling: serde_json::to_value(options.sampling)
                    .map_err(|e| Error::invalid("sampling", e.to_string()))?,
                set: set.file.display().to_string(),
                set_hash: file_sha256(&set.file)?,
                db: Some(self.db.display().to_string()),
                db_dir: None,
                limit: None,
                sample_seed: None,
                retries: options.retries,
                adapters: adapters.clone(),
                schema_budget: options.prompt.schema_budget(),
                retrieval: None,
            };
            let resume = dir.join("config.json").is_file();
            let (done, mut sink) = RunDir::open(&dir, &config, resume)?;
            let plan = EvalPlan {
                config,
                items: &set.items,
                chosen: set
                    .items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| (i, item.db.clone().unwrap_or_else(|| self.db.clone())))
                    .collect(),
                options: options.clone(),
            };
            let started = done.len();
            clock.note_questions(phase, before + started);
            let report = run_plan(&writer, &open_db, &plan, done, Some(&mut sink), &mut |r| {
                let n = before + r.items.len() + r.broken.len();
                clock.note_questions(phase, n);
                on_progress(&clock.progress(
                    phase,
                    n,
                    questions,
                    &format!(
                        "{}: {:.0}% correct",
                        set.name, r.summary.execution_accuracy_pct
                    ),
                ));
            })?;
            sink.write_reports(&report)?;
            before += set.items.len();
            reports.push(report);
        }
        Ok(reports)
    }
}

/// A set's name in the report: its file name without `.jsonl`.
fn set_name(file: &Path) -> String {
    file.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "set".into())
}

/// Writes pairs as JSONL, whole or not at all (a stop mid-write leaves no
/// half file for a resume to trust).
fn write_pairs(path: &Path, pairs: &[SynthPair]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let text: String = pairs.iter().map(|p| format!("{}\n", p.to_json())).collect();
    let partial = path.with_extension("jsonl.partial");
    std::fs::write(&partial, text).map_err(|e| Error::io(&partial, e))?;
    std::fs::rename(&partial, path).map_err(|e| Error::io(path, e))
}

/// Time spent and rates seen, for the estimate of time left.
#[derive(Default)]
struct Clock {
    phase_started: Option<Instant>,
    /// Seconds each phase took in this process.
    seconds: Vec<(Phase, f64)>,
    /// Seconds a question took in the evaluation phases so far.
    question_s: Option<f64>,
    /// Seconds a training example took so far.
    example_s: Option<f64>,
    /// Questions of the current evaluation phase at its start, and when.
    eval_mark: Option<(Phase, usize, Instant)>,
    /// Examples done when tuning started in this process, and when.
    tune_mark: Option<(usize, Instant)>,
    /// Questions in each evaluation phase (every set).
    questions: usize,
    /// Questions done in the current evaluation phase.
    questions_done: usize,
    /// Training examples in all, and done.
    train_examples: usize,
    trained: usize,
}

impl Clock {
    fn start(&mut self) {
        self.phase_started = Some(Instant::now());
    }

    fn finish(&mut self, phase: Phase) {
        let took = self
            .phase_started
            .map_or(0.0, |t| t.elapsed().as_secs_f64());
        self.seconds.push((phase, took));
        if phase == Phase::Tune {
            self.trained = self.train_examples;
        }
        self.eval_mark = None;
    }

    fn note_questions(&mut self, phase: Phase, done: usize) {
        match self.eval_mark {
            Some((p, first, at)) if p == phase => {
                if done > first {
                    self.question_s = Some(at.elapsed().as_secs_f64() / (done - first) as f64);
                }
            }
            _ => self.eval_mark = Some((phase, done, Instant::now())),
        }
        self.questions_done = done;
    }

    fn note_training(&mut self, done: usize) {
        self.trained = done;
        match self.tune_mark {
            Some((first, at)) if done > first => {
                self.example_s = Some(at.elapsed().as_secs_f64() / (done - first) as f64);
            }
            Some(_) => {}
            None => self.tune_mark = Some((done, Instant::now())),
        }
    }

    /// Seconds left: what remains of each phase at the rates seen (unknown
    /// until both a question and a training example have been timed, or
    /// their phases are over).
    fn eta(&self, phase: Phase) -> Option<f64> {
        let q = self.question_s;
        let left_q = |n: usize| q.map(|q| q * n as f64);
        let tune_left = self.train_examples.saturating_sub(self.trained);
        let tune = if tune_left == 0 {
            Some(0.0)
        } else {
            self.example_s.map(|s| s * tune_left as f64)
        };
        let here = self.questions.saturating_sub(self.questions_done);
        let parts = match phase {
            Phase::Synth | Phase::Split => vec![None],
            Phase::BaseEval => vec![left_q(here), tune, left_q(self.questions)],
            Phase::Tune => vec![tune, left_q(self.questions)],
            Phase::AdapterEval => vec![left_q(here)],
            Phase::Report => vec![Some(0.0)],
        };
        parts.into_iter().sum()
    }

    fn progress(&self, phase: Phase, done: usize, total: usize, detail: &str) -> AdaptProgress {
        AdaptProgress {
            phase,
            done,
            total,
            detail: detail.to_string(),
            eta_s: self.eta(phase),
        }
    }
}
