//! Repairs in the decode loop: when a finished query fails the check,
//! decoding backs up to the name SQLite blames and bans the token chosen
//! there. Bans can leave a position with nothing the grammar allows; then
//! the choice before it is taken back too, instead of failing the request.
//! Text that can no longer pass is caught while it is written, and the
//! SQL check aims each repair at the latest choice that can fix it.

use candle_core::{Device, Tensor};
use sqlagent::agent::{sql_verdict, DatabaseHandle, SqlCheck};
use sqlagent::generate::{
    generate_with, GenerateRequest, Generation, SamplingParams, TextCheck, TokenModel, Verdict,
};
use sqlagent::grammar::GrammarFactory;
use sqlagent::sql::build_demo_db;
use sqlagent::tokenizer::{SpecialTokens, Tokenizer};
use sqlagent::Result;

use crate::common;

/// A model that always prefers the same tokens (greedy picks the first of
/// them the grammar allows, by their order of preference).
struct Preferring {
    width: usize,
    preferred: Vec<u32>,
    fed: usize,
}

impl TokenModel for Preferring {
    fn context_length(&self) -> usize {
        1 << 16
    }
    fn feed(&mut self, ids: &[u32]) -> Result<Tensor> {
        self.fed += ids.len();
        let mut logits = vec![0f32; self.width];
        for (rank, &id) in self.preferred.iter().enumerate() {
            logits[id as usize] = 100.0 - rank as f32;
        }
        Ok(Tensor::from_vec(logits, self.width, &Device::Cpu)?)
    }
    fn truncate(&mut self, len: usize) {
        self.fed = len;
    }
    fn fed(&self) -> usize {
        self.fed
    }
}

#[test]
fn a_position_whose_every_choice_is_banned_backs_up_to_the_choice_before() {
    // After "SELECT a FROM t" only "x" may follow, so banning it there
    // leaves nothing; the way out is the other table. The model wants
    // table t, then x; the check rejects x.
    let grammar = "start: \"SELECT a FROM \" (\"t x\" | \"u y\")";
    let preferred = [" t", " x", "SELECT", " a", " FROM"];
    let check = |text: &str| match text.rfind(" x") {
        Some(at) => Verdict::Blame(at + 1),
        None => Verdict::Pass,
    };
    let Some(generation) = under_grammar(grammar, &preferred, &check) else {
        return;
    };
    assert_eq!(generation.text, "SELECT a FROM u y");
    assert!(generation.grammar.repairs >= 1);
    assert!(!generation.grammar.check_failed);
}

/// Blames table `t` as soon as the clause after it starts: a check that
/// knows early what a finished-text check would only find at the end.
struct TableTIsWrong;

impl TextCheck for TableTIsWrong {
    fn finished(&self, text: &str) -> Verdict {
        text.find(" t ")
            .map_or(Verdict::Pass, |at| Verdict::Blame(at + 1))
    }

    fn continued(&self, text: &str, next: &str) -> Verdict {
        match (text.ends_with(" t"), next.trim_start().starts_with("WHERE")) {
            (true, true) => Verdict::Blame(text.len() - 1),
            _ => Verdict::Pass,
        }
    }
}

#[test]
fn text_that_cannot_pass_is_taken_back_as_soon_as_it_is_written() {
    let grammar = "start: \"SELECT a FROM \" (\"t\" | \"u\") (\" WHERE b = 1\" | \" LIMIT 1\")";
    let preferred = [" t", " WHERE", "SELECT", " a", " FROM"];
    let Some(generation) = under_grammar(grammar, &preferred, &TableTIsWrong) else {
        return;
    };
    assert_eq!(generation.text, "SELECT a FROM u WHERE b = 1");
    let g = generation.grammar;
    // Caught when WHERE followed the table (the token for it may be
    // spelled more than one way, each banned in turn), so the finished
    // query never failed.
    assert!(g.early_repairs >= 1 && g.repairs == 0, "{g:?}");
    assert!(!g.check_failed);
}

/// Where `verdict` points in `text`, as the text from there on.
fn blamed(text: &str, verdict: Verdict) -> Option<&str> {
    match verdict {
        Verdict::Blame(at) => Some(&text[at..]),
        _ => None,
    }
}

