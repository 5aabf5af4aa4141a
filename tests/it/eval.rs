//! `sqlagent eval` end to end with a random-weight tiny Llama 3 (fast, and
//! under the grammar its SQL is always valid): the report's numbers and
//! config, broken gold queries, `--out` with `--resume`, and bad input.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common;
use crate::tiny::tiny_llama3_dir;

fn sqlagent(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sqlagent"))
        .args(args)
        .env_remove("SQLAGENT_MODEL")
        .env_remove("SQLAGENT_DB")
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .expect("run sqlagent");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The demo database, a set of three items (one with a broken gold query)
/// and the tiny model, in `dir`.
fn fixture(dir: &Path) -> Option<(PathBuf, PathBuf, PathBuf)> {
    let model = tiny_llama3_dir(&dir.join("tiny"), 4096)?;
    let db = dir.join("music.db");
    sqlagent_ok(&["demo-db", "--out", db.to_str().unwrap()]);
    let set = dir.join("set.jsonl");
    std::fs::write(
        &set,
        "{\"question\":\"How many artists?\",\"sql\":\"SELECT COUNT(*) FROM artists\",\"tags\":[\"easy\"]}\n\
         {\"question\":\"Broken gold\",\"sql\":\"SELECT nope FROM artists\"}\n\
         {\"question\":\"Artist names\",\"sql\":\"SELECT name FROM artists ORDER BY name\",\"tags\":[\"easy\",\"order\"]}\n",
    )
    .unwrap();
    Some((model, db, set))
}

fn sqlagent_ok(args: &[&str]) -> String {
    let (code, out, err) = sqlagent(args);
    assert_eq!(code, 0, "sqlagent {args:?} failed:\n{err}");
    assert!(!err.contains("panicked"), "{err}");
    out
}

fn eval_args<'a>(model: &'a str, db: &'a str, set: &'a str) -> Vec<&'a str> {
    vec![
        "--threads",
        "1",
        "eval",
        "--set",
        set,
        "--db",
        db,
        "--model",
        model,
        "--max-tokens",
        "24",
    ]
}

