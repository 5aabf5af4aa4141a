//! Helpers shared by the integration tests: where fixtures live, a skip
//! rule that turns into a failure under CI, and a stand-in JSON HTTP server.

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

/// The SmolLM2 GGUF loaded on the CPU with default options, if fetched.
pub fn smollm2_engine() -> Option<sqlagent::agent::Engine> {
    Some(load_engine(sqlagent::agent::ModelSource::Gguf(
        smollm2_gguf()?,
    )))
}

/// Options that load the model at `source` on the CPU in f32, with
/// default options and no progress bars.
pub fn cpu_options(source: sqlagent::agent::ModelSource) -> sqlagent::agent::ModelOptions {
    sqlagent::agent::ModelOptions {
        source,
        dtype: candle_core::DType::F32,
        device: candle_core::Device::Cpu,
        gguf: sqlagent::model::GgufOptions::default(),
        revision: None,
        hf_token: None,
        progress: false,
        quantize: Default::default(),
    }
}

/// The model at `source`, loaded on the CPU in f32 with default options.
pub fn load_engine(source: sqlagent::agent::ModelSource) -> sqlagent::agent::Engine {
    sqlagent::agent::Engine::load(&cpu_options(source)).unwrap()
}

/// The Llama-3.2-1B-shaped Q8_0 GGUF (random weights, seed 0) that
/// `scripts/test` makes with the shaped-GGUF script, if made
/// (`SQLAGENT_TEST_LLAMACPP=skip` leaves it out, also under CI).
pub fn shaped_1b_q8_gguf() -> Option<PathBuf> {
    if std::env::var("SQLAGENT_TEST_LLAMACPP").as_deref() == Ok("skip") {
        eprintln!("SKIP: llama.cpp agreement (SQLAGENT_TEST_LLAMACPP=skip)");
        return None;
    }
    present_or_skip(
        models_dir().join("shaped/llama3.2-1b-Q8_0.gguf"),
        "Llama-3.2-1B-shaped Q8_0 GGUF (run scripts/make-llamacpp-reference or scripts/test)",
    )
}

/// The real Llama 3 tokenizer directory (tokenizer.json + tokenizer_config.json), if fetched.
pub fn llama3_tokenizer_dir() -> Option<PathBuf> {
    present_or_skip(
        models_dir().join("llama3-tokenizer"),
        "Llama 3 tokenizer (run scripts/fetch-fixtures)",
    )
}

pub fn present_or_skip(path: PathBuf, what: &str) -> Option<PathBuf> {
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

/// One request a stand-in server received.
#[derive(Debug, Clone)]
pub struct Request {
    /// Method and path: `POST /v1/train`.
    pub target: String,
    /// The `Authorization` header's value (empty when absent).
    pub authorization: String,
    /// The JSON body (`Null` when empty or not JSON).
    pub body: serde_json::Value,
}

/// Serves HTTP/1.1 on 127.0.0.1 from a thread: each request is parsed
/// into a [`Request`] and answered with the (status line, JSON body)
/// `respond` returns, e.g. `("200 OK", "{}")`. Returns `http://HOST:PORT`.
pub fn serve_json(
    mut respond: impl FnMut(&Request) -> (&'static str, String) + Send + 'static,
) -> String {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            let (mut length, mut authorization) = (0usize, String::new());
            let mut line = String::new();
            loop {
                line.clear();
                reader.read_line(&mut line).unwrap();
                let l = line.trim_end();
                if l.is_empty() {
                    break;
                }
                let lower = l.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
                if lower.starts_with("authorization:") {
                    authorization = l["authorization:".len()..].trim().to_string();
                }
            }
            let mut body = vec![0u8; length];
            reader.read_exact(&mut body).unwrap();
            let request = Request {
                target: request_line
                    .split_whitespace()
                    .take(2)
                    .collect::<Vec<_>>()
                    .join(" "),
                authorization,
                body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
            };
            let (status, reply) = respond(&request);
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                reply.len()
            );
        }
    });
    url
}
