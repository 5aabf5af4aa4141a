//! Finishing a query the model has not finished: a short, model-free search
//! over the grammar for tokens that close what is open (strings,
//! parentheses, CASE … END) and reach a point where the query can end and
//! passes the caller's check. Used when the token budget is nearly spent
//! (and by random walks through the grammar).

use super::constraint::Constraint;
use crate::error::Result;
use crate::tokenizer::Tokenizer;

/// Candidates tried at each step of the search.
const BRANCHING: usize = 4;
/// Grammar states the search may visit (each costs one full mask).
const MAX_NODES: usize = 400;

/// How much a token helps to finish, lower is better.
fn closing_rank(text: &str) -> u8 {
    let t = text.trim();
    let lower = t.to_ascii_lowercase();
    match lower.as_str() {
        ";" => 0,
        ")" | "'" | "\"" | "]" | "`" => 1,
        "end" => 2,
        "from" => 3,
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
    tokenizer: &Tokenizer,
    prefix: &[u32],
    max_len: usize,
    finished: &dyn Fn(&[u32]) -> bool,
) -> Result<Option<Vec<u32>>> {
    let mut path = prefix.to_vec();
    let mut nodes = MAX_NODES;
    let found = search(
        constraint,
        tokenizer,
        &mut path,
        prefix.len() + max_len,
        finished,
        &mut nodes,
    )?;
    Ok(found.then(|| path[prefix.len()..].to_vec()))
}

fn search(
    c: &mut Constraint,
    tokenizer: &Tokenizer,
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
    let mask = c.mask()?;
    let mut ranked: Vec<(u8, std::cmp::Reverse<usize>, u32)> = Vec::new();
    mask.iter_set_entries(|id| {
        let id = id as u32;
        if c.is_stop(id) {
            return;
        }
        if let Some(bytes) = tokenizer.token_bytes(id) {
            if tokenizer.is_special(id) {
                return;
            }
            let text = String::from_utf8_lossy(&bytes);
            ranked.push((closing_rank(&text), std::cmp::Reverse(bytes.len()), id));
        }
    });
    ranked.sort_unstable();
    for &(_, _, id) in ranked.iter().take(BRANCHING) {
        c.commit(id)?;
        path.push(id);
        if search(c, tokenizer, path, max_total, finished, nodes)? {
            return Ok(true);
        }
        path.pop();
        c.rollback(1)?;
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::closing_rank;

    #[test]
    fn closers_rank_before_everything_else() {
        assert!(closing_rank(";") < closing_rank(")"));
        assert!(closing_rank("')") > closing_rank("'"));
        assert!(closing_rank(" END") < closing_rank(" FROM"));
        assert!(closing_rank(" FROM") < closing_rank(" title"));
        assert!(closing_rank(" title") < closing_rank(" "));
    }
}
