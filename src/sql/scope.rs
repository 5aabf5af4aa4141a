//! Where the names of a query stand, read from its text alone (finished or
//! not): which tables the FROM clause of a mention's query level names, and
//! which item of a comma list repeats an earlier one. Decoding uses it to
//! aim a repair at the latest choice that can fix a failure, e.g. the table
//! written after a select list whose columns it lacks, instead of the first
//! column (which would throw away everything written since).

use super::lex::skip_quoted;

/// One lexical unit of SQL text, with the parenthesis depth it stands at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Token<'a> {
    /// Byte offset in the text.
    start: usize,
    /// Its text (a word, a quoted name, or one punctuation character).
    text: &'a str,
    /// Open parentheses before it (an opening parenthesis stands at the
    /// depth outside it, a closing one at the depth it closes back to).
    depth: usize,
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Letters, digits, `_`, `$` (keywords and plain names).
    Word,
    /// `"…"`, `[…]` or `` `…` ``: a quoted name.
    QuotedName,
    /// `'…'`: a string literal.
    String,
    /// Anything else, one character at a time.
    Punct,
}

impl Token<'_> {
    fn is_word(&self, word: &str) -> bool {
        self.kind == Kind::Word && self.text.eq_ignore_ascii_case(word)
    }

    fn is_any_word(&self, words: &[&str]) -> bool {
        words.iter().any(|w| self.is_word(w))
    }

    fn is_punct(&self, c: &str) -> bool {
        self.kind == Kind::Punct && self.text == c
    }

    fn is_name(&self) -> bool {
        match self.kind {
            Kind::QuotedName => true,
            Kind::Word => !super::ident::is_keyword(self.text),
            _ => false,
        }
    }
}

/// Keywords that end a FROM clause at its level.
const AFTER_FROM: [&str; 9] = [
    "WHERE",
    "GROUP",
    "HAVING",
    "ORDER",
    "LIMIT",
    "WINDOW",
    "UNION",
    "EXCEPT",
    "INTERSECT",
];

/// Keywords that separate the SELECTs of a compound query.
const COMPOUND: [&str; 3] = ["UNION", "EXCEPT", "INTERSECT"];

/// Splits `sql` into tokens, skipping whitespace and comments.
/// Unterminated literals and comments run to the end.
fn tokens(sql: &str) -> Vec<Token<'_>> {
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let start = i;
        let kind = match b {
            b if b.is_ascii_whitespace() => {
                i += 1;
                continue;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i = sql[i + 2..]
                    .find("*/")
                    .map_or(bytes.len(), |n| i + 2 + n + 2);
                continue;
            }
            b'\'' => {
                i = skip_quoted(bytes, i);
                Kind::String
            }
            b'"' | b'[' | b'`' => {
                i = skip_quoted(bytes, i);
                Kind::QuotedName
            }
            b if is_word_byte(b) => {
                while i < bytes.len() && is_word_byte(bytes[i]) {
                    i += 1;
                }
                Kind::Word
            }
            _ => {
                i += sql[i..].chars().next().map_or(1, char::len_utf8);
                Kind::Punct
            }
        };
        let text = &sql[start..i];
        if text == ")" {
            depth = depth.saturating_sub(1);
        }
        out.push(Token {
            start,
            text,
            depth,
            kind,
        });
        if text == "(" {
            depth += 1;
        }
    }
    out
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

/// The tokens of the query level (one SELECT of it) that the token at
/// `index` belongs to: the same depth, up to the parentheses around it and
/// the compound operators beside it.
fn level_of<'t, 'a>(tokens: &'t [Token<'a>], index: usize) -> &'t [Token<'a>] {
    let depth = tokens[index].depth;
    let bound = |t: &Token<'_>| t.depth < depth || (t.depth == depth && t.is_any_word(&COMPOUND));
    let start = tokens[..index].iter().rposition(bound).map_or(0, |i| i + 1);
    let end = tokens[index..]
        .iter()
        .position(bound)
        .map_or(tokens.len(), |i| index + i);
    &tokens[start..end]
}

/// Words that start or make up a join operator (`LEFT OUTER JOIN`).
const JOIN_WORDS: [&str; 8] = [
    "NATURAL", "LEFT", "RIGHT", "FULL", "OUTER", "INNER", "CROSS", "JOIN",
];

