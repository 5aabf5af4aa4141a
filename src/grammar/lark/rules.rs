//! The query rules, written once and instantiated per variant, and the
//! SQLite functions the grammar knows with their arities.
//!
//! In the templates `$V` is the suffix of the variant being written, `$Q`
//! the suffix of the variant nested queries use, and `$W` the suffix of
//! the WITH variant. Schema mode has three variants:
//!
//! - `""`: a query without WITH. Tables and columns come from the schema.
//! - `"_d"`: a nested SELECT whose FROM has a subquery (a derived table,
//!   as in `(SELECT MAX(n) FROM (SELECT COUNT(*) AS n …))`). Its columns
//!   may also be the subquery's result names (free identifiers); tables
//!   still come from the schema. The top-level SELECT cannot be one: its
//!   select list, where models most often invent columns, stays strict.
//!   Nested queries of `""` and `"_d"` use `query_n`, whose SELECTs may be
//!   either.
//! - `"_w"`: a query inside a WITH clause, where CTE names and their
//!   columns are free identifiers too. A nested query that starts with WITH
//!   switches to this variant, so CTE names can only be used where a WITH
//!   clause is in scope.
//!
//! Generic mode has one variant (`""`), where every name is free.

/// Rules written once. `start` admits leading whitespace (small models
/// start with a newline), one query, optional trailing whitespace and an
/// optional `;`, after which nothing can follow.
pub(super) const COMMON: &str = r#"start: S? query S? ";"?

with_clause: WITH (S RECURSIVE)? S cte (S? "," S? cte)*
cte: ALIAS (S? "(" S? ALIAS (S? "," S? ALIAS)* S? ")")? S AS (S (NOT S)? MATERIALIZED)? S? "(" S? query$W S? ")"
compound_op: UNION (S ALL)? | INTERSECT | EXCEPT
col_alias: S AS S ALIAS | S AS S? STRING
table_alias: S (AS S)? TALIAS
join_op: (NATURAL S)? ((LEFT | RIGHT | FULL) (S OUTER)? S | INNER S | CROSS S)? JOIN
ord_suffix: (S (ASC | DESC))? (S NULLS S (FIRST | LAST))?
wordop: AND | OR | IS | IS (S NOT)? S DISTINCT S FROM | (NOT S)? GLOB
literal: NUMBER | STRING | DQSTRING | BLOB | NULL | TRUE | FALSE
       | CURRENT_DATE | CURRENT_TIME | CURRENT_TIMESTAMP
type_name: TYPE (S TYPE)? (S? "(" S? SNUM (S? "," S? SNUM)? S? ")")?
"#;

/// A whole query (WITH, compound SELECT, ORDER BY, LIMIT): written for the
/// variants a query can start in (`""` and `"_w"`).
pub(super) const QUERY: &str = r#"query$V: select_stmt$V | with_clause S select_stmt$W
select_stmt$V: select_core$V (S compound_op S select_core$V)* order_by$V? limit$V?
order_by$V: S ORDER S BY sxo$V ord_suffix (S? "," S? expr_o$V ord_suffix)*
limit$V: S LIMIT sx$V (S OFFSET sx$V | S? "," S? expr$V)?
"#;

/// A nested query of the `""` and `"_d"` variants: each SELECT may be a
/// derived-table SELECT.
pub(super) const NESTED_QUERY: &str = r#"query_n: select_stmt_n | with_clause S select_stmt$W
select_stmt_n: select_core_n (S compound_op S select_core_n)* order_by? limit?
select_core_n: select_core | select_core_d
"#;

/// Rules written once per variant (a select list has at most 24 columns, so
/// a model that repeats itself must move on). `$CLAUSES` is the FROM clause
/// and the clauses that need one: WHERE, GROUP BY, HAVING and WINDOW come
/// only after a FROM (optional, required, or absent when a schema has no
/// table), so a model cannot filter rows it has not said where to take from.
///
/// Expressions are flat operator lists (`unit tail*`): precedence does not
/// matter for what is accepted, and layered precedence rules exceed the
/// Earley item limit on inputs such as `((((`. A separator is explicit
/// wherever two words meet (`S`); around punctuation it is optional.
/// `sx` is an expression after a keyword: whitespace first, or none when
/// the expression starts with `(`.
pub(super) const VARIANT: &str = r#"select_core$V: SELECT (S (DISTINCT | ALL))? first_col$V (S? "," S? result_col$V){0,23}$CLAUSES
first_col$V: S result_col$V | STAR | pexpr$V col_alias?
result_col$V: STAR$QSTAR | expr$V col_alias?
$FROM_RULES
where$V: S WHERE sx$V
group_by$V: S GROUP S BY sxo$V (S? "," S? expr_o$V)*
having$V: S HAVING sxo$V
window_clause$V: S WINDOW S window_def$V (S? "," S? window_def$V)*
window_def$V: ALIAS S AS S? "(" S? window_spec$V? S? ")"

