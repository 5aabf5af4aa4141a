//! Integration tests: the use case on one shared engine. Requests on
//! several threads, databases and adapters; the reflection retry; a
//! cancelled generation; the prompt cache across interleaved databases.

use std::sync::Arc;

use sqlagent::agent::{
    answer, AskOptions, Conversation, DatabaseHandle, Draft, Engine, Execution, Listener,
    SqlWriter, Timings,
};
use sqlagent::chat::PromptSpec;
use sqlagent::generate::{CancelFlag, StopReason, PREFILL_CHUNK};
use sqlagent::grammar::GrammarOptions;
use sqlagent::sql::build_demo_db;
use sqlagent::Error;

use crate::common;

#[test]
fn the_engine_and_a_database_handle_can_be_shared_between_threads() {
    fn shared<T: Send + Sync>() {}
    shared::<Engine>();
    shared::<DatabaseHandle>();
    shared::<Arc<Engine>>();
}

fn engine() -> Option<Arc<Engine>> {
    common::smollm2_engine().map(Arc::new)
}

fn options(max_tokens: usize) -> AskOptions {
    let mut o = AskOptions::new(PromptSpec::builtin_default().unwrap());
    o.sampling.max_tokens = max_tokens;
    o
}

/// A second database with other tables than the demo one.
fn shop_db(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("shop.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT, price REAL);
         INSERT INTO products VALUES (1, 'lamp', 20.5), (2, 'desk', 120.0), (3, 'chair', 45.0);",
    )
    .unwrap();
    path
}