/// A table named in a FROM clause.
struct FromTable<'a> {
    /// Its name.
    name: Token<'a>,
    /// Its alias, if it has one.
    alias: Option<Token<'a>>,
    /// Where the join that brings it in starts (`JOIN`, `LEFT JOIN`, a
    /// comma); `None` for the first table.
    join: Option<usize>,
}

/// The tables that the FROM clauses of `level` (tokens of one query level,
/// at `depth`) name, in order.
fn from_tables<'a>(level: &[Token<'a>], depth: usize) -> Vec<FromTable<'a>> {
    let mut tables = Vec::new();
    let mut in_from = false;
    // Where the join operator being read started.
    let mut join_start = None;
    for (i, t) in level.iter().enumerate() {
        if t.depth != depth {
            continue;
        }
        let join = if t.is_word("FROM") {
            in_from = true;
            None
        } else if t.is_any_word(&AFTER_FROM) {
            in_from = false;
            continue;
        } else if in_from && t.is_any_word(&JOIN_WORDS) {
            let start = *join_start.get_or_insert(t.start);
            if !t.is_word("JOIN") {
                continue;
            }
            Some(start)
        } else if in_from && t.is_punct(",") {
            Some(t.start)
        } else {
            join_start = None;
            continue;
        };
        join_start = None;
        let at_depth = |k: usize| level.get(k).filter(|n| n.depth == depth);
        let Some(name) = at_depth(i + 1).filter(|n| n.is_name()) else {
            continue;
        };
        let alias = match at_depth(i + 2) {
            Some(a) if a.is_word("AS") => at_depth(i + 3).filter(|n| n.is_name()),
            Some(a) if a.is_name() => Some(a),
            _ => None,
        };
        tables.push(FromTable {
            name: *name,
            alias: alias.copied(),
            join,
        });
    }
    tables
}

/// The last table named in the FROM clause of the query level that the
/// text at byte `at` belongs to (a name right after `FROM`, `JOIN` or a
/// comma of that clause), if that level has a FROM clause: where its name
/// starts, and where the join that brings it in starts when it repeats an
/// earlier table of the clause (a self join, which is then the choice to
/// take back rather than which table it joins).
pub(crate) fn last_table_in_scope(sql: &str, at: usize) -> Option<(usize, Option<usize>)> {
    let tokens = tokens(sql);
    let index = tokens.iter().rposition(|t| t.start <= at)?;
    let tables = from_tables(level_of(&tokens, index), tokens[index].depth);
    let (last, earlier) = tables.split_last()?;
    let repeats = earlier
        .iter()
        .any(|e| e.name.text.eq_ignore_ascii_case(last.name.text));
    Some((last.name.start, last.join.filter(|_| repeats)))
}

/// Whether the FROM clause of the query level that byte `at` belongs to
/// already names `qualifier` (quotes removed, caseless): a table's alias,
/// or its name when it has none. A column qualified by it can then gain no
/// other table from a later join.
pub(crate) fn binds_qualifier(sql: &str, at: usize, qualifier: &str) -> bool {
    let tokens = tokens(sql);
    let Some(index) = tokens.iter().rposition(|t| t.start <= at) else {
        return false;
    };
    let qualifier = unquoted(qualifier);
    from_tables(level_of(&tokens, index), tokens[index].depth)
        .iter()
        .any(|t| unquoted(t.alias.unwrap_or(t.name).text).eq_ignore_ascii_case(&qualifier))
}

/// The plain names (no qualifier, not a function, not an alias being
/// defined) written in the query level that byte `at` belongs to, outside
/// its FROM clause: the columns that level expects its tables to have,
/// as written (quotes removed).
pub(crate) fn plain_names_in_level(sql: &str, at: usize) -> Vec<String> {
    let tokens = tokens(sql);
    let Some(index) = tokens.iter().rposition(|t| t.start <= at) else {
        return Vec::new();
    };
    let level = level_of(&tokens, index);
    let depth = tokens[index].depth;
    let mut names = Vec::new();
    let mut in_from = false;
    let mut i = 0;
    while i < level.len() {
        let t = &level[i];
        i += 1;
        if t.is_punct("(")
            && level
                .get(i)
                .is_some_and(|n| n.is_any_word(&["SELECT", "WITH"]))
        {
            // A subquery is a level of its own: skip to its closing parenthesis.
            let close = level[i..]
                .iter()
                .position(|c| c.depth == t.depth && c.is_punct(")"));
            i = close.map_or(level.len(), |c| i + c + 1);
            continue;
        }
        if t.is_word("FROM") && t.depth == depth {
            in_from = true;
        } else if t.is_any_word(&AFTER_FROM) && t.depth == depth {
            in_from = false;
        }
        let before = (i - 1).checked_sub(1).and_then(|b| level.get(b));
        let after = level.get(i);
        let plain = !in_from
            && t.is_name()
            && !t.text.starts_with(|c: char| c.is_ascii_digit())
            && !before.is_some_and(|b| b.is_punct(".") || b.is_word("AS"))
            && !after.is_some_and(|a| a.is_punct(".") || a.is_punct("("));
        if plain {
            names.push(unquoted(t.text));
        }
    }
    names
}

