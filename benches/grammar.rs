//! Cost of the SQL grammar on the real Llama 3 vocabulary (128,256 tokens):
//! build time, and per-token mask time while replaying every gold query of
//! `test-set.jsonl` over the demo database's schema grammar.
//!
//!     cargo bench --bench grammar
//!
//! Reports the full-mask time (what masking every step would cost) and the
//! check of one preferred token (what the decode loop pays when the model's
//! choice is allowed), median and p99.

use std::path::PathBuf;
use std::time::Instant;

use sqlagent::grammar::{
    lark::lark_grammar, percentile, GrammarFactory, GrammarOptions, MaskTimings,
};
use sqlagent::sql::{build_demo_db, Database};
use sqlagent::tokenizer::Tokenizer;

fn main() -> anyhow::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let models = std::env::var_os("SQLAGENT_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("models"));
    let tokenizer_path = models.join("llama3-tokenizer/tokenizer.json");
    if !tokenizer_path.exists() {
        eprintln!(
            "{} is missing: run scripts/fetch-fixtures",
            tokenizer_path.display()
        );
        return Ok(());
    }
    let tokenizer = Tokenizer::from_file(&tokenizer_path)?;
    let dir = tempfile::tempdir()?;
    let db_path = dir.path().join("music.db");
    build_demo_db(&db_path)?;
    let schema = Database::open(&db_path)?.schema()?;
    let lark =
        lark_grammar(&schema, &GrammarOptions::default()).expect("schema mode has a grammar");

    let t = Instant::now();
    // <|eot_id|> and <|end_of_text|> end a Llama 3 turn.
    let factory = GrammarFactory::new(&tokenizer, 128_256, &[128_009, 128_001])?;
    let factory_ms = t.elapsed().as_secs_f64() * 1000.0;
    let t = Instant::now();
    let grammar = factory.compile(&lark)?;
    let compile_ms = t.elapsed().as_secs_f64() * 1000.0;

    let set = std::fs::read_to_string(root.join("test-set.jsonl"))?;
    let mut sqls = Vec::new();
    for line in set.lines().filter(|l| !l.trim().is_empty()) {
        let item: serde_json::Value = serde_json::from_str(line)?;
        sqls.push(item["sql"].as_str().unwrap_or_default().to_string());
    }
    let timings = MaskTimings::replay(&grammar, &tokenizer, &sqls)?;
    let (masks, checks) = (&timings.mask_us, &timings.check_us);
    let (queries, rejected) = (timings.queries, timings.rejected);
    println!(
        "grammar/llama3-128k demo schema grammar ({} bytes)",
        lark.len()
    );
    println!("factory: {factory_ms:.0} ms, compile: {compile_ms:.1} ms");
    println!(
        "replayed {queries} gold queries ({} tokens, {rejected} rejected)",
        masks.len()
    );
    println!(
        "full mask:       median {:.1} µs, p90 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
        percentile(masks, 0.5),
        percentile(masks, 0.9),
        percentile(masks, 0.99),
        percentile(masks, 1.0)
    );
    println!(
        "preferred token: median {:.1} µs, p99 {:.1} µs",
        percentile(checks, 0.5),
        percentile(checks, 0.99)
    );
    Ok(())
}
