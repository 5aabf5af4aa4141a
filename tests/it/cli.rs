//! The `sqlagent` binary end to end: bad input fails with one `error:` line
//! naming the file or argument that was wrong (never a panic), and `demo-db`,
//! `schema`, `import` and `ask` work on the demo database and a real model.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common;
use crate::tiny::tiny_llama3_dir;

/// Exit code (-1 when killed by a signal), stdout, stderr.
type Out = (i32, String, String);

/// Variables that would change what the binary does if inherited from the
/// shell running the tests.
const SCRUBBED_ENV: &[&str] = &[
    "SQLAGENT_MODEL",
    "SQLAGENT_DB",
    "SQLAGENT_PROMPT",
    "SQLAGENT_PROMPTS_DIR",
    "SQLAGENT_THREADS",
    "SQLAGENT_DEVICE",
    "SQLAGENT_DTYPE",
    "SQLAGENT_REQUANTIZE",
    "SQLAGENT_REVISION",
    "SQLAGENT_LOG",
    "RUST_BACKTRACE",
    "RUST_LIB_BACKTRACE",
    "LAMINI_API_KEY",
];

/// Runs the binary with `args`, no stdin, a scrubbed environment plus `env`,
/// from the system temp directory (so no `.env` or `./prompts` of the
/// project is picked up).
fn run_env(args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sqlagent"));
    cmd.args(args)
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::null());
    for var in SCRUBBED_ENV {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run sqlagent");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn run(args: &[&str]) -> Out {
    run_env(args, &[])
}

fn describe(out: &Out) -> String {
    format!(
        "exit code {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.0, out.1, out.2
    )
}

fn assert_no_panic(out: &Out) {
    for text in [&out.1, &out.2] {
        assert!(
            !text.contains("panicked") && !text.contains("RUST_BACKTRACE"),
            "panic output:\n{}",
            describe(out)
        );
    }
}

/// Non-zero exit, stderr is one `error: …` line containing every fragment,
/// and no panic anywhere.
fn assert_clean_failure(out: &Out, fragments: &[&str]) {
    assert_no_panic(out);
    assert_ne!(out.0, 0, "expected a failure:\n{}", describe(out));
    let lines: Vec<&str> = out.2.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "stderr should be one line:\n{}",
        describe(out)
    );
    assert!(
        lines[0].starts_with("error: "),
        "stderr should start with `error: `:\n{}",
        describe(out)
    );
    for f in fragments {
        assert!(
            out.2.contains(f),
            "stderr should contain {f:?}:\n{}",
            describe(out)
        );
    }
}

fn assert_success(out: &Out) {
    assert_no_panic(out);
    assert_eq!(out.0, 0, "expected success:\n{}", describe(out));
    assert!(
        !out.2.contains("\x1b["),
        "stderr is piped: no escape codes expected:\n{}",
        describe(out)
    );
}