/// A string literal at the end of a query (closed, or still being
/// written) that is compared with a column: `col = '…`, `t.col <> '…`,
/// `col IN ('a', '…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComparedLiteral {
    /// The tables the column may belong to (quotes removed): the one its
    /// qualifier binds, else every table of its FROM clause.
    pub tables: Vec<String>,
    /// The column (quotes removed).
    pub column: String,
    /// Byte offset of the column's name (after any qualifier).
    pub column_at: usize,
    /// Byte range of the literal's text between its quotes (escapes as
    /// written, `''`).
    pub content: std::ops::Range<usize>,
    /// Whether its closing quote is written.
    pub closed: bool,
}

/// The literal `sql` ends with (trailing blanks aside) when it is compared
/// for (in)equality with a column, or listed after `column IN (`; `None`
/// for anything else (LIKE patterns, a literal on the left, a qualifier no
/// FROM clause binds).
pub fn compared_literal_at_end(sql: &str) -> Option<ComparedLiteral> {
    // Most steps of a query are nowhere near a string: no need to lex.
    if !sql.contains('\'') {
        return None;
    }
    let tokens = tokens(sql);
    let last = tokens.len().checked_sub(1)?;
    let literal = tokens[last];
    if literal.kind != Kind::String {
        return None;
    }
    let (content_end, closed) = literal_end(literal.text);
    // An open literal runs to the end, blanks included.
    let end = if closed {
        sql.trim_end().len()
    } else {
        sql.len()
    };
    if literal.start + literal.text.len() != end {
        return None;
    }
    let content = literal.start + 1..literal.start + content_end;
    // What the literal follows: a comparison, or the items of an IN list.
    let before = |k: usize| k.checked_sub(1).map(|p| tokens[p]);
    let mut at = last;
    let op = before(at)?;
    let column_at = if op.is_punct("=") || op.is_punct(">") {
        at -= 1;
        match (op.text, before(at).map(|t| t.text)) {
            ("=", Some("=" | "!")) | (">", Some("<")) => at -= 1,
            ("=", _) => {}
            _ => return None,
        }
        if before(at).is_some_and(|t| t.kind == Kind::Punct && "<>!=".contains(t.text)) {
            return None;
        }
        at.checked_sub(1)?
    } else {
        // `IN ( 'a' , 'b' , …`: back over the items to the parenthesis.
        while before(at).is_some_and(|t| t.is_punct(",")) {
            at -= 1;
            if !before(at).is_some_and(|t| t.kind == Kind::String) {
                return None;
            }
            at -= 1;
        }
        if !before(at).is_some_and(|t| t.is_punct("(")) {
            return None;
        }
        at -= 1;
        if !before(at).is_some_and(|t| t.is_word("IN")) {
            return None;
        }
        at -= 1;
        if before(at).is_some_and(|t| t.is_word("NOT")) {
            at -= 1;
        }
        at.checked_sub(1)?
    };
    let column = tokens[column_at];
    if !column.is_name() {
        return None;
    }
    let qualifier = before(column_at)
        .filter(|t| t.is_punct("."))
        .and_then(|_| before(column_at - 1))
        .filter(|t| t.is_name());
    let from = from_tables(level_of(&tokens, column_at), column.depth);
    let tables: Vec<String> = match qualifier {
        Some(q) => {
            let q = unquoted(q.text);
            let bound = from
                .iter()
                .find(|t| unquoted(t.alias.unwrap_or(t.name).text).eq_ignore_ascii_case(&q))?;
            vec![unquoted(bound.name.text)]
        }
        None => from.iter().map(|t| unquoted(t.name.text)).collect(),
    };
    Some(ComparedLiteral {
        tables,
        column: unquoted(column.text),
        column_at: column.start,
        content,
        closed,
    })
}