#[test]
fn the_sql_check_blames_the_latest_choice_that_can_fix_a_query() {
    let tmp = common::temp_dir();
    let path = tmp.path().join("music.db");
    build_demo_db(&path).unwrap();
    let db = DatabaseHandle::without_grammar(&path).unwrap();
    let check = SqlCheck::new(&db);
    // (text so far, what was just written after it, what is blamed)
    let continued: &[(&str, &str, Option<&str>)] = &[
        // albums has album_id and title: the table is the later choice.
        ("SELECT album_id, title FROM artists", " WHERE", Some("artists")),
        // No table has both name and title: the column is to blame.
        (
            "SELECT name, title FROM artists",
            " WHERE",
            Some("title FROM artists"),
        ),
        // Before WHERE closes the FROM clause, a join could still bring
        // the column in.
        ("SELECT album_id, title FROM artists", " JOIN", None),
        ("SELECT name FROM artists", " WHERE", None),
        // Shared by two different tables: the column needs qualifying.
        (
            "SELECT artists.name, artist_id FROM artists JOIN albums",
            " ON",
            Some("artist_id FROM artists JOIN albums"),
        ),
        // A table joined to itself without aliases: the join is wrong.
        ("SELECT name FROM artists INNER JOIN artists", " ON", Some("INNER JOIN artists")),
        ("SELECT name FROM artists JOIN artists", " AS", None),
        // A qualifier the FROM clause binds gains no column from a join.
        ("SELECT a.title FROM artists a", " JOIN", Some("a.title FROM artists a")),
        // A keyword written in pieces counts once whole.
        ("SELECT a.title FROM artists a\nJO", "IN", Some("a.title FROM artists a\nJO")),
        ("SELECT name, title FROM artists W", "HERE", Some("title FROM artists W")),
        ("SELECT name, title FROM artists_W", "HERE", None),
        ("SELECT albums.title FROM artists", " JOIN", None),
        // A name whose parts repeat, unless the schema has it.
        ("SELECT name AS total_name_total_total", "_", Some("total_name_total_total")),
        // Loops: a list item again, a clause again, a condition again.
        ("SELECT name, country, name", ",", Some("name")),
        // An item closed by the token that starts the next one.
        ("SELECT name, COUNT(*), MAX(title), COUNT(*", "),", Some(", COUNT(*")),
        ("SELECT name, MAX(title), COUNT(*", "),", None),
        // A long list that repeats itself ends before the repeat.
        ("SELECT name, country, artist_id, name", " FROM", Some(", name")),
        (
            "SELECT name FROM artists JOIN albums ON albums.artist_id = artists.artist_id \
             OR artists.artist_id = albums.artist_id",
            " WHERE",
            Some("OR artists.artist_id = albums.artist_id"),
        ),
        ("SELECT name FROM artists WHERE name = 'a' AND name = 'a'", ")", Some("AND name = 'a'")),
        ("SELECT name FROM artists WHERE name = 'a' OR name = 'b'", " AND", None),
        (
            "SELECT name FROM artists JOIN albums ON albums.artist_id = artists.artist_id \
             JOIN albums ON albums.artist_id = artists.artist_id",
            " WHERE",
            Some("JOIN albums ON albums.artist_id = artists.artist_id"),
        ),
        // A derived table where one table has every column named around
        // it: the table is the choice.
        ("SELECT title FROM (", "SELECT", Some("(")),
        ("SELECT title FROM artists JOIN (", "SELECT", Some("(")),
        ("SELECT COUNT(*) FROM (", "SELECT", None),
        ("SELECT name, title FROM (", "SELECT", None),
        // A derived table is checked on its own; a subquery that may
        // name the outer query's columns is left for the end.
        ("SELECT x FROM (SELECT name FROM albums", " WHERE", Some("albums")),
        (
            "SELECT name FROM artists WHERE artist_id IN (SELECT artist_id FROM albums WHERE genre = 'x'",
            " AND",
            None,
        ),
        (
            "SELECT name FROM artists WHERE artist_id IN (SELECT genre FROM albums",
            " WHERE",
            None,
        ),
    ];
    for &(text, next, want) in continued {
        assert_eq!(
            blamed(text, check.continued(text, next)),
            want,
            "{text:?} + {next:?}"
        );
    }
    // Finished queries: the same aim.
    let finished: &[(&str, Option<&str>)] = &[
        (
            "SELECT album_id, title FROM artists WHERE label IS NULL",
            Some("artists WHERE label IS NULL"),
        ),
        (
            "SELECT name FROM artists WHERE album_id = 1",
            Some("album_id = 1"),
        ),
        // albums has a title but is not in the FROM clause: the table there
        // is the choice to take back.
        ("SELECT albums.title FROM artists", Some("artists")),
        // artists has no title: the column is wrong.
        (
            "SELECT artists.title FROM artists",
            Some("artists.title FROM artists"),
        ),
        ("SELECT name FROM artists", None),
    ];
    for &(text, want) in finished {
        assert_eq!(blamed(text, sql_verdict(&db, text)), want, "{text:?}");
    }
}

