//! Integration tests: the SQL grammar. Table-driven accept/reject lists
//! (one call lists what a grammar accepts and what it rejects), on the demo
//! database and on a database with awkward names; the gold queries of
//! `test-set.jsonl`; and coverage on the real queries of
//! `../shared/data/sqlite-select-corpus/corpus.jsonl`, whose rejections
//! are listed in `tests/grammar-rejections.jsonl`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::OnceLock;
use std::time::Instant;

use rusqlite::Connection;
use sqlagent::grammar::check::{check_sql, GrammarChecker};
use sqlagent::grammar::lark::lark_grammar;
use sqlagent::grammar::{GrammarMode, GrammarOptions};
use sqlagent::sql::{build_demo_db, Database, ExecLimits, Schema};

use crate::common;

const SCHEMA: GrammarOptions = GrammarOptions {
    mode: GrammarMode::Schema,
    max_string_len: 200,
    literal_values: 40,
};
const GENERIC: GrammarOptions = GrammarOptions {
    mode: GrammarMode::Generic,
    max_string_len: 200,
    literal_values: 40,
};

/// The demo database's schema (built once into a temporary directory).
fn demo_schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let dir = common::temp_dir();
        let path = dir.path().join("music.db");
        build_demo_db(&path).expect("demo database builds");
        Database::open(&path)
            .and_then(|db| db.schema())
            .expect("demo schema")
    })
}

fn checker(schema: &Schema, options: &GrammarOptions) -> GrammarChecker {
    let lark = lark_grammar(schema, options).expect("a grammar for schema/generic mode");
    GrammarChecker::new(&lark).unwrap_or_else(|e| panic!("grammar compiles: {e}\n{lark}"))
}

