//! Tokenizers: `tokenizer.json` or built from GGUF metadata.
//!
//! Every model we run speaks through one [`Tokenizer`], whichever way it was
//! loaded:
//!
//! - [`Tokenizer::from_file`] reads a Hugging Face `tokenizer.json`;
//! - [`Tokenizer::from_gguf`] rebuilds the same kind of tokenizer from the
//!   `tokenizer.ggml.*` metadata of a GGUF file (llama.cpp / Ollama models),
//!   following llama.cpp's rules so that ids match what llama.cpp and
//!   transformers produce for the same file.
//!
//! [`Tokenizer::encode`] never adds BOS/EOS: the chat template already writes
//! them, and special tokens written in the text (`<|eot_id|>`, `<|im_start|>`)
//! map to their single ids. [`SpecialTokens`] says which ids begin and end a
//! sequence or a turn, and [`StreamDecoder`] turns generated ids into text as
//! they arrive without splitting a multi-byte character.
//!
//! ```no_run
//! # fn main() -> sqlagent::Result<()> {
//! use sqlagent::tokenizer::{StreamDecoder, Tokenizer};
//! let tok = Tokenizer::from_file("models/llama3-tokenizer/tokenizer.json".as_ref())?;
//! let ids = tok.encode("<|begin_of_text|>SELECT 1;")?;
//! let mut stream = StreamDecoder::new(&tok);
//! let mut text = String::new();
//! for &id in &ids {
//!     if let Some(piece) = stream.push(id)? {
//!         text.push_str(&piece);
//!     }
//! }
//! text.push_str(&stream.finish()?.unwrap_or_default());
//! assert_eq!(text, tok.decode(&ids, false)?);
//! # Ok(())
//! # }
//! ```

mod bytes;
mod gguf;
mod special;
mod stream;

use std::collections::HashSet;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use candle_core::quantized::gguf_file;
use tokenizers::{DecoderWrapper, NormalizerWrapper};

use crate::error::{Error, Result};

pub use gguf::SUPPORTED_PRE_TOKENIZERS;
pub use special::{chat_template_from_gguf, SpecialTokens};
pub use stream::StreamDecoder;

/// How a single token's text maps back to bytes (see [`Tokenizer::token_bytes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenText {
    /// GPT-2 byte-level BPE: each character stands for one byte.
    ByteLevel,
    /// SentencePiece: `▁` is a space and `<0xNN>` is a raw byte.
    SentencePiece,
    /// Anything else: the token text is the text.
    Plain,
}

/// A text tokenizer: text ⇄ token ids.
///
/// Cheap to clone (the vocabulary is shared), and safe to use from many
/// threads at once.
#[derive(Clone)]
pub struct Tokenizer {
    inner: Arc<tokenizers::Tokenizer>,
    context: Arc<str>,
    special_ids: Arc<HashSet<u32>>,
    vocab_size: usize,
    token_text: TokenText,
}

impl fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokenizer")
            .field("context", &self.context)
            .field("vocab_size", &self.vocab_size)
            .field("special_tokens", &self.special_ids.len())
            .finish()
    }
}

/// Builds the library error for a tokenizer problem.
fn tok_err(context: &str, message: impl Into<String>) -> Error {
    Error::Tokenizer {
        context: context.to_string(),
        message: message.into(),
    }
}

/// The longest added token a `tokenizer.json` may list.
const MAX_ADDED_TOKEN_BYTES: usize = 4096;

/// The `added_tokens` of a `tokenizer.json`, read before the file is
/// handed to `tokenizers` (which also checks the JSON's syntax first).
#[derive(serde::Deserialize)]
struct AddedTokens {
    #[serde(default)]
    added_tokens: Vec<ListedToken>,
}

#[derive(serde::Deserialize)]
struct ListedToken {
    id: Option<u64>,
    #[serde(default)]
    content: String,
}

