//! Reading a database's shape: tables, views, columns, keys, row counts and
//! a few sample values per column. Everything goes through the same
//! read-only connection and authorizer as user queries (the `pragma_*`
//! table-valued functions are plain reads).

use super::database::Database;
use super::ident::quote_ident;
use super::schema::{Column, ForeignKey, Schema, Table};
use super::value::{quote_text, Value};
use crate::error::Result;

/// Distinct sample values kept per column.
const SAMPLES_PER_COLUMN: usize = 3;
/// Longest sample text kept, in characters (longer ones end in `...`).
const SAMPLE_MAX_CHARS: usize = 40;

impl Database {
    /// Introspects every table and view (internal `sqlite_*` tables
    /// excluded), in `sqlite_schema` order.
    ///
    /// Row counts and samples of views and virtual tables are best-effort:
    /// when they cannot be read the count is 0 and the samples are empty.
    pub fn schema(&self) -> Result<Schema> {
        let listed = self.query_all(
            "SELECT name, type, coalesce(sql, '') FROM sqlite_schema \
             WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
             ORDER BY rowid",
            &[],
        )?;
        let mut tables = Vec::with_capacity(listed.len());
        for row in listed {
            let name = text(row.first());
            let is_view = text(row.get(1)) == "view";
            let is_virtual = text(row.get(2))
                .trim_start()
                .to_ascii_uppercase()
                .starts_with("CREATE VIRTUAL");
            tables.push(self.table(name, is_view, is_view || is_virtual)?);
        }
        Ok(Schema { tables })
    }