#[test]
fn a_string_compared_with_a_column_of_few_values_must_be_one_of_them_as_stored() {
    let dir = common::temp_dir();
    let path = dir.path().join("music.db");
    build_demo_db(&path).unwrap();
    let db = DatabaseHandle::without_grammar(&path)
        .unwrap()
        .with_literal_values(40)
        .unwrap();
    assert_eq!(
        db.literal_values("ARTISTS", "Genre").map(|v| v.len()),
        Some(13)
    );
    assert_eq!(
        db.literal_values("tracks", "title"),
        None,
        "too many values"
    );
    assert_eq!(db.literal_values("tracks", "year"), None, "not text");
    let check = SqlCheck::new(&db);
    fn blamed_at(text: &str, verdict: Verdict) -> Option<&str> {
        match verdict {
            Verdict::Blame(at) => Some(&text[at..]),
            _ => None,
        }
    }
    let continued: &[(&str, &str, Option<&str>)] = &[
        // The stored spelling is lower case.
        (
            "SELECT name FROM artists WHERE genre = 'Pop",
            "'",
            Some("Pop"),
        ),
        ("SELECT name FROM artists WHERE genre = 'po", "p", None),
        ("SELECT name FROM artists WHERE genre = 'pop'", " AND", None),
        // Blamed where no value goes on.
        (
            "SELECT name FROM artists WHERE genre = 'popx",
            "'",
            Some("x"),
        ),
        // Closed before the value ends.
        (
            "SELECT name FROM artists WHERE genre = 'po'",
            " AND",
            Some("'"),
        ),
        // Through an alias, and in an IN list.
        (
            "SELECT a.name FROM artists AS a JOIN streams s ON 1 WHERE s.country = 'Peru'",
            ";",
            Some("Peru'"),
        ),
        (
            "SELECT name FROM streams WHERE country NOT IN ('Japan', 'Sweden', 'sweden'",
            ")",
            Some("sweden'"),
        ),
        // A column two tables have: either's values.
        (
            "SELECT 1 FROM artists JOIN streams ON 1 WHERE country = 'Ireland'",
            ";",
            None,
        ),
        // Another column holds it: the column is blamed, not the value
        // (also for a column of many values).
        (
            "SELECT name FROM artists WHERE country = 'Nova Kestrel'",
            " AND",
            Some("country = 'Nova Kestrel'"),
        ),
        (
            "SELECT title FROM tracks AS t WHERE t.title = 'jazz'",
            ";",
            Some("title = 'jazz'"),
        ),
        // A value no column holds is left to the query (an empty answer).
        ("SELECT title FROM tracks WHERE title = 'Nobody'", ";", None),
        // Not checked: patterns, orderings, columns of many values.
        ("SELECT name FROM artists WHERE genre LIKE 'Po", "p", None),
        ("SELECT name FROM artists WHERE genre > 'Po", "p", None),
        ("SELECT title FROM tracks WHERE title = 'Zzz", "z", None),
    ];
    for &(text, next, want) in continued {
        assert_eq!(
            blamed_at(text, check.continued(text, next)),
            want,
            "{text:?} + {next:?}"
        );
    }
    let text = "SELECT name FROM artists WHERE genre = 'Rock';";
    assert_eq!(blamed_at(text, sql_verdict(&db, text)), Some("Rock';"));
    // Without the values read, nothing is checked.
    let plain = DatabaseHandle::without_grammar(&path).unwrap();
    assert_eq!(blamed_at(text, sql_verdict(&plain, text)), None);
}

#[test]
fn a_string_compared_with_a_column_of_few_values_is_written_as_one_of_them() {
    let dir = common::temp_dir();
    let path = dir.path().join("music.db");
    build_demo_db(&path).unwrap();
    let grammar = r#"start: "SELECT name FROM artists WHERE genre = '" /[A-Za-z ]{1,20}/ "'""#;
    // The model wants 'Pop'; the data says 'pop'.
    let preferred = ["Pop", "Rock", "p", "op", "'"];
    let checked = DatabaseHandle::without_grammar(&path)
        .unwrap()
        .with_literal_values(40)
        .unwrap();
    let Some(generation) = under_grammar(grammar, &preferred, &SqlCheck::new(&checked)) else {
        return;
    };
    assert_eq!(
        generation.text,
        "SELECT name FROM artists WHERE genre = 'pop'"
    );
    assert_eq!(generation.grammar.repairs, 0, "offered, not repaired");
    // Without the values, the model's spelling stands (and this model,
    // which always prefers it, goes on writing it).
    let plain = DatabaseHandle::without_grammar(&path).unwrap();
    let generation = under_grammar(grammar, &preferred, &SqlCheck::new(&plain)).unwrap();
    assert!(
        generation
            .text
            .starts_with("SELECT name FROM artists WHERE genre = 'PopPop"),
        "{}",
        generation.text
    );
}

