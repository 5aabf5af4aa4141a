//! Downloads from a stand-in Hugging Face hub on loopback (`HF_ENDPOINT`)
//! that speaks what the hub client reads: range requests answered with
//! `content-range`, `etag` and `x-repo-commit`; a connection dropped in
//! the middle of a file. The model lands in the hub cache as the hub's own
//! tools lay it out, with the login token file's token sent.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use crate::common;
use crate::tiny::tiny_llama3_dir_sharded;

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// One request the stand-in hub received.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    range: Option<String>,
    authorization: Option<String>,
}

/// A stand-in hub serving one repo's files; the first full download of
/// `drop_file` is cut off halfway.
struct StandInHub {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl StandInHub {
    fn start(repo: &str, files: BTreeMap<String, Vec<u8>>, drop_file: Option<&str>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let state = Arc::new(Mutex::new((files, drop_file.map(str::to_string))));
        let prefix = format!("/{repo}/resolve/");
        {
            let seen = Arc::clone(&seen);
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    let Ok(stream) = stream else { break };
                    let (seen, state, prefix) =
                        (Arc::clone(&seen), Arc::clone(&state), prefix.clone());
                    std::thread::spawn(move || {
                        let _ = serve(stream, &seen, &state, &prefix);
                    });
                }
            });
        }
        StandInHub { url, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

type HubState = Mutex<(BTreeMap<String, Vec<u8>>, Option<String>)>;

/// Answers the requests of one connection (keep-alive) until it closes.
fn serve(
    stream: TcpStream,
    seen: &Mutex<Vec<Seen>>,
    state: &HubState,
    prefix: &str,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
        let (mut range, mut authorization) = (None, None);
        loop {
            let mut header = String::new();
            reader.read_line(&mut header)?;
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                match name.trim().to_ascii_lowercase().as_str() {
                    "range" => range = Some(value.trim().to_string()),
                    "authorization" => authorization = Some(value.trim().to_string()),
                    _ => {}
                }
            }
        }
        seen.lock().unwrap().push(Seen {
            path: path.clone(),
            range: range.clone(),
            authorization,
        });
        // /owner/name/resolve/REVISION/FILE
        let file = path
            .strip_prefix(prefix)
            .and_then(|rest| rest.split_once('/'))
            .map(|(_, file)| file.to_string());
        // The repo's file list, as /api/models/{repo}/revision/{rev} gives it.
        if path.starts_with("/api/models/") {
            let names: Vec<String> = state.lock().unwrap().0.keys().cloned().collect();
            let siblings: Vec<serde_json::Value> = names
                .iter()
                .map(|n| serde_json::json!({ "rfilename": n }))
                .collect();
            let body = serde_json::json!({"sha": COMMIT, "siblings": siblings}).to_string();
            write!(
                out,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )?;
            continue;
        }
        let mut guard = state.lock().unwrap();
        let (files, drop_file) = &mut *guard;
        let Some(bytes) = file.as_ref().and_then(|f| files.get(f)).cloned() else {
            drop(guard);
            let body = "{\"error\":\"Entry not found\"}";
            write!(
                out,
                "HTTP/1.1 404 Not Found\r\nx-error-code: EntryNotFound\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )?;
            continue;
        };
        let size = bytes.len();
        let (start, end) = match range.as_deref().and_then(|r| r.strip_prefix("bytes=")) {
            Some(r) => {
                let (a, b) = r.split_once('-').unwrap_or((r, ""));
                let a: usize = a.parse().unwrap_or(0);
                let b: usize = b.parse().unwrap_or(size - 1).min(size - 1);
                (a, b)
            }
            None => (0, size - 1),
        };
        // The first download of the whole file breaks off halfway.
        let cut = end > start && start == 0 && drop_file.as_deref() == file.as_deref();
        if cut {
            *drop_file = None;
        }
        drop(guard);
        let body = &bytes[start..=end];
        write!(
            out,
            "HTTP/1.1 206 Partial Content\r\ncontent-range: bytes {start}-{end}/{size}\r\netag: \"etag-{}\"\r\nx-repo-commit: {COMMIT}\r\ncontent-length: {}\r\n\r\n",
            file.as_deref().unwrap_or_default().replace('/', "-"),
            body.len()
        )?;
        if cut {
            out.write_all(&body[..body.len() / 2])?;
            out.flush()?;
            return Ok(()); // the connection drops mid-file
        }
        out.write_all(body)?;
    }
}

