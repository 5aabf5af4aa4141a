//! Few-shot examples chosen per question: the `k` question/SQL pairs most
//! like the question by BM25 over each pair's question words and the words
//! of the names its SQL reads (so "songs by genre" finds a pair whose SQL
//! groups by `"top genre"` even when its question said "style"). Written
//! here rather than taken from a search crate: the corpus is a few thousand
//! short pairs held in memory, and the scoring is thirty lines.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use super::prompt::{parse_examples, Example};
use crate::error::{Error, Result};
use crate::sql::{is_keyword, name_words};

/// BM25's term-frequency saturation.
const K1: f64 = 1.2;
/// BM25's length normalisation.
const B: f64 = 0.75;

/// Words too common in questions to tell pairs apart.
const STOP_WORDS: &[&str] = &[
    "a", "an", "the", "of", "in", "on", "for", "to", "and", "or", "is", "are", "was", "were", "by",
    "with", "what", "which", "who", "how", "me", "show", "list", "give", "find", "there", "that",
    "each", "all", "do", "does", "have", "has", "be", "it", "its", "as", "at", "from", "this",
];

/// An index over example pairs.
#[derive(Debug, Clone)]
pub struct ExampleIndex {
    examples: Vec<Example>,
    /// Term counts per example.
    docs: Vec<HashMap<String, usize>>,
    /// Length of each example in terms.
    lengths: Vec<usize>,
    /// Examples each term occurs in.
    doc_freq: HashMap<String, usize>,
    mean_length: f64,
}

/// The words of a text as the index compares them: lowercase, names split
/// into words (`SupportRepId` → support rep id), a plural `s` dropped.
pub fn terms(text: &str) -> Vec<String> {
    name_words(text)
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty() && !STOP_WORDS.contains(w))
        .map(|w| {
            if w.len() > 3 && w.ends_with('s') && !w.ends_with("ss") {
                w[..w.len() - 1].to_string()
            } else {
                w.to_string()
            }
        })
        .collect()
}

/// The words of the names a query reads: everything but keywords and
/// literals (string and number literals are left out, so two pairs that
/// differ only in a value look alike).
fn sql_terms(sql: &str) -> Vec<String> {
    // Function names that are not SQLite keywords but say nothing of the data.
    const FUNCTIONS: &[&str] = &["count", "sum", "avg", "min", "max"];
    // Drop quoted string literals ('…'); keep double-quoted names.
    let mut in_string = false;
    let cleaned: String = sql
        .chars()
        .map(|c| {
            if c == '\'' {
                in_string = !in_string;
                ' '
            } else if in_string {
                ' '
            } else {
                c
            }
        })
        .collect();
    cleaned
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| {
            !w.is_empty()
                && !w.chars().all(|c| c.is_ascii_digit())
                && !is_keyword(w)
                && !FUNCTIONS.contains(&w.to_lowercase().as_str())
        })
        .flat_map(terms)
        .collect()
}

impl ExampleIndex {
    /// An index over `examples`.
    pub fn new(examples: Vec<Example>) -> Self {
        let docs: Vec<HashMap<String, usize>> = examples
            .iter()
            .map(|e| {
                let mut counts = HashMap::new();
                for t in terms(&e.question).into_iter().chain(sql_terms(&e.sql)) {
                    *counts.entry(t).or_insert(0) += 1;
                }
                counts
            })
            .collect();
        let lengths: Vec<usize> = docs.iter().map(|d| d.values().sum()).collect();
        let mut doc_freq = HashMap::new();
        for d in &docs {
            for t in d.keys() {
                *doc_freq.entry(t.clone()).or_insert(0) += 1;
            }
        }
        let mean_length = lengths.iter().sum::<usize>() as f64 / lengths.len().max(1) as f64;
        Self {
            examples,
            docs,
            lengths,
            doc_freq,
            mean_length,
        }
    }

    /// The pairs of a JSONL file (`{"question", "sql"}` a line; other
    /// fields ignored), indexed. A bad line is an error naming the file
    /// and line.
    pub fn from_jsonl(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        // The few-shot file's parser; its errors name this file, not a prompt.
        let examples = parse_examples(&text, path).map_err(|e| match e {
            Error::Prompt { path, message } => {
                Error::invalid("examples", format!("{}: {message}", path.display()))
            }
            other => other,
        })?;
        if examples.is_empty() {
            return Err(Error::invalid(
                "examples",
                format!("{}: no question/SQL pairs", path.display()),
            ));
        }
        Ok(Self::new(examples))
    }