impl Tokenizer {
    /// Loads a Hugging Face `tokenizer.json`. Errors name the file.
    ///
    /// Truncation and padding settings stored in the file are dropped: a
    /// prompt is never cut short behind the caller's back.
    pub fn from_file(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let context = path.display().to_string();
        // A whole tree first: its parser checks syntax and nesting depth,
        // which tokenizers 0.23 turns into a panic inside "decoder".
        let tree: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| tok_err(&context, format!("not valid JSON: {e}")))?;
        let invalid =
            |e: serde_json::Error| tok_err(&context, format!("not a valid tokenizer.json: {e}"));
        let listed = <AddedTokens as serde::Deserialize>::deserialize(&tree).map_err(invalid)?;
        // The added-token matcher takes ~100 bytes per byte of token: a
        // megabyte-long "token" is a broken file, not a vocabulary.
        if let Some(long) = listed
            .added_tokens
            .iter()
            .find(|t| t.content.len() > MAX_ADDED_TOKEN_BYTES)
        {
            return Err(tok_err(
                &context,
                format!(
                    "added token {} is {} bytes long (at most {MAX_ADDED_TOKEN_BYTES})",
                    long.id.unwrap_or_default(),
                    long.content.len()
                ),
            ));
        }
        // The same tree, not the text parsed again.
        let inner: tokenizers::Tokenizer = serde_json::from_value(tree).map_err(invalid)?;
        Self::from_inner(inner, context)
    }

    /// Builds a tokenizer from the `tokenizer.ggml.*` metadata of a GGUF file.
    ///
    /// `context` names the source in error messages (usually the file path).
    ///
    /// - `tokenizer.ggml.model = "gpt2"`: byte-level BPE from
    ///   `tokenizer.ggml.tokens` and `tokenizer.ggml.merges`, with the
    ///   pre-tokenizer named by `tokenizer.ggml.pre` (see
    ///   [`SUPPORTED_PRE_TOKENIZERS`]; an unknown name is an error, a missing
    ///   key means llama.cpp's `default`).
    /// - `tokenizer.ggml.model = "llama"`: SentencePiece BPE from the tokens
    ///   and `tokenizer.ggml.scores`, with `▁` for spaces and `<0xNN>` byte
    ///   fallback, as llama.cpp tokenizes it.
    ///
    /// Control, user-defined and unknown tokens (`tokenizer.ggml.token_type`
    /// 3, 4 and 2) become added tokens, so `<|im_start|>` in the text encodes
    /// to its single id.
    pub fn from_gguf(content: &gguf_file::Content, context: &str) -> Result<Self> {
        let inner = gguf::build(&content.metadata, context)?;
        Self::from_inner(inner, context)
    }

    /// Wraps an already built `tokenizers::Tokenizer`; `context` names its
    /// source in error messages. Truncation and padding are turned off.
    pub fn from_inner(
        mut inner: tokenizers::Tokenizer,
        context: impl Into<String>,
    ) -> Result<Self> {
        let context: String = context.into();
        inner
            .with_truncation(None)
            .map_err(|e| tok_err(&context, e.to_string()))?;
        inner.with_padding(None);

        let added = inner.get_added_tokens_decoder();
        let special_ids: HashSet<u32> = added
            .iter()
            .filter(|(_, token)| token.special)
            .map(|(id, _)| *id)
            .collect();
        let model_max = inner.get_vocab(false).into_values().max();
        let added_max = added.keys().copied().max();
        let vocab_size = match model_max.max(added_max) {
            Some(max) => max as usize + 1,
            None => 0,
        };
        let token_text = detect_token_text(inner.get_decoder(), inner.get_normalizer());
        Ok(Self {
            inner: Arc::new(inner),
            context: context.into(),
            special_ids: Arc::new(special_ids),
            vocab_size,
            token_text,
        })
    }

    /// Text to token ids. Never adds BOS/EOS; special tokens written in the
    /// text (`<|eot_id|>`, `<|im_start|>`) become their single ids.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .inner
            .encode_fast(text, false)
            .map_err(|e| tok_err(&self.context, format!("encode failed: {e}")))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Token ids to text.
    ///
    /// With `skip_special = false` special tokens are written out
    /// (`<|eot_id|>`), so `decode(encode(text)) == text` also for chat
    /// prompts; with `true` they are left out, which is what a user wants to
    /// see of a model's answer. Ids outside the vocabulary are left out.
    /// Bytes that do not form valid UTF-8 become U+FFFD.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special)
            .map_err(|e| tok_err(&self.context, format!("decode failed: {e}")))
    }

    /// The id of a token, given its text as stored in the vocabulary
    /// (byte-level form for GPT-2 style vocabularies: `"Ġthe"`).
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The text of a token as stored in the vocabulary (`"Ġthe"`, `"▁the"`,
    /// `"<|eot_id|>"`); see [`Tokenizer::token_bytes`] for the bytes it stands for.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The bytes a token contributes to decoded text: `"Ġthe"` → `b" the"`,
    /// `"<0x0A>"` → `b"\n"`, a special token → its own text. `None` for an id
    /// outside the vocabulary. A token may hold part of a UTF-8 character.
    pub fn token_bytes(&self, id: u32) -> Option<Vec<u8>> {
        let token = self.inner.id_to_token(id)?;
        if self.special_ids.contains(&id) {
            return Some(token.into_bytes());
        }
        Some(match self.token_text {
            TokenText::ByteLevel => bytes::byte_level_to_bytes(&token),
            TokenText::SentencePiece => bytes::sentencepiece_to_bytes(&token),
            TokenText::Plain => token.into_bytes(),
        })
    }

    /// Number of token ids: one more than the highest id, added tokens included.
    /// This is the width of the model's logits for well-formed models.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// Whether `id` is a special (control) token such as `<|eot_id|>`.
    pub fn is_special(&self, id: u32) -> bool {
        self.special_ids.contains(&id)
    }

    /// Where this tokenizer came from (file path or the GGUF context given).
    pub fn context(&self) -> &str {
        &self.context
    }

    /// The underlying `tokenizers` tokenizer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}

/// Guesses how token text maps to bytes from the decoder (and normalizer).
fn detect_token_text(
    decoder: Option<&DecoderWrapper>,
    normalizer: Option<&NormalizerWrapper>,
) -> TokenText {
    fn walk(decoder: &DecoderWrapper) -> Option<TokenText> {
        match decoder {
            DecoderWrapper::ByteLevel(_) => Some(TokenText::ByteLevel),
            DecoderWrapper::Metaspace(_) | DecoderWrapper::ByteFallback(_) => {
                Some(TokenText::SentencePiece)
            }
            DecoderWrapper::Sequence(seq) => seq.get_decoders().iter().find_map(walk),
            _ => None,
        }
    }
    if let Some(kind) = decoder.and_then(walk) {
        return kind;
    }
    match normalizer {
        Some(NormalizerWrapper::Prepend(_)) | Some(NormalizerWrapper::Replace(_)) => {
            TokenText::SentencePiece
        }
        _ => TokenText::Plain,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::gguf::tests::tiny_byte_level;
    use tokenizers::processors::template::TemplateProcessing;
    use tokenizers::TruncationParams;

    #[test]
    fn encode_never_adds_bos_nor_truncates() {
        let base = Tokenizer::from_gguf(&tiny_byte_level("gpt-2", &[]), "t").unwrap();
        let mut inner = base.inner().clone();
        let bos = TemplateProcessing::builder()
            .try_single("<|im_start|> $A")
            .unwrap()
            .special_tokens(vec![("<|im_start|>", 0)])
            .build()
            .unwrap();
        inner.with_post_processor(Some(bos));
        inner
            .with_truncation(Some(TruncationParams {
                max_length: 2,
                ..Default::default()
            }))
            .unwrap();
        assert_eq!(inner.encode("abcd", true).unwrap().get_ids().len(), 2);

        let tok = Tokenizer::from_inner(inner, "with template").unwrap();
        let ids = tok.encode("abcd").unwrap();
        assert_eq!(ids, base.encode("abcd").unwrap());
        assert_eq!(ids.len(), 4);
        assert_eq!(tok.context(), "with template");
        assert!(format!("{tok:?}").contains("vocab_size"));
    }
}
