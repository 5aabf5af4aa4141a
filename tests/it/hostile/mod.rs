//! Hostile input for every file format sqlagent reads: truncated,
//! bit-flipped, oversized and deeply nested variants of real files
//! (GGUF, safetensors and their index, config.json, tokenizer files,
//! PEFT adapters, CSV for `import`, JSON Lines and Spider question sets,
//! prompt directories).
//!
//! Every case must end — within [`BOUND`] — in a load or in an error that
//! names the spoiled file; never in a panic, and never with one allocation
//! larger than [`allowed_allocation`] for the bytes it read.
//! `SQLAGENT_HOSTILE_CASES` sets the cases per format (default
//! [`DEFAULT_CASES`]; `scripts/fuzz-formats` runs 10,000). Each case is
//! written under `target/hostile/FORMAT/` before it runs, so the one that
//! killed the process (an allocation the system refused) stays there.

mod guard;
mod mutate;
mod seeds;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use candle_core::quantized::GgmlDType;
use candle_core::{DType, Device};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use sqlagent::agent::{Engine, ModelSource, QuantizeAtLoad};

pub use guard::Watching;
use guard::{watch, Broke};
use mutate::{apply_bytes, apply_gguf, apply_json, byte_edits, gguf_edits, json_edits};

use crate::common;

/// Cases per format unless `SQLAGENT_HOSTILE_CASES` says otherwise.
const DEFAULT_CASES: u32 = 200;

/// The most one case may take (a hang, not a speed goal: cases take
/// milliseconds).
const BOUND: Duration = Duration::from_secs(60);

/// The largest single allocation a case may ask for after reading `bytes`
/// bytes of input: sixteen times the input and 64 MiB of headroom — far
/// below what a forged length field asks. (In memory a file's contents take
/// more room than on disk: a dequantized weight up to 8x, a GGUF array of
/// `u32` 8x as values, and a growing vector doubles.)
fn allowed_allocation(bytes: usize) -> usize {
    64 * 1024 * 1024 + 16 * bytes
}

