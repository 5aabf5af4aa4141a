//! Integration tests: sql. Opening read-only, introspection, execution
//! limits and the refusal of writes, CSV import, the demo database and the
//! gold queries of `test-set.jsonl`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use sqlagent::sql::{
    build_demo_db, extract_sql, import_csv, quote_ident, Database, ExecLimits, ImportOptions,
    QueryResult, Value,
};
use sqlagent::Error;

use crate::common;

/// Builds the demo database in `dir` and returns its path.
fn demo_db(dir: &Path) -> PathBuf {
    let path = dir.join("music.db");
    build_demo_db(&path).expect("demo database builds");
    path
}

/// A small database exercising quoting, views, composite keys and blobs.
fn odd_db(dir: &Path) -> PathBuf {
    let path = dir.join("odd.db");
    let conn = Connection::open(&path).expect("create odd.db");
    conn.execute_batch(
        r#"
        CREATE TABLE "order" (
          id INTEGER PRIMARY KEY,
          "top genre" TEXT NOT NULL,
          "beats.per.minute" INTEGER,
          payload BLOB
        );
        CREATE TABLE plays (
          a INTEGER NOT NULL,
          b TEXT NOT NULL,
          order_id INTEGER REFERENCES "order"(id),
          note TEXT,
          PRIMARY KEY (b, a),
          FOREIGN KEY (a, b) REFERENCES pairs(x, y)
        );
        CREATE TABLE pairs (x INTEGER, y TEXT, PRIMARY KEY (x, y));
        CREATE INDEX plays_note ON plays(note);
        CREATE TABLE notes (body TEXT);
        INSERT INTO notes VALUES ('The quick brown fox jumps over the lazy dog''s back, twice.');
        CREATE VIEW loud AS SELECT id, "top genre" FROM "order" WHERE "beats.per.minute" > 120;
        INSERT INTO "order" VALUES
          (1, 'pop', 100, x'00'), (2, 'rock', 150, NULL), (3, 'pop', 130, NULL),
          (4, 'it''s jazz', NULL, NULL),
          (5, 'a very long genre name that goes on and on and on', 90, NULL);
        "#,
    )
    .expect("fill odd.db");
    path
}

fn run(db: &Database, sql: &str) -> QueryResult {
    db.execute(sql, &ExecLimits::default())
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

// ---------------------------------------------------------------- open

#[test]
fn open_refuses_missing_directory_and_non_sqlite_files() {
    let dir = common::temp_dir();
    let missing = dir.path().join("nope.db");
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "this is not a database, just some text ".repeat(40)).expect("write");

    for (path, needle) in [
        (missing.as_path(), "no such file"),
        (dir.path(), "directory"),
        (text.as_path(), "file is not a database"),
    ] {
        match Database::open(path) {
            Err(Error::Database { path: p, message }) => {
                assert_eq!(p, path);
                assert!(message.contains(needle), "{message}");
                assert!(!message.contains('\n'), "one line: {message}");
            }
            other => panic!(
                "{}: expected Error::Database, got {other:?}",
                path.display()
            ),
        }
    }
    assert!(!missing.exists(), "opening must not create the file");
}

#[test]
fn open_reports_its_path() {
    let dir = common::temp_dir();
    let path = demo_db(dir.path());
    let db = Database::open(&path).expect("open");
    assert_eq!(db.path(), path);
}

// ---------------------------------------------------------------- schema

