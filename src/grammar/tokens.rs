//! The model's vocabulary as llguidance sees it: the bytes of every token
//! (special tokens marked with llguidance's 0xFF prefix, so text can never
//! spell them), the ids that end a turn, and our own encoder for the rare
//! stretches of text a grammar forces.

use std::sync::Arc;

use llguidance::toktrie::{TokEnv, TokRxInfo, TokTrie, TokenId, TokenizerEnv};

use crate::error::{Error, Result};
use crate::tokenizer::Tokenizer;

struct SqlTokEnv {
    trie: TokTrie,
    tokenizer: Tokenizer,
}

impl TokenizerEnv for SqlTokEnv {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    /// Canonical ids for `bytes` (no BOS/EOS); invalid UTF-8 falls back to
    /// the trie's greedy tokenization.
    fn tokenize_bytes(&self, bytes: &[u8]) -> Vec<TokenId> {
        self.trie.tokenize_with_greedy_fallback(bytes, |text| {
            self.tokenizer.encode(text).unwrap_or_default()
        })
    }
}

/// Builds the token environment for `tokenizer`, `width` ids wide (the
/// model's logits width; ids the tokenizer lacks can never be produced).
/// `stop_ids` (EOS, end of turn) are allowed exactly when the grammar can end.
pub fn token_env(tokenizer: &Tokenizer, width: usize, stop_ids: &[u32]) -> Result<TokEnv> {
    let invalid = |m: String| Error::Tokenizer {
        context: tokenizer.context().to_string(),
        message: m,
    };
    if width < tokenizer.vocab_size() {
        return Err(invalid(format!(
            "the model's vocabulary ({width}) is smaller than the tokenizer's ({})",
            tokenizer.vocab_size()
        )));
    }
    let words: Vec<Vec<u8>> = (0..width as u32)
        .map(|id| match tokenizer.token_bytes(id) {
            Some(bytes) if tokenizer.is_special(id) => {
                let mut marked = Vec::with_capacity(bytes.len() + 1);
                marked.push(TokTrie::SPECIAL_TOKEN_MARKER);
                marked.extend_from_slice(&bytes);
                marked
            }
            Some(bytes) => bytes,
            None => Vec::new(),
        })
        .collect();
    let stops: Vec<u32> = stop_ids
        .iter()
        .copied()
        .filter(|&id| (id as usize) < width)
        .collect();
    let Some(&eos) = stops.first() else {
        return Err(invalid(
            "no end-of-sequence or end-of-turn token is known".into(),
        ));
    };
    let info = TokRxInfo {
        vocab_size: width as u32,
        tok_eos: eos,
        tok_bos: None,
        tok_pad: None,
        tok_unk: None,
        tok_end_of_turn: Some(eos),
    };
    let trie = TokTrie::from(&info, &words).with_eos_tokens(&stops);
    Ok(Arc::new(SqlTokEnv {
        trie,
        tokenizer: tokenizer.clone(),
    }))
}
