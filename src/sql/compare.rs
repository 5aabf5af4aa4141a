//! Whether two result sets are the same answer (execution accuracy): rows
//! compared as multisets, or in order when the gold query's outermost
//! statement has ORDER BY; numbers equal within a relative tolerance
//! (an INTEGER 3 equals a REAL 3.0); NULL equals NULL; columns matched up
//! to order (a query that lists the same columns in another order gives
//! the same answer), names ignored.

use super::lex::top_level_words;
use super::value::{QueryResult, Value};

/// Relative tolerance for comparing numbers.
pub const REL_TOLERANCE: f64 = 1e-6;

/// Whether the outermost statement of `sql` has an ORDER BY (not one inside
/// a subquery or a window): then row order is part of the answer.
///
/// ```
/// use sqlagent::sql::orders_rows;
/// assert!(orders_rows("SELECT a FROM t ORDER BY a"));
/// assert!(!orders_rows("SELECT a, RANK() OVER (ORDER BY a) FROM t"));
/// assert!(!orders_rows("SELECT * FROM (SELECT a FROM t ORDER BY a)"));
/// ```
pub fn orders_rows(sql: &str) -> bool {
    top_level_words(sql)
        .windows(2)
        .any(|w| w[0] == "ORDER" && w[1] == "BY")
}

/// Whether `got` gives the same answer as `gold`; `ordered`: row order
/// matters (see [`orders_rows`]).
pub fn results_match(gold: &QueryResult, got: &QueryResult, ordered: bool) -> bool {
    let width = gold.columns.len();
    if got.columns.len() != width || got.rows.len() != gold.rows.len() {
        return false;
    }
    if width == 0 {
        return true;
    }
    // Columns of `got` that could stand for each gold column: same values
    // as a multiset.
    let column = |r: &QueryResult, c: usize| -> Vec<Value> {
        let mut v: Vec<Value> = r.rows.iter().map(|row| row[c].clone()).collect();
        v.sort_by(order);
        v
    };
    let gold_cols: Vec<Vec<Value>> = (0..width).map(|c| column(gold, c)).collect();
    let got_cols: Vec<Vec<Value>> = (0..width).map(|c| column(got, c)).collect();
    let candidates: Vec<Vec<usize>> = gold_cols
        .iter()
        .map(|g| {
            (0..width)
                .filter(|&c| same_values(g, &got_cols[c]))
                .collect()
        })
        .collect();
    let mut used = vec![false; width];
    let mut perm = Vec::with_capacity(width);
    assign(&candidates, &mut used, &mut perm, &mut |perm| {
        rows_match(gold, got, perm, ordered)
    })
}

/// Tries every assignment of gold columns to distinct `got` columns among
/// the candidates; true when `accept` holds for one.
fn assign(
    candidates: &[Vec<usize>],
    used: &mut [bool],
    perm: &mut Vec<usize>,
    accept: &mut dyn FnMut(&[usize]) -> bool,
) -> bool {
    let i = perm.len();
    if i == candidates.len() {
        return accept(perm);
    }
    for &c in &candidates[i] {
        if used[c] {
            continue;
        }
        used[c] = true;
        perm.push(c);
        if assign(candidates, used, perm, accept) {
            return true;
        }
        perm.pop();
        used[c] = false;
    }
    false
}

/// Rows equal (in order, or as multisets) with `got`'s columns permuted.
fn rows_match(gold: &QueryResult, got: &QueryResult, perm: &[usize], ordered: bool) -> bool {
    let mut got_rows: Vec<Vec<Value>> = got
        .rows
        .iter()
        .map(|row| perm.iter().map(|&c| row[c].clone()).collect())
        .collect();
    let mut gold_rows = gold.rows.clone();
    if !ordered {
        gold_rows.sort_by(|a, b| row_order(a, b));
        got_rows.sort_by(|a, b| row_order(a, b));
    }
    gold_rows
        .iter()
        .zip(&got_rows)
        .all(|(a, b)| a.iter().zip(b).all(|(x, y)| same_value(x, y)))
}

fn same_values(a: &[Value], b: &[Value]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_value(x, y))
}

/// Equal as answers: numbers within [`REL_TOLERANCE`] whatever their
/// storage class, NULL = NULL, text and blobs exactly.
pub fn same_value(a: &Value, b: &Value) -> bool {
    match (number(a), number(b)) {
        (Some(x), Some(y)) => {
            x == y || (x - y).abs() <= REL_TOLERANCE * x.abs().max(y.abs()).max(f64::MIN_POSITIVE)
        }
        (None, None) => match (a, b) {
            (Value::Null, Value::Null) => true,
            (Value::Text(x), Value::Text(y)) => x == y,
            (Value::Blob(x), Value::Blob(y)) => x == y,
            _ => false,
        },
        _ => false,
    }
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Integer(i) => Some(*i as f64),
        Value::Real(f) => Some(*f),
        _ => None,
    }
}