fn s(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

/// Builds the demo database at `dir/music.db`.
fn demo_db(dir: &Path) -> PathBuf {
    let db = dir.join("music.db");
    assert_success(&run(&["demo-db", "--out", s(&db)]));
    db
}

fn write_prefix(from: &Path, to: &Path, len: usize) {
    use std::io::Read;
    let mut bytes = Vec::with_capacity(len);
    std::fs::File::open(from)
        .unwrap()
        .take(len as u64)
        .read_to_end(&mut bytes)
        .unwrap();
    assert_eq!(bytes.len(), len, "{} is shorter than {len}", from.display());
    std::fs::write(to, bytes).unwrap();
}

/// Deterministic bytes that are not any known file format.
fn garbage(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// `ask` with a valid question against `db` using `model`.
fn ask_with_model(db: &Path, model: &Path) -> Out {
    run(&[
        "--threads",
        "1",
        "ask",
        "How many tracks?",
        "--db",
        s(db),
        "--model",
        s(model),
    ])
}

// ---------------------------------------------------------------------------
// --db

#[test]
fn ask_db_missing_file_names_it() {
    let tmp = common::temp_dir();
    let db = tmp.path().join("missing.db");
    let out = run(&["--threads", "1", "ask", "How many tracks?", "--db", s(&db)]);
    assert_clean_failure(&out, &[s(&db), "no such file"]);
}

#[test]
fn ask_db_text_file_says_not_a_database() {
    let tmp = common::temp_dir();
    let db = tmp.path().join("x.db");
    std::fs::write(&db, "hello").unwrap();
    let out = run(&["--threads", "1", "ask", "How many tracks?", "--db", s(&db)]);
    assert_clean_failure(&out, &[s(&db), "not a database"]);
    assert_eq!(std::fs::read(&db).unwrap(), b"hello", "file was modified");
}

#[test]
fn ask_db_directory_names_it() {
    let tmp = common::temp_dir();
    let out = run(&[
        "--threads",
        "1",
        "ask",
        "How many tracks?",
        "--db",
        s(tmp.path()),
    ]);
    assert_clean_failure(&out, &[s(tmp.path()), "directory"]);
}

#[test]
fn schema_db_missing_file_names_it() {
    let tmp = common::temp_dir();
    let db = tmp.path().join("missing.db");
    let out = run(&["schema", "--db", s(&db)]);
    assert_clean_failure(&out, &[s(&db)]);
    assert!(!db.exists(), "schema must not create the database");
}

#[test]
fn ask_for_a_change_says_sqlagent_only_reads_and_runs_nothing() {
    let tmp = common::temp_dir();
    let db = demo_db(tmp.path());
    let before = std::fs::read(&db).unwrap();
    // Refused before any model is loaded: this model does not exist.
    let ask = |format: &str| {
        run(&[
            "ask",
            "Delete all tracks by AC/DC",
            "--db",
            s(&db),
            "--model",
            "/nonexistent/model.gguf",
            "--format",
            format,
        ])
    };
    let out = ask("text");
    assert_clean_failure(&out, &["asks to delete", "only reads the database"]);
    assert!(out.1.is_empty(), "{}", describe(&out));
    let out = ask("json");
    assert_no_panic(&out);
    assert_ne!(out.0, 0, "{}", describe(&out));
    let v: serde_json::Value = serde_json::from_str(out.1.trim()).expect("one JSON object");
    assert_eq!(v["error"]["kind"], "change_requested", "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("only reads the database"));
    assert_eq!(std::fs::read(&db).unwrap(), before, "the database changed");
}

#[test]
fn ask_json_failure_prints_one_error_object() {
    let tmp = common::temp_dir();
    let db = tmp.path().join("missing.db");
    let out = run(&[
        "ask",
        "How many tracks?",
        "--db",
        s(&db),
        "--format",
        "json",
    ]);
    assert_clean_failure(&out, &[s(&db)]);
    let v: serde_json::Value = serde_json::from_str(out.1.trim()).expect("one JSON object");
    assert_eq!(v["error"]["kind"], "database", "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains(s(&db)));
}

// ---------------------------------------------------------------------------
// --model

#[test]
fn ask_model_nonexistent_path_names_it() {
    let tmp = common::temp_dir();
    let db = demo_db(tmp.path());
    let out = ask_with_model(&db, Path::new("/nonexistent/model.gguf"));
    assert_clean_failure(&out, &["/nonexistent/model.gguf"]);
}

#[test]
fn ask_model_directory_without_files_names_it() {
    let tmp = common::temp_dir();
    let db = demo_db(tmp.path());
    let dir = tmp.path().join("empty-model");
    std::fs::create_dir(&dir).unwrap();
    let out = ask_with_model(&db, &dir);
    assert_clean_failure(&out, &[s(&dir), "config.json", "tokenizer.json"]);
}

#[test]
fn ask_model_gguf_truncated_in_metadata_names_it() {
    let Some(gguf) = common::smollm2_gguf() else {
        return;
    };
    let tmp = common::temp_dir();
    let db = demo_db(tmp.path());
    let model = tmp.path().join("cut-1mb.gguf");
    write_prefix(&gguf, &model, 1_000_000);
    let out = ask_with_model(&db, &model);
    assert_clean_failure(&out, &[s(&model), "GGUF"]);
}

#[test]
fn ask_model_gguf_truncated_in_tensors_names_it() {
    let Some(gguf) = common::smollm2_gguf() else {
        return;
    };
    let tmp = common::temp_dir();
    let db = demo_db(tmp.path());
    let model = tmp.path().join("cut-50mb.gguf");
    write_prefix(&gguf, &model, 50_000_000);
    let out = ask_with_model(&db, &model);
    assert_clean_failure(&out, &[s(&model), "truncated"]);
}

#[test]
fn ask_model_garbage_gguf_names_it() {
    let tmp = common::temp_dir();
    let db = demo_db(tmp.path());
    let model = tmp.path().join("garbage.gguf");
    std::fs::write(&model, garbage(64 * 1024)).unwrap();
    let out = ask_with_model(&db, &model);
    assert_clean_failure(&out, &[s(&model)]);
}

#[test]
fn ask_model_garbage_without_extension_names_it() {
    let tmp = common::temp_dir();
    let db = demo_db(tmp.path());
    let model = tmp.path().join("garbage");
    std::fs::write(&model, garbage(64 * 1024)).unwrap();
    let out = ask_with_model(&db, &model);
    assert_clean_failure(&out, &[s(&model)]);
}

/// Library errors that carry a captured backtrace (tensor errors do when
/// `RUST_BACKTRACE` is set) must still print as one line.
#[test]
fn ask_model_error_is_one_line_with_rust_backtrace_set() {
    let tmp = common::temp_dir();
    let db = demo_db(tmp.path());
    let model = tmp.path().join("garbage.gguf");
    std::fs::write(&model, garbage(64 * 1024)).unwrap();
    let out = run_env(
        &[
            "--threads",
            "1",
            "ask",
            "How many tracks?",
            "--db",
            s(&db),
            "--model",
            s(&model),
        ],
        &[("RUST_BACKTRACE", "1")],
    );
    assert_clean_failure(&out, &[s(&model)]);
}

#[test]
fn ask_model_safetensors_truncated_names_it() {
    let tmp = common::temp_dir();
    let db = demo_db(tmp.path());
    let Some(dir) = tiny_llama3_dir(&tmp.path().join("tiny"), 4096) else {
        return;
    };
    let weights = dir.join("model.safetensors");
    let len = std::fs::metadata(&weights).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&weights)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let out = ask_with_model(&db, &dir);
    assert_clean_failure(&out, &["model.safetensors"]);
}

#[test]
fn ask_model_invalid_config_json_names_it() {
    let tmp = common::temp_dir();
    let db = demo_db(tmp.path());
    let Some(dir) = tiny_llama3_dir(&tmp.path().join("tiny"), 4096) else {
        return;
    };
    std::fs::write(dir.join("config.json"), "{\"hidden_size\": 32,").unwrap();
    let out = ask_with_model(&db, &dir);
    assert_clean_failure(&out, &["config.json"]);
}

/// A broken config.json is model configuration, reported as `model …` like
/// every other config.json problem.
#[test]
fn ask_model_invalid_config_json_is_reported_as_a_model_error() {
    let tmp = common::temp_dir();
    let db = demo_db(tmp.path());
    let Some(dir) = tiny_llama3_dir(&tmp.path().join("tiny"), 4096) else {
        return;
    };
    std::fs::write(dir.join("config.json"), "{\"hidden_size\": 32,").unwrap();
    let out = ask_with_model(&db, &dir);
    assert_clean_failure(&out, &["error: model ", "config.json"]);
}

// ---------------------------------------------------------------------------
// The question and the prompt

#[test]
fn ask_empty_question_mentions_question() {
    let tmp = common::temp_dir();
    let db = demo_db(tmp.path());
    for q in ["", "   "] {
        let out = run(&["--threads", "1", "ask", q, "--db", s(&db)]);
        assert_clean_failure(&out, &["question"]);
    }
}

/// All the numbers in `text`, in order.
fn numbers(text: &str) -> Vec<usize> {
    text.split(|c: char| !c.is_ascii_digit())
        .filter(|t| !t.is_empty())
        .map(|t| t.parse().unwrap())
        .collect()
}

#[test]
fn ask_prompt_longer_than_context_says_how_many_too_many() {
    let tmp = common::temp_dir();
    let db = demo_db(tmp.path());
    let Some(dir) = tiny_llama3_dir(&tmp.path().join("tiny"), 256) else {
        return;
    };
    let out = run(&[
        "--threads",
        "1",
        "ask",
        "How many tracks?",
        "--db",
        s(&db),
        "--model",
        s(&dir),
        "--max-tokens",
        "16",
    ]);
    assert_clean_failure(&out, &["too many", "256"]);
    // "prompt is P tokens but the context window is C tokens (X too many,
    // with R reserved for the answer)"
    let n = numbers(&out.2);
    assert_eq!(n.len(), 4, "expected four numbers:\n{}", describe(&out));
    let (prompt, context, too_many, reserved) = (n[0], n[1], n[2], n[3]);
    assert_eq!(context, 256, "{}", describe(&out));
    assert_eq!(reserved, 16, "{}", describe(&out));
    assert!(prompt > context, "{}", describe(&out));
    assert_eq!(too_many, prompt + reserved - context, "{}", describe(&out));
}

// ---------------------------------------------------------------------------
// Flag values

#[test]
fn ask_bad_flag_values_name_the_flag() {
    let tmp = common::temp_dir();
    let db = demo_db(tmp.path());
    for (flag, value) in [
        ("--temperature", "-1"),
        ("--max-tokens", "0"),
        ("--top-p", "2"),
        ("--top-p", "0"),
        ("--max-rows", "0"),
    ] {
        let arg = format!("{flag}={value}");
        let out = run(&[
            "--threads",
            "1",
            "ask",
            "How many tracks?",
            "--db",
            s(&db),
            &arg,
        ]);
        assert_clean_failure(&out, &[flag]);
    }
}

/// `--temperature -1` (value as the next argument) is how people type it.
#[test]
fn ask_negative_temperature_as_separate_argument_names_the_flag() {
    let tmp = common::temp_dir();
    let db = demo_db(tmp.path());
    let out = run(&[
        "--threads",
        "1",
        "ask",
        "How many tracks?",
        "--db",
        s(&db),
        "--temperature",
        "-1",
    ]);
    assert_no_panic(&out);
    assert_ne!(out.0, 0, "{}", describe(&out));
    assert!(out.2.contains("--temperature"), "{}", describe(&out));
}

// ---------------------------------------------------------------------------
// import

const SMALL_CSV: &str = "name,plays,rating\nalpha,10,4.5\nbeta,20,3\ngamma,,2.25\n";

#[test]
fn import_missing_csv_names_it_and_creates_nothing() {
    let tmp = common::temp_dir();
    let csv = tmp.path().join("missing.csv");
    let db = tmp.path().join("out.db");
    let out = run(&["import", s(&csv), "--db", s(&db), "--table", "t"]);
    assert_clean_failure(&out, &[s(&csv)]);
    assert!(!db.exists(), "a failed import must not leave a database");
}

#[test]
fn import_missing_csv_says_the_os_error_once() {
    let tmp = common::temp_dir();
    let csv = tmp.path().join("missing.csv");
    let db = tmp.path().join("out.db");
    let out = run(&["import", s(&csv), "--db", s(&db), "--table", "t"]);
    assert_clean_failure(&out, &[s(&csv)]);
    assert_eq!(out.2.matches("os error 2").count(), 1, "{}", describe(&out));
}

#[test]
fn import_ragged_csv_names_the_line() {
    let tmp = common::temp_dir();
    let csv = tmp.path().join("ragged.csv");
    std::fs::write(&csv, "a,b\n1,2\n3,4\n5\n6,7\n").unwrap();
    let db = tmp.path().join("out.db");
    let out = run(&["import", s(&csv), "--db", s(&db), "--table", "t"]);
    assert_clean_failure(&out, &[&format!("{}:4:", s(&csv))]);
    assert!(!db.exists(), "a failed import must not leave a database");
}

#[test]
fn import_twice_needs_replace() {
    let tmp = common::temp_dir();
    let csv = tmp.path().join("small.csv");
    std::fs::write(&csv, SMALL_CSV).unwrap();
    let db = tmp.path().join("out.db");
    let args = ["import", s(&csv), "--db", s(&db), "--table", "scores"];

    let first = run(&args);
    assert_success(&first);
    assert!(first.1.contains("imported 3 rows"), "{}", describe(&first));
    assert!(
        first.1.contains("plays INTEGER") && first.1.contains("rating REAL"),
        "{}",
        describe(&first)
    );

    let before = std::fs::read(&db).unwrap();
    let second = run(&args);
    assert_clean_failure(&second, &["scores", "--replace"]);
    assert_eq!(
        std::fs::read(&db).unwrap(),
        before,
        "a refused import changed the database"
    );

    let mut replace = args.to_vec();
    replace.push("--replace");
    let third = run(&replace);
    assert_success(&third);
    assert!(third.1.contains("imported 3 rows"), "{}", describe(&third));

    let schema = run(&["schema", "--db", s(&db), "--format", "json"]);
    assert_success(&schema);
    let v: serde_json::Value = serde_json::from_str(&schema.1).expect("schema JSON");
    assert_eq!(v["tables"].as_array().unwrap().len(), 1, "{}", schema.1);
}

#[test]
fn import_spotify_csv_then_schema_quotes_odd_names() {
    let Some(data) = common::shared_data() else {
        return;
    };
    let csv = data.join("spotify-prototype/Top100MostStreamed.csv");
    let tmp = common::temp_dir();
    let db = tmp.path().join("s.db");
    let out = run(&["import", s(&csv), "--db", s(&db), "--table", "songs"]);
    assert_success(&out);
    assert!(out.1.contains("imported 100 rows"), "{}", describe(&out));

    let schema = run(&["schema", "--db", s(&db)]);
    assert_success(&schema);
    for want in [
        "CREATE TABLE songs",
        "\"beats.per.minute\" INTEGER",
        "\"top genre\" TEXT",
        "\"loudness.dB\" INTEGER",
        "'Blinding Lights'",
    ] {
        assert!(schema.1.contains(want), "missing {want:?}:\n{}", schema.1);
    }
}

// ---------------------------------------------------------------------------
// demo-db and schema

#[test]
fn demo_db_then_schema_text_and_json() {
    let tmp = common::temp_dir();
    let db = tmp.path().join("music.db");
    let out = run(&["demo-db", "--out", s(&db)]);
    assert_success(&out);
    assert!(out.1.contains(s(&db)), "{}", describe(&out));
    for table in ["artists", "albums", "tracks", "streams"] {
        let at = out.1.find(&format!("{table} (")).unwrap_or_else(|| {
            panic!("{table} missing:\n{}", describe(&out));
        });
        let rest = &out.1[at + table.len() + 2..];
        let count: usize = rest
            .split(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no row count for {table}:\n{}", describe(&out)));
        assert!(count > 0, "{}", describe(&out));
        assert!(rest.starts_with(&format!("{count} rows)")), "{}", out.1);
    }

    let text = run(&["schema", "--db", s(&db)]);
    assert_success(&text);
    assert!(text.1.contains("CREATE TABLE tracks"), "{}", text.1);
    assert!(text.1.contains("e.g. '"), "quoted samples:\n{}", text.1);

    let json = run(&["schema", "--db", s(&db), "--format", "json"]);
    assert_success(&json);
    let v: serde_json::Value = serde_json::from_str(&json.1).expect("schema JSON");
    let names: Vec<&str> = v["tables"]
        .as_array()
        .expect("tables array")
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 4, "{names:?}");
    for table in ["artists", "albums", "tracks", "streams"] {
        assert!(names.contains(&table), "{names:?}");
    }
}

// ---------------------------------------------------------------------------
// ask with models

#[test]
fn ask_random_weight_hf_dir_runs_end_to_end() {
    let tmp = common::temp_dir();
    let db = demo_db(tmp.path());
    let Some(dir) = tiny_llama3_dir(&tmp.path().join("tiny"), 4096) else {
        return;
    };
    let out = run(&[
        "--threads",
        "1",
        "ask",
        "How many tracks?",
        "--db",
        s(&db),
        "--model",
        s(&dir),
        "--no-execute",
        "--max-tokens",
        "8",
        "--grammar",
        "none",
        "--format",
        "json",
    ]);
    if out.0 == 0 {
        assert_success(&out);
        let v: serde_json::Value = serde_json::from_str(out.1.trim()).expect("one JSON object");
        assert!(!v["sql"].as_str().unwrap().is_empty(), "{}", describe(&out));
        assert_eq!(v["model"]["format"], "safetensors", "{}", out.1);
        assert!(v["timings"]["prompt_tokens"].as_u64().unwrap() > 100);
        assert!(v["timings"]["generated_tokens"].as_u64().unwrap() <= 8);
        assert!(v.get("rows").is_none(), "--no-execute ran the SQL");
    } else {
        assert_clean_failure(&out, &["no SQL"]);
        // Still one JSON object on stdout, saying why.
        let v: serde_json::Value = serde_json::from_str(out.1.trim()).expect("one JSON object");
        assert!(v["error"].as_str().unwrap().contains("no SQL"), "{}", out.1);
    }
}

/// `ask` over the demo database with the SmolLM2 GGUF, greedy, one thread.
/// `None` when the model is absent.
fn ask_smollm2(db: &Path, question: &str, extra: &[&str]) -> Option<Out> {
    let gguf = common::smollm2_gguf()?;
    let mut args = vec![
        "--threads",
        "1",
        "ask",
        question,
        "--db",
        s(db),
        "--model",
        s(&gguf),
        "--max-tokens",
        "48",
    ];
    args.extend_from_slice(extra);
    Some(run(&args))
}

// SmolLM2-135M answers "How many artists are there?" with SQL naming a
// column that does not exist; "How many tracks are there?" gives SQL that
// runs, which is what these tests need.
const QUESTION: &str = "How many tracks are there?";

#[test]
fn ask_json_is_one_object_with_rows_and_timings() {
    let tmp = common::temp_dir();
    let db = demo_db(tmp.path());
    let Some(out) = ask_smollm2(&db, QUESTION, &["--format", "json"]) else {
        return;
    };
    assert_success(&out);
    let lines: Vec<&str> = out.1.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one JSON line:\n{}", describe(&out));
    let v: serde_json::Value = serde_json::from_str(lines[0]).expect("JSON object");
    for key in ["question", "sql", "columns", "rows", "timings"] {
        assert!(v.get(key).is_some(), "no {key}:\n{}", out.1);
    }
    assert_eq!(v["question"], QUESTION);
    let sql = v["sql"].as_str().unwrap();
    assert!(
        sql.trim_start().to_ascii_uppercase().starts_with("SELECT"),
        "{sql}"
    );
    assert!(v["columns"].is_array() && v["rows"].is_array(), "{}", out.1);
    let t = &v["timings"];
    for key in [
        "load_ms",
        "prompt_tokens",
        "prefill_ms",
        "generated_tokens",
        "decode_ms",
    ] {
        assert!(t[key].is_number(), "timings.{key}:\n{}", out.1);
    }
    assert!(t["prompt_tokens"].as_u64().unwrap() > 100, "{}", out.1);
    assert!(t["generated_tokens"].as_u64().unwrap() >= 1, "{}", out.1);
}

#[test]
fn ask_text_prints_sql_then_table_and_never_modifies_the_database() {
    let tmp = common::temp_dir();
    let db = demo_db(tmp.path());
    let before = std::fs::read(&db).unwrap();
    let Some(out) = ask_smollm2(&db, QUESTION, &[]) else {
        return;
    };
    assert_success(&out);
    let mut lines = out.1.lines();
    let first = lines.next().unwrap_or_default();
    assert!(first.ends_with(';'), "first line is the SQL:\n{}", out.1);
    let rest: Vec<&str> = lines.collect();
    assert!(
        rest.iter().any(|l| l.contains('│')),
        "a table follows:\n{}",
        out.1
    );
    assert!(
        rest.last()
            .is_some_and(|l| l.ends_with("row)") || l.ends_with("rows)")),
        "a row count ends the output:\n{}",
        out.1
    );

    assert_eq!(
        std::fs::read(&db).unwrap(),
        before,
        "ask modified the database"
    );
    let mut files: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["music.db"], "ask left files next to the database");
}

#[test]
fn ask_no_execute_text_prints_only_the_sql() {
    let tmp = common::temp_dir();
    let db = demo_db(tmp.path());
    let Some(out) = ask_smollm2(&db, QUESTION, &["--no-execute"]) else {
        return;
    };
    assert_success(&out);
    let text = out.1.trim_end();
    assert!(!text.is_empty(), "{}", describe(&out));
    assert!(text.ends_with(';'), "{}", describe(&out));
    assert!(
        text.trim_start().to_ascii_uppercase().starts_with("SELECT"),
        "{}",
        describe(&out)
    );
    assert!(
        !text.contains('│') && !text.contains(" row)") && !text.contains(" rows)"),
        "no table without execution:\n{}",
        describe(&out)
    );
}

/// Runs the binary as [`run_env`] does, with `input` on its stdin (a pipe).
fn run_piped(args: &[&str], input: &str) -> Out {
    use std::io::Write;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sqlagent"));
    cmd.args(args)
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for var in SCRUBBED_ENV {
        cmd.env_remove(var);
    }
    let mut child = cmd.spawn().expect("run sqlagent");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).unwrap();
    drop(stdin);
    let out = child.wait_with_output().expect("run sqlagent");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `chat` on the demo database with SmolLM2, the questions piped in.
fn chat_smollm2(db: &Path, input: &str, extra: &[&str]) -> Option<Out> {
    let gguf = common::smollm2_gguf()?;
    let mut args = vec![
        "--threads",
        "1",
        "chat",
        "--db",
        s(db),
        "--model",
        s(&gguf),
        "--max-tokens",
        "48",
    ];
    args.extend_from_slice(extra);
    Some(run_piped(&args, input))
}

#[test]
fn chat_from_a_pipe_answers_each_line_as_ask_does() {
    let tmp = common::temp_dir();
    let db = demo_db(tmp.path());
    let questions = [QUESTION, "How many albums are there?"];
    let mut asked = Vec::new();
    for q in questions {
        let Some(out) = ask_smollm2(&db, q, &["--format", "json"]) else {
            return;
        };
        assert_success(&out);
        let v: serde_json::Value = serde_json::from_str(out.1.trim()).unwrap();
        asked.push(v);
    }
    let input = format!(
        "{}\n.sql\n\n{}\n.quit\nHow many artists are there?\n",
        questions[0], questions[1]
    );
    let out = chat_smollm2(&db, &input, &["--format", "json"]).unwrap();
    assert_success(&out);
    let answers: Vec<serde_json::Value> = out
        .1
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        answers.len(),
        2,
        "two answers, none after .quit:\n{}",
        describe(&out)
    );
    for (chat, ask) in answers.iter().zip(&asked) {
        assert_eq!(chat["question"], ask["question"]);
        assert_eq!(chat["sql"], ask["sql"], "{}", describe(&out));
        assert_eq!(chat["rows"], ask["rows"]);
    }
    let sql_line = format!("{};", asked[0]["sql"].as_str().unwrap());
    assert!(
        out.1.lines().any(|l| l == sql_line),
        ".sql prints the last SQL:\n{}",
        describe(&out)
    );
    // The second question starts where the schema's prefill left off.
    let reused = answers[1]["timings"]["reused_prompt_tokens"]
        .as_u64()
        .unwrap();
    assert!(reused > 100, "{}", describe(&out));
    assert!(!out.2.contains("sql>"), "no prompts on a pipe:\n{}", out.2);
}

#[test]
fn chat_says_what_failed_goes_on_and_exits_non_zero_at_the_end() {
    let tmp = common::temp_dir();
    let db = demo_db(tmp.path());
    let before = std::fs::read(&db).unwrap();
    let input = format!(".tables\nDelete all tracks\n.frobnicate\n{QUESTION}\n");
    let Some(out) = chat_smollm2(&db, &input, &[]) else {
        return;
    };
    assert_no_panic(&out);
    assert_eq!(out.0, 1, "{}", describe(&out));
    assert!(
        out.1
            .lines()
            .next()
            .is_some_and(|l| l.starts_with("artists (")),
        ".tables lists the tables first:\n{}",
        describe(&out)
    );
    assert!(out.2.contains("only reads"), "{}", describe(&out));
    assert!(
        out.2.contains("unknown command \".frobnicate\""),
        "{}",
        describe(&out)
    );
    assert!(
        out.1
            .lines()
            .any(|l| l.ends_with("row)") || l.ends_with("rows)")),
        "the question after the failures is answered:\n{}",
        describe(&out)
    );
    assert!(
        out.2.contains("1 of 2 questions got no rows"),
        "{}",
        describe(&out)
    );
    assert_eq!(std::fs::read(&db).unwrap(), before);
}

/// A one-shot HTTP server on loopback that answers every request with
/// `status`; returns its base URL.
fn http_stub(status: &'static str) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        // Bounded: a handful of requests (hf-hub may retry), then stop.
        for stream in listener.incoming().take(8) {
            let Ok(mut stream) = stream else { break };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let body = "{\"error\":\"stub\"}";
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

#[test]
fn hub_unreachable_says_to_pass_a_local_model() {
    let tmp = common::temp_dir();
    let db = demo_db(tmp.path());
    let hf_home = tmp.path().join("hf");
    // A closed loopback port: the hub cannot be reached.
    let out = run_env(
        &[
            "ask",
            "How many tracks?",
            "--db",
            s(&db),
            "--model",
            "meta-llama/Meta-Llama-3-8B-Instruct",
        ],
        &[
            ("HF_HOME", s(&hf_home)),
            ("HF_ENDPOINT", "http://127.0.0.1:9"),
        ],
    );
    assert_clean_failure(
        &out,
        &[
            "meta-llama/Meta-Llama-3-8B-Instruct",
            "cannot reach",
            "--model",
        ],
    );
}

#[test]
fn hub_gated_repo_says_to_accept_the_license_and_set_hf_token() {
    let tmp = common::temp_dir();
    let db = demo_db(tmp.path());
    let hf_home = tmp.path().join("hf");
    let endpoint = http_stub("401 Unauthorized");
    let out = run_env(
        &[
            "ask",
            "How many tracks?",
            "--db",
            s(&db),
            "--model",
            "meta-llama/Meta-Llama-3-8B-Instruct",
        ],
        &[("HF_HOME", s(&hf_home)), ("HF_ENDPOINT", &endpoint)],
    );
    assert_clean_failure(
        &out,
        &["meta-llama/Meta-Llama-3-8B-Instruct", "license", "HF_TOKEN"],
    );
}

#[test]
fn hub_repo_complete_in_the_cache_loads_offline() {
    // A repo laid out in the hub cache as the hub's tools write it
    // (models--owner--name/snapshots/REV + refs/main) loads without network.
    if common::llama3_tokenizer_dir().is_none() {
        return;
    }
    let tmp = common::temp_dir();
    let db = demo_db(tmp.path());
    let hf_home = tmp.path().join("hf");
    let repo_dir = hf_home.join("hub/models--acme--tiny-llama");
    let snapshot = repo_dir.join("snapshots/0123456789abcdef");
    tiny_llama3_dir(&snapshot, 4096).unwrap();
    std::fs::create_dir_all(repo_dir.join("refs")).unwrap();
    std::fs::write(repo_dir.join("refs/main"), "0123456789abcdef").unwrap();
    let out = run_env(
        &[
            "ask",
            "How many tracks?",
            "--db",
            s(&db),
            "--model",
            "acme/tiny-llama",
            "--grammar",
            "none",
            "--no-execute",
            "--max-tokens",
            "4",
            "--threads",
            "1",
            "--format",
            "json",
        ],
        &[
            ("HF_HOME", s(&hf_home)),
            ("HF_ENDPOINT", "http://127.0.0.1:9"),
        ],
    );
    assert_no_panic(&out);
    // Random weights may write no SQL; what matters is that the model loaded
    // from the cache (no hub error).
    assert!(!out.2.contains("hub repo"), "{}", describe(&out));
    assert!(
        out.0 == 0 || out.2.contains("contains no SQL"),
        "{}",
        describe(&out)
    );
}

#[test]
fn bench_reports_speeds_grammar_overhead_and_mask_times() {
    let Some(gguf) = common::smollm2_gguf() else {
        return;
    };
    let tmp = common::temp_dir();
    let set = tmp.path().join("set.jsonl");
    std::fs::write(
        &set,
        "{\"question\":\"How many tracks are there?\",\"sql\":\"SELECT COUNT(*) FROM tracks\"}\n\
         {\"question\":\"List artist names.\",\"sql\":\"SELECT name FROM artists ORDER BY name\"}\n",
    )
    .unwrap();
    let out = run(&[
        "--threads",
        "1",
        "bench",
        "--model",
        s(&gguf),
        "--set",
        s(&set),
        "--questions",
        "1",
        "--max-tokens",
        "32",
        "--format",
        "json",
    ]);
    assert_success(&out);
    let v: serde_json::Value = serde_json::from_str(out.1.trim()).expect("one JSON object");
    assert_eq!(v["questions"], 1, "{}", out.1);
    assert!(
        v["prefill_tokens_per_s"].as_f64().unwrap() > 0.0,
        "{}",
        out.1
    );
    assert!(
        v["decode_tokens_per_s"].as_f64().unwrap() > 0.0,
        "{}",
        out.1
    );
    assert!(
        v["grammar_overhead_pct"].as_f64().unwrap() >= 0.0,
        "{}",
        out.1
    );
    // The grammar's time per step: every step asks it about a token.
    let step = &v["grammar_step_ms"];
    let p99 = v["grammar_step_p99_ms"].as_f64().unwrap();
    assert!(step["median"].as_f64().unwrap() > 0.0, "{}", out.1);
    assert!(p99 >= step["median"].as_f64().unwrap() && step["max"].as_f64().unwrap() >= p99);
    // Tokens fed per emitted token (the last one is never fed); the warm pass is timed.
    let steps = &v["steps_per_token"];
    assert!(steps["median"].as_f64().unwrap() > 0.5, "{}", out.1);
    assert!(steps["max"].as_f64().unwrap() >= steps["p90"].as_f64().unwrap());
    assert!(v["warm_latency_ms"]["median"].as_f64().unwrap() > 0.0);
    // Both gold queries replayed through the grammar, none rejected.
    let replay = &v["mask_replay"];
    assert_eq!(replay["queries"], 2, "{}", out.1);
    assert_eq!(replay["rejected"], 0, "{}", out.1);
    assert!(replay["tokens"].as_u64().unwrap() >= 8, "{}", out.1);
    assert!(replay["full_mask_us"]["median"].as_f64().unwrap() > 0.0);
}

#[test]
fn bench_on_prompt_ids_times_a_prefill_and_every_decode_step() {
    let Some(gguf) = common::smollm2_gguf() else {
        return;
    };
    let tmp = common::temp_dir();
    let ids = tmp.path().join("ids.json");
    std::fs::write(&ids, "[1, 504, 3211, 314, 260, 1345, 30, 2]").unwrap();
    let out = run(&[
        "--threads",
        "1",
        "bench",
        "--model",
        s(&gguf),
        "--prompt-ids",
        s(&ids),
        "--decode-steps",
        "3",
        "--runs",
        "2",
        "--format",
        "json",
    ]);
    assert_success(&out);
    let v: serde_json::Value = serde_json::from_str(out.1.trim()).expect("one JSON object");
    assert_eq!(v["prompt_tokens"], 8, "{}", out.1);
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{}", out.1);
    for r in runs {
        assert_eq!(r["step_ms"].as_array().unwrap().len(), 3);
        assert_eq!(r["tokens"].as_array().unwrap().len(), 3);
    }
    // Greedy on the same ids: every run picks the same tokens.
    assert_eq!(runs[0]["tokens"], runs[1]["tokens"]);
    assert!(v["decode_tokens_per_s"].as_f64().unwrap() > 0.0);
    // On the CPU, the bound the memory sets: read bandwidth over the weights.
    let (read, gb) = (
        v["read_bandwidth_gb_s"].as_f64().unwrap(),
        v["weight_gb"].as_f64().unwrap(),
    );
    assert!(gb > 0.05 && gb < 0.2, "SmolLM2's weights are ~0.1 GB: {gb}");
    let bound = v["decode_bound_tokens_per_s"].as_f64().unwrap();
    assert!((bound - read / gb).abs() < 1e-6 * bound, "{}", out.1);
    // The process's peak holds the weights, and is taken before the
    // bandwidth measurement's 512 MiB buffer.
    let peak = v["peak_rss_mb"].as_f64().unwrap();
    assert!(peak > gb * 1000.0 && peak < 512.0, "peak {peak} MB");

    std::fs::write(&ids, "[1, 2, \"three\"]").unwrap();
    let out = run(&["bench", "--model", s(&gguf), "--prompt-ids", s(&ids)]);
    assert_clean_failure(&out, &["ids.json", "JSON array of token ids"]);
    std::fs::write(&ids, "[1, 99999999]").unwrap();
    let out = run(&["bench", "--model", s(&gguf), "--prompt-ids", s(&ids)]);
    assert_clean_failure(&out, &["99999999", "outside the vocabulary"]);
}

#[test]
fn bench_on_a_shape_builds_random_weights_and_names_the_machine() {
    let out = run(&[
        "--threads",
        "1",
        "bench",
        "--shape",
        "smollm2-135m",
        "--quantize",
        "q8_0",
        "--prompt-tokens",
        "4",
        "--decode-steps",
        "2",
        "--format",
        "json",
    ]);
    assert_success(&out);
    let v: serde_json::Value = serde_json::from_str(out.1.trim()).expect("one JSON object");
    assert_eq!(v["shape"], "smollm2-135m", "{}", out.1);
    assert_eq!(v["weights"], "q8_0", "{}", out.1);
    assert!(v["machine"]["cores"].as_u64().unwrap() >= 1, "{}", out.1);
    // 134.5M weights (the tied head counted once, as it is read once) at 34 bytes per 32.
    let gb = v["weight_gb"].as_f64().unwrap();
    assert!((0.13..0.16).contains(&gb), "{gb}");
    assert!(v["decode_tokens_per_s"].as_f64().unwrap() > 0.0);
    assert!(v["read_bandwidth_gb_s"].as_f64().unwrap() > 0.0);
    assert!(v["peak_rss_mb"].as_f64().unwrap() > 100.0);

    let out = run(&["bench", "--shape", "llama-70b"]);
    assert_clean_failure(&out, &["llama-70b", "llama3.2-1b"]);
    // Answering questions on a shape needs a tokenizer of its vocabulary:
    // the Llama 3 one has 128,256 tokens, SmolLM2's embedding 49,152.
    if let Some(dir) = common::llama3_tokenizer_dir() {
        let out = run(&[
            "--threads",
            "1",
            "bench",
            "--shape",
            "smollm2-135m",
            "--prompt-tokens",
            "4",
            "--decode-steps",
            "2",
            "--tokenizer",
            s(&dir),
            "--set",
            concat!(env!("CARGO_MANIFEST_DIR"), "/test-set.jsonl"),
        ]);
        assert_clean_failure(&out, &["128256 tokens", "49152"]);
    }
}

#[test]
fn bench_bad_set_names_the_file_and_line() {
    let tmp = common::temp_dir();
    let set = tmp.path().join("set.jsonl");
    std::fs::write(
        &set,
        "{\"question\":\"Q\",\"sql\":\"SELECT 1\"}\n{\"question\":\"Q\"}\n",
    )
    .unwrap();
    let out = run(&["bench", "--set", s(&set), "--model", "/nonexistent.gguf"]);
    assert_clean_failure(&out, &["set.jsonl:2:", "missing field `sql`"]);
    let out = run(&["bench", "--questions", "0", "--model", "/nonexistent.gguf"]);
    assert_clean_failure(&out, &["--questions"]);
}

// ---------------------------------------------------------------------------
// --adapter

/// A rank-4 adapter on SmolLM2-135M's layer-0 query projection in `dir`.
fn smollm2_adapter(dir: &Path, seed: u64) {
    use candle_core::{Device, Tensor};
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut random = |rows: usize, cols: usize| {
        let data: Vec<f32> = (0..rows * cols)
            .map(|_| rng.random_range(-0.05f32..0.05))
            .collect();
        Tensor::from_vec(data, (rows, cols), &Device::Cpu).unwrap()
    };
    let mut deltas = std::collections::BTreeMap::new();
    deltas.insert(
        "model.layers.0.self_attn.q_proj".to_string(),
        sqlagent::lora::LoraDelta {
            a: random(4, 576),
            b: random(576, 4),
            scale: 2.0,
        },
    );
    let config = serde_json::json!({"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj"]});
    sqlagent::lora::Adapter::save(dir, &config, &deltas).unwrap();
}

#[test]
fn ask_adapter_missing_directory_names_it() {
    let tmp = common::temp_dir();
    let db = demo_db(tmp.path());
    let missing = tmp.path().join("no-such-adapter");
    let Some(out) = ask_smollm2(&db, QUESTION, &["--adapter", s(&missing)]) else {
        return;
    };
    assert_clean_failure(&out, &[s(&missing), "missing"]);
}

#[test]
fn ask_adapter_choice_is_checked() {
    let tmp = common::temp_dir();
    let db = demo_db(tmp.path());
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    smollm2_adapter(&a, 1);
    smollm2_adapter(&b, 2);
    let a_spec = format!("first={}", s(&a));
    let Some(out) = ask_smollm2(&db, QUESTION, &["--adapter", &a_spec, "--adapter", s(&b)]) else {
        return;
    };
    assert_clean_failure(&out, &["--use", "first, b"]);
    let out = ask_smollm2(&db, QUESTION, &["--adapter", &a_spec, "--use", "second"]).unwrap();
    assert_clean_failure(&out, &["--use", "no adapter named \"second\"", "first"]);
    let out = ask_smollm2(
        &db,
        QUESTION,
        &["--adapter", &a_spec, "--adapter", s(&b), "--merge-adapter"],
    )
    .unwrap();
    assert_clean_failure(&out, &["--merge-adapter", "exactly one"]);
}

#[test]
fn ask_with_an_adapter_attached_or_merged_reports_it() {
    let tmp = common::temp_dir();
    let db = demo_db(tmp.path());
    let dir = tmp.path().join("smol-q");
    smollm2_adapter(&dir, 1);
    let spec = format!("q0={}", s(&dir));
    let Some(out) = ask_smollm2(
        &db,
        QUESTION,
        &["--adapter", &spec, "--no-execute", "--format", "json"],
    ) else {
        return;
    };
    assert_success(&out);
    let v: serde_json::Value = serde_json::from_str(out.1.trim()).expect("JSON object");
    assert_eq!(v["adapter"]["name"], "q0", "{}", out.1);
    assert_eq!(v["adapter"]["slot"], 0, "{}", out.1);
    assert!(v["sql"]
        .as_str()
        .unwrap()
        .to_ascii_uppercase()
        .starts_with("SELECT"));

    let out = ask_smollm2(
        &db,
        QUESTION,
        &[
            "--adapter",
            s(&dir),
            "--merge-adapter",
            "--no-execute",
            "--format",
            "json",
        ],
    )
    .unwrap();
    assert_success(&out);
    let v: serde_json::Value = serde_json::from_str(out.1.trim()).expect("JSON object");
    assert_eq!(v["adapter"]["name"], "smol-q", "{}", out.1);
    assert!(v["adapter"]["slot"].is_null(), "merged: {}", out.1);
}

// ---------------------------------------------------------------------------
// tune

/// The first `n` pairs of `test-set.jsonl` (question and SQL only).
fn train_file(path: &Path, n: usize) {
    let text = std::fs::read_to_string(common::root().join("test-set.jsonl")).unwrap();
    let lines: Vec<String> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(n)
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            serde_json::json!({"question": v["question"], "sql": v["sql"]}).to_string()
        })
        .collect();
    std::fs::write(path, lines.join("\n")).unwrap();
}

