//! Just enough of SQLite's lexical rules to find where a statement ends:
//! string literals, quoted identifiers and comments can all hide a `;` that
//! does not end anything. Used to refuse multi-statement input before it
//! reaches SQLite, and to cut a statement out of a model's reply.

/// Why [`scan_statement`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// At a `;` outside literals and comments (the index of the `;`).
    Semicolon(usize),
    /// At the start of a blank line outside literals and comments.
    BlankLine(usize),
    /// At a line that starts a Markdown fence (three backticks).
    Fence(usize),
    /// At the end of the input.
    Eof,
}

/// Rules for where a statement may end besides `;` and the end of input.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ScanRules {
    /// A blank line ends the statement (model replies put prose after one).
    pub blank_line: bool,
    /// A line starting with three backticks ends the statement.
    pub fence: bool,
    /// A backtick ends the statement (SQL quoted as inline Markdown code)
    /// instead of opening a quoted identifier.
    pub backtick_ends: bool,
}

/// Scans `sql` from the start and reports where the first statement ends.
/// Unterminated literals and comments run to the end of the input.
pub(crate) fn scan_statement(sql: &str, rules: ScanRules) -> End {
    let bytes = sql.as_bytes();
    let mut i = 0;
    let mut line_start = true;
    let mut line_blank_so_far = true;
    while i < bytes.len() {
        let b = bytes[i];
        if line_start && rules.fence && bytes[i..].starts_with(b"```") {
            return End::Fence(i);
        }
        match b {
            b'\n' => {
                if rules.blank_line && line_blank_so_far && !line_start_is_input_start(i, bytes) {
                    return End::BlankLine(i);
                }
                line_start = true;
                line_blank_so_far = true;
                i += 1;
                continue;
            }
            b' ' | b'\t' | b'\r' => {
                i += 1;
                continue;
            }
            b';' => return End::Semicolon(i),
            b'\'' | b'"' | b'[' => i = skip_quoted(bytes, i),
            b'`' if rules.backtick_ends => return End::Fence(i),
            b'`' => i = skip_quoted(bytes, i),
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i = match find(&bytes[i + 2..], b"*/") {
                    Some(n) => i + 2 + n + 2,
                    None => bytes.len(),
                };
            }
            _ => i += 1,
        }
        line_start = false;
        line_blank_so_far = false;
    }
    End::Eof
}

/// True when only whitespace precedes position `i` (a blank "line" at the
/// very start is leading whitespace, not a separator).
fn line_start_is_input_start(i: usize, bytes: &[u8]) -> bool {
    bytes[..i].iter().all(|b| b.is_ascii_whitespace())
}

/// Skips a quoted token starting at `start` (`'…'`, `"…"`, `` `…` `` with
/// doubled-quote escapes, or `[…]`), returning the index after it.
pub(crate) fn skip_quoted(bytes: &[u8], start: usize) -> usize {
    let close = match bytes[start] {
        b'[' => b']',
        q => q,
    };
    let mut i = start + 1;
    while i < bytes.len() {
        if bytes[i] == close {
            if close != b']' && bytes.get(i + 1) == Some(&close) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    bytes.len()
}

/// The words (ASCII letters, digits, `_`) of `sql` outside literals,
/// quoted names, comments and parentheses, upper-cased: the clauses of the
/// outermost statement.
pub(crate) fn top_level_words(sql: &str) -> Vec<String> {
    let bytes = sql.as_bytes();
    let mut words = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'\'' | b'"' | b'[' | b'`' => i = skip_quoted(bytes, i),
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i = match find(&bytes[i + 2..], b"*/") {
                    Some(n) => i + 2 + n + 2,
                    None => bytes.len(),
                };
            }
            b'(' => {
                depth += 1;
                i += 1;
            }
            b')' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            b if b.is_ascii_alphanumeric() || b == b'_' => {
                let start = i;
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                if depth == 0 {
                    words.push(sql[start..i].to_ascii_uppercase());
                }
            }
            _ => i += 1,
        }
    }
    words
}

/// Byte offset of the first `needle` in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// True when `sql` holds nothing but whitespace and comments.
pub(crate) fn is_blank(sql: &str) -> bool {
    let bytes = sql.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b if b.is_ascii_whitespace() => i += 1,
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => match find(&bytes[i + 2..], b"*/") {
                Some(n) => i += 2 + n + 2,
                None => return true,
            },
            _ => return false,
        }
    }
    true
}

/// Splits off the first statement: returns it (without its `;`) when the rest
/// of the input is only whitespace, comments and `;`s, or `None` when a second
/// statement follows.
pub(crate) fn single_statement(sql: &str) -> Option<&str> {
    match scan_statement(sql, ScanRules::default()) {
        End::Eof => Some(sql),
        End::Semicolon(i) => {
            let rest = &sql[i + 1..];
            if rest.split(';').all(is_blank) {
                Some(&sql[..i])
            } else {
                None
            }
        }
        // Not produced with default rules; treat as "ends here".
        End::BlankLine(i) | End::Fence(i) => Some(&sql[..i]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semicolons_inside_literals_and_comments_do_not_end_a_statement() {
        let cases: &[(&str, End)] = &[
            ("SELECT 1", End::Eof),
            ("SELECT 1; SELECT 2", End::Semicolon(8)),
            ("SELECT ';'", End::Eof),
            ("SELECT 'it''s;'", End::Eof),
            ("SELECT \"a;b\" FROM t", End::Eof),
            ("SELECT [a;b] FROM t", End::Eof),
            ("SELECT `a;b` FROM t", End::Eof),
            ("SELECT 1 -- ; no\n", End::Eof),
            ("SELECT 1 /* ; */ + 2", End::Eof),
            ("SELECT 'unterminated;", End::Eof),
            ("SELECT 1 /* unterminated ;", End::Eof),
        ];
        for (sql, want) in cases {
            assert_eq!(scan_statement(sql, ScanRules::default()), *want, "{sql}");
        }
    }

    #[test]
    fn blank_line_and_fence_rules() {
        let rules = ScanRules {
            blank_line: true,
            fence: true,
            backtick_ends: false,
        };
        assert_eq!(
            scan_statement("SELECT 1\n\nThis returns one.", rules),
            End::BlankLine(9)
        );
        assert_eq!(
            scan_statement("SELECT 1\n  \t\nprose", rules),
            End::BlankLine(12)
        );
        assert_eq!(scan_statement("SELECT 1\n```\n", rules), End::Fence(9));
        assert_eq!(
            scan_statement("SELECT 'a\n\nb' FROM t", rules),
            End::Eof,
            "a blank line inside a literal is data"
        );
    }

    #[test]
    fn single_statement_allows_trailing_semicolons_and_comments() {
        let cases: &[(&str, Option<&str>)] = &[
            ("SELECT 1", Some("SELECT 1")),
            ("SELECT 1;", Some("SELECT 1")),
            ("SELECT 1; -- done\n", Some("SELECT 1")),
            ("SELECT 1;;  ", Some("SELECT 1")),
            ("SELECT 1; /* c */", Some("SELECT 1")),
            ("SELECT 1; SELECT 2", None),
            ("SELECT 1; DROP TABLE t;", None),
            ("SELECT 'a;b'", Some("SELECT 'a;b'")),
        ];
        for (sql, want) in cases {
            assert_eq!(single_statement(sql), *want, "{sql}");
        }
    }

    #[test]
    fn blank_detection() {
        assert!(is_blank(""));
        assert!(is_blank("  \n -- x\n /* y */ "));
        assert!(!is_blank(" -- x\n SELECT 1"));
    }
}
