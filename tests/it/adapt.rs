//! `adapt`: from a database to an evaluated adapter, with a stop in the
//! middle and a resume (tiny random model: what is checked is the run, not
//! the accuracy).

use std::collections::BTreeSet;

use sqlagent::agent::ModelSource;
use sqlagent::chat::PromptSpec;
use sqlagent::eval::load_set;
use sqlagent::synth::skeleton;
use sqlagent::tune::adapt::{AdaptPlan, Phase};
use sqlagent::tune::TuneOptions;
use sqlagent::Error;

use crate::common;
use crate::tiny::tiny_llama3_dir;

fn plan(model: &std::path::Path, db: &std::path::Path, out: &std::path::Path) -> AdaptPlan {
    AdaptPlan {
        db: db.to_path_buf(),
        out: out.to_path_buf(),
        model: common::cpu_options(ModelSource::HfDir(model.to_path_buf())),
        model_name: "tiny".into(),
        prompt: PromptSpec::builtin("tuned")
            .unwrap()
            .with_schema_budget(Some(600)),
        base_prompt: PromptSpec::builtin_default()
            .unwrap()
            .with_schema_budget(Some(600)),
        pairs: 24,
        min_pairs: 8,
        max_per_skeleton: 2,
        held_out: 4,
        eval_sets: Vec::new(),
        options: TuneOptions {
            rank: 2,
            targets: vec!["q_proj".into(), "v_proj".into()],
            epochs: 1,
            grad_accum: 2,
            checkpoint_every: 1,
            ..TuneOptions::default()
        },
        val_fraction: 0.1,
        max_len: 2048,
        seed: 3,
        resume: false,
    }
}

#[test]
fn too_few_pairs_stop_the_run_before_the_model_loads_and_a_resume_may_lower_the_bar() {
    let tmp = common::temp_dir();
    let db = tmp.path().join("music.db");
    sqlagent::sql::build_demo_db(&db).unwrap();
    let out = tmp.path().join("adapted");
    // No model there: a run that gets past the pairs fails loading it.
    let missing_model = tmp.path().join("no-model");
    let mut strict = plan(&missing_model, &db, &out);
    strict.min_pairs = 10_000;
    let refused = strict.run(&mut |_| true);
    match refused {
        Err(Error::Invalid { field, message }) => {
            assert_eq!(field, "min pairs");
            assert!(message.contains("fewer than the 10000"), "{message}");
            assert!(message.contains("pairs.jsonl"), "{message}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let written = load_set(&out.join("adapt/pairs.jsonl")).unwrap();
    assert!(!written.is_empty() && written.len() < 10_000);

    // Resumed with the bar lowered: the pairs are read back and the run
    // goes on to load the model.
    let mut lenient = plan(&missing_model, &db, &out);
    lenient.resume = true;
    let went_on = lenient.run(&mut |_| true);
    assert!(
        !matches!(&went_on, Err(Error::Invalid { field, .. }) if field == "min pairs"),
        "{went_on:?}"
    );
    assert!(out.join("adapt/train.jsonl").is_file());
}

#[test]
fn a_stopped_adapt_run_resumes_and_reports_base_vs_adapter_on_unseen_shapes() {
    let tmp = common::temp_dir();
    let Some(model) = tiny_llama3_dir(&tmp.path().join("tiny"), 4096) else {
        return;
    };
    let db = tmp.path().join("music.db");
    sqlagent::sql::build_demo_db(&db).unwrap();
    let out = tmp.path().join("adapted");
    // An evaluation set whose pairs the synthesized ones must avoid.
    let set = tmp.path().join("team.jsonl");
    std::fs::write(
        &set,
        "{\"question\": \"How many artists are there?\", \"sql\": \"SELECT COUNT(*) FROM artists\"}\n\
         {\"question\": \"How many albums are there?\", \"sql\": \"SELECT COUNT(*) FROM albums\"}\n",
    )
    .unwrap();
    let mut first = plan(&model, &db, &out);
    first.eval_sets = vec![set.clone()];

    // Stopped during tuning, after two examples.
    let mut phases = Vec::new();
    let stopped = first.run(&mut |p| {
        if phases.last() != Some(&p.phase) {
            phases.push(p.phase);
        }
        !(p.phase == Phase::Tune && p.done >= 2)
    });
    assert!(matches!(stopped, Err(Error::Cancelled)), "{stopped:?}");
    assert_eq!(phases, [Phase::Synth, Phase::BaseEval, Phase::Tune]);
    assert!(out.join("checkpoint/state.json").is_file());
    assert!(!out.join("adapter_model.safetensors").exists());

    // Held-out pairs are whole shapes that training never sees, and no
    // synthesized pair is one of the evaluation set's.
    let train = load_set(&out.join("adapt/train.jsonl")).unwrap();
    let held_out = load_set(&out.join("adapt/heldout.jsonl")).unwrap();
    assert_eq!(train.len() + held_out.len(), 24);
    assert!((4..=6).contains(&held_out.len()), "{}", held_out.len());
    let shapes = |items: &[sqlagent::eval::SetItem]| -> BTreeSet<String> {
        items.iter().map(|i| skeleton(&i.sql)).collect()
    };
    assert!(shapes(&train).is_disjoint(&shapes(&held_out)));
    for item in train.iter().chain(&held_out) {
        assert!(!item
            .sql
            .eq_ignore_ascii_case("SELECT COUNT(*) FROM artists"));
    }

    // A fresh run over it is refused; one with other settings too.
    assert!(
        matches!(first.run(&mut |_| true), Err(Error::Invalid { field, .. }) if field == "resume")
    );
    let mut other = plan(&model, &db, &out);
    other.eval_sets = vec![set.clone()];
    other.resume = true;
    other.options.epochs = 2;
    let err = other.validate().unwrap_err().to_string();
    assert!(err.contains("hyper_parameters"), "{err}");

    // Resumed: the base runs are not redone, tuning goes on from its
    // checkpoint, and the report compares base and adapter on each set.
    let mut resumed = plan(&model, &db, &out);
    resumed.eval_sets = vec![set.clone()];
    resumed.resume = true;
    let mut tune_from = None;
    let report = resumed
        .run(&mut |p| {
            if p.phase == Phase::Tune && tune_from.is_none() {
                tune_from = Some(p.done);
            }
            true
        })
        .unwrap();
    assert!(tune_from.unwrap() > 2, "tuning resumed from its checkpoint");
    let lines = |path: &str| {
        std::fs::read_to_string(out.join(path))
            .unwrap()
            .lines()
            .count()
    };
    assert_eq!(
        lines("adapt/eval/held-out-base/items.jsonl"),
        held_out.len()
    );
    assert_eq!(lines("adapt/eval/team-adapter/items.jsonl"), 2);
    assert_eq!(report.sets.len(), 2);
    assert_eq!(report.sets[0].set, "held-out");
    assert_eq!(report.sets[0].items, held_out.len());
    assert_eq!(report.sets[1].set, "team");
    assert_eq!(report.sets[1].items, 2);
    for s in &report.sets {
        assert!(s.base_correct <= s.items && s.adapter_correct <= s.items);
        assert!((0.0..=1.0).contains(&s.p_value));
    }
    for f in [
        "adapter_config.json",
        "adapter_model.safetensors",
        "training.json",
        "prompt/system.txt",
        "report.md",
        "report.json",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    assert!(!out.join("checkpoint").exists());
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("| held-out | "), "{md}");
    assert!(md.contains("McNemar"), "{md}");
    let training: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("training.json")).unwrap()).unwrap();
    assert_eq!(training["schema_budget"], 600);
    assert_eq!(training["prompt"], "tuned");
}
