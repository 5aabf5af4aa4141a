//! Runs side by side: the seed-style table (one row per run: valid %,
//! correct %) and, for each pair of runs, the items whose correctness
//! flipped with McNemar's exact test, so a prompt or adapter change can be
//! told from noise.

use std::collections::HashMap;

use super::report::Report;

/// Two runs compared on the items both graded.
#[derive(Debug, Clone, PartialEq)]
pub struct PairComparison {
    /// Index of the first run.
    pub a: usize,
    /// Index of the second run.
    pub b: usize,
    /// Items graded in both runs.
    pub common: usize,
    /// Questions correct in `a`, wrong in `b`.
    pub only_a: Vec<String>,
    /// Questions correct in `b`, wrong in `a`.
    pub only_b: Vec<String>,
    /// McNemar's exact two-sided p-value over the flips.
    pub p_value: f64,
}

/// McNemar's exact test: the two-sided binomial p-value of `b` flips one
/// way and `c` the other under "no difference" (each flip equally likely
/// either way). 1 when nothing flipped.
///
/// ```
/// use sqlagent::eval::mcnemar_exact;
/// assert_eq!(mcnemar_exact(0, 0), 1.0);
/// assert!((mcnemar_exact(0, 6) - 0.03125).abs() < 1e-12);
/// assert!(mcnemar_exact(3, 4) > 0.99);
/// ```
pub fn mcnemar_exact(b: usize, c: usize) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    let k = b.min(c);
    // P(X <= k) for X ~ Binomial(n, 1/2), in log space to stay finite.
    let ln_half_n = -(n as f64) * std::f64::consts::LN_2;
    let mut ln_choose = 0.0f64; // ln C(n, 0)
    let mut tail = 0.0f64;
    for i in 0..=k {
        if i > 0 {
            ln_choose += ((n - i + 1) as f64).ln() - (i as f64).ln();
        }
        tail += (ln_choose + ln_half_n).exp();
    }
    (2.0 * tail).min(1.0)
}

/// Compares every pair of `reports` on the items both graded (matched by
/// question and gold SQL).
pub fn compare_runs(reports: &[Report]) -> Vec<PairComparison> {
    let keyed: Vec<HashMap<(&str, &str), bool>> = reports
        .iter()
        .map(|r| {
            r.items
                .iter()
                .map(|i| {
                    (
                        (i.question.as_str(), i.gold_sql.as_str()),
                        i.execution_match,
                    )
                })
                .collect()
        })
        .collect();
    let mut out = Vec::new();
    for (a, first) in reports.iter().enumerate() {
        for (b, other) in keyed.iter().enumerate().skip(a + 1) {
            let (mut only_a, mut only_b, mut common) = (Vec::new(), Vec::new(), 0);
            // In the order of the first run's items.
            for item in &first.items {
                let key = (item.question.as_str(), item.gold_sql.as_str());
                let Some(&right_b) = other.get(&key) else {
                    continue;
                };
                common += 1;
                match (item.execution_match, right_b) {
                    (true, false) => only_a.push(item.question.clone()),
                    (false, true) => only_b.push(item.question.clone()),
                    _ => {}
                }
            }
            let p_value = mcnemar_exact(only_a.len(), only_b.len());
            out.push(PairComparison {
                a,
                b,
                common,
                only_a,
                only_b,
                p_value,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_p_values_match_the_binomial_distribution() {
        // Reference values: scipy.stats.binomtest(k, n, 0.5).pvalue.
        for (b, c, p) in [
            (1, 0, 1.0),
            (5, 0, 0.0625),
            (1, 9, 0.021484375),
            (2, 8, 0.109375),
            (10, 10, 1.0),
        ] {
            assert!((mcnemar_exact(b, c) - p).abs() < 1e-9, "{b} {c}");
            assert_eq!(mcnemar_exact(b, c), mcnemar_exact(c, b));
        }
        // Large counts stay finite.
        let p = mcnemar_exact(400, 600);
        assert!(p > 0.0 && p < 1e-9, "{p}");
    }
}