#[test]
fn eval_reports_validity_accuracy_categories_and_broken_items() {
    let tmp = common::temp_dir();
    let Some((model, db, set)) = fixture(tmp.path()) else {
        return;
    };
    let (m, d, s) = (
        model.to_str().unwrap(),
        db.to_str().unwrap(),
        set.to_str().unwrap(),
    );
    let mut args = eval_args(m, d, s);
    args.extend(["--format", "json"]);
    let report: serde_json::Value = serde_json::from_str(&sqlagent_ok(&args)).unwrap();
    let summary = &report["summary"];
    assert_eq!(summary["items"], 2, "{summary}");
    assert_eq!(summary["broken"], 1);
    assert_eq!(report["broken"][0]["question"], "Broken gold");
    // Under the grammar every answer is valid SQL, whatever the weights.
    assert_eq!(summary["valid_sql_pct"], 100.0, "{report}");
    let by_category = summary["by_category"].as_object().unwrap();
    assert_eq!(
        by_category
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum::<u64>(),
        2
    );
    assert_eq!(summary["by_tag"]["easy"]["items"], 2);
    assert_eq!(summary["by_tag"]["order"]["items"], 1);
    let config = &report["config"];
    for key in ["model_fingerprint", "prompt_hash", "set_hash"] {
        assert_eq!(config[key].as_str().unwrap().len(), 64, "{key}: {config}");
    }
    assert_eq!(config["grammar"], "schema");
    let items = report["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["index"], 0);
    assert_eq!(items[1]["index"], 2);
    assert!(items
        .iter()
        .all(|i| i["valid_sql"] == true && !i["sql"].as_str().unwrap().is_empty()));
    // The whole reply is kept; under the grammar it is the query itself.
    for item in items {
        let (reply, sql) = (
            item["reply"].as_str().unwrap(),
            item["sql"].as_str().unwrap(),
        );
        assert!(reply.contains(sql.trim_end_matches(';')), "{item}");
    }
}

#[test]
fn eval_out_keeps_every_item_and_resume_runs_only_the_rest() {
    let tmp = common::temp_dir();
    let Some((model, db, set)) = fixture(tmp.path()) else {
        return;
    };
    let out = tmp.path().join("run");
    let (m, d, s, o) = (
        model.to_str().unwrap(),
        db.to_str().unwrap(),
        set.to_str().unwrap(),
        out.to_str().unwrap(),
    );
    let mut args = eval_args(m, d, s);
    args.extend(["--out", o]);
    let text = sqlagent_ok(&args);
    assert!(text.contains("| items | valid SQL | correct |"), "{text}");
    for f in [
        "config.json",
        "items.jsonl",
        "report.json",
        "report.md",
        "report.svg",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    let items = std::fs::read_to_string(out.join("items.jsonl")).unwrap();
    assert_eq!(items.lines().count(), 3, "{items}");

    // A crash cut the last line and lost it: --resume drops the cut line,
    // keeps the others untouched, and runs only the missing item.
    let lines: Vec<&str> = items.lines().collect();
    let cut = format!("{}\n{}\n{}", lines[0], lines[1], &lines[2][..10]);
    std::fs::write(out.join("items.jsonl"), &cut).unwrap();
    let again = sqlagent(&args);
    assert_ne!(again.0, 0, "a second run into the same --out must refuse");
    assert!(again.2.contains("--resume"), "{}", again.2);
    args.push("--resume");
    sqlagent_ok(&args);
    let resumed = std::fs::read_to_string(out.join("items.jsonl")).unwrap();
    let resumed: Vec<&str> = resumed.lines().collect();
    assert_eq!(resumed.len(), 3);
    assert_eq!(
        &resumed[..2],
        &lines[..2],
        "kept lines must not be rewritten"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["summary"]["items"], 2);
    assert_eq!(report["summary"]["broken"], 1);

    // Resuming with other settings is refused, naming the setting.
    let mut other = args.clone();
    other.extend(["--limit", "1"]);
    let (code, _, err) = sqlagent(&other);
    assert_ne!(code, 0);
    assert!(err.contains("limit"), "{err}");
}

#[test]
fn eval_bad_input_names_the_problem() {
    let tmp = common::temp_dir();
    let set = tmp.path().join("set.jsonl");
    std::fs::write(&set, "{\"question\":\"Q\",\"sql\":\"SELECT 1\"}\n").unwrap();
    let s = set.to_str().unwrap();
    let (code, _, err) = sqlagent(&["eval", "--set", s, "--model", "/nonexistent.gguf"]);
    assert_ne!(code, 0);
    assert!(err.contains("set.jsonl") && err.contains("--db"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    std::fs::write(
        &set,
        "{\"question\":\"Q\",\"sql\":\"SELECT 1\"}\nnot json\n",
    )
    .unwrap();
    let (code, _, err) = sqlagent(&["eval", "--set", s, "--db", s, "--model", "/x.gguf"]);
    assert_ne!(code, 0);
    assert!(err.contains("set.jsonl:2:"), "{err}");
}

#[test]
fn eval_reads_spider_dev_json_directly_and_smollm2_stays_valid() {
    let (Some(data), Some(gguf)) = (common::shared_data(), common::smollm2_gguf()) else {
        return;
    };
    let spider = data.join("spider");
    let (code, out, err) = sqlagent(&[
        "--threads",
        "1",
        "eval",
        "--set",
        spider.join("dev.json").to_str().unwrap(),
        "--db-dir",
        spider.join("database").to_str().unwrap(),
        "--limit",
        "3",
        "--sample-seed",
        "7",
        "--model",
        gguf.to_str().unwrap(),
        "--max-tokens",
        "64",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let summary = &report["summary"];
    assert_eq!(
        summary["items"].as_u64().unwrap() + summary["broken"].as_u64().unwrap(),
        3,
        "{summary}"
    );
    // Each item ran on its own Spider database, tagged with its db_id.
    for item in report["items"].as_array().unwrap() {
        let tag = item["tags"][0].as_str().unwrap();
        assert!(item["db"]
            .as_str()
            .unwrap()
            .ends_with(&format!("{tag}/{tag}.sqlite")));
        assert_eq!(item["valid_sql"], true, "{item}");
    }
    assert_eq!(report["config"]["sample_seed"], 7);
}

#[test]
fn eval_compare_prints_the_table_and_the_flips_with_mcnemar() {
    let tmp = common::temp_dir();
    let Some((model, db, set)) = fixture(tmp.path()) else {
        return;
    };
    let a = tmp.path().join("a");
    let (m, d, s) = (
        model.to_str().unwrap(),
        db.to_str().unwrap(),
        set.to_str().unwrap(),
    );
    let mut args = eval_args(m, d, s);
    args.extend(["--out", a.to_str().unwrap()]);
    sqlagent_ok(&args);
    // Run B: the same items, the first one graded the other way.
    let mut report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(a.join("report.json")).unwrap()).unwrap();
    let was = report["items"][0]["execution_match"].as_bool().unwrap();
    report["items"][0]["execution_match"] = serde_json::json!(!was);
    let b = tmp.path().join("b.json");
    std::fs::write(&b, report.to_string()).unwrap();

    let out = sqlagent_ok(&["eval", "compare", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert!(
        out.contains("| run | model | prompt | grammar | items | valid SQL % | correct % |"),
        "{out}"
    );
    assert_eq!(
        out.lines().filter(|l| l.starts_with("| ")).count(),
        3,
        "{out}"
    );
    assert!(out.contains("2 items in common"), "{out}");
    assert!(
        out.contains("McNemar exact p = 1.0000 (could be noise)"),
        "{out}"
    );
    assert!(
        out.contains("How many artists?"),
        "the flipped item is named:\n{out}"
    );

    let (code, _, err) = sqlagent(&["eval", "compare", a.to_str().unwrap()]);
    assert_ne!(code, 0, "one run is nothing to compare");
    assert!(!err.contains("panicked"), "{err}");
    let (code, _, err) = sqlagent(&["eval", "compare", s, b.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("set.jsonl is not an eval report"), "{err}");
}

#[test]
fn eval_retries_show_the_error_and_report_first_attempt_and_final_figures() {
    let tmp = common::temp_dir();
    let Some((model, db, set)) = fixture(tmp.path()) else {
        return;
    };
    let (m, d, s) = (
        model.to_str().unwrap(),
        db.to_str().unwrap(),
        set.to_str().unwrap(),
    );
    // Without the grammar a random-weight model writes no valid SQL, so
    // every item uses all its attempts.
    let mut args = eval_args(m, d, s);
    args.extend(["--grammar", "none", "--retries", "2", "--format", "json"]);
    let report: serde_json::Value = serde_json::from_str(&sqlagent_ok(&args)).unwrap();
    assert_eq!(report["config"]["retries"], 2);
    for item in report["items"].as_array().unwrap() {
        let first = &item["first_attempt"];
        assert!(first.is_object(), "{item}");
        if item["valid_sql"] == false {
            assert_eq!(item["attempts"], 3, "{item}");
        }
    }
    let summary = &report["summary"];
    assert!(
        summary["first_attempt_valid_sql_pct"].as_f64().unwrap()
            <= summary["valid_sql_pct"].as_f64().unwrap()
    );
}
