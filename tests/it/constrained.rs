//! Integration tests: grammar-constrained decoding through the real decode
//! loop. A random-weight model writes whatever its logits say; the grammar
//! and the SQLite check must still turn that into a query that prepares.

use std::sync::Arc;

use sqlagent::agent::{AskOptions, DatabaseHandle, Engine, Listener, ModelSource};
use sqlagent::chat::PromptSpec;
use sqlagent::generate::SamplingParams;
use sqlagent::grammar::{GrammarMode, GrammarOptions};
use sqlagent::sql::{build_demo_db, Database};

use crate::common;
use crate::tiny::tiny_llama3_dir;

fn test_set() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(common::root().join("test-set.jsonl")).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["question"].as_str().unwrap().to_string(),
                v["sql"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The engine for `source`, the database handle for `db` under `mode`, and
/// greedy options with `max_tokens`.
fn setup(
    source: ModelSource,
    db: &std::path::Path,
    mode: GrammarMode,
    max_tokens: usize,
) -> (Engine, Arc<DatabaseHandle>, AskOptions) {
    let engine = common::load_engine(source);
    let options = GrammarOptions {
        mode,
        ..GrammarOptions::default()
    };
    let handle = engine.database(db, &options).unwrap();
    let ask = AskOptions {
        sampling: SamplingParams {
            max_tokens,
            ..SamplingParams::default()
        },
        execute: false,
        ..AskOptions::new(PromptSpec::builtin_default().unwrap())
    };
    (engine, handle, ask)
}

fn draft(
    (engine, db, options): &(Engine, Arc<DatabaseHandle>, AskOptions),
    question: &str,
) -> sqlagent::agent::Draft {
    engine
        .draft(db, question, &[], options, &mut Listener::default())
        .unwrap()
}

#[test]
fn random_weight_model_writes_preparable_sql_for_every_question() {
    let tmp = common::temp_dir();
    let Some(model_dir) = tiny_llama3_dir(&tmp.path().join("tiny"), 4096) else {
        return;
    };
    let db_path = tmp.path().join("music.db");
    build_demo_db(&db_path).unwrap();
    let db = Database::open(&db_path).unwrap();
    let a = setup(
        ModelSource::HfDir(model_dir),
        &db_path,
        GrammarMode::Schema,
        96,
    );
    let mut failures = Vec::new();
    let mut repairs = 0;
    for (question, _) in test_set() {
        let draft = draft(&a, &question);
        repairs += draft.grammar.repairs;
        if std::env::var("SQLAGENT_DEBUG_CONSTRAINED").is_ok() {
            eprintln!(
                "{question}: {:?} {:?} {:?}",
                draft.reply, draft.stop, draft.grammar
            );
        }
        if draft.sql.is_empty() || db.check(&draft.sql).is_err() {
            failures.push(format!(
                "{question:?} -> {:?} ({:?})",
                draft.sql,
                db.check(&draft.sql).err()
            ));
        }
    }
    eprintln!("random-weight model: {repairs} repairs over the test set");
    assert!(
        failures.is_empty(),
        "{} questions without preparable SQL:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn smollm2_under_the_schema_grammar_writes_sql_that_sqlite_accepts() {
    let Some(gguf) = common::smollm2_gguf() else {
        return;
    };
    let tmp = common::temp_dir();
    let db_path = tmp.path().join("music.db");
    build_demo_db(&db_path).unwrap();
    let db = Database::open(&db_path).unwrap();
    let a = setup(ModelSource::Gguf(gguf), &db_path, GrammarMode::Schema, 128);
    let mut failures = Vec::new();
    // Every fourth question keeps the test under a minute; README shows the
    // command that checks all of them.
    for (question, _) in test_set().into_iter().step_by(4) {
        let draft = draft(&a, &question);
        if draft.sql.is_empty() || db.check(&draft.sql).is_err() {
            failures.push(format!("{question:?} -> {:?}", draft.sql));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
