//! Names as regexes: every spelling SQLite accepts for a table or column
//! name, matched case-insensitively (ASCII only, as SQLite compares names),
//! and the rules that put the schema's names where the query grammar asks
//! for a table or a column.

use crate::sql::{is_keyword, Schema};

/// A table alias in schema mode, and so any qualifier that is not a table
/// name (outside WITH): a letter and up to two digits, such as `T1`, `t2`
/// or `a` (bare or quoted), the shape of nearly every alias in the corpus.
/// Free names at every expression start would let almost any word token
/// through there, which makes full masks slow and lets a model qualify
/// columns with words it invents.
const SHORT_ALIAS: &str =
    r#"/[A-Za-z][0-9]{0,2}|"[A-Za-z][0-9]{0,2}"|\[[A-Za-z][0-9]{0,2}\]|`[A-Za-z][0-9]{0,2}`/"#;

/// The longest identifier an alias may be (characters after the first).
const MAX_IDENT_TAIL: usize = 63;

/// Keywords SQLite's parser reads as identifiers where the keyword cannot
/// stand (its `%fallback ID` list): a table named `match` or a column named
/// `range` can be written bare.
const FALLBACK_KEYWORDS: &[&str] = &[
    "ABORT",
    "ACTION",
    "AFTER",
    "ALWAYS",
    "ANALYZE",
    "ASC",
    "ATTACH",
    "BEFORE",
    "BEGIN",
    "BY",
    "CASCADE",
    "CAST",
    "COLUMN",
    "CONFLICT",
    "CURRENT",
    "CURRENT_DATE",
    "CURRENT_TIME",
    "CURRENT_TIMESTAMP",
    "DATABASE",
    "DEFERRED",
    "DESC",
    "DETACH",
    "DO",
    "EACH",
    "END",
    "EXCLUDE",
    "EXCLUSIVE",
    "EXPLAIN",
    "FAIL",
    "FIRST",
    "FOLLOWING",
    "FOR",
    "GENERATED",
    "GLOB",
    "GROUPS",
    "IF",
    "IGNORE",
    "IMMEDIATE",
    "INITIALLY",
    "INSTEAD",
    "KEY",
    "LAST",
    "LIKE",
    "MATCH",
    "MATERIALIZED",
    "NO",
    "NULLS",
    "OF",
    "OFFSET",
    "OTHERS",
    "PARTITION",
    "PLAN",
    "PRAGMA",
    "PRECEDING",
    "QUERY",
    "RAISE",
    "RANGE",
    "RECURSIVE",
    "REGEXP",
    "REINDEX",
    "RELEASE",
    "RENAME",
    "REPLACE",
    "RESTRICT",
    "ROLLBACK",
    "ROW",
    "ROWS",
    "SAVEPOINT",
    "TEMP",
    "TEMPORARY",
    "TIES",
    "TRIGGER",
    "UNBOUNDED",
    "VACUUM",
    "VIEW",
    "VIRTUAL",
    "WITH",
    "WITHOUT",
];

/// Fallback keywords that can start an expression (or, for WITH, a
/// subquery after `(`): there the parser takes them as the keyword, so
/// `cast.role` is a syntax error although `FROM cast` is not.
const EXPRESSION_KEYWORDS: &[&str] = &[
    "CAST",
    "CURRENT_DATE",
    "CURRENT_TIME",
    "CURRENT_TIMESTAMP",
    "RAISE",
    "WITH",
];

/// Where a name stands, which decides whether a keyword name may be bare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Place {
    /// Where only a name can stand: after FROM/JOIN/IN, after a `.`.
    Name,
    /// Where an expression starts.
    Expression,
}

/// True when `name` may be written without quotes at `place`.
fn bare_ok(name: &str, place: Place) -> bool {
    if !is_plain(name) {
        return false;
    }
    if !is_keyword(name) {
        return true;
    }
    let upper = name.to_ascii_uppercase();
    let upper = upper.as_str();
    FALLBACK_KEYWORDS.contains(&upper)
        && (place == Place::Name || !EXPRESSION_KEYWORDS.contains(&upper))
}

