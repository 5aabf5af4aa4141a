//! Integration tests: tokenizer.
//!
//! Reference ids were produced by independent implementations and are copied
//! here so the tests run without `../shared/fixtures`:
//! - SmolLM2 (`SmolLM2-135M-Instruct.Q4_1.gguf`): `smollm2-reference.json`,
//!   transformers 5.24 loading the GGUF, cross-checked with llama.cpp's
//!   `llama-tokenize` (0 mismatches).
//! - Llama 3 (`llama3-tokenizer/tokenizer.json`): `llama3-tokenizer-reference.json`,
//!   HF tokenizers 0.23.3 (Python).
//!
//! When the shared fixtures are present, the tests also compare against the
//! files themselves.

use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{Content, Value};
use sqlagent::tokenizer::{chat_template_from_gguf, SpecialTokens, StreamDecoder, Tokenizer};

use crate::common;

// From ../shared/fixtures/smollm2-reference.json (`tokenizer_ids`, `chat_prompt`):
// transformers 5.24 on the GGUF, cross-checked with llama.cpp `llama-tokenize`:
//   python -c "from transformers import AutoTokenizer as A; \
//     t = A.from_pretrained('.', gguf_file='SmolLM2-135M-Instruct.Q4_1.gguf'); \
//     print(t.encode(TEXT, add_special_tokens=False))"
//   llama-tokenize -m SmolLM2-135M-Instruct.Q4_1.gguf -p TEXT --ids --no-bos
// From ../shared/fixtures/llama3-tokenizer-reference.json (`tokenizer_ids`):
// HF tokenizers 0.23.3 on the same tokenizer.json (re-run here with
// `pip install tokenizers==0.23.3`, same ids):
//   python -c "from tokenizers import Tokenizer; \
//     t = Tokenizer.from_file('models/llama3-tokenizer/tokenizer.json'); \
//     print(t.encode(TEXT, add_special_tokens=False).ids)"
const SMOLLM2_IDS: &[(&str, &[u32])] = &[
    (
        "SELECT title FROM songs WHERE year > 2010 ORDER BY popularity DESC LIMIT 5;",
        &[
            23428, 5038, 18451, 8786, 28531, 713, 2986, 216, 34, 32, 33, 32, 7982, 29738, 18172,
            9338, 422, 23110, 35873, 216, 37, 43,
        ],
    ),
    (
        "SELECT \"top genre\", COUNT(*) FROM songs GROUP BY 1;",
        &[
            23428, 476, 4961, 10265, 1002, 3214, 23330, 12905, 25, 18451, 8786, 44516, 11957,
            18172, 216, 33, 43,
        ],
    ),
    (
        "Which artist appears the most often in the data?",
        &[14413, 6949, 4541, 260, 768, 1129, 281, 260, 940, 47],
    ),
    (
        "  two  spaces\n\nnewlines\tand tabs 3.14159 naïve café 日本語 🚀",
        &[
            216, 827, 216, 5600, 198, 198, 2241, 5110, 197, 397, 29416, 216, 35, 30, 33, 36, 33,
            37, 41, 15486, 46494, 37366, 17097, 241, 115, 40993, 179, 120, 248, 15107, 244, 218,
        ],
    ),
    (
        "SELECT AVG([beats.per.minute]) from songs;",
        &[
            23428, 21922, 55, 4151, 40106, 30, 456, 30, 15598, 2255, 429, 8786, 43,
        ],
    ),
    (
        "<|im_start|>user\nHow many songs?<|im_end|>\n<|im_start|>assistant\n",
        &[1, 4093, 198, 2020, 800, 8786, 47, 2, 198, 1, 520, 9531, 198],
    ),
    (
        "It's O'Brien's \"quoted\" text -- with a comment /* and */ symbols: <>=!",
        &[
            1589, 506, 492, 23, 37487, 506, 476, 385, 5036, 18, 1694, 3009, 351, 253, 5189, 2272,
            26, 284, 1672, 31, 7349, 42, 2067, 31615, 17,
        ],
    ),
    ("", &[]),
];
const LLAMA3_IDS: &[(&str, &[u32])] = &[
    (
        "SELECT title FROM songs WHERE year > 2010 ORDER BY popularity DESC LIMIT 5;",
        &[
            4963, 2316, 4393, 11936, 5401, 1060, 871, 220, 679, 15, 15888, 7866, 23354, 16477,
            10592, 220, 20, 26,
        ],
    ),
    (
        "SELECT \"top genre\", COUNT(*) FROM songs GROUP BY 1;",
        &[
            4963, 330, 3565, 17779, 498, 24945, 29771, 4393, 11936, 27968, 7866, 220, 16, 26,
        ],
    ),
    (
        "Which artist appears the most often in the data?",
        &[23956, 10255, 8111, 279, 1455, 3629, 304, 279, 828, 30],
    ),
    (
        "  two  spaces\n\nnewlines\tand tabs 3.14159 naïve café 日本語 🚀",
        &[
            220, 1403, 220, 12908, 271, 943, 8128, 53577, 23204, 220, 18, 13, 9335, 2946, 95980,
            588, 53050, 105180, 102158, 11410, 248, 222,
        ],
    ),
    (
        "SELECT AVG([beats.per.minute]) from songs;",
        &[
            4963, 71514, 2625, 1395, 1900, 12211, 67319, 2526, 505, 11936, 26,
        ],
    ),
    (
        "It's O'Brien's \"quoted\" text -- with a comment /* and */ symbols: <>=!",
        &[
            2181, 596, 507, 62561, 596, 330, 64825, 1, 1495, 1198, 449, 264, 4068, 1416, 323, 642,
            18210, 25, 366, 10123, 0,
        ],
    ),
    ("", &[]),
];
const CHAT_RENDERED: &str = "<|im_start|>system\nYou are a SQLite expert. Schema:\nCREATE TABLE songs (title TEXT, artist TEXT, \"top genre\" TEXT, year INTEGER, popularity INTEGER);\nAnswer with one SQL query.<|im_end|>\n<|im_start|>user\nWhich artist has the most songs?<|im_end|>\n<|im_start|>assistant\n";
const CHAT_IDS: [u32; 62] = [
    1, 9690, 198, 2683, 359, 253, 15142, 663, 4507, 30, 43655, 42, 198, 38965, 37206, 8786, 365,
    7260, 48962, 28, 6949, 48962, 28, 476, 4961, 10265, 18, 48962, 28, 713, 31174, 46856, 28, 9338,
    31174, 46856, 4258, 198, 21350, 351, 582, 15142, 8520, 30, 2, 198, 1, 4093, 198, 14413, 6949,
    553, 260, 768, 8786, 47, 2, 198, 1, 520, 9531, 198,
];

