//! The authorizer: SQLite asks it about every action while it compiles a
//! statement, and it allows only reading. This is the third line of defence
//! after the read-only open and `PRAGMA query_only`; it also names what was
//! refused, which the other two cannot.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::Connection;

use super::ident::quote_ident;

/// Pragmas that only describe the schema; allowed while the engine itself
/// introspects (see [`Guard::introspecting`]), never for user statements.
const INTROSPECTION_PRAGMAS: [&str; 4] = [
    "table_info",
    "table_xinfo",
    "foreign_key_list",
    "index_list",
];

/// The internal tables that hold the schema. SQLite asks to write them
/// before it asks about the `CREATE`/`DROP` itself.
const SCHEMA_TABLES: [&str; 4] = [
    "sqlite_master",
    "sqlite_temp_master",
    "sqlite_schema",
    "sqlite_temp_schema",
];

/// An action the authorizer refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Denied {
    /// What was refused, e.g. `INSERT into songs`.
    pub action: String,
    /// Set when the statement's own first words name the action better
    /// than SQLite's internal step does (a `CREATE` is reported as a write
    /// to the schema table, a `COMMIT` as an unknown transaction step); the
    /// value says what kind of action it is.
    pub kind_of_statement: Option<&'static str>,
}

/// Records the first action the authorizer denied since the last
/// [`Guard::clear`].
#[derive(Debug, Clone, Default)]
pub(crate) struct Guard {
    denied: Arc<Mutex<Option<Denied>>>,
    introspecting: Arc<AtomicBool>,
}

impl Guard {
    /// Installs the read-only authorizer on `conn`.
    pub(crate) fn install(conn: &Connection) -> Guard {
        let guard = Guard::default();
        let slot = Arc::clone(&guard.denied);
        let introspecting = Arc::clone(&guard.introspecting);
        conn.authorizer(Some(move |ctx: AuthContext<'_>| {
            if is_read(&ctx.action) {
                return Authorization::Allow;
            }
            if let AuthAction::Pragma { pragma_name, .. } = ctx.action {
                if introspecting.load(Ordering::Relaxed)
                    && INTROSPECTION_PRAGMAS.contains(&pragma_name.to_ascii_lowercase().as_str())
                {
                    return Authorization::Allow;
                }
            }
            let mut denied = slot.lock().unwrap_or_else(PoisonError::into_inner);
            if denied.is_none() {
                *denied = Some(Denied {
                    action: describe(&ctx.action),
                    kind_of_statement: kind_of_statement(&ctx.action),
                });
            }
            Authorization::Deny
        }));
        guard
    }

    /// Allows the schema-describing pragmas until the returned value is
    /// dropped. Only the engine's own introspection queries run meanwhile.
    pub(crate) fn introspecting(&self) -> IntrospectionScope {
        self.introspecting.store(true, Ordering::Relaxed);
        IntrospectionScope {
            flag: Arc::clone(&self.introspecting),
        }
    }

    /// Forgets any earlier denial (call before preparing a statement).
    pub(crate) fn clear(&self) {
        *self.denied.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// The denied action since the last [`Guard::clear`], if any.
    pub(crate) fn take(&self) -> Option<Denied> {
        self.denied
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

/// While alive, the guard allows the introspection pragmas.
pub(crate) struct IntrospectionScope {
    flag: Arc<AtomicBool>,
}

impl Drop for IntrospectionScope {
    fn drop(&mut self) {
        self.flag.store(false, Ordering::Relaxed);
    }
}

/// See [`Denied::kind_of_statement`].
fn kind_of_statement(action: &AuthAction<'_>) -> Option<&'static str> {
    match action {
        AuthAction::Insert { table_name }
        | AuthAction::Update { table_name, .. }
        | AuthAction::Delete { table_name }
            if SCHEMA_TABLES.contains(&table_name.to_ascii_lowercase().as_str()) =>
        {
            Some("a schema change")
        }
        AuthAction::Transaction { .. } => Some("transaction control"),
        _ => None,
    }
}

/// Actions a read-only query needs.
fn is_read(action: &AuthAction<'_>) -> bool {
    matches!(
        action,
        AuthAction::Select
            | AuthAction::Read { .. }
            | AuthAction::Function { .. }
            | AuthAction::Recursive
    )
}

/// A short description of a refused action, naming its target.
fn describe(action: &AuthAction<'_>) -> String {
    use AuthAction as A;
    match action {
        A::Insert { table_name } => format!("INSERT into {}", quote_ident(table_name)),
        A::Update {
            table_name,
            column_name,
        } => format!(
            "UPDATE of {}.{}",
            quote_ident(table_name),
            quote_ident(column_name)
        ),
        A::Delete { table_name } => format!("DELETE from {}", quote_ident(table_name)),
        A::CreateTable { table_name } | A::CreateTempTable { table_name } => {
            format!("CREATE TABLE {}", quote_ident(table_name))
        }
        A::CreateIndex { index_name, .. } | A::CreateTempIndex { index_name, .. } => {
            format!("CREATE INDEX {}", quote_ident(index_name))
        }
        A::CreateView { view_name } | A::CreateTempView { view_name } => {
            format!("CREATE VIEW {}", quote_ident(view_name))
        }
        A::CreateTrigger { trigger_name, .. } | A::CreateTempTrigger { trigger_name, .. } => {
            format!("CREATE TRIGGER {}", quote_ident(trigger_name))
        }
        A::CreateVtable { table_name, .. } => {
            format!("CREATE VIRTUAL TABLE {}", quote_ident(table_name))
        }
        A::DropTable { table_name } | A::DropTempTable { table_name } => {
            format!("DROP TABLE {}", quote_ident(table_name))
        }
        A::DropIndex { index_name, .. } | A::DropTempIndex { index_name, .. } => {
            format!("DROP INDEX {}", quote_ident(index_name))
        }
        A::DropView { view_name } | A::DropTempView { view_name } => {
            format!("DROP VIEW {}", quote_ident(view_name))
        }
        A::DropTrigger { trigger_name, .. } | A::DropTempTrigger { trigger_name, .. } => {
            format!("DROP TRIGGER {}", quote_ident(trigger_name))
        }
        A::DropVtable { table_name, .. } => {
            format!("DROP VIRTUAL TABLE {}", quote_ident(table_name))
        }
        A::AlterTable { table_name, .. } => format!("ALTER TABLE {}", quote_ident(table_name)),
        A::Attach { filename } => format!("ATTACH '{filename}'"),
        A::Detach { database_name } => format!("DETACH {}", quote_ident(database_name)),
        A::Pragma {
            pragma_name,
            pragma_value: Some(value),
        } => format!("PRAGMA {} = {value}", quote_ident(pragma_name)),
        A::Pragma { pragma_name, .. } => format!("PRAGMA {}", quote_ident(pragma_name)),
        A::Transaction { operation } => format!("transaction control ({operation:?})"),
        A::Savepoint { savepoint_name, .. } => format!("SAVEPOINT {savepoint_name}"),
        A::Analyze { table_name } => format!("ANALYZE {}", quote_ident(table_name)),
        A::Reindex { index_name } => format!("REINDEX {}", quote_ident(index_name)),
        A::Unknown { code, .. } => format!("SQLite action code {code}"),
        other => format!("{other:?}"),
    }
}