fn cases() -> u32 {
    std::env::var("SQLAGENT_HOSTILE_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(DEFAULT_CASES)
}

/// Where a format's current case is written.
fn work_dir(format: &str) -> PathBuf {
    let dir = common::root().join("target/hostile").join(format);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One case, ready to run: the file it spoiled, the input size, and the
/// parse.
struct Case {
    spoiled: PathBuf,
    input_bytes: usize,
    parse: Box<dyn FnOnce() -> Result<(), String> + Send>,
}

/// What a format's run saw.
#[derive(Default)]
struct Tally {
    cases: u32,
    loaded: u32,
    rejected: u32,
    slowest: Duration,
    largest_allocation: usize,
}

/// Runs `cases()` cases of `strategy` through `make`, checking each.
fn fuzz<S: Strategy>(format: &str, strategy: S, make: impl Fn(&S::Value) -> Case)
where
    S::Value: std::fmt::Debug,
{
    let tally = RefCell::new(Tally::default());
    let config = Config {
        cases: cases(),
        failure_persistence: None,
        max_shrink_iters: 64,
        ..Config::default()
    };
    // The suite's run is the same every time (a failure there is
    // reproducible); scripts/fuzz-formats draws new cases each run.
    let mut runner = if std::env::var_os("SQLAGENT_HOSTILE_CASES").is_some() {
        TestRunner::new(config)
    } else {
        TestRunner::new_with_rng(
            config,
            proptest::test_runner::TestRng::deterministic_rng(
                proptest::test_runner::RngAlgorithm::ChaCha,
            ),
        )
    };
    let result = runner.run(&strategy, |value| {
        let case = make(&value);
        let name = case
            .spoiled
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let allowed = allowed_allocation(case.input_bytes);
        let ended = match watch(BOUND, allowed, case.parse) {
            Ok(ended) => ended,
            Err(Broke::Panicked(message)) => {
                return Err(TestCaseError::fail(format!(
                    "{format}: panicked: {message}"
                )))
            }
            Err(Broke::Hung(after)) => {
                return Err(TestCaseError::fail(format!(
                    "{format}: still running after {after:?}"
                )))
            }
        };
        if ended.largest_allocation > allowed {
            return Err(TestCaseError::fail(format!(
                "{format}: one allocation of {} bytes for {} bytes of input (at most {allowed}), asked for at\n{}",
                ended.largest_allocation,
                case.input_bytes,
                ended.trace.unwrap_or_default()
            )));
        }
        let mut t = tally.borrow_mut();
        t.cases += 1;
        t.slowest = t.slowest.max(ended.elapsed);
        t.largest_allocation = t.largest_allocation.max(ended.largest_allocation);
        match ended.result {
            Ok(()) => t.loaded += 1,
            Err(message) if message.contains(&name) => t.rejected += 1,
            Err(message) => {
                return Err(TestCaseError::fail(format!(
                    "{format}: the error does not name {name}: {message}"
                )))
            }
        }
        Ok(())
    });
    let t = tally.into_inner();
    println!(
        "hostile {format}: {} cases: {} loaded, {} rejected naming the file; slowest {} ms; largest allocation {} KiB",
        t.cases,
        t.loaded,
        t.rejected,
        t.slowest.as_millis(),
        t.largest_allocation / 1024
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// The error message with its causes, as the CLI prints it.
fn message(e: sqlagent::Error) -> String {
    format!("{:#}", anyhow::Error::from(e))
}

/// Loads the model at `source` on the CPU the way `ask` does.
fn load(source: ModelSource, quantize: QuantizeAtLoad) -> Result<Engine, String> {
    let mut options = common::cpu_options(source);
    options.quantize = quantize;
    Engine::load(&options).map_err(message)
}

/// Writes `bytes` to `path`.
fn put(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
}

/// A safetensors file with its JSON header edited and the length prefix
/// rewritten to match.
fn edit_safetensors_header(bytes: &[u8], edits: &[mutate::JsonEdit]) -> Vec<u8> {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&bytes[8..8 + n]).unwrap();
    let header = apply_json(header.trim_end(), edits, false);
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&header);
    out.extend_from_slice(&bytes[8 + n..]);
    out
}

/// Byte edits, or edits of the JSON header, of a safetensors file.
fn safetensors_edits() -> impl Strategy<Value = (bool, Vec<mutate::ByteEdit>, Vec<mutate::JsonEdit>)>
{
    (any::<bool>(), byte_edits(), json_edits())
}

fn spoil_safetensors(
    bytes: &[u8],
    (in_header, b, j): &(bool, Vec<mutate::ByteEdit>, Vec<mutate::JsonEdit>),
) -> Vec<u8> {
    if *in_header {
        edit_safetensors_header(bytes, j)
    } else {
        let mut bytes = bytes.to_vec();
        apply_bytes(&mut bytes, b);
        bytes
    }
}

/// Loads the Hugging Face directory `dir` as `ask` does (as stored and
/// quantized at load), and lists it as `models` does.
fn load_hf_dir(dir: &Path) -> Result<(), String> {
    let _ = sqlagent::model::catalog::local_models_here(dir.parent().unwrap());
    load(ModelSource::HfDir(dir.to_path_buf()), QuantizeAtLoad::Off)?;
    load(
        ModelSource::HfDir(dir.to_path_buf()),
        QuantizeAtLoad::To(GgmlDType::Q8_0),
    )?;
    Ok(())
}

/// The tiny Hugging Face directory of a format's cases (`shards` weight
/// files) and its files as written, `None` without the tokenizer fixture.
fn hf_seed(format: &str, shards: usize) -> Option<(PathBuf, BTreeMap<String, Vec<u8>>)> {
    let model = work_dir(format).join("model");
    seeds::hf_dir(&model, shards)?;
    let files = seeds::read_dir_files(&model);
    Some((model, files))
}

fn dir_size(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len() as usize)
        .sum()
}

#[test]
fn gguf_files() {
    let Some(seed) = seeds::GgufSeed::from_smollm2() else {
        return;
    };
    let dir = work_dir("gguf");
    let path = dir.join("model.gguf");
    fuzz("gguf", gguf_edits(), |(meta_edits, byte_edits)| {
        let mut metadata = seed.metadata.clone();
        apply_gguf(&mut metadata, meta_edits);
        let mut bytes = seed.bytes_with(&metadata);
        apply_bytes(&mut bytes, byte_edits);
        put(&path, &bytes);
        let p = path.clone();
        Case {
            spoiled: path.clone(),
            input_bytes: bytes.len(),
            parse: Box::new(move || {
                let _ = sqlagent::model::catalog::local_models_here(p.parent().unwrap());
                let engine = load(ModelSource::Gguf(p.clone()), QuantizeAtLoad::Auto)?;
                render_chat(&engine)
            }),
        }
    });
}

/// Renders a conversation with the engine's chat template, as every
/// question does.
fn render_chat(engine: &Engine) -> Result<(), String> {
    let messages = [
        sqlagent::chat::Message::system("You write SQLite."),
        sqlagent::chat::Message::user("How many tracks are there?"),
    ];
    engine
        .template
        .render(&messages, true)
        .map(drop)
        .map_err(message)
}

#[test]
fn safetensors_files() {
    let Some((model, files)) = hf_seed("safetensors", 1) else {
        return;
    };
    fuzz("safetensors", safetensors_edits(), |edits| {
        let mut spoiled = files.clone();
        let bytes = spoil_safetensors(&files["model.safetensors"], edits);
        spoiled.insert("model.safetensors".into(), bytes);
        seeds::write_dir_files(&model, &spoiled);
        let m = model.clone();
        Case {
            spoiled: model.join("model.safetensors"),
            input_bytes: dir_size(&model),
            parse: Box::new(move || load_hf_dir(&m)),
        }
    });
}

#[test]
fn safetensors_index_and_shards() {
    let Some((model, files)) = hf_seed("safetensors-index", 2) else {
        return;
    };
    const INDEX: &str = "model.safetensors.index.json";
    const SHARD: &str = "model-00002-of-00002.safetensors";
    let strategy = (any::<bool>(), json_edits(), safetensors_edits());
    fuzz("safetensors-index", strategy, |(index, j, s)| {
        let mut spoiled = files.clone();
        let name = if *index {
            let text = String::from_utf8(files[INDEX].clone()).unwrap();
            spoiled.insert(INDEX.into(), apply_json(&text, j, false));
            INDEX
        } else {
            spoiled.insert(SHARD.into(), spoil_safetensors(&files[SHARD], s));
            SHARD
        };
        seeds::write_dir_files(&model, &spoiled);
        let m = model.clone();
        Case {
            spoiled: model.join(name),
            input_bytes: dir_size(&model),
            parse: Box::new(move || load_hf_dir(&m)),
        }
    });
}

/// JSON edits of one file of a Hugging Face directory, loaded as `ask`
/// loads it.
fn fuzz_hf_json(format: &str, names: &'static [&'static str]) {
    let Some((model, files)) = hf_seed(format, 1) else {
        return;
    };
    let strategy = (0..names.len(), json_edits());
    fuzz(format, strategy, |(which, edits)| {
        let name = names[*which];
        let mut spoiled = files.clone();
        let text = String::from_utf8(files[name].clone()).unwrap();
        spoiled.insert(name.into(), apply_json(&text, edits, false));
        seeds::write_dir_files(&model, &spoiled);
        let m = model.clone();
        Case {
            spoiled: model.join(name),
            input_bytes: dir_size(&model),
            parse: Box::new(move || {
                let engine = load(ModelSource::HfDir(m.clone()), QuantizeAtLoad::Off)?;
                render_chat(&engine)
            }),
        }
    });
}