#[test]
fn schema_of_the_demo_database_has_keys_counts_and_samples() {
    let dir = common::temp_dir();
    let db = Database::open(&demo_db(dir.path())).expect("open");
    let schema = db.schema().expect("schema");
    let names: Vec<&str> = schema.tables.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["artists", "albums", "tracks", "streams"]);

    let tracks = schema.table("tracks").expect("tracks");
    assert_eq!(tracks.primary_key, ["track_id"]);
    assert_eq!(tracks.foreign_keys.len(), 1);
    assert_eq!(tracks.foreign_keys[0].table, "albums");
    assert_eq!(tracks.foreign_keys[0].columns, ["album_id"]);
    assert_eq!(tracks.foreign_keys[0].to_columns, ["album_id"]);
    let title = tracks.column("title").expect("title");
    assert_eq!(title.decl_type, "TEXT");
    assert!(title.not_null);
    assert_eq!(title.samples.len(), 3);
    assert!(title.samples.iter().all(|s| s.starts_with('\'')));
    let energy = tracks.column("energy").expect("energy");
    assert!(energy.samples.iter().all(|s| s.parse::<f64>().is_ok()));

    let streams = schema.table("streams").expect("streams");
    assert_eq!(streams.primary_key, ["track_id", "country", "month"]);
    assert!(streams.row_count >= 1000);
    assert_eq!(schema.table("artists").expect("artists").row_count, 40);

    let ddl = schema.render_ddl();
    assert!(ddl.contains("CREATE TABLE albums (\n  album_id INTEGER PRIMARY KEY,\n"));
    assert!(ddl.contains("artist_id INTEGER NOT NULL REFERENCES artists(artist_id)"));
    assert!(ddl.contains("PRIMARY KEY (track_id, country, month)"));
}

#[test]
fn schema_quotes_odd_names_and_reads_views_and_composite_keys() {
    let dir = common::temp_dir();
    let db = Database::open(&odd_db(dir.path())).expect("open");
    let schema = db.schema().expect("schema");

    let order = schema.table("order").expect("order");
    assert_eq!(order.quoted, "\"order\"");
    assert_eq!(order.row_count, 5);
    let genre = order.column("top genre").expect("top genre");
    assert_eq!(genre.quoted, "\"top genre\"");
    assert_eq!(genre.samples[..2], ["'pop'", "'rock'"]);
    assert!(genre.samples.contains(&"'it''s jazz'".to_string()));
    let bpm = order.column("beats.per.minute").expect("bpm");
    assert_eq!(bpm.quoted, "\"beats.per.minute\"");
    assert_eq!(bpm.samples, ["100", "150", "130"]);
    let payload = order.column("payload").expect("payload");
    assert!(payload.samples.is_empty(), "BLOBs are not sampled");

    let plays = schema.table("plays").expect("plays");
    assert_eq!(plays.primary_key, ["b", "a"], "key order, not column order");
    assert_eq!(plays.foreign_keys.len(), 2);
    assert_eq!(plays.foreign_keys[0].table, "order");
    assert_eq!(plays.foreign_keys[1].columns, ["a", "b"]);
    assert_eq!(plays.foreign_keys[1].to_columns, ["x", "y"]);

    let loud = schema.table("loud").expect("view");
    assert!(loud.is_view);
    assert_eq!(loud.row_count, 2);
    assert_eq!(loud.columns.len(), 2);

    let ddl = schema.render_ddl();
    assert!(ddl.contains("CREATE TABLE \"order\" (\n  id INTEGER PRIMARY KEY,\n  \"top genre\" TEXT NOT NULL,\n  \"beats.per.minute\" INTEGER,"));
    assert!(ddl.contains("order_id INTEGER REFERENCES \"order\"(id)"));
    assert!(ddl.contains("PRIMARY KEY (b, a)"));
    assert!(ddl.contains("FOREIGN KEY (a, b) REFERENCES pairs(x, y)"));
    assert!(ddl.contains("CREATE VIEW loud ("));
    let json = serde_json::to_value(&schema).expect("schema serializes");
    assert_eq!(json["tables"][0]["columns"][1]["quoted"], "\"top genre\"");
}

#[test]
fn long_sample_text_is_shortened() {
    let dir = common::temp_dir();
    let db = Database::open(&odd_db(dir.path())).expect("open");
    let schema = db.schema().expect("schema");
    let body = schema
        .table("notes")
        .and_then(|t| t.column("body"))
        .expect("column");
    assert_eq!(body.samples, ["'The quick brown fox jumps over the la...'"]);
}

