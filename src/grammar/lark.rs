//! Lark grammars (llguidance dialect) for one read-only SQLite query.
//! Initial generic grammar; the schema-aware generator replaces it.

use super::{GrammarMode, GrammarOptions};
use crate::sql::Schema;

const GENERIC: &str = r#"// SQLite SELECT subset for llguidance 1.9.1. Explicit whitespace (S), no %ignore.
start: query S? ";"

query: with_clause? select_core (S compound_op S select_core)* order_by? limit?
with_clause: WITH S cte (S? "," S? cte)* S
cte: name S AS S? "(" S? query S? ")"
compound_op: UNION (S ALL)? | INTERSECT | EXCEPT

select_core: SELECT (S DISTINCT)? S result_cols from_clause? where_clause? group_by? having?
result_cols: result_col (S? "," S? result_col)*
result_col: "*" | name "." "*" | expr (S (AS S)? name)?

from_clause: S FROM S table_ref (join_op table_ref join_cond?)*
join_op: S? "," S? | S ((LEFT | RIGHT | FULL) (S OUTER)? S | INNER S | CROSS S)? JOIN S
join_cond: S ON S expr | S USING S? "(" S? name (S? "," S? name)* S? ")"
table_ref: name ("." name)? (S (AS S)? name)?
         | "(" S? query S? ")" (S (AS S)? name)?

where_clause: S WHERE S expr
group_by: S GROUP S BY S expr (S? "," S? expr)*
having: S HAVING S expr
order_by: S ORDER S BY S ordering_term (S? "," S? ordering_term)*
ordering_term: expr (S (ASC | DESC))?
limit: S LIMIT S expr (S OFFSET S expr)?

// Flat operator lists (no precedence layers): precedence is irrelevant for
// constraining, and layered expr/and/not/cmp/sum/prod/unary rules blow the
// Earley item limit on tokens like " ((((" right after SELECT.
expr: unit (binop unit)*
binop: S? SYMOP S?
     | S (AND | OR | IS (S NOT)? | (NOT S)? (LIKE | GLOB)) S
unit: (NOT S | "-" S?)? atom postfix?
postfix: S (NOT S)? IN S? "(" S? (query | expr (S? "," S? expr)*) S? ")"
       | S (NOT S)? BETWEEN S atom S AND S atom
atom: NUMBER | STRING | NULL
    | name ("." name)?
    | name S? "(" S? ((DISTINCT S)? (expr (S? "," S? expr)* | "*") S?)? ")"
    | "(" S? expr S? ")"
    | "(" S? query S? ")"
    | EXISTS S? "(" S? query S? ")"
    | CAST S? "(" S? expr S AS S name S? ")"
    | CASE (S expr)? (S WHEN S expr S THEN S expr)+ (S ELSE S expr)? S END
name: IDENT | QIDENT

SYMOP: "=" | "==" | "!=" | "<>" | "<" | "<=" | ">" | ">=" | "+" | "-" | "||" | "*" | "/" | "%"
NUMBER: /[0-9]{1,18}(\.[0-9]{1,18})?/
STRING: /'(''|[^'\n]){0,200}'/
S: /[ \t\n]{1,8}/
IDENT: /[A-Za-z_][A-Za-z0-9_]{0,63}/ & ~KW
QIDENT: /"[^"\n]{1,64}"/ | /`[^`\n]{1,64}`/

SELECT: "select"i
DISTINCT: "distinct"i
ALL: "all"i
FROM: "from"i
WHERE: "where"i
GROUP: "group"i
BY: "by"i
HAVING: "having"i
ORDER: "order"i
LIMIT: "limit"i
OFFSET: "offset"i
JOIN: "join"i
LEFT: "left"i
RIGHT: "right"i
FULL: "full"i
INNER: "inner"i
OUTER: "outer"i
CROSS: "cross"i
ON: "on"i
USING: "using"i
AS: "as"i
AND: "and"i
OR: "or"i
NOT: "not"i
IN: "in"i
IS: "is"i
NULL: "null"i
LIKE: "like"i
GLOB: "glob"i
BETWEEN: "between"i
UNION: "union"i
INTERSECT: "intersect"i
EXCEPT: "except"i
WITH: "with"i
CASE: "case"i
WHEN: "when"i
THEN: "then"i
ELSE: "else"i
END: "end"i
EXISTS: "exists"i
CAST: "cast"i
ASC: "asc"i
DESC: "desc"i
KW: SELECT | DISTINCT | ALL | FROM | WHERE | GROUP | BY | HAVING | ORDER | LIMIT
  | OFFSET | JOIN | LEFT | RIGHT | FULL | INNER | OUTER | CROSS | ON | USING | AS
  | AND | OR | NOT | IN | IS | NULL | LIKE | GLOB | BETWEEN | UNION | INTERSECT
  | EXCEPT | WITH | CASE | WHEN | THEN | ELSE | END | EXISTS | CAST | ASC | DESC
"#;

/// The grammar for `schema` under `options` (`None` for [`GrammarMode::None`]).
pub fn lark_grammar(_schema: &Schema, options: &GrammarOptions) -> Option<String> {
    match options.mode {
        GrammarMode::None => None,
        GrammarMode::Schema | GrammarMode::Generic => Some(GENERIC.to_string()),
    }
}