/// Where the text of a `'…` literal ends (an offset into `literal`) and
/// whether a closing quote follows it.
fn literal_end(literal: &str) -> (usize, bool) {
    let bytes = literal.as_bytes();
    let mut i = 1;
    while i < bytes.len() {
        if bytes[i] == b'\'' {
            if bytes.get(i + 1) == Some(&b'\'') {
                i += 2;
                continue;
            }
            return (i, true);
        }
        i += 1;
    }
    (bytes.len(), false)
}

/// A name without its quotes (`"a ""b"""` → `a "b"`, `[c]` → `c`).
pub(crate) fn unquoted(text: &str) -> String {
    let mut chars = text.chars();
    match (chars.next(), text.chars().last()) {
        (Some('['), Some(']')) if text.len() >= 2 => text[1..text.len() - 1].to_string(),
        (Some(q @ ('"' | '`')), Some(end)) if end == q && text.len() >= 2 => {
            let doubled = format!("{q}{q}");
            text[1..text.len() - 1].replace(&doubled, &q.to_string())
        }
        _ => text.to_string(),
    }
}

/// Where the join starts when the last table of the top-level FROM clause
/// of `sql` is an earlier table of it again and neither copy has an alias
/// (`FROM artists JOIN artists`): no column of either can then be named
/// without ambiguity, so the join can only be a mistake.
pub(crate) fn unaliased_self_join(sql: &str) -> Option<usize> {
    let tokens = tokens(sql);
    let tables = from_tables(&tokens, 0);
    let (last, earlier) = tables.split_last()?;
    let clash = last.alias.is_none()
        && earlier
            .iter()
            .any(|e| e.alias.is_none() && e.name.text.eq_ignore_ascii_case(last.name.text));
    clash.then_some(last.join).flatten()
}

/// Where the name `sql` ends in starts, when one of its `_`-separated parts
/// comes three times (`total_total_total`, `rA_rA_rA`): a loop inside one
/// word. Returns the name too, so that a real name of the schema can be
/// told apart.
pub(crate) fn name_with_repeated_parts(sql: &str) -> Option<(usize, &str)> {
    let tokens = tokens(sql);
    let last = tokens.last()?;
    if last.kind != Kind::Word || last.start + last.text.len() != sql.len() {
        return None;
    }
    let parts: Vec<String> = last
        .text
        .split('_')
        .filter(|p| !p.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    parts
        .iter()
        .any(|p| parts.iter().filter(|q| *q == p).count() >= 3)
        .then_some((last.start, last.text))
}

/// Fewest tokens a stretch of text must have for its immediate repeat to
/// count as a loop ([`repeated_tail`]). Shorter repeats occur in real
/// queries (`1, 1`); a condition, join or subquery head written twice in a
/// row does not.
const MIN_LOOP_TOKENS: usize = 4;

/// Where the last copy starts when `sql` ends with the same stretch of at
/// least [`MIN_LOOP_TOKENS`] tokens twice in a row (`… JOIN t ON a = b JOIN
/// t ON a = b`): the model is looping, and what it adds will be more of the
/// same. Tokens compare ignoring case and spacing.
pub(crate) fn repeated_tail(sql: &str) -> Option<usize> {
    let tokens = tokens(sql);
    let n = tokens.len();
    let same = |a: &Token<'_>, b: &Token<'_>| a.text.eq_ignore_ascii_case(b.text);
    (MIN_LOOP_TOKENS..=n / 2)
        .find(|&m| {
            tokens[n - m..]
                .iter()
                .zip(&tokens[n - 2 * m..n - m])
                .all(|(a, b)| same(a, b))
        })
        .map(|m| tokens[n - m].start)
}

/// Where the text inside the innermost parenthesis still open at the end of
/// `sql` starts (`None` when every parenthesis is closed): the subquery or
/// argument list being written.
pub(crate) fn open_level(sql: &str) -> Option<usize> {
    let mut open = Vec::new();
    for t in tokens(sql) {
        if t.is_punct("(") {
            open.push(t.start + 1);
        } else if t.is_punct(")") {
            open.pop();
        }
    }
    open.pop()
}

/// Where the parentheses that open a subquery (`(SELECT`, `(WITH`) and are
/// still open at the end of `sql` stand, outermost first.
pub(crate) fn open_subqueries(sql: &str) -> Vec<usize> {
    let tokens = tokens(sql);
    let mut open: Vec<(usize, bool)> = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        if t.is_punct("(") {
            let subquery = tokens
                .get(i + 1)
                .is_some_and(|n| n.is_any_word(&["SELECT", "WITH"]));
            open.push((t.start, subquery));
        } else if t.is_punct(")") {
            open.pop();
        }
    }
    open.into_iter()
        .filter(|&(_, sub)| sub)
        .map(|(at, _)| at)
        .collect()
}