    /// Pairs indexed.
    pub fn len(&self) -> usize {
        self.examples.len()
    }

    /// Whether no pair is indexed.
    pub fn is_empty(&self) -> bool {
        self.examples.is_empty()
    }

    /// The `k` pairs most like `question`, the closest last (nearest the
    /// question in the prompt); pairs with nothing in common are left out,
    /// and so is the question itself. Ties go to the earlier pair.
    pub fn nearest(&self, question: &str, k: usize) -> Vec<&Example> {
        if k == 0 {
            return Vec::new();
        }
        let query: HashSet<String> = terms(question).into_iter().collect();
        let asked = normalized(question);
        let n = self.docs.len() as f64;
        let mut scored: Vec<(f64, usize)> = self
            .docs
            .iter()
            .enumerate()
            .filter(|(i, _)| normalized(&self.examples[*i].question) != asked)
            .map(|(i, doc)| {
                let len_norm = 1.0 - B + B * self.lengths[i] as f64 / self.mean_length.max(1e-9);
                let score = query
                    .iter()
                    .filter_map(|t| {
                        let tf = *doc.get(t)? as f64;
                        let df = self.doc_freq[t] as f64;
                        let idf = ((n - df + 0.5) / (df + 0.5) + 1.0).ln();
                        Some(idf * tf * (K1 + 1.0) / (tf + K1 * len_norm))
                    })
                    .sum::<f64>();
                (score, i)
            })
            .filter(|(s, _)| *s > 0.0)
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        scored.truncate(k);
        scored.reverse();
        scored.iter().map(|(_, i)| &self.examples[*i]).collect()
    }
}

fn normalized(question: &str) -> String {
    question
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .trim_end_matches(['?', '.', '!'])
        .to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(q: &str, sql: &str) -> Example {
        Example {
            question: q.into(),
            sql: sql.into(),
        }
    }

    fn index() -> ExampleIndex {
        ExampleIndex::new(vec![
            ex("How many songs are there?", "SELECT COUNT(*) FROM songs"),
            ex(
                "How many songs are there in each style?",
                "SELECT \"top genre\", COUNT(*) FROM songs GROUP BY \"top genre\"",
            ),
            ex(
                "Which artist has the most streams?",
                "SELECT artist FROM songs ORDER BY streams DESC LIMIT 1",
            ),
            ex(
                "What is the average energy of his songs?",
                "SELECT AVG(energy) FROM songs WHERE artist = 'Drake'",
            ),
        ])
    }

    #[test]
    fn names_in_the_sql_count_as_words_of_the_pair() {
        let idx = index();
        // "genre" is only in the second pair's SQL.
        let got = idx.nearest("Number of songs per genre", 1);
        assert_eq!(got.len(), 1);
        assert!(got[0].sql.contains("top genre"), "{got:?}");
        // Values in the SQL are not words of the pair.
        assert!(idx.nearest("Drake", 4).is_empty());
        assert_eq!(idx.nearest("average energy", 1)[0].sql, idx.examples[3].sql);
    }

    #[test]
    fn the_closest_comes_last_and_the_question_itself_is_left_out() {
        let idx = index();
        let got = idx.nearest("Which artist has the most streams?", 2);
        assert!(got.iter().all(|e| !e.question.starts_with("Which artist")));
        let got = idx.nearest("which artist streams the most songs", 3);
        assert_eq!(
            got.last().unwrap().question,
            "Which artist has the most streams?"
        );
        assert!(idx.nearest("anything", 0).is_empty());
    }

    #[test]
    fn words_are_split_lowered_and_singular() {
        assert_eq!(
            terms("InvoiceLines of the Customers"),
            ["invoice", "line", "customer"]
        );
        assert_eq!(
            sql_terms("SELECT T.\"top genre\" FROM songs AS T WHERE x = 'Pop Hits' AND y > 3"),
            ["t", "top", "genre", "song", "t", "x", "y"]
        );
    }

    #[test]
    fn a_bad_line_names_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ex.jsonl");
        std::fs::write(
            &path,
            "{\"question\": \"q\", \"sql\": \"SELECT 1\"}\n{\"question\": 3}\n",
        )
        .unwrap();
        let err = ExampleIndex::from_jsonl(&path).unwrap_err().to_string();
        assert!(err.contains("ex.jsonl: line 2"), "{err}");
        std::fs::write(&path, "\n").unwrap();
        assert!(ExampleIndex::from_jsonl(&path).is_err());
    }
}
