//! Prefill and decode speed of SmolLM2-135M (fetched by
//! `scripts/fetch-fixtures`) on the demo database prompt, in process.
//!
//!     cargo bench --bench generate            # default load (Q4_1 -> Q8_0)
//!     SQLAGENT_BENCH_REQUANTIZE=never cargo bench --bench generate
//!
//! Prints median tokens/s over several runs. Threads follow
//! RAYON_NUM_THREADS (default: all cores).

use std::path::PathBuf;
use std::time::Instant;

use candle_core::quantized::GgmlDType;
use candle_core::{DType, Device, Tensor};
use sqlagent::agent::{Engine, ModelOptions, ModelSource};
use sqlagent::chat::PromptSpec;
use sqlagent::model::{Cache, GgufOptions, Logits, Requantize};
use sqlagent::sql::{build_demo_db, Database};

const RUNS: usize = 5;
const DECODE_TOKENS: usize = 64;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    sqlagent::heap::reuse_freed_memory();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let models = std::env::var_os("SQLAGENT_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("models"));
    let gguf = models.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    if !gguf.exists() {
        eprintln!("{} is missing: run scripts/fetch-fixtures", gguf.display());
        return Ok(());
    }
    let requantize = match std::env::var("SQLAGENT_BENCH_REQUANTIZE").as_deref() {
        Ok("never") => Requantize::Never,
        Ok("q4_0") => Requantize::To(GgmlDType::Q4_0),
        Ok("q4k") => Requantize::To(GgmlDType::Q4K),
        _ => Requantize::Auto,
    };
    let dir = tempfile::tempdir()?;
    let db_path = dir.path().join("music.db");
    build_demo_db(&db_path)?;
    let db = Database::open(&db_path)?;
    let schema = db.schema()?;
    let engine = Engine::load(&ModelOptions {
        source: ModelSource::Gguf(gguf.clone()),
        dtype: DType::F32,
        device: Device::Cpu,
        gguf: GgufOptions {
            requantize,
            ..GgufOptions::default()
        },
        revision: None,
        hf_token: None,
        progress: false,
        quantize: Default::default(),
    })?;
    let prompt = PromptSpec::builtin_default()?;
    let messages = prompt.messages(&schema, "Which 5 tracks have the highest popularity?")?;
    let ids = engine
        .tokenizer
        .encode(&engine.template.render(&messages, true)?)?;
    let model = &engine.model;

    let (mut prefill, mut decode) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let mut cache = Cache::new(model);
        let chunk: usize = std::env::var("SQLAGENT_BENCH_CHUNK")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(sqlagent::generate::PREFILL_CHUNK);
        let start = Instant::now();
        let mut logits = None;
        for part in ids.chunks(chunk) {
            let input = Tensor::new(part, &Device::Cpu)?.unsqueeze(0)?;
            logits = Some(model.forward(&input, Some(&mut cache), Logits::Last)?);
        }
        let logits = logits.expect("the prompt is not empty");
        let mut next = logits.squeeze(0)?.argmax(0)?.to_scalar::<u32>()?;
        prefill.push(ids.len() as f64 / start.elapsed().as_secs_f64());
        let start = Instant::now();
        for _ in 0..DECODE_TOKENS {
            let input = Tensor::new(&[next], &Device::Cpu)?.unsqueeze(0)?;
            let logits = model.forward(&input, Some(&mut cache), Logits::Last)?;
            next = logits.squeeze(0)?.argmax(0)?.to_scalar::<u32>()?;
        }
        decode.push(DECODE_TOKENS as f64 / start.elapsed().as_secs_f64());
    }
    println!(
        "generate/smollm2-135m weights={} requantized={} threads={}",
        engine.info.weight_type,
        engine.info.requantized.as_deref().unwrap_or("no"),
        std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all".into())
    );
    println!(
        "prefill: {:.1} tokens/s ({} prompt tokens, median of {RUNS})",
        median(prefill),
        ids.len()
    );
    println!(
        "decode:  {:.1} tokens/s ({DECODE_TOKENS} tokens after the prompt, median of {RUNS})",
        median(decode)
    );
    Ok(())
}
