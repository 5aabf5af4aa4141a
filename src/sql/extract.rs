//! Pulling the SQL statement out of a model's reply. Models wrap SQL in
//! Markdown fences (sometimes unterminated), put prose before and after it,
//! and write keywords in any case; the executor wants exactly one statement.
//!
//! The search: prefer the contents of fenced blocks (`sql`-tagged first);
//! within a text, try each `SELECT`/`WITH` keyword as a start, cut the
//! statement at the first `;`, blank line or fence outside literals, and take
//! the first cut that SQLite can parse (an in-memory connection without
//! tables: "no such table" means the syntax was fine). When no cut parses,
//! the first one is returned anyway so that the executor reports SQLite's
//! syntax error.

use rusqlite::Connection;

use super::ident::is_keyword;
use super::lex::{self, End, ScanRules};

/// Extracts the SQL statement from a model reply: trimmed, without a
/// trailing `;`. `None` when the reply holds no statement.
///
/// ```
/// use sqlagent::sql::extract_sql;
/// let reply = "Here is the query:\n```sql\nSELECT name FROM artists;\n```\nIt lists names.";
/// assert_eq!(extract_sql(reply).as_deref(), Some("SELECT name FROM artists"));
/// ```
pub fn extract_sql(reply: &str) -> Option<String> {
    let blocks = fenced_blocks(reply);
    let mut ordered: Vec<&Block<'_>> = blocks.iter().filter(|b| b.kind == Lang::Sql).collect();
    ordered.extend(blocks.iter().filter(|b| b.kind == Lang::Untagged));
    ordered.extend(blocks.iter().filter(|b| b.kind == Lang::Other));

    let mut fallback: Option<String> = None;
    for block in &ordered {
        match find_statement(block.body, true) {
            Found::Parsed(s) => return Some(s),
            Found::Unparsed(s) => {
                fallback.get_or_insert(s);
            }
            Found::Nothing => {}
        }
    }
    if fallback.is_none() {
        // A fenced block with some other statement (INSERT, PRAGMA, …): hand
        // it on so the executor can refuse it by name.
        fallback = ordered
            .iter()
            .filter(|b| b.kind != Lang::Other)
            .find_map(|b| leading_statement(b.body));
    }
    if fallback.is_some() {
        return fallback;
    }
    match find_statement(reply, false) {
        Found::Parsed(s) | Found::Unparsed(s) => Some(s),
        Found::Nothing => leading_statement(reply),
    }
}

/// The SQL of a reply written under the grammar, where the whole reply is
/// one query: trimmed, without its final `;`. (Blank lines inside it are
/// part of the query, not a cut as in [`extract_sql`].)
///
/// ```
/// use sqlagent::sql::constrained_sql;
/// assert_eq!(constrained_sql("\nSELECT name\n\nFROM artists ;\n"), "SELECT name\n\nFROM artists");
/// ```
pub fn constrained_sql(reply: &str) -> String {
    let sql = reply.trim();
    sql.strip_suffix(';').unwrap_or(sql).trim_end().to_string()
}

/// What kind of code a fenced block claims to hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lang {
    Sql,
    Untagged,
    Other,
}

#[derive(Debug)]
struct Block<'a> {
    kind: Lang,
    body: &'a str,
}

/// Every ```` ``` ```` block in order; an unterminated last block runs to the
/// end of the reply.
fn fenced_blocks(reply: &str) -> Vec<Block<'_>> {
    const FENCE: &str = "```";
    let mut blocks = Vec::new();
    let mut rest = reply;
    while let Some(open) = rest.find(FENCE) {
        let after = &rest[open + FENCE.len()..];
        let tag_len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '+'))
            .unwrap_or(after.len());
        let tag = &after[..tag_len];
        let (kind, body_start) = match tag.to_ascii_lowercase().as_str() {
            "" => (Lang::Untagged, 0),
            "sql" | "sqlite" | "sqlite3" | "postgresql" | "postgres" | "mysql" | "tsql" => {
                (Lang::Sql, tag_len)
            }
            // A one-line fence such as ```SELECT 1```.
            "select" | "with" => (Lang::Untagged, 0),
            _ => (Lang::Other, tag_len),
        };
        let body_and_rest = &after[body_start..];
        let (body, next) = match body_and_rest.find(FENCE) {
            Some(close) => (
                &body_and_rest[..close],
                &body_and_rest[close + FENCE.len()..],
            ),
            None => (body_and_rest, ""),
        };
        blocks.push(Block { kind, body });
        rest = next;
    }
    blocks
}

enum Found {
    /// A statement SQLite can parse.
    Parsed(String),
    /// The first candidate, which SQLite cannot parse.
    Unparsed(String),
    /// No `SELECT`/`WITH` start at all.
    Nothing,
}