/// SQL and Unicode text that must survive encode → decode unchanged.
const ROUND_TRIP: &[&str] = &[
    "SELECT title, artist FROM songs WHERE \"top genre\" = 'dance pop' AND year >= 2015;",
    "SELECT AVG([beats.per.minute]) FROM songs GROUP BY `year` HAVING COUNT(*) > 3;",
    "SELECT name FROM t WHERE note LIKE '%O''Brien%'; -- it's a comment\n",
    "SELECT \"a\"\"b\", [x y], (1+2)*3/4 % 5 FROM t WHERE a <> b AND c != d;",
    "\tindented\twith\ttabs\n\nand  double  spaces   and trailing   ",
    "  leading spaces",
    "emoji 🚀🎵👩‍💻 and a flag 🇫🇷",
    "日本語のテキスト、中文文本，한국어",
    "naïve café résumé Ærøskøbing Straße ñ ü",
    "math: x² ≤ 3½ → ∞; price €12.50 £3",
    "{\"json\": [1, 2.5e-3, null], \"nested\": {\"k\": \"v\"}}",
    "line1\r\nline2\rline3",
    "",
    " ",
    "\n",
    "123456789 0.000001 -42",
];

fn smollm2() -> Option<(Tokenizer, Content)> {
    let path = common::smollm2_gguf()?;
    let mut file = std::fs::File::open(&path).expect("open GGUF");
    let content = Content::read(&mut file).expect("read GGUF metadata");
    let tok = Tokenizer::from_gguf(&content, &path.display().to_string()).expect("GGUF tokenizer");
    Some((tok, content))
}

