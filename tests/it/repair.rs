//! Repairs in the decode loop: when a finished query fails the check,
//! decoding backs up to the name SQLite blames and bans the token chosen
//! there. Bans can leave a position with nothing the grammar allows; then
//! the choice before it is taken back too, instead of failing the request.

use candle_core::{Device, Tensor};
use sqlagent::generate::{generate_with, GenerateRequest, SamplingParams, TokenModel, Verdict};
use sqlagent::grammar::GrammarFactory;
use sqlagent::tokenizer::{SpecialTokens, Tokenizer};
use sqlagent::Result;

use crate::common;

/// A model that always prefers the same tokens (greedy picks the first of
/// them the grammar allows, by their order of preference).
struct Preferring {
    width: usize,
    preferred: Vec<u32>,
    fed: usize,
}

impl TokenModel for Preferring {
    fn context_length(&self) -> usize {
        1 << 16
    }
    fn feed(&mut self, ids: &[u32]) -> Result<Tensor> {
        self.fed += ids.len();
        let mut logits = vec![0f32; self.width];
        for (rank, &id) in self.preferred.iter().enumerate() {
            logits[id as usize] = 100.0 - rank as f32;
        }
        Ok(Tensor::from_vec(logits, self.width, &Device::Cpu)?)
    }
    fn truncate(&mut self, len: usize) {
        self.fed = len;
    }
    fn fed(&self) -> usize {
        self.fed
    }
}

#[test]
fn a_position_whose_every_choice_is_banned_backs_up_to_the_choice_before() {
    let Some(dir) = common::llama3_tokenizer_dir() else {
        return;
    };
    let tokenizer = Tokenizer::from_file(&dir.join("tokenizer.json")).unwrap();
    let stop_ids = SpecialTokens::from_hf_dir(&dir, &tokenizer)
        .unwrap()
        .stop_ids();
    let factory = GrammarFactory::new(&tokenizer, tokenizer.vocab_size(), &stop_ids).unwrap();
    // After "SELECT a FROM t" only "x" may follow, so banning it there
    // leaves nothing; the way out is the other table.
    let grammar = factory
        .compile("start: \"SELECT a FROM \" (\"t x\" | \"u y\")")
        .unwrap();
    let id = |text: &str| {
        let ids = tokenizer.encode(text).unwrap();
        assert_eq!(ids.len(), 1, "{text:?} is one token");
        ids[0]
    };
    // The model wants table t, then x; the check rejects x.
    let mut model = Preferring {
        width: tokenizer.vocab_size(),
        preferred: vec![id(" t"), id(" x"), id("SELECT"), id(" a"), id(" FROM")],
        fed: 0,
    };
    let check = |text: &str| match text.rfind(" x") {
        Some(at) => Verdict::Blame(at + 1),
        None => Verdict::Pass,
    };
    let prompt = tokenizer.encode("SQL:").unwrap();
    let mut constraint = grammar.constraint();
    let generation = generate_with(
        &mut model,
        &tokenizer,
        GenerateRequest {
            prompt_ids: &prompt,
            stop_ids: &stop_ids,
            sampling: SamplingParams::default(),
            constraint: Some(&mut constraint),
            check: Some(&check),
            cancel: None,
            stop_text: &[],
        },
        &mut |_| {},
    )
    .expect("a dead end is not an error");
    assert_eq!(generation.text, "SELECT a FROM u y");
    assert!(generation.grammar.repairs >= 1);
    assert!(!generation.grammar.check_failed);
}