/// Tries each `SELECT`/`WITH` keyword in `text` as a statement start.
fn find_statement(text: &str, in_fence: bool) -> Found {
    let mut first: Option<String> = None;
    for start in keyword_starts(text) {
        let inline_code = !in_fence && text[..start].ends_with('`');
        let rules = ScanRules {
            blank_line: !in_fence,
            fence: !in_fence,
            backtick_ends: inline_code,
        };
        let primary = cut(&text[start..], rules);
        let mut tries = vec![primary];
        if in_fence {
            tries.push(cut(
                &text[start..],
                ScanRules {
                    blank_line: true,
                    ..rules
                },
            ));
        }
        if let Some(shorter) = cut_before_prose(primary) {
            tries.push(shorter);
        }
        for candidate in &tries {
            if !candidate.is_empty() && parses(candidate) {
                return Found::Parsed(candidate.to_string());
            }
        }
        if first.is_none() && !primary.is_empty() {
            first = Some(primary.to_string());
        }
    }
    match first {
        Some(s) => Found::Unparsed(s),
        None => Found::Nothing,
    }
}

/// Byte offsets of every whole-word `select` or `with` (any case); `with`
/// must be followed by whitespace.
fn keyword_starts(text: &str) -> Vec<usize> {
    let bytes = text.as_bytes();
    let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut starts = Vec::new();
    for (i, _) in text.char_indices() {
        if i > 0 && is_word(bytes[i - 1]) {
            continue;
        }
        for kw in ["select", "with"] {
            let end = i + kw.len();
            let Some(word) = bytes.get(i..end) else {
                continue;
            };
            if !word.eq_ignore_ascii_case(kw.as_bytes()) {
                continue;
            }
            let next = bytes.get(end).copied();
            let ok = match kw {
                "with" => next.is_some_and(|b| b.is_ascii_whitespace()),
                _ => next.is_none_or(|b| !is_word(b)),
            };
            if ok {
                starts.push(i);
            }
        }
    }
    starts
}

/// The statement at the start of `text` under `rules`, trimmed.
fn cut(text: &str, rules: ScanRules) -> &str {
    let end = match lex::scan_statement(text, rules) {
        End::Semicolon(i) | End::BlankLine(i) | End::Fence(i) => i,
        End::Eof => text.len(),
    };
    text[..end].trim()
}

/// `stmt` cut before its first line that reads like prose ("This query …",
/// "Explanation: …"), if it has one after the first line.
fn cut_before_prose(stmt: &str) -> Option<&str> {
    let mut offset = 0;
    for (n, line) in stmt.split_inclusive('\n').enumerate() {
        if n > 0 && looks_like_prose(line.trim_start()) {
            return Some(stmt[..offset].trim());
        }
        offset += line.len();
    }
    None
}

/// A capitalized word that is not a SQL keyword, followed by `:` or by a
/// space and a lowercase word.
fn looks_like_prose(line: &str) -> bool {
    let word_len = line
        .find(|c: char| !c.is_ascii_alphabetic())
        .unwrap_or(line.len());
    let word = &line[..word_len];
    let mut chars = word.chars();
    let capitalized = chars.next().is_some_and(|c| c.is_ascii_uppercase())
        && chars.clone().next().is_some()
        && chars.all(|c| c.is_ascii_lowercase());
    if !capitalized || is_keyword(word) {
        return false;
    }
    let after = &line[word_len..];
    after.starts_with(':')
        || (after.starts_with(' ') && after[1..].starts_with(|c: char| c.is_ascii_lowercase()))
}

/// The reply's first statement when it begins with a statement keyword
/// (`INSERT`, `PRAGMA`, …) rather than with prose.
fn leading_statement(text: &str) -> Option<String> {
    const STATEMENT_KEYWORDS: [&str; 16] = [
        "ALTER", "ANALYZE", "ATTACH", "BEGIN", "CREATE", "DELETE", "DETACH", "DROP", "EXPLAIN",
        "INSERT", "PRAGMA", "REINDEX", "REPLACE", "UPDATE", "VACUUM", "VALUES",
    ];
    let trimmed = text.trim_start();
    let first_word: String = trimmed
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect();
    if !STATEMENT_KEYWORDS.contains(&first_word.to_ascii_uppercase().as_str()) {
        return None;
    }
    let stmt = cut(
        trimmed,
        ScanRules {
            blank_line: true,
            fence: true,
            backtick_ends: false,
        },
    );
    (!stmt.is_empty()).then(|| stmt.to_string())
}

