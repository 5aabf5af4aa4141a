//! Identifier quoting. Names are written bare when SQLite would read them
//! back unchanged, so prompts stay readable (`songs.title`), and quoted
//! otherwise (`"top genre"`, `"beats.per.minute"`, `"order"`).

/// Every SQLite keyword (<https://sqlite.org/lang_keywords.html>), sorted.
/// A name equal to one of these (in any case) must be quoted.
pub const SQLITE_KEYWORDS: [&str; 147] = [
    "ABORT",
    "ACTION",
    "ADD",
    "AFTER",
    "ALL",
    "ALTER",
    "ALWAYS",
    "ANALYZE",
    "AND",
    "AS",
    "ASC",
    "ATTACH",
    "AUTOINCREMENT",
    "BEFORE",
    "BEGIN",
    "BETWEEN",
    "BY",
    "CASCADE",
    "CASE",
    "CAST",
    "CHECK",
    "COLLATE",
    "COLUMN",
    "COMMIT",
    "CONFLICT",
    "CONSTRAINT",
    "CREATE",
    "CROSS",
    "CURRENT",
    "CURRENT_DATE",
    "CURRENT_TIME",
    "CURRENT_TIMESTAMP",
    "DATABASE",
    "DEFAULT",
    "DEFERRABLE",
    "DEFERRED",
    "DELETE",
    "DESC",
    "DETACH",
    "DISTINCT",
    "DO",
    "DROP",
    "EACH",
    "ELSE",
    "END",
    "ESCAPE",
    "EXCEPT",
    "EXCLUDE",
    "EXCLUSIVE",
    "EXISTS",
    "EXPLAIN",
    "FAIL",
    "FILTER",
    "FIRST",
    "FOLLOWING",
    "FOR",
    "FOREIGN",
    "FROM",
    "FULL",
    "GENERATED",
    "GLOB",
    "GROUP",
    "GROUPS",
    "HAVING",
    "IF",
    "IGNORE",
    "IMMEDIATE",
    "IN",
    "INDEX",
    "INDEXED",
    "INITIALLY",
    "INNER",
    "INSERT",
    "INSTEAD",
    "INTERSECT",
    "INTO",
    "IS",
    "ISNULL",
    "JOIN",
    "KEY",
    "LAST",
    "LEFT",
    "LIKE",
    "LIMIT",
    "MATCH",
    "MATERIALIZED",
    "NATURAL",
    "NO",
    "NOT",
    "NOTHING",
    "NOTNULL",
    "NULL",
    "NULLS",
    "OF",
    "OFFSET",
    "ON",
    "OR",
    "ORDER",
    "OTHERS",
    "OUTER",
    "OVER",
    "PARTITION",
    "PLAN",
    "PRAGMA",
    "PRECEDING",
    "PRIMARY",
    "QUERY",
    "RAISE",
    "RANGE",
    "RECURSIVE",
    "REFERENCES",
    "REGEXP",
    "REINDEX",
    "RELEASE",
    "RENAME",
    "REPLACE",
    "RESTRICT",
    "RETURNING",
    "RIGHT",
    "ROLLBACK",
    "ROW",
    "ROWS",
    "SAVEPOINT",
    "SELECT",
    "SET",
    "TABLE",
    "TEMP",
    "TEMPORARY",
    "THEN",
    "TIES",
    "TO",
    "TRANSACTION",
    "TRIGGER",
    "UNBOUNDED",
    "UNION",
    "UNIQUE",
    "UPDATE",
    "USING",
    "VACUUM",
    "VALUES",
    "VIEW",
    "VIRTUAL",
    "WHEN",
    "WHERE",
    "WINDOW",
    "WITH",
    "WITHOUT",
];

/// True when `name` is a SQLite keyword (case-insensitive).
pub fn is_keyword(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    SQLITE_KEYWORDS.binary_search(&upper.as_str()).is_ok()
}

