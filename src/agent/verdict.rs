//! What the decode loop is told about SQL, while it is written and when it
//! is finished: SQLite's `prepare` against the database, read as a
//! [`Verdict`] that points at the latest choice able to fix the failure.
//!
//! Two rules keep repairs cheap. A name is checked as soon as nothing
//! written later can make it valid (when `WHERE`, `GROUP BY`, `ORDER BY` …
//! closes the FROM clause its columns resolve against), not only once the
//! query ends. And a column that the tables in scope lack (or share) is
//! blamed on the last table of the FROM clause when that table was written
//! after the column: choosing another table there takes back a few tokens,
//! where backing up to the first column takes back the whole select list.

use super::DatabaseHandle;
use crate::generate::{TextCheck, Verdict};
use crate::sql::{self, CheckFailure, Problem, Schema, Table};

/// The SQL check of one database, for [`crate::generate::GenerateRequest::check`].
#[derive(Clone, Copy)]
pub struct SqlCheck<'a> {
    db: &'a DatabaseHandle,
}

impl<'a> SqlCheck<'a> {
    /// Checks SQL against `db`.
    pub fn new(db: &'a DatabaseHandle) -> Self {
        Self { db }
    }
}

impl TextCheck for SqlCheck<'_> {
    fn finished(&self, text: &str) -> Verdict {
        sql_verdict(self.db, text)
    }

    fn continued(&self, text: &str, next: &str) -> Verdict {
        continued_verdict(self.db, text, next)
    }

    fn allowed_next(&self, text: &str) -> Option<Vec<String>> {
        literal_continuations(self.db, text)
    }
}

/// What the decode loop is told of a finished query: SQLite's `prepare`
/// against `db`, read as a [`Verdict`] (back up to the name to blame; go on
/// when only the FROM clause is missing).
pub fn sql_verdict(db: &DatabaseHandle, text: &str) -> Verdict {
    let unended = text.trim_end().trim_end_matches(';');
    if let Some(at) = literal_blame(db, unended) {
        return Verdict::Blame(at);
    }
    let sql = sql::constrained_sql(text);
    match db.check(&sql) {
        Ok(Ok(())) => Verdict::Pass,
        Ok(Err(failure)) if failure.lacks_from_clause(&sql) => Verdict::Incomplete,
        Ok(Err(failure)) => blame(&sql, &failure, db.schema()).map_or(Verdict::Fail, |at| {
            Verdict::Blame(leading_blanks(text) + at)
        }),
        Err(_) => Verdict::Fail,
    }
}

/// Subqueries that may be open inside one another. Gold queries of Spider
/// and BIRD almost never nest deeper; a model that opens a fourth is
/// running away (each repair of a table choice answered with `(SELECT`
/// one level further down).
pub const MAX_NESTED_SUBQUERIES: usize = 3;

/// Keywords that close the FROM clause before them: every name written so
/// far must resolve against it.
const CLOSES_FROM: [&str; 8] = [
    "WHERE",
    "GROUP",
    "HAVING",
    "ORDER",
    "LIMIT",
    "UNION",
    "EXCEPT",
    "INTERSECT",
];

/// Keywords that go on with a FROM clause: a column may still gain its
/// table, but one that two tables share stays ambiguous.
/// (`USING` is left out: it is what makes a shared column unambiguous.)
const GOES_ON_WITH_FROM: [&str; 6] = ["JOIN", "ON", "INNER", "LEFT", "CROSS", "NATURAL"];

