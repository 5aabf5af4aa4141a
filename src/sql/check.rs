//! Why a query failed SQLite's `prepare`, as data: what SQLite blamed (a
//! column, a table, a function…), its name, and where in the query that
//! name stands, so that a caller can act on the failure (decoding backs up
//! to the name) without reading SQLite's message text.

use serde::Serialize;

/// What kind of thing SQLite blamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Problem {
    /// `no such column: x`.
    NoSuchColumn,
    /// `no such table: x`.
    NoSuchTable,
    /// `ambiguous column name: x`.
    AmbiguousColumn,
    /// `misuse of aggregate: max()`.
    MisusedAggregate,
    /// `wrong number of arguments to function round()`.
    WrongArgumentCount,
    /// `no such function: x`.
    NoSuchFunction,
    /// Not one read-only statement (a write, several statements, none).
    NotReadOnly,
    /// A syntax error or incomplete input.
    Syntax,
    /// Anything else SQLite rejects.
    Other,
}

/// A query that did not prepare.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckFailure {
    /// What went wrong.
    pub problem: Problem,
    /// The name SQLite blamed, as it wrote it (`T1.name`, `max`), if any.
    pub name: Option<String>,
    /// Byte offset in the query where the last mention of that name starts
    /// (`None` when nothing is blamed or it cannot be found).
    pub at: Option<usize>,
    /// SQLite's own message, for people.
    pub message: String,
}

impl std::fmt::Display for CheckFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CheckFailure {}

impl CheckFailure {
    /// The failure of `sql` that SQLite reported with `message`.
    pub fn from_message(sql: &str, message: &str) -> Self {
        let (problem, name) = blamed(message);
        let at = name.as_deref().and_then(|n| locate(sql, n));
        CheckFailure {
            problem,
            name,
            at,
            message: message.to_string(),
        }
    }

    /// A statement refused before SQLite looked at its names.
    pub fn not_read_only(message: impl Into<String>) -> Self {
        CheckFailure {
            problem: Problem::NotReadOnly,
            name: None,
            at: None,
            message: message.into(),
        }
    }

    /// Whether `sql` failed only because it ends too early: it names
    /// columns but has no FROM clause yet, so more text can fix it.
    pub fn lacks_from_clause(&self, sql: &str) -> bool {
        let has_from = sql
            .to_ascii_lowercase()
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .any(|word| word == "from");
        self.problem == Problem::NoSuchColumn && !has_from
    }
}

/// What SQLite's `prepare` message blames and the name it points at:
/// `no such column: T1.name` → (`NoSuchColumn`, `T1.name`).
fn blamed(message: &str) -> (Problem, Option<String>) {
    const PREFIXES: [(&str, Problem); 7] = [
        ("no such column: ", Problem::NoSuchColumn),
        ("no such table: ", Problem::NoSuchTable),
        ("ambiguous column name: ", Problem::AmbiguousColumn),
        ("misuse of aggregate: ", Problem::MisusedAggregate),
        ("misuse of aggregate function ", Problem::MisusedAggregate),
        (
            "wrong number of arguments to function ",
            Problem::WrongArgumentCount,
        ),
        ("no such function: ", Problem::NoSuchFunction),
    ];
    for (prefix, problem) in PREFIXES {
        if let Some(at) = message.find(prefix) {
            let rest = &message[at + prefix.len()..];
            let name: String = rest
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != '(' && *c != ')')
                .collect();
            let name = name.trim_end_matches([',', ';']).to_string();
            return (problem, (!name.is_empty()).then_some(name));
        }
    }
    let syntax = message.contains("syntax error") || message.contains("incomplete input");
    let problem = if syntax {
        Problem::Syntax
    } else {
        Problem::Other
    };
    (problem, None)
}

