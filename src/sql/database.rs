//! A user's database, opened so that nothing can change it, and the one way
//! to run SQL on it: [`Database::execute`], with a timeout and a row cap.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags};

use super::check::CheckFailure;
use super::guard::{Denied, Guard};
use super::lex;
use super::value::{QueryResult, Value};
use crate::error::{Error, Result};

/// SQLite VM instructions between two timeout checks (a check costs about
/// as much as reading the clock).
const PROGRESS_OPS: i32 = 1_000;

/// Limits applied to every statement [`Database::execute`] runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecLimits {
    /// Wall-clock limit for running one statement; past it the statement is
    /// interrupted with [`Error::Timeout`]. Checked every 1,000 SQLite VM
    /// instructions (microseconds apart), so it is kept to within a
    /// millisecond or so. Default: 10 s.
    pub timeout: Duration,
    /// Rows kept; further rows are not read and
    /// [`QueryResult::truncated`] is set. Default: 1000.
    pub max_rows: usize,
}

impl Default for ExecLimits {
    fn default() -> Self {
        ExecLimits {
            timeout: Duration::from_secs(10),
            max_rows: 1000,
        }
    }
}

/// A SQLite database opened read-only: `SQLITE_OPEN_READ_ONLY`,
/// `PRAGMA query_only = 1`, and an authorizer that allows only reads.
#[derive(Debug)]
pub struct Database {
    pub(super) conn: Connection,
    path: PathBuf,
    guard: Guard,
}

