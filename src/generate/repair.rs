//! Where a finished query went wrong, from SQLite's message: the text of the
//! offending name, so decoding can back up to it and choose differently.

/// The name SQLite's `prepare` error points at, if it names one:
/// `no such column: T1.name` → `T1.name`, `no such table: x` → `x`,
/// `ambiguous column name: id` → `id`, `misuse of aggregate: max()` →
/// `max`, `wrong number of arguments to function round()` → `round`.
pub fn culprit(message: &str) -> Option<String> {
    const PREFIXES: [&str; 7] = [
        "no such column: ",
        "no such table: ",
        "ambiguous column name: ",
        "misuse of aggregate: ",
        "misuse of aggregate function ",
        "wrong number of arguments to function ",
        "no such function: ",
    ];
    for p in PREFIXES {
        if let Some(at) = message.find(p) {
            let rest = &message[at + p.len()..];
            let name: String = rest
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != '(' && *c != ')')
                .collect();
            let name = name.trim_end_matches([',', ';']).to_string();
            if !name.is_empty() {
                return Some(name);
            }
        }
    }
    None
}

/// Whether the text failed only because it ended too early: it names
/// columns but has no FROM clause yet, so continuing can fix it.
pub fn needs_more(text: &str, message: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    let has_from = lower
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .any(|word| word == "from");
    message.contains("no such column") && !has_from
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
    fn culprits_from_sqlite_messages() {
        let cases = [
            ("no such column: T1.name", Some("T1.name")),
            ("no such column: bogus", Some("bogus")),
            (
                "no such column: \"genres\" - should this be a string literal in single-quotes?",
                Some("\"genres\""),
            ),
            ("no such table: songz", Some("songz")),
            ("ambiguous column name: genre", Some("genre")),
            ("misuse of aggregate: max()", Some("max")),
            (
                "wrong number of arguments to function round()",
                Some("round"),
            ),
            ("near \"FROM\": syntax error", None),
            (
                "1st ORDER BY term out of range - should be between 1 and 2",
                None,
            ),
        ];
        for (msg, want) in cases {
            assert_eq!(culprit(msg).as_deref(), want, "{msg}");
        }
    }

    #[test]
    fn a_query_without_from_needs_more() {
        assert!(needs_more("SELECT title", "no such column: title"));
        assert!(!needs_more(
            "SELECT title FROM tracks",
            "no such column: title"
        ));
        assert!(!needs_more("SELECT 1 +", "incomplete input"));
        assert!(needs_more("select x, fromage", "no such column: x"));
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