/// Whether the parenthesis whose text starts at byte `level` of `sql` (see
/// [`open_level`]) opens a table of a FROM clause (`FROM (`, `JOIN (`): a
/// subquery there cannot refer to the query around it, so its names can be
/// checked on their own.
pub(crate) fn opens_derived_table(sql: &str, level: usize) -> bool {
    let before = tokens(&sql[..level.min(sql.len())]);
    let mut back = before.iter().rev();
    matches!(back.next(), Some(p) if p.is_punct("("))
        && back
            .next()
            .is_some_and(|t| t.is_any_word(&["FROM", "JOIN"]))
}

/// Items a comma list holds before a repeat ends it ([`repeated_list_item`]):
/// gold queries of Spider and BIRD seldom list more than this many result
/// columns, group keys or tables.
const LONG_LIST: usize = 3;

/// Where to back up when the last item of the comma list being written at
/// the top level repeats an earlier item of the same list (`SELECT a, b,
/// a`, `GROUP BY x, x`): a list that repeats itself is a loop, never an
/// answer. A short list backs up to the repeated item (another item may be
/// meant); a list of [`LONG_LIST`] items or more backs up to the comma
/// before it, ending the list there (a model that repeats itself after
/// that many items has nothing new to add, and banning one repeat after
/// another only makes it write the next). Only lists of the clause the text
/// ends in count (SELECT, FROM, GROUP BY, ORDER BY); items compare by
/// their tokens, ignoring case and spacing.
pub(crate) fn repeated_list_item(sql: &str) -> Option<usize> {
    let tokens = tokens(sql);
    let last = tokens.last()?;
    if last.depth != 0 {
        return None;
    }
    // The clause the text ends in: after its last top-level clause keyword.
    let clause = tokens.iter().rposition(|t| {
        t.depth == 0
            && t.is_any_word(&[
                "SELECT", "DISTINCT", "ALL", "FROM", "JOIN", "WHERE", "BY", "HAVING", "LIMIT", "ON",
            ])
    })?;
    let keyword = &tokens[clause];
    let is_list = keyword.is_any_word(&["SELECT", "DISTINCT", "ALL", "BY", "FROM", "JOIN"]);
    if !is_list {
        return None;
    }
    let body = &tokens[clause + 1..];
    // A result column is what it computes: `x AS a` and `x AS b` repeat
    // `x`. (Not so a table: `t AS a, t AS b` is a self join.)
    let selects = keyword.is_any_word(&["SELECT", "DISTINCT", "ALL"]);
    let without_alias = |item: &'_ [Token<'_>]| -> usize {
        let alias = item.iter().position(|t| t.depth == 0 && t.is_word("AS"));
        alias.filter(|_| selects).unwrap_or(item.len())
    };
    let mut items: Vec<&[Token<'_>]> = body
        .split(|t| t.depth == 0 && t.is_punct(","))
        .map(|item| &item[..without_alias(item)])
        .collect();
    let current = items.pop()?;
    let first = current.first()?;
    if !items.iter().any(|earlier| same_tokens(earlier, current)) {
        return None;
    }
    if items.len() < LONG_LIST {
        return Some(first.start);
    }
    // The comma before the repeat: the last top-level one before its first token.
    body.iter()
        .rev()
        .find(|t| t.depth == 0 && t.is_punct(",") && t.start < first.start)
        .map(|comma| comma.start)
}

/// Whether two runs of tokens are the same, ignoring case and spacing.
fn same_tokens(a: &[Token<'_>], b: &[Token<'_>]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.text.eq_ignore_ascii_case(y.text))
}

/// The two sides of a condition `x = y` whose `=` stands at `depth`.
fn equality_sides<'s, 't>(
    condition: &'s [Token<'t>],
    depth: usize,
) -> Option<(&'s [Token<'t>], &'s [Token<'t>])> {
    let eq = condition
        .iter()
        .position(|t| t.depth == depth && t.is_punct("="))?;
    Some((&condition[..eq], &condition[eq + 1..]))
}