/// A total order for sorting: NULL < numbers < text < blobs (as SQLite
/// sorts); numbers by value.
fn order(a: &Value, b: &Value) -> std::cmp::Ordering {
    fn class(v: &Value) -> u8 {
        match v {
            Value::Null => 0,
            Value::Integer(_) | Value::Real(_) => 1,
            Value::Text(_) => 2,
            Value::Blob(_) => 3,
        }
    }
    class(a).cmp(&class(b)).then_with(|| match (a, b) {
        (Value::Text(x), Value::Text(y)) => x.cmp(y),
        (Value::Blob(x), Value::Blob(y)) => x.cmp(y),
        _ => match (number(a), number(b)) {
            (Some(x), Some(y)) => x.total_cmp(&y),
            _ => std::cmp::Ordering::Equal,
        },
    })
}

fn row_order(a: &[Value], b: &[Value]) -> std::cmp::Ordering {
    for (x, y) in a.iter().zip(b) {
        let o = order(x, y);
        if o != std::cmp::Ordering::Equal {
            return o;
        }
    }
    a.len().cmp(&b.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use Value::{Integer as I, Null as N, Real as R};

    fn t(s: &str) -> Value {
        Value::Text(s.into())
    }

    fn result(columns: &[&str], rows: Vec<Vec<Value>>) -> QueryResult {
        QueryResult {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows,
            truncated: false,
        }
    }

    #[test]
    fn table_of_cases() {
        let ab = |rows: Vec<Vec<Value>>| result(&["a", "b"], rows);
        let one = |rows: Vec<Vec<Value>>| result(&["x"], rows);
        #[rustfmt::skip]
        let cases: Vec<(&str, QueryResult, QueryResult, bool, bool)> = vec![
            ("same rows", ab(vec![vec![I(1), t("x")], vec![I(2), t("y")]]), ab(vec![vec![I(1), t("x")], vec![I(2), t("y")]]), false, true),
            ("other order, unordered", ab(vec![vec![I(1), t("x")], vec![I(2), t("y")]]), ab(vec![vec![I(2), t("y")], vec![I(1), t("x")]]), false, true),
            ("other order, ordered", ab(vec![vec![I(1), t("x")], vec![I(2), t("y")]]), ab(vec![vec![I(2), t("y")], vec![I(1), t("x")]]), true, false),
            ("duplicates count", one(vec![vec![I(1)], vec![I(1)], vec![I(2)]]), one(vec![vec![I(1)], vec![I(2)], vec![I(2)]]), false, false),
            ("missing duplicate", one(vec![vec![I(1)], vec![I(1)]]), one(vec![vec![I(1)]]), false, false),
            ("integer equals real", one(vec![vec![I(3)]]), one(vec![vec![R(3.0)]]), false, true),
            ("within tolerance", one(vec![vec![R(116.97142857)]]), one(vec![vec![R(116.971428570001)]]), false, true),
            ("outside tolerance", one(vec![vec![R(116.97)]]), one(vec![vec![R(117.0)]]), false, false),
            ("nulls equal", ab(vec![vec![N, t("x")]]), ab(vec![vec![N, t("x")]]), false, true),
            ("null is not zero", one(vec![vec![N]]), one(vec![vec![I(0)]]), false, false),
            ("text is not a number", one(vec![vec![t("1")]]), one(vec![vec![I(1)]]), false, false),
            ("columns in another order", ab(vec![vec![I(1), t("x")], vec![I(2), t("y")]]), result(&["b", "a"], vec![vec![t("x"), I(1)], vec![t("y"), I(2)]]), false, true),
            ("columns swapped break rows", ab(vec![vec![I(1), I(2)], vec![I(3), I(4)]]), ab(vec![vec![I(1), I(4)], vec![I(3), I(2)]]), false, false),
            ("extra column", one(vec![vec![I(1)]]), ab(vec![vec![I(1), I(2)]]), false, false),
            ("names ignored", one(vec![vec![I(7)]]), result(&["COUNT(*)"], vec![vec![I(7)]]), false, true),
            ("both empty", one(vec![]), one(vec![]), false, true),
            ("empty vs rows", one(vec![]), one(vec![vec![I(1)]]), false, false),
        ];
        for (name, gold, got, ordered, expected) in cases {
            assert_eq!(results_match(&gold, &got, ordered), expected, "{name}");
        }
    }

    #[test]
    fn order_by_only_counts_in_the_outermost_statement() {
        assert!(orders_rows("select a from t order by a desc limit 3"));
        assert!(orders_rows(
            "SELECT a FROM t UNION SELECT b FROM u ORDER BY 1"
        ));
        assert!(!orders_rows(
            "SELECT a FROM t WHERE a IN (SELECT a FROM u ORDER BY a LIMIT 1)"
        ));
        assert!(!orders_rows("SELECT 'order by' FROM t"));
        assert!(!orders_rows("SELECT \"order\" FROM t -- ORDER BY a"));
    }
}
