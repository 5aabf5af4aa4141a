//! What a generated pair must pass to be kept: its SQL runs read-only and
//! returns rows, it is not one more variant of a query shape already kept
//! (normalised skeleton), and it does not overlap the evaluation set.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::sql::{Database, ExecLimits, Value};

/// Why a pair was not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rejection {
    /// SQLite refused or failed the query.
    SqlError,
    /// It ran but returned no rows (or only NULLs).
    NoRows,
    /// Its skeleton already has the most pairs allowed.
    DuplicateSkeleton,
    /// The same question was already kept.
    DuplicateQuestion,
    /// Its SQL is an evaluation item's SQL.
    SameSqlAsEval,
    /// Its question is (nearly) an evaluation item's question.
    QuestionLikeEval,
    /// It returns an evaluation item's rows from the same tables and
    /// columns: the same query written another way (`GROUP BY 1`, an
    /// alias), whatever its question.
    SameResultAsEval,
    /// It reads no table (`SELECT 1`): nothing to learn about the data.
    ConstantQuery,
    /// Its result repeats a column (a looping model's select list).
    RepeatedColumns,
    /// The question or the SQL is longer than any sensible pair.
    TooLong,
}

impl Rejection {
    /// The name printed in counts.
    pub fn name(self) -> &'static str {
        match self {
            Rejection::SqlError => "sql_error",
            Rejection::NoRows => "no_rows",
            Rejection::DuplicateSkeleton => "duplicate_skeleton",
            Rejection::DuplicateQuestion => "duplicate_question",
            Rejection::SameSqlAsEval => "same_sql_as_eval",
            Rejection::QuestionLikeEval => "question_like_eval",
            Rejection::SameResultAsEval => "same_result_as_eval",
            Rejection::ConstantQuery => "constant_query",
            Rejection::RepeatedColumns => "repeated_columns",
            Rejection::TooLong => "too_long",
        }
    }
}

/// Word-set similarity at or above which two questions count as the same.
pub const QUESTION_SIMILARITY: f64 = 0.8;

/// Longest question kept, in bytes.
pub const MAX_QUESTION_LEN: usize = 250;

/// Longest SQL kept, in bytes.
pub const MAX_SQL_LEN: usize = 600;

/// SQL with case, spacing, quotes around names and the final `;`
/// normalised; literals kept.
pub fn normalized_sql(sql: &str) -> String {
    let is_punct = |c: char| ",()=<>!+-*/|%".contains(c);
    let mut out = String::new();
    let mut chars = sql
        .trim()
        .trim_end_matches(';')
        .trim_end()
        .chars()
        .peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                out.push('\'');
                for d in chars.by_ref() {
                    out.push(d);
                    if d == '\'' {
                        break;
                    }
                }
            }
            c if c.is_whitespace() => {
                while chars.peek().is_some_and(|d| d.is_whitespace()) {
                    chars.next();
                }
                let before = out.chars().last().is_some_and(is_punct);
                let after = chars.peek().is_some_and(|&d| is_punct(d));
                if !before && !after {
                    out.push(' ');
                }
            }
            '"' | '`' | '[' | ']' => {}
            c => out.extend(c.to_lowercase()),
        }
    }
    out
}

/// The shape of a query: [`normalized_sql`] with every string and number
/// literal replaced by `?`.
pub fn skeleton(sql: &str) -> String {
    let norm = normalized_sql(sql);
    let mut out = String::new();
    let mut chars = norm.chars().peekable();
    let mut prev_word = false;
    while let Some(c) = chars.next() {
        if c == '\'' {
            for d in chars.by_ref() {
                if d == '\'' {
                    break;
                }
            }
            out.push('?');
        } else if c.is_ascii_digit() && !prev_word {
            while chars
                .peek()
                .is_some_and(|d| d.is_ascii_digit() || *d == '.')
            {
                chars.next();
            }
            out.push('?');
        } else {
            out.push(c);
        }
        prev_word = c.is_alphanumeric() || c == '_';
    }
    out
}

/// Rows as sorted texts: a result compared regardless of row order.
fn row_texts(rows: &[Vec<Value>]) -> Vec<String> {
    let mut out: Vec<String> = rows
        .iter()
        .map(|r| {
            r.iter()
                .map(Value::to_sql_literal)
                .collect::<Vec<_>>()
                .join("\u{1f}")
        })
        .collect();
    out.sort();
    out
}