/// One call lists the texts a grammar accepts and those it rejects; every
/// mismatch is reported at once.
fn lark_test(checker: &GrammarChecker, accepted: &[&str], rejected: &[&str]) {
    let mut wrong = Vec::new();
    for sql in accepted {
        if let Err(r) = checker.check(sql) {
            wrong.push(format!("should accept {sql:?}: {r}"));
        }
    }
    for sql in rejected {
        if checker.check(sql).is_ok() {
            wrong.push(format!("should reject {sql:?}"));
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}

/// Every construct of a read-only SQLite query, on the demo database. Each
/// example also runs on the database, so the list holds only real SQL.
const DEMO_ACCEPTED: &[&str] = &[
    // Statement shape: optional `;`, leading newline or spaces, trailing
    // whitespace, keywords in any case, tabs and newlines between words.
    "SELECT * FROM artists",
    "select name from artists;",
    "SELECT name FROM artists ;",
    "\nSELECT name FROM artists",
    "  SELECT 1",
    "SELECT name FROM artists;\n",
    "SeLeCt name FrOm artists WhErE genre = 'pop' oRdEr By name",
    "SELECT\tname\nFROM artists\n  WHERE country = 'Sweden'\nORDER BY name;",
    "SELECT name,country FROM artists WHERE artist_id=1",
    "SELECT count ( * ) FROM artists",
    // SELECT list
    "SELECT DISTINCT country FROM artists",
    "SELECT ALL country FROM artists",
    "SELECT artists.* FROM artists",
    "SELECT a.*, b.title FROM artists AS a JOIN albums AS b ON a.artist_id = b.artist_id",
    "SELECT name AS \"Artist Name\", country AS c, formed_year AS 'year', genre AS [kind] FROM artists",
    // Operators
    "SELECT name || ' (' || country || ')' FROM artists",
    "SELECT duration_s / 60.0, duration_s % 60, -bpm, +bpm, ~bpm, bpm * 2 - 1, bpm - -1, bpm-1, \
     bpm & 1, bpm | 2, bpm << 1, bpm >> 1, -(bpm), - bpm FROM tracks",
    "SELECT title FROM tracks WHERE energy >= 0.5 AND (danceability < .5 OR valence <> 1e-3) AND NOT explicit",
    "SELECT title FROM tracks WHERE bpm == 120 OR bpm != 100 OR bpm <= 1 OR bpm > 2",
    "SELECT name FROM artists WHERE country IN ('Sweden', 'Norway')",
    "SELECT name FROM artists WHERE artist_id NOT IN (SELECT artist_id FROM albums)",
    "SELECT name FROM artists WHERE artist_id IN(SELECT artist_id FROM albums)",
    "SELECT 1 FROM artists WHERE 1 IN ()",
    "SELECT title FROM albums WHERE release_year BETWEEN 2000 AND 2010",
    "SELECT title FROM albums WHERE release_year NOT BETWEEN 1990 + 1 AND 2000 * 1 AND label = 'x'",
    "SELECT name FROM artists WHERE name LIKE 'The %'",
    "SELECT name FROM artists WHERE name NOT LIKE '%!_%' ESCAPE '!'",
    "SELECT name FROM artists WHERE name GLOB '[A-M]*' OR name NOT GLOB '*x'",
    "SELECT title FROM albums WHERE label IS NULL",
    "SELECT title FROM albums WHERE label IS NOT NULL",
    "SELECT title FROM albums WHERE label ISNULL OR label NOTNULL OR label NOT NULL",
    "SELECT title FROM albums WHERE label IS NOT DISTINCT FROM 'x' OR label IS DISTINCT FROM NULL",
    "SELECT name FROM artists WHERE EXISTS (SELECT 1 FROM albums WHERE albums.artist_id = artists.artist_id)",
    "SELECT name FROM artists WHERE NOT EXISTS(SELECT 1 FROM albums)",
    "SELECT name FROM artists WHERE name = 'x' COLLATE NOCASE ORDER BY name COLLATE binary",
    "SELECT (1, 2) = (1, 2)",
    "SELECT name FROM artists WHERE (artist_id, country) IN (SELECT artist_id, title FROM albums)",
    "SELECT 1 FROM artists AS a JOIN albums AS b ON(a.artist_id = b.artist_id)",
    "SELECT name FROM artists WHERE name = 'a' AND(artist_id < 5)",
    // CASE, CAST
    "SELECT CASE WHEN bpm > 120 THEN 'fast' WHEN bpm > 90 THEN 'medium' ELSE 'slow' END AS speed FROM tracks",
    "SELECT CASE genre WHEN 'pop' THEN 1 ELSE 0 END FROM tracks",
    "SELECT CAST(energy * 100 AS INTEGER), CAST(bpm AS TEXT), CAST('1.5' AS REAL), \
     CAST(bpm AS VARCHAR(10)), CAST(bpm AS DOUBLE PRECISION) FROM tracks",
    // Aggregates and functions
    "SELECT COUNT(*), COUNT(DISTINCT genre), SUM(streams), AVG(bpm), MIN(bpm), MAX(DISTINCT bpm), \
     TOTAL(streams), GROUP_CONCAT(title), GROUP_CONCAT(DISTINCT tracks.genre), \
     GROUP_CONCAT(title, '; ') FROM tracks JOIN streams USING (track_id)",
    "SELECT COUNT(*) FILTER (WHERE explicit = 1) FROM tracks",
    "SELECT ROUND(AVG(energy), 2), ROUND(energy), ABS(-1), LENGTH(tracks.title), \
     LOWER(tracks.title), UPPER(tracks.title), SUBSTR(tracks.title, 1, 3), \
     SUBSTRING(tracks.title, 2), COALESCE(label, 'none', 'x'), IFNULL(label, '-'), \
     NULLIF(label, ''), IIF(bpm > 100, 'fast', 'slow'), INSTR(tracks.title, 'a'), \
     REPLACE(tracks.title, 'a', 'b'), TRIM(label), LTRIM(label, ' '), RTRIM(label), \
     TYPEOF(bpm), RANDOM(), MAX(bpm, 100), MIN(bpm, 100, 50) \
     FROM tracks JOIN albums USING (album_id)",
    "SELECT strftime('%Y', month), strftime('%Y-%m', month, 'start of month'), date(month), \
     date('now', '-1 day'), time('12:00'), datetime('now'), julianday('now') - julianday(month), \
     printf('%d', streams), format('%s', country), unixepoch('now') FROM streams",
    // Joins and subqueries
    "SELECT a.name, COUNT(*) FROM artists a, albums b WHERE a.artist_id = b.artist_id GROUP BY a.name",
    "SELECT name FROM artists NATURAL JOIN albums",
    "SELECT * FROM artists INNER JOIN albums ON albums.artist_id = artists.artist_id \
     LEFT JOIN tracks ON tracks.album_id = albums.album_id \
     LEFT OUTER JOIN streams ON streams.track_id = tracks.track_id CROSS JOIN artists AS o",
    "SELECT * FROM artists JOIN albums USING (artist_id)",
    "SELECT * FROM artists RIGHT JOIN albums ON 1 FULL OUTER JOIN tracks ON 1",
    "SELECT x.name FROM (SELECT name FROM artists) x",
    "SELECT x.name FROM (SELECT name FROM artists) AS x JOIN (SELECT 1) y ON 1",
    "SELECT name FROM artists WHERE artist_id = (SELECT artist_id FROM albums ORDER BY release_year DESC LIMIT 1)",
    "SELECT (SELECT COUNT(*) FROM albums) AS n",
    // GROUP BY, HAVING, ORDER BY, LIMIT (result aliases where SQLite takes them)
    "SELECT genre, COUNT(*) AS n FROM tracks GROUP BY genre HAVING COUNT(*) > 5 ORDER BY n DESC, genre ASC",
    "SELECT genre, COUNT(*) AS n FROM tracks GROUP BY 1 HAVING n > 1",
    "SELECT title FROM tracks ORDER BY popularity DESC NULLS LAST, title NULLS FIRST LIMIT 10 OFFSET 5",
    "SELECT title FROM tracks LIMIT 5, 10",
    // Compound queries
    "SELECT name FROM artists UNION SELECT title FROM albums",
    "SELECT name FROM artists UNION ALL SELECT title FROM albums INTERSECT SELECT title FROM tracks \
     EXCEPT SELECT country FROM artists ORDER BY 1 LIMIT 3",
    // WITH
    "WITH top AS (SELECT track_id, SUM(streams) AS total FROM streams GROUP BY track_id) \
     SELECT tracks.title, top.total FROM top JOIN tracks ON tracks.track_id = top.track_id ORDER BY total DESC",
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10) SELECT i FROM n",
    "WITH a AS (SELECT 1), b AS MATERIALIZED (SELECT 2), c AS NOT MATERIALIZED (SELECT 3) SELECT * FROM a, b, c",
    "SELECT * FROM (WITH a AS (SELECT 1 AS one) SELECT one FROM a)",
    // Window functions
    "SELECT title, ROW_NUMBER() OVER (PARTITION BY genre ORDER BY popularity DESC) AS rn FROM tracks",
    "SELECT title, RANK() OVER (ORDER BY popularity), DENSE_RANK() OVER w, LAG(title) OVER (ORDER BY track_id), \
     LEAD(title, 2, 'none') OVER (ORDER BY track_id) FROM tracks WINDOW w AS (ORDER BY bpm)",
    "SELECT SUM(streams) OVER (PARTITION BY country ORDER BY month ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) FROM streams",
    "SELECT AVG(bpm) OVER (ORDER BY track_id RANGE BETWEEN 2 PRECEDING AND 2 FOLLOWING EXCLUDE CURRENT ROW), \
     COUNT(*) OVER (GROUPS 1 PRECEDING) FROM tracks",
    "SELECT NTILE(4) OVER (ORDER BY bpm), FIRST_VALUE(title) OVER (ORDER BY bpm), \
     NTH_VALUE(title, 2) OVER (ORDER BY bpm), PERCENT_RANK() OVER (), CUME_DIST() OVER () FROM tracks",
    // Literals and names
    "SELECT 42, 3.14, .5, 1e10, 2.5E-3, 0x1F, 'it''s', \"double quoted\", NULL, TRUE, FALSE, \
     CURRENT_DATE, CURRENT_TIME, CURRENT_TIMESTAMP, X'CAFE', x''",
    "SELECT name FROM artists WHERE country = \"Sweden\"",
    "SELECT \"name\", [country], `genre` FROM \"artists\"",
    "SELECT [artists].[name] FROM [artists]",
    "SELECT `a`.`name` FROM `artists` AS `a`",
    "SELECT NAME FROM ARTISTS WHERE Country = 'x' AND ARTISTS.Genre = 'y'",
    // A derived table's result names, in a nested SELECT
    "SELECT title FROM albums WHERE album_id IN (SELECT album_id FROM \
     (SELECT album_id, COUNT(*) AS n FROM tracks GROUP BY album_id) WHERE n > 10)",
    "SELECT (SELECT MAX(n) FROM (SELECT COUNT(*) AS n FROM tracks GROUP BY album_id))",
];

#[test]
fn schema_grammar_accepts_every_select_construct() {
    let checker = checker(demo_schema(), &SCHEMA);
    lark_test(&checker, DEMO_ACCEPTED, &[]);
    // And each example is SQL SQLite runs.
    let dir = common::temp_dir();
    let path = dir.path().join("music.db");
    build_demo_db(&path).expect("demo database builds");
    let db = Database::open(&path).expect("open demo");
    for sql in DEMO_ACCEPTED {
        if let Err(e) = db.execute(sql, &ExecLimits::default()) {
            panic!("{sql:?} does not run: {e}");
        }
    }
}

#[test]
fn schema_grammar_rejects_writes_and_malformed_queries() {
    let long = format!("SELECT '{}'", "x".repeat(201));
    let rejected: &[&str] = &[
        // Anything but one read-only query
        "INSERT INTO artists VALUES (1)",
        "UPDATE artists SET name = 'x'",
        "DELETE FROM artists",
        "DROP TABLE artists",
        "CREATE TABLE x (a)",
        "ATTACH DATABASE 'x.db' AS x",
        "DETACH DATABASE x",
        "PRAGMA table_info(artists)",
        "PRAGMA query_only = 0",
        "VACUUM",
        "REPLACE INTO artists VALUES (1)",
        "EXPLAIN SELECT 1",
        "BEGIN",
        "VALUES (1)",
        "(SELECT 1)",
        "SELECT 1; SELECT 2",
        "SELECT 1; DROP TABLE artists",
        "SELECT name FROM artists;;",
        "",
        "SELECT",
        // Column aliases need AS
        "SELECT country c FROM artists",
        // Clauses that filter or group rows need a FROM
        "SELECT name WHERE country = 'Sweden'",
        "SELECT COUNT(*) GROUP BY genre",
        "SELECT 1 HAVING 1",
        // Words run together
        "SELECTtitle FROM tracks",
        "SELECT * FROMtracks",
        "SELECT title FROM tracksWHERE bpm = 1",
        "SELECT title FROM tracks WHERE bpm = 1AND explicit = 1",
        "SELECT title FROM tracks LIMIT 1OFFSET 2",
        // Incomplete
        "SELECT name FROM artists WHERE",
        "SELECT name FROM artists WHERE name = 'a' AND",
        "SELECT name FROM artists WHERE name = 'a' ORDER",
        "SELECT name FROM artists LIMIT",
        "SELECT name FROM artists, albums AS",
        "SELECT 1 BETWEEN 0",
        // Literals
        "SELECT name FROM artists WHERE name = 'unterminated",
        "SELECT name FROM artists WHERE name = \"unterminated",
        "SELECT 'abc\ndef'",
        long.as_str(),
        "SELECT name FROM artists WHERE x'0' = 1",
        "SELECT name FROM artists WHERE name = ?",
        // Keywords are no aliases or CTE names
        "SELECT name FROM artists AS select",
        "SELECT name AS from FROM artists",
        "SELECT name FROM artists AS where",
        "SELECT name select FROM artists",
        "WITH select AS (SELECT 1) SELECT 1",
        // Comments, Unicode look-alike keywords, unknown collations and types
        "SELECT name FROM artists -- comment",
        "SELECT name FROM artists /* comment */",
        "SELECT 1 --1",
        "SELECT 1--1",
        "ſelect name FROM artists",
        "SELECT name FROM artists WHERE name = 'a' COLLATE foo",
        "SELECT CAST(bpm AS whatever) FROM tracks",
        "SELECT name FROM artists ORDER BY name DESC DESC",
        "SELECT 1 WHERE 1 = 1 ESCAPE 'x'",
        // `IN table` runs only for one-column tables; the grammar leaves it out.
        "SELECT name FROM artists WHERE artist_id IN albums",
        "SELECT 1 UNION (SELECT 2)",
        // Not schema tables
        "SELECT * FROM pragma_table_info('artists')",
        "SELECT name FROM main.artists",
        "SELECT name FROM artists INDEXED BY x",
    ];
    lark_test(&checker(demo_schema(), &SCHEMA), &[], rejected);
    // None of these is a read-only query in generic mode either.
    lark_test(&checker(demo_schema(), &GENERIC), &[], rejected);
    // In schema mode a column glued to a keyword is no name; in generic mode
    // `titleFROM` is an identifier.
    // In schema mode table aliases (and so qualifiers that are not table
    // names) are a letter and up to two digits, like T1.
    lark_test(
        &checker(demo_schema(), &SCHEMA),
        &[
            "SELECT T1.name FROM artists AS T1",
            "SELECT a.name FROM artists a",
            "SELECT t12.title FROM albums AS \"t12\"",
            "SELECT [x].title FROM albums AS [x]",
        ],
        &[
            "SELECT al.title FROM albums AS al",
            "SELECT name FROM artists AS t123",
            "SELECT the.name FROM artists AS the",
            "SELECT titleFROM tracks",
            "SELECT name FROM artists AS other_artists",
            "SELECT other_artists.name FROM artists AS other_artists",
            "SELECT name FROM (SELECT name FROM artists) AS named",
        ],
    );
}

#[test]
fn function_arities_are_enforced() {
    lark_test(
        &checker(demo_schema(), &SCHEMA),
        &[
            "SELECT ROUND(1.5), ROUND(1.55, 1), SUBSTR('abc', 2), SUBSTR('abc', 1, 2)",
            "SELECT COALESCE(NULL, 1), COALESCE(NULL, NULL, 1), MAX(1, 2, 3), CHAR(), CHAR(65, 66)",
            "SELECT LAG(bpm) OVER (), LAG(bpm, 1) OVER (), LAG(bpm, 1, 0) OVER () FROM tracks",
        ],
        &[
            "SELECT ROUND(1, 2, 3)",
            "SELECT ABS()",
            "SELECT ABS(1, 2)",
            "SELECT LENGTH()",
            "SELECT SUBSTR('x')",
            "SELECT SUBSTR('x', 1, 2, 3)",
            "SELECT COALESCE(1)",
            "SELECT IFNULL(1)",
            "SELECT NULLIF(1, 2, 3)",
            "SELECT IIF(1, 2)",
            "SELECT REPLACE('a', 'b')",
            "SELECT INSTR('a')",
            "SELECT RANDOM(1)",
            "SELECT TYPEOF()",
            "SELECT TRIM('a', 'b', 'c')",
            "SELECT strftime('%Y')",
            "SELECT date()",
            "SELECT printf()",
            "SELECT COUNT() FROM artists",
            "SELECT COUNT(DISTINCT *) FROM artists",
            "SELECT COUNT(1, 2) FROM artists",
            "SELECT SUM(1, 2) FROM artists",
            "SELECT GROUP_CONCAT(DISTINCT title, ',') FROM tracks",
            "SELECT ROW_NUMBER() FROM tracks",
            "SELECT ROW_NUMBER(1) OVER () FROM tracks",
            "SELECT LAG() OVER () FROM tracks",
            "SELECT LAG(1, 2, 3, 4) OVER () FROM tracks",
            "SELECT NTH_VALUE(title) OVER () FROM tracks",
            // Not compiled into the SQLite this crate links.
            "SELECT sqrt(4)",
            "SELECT nosuchfunction(1)",
        ],
    );
}

#[test]
fn schema_grammar_restricts_names_to_the_schema() {
    let outside = [
        "SELECT name FROM nosuchtable",
        "SELECT nosuchcolumn FROM artists",
        "SELECT artists.title FROM artists",
        "SELECT artists.nosuch FROM artists",
        "SELECT a.nosuch FROM artists AS a",
        "SELECT * FROM artists JOIN nosuchtable ON 1",
        "SELECT name FROM artists WHERE nosuch = 1",
    ];
    lark_test(&checker(demo_schema(), &SCHEMA), &[], &outside);
    lark_test(&checker(demo_schema(), &GENERIC), &outside, &[]);
}

#[test]
fn cte_names_are_tables_only_inside_with() {
    lark_test(
        &checker(demo_schema(), &SCHEMA),
        &[
            "WITH top AS (SELECT 1 AS x) SELECT * FROM top",
            "WITH top(x) AS (SELECT 1) SELECT top.x FROM top JOIN artists ON 1",
            "SELECT name FROM artists WHERE artist_id IN (WITH t AS (SELECT 1 AS id) SELECT id FROM t)",
        ],
        &[
            "SELECT * FROM top",
            "SELECT * FROM artists JOIN top ON 1",
            "SELECT name FROM artists WHERE artist_id IN (SELECT id FROM t)",
            // A WITH inside a subquery does not reach the outer query.
            "SELECT * FROM t, (WITH t AS (SELECT 1) SELECT * FROM t)",
        ],
    );
}

#[test]
fn derived_table_columns_only_in_nested_selects() {
    lark_test(
        &checker(demo_schema(), &SCHEMA),
        &[
            "SELECT (SELECT MAX(n) FROM (SELECT COUNT(*) AS n FROM tracks GROUP BY album_id))",
            "SELECT name FROM artists WHERE artist_id IN \
             (SELECT t.id FROM artists JOIN (SELECT artist_id AS id FROM albums) AS t ON t.id = artists.artist_id)",
            // A derived table's schema columns are fine at the top level.
            "SELECT x.name FROM (SELECT name FROM artists) AS x",
        ],
        &[
            // The top-level select list stays strict: a model cannot invent
            // a column there by promising a subquery later.
            "SELECT MAX(n) FROM (SELECT COUNT(*) AS n FROM tracks)",
            "SELECT t.n FROM (SELECT COUNT(*) AS n FROM tracks) AS t",
            // A nested SELECT without a derived table stays strict too.
            "SELECT (SELECT MAX(n) FROM tracks)",
        ],
    );
}

#[test]
fn string_literals_are_bounded_by_max_string_len() {
    let options = GrammarOptions {
        max_string_len: 5,
        ..SCHEMA
    };
    lark_test(
        &checker(demo_schema(), &options),
        &[
            "SELECT ''",
            "SELECT 'abcde'",
            "SELECT 'it''s'",
            "SELECT \"abcde\"",
            "SELECT name FROM artists WHERE name = 'Mara'",
        ],
        &["SELECT 'abcdef'", "SELECT \"abcdef\"", "SELECT 'it''s me'"],
    );
}

#[test]
fn generic_grammar_accepts_any_name_but_only_reads() {
    lark_test(
        &checker(demo_schema(), &GENERIC),
        &[
            "SELECT nosuchcolumn FROM nosuchtable",
            "SELECT t.x, t.* FROM whatever AS t",
            "SELECT * FROM top",
            "SELECT x FROM \"my table\" JOIN [other] ON 1 JOIN `third` USING (id)",
            "SELECT range FROM match WHERE virtual = 1",
            "SELECT MAX(n) FROM (SELECT COUNT(*) AS n FROM tracks)",
        ],
        &[
            "INSERT INTO t VALUES (1)",
            "SELECTx FROM t",
            "SELECT x FROM select",
            "SELECT 1; SELECT 2",
            "SELECT cast.x FROM cast",
        ],
    );
}

#[test]
fn mode_none_has_no_grammar() {
    let options = GrammarOptions {
        mode: GrammarMode::None,
        ..SCHEMA
    };
    assert_eq!(lark_grammar(demo_schema(), &options), None);
}

#[test]
fn schema_without_tables_still_compiles() {
    lark_test(
        &checker(&Schema { tables: Vec::new() }, &SCHEMA),
        &[
            "SELECT 1",
            "SELECT upper('a') AS x ORDER BY x",
            "WITH t(a) AS (SELECT 1) SELECT a FROM t",
        ],
        &["SELECT * FROM t", "SELECT a", "SELECT 1 WHERE 1 IN t"],
    );
}

/// A database whose names need every quoting style: spaces, dots, quotes,
/// brackets, keywords, keywords SQLite reads as names, non-ASCII letters.
fn odd_db(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("odd.db");
    let conn = Connection::open(&path).expect("create odd.db");
    conn.execute_batch(
        r#"
        CREATE TABLE songs (
          title TEXT, "top genre" TEXT, "beats.per.minute" INTEGER, "loudness.dB" REAL,
          "say ""hi""" TEXT, "order" INTEGER, "range" TEXT, "année" INTEGER, "a]b" TEXT,
          "back`tick" TEXT
        );
        CREATE TABLE "order" (id INTEGER PRIMARY KEY, "match" TEXT);
        CREATE TABLE "match" (id INTEGER, virtual TEXT);
        CREATE TABLE "cast" (role TEXT, "end" TEXT);
        CREATE VIEW "loud songs" AS SELECT title FROM songs WHERE "loudness.dB" > 0;
        "#,
    )
    .expect("fill odd.db");
    path
}

#[test]
fn names_match_in_every_quoting_style() {
    let dir = common::temp_dir();
    let path = odd_db(dir.path());
    let db = Database::open(&path).expect("open odd.db");
    let schema = db.schema().expect("odd schema");
    let accepted = [
        "SELECT title, \"top genre\", [top genre], `top genre`, \"TOP GENRE\" FROM songs",
        "SELECT \"beats.per.minute\", [loudness.dB], \"LOUDNESS.db\" FROM songs",
        "SELECT \"say \"\"hi\"\"\", `say \"hi\"`, [say \"hi\"] FROM songs",
        "SELECT \"order\", [order], songs.\"order\" FROM songs",
        "SELECT range, songs.range FROM songs",
        "SELECT \"année\", [ANNée] FROM songs",
        "SELECT \"a]b\", `a]b` FROM songs",
        "SELECT `back``tick`, \"back`tick\", [back`tick] FROM songs",
        "SELECT id, \"match\" FROM \"order\"",
        "SELECT o.id, m.virtual FROM [order] AS o JOIN match AS m ON m.id = o.id",
        "SELECT * FROM match WHERE virtual = 'F'",
        "SELECT role, t2.\"end\", t2.end FROM cast AS t2",
        "SELECT \"cast\".role FROM cast",
        "SELECT title FROM \"loud songs\"",
        "SELECT songs.title, o.id FROM songs, \"order\" AS o",
        "SELECT Songs.Title FROM SONGS",
    ];
    lark_test(
        &checker(&schema, &SCHEMA),
        &accepted,
        &[
            // Names that need quotes, written bare
            "SELECT top genre FROM songs",
            "SELECT beats.per.minute FROM songs",
            "SELECT id FROM order",
            "SELECT title FROM loud songs",
            // Brackets cannot hold `]`; non-ASCII letters do not fold
            "SELECT [a]b] FROM songs",
            "SELECT [ANNÉE] FROM songs",
            // A keyword that starts an expression is no table qualifier
            "SELECT cast.role FROM cast",
            // A column of another table, qualified by table name
            "SELECT songs.id FROM songs",
            "SELECT \"order\".title FROM \"order\"",
            "SELECT match.role FROM match",
        ],
    );
    for sql in accepted {
        if let Err(e) = db.execute(sql, &ExecLimits::default()) {
            panic!("{sql:?} does not run: {e}");
        }
    }
}

#[test]
fn rejection_reports_offset_and_message() {
    let lark = lark_grammar(demo_schema(), &SCHEMA).expect("grammar");
    assert_eq!(check_sql(&lark, "SELECT name FROM artists;"), Ok(()));
    let r = check_sql(&lark, "SELECT name FROM nosuch").unwrap_err();
    assert_eq!(r.offset, "SELECT name FROM ".len());
    assert!(r.message.contains("doesn't satisfy the grammar"), "{r}");
    let r = check_sql(&lark, "SELECT name FROM").unwrap_err();
    assert_eq!(r.offset, "SELECT name FROM".len());
    let r = check_sql("start: nope", "SELECT 1").unwrap_err();
    assert_eq!(r.offset, 0);
}

#[test]
fn gold_queries_of_the_test_set_are_accepted() {
    let text =
        std::fs::read_to_string(common::root().join("test-set.jsonl")).expect("test-set.jsonl");
    let checker = checker(demo_schema(), &SCHEMA);
    let mut wrong = Vec::new();
    let mut n = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let item: serde_json::Value = serde_json::from_str(line).expect("test-set line is JSON");
        let sql = item["sql"].as_str().expect("sql field");
        n += 1;
        if let Err(r) = checker.check(sql) {
            wrong.push(format!("{sql:?}: {r}"));
        }
    }
    assert!(n > 0, "test-set.jsonl has no queries");
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}

