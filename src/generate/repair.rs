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
/// case-insensitive, ignoring quotes around the parts of `a.b`).
pub fn locate(text: &str, name: &str) -> Option<usize> {
    let hay = text.to_ascii_lowercase();
    let needle = name.to_ascii_lowercase();
    if let Some(at) = hay.rfind(&needle) {
        return Some(at);
    }
    // `T1.name` may be written `T1."name"` or `[T1].[name]`: fall back to
    // the qualifier, then to the last part.
    let mut parts = needle.split('.');
    let first = parts.next().unwrap_or_default();
    let last = needle.rsplit('.').next().unwrap_or_default();
    for part in [first, last] {
        if !part.is_empty() {
            if let Some(at) = hay.rfind(part) {
                return Some(at);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn culprits_from_sqlite_messages() {
        let cases = [
            ("no such column: T1.name", Some("T1.name")),
            ("no such column: bogus", Some("bogus")),
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
}