fn llama3() -> Option<(Tokenizer, PathBuf)> {
    let dir = common::llama3_tokenizer_dir()?;
    let tok = Tokenizer::from_file(&dir.join("tokenizer.json")).expect("tokenizer.json");
    Some((tok, dir))
}

/// `tokenizer_ids` of a shared reference file, when the fixtures are present.
fn shared_reference(name: &str) -> Option<Vec<(String, Vec<u32>)>> {
    let path = common::shared_fixtures()?.join(name);
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).ok()?).expect("reference JSON");
    let items = json["tokenizer_ids"].as_array()?;
    Some(
        items
            .iter()
            .map(|item| {
                let text = item["text"].as_str().expect("text").to_string();
                let ids = item["ids"]
                    .as_array()
                    .expect("ids")
                    .iter()
                    .map(|id| id.as_u64().expect("id") as u32)
                    .collect();
                (text, ids)
            })
            .collect(),
    )
}

fn assert_ids(tok: &Tokenizer, expected: &[(&str, &[u32])]) {
    for (text, ids) in expected {
        assert_eq!(tok.encode(text).unwrap(), *ids, "ids of {text:?}");
        assert_eq!(tok.decode(ids, false).unwrap(), *text, "decode of {text:?}");
    }
}

fn assert_round_trips(tok: &Tokenizer, texts: &[&str]) {
    for text in texts {
        let ids = tok.encode(text).unwrap();
        assert_eq!(
            tok.decode(&ids, false).unwrap(),
            *text,
            "round trip of {text:?}"
        );
    }
}

/// Streams `ids` one at a time and checks the pieces add up to `decode`.
fn assert_stream_matches_decode(tok: &Tokenizer, ids: &[u32], skip_special: bool) {
    let mut stream = StreamDecoder::with_skip_special(tok, skip_special);
    let mut text = String::new();
    for &id in ids {
        if let Some(piece) = stream.push(id).unwrap() {
            assert!(!piece.contains('\u{FFFD}'), "split character in {piece:?}");
            text.push_str(&piece);
        }
    }
    text.push_str(&stream.finish().unwrap().unwrap_or_default());
    assert_eq!(
        text,
        tok.decode(ids, skip_special).unwrap(),
        "stream of {ids:?}"
    );
}

#[test]
fn smollm2_gguf_ids_match_reference() {
    let Some((tok, _)) = smollm2() else { return };
    assert_ids(&tok, SMOLLM2_IDS);
}

#[test]
fn smollm2_gguf_chat_prompt_ids_match_reference() {
    let Some((tok, _)) = smollm2() else { return };
    let ids = tok.encode(CHAT_RENDERED).unwrap();
    assert_eq!(ids.len(), 62);
    assert_eq!(ids, CHAT_IDS);
    assert_eq!(tok.decode(&ids, false).unwrap(), CHAT_RENDERED);
}

#[test]
fn smollm2_gguf_ids_match_shared_fixture_file() {
    let Some((tok, _)) = smollm2() else { return };
    let Some(reference) = shared_reference("smollm2-reference.json") else {
        return;
    };
    for (text, ids) in reference {
        assert_eq!(tok.encode(&text).unwrap(), ids, "ids of {text:?}");
    }
}

