//! A database as the engine answers about it: the read-only file, its
//! schema and the grammar compiled from that schema, bound together so
//! that they cannot disagree. Built once per database and shared.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::Result;
use crate::grammar::{self, CompiledGrammar, GrammarOptions};
use crate::sql::{CheckFailure, Database, ExecLimits, QueryResult, Schema};

use super::Engine;

/// Connections kept open for reuse once requests give them back.
const IDLE_CONNECTIONS: usize = 8;

/// One database, its schema and its grammar (`Send + Sync`: requests on
/// several threads share it). SQLite connections cannot be shared between
/// threads, so each use takes one of its own (opened read-only like the
/// first, kept for reuse).
pub struct DatabaseHandle {
    path: PathBuf,
    schema: Schema,
    grammar: Option<CompiledGrammar>,
    options: GrammarOptions,
    /// Text columns of few values, by lowercase (table, column): what a
    /// string compared with them must be.
    values: HashMap<(String, String), Vec<String>>,
    /// Whether compared strings are checked at all.
    value_checks: bool,
    idle: Mutex<Vec<Database>>,
}

impl std::fmt::Debug for DatabaseHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseHandle")
            .field("path", &self.path)
            .field("tables", &self.schema.tables.len())
            .field("grammar", &self.options.mode)
            .finish()
    }
}

impl DatabaseHandle {
    /// Opens `path` read-only, reads its schema and compiles the grammar
    /// `options` ask for with `engine`'s tokenizer. A database without
    /// tables is refused: there is nothing to ask about.
    pub fn open(engine: &Engine, path: &Path, options: &GrammarOptions) -> Result<Self> {
        Self::without_grammar(path)?.with_grammar(engine, options)
    }

    /// Opens `path` read-only with no grammar (for hosted models, which
    /// decode on their own side, or to check a database before the model
    /// loads; see [`DatabaseHandle::with_grammar`]).
    pub fn without_grammar(path: &Path) -> Result<Self> {
        let db = Database::open(path)?;
        let schema = db.schema_with_tables()?;
        Ok(Self {
            path: path.to_path_buf(),
            schema,
            grammar: None,
            options: GrammarOptions {
                mode: grammar::GrammarMode::None,
                ..GrammarOptions::default()
            },
            values: HashMap::new(),
            value_checks: false,
            idle: Mutex::new(vec![db]),
        })
    }

    /// This database with the grammar `options` ask for, compiled from
    /// the schema already read with `engine`'s tokenizer.
    pub fn with_grammar(mut self, engine: &Engine, options: &GrammarOptions) -> Result<Self> {
        self.grammar = match grammar::lark::lark_grammar(&self.schema, options) {
            None => None,
            Some(lark) => Some(
                engine
                    .grammar_factory()?
                    .compile(&lark)?
                    .with_schema(&self.schema)?,
            ),
        };
        self.options = *options;
        if options.mode == grammar::GrammarMode::Schema {
            return self.with_literal_values(options.literal_values);
        }
        Ok(self)
    }

    /// This database with the values of its text columns of at most
    /// `limit` distinct values read, so that a string compared with one of
    /// them is checked against them (0: none).
    pub fn with_literal_values(mut self, limit: usize) -> Result<Self> {
        self.value_checks = limit > 0;
        self.values = if limit == 0 {
            HashMap::new()
        } else {
            self.with_connection(|db| few_values(db, &self.schema, limit))?
        };
        Ok(self)
    }

    /// The values a string compared with `column` of `table` must be one
    /// of (stored spelling), when that column is text of few values and
    /// the grammar checks them.
    pub fn literal_values(&self, table: &str, column: &str) -> Option<&[String]> {
        self.values
            .get(&(table.to_lowercase(), column.to_lowercase()))
            .map(Vec::as_slice)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its schema, as introspected when it was opened.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The grammar answers about it follow (`None`: unconstrained).
    pub fn grammar(&self) -> Option<&CompiledGrammar> {
        self.grammar.as_ref()
    }

    /// The options the grammar was compiled with.
    pub fn grammar_options(&self) -> &GrammarOptions {
        &self.options
    }

    /// Runs `f` on a read-only connection of this database's own.
    pub fn with_connection<R>(&self, f: impl FnOnce(&Database) -> R) -> Result<R> {
        let taken = self.lock().pop();
        let db = match taken {
            Some(db) => db,
            None => Database::open(&self.path)?,
        };
        let result = f(&db);
        let mut idle = self.lock();
        if idle.len() < IDLE_CONNECTIONS {
            idle.push(db);
        }
        Ok(result)
    }

    /// Runs `sql` read-only under `limits` ([`Database::execute`]).
    pub fn execute(&self, sql: &str, limits: &ExecLimits) -> Result<QueryResult> {
        self.with_connection(|db| db.execute(sql, limits))?
    }

    /// Checks that `sql` prepares against this database ([`Database::check`]).
    pub fn check(&self, sql: &str) -> Result<std::result::Result<(), CheckFailure>> {
        self.with_connection(|db| db.check(sql))
    }

    /// Whether any column's values are checked.
    pub fn checks_literal_values(&self) -> bool {
        !self.values.is_empty()
    }

    /// Whether compared strings are checked (their columns' values, and
    /// that they are not another column's; see
    /// [`DatabaseHandle::with_literal_values`]).
    pub fn checks_compared_strings(&self) -> bool {
        self.value_checks
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Database>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The text columns of `schema` with at most `limit` distinct values, and
/// those values. A column that cannot be read is left out (no check).
fn few_values(
    db: &Database,
    schema: &Schema,
    limit: usize,
) -> HashMap<(String, String), Vec<String>> {
    let mut out = HashMap::new();
    for t in &schema.tables {
        for c in &t.columns {
            if let Ok(Some(values)) = db.text_values(&t.quoted, &c.quoted, limit) {
                if !values.is_empty() {
                    out.insert((t.name.to_lowercase(), c.name.to_lowercase()), values);
                }
            }
        }
    }
    out
}
