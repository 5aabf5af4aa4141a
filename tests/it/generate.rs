//! Integration tests: the decode loop on SmolLM2 (stop rules, streaming,
//! seeded sampling, context limit).

use candle_core::{DType, Device};
use sqlagent::agent::Engine;
use sqlagent::chat::Message;
use sqlagent::generate::{
    generate, generate_with, GenerateRequest, SamplingParams, StopReason, PREFILL_CHUNK,
};
use sqlagent::Error;

use crate::common;

fn engine() -> Option<Engine> {
    common::smollm2_engine()
}

fn prompt_ids(e: &Engine, question: &str) -> Vec<u32> {
    let text = e
        .template
        .render(
            &[
                Message::system("Answer with one SQLite query."),
                Message::user(question),
            ],
            true,
        )
        .unwrap();
    e.tokenizer.encode(&text).unwrap()
}

fn run(
    e: &Engine,
    ids: &[u32],
    stop: &[u32],
    sampling: SamplingParams,
) -> (sqlagent::generate::Generation, String) {
    let mut streamed = String::new();
    let g = generate(
        &e.model,
        &e.tokenizer,
        GenerateRequest {
            prompt_ids: ids,
            stop_ids: stop,
            sampling,
            constraint: None,
            check: None,
            cancel: None,
            stop_text: &[],
            prompt_split: None,
            mask_ahead: Default::default(),
        },
        &mut |piece| streamed.push_str(piece),
    )
    .unwrap();
    (g, streamed)
}

#[test]
fn greedy_generation_stops_at_end_of_turn_and_streams_its_text() {
    let Some(e) = engine() else { return };
    let ids = prompt_ids(&e, "How many songs are in the songs table?");
    let stop = e.stop_ids();
    assert!(stop.contains(&e.tokenizer.token_to_id("<|im_end|>").unwrap()));
    let params = SamplingParams {
        max_tokens: 256,
        ..SamplingParams::default()
    };
    let (g, streamed) = run(&e, &ids, &stop, params);
    assert_eq!(g.stop, StopReason::EndToken, "reply: {:?}", g.text);
    assert!(!g.tokens.is_empty() && g.tokens.len() < 256);
    assert!(
        g.tokens.iter().all(|t| !stop.contains(t)),
        "the stop token is not output"
    );
    assert_eq!(streamed, g.text, "streamed pieces add up to the text");
    assert_eq!(g.text, e.tokenizer.decode(&g.tokens, true).unwrap());
    assert_eq!(g.prompt_tokens, ids.len());
    assert!(g.prefill_ms > 0.0 && g.decode_ms >= 0.0);
    // Greedy is deterministic.
    assert_eq!(run(&e, &ids, &stop, params).0.tokens, g.tokens);
}

#[test]
fn generation_stops_at_the_token_budget() {
    let Some(e) = engine() else { return };
    let ids = prompt_ids(&e, "Write a long essay about databases.");
    let params = SamplingParams {
        max_tokens: 5,
        ..SamplingParams::default()
    };
    let (g, streamed) = run(&e, &ids, &e.stop_ids(), params);
    assert_eq!(g.stop, StopReason::MaxTokens);
    assert_eq!(g.tokens.len(), 5);
    assert_eq!(streamed, g.text);
}

#[test]
fn a_stop_id_sampled_first_gives_an_empty_reply() {
    let Some(e) = engine() else { return };
    let ids = prompt_ids(&e, "How many songs?");
    let params = SamplingParams {
        max_tokens: 16,
        ..SamplingParams::default()
    };
    let first = run(&e, &ids, &[], params).0.tokens[0];
    let (g, streamed) = run(&e, &ids, &[first], params);
    assert_eq!(g.stop, StopReason::EndToken);
    assert!(g.tokens.is_empty() && g.text.is_empty() && streamed.is_empty());
}

#[test]
fn seeded_sampling_is_reproducible_and_seed_dependent() {
    let Some(e) = engine() else { return };
    let ids = prompt_ids(&e, "Name three SQL keywords.");
    let params = |seed| SamplingParams {
        temperature: 1.2,
        top_p: Some(0.95),
        seed,
        max_tokens: 24,
    };
    let a = run(&e, &ids, &[], params(1)).0.tokens;
    assert_eq!(a, run(&e, &ids, &[], params(1)).0.tokens);
    let others: Vec<Vec<u32>> = (2..5)
        .map(|s| run(&e, &ids, &[], params(s)).0.tokens)
        .collect();
    assert!(
        others.iter().any(|o| o != &a),
        "different seeds should give different samples"
    );
}