/// The prompt length a successful `ask --format json` reports.
fn prompt_tokens(out: &Out) -> u64 {
    assert_success(out);
    let v: serde_json::Value = serde_json::from_str(out.1.trim()).unwrap();
    v["timings"]["prompt_tokens"].as_u64().unwrap()
}

#[test]
fn tune_writes_a_peft_adapter_and_its_record_that_ask_loads() {
    let tmp = common::temp_dir();
    let Some(model) = tiny_llama3_dir(&tmp.path().join("tiny"), 4096) else {
        return;
    };
    let db = demo_db(tmp.path());
    let train = tmp.path().join("pairs.jsonl");
    train_file(&train, 6);
    let out = tmp.path().join("adapter");
    // A prompt of its own, which the adapter then carries.
    let prompt = tmp.path().join("my-prompt");
    std::fs::create_dir_all(&prompt).unwrap();
    for f in ["system.txt", "schema.j2", "examples.jsonl", "user.j2"] {
        std::fs::copy(
            common::root().join("prompts/default").join(f),
            prompt.join(f),
        )
        .unwrap();
    }
    let system = std::fs::read_to_string(prompt.join("system.txt")).unwrap();
    std::fs::write(
        prompt.join("system.txt"),
        format!("{system}\nAnswer with one query and nothing else, please."),
    )
    .unwrap();
    let args = [
        "--threads",
        "1",
        "tune",
        "--train",
        s(&train),
        "--db",
        s(&db),
        "--model",
        s(&model),
        "--prompt",
        s(&prompt),
        "--schema-budget",
        "100000",
        "--out",
        s(&out),
        "--epochs",
        "1",
        "--grad-accum",
        "2",
        "--val-fraction",
        "0.2",
        "--rank",
        "2",
        "--targets",
        "q_proj,v_proj,down_proj",
    ];
    let done = run(&args);
    assert_success(&done);
    assert!(
        done.1.contains("| 1 |"),
        "epoch table:\n{}",
        describe(&done)
    );
    for f in [
        "adapter_config.json",
        "adapter_model.safetensors",
        "training.json",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    assert!(
        !out.join("checkpoint").exists(),
        "checkpoint removed when done"
    );
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("training.json")).unwrap()).unwrap();
    assert_eq!(record["pairs"]["train"], 5);
    assert_eq!(record["pairs"]["validation"], 1);
    assert_eq!(record["epochs"].as_array().unwrap().len(), 1);
    assert!(record["epochs"][0]["val_loss"].is_number());
    assert_eq!(record["hyper_parameters"]["rank"], 2);
    assert_eq!(record["data_sha256"].as_str().unwrap().len(), 64);
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("adapter_config.json")).unwrap())
            .unwrap();
    assert_eq!(config["peft_type"], "LORA");
    assert_eq!(config["r"], 2);
    assert_eq!(record["prompt"], "my-prompt");
    assert_eq!(record["prompt_dir"], "prompt");
    assert_eq!(record["schema_budget"], 100000);
    let carried = sqlagent::chat::PromptSpec::carried_by(&out)
        .unwrap()
        .unwrap();
    assert_eq!(carried.schema_budget(), Some(100000));
    assert!(
        out.join("prompt/system.txt").is_file(),
        "the prompt is carried"
    );
    // So are the pairs, for retrieval.
    let carried_pairs = sqlagent::eval::load_set(&out.join("training-pairs.jsonl")).unwrap();
    assert_eq!(carried_pairs.len(), 6);
    assert_eq!(record["training_pairs"], "training-pairs.jsonl");

    // The adapter answers with the prompt it carries unless --prompt says
    // otherwise (run from a directory without prompts/).
    let ask = |extra: &[&str]| {
        let mut a = vec![
            "--threads",
            "1",
            "ask",
            "How many tracks are there?",
            "--db",
            s(&db),
            "--model",
            s(&model),
            "--adapter",
            s(&out),
            "--no-execute",
            "--max-tokens",
            "24",
            "--format",
            "json",
        ];
        a.extend_from_slice(extra);
        run(&a)
    };
    let carried = prompt_tokens(&ask(&[]));
    assert_eq!(carried, prompt_tokens(&ask(&["--prompt", s(&prompt)])));
    assert!(carried > prompt_tokens(&ask(&["--prompt", "default"])));
    // Carried files that no longer hash as recorded are refused.
    std::fs::write(out.join("prompt/system.txt"), "Write SQL.").unwrap();
    assert_clean_failure(&ask(&[]), &["trained with other files", "prompt"]);
    std::fs::write(
        out.join("prompt/system.txt"),
        std::fs::read_to_string(prompt.join("system.txt")).unwrap(),
    )
    .unwrap();

    // An unfinished run is not overwritten by a fresh one.
    std::fs::create_dir_all(out.join("checkpoint")).unwrap();
    let again = run(&args);
    assert_clean_failure(&again, &["checkpoint", "--resume"]);
}

