//! SQLite: open read-only, introspect the schema, execute with limits,
//! import CSV files.

mod schema;

pub use schema::{Column, ForeignKey, Schema, Table};
