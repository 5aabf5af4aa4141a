//! CSV → SQLite table, with column types inferred from the data so that
//! numbers compare as numbers (a TEXT `beats.per.minute` column makes
//! `MAX(...)` return `'98'` instead of `186`).
//!
//! This is the only place that opens a database read-write, and only the
//! output database named by the user. The CSV is read twice: once to check
//! its shape and infer types (nothing is written if that fails), once to
//! insert, all in one transaction.

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};

use rusqlite::{params_from_iter, Connection, OpenFlags};

use super::database::message_of;
use super::ident::quote_ident;
use crate::error::{Error, Result};

/// What to import where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportOptions {
    /// The CSV file (comma-separated, first line is the header).
    pub csv: PathBuf,
    /// The output database; created when missing.
    pub db: PathBuf,
    /// The table to create (names are kept as written and quoted when needed).
    pub table: String,
    /// Replace the table when it already exists instead of refusing.
    pub replace: bool,
}

/// What [`import_csv`] created.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ImportReport {
    /// The table name.
    pub table: String,
    /// Rows inserted.
    pub rows: u64,
    /// Each column's name and inferred type (`INTEGER`, `REAL` or `TEXT`).
    pub columns: Vec<(String, String)>,
}

/// The type inferred for one column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Affinity {
    Integer,
    Real,
    Text,
}

impl Affinity {
    fn name(self) -> &'static str {
        match self {
            Affinity::Integer => "INTEGER",
            Affinity::Real => "REAL",
            Affinity::Text => "TEXT",
        }
    }

    /// Widens `self` so that `cell` still fits.
    fn widen(self, cell: &str) -> Affinity {
        let t = cell.trim();
        match self {
            Affinity::Integer if t.parse::<i64>().is_ok() => Affinity::Integer,
            Affinity::Integer | Affinity::Real if is_real(t) => Affinity::Real,
            _ => Affinity::Text,
        }
    }
}

fn is_real(t: &str) -> bool {
    t.parse::<f64>().is_ok_and(f64::is_finite)
}

/// Imports `opts.csv` into table `opts.table` of `opts.db`.
///
/// Each column is `INTEGER` when every non-empty cell parses as an `i64`,
/// else `REAL` when every non-empty cell parses as a finite `f64`, else
/// `TEXT` (also when the column has no values at all); empty cells become
/// `NULL`. Fails with [`Error::Csv`] (1-based line)
/// on a ragged row or an empty/duplicate header name, [`Error::Io`] when the
/// CSV cannot be read, and [`Error::Database`] when the table exists and
/// `replace` is not set. A failed import leaves the database as it was.
pub fn import_csv(opts: &ImportOptions) -> Result<ImportReport> {
    if opts.table.trim().is_empty() {
        return Err(Error::invalid("table", "the table name is empty"));
    }
    if opts.table.contains('\0') {
        return Err(Error::invalid(
            "table",
            "the table name has a NUL character",
        ));
    }
    if opts.table.to_ascii_lowercase().starts_with("sqlite_") {
        return Err(Error::invalid(
            "table",
            format!("`{}`: names starting with sqlite_ are reserved", opts.table),
        ));
    }
    let (header, affinities) = survey(&opts.csv)?;
    let created = !opts.db.exists();
    let result = write_table(opts, &header, &affinities);
    if result.is_err() && created {
        // Nothing was committed; do not leave an empty file behind.
        let _ = std::fs::remove_file(&opts.db);
    }
    let rows = result?;
    Ok(ImportReport {
        table: opts.table.clone(),
        rows,
        columns: header
            .into_iter()
            .zip(affinities)
            .map(|(name, a)| (name, a.name().to_string()))
            .collect(),
    })
}

fn csv_error(path: &Path, line: u64, message: impl Into<String>) -> Error {
    Error::Csv {
        path: path.to_path_buf(),
        line,
        message: message.into(),
    }
}

/// Converts a csv crate error, keeping its line when it knows one.
fn from_csv(path: &Path, e: csv::Error) -> Error {
    let line = e.position().map(|p| p.line()).unwrap_or(0);
    match e.into_kind() {
        csv::ErrorKind::Io(source) => Error::io(path, source),
        csv::ErrorKind::Utf8 { pos, err } => csv_error(
            path,
            pos.map(|p| p.line()).unwrap_or(line),
            format!("not valid UTF-8 ({err})"),
        ),
        other => csv_error(path, line, format!("{other:?}")),
    }
}

fn reader(path: &Path) -> Result<csv::Reader<File>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    Ok(csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(file))
}