#[test]
fn tune_pairs_without_a_database_name_the_pair() {
    let tmp = common::temp_dir();
    let Some(model) = tiny_llama3_dir(&tmp.path().join("tiny"), 4096) else {
        return;
    };
    let train = tmp.path().join("pairs.jsonl");
    train_file(&train, 2);
    let out = tmp.path().join("adapter");
    let done = run(&[
        "--threads",
        "1",
        "tune",
        "--train",
        s(&train),
        "--model",
        s(&model),
        "--out",
        s(&out),
    ]);
    assert_clean_failure(&done, &[s(&train), "pair 1", "--db"]);
}

#[test]
fn retrieval_adds_the_nearest_pairs_to_the_prompt_and_names_bad_files() {
    let Some(model) = common::smollm2_gguf() else {
        return;
    };
    let tmp = common::temp_dir();
    let db = demo_db(tmp.path());
    let pairs = tmp.path().join("team.jsonl");
    std::fs::write(
        &pairs,
        "{\"question\": \"How many albums are there?\", \"sql\": \"SELECT COUNT(*) FROM albums\"}\n\
         {\"question\": \"How many tracks does each genre have?\", \"sql\": \"SELECT genre, COUNT(*) FROM tracks GROUP BY genre\"}\n",
    )
    .unwrap();
    let ask = |extra: &[&str]| {
        let mut a = vec![
            "--threads",
            "1",
            "ask",
            "How many tracks are there?",
            "--db",
            s(&db),
            "--model",
            s(&model),
            "--no-execute",
            "--max-tokens",
            "8",
            "--format",
            "json",
        ];
        a.extend_from_slice(extra);
        run(&a)
    };
    let plain = prompt_tokens(&ask(&[]));
    let one = prompt_tokens(&ask(&["--examples", s(&pairs), "--retrieve", "1"]));
    let two = prompt_tokens(&ask(&["--examples", s(&pairs)]));
    assert!(plain < one && one < two, "{plain} {one} {two}");
    assert_eq!(
        prompt_tokens(&ask(&["--examples", s(&pairs), "--retrieve", "0"])),
        plain
    );
    assert_clean_failure(&ask(&["--retrieve", "2"]), &["--retrieve", "--examples"]);
    std::fs::write(&pairs, "{\"question\": \"q\"}\n").unwrap();
    let out = ask(&["--examples", s(&pairs)]);
    assert_ne!(out.0, 0);
    assert!(out.1.contains("team.jsonl: line 1"), "{}", describe(&out));
}