/// The committed list of corpus queries the schema-mode grammar rejects.
const REJECTIONS_FILE: &str = "tests/grammar-rejections.jsonl";

/// One corpus query the grammar rejected.
struct Rejected {
    source: String,
    id: i64,
    db_id: String,
    query: String,
    offset: usize,
    message: String,
}

/// Checks every corpus query with the grammar of its database; returns the
/// number of queries and the rejected ones.
fn corpus_coverage(data: &Path, options: &GrammarOptions) -> (usize, Vec<Rejected>) {
    let corpus = data.join("sqlite-select-corpus/corpus.jsonl");
    let text =
        std::fs::read_to_string(&corpus).unwrap_or_else(|e| panic!("{}: {e}", corpus.display()));
    let mut checkers: HashMap<String, GrammarChecker> = HashMap::new();
    let mut rejected = Vec::new();
    let mut total = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let row: serde_json::Value = serde_json::from_str(line).expect("corpus line is JSON");
        let field = |name: &str| row[name].as_str().unwrap_or_default().to_string();
        let db_path = field("db_path");
        let checker = checkers.entry(db_path.clone()).or_insert_with(|| {
            let schema = Database::open(&data.join(&db_path))
                .and_then(|db| db.schema())
                .unwrap_or_else(|e| panic!("{db_path}: {e}"));
            checker(&schema, options)
        });
        total += 1;
        let query = field("query");
        if let Err(r) = checker.check(&query) {
            rejected.push(Rejected {
                source: field("source"),
                id: row["id"].as_i64().unwrap_or(-1),
                db_id: field("db_id"),
                query,
                offset: r.offset,
                message: r.message,
            });
        }
    }
    (total, rejected)
}