    fn table(&self, name: String, is_view: bool, best_effort: bool) -> Result<Table> {
        let quoted = quote_ident(&name);
        let info = self.query_all(
            "SELECT name, type, \"notnull\", pk FROM pragma_table_info(?1) ORDER BY cid",
            &[&name],
        )?;
        let mut columns = Vec::with_capacity(info.len());
        let mut keyed: Vec<(i64, String)> = Vec::new();
        for row in info {
            let col = text(row.first());
            let pk = int(row.get(3));
            if pk > 0 {
                keyed.push((pk, col.clone()));
            }
            columns.push(Column {
                quoted: quote_ident(&col),
                decl_type: text(row.get(1)),
                not_null: int(row.get(2)) != 0,
                primary_key: pk > 0,
                samples: Vec::new(),
                name: col,
            });
        }
        keyed.sort();
        let primary_key = keyed.into_iter().map(|(_, c)| c).collect();
        let foreign_keys = self.foreign_keys(&name)?;

        let counted = self.query_all(&format!("SELECT count(*) FROM {quoted}"), &[]);
        let row_count = match counted {
            Ok(rows) => u64::try_from(int(rows.first().and_then(|r| r.first()))).unwrap_or(0),
            Err(_) if best_effort => 0,
            Err(e) => return Err(e),
        };
        for column in &mut columns {
            match self.samples(&quoted, &column.quoted) {
                Ok(samples) => column.samples = samples,
                Err(_) if best_effort => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Table {
            name,
            quoted,
            is_view,
            columns,
            primary_key,
            foreign_keys,
            row_count,
        })
    }

    fn foreign_keys(&self, table: &str) -> Result<Vec<ForeignKey>> {
        let rows = self.query_all(
            "SELECT id, \"table\", \"from\", \"to\" FROM pragma_foreign_key_list(?1) \
             ORDER BY id, seq",
            &[table],
        )?;
        let mut keys: Vec<(i64, ForeignKey)> = Vec::new();
        for row in rows {
            let id = int(row.first());
            let to = row.get(3).filter(|v| !v.is_null()).map(|v| text(Some(v)));
            if keys.last().map(|(last, _)| *last) != Some(id) {
                keys.push((
                    id,
                    ForeignKey {
                        columns: Vec::new(),
                        table: text(row.get(1)),
                        to_columns: Vec::new(),
                    },
                ));
            }
            if let Some((_, fk)) = keys.last_mut() {
                fk.columns.push(text(row.get(2)));
                fk.to_columns.extend(to);
            }
        }
        // pragma_foreign_key_list lists keys in reverse declaration order.
        keys.sort_by_key(|(id, _)| std::cmp::Reverse(*id));
        Ok(keys.into_iter().map(|(_, fk)| fk).collect())
    }

    /// Whether `column` (quoted) of `table` (quoted) holds the text `value`
    /// in some row.
    pub fn holds_text(&self, table: &str, column: &str, value: &str) -> Result<bool> {
        let rows = self.query_all(
            &format!("SELECT 1 FROM {table} WHERE {column} = ?1 LIMIT 1"),
            &[value],
        )?;
        Ok(!rows.is_empty())
    }

    /// Every distinct non-null value of `column` (quoted, as SQL spells it)
    /// in `table`, as text, when there are at most `limit` and all are
    /// text; `None` otherwise (a column of numbers, or of many values).
    pub fn text_values(
        &self,
        table: &str,
        column: &str,
        limit: usize,
    ) -> Result<Option<Vec<String>>> {
        let rows = self.query_all(
            &format!(
                "SELECT DISTINCT {column} FROM {table} WHERE {column} IS NOT NULL LIMIT {}",
                limit + 1
            ),
            &[],
        )?;
        if rows.len() > limit {
            return Ok(None);
        }
        let mut values = Vec::with_capacity(rows.len());
        for row in rows {
            match row.into_iter().next() {
                Some(Value::Text(t)) => values.push(t),
                _ => return Ok(None),
            }
        }
        Ok(Some(values))
    }

    /// Up to `limit` distinct non-null values of `column` (quoted, as SQL
    /// spells it) in `table`, as SQL literals, leaving out blobs and texts
    /// longer than a sample may be (they could not be written whole).
    pub fn distinct_values(&self, table: &str, column: &str, limit: usize) -> Result<Vec<String>> {
        let rows = self.query_all(
            &format!(
                "SELECT DISTINCT {column} FROM {table} \
                 WHERE {column} IS NOT NULL AND typeof({column}) <> 'blob' \
                 AND length({column}) <= {SAMPLE_MAX_CHARS} LIMIT {limit}"
            ),
            &[],
        )?;
        Ok(rows
            .into_iter()
            .filter_map(|r| r.into_iter().next())
            .map(|v| v.to_sql_literal())
            .collect())
    }

    fn samples(&self, table: &str, column: &str) -> Result<Vec<String>> {
        let rows = self.query_all(
            &format!(
                "SELECT DISTINCT {column} FROM {table} \
                 WHERE {column} IS NOT NULL AND typeof({column}) <> 'blob' \
                 LIMIT {SAMPLES_PER_COLUMN}"
            ),
            &[],
        )?;
        Ok(rows
            .into_iter()
            .filter_map(|r| r.into_iter().next())
            .map(|v| sample_literal(&v))
            .collect())
    }
}

/// A sample value as a SQL literal, long text shortened to
/// [`SAMPLE_MAX_CHARS`] characters.
fn sample_literal(v: &Value) -> String {
    match v {
        Value::Text(s) if s.chars().count() > SAMPLE_MAX_CHARS => {
            let head: String = s.chars().take(SAMPLE_MAX_CHARS - 3).collect();
            quote_text(&format!("{head}..."))
        }
        other => other.to_sql_literal(),
    }
}

fn text(v: Option<&Value>) -> String {
    match v {
        Some(Value::Text(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn int(v: Option<&Value>) -> i64 {
    match v {
        Some(Value::Integer(i)) => *i,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_samples_are_shortened() {
        let long = Value::Text("a".repeat(50));
        let lit = sample_literal(&long);
        assert_eq!(lit, format!("'{}...'", "a".repeat(37)));
        assert_eq!(sample_literal(&Value::Text("O'Hara".into())), "'O''Hara'");
        assert_eq!(sample_literal(&Value::Integer(186)), "186");
    }
}
