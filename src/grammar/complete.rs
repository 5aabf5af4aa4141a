//! Finishing a query the model has not finished: a short, model-free search
//! for text that closes what is open (strings, parentheses, CASE … END, a
//! FROM clause) and reaches a point where the query can end and passes the
//! caller's check.
//!
//! The search does not walk the vocabulary: it tries short sequences of
//! ready-made pieces of SQL ([`Completions`]: closers such as `'` and `)`,
//! `␣1`, `␣END`, `␣FROM <table>` …), breadth first, each validated against
//! the grammar without computing a mask. Used when the token budget is
//! spent mid-query and when a finished query fails the check for good (the
//! decode loop then backs up and finishes from an earlier point).

use super::constraint::Constraint;
use crate::error::Result;
use crate::sql::Schema;

/// Pieces in one completion, at most.
const MAX_DEPTH: usize = 4;
/// Piece validations one search may spend.
const MAX_VALIDATIONS: usize = 4_000;

/// Pieces of SQL that can finish a query, in the order they are tried
/// (closers first), each as the text and its tokens.
#[derive(Debug, Clone, Default)]
pub struct Completions {
    pieces: Vec<(String, Vec<u32>)>,
}

/// Pieces that finish most unfinished queries, whatever the schema.
const GENERIC_PIECES: &[&str] = &[
    "'",
    "\"",
    "]",
    "`",
    ")",
    " END",
    " 1",
    "1",
    " NULL",
    " THEN 1",
    " WHEN 1 THEN 1",
    " ELSE 1",
    " AND 1",
    " BY 1",
    " ON 1",
    " (1)",
    "(1)",
    " ()",
    "()",
    " AS INTEGER",
    " AS x",
    " x",
    " JOIN",
    " SELECT 1",
    " (SELECT 1)",
    "(SELECT 1)",
    " x AS (SELECT 1)",
    " 'a'",
    " UNBOUNDED PRECEDING",
    " CURRENT ROW",
    " ROW",
    " OTHERS",
    " FIRST",
    " BINARY",
    " (WHERE 1)",
    " *",
    "SELECT",
    " SELECT",
];

impl Completions {
    /// Generic pieces plus, for each table of `schema`, ` <table>` and
    /// ` FROM <table>`. `encode` turns text into token ids.
    pub fn new(schema: Option<&Schema>, encode: &dyn Fn(&str) -> Result<Vec<u32>>) -> Result<Self> {
        let mut texts: Vec<String> = GENERIC_PIECES.iter().map(|s| s.to_string()).collect();
        for table in schema.map(|s| s.tables.as_slice()).unwrap_or_default() {
            texts.push(format!(" {}", table.quoted));
            texts.push(format!(" FROM {}", table.quoted));
        }
        let pieces = texts
            .into_iter()
            .map(|text| {
                let ids = encode(&text)?;
                Ok((text, ids))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { pieces })
    }

    /// The pieces, as text and tokens.
    pub fn pieces(&self) -> impl Iterator<Item = (&str, &[u32])> {
        self.pieces
            .iter()
            .map(|(t, ids)| (t.as_str(), ids.as_slice()))
    }
}

/// Searches for at most `max_len` tokens of completion pieces that take
/// `constraint` to a state where the query can end and
/// `finished(prefix + tokens)` holds. On success the tokens are committed
/// and returned; on failure the constraint is left as it was.
pub fn complete(
    constraint: &mut Constraint,
    prefix: &[u32],
    max_len: usize,
    finished: &dyn Fn(&[u32]) -> bool,
) -> Result<Option<Vec<u32>>> {
    if constraint.is_accepting()? && finished(prefix) {
        return Ok(Some(Vec::new()));
    }
    if constraint.is_stopped() {
        return Ok(None);
    }
    let completions = constraint.completions().clone();
    let pieces: Vec<&[u32]> = completions
        .pieces()
        .map(|(_, ids)| ids)
        .filter(|ids| !ids.is_empty())
        .collect();
    let mut validations = 0usize;
    // Breadth first: every sequence of `depth` pieces the grammar accepts.
    let mut frontier: Vec<Vec<usize>> = vec![Vec::new()];
    for _ in 0..MAX_DEPTH {
        let mut next = Vec::new();
        for path in &frontier {
            let tokens: Vec<u32> = path.iter().flat_map(|&i| pieces[i].to_vec()).collect();
            for &t in &tokens {
                constraint.commit(t)?;
            }
            let mut found = None;
            for (i, piece) in pieces.iter().enumerate() {
                if validations >= MAX_VALIDATIONS {
                    break;
                }
                if tokens.len() + piece.len() > max_len {
                    continue;
                }
                validations += 1;
                if !constraint.accepts_all(piece)? {
                    continue;
                }
                for &t in piece.iter() {
                    constraint.commit(t)?;
                }
                let mut full = prefix.to_vec();
                full.extend(&tokens);
                full.extend(piece.iter());
                let done = constraint.is_accepting()? && finished(&full);
                if done {
                    found = Some(full[prefix.len()..].to_vec());
                    break;
                }
                constraint.rollback(piece.len())?;
                let mut longer = path.clone();
                longer.push(i);
                next.push(longer);
            }
            if let Some(extra) = found {
                // Leave the completion committed.
                return Ok(Some(extra));
            }
            constraint.rollback(tokens.len())?;
            if validations >= MAX_VALIDATIONS {
                return Ok(None);
            }
        }
        frontier = next;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_include_every_table_in_from_and_alone() {
        let schema = Schema {
            tables: vec![crate::sql::Table {
                name: "top genre".into(),
                quoted: "\"top genre\"".into(),
                is_view: false,
                columns: Vec::new(),
                primary_key: Vec::new(),
                foreign_keys: Vec::new(),
                row_count: 0,
            }],
        };
        let encode = |t: &str| Ok(t.bytes().map(u32::from).collect());
        let c = Completions::new(Some(&schema), &encode).unwrap();
        let texts: Vec<&str> = c.pieces().map(|(t, _)| t).collect();
        assert!(texts.contains(&" \"top genre\""));
        assert!(texts.contains(&" FROM \"top genre\""));
        // Closers come first.
        assert_eq!(texts[0], "'");
    }
}
