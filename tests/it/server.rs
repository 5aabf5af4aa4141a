//! `sqlagent serve` end to end, over real HTTP on loopback with SmolLM2:
//! every endpoint answers as `ask` and `eval` do, errors have OpenAI's
//! shape and the right status, the key is required, a full queue answers
//! 429, a client that leaves frees its worker, mixed concurrent requests
//! answer as each alone, SIGTERM shuts down cleanly, and no request
//! changes the database.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common;

pub(crate) const KEY: &str = "test-server-key-0123456789";

/// A running `sqlagent serve`, killed when dropped.
pub(crate) struct Server {
    child: Child,
    pub(crate) url: String,
    lines: mpsc::Receiver<String>,
}

impl Server {
    /// Starts `serve` with `args` (plus port 0 and one thread) and waits
    /// until it is ready.
    pub(crate) fn start(args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sqlagent"));
        cmd.args(["--threads", "1", "serve", "--port", "0"])
            .args(args)
            .current_dir(common::root())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .env_remove("SQLAGENT_MODEL")
            .env_remove("SQLAGENT_PORT")
            .env_remove("SQLAGENT_HOST");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start sqlagent serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let listening = lines
            .recv_timeout(Duration::from_secs(60))
            .expect("serve prints where it listens");
        let url = listening
            .strip_prefix("listening on ")
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("unexpected first line: {listening}"))
            .to_string();
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        let ready = lines
            .recv_timeout(Duration::from_secs(120))
            .expect("serve says when it is ready");
        assert!(ready.starts_with("ready: "), "{ready}");
        Server { child, url, lines }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Sends SIGTERM and waits for the exit code.
    fn terminate(mut self) -> (i32, Vec<String>) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let lines: Vec<String> = self.lines.try_iter().collect();
                return (status.code().unwrap_or(-1), lines);
            }
            assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Status, headers we look at (`retry-after`), and the body as JSON (or a
/// string when it is not JSON).
struct Reply {
    status: u16,
    retry_after: Option<String>,
    body: Value,
}

fn request(method: &str, url: &str, key: Option<&str>, body: Option<&str>) -> Reply {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(300))
        .build();
    let mut req = agent.request(method, url);
    if let Some(k) = key {
        req = req.set("Authorization", &format!("Bearer {k}"));
    }
    let result = match body {
        Some(b) => req.set("Content-Type", "application/json").send_string(b),
        None => req.call(),
    };
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {url}: {e}"),
    };
    let status = response.status();
    let retry_after = response.header("retry-after").map(str::to_string);
    let text = response.into_string().unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Reply {
        status,
        retry_after,
        body,
    }
}

fn get(server: &Server, path: &str) -> Reply {
    request("GET", &server.url(path), Some(KEY), None)
}

fn post(server: &Server, path: &str, body: &Value) -> Reply {
    request(
        "POST",
        &server.url(path),
        Some(KEY),
        Some(&body.to_string()),
    )
}

