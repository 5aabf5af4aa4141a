//! Printing answers: a SQL line and a table for people, one JSON object for
//! programs; a spinner on a terminal, nothing when piped.

use std::time::Duration;

use anyhow::Result;
use comfy_table::{presets::UTF8_FULL_CONDENSED, ContentArrangement, Table};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use super::args::Format;
use crate::agent::{AdapterInfo, Answer, Draft, ModelInfo};
use crate::sql::{QueryResult, Value};

/// A spinner on stderr; invisible when stderr is not a terminal.
pub fn spinner(message: &str) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    pb.set_style(
        ProgressStyle::with_template("{spinner} {msg} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    pb.set_message(message.to_string());
    pb.enable_steady_tick(Duration::from_millis(100));
    pb
}

/// A progress bar of `len` steps on stderr (hidden when stderr is not a
/// terminal), with a message and the time left.
pub fn progress(len: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} [{elapsed} < {eta}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// Prints an answer in `format`: its final SQL and rows; in JSON also
/// every attempt and, when it failed, the error (so a program reading
/// stdout learns why).
/// A failure as one JSON object on stdout, for `--format json`:
/// `{"error": {"message", "kind"}}` (`kind` is the library error's, or
/// `"error"`).
pub fn print_error_json(e: &anyhow::Error) -> Result<()> {
    let library = e.chain().find_map(|c| c.downcast_ref::<crate::Error>());
    let kind = if e.is::<super::UsageError>() {
        "usage"
    } else {
        library.map_or("error", crate::Error::kind)
    };
    let mut obj = json!({"error": {"message": format!("{e:#}"), "kind": kind}});
    if let Some(path) = library.and_then(crate::Error::path) {
        obj["error"]["path"] = json!(path.display().to_string());
    }
    outln!("{}", serde_json::to_string(&obj)?);
    Ok(())
}

pub fn print_answer(answer: &Answer, model: &ModelInfo, format: Format) -> Result<()> {
    let draft = answer.draft();
    let error = answer.error().map(|e| e.to_string());
    match format {
        Format::Json => {
            let mut obj = draft_json(draft, model, answer.adapter.as_ref(), answer.rows());
            if answer.attempts.len() > 1 {
                obj["attempts"] = json!(answer
                    .attempts
                    .iter()
                    .map(|a| json!({
                        "sql": a.draft.sql,
                        "error": a.execution_error().map(|e| e.to_string()),
                    }))
                    .collect::<Vec<_>>());
            }
            if let Some(e) = error {
                obj["error"] = json!(e);
            }
            outln!("{}", serde_json::to_string(&obj)?);
            Ok(())
        }
        Format::Text => {
            if answer.rows().is_none() && draft.sql.is_empty() {
                return Ok(());
            }
            print_draft(draft, model, answer.adapter.as_ref(), answer.rows(), format)
        }
    }
}

fn draft_json(
    draft: &Draft,
    model: &ModelInfo,
    adapter: Option<&AdapterInfo>,
    rows: Option<&QueryResult>,
) -> serde_json::Value {
    let mut obj = json!({
        "question": draft.question,
        "sql": draft.sql,
        "reply": draft.reply,
        "stop": draft.stop,
        "model": model,
        "adapter": adapter,
        "timings": draft.timings,
        "grammar": draft.grammar,
    });
    if let Some(r) = rows {
        obj["columns"] = json!(r.columns);
        obj["rows"] = json!(r.rows);
        obj["truncated"] = json!(r.truncated);
    }
    obj
}

/// Prints a draft (and its rows when executed) in `format`.
pub fn print_draft(
    draft: &Draft,
    model: &ModelInfo,
    adapter: Option<&AdapterInfo>,
    rows: Option<&QueryResult>,
    format: Format,
) -> Result<()> {
    match format {
        Format::Json => {
            let obj = draft_json(draft, model, adapter, rows);
            outln!("{}", serde_json::to_string(&obj)?);
        }
        Format::Text => {
            outln!("{};", draft.sql);
            if let Some(r) = rows {
                outln!("{}", render_table(r));
                let n = r.rows.len();
                if r.truncated {
                    outln!("(first {n} rows; raise --max-rows to see more)");
                } else {
                    outln!("({n} row{})", if n == 1 { "" } else { "s" });
                }
            }
        }
    }
    Ok(())
}

/// The rows as a text table.
pub fn render_table(r: &QueryResult) -> String {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(r.columns.clone());
    fit_to_terminal(&mut t);
    for row in &r.rows {
        t.add_row(row.iter().map(cell).collect::<Vec<_>>());
    }
    t.to_string()
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "NULL".to_string(),
        other => other.to_string(),
    }
}

/// The models `sqlagent models` found, as a text table.
pub fn models_table(found: &[crate::model::catalog::LocalModel]) -> String {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header([
            "model (--model)",
            "format",
            "weights",
            "size",
            "found in",
            "note",
        ]);
    for m in found {
        t.add_row([
            m.name.clone(),
            m.format.to_string(),
            m.weights.clone(),
            if m.bytes >= 1_000_000_000 {
                format!("{:.2} GB", m.bytes as f64 / 1e9)
            } else {
                format!("{:.1} MB", m.bytes as f64 / 1e6)
            },
            m.origin.to_string(),
            m.problem.clone().unwrap_or_default(),
        ]);
    }
    fit_to_terminal(&mut t);
    t.to_string()
}

/// Columns follow the terminal's width, unless the terminal reports none
/// (a pseudo-terminal nobody sized), which would squeeze every column to
/// one character.
fn fit_to_terminal(t: &mut Table) {
    if t.width().is_some_and(|w| w < 20) {
        t.set_content_arrangement(ContentArrangement::Disabled);
    }
}

/// What `ask` and `chat` hear of a reply as it streams: when `on` (stderr
/// is a terminal), each piece written there dimmed (plain under
/// `NO_COLOR`, decided once, not per token).
pub fn reply_echo(on: bool) -> impl FnMut(&str) {
    use std::io::Write;
    let dimmed = !no_color();
    let mut stderr = std::io::stderr();
    move |piece: &str| {
        if on {
            let _ = if dimmed {
                write!(stderr, "\x1b[2m{piece}\x1b[0m")
            } else {
                write!(stderr, "{piece}")
            };
            let _ = stderr.flush();
        }
    }
}

/// `text` dimmed for a terminal, plain when `NO_COLOR` is set.
pub fn dim(text: &str) -> String {
    if no_color() {
        text.to_string()
    } else {
        format!("\x1b[2m{text}\x1b[0m")
    }
}

/// Whether `NO_COLOR` asks for no colour (set and not empty).
pub fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}
