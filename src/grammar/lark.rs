//! Lark grammars (llguidance dialect) for one read-only SQLite query,
//! generated per database.
//!
//! The grammar admits exactly one `SELECT` (or `WITH … SELECT`) statement,
//! optionally ended by `;`: nothing that writes, attaches or sets pragmas
//! can be spelled. It follows llguidance's rules for fast masks:
//!
//! - UPPERCASE terminals are lexemes (one regex each), lowercase names are
//!   rules. Keywords are ASCII-caseless regexes (`/(?i-u:select)/`; the
//!   `"select"i` form would also fold Unicode, e.g. `ſelect`).
//! - Whitespace is an explicit lexeme `S`, required between two words and
//!   optional around punctuation, so `SELECTtitle` is rejected (an
//!   `%ignore` would accept it).
//! - Every lexeme is bounded: whitespace runs, identifiers, numbers, and
//!   string literals (`max_string_len` characters), so a model cannot be
//!   trapped inside one. A whitespace run holds at most one line break
//!   and an indentation of 8 blanks: a model that would pad every token
//!   with blank lines and tabs spends its tokens on SQL instead.
//! - Expressions are flat operator lists; layered precedence rules exceed
//!   the parser's item limit.
//!
//! In [`GrammarMode::Schema`] table and column names are alternatives taken
//! from the database, in every spelling SQLite accepts (bare when plain or
//! a keyword SQLite reads as a name there, `"…"`, `[…]`, `` `…` ``), matched
//! ASCII-caseless as SQLite does. A column qualified by a table name must
//! belong to that table; one qualified by an alias may be any column of the
//! schema. Aliases, CTE names and result names are free identifiers (no
//! keyword) where SQLite defines them; result names may be used in ORDER
//! BY, GROUP BY and HAVING. Two more copies of the query rules widen the
//! names where a free one can be meant (see [`rules`]): inside WITH (CTE
//! names and their columns), and in a nested SELECT over a derived table
//! (the subquery's result names). The top-level select list stays strict.
//! In [`GrammarMode::Generic`] any identifier names a table or a column.

mod names;
mod rules;

use super::{GrammarMode, GrammarOptions};
use crate::sql::{Schema, SQLITE_KEYWORDS};

/// The grammar for `schema` under `options` (`None` for
/// [`GrammarMode::None`]).
///
/// ```
/// use sqlagent::grammar::{lark::lark_grammar, GrammarOptions};
/// use sqlagent::sql::Schema;
///
/// let lark = lark_grammar(&Schema { tables: vec![] }, &GrammarOptions::default()).unwrap();
/// assert!(lark.starts_with("// "));
/// ```
pub fn lark_grammar(schema: &Schema, options: &GrammarOptions) -> Option<String> {
    let names = match options.mode {
        GrammarMode::None => return None,
        GrammarMode::Generic => names::generic_names(),
        GrammarMode::Schema => names::schema_names(schema),
    };
    let with = if options.mode == GrammarMode::Schema {
        "_w"
    } else {
        ""
    };
    let variants = variants(options.mode, names.no_tables);

    let mut out = String::new();
    out.push_str(&format!(
        "// One read-only SQLite query ({} mode{}): SELECT or WITH … SELECT, optional `;`.\n\
         // llguidance Lark dialect: UPPERCASE = lexeme, lowercase = rule.\n\n",
        options.mode,
        match options.mode {
            GrammarMode::Schema => format!(", {} tables and views", schema.tables.len()),
            _ => String::new(),
        }
    ));
    out.push_str(&rules::COMMON.replace("$W", with));
    for variant in &variants {
        out.push('\n');
        out.push_str(
            &variant
                .rules()
                .replace("$V", variant.suffix)
                .replace("$Q", variant.nested)
                .replace("$W", with),
        );
    }
    out.push('\n');
    out.push_str(&names.rules);
    out.push('\n');
    out.push_str(&terminals(options.max_string_len));
    out.push_str(&names.terminals);
    Some(out)
}

/// What a variant's FROM clause is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FromClause {
    /// Optional, any tables and subqueries.
    Optional,
    /// Required, with at least one subquery (the derived-table variant).
    Derived,
    /// None: the schema has no table to name.
    Absent,
}

/// One copy of the query rules (see [`rules`] for the variants).
#[derive(Debug, Clone, Copy)]
struct Variant {
    /// Suffix of its rule names.
    suffix: &'static str,
    /// Suffix of the variant its nested queries use.
    nested: &'static str,
    /// Whether a whole query (WITH, compound, ORDER BY, LIMIT) starts here.
    query: bool,
    /// Whether it writes `query_n`, the nested query of `""` and `"_d"`.
    nested_query: bool,
    /// Its FROM clause.
    from: FromClause,
}

/// The variants of `mode`; `no_tables` when the schema has none.
fn variants(mode: GrammarMode, no_tables: bool) -> Vec<Variant> {
    let plain = Variant {
        suffix: "",
        nested: "",
        query: true,
        nested_query: false,
        from: FromClause::Optional,
    };
    if mode != GrammarMode::Schema {
        return vec![plain];
    }
    let with = Variant {
        suffix: "_w",
        nested: "_w",
        ..plain
    };
    if no_tables {
        return vec![
            Variant {
                from: FromClause::Absent,
                ..plain
            },
            with,
        ];
    }
    let plain = Variant {
        nested: "_n",
        nested_query: true,
        ..plain
    };
    let derived = Variant {
        suffix: "_d",
        query: false,
        nested_query: false,
        from: FromClause::Derived,
        ..plain
    };
    vec![plain, derived, with]
}

