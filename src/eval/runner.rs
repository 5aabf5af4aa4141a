//! A whole evaluation run: every chosen item answered and graded in turn,
//! each outcome appended to the run directory's `items.jsonl` as soon as it
//! is done (so an interrupted run loses nothing), a resumed run skipping
//! what is already there, and the reports written at the end.

use std::collections::{BTreeMap, HashSet};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::report::{EvalConfig, Report};
use super::run::{evaluate_item, BrokenItem, ItemContext, Outcome};
use super::set::SetItem;
use crate::agent::{AskOptions, DatabaseHandle, SqlWriter};
use crate::error::{Error, Result};

/// A run directory: `config.json`, `items.jsonl` (one outcome a line,
/// appended as items finish), and the reports.
pub struct RunDir {
    dir: PathBuf,
    items: std::fs::File,
}

impl RunDir {
    /// Prepares `dir` for a run of `config`: writes `config.json`, or with
    /// `resume` checks that the run there had the same configuration and
    /// reads the outcomes already in `items.jsonl` (a last line cut short
    /// by a crash is dropped; that item runs again). Returns those outcomes
    /// and the directory, open for appending.
    pub fn open(dir: &Path, config: &EvalConfig, resume: bool) -> Result<(Vec<Outcome>, Self)> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let config_path = dir.join("config.json");
        let items_path = dir.join("items.jsonl");
        let mut done = Vec::new();
        if resume {
            let text = std::fs::read_to_string(&config_path).map_err(io(&config_path))?;
            let old: EvalConfig = serde_json::from_str(&text).map_err(|e| {
                Error::invalid(
                    "resume",
                    format!("{} is not a run config: {e}", config_path.display()),
                )
            })?;
            let (old_v, new_v) = (serde_json::to_value(&old), serde_json::to_value(config));
            if let (Ok(old_v), Ok(new_v)) = (old_v, new_v) {
                if let (Some(o), Some(n)) = (old_v.as_object(), new_v.as_object()) {
                    for (key, value) in n {
                        if o.get(key) != Some(value) {
                            return Err(Error::invalid(
                                "resume",
                                format!(
                                    "{} was run with {key} = {}, now {value}; start another run directory",
                                    dir.display(),
                                    o.get(key).cloned().unwrap_or_default()
                                ),
                            ));
                        }
                    }
                }
            }
            if items_path.exists() {
                done = read_outcomes(&items_path)?;
            }
        } else {
            if items_path.exists() {
                return Err(Error::invalid(
                    "run directory",
                    format!(
                        "{} already holds a run; resume it, or use another directory",
                        dir.display()
                    ),
                ));
            }
            let text = serde_json::to_string_pretty(config)
                .map_err(|e| Error::invalid("config", e.to_string()))?;
            write(&config_path, &text)?;
        }
        let items = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&items_path)
            .map_err(io(&items_path))?;
        Ok((
            done,
            Self {
                dir: dir.to_path_buf(),
                items,
            },
        ))
    }

    /// Appends one outcome to `items.jsonl`, flushed.
    pub fn append(&mut self, outcome: &Outcome) -> Result<()> {
        let line =
            serde_json::to_string(outcome).map_err(|e| Error::invalid("outcome", e.to_string()))?;
        writeln!(self.items, "{line}")
            .and_then(|()| self.items.flush())
            .map_err(|source| Error::io(self.dir.join("items.jsonl"), source))
    }

    /// Writes `report.json`, `report.md` and `report.svg`.
    pub fn write_reports(&self, report: &Report) -> Result<()> {
        let json = serde_json::to_string_pretty(report)
            .map_err(|e| Error::invalid("report", e.to_string()))?;
        write(&self.dir.join("report.json"), &json)?;
        write(&self.dir.join("report.md"), &report.markdown())?;
        write(
            &self.dir.join("report.svg"),
            &super::chart::summary_svg(report)?,
        )
    }
}

/// Reads the complete lines of `items.jsonl`, cutting off a last line
/// without its newline (complete lines are never rewritten).
fn read_outcomes(path: &Path) -> Result<Vec<Outcome>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let complete = text.rfind('\n').map_or(0, |p| p + 1);
    if complete < text.len() {
        OpenOptions::new()
            .write(true)
            .open(path)
            .and_then(|f| f.set_len(complete as u64))
            .map_err(|e| Error::io(path, e))?;
    }
    let mut done = Vec::new();
    for (n, line) in text[..complete].lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let outcome = serde_json::from_str(line).map_err(|e| Error::Set {
            path: path.to_path_buf(),
            line: n as u64 + 1,
            message: e.to_string(),
        })?;
        done.push(outcome);
    }
    Ok(done)
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| Error::io(path, e))
}

/// What one run evaluates.
pub struct EvalPlan<'a> {
    /// The run's configuration (for the report).
    pub config: EvalConfig,
    /// The whole set.
    pub items: &'a [SetItem],
    /// The chosen items (indices into `items`) with the database each
    /// runs on.
    pub chosen: Vec<(usize, PathBuf)>,
    /// Limits and retries (the writer decides the rest).
    pub options: AskOptions,
}

/// Runs `plan` with `writer`: items already in `done` are kept, every
/// other one is answered, graded, appended to `sink` and reported to
/// `on_item` with the report so far. `open_db` opens an item's database;
/// a database that cannot be opened (missing, no tables) makes its items
/// broken rather than the run fail.
pub fn run_plan(
    writer: &dyn SqlWriter,
    open_db: &dyn Fn(&Path) -> Result<Arc<DatabaseHandle>>,
    plan: &EvalPlan<'_>,
    mut done: Vec<Outcome>,
    mut sink: Option<&mut RunDir>,
    on_item: &mut dyn FnMut(&Report),
) -> Result<Report> {
    let finished: HashSet<usize> = done.iter().map(Outcome::index).collect();
    let mut dbs: BTreeMap<PathBuf, std::result::Result<Arc<DatabaseHandle>, String>> =
        BTreeMap::new();
    for (i, path) in plan.chosen.iter().filter(|(i, _)| !finished.contains(i)) {
        let item = &plan.items[*i];
        if !dbs.contains_key(path) {
            let opened = match open_db(path) {
                Ok(db) => {
                    // Warm before the first question is timed; a prompt
                    // that cannot be fed fails that question instead.
                    if let Err(e) = writer.prepare(&db) {
                        tracing::warn!(db = %path.display(), error = %e, "could not prefill the schema");
                    }
                    Ok(db)
                }
                Err(e @ (Error::Database { .. } | Error::Query { .. })) => Err(e.to_string()),
                Err(e) => return Err(e),
            };
            dbs.insert(path.clone(), opened);
        }
        let outcome = match &dbs[path] {
            Err(message) => Outcome::Broken(BrokenItem {
                index: *i,
                question: item.question.clone(),
                gold_sql: item.sql.clone(),
                error: message.clone(),
            }),
            Ok(db) => {
                let cx = ItemContext {
                    writer,
                    db,
                    options: &plan.options,
                };
                evaluate_item(&cx, *i, item)?
            }
        };
        if let Some(sink) = sink.as_deref_mut() {
            sink.append(&outcome)?;
        }
        done.push(outcome);
        on_item(&Report::new(plan.config.clone(), &done));
    }
    Ok(Report::new(plan.config.clone(), &done))
}