#[test]
fn llama3_tokenizer_json_ids_match_reference() {
    let Some((tok, _)) = llama3() else { return };
    assert_ids(&tok, LLAMA3_IDS);
}

#[test]
fn llama3_tokenizer_json_ids_match_shared_fixture_file() {
    let Some((tok, _)) = llama3() else { return };
    let Some(reference) = shared_reference("llama3-tokenizer-reference.json") else {
        return;
    };
    for (text, ids) in reference {
        assert_eq!(tok.encode(&text).unwrap(), ids, "ids of {text:?}");
    }
}

#[test]
fn llama3_special_tokens_in_text_are_single_ids_and_no_bos_is_added() {
    let Some((tok, _)) = llama3() else { return };
    let text = "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>";
    let ids = tok.encode(text).unwrap();
    assert_eq!(ids[..2], [128000, 128006]);
    assert_eq!(ids.last(), Some(&128009));
    assert_eq!(tok.decode(&ids, false).unwrap(), text);
    assert_eq!(tok.decode(&ids, true).unwrap(), "user\n\nHi");
    assert_eq!(tok.encode("SELECT").unwrap(), [4963], "no BOS added");
    assert_eq!(tok.vocab_size(), 128_256);
    assert!(tok.is_special(128009) && !tok.is_special(4963));
    assert_eq!(tok.token_bytes(4963).unwrap(), b"SELECT");
    assert_eq!(tok.token_bytes(220).unwrap(), b" ");
}

#[test]
fn round_trip_corpus_llama3_tokenizer_json() {
    let Some((tok, _)) = llama3() else { return };
    assert_round_trips(&tok, ROUND_TRIP);
    assert_round_trips(&tok, &["<|begin_of_text|>x<|eot_id|>", "<|im_start|>plain"]);
}

#[test]
fn round_trip_corpus_smollm2_gguf() {
    let Some((tok, _)) = smollm2() else { return };
    assert_round_trips(&tok, ROUND_TRIP);
    assert_round_trips(&tok, &[CHAT_RENDERED, "<|endoftext|><|im_start|>x"]);
}

#[test]
fn stream_decoder_reproduces_decode_llama3() {
    let Some((tok, _)) = llama3() else { return };
    for text in ROUND_TRIP.iter().chain(LLAMA3_IDS.iter().map(|(t, _)| t)) {
        let ids = tok.encode(text).unwrap();
        assert_stream_matches_decode(&tok, &ids, false);
        assert_stream_matches_decode(&tok, &ids, true);
    }
    let ids = tok
        .encode("<|start_header_id|>日本語 🚀<|eot_id|>")
        .unwrap();
    assert_stream_matches_decode(&tok, &ids, false);
    assert_stream_matches_decode(&tok, &ids, true);
}

#[test]
fn stream_decoder_reproduces_decode_smollm2() {
    let Some((tok, _)) = smollm2() else { return };
    for text in ROUND_TRIP
        .iter()
        .chain(SMOLLM2_IDS.iter().map(|(t, _)| t))
        .chain([&CHAT_RENDERED])
    {
        let ids = tok.encode(text).unwrap();
        assert_stream_matches_decode(&tok, &ids, false);
        assert_stream_matches_decode(&tok, &ids, true);
    }
    // The reference ids split 🚀 over several byte tokens (…, 15107, 244, 218).
    let (_, ids) = SMOLLM2_IDS[3];
    let mut stream = StreamDecoder::new(&tok);
    let pieces: Vec<String> = ids
        .iter()
        .filter_map(|&id| stream.push(id).unwrap())
        .collect();
    assert!(pieces.iter().any(|p| p.ends_with('🚀')), "{pieces:?}");
    assert!(
        pieces
            .iter()
            .any(|p| p.contains("日本語") || p.contains('語')),
        "{pieces:?}"
    );
}