#[test]
fn adapt_refuses_bad_plans_before_loading_the_model() {
    let tmp = common::temp_dir();
    let db = demo_db(tmp.path());
    let out = tmp.path().join("adapted");
    let adapt = |extra: &[&str]| {
        let mut a = vec![
            "adapt",
            "--db",
            s(&db),
            "--out",
            s(&out),
            "--model",
            "models/no-such-model.gguf",
        ];
        a.extend_from_slice(extra);
        run(&a)
    };
    assert_clean_failure(&adapt(&["--pairs", "4"]), &["--pairs", "at least 8"]);
    assert_clean_failure(&adapt(&["--held-out", "0"]), &["--held-out"]);
    let missing = tmp.path().join("missing.jsonl");
    assert_clean_failure(&adapt(&["--eval", s(&missing)]), &[s(&missing)]);
    // A directory holding a run is resumed, never overwritten.
    std::fs::create_dir_all(out.join("adapt")).unwrap();
    std::fs::write(out.join("adapt/plan.json"), "{}").unwrap();
    assert_clean_failure(&adapt(&[]), &["holds a run", "--resume"]);
    assert_clean_failure(&adapt(&["--resume"]), &["--resume", "was started with"]);
}

// ---------------------------------------------------------------------------
// synth

#[test]
fn synth_keeps_only_pairs_that_run_return_rows_and_stay_clear_of_the_eval_set() {
    let tmp = common::temp_dir();
    let db = demo_db(tmp.path());
    let test_set = common::root().join("test-set.jsonl");
    let out = tmp.path().join("pairs.jsonl");
    let args = [
        "synth",
        "--db",
        s(&db),
        "--out",
        s(&out),
        "-n",
        "150",
        "--exclude",
        s(&test_set),
        "--seed",
        "7",
    ];
    let done = run(&args);
    assert_success(&done);
    assert!(done.1.starts_with("kept 150 of "), "{}", describe(&done));
    assert!(done.1.contains("rejected"), "{}", describe(&done));
    let text = std::fs::read_to_string(&out).unwrap();
    let pairs: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(pairs.len(), 150);

    let eval: Vec<(String, String)> = sqlagent::eval::load_set(&test_set)
        .unwrap()
        .into_iter()
        .map(|i| (i.question, i.sql))
        .collect();
    let eval_sql: std::collections::HashSet<String> = eval
        .iter()
        .map(|(_, s)| sqlagent::synth::normalized_sql(s))
        .collect();
    let database = sqlagent::sql::Database::open(&db).unwrap();
    let mut shapes = std::collections::HashMap::new();
    let mut templates = std::collections::HashMap::new();
    for p in &pairs {
        let sql = p["sql"].as_str().unwrap();
        let rows = database
            .execute(sql, &sqlagent::sql::ExecLimits::default())
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert!(!rows.rows.is_empty(), "{sql} returns no rows");
        assert!(
            !eval_sql.contains(&sqlagent::synth::normalized_sql(sql)),
            "{sql} is a test-set query"
        );
        *shapes.entry(sqlagent::synth::skeleton(sql)).or_insert(0) += 1;
        *templates
            .entry(p["source"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    assert!(shapes.values().all(|&n| n <= 3), "at most 3 per shape");
    assert!(templates.len() >= 35, "many templates: {templates:?}");
    // Dealt template by template: no kind of question crowds out the rest.
    assert!(
        templates.values().all(|&n| n <= 7),
        "templates evenly represented: {templates:?}"
    );
    for t in [
        "join_count",
        "lookup",
        "superlative",
        "group_superlative",
        "distinct_count",
        "value_count",
        "year_range_count",
        "group_having",
        "above_average",
        "join_value_count",
        "join2_filter",
    ] {
        assert!(
            templates.contains_key(&format!("template:{t}")),
            "{t} in {templates:?}"
        );
    }
    // Lookups name rows beyond the three samples the prompt shows.
    let shown: Vec<String> = database.schema().unwrap().tables[2].columns[2]
        .samples
        .clone();
    let named_others = pairs.iter().any(|p| {
        let sql = p["sql"].as_str().unwrap();
        sql.contains("WHERE title = '") && !shown.iter().any(|v| sql.ends_with(v.as_str()))
    });
    assert!(named_others, "values drawn from the whole table");

    // The same seed gives the same file; --out is not overwritten silently.
    let again = run(&args);
    assert_clean_failure(&again, &[s(&out), "--force"]);
    let mut forced = args.to_vec();
    forced.push("--force");
    assert_success(&run(&forced));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), text);
}

#[test]
fn synth_from_the_model_needs_seeds_and_fills_the_rest_from_templates() {
    let tmp = common::temp_dir();
    let db = demo_db(tmp.path());
    let out = tmp.path().join("pairs.jsonl");
    let no_seeds = run(&[
        "synth",
        "--db",
        s(&db),
        "--out",
        s(&out),
        "-n",
        "5",
        "--from-model",
        "2",
    ]);
    assert_clean_failure(&no_seeds, &["--seed-set"]);
    let Some(gguf) = common::smollm2_gguf() else {
        return;
    };
    let seeds = common::root().join("test-set.jsonl");
    let done = run(&[
        "--threads",
        "1",
        "synth",
        "--db",
        s(&db),
        "--out",
        s(&out),
        "-n",
        "6",
        "--from-model",
        "1",
        "--seed-set",
        s(&seeds),
        "--model",
        s(&gguf),
        "--seed",
        "3",
    ]);
    assert_success(&done);
    let pairs: Vec<serde_json::Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(pairs.len(), 6, "{}", describe(&done));
    let database = sqlagent::sql::Database::open(&db).unwrap();
    for p in &pairs {
        let sql = p["sql"].as_str().unwrap();
        let rows = database
            .execute(sql, &sqlagent::sql::ExecLimits::default())
            .unwrap();
        assert!(!rows.rows.is_empty(), "{sql}");
    }
}

// ---------------------------------------------------------------------------
// tune --backend lamini

/// Requests a fake Lamini saw: (method and path, authorization, body).
type LaminiSeen = std::sync::Arc<std::sync::Mutex<Vec<(String, String, serde_json::Value)>>>;

/// A stand-in for Lamini's tuning API on 127.0.0.1: `POST /v1/train`
/// answers job 42 SCHEDULED; `GET /v1/train/jobs/42` answers TRAINING
/// MODEL once, then `last` (with a model name when COMPLETED).
fn fake_lamini(last: &'static str, seen: LaminiSeen) -> String {
    let mut polls = 0;
    common::serve_json(move |request| {
        let target = request.target.clone();
        seen.lock().unwrap().push((
            target.clone(),
            request.authorization.clone(),
            request.body.clone(),
        ));
        let reply = match target.as_str() {
            "POST /v1/train" => r#"{"job_id": 42, "status": "SCHEDULED"}"#.to_string(),
            "GET /v1/train/jobs/42" => {
                polls += 1;
                if polls == 1 {
                    r#"{"job_id": 42, "status": "TRAINING MODEL", "model_name": null}"#.to_string()
                } else if last == "COMPLETED" {
                    r#"{"job_id": 42, "status": "COMPLETED", "model_name": "tuned-abc123"}"#
                        .to_string()
                } else {
                    format!(r#"{{"job_id": 42, "status": "{last}", "model_name": null}}"#)
                }
            }
            _ => r#"{"error": "no such route"}"#.to_string(),
        };
        ("200 OK", reply)
    })
}

/// A stand-in Lamini that fails: the first `submit_failures` submissions
/// answer 503 (then job 42 SCHEDULED); polls answer 502 once and then
/// COMPLETED, or always 500 when `polls_fail`.
fn flaky_lamini(submit_failures: usize, polls_fail: bool, seen: LaminiSeen) -> String {
    let (mut submits, mut polls) = (0, 0);
    common::serve_json(move |request| {
        seen.lock().unwrap().push((
            request.target.clone(),
            request.authorization.clone(),
            request.body.clone(),
        ));
        match request.target.as_str() {
            "POST /v1/train" => {
                submits += 1;
                if submits <= submit_failures {
                    (
                        "503 Service Unavailable",
                        r#"{"error": "busy"}"#.to_string(),
                    )
                } else {
                    (
                        "200 OK",
                        r#"{"job_id": 42, "status": "SCHEDULED"}"#.to_string(),
                    )
                }
            }
            "GET /v1/train/jobs/42" => {
                polls += 1;
                if polls_fail {
                    (
                        "500 Internal Server Error",
                        r#"{"error": "down"}"#.to_string(),
                    )
                } else if polls == 1 {
                    ("502 Bad Gateway", r#"{"error": "gateway"}"#.to_string())
                } else {
                    (
                        "200 OK",
                        r#"{"job_id": 42, "status": "COMPLETED", "model_name": "tuned-abc123"}"#
                            .to_string(),
                    )
                }
            }
            _ => ("404 Not Found", r#"{"error": "no such route"}"#.to_string()),
        }
    })
}

#[test]
fn tune_on_lamini_retries_failed_requests_and_gives_up_on_a_job_it_cannot_reach() {
    let tmp = common::temp_dir();
    let db = demo_db(tmp.path());
    let train = tmp.path().join("pairs.jsonl");
    train_file(&train, 3);
    let run = |url: &str, out: &Path| {
        run_env(
            &[
                "tune",
                "--backend",
                "lamini",
                "--lamini-url",
                url,
                "--poll-s",
                "0",
                "--train",
                s(&train),
                "--db",
                s(&db),
                "--out",
                s(out),
            ],
            &[("LAMINI_API_KEY", "test-key")],
        )
    };
    // Two 503s on submit and a 502 on the first poll: retried through.
    let seen = LaminiSeen::default();
    let url = flaky_lamini(2, false, seen.clone());
    let out = tmp.path().join("retried");
    let done = run(&url, &out);
    assert_success(&done);
    assert!(done.1.contains("tuned-abc123"), "{}", describe(&done));
    let targets: Vec<String> = seen.lock().unwrap().iter().map(|r| r.0.clone()).collect();
    assert_eq!(
        targets,
        [
            "POST /v1/train",
            "POST /v1/train",
            "POST /v1/train",
            "GET /v1/train/jobs/42",
            "GET /v1/train/jobs/42"
        ]
    );

    // Polls that keep failing: it gives up naming the job and --resume,
    // and the record does not call the job failed.
    let seen = LaminiSeen::default();
    let url = flaky_lamini(0, true, seen.clone());
    let out = tmp.path().join("lost");
    let lost = run(&url, &out);
    assert_clean_failure(&lost, &["tuning job 42", "--resume", "lamini.json"]);
    let polls = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.0 == "GET /v1/train/jobs/42")
        .count();
    assert_eq!(polls, sqlagent::tune::lamini::LAMINI_ATTEMPTS);
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("lamini.json")).unwrap()).unwrap();
    assert_eq!(record["status"], "SCHEDULED");
}

#[test]
fn tune_on_lamini_sends_the_rendered_pairs_polls_the_job_and_records_the_model() {
    let tmp = common::temp_dir();
    let db = demo_db(tmp.path());
    let train = tmp.path().join("pairs.jsonl");
    train_file(&train, 3);
    let out = tmp.path().join("adapter");
    let seen = LaminiSeen::default();
    let url = fake_lamini("COMPLETED", seen.clone());
    let args = [
        "tune",
        "--backend",
        "lamini",
        "--lamini-url",
        &url,
        "--poll-s",
        "0",
        "--train",
        s(&train),
        "--db",
        s(&db),
        "--out",
        s(&out),
        "--lamini-model",
        "meta-llama/Llama-3.2-3B",
    ];
    let done = run_env(&args, &[("LAMINI_API_KEY", "k-123")]);
    assert_success(&done);
    assert!(done.1.contains("tuned-abc123"), "{}", describe(&done));

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen[0].0, "POST /v1/train");
    assert_eq!(seen[0].1, "Bearer k-123");
    let body = &seen[0].2;
    assert_eq!(body["model_name"], "meta-llama/Llama-3.2-3B");
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    let first_question = sqlagent::eval::load_set(&train).unwrap()[0]
        .question
        .clone();
    let input = data[0]["input"].as_str().unwrap();
    assert!(
        input.starts_with("<|begin_of_text|><|start_header_id|>system"),
        "{input}"
    );
    assert!(
        input.contains("CREATE TABLE") && input.contains(&first_question),
        "{input}"
    );
    assert!(
        input.ends_with("<|start_header_id|>assistant<|end_header_id|>\n\n"),
        "{input}"
    );
    assert!(data[0]["output"].as_str().unwrap().ends_with(';'));
    assert!(seen[1..]
        .iter()
        .all(|r| r.0 == "GET /v1/train/jobs/42" && r.1 == "Bearer k-123"));
    assert_eq!(seen.len(), 3, "submitted once, polled until completed");

    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("lamini.json")).unwrap()).unwrap();
    assert_eq!(record["job_id"], "42");
    assert_eq!(record["status"], "COMPLETED");
    assert_eq!(record["model_name"], "tuned-abc123");
    assert_eq!(record["pairs"], 3);

    // A second submission into the same --out is refused; --resume follows the job.
    let again = run_env(&args, &[("LAMINI_API_KEY", "k-123")]);
    assert_clean_failure(&again, &["lamini.json", "--resume"]);
}