#[test]
fn concurrent_requests_on_two_databases_answer_as_each_alone() {
    let Some(engine) = engine() else { return };
    let tmp = common::temp_dir();
    let music = music_db(&tmp);
    let shop = shop_db(tmp.path());
    let grammar = GrammarOptions::default();
    let requests = [
        (music.clone(), "How many artists are there?"),
        (shop.clone(), "What is the most expensive product?"),
        (music.clone(), "List the names of all artists."),
        (shop.clone(), "How many products are there?"),
    ];
    let o = options(48);
    // Each request alone, with nothing kept from any other.
    let mut alone = Vec::new();
    for (path, question) in &requests {
        engine.prompt_cache().clear();
        let db = engine.database(path, &grammar).unwrap();
        let a = engine
            .ask(&db, question, &o, &mut Listener::default())
            .unwrap();
        alone.push(a.draft().sql.clone());
    }
    // The same handle comes back for the same database.
    assert!(Arc::ptr_eq(
        &engine.database(&music, &grammar).unwrap(),
        &engine.database(&music, &grammar).unwrap()
    ));
    // All at once, on threads sharing the engine, its databases and
    // grammars. Every prompt is fed whole, as alone: which kept prefix a
    // request would find depends on timing, and a prefix fed in another
    // chunking can flip a near-tie of greedy decoding on some CPUs.
    engine.set_keep_cache(false);
    let together: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = requests
            .iter()
            .map(|(path, question)| {
                let (engine, o, grammar) = (&engine, &o, &grammar);
                s.spawn(move || {
                    let db = engine.database(path, grammar).unwrap();
                    let a = engine
                        .ask(&db, question, o, &mut Listener::default())
                        .unwrap();
                    a.draft().sql.clone()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(together, alone);
}

#[test]
fn interleaved_databases_each_keep_their_prompt_prefix() {
    let Some(engine) = engine() else { return };
    let tmp = common::temp_dir();
    let music = music_db(&tmp);
    let shop = shop_db(tmp.path());
    let grammar = GrammarOptions::default();
    let (m, s) = (
        engine.database(&music, &grammar).unwrap(),
        engine.database(&shop, &grammar).unwrap(),
    );
    let o = options(24);
    let ask = |db: &DatabaseHandle, q: &str| {
        engine
            .ask(db, q, &o, &mut Listener::default())
            .unwrap()
            .draft()
            .timings
            .clone()
    };
    let first = ask(&m, "How many artists are there?");
    assert_eq!(first.reused_prompt_tokens, 0);
    ask(&s, "How many products are there?");
    // Back to the first database: its schema prefix is still kept.
    let again = ask(&m, "How many tracks are there?");
    // Reused in whole prefill chunks: all but the last partial chunk and
    // the question.
    assert!(
        again.reused_prompt_tokens > 0
            && again.reused_prompt_tokens + PREFILL_CHUNK + 32 >= again.prompt_tokens,
        "reused {} of {}",
        again.reused_prompt_tokens,
        again.prompt_tokens
    );
    assert_eq!(engine.prompt_cache().len(), 2, "one entry per database");
}

#[test]
fn a_prefilled_schema_makes_the_first_question_warm_with_the_same_answer() {
    let Some(engine) = engine() else { return };
    let tmp = common::temp_dir();
    let music = music_db(&tmp);
    let db = engine.database(&music, &GrammarOptions::default()).unwrap();
    let o = options(24);
    let question = "Which artists have more than one album?";
    engine.set_keep_cache(false);
    assert_eq!(
        engine.prefill_schema(&db, &o).unwrap(),
        0,
        "nothing is kept"
    );
    let cold = engine
        .ask(&db, question, &o, &mut Listener::default())
        .unwrap();
    engine.set_keep_cache(true);
    let fed = engine.prefill_schema(&db, &o).unwrap();
    assert!(fed > 0);
    assert_eq!(engine.prefill_schema(&db, &o).unwrap(), 0, "already held");
    let warm = engine
        .ask(&db, question, &o, &mut Listener::default())
        .unwrap();
    let (cold, warm) = (cold.draft(), warm.draft());
    assert_eq!(warm.timings.reused_prompt_tokens, fed);
    assert!(
        fed + 32 >= warm.timings.prompt_tokens,
        "only the question is left"
    );
    assert_eq!(warm.sql, cold.sql);
}

#[test]
fn a_cancelled_generation_stops_with_its_error() {
    let Some(engine) = engine() else { return };
    let tmp = common::temp_dir();
    let music = music_db(&tmp);
    let db = engine.database(&music, &GrammarOptions::default()).unwrap();
    let cancel = CancelFlag::new();
    cancel.cancel();
    let mut listener = Listener {
        on_text: None,
        cancel: Some(&cancel),
    };
    let err = engine
        .ask(
            &db,
            "How many artists are there?",
            &options(48),
            &mut listener,
        )
        .unwrap_err();
    assert!(matches!(err, Error::Cancelled), "{err}");
}

#[test]
fn a_conversation_stops_an_answer_on_cancel_and_answers_the_next_as_a_cold_ask_would() {
    let Some(engine) = common::smollm2_engine() else {
        return;
    };
    let tmp = common::temp_dir();
    let music = music_db(&tmp);
    let db = engine.database(&music, &GrammarOptions::default()).unwrap();
    let question = "How many tracks are there?";
    engine.set_keep_cache(false);
    let cold = engine
        .ask(&db, question, &options(48), &mut Listener::default())
        .unwrap();
    engine.set_keep_cache(true);

    let mut conversation = Conversation::new(engine, db, options(48), Default::default()).unwrap();
    let fed = conversation.warm_up().unwrap();
    assert!(fed > 100, "the schema is prefilled: {fed}");
    let tables: Vec<String> = conversation.tables().into_iter().map(|t| t.name).collect();
    assert!(tables.contains(&"artists".to_string()), "{tables:?}");

    // Stopped once the reply starts streaming: nothing is kept as SQL.
    let cancel = CancelFlag::new();
    let mut stop = |_: &str| cancel.cancel();
    let mut listener = Listener {
        on_text: Some(&mut stop),
        cancel: Some(&cancel),
    };
    let stopped = conversation.ask(question, &mut listener);
    assert!(matches!(stopped, Err(Error::Cancelled)), "{stopped:?}");
    assert_eq!(conversation.last_sql(), None);

    // The same question again: the answer a cold `ask` gives, with the
    // schema's tokens kept from the warm-up.
    let warm = conversation
        .ask(question, &mut Listener::default())
        .unwrap();
    assert_eq!(warm.draft().sql, cold.draft().sql);
    assert!(warm.draft().timings.reused_prompt_tokens >= fed);
    assert_eq!(conversation.last_sql(), Some(cold.draft().sql.as_str()));

    // A change is refused before anything is written; the last SQL stays.
    let refused = conversation.ask("Delete every track", &mut Listener::default());
    assert!(
        matches!(refused, Err(Error::ChangeRequested { .. })),
        "{refused:?}"
    );
    assert_eq!(conversation.last_sql(), Some(cold.draft().sql.as_str()));
    let unknown = conversation.use_adapter("nope");
    assert!(
        matches!(unknown, Err(Error::UnknownAdapter { .. })),
        "{unknown:?}"
    );
    assert_eq!(conversation.adapter(), None);
}

/// Writes the queries it is given in turn, and records what it was told.
struct Scripted {
    queries: Vec<&'static str>,
    told: std::sync::Mutex<Vec<Vec<(String, String)>>>,
}

impl SqlWriter for Scripted {
    fn write_sql(
        &self,
        _db: &DatabaseHandle,
        question: &str,
        failures: &[(String, String)],
        _listener: &mut Listener<'_>,
    ) -> sqlagent::Result<Draft> {
        let mut told = self.told.lock().unwrap();
        let sql = self.queries[told.len()].to_string();
        told.push(failures.to_vec());
        Ok(Draft {
            question: question.to_string(),
            reply: sql.clone(),
            sql,
            stop: StopReason::EndToken,
            timings: Timings::default(),
            grammar: Default::default(),
        })
    }
}

/// `answer` with a writer that writes `queries` in turn; the answer and
/// the failures the writer was shown before each attempt.
fn scripted(
    db: &DatabaseHandle,
    queries: Vec<&'static str>,
    retries: usize,
) -> (sqlagent::agent::Answer, Vec<Vec<(String, String)>>) {
    let writer = Scripted {
        queries,
        told: Default::default(),
    };
    let mut o = options(48);
    o.retries = retries;
    let a = answer(
        &writer,
        db,
        "How many artists?",
        &o,
        &mut Listener::default(),
    )
    .unwrap();
    (a, writer.told.into_inner().unwrap())
}

#[test]
fn a_question_that_asks_for_a_change_is_refused_before_any_sql_is_written() {
    let tmp = common::temp_dir();
    let music = music_db(&tmp);
    let db = DatabaseHandle::without_grammar(&music).unwrap();
    let writer = Scripted {
        queries: vec!["SELECT COUNT(*) FROM artists"],
        told: Default::default(),
    };
    let err = answer(
        &writer,
        &db,
        "Please remove every artist without albums",
        &options(48),
        &mut Listener::default(),
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::ChangeRequested { verb } if verb == "remove"),
        "{err}"
    );
    assert_eq!(err.kind(), "change_requested");
    assert!(writer.told.lock().unwrap().is_empty(), "no SQL was written");
}

#[test]
fn a_failed_query_is_shown_to_the_writer_with_sqlite_s_error_and_retried() {
    let tmp = common::temp_dir();
    let music = music_db(&tmp);
    let db = DatabaseHandle::without_grammar(&music).unwrap();
    let (a, told) = scripted(
        &db,
        vec!["SELECT nme FROM artists", "SELECT COUNT(*) FROM artists"],
        2,
    );
    assert_eq!(a.attempts.len(), 2, "stops at the first that runs");
    assert!(matches!(a.attempts[0].execution, Execution::Failed(_)));
    assert_eq!(told[0], vec![]);
    assert_eq!(told[1][0].0, "SELECT nme FROM artists");
    assert!(
        told[1][0].1.contains("no such column: nme"),
        "{:?}",
        told[1]
    );
    assert_eq!(a.rows().unwrap().rows.len(), 1);

    // Without retries the failure is the answer.
    let (a, _) = scripted(&db, vec!["SELECT nme FROM artists"], 0);
    assert_eq!(a.attempts.len(), 1);
    let err = a.into_result().unwrap_err();
    assert!(err.to_string().contains("no such column: nme"), "{err}");

    // An empty reply is no query, not an empty statement.
    let (a, _) = scripted(&db, vec![""], 0);
    assert!(
        matches!(a.error(), Some(Error::NoQuery { .. })),
        "{:?}",
        a.error()
    );
}

#[test]
fn a_schema_budget_focuses_the_prompt_on_the_question_s_tables() {
    let Some(engine) = engine() else { return };
    let tmp = common::temp_dir();
    let music = music_db(&tmp);
    let db = engine.database(&music, &GrammarOptions::default()).unwrap();
    let question = "How many streams did each track get?";
    let prompt = PromptSpec::load("default").unwrap();
    let whole = sqlagent::agent::prompt_ids(&engine, &prompt, db.schema(), question, &[]).unwrap();
    let text = |ids: &[u32]| engine.tokenizer.decode(ids, false).unwrap();
    assert!(text(&whole).contains("CREATE TABLE artists"));
    // A budget the whole prompt fits changes nothing.
    let roomy = prompt.clone().with_schema_budget(Some(whole.len()));
    assert_eq!(
        sqlagent::agent::prompt_ids(&engine, &roomy, db.schema(), question, &[]).unwrap(),
        whole
    );
    let tight = prompt.with_schema_budget(Some(whole.len() - 1));
    let focused = sqlagent::agent::prompt_ids(&engine, &tight, db.schema(), question, &[]).unwrap();
    assert!(focused.len() < whole.len());
    let shown = text(&focused);
    assert!(shown.contains("CREATE TABLE streams") && shown.contains("CREATE TABLE tracks"));
    assert!(!shown.contains("CREATE TABLE artists"), "{shown}");
}

/// The demo database, built in `tmp`.
fn music_db(tmp: &tempfile::TempDir) -> std::path::PathBuf {
    let music = tmp.path().join("music.db");
    build_demo_db(&music).unwrap();
    music
}
