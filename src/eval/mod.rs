//! Measuring the engine: question sets with gold SQL ([`set`]), grading one
//! item ([`run`]), and the report ([`report`]).

pub mod chart;
pub mod compare;
pub mod report;
pub mod run;
pub mod runner;
pub mod set;

pub use compare::{compare_runs, mcnemar_exact, PairComparison};
pub use report::{EvalConfig, Report, Spread, Summary, TagSummary};
pub use run::{
    evaluate_item, BrokenItem, Category, FirstAttempt, HostedWriter, ItemContext, ItemResult,
    Outcome,
};
pub use runner::{run_plan, EvalPlan, RunDir};
pub use set::{is_spider_format, load_set, load_spider, SetItem};

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The indices of a reproducible random subset of `limit` of `n` items
/// (all of them, in order, without a limit or when it covers the set),
/// sorted.
///
/// ```
/// use sqlagent::eval::subset;
/// assert_eq!(subset(5, None, 0), vec![0, 1, 2, 3, 4]);
/// assert_eq!(subset(100, Some(3), 7), subset(100, Some(3), 7));
/// assert_eq!(subset(100, Some(3), 7).len(), 3);
/// ```
pub fn subset(n: usize, limit: Option<usize>, seed: u64) -> Vec<usize> {
    let mut all: Vec<usize> = (0..n).collect();
    let Some(limit) = limit.filter(|&l| l < n) else {
        return all;
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    all.shuffle(&mut rng);
    all.truncate(limit);
    all.sort_unstable();
    all
}

/// SHA-256 (hex) of a file's bytes.
pub fn file_sha256(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(format!("{:x}", Sha256::digest(&bytes)))
}

/// A fingerprint of model weights at `path` (a file, or a directory of
/// `.safetensors`/`.gguf` files): SHA-256 over each file's name, size,
/// first MiB and last MiB.
pub fn model_fingerprint(path: &Path) -> Result<String> {
    const CHUNK: u64 = 1 << 20;
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    if path.is_dir() {
        for entry in std::fs::read_dir(path).map_err(io)? {
            let p = entry.map_err(io)?.path();
            if matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("safetensors" | "gguf")
            ) {
                files.push(p);
            }
        }
        files.sort();
    } else {
        files.push(path.to_path_buf());
    }
    let mut hasher = Sha256::new();
    for f in files {
        let io = |source| Error::Io {
            path: f.clone(),
            source,
        };
        let mut file = std::fs::File::open(&f).map_err(io)?;
        let size = file.metadata().map_err(io)?.len();
        hasher.update(f.file_name().unwrap_or_default().as_encoded_bytes());
        hasher.update(size.to_le_bytes());
        let mut buf = vec![0u8; CHUNK.min(size) as usize];
        file.read_exact(&mut buf).map_err(io)?;
        hasher.update(&buf);
        file.seek(SeekFrom::Start(size.saturating_sub(CHUNK)))
            .map_err(io)?;
        file.read_exact(&mut buf).map_err(io)?;
        hasher.update(&buf);
    }
    Ok(format!("{:x}", hasher.finalize()))
}