fn report(mode: &str, total: usize, rejected: usize, started: Instant) -> f64 {
    let accepted = 100.0 * (total - rejected) as f64 / total as f64;
    println!(
        "grammar coverage ({mode} mode): {} of {total} corpus queries accepted ({accepted:.2}%), \
         {rejected} rejected, in {:.1} s",
        total - rejected,
        started.elapsed().as_secs_f64()
    );
    accepted
}

#[test]
fn corpus_coverage_schema_mode() {
    let Some(data) = common::shared_data() else {
        return;
    };
    let started = Instant::now();
    let (total, rejected) = corpus_coverage(&data, &SCHEMA);
    let accepted = report("schema", total, rejected.len(), started);

    let listed_text = std::fs::read_to_string(common::root().join(REJECTIONS_FILE))
        .unwrap_or_else(|e| panic!("{REJECTIONS_FILE}: {e}"));
    let mut listed: BTreeMap<(String, i64), String> = BTreeMap::new();
    for line in listed_text.lines().filter(|l| !l.trim().is_empty()) {
        let item: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{REJECTIONS_FILE}: {e}: {line}"));
        let category = item["category"].as_str().unwrap_or_default();
        assert!(
            !category.is_empty(),
            "{REJECTIONS_FILE}: no category: {line}"
        );
        let key = (
            item["source"].as_str().unwrap_or_default().to_string(),
            item["id"].as_i64().unwrap_or(-1),
        );
        listed.insert(key, category.to_string());
    }
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut unlisted = Vec::new();
    for r in &rejected {
        match listed.remove(&(r.source.clone(), r.id)) {
            Some(category) => {
                *counts.entry(category).or_default() += 1;
            }
            None => {
                let mut at = r.offset.min(r.query.len());
                while !r.query.is_char_boundary(at) {
                    at -= 1;
                }
                let entry = serde_json::json!({
                    "source": r.source, "id": r.id, "db_id": r.db_id,
                    "query": r.query, "category": "?",
                });
                unlisted.push(format!(
                    "{entry}\n    rejected at byte {}: {} ⟨here⟩{}\n    {}",
                    r.offset,
                    &r.query[..at],
                    &r.query[at..],
                    r.message
                ));
            }
        }
    }
    println!("rejections by category: {counts:?}");
    let stale: Vec<String> = listed
        .keys()
        .map(|(source, id)| format!("{source} {id}"))
        .collect();
    let mut problems = Vec::new();
    if !unlisted.is_empty() {
        problems.push(format!(
            "{} corpus queries are rejected but not listed in {REJECTIONS_FILE} \
             (fix the grammar, or add them with a category):\n{}",
            unlisted.len(),
            unlisted.join("\n")
        ));
    }
    if !stale.is_empty() {
        problems.push(format!(
            "these queries listed in {REJECTIONS_FILE} are now accepted; remove them from the file: {}",
            stale.join(", ")
        ));
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n\n"));
    assert!(
        accepted >= 99.0,
        "only {accepted:.2}% of the corpus accepted"
    );
}

#[test]
fn corpus_coverage_generic_mode() {
    let Some(data) = common::shared_data() else {
        return;
    };
    let started = Instant::now();
    let (total, rejected) = corpus_coverage(&data, &GENERIC);
    let accepted = report("generic", total, rejected.len(), started);
    for r in &rejected {
        println!(
            "  rejected: {} {} at byte {}: {}",
            r.source, r.id, r.offset, r.message
        );
    }
    assert!(
        accepted >= 99.0,
        "only {accepted:.2}% of the corpus accepted"
    );
}
