//! Grammar-constrained decoding: a Lark grammar (llguidance dialect) for
//! read-only SQLite queries, generated per database from the introspected
//! schema ([`lark`]), checking SQL text against it ([`check`]), and the
//! per-request [`Constraint`] the decode loop applies.

pub mod check;
mod complete;
mod constraint;
pub mod lark;
mod timing;
mod tokens;

pub use complete::{complete, Completions};
pub use constraint::{CompiledGrammar, Constraint, GrammarFactory, Spellings, TokenMask};
pub use timing::{percentile, MaskTimings};
pub use tokens::token_env;

use std::fmt;
use std::str::FromStr;

/// How much the grammar constrains what the model writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GrammarMode {
    /// SQLite SELECT syntax with table and column names from the database.
    #[default]
    Schema,
    /// SQLite SELECT syntax with any identifier.
    Generic,
    /// No constraint.
    None,
}

impl FromStr for GrammarMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "schema" => Ok(GrammarMode::Schema),
            "generic" => Ok(GrammarMode::Generic),
            "none" => Ok(GrammarMode::None),
            other => Err(format!(
                "unknown grammar mode {other:?} (schema, generic, none)"
            )),
        }
    }
}

impl fmt::Display for GrammarMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GrammarMode::Schema => "schema",
            GrammarMode::Generic => "generic",
            GrammarMode::None => "none",
        })
    }
}

/// Default bound on the characters inside one string literal: a model that
/// loops inside a string cannot run away.
pub const DEFAULT_MAX_STRING_LEN: usize = 200;

/// Default bound on the distinct values of a text column whose values a
/// compared string literal must be one of (see
/// [`GrammarOptions::literal_values`]).
pub const DEFAULT_LITERAL_VALUES: usize = 40;

/// Options of the generated grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GrammarOptions {
    /// Schema-aware, generic, or none.
    pub mode: GrammarMode,
    /// Maximum characters inside a string literal.
    pub max_string_len: usize,
    /// In schema mode, a string literal compared with a text column of at
    /// most this many distinct values (`=`, `<>`, `IN (…)`) must be one of
    /// them, spelled and cased as stored; checked while it is written
    /// (0: never).
    pub literal_values: usize,
}

impl Default for GrammarOptions {
    fn default() -> Self {
        Self {
            mode: GrammarMode::Schema,
            max_string_len: DEFAULT_MAX_STRING_LEN,
            literal_values: DEFAULT_LITERAL_VALUES,
        }
    }
}