impl Database {
    /// Opens an existing database file read-only. Fails with
    /// [`Error::Database`] when the file is missing, is a directory, or is not
    /// a SQLite database.
    pub fn open(path: &Path) -> Result<Database> {
        let db_err = |message: String| Error::Database {
            path: path.to_path_buf(),
            message,
        };
        match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(db_err("no such file".into()))
            }
            Err(e) => return Err(db_err(format!("cannot read: {e}"))),
            Ok(m) if m.is_dir() => {
                return Err(db_err("is a directory, not a database file".into()))
            }
            Ok(_) => {}
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| db_err(message_of(&e)))?;
        conn.execute_batch("PRAGMA query_only = 1")
            .map_err(|e| db_err(message_of(&e)))?;
        // Reading the schema is the first access that looks inside the file.
        conn.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))
            .map_err(|e| db_err(message_of(&e)))?;
        let guard = Guard::install(&conn);
        Ok(Database {
            conn,
            path: path.to_path_buf(),
            guard,
        })
    }

    /// Its schema, refused when it has no tables (there is nothing to ask
    /// about).
    pub fn schema_with_tables(&self) -> Result<super::Schema> {
        let schema = self.schema()?;
        if schema.tables.is_empty() {
            return Err(Error::Database {
                path: self.path.clone(),
                message: "has no tables; there is nothing to ask about".into(),
            });
        }
        Ok(schema)
    }

    /// The file this database was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs one read-only statement (`SELECT`, `WITH … SELECT`, `VALUES`,
    /// `EXPLAIN …`) and returns at most `limits.max_rows` rows.
    ///
    /// Errors: [`Error::NotReadOnly`] naming the refused action,
    /// [`Error::Timeout`], and [`Error::Query`] for more than one statement,
    /// an empty statement, or anything SQLite rejects (with SQLite's message).
    pub fn execute(&self, sql: &str, limits: &ExecLimits) -> Result<QueryResult> {
        let query_err = |message: String| Error::Query {
            sql: sql.to_string(),
            message,
        };
        let statement = one_statement(sql)?;
        let deadline = Deadline::start(&self.conn, limits.timeout);
        let result = self.run(statement, limits.max_rows);
        let timed_out = deadline.finish(&self.conn);
        match result {
            Err(_) if timed_out => Err(Error::Timeout {
                sql: sql.to_string(),
                timeout_ms: u64::try_from(limits.timeout.as_millis()).unwrap_or(u64::MAX),
            }),
            Err(Failure::Denied(action)) => Err(Error::NotReadOnly(action)),
            Err(Failure::Sqlite(message)) => Err(query_err(message)),
            Ok(r) => Ok(r),
        }
    }

    /// Checks that `sql` is one read-only statement SQLite can prepare
    /// against this database (syntax, names in scope, function arities),
    /// without running it. A failure says what SQLite blamed and where
    /// ([`CheckFailure`]). Stricter than running: a double-quoted name must
    /// name something (SQLite would otherwise read `"genre"` as the string
    /// `'genre'` when no column has that name, a silent wrong answer), so
    /// `"x"` fails as `no such column: x`.
    pub fn check(&self, sql: &str) -> std::result::Result<(), CheckFailure> {
        let statement = match one_statement(sql) {
            Ok(s) => s,
            Err(e) => return Err(CheckFailure::not_read_only(query_message(e))),
        };
        let dqs = DbConfig::SQLITE_DBCONFIG_DQS_DML;
        let before = self.conn.db_config(dqs).ok();
        let _ = self.conn.set_db_config(dqs, false);
        let prepared = self.prepare(statement).map(|_| ());
        if let Some(on) = before {
            let _ = self.conn.set_db_config(dqs, on);
        }
        match prepared {
            Ok(_) => Ok(()),
            Err(Failure::Denied(action)) => Err(CheckFailure::not_read_only(
                Error::NotReadOnly(action).to_string(),
            )),
            Err(Failure::Sqlite(message)) => Err(CheckFailure::from_message(sql, &message)),
        }
    }

    fn prepare(&self, sql: &str) -> Result<rusqlite::Statement<'_>, Failure> {
        self.guard.clear();
        let stmt = match self.conn.prepare(sql) {
            Ok(s) => s,
            Err(e) => {
                return Err(match self.guard.take() {
                    Some(Denied {
                        kind_of_statement: Some(kind),
                        ..
                    }) => Failure::Denied(format!("{} ({kind})", statement_head(sql))),
                    Some(d) => Failure::Denied(d.action),
                    None => Failure::Sqlite(message_of(&e)),
                })
            }
        };
        if !stmt.readonly() {
            return Err(Failure::Denied(format!(
                "{} (writes to the database)",
                statement_head(sql)
            )));
        }
        Ok(stmt)
    }

    fn run(&self, sql: &str, max_rows: usize) -> Result<QueryResult, Failure> {
        let mut stmt = self.prepare(sql)?;
        let columns: Vec<String> = stmt.column_names().iter().map(|c| c.to_string()).collect();
        let n = columns.len();
        let mut rows = Vec::new();
        let mut truncated = false;
        let mut cursor = stmt
            .query([])
            .map_err(|e| Failure::Sqlite(message_of(&e)))?;
        while let Some(row) = cursor.next().map_err(|e| Failure::Sqlite(message_of(&e)))? {
            if rows.len() == max_rows {
                truncated = true;
                break;
            }
            let mut values = Vec::with_capacity(n);
            for i in 0..n {
                let v = row
                    .get_ref(i)
                    .map_err(|e| Failure::Sqlite(message_of(&e)))?;
                values.push(Value::from(v));
            }
            rows.push(values);
        }
        Ok(QueryResult {
            columns,
            rows,
            truncated,
        })
    }

    /// Runs an internal query (schema introspection) under the default
    /// timeout, returning all rows.
    pub(super) fn query_all(&self, sql: &str, params: &[&str]) -> Result<Vec<Vec<Value>>> {
        let limits = ExecLimits::default();
        let _scope = self.guard.introspecting();
        let deadline = Deadline::start(&self.conn, limits.timeout);
        let result = (|| -> rusqlite::Result<Vec<Vec<Value>>> {
            let mut stmt = self.conn.prepare(sql)?;
            let n = stmt.column_count();
            let mut rows = stmt.query(rusqlite::params_from_iter(params.iter()))?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                let mut values = Vec::with_capacity(n);
                for i in 0..n {
                    values.push(Value::from(row.get_ref(i)?));
                }
                out.push(values);
            }
            Ok(out)
        })();
        let timed_out = deadline.finish(&self.conn);
        result.map_err(|e| {
            if timed_out {
                Error::Timeout {
                    sql: sql.to_string(),
                    timeout_ms: u64::try_from(limits.timeout.as_millis()).unwrap_or(u64::MAX),
                }
            } else {
                Error::Query {
                    sql: sql.to_string(),
                    message: message_of(&e),
                }
            }
        })
    }
}

