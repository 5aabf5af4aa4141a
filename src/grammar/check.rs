//! Checking SQL text against a grammar, without a model's tokenizer: the
//! text runs through llguidance byte by byte (a token environment of 256
//! single-byte tokens and an end-of-sequence token), so what is accepted is
//! exactly what the grammar allows, whatever tokenization a model would use.
//!
//! ```
//! use sqlagent::grammar::check::GrammarChecker;
//!
//! let checker = GrammarChecker::new(r#"start: "SELECT 1" ";"?"#)?;
//! assert!(checker.check("SELECT 1;").is_ok());
//! let rejection = checker.check("SELECT 2").unwrap_err();
//! assert_eq!(rejection.offset, 7);
//! # Ok::<(), sqlagent::Error>(())
//! ```
//!
//! A [`GrammarChecker`] compiles its grammar once; each check clones the
//! compiled matcher (sharing its lexer cache) and validates the text in one
//! call, about a microsecond per byte of SQL.

use std::fmt;
use std::sync::Arc;

use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{
    ApproximateTokEnv, InferenceCapabilities, TokEnv, TokRxInfo, TokTrie, TokenId,
};
use llguidance::{Matcher, ParserFactory};

use crate::error::{Error, Result};

/// The end-of-sequence token, after the 256 byte tokens.
const EOS: TokenId = 256;

/// Why a grammar did not accept a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Byte offset in the text where parsing failed: the first byte the
    /// grammar cannot take, or the text's length when the text ended before
    /// the query was complete.
    pub offset: usize,
    /// What went wrong (llguidance's message, one line).
    pub message: String,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at byte {}: {}", self.offset, self.message)
    }
}

impl std::error::Error for Rejection {}

/// A compiled grammar that checks whole texts. `Send + Sync`; build once
/// per grammar and share.
#[derive(Clone)]
pub struct GrammarChecker {
    matcher: Matcher,
}

impl fmt::Debug for GrammarChecker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrammarChecker").finish_non_exhaustive()
    }
}

impl GrammarChecker {
    /// Compiles `grammar` (Lark, llguidance dialect). Fails with
    /// [`Error::Invalid`] (field `grammar`) when it does not compile.
    pub fn new(grammar: &str) -> Result<Self> {
        let factory = byte_factory()?;
        let parser = factory
            .create_parser(TopLevelGrammar::from_lark(grammar.to_string()))
            .map_err(|e| Error::invalid("grammar", first_line(&e.to_string())))?;
        Ok(Self {
            matcher: Matcher::new(Ok(parser)),
        })
    }

    /// Accepts `sql` when the grammar accepts the whole text: it ends in an
    /// accepting state, or the grammar stopped (after a final `;`) exactly
    /// at its end. Trailing whitespace is ignored (a file's final newline
    /// after `;`).
    pub fn check(&self, sql: &str) -> std::result::Result<(), Rejection> {
        let sql = sql.trim_end_matches(|c: char| c.is_ascii_whitespace());
        let mut tokens: Vec<TokenId> = sql.bytes().map(TokenId::from).collect();
        tokens.push(EOS);
        let mut matcher = self.matcher.clone();
        let valid = matcher.validate_tokens(&tokens).map_err(|e| Rejection {
            offset: 0,
            message: first_line(&e.to_string()),
        })?;
        if valid == tokens.len() {
            return Ok(());
        }
        Err(Rejection {
            offset: valid,
            message: self.explain(&tokens[..tokens.len() - 1], valid),
        })
    }

    /// llguidance's message for the byte at `offset`, found by replaying
    /// the accepted prefix on a fresh matcher.
    fn explain(&self, bytes: &[TokenId], offset: usize) -> String {
        let Some(&next) = bytes.get(offset) else {
            return "the text ends before the query is complete".to_string();
        };
        let mut matcher = self.matcher.clone();
        if let Err(e) = matcher.consume_tokens(&bytes[..offset]) {
            return first_line(&e.to_string());
        }
        if matcher.is_stopped() {
            return "the query is complete; nothing may follow it".to_string();
        }
        match matcher.consume_token(next) {
            Err(e) => first_line(&e.to_string()),
            Ok(()) => "rejected".to_string(),
        }
    }
}

/// Checks `sql` against `grammar` once (compiling the grammar each time;
/// use a [`GrammarChecker`] for many texts). A grammar that does not
/// compile is reported as a rejection at offset 0.
pub fn check_sql(grammar: &str, sql: &str) -> std::result::Result<(), Rejection> {
    let checker = GrammarChecker::new(grammar).map_err(|e| Rejection {
        offset: 0,
        message: e.to_string(),
    })?;
    checker.check(sql)
}

/// A parser factory over single bytes: token `b` is byte `b` (255 is left
/// empty: `0xFF` marks special tokens and never occurs in UTF-8), token 256
/// ends the sequence. Nothing is forced (the environment is not
/// canonical), errors are one line and nothing is printed to stderr.
fn byte_factory() -> Result<ParserFactory> {
    let mut words: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
    words[255].clear();
    words.push(b"\xFF<eos>".to_vec());
    let info = TokRxInfo::new(words.len() as u32, EOS);
    let trie = TokTrie::from(&info, &words);
    let env: TokEnv = Arc::new(ApproximateTokEnv::new(trie));
    let mut factory = ParserFactory::new(&env, InferenceCapabilities::default(), &[])
        .map_err(|e| Error::invalid("grammar", format!("byte token environment: {e}")))?;
    factory.set_stderr_log_level(0);
    factory.limits_mut().verbose_errors = false;
    Ok(factory)
}

fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or("").trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: &str = r#"start: SELECT S IDENT (S? ";")?
SELECT: /(?i-u:select)/
S: /[ ]{1,4}/
IDENT: /[a-z]{1,8}/
"#;

    #[test]
    fn reports_where_a_text_fails() {
        let checker = GrammarChecker::new(SMALL).expect("grammar compiles");
        assert_eq!(checker.check("select abc"), Ok(()));
        assert_eq!(checker.check("SELECT abc ;"), Ok(()));
        let r = checker.check("SELECTabc").unwrap_err();
        assert_eq!(r.offset, 6);
        assert!(r.message.contains("doesn't satisfy the grammar"), "{r}");
        // Ends too early.
        let r = checker.check("SELECT").unwrap_err();
        assert_eq!(r.offset, 6);
        assert!(r.message.contains("ends before"), "{r}");
        // Nothing after the final `;` but whitespace.
        let r = checker.check("SELECT a; SELECT b").unwrap_err();
        assert_eq!(r.offset, 9);
        assert!(r.message.contains("nothing may follow"), "{r}");
        assert_eq!(checker.check("SELECT a;\n"), Ok(()));
        // Non-ASCII bytes are checked like any other.
        assert_eq!(checker.check("SELECT é").unwrap_err().offset, 7);
    }

    #[test]
    fn a_grammar_that_does_not_compile_is_an_error() {
        let e = GrammarChecker::new("start: foo").unwrap_err();
        assert!(e.to_string().contains("grammar"), "{e}");
        let r = check_sql("start: foo", "x").unwrap_err();
        assert_eq!(r.offset, 0);
    }
}
