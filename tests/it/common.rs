//! Helpers shared by the integration tests: where fixtures live, and a skip
//! rule that turns into a failure under CI.

#![allow(dead_code)]

use std::path::PathBuf;

/// The project root (where Cargo.toml is).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `../shared/data`, or `SQLAGENT_SHARED_DATA`. `None` (with a skip notice)
/// when absent; under `CI=true` absence is a failure.
pub fn shared_data() -> Option<PathBuf> {
    let dir = std::env::var_os("SQLAGENT_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared/data"));
    present_or_skip(dir, "shared data (set SQLAGENT_SHARED_DATA)")
}

/// `../shared/fixtures` (next to the shared data).
pub fn shared_fixtures() -> Option<PathBuf> {
    let dir = std::env::var_os("SQLAGENT_SHARED_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared/fixtures"));
    present_or_skip(dir, "shared fixtures (set SQLAGENT_SHARED_FIXTURES)")
}

/// The model cache filled by `scripts/fetch-fixtures`.
pub fn models_dir() -> PathBuf {
    std::env::var_os("SQLAGENT_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("models"))
}

/// The SmolLM2-135M-Instruct GGUF, if fetched.
pub fn smollm2_gguf() -> Option<PathBuf> {
    present_or_skip(
        models_dir().join("SmolLM2-135M-Instruct.Q4_1.gguf"),
        "SmolLM2 GGUF (run scripts/fetch-fixtures)",
    )
}

/// The real Llama 3 tokenizer directory (tokenizer.json + tokenizer_config.json), if fetched.
pub fn llama3_tokenizer_dir() -> Option<PathBuf> {
    present_or_skip(
        models_dir().join("llama3-tokenizer"),
        "Llama 3 tokenizer (run scripts/fetch-fixtures)",
    )
}

fn present_or_skip(path: PathBuf, what: &str) -> Option<PathBuf> {
    if path.exists() {
        return Some(path);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{what} missing at {} (required under CI)", path.display());
    }
    eprintln!("SKIP: {what} not found at {}", path.display());
    None
}

/// A fresh temporary directory for one test.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("create temp dir")
}