/// An error reply: the status, OpenAI's shape, and the code.
fn assert_error(reply: &Reply, status: u16, code: &str) {
    assert_eq!(reply.status, status, "{}", reply.body);
    let e = &reply.body["error"];
    assert!(
        e["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{}",
        reply.body
    );
    assert!(e["type"].is_string(), "{}", reply.body);
    assert!(e.get("param").is_some(), "{}", reply.body);
    assert_eq!(e["code"], code, "{}", reply.body);
}

/// The data events of a server-sent-events reply, up to `[DONE]`.
fn stream(server: &Server, path: &str, body: &Value) -> Vec<Value> {
    let response = ureq::post(&server.url(path))
        .set("Authorization", &format!("Bearer {KEY}"))
        .send_string(&body.to_string())
        .unwrap();
    assert_eq!(
        response.header("content-type"),
        Some("text/event-stream"),
        "a stream"
    );
    let mut events = Vec::new();
    let mut done = false;
    for line in BufReader::new(response.into_reader()).lines() {
        let line = line.unwrap();
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        if data == "[DONE]" {
            done = true;
            break;
        }
        events.push(serde_json::from_str(data).unwrap());
    }
    assert!(done, "the stream ends with [DONE]: {events:?}");
    events
}

fn sha256(path: &Path) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

pub(crate) fn demo_db(dir: &Path) -> PathBuf {
    let db = dir.join("music.db");
    let out = Command::new(env!("CARGO_BIN_EXE_sqlagent"))
        .args(["demo-db", "--out", db.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    db
}

/// A second database of another shape.
pub(crate) fn cities_db(dir: &Path) -> PathBuf {
    let path = dir.join("cities.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE TABLE cities (name TEXT PRIMARY KEY, country TEXT, population INTEGER);
         INSERT INTO cities VALUES ('Oslo', 'Norway', 709000), ('Lyon', 'France', 522000),
           ('Porto', 'Portugal', 232000), ('Graz', 'Austria', 291000);",
    )
    .unwrap();
    path
}

/// A random LoRA adapter for SmolLM2 (it changes answers).
fn random_adapter(dir: &Path) -> PathBuf {
    use candle_core::{Device, Tensor};
    let mut deltas = std::collections::BTreeMap::new();
    for layer in 0..30 {
        deltas.insert(
            format!("model.layers.{layer}.self_attn.q_proj"),
            sqlagent::lora::LoraDelta {
                a: Tensor::randn(0f32, 0.05, (4, 576), &Device::Cpu).unwrap(),
                b: Tensor::randn(0f32, 0.05, (576, 4), &Device::Cpu).unwrap(),
                scale: 1.0,
            },
        );
    }
    let out = dir.join("random-adapter");
    sqlagent::lora::Adapter::save(&out, &json!({"r": 4, "lora_alpha": 4}), &deltas).unwrap();
    out
}

pub(crate) fn model_args(model: &Path) -> Vec<String> {
    vec![
        "--model".into(),
        model.display().to_string(),
        "--max-tokens".into(),
        "48".into(),
    ]
}

pub(crate) fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Workers generating now, as `/health` says.
pub(crate) fn busy_workers(server: &Server) -> u64 {
    request("GET", &server.url("/health"), None, None).body["busy_workers"]
        .as_u64()
        .unwrap()
}

/// Starts a long free-text completion (4,000 tokens) and waits until a
/// worker is generating it; the worker is freed when the returned
/// connection is dropped (the client leaves).
pub(crate) fn hold_a_worker(server: &Server) -> TcpStream {
    let addr = server.url.trim_start_matches("http://").to_string();
    let mut long = TcpStream::connect(&addr).unwrap();
    let body = json!({"prompt": "Once upon a time", "max_tokens": 4000}).to_string();
    write!(
        long,
        "POST /v1/completions HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while busy_workers(server) == 0 {
        assert!(Instant::now() < deadline, "the long request never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    long
}

#[test]
fn every_endpoint_answers_as_ask_does_and_no_request_changes_the_database() {
    let Some(model) = common::smollm2_gguf() else {
        return;
    };
    let tmp = common::temp_dir();
    let db = demo_db(tmp.path());
    let before = sha256(&db);
    let db_arg = format!("demo={}", db.display());
    let mut args = vec![
        "--db".to_string(),
        db_arg,
        "--api-key-env".into(),
        "TEST_SERVE_KEY".into(),
        "--max-body-bytes".into(),
        "4096".into(),
        "--max-question-chars".into(),
        "300".into(),
        "--model-name".into(),
        "smol".into(),
    ];
    args.extend(model_args(&model));
    let server = Server::start(&strs(&args), &[("TEST_SERVE_KEY", KEY)]);

    // Health needs no key; everything under /v1 and /metrics does.
    let health = request("GET", &server.url("/health"), None, None);
    assert_eq!(health.status, 200, "{}", health.body);
    assert_eq!(health.body["status"], "ok");
    assert_error(
        &request("GET", &server.url("/v1/models"), None, None),
        401,
        "invalid_api_key",
    );
    let wrong = request("GET", &server.url("/v1/models"), Some("wrong"), None);
    assert_error(&wrong, 401, "invalid_api_key");
    assert!(
        !wrong.body.to_string().contains(KEY),
        "the key is never echoed"
    );
    assert_eq!(
        request("GET", &server.url("/metrics"), None, None).status,
        401
    );

    let models = get(&server, "/v1/models");
    assert_eq!(models.status, 200);
    assert_eq!(models.body["data"][0]["id"], "smol");
    let dbs = get(&server, "/v1/databases");
    assert_eq!(dbs.body["data"][0]["name"], "demo");
    let tables: Vec<&str> = dbs.body["data"][0]["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    for t in ["artists", "albums", "tracks", "streams"] {
        assert!(tables.contains(&t), "{tables:?}");
    }
    assert!(dbs.body["data"][0]["tables"][0]["columns"][0]["name"].is_string());

    // /v1/sql: the SQL and rows of `ask`, rows as SQLite gives them.
    let question = "How many artists are in the database?";
    let sql = post(
        &server,
        "/v1/sql",
        &json!({"question": question, "db": "demo"}),
    );
    assert_eq!(sql.status, 200, "{}", sql.body);
    let ask = Command::new(env!("CARGO_BIN_EXE_sqlagent"))
        .args([
            "--threads",
            "1",
            "ask",
            question,
            "--db",
            db.to_str().unwrap(),
        ])
        .args(strs(&model_args(&model)))
        .args(["--format", "json"])
        .current_dir(common::root())
        .output()
        .unwrap();
    assert!(
        ask.status.success(),
        "{}",
        String::from_utf8_lossy(&ask.stderr)
    );
    let ask: Value = serde_json::from_slice(&ask.stdout).unwrap();
    assert_eq!(sql.body["sql"], ask["sql"]);
    assert_eq!(sql.body["columns"], ask["columns"]);
    assert_eq!(sql.body["rows"], ask["rows"]);
    assert_eq!(sql.body["truncated"], ask["truncated"]);
    let database = sqlagent::sql::Database::open(&db).unwrap();
    let rows = database
        .execute(sql.body["sql"].as_str().unwrap(), &Default::default())
        .unwrap();
    assert_eq!(sql.body["rows"], json!(rows.rows));
    assert!(sql.body["timings"]["prompt_tokens"].as_u64().unwrap() > 0);
    assert!(sql.body["grammar"].is_object());
    let unexecuted = post(
        &server,
        "/v1/sql",
        &json!({"question": question, "execute": false}),
    );
    assert_eq!(unexecuted.body["sql"], sql.body["sql"]);
    assert!(unexecuted.body.get("rows").is_none(), "{}", unexecuted.body);

    // Chat: the same SQL as the content, plain and streamed.
    let chat_body = json!({
        "model": "smol",
        "messages": [{"role": "user", "content": question}],
        "temperature": 0,
    });
    let chat = post(&server, "/v1/chat/completions", &chat_body);
    assert_eq!(chat.status, 200, "{}", chat.body);
    assert_eq!(chat.body["object"], "chat.completion");
    assert_eq!(chat.body["choices"][0]["message"]["role"], "assistant");
    assert_eq!(
        chat.body["choices"][0]["message"]["content"],
        sql.body["sql"]
    );
    assert_eq!(chat.body["choices"][0]["finish_reason"], "stop");
    let usage = &chat.body["usage"];
    assert_eq!(
        usage["total_tokens"].as_u64().unwrap(),
        usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap()
    );
    assert!(usage["completion_tokens"].as_u64().unwrap() > 0);
    let mut streamed_body = chat_body.clone();
    streamed_body["stream"] = json!(true);
    streamed_body["stream_options"] = json!({"include_usage": true});
    let events = stream(&server, "/v1/chat/completions", &streamed_body);
    assert_eq!(events[0]["choices"][0]["delta"]["role"], "assistant");
    let content: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(
        content,
        chat.body["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
    );
    assert!(events
        .iter()
        .all(|e| e["object"] == "chat.completion.chunk"));
    assert!(events
        .iter()
        .any(|e| e["choices"][0]["finish_reason"] == "stop"));
    assert_eq!(events.last().unwrap()["usage"], chat.body["usage"]);

    // Raw completions: no template, stop texts left out, streamed alike.
    let completion_body =
        json!({"prompt": "The capital of France is", "max_tokens": 12, "stop": ["."]});
    let completion = post(&server, "/v1/completions", &completion_body);
    assert_eq!(completion.status, 200, "{}", completion.body);
    let text = completion.body["choices"][0]["text"].as_str().unwrap();
    assert!(!text.contains('.'), "{text:?}");
    assert!(!text.is_empty());
    let mut streamed_completion = completion_body.clone();
    streamed_completion["stream"] = json!(true);
    let pieces: String = stream(&server, "/v1/completions", &streamed_completion)
        .iter()
        .filter_map(|e| e["choices"][0]["text"].as_str())
        .collect();
    assert_eq!(pieces, text);

    // Errors, each with its status and OpenAI's shape.
    assert_error(&get(&server, "/v1/nothing-here"), 404, "not_found");
    assert_error(
        &post(
            &server,
            "/v1/sql",
            &json!({"question": question, "db": "other"}),
        ),
        404,
        "database_not_found",
    );
    let unknown_model = post(
        &server,
        "/v1/chat/completions",
        &json!({"model": "gpt-4", "messages": [{"role": "user", "content": question}]}),
    );
    assert_error(&unknown_model, 404, "model_not_found");
    assert_eq!(unknown_model.body["error"]["param"], "model");
    let malformed = request(
        "POST",
        &server.url("/v1/sql"),
        Some(KEY),
        Some("{\"question\": "),
    );
    assert_error(&malformed, 400, "invalid_json");
    let wrong_type = post(&server, "/v1/sql", &json!({"question": 7}));
    assert_error(&wrong_type, 400, "invalid_value");
    assert_eq!(wrong_type.body["error"]["param"], "question");
    assert_error(
        &post(
            &server,
            "/v1/chat/completions",
            &json!({"messages": [{"role": "user", "content": question}], "max_tokens": 1_000_000}),
        ),
        400,
        "invalid_value",
    );
    assert_error(
        &post(&server, "/v1/sql", &json!({"question": "   "})),
        400,
        "invalid_value",
    );
    assert_error(
        &post(&server, "/v1/sql", &json!({"question": "why ".repeat(100)})),
        413,
        "too_large",
    );
    assert_error(
        &post(&server, "/v1/sql", &json!({"question": "x".repeat(5000)})),
        413,
        "too_large",
    );
    assert_error(
        &request("GET", &server.url("/v1/sql"), Some(KEY), None),
        405,
        "method_not_allowed",
    );

    // Requests that ask for writes: refused with a message saying so, and
    // no query is written or run.
    for q in [
        "Delete all artists from the database.",
        "DROP TABLE artists; then list the albums",
    ] {
        let r = post(&server, "/v1/sql", &json!({"question": q}));
        assert_eq!(r.status, 400, "{}", r.body);
        let message = r.body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("only reads the database"), "{}", r.body);
        assert!(r.body["sql"].is_null(), "{}", r.body);
    }
    let raw = post(
        &server,
        "/v1/completions",
        &json!({"prompt": "DELETE FROM artists; DROP TABLE tracks; SELECT", "db": "demo", "max_tokens": 24}),
    );
    assert!(raw.status == 200 || raw.status == 422, "{}", raw.body);

    let metrics = get(&server, "/metrics");
    let text = metrics.body.as_str().unwrap();
    assert!(
        text.contains("sqlagent_requests_total{endpoint=\"/v1/sql\",status=\"200\"}"),
        "{text}"
    );
    assert!(text.contains(
        "sqlagent_request_duration_seconds_bucket{endpoint=\"/v1/chat/completions\",le=\"+Inf\"}"
    ));
    // (A worker may still be counted busy for a moment after replying.)
    assert!(text.contains("sqlagent_busy_workers "), "{text}");
    let generated: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("sqlagent_generated_tokens_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(generated > 0);

    let (code, lines) = server.terminate();
    assert_eq!(code, 0, "a clean exit on SIGTERM: {lines:?}");
    assert!(
        lines.iter().any(|l| l.starts_with("shutting down")),
        "{lines:?}"
    );
    assert_eq!(
        sha256(&db),
        before,
        "the database is byte-for-byte unchanged"
    );
}

#[test]
fn eval_against_the_server_grades_as_eval_in_process() {
    let Some(model) = common::smollm2_gguf() else {
        return;
    };
    let tmp = common::temp_dir();
    let db = demo_db(tmp.path());
    let mut args = vec![
        "--db".to_string(),
        db.display().to_string(),
        "--model-name".into(),
        "smol".into(),
    ];
    args.extend(model_args(&model));
    let server = Server::start(&strs(&args), &[]);
    let eval = |extra: &[&str]| -> Value {
        let out = Command::new(env!("CARGO_BIN_EXE_sqlagent"))
            .args(["--threads", "1", "eval", "--set", "test-set.jsonl"])
            .args(["--db", db.to_str().unwrap(), "--limit", "6"])
            .args(["--max-tokens", "48", "--format", "json"])
            .args(extra)
            .current_dir(common::root())
            .env_remove("SQLAGENT_MODEL")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let local = eval(&["--model", model.to_str().unwrap()]);
    let hosted = eval(&["--hosted", &server.url("/v1"), "--hosted-model", "smol"]);
    let items = |r: &Value| -> Vec<(String, String, String)> {
        r["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                (
                    i["question"].as_str().unwrap().to_string(),
                    i["sql"].as_str().unwrap_or("").to_string(),
                    i["category"].to_string(),
                )
            })
            .collect()
    };
    assert_eq!(items(&local).len(), 6);
    assert_eq!(items(&hosted), items(&local));
    assert_eq!(
        hosted["summary"]["execution_accuracy_pct"],
        local["summary"]["execution_accuracy_pct"]
    );
}

#[test]
fn mixed_concurrent_requests_answer_as_each_alone() {
    let Some(model) = common::smollm2_gguf() else {
        return;
    };
    let tmp = common::temp_dir();
    let music = demo_db(tmp.path());
    let cities = cities_db(tmp.path());
    let adapter = random_adapter(tmp.path());
    let mut args = vec![
        "--db".to_string(),
        format!("music={}", music.display()),
        "--db".into(),
        format!("cities={}", cities.display()),
        "--adapter".into(),
        format!("noisy={}", adapter.display()),
        "--parallel".into(),
        "2".into(),
        "--model-name".into(),
        "smol".into(),
        "--api-key-env".into(),
        "TEST_SERVE_KEY".into(),
    ];
    args.extend(model_args(&model));
    let server = Server::start(&strs(&args), &[("TEST_SERVE_KEY", KEY)]);
    let listed: Vec<Value> = get(&server, "/v1/models").body["data"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(listed[1]["id"], "noisy");

    let requests = [
        ("music", None, "How many albums are there?"),
        ("cities", None, "Which city has the largest population?"),
        ("music", Some("noisy"), "How many albums are there?"),
        ("cities", Some("noisy"), "List the cities in France."),
        ("music", None, "List the names of all artists from Sweden."),
        ("cities", None, "List the cities in France."),
    ];
    let base = server.url.clone();
    let ask = |(db, adapter, question): (&str, Option<&str>, &str)| -> String {
        let mut body = json!({"question": question, "db": db, "execute": false});
        if let Some(a) = adapter {
            body["adapter"] = json!(a);
        }
        let r = request(
            "POST",
            &format!("{base}/v1/sql"),
            Some(KEY),
            Some(&body.to_string()),
        );
        assert_eq!(r.status, 200, "{}", r.body);
        r.body["sql"].as_str().unwrap().to_string()
    };
    let alone: Vec<String> = requests.iter().map(|&r| ask(r)).collect();
    assert!(alone[1].contains("cities"), "{}", alone[1]);
    let together: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = requests.iter().map(|&r| s.spawn(move || ask(r))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(together, alone);
}

#[test]
fn a_full_queue_answers_429_and_a_client_that_leaves_frees_its_worker() {
    let Some(model) = common::smollm2_gguf() else {
        return;
    };
    let tmp = common::temp_dir();
    let db = demo_db(tmp.path());
    let mut args = vec![
        "--db".to_string(),
        db.display().to_string(),
        "--parallel".into(),
        "1".into(),
        "--queue".into(),
        "0".into(),
        "--max-request-tokens".into(),
        "4000".into(),
        "--api-key-env".into(),
        "TEST_SERVE_KEY".into(),
    ];
    args.extend(model_args(&model));
    let server = Server::start(&strs(&args), &[("TEST_SERVE_KEY", KEY)]);

    // A long free-text completion holds the only worker.
    let long = hold_a_worker(&server);

    // No worker free and no room to wait: 429 at once, with Retry-After.
    let started = Instant::now();
    let refused = post(
        &server,
        "/v1/sql",
        &json!({"question": "How many artists are in the database?"}),
    );
    assert_error(&refused, 429, "queue_full");
    assert_eq!(refused.retry_after.as_deref(), Some("1"));
    assert!(started.elapsed() < Duration::from_secs(10));

    // The client leaves: its generation is cancelled and the worker freed.
    long.shutdown(std::net::Shutdown::Both).unwrap();
    drop(long);
    let deadline = Instant::now() + Duration::from_secs(60);
    while busy_workers(&server) != 0 {
        assert!(
            Instant::now() < deadline,
            "the worker stayed busy after its client left"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let metrics = get(&server, "/metrics").body;
    assert!(
        metrics
            .as_str()
            .unwrap()
            .lines()
            .any(|l| l.starts_with("sqlagent_cancelled_total ") && !l.ends_with(" 0")),
        "{metrics}"
    );
    let served = post(
        &server,
        "/v1/sql",
        &json!({"question": "How many artists are in the database?"}),
    );
    assert_eq!(served.status, 200, "{}", served.body);
}

#[test]
fn serve_refuses_a_key_variable_that_is_not_set_and_a_missing_database() {
    let tmp = common::temp_dir();
    // A file that is no GGUF: the model cannot load.
    let bad_model = tmp.path().join("none.gguf");
    std::fs::write(&bad_model, b"not a gguf file").unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_sqlagent"))
            .args([
                "serve",
                "--port",
                "0",
                "--model",
                bad_model.to_str().unwrap(),
            ])
            .args(args)
            .current_dir(common::root())
            .env_remove("TEST_UNSET_KEY")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let missing = tmp.path().join("missing.db");
    let (code, stderr) = run(&["--db", missing.to_str().unwrap()]);
    assert_eq!(code, Some(3), "a database that cannot be opened");
    assert!(stderr.contains("missing.db"), "{stderr}");
    let db = demo_db(tmp.path());
    let (code, stderr) = run(&[
        "--db",
        db.to_str().unwrap(),
        "--api-key-env",
        "TEST_UNSET_KEY",
    ]);
    assert_eq!(
        code,
        Some(2),
        "a flag's variable that is not set is bad input"
    );
    assert!(stderr.contains("TEST_UNSET_KEY is not set"), "{stderr}");
    let (code, stderr) = run(&[
        "--db",
        &format!("a={}", db.display()),
        "--db",
        &format!("a={}", db.display()),
    ]);
    assert_eq!(code, Some(2), "bad input");
    assert!(stderr.contains("names two databases"), "{stderr}");
    // A model that cannot load stops the server with its error.
    let (code, stderr) = run(&["--db", db.to_str().unwrap()]);
    assert_eq!(code, Some(3), "a model that cannot be loaded");
    assert!(stderr.contains("none.gguf"), "{stderr}");
}

#[test]
fn the_official_openai_python_client_talks_to_the_server() {
    // scripts/test installs the client into a venv and names its python.
    let python = match std::env::var("SQLAGENT_TEST_PYTHON") {
        Ok(p) if p != "skip" && !p.is_empty() => p,
        _ => {
            eprintln!("SKIP: SQLAGENT_TEST_PYTHON names no python with the openai package (scripts/test sets it)");
            return;
        }
    };
    let Some(model) = common::smollm2_gguf() else {
        return;
    };
    let tmp = common::temp_dir();
    let db = demo_db(tmp.path());
    let mut args = vec![
        "--db".to_string(),
        db.display().to_string(),
        "--model-name".into(),
        "smol".into(),
        "--api-key-env".into(),
        "TEST_SERVE_KEY".into(),
    ];
    args.extend(model_args(&model));
    let server = Server::start(&strs(&args), &[("TEST_SERVE_KEY", KEY)]);
    let question = "List the names of all artists from Sweden.";
    let out = Command::new(&python)
        .arg(common::root().join("tests/clients/openai_client.py"))
        .args([&server.url("/v1"), KEY, "smol", question])
        .output()
        .expect("run the OpenAI client");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    // Plain HTTP for /v1/sql: the same SQL the client got.
    let sql = post(&server, "/v1/sql", &json!({"question": question}));
    assert_eq!(sql.status, 200, "{}", sql.body);
    assert_eq!(seen["models"], json!(["smol"]));
    assert_eq!(seen["plain"], sql.body["sql"], "{seen}");
    assert_eq!(seen["streamed"], seen["plain"], "{seen}");
    assert!(seen["plain_finish"] == "stop" || seen["plain_finish"] == "length");
    assert_eq!(seen["streamed_finish"], seen["plain_finish"]);
    assert_eq!(seen["streamed_usage"], seen["plain_usage"]);
    assert!(!seen["completion"].as_str().unwrap().contains('.'));
    assert_eq!(
        seen["not_found"],
        json!({"status": 404, "code": "model_not_found"})
    );
    assert_eq!(
        seen["unauthorized"],
        json!({"status": 401, "code": "invalid_api_key"})
    );
    assert!(sql.body["rows"].is_array());
}

/// The events of a streamed reply: (name, JSON data) in order.
fn sse_events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .filter_map(|block| {
            let mut name = "message".to_string();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(n) = line.strip_prefix("event:") {
                    name = n.trim().to_string();
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.trim_start());
                }
            }
            (!data.is_empty()).then(|| (name, serde_json::from_str(&data).unwrap()))
        })
        .collect()
}

#[test]
fn sql_streamed_sends_the_reply_as_written_then_the_answer_it_gives_unstreamed() {
    let Some(model) = common::smollm2_gguf() else {
        return;
    };
    let tmp = common::temp_dir();
    let db = demo_db(tmp.path());
    let mut args = vec![
        "--db".to_string(),
        db.display().to_string(),
        "--api-key-env".into(),
        "TEST_SERVE_KEY".into(),
    ];
    args.extend(model_args(&model));
    let server = Server::start(&strs(&args), &[("TEST_SERVE_KEY", KEY)]);
    let question = json!({"question": "How many tracks are there?"});
    let whole = post(&server, "/v1/sql", &question);
    assert_eq!(whole.status, 200, "{}", whole.body);

    let mut streamed = question.clone();
    streamed["stream"] = json!(true);
    let reply = post(&server, "/v1/sql", &streamed);
    assert_eq!(reply.status, 200);
    let events = sse_events(reply.body.as_str().expect("an event stream"));
    let (last, pieces) = events.split_last().unwrap();
    assert_eq!(last.0, "result", "{events:?}");
    assert!(!pieces.is_empty(), "the reply streams: {events:?}");
    assert!(pieces.iter().all(|(name, _)| name == "sql"), "{events:?}");
    let text: String = pieces
        .iter()
        .map(|(_, d)| d["text"].as_str().unwrap())
        .collect();
    assert!(text.contains(whole.body["sql"].as_str().unwrap()), "{text}");
    for key in ["sql", "columns", "rows", "truncated"] {
        assert_eq!(last.1[key], whole.body[key], "{key}");
    }

    // The page and its files, without the key, held to this server.
    for (path, kind) in [
        ("/", "text/html"),
        ("/page.js", "text/javascript"),
        ("/page.css", "text/css"),
    ] {
        let response = ureq::get(&server.url(path)).call().unwrap();
        assert!(response.content_type().starts_with(kind), "{path}");
        let policy = response.header("content-security-policy").unwrap_or("");
        assert!(
            policy.contains("default-src 'none'") && policy.contains("connect-src 'self'"),
            "{path}: {policy}"
        );
        let body = response.into_string().unwrap();
        assert!(
            !body.contains("http://") && !body.contains("https://"),
            "{path}"
        );
    }

    // A question asking for a change: one error event, nothing run.
    let refused = post(
        &server,
        "/v1/sql",
        &json!({"question": "Delete all tracks", "stream": true}),
    );
    let events = sse_events(refused.body.as_str().unwrap());
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].0, "error");
    assert_eq!(events[0].1["status"], 400);
    assert!(
        events[0].1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("only reads"),
        "{events:?}"
    );
}