#[test]
fn smollm2_gguf_special_tokens_and_chat_template() {
    let Some((tok, content)) = smollm2() else {
        return;
    };
    let special = SpecialTokens::from_gguf(&content, &tok).unwrap();
    assert_eq!(special.bos, Some(1), "<|im_start|>");
    assert_eq!(special.eos, Some(2), "<|im_end|>");
    assert_eq!(special.eot, Some(2), "<|im_end|> by name");
    assert_eq!(special.stop_ids(), vec![2]);
    assert_eq!(tok.vocab_size(), 49_152);
    assert_eq!(tok.token_to_id("<|im_start|>"), Some(1));
    assert_eq!(tok.id_to_token(2).as_deref(), Some("<|im_end|>"));
    let template = chat_template_from_gguf(&content).expect("chat template");
    assert!(template.contains("<|im_start|>"), "{template}");
}

#[test]
fn llama3_hf_dir_special_tokens() {
    let Some((tok, dir)) = llama3() else { return };
    let special = SpecialTokens::from_hf_dir(&dir, &tok).unwrap();
    assert_eq!(special.bos, Some(128_000), "<|begin_of_text|>");
    assert_eq!(special.eos, Some(128_001), "<|end_of_text|>");
    assert_eq!(special.eot, Some(128_009), "<|eot_id|>");
}

/// GGUF metadata holding the Llama 3 vocabulary, as llama.cpp's converter
/// writes it (control tokens type 3, merges as "left right").
fn llama3_as_gguf_metadata(dir: &Path, pre: &str) -> Content {
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("tokenizer.json")).unwrap()).unwrap();
    let vocab = json["model"]["vocab"].as_object().unwrap();
    let added = json["added_tokens"].as_array().unwrap();
    let size = vocab.len() + added.len();
    let mut tokens = vec![String::new(); size];
    let mut types = vec![Value::I32(1); size];
    for (token, id) in vocab {
        tokens[id.as_u64().unwrap() as usize] = token.clone();
    }
    for token in added {
        let id = token["id"].as_u64().unwrap() as usize;
        tokens[id] = token["content"].as_str().unwrap().to_string();
        types[id] = Value::I32(3);
    }
    let merges = json["model"]["merges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| match m {
            serde_json::Value::String(s) => Value::String(s.clone()),
            pair => Value::String(format!(
                "{} {}",
                pair[0].as_str().unwrap(),
                pair[1].as_str().unwrap()
            )),
        })
        .collect();
    let metadata = [
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.pre", Value::String(pre.into())),
        (
            "tokenizer.ggml.tokens",
            Value::Array(tokens.into_iter().map(Value::String).collect()),
        ),
        ("tokenizer.ggml.token_type", Value::Array(types)),
        ("tokenizer.ggml.merges", Value::Array(merges)),
        ("tokenizer.ggml.bos_token_id", Value::U32(128_000)),
        ("tokenizer.ggml.eos_token_id", Value::U32(128_009)),
    ];
    Content {
        magic: candle_core::quantized::gguf_file::VersionedMagic::GgufV3,
        metadata: metadata
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        tensor_infos: Default::default(),
        tensor_data_offset: 0,
    }
}

#[test]
fn llama3_vocab_as_gguf_llama_bpe_matches_reference() {
    let Some((json_tok, dir)) = llama3() else {
        return;
    };
    let content = llama3_as_gguf_metadata(&dir, "llama-bpe");
    let tok = Tokenizer::from_gguf(&content, "llama3 as GGUF").unwrap();
    assert_ids(&tok, LLAMA3_IDS);
    assert_eq!(tok.vocab_size(), json_tok.vocab_size());
    let chat = "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>";
    assert_eq!(tok.encode(chat).unwrap(), json_tok.encode(chat).unwrap());
    for text in ROUND_TRIP {
        assert_eq!(
            tok.encode(text).unwrap(),
            json_tok.encode(text).unwrap(),
            "{text:?}"
        );
    }
    let special = SpecialTokens::from_gguf(&content, &tok).unwrap();
    assert_eq!(
        (special.bos, special.eos, special.eot),
        (Some(128_000), Some(128_009), Some(128_009))
    );
}