/// What the decode loop is told of unfinished SQL `text` that was just
/// continued with `next` (see [`TextCheck::continued`]). Inside a subquery
/// still open, that subquery is checked on its own; unless it is a table
/// of a FROM clause, a column it lacks may belong to the outer query and is
/// left for the final check.
fn continued_verdict(db: &DatabaseHandle, text: &str, next: &str) -> Verdict {
    if let Some(at) = literal_blame(db, text) {
        return Verdict::Blame(at);
    }
    // A keyword may be written in pieces (`JO` + `IN`): the word is then
    // the letters the text ends in and those `next` starts with, and the
    // text checked is what stands before it.
    let piece = if next.starts_with(|c: char| c.is_ascii_alphabetic()) {
        word_piece_at_end(text)
    } else {
        ""
    };
    let text = &text[..text.len() - piece.len()];
    let next = next.trim_start();
    let word: String = piece
        .chars()
        .chain(next.chars().take_while(char::is_ascii_alphabetic))
        .collect::<String>()
        .to_ascii_uppercase();
    let sql = text.trim();
    if let Some(at) = sql::repeated_tail(sql) {
        return Verdict::Blame(leading_blanks(text) + at);
    }
    if let Some((at, name)) = sql::name_with_repeated_parts(sql) {
        // Unless it is (the start of) a real name.
        let real = |n: &str| n.len() >= name.len() && n[..name.len()].eq_ignore_ascii_case(name);
        let schema = db.schema();
        let is_real = schema
            .tables
            .iter()
            .any(|t| real(&t.name) || t.columns.iter().any(|c| real(&c.name)));
        if !is_real {
            return Verdict::Blame(leading_blanks(text) + at);
        }
    }
    if let Some(&at) = sql::open_subqueries(sql).get(MAX_NESTED_SUBQUERIES) {
        return Verdict::Blame(leading_blanks(text) + at);
    }
    let closes = CLOSES_FROM.contains(&word.as_str());
    let goes_on = GOES_ON_WITH_FROM.contains(&word.as_str());
    let ends_condition =
        closes || goes_on || matches!(word.as_str(), "AND" | "OR") || next.starts_with(')');
    if ends_condition {
        // A condition chain that repeats a condition is a loop: it ends
        // before the repeat.
        if let Some(at) = sql::repeated_condition(sql) {
            return Verdict::Blame(leading_blanks(text) + at);
        }
    }
    if let Some(closed) = parentheses_closed_before_comma(next) {
        // One token closes parentheses and goes on to the next item (`),`):
        // the list is checked with the item closed.
        let sql = format!("{sql}{closed}");
        let start = sql::open_level(&sql).unwrap_or(0);
        return sql::repeated_list_item(&sql[start..])
            .map(|at| start + at)
            .filter(|&at| at < text.trim_end().len())
            .map_or(Verdict::Pass, |at| {
                Verdict::Blame(leading_blanks(text) + at)
            });
    }
    let start = sql::open_level(sql).unwrap_or(0);
    let level = &sql[start..];
    if word == "SELECT"
        && start > 0
        && level.trim().is_empty()
        && sql::opens_derived_table(sql, start)
    {
        // `FROM (SELECT` where one table has every column the query around
        // it names: that table is the choice, not a subquery (a model
        // that opens one here, and again after each repair inside it,
        // nests subquery after subquery).
        let paren = start - 1;
        let columns = columns_named(sql, paren, db.schema());
        if !columns.is_empty() && one_table_has_all(&columns, db.schema()) {
            return Verdict::Blame(leading_blanks(text) + paren);
        }
    }
    // A subquery that may refer to the query around it (not a derived
    // table): a column it lacks may be the outer query's.
    let nested = start > 0 && !sql::opens_derived_table(sql, start);
    let offset = leading_blanks(text) + start;
    if next.starts_with(',') || word == "FROM" {
        // A list that repeats an item is a loop: stop it at the repeat.
        return sql::repeated_list_item(level)
            .map_or(Verdict::Pass, |at| Verdict::Blame(offset + at));
    }
    if !closes && !goes_on {
        return Verdict::Pass;
    }
    if let Some(at) = sql::unaliased_self_join(level) {
        return Verdict::Blame(offset + at);
    }
    let is_select = level
        .trim_start()
        .get(..6)
        .is_some_and(|w| w.eq_ignore_ascii_case("SELECT"));
    if start > 0 && !is_select {
        return Verdict::Pass;
    }
    let Ok(Err(failure)) = db.check(level) else {
        return Verdict::Pass;
    };
    let settled = match failure.problem {
        Problem::AmbiguousColumn => true,
        // A qualifier the FROM clause already binds gains no other table.
        Problem::NoSuchColumn if !closes => qualified_by_bound_name(level, &failure),
        Problem::NoSuchColumn => !nested && !failure.lacks_from_clause(level),
        Problem::NoSuchTable
        | Problem::NoSuchFunction
        | Problem::WrongArgumentCount
        | Problem::MisusedAggregate => closes,
        // Text cut before a keyword need not parse on its own.
        Problem::Syntax | Problem::Other | Problem::NotReadOnly => false,
    };
    match blame(level, &failure, db.schema()) {
        Some(at) if settled => Verdict::Blame(offset + at),
        _ => Verdict::Pass,
    }
}