/// Why [`Database::run`] failed, before it becomes an [`Error`].
enum Failure {
    Denied(String),
    Sqlite(String),
}

/// A progress handler that interrupts the running statement once the
/// deadline has passed, and remembers that it did.
struct Deadline {
    fired: Arc<AtomicBool>,
}

impl Deadline {
    fn start(conn: &Connection, timeout: Duration) -> Deadline {
        let fired = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&fired);
        let deadline = Instant::now().checked_add(timeout);
        conn.progress_handler(
            PROGRESS_OPS,
            Some(move || match deadline {
                Some(d) if Instant::now() >= d => {
                    flag.store(true, Ordering::Relaxed);
                    true
                }
                _ => false,
            }),
        );
        Deadline { fired }
    }

    /// Removes the handler; true when it interrupted the statement.
    fn finish(self, conn: &Connection) -> bool {
        conn.progress_handler(0, None::<fn() -> bool>);
        self.fired.load(Ordering::Relaxed)
    }
}

/// The first words of `sql` up to the first parenthesis (at most four,
/// comments skipped), naming the statement: `CREATE TEMP TABLE t`,
/// `CREATE INDEX i`.
fn statement_head(sql: &str) -> String {
    let mut rest = sql.trim_start();
    while let Some(stripped) = rest.strip_prefix("--").or_else(|| rest.strip_prefix("/*")) {
        let end = if rest.starts_with("--") {
            stripped.find('\n').map(|i| i + 1)
        } else {
            stripped.find("*/").map(|i| i + 2)
        };
        rest = end.map_or("", |i| &stripped[i..]).trim_start();
    }
    let mut words: Vec<&str> = rest
        .split_whitespace()
        .take_while(|w| !w.starts_with('('))
        .take(4)
        .map(|w| w.split('(').next().unwrap_or(w))
        .collect();
    // `CREATE INDEX i ON`, `CREATE VIEW v AS`: the name is the last word.
    while words.len() > 2
        && words
            .last()
            .is_some_and(|w| w.eq_ignore_ascii_case("ON") || w.eq_ignore_ascii_case("AS"))
    {
        words.pop();
    }
    words.join(" ")
}

/// SQLite's own message for an error, without rusqlite's decoration.
pub(super) fn message_of(e: &rusqlite::Error) -> String {
    match e {
        rusqlite::Error::SqliteFailure(_, Some(msg)) => msg.clone(),
        rusqlite::Error::SqlInputError { msg, .. } => msg.clone(),
        other => other.to_string(),
    }
}

/// The one statement in `sql` (a trailing `;` or comment is fine).
fn one_statement(sql: &str) -> Result<&str> {
    let query_err = |message: &str| Error::Query {
        sql: sql.to_string(),
        message: message.to_string(),
    };
    let Some(statement) = lex::single_statement(sql) else {
        return Err(query_err(
            "only one statement is allowed (found more after `;`)",
        ));
    };
    if lex::is_blank(statement) {
        return Err(query_err("empty statement"));
    }
    Ok(statement)
}

/// The message of an error from [`one_statement`].
fn query_message(e: Error) -> String {
    match e {
        Error::Query { message, .. } => message,
        other => other.to_string(),
    }
}