/// Every file of a model directory, by name.
fn files_of(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_sharded_model_downloads_from_the_hub_resuming_a_dropped_file_with_the_login_token() {
    let tmp = common::temp_dir();
    let Some(model) = tiny_llama3_dir_sharded(&tmp.path().join("model"), 4096, 2) else {
        return;
    };
    let files = files_of(&model);
    assert!(
        files.contains_key("model.safetensors.index.json"),
        "{:?}",
        files.keys()
    );
    let dropped = "model-00002-of-00002.safetensors";
    assert!(files.contains_key(dropped));
    let hub = StandInHub::start("acme/tiny-llama", files.clone(), Some(dropped));

    // Logged in as `huggingface-cli login` leaves it; the cache moved
    // elsewhere with HF_HUB_CACHE.
    let hf_home = tmp.path().join("hf-home");
    std::fs::create_dir_all(&hf_home).unwrap();
    std::fs::write(hf_home.join("token"), "hf_login_token\n").unwrap();
    let hub_cache = tmp.path().join("hub-cache");
    let db = tmp.path().join("music.db");
    sqlagent::sql::build_demo_db(&db).unwrap();
    // Asks with the tiny model from the hub, through `endpoint`.
    let ask = |endpoint: &str| {
        Command::new(env!("CARGO_BIN_EXE_sqlagent"))
            .args(["--threads", "1", "ask", "How many tracks?"])
            .args(["--db", db.to_str().unwrap(), "--model", "acme/tiny-llama"])
            .args(["--grammar", "none", "--no-execute", "--max-tokens", "4"])
            .current_dir(tmp.path())
            .env("HF_HOME", &hf_home)
            .env("HF_HUB_CACHE", &hub_cache)
            .env("HF_ENDPOINT", endpoint)
            .env_remove("HF_TOKEN")
            .env_remove("SQLAGENT_MODEL")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = ask(&hub.url);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    // Random weights may write no SQL; what matters is that it loaded.
    assert!(
        out.status.success() || stderr.contains("contains no SQL"),
        "{stderr}"
    );

    // Laid out as the hub's tools do, under HF_HUB_CACHE, byte for byte.
    let snapshot = hub_cache.join(format!("models--acme--tiny-llama/snapshots/{COMMIT}"));
    for (name, bytes) in &files {
        let got = std::fs::read(snapshot.join(name))
            .unwrap_or_else(|e| panic!("{name} not in {}: {e}", snapshot.display()));
        assert_eq!(&got, bytes, "{name}");
    }
    assert_eq!(
        std::fs::read_to_string(hub_cache.join("models--acme--tiny-llama/refs/main")).unwrap(),
        COMMIT
    );
    assert!(
        !hf_home.join("hub").exists(),
        "the cache stays where HF_HUB_CACHE says"
    );

    let seen = hub.seen();
    assert!(
        seen.iter()
            .all(|s| s.authorization.as_deref() == Some("Bearer hf_login_token")),
        "every request carries the login token: {seen:?}"
    );
    // The dropped file was asked for again from where it stopped.
    let resumed: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.path.ends_with(dropped))
        .filter(|s| {
            s.range
                .as_deref()
                .and_then(|r| r.strip_prefix("bytes="))
                .and_then(|r| r.strip_suffix('-'))
                .and_then(|start| start.parse::<usize>().ok())
                .is_some_and(|start| start > 0)
        })
        .collect();
    assert_eq!(resumed.len(), 1, "{seen:?}");

    // Again, offline: the cache is complete, nothing is asked.
    let asked = hub.seen().len();
    let again = ask("http://127.0.0.1:9");
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(!stderr.contains("hub repo"), "{stderr}");
    assert_eq!(hub.seen().len(), asked);
}

#[test]
fn a_gguf_is_picked_from_a_hub_repo_by_its_quant_and_then_loads_offline() {
    let Some(gguf) = common::smollm2_gguf() else {
        return;
    };
    let bytes = std::fs::read(&gguf).unwrap();
    let mut files = BTreeMap::new();
    files.insert("SmolLM2-135M-Instruct-Q4_1.gguf".to_string(), bytes.clone());
    files.insert("README.md".to_string(), b"# smol".to_vec());
    // Listed, never asked for: only the chosen file is downloaded.
    files.insert("SmolLM2-135M-Instruct-Q8_0.gguf".to_string(), vec![0u8; 16]);
    let hub = StandInHub::start("acme/smol-GGUF", files, None);
    let tmp = common::temp_dir();
    let db = tmp.path().join("music.db");
    sqlagent::sql::build_demo_db(&db).unwrap();
    let hf_home = tmp.path().join("hf");
    let ask = |model: &str, endpoint: &str, extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_sqlagent"))
            .args(["--threads", "1", "ask", "How many tracks are there?"])
            .args(["--db", db.to_str().unwrap(), "--model", model])
            .args(["--max-tokens", "48", "--format", "json"])
            .args(extra)
            .current_dir(tmp.path())
            .env("HF_HOME", &hf_home)
            .env("HF_ENDPOINT", endpoint)
            .env_remove("HF_HUB_CACHE")
            .env_remove("HF_TOKEN")
            .env_remove("SQLAGENT_MODEL")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = ask("acme/smol-GGUF:q4_1", &hub.url, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["model"]["format"], "gguf");
    let cached = hf_home.join(format!(
        "hub/models--acme--smol-GGUF/snapshots/{COMMIT}/SmolLM2-135M-Instruct-Q4_1.gguf"
    ));
    assert_eq!(std::fs::read(&cached).unwrap(), bytes);
    assert!(
        !hub.seen().iter().any(|s| s.path.contains("Q8_0")),
        "{:?}",
        hub.seen()
    );

    // A quant the repo does not have: the choices are named.
    let missing = ask("acme/smol-GGUF:Q5_K_M", &hub.url, &[]);
    assert_eq!(missing.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(
        stderr.contains("no .gguf file for Q5_K_M")
            && stderr.contains("SmolLM2-135M-Instruct-Q8_0.gguf"),
        "{stderr}"
    );

    // Offline, by quant and by file name: the cached file.
    let offline = ask("acme/smol-GGUF:Q4_1", "http://127.0.0.1:9", &[]);
    assert!(
        offline.status.success(),
        "{}",
        String::from_utf8_lossy(&offline.stderr)
    );
    let by_name = ask(
        "acme/smol-GGUF",
        "http://127.0.0.1:9",
        &["--gguf-file", "SmolLM2-135M-Instruct-Q4_1.gguf"],
    );
    assert!(
        by_name.status.success(),
        "{}",
        String::from_utf8_lossy(&by_name.stderr)
    );
}