/// Greedy generation under `grammar` by a model preferring `preferred`
/// (each one token of the Llama 3 vocabulary), checked by `check`; `None`
/// without the tokenizer fixture.
fn under_grammar(grammar: &str, preferred: &[&str], check: &dyn TextCheck) -> Option<Generation> {
    let dir = common::llama3_tokenizer_dir()?;
    let tokenizer = Tokenizer::from_file(&dir.join("tokenizer.json")).unwrap();
    let stop_ids = SpecialTokens::from_hf_dir(&dir, &tokenizer)
        .unwrap()
        .stop_ids();
    let factory = GrammarFactory::new(&tokenizer, tokenizer.vocab_size(), &stop_ids).unwrap();
    let grammar = factory.compile(grammar).unwrap();
    let id = |text: &str| {
        let ids = tokenizer.encode(text).unwrap();
        assert_eq!(ids.len(), 1, "{text:?} is one token");
        ids[0]
    };
    let mut model = Preferring {
        width: tokenizer.vocab_size(),
        preferred: preferred.iter().map(|t| id(t)).collect(),
        fed: 0,
    };
    let prompt = tokenizer.encode("SQL:").unwrap();
    let mut constraint = grammar.constraint();
    let generation = generate_with(
        &mut model,
        &tokenizer,
        GenerateRequest {
            prompt_ids: &prompt,
            stop_ids: &stop_ids,
            sampling: SamplingParams::default(),
            constraint: Some(&mut constraint),
            check: Some(check),
            cancel: None,
            stop_text: &[],
            prompt_split: None,
            mask_ahead: Default::default(),
        },
        &mut |_| {},
    )
    .expect("a dead end is not an error");
    Some(generation)
}

/// Blames table `t`, in any case, once the query is finished.
fn no_table_t(text: &str) -> Verdict {
    let lower = text.to_ascii_lowercase();
    match lower.rfind('t').filter(|&at| lower[at..].trim() == "t") {
        Some(at) => Verdict::Blame(at),
        None => Verdict::Pass,
    }
}

#[test]
fn a_repair_bans_every_spelling_of_the_choice() {
    // Without it, ` T` would be tried after ` t` failed.
    let grammar = "start: \"SELECT a FROM\" (\" t\" | \" T\" | \" u\")";
    let preferred = [" t", " T", " u", "SELECT", " a", " FROM"];
    let Some(g) = under_grammar(grammar, &preferred, &no_table_t) else {
        return;
    };
    assert_eq!(g.text, "SELECT a FROM u");
    assert_eq!(g.grammar.repairs, 1, "{:?}", g.grammar);
    // Every step's grammar time is accounted for, checks included.
    let steps: f64 = g.grammar_step_ms().iter().sum();
    assert!(!g.grammar_steps.is_empty());
    assert!(
        (steps - g.grammar.grammar_ms).abs() < 1e-6,
        "{steps} vs {:?}",
        g.grammar
    );
}

#[test]
fn a_ban_holds_across_blanks_written_after_it() {
    // After ` t` is banned the model writes a newline instead of the
    // space; `t` there is the same choice again.
    let grammar = "start: \"SELECT a FROM\" (\" \" | \"\\n\") (\"t\" | \"u\")";
    let preferred = [" t", "\n", "t", "u", "SELECT", " a", " FROM"];
    let Some(g) = under_grammar(grammar, &preferred, &no_table_t) else {
        return;
    };
    assert_eq!(g.text, "SELECT a FROM\nu");
    assert_eq!(g.grammar.repairs, 1, "{:?}", g.grammar);
}

#[test]
fn a_name_of_the_schema_whose_parts_repeat_is_not_a_loop() {
    let tmp = common::temp_dir();
    let path = tmp.path().join("x.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("CREATE TABLE t (x_y_x_y_x INTEGER)")
        .unwrap();
    drop(conn);
    let db = DatabaseHandle::without_grammar(&path).unwrap();
    let check = SqlCheck::new(&db);
    assert_eq!(check.continued("SELECT x_y_x_y_x", " FROM"), Verdict::Pass);
    assert_eq!(check.continued("SELECT x_y_x_y", "_"), Verdict::Pass);
    assert_eq!(
        check.continued("SELECT x_y_x_y_x AS y_x_x_x", " FROM"),
        Verdict::Blame("SELECT x_y_x_y_x AS ".len())
    );
}
