//! The held-out split of synthesized pairs: whole SQL shapes go to one side,
//! so the held-out questions ask for shapes the adapter never saw filled in
//! (a split by pair would test recall of a shape with other values).

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::synth::{skeleton, SynthPair};

/// `pairs` split into (train, held out): shapes ([`skeleton`]) dealt in a
/// seeded order to the held-out side until it has at least `held_out`
/// pairs, but never more than a quarter of all pairs (so a database with
/// few shapes still trains on most of them).
pub fn split_by_shape(
    pairs: Vec<SynthPair>,
    held_out: usize,
    seed: u64,
) -> (Vec<SynthPair>, Vec<SynthPair>) {
    let cap = pairs.len() / 4;
    let want = held_out.min(cap);
    let mut by_shape: BTreeMap<String, Vec<SynthPair>> = BTreeMap::new();
    for p in pairs {
        by_shape.entry(skeleton(&p.sql)).or_default().push(p);
    }
    let mut shapes: Vec<Vec<SynthPair>> = by_shape.into_values().collect();
    shapes.shuffle(&mut StdRng::seed_from_u64(seed));
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for group in shapes {
        if test.len() < want && test.len() + group.len() <= cap.max(1) {
            test.extend(group);
        } else {
            train.extend(group);
        }
    }
    (train, test)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(sql: &str) -> SynthPair {
        SynthPair {
            question: format!("q {sql}"),
            sql: sql.to_string(),
            source: "template:t".into(),
        }
    }

    #[test]
    fn a_shape_lies_on_one_side_only_and_the_held_out_side_is_bounded() {
        let mut pairs = Vec::new();
        for table in ["a", "b", "c", "d", "e", "f", "g", "h"] {
            for n in 0..5 {
                pairs.push(pair(&format!("SELECT x FROM {table} WHERE y = {n}")));
            }
        }
        let (train, test) = split_by_shape(pairs.clone(), 10, 7);
        assert_eq!(train.len() + test.len(), 40);
        assert_eq!(test.len(), 10, "two whole shapes of five");
        let shapes = |v: &[SynthPair]| -> std::collections::BTreeSet<String> {
            v.iter().map(|p| skeleton(&p.sql)).collect()
        };
        assert!(shapes(&train).is_disjoint(&shapes(&test)));
        // Asking for more than a quarter gets a quarter.
        let (_, test) = split_by_shape(pairs.clone(), 1000, 7);
        assert_eq!(test.len(), 10);
        // The same seed deals the same split.
        assert_eq!(
            split_by_shape(pairs.clone(), 10, 7),
            split_by_shape(pairs, 10, 7)
        );
    }
}