#[test]
fn gguf_unknown_pre_tokenizer_error_names_it() {
    let mut tokens: Vec<Value> = vec![Value::String("<|endoftext|>".into())];
    tokens.extend(["a", "b", "ab"].map(|t| Value::String(t.into())));
    let metadata = [
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.pre", Value::String("mystery-bpe".into())),
        ("tokenizer.ggml.tokens", Value::Array(tokens)),
        (
            "tokenizer.ggml.merges",
            Value::Array(vec![Value::String("a b".into())]),
        ),
    ];
    let content = Content {
        magic: candle_core::quantized::gguf_file::VersionedMagic::GgufV3,
        metadata: metadata
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        tensor_infos: Default::default(),
        tensor_data_offset: 0,
    };
    let err = Tokenizer::from_gguf(&content, "mystery.gguf").unwrap_err();
    assert!(matches!(err, sqlagent::Error::Tokenizer { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("mystery-bpe"), "{message}");
    assert!(message.contains("tokenizer.ggml.pre"), "{message}");
    assert!(message.contains("mystery.gguf"), "{message}");
}

#[test]
fn missing_tokenizer_file_is_an_io_error_naming_it() {
    let dir = common::temp_dir();
    let path = dir.path().join("nope").join("tokenizer.json");
    let err = Tokenizer::from_file(&path).unwrap_err();
    assert!(matches!(err, sqlagent::Error::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("tokenizer.json"));

    let bad = dir.path().join("tokenizer.json");
    std::fs::write(&bad, "{ not json").unwrap();
    let err = Tokenizer::from_file(&bad).unwrap_err();
    assert!(matches!(err, sqlagent::Error::Tokenizer { .. }), "{err:?}");
    assert!(err.to_string().contains(&bad.display().to_string()));
}

/// The error loading `contents` as a `tokenizer.json` gives (a panic when
/// it loads).
fn load_error(contents: &str) -> String {
    let tmp = common::temp_dir();
    let path = tmp.path().join("tokenizer.json");
    std::fs::write(&path, contents).unwrap();
    match sqlagent::tokenizer::Tokenizer::from_file(&path) {
        Ok(_) => panic!("a broken tokenizer.json loaded"),
        Err(e) => e.to_string(),
    }
}

/// Found by tests/it/hostile: a JSON syntax error inside "decoder" made
/// the tokenizers crate panic; it is an error naming the file.
#[test]
fn a_syntax_error_inside_the_decoder_is_an_error_not_a_panic() {
    let Some(dir) = common::llama3_tokenizer_dir() else {
        return;
    };
    let text = std::fs::read_to_string(dir.join("tokenizer.json")).unwrap();
    let at = text.find("\"decoder\"").expect("the file has a decoder");
    let broken = format!(
        "{}\"decoder\": {{\"type\": ,{}",
        &text[..at],
        &text[at + 10..]
    );
    let text = load_error(&broken);
    assert!(
        text.contains("tokenizer.json") && text.contains("not valid JSON"),
        "{text}"
    );
}

/// Found by tests/it/hostile: a megabyte-long added token made the
/// added-token matcher allocate ~100 bytes per byte; it is refused.
#[test]
fn an_added_token_a_megabyte_long_is_refused() {
    let Some(dir) = common::llama3_tokenizer_dir() else {
        return;
    };
    let text = std::fs::read_to_string(dir.join("tokenizer.json")).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["added_tokens"][3]["content"] = serde_json::json!("x".repeat(1 << 20));
    let text = load_error(&json.to_string());
    assert!(
        text.contains("tokenizer.json") && text.contains("added token 128003 is 1048576 bytes"),
        "{text}"
    );
}