// ---------------------------------------------------------------- execute

#[test]
fn select_returns_typed_values_and_column_names() {
    let dir = common::temp_dir();
    let db = Database::open(&odd_db(dir.path())).expect("open");
    let r = run(
        &db,
        "SELECT id, \"top genre\" AS genre, \"beats.per.minute\" / 2.0, payload FROM \"order\" ORDER BY id LIMIT 2;",
    );
    assert_eq!(
        r.columns,
        ["id", "genre", "\"beats.per.minute\" / 2.0", "payload"]
    );
    assert_eq!(
        r.rows[0],
        [
            Value::Integer(1),
            Value::Text("pop".into()),
            Value::Real(50.0),
            Value::Blob(vec![0])
        ]
    );
    assert_eq!(r.rows[1][3], Value::Null);
    assert!(!r.truncated);
    let json = serde_json::to_string(&r.rows[0]).expect("json");
    assert_eq!(json, r#"[1,"pop",50.0,"00"]"#);
}

#[test]
fn with_select_works() {
    let dir = common::temp_dir();
    let db = Database::open(&demo_db(dir.path())).expect("open");
    let r = run(
        &db,
        "WITH per_artist AS (
           SELECT albums.artist_id, COUNT(*) AS n FROM albums GROUP BY albums.artist_id
         )
         SELECT artists.name, per_artist.n FROM per_artist
         JOIN artists ON artists.artist_id = per_artist.artist_id
         ORDER BY per_artist.n DESC, artists.name LIMIT 3",
    );
    assert_eq!(r.columns, ["name", "n"]);
    assert_eq!(r.rows.len(), 3);
    let recursive = run(
        &db,
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10) SELECT SUM(i) FROM n",
    );
    assert_eq!(recursive.rows, [[Value::Integer(55)]]);
}