/// Byte offset in `text` where the last mention of `name` starts (ASCII
/// case-insensitive, ignoring quotes around the parts of `a.b`). A mention
/// is a whole word (`age` is not found inside `pet_age`) unless the name
/// occurs only inside longer words.
pub fn locate(text: &str, name: &str) -> Option<usize> {
    let hay = text.to_ascii_lowercase();
    let needle = name.to_ascii_lowercase();
    // `T1.name` may be written `T1."name"` or `[T1].[name]`: fall back to
    // the qualifier, then to the last part.
    let first = needle.split('.').next().unwrap_or_default();
    let last = needle.rsplit('.').next().unwrap_or_default();
    let candidates = [needle.as_str(), first, last];
    let found = |whole: bool| {
        candidates
            .iter()
            .filter(|part| !part.is_empty())
            .find_map(|part| last_mention(&hay, part, whole))
    };
    found(true).or_else(|| found(false))
}

/// Start of the last occurrence of `needle` in `hay`; with `whole`, only
/// one not touching identifier characters on either side.
fn last_mention(hay: &str, needle: &str, whole: bool) -> Option<usize> {
    let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80;
    let bytes = hay.as_bytes();
    hay.rmatch_indices(needle).map(|(at, _)| at).find(|&at| {
        let end = at + needle.len();
        !whole
            || ((at == 0 || !is_word(bytes[at - 1]))
                && (end == bytes.len() || !is_word(bytes[end])))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_sqlite_messages_blame() {
        let cases = [
            (
                "no such column: T1.name",
                Problem::NoSuchColumn,
                Some("T1.name"),
            ),
            (
                "no such column: bogus",
                Problem::NoSuchColumn,
                Some("bogus"),
            ),
            (
                "no such column: \"genres\" - should this be a string literal in single-quotes?",
                Problem::NoSuchColumn,
                Some("\"genres\""),
            ),
            ("no such table: songz", Problem::NoSuchTable, Some("songz")),
            (
                "ambiguous column name: genre",
                Problem::AmbiguousColumn,
                Some("genre"),
            ),
            (
                "misuse of aggregate: max()",
                Problem::MisusedAggregate,
                Some("max"),
            ),
            (
                "wrong number of arguments to function round()",
                Problem::WrongArgumentCount,
                Some("round"),
            ),
            ("near \"FROM\": syntax error", Problem::Syntax, None),
            (
                "1st ORDER BY term out of range - should be between 1 and 2",
                Problem::Other,
                None,
            ),
        ];
        for (msg, problem, name) in cases {
            assert_eq!(blamed(msg), (problem, name.map(String::from)), "{msg}");
        }
    }

    #[test]
    fn a_failure_says_where_the_blamed_name_stands() {
        let sql = "SELECT name, bogus FROM artists";
        let f = CheckFailure::from_message(sql, "no such column: bogus");
        assert_eq!(f.at, Some(13));
        assert_eq!(f.name.as_deref(), Some("bogus"));
        assert!(!f.lacks_from_clause(sql));
        let f = CheckFailure::from_message("SELECT title", "no such column: title");
        assert!(f.lacks_from_clause("SELECT title"));
        assert!(f.lacks_from_clause("select x, fromage"));
        let f = CheckFailure::from_message("SELECT 1 +", "incomplete input");
        assert_eq!((f.problem, f.at), (Problem::Syntax, None));
        assert!(!f.lacks_from_clause("SELECT 1 +"));
    }

    #[test]
    fn locates_the_last_mention() {
        let sql = "SELECT name, t1.name FROM artists WHERE T1.Name = 'x'";
        assert_eq!(locate(sql, "T1.name"), Some(sql.rfind("T1.Name").unwrap()));
        assert_eq!(locate(sql, "t1.\"name\""), Some(sql.rfind("T1").unwrap()));
        assert_eq!(locate(sql, "zzz"), None);
    }

    #[test]
    fn a_mention_is_a_whole_word() {
        let sql = "SELECT age, weight FROM pets WHERE pet_age > 10";
        assert_eq!(locate(sql, "age"), Some(7), "not inside pet_age");
        assert_eq!(locate(sql, "PET_AGE"), Some(sql.rfind("pet_age").unwrap()));
        // Only inside a longer word: still found there.
        assert_eq!(locate("SELECT pet_age FROM pets", "age"), Some(11));
        let quoted = "SELECT \"Age\" FROM pets WHERE pet_age = 1";
        assert_eq!(locate(quoted, "age"), Some(8));
    }
}
