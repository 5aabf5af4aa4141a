//! The introspected shape of a database: what the prompt and (later) the
//! grammar see. Serializable so prompt templates (`prompts/*/schema.j2`) can
//! render it.

use serde::Serialize;

use super::ident::quote_ident;

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

impl Schema {
    /// Renders the schema as compact `CREATE TABLE` statements (views as
    /// `CREATE VIEW name (columns)`), one column per line, names quoted where
    /// needed. A plain default rendering; prompt templates may render the
    /// serialized struct their own way.
    ///
    /// ```text
    /// CREATE TABLE albums (
    ///   album_id INTEGER PRIMARY KEY,
    ///   artist_id INTEGER NOT NULL REFERENCES artists(artist_id),
    ///   title TEXT NOT NULL
    /// );
    /// ```
    pub fn render_ddl(&self) -> String {
        let mut out = String::new();
        for (i, table) in self.tables.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            out.push_str(&table.render_ddl());
        }
        out
    }

    /// The table or view named `name` (case-insensitive, as in SQLite).
    pub fn table(&self, name: &str) -> Option<&Table> {
        self.tables
            .iter()
            .find(|t| t.name.eq_ignore_ascii_case(name))
    }
}

impl Table {
    /// This table as one `CREATE TABLE` (or `CREATE VIEW`) statement; see
    /// [`Schema::render_ddl`].
    pub fn render_ddl(&self) -> String {
        let single_pk = match self.primary_key.as_slice() {
            [one] => Some(one.as_str()),
            _ => None,
        };
        let single_fk = |col: &str| {
            self.foreign_keys
                .iter()
                .find(|fk| fk.columns.len() == 1 && fk.columns[0] == col)
        };
        let mut lines: Vec<String> = Vec::new();
        for col in &self.columns {
            let mut line = format!("  {}", col.quoted);
            if !col.decl_type.is_empty() {
                line.push(' ');
                line.push_str(&col.decl_type);
            }
            if single_pk == Some(col.name.as_str()) {
                line.push_str(" PRIMARY KEY");
            }
            if col.not_null {
                line.push_str(" NOT NULL");
            }
            if let Some(fk) = single_fk(&col.name) {
                line.push(' ');
                line.push_str(&fk.render_references());
            }
            lines.push(line);
        }
        if self.primary_key.len() > 1 {
            lines.push(format!("  PRIMARY KEY ({})", quote_list(&self.primary_key)));
        }
        for fk in self.foreign_keys.iter().filter(|fk| fk.columns.len() > 1) {
            lines.push(format!(
                "  FOREIGN KEY ({}) {}",
                quote_list(&fk.columns),
                fk.render_references()
            ));
        }
        let kind = if self.is_view { "VIEW" } else { "TABLE" };
        format!("CREATE {kind} {} (\n{}\n);", self.quoted, lines.join(",\n"))
    }

    /// The column named `name` (case-insensitive, as in SQLite).
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
    }
}

#[cfg(test)]
impl Column {
    /// A nullable, non-key column named `name` (quoted as SQL needs) with
    /// these sample literals, for tests.
    pub(crate) fn for_test(name: &str, decl_type: &str, samples: Vec<String>) -> Column {
        Column {
            name: name.into(),
            quoted: super::quote_ident(name),
            decl_type: decl_type.into(),
            not_null: false,
            primary_key: false,
            samples,
        }
    }
}

impl ForeignKey {
    /// `REFERENCES table(columns)`, or `REFERENCES table` when the key points
    /// at the referenced table's primary key.
    fn render_references(&self) -> String {
        let table = quote_ident(&self.table);
        if self.to_columns.is_empty() {
            format!("REFERENCES {table}")
        } else {
            format!("REFERENCES {table}({})", quote_list(&self.to_columns))
        }
    }
}

fn quote_list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| quote_ident(n))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, ty: &str, pk: bool, not_null: bool) -> Column {
        Column {
            name: name.into(),
            quoted: quote_ident(name),
            decl_type: ty.into(),
            not_null,
            primary_key: pk,
            samples: Vec::new(),
        }
    }

    #[test]
    fn renders_keys_inline_or_as_table_constraints() {
        let schema = Schema {
            tables: vec![
                Table {
                    name: "albums".into(),
                    quoted: "albums".into(),
                    is_view: false,
                    columns: vec![
                        col("album_id", "INTEGER", true, false),
                        col("artist_id", "INTEGER", false, true),
                        col("top genre", "TEXT", false, false),
                    ],
                    primary_key: vec!["album_id".into()],
                    foreign_keys: vec![ForeignKey {
                        columns: vec!["artist_id".into()],
                        table: "artists".into(),
                        to_columns: vec!["artist_id".into()],
                    }],
                    row_count: 0,
                },
                Table {
                    name: "streams".into(),
                    quoted: "streams".into(),
                    is_view: false,
                    columns: vec![
                        col("track_id", "INTEGER", true, true),
                        col("month", "TEXT", true, true),
                        col("order", "", false, false),
                    ],
                    primary_key: vec!["track_id".into(), "month".into()],
                    foreign_keys: vec![ForeignKey {
                        columns: vec!["track_id".into(), "month".into()],
                        table: "plays".into(),
                        to_columns: Vec::new(),
                    }],
                    row_count: 0,
                },
            ],
        };
        let want = "\
CREATE TABLE albums (
  album_id INTEGER PRIMARY KEY,
  artist_id INTEGER NOT NULL REFERENCES artists(artist_id),
  \"top genre\" TEXT
);
CREATE TABLE streams (
  track_id INTEGER NOT NULL,
  month TEXT NOT NULL,
  \"order\",
  PRIMARY KEY (track_id, month),
  FOREIGN KEY (track_id, month) REFERENCES plays
);";
        assert_eq!(schema.render_ddl(), want);
        assert!(schema.table("ALBUMS").is_some());
        assert!(schema.tables[0].column("Top Genre").is_some());
    }
}