/// The values a string compared as `literal` must be one of (escaped as
/// SQL writes them), when its column's values are checked.
fn allowed_values(db: &DatabaseHandle, literal: &sql::ComparedLiteral) -> Option<Vec<String>> {
    let mut allowed: Vec<String> = Vec::new();
    for table in &literal.tables {
        let Some(t) = db.schema().table(table) else {
            continue;
        };
        if t.column(&literal.column).is_none() {
            continue;
        }
        // Every table that has the column must check it.
        let values = db.literal_values(&t.name, &literal.column)?;
        allowed.extend(values.iter().map(|v| v.replace('\'', "''")));
    }
    (!allowed.is_empty()).then_some(allowed)
}

/// Where the column is when `text` ends with a finished string compared
/// with a column that does not hold it while another text column of the
/// tables in scope does (`title = 'Ariana Grande'` where an artist is
/// called that): the column is the choice to take back, not the value.
fn value_of_another_column(
    db: &DatabaseHandle,
    text: &str,
    literal: &sql::ComparedLiteral,
) -> Option<usize> {
    if !literal.closed {
        return None;
    }
    let value = text[literal.content.clone()].replace("''", "'");
    let schema = db.schema();
    let tables: Vec<&Table> = literal
        .tables
        .iter()
        .filter_map(|t| schema.table(t))
        .collect();
    let holds = |t: &Table, c: &sql::Column| {
        db.with_connection(|conn| conn.holds_text(&t.quoted, &c.quoted, &value))
            .ok()
            .and_then(|r| r.ok())
            .unwrap_or(false)
    };
    let own: Vec<(&Table, &sql::Column)> = tables
        .iter()
        .filter_map(|t| t.column(&literal.column).map(|c| (*t, c)))
        .collect();
    if own.is_empty() || own.iter().any(|(t, c)| holds(t, c)) {
        return None;
    }
    let elsewhere = tables.iter().any(|t| {
        t.columns
            .iter()
            .filter(|c| !c.name.eq_ignore_ascii_case(&literal.column))
            .any(|c| holds(t, c))
    });
    elsewhere.then_some(literal.column_at)
}

/// What may follow when `text` ends inside a string compared with a
/// column whose values are checked: the rest of each value it can still
/// become, with the closing quote.
fn literal_continuations(db: &DatabaseHandle, text: &str) -> Option<Vec<String>> {
    if !db.checks_literal_values() {
        return None;
    }
    let literal = sql::compared_literal_at_end(text).filter(|l| !l.closed)?;
    let allowed = allowed_values(db, &literal)?;
    let written = &text[literal.content.clone()];
    let rest: Vec<String> = allowed
        .iter()
        .filter_map(|v| v.strip_prefix(written))
        .map(|rest| format!("{rest}'"))
        .collect();
    (!rest.is_empty()).then_some(rest)
}

/// Where to back up when `text` ends with a string compared with a column
/// of few values ([`DatabaseHandle::literal_values`]) that is none of them:
/// at the first character no value goes on with, or at the closing quote
/// of a value cut short. `None` when it is (the start of) one, or the
/// column's values are not checked.
fn literal_blame(db: &DatabaseHandle, text: &str) -> Option<usize> {
    if !db.checks_compared_strings() {
        return None;
    }
    let literal = sql::compared_literal_at_end(text)?;
    if let Some(at) = value_of_another_column(db, text, &literal) {
        return Some(at);
    }
    let allowed = allowed_values(db, &literal)?;
    let written = &text[literal.content.clone()];
    let fits = |v: &String| {
        if literal.closed {
            v == written
        } else {
            v.starts_with(written)
        }
    };
    if allowed.iter().any(fits) {
        return None;
    }
    // The longest start of the text that some value shares.
    let shared = allowed
        .iter()
        .map(|v| {
            v.char_indices()
                .zip(written.chars())
                .take_while(|((_, a), b)| a == b)
                .last()
                .map_or(0, |((i, a), _)| i + a.len_utf8())
        })
        .max()
        .unwrap_or(0);
    Some(literal.content.start + shared)
}