#[test]
fn config_json() {
    fuzz_hf_json("config-json", &["config.json"]);
}

#[test]
fn tokenizer_files() {
    fuzz_hf_json("tokenizer", &["tokenizer.json", "tokenizer_config.json"]);
}

#[test]
fn adapter_files() {
    let dir = work_dir("adapter");
    let (fixture, base) = seeds::peft_adapter_and_base(&dir);
    let files = seeds::read_dir_files(&fixture);
    let adapter = dir.join("adapter");
    let strategy = (any::<bool>(), json_edits(), safetensors_edits());
    fuzz("adapter", strategy, |(config, j, s)| {
        let mut spoiled = files.clone();
        let name = if *config {
            let text = String::from_utf8(files["adapter_config.json"].clone()).unwrap();
            spoiled.insert("adapter_config.json".into(), apply_json(&text, j, false));
            "adapter_config.json"
        } else {
            let bytes = spoil_safetensors(&files["adapter_model.safetensors"], s);
            spoiled.insert("adapter_model.safetensors".into(), bytes);
            "adapter_model.safetensors"
        };
        seeds::write_dir_files(&adapter, &spoiled);
        let (a, b) = (adapter.clone(), base.clone());
        Case {
            spoiled: adapter.join(name),
            input_bytes: dir_size(&adapter),
            parse: Box::new(move || {
                let mut model = sqlagent::model::load_safetensors_dir(&b, DType::F32, &Device::Cpu)
                    .map_err(message)?;
                let loaded = sqlagent::lora::Adapter::load("spoiled", &a).map_err(message)?;
                model.attach_adapter(&loaded).map_err(message)?;
                model.merge_adapter(&loaded).map_err(message)?;
                Ok(())
            }),
        }
    });
}

#[test]
fn csv_import() {
    let Some(seed) = seeds::spotify_csv(60) else {
        return;
    };
    let dir = work_dir("csv");
    let csv = dir.join("songs.csv");
    let db = dir.join("songs.db");
    fuzz("csv", byte_edits(), |edits| {
        let mut bytes = seed.clone().into_bytes();
        apply_bytes(&mut bytes, edits);
        put(&csv, &bytes);
        let _ = std::fs::remove_file(&db);
        let options = sqlagent::sql::ImportOptions {
            csv: csv.clone(),
            db: db.clone(),
            table: "songs".into(),
            replace: false,
        };
        Case {
            spoiled: csv.clone(),
            input_bytes: bytes.len(),
            parse: Box::new(move || {
                sqlagent::sql::import_csv(&options)
                    .map(drop)
                    .map_err(message)
            }),
        }
    });
}