#[test]
fn writes_are_refused_and_the_file_is_unchanged() {
    let dir = common::temp_dir();
    let path = odd_db(dir.path());
    let before = std::fs::read(&path).expect("read db");
    let attached = dir.path().join("other.db");
    let db = Database::open(&path).expect("open");
    let attach = format!("ATTACH DATABASE '{}' AS other", attached.display());
    let cases: &[(&str, &str)] = &[
        (
            "INSERT INTO \"order\" (id, \"top genre\") VALUES (9, 'x')",
            "INSERT",
        ),
        ("UPDATE \"order\" SET \"top genre\" = 'x'", "UPDATE"),
        ("DELETE FROM \"order\"", "DELETE"),
        ("DROP TABLE \"order\"", "DROP TABLE"),
        ("DROP VIEW loud", "DROP VIEW"),
        ("CREATE TABLE t (x)", "CREATE TABLE"),
        ("CREATE TEMP TABLE t (x)", "CREATE TEMP TABLE"),
        ("CREATE INDEX i ON plays(note)", "CREATE INDEX i ("),
        ("CREATE VIEW v AS SELECT 1", "CREATE VIEW v ("),
        ("DROP INDEX plays_note", "DROP INDEX plays_note"),
        ("ALTER TABLE plays ADD COLUMN y", "ALTER TABLE"),
        (&attach, "ATTACH"),
        ("DETACH DATABASE main", "DETACH"),
        ("PRAGMA user_version = 7", "PRAGMA user_version"),
        ("PRAGMA query_only = 0", "PRAGMA query_only"),
        ("PRAGMA journal_mode = WAL", "PRAGMA journal_mode"),
        ("BEGIN IMMEDIATE", "transaction"),
        ("SAVEPOINT s", "SAVEPOINT"),
        ("ANALYZE", "ANALYZE"),
        ("REINDEX", "REINDEX"),
        ("VACUUM", ""),
        (
            "WITH x AS (SELECT 1) INSERT INTO pairs SELECT 1, 'a' FROM x",
            "INSERT",
        ),
        ("REPLACE INTO pairs VALUES (1, 'a')", "INSERT"),
    ];
    for (sql, needle) in cases {
        match db.execute(sql, &ExecLimits::default()) {
            Err(Error::NotReadOnly(what)) => assert!(what.contains(needle), "{sql}: {what}"),
            other => panic!("{sql}: expected NotReadOnly, got {other:?}"),
        }
    }
    // Reads still work after refusals.
    assert_eq!(
        run(&db, "SELECT COUNT(*) FROM \"order\"").rows,
        [[Value::Integer(5)]]
    );
    drop(db);
    assert_eq!(std::fs::read(&path).expect("read db"), before);
    assert!(!attached.exists(), "ATTACH must not create a file");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .expect("list dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "odd.db")
        .collect();
    assert!(
        leftovers.is_empty(),
        "no journal or WAL files: {leftovers:?}"
    );
}

#[test]
fn more_than_one_statement_is_refused() {
    let dir = common::temp_dir();
    let db = Database::open(&odd_db(dir.path())).expect("open");
    for sql in [
        "SELECT 1; SELECT 2",
        "SELECT 1; DROP TABLE \"order\";",
        // A trigger body holds `;`s; it is refused before SQLite sees it.
        "CREATE TRIGGER tr AFTER INSERT ON pairs BEGIN SELECT 1; END",
    ] {
        match db.execute(sql, &ExecLimits::default()) {
            Err(Error::Query { message, .. }) => {
                assert!(message.contains("only one statement"), "{message}")
            }
            other => panic!("{sql}: expected Query error, got {other:?}"),
        }
    }
    // A trailing semicolon, comment or a `;` inside a literal is fine.
    run(&db, "SELECT 1; -- done");
    assert_eq!(
        run(&db, "SELECT ';' AS x;").rows,
        [[Value::Text(";".into())]]
    );
    assert!(matches!(
        db.execute("  -- nothing\n", &ExecLimits::default()),
        Err(Error::Query { message, .. }) if message.contains("empty")
    ));
}

#[test]
fn sqlite_errors_carry_sqlites_message() {
    let dir = common::temp_dir();
    let db = Database::open(&odd_db(dir.path())).expect("open");
    let cases = [
        ("SELECT foo FROM \"order\"", "no such column: foo"),
        ("SELECT * FROM nowhere", "no such table: nowhere"),
        ("SELEC 1", "syntax error"),
        ("SELECT * FROM \"order\" WHERE id = ?", "parameter"),
    ];
    for (sql, needle) in cases {
        match db.execute(sql, &ExecLimits::default()) {
            Err(Error::Query { sql: s, message }) => {
                assert_eq!(s, sql);
                assert!(message.contains(needle), "{sql}: {message}");
            }
            other => panic!("{sql}: expected Query error, got {other:?}"),
        }
    }
}

#[test]
fn runaway_recursive_query_times_out() {
    let dir = common::temp_dir();
    let db = Database::open(&odd_db(dir.path())).expect("open");
    let limits = ExecLimits {
        timeout: Duration::from_millis(200),
        ..ExecLimits::default()
    };
    let sql =
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT COUNT(*) FROM r";
    let started = Instant::now();
    match db.execute(sql, &limits) {
        Err(Error::Timeout { timeout_ms, sql: s }) => {
            assert_eq!(timeout_ms, 200);
            assert_eq!(s, sql);
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(3));
    // The connection is usable afterwards and the next query has a fresh deadline.
    assert_eq!(run(&db, "SELECT 1").rows, [[Value::Integer(1)]]);
}

#[test]
fn row_cap_truncates() {
    let dir = common::temp_dir();
    let db = Database::open(&demo_db(dir.path())).expect("open");
    let limits = ExecLimits {
        max_rows: 10,
        ..ExecLimits::default()
    };
    let r = db
        .execute("SELECT title FROM tracks", &limits)
        .expect("query");
    assert_eq!(r.rows.len(), 10);
    assert!(r.truncated);
    let exact = db
        .execute("SELECT title FROM tracks LIMIT 10", &limits)
        .expect("query");
    assert_eq!(exact.rows.len(), 10);
    assert!(!exact.truncated, "exactly max_rows rows is not truncated");
    let endless = db
        .execute(
            "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT n FROM r",
            &limits,
        )
        .expect("an endless row stream stops at the cap");
    assert_eq!(endless.rows.len(), 10);
    assert!(endless.truncated);
}

#[test]
fn default_limits_are_documented_values() {
    let limits = ExecLimits::default();
    assert_eq!(limits.timeout, Duration::from_secs(10));
    assert_eq!(limits.max_rows, 1000);
}

// ---------------------------------------------------------------- import

#[test]
fn import_spotify_csv_infers_numeric_columns() {
    let Some(data) = common::shared_data() else {
        return;
    };
    let csv = data.join("spotify-prototype/Top100MostStreamed.csv");
    let dir = common::temp_dir();
    let db_path = dir.path().join("spotify.db");
    let opts = ImportOptions {
        csv: csv.clone(),
        db: db_path.clone(),
        table: "songs".into(),
        replace: false,
    };
    let report = import_csv(&opts).expect("import");
    assert_eq!(report.table, "songs");
    assert_eq!(report.rows, 100);
    assert_eq!(report.columns.len(), 14);
    let ty = |name: &str| {
        report
            .columns
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.as_str())
    };
    assert_eq!(ty("title"), Some("TEXT"));
    assert_eq!(ty("top genre"), Some("TEXT"));
    assert_eq!(ty("beats.per.minute"), Some("INTEGER"));
    assert_eq!(ty("loudness.dB"), Some("INTEGER"));

    let db = Database::open(&db_path).expect("open");
    let r = run(&db, "SELECT MAX(\"beats.per.minute\") FROM songs");
    assert_eq!(r.rows, [[Value::Integer(186)]]);
    let schema = db.schema().expect("schema");
    let songs = schema.table("songs").expect("songs");
    let quoted: Vec<&str> = songs.columns.iter().map(|c| c.quoted.as_str()).collect();
    assert!(quoted.contains(&"\"top genre\""));
    assert!(quoted.contains(&"\"beats.per.minute\""));
    assert_eq!(quote_ident("beats.per.minute"), "\"beats.per.minute\"");
    drop(db);

    // A second import into the same table is refused unless replace is set.
    match import_csv(&opts) {
        Err(Error::Database { message, .. }) => {
            // The library's words; the command line adds its flag's name.
            assert!(message.contains("already exists"), "{message}");
            assert!(!message.contains("--"), "{message}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let replaced = import_csv(&ImportOptions {
        replace: true,
        ..opts
    })
    .expect("replace");
    assert_eq!(replaced.rows, 100);
    let db = Database::open(&db_path).expect("open");
    assert_eq!(
        run(&db, "SELECT COUNT(*) FROM songs").rows,
        [[Value::Integer(100)]]
    );
}

#[test]
fn import_types_nulls_and_names() {
    let dir = common::temp_dir();
    let csv = dir.path().join("mixed.csv");
    std::fs::write(
        &csv,
        "\u{feff}id,score,name,empty,order\n1,2.5,\"Smith, J\",,x\n2,,O'Hara,,y\n3,4,\"multi\nline\",,z\n",
    )
    .expect("write csv");
    let db_path = dir.path().join("out.db");
    let report = import_csv(&ImportOptions {
        csv,
        db: db_path.clone(),
        table: "my table".into(),
        replace: false,
    })
    .expect("import");
    let cols: Vec<(&str, &str)> = report
        .columns
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    assert_eq!(
        cols,
        [
            ("id", "INTEGER"),
            ("score", "REAL"),
            ("name", "TEXT"),
            ("empty", "TEXT"),
            ("order", "TEXT"),
        ]
    );
    assert_eq!(report.rows, 3);
    let db = Database::open(&db_path).expect("open");
    let r = run(
        &db,
        "SELECT id, score, name, empty, \"order\" FROM \"my table\" ORDER BY id",
    );
    assert_eq!(
        r.rows[1],
        [
            Value::Integer(2),
            Value::Null,
            Value::Text("O'Hara".into()),
            Value::Null,
            Value::Text("y".into())
        ]
    );
    assert_eq!(r.rows[2][1], Value::Real(4.0));
    assert_eq!(r.rows[2][2], Value::Text("multi\nline".into()));
}

#[test]
fn ragged_csv_names_the_offending_line_and_leaves_nothing_behind() {
    let dir = common::temp_dir();
    let csv = dir.path().join("ragged.csv");
    // Line 4 holds the third record; the quoted field spans lines 2-3.
    std::fs::write(&csv, "a,b,c\n1,\"two\nlines\",3\n4,5\n6,7,8\n").expect("write csv");
    let db_path = dir.path().join("out.db");
    let opts = ImportOptions {
        csv: csv.clone(),
        db: db_path.clone(),
        table: "t".into(),
        replace: false,
    };
    match import_csv(&opts) {
        Err(Error::Csv {
            path,
            line,
            message,
        }) => {
            assert_eq!(path, csv);
            assert_eq!(line, 4, "{message}");
            assert!(message.contains("2 fields"), "{message}");
        }
        other => panic!("expected Error::Csv, got {other:?}"),
    }
    assert!(!db_path.exists(), "a failed import creates no database");
}

#[test]
fn bad_headers_and_missing_files_are_reported() {
    let dir = common::temp_dir();
    let db = dir.path().join("out.db");
    let opts = |csv: PathBuf| ImportOptions {
        csv,
        db: db.clone(),
        table: "t".into(),
        replace: false,
    };
    for (name, content, needle) in [
        ("dup.csv", "a,b,A\n1,2,3\n", "duplicate"),
        ("blank.csv", "a,,c\n1,2,3\n", "empty name"),
        // Found by tests/it/hostile: SQL text ends at a NUL.
        ("nul.csv", "t\0x,b\n1,2\n", "NUL character"),
        ("empty.csv", "", "no header"),
    ] {
        let csv = dir.path().join(name);
        std::fs::write(&csv, content).expect("write csv");
        match import_csv(&opts(csv)) {
            Err(Error::Csv { line, message, .. }) => {
                assert_eq!(line, 1, "{name}");
                assert!(message.contains(needle), "{name}: {message}");
            }
            other => panic!("{name}: expected Error::Csv, got {other:?}"),
        }
    }
    let missing = dir.path().join("missing.csv");
    match import_csv(&opts(missing.clone())) {
        Err(Error::Io { path, .. }) => assert_eq!(path, missing),
        other => panic!("expected Error::Io, got {other:?}"),
    }
    assert!(!db.exists());
}

#[test]
fn failed_replace_keeps_the_existing_table() {
    let dir = common::temp_dir();
    let good = dir.path().join("good.csv");
    let bad = dir.path().join("bad.csv");
    std::fs::write(&good, "x\n1\n2\n").expect("write");
    std::fs::write(&bad, "x\n1\n2,3\n").expect("write");
    let db_path = dir.path().join("out.db");
    let opts = |csv: PathBuf| ImportOptions {
        csv,
        db: db_path.clone(),
        table: "t".into(),
        replace: true,
    };
    import_csv(&opts(good)).expect("import");
    assert!(matches!(
        import_csv(&opts(bad)),
        Err(Error::Csv { line: 3, .. })
    ));
    let db = Database::open(&db_path).expect("open");
    assert_eq!(run(&db, "SELECT SUM(x) FROM t").rows, [[Value::Integer(3)]]);
}

// ---------------------------------------------------------------- demo + test set

#[test]
fn demo_db_is_deterministic_and_sized_as_documented() {
    let dir = common::temp_dir();
    let path = dir.path().join("nested/music.db");
    let report = build_demo_db(&path).expect("build");
    assert_eq!(report.path, path);
    let counts: Vec<(&str, u64)> = report
        .tables
        .iter()
        .map(|(n, c)| (n.as_str(), *c))
        .collect();
    assert_eq!(counts[0], ("artists", 40));
    assert_eq!(counts[1], ("albums", 90));
    assert_eq!(counts[2].0, "tracks");
    assert!((400..=600).contains(&counts[2].1), "{counts:?}");
    assert_eq!(counts[3].0, "streams");
    assert!((1000..=10_000).contains(&counts[3].1), "{counts:?}");

    let first = std::fs::read(&path).expect("read");
    build_demo_db(&path).expect("rebuild overwrites");
    assert_eq!(std::fs::read(&path).expect("read"), first);
    let leftovers = std::fs::read_dir(path.parent().expect("parent"))
        .expect("list")
        .count();
    assert_eq!(leftovers, 1, "no temporary files left next to the output");

    // Foreign keys hold.
    let conn = Connection::open(&path).expect("open");
    let violations: i64 = conn
        .query_row("SELECT COUNT(*) FROM pragma_foreign_key_check", [], |r| {
            r.get(0)
        })
        .expect("fk check");
    assert_eq!(violations, 0);
}

#[test]
fn every_gold_query_in_the_test_set_returns_rows() {
    let dir = common::temp_dir();
    let db = Database::open(&demo_db(dir.path())).expect("open");
    let text = std::fs::read_to_string(common::root().join("test-set.jsonl")).expect("read");
    let mut count = 0;
    let mut questions = std::collections::HashSet::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let item: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("line {}: {e}", i + 1));
        let question = item["question"].as_str().expect("question");
        let sql = item["sql"].as_str().expect("sql");
        assert!(item["tags"].as_array().is_some_and(|t| !t.is_empty()));
        assert!(
            questions.insert(question.to_string()),
            "duplicate: {question}"
        );
        let r = db
            .execute(sql, &ExecLimits::default())
            .unwrap_or_else(|e| panic!("line {}: {question}: {e}", i + 1));
        assert!(!r.rows.is_empty(), "line {}: no rows for {question}", i + 1);
        assert!(!r.truncated, "line {}: {question}", i + 1);
        // The gold SQL is what a good reply would contain.
        assert_eq!(extract_sql(sql).as_deref(), Some(sql));
        count += 1;
    }
    assert!(count >= 40, "only {count} items");
}

#[test]
fn the_check_refuses_a_double_quoted_name_that_names_nothing_but_running_keeps_sqlite_s_reading() {
    let tmp = common::temp_dir();
    let db = Database::open(&demo_db(tmp.path())).unwrap();
    // "genre" is a column of tracks; "genres" is none: SQLite would read it
    // as the string 'genres' and answer with it, silently.
    db.check("SELECT \"genre\" FROM tracks").unwrap();
    let err = db
        .check("SELECT \"genres\" FROM tracks")
        .unwrap_err()
        .to_string();
    assert!(err.contains("no such column: \"genres\""), "{err}");
    // Executing (gold queries use double-quoted strings) is unchanged, and
    // so is the check afterwards.
    let rows = db
        .execute(
            "SELECT COUNT(*) FROM tracks WHERE genre <> \"x\"",
            &ExecLimits::default(),
        )
        .unwrap();
    assert_eq!(rows.rows.len(), 1);
    assert!(db.check("SELECT \"genres\" FROM tracks").is_err());
    db.check("SELECT 'genres' FROM tracks").unwrap();
}