#[test]
fn a_prompt_that_does_not_fit_says_by_how_much() {
    let Some(e) = engine() else { return };
    let context = e.model.config().context_length;
    let ids = vec![e.tokenizer.token_to_id("SELECT").unwrap_or(1); context - 10];
    let params = SamplingParams {
        max_tokens: 64,
        ..SamplingParams::default()
    };
    let err = generate(
        &e.model,
        &e.tokenizer,
        GenerateRequest {
            prompt_ids: &ids,
            stop_ids: &[],
            sampling: params,
            constraint: None,
            check: None,
            cancel: None,
            stop_text: &[],
            prompt_split: None,
            mask_ahead: Default::default(),
        },
        &mut |_| {},
    )
    .unwrap_err();
    assert!(matches!(err, Error::PromptTooLong { .. }), "{err}");
    assert!(err.to_string().contains("54 too many"), "{err}");
}

/// Generates with greedy sampling and 24 tokens from `session`.
fn run_in(
    e: &Engine,
    session: &mut sqlagent::generate::LlamaSession<'_>,
    ids: &[u32],
) -> sqlagent::generate::Generation {
    run_split(e, session, ids, None)
}

/// [`run_in`] with the prefill split at `split`.
fn run_split(
    e: &Engine,
    session: &mut sqlagent::generate::LlamaSession<'_>,
    ids: &[u32],
    split: Option<usize>,
) -> sqlagent::generate::Generation {
    generate_with(
        session,
        &e.tokenizer,
        GenerateRequest {
            prompt_ids: ids,
            stop_ids: &e.stop_ids(),
            sampling: SamplingParams {
                max_tokens: 24,
                ..SamplingParams::default()
            },
            constraint: None,
            check: None,
            cancel: None,
            stop_text: &[],
            prompt_split: split,
            mask_ahead: Default::default(),
        },
        &mut |_| {},
    )
    .unwrap()
}

/// What a kept cache reuses of `shared` tokens: whole prefill chunks.
fn kept(shared: usize) -> usize {
    shared / PREFILL_CHUNK * PREFILL_CHUNK
}

/// A prompt with a schema long enough to span several prefill chunks.
fn long_prompt_ids(e: &Engine, question: &str) -> Vec<u32> {
    let columns: Vec<String> = (0..40)
        .map(|i| format!("  column_{i} INTEGER -- e.g. {i}, {}, {}", i * 7, i * 13))
        .collect();
    let system = format!(
        "Answer with one SQLite query over this schema.\nCREATE TABLE songs (\n{}\n);",
        columns.join(",\n")
    );
    let text = e
        .template
        .render(&[Message::system(&system), Message::user(question)], true)
        .unwrap();
    e.tokenizer.encode(&text).unwrap()
}

#[test]
fn a_kept_cache_skips_the_shared_prompt_start_and_changes_no_answer() {
    let Some(e) = engine() else { return };
    let first = long_prompt_ids(&e, "How many songs are in the songs table?");
    let second = long_prompt_ids(&e, "List the titles of songs longer than 300 seconds.");
    let shared = first
        .iter()
        .zip(&second)
        .take_while(|(a, b)| a == b)
        .count();
    assert!(
        shared > 2 * PREFILL_CHUNK,
        "the prompts share their system part"
    );

    let fresh = run_in(
        &e,
        &mut e.prompt_cache().checkout(&e.model, None, &second),
        &second,
    );
    assert_eq!(fresh.reused_prompt_tokens, 0, "nothing kept yet");

    let mut session = e.prompt_cache().checkout(&e.model, None, &first);
    run_in(&e, &mut session, &first);
    e.prompt_cache().checkin(session);
    let mut session = e.prompt_cache().checkout(&e.model, None, &second);
    let reused = run_in(&e, &mut session, &second);
    assert_eq!(reused.reused_prompt_tokens, kept(shared));
    assert_eq!(reused.text, fresh.text);
    assert_eq!(reused.tokens, fresh.tokens);

    // The same prompt again: all but its last few tokens come from the
    // cache (those are fed again, so the answer is computed as without it).
    e.prompt_cache().checkin(session);
    let again = run_in(
        &e,
        &mut e.prompt_cache().checkout(&e.model, None, &second),
        &second,
    );
    assert_eq!(again.reused_prompt_tokens, kept(second.len() - 1));
    assert_eq!(again.tokens, fresh.tokens);

    // With keeping off, nothing is reused.
    e.set_keep_cache(false);
    let mut session = e.prompt_cache().checkout(&e.model, None, &first);
    run_in(&e, &mut session, &first);
    e.prompt_cache().checkin(session);
    assert_eq!(
        run_in(
            &e,
            &mut e.prompt_cache().checkout(&e.model, None, &first),
            &first
        )
        .reused_prompt_tokens,
        0
    );
}