/// Where in `sql` to back up for `failure`: the blamed name's last mention,
/// or a table of its FROM clause written after it.
/// - A plain column that no table in scope has is blamed on the last table
///   when another table of `schema` has every plain column the query level
///   names (choosing that table fixes it).
/// - A qualified `t.c` whose table `t` has column `c` but is not in the
///   FROM clause is blamed on the last table there (where `t` belongs).
/// - A column missing or ambiguous because a table is joined to itself is
///   blamed on that join.
/// - A column two different tables share is the column's fault: it needs
///   qualifying; so is a qualified column its table lacks.
fn blame(sql: &str, failure: &CheckFailure, schema: &Schema) -> Option<usize> {
    let at = failure.at?;
    let name = failure.name.as_deref().unwrap_or_default();
    let missing = failure.problem == Problem::NoSuchColumn;
    let table_elsewhere = match name.split_once('.') {
        None => missing && one_table_has_them(sql, at, schema),
        Some((table, column)) => {
            let (table, column) = (sql::unquoted(table), sql::unquoted(column));
            missing
                && schema
                    .table(&table)
                    .is_some_and(|t| t.column(&column).is_some())
        }
    };
    let column = missing || failure.problem == Problem::AmbiguousColumn;
    let later = match column.then(|| sql::last_table_in_scope(sql, at)).flatten() {
        Some((_, Some(self_join))) => Some(self_join),
        Some((table, None)) if table_elsewhere => Some(table),
        _ => None,
    };
    Some(later.map_or(at, |t| t.max(at)))
}

/// Whether the column `failure` names is qualified by a table or alias the
/// FROM clause of its level already binds (`D.name` after `FROM
/// professionals D`): no later join can supply it.
fn qualified_by_bound_name(sql: &str, failure: &CheckFailure) -> bool {
    let (Some(at), Some(name)) = (failure.at, failure.name.as_deref()) else {
        return false;
    };
    name.split_once('.')
        .is_some_and(|(qualifier, _)| sql::binds_qualifier(sql, at, qualifier))
}

/// Whether one table of `schema` has every column among the plain names of
/// the query level of byte `at` (names no table has, such as aliases, do
/// not count).
fn one_table_has_them(sql: &str, at: usize, schema: &Schema) -> bool {
    one_table_has_all(&columns_named(sql, at, schema), schema)
}

/// The plain names of the query level of byte `at` that are a column of
/// some table of `schema`.
fn columns_named(sql: &str, at: usize, schema: &Schema) -> Vec<String> {
    let mut names = sql::plain_names_in_level(sql, at);
    names.retain(|n| schema.tables.iter().any(|t| t.column(n).is_some()));
    names
}

/// Whether one table of `schema` has every one of `columns`.
fn one_table_has_all(columns: &[String], schema: &Schema) -> bool {
    let has = |t: &Table, n: &str| t.column(n).is_some();
    schema
        .tables
        .iter()
        .any(|t| columns.iter().all(|n| has(t, n)))
}

/// The closing parentheses `next` starts with when a comma follows them
/// (`),`, `)),`): they end a list item as the comma starts the next.
fn parentheses_closed_before_comma(next: &str) -> Option<&str> {
    let head = &next[..next.find(',')?];
    let closed = head.trim();
    (!closed.is_empty() && closed.bytes().all(|b| b == b')' || b.is_ascii_whitespace()))
        .then_some(closed)
}

/// The letters `text` ends in when they start a word (nothing before them
/// but a blank or punctuation): what a word written in pieces has so far.
fn word_piece_at_end(text: &str) -> &str {
    let letters = text
        .bytes()
        .rev()
        .take_while(u8::is_ascii_alphabetic)
        .count();
    let start = text.len() - letters;
    let joined_to_word = text[..start]
        .bytes()
        .next_back()
        .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$');
    if joined_to_word {
        ""
    } else {
        &text[start..]
    }
}

/// Bytes of whitespace `text` starts with (checks see it trimmed).
fn leading_blanks(text: &str) -> usize {
    text.len() - text.trim_start().len()
}