/// Where the `AND`/`OR` before the last condition of the WHERE, ON or
/// HAVING clause being written at the top level stands, when that
/// condition repeats an earlier one of the same clause (`ON a.x = b.x OR
/// b.x = a.x`; an equality compares the same with its sides swapped): a
/// condition chain that repeats itself is a loop, and the chain ends
/// before the repeat.
pub(crate) fn repeated_condition(sql: &str) -> Option<usize> {
    let tokens = tokens(sql);
    let last = tokens.last()?;
    let depth = last.depth;
    let clause = tokens.iter().rposition(|t| {
        t.depth == depth
            && t.is_any_word(&[
                "SELECT", "FROM", "JOIN", "WHERE", "ON", "HAVING", "GROUP", "ORDER", "LIMIT",
            ])
    })?;
    if !tokens[clause].is_any_word(&["WHERE", "ON", "HAVING"]) {
        return None;
    }
    let body = &tokens[clause + 1..];
    // Only tokens at the clause's own depth separate its conditions; a
    // parenthesis opened inside it (a subquery) is not one of them.
    if body.iter().any(|t| t.depth < depth) {
        return None;
    }
    let connective = |t: &Token<'_>| t.depth == depth && t.is_any_word(&["AND", "OR"]);
    let mut terms: Vec<&[Token<'_>]> = body.split(connective).collect();
    let current = terms.pop()?;
    if current.is_empty() {
        return None;
    }
    let swapped = |a: &[Token<'_>], b: &[Token<'_>]| {
        matches!((equality_sides(a, depth), equality_sides(b, depth)), (Some((al, ar)), Some((bl, br)))
            if same_tokens(al, br) && same_tokens(ar, bl))
    };
    terms
        .iter()
        .any(|earlier| same_tokens(earlier, current) || swapped(earlier, current))
        .then(|| {
            body.iter()
                .rev()
                .find(|t| connective(t) && t.start < current[0].start)
        })
        .flatten()
        .map(|t| t.start)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(sql: &str, needle: &str) -> usize {
        sql.find(needle).unwrap()
    }

    fn rat(sql: &str, needle: &str) -> usize {
        sql.rfind(needle).unwrap()
    }

    #[test]
    fn the_last_table_of_a_mentions_level() {
        let table = |sql: &str, at: usize| last_table_in_scope(sql, at).map(|(t, _)| t);
        let sql = "SELECT album_id, title FROM artists";
        assert_eq!(
            last_table_in_scope(sql, 7),
            Some((at(sql, "artists"), None))
        );
        let sql = "SELECT name FROM artists JOIN albums ON artists.id = albums.id";
        assert_eq!(table(sql, 7), Some(rat(sql, "albums ON")));
        // A self join: the join is to blame.
        let sql = "SELECT name FROM artists a LEFT OUTER JOIN Artists ON a.id = artists.id";
        assert_eq!(
            last_table_in_scope(sql, 7),
            Some((at(sql, "Artists"), Some(at(sql, "LEFT"))))
        );
        let sql = "SELECT name FROM artists, albums, artists";
        assert_eq!(
            last_table_in_scope(sql, 7),
            Some((rat(sql, "artists"), Some(rat(sql, ","))))
        );
        let sql = "SELECT a FROM t1 AS x, \"t 2\" y WHERE b = 1";
        assert_eq!(table(sql, 7), Some(at(sql, "\"t 2\"")));
        // A mention inside a subquery sees the subquery's tables only, and
        // the outer query's mentions do not see the subquery's.
        let sql = "SELECT a FROM t1 WHERE b IN (SELECT c FROM t2 WHERE d = 1) ORDER BY e";
        assert_eq!(table(sql, at(sql, "c ")), Some(at(sql, "t2")));
        assert_eq!(table(sql, 7), Some(at(sql, "t1")));
        assert_eq!(table(sql, rat(sql, "e")), Some(at(sql, "t1")));
        // Each SELECT of a compound query has its own FROM clause.
        let sql = "SELECT a FROM t1 UNION SELECT b FROM t2";
        assert_eq!(table(sql, 7), Some(at(sql, "t1")));
        assert_eq!(table(sql, at(sql, "b ")), Some(at(sql, "t2")));
        // A derived table has no name to blame; a level without FROM none.
        let sql = "SELECT a FROM (SELECT 1 AS a)";
        assert_eq!(table(sql, 7), None);
        assert_eq!(table("SELECT 1", 7), None);
        // Strings and comments are not tables.
        let sql = "SELECT a FROM t1 -- JOIN t3\n WHERE x = ', t4'";
        assert_eq!(table(sql, 7), Some(at(sql, "t1")));
    }

    #[test]
    fn the_plain_names_a_level_expects_of_its_tables() {
        let sql = "SELECT a, t.b, COUNT(c) AS n, \"d e\" FROM t JOIN u ON t.x = u.x \
                   WHERE f > 1 AND g IN (SELECT h FROM v) ORDER BY n";
        assert_eq!(
            plain_names_in_level(sql, 7),
            vec!["a", "c", "d e", "f", "g", "n"]
        );
        assert_eq!(
            plain_names_in_level(sql, sql.find("h FROM").unwrap()),
            vec!["h"]
        );
        assert_eq!(unquoted("[x]"), "x");
        assert_eq!(unquoted("\"a \"\"b\"\"\""), "a \"b\"");
    }

    #[test]
    fn a_self_join_without_aliases() {
        let sql = "SELECT a FROM artists INNER JOIN Artists";
        assert_eq!(unaliased_self_join(sql), Some(at(sql, "INNER")));
        let sql = "SELECT a FROM artists, albums, artists";
        assert_eq!(unaliased_self_join(sql), Some(rat(sql, ",")));
        let cases = [
            "SELECT a FROM artists JOIN artists AS b",
            "SELECT a FROM artists a JOIN artists",
            "SELECT a FROM artists JOIN albums",
            "SELECT a FROM artists WHERE b IN (SELECT b FROM artists JOIN artists)",
            "SELECT a FROM artists",
        ];
        for sql in cases {
            assert_eq!(unaliased_self_join(sql), None, "{sql}");
        }
    }

    #[test]
    fn a_name_whose_parts_repeat() {
        let sql = "SELECT a AS total_cost_total_total";
        assert_eq!(
            name_with_repeated_parts(sql),
            Some((at(sql, "total_"), "total_cost_total_total"))
        );
        assert_eq!(
            name_with_repeated_parts("SELECT a AS rA_Ra_ra"),
            Some((12, "rA_Ra_ra"))
        );
        assert_eq!(
            name_with_repeated_parts("SELECT a AS total_cost_total"),
            None
        );
        assert_eq!(name_with_repeated_parts("SELECT a AS x_x_x "), None);
        assert_eq!(name_with_repeated_parts("SELECT 'x_x_x'"), None);
    }

    #[test]
    fn a_qualifier_the_from_clause_binds() {
        let sql = "SELECT D.name FROM professionals D JOIN dogs ON";
        assert!(binds_qualifier(sql, 7, "D"));
        assert!(binds_qualifier(sql, 7, "d"));
        assert!(!binds_qualifier(sql, 7, "professionals"));
        assert!(!binds_qualifier(sql, 7, "dogs_x"));
        let sql = "SELECT \"Dogs\".age FROM dogs, owners AS o";
        assert!(binds_qualifier(sql, 7, "\"Dogs\""));
        assert!(binds_qualifier(sql, 7, "O"));
        // The level of the mention only: a subquery's tables are its own.
        let sql = "SELECT x.a FROM t WHERE b IN (SELECT c FROM u x";
        assert!(!binds_qualifier(sql, 7, "x"));
        assert!(binds_qualifier(sql, sql.find("c FROM").unwrap(), "x"));
    }

    #[test]
    fn a_stretch_written_twice_in_a_row_is_a_loop() {
        let sql = "SELECT a FROM t JOIN u ON t.x = u.x JOIN u ON t.x = u.x";
        assert_eq!(repeated_tail(sql), Some(rat(sql, "JOIN")));
        let sql =
            "SELECT a FROM t JOIN (\n SELECT b, c FROM t JOIN (\n   select B, c FROM t JOIN (";
        assert_eq!(repeated_tail(sql), Some(rat(sql, "select")));
        let cases = [
            "SELECT a FROM t WHERE x = 1 AND x = 2",
            "SELECT 1, 1, 1",
            "SELECT a FROM t JOIN u ON t.x = u.x JOIN v ON t.x = v.x",
            "SELECT a FROM t WHERE x = 'a b c d' AND y = 'a b c d'",
        ];
        for sql in cases {
            assert_eq!(repeated_tail(sql), None, "{sql}");
        }
    }

    #[test]
    fn the_subqueries_still_open() {
        let sql = "SELECT a FROM (SELECT b FROM t WHERE c IN (SELECT d FROM u) AND f(1, (SELECT";
        assert_eq!(
            open_subqueries(sql),
            vec![at(sql, "(SELECT b"), rat(sql, "(SELECT")]
        );
        assert!(open_subqueries("SELECT (SELECT 1), COUNT(*) FROM t").is_empty());
    }

    #[test]
    fn the_innermost_open_parenthesis() {
        assert_eq!(open_level("SELECT a FROM t"), None);
        assert_eq!(open_level("SELECT COUNT(*) FROM t"), None);
        let sql = "SELECT a FROM t WHERE b IN (SELECT c FROM u WHERE d = MAX(1, 2) AND e = ('(')";
        assert_eq!(open_level(sql), Some(at(sql, "SELECT c")));
        assert_eq!(open_level("SELECT f(g(1, 2"), Some("SELECT f(g(".len()));
        let derived = |sql: &str| opens_derived_table(sql, open_level(sql).unwrap());
        assert!(derived("SELECT a FROM (SELECT b"));
        assert!(derived("SELECT a FROM t LEFT JOIN ( SELECT b FROM u"));
        assert!(!derived("SELECT a FROM t WHERE b IN (SELECT b"));
        assert!(!derived("SELECT (SELECT b"));
    }

    #[test]
    fn a_list_that_repeats_an_item() {
        let cases: &[(&str, Option<&str>)] = &[
            ("SELECT a, b, a", Some("a")),
            ("SELECT artists.id, Artists.ID", Some("Artists.ID")),
            ("SELECT DISTINCT x,  x", Some("x")),
            ("SELECT a, b", None),
            ("SELECT a, a FROM t", None),
            ("SELECT a FROM t GROUP BY x, y, x", Some("x")),
            ("SELECT a FROM t, u, T", Some("T")),
            ("SELECT a FROM t x, t y", None),
            ("SELECT a FROM t AS x, t AS y", None),
            ("SELECT f(x, 2) AS a, b, F(x, 2) AS c", Some("F(x")),
            ("SELECT f(x, 2) AS a, f(x, 3) AS c", None),
            ("SELECT a FROM t JOIN u ON t.x = u.x JOIN v, u", None),
            (
                "SELECT a FROM t JOIN u ON t.x = u.x JOIN v, w, v",
                Some("v"),
            ),
            (
                "SELECT a FROM t ORDER BY COUNT(*) DESC, COUNT ( * ) DESC",
                Some("COUNT ( *"),
            ),
            ("SELECT COUNT(a, a)", None),
            ("SELECT a FROM t WHERE b IN (1, 1", None),
            ("SELECT 'x, x', 'x, x'", Some("'x, x'")),
        ];
        for (sql, want) in cases {
            let want = want.map(|w| rat(sql, w));
            assert_eq!(repeated_list_item(sql), want, "{sql}");
        }
    }

    #[test]
    fn a_literal_compared_with_a_column_is_found_with_its_tables() {
        let lit = |sql: &str| compared_literal_at_end(sql);
        let got = lit("SELECT * FROM songs WHERE \"top genre\" = 'dance p").unwrap();
        assert_eq!(got.tables, ["songs"]);
        assert_eq!(got.column, "top genre");
        assert!(!got.closed);
        let sql = "SELECT * FROM songs AS s JOIN artists a ON s.id = a.id WHERE a.name <> 'It''s' ";
        let got = lit(sql).unwrap();
        assert_eq!(
            (got.tables.as_slice(), got.column.as_str(), got.closed),
            (&["artists".to_string()][..], "name", true)
        );
        assert_eq!(&sql[got.content.clone()], "It''s");
        let got = lit("SELECT * FROM t WHERE c = 'dance ").unwrap();
        assert_eq!((got.content.len(), got.closed), (6, false));
        let got = lit("SELECT 1 FROM t, u WHERE c NOT IN ('a', 'b', 'c").unwrap();
        assert_eq!(
            (got.tables, got.column, got.closed),
            (
                vec!["t".to_string(), "u".to_string()],
                "c".to_string(),
                false
            )
        );
        for sql in [
            "SELECT * FROM t WHERE c LIKE 'a",
            "SELECT * FROM t WHERE c >= 'a'",
            "SELECT * FROM t WHERE c < 'a'",
            "SELECT * FROM t WHERE 'a' = c",
            "SELECT * FROM t WHERE x.c = 'a'",
            "SELECT * FROM t WHERE c = 'a' AND d = 1",
            "SELECT * FROM t WHERE c IN (SELECT 'a'",
        ] {
            assert_eq!(lit(sql), None, "{sql}");
        }
        assert!(lit("SELECT * FROM t WHERE c == 'a'").is_some());
        assert!(lit("SELECT * FROM t WHERE c != 'a'").is_some());
    }
}