sx$V: S expr$V | pexpr$V
sxo$V: S expr_o$V | pexpr$V
expr$V: unit$V tail$V*
expr_o$V: (unit$V | ALIAS) tail$V*
pexpr$V: paren$V tail$V*
tail$V: atail$V
      | S? CMPOP S? unit$V
      | S wordop (S unit$V | paren$V)
      | S (NOT S)? LIKE (S unit$V | paren$V) (S ESCAPE (S unit$V | paren$V))?
      | S (NOT S)? IN S? "(" S? in_list$V? S? ")"
      | S (NOT S)? BETWEEN (S arith$V | parith$V) S AND (S arith$V | parith$V)
      | S (ISNULL | NOTNULL | NOT S NULL)
atail$V: S? ARITHOP S? unit$V
       | S? MINUS (S? unit_nm$V | S unit$V)
       | S COLLATE S COLLATION
arith$V: unit$V atail$V*
parith$V: paren$V atail$V*
in_list$V: query$Q | expr$V (S? "," S? expr$V)*
unit$V: unit_nm$V | MINUS S? primary$V
unit_nm$V: primary$V | NOT S unit$V | NOT paren$V | UNARY S? primary$V
primary$V: literal |$COLREF func$V | paren$V
         | EXISTS S? "(" S? query$Q S? ")"
         | CAST S? "(" S? expr$V S AS S type_name S? ")"
         | CASE (S expr$V)? (S WHEN sx$V S THEN sx$V)+ (S ELSE sx$V)? S END
paren$V: "(" S? (query$Q | expr$V (S? "," S? expr$V)*) S? ")"
cexpr$V: S? "," S? expr$V

agg_tail$V: (S FILTER S? "(" S? WHERE sx$V S? ")")? over$V?
over$V: S OVER (S? "(" S? window_spec$V? S? ")" | S ALIAS)
window_spec$V: partition$V (S window_order$V)? (S frame$V)?
             | window_order$V (S frame$V)?
             | frame$V
partition$V: PARTITION S BY sx$V (S? "," S? expr$V)*
window_order$V: ORDER S BY sx$V ord_suffix (S? "," S? expr$V ord_suffix)*
frame$V: (RANGE | ROWS | GROUPS) S (BETWEEN S frame_bound$V S AND S frame_bound$V | frame_bound$V) (S EXCLUDE S (NO S OTHERS | CURRENT S ROW | GROUP | TIES))?
frame_bound$V: UNBOUNDED S (PRECEDING | FOLLOWING) | CURRENT S ROW | unit$V S (PRECEDING | FOLLOWING)
"#;

/// The FROM clause and joins.
pub(super) const FROM_RULES: &str = r#"from$V: S FROM (S table_or_sub$V | subquery$V) join$V*
table_or_sub$V: tname$V table_alias? | subquery$V
subquery$V: "(" S? query$Q S? ")" (S? (AS S)? TALIAS)?
join$V: S? "," S? table_or_sub$V
      | S join_op (S table_or_sub$V | subquery$V) join_cond$V?
join_cond$V: S ON sx$V | S USING S? "(" S? ucol$V (S? "," S? ucol$V)* S? ")""#;

/// The FROM clause of the derived-table variant: it has a subquery, first
/// or after tables only.
pub(super) const DERIVED_FROM_RULES: &str = r#"from$V: S FROM (S? subquery$V | S tname$V table_alias? table_join$V* subquery_join$V) join$V*
table_or_sub$V: tname$V table_alias? | subquery$V
subquery$V: "(" S? query$Q S? ")" (S? (AS S)? TALIAS)?
table_join$V: S? "," S? tname$V table_alias?
            | S join_op S tname$V table_alias? join_cond$V?
subquery_join$V: S? "," S? subquery$V
               | S join_op S? subquery$V join_cond$V?
join$V: S? "," S? table_or_sub$V
      | S join_op (S table_or_sub$V | subquery$V) join_cond$V?