/// Writes `name` as it must appear in SQL: unchanged when it matches
/// `[A-Za-z_][A-Za-z0-9_]*` and is not a keyword, otherwise double-quoted
/// with inner `"` doubled.
///
/// ```
/// use sqlagent::sql::quote_ident;
/// assert_eq!(quote_ident("songs"), "songs");
/// assert_eq!(quote_ident("top genre"), "\"top genre\"");
/// assert_eq!(quote_ident("order"), "\"order\"");
/// ```
pub fn quote_ident(name: &str) -> String {
    if is_plain(name) && !is_keyword(name) {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// `[A-Za-z_][A-Za-z0-9_]*`: a name SQLite reads without quotes (unless it
/// is a keyword).
pub fn is_plain(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// How a name reads as words, lowercase: `top genre`, `beats.per.minute` →
/// `beats per minute`, `InvoiceLine` → `invoice line`, `SupportRepId` →
/// `support rep id`, `XMLData` → `xml data`. Question synthesis and
/// schema focus read names this way.
pub fn name_words(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if matches!(c, '_' | '.' | '-' | ' ') {
            out.push(' ');
            continue;
        }
        let prev = i.checked_sub(1).map(|p| chars[p]);
        let next = chars.get(i + 1).copied();
        // A new word at `aB`, and at the `C` of `ABCd` (an acronym's end).
        let starts_word = c.is_uppercase()
            && prev.is_some_and(|p| {
                p.is_lowercase()
                    || p.is_ascii_digit()
                    || (p.is_uppercase() && next.is_some_and(char::is_lowercase))
            });
        if starts_word {
            out.push(' ');
        }
        out.extend(c.to_lowercase());
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_when_needed() {
        let cases = [
            ("songs", "songs"),
            ("_private", "_private"),
            ("track_id2", "track_id2"),
            ("top genre", "\"top genre\""),
            ("beats.per.minute", "\"beats.per.minute\""),
            ("loudness.dB", "\"loudness.dB\""),
            ("2020", "\"2020\""),
            ("", "\"\""),
            ("say \"hi\"", "\"say \"\"hi\"\"\""),
            ("order", "\"order\""),
            ("Group", "\"Group\""),
            ("select", "\"select\""),
            ("current_timestamp", "\"current_timestamp\""),
            ("année", "\"année\""),
            ("year", "year"),
            ("title", "title"),
        ];
        for (name, want) in cases {
            assert_eq!(quote_ident(name), want, "{name}");
        }
    }

    #[test]
    fn keyword_list_is_sorted_and_unique() {
        assert!(SQLITE_KEYWORDS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn keyword_list_matches_the_linked_sqlite() {
        use rusqlite::ffi;
        use std::os::raw::{c_char, c_int};
        // SAFETY: sqlite3_keyword_count/sqlite3_keyword_name only read
        // SQLite's static keyword table; the index is within the count.
        let mut from_sqlite = Vec::new();
        unsafe {
            let n = ffi::sqlite3_keyword_count();
            for i in 0..n {
                let mut ptr: *const c_char = std::ptr::null();
                let mut len: c_int = 0;
                if ffi::sqlite3_keyword_name(i, &mut ptr, &mut len) == ffi::SQLITE_OK {
                    let bytes = std::slice::from_raw_parts(ptr.cast::<u8>(), len as usize);
                    from_sqlite.push(String::from_utf8_lossy(bytes).into_owned());
                }
            }
        }
        from_sqlite.sort();
        let ours: Vec<String> = SQLITE_KEYWORDS.iter().map(|s| s.to_string()).collect();
        assert_eq!(ours, from_sqlite);
    }

    #[test]
    fn names_read_as_words() {
        for (name, w) in [
            ("InvoiceLine", "invoice line"),
            ("SupportRepId", "support rep id"),
            ("BillingPostalCode", "billing postal code"),
            ("XMLData", "xml data"),
            ("top genre", "top genre"),
            ("beats.per.minute", "beats per minute"),
            ("student_enrolment_id", "student enrolment id"),
            ("Address2", "address2"),
        ] {
            assert_eq!(name_words(name), w, "{name}");
        }
    }
}