/// True unless SQLite reports a syntax error for `sql`. Names are not
/// checked: the connection has no tables.
fn parses(sql: &str) -> bool {
    thread_local! {
        static CHECKER: Option<Connection> = Connection::open_in_memory().ok();
    }
    CHECKER.with(|conn| {
        let Some(conn) = conn else {
            return true;
        };
        match conn.prepare(sql) {
            Ok(_) => true,
            Err(e) => {
                let msg = super::database::message_of(&e);
                !(msg.contains("syntax error")
                    || msg.contains("incomplete input")
                    || msg.contains("unrecognized token"))
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_from_typical_replies() {
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("bare statement", "SELECT * FROM songs", Some("SELECT * FROM songs")),
            ("trailing semicolon", "SELECT 1;", Some("SELECT 1")),
            (
                "sql fence",
                "```sql\nSELECT title FROM songs;\n```",
                Some("SELECT title FROM songs"),
            ),
            (
                "fence without language",
                "```\nSELECT title FROM songs\n```",
                Some("SELECT title FROM songs"),
            ),
            (
                "unterminated fence",
                "```sql\nSELECT title\nFROM songs\nLIMIT 5",
                Some("SELECT title\nFROM songs\nLIMIT 5"),
            ),
            (
                "prose, fence, explanation",
                "Sure! Here is the query:\n\n```sql\nSELECT COUNT(*) FROM artists;\n```\n\nThis counts the artists.",
                Some("SELECT COUNT(*) FROM artists"),
            ),
            (
                "leading prose on the same line",
                "Here is the query: SELECT name FROM artists WHERE country = 'Sweden'",
                Some("SELECT name FROM artists WHERE country = 'Sweden'"),
            ),
            (
                "explanation after the semicolon",
                "SELECT name FROM artists; This returns every artist name.",
                Some("SELECT name FROM artists"),
            ),
            (
                "explanation after a blank line",
                "SELECT name\nFROM artists\n\nThe query above lists names.",
                Some("SELECT name\nFROM artists"),
            ),
            (
                "explanation on the next line",
                "SELECT name FROM artists\nThis query lists the names.",
                Some("SELECT name FROM artists"),
            ),
            (
                "lowercase keywords",
                "select name from artists order by name",
                Some("select name from artists order by name"),
            ),
            (
                "with cte",
                "WITH top AS (SELECT * FROM tracks ORDER BY popularity DESC LIMIT 5)\nSELECT title FROM top;",
                Some("WITH top AS (SELECT * FROM tracks ORDER BY popularity DESC LIMIT 5)\nSELECT title FROM top"),
            ),
            (
                "semicolon inside a literal",
                "SELECT title FROM songs WHERE title = 'a;b'; -- done",
                Some("SELECT title FROM songs WHERE title = 'a;b'"),
            ),
            (
                "escaped quote and semicolon",
                "SELECT 'it''s; fine' AS x;",
                Some("SELECT 'it''s; fine' AS x"),
            ),
            (
                "prose using the word select first",
                "To select the longest tracks, run: SELECT title FROM tracks ORDER BY duration_s DESC LIMIT 3",
                Some("SELECT title FROM tracks ORDER BY duration_s DESC LIMIT 3"),
            ),
            (
                "prose starting with With",
                "With this query you get the names:\nSELECT name FROM artists",
                Some("SELECT name FROM artists"),
            ),
            (
                "inline code span",
                "Run `SELECT name FROM artists` to list them.",
                Some("SELECT name FROM artists"),
            ),
            (
                "sql block preferred over other blocks",
                "```python\nprint(1)\n```\n```sql\nSELECT 2\n```",
                Some("SELECT 2"),
            ),
            (
                "one-line fence",
                "```SELECT 1```",
                Some("SELECT 1"),
            ),
            (
                "quoted identifiers",
                "SELECT \"top genre\", [beats.per.minute] FROM songs;",
                Some("SELECT \"top genre\", [beats.per.minute] FROM songs"),
            ),
            (
                "comment before the statement in a fence",
                "```sql\n-- count rows\nSELECT COUNT(*) FROM t;\n```",
                Some("SELECT COUNT(*) FROM t"),
            ),
            (
                "non-select statement is handed on",
                "```sql\nDELETE FROM songs;\n```",
                Some("DELETE FROM songs"),
            ),
            ("bare write statement", "DROP TABLE songs;", Some("DROP TABLE songs")),
            (
                "broken sql is still returned",
                "SELECT FROM WHERE",
                Some("SELECT FROM WHERE"),
            ),
            ("no sql at all", "I don't know the answer.", None),
            ("empty reply", "", None),
            ("selection is not select", "The selection is empty.", None),
        ];
        for (name, reply, want) in cases {
            assert_eq!(extract_sql(reply).as_deref(), *want, "case: {name}");
        }
    }

    #[test]
    fn prose_lines() {
        assert!(looks_like_prose("This query counts rows."));
        assert!(looks_like_prose("Explanation: it counts."));
        assert!(!looks_like_prose("WHERE x = 1"));
        assert!(!looks_like_prose("Order by name"));
        assert!(!looks_like_prose("Name, Title"));
        assert!(!looks_like_prose("  a.b"));
    }
}