join_cond$V: S ON sx$V | S USING S? "(" S? ucol$V (S? "," S? ucol$V)* S? ")""#;

/// How many arguments a function takes: at least `min`, at most `max`
/// (`None`: no upper bound).
#[derive(Debug, Clone, Copy)]
pub(super) struct Arity {
    pub min: usize,
    pub max: Option<usize>,
}

const fn arity(min: usize, max: Option<usize>) -> Arity {
    Arity { min, max }
}

/// Scalar functions of the SQLite this crate links (3.50, without the
/// optional math functions), grouped by arity. A wrong argument count is a
/// prepare-time error, so arities are part of the grammar. `strftime` needs
/// a time value and the date functions one argument: without one they
/// return the current time, which is never what a question about the data
/// means (`'now'` asks for it explicitly).
pub(super) const SCALAR_FUNCTIONS: &[(&str, Arity, &[&str])] = &[
    ("FN_0", arity(0, Some(0)), &["random"]),
    (
        "FN_1",
        arity(1, Some(1)),
        &[
            "abs",
            "hex",
            "length",
            "likely",
            "lower",
            "octet_length",
            "quote",
            "randomblob",
            "sign",
            "soundex",
            "typeof",
            "unicode",
            "unlikely",
            "upper",
            "zeroblob",
        ],
    ),
    (
        "FN_2",
        arity(2, Some(2)),
        &[
            "glob",
            "ifnull",
            "instr",
            "likelihood",
            "nullif",
            "timediff",
        ],
    ),
    ("FN_3", arity(3, Some(3)), &["iif", "replace"]),
    (
        "FN_1_2",
        arity(1, Some(2)),
        &["ltrim", "round", "rtrim", "trim", "unhex"],
    ),
    (
        "FN_2_3",
        arity(2, Some(3)),
        &["like", "substr", "substring"],
    ),
    ("FN_0_N", arity(0, None), &["char"]),
    (
        "FN_1_N",
        arity(1, None),
        &[
            "concat",
            "date",
            "datetime",
            "format",
            "julianday",
            "printf",
            "time",
            "unixepoch",
        ],
    ),
    (
        "FN_2_N",
        arity(2, None),
        &["coalesce", "concat_ws", "strftime"],
    ),
];

/// Window-only functions (they need `OVER`), grouped by arity.
pub(super) const WINDOW_FUNCTIONS: &[(&str, Arity, &[&str])] = &[
    (
        "WIN_0",
        arity(0, Some(0)),
        &[
            "cume_dist",
            "dense_rank",
            "percent_rank",
            "rank",
            "row_number",
        ],
    ),
    (
        "WIN_1",
        arity(1, Some(1)),
        &["first_value", "last_value", "ntile"],
    ),
    ("WIN_2", arity(2, Some(2)), &["nth_value"]),
    ("WIN_1_3", arity(1, Some(3)), &["lag", "lead"]),
];

/// Aggregate functions: `COUNT(*)`, `COUNT([DISTINCT] x)`,
/// `SUM/AVG/TOTAL([DISTINCT] x)`, `MIN/MAX([DISTINCT] x)` (with two or more
/// arguments they are the scalar `min`/`max`), `GROUP_CONCAT(DISTINCT x)`
/// or `GROUP_CONCAT(x[, sep])`, `STRING_AGG(x, sep)`; each may carry
/// `FILTER (WHERE …)` and `OVER (…)`.
pub(super) const AGGREGATE_RULES: &str = r#"func$V: FN_COUNT S? "(" S? (STAR | (DISTINCT S)? expr$V) S? ")" agg_tail$V
      | FN_AGG S? "(" S? (DISTINCT S)? expr$V S? ")" agg_tail$V
      | FN_MINMAX S? "(" S? (DISTINCT S)? expr$V S? ")" agg_tail$V
      | FN_MINMAX S? "(" S? expr$V cexpr$V+ S? ")"
      | FN_GROUP_CONCAT S? "(" S? (DISTINCT S expr$V | expr$V cexpr$V?) S? ")" agg_tail$V
      | FN_STRING_AGG S? "(" S? expr$V cexpr$V S? ")" agg_tail$V
"#;

/// Lexemes of the aggregate function names.
pub(super) const AGGREGATE_TERMINALS: &[(&str, &[&str])] = &[
    ("FN_COUNT", &["count"]),
    ("FN_AGG", &["avg", "sum", "total"]),
    ("FN_MINMAX", &["max", "min"]),
    ("FN_GROUP_CONCAT", &["group_concat"]),
    ("FN_STRING_AGG", &["string_agg"]),
];