/// A regex (without delimiters) matching every spelling of `name` at
/// `place`: bare when it is a plain identifier SQLite reads as a name
/// there, and quoted as `"…"`, `[…]` (unless the name contains `]`, which
/// brackets cannot escape) and `` `…` ``, with the quote character doubled
/// inside. Letters match in either ASCII case:
/// `(?i-u:songs|"songs"|\[songs\]|`songs`)`.
pub(super) fn spellings(name: &str, place: Place) -> String {
    let mut alts = Vec::with_capacity(4);
    if bare_ok(name, place) {
        alts.push(name.to_string());
    }
    alts.push(format!("\"{}\"", name.replace('"', "\"\"")));
    if !name.contains(']') {
        alts.push(format!("[{name}]"));
    }
    alts.push(format!("`{}`", name.replace('`', "``")));
    if name.is_ascii() {
        let escaped: Vec<String> = alts.iter().map(|a| escape(a)).collect();
        format!("(?i-u:{})", escaped.join("|"))
    } else {
        let each: Vec<String> = alts.iter().map(|a| caseless(a)).collect();
        each.join("|")
    }
}

/// `[A-Za-z_][A-Za-z0-9_]*`: a name SQLite reads without quotes (unless it
/// is a keyword).
use crate::sql::is_plain;

/// `text` as a regex matching it with ASCII case folded: ASCII runs go
/// inside `(?i-u:…)`, other characters (which SQLite does not fold) stand
/// for themselves outside the group.
fn caseless(text: &str) -> String {
    let mut out = String::new();
    let mut run = String::new();
    for c in text.chars() {
        if c.is_ascii() {
            run.push(c);
            continue;
        }
        if !run.is_empty() {
            out.push_str(&format!("(?i-u:{})", escape(&run)));
            run.clear();
        }
        out.push(c);
    }
    if !run.is_empty() {
        out.push_str(&format!("(?i-u:{})", escape(&run)));
    }
    out
}

