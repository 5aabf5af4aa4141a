//! Soundness of grammar-constrained decoding, by random walks: a "model"
//! whose logits are all equal drives the real decode loop, so every step
//! picks uniformly among the tokens the grammar allows (the preferred token
//! is uniform over the vocabulary; when the grammar rejects it, the masked
//! sample is uniform over the allowed ones). A walk ends when it picks an
//! end token where the grammar can end, or after 128 tokens, when the
//! query is finished without the model. Every finished query must prepare
//! in SQLite against its database, with the real Llama 3 tokenizer and the
//! SmolLM2 tokenizer, on the demo database and three Spider databases.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use sqlagent::agent::{DatabaseHandle, SqlCheck};
use sqlagent::generate::{
    generate_with, GenerateRequest, Generation, MaskAhead, SamplingParams, TokenModel,
};
use sqlagent::grammar::{lark::lark_grammar, CompiledGrammar, GrammarFactory, GrammarOptions};
use sqlagent::model::GgufFile;
use sqlagent::sql::{build_demo_db, constrained_sql, Database};
use sqlagent::tokenizer::{SpecialTokens, Tokenizer};
use sqlagent::Result;

use crate::common;

/// Walks per (tokenizer, database) pair: 8 pairs, 2,000 walks in all.
const WALKS: u64 = 250;
/// Tokens a walk may take before the query is finished without the model.
const WALK_TOKENS: usize = 128;

/// Equal logits for every id: sampling from them is uniform.
struct Uniform {
    width: usize,
    fed: usize,
}

impl TokenModel for Uniform {
    fn context_length(&self) -> usize {
        1 << 16
    }
    fn feed(&mut self, ids: &[u32]) -> Result<Tensor> {
        self.fed += ids.len();
        Ok(Tensor::zeros(
            self.width,
            candle_core::DType::F32,
            &Device::Cpu,
        )?)
    }
    fn truncate(&mut self, len: usize) {
        self.fed = len;
    }
    fn fed(&self) -> usize {
        self.fed
    }
}

struct Vocabulary {
    name: &'static str,
    tokenizer: Tokenizer,
    stop_ids: Vec<u32>,
    factory: GrammarFactory,
}

fn llama3() -> Option<Vocabulary> {
    let dir = common::llama3_tokenizer_dir()?;
    let tokenizer = Tokenizer::from_file(&dir.join("tokenizer.json")).unwrap();
    let special = SpecialTokens::from_hf_dir(&dir, &tokenizer).unwrap();
    Some(vocabulary("Llama 3", tokenizer, special.stop_ids()))
}

fn smollm2() -> Option<Vocabulary> {
    let gguf = GgufFile::open(&common::smollm2_gguf()?).unwrap();
    let tokenizer = Tokenizer::from_gguf(gguf.content(), "SmolLM2 GGUF").unwrap();
    let special = SpecialTokens::from_gguf(gguf.content(), &tokenizer).unwrap();
    Some(vocabulary("SmolLM2", tokenizer, special.stop_ids()))
}

fn vocabulary(name: &'static str, tokenizer: Tokenizer, stop_ids: Vec<u32>) -> Vocabulary {
    let factory = GrammarFactory::new(&tokenizer, tokenizer.vocab_size(), &stop_ids).unwrap();
    Vocabulary {
        name,
        tokenizer,
        stop_ids,
        factory,
    }
}