#[test]
fn a_prefill_split_where_the_question_starts_reuses_the_schema_part_exactly() {
    let Some(e) = engine() else { return };
    let first = long_prompt_ids(&e, "How many songs are in the songs table?");
    let second = long_prompt_ids(&e, "List the titles of songs longer than 300 seconds.");
    let shared = first
        .iter()
        .zip(&second)
        .take_while(|(a, b)| a == b)
        .count();
    assert!(
        shared % PREFILL_CHUNK != 0,
        "not a chunk boundary by chance"
    );
    let split = Some(shared);
    let cache = e.prompt_cache();
    let fresh = run_split(
        &e,
        &mut cache.checkout(&e.model, None, &second),
        &second,
        split,
    );
    assert_eq!(fresh.reused_prompt_tokens, 0);
    let mut session = cache.checkout(&e.model, None, &first);
    run_split(&e, &mut session, &first, split);
    cache.checkin(session);
    let mut session = cache.checkout(&e.model, None, &second);
    let reused = run_split(&e, &mut session, &second, split);
    // All of the shared part, not only its whole chunks, and the same answer.
    assert_eq!(reused.reused_prompt_tokens, shared);
    assert_eq!(reused.tokens, fresh.tokens);
    cache.checkin(session);
    // A prompt prefilled without that split was fed in other chunks: only
    // its whole chunks are reused for one that splits there.
    let mut session = cache.checkout(&e.model, None, &first);
    run_split(&e, &mut session, &first, None);
    cache.checkin(session);
    let mut session = cache.checkout(&e.model, None, &second);
    assert_eq!(
        run_split(&e, &mut session, &second, split).reused_prompt_tokens,
        kept(shared)
    );
}

#[test]
fn a_kept_cache_is_not_reused_under_another_adapter() {
    let Some(mut e) = engine() else { return };
    let tmp = common::temp_dir();
    // A zero update: same outputs, but the cache must still not cross over.
    let mut deltas = std::collections::BTreeMap::new();
    deltas.insert(
        "model.layers.0.self_attn.q_proj".to_string(),
        sqlagent::lora::LoraDelta {
            a: candle_core::Tensor::zeros((2, 576), DType::F32, &Device::Cpu).unwrap(),
            b: candle_core::Tensor::zeros((576, 2), DType::F32, &Device::Cpu).unwrap(),
            scale: 1.0,
        },
    );
    let config = serde_json::json!({"r": 2, "lora_alpha": 2});
    sqlagent::lora::Adapter::save(tmp.path(), &config, &deltas).unwrap();
    let slot = e.attach_adapter("zero", tmp.path()).unwrap();
    let ids = long_prompt_ids(&e, "How many songs are in the songs table?");
    let cache = e.prompt_cache();
    let mut session = cache.checkout(&e.model, None, &ids);
    run_in(&e, &mut session, &ids);
    cache.checkin(session);
    let mut session = cache.checkout(&e.model, Some(slot), &ids);
    assert_eq!(run_in(&e, &mut session, &ids).reused_prompt_tokens, 0);
    cache.checkin(session);
    assert_eq!(cache.len(), 2, "one entry for each adapter");
    let mut session = cache.checkout(&e.model, Some(slot), &ids);
    assert_eq!(
        run_in(&e, &mut session, &ids).reused_prompt_tokens,
        kept(ids.len() - 1)
    );
}
