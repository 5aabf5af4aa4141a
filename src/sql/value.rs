//! Values and result sets as they leave SQLite: printable, serializable, and
//! renderable back into SQL literals (schema samples, few-shot examples).

use std::fmt;

use rusqlite::types::ValueRef;
use serde::{Serialize, Serializer};

/// One SQLite value. Serializes untagged: JSON `null`, number, string, and a
/// BLOB as a lowercase hex string.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL `NULL`.
    Null,
    /// A 64-bit integer.
    Integer(i64),
    /// A 64-bit float.
    Real(f64),
    /// UTF-8 text (invalid UTF-8 from the file is replaced, not rejected).
    Text(String),
    /// Raw bytes.
    Blob(Vec<u8>),
}

impl Value {
    /// Renders the value as a SQL literal: `NULL`, `42`, `3.5`, `'it''s'`,
    /// `X'00ff'`.
    pub fn to_sql_literal(&self) -> String {
        match self {
            Value::Null => "NULL".to_string(),
            Value::Integer(i) => i.to_string(),
            Value::Real(f) => format_real(*f),
            Value::Text(s) => quote_text(s),
            Value::Blob(b) => format!("X'{}'", hex(b)),
        }
    }

    /// True for [`Value::Null`].
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
}

impl From<ValueRef<'_>> for Value {
    fn from(v: ValueRef<'_>) -> Self {
        match v {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(i) => Value::Integer(i),
            ValueRef::Real(f) => Value::Real(f),
            ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
            ValueRef::Blob(b) => Value::Blob(b.to_vec()),
        }
    }
}

impl fmt::Display for Value {
    /// Prints the value the way a result table shows it: `NULL`, numbers,
    /// text without quotes, blobs as `x'…'`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("NULL"),
            Value::Integer(i) => write!(f, "{i}"),
            Value::Real(r) if r.is_infinite() => f.write_str(if *r > 0.0 { "Inf" } else { "-Inf" }),
            Value::Real(r) => f.write_str(&format_real(*r)),
            Value::Text(s) => f.write_str(s),
            Value::Blob(b) => write!(f, "x'{}'", hex(b)),
        }
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => s.serialize_unit(),
            Value::Integer(i) => s.serialize_i64(*i),
            // JSON has no NaN/inf; serde_json writes them as null.
            Value::Real(r) => s.serialize_f64(*r),
            Value::Text(t) => s.serialize_str(t),
            Value::Blob(b) => s.serialize_str(&hex(b)),
        }
    }
}

/// The rows a statement returned, capped by [`super::ExecLimits::max_rows`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueryResult {
    /// Column names as SQLite reports them (aliases included).
    pub columns: Vec<String>,
    /// Rows in the order SQLite returned them; each as long as `columns`.
    pub rows: Vec<Vec<Value>>,
    /// True when more rows existed than the row cap allowed.
    pub truncated: bool,
}

/// A float as a SQL literal: always with a fractional part or exponent, so
/// `3.0` stays recognizably REAL. (SQLite stores no NaN; infinities are
/// written as the overflowing literals SQLite itself uses.)
fn format_real(f: f64) -> String {
    if f.is_nan() {
        return "NULL".to_string();
    }
    if f.is_infinite() {
        return if f > 0.0 { "9e999" } else { "-9e999" }.to_string();
    }
    let s = f.to_string();
    if s.contains(['.', 'e', 'E']) {
        s
    } else {
        format!("{s}.0")
    }
}

/// A single-quoted SQL string literal with `'` doubled.
pub(crate) fn quote_text(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn hex(bytes: &[u8]) -> String {
    use fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals() {
        let cases = [
            (Value::Null, "NULL"),
            (Value::Integer(-7), "-7"),
            (Value::Real(3.0), "3.0"),
            (Value::Real(116.97), "116.97"),
            (Value::Real(1e20), "100000000000000000000.0"),
            (Value::Real(f64::NEG_INFINITY), "-9e999"),
            (Value::Text("it's".into()), "'it''s'"),
            (Value::Blob(vec![0, 255]), "X'00ff'"),
        ];
        for (v, want) in cases {
            assert_eq!(v.to_sql_literal(), want);
        }
    }

    #[test]
    fn display() {
        assert_eq!(Value::Null.to_string(), "NULL");
        assert_eq!(Value::Text("a b".into()).to_string(), "a b");
        assert_eq!(Value::Real(0.5).to_string(), "0.5");
        assert_eq!(Value::Blob(vec![1, 2]).to_string(), "x'0102'");
    }

    #[test]
    fn serializes_untagged() {
        let row = vec![
            Value::Null,
            Value::Integer(1),
            Value::Real(1.5),
            Value::Text("x".into()),
            Value::Blob(vec![0xab, 0x01]),
        ];
        let json = serde_json::to_string(&row).unwrap_or_default();
        assert_eq!(json, r#"[null,1,1.5,"x","ab01"]"#);
    }
}