#[test]
fn tune_on_lamini_without_a_key_or_with_a_failed_job_says_so() {
    let tmp = common::temp_dir();
    let db = demo_db(tmp.path());
    let train = tmp.path().join("pairs.jsonl");
    train_file(&train, 2);
    let seen = LaminiSeen::default();
    let url = fake_lamini("FAILED", seen.clone());
    let out = tmp.path().join("adapter");
    let args = [
        "tune",
        "--backend",
        "lamini",
        "--lamini-url",
        &url,
        "--poll-s",
        "0",
        "--train",
        s(&train),
        "--db",
        s(&db),
        "--out",
        s(&out),
    ];
    let no_key = run(&args);
    assert_clean_failure(&no_key, &["LAMINI_API_KEY", "not set"]);
    assert!(
        seen.lock().unwrap().is_empty(),
        "nothing sent without a key"
    );
    let failed = run_env(&args, &[("LAMINI_API_KEY", "k")]);
    assert_clean_failure(&failed, &["job 42", "FAILED"]);
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("lamini.json")).unwrap()).unwrap();
    assert_eq!(record["status"], "FAILED");
}

/// A child process on a pseudo-terminal of its own (its controlling
/// terminal, so that Ctrl-C typed there is a SIGINT), and all it wrote.
struct Terminal {
    child: std::process::Child,
    master: std::fs::File,
    output: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Terminal {
    fn spawn(args: &[&str]) -> Terminal {
        use std::os::fd::{FromRawFd, OwnedFd};
        use std::os::unix::process::CommandExt;
        let (mut master, mut slave) = (0, 0);
        let size = libc::winsize {
            ws_row: 40,
            ws_col: 120,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: openpty writes two new descriptors, owned from here on.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                &size,
            )
        };
        assert_eq!(rc, 0, "openpty");
        let (master, slave) =
            unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sqlagent"));
        cmd.args(args)
            .current_dir(std::env::temp_dir())
            .env("TERM", "xterm")
            // The test watches for the dimmed streaming text.
            .env_remove("NO_COLOR")
            .stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave));
        for var in SCRUBBED_ENV {
            cmd.env_remove(var);
        }
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("run sqlagent on a terminal");
        drop(cmd);
        let master = std::fs::File::from(master);
        let output = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut reader = master.try_clone().unwrap();
        let sink = std::sync::Arc::clone(&output);
        std::thread::spawn(move || {
            use std::io::Read;
            let mut buf = [0u8; 4096];
            // Ends with EIO once the child has closed the terminal.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Terminal {
            child,
            master,
            output,
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    /// Waits until `pattern` appears after byte `from`; returns where it ends.
    fn wait_for(&self, pattern: &str, from: usize) -> usize {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            let text = self.text();
            if let Some(at) = text.get(from..).and_then(|t| t.find(pattern)) {
                return from + at + pattern.len();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no {pattern:?} after byte {from}; the terminal shows:\n{text}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    fn type_keys(&mut self, keys: &str) {
        use std::io::Write;
        self.master.write_all(keys.as_bytes()).unwrap();
        self.master.flush().unwrap();
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn chat_on_a_terminal_edits_lines_keeps_history_and_goes_on_after_ctrl_c() {
    let tmp = common::temp_dir();
    let db = demo_db(tmp.path());
    let Some(asked) = ask_smollm2(&db, QUESTION, &["--format", "json"]) else {
        return;
    };
    assert_success(&asked);
    let asked: serde_json::Value = serde_json::from_str(asked.1.trim()).unwrap();
    let gguf = common::smollm2_gguf().unwrap();
    let history = tmp.path().join("history");
    let mut term = Terminal::spawn(&[
        "--threads",
        "1",
        "chat",
        "--db",
        s(&db),
        "--model",
        s(&gguf),
        "--max-tokens",
        "48",
        "--history",
        s(&history),
    ]);
    let mut at = term.wait_for("schema prefilled", 0);
    at = term.wait_for("sql> ", at);

    // A question: the SQL `ask` writes, and its rows.
    term.type_keys(&format!("{QUESTION}\r"));
    let sql_line = format!("{};", asked["sql"].as_str().unwrap());
    at = term.wait_for(&sql_line, at);
    at = term.wait_for(" row", at);
    at = term.wait_for("prompt ", at);
    at = term.wait_for("sql> ", at);

    // Ctrl-C at the prompt clears the line; the up arrow recalls the last
    // question, which is answered again.
    term.type_keys("half a quest");
    term.type_keys("\x03");
    at = term.wait_for("sql> ", at);
    term.type_keys("\x1b[A\r");
    at = term.wait_for(&sql_line, at);
    at = term.wait_for("sql> ", at);

    // Ctrl-C while an answer is written stops it (or comes as it ends);
    // either way the conversation goes on.
    term.type_keys("Which tracks have the highest popularity?\r");
    at = term.wait_for("\x1b[2m", at);
    term.type_keys("\x03");
    at = term.wait_for("sql> ", at);
    assert!(
        term.child.try_wait().unwrap().is_none(),
        "Ctrl-C ended the conversation:\n{}",
        term.text()
    );
    term.type_keys(".tables\r");
    at = term.wait_for("artists (40 rows)", at);
    term.type_keys(".quit\r");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = term.child.try_wait().unwrap() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "{}", term.text());
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}:\n{}", term.text());
    let _ = at;
    let kept = std::fs::read_to_string(&history).unwrap();
    assert!(kept.contains(QUESTION), "{kept}");
    assert!(kept.contains(".tables"), "{kept}");
    assert!(!kept.contains("half a quest"), "{kept}");
}

#[test]
fn models_lists_the_folder_and_the_hub_cache_with_format_size_and_weights() {
    let Some(gguf) = common::smollm2_gguf() else {
        return;
    };
    let tmp = common::temp_dir();
    let folder = tmp.path().join("models");
    std::fs::create_dir_all(folder.join("nested")).unwrap();
    std::os::unix::fs::symlink(&gguf, folder.join("nested/smol.gguf")).unwrap();
    std::fs::write(
        folder.join("cut.gguf"),
        &std::fs::read(&gguf).unwrap()[..4096],
    )
    .unwrap();
    let cache = tmp.path().join("hub");
    let snapshot = cache.join("models--acme--tiny-llama/snapshots/abc");
    if tiny_llama3_dir(&snapshot, 4096).is_none() {
        return;
    }
    let out = run_env(
        &["models", "--dir", s(&folder), "--format", "json"],
        &[("HF_HUB_CACHE", s(&cache))],
    );
    assert_success(&out);
    let found: serde_json::Value = serde_json::from_str(&out.1).unwrap();
    let by_name = |name: &str| -> serde_json::Value {
        found
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"].as_str().unwrap().ends_with(name))
            .cloned()
            .unwrap_or_else(|| panic!("no {name}: {found}"))
    };
    let smol = by_name("smol.gguf");
    assert_eq!(smol["format"], "gguf");
    assert_eq!(smol["weights"], "q4_1");
    assert_eq!(
        smol["bytes"].as_u64().unwrap(),
        std::fs::metadata(&gguf).unwrap().len()
    );
    assert!(smol["problem"].is_null());
    assert!(by_name("cut.gguf")["problem"].is_string());
    let repo = by_name("acme/tiny-llama");
    assert_eq!(repo["format"], "safetensors");
    assert_eq!(repo["origin"], "hub cache");
    assert_eq!(repo["weights"], "f32");
    assert!(repo["problem"].is_null(), "{repo}");

    let text = run_env(
        &["models", "--dir", s(&folder)],
        &[("HF_HUB_CACHE", s(&cache))],
    );
    assert_success(&text);
    assert!(text.1.contains("acme/tiny-llama"), "{}", text.1);
}

#[test]
fn failures_exit_with_their_class_and_one_json_object_under_format_json() {
    let tmp = common::temp_dir();
    let db = demo_db(tmp.path());
    let missing = tmp.path().join("missing.db");
    // A database that cannot be opened: 3, with the path.
    let out = run(&["schema", "--db", s(&missing), "--format", "json"]);
    assert_eq!(out.0, 3, "{}", describe(&out));
    let lines: Vec<&str> = out.1.lines().collect();
    assert_eq!(lines.len(), 1, "{}", describe(&out));
    let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(v["error"]["kind"], "database");
    assert_eq!(v["error"]["path"], s(&missing));
    // Bad input: 2.
    let Some(gguf) = common::smollm2_gguf() else {
        return;
    };
    let out = run(&[
        "ask",
        "  ",
        "--db",
        s(&db),
        "--model",
        s(&gguf),
        "--format",
        "json",
    ]);
    assert_eq!(out.0, 2, "{}", describe(&out));
    let v: serde_json::Value = serde_json::from_str(out.1.trim()).unwrap();
    assert_eq!(v["error"]["kind"], "invalid");
    // A model that cannot be loaded: 3.
    let out = run(&["models", "--dir", s(tmp.path()), "--format", "json"]);
    assert_success(&out);
    let cut = tmp.path().join("cut.gguf");
    std::fs::write(&cut, &std::fs::read(&gguf).unwrap()[..1000]).unwrap();
    let out = run(&[
        "ask",
        QUESTION,
        "--db",
        s(&db),
        "--model",
        s(&cut),
        "--format",
        "json",
    ]);
    assert_eq!(out.0, 3, "{}", describe(&out));
    let v: serde_json::Value = serde_json::from_str(out.1.trim()).unwrap();
    assert_eq!(v["error"]["kind"], "model");
    // SQL that does not run (one token of it, without the grammar): 4, and
    // the answer's own object is the only one printed.
    let out = run(&[
        "--threads",
        "1",
        "ask",
        QUESTION,
        "--db",
        s(&db),
        "--model",
        s(&gguf),
        "--grammar",
        "none",
        "--max-tokens",
        "1",
        "--format",
        "json",
    ]);
    assert_eq!(out.0, 4, "{}", describe(&out));
    let lines: Vec<&str> = out.1.lines().collect();
    assert_eq!(lines.len(), 1, "{}", describe(&out));
    let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert!(v["error"].is_string(), "{v}");
    assert_eq!(v["question"], QUESTION);
    // NO_COLOR: nothing coloured on stderr.
    let out = run_env(&["schema", "--db", s(&missing)], &[("NO_COLOR", "1")]);
    assert!(!out.2.contains('\x1b'), "{:?}", out.2);
}

/// Under `--format json`, every command answers with one JSON object on
/// stdout — its result, or the error —, and flag mistakes (clap's or our
/// own checks) exit 2 as kind "usage".
#[test]
fn every_command_speaks_json_and_flag_mistakes_exit_2() {
    let tmp = common::temp_dir();
    let db = demo_db(tmp.path());
    let one_object = |out: &Out| -> serde_json::Value {
        let lines: Vec<&str> = out.1.lines().collect();
        assert_eq!(lines.len(), 1, "{}", describe(out));
        serde_json::from_str(lines[0]).unwrap()
    };
    // Results.
    let csv = tmp.path().join("songs.csv");
    std::fs::write(&csv, "title,plays\nA,3\nB,4\n").unwrap();
    let out_db = tmp.path().join("songs.db");
    let out = run(&[
        "import",
        s(&csv),
        "--db",
        s(&out_db),
        "--table",
        "songs",
        "--format",
        "json",
    ]);
    assert_success(&out);
    let v = one_object(&out);
    assert_eq!(
        (v["table"].as_str(), v["rows"].as_u64()),
        (Some("songs"), Some(2))
    );
    assert_eq!(
        v["columns"][1],
        serde_json::json!({"name": "plays", "type": "INTEGER"})
    );
    let out = run(&["grammar", "--db", s(&db), "--format", "json"]);
    assert_success(&out);
    assert!(one_object(&out)["grammar"]
        .as_str()
        .unwrap()
        .contains("SELECT"));
    let demo = tmp.path().join("demo.db");
    let out = run(&["demo-db", "--out", s(&demo), "--format", "json"]);
    assert_success(&out);
    assert!(one_object(&out)["tables"]
        .as_array()
        .is_some_and(|t| !t.is_empty()));
    // Failures: a CSV that is not there (the file named), our own flag
    // checks, and clap's.
    let missing = tmp.path().join("missing.csv");
    let out = run(&[
        "import",
        s(&missing),
        "--db",
        s(&out_db),
        "--table",
        "t",
        "--format",
        "json",
    ]);
    assert_ne!(out.0, 0, "{}", describe(&out));
    assert!(one_object(&out)["error"]["message"]
        .as_str()
        .unwrap()
        .contains("missing.csv"));
    let pairs = tmp.path().join("pairs.jsonl");
    let out = run(&[
        "synth",
        "--db",
        s(&db),
        "--out",
        s(&pairs),
        "-n",
        "0",
        "--format",
        "json",
    ]);
    assert_eq!(out.0, 2, "{}", describe(&out));
    assert_eq!(one_object(&out)["error"]["kind"], "usage");
    let out = run(&["synth", "--db", s(&db), "--out", s(&pairs), "-n", "0"]);
    assert_eq!(out.0, 2, "{}", describe(&out));
    assert!(
        out.1.is_empty() && out.2.contains("-n must be at least 1"),
        "{}",
        describe(&out)
    );
    let out = run(&[
        "schema",
        "--db",
        s(&db),
        "--no-such-flag",
        "--format",
        "json",
    ]);
    assert_eq!(out.0, 2, "{}", describe(&out));
    let v = one_object(&out);
    assert_eq!(v["error"]["kind"], "usage");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--no-such-flag"),
        "{v}"
    );
    let out = run(&["eval", "compare", "a.json", "b.json", "--format", "json"]);
    assert_ne!(out.0, 0, "{}", describe(&out));
    assert!(one_object(&out)["error"]["message"]
        .as_str()
        .unwrap()
        .contains("a.json"));
}
