//! `eval --hosted`: a minimal OpenAI-compatible chat-completions server,
//! started by the test, answers from a real model run (SmolLM2 through this
//! crate's decode loop). It checks what was sent (model name, API key, the
//! same conversation the local model gets), fails the first request with
//! 503 to exercise the retry, and refuses a wrong key with 401.

use std::sync::{Arc, Mutex};

use sqlagent::agent::{Engine, ModelSource};
use sqlagent::chat::Message;
use sqlagent::generate::{generate, GenerateRequest, SamplingParams};

use crate::common;

/// What the server saw: (authorization header, request body).
type Seen = Arc<Mutex<Vec<(String, serde_json::Value)>>>;

/// Serves chat completions on 127.0.0.1; returns the base URL.
fn serve(engine: Arc<Engine>, key: &'static str, seen: Seen) -> String {
    let base = common::serve_json(move |request| {
        let (auth, body) = (&request.authorization, &request.body);
        let first = {
            let mut seen = seen.lock().unwrap();
            seen.push((auth.clone(), body.clone()));
            seen.len() == 1
        };
        if *auth != format!("Bearer {key}") {
            ("401 Unauthorized", r#"{"error":"bad key"}"#.to_string())
        } else if first {
            (
                "503 Service Unavailable",
                r#"{"error":"warming up"}"#.to_string(),
            )
        } else {
            ("200 OK", answer(&engine, body))
        }
    });
    format!("{base}/v1")
}

/// Runs the model on the request's conversation.
fn answer(engine: &Engine, body: &serde_json::Value) -> String {
    let messages: Vec<Message> = serde_json::from_value(body["messages"].clone()).unwrap();
    let prompt = engine.template.render(&messages, true).unwrap();
    let ids = engine.tokenizer.encode(&prompt).unwrap();
    let stop = engine.stop_ids();
    let g = generate(
        &engine.model,
        &engine.tokenizer,
        GenerateRequest {
            prompt_ids: &ids,
            stop_ids: &stop,
            sampling: SamplingParams {
                max_tokens: body["max_tokens"].as_u64().unwrap() as usize,
                ..SamplingParams::default()
            },
            constraint: None,
            check: None,
            cancel: None,
            stop_text: &[],
            prompt_split: None,
            mask_ahead: Default::default(),
        },
        &mut |_| {},
    )
    .unwrap();
    serde_json::json!({
        "choices": [{"index": 0, "message": {"role": "assistant", "content": g.text}}],
        "usage": {"completion_tokens": g.tokens.len()},
    })
    .to_string()
}

#[test]
fn eval_hosted_sends_the_same_prompt_retries_and_reports_like_a_local_run() {
    let Some(gguf) = common::smollm2_gguf() else {
        return;
    };
    let engine = Arc::new(common::load_engine(ModelSource::Gguf(gguf)));
    let seen: Seen = Arc::default();
    let url = serve(engine.clone(), "test-key", seen.clone());
    let tmp = common::temp_dir();
    let db = tmp.path().join("music.db");
    sqlagent::sql::build_demo_db(&db).unwrap();
    let set = tmp.path().join("set.jsonl");
    std::fs::write(
        &set,
        "{\"question\":\"How many tracks are there?\",\"sql\":\"SELECT COUNT(*) FROM tracks\"}\n\
         {\"question\":\"List artist names.\",\"sql\":\"SELECT name FROM artists\"}\n",
    )
    .unwrap();
    let run = |key_value: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_sqlagent"))
            .args([
                "eval",
                "--set",
                set.to_str().unwrap(),
                "--db",
                db.to_str().unwrap(),
            ])
            .args([
                "--hosted",
                &url,
                "--hosted-model",
                "smol",
                "--hosted-key-env",
                "TEST_HOSTED_KEY",
            ])
            .args(["--max-tokens", "48", "--format", "json"])
            .env("TEST_HOSTED_KEY", key_value)
            .env_remove("SQLAGENT_MODEL")
            .current_dir(tmp.path())
            .output()
            .unwrap()
    };
    let out = run("test-key");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["summary"]["items"], 2, "{report}");
    assert_eq!(report["config"]["grammar"], "none (hosted)");
    assert!(report["config"]["model"]
        .as_str()
        .unwrap()
        .starts_with("smol @ http://127.0.0.1:"));
    for item in report["items"].as_array().unwrap() {
        assert!(item["generated_tokens"].as_u64().unwrap() > 0, "{item}");
        assert_ne!(item["category"], "generation_error", "{item}");
    }

    let seen = seen.lock().unwrap().clone();
    // One 503, retried, then one request per item.
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(seen[0].1, seen[1].1, "the retry resends the same request");
    for (auth, body) in &seen {
        assert_eq!(auth, "Bearer test-key");
        assert_eq!(body["model"], "smol");
        let messages = body["messages"].as_array().unwrap();
        assert_eq!(messages[0]["role"], "system");
        assert!(
            messages[0]["content"]
                .as_str()
                .unwrap()
                .contains("CREATE TABLE")
                || messages[0]["content"].as_str().unwrap().contains("artists")
        );
        let last = messages.last().unwrap();
        assert_eq!(last["role"], "user");
    }
    assert!(
        seen[1].1["messages"].as_array().unwrap().last().unwrap()["content"]
            .as_str()
            .unwrap()
            .contains("How many tracks are there?")
    );

    // A wrong key stops the run at once with one clear error.
    let out = run("wrong");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refused the request (401)") && stderr.contains("TEST_HOSTED_KEY"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn eval_hosted_goes_through_the_proxy_the_environment_names_unless_no_proxy_covers_the_host() {
    let seen: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let proxy = {
        let seen = seen.clone();
        common::serve_json(move |request| {
            seen.lock().unwrap().push(request.target.clone());
            let reply = serde_json::json!({
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "SELECT COUNT(*) FROM tracks"}}],
                "usage": {"completion_tokens": 7},
            });
            ("200 OK", reply.to_string())
        })
    };
    let tmp = common::temp_dir();
    let db = tmp.path().join("music.db");
    sqlagent::sql::build_demo_db(&db).unwrap();
    let set = tmp.path().join("set.jsonl");
    std::fs::write(
        &set,
        "{\"question\":\"How many tracks are there?\",\"sql\":\"SELECT COUNT(*) FROM tracks\"}\n",
    )
    .unwrap();
    let run = |no_proxy: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_sqlagent"))
            .args(["eval", "--set", set.to_str().unwrap()])
            .args(["--db", db.to_str().unwrap()])
            .args(["--hosted", "http://llm.example.invalid/v1"])
            .args(["--hosted-model", "m", "--format", "json"])
            .env("HTTP_PROXY", &proxy)
            .env("NO_PROXY", no_proxy)
            .env_remove("http_proxy")
            .env_remove("no_proxy")
            .env_remove("SQLAGENT_MODEL")
            .current_dir(tmp.path())
            .output()
            .unwrap()
    };
    let through = run("localhost");
    assert!(
        through.status.success(),
        "{}",
        String::from_utf8_lossy(&through.stderr)
    );
    assert_eq!(
        *seen.lock().unwrap(),
        ["POST http://llm.example.invalid/v1/chat/completions"]
    );
    // Covered by NO_PROXY: straight to a host that does not resolve.
    let direct = run("example.invalid");
    assert_eq!(seen.lock().unwrap().len(), 1, "the proxy was not asked");
    let text = String::from_utf8_lossy(&direct.stdout).to_string()
        + &String::from_utf8_lossy(&direct.stderr);
    assert!(text.contains("llm.example.invalid"), "{text}");
}
