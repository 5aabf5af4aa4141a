//! Question sets: JSONL files with one `{"question", "sql"}` object per line,
//! optionally with `"db"` (a database path relative to the set file) and
//! `"tags"`. Blank lines are skipped; anything else that is not such an
//! object is an error naming the file and line.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

/// One question with its gold SQL.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetItem {
    /// The question, in plain English.
    pub question: String,
    /// The gold query.
    pub sql: String,
    /// The database, resolved against the set file's directory.
    #[serde(default)]
    pub db: Option<PathBuf>,
    /// Free labels (difficulty, construct) for grouping results.
    #[serde(default)]
    pub tags: Vec<String>,
    /// The seed's expected answer text, when present (never compared).
    #[serde(default)]
    pub answer: Option<serde_json::Value>,
    /// Where a generated pair came from (`template:top_k`, `model`), as
    /// `sqlagent synth` writes it.
    #[serde(default)]
    pub source: Option<String>,
}

/// Reads the set at `path`.
pub fn load_set(path: &Path) -> Result<Vec<SetItem>> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut items = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let err = |message: String| Error::Set {
            path: path.to_path_buf(),
            line: i as u64 + 1,
            message,
        };
        let mut item: SetItem =
            serde_json::from_str(line).map_err(|e| err(format!("not a set item: {e}")))?;
        if item.question.trim().is_empty() {
            return Err(err("\"question\" is empty".into()));
        }
        if item.sql.trim().is_empty() {
            return Err(err("\"sql\" is empty".into()));
        }
        if let Some(db) = item.db.take() {
            item.db = Some(if db.is_absolute() { db } else { base.join(db) });
        }
        items.push(item);
    }
    if items.is_empty() {
        return Err(Error::Set {
            path: path.to_path_buf(),
            line: 0,
            message: "holds no items".into(),
        });
    }
    Ok(items)
}

/// One item of Spider's `dev.json` (the fields used).
#[derive(Debug, Deserialize)]
struct SpiderItem {
    db_id: String,
    query: String,
    question: String,
}

/// Reads a Spider-format set (`dev.json`: a JSON array of `{db_id, query,
/// question, …}`); each item's database is `db_dir/<db_id>/<db_id>.sqlite`
/// and its tag the `db_id`.
pub fn load_spider(path: &Path, db_dir: &Path) -> Result<Vec<SetItem>> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let raw: Vec<SpiderItem> = serde_json::from_str(&text).map_err(|e| Error::Set {
        path: path.to_path_buf(),
        line: e.line() as u64,
        message: format!("not a Spider dev.json array: {e}"),
    })?;
    if raw.is_empty() {
        return Err(Error::Set {
            path: path.to_path_buf(),
            line: 0,
            message: "holds no items".into(),
        });
    }
    Ok(raw
        .into_iter()
        .map(|r| SetItem {
            db: Some(db_dir.join(&r.db_id).join(format!("{}.sqlite", r.db_id))),
            question: r.question,
            sql: r.query,
            tags: vec![r.db_id],
            answer: None,
            source: None,
        })
        .collect())
}

/// Whether `path` looks like a Spider-format set: a `.json` file whose
/// first non-blank character opens an array.
pub fn is_spider_format(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "json")
        && std::fs::read_to_string(path)
            .ok()
            .and_then(|t| t.trim_start().chars().next())
            == Some('[')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("set.jsonl");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn reads_items_and_resolves_databases_next_to_the_set() {
        let (dir, path) = write(
            "{\"question\":\"How many?\",\"sql\":\"SELECT 1\"}\n\n\
             {\"question\":\"Q\",\"sql\":\"SELECT 2\",\"db\":\"x.db\",\"tags\":[\"easy\"]}\n",
        );
        let items = load_set(&path).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].db, None);
        assert_eq!(
            items[1].db.as_deref(),
            Some(dir.path().join("x.db").as_path())
        );
        assert_eq!(items[1].tags, vec!["easy".to_string()]);
    }

    #[test]
    fn spider_items_find_their_database_under_db_dir() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dev.json");
        std::fs::write(
            &path,
            r#"[{"db_id": "concert_singer", "query": "SELECT count(*) FROM singer",
                 "question": "How many singers do we have?", "sql": {}}]"#,
        )
        .unwrap();
        assert!(is_spider_format(&path));
        let items = load_spider(&path, Path::new("/data/database")).unwrap();
        assert_eq!(items[0].question, "How many singers do we have?");
        assert_eq!(
            items[0].db.as_deref(),
            Some(Path::new(
                "/data/database/concert_singer/concert_singer.sqlite"
            ))
        );
        assert_eq!(items[0].tags, vec!["concert_singer".to_string()]);
        std::fs::write(&path, "[{\"db_id\": 1}]").unwrap();
        let e = load_spider(&path, Path::new(".")).unwrap_err().to_string();
        assert!(e.contains("dev.json:1: not a Spider dev.json array"), "{e}");
    }

    #[test]
    fn bad_lines_are_errors_naming_file_and_line() {
        for (text, needle) in [
            (
                "{\"question\":\"Q\",\"sql\":\"SELECT 1\"}\nnot json\n",
                ":2: not a set item",
            ),
            (
                "{\"question\":\"Q\"}\n",
                ":1: not a set item: missing field `sql`",
            ),
            (
                "{\"question\":\" \",\"sql\":\"SELECT 1\"}\n",
                ":1: \"question\" is empty",
            ),
            (
                "{\"question\":\"Q\",\"sql\":\"x\",\"gold\":1}\n",
                ":1: not a set item: unknown field `gold`",
            ),
            ("\n\n", ": holds no items"),
        ] {
            let (_dir, path) = write(text);
            let e = load_set(&path).unwrap_err().to_string();
            assert!(e.contains("set.jsonl") && e.contains(needle), "{e}");
        }
    }
}
