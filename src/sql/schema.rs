//! The introspected shape of a database: what the prompt and (later) the
//! grammar see. Serializable so prompt templates (`prompts/*/schema.j2`) can
//! render it.

use serde::Serialize;

/// All user tables of a database (internal `sqlite_*` tables excluded).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Schema {
    /// Tables in the order SQLite lists them in `sqlite_schema`.
    pub tables: Vec<Table>,
}

/// One table (or view) and what we know about it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Table {
    /// The table name exactly as declared.
    pub name: String,
    /// The name as it must appear in SQL (quoted when needed).
    pub quoted: String,
    /// True for views.
    pub is_view: bool,
    /// Columns in declaration order.
    pub columns: Vec<Column>,
    /// Names of the primary-key columns, in key order.
    pub primary_key: Vec<String>,
    /// Foreign keys declared on this table.
    pub foreign_keys: Vec<ForeignKey>,
    /// Number of rows (`SELECT COUNT(*)`).
    pub row_count: u64,
}

/// One column of a table.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Column {
    /// The column name exactly as declared.
    pub name: String,
    /// The name as it must appear in SQL (quoted when needed).
    pub quoted: String,
    /// The declared type (`INTEGER`, `TEXT`, … or empty).
    pub decl_type: String,
    /// Declared `NOT NULL`.
    pub not_null: bool,
    /// Part of the primary key.
    pub primary_key: bool,
    /// A few distinct non-null values, rendered as SQL literals.
    pub samples: Vec<String>,
}

/// A foreign key `columns → table(to_columns)`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ForeignKey {
    /// Columns of this table.
    pub columns: Vec<String>,
    /// The referenced table.
    pub table: String,
    /// Referenced columns (empty means the referenced table's primary key).
    pub to_columns: Vec<String>,
}
