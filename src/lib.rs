//! sqlagent: local, offline text-to-SQL.
//!
//! A question in plain English about a SQLite database goes through:
//! [`chat::prompt`] (the one text-to-SQL prompt) → [`chat::ChatTemplate`] →
//! [`tokenizer::Tokenizer`] → [`generate`] (prefill + KV-cached decode on a
//! [`model::Llama`]) → SQL text → [`sql::Database::execute`] (read-only, with a
//! timeout and a row cap) → rows. [`agent`] ties these together for the CLI.
#![deny(missing_docs)]

pub mod agent;
pub mod chat;
pub mod cli;
pub mod error;
pub mod eval;
pub mod generate;
pub mod grammar;
pub mod heap;
pub mod hosted;
pub mod http;
pub mod lora;
pub mod machine;
pub mod model;
pub mod server;
pub mod sql;
pub mod synth;
pub mod tokenizer;
pub mod tune;

pub use error::{Error, ErrorClass, Result};