#[test]
fn question_sets() {
    let seed = std::fs::read_to_string(common::root().join("data/spotify/fresh.jsonl")).unwrap();
    let dir = work_dir("question-set");
    let path = dir.join("questions.jsonl");
    fuzz("question-set", json_edits(), |edits| {
        let bytes = apply_json(&seed, edits, true);
        put(&path, &bytes);
        let p = path.clone();
        Case {
            spoiled: path.clone(),
            input_bytes: bytes.len(),
            parse: Box::new(move || sqlagent::eval::load_set(&p).map(drop).map_err(message)),
        }
    });
}

#[test]
fn spider_sets() {
    let Some((seed, databases)) = seeds::spider_dev(40) else {
        return;
    };
    let dir = work_dir("spider-set");
    let path = dir.join("dev.json");
    fuzz("spider-set", json_edits(), |edits| {
        let bytes = apply_json(&seed, edits, false);
        put(&path, &bytes);
        let (p, d) = (path.clone(), databases.clone());
        Case {
            spoiled: path.clone(),
            input_bytes: bytes.len(),
            parse: Box::new(move || {
                sqlagent::eval::load_spider(&p, &d)
                    .map(drop)
                    .map_err(message)
            }),
        }
    });
}

/// Text inserted into a prompt template: runaway loops, recursion, deep
/// nesting and huge strings. (Templates are code: one operation that
/// builds a big value — `[1] * 10**8`, or `s ~ s` doubled in a loop — is
/// bounded only by minijinja's own caps, and is left out here.)
fn template_traps() -> Vec<String> {
    vec![
        "{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}".into(),
        "{% macro m(n) %}{{ m(n) }}{% endmacro %}{{ m(1) }}".into(),
        "{{ 'x' * 4000000000 }}".into(),
        format!("{{{{ {}1{} }}}}", "(".repeat(5000), ")".repeat(5000)),
        "{% for x in range(1000000000) %}{% endfor %}".into(),
        format!(
            "{}{}",
            "{% if 1 %}".repeat(5000),
            "{% endif %}".repeat(5000)
        ),
    ]
}

#[test]
fn prompt_dirs() {
    let seed_dir = common::root().join("prompts/default");
    let files = seeds::read_dir_files(&seed_dir);
    let names: Vec<String> = files.keys().cloned().collect();
    let dir = work_dir("prompt");
    let music = dir.join("music.db");
    sqlagent::sql::build_demo_db(&music).unwrap();
    let schema = sqlagent::sql::Database::open(&music)
        .unwrap()
        .schema_with_tables()
        .unwrap();
    let prompt = dir.join("prompt");
    let traps = template_traps();
    let strategy = (
        0..names.len(),
        json_edits(),
        byte_edits(),
        (
            any::<proptest::sample::Index>(),
            0..traps.len(),
            any::<bool>(),
        ),
    );
    fuzz("prompt", strategy, |(which, j, b, (at, trap, use_trap))| {
        let name = &names[*which];
        let mut spoiled = files.clone();
        let seed = &files[name];
        let bytes = if name.ends_with(".jsonl") {
            apply_json(std::str::from_utf8(seed).unwrap(), j, true)
        } else if name.ends_with(".j2") && *use_trap {
            let text = String::from_utf8(seed.clone()).unwrap();
            // At a character boundary between two lines.
            let lines: Vec<&str> = text.split_inclusive('\n').collect();
            let k = at.index(lines.len() + 1);
            let mut out = lines[..k].concat();
            out.push_str(&traps[*trap]);
            out.push_str(&lines[k..].concat());
            out.into_bytes()
        } else {
            let mut bytes = seed.clone();
            apply_bytes(&mut bytes, b);
            bytes
        };
        spoiled.insert(name.clone(), bytes);
        seeds::write_dir_files(&prompt, &spoiled);
        let (p, s) = (prompt.clone(), schema.clone());
        Case {
            spoiled: prompt.join(name),
            input_bytes: dir_size(&prompt),
            parse: Box::new(move || {
                let spec = sqlagent::chat::PromptSpec::from_dir(&p).map_err(message)?;
                spec.messages(&s, "How many tracks are there?")
                    .map_err(message)?;
                spec.retry_messages("SELECT 1", "no such column: x")
                    .map_err(message)?;
                Ok(())
            }),
        }
    });
}