enum Db {
    Demo,
    Spider(&'static str),
}

/// The database file (the demo one is built in `tmp`).
fn database(db: &Db, tmp: &Path) -> Option<PathBuf> {
    match db {
        Db::Demo => {
            let path = tmp.join("music.db");
            build_demo_db(&path).unwrap();
            Some(path)
        }
        Db::Spider(name) => {
            let path = common::shared_data()?
                .join("spider/database")
                .join(name)
                .join(format!("{name}.sqlite"));
            assert!(path.exists(), "{} missing", path.display());
            Some(path)
        }
    }
}

/// One walk from `seed`.
fn walk_once(
    v: &Vocabulary,
    grammar: &CompiledGrammar,
    check: &SqlCheck,
    seed: u64,
    mask_ahead: MaskAhead,
) -> Generation {
    // Any prompt: the uniform model ignores it.
    let prompt = v.tokenizer.encode("SQL:").unwrap();
    let mut constraint = grammar.constraint();
    let mut model = Uniform {
        width: v.tokenizer.vocab_size(),
        fed: 0,
    };
    generate_with(
        &mut model,
        &v.tokenizer,
        GenerateRequest {
            prompt_ids: &prompt,
            stop_ids: &v.stop_ids,
            // A quarter of the budget (32 tokens) is kept to finish.
            sampling: SamplingParams {
                temperature: 1.0,
                top_p: None,
                seed,
                max_tokens: WALK_TOKENS + 32,
            },
            constraint: Some(&mut constraint),
            check: Some(check),
            cancel: None,
            stop_text: &[],
            prompt_split: None,
            mask_ahead,
        },
        &mut |_| {},
    )
    .unwrap_or_else(|e| panic!("walk {seed}: {e}"))
}

/// The grammar of `path` for `v`, with its completions.
fn grammar_for(v: &Vocabulary, path: &Path) -> CompiledGrammar {
    let schema = Database::open(path).unwrap().schema().unwrap();
    let lark = lark_grammar(&schema, &GrammarOptions::default()).unwrap();
    v.factory
        .compile(&lark)
        .unwrap()
        .with_schema(&schema)
        .unwrap()
}

/// Runs the walks for one tokenizer and database; fails listing every
/// finished query SQLite does not prepare.
fn walk(vocabulary: Option<Vocabulary>, db: Db) {
    let Some(v) = vocabulary else {
        return;
    };
    let tmp = common::temp_dir();
    let Some(path) = database(&db, tmp.path()) else {
        return;
    };
    let db = Database::open(&path).unwrap();
    let grammar = grammar_for(&v, &path);
    let handle = DatabaseHandle::without_grammar(&path).unwrap();
    // The checks ask uses: while writing and when finished.
    let check = SqlCheck::new(&handle);
    let mut failures = Vec::new();
    let mut completed = 0;
    for seed in 0..WALKS {
        let generation = walk_once(&v, &grammar, &check, seed, MaskAhead::default());
        if std::env::var("SQLAGENT_DEBUG_WALKS").is_ok() {
            eprintln!(
                "walk {seed}: {:?} {:?}",
                generation.text, generation.grammar
            );
        }
        if generation.grammar.completed_tokens > 0 {
            completed += 1;
        }
        let sql = constrained_sql(&generation.text);
        if sql.is_empty() || db.check(&sql).is_err() {
            failures.push(format!(
                "walk {seed}: {:?} -> {:?}",
                generation.text,
                db.check(&sql).err().map(|e| e.to_string())
            ));
        }
    }
    eprintln!(
        "{} on {}: {WALKS} walks, {completed} finished without the model",
        v.name,
        path.display()
    );
    assert!(
        failures.is_empty(),
        "{} of {WALKS} walks ({}) did not prepare:\n{}",
        failures.len(),
        v.name,
        failures.join("\n")
    );
}

#[test]
fn llama3_walks_on_the_demo_database_prepare() {
    walk(llama3(), Db::Demo);
}

#[test]
fn llama3_walks_on_concert_singer_prepare() {
    walk(llama3(), Db::Spider("concert_singer"));
}

#[test]
fn llama3_walks_on_car_1_prepare() {
    walk(llama3(), Db::Spider("car_1"));
}

#[test]
fn llama3_walks_on_world_1_prepare() {
    walk(llama3(), Db::Spider("world_1"));
}

#[test]
fn smollm2_walks_on_the_demo_database_prepare() {
    walk(smollm2(), Db::Demo);
}

#[test]
fn smollm2_walks_on_concert_singer_prepare() {
    walk(smollm2(), Db::Spider("concert_singer"));
}

#[test]
fn smollm2_walks_on_car_1_prepare() {
    walk(smollm2(), Db::Spider("car_1"));
}

#[test]
fn smollm2_walks_on_world_1_prepare() {
    walk(smollm2(), Db::Spider("world_1"));
}

#[test]
fn masks_computed_ahead_change_no_walk() {
    // The uniform model's preferred token is rejected at almost every step,
    // so each mask is used: computed beside the model or when asked for,
    // every walk must be the same.
    let Some(v) = llama3() else {
        return;
    };
    let tmp = common::temp_dir();
    let path = database(&Db::Demo, tmp.path()).unwrap();
    let grammar = grammar_for(&v, &path);
    let handle = DatabaseHandle::without_grammar(&path).unwrap();
    let check = SqlCheck::new(&handle);
    for seed in 0..40 {
        let asked = walk_once(&v, &grammar, &check, seed, MaskAhead::Never);
        let ahead = walk_once(&v, &grammar, &check, seed, MaskAhead::Always);
        assert_eq!(asked.tokens, ahead.tokens, "walk {seed}");
        assert_eq!(asked.grammar.masks, ahead.grammar.masks, "walk {seed}");
        assert_eq!(asked.grammar.masks_ahead, 0);
        assert!(
            ahead.grammar.masks_ahead > 0,
            "walk {seed}: {:?}",
            ahead.grammar
        );
    }
}
