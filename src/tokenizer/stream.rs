//! Incremental detokenization for streaming output.
//!
//! A token may end in the middle of a UTF-8 character (byte-level BPE splits
//! `🚀` into several tokens), and some decoders change a token's text by
//! what precedes it (SentencePiece drops the space of the first `▁`). So we
//! decode a short window of recent ids twice — with and without the new ones
//! — and emit the difference once it no longer ends in an incomplete
//! character (U+FFFD). Every emitted piece is final; the pieces concatenate
//! to [`Tokenizer::decode`] of all ids (the same `skip_special` setting).

use super::{tok_err, Tokenizer};
use crate::error::Result;

/// Turns token ids into text as they are generated.
///
/// ```no_run
/// # fn demo(tok: &sqlagent::tokenizer::Tokenizer, ids: &[u32]) -> sqlagent::Result<()> {
/// let mut stream = sqlagent::tokenizer::StreamDecoder::new(tok);
/// for &id in ids {
///     if let Some(text) = stream.push(id)? {
///         print!("{text}");
///     }
/// }
/// print!("{}", stream.finish()?.unwrap_or_default());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct StreamDecoder {
    tokenizer: Tokenizer,
    skip_special: bool,
    /// Ids of the window: those already emitted (context) then pending ones.
    ids: Vec<u32>,
    /// `ids[..read]` have been emitted.
    read: usize,
    /// Decoded text of `ids[..read]`.
    prefix: String,
}

impl StreamDecoder {
    /// A decoder that writes special tokens out, like `decode(ids, false)`.
    pub fn new(tokenizer: &Tokenizer) -> Self {
        Self::with_skip_special(tokenizer, false)
    }

    /// A decoder that leaves special tokens out when `skip_special` is true,
    /// like `decode(ids, true)`.
    pub fn with_skip_special(tokenizer: &Tokenizer, skip_special: bool) -> Self {
        Self {
            tokenizer: tokenizer.clone(),
            skip_special,
            ids: Vec::new(),
            read: 0,
            prefix: String::new(),
        }
    }

    /// Adds one id; returns the text it completes, if any. `None` means the
    /// text is not complete yet (part of a multi-byte character) or the token
    /// adds no text (a skipped special token).
    pub fn push(&mut self, id: u32) -> Result<Option<String>> {
        self.ids.push(id);
        let text = self.tokenizer.decode(&self.ids, self.skip_special)?;
        if text.len() <= self.prefix.len() || text.ends_with('\u{FFFD}') {
            return Ok(None);
        }
        self.emit(text).map(Some)
    }

    /// Flushes what is left at the end of generation: an incomplete
    /// character becomes U+FFFD, as in [`Tokenizer::decode`].
    pub fn finish(&mut self) -> Result<Option<String>> {
        if self.read == self.ids.len() {
            return Ok(None);
        }
        let text = self.tokenizer.decode(&self.ids, self.skip_special)?;
        let piece = self.emit(text)?;
        Ok((!piece.is_empty()).then_some(piece))
    }

    /// Emits `text` minus the prefix and slides the window: the ids just
    /// emitted stay as context for the next decode, older ones are dropped.
    fn emit(&mut self, text: String) -> Result<String> {
        let Some(piece) = text.strip_prefix(self.prefix.as_str()) else {
            return Err(tok_err(
                self.tokenizer.context(),
                format!(
                    "streaming decode: text {:?} does not continue {:?}",
                    text, self.prefix
                ),
            ));
        };
        let piece = piece.to_string();
        self.ids.drain(..self.read);
        self.read = self.ids.len();
        self.prefix = self.tokenizer.decode(&self.ids, self.skip_special)?;
        Ok(piece)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::gguf::tests::tiny_byte_level;

    fn stream_all(tok: &Tokenizer, ids: &[u32], skip: bool) -> (Vec<String>, String) {
        let mut stream = StreamDecoder::with_skip_special(tok, skip);
        let mut pieces = Vec::new();
        for &id in ids {
            if let Some(p) = stream.push(id).unwrap() {
                assert!(
                    !p.contains('\u{FFFD}'),
                    "incomplete character emitted: {p:?}"
                );
                pieces.push(p);
            }
        }
        if let Some(p) = stream.finish().unwrap() {
            pieces.push(p);
        }
        let joined = pieces.concat();
        (pieces, joined)
    }

    #[test]
    fn multi_byte_characters_split_across_tokens() {
        // Only byte tokens (and "Ġ t"): 🚀 and 日本語 span several ids each.
        let tok = Tokenizer::from_gguf(&tiny_byte_level("gpt-2", &["Ġ t"]), "t").unwrap();
        for text in [
            "🚀",
            "日本語 🚀 naïve",
            "a\tb\n\n c",
            "",
            "<|im_start|>x🚀<|im_end|>",
        ] {
            let ids = tok.encode(text).unwrap();
            for skip in [false, true] {
                let (_, joined) = stream_all(&tok, &ids, skip);
                assert_eq!(
                    joined,
                    tok.decode(&ids, skip).unwrap(),
                    "{text:?} skip={skip}"
                );
            }
        }
        let ids = tok.encode("日本").unwrap();
        assert_eq!(ids.len(), 6);
        let (pieces, _) = stream_all(&tok, &ids, false);
        assert_eq!(pieces, vec!["日", "本"]);
    }

    #[test]
    fn incomplete_tail_is_flushed_by_finish() {
        let tok = Tokenizer::from_gguf(&tiny_byte_level("gpt-2", &[]), "t").unwrap();
        let ids = tok.encode("a🚀").unwrap();
        let cut = &ids[..ids.len() - 1];
        let mut stream = StreamDecoder::new(&tok);
        let mut out = String::new();
        for &id in cut {
            out.push_str(&stream.push(id).unwrap().unwrap_or_default());
        }
        assert_eq!(out, "a");
        out.push_str(&stream.finish().unwrap().unwrap());
        assert_eq!(out, tok.decode(cut, false).unwrap());
        assert_eq!(stream.finish().unwrap(), None);
    }

    #[test]
    fn skipped_special_tokens_emit_nothing() {
        let tok = Tokenizer::from_gguf(&tiny_byte_level("gpt-2", &[]), "t").unwrap();
        let mut stream = StreamDecoder::with_skip_special(&tok, true);
        assert_eq!(stream.push(0).unwrap(), None);
        let x = tok.encode("x").unwrap()[0];
        assert_eq!(stream.push(x).unwrap().as_deref(), Some("x"));
        assert_eq!(stream.push(1).unwrap(), None);
        assert_eq!(stream.finish().unwrap(), None);
    }
}