/// The words of a question, lower-cased, punctuation dropped.
fn question_words(q: &str) -> HashSet<String> {
    q.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

fn similarity(a: &HashSet<String>, b: &HashSet<String>) -> f64 {
    let union = a.union(b).count();
    if union == 0 {
        return 1.0;
    }
    a.intersection(b).count() as f64 / union as f64
}

/// The filter state over one run: what was kept so far and the evaluation
/// set to stay away from.
pub struct Filter {
    tables: Vec<String>,
    /// Lower-cased words of the database's table and column names.
    schema_words: HashSet<String>,
    eval_sql: HashSet<String>,
    /// The evaluation SQL, run on first use: each item's rows and the
    /// schema names it reads (items that do not run here are left out).
    eval_sql_text: Vec<String>,
    eval_results: Option<Vec<(Vec<String>, BTreeSet<String>)>>,
    eval_questions: Vec<HashSet<String>>,
    per_skeleton: HashMap<String, usize>,
    max_per_skeleton: usize,
    questions: HashSet<String>,
    limits: ExecLimits,
    /// Rejections so far, by reason.
    pub rejected: BTreeMap<Rejection, usize>,
}

impl Filter {
    /// A filter for pairs over a database with `tables` that keeps at most
    /// `max_per_skeleton` pairs of one shape and nothing overlapping `eval`
    /// (question, SQL pairs).
    pub fn new(tables: &[String], eval: &[(String, String)], max_per_skeleton: usize) -> Self {
        Self {
            tables: tables.iter().map(|t| t.to_lowercase()).collect(),
            schema_words: tables
                .iter()
                .flat_map(|t| t.split_whitespace())
                .map(str::to_lowercase)
                .collect(),
            eval_sql: eval.iter().map(|(_, s)| normalized_sql(s)).collect(),
            eval_sql_text: eval.iter().map(|(_, s)| s.clone()).collect(),
            eval_results: None,
            eval_questions: eval.iter().map(|(q, _)| question_words(q)).collect(),
            per_skeleton: HashMap::new(),
            max_per_skeleton: max_per_skeleton.max(1),
            questions: HashSet::new(),
            limits: ExecLimits::default(),
            rejected: BTreeMap::new(),
        }
    }

    /// Also counts `columns` (names of the database's columns) as schema
    /// names when comparing a pair with the evaluation items: without
    /// them, only table names are compared.
    pub fn with_columns(mut self, columns: &[String]) -> Self {
        self.schema_words.extend(
            columns
                .iter()
                .flat_map(|c| c.split_whitespace())
                .map(str::to_lowercase),
        );
        self
    }

    /// The schema names `sql` mentions.
    fn names_read(&self, sql: &str) -> BTreeSet<String> {
        skeleton(sql)
            .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.'))
            .flat_map(|w| std::iter::once(w).chain(w.split('.')))
            .filter(|w| self.schema_words.contains(*w))
            .map(str::to_string)
            .collect()
    }

    /// Whether to keep `(question, sql)` over `db`; records why not.
    pub fn keep(&mut self, db: &Database, question: &str, sql: &str) -> bool {
        match self.check(db, question, sql) {
            Ok(()) => true,
            Err(r) => {
                *self.rejected.entry(r).or_default() += 1;
                false
            }
        }
    }

    fn check(&mut self, db: &Database, question: &str, sql: &str) -> Result<(), Rejection> {
        if question.len() > MAX_QUESTION_LEN || sql.len() > MAX_SQL_LEN {
            return Err(Rejection::TooLong);
        }
        let norm = normalized_sql(sql);
        let words: HashSet<&str> = norm
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .collect();
        let reads_a_table = self
            .tables
            .iter()
            .any(|t| words.contains(t.as_str()) || (t.contains(' ') && norm.contains(t.as_str())));
        if !words.contains("from") || !reads_a_table {
            return Err(Rejection::ConstantQuery);
        }
        if self.eval_sql.contains(&norm) {
            return Err(Rejection::SameSqlAsEval);
        }
        let words = question_words(question);
        if self
            .eval_questions
            .iter()
            .any(|e| similarity(e, &words) >= QUESTION_SIMILARITY)
        {
            return Err(Rejection::QuestionLikeEval);
        }
        let key = question.trim().to_lowercase();
        if self.questions.contains(&key) {
            return Err(Rejection::DuplicateQuestion);
        }
        let shape = skeleton(sql);
        if self.per_skeleton.get(&shape).copied().unwrap_or(0) >= self.max_per_skeleton {
            return Err(Rejection::DuplicateSkeleton);
        }
        let result = db
            .execute(sql, &self.limits)
            .map_err(|_| Rejection::SqlError)?;
        let has_value = result
            .rows
            .iter()
            .any(|r| r.iter().any(|v| !matches!(v, Value::Null)));
        if !has_value {
            return Err(Rejection::NoRows);
        }
        let mut names = HashSet::new();
        if !result
            .columns
            .iter()
            .all(|c| names.insert(c.to_lowercase()))
        {
            return Err(Rejection::RepeatedColumns);
        }
        if self.eval_results.is_none() {
            let runs = self
                .eval_sql_text
                .iter()
                .filter_map(|sql| {
                    let rows = db.execute(sql, &self.limits).ok()?;
                    Some((row_texts(&rows.rows), self.names_read(sql)))
                })
                .collect();
            self.eval_results = Some(runs);
        }
        let rows = row_texts(&result.rows);
        let names = self.names_read(sql);
        if self
            .eval_results
            .iter()
            .flatten()
            .any(|(r, n)| *r == rows && *n == names)
        {
            return Err(Rejection::SameResultAsEval);
        }
        *self.per_skeleton.entry(shape).or_default() += 1;
        self.questions.insert(key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skeletons_abstract_literals_and_spelling() {
        let a = skeleton("SELECT name FROM \"artists\" WHERE country = 'Sweden' LIMIT 5;");
        let b = skeleton("select  name from artists where country='Norway' limit 3");
        assert_eq!(a, b);
        assert_ne!(
            a,
            skeleton("SELECT name FROM artists WHERE genre = 'Sweden'")
        );
        // Digits inside names stay.
        assert!(skeleton("SELECT t1.x FROM a AS t1").contains("t1"));
        assert_eq!(
            normalized_sql("SELECT [top genre] , AVG(energy) FROM songs;"),
            normalized_sql("select top genre,avg(energy) from songs")
        );
        assert_ne!(
            normalized_sql("SELECT x FROM t WHERE y = 'A'"),
            normalized_sql("SELECT x FROM t WHERE y = 'a'")
        );
    }

    #[test]
    fn every_rejection_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("music.db");
        crate::sql::build_demo_db(&path).unwrap();
        let db = Database::open(&path).unwrap();
        let tables: Vec<String> = ["artists", "albums", "tracks", "streams"]
            .map(String::from)
            .to_vec();
        let eval = vec![
            (
                "How many artists are from Sweden?".to_string(),
                "SELECT COUNT(*) FROM artists WHERE country = 'Sweden'".to_string(),
            ),
            (
                "Which genre has the most artists?".to_string(),
                "SELECT genre FROM artists GROUP BY 1 ORDER BY count(*) DESC LIMIT 1".to_string(),
            ),
        ];
        let columns: Vec<String> = ["name", "country", "genre", "title", "label"]
            .map(String::from)
            .to_vec();
        let mut f = Filter::new(&tables, &eval, 2).with_columns(&columns);
        let cases = [
            (
                "How many albums are there?",
                "SELECT COUNT(*) FROM albums",
                None,
            ),
            ("Count the albums.", "SELECT COUNT(*) FROM albums", None),
            (
                "What is the total number of albums?",
                "select count(*) from albums",
                Some(Rejection::DuplicateSkeleton),
            ),
            (
                "Count the albums.",
                "SELECT COUNT(*) FROM tracks",
                Some(Rejection::DuplicateQuestion),
            ),
            (
                "Number of artists in Sweden?",
                "select count(*) from \"artists\" where country='Sweden';",
                Some(Rejection::SameSqlAsEval),
            ),
            (
                "how many artists are from sweden",
                "SELECT name FROM artists",
                Some(Rejection::QuestionLikeEval),
            ),
            (
                "What is the most common genre of the artists?",
                "SELECT genre FROM artists GROUP BY genre ORDER BY COUNT(*) DESC LIMIT 1",
                Some(Rejection::SameResultAsEval),
            ),
            (
                "Which genre do the fewest artists play?",
                "SELECT genre FROM artists GROUP BY genre ORDER BY COUNT(*) ASC LIMIT 1",
                None,
            ),
            ("What is one?", "SELECT 1", Some(Rejection::ConstantQuery)),
            (
                "What is one again?",
                "SELECT * FROM (SELECT 1)",
                Some(Rejection::ConstantQuery),
            ),
            (
                "Which tracks have no title?",
                "SELECT title FROM tracks WHERE title IS NULL",
                Some(Rejection::NoRows),
            ),
            (
                "Which tables are missing?",
                "SELECT x FROM nowhere_table",
                Some(Rejection::ConstantQuery),
            ),
            (
                "Which column is missing?",
                "SELECT nowhere FROM tracks",
                Some(Rejection::SqlError),
            ),
            (
                "List titles twice.",
                "SELECT title, title FROM tracks",
                Some(Rejection::RepeatedColumns),
            ),
            (
                "A very long question?",
                &format!(
                    "SELECT title FROM tracks WHERE title <> '{}'",
                    "x".repeat(700)
                ),
                Some(Rejection::TooLong),
            ),
        ];
        for (q, sql, want) in cases {
            let kept = f.keep(&db, q, sql);
            assert_eq!(kept, want.is_none(), "{q} / {sql}");
            if let Some(r) = want {
                assert!(f.rejected.contains_key(&r), "{q}: expected {}", r.name());
            }
        }
        assert_eq!(f.rejected.values().sum::<usize>(), cases.len() - 3);
    }

    #[test]
    fn near_identical_questions_overlap() {
        let a = question_words("How many artists are from Sweden?");
        let b = question_words("how many artists are from sweden");
        let c = question_words("List the albums released after 2015.");
        assert!(similarity(&a, &b) >= QUESTION_SIMILARITY);
        assert!(similarity(&a, &c) < QUESTION_SIMILARITY);
    }
}
