//! Finishing a query the model has not finished: a short, model-free search
//! over the grammar for tokens that close what is open (strings,
//! parentheses, CASE … END) and reach a point where the query can end and
//! passes the caller's check. Used when the token budget is nearly spent
//! (and by random walks through the grammar).

use super::constraint::Constraint;
use crate::error::Result;

/// Candidates tried at each step of the search.
const BRANCHING: usize = 4;
/// Grammar states the search may visit (each costs one full mask).
const MAX_NODES: usize = 120;

/// The quote a text leaves open (`'`, `"`, `` ` `` or `]` for `[`), if any.
fn open_quote(text: &str) -> Option<char> {
    let mut open: Option<char> = None;
    for c in text.chars() {
        match open {
            Some(close) if c == close => open = None,
            Some(_) => {}
            None => {
                open = match c {
                    '\'' | '"' | '`' => Some(c),
                    '[' => Some(']'),
                    _ => None,
                }
            }
        }
    }
    open
}

/// How much a token helps to finish, lower is better. Inside a quoted
/// string or name, the closing quote comes first; elsewhere opening one is
/// a last resort.
fn closing_rank(text: &str, inside: Option<char>) -> u8 {
    let t = text.trim();
    if let Some(q) = inside {
        return if t.starts_with(q) { 0 } else { 8 };
    }
    let lower = t.to_ascii_lowercase();
    match lower.as_str() {
        ";" => 0,
        ")" => 1,
        "from" if text.starts_with(char::is_whitespace) => 3,
        _ if t.starts_with(['\'', '"', '`', '[']) => 7,
        _ if !t.is_empty() && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => 4,
        _ if t.is_empty() => 6,
        _ => 5,
    }
}

/// Searches for at most `max_len` tokens that take `constraint` to a state
/// where the query can end and `finished(prefix + tokens)` holds. On
/// success the tokens are committed and returned; on failure the constraint
/// is left as it was.
pub fn complete(
    constraint: &mut Constraint,
    prefix: &[u32],
    max_len: usize,
    finished: &dyn Fn(&[u32]) -> bool,
) -> Result<Option<Vec<u32>>> {
    let mut path = prefix.to_vec();
    let mut nodes = MAX_NODES;
    let found = search(
        constraint,
        &mut path,
        prefix.len() + max_len,
        finished,
        &mut nodes,
    )?;
    Ok(found.then(|| path[prefix.len()..].to_vec()))
}

fn search(
    c: &mut Constraint,
    path: &mut Vec<u32>,
    max_total: usize,
    finished: &dyn Fn(&[u32]) -> bool,
    nodes: &mut usize,
) -> Result<bool> {
    if c.is_accepting()? && finished(path) {
        return Ok(true);
    }
    if path.len() >= max_total || *nodes == 0 || c.is_stopped() {
        return Ok(false);
    }
    *nodes -= 1;
    let text: Vec<u8> = path
        .iter()
        .flat_map(|&t| c.token_bytes(t).to_vec())
        .collect();
    let inside = open_quote(&String::from_utf8_lossy(&text));
    let mask = c.mask()?;
    // (rank, continues the previous word, longest first, id): in a tie, a
    // new word beats gluing more letters onto the last one.
    let mut ranked: Vec<(u8, bool, std::cmp::Reverse<usize>, u32)> = Vec::new();
    mask.iter_set_entries(|id| {
        let id = id as u32;
        let bytes = c.token_bytes(id);
        if c.is_stop(id) || bytes.is_empty() || bytes[0] == 0xFF {
            return;
        }
        let text = String::from_utf8_lossy(bytes);
        let glued = !text.starts_with(char::is_whitespace);
        ranked.push((
            closing_rank(&text, inside),
            glued,
            std::cmp::Reverse(bytes.len()),
            id,
        ));
    });
    ranked.sort_unstable();
    for &(_, _, _, id) in ranked.iter().take(BRANCHING) {
        c.commit(id)?;
        path.push(id);
        if search(c, path, max_total, finished, nodes)? {
            return Ok(true);
        }
        path.pop();
        c.rollback(1)?;
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::{closing_rank, open_quote};

    #[test]
    fn closers_rank_before_everything_else() {
        assert!(closing_rank(";", None) < closing_rank(")", None));
        assert!(closing_rank(" FROM", None) < closing_rank(" title", None));
        assert!(closing_rank(" title", None) < closing_rank(" ", None));
        // Opening a string is a last resort; closing one comes first.
        assert!(closing_rank(" '", None) > closing_rank(" ", None));
        assert_eq!(closing_rank("'", Some('\'')), 0);
        assert!(closing_rank("abc", Some('\'')) > closing_rank("' ", Some('\'')));
    }

    #[test]
    fn open_quotes_are_tracked() {
        assert_eq!(open_quote("SELECT 'a"), Some('\''));
        assert_eq!(open_quote("SELECT 'a''b'"), None);
        assert_eq!(open_quote("SELECT [top genre"), Some(']'));
        assert_eq!(open_quote("SELECT \"x\" FROM t"), None);
    }
}