/// The argument list for `arity`: `(` expr, … `)`. Optional arguments
/// nest (`(, x (, y)?)?`) so every argument count has one derivation.
pub(super) fn arguments(arity: Arity) -> String {
    let list = match (arity.min, arity.max) {
        (0, Some(0)) => String::new(),
        (0, Some(max)) => format!(" (expr$V{})?", optional_args(max - 1)),
        (0, None) => " (expr$V cexpr$V*)?".to_string(),
        (min, max) => {
            let mut list = String::from(" expr$V");
            list.push_str(&" cexpr$V".repeat(min - 1));
            match max {
                Some(max) => list.push_str(&optional_args(max.saturating_sub(min))),
                None => list.push_str(" cexpr$V*"),
            }
            list
        }
    };
    if list.is_empty() {
        r#"S? "(" S? ")""#.to_string()
    } else {
        format!(r#"S? "(" S?{list} S? ")""#)
    }
}

/// Up to `n` more arguments, nested.
fn optional_args(n: usize) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(" (cexpr$V{})?", optional_args(n - 1))
    }
}

/// Keywords the grammar uses, each a case-insensitive (ASCII) lexeme of
/// the same name.
pub(super) const KEYWORDS: &[&str] = &[
    "ALL",
    "AND",
    "AS",
    "ASC",
    "BETWEEN",
    "BY",
    "CASE",
    "CAST",
    "COLLATE",
    "CROSS",
    "CURRENT",
    "CURRENT_DATE",
    "CURRENT_TIME",
    "CURRENT_TIMESTAMP",
    "DESC",
    "DISTINCT",
    "ELSE",
    "END",
    "ESCAPE",
    "EXCEPT",
    "EXCLUDE",
    "EXISTS",
    "FALSE",
    "FILTER",
    "FIRST",
    "FOLLOWING",
    "FROM",
    "FULL",
    "GLOB",
    "GROUP",
    "GROUPS",
    "HAVING",
    "IN",
    "INNER",
    "INTERSECT",
    "IS",
    "ISNULL",
    "JOIN",
    "LAST",
    "LEFT",
    "LIKE",
    "LIMIT",
    "MATERIALIZED",
    "NATURAL",
    "NO",
    "NOT",
    "NOTNULL",
    "NULL",
    "NULLS",
    "OFFSET",
    "ON",
    "OR",
    "ORDER",
    "OTHERS",
    "OUTER",
    "OVER",
    "PARTITION",
    "PRECEDING",
    "RANGE",
    "RECURSIVE",
    "RIGHT",
    "ROW",
    "ROWS",
    "SELECT",
    "THEN",
    "TIES",
    "TRUE",
    "UNBOUNDED",
    "UNION",
    "USING",
    "WHEN",
    "WHERE",
    "WINDOW",
    "WITH",
];

/// Type names accepted in `CAST(x AS …)`: every one maps to a SQLite type
/// affinity.
pub(super) const TYPE_NAMES: &[&str] = &[
    "bigint",
    "blob",
    "boolean",
    "char",
    "character",
    "date",
    "datetime",
    "decimal",
    "double",
    "float",
    "int",
    "integer",
    "mediumint",
    "nchar",
    "numeric",
    "nvarchar",
    "precision",
    "real",
    "signed",
    "smallint",
    "text",
    "tinyint",
    "unsigned",
    "varchar",
];

/// Collations built into SQLite.
pub(super) const COLLATIONS: &[&str] = &["binary", "nocase", "rtrim"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argument_lists_follow_arities() {
        assert_eq!(arguments(arity(0, Some(0))), r#"S? "(" S? ")""#);
        assert_eq!(
            arguments(arity(2, Some(3))),
            r#"S? "(" S? expr$V cexpr$V (cexpr$V)? S? ")""#
        );
        assert_eq!(
            arguments(arity(1, Some(3))),
            r#"S? "(" S? expr$V (cexpr$V (cexpr$V)?)? S? ")""#
        );
        assert_eq!(
            arguments(arity(1, None)),
            r#"S? "(" S? expr$V cexpr$V* S? ")""#
        );
        assert_eq!(
            arguments(arity(0, None)),
            r#"S? "(" S? (expr$V cexpr$V*)? S? ")""#
        );
    }
}
