//! What this machine is, for benchmark reports: CPU model and cores,
//! memory, GPUs, peak memory of this process, and a measured read
//! bandwidth (the bound on decode speed of a model whose weights do not
//! fit in cache).

use std::path::Path;
use std::time::Instant;

/// The machine a benchmark ran on.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Machine {
    /// CPU model, as `/proc/cpuinfo` names it (`None` where unknown).
    pub cpu: Option<String>,
    /// Logical cores available to this process.
    pub cores: usize,
    /// Installed memory in GiB (`None` where unknown).
    pub memory_gib: Option<f64>,
    /// GPUs `nvidia-smi` lists (name and memory), empty without one.
    pub gpus: Vec<String>,
}

impl Machine {
    /// Reads what the operating system tells.
    pub fn describe() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_gib = kib_field(&meminfo, "MemTotal:").map(|kb| kb / (1024.0 * 1024.0));
        let gpus = std::process::Command::new("nvidia-smi")
            .args(["--query-gpu=name,memory.total", "--format=csv,noheader"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .map(|l| l.trim().to_string())
                    .filter(|l| !l.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        Self {
            cpu,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_gib,
            gpus,
        }
    }
}

/// Peak resident memory of this process so far, in MB (Linux only).
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string(Path::new("/proc/self/status")).ok()?;
    kib_field(&status, "VmHWM:").map(|kb| kb / 1024.0)
}

fn kib_field(text: &str, name: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Memory read bandwidth in GB/s: `threads` threads summing disjoint parts
/// of a 512 MiB buffer (far larger than any cache), best of three passes.
pub fn read_bandwidth_gb_s(threads: usize) -> f64 {
    const BYTES: usize = 512 << 20;
    let words = vec![1u64; BYTES / 8];
    let threads = threads.max(1);
    let part = words.len().div_ceil(threads);
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let start = Instant::now();
        let total: u64 = std::thread::scope(|s| {
            let handles: Vec<_> = words
                .chunks(part)
                .map(|chunk| {
                    s.spawn(move || {
                        // Four lanes so the adds do not serialize.
                        let mut acc = [0u64; 4];
                        for quad in chunk.chunks_exact(4) {
                            for (a, w) in acc.iter_mut().zip(quad) {
                                *a = a.wrapping_add(*w);
                            }
                        }
                        acc.iter().fold(0u64, |x, y| x.wrapping_add(*y))
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
        });
        std::hint::black_box(total);
        best = best.min(start.elapsed().as_secs_f64());
    }
    BYTES as f64 / best / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_this_machine() {
        let m = Machine::describe();
        assert!(m.cores >= 1);
        if cfg!(target_os = "linux") {
            assert!(m.memory_gib.unwrap() > 0.0);
            assert!(peak_rss_mb().unwrap() > 0.0);
        }
        assert!(read_bandwidth_gb_s(1) > 0.1);
    }
}