/// First pass: the header and each column's type; fails on any shape problem.
fn survey(path: &Path) -> Result<(Vec<String>, Vec<Affinity>)> {
    let mut rdr = reader(path)?;
    let header: Vec<String> = rdr
        .headers()
        .map_err(|e| from_csv(path, e))?
        .iter()
        .map(str::to_string)
        .collect();
    if header.is_empty() || header.iter().all(String::is_empty) {
        return Err(csv_error(path, 1, "no header line (the file is empty)"));
    }
    let mut seen = HashSet::new();
    for (i, name) in header.iter().enumerate() {
        if name.trim().is_empty() {
            return Err(csv_error(
                path,
                1,
                format!("column {} has an empty name", i + 1),
            ));
        }
        // SQL text ends at a NUL, so no quoting can carry one.
        if name.contains('\0') {
            return Err(csv_error(
                path,
                1,
                format!("column {} has a NUL character in its name", i + 1),
            ));
        }
        // SQLite column names are case-insensitive.
        if !seen.insert(name.to_lowercase()) {
            return Err(csv_error(
                path,
                1,
                format!("duplicate column name `{name}`"),
            ));
        }
    }
    // `None` until a column's first non-empty cell.
    let mut affinities: Vec<Option<Affinity>> = vec![None; header.len()];
    let mut record = csv::StringRecord::new();
    while rdr
        .read_record(&mut record)
        .map_err(|e| from_csv(path, e))?
    {
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        if record.len() != header.len() {
            return Err(csv_error(
                path,
                line,
                format!(
                    "{} fields, but the header has {}",
                    record.len(),
                    header.len()
                ),
            ));
        }
        for (a, cell) in affinities.iter_mut().zip(record.iter()) {
            if !cell.is_empty() {
                *a = Some(a.unwrap_or(Affinity::Integer).widen(cell));
            }
        }
    }
    // A column without any value says nothing about numbers: TEXT.
    let affinities = affinities
        .into_iter()
        .map(|a| a.unwrap_or(Affinity::Text))
        .collect();
    Ok((header, affinities))
}

/// Second pass: create the table and insert every row in one transaction.
fn write_table(opts: &ImportOptions, header: &[String], affinities: &[Affinity]) -> Result<u64> {
    let db_err = |message: String| Error::Database {
        path: opts.db.clone(),
        message,
    };
    let sqlite = |e: rusqlite::Error| db_err(message_of(&e));
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut conn = Connection::open_with_flags(&opts.db, flags).map_err(sqlite)?;
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(sqlite)?;

    let kind: Option<String> = tx
        .query_row(
            "SELECT type FROM sqlite_schema WHERE name = ?1 COLLATE NOCASE \
             AND type IN ('table', 'view')",
            [&opts.table],
            |r| r.get(0),
        )
        .map(Some)
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            other => Err(other),
        })
        .map_err(sqlite)?;
    let table = quote_ident(&opts.table);
    match kind.as_deref() {
        Some(_) if !opts.replace => {
            return Err(db_err(format!("table `{}` already exists", opts.table)))
        }
        Some("view") => tx
            .execute_batch(&format!("DROP VIEW {table}"))
            .map_err(sqlite)?,
        Some(_) => tx
            .execute_batch(&format!("DROP TABLE {table}"))
            .map_err(sqlite)?,
        None => {}
    }

    let columns: Vec<String> = header
        .iter()
        .zip(affinities)
        .map(|(name, a)| format!("{} {}", quote_ident(name), a.name()))
        .collect();
    tx.execute_batch(&format!("CREATE TABLE {table} ({})", columns.join(", ")))
        .map_err(sqlite)?;

    let placeholders = vec!["?"; header.len()].join(", ");
    let mut rows = 0u64;
    {
        let mut insert = tx
            .prepare(&format!("INSERT INTO {table} VALUES ({placeholders})"))
            .map_err(sqlite)?;
        let mut rdr = reader(&opts.csv)?;
        let mut record = csv::StringRecord::new();
        while rdr
            .read_record(&mut record)
            .map_err(|e| from_csv(&opts.csv, e))?
        {
            if record.len() != header.len() {
                let line = record.position().map(|p| p.line()).unwrap_or(0);
                return Err(csv_error(&opts.csv, line, "the file changed during import"));
            }
            let values = record
                .iter()
                .zip(affinities)
                .map(|(cell, a)| cell_value(cell, *a));
            insert.execute(params_from_iter(values)).map_err(sqlite)?;
            rows += 1;
        }
    }
    tx.commit().map_err(sqlite)?;
    Ok(rows)
}

/// The SQL value for one cell of a column of type `a`.
fn cell_value(cell: &str, a: Affinity) -> rusqlite::types::Value {
    use rusqlite::types::Value as V;
    if cell.is_empty() {
        return V::Null;
    }
    let t = cell.trim();
    match a {
        Affinity::Integer => t.parse().map(V::Integer).unwrap_or(V::Text(cell.into())),
        Affinity::Real => t.parse().map(V::Real).unwrap_or(V::Text(cell.into())),
        Affinity::Text => V::Text(cell.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inference_narrows_integer_to_real_to_text() {
        let infer = |cells: &[&str]| {
            cells
                .iter()
                .filter(|c| !c.is_empty())
                .fold(Affinity::Integer, |a, c| a.widen(c))
        };
        assert_eq!(infer(&["1", "-6", " 42 "]), Affinity::Integer);
        assert_eq!(infer(&["1", "", "2"]), Affinity::Integer);
        assert_eq!(infer(&["1", "2.5"]), Affinity::Real);
        assert_eq!(infer(&["1e3", "2"]), Affinity::Real);
        assert_eq!(infer(&["1", "x"]), Affinity::Text);
        assert_eq!(infer(&["2.5", "NaN"]), Affinity::Text);
        assert_eq!(infer(&["inf"]), Affinity::Text);
        assert_eq!(infer(&[]), Affinity::Integer);
    }

    #[test]
    fn cells_become_typed_values() {
        use rusqlite::types::Value as V;
        assert_eq!(cell_value("", Affinity::Integer), V::Null);
        assert_eq!(cell_value(" 7", Affinity::Integer), V::Integer(7));
        assert_eq!(cell_value("7", Affinity::Real), V::Real(7.0));
        assert_eq!(cell_value(" a ", Affinity::Text), V::Text(" a ".into()));
    }
}
