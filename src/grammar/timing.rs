//! What the grammar costs per token: replaying known queries token by token
//! through a compiled grammar and timing, at every step, the full mask (what
//! masking every decode step would cost) and the check of one token (what
//! the decode loop pays when the model's preferred token is allowed).
//! Used by `sqlagent bench` and `cargo bench --bench grammar`.

use std::time::Instant;

use super::constraint::CompiledGrammar;
use crate::error::Result;
use crate::tokenizer::Tokenizer;

/// Per-token timings of one replay, in microseconds.
#[derive(Debug, Clone, Default)]
pub struct MaskTimings {
    /// Full-mask time at every step, sorted.
    pub mask_us: Vec<f64>,
    /// One-token check time at every step, sorted.
    pub check_us: Vec<f64>,
    /// Queries replayed.
    pub queries: usize,
    /// Queries the grammar rejected (their replay stops at the rejection).
    pub rejected: usize,
}

impl MaskTimings {
    /// Replays every query of `sqls` through `grammar`, tokenized by
    /// `tokenizer`.
    pub fn replay(
        grammar: &CompiledGrammar,
        tokenizer: &Tokenizer,
        sqls: &[String],
    ) -> Result<Self> {
        let mut t = MaskTimings::default();
        for sql in sqls {
            let ids = tokenizer.encode(sql)?;
            t.queries += 1;
            let mut c = grammar.constraint();
            for &id in &ids {
                let start = Instant::now();
                let allowed = c.allows(id)?;
                t.check_us.push(start.elapsed().as_secs_f64() * 1e6);
                let start = Instant::now();
                let mask = c.mask()?;
                t.mask_us.push(start.elapsed().as_secs_f64() * 1e6);
                if !allowed || !mask.allows(id) {
                    t.rejected += 1;
                    break;
                }
                c.commit(id)?;
            }
        }
        t.mask_us.sort_by(f64::total_cmp);
        t.check_us.sort_by(f64::total_cmp);
        Ok(t)
    }

    /// Tokens timed.
    pub fn tokens(&self) -> usize {
        self.mask_us.len()
    }
}

/// The `p` quantile (0 to 1) of sorted values (nearest rank); NaN when empty.
///
/// ```
/// use sqlagent::grammar::percentile;
/// assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0, 5.0], 0.5), 3.0);
/// assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0, 5.0], 1.0), 5.0);
/// assert!(percentile(&[], 0.5).is_nan());
/// ```
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p.clamp(0.0, 1.0)).round() as usize]
}