impl Variant {
    /// The rules of this variant, still with `$V`/`$Q`/`$W`.
    fn rules(&self) -> String {
        let names = self.from != FromClause::Absent;
        let pick = |text: &'static str| if names { text } else { "" };
        const CLAUSES: &str = "from$V where$V? group_by$V? having$V? window_clause$V?";
        let (clauses, from_rules) = match self.from {
            FromClause::Optional => (format!(" ({CLAUSES})?"), rules::FROM_RULES),
            FromClause::Derived => (format!(" {CLAUSES}"), rules::DERIVED_FROM_RULES),
            FromClause::Absent => (String::new(), ""),
        };
        let mut body = String::new();
        if self.query {
            body.push_str(rules::QUERY);
        }
        if self.nested_query {
            body.push_str(rules::NESTED_QUERY);
        }
        body.push_str(
            &rules::VARIANT
                .replace("$FROM_RULES", from_rules)
                .replace("$CLAUSES", &clauses)
                .replace("$QSTAR", pick(" | qstar$V"))
                .replace("$COLREF", pick(" colref$V |")),
        );
        body.push_str(rules::AGGREGATE_RULES);
        for (lexeme, arity, _) in rules::SCALAR_FUNCTIONS {
            body.push_str(&format!("      | {lexeme} {}\n", rules::arguments(*arity)));
        }
        for (lexeme, arity, _) in rules::WINDOW_FUNCTIONS {
            body.push_str(&format!(
                "      | {lexeme} {} over$V\n",
                rules::arguments(*arity)
            ));
        }
        body
    }
}

/// Every terminal that does not depend on the schema.
fn terminals(max_string_len: usize) -> String {
    let mut out = String::new();
    let n = max_string_len;
    out.push_str(&format!(
        r#"S: /[ \t]{{1,8}}|[ \t]{{0,8}}\r?\n[ \t]{{0,8}}/
STAR: "*"
MINUS: "-"
UNARY: /[+~]/
CMPOP: /==?|!=|<>|<=?|>=?/
ARITHOP: /[+*%&]|\x2F|\|\|?|<<|>>/
NUMBER: /[0-9]{{1,20}}(\.[0-9]{{0,20}})?([eE][+\-]?[0-9]{{1,3}})?|\.[0-9]{{1,20}}([eE][+\-]?[0-9]{{1,3}})?|0[xX][0-9a-fA-F]{{1,16}}/
SNUM: /[+\-]?[0-9]{{1,10}}/
STRING: /'(''|[^'\r\n]){{0,{n}}}'/
DQSTRING: /"(""|[^"\r\n]){{0,{n}}}"/
BLOB: /[xX]'([0-9a-fA-F]{{2}}){{0,{half}}}'/
QIDENT: /"(""|[^"\r\n]){{1,64}}"|\[[^\]\r\n]{{1,64}}\]|`(``|[^`\r\n]){{1,64}}`/
ALIAS: IDENT | QIDENT
"#,
        half = n / 2
    ));
    let mut keywords: Vec<&str> = SQLITE_KEYWORDS.to_vec();
    keywords.extend(["TRUE", "FALSE"]);
    out.push_str(&names::ident_terminal(&keywords));
    out.push_str(&caseless_terminal("TYPE", rules::TYPE_NAMES));
    out.push_str(&caseless_terminal("COLLATION", rules::COLLATIONS));
    for k in rules::KEYWORDS {
        out.push_str(&caseless_terminal(k, &[&k.to_ascii_lowercase()]));
    }
    for (lexeme, names) in rules::AGGREGATE_TERMINALS {
        out.push_str(&caseless_terminal(lexeme, names));
    }
    for (lexeme, _, names) in rules::SCALAR_FUNCTIONS
        .iter()
        .chain(rules::WINDOW_FUNCTIONS)
    {
        out.push_str(&caseless_terminal(lexeme, names));
    }
    out
}

/// `NAME: /(?i-u:a|b|…)/` for plain ASCII words.
fn caseless_terminal(name: &str, words: &[&str]) -> String {
    format!("{name}: /(?i-u:{})/\n", words.join("|"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grammar::check::GrammarChecker;
    use crate::sql::{quote_ident, Column, Table};

    fn table(name: &str, columns: &[&str]) -> Table {
        Table {
            name: name.into(),
            quoted: quote_ident(name),
            is_view: false,
            columns: columns
                .iter()
                .map(|c| Column {
                    name: (*c).into(),
                    quoted: quote_ident(c),
                    decl_type: String::new(),
                    not_null: false,
                    primary_key: false,
                    samples: Vec::new(),
                })
                .collect(),
            primary_key: Vec::new(),
            foreign_keys: Vec::new(),
            row_count: 0,
        }
    }

    #[test]
    fn every_mode_compiles_and_none_has_no_grammar() {
        let schema = Schema {
            tables: vec![
                table(
                    "songs",
                    &["title", "top genre", "loudness.dB", "a/b", "année"],
                ),
                table("order", &["id", "match"]),
            ],
        };
        for (schema, mode) in [
            (&schema, GrammarMode::Schema),
            (&schema, GrammarMode::Generic),
            (&Schema { tables: Vec::new() }, GrammarMode::Schema),
        ] {
            let options = GrammarOptions {
                mode,
                ..GrammarOptions::default()
            };
            let lark = lark_grammar(schema, &options).expect("a grammar");
            let checker = GrammarChecker::new(&lark)
                .unwrap_or_else(|e| panic!("{mode} grammar compiles: {e}\n{lark}"));
            assert_eq!(checker.check("SELECT 1;"), Ok(()), "{mode}");
        }
        let none = GrammarOptions {
            mode: GrammarMode::None,
            ..GrammarOptions::default()
        };
        assert_eq!(lark_grammar(&schema, &none), None);
    }
}