/// `text` as a regex matching itself: regex metacharacters escaped with a
/// backslash; `/` (the Lark delimiter) and control characters as `\xHH`.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' | '.' | '+' | '*' | '?' | '(' | ')' | '|' | '[' | ']' | '{' | '}' | '^' | '$'
            | '#' | '&' | '-' | '~' => {
                out.push('\\');
                out.push(c);
            }
            '/' => out.push_str(r"\x2F"),
            c if c.is_ascii_control() => out.push_str(&format!(r"\x{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// The name rules of one query variant (`suffix` is `""` or `"_w"`):
/// `tname` (a table in FROM/JOIN/IN), `colref` (a column in an
/// expression), `qstar` (`t.*`), `ucol` (a column in `USING (…)`).
pub(super) struct NameRules {
    /// Rules (lowercase names) per variant, already suffixed.
    pub rules: String,
    /// Terminal definitions, emitted once.
    pub terminals: String,
    /// True when the schema has no table: outside WITH the grammar then
    /// has no FROM and no column.
    pub no_tables: bool,
}

/// Generic mode: any identifier names a table or a column, including the
/// keywords SQLite reads as names (`NAME` where only a name can stand,
/// `XNAME` where an expression starts).
pub(super) fn generic_names() -> NameRules {
    let rules = "\
tname: NAME
colref: XNAME | XNAME \".\" NAME
qstar: XNAME \".\" STAR
ucol: NAME
"
    .to_string();
    let fallback: Vec<String> = FALLBACK_KEYWORDS
        .iter()
        .map(|k| k.to_ascii_lowercase())
        .collect();
    let expression_fallback: Vec<String> = FALLBACK_KEYWORDS
        .iter()
        .filter(|k| !EXPRESSION_KEYWORDS.contains(k))
        .map(|k| k.to_ascii_lowercase())
        .collect();
    let terminals = format!(
        "NAME: IDENT | QIDENT | /(?i-u:{})/\nXNAME: IDENT | QIDENT | /(?i-u:{})/\nTALIAS: ALIAS\n",
        fallback.join("|"),
        expression_fallback.join("|")
    );
    NameRules {
        rules,
        terminals,
        no_tables: false,
    }
}

/// Schema mode: rules for both variants, `""` (a query without WITH) and
/// `"_w"` (inside a WITH clause, where CTE names and their columns are
/// free identifiers too).
pub(super) fn schema_names(schema: &Schema) -> NameRules {
    let mut terminals = String::new();
    let mut qcol = Vec::new();
    let mut table_lexemes = Vec::new();
    let mut all_columns: Vec<String> = Vec::new();
    let mut from_spellings: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, table) in schema.tables.iter().enumerate() {
        // After `.` a column stands where only a name can.
        let cols: Vec<String> = table
            .columns
            .iter()
            .map(|c| spellings(&c.name, Place::Name))
            .collect();
        if cols.is_empty() {
            continue;
        }
        let expression_spellings = spellings(&table.name, Place::Expression);
        terminals.push_str(&format!("TBL_{i}: /{expression_spellings}/\n"));
        terminals.push_str(&format!("COL_{i}: /{}/\n", cols.join("|")));
        table_lexemes.push(format!("TBL_{i}"));
        from_spellings.push(spellings(&table.name, Place::Name));
        qcol.push(format!("TBL_{i} \".\" COL_{i}"));
        for c in &table.columns {
            if seen.insert(c.name.to_ascii_lowercase()) {
                all_columns.push(spellings(&c.name, Place::Expression));
            }
        }
    }
    if table_lexemes.is_empty() {
        // Only CTEs can be named, inside WITH.
        let rules = "\
tname_w: ALIAS
colref_w: ALIAS | ALIAS \".\" ALIAS
qstar_w: ALIAS \".\" STAR
ucol_w: ALIAS
"
        .to_string();
        return NameRules {
            rules,
            terminals: "TALIAS: ALIAS\n".to_string(),
            no_tables: true,
        };
    }
    terminals.push_str(&format!("TBL: {}\n", table_lexemes.join(" | ")));
    terminals.push_str(&format!("TABLE: /{}/\n", from_spellings.join("|")));
    terminals.push_str(&format!("COL: /{}/\n", all_columns.join("|")));
    // A qualifier that is not a schema table: an alias, a CTE or a
    // subquery name. Columns after it are any schema column.
    terminals.push_str(&format!("TALIAS: {SHORT_ALIAS}\n"));
    terminals.push_str("QUAL: TALIAS & ~TBL\n");
    qcol.push("QUAL \".\" COL".to_string());

    let mut rules = String::new();
    rules.push_str("tname: TABLE\n");
    rules.push_str("tname_w: TABLE | ALIAS\n");
    rules.push_str(&format!("qcol: {}\n", qcol.join("\n    | ")));
    rules.push_str("colref: COL | qcol\n");
    rules.push_str("colref_w: COL | qcol | ALIAS | ALIAS \".\" ALIAS\n");
    rules.push_str("qstar: (TBL | QUAL) \".\" STAR\n");
    rules.push_str("qstar_w: qstar\n");
    rules.push_str("ucol: COL\n");
    rules.push_str("ucol_w: COL | ALIAS\n");
    // A derived-table SELECT: the subquery's result names are free, its
    // tables still come from the schema.
    rules.push_str("tname_d: TABLE\n");
    rules.push_str("colref_d: colref_w\n");
    rules.push_str("qstar_d: qstar\n");
    rules.push_str("ucol_d: ucol_w\n");
    NameRules {
        rules,
        terminals,
        no_tables: false,
    }
}

/// `IDENT`: a bare identifier that is no keyword. Its tail length is
/// bounded so a model cannot loop inside one.
pub(super) fn ident_terminal(keywords: &[&str]) -> String {
    let alts: Vec<String> = keywords.iter().map(|k| k.to_ascii_lowercase()).collect();
    format!(
        "IDENT: /[A-Za-z_][A-Za-z0-9_]{{0,{MAX_IDENT_TAIL}}}/ & ~KEYWORD\nKEYWORD: /(?i-u:{})/\n",
        alts.join("|")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spells_names_in_every_quoting_style() {
        let spellings = |name| spellings(name, Place::Expression);
        assert_eq!(
            spellings("songs"),
            r#"(?i-u:songs|"songs"|\[songs\]|`songs`)"#
        );
        // Not plain: quoted only; regex metacharacters escaped.
        assert_eq!(
            spellings("beats.per.minute"),
            r#"(?i-u:"beats\.per\.minute"|\[beats\.per\.minute\]|`beats\.per\.minute`)"#
        );
        assert_eq!(
            spellings("a/b\n"),
            r#"(?i-u:"a\x2Fb\x0A"|\[a\x2Fb\x0A\]|`a\x2Fb\x0A`)"#
        );
        // A keyword is quoted only, unless SQLite reads it as a name there.
        assert_eq!(spellings("order"), r#"(?i-u:"order"|\[order\]|`order`)"#);
        assert!(spellings("range").starts_with("(?i-u:range|"));
        assert!(spellings("cast").starts_with("(?i-u:\"cast\"|"));
        assert!(super::spellings("cast", Place::Name).starts_with("(?i-u:cast|"));
        // Quotes are doubled; `]` rules out brackets.
        assert_eq!(spellings("a\"b]"), r#"(?i-u:"a""b\]"|`a"b\]`)"#);
        // Non-ASCII characters stand outside the ASCII-caseless group.
        assert_eq!(caseless("année"), "(?i-u:ann)é(?i-u:e)");
        assert_eq!(
            spellings("é"),
            r#"(?i-u:")é(?i-u:")|(?i-u:\[)é(?i-u:\])|(?i-u:`)é(?i-u:`)"#
        );
    }
}
