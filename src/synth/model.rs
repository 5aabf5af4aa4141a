//! Pairs written by the model itself: it is shown the schema and a few
//! seed questions and asked for a new question (sampled, free text), then
//! it answers that question the way `ask` does, under the grammar. The
//! pairs go through the same filter as the templates'.

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::Rng;

use crate::agent::{AskOptions, DatabaseHandle, Engine, Listener};
use crate::chat::Message;
use crate::error::Result;
use crate::generate::{self, GenerateRequest, SamplingParams};
use crate::sql::Schema;

/// Seed questions shown per request.
pub const SHOTS: usize = 3;

/// Most tokens of a generated question.
pub const QUESTION_TOKENS: usize = 48;

/// Asks the model for one new question about `schema`, shown `SHOTS`
/// questions drawn from `seeds`; `None` when the reply holds no usable
/// question (empty, or not ending like one).
pub fn new_question(
    engine: &Engine,
    adapter: Option<&str>,
    schema: &Schema,
    seeds: &[String],
    rng: &mut StdRng,
) -> Result<Option<String>> {
    let system = format!(
        "You write questions that a data analyst could ask about this SQLite database. \
         Each question is one sentence in plain English, answerable with one SQL query \
         over these tables:\n\n{}",
        schema.render_ddl()
    );
    let mut messages = vec![Message::system(system)];
    for q in seeds.choose_multiple(rng, SHOTS) {
        messages.push(Message::user("Write one new question."));
        messages.push(Message::assistant(q.trim()));
    }
    messages.push(Message::user("Write one new question."));
    let text = engine.template.render(&messages, true)?;
    let ids = engine.tokenizer.encode(&text)?;
    let slot = engine.adapter_slot_for(adapter)?;
    let mut session = engine.prompt_cache().checkout(&engine.model, slot, &ids);
    let generation = generate::generate_with(
        &mut session,
        &engine.tokenizer,
        GenerateRequest {
            prompt_ids: &ids,
            stop_ids: &engine.stop_ids(),
            sampling: SamplingParams {
                temperature: 0.9,
                top_p: Some(0.95),
                seed: rng.random(),
                max_tokens: QUESTION_TOKENS,
            },
            constraint: None,
            check: None,
            cancel: None,
            stop_text: &[],
            prompt_split: None,
            mask_ahead: engine.mask_ahead(),
        },
        &mut |_| {},
    );
    engine.prompt_cache().checkin(session);
    let reply = generation?.text;
    let line = reply
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or_default();
    let question = line.trim_matches(|c: char| c == '"' || c == '*').trim();
    let ok = question.len() >= 12
        && question.split_whitespace().count() >= 4
        && (question.ends_with('?') || question.ends_with('.'));
    Ok(ok.then(|| question.to_string()))
}

/// The model's SQL for `question` over `db`, as `ask` writes it (under the
/// database's grammar); empty when it wrote none.
pub fn answer(
    engine: &Engine,
    db: &DatabaseHandle,
    options: &AskOptions,
    question: &str,
) -> Result<String> {
    Ok(engine
        .draft(db, question, &[], options, &mut Listener::default())?
        .sql)
}

/// Pairs the model writes for a database: questions in the manner of
/// `seeds`, each answered as `ask` would.
pub struct ModelPairs<'a> {
    /// The model.
    pub engine: &'a Engine,
    /// The database, with its grammar.
    pub db: &'a DatabaseHandle,
    /// How to answer.
    pub options: &'a AskOptions,
    /// Questions to show the model.
    pub seeds: &'a [String],
    /// Pairs wanted.
    pub count: usize,
}

impl ModelPairs<'_> {
    /// Up to `count` pairs that `filter` keeps, trying at most four times
    /// as many questions. Returns the pairs and how many replies were not a
    /// question; `on_kept` hears each kept pair.
    pub fn write(
        &self,
        filter: &mut super::Filter,
        rng: &mut StdRng,
        on_kept: &mut dyn FnMut(),
    ) -> Result<(Vec<serde_json::Value>, usize)> {
        let (engine, db, options) = (self.engine, self.db, self.options);
        let schema = db.schema();
        let mut kept = Vec::new();
        let mut no_question = 0usize;
        for _ in 0..self.count * 4 {
            if kept.len() == self.count {
                break;
            }
            let Some(question) =
                new_question(engine, options.adapter.as_deref(), schema, self.seeds, rng)?
            else {
                no_question += 1;
                continue;
            };
            let sql = answer(engine, db, options, &question)?;
            let keep =
                !sql.is_empty() && db.with_connection(|conn| filter.keep(conn, &question, &sql))?;
            if keep {
                kept.push(serde_json::json!({"question": question, "sql": sql, "source": "model"}));
                on_kept();
            }
        }
        Ok((kept, no_question))
    }
}
