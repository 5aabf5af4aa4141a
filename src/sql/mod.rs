//! SQLite: open read-only, introspect the schema, execute with limits,
//! import CSV files, pull SQL out of model replies, build the demo database.
//!
//! ```no_run
//! use sqlagent::sql::{Database, ExecLimits};
//! # fn main() -> sqlagent::Result<()> {
//! let db = Database::open("data/music.db".as_ref())?;
//! println!("{}", db.schema()?.render_ddl());
//! let rows = db.execute("SELECT name FROM artists LIMIT 3", &ExecLimits::default())?;
//! # Ok(()) }
//! ```
//!
//! User databases are only ever opened read-only ([`Database`]); the two
//! functions that write ([`import_csv`], [`build_demo_db`]) write only the
//! output file they are given.

mod check;
mod compare;
mod database;
mod demo;
mod extract;
mod guard;
mod ident;
mod import;
mod introspect;
mod lex;
mod schema;
mod scope;
mod value;

pub use check::{locate, CheckFailure, Problem};
pub use compare::{orders_rows, results_match, same_value, REL_TOLERANCE};
pub use database::{Database, ExecLimits};
pub use demo::{build_demo_db, DemoReport, DEMO_SQL};
pub use extract::{constrained_sql, extract_sql};
pub use ident::{is_keyword, is_plain, name_words, quote_ident, SQLITE_KEYWORDS};
pub use import::{import_csv, ImportOptions, ImportReport};
pub use schema::{Column, ForeignKey, Schema, Table};
pub(crate) use scope::{
    binds_qualifier, last_table_in_scope, name_with_repeated_parts, open_level, open_subqueries,
    opens_derived_table, plain_names_in_level, repeated_condition, repeated_list_item,
    repeated_tail, unaliased_self_join, unquoted,
};
pub use scope::{compared_literal_at_end, ComparedLiteral};
pub use value::{QueryResult, Value};
