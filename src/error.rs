//! The one library error type. Every variant names what the user can act on:
//! the file, the field, the line, or the argument that was wrong.

use std::path::PathBuf;

/// Result alias used throughout the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong inside the engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },

    /// A database file could not be opened or is not a SQLite database.
    #[error("database {}: {message}", path.display())]
    Database {
        /// The database file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },

    /// SQLite rejected or failed a statement.
    #[error("SQL error: {message} (in: {sql})")]
    Query {
        /// The statement that failed.
        sql: String,
        /// SQLite's message.
        message: String,
    },

    /// A statement tried to do something other than read.
    #[error("refused: {0} (sqlagent only runs read-only queries)")]
    NotReadOnly(String),

    /// A statement ran longer than the configured timeout.
    #[error("query timed out after {timeout_ms} ms: {sql}")]
    Timeout {
        /// The statement.
        sql: String,
        /// The limit that was hit.
        timeout_ms: u64,
    },

    /// A CSV file could not be imported.
    #[error("{}:{line}: {message}", path.display())]
    Csv {
        /// The CSV file.
        path: PathBuf,
        /// 1-based line number in the file (0 when unknown).
        line: u64,
        /// What is wrong on that line.
        message: String,
    },

    /// A hosted model's endpoint failed or refused a request.
    #[error("hosted model at {url}: {message}")]
    Hosted {
        /// The endpoint.
        url: String,
        /// What went wrong and what to do about it.
        message: String,
    },

    /// A tuning job could not be reached for a while; it may still be
    /// running and can be followed again.
    #[error(
        "lost contact with tuning job {job_id} at {url}: {message}; the job may still be running"
    )]
    JobUnreachable {
        /// The job.
        job_id: String,
        /// The last URL asked.
        url: String,
        /// The last failure.
        message: String,
    },

    /// A hosted model's endpoint refused the API key: no request can work.
    #[error("hosted model at {url}: {message}")]
    HostedAuth {
        /// The endpoint.
        url: String,
        /// What to do about it.
        message: String,
    },

    /// A line of a JSONL question set could not be read.
    #[error("{}:{line}: {message}", path.display())]
    Set {
        /// The set file.
        path: PathBuf,
        /// 1-based line number in the file (0 when unknown).
        line: u64,
        /// What is wrong on that line.
        message: String,
    },

    /// A tokenizer could not be loaded or failed to encode/decode.
    #[error("tokenizer ({context}): {message}")]
    Tokenizer {
        /// Where the tokenizer came from (file or "GGUF metadata").
        context: String,
        /// What went wrong.
        message: String,
    },

    /// A chat template could not be parsed or rendered.
    #[error("chat template ({context}): {message}")]
    Template {
        /// Where the template came from.
        context: String,
        /// What went wrong.
        message: String,
    },

    /// A prompt directory or one of its files is invalid.
    #[error("prompt {}: {message}", path.display())]
    Prompt {
        /// The prompt file or directory.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },

    /// Model weights or model configuration are missing or invalid.
    #[error("model {}: {message}", path.display())]
    Model {
        /// The model file or directory.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },

    /// A LoRA adapter is missing, malformed, or does not fit the model.
    #[error("adapter {}: {kind}", path.display())]
    Adapter {
        /// The adapter directory.
        path: PathBuf,
        /// What is wrong.
        kind: crate::lora::AdapterError,
    },

    /// The server could not start or stopped on an error.
    #[error("serving on {address}: {message}")]
    Serve {
        /// The address it was to listen on.
        address: String,
        /// What went wrong.
        message: String,
    },

    /// A model could not be fetched from the Hugging Face hub.
    #[error("hub repo {repo}: {message}")]
    Hub {
        /// The repo id.
        repo: String,
        /// What went wrong and what to do about it.
        message: String,
    },

    /// A tensor operation failed.
    #[error("tensor error: {}", candle_message(.0))]
    Candle(candle_core::Error),

    /// The prompt does not fit in the model's context window.
    #[error("prompt is {prompt_tokens} tokens but the context window is {context} tokens ({} too many, with {reserved} reserved for the answer)", prompt_tokens + reserved - context)]
    PromptTooLong {
        /// Tokens in the rendered prompt.
        prompt_tokens: usize,
        /// The model's context length.
        context: usize,
        /// Tokens reserved for generation.
        reserved: usize,
    },

    /// The caller stopped the generation before it finished.
    #[error("the generation was cancelled")]
    Cancelled,

    /// The model's reply holds no SQL query.
    #[error("the model's reply contains no SQL query (reply: {reply:?})")]
    NoQuery {
        /// The start of the reply.
        reply: String,
    },

    /// The model did not finish a query within its token budget.
    #[error(
        "the model did not finish a query within {max_tokens} tokens (raise the token budget)"
    )]
    OutOfTokens {
        /// The budget that ran out.
        max_tokens: usize,
    },

    /// A request named an adapter the engine has not loaded.
    #[error("no adapter named {name:?} (loaded: {loaded})")]
    UnknownAdapter {
        /// The name asked for.
        name: String,
        /// The names loaded, comma-separated (or `none`).
        loaded: String,
    },

    /// The question asks for a change to the database (delete, update,
    /// insert…): nothing is generated or run.
    #[error(
        "the question asks to {verb} data, but sqlagent only reads the database: no query was run (ask about the data instead)"
    )]
    ChangeRequested {
        /// The verb that asks for it, lowercase.
        verb: String,
    },

    /// An argument or input value is invalid.
    #[error("invalid {field}: {message}")]
    Invalid {
        /// The argument or field name.
        field: String,
        /// What is wrong with it.
        message: String,
    },
}

impl From<candle_core::Error> for Error {
    fn from(e: candle_core::Error) -> Self {
        Error::Candle(e)
    }
}

/// A candle error as one line: without the backtrace candle attaches when
/// `RUST_BACKTRACE` is set, and without the path it repeats (our messages
/// name the file already).
pub fn candle_message(e: &candle_core::Error) -> String {
    use candle_core::Error as E;
    let text = match e {
        E::WithBacktrace { inner, .. } | E::WithPath { inner, .. } => return candle_message(inner),
        E::Context { inner, context } => format!("{context}: {}", candle_message(inner)),
        other => other.to_string(),
    };
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// The broad classes of failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The input was wrong: a value, a file's contents, a question.
    BadInput,
    /// A model, tokenizer, adapter or database could not be loaded.
    NotLoadable,
    /// No usable SQL came out, or running it failed.
    Generation,
    /// Anything else (a remote service, the server, a tensor operation).
    Other,
}

impl Error {
    /// What kind of error this is, as a stable snake_case word (for
    /// machine-readable output).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Io { .. } => "io",
            Error::Database { .. } => "database",
            Error::Query { .. } => "query",
            Error::NotReadOnly(_) => "not_read_only",
            Error::Timeout { .. } => "timeout",
            Error::Csv { .. } => "csv",
            Error::Hosted { .. } => "hosted",
            Error::JobUnreachable { .. } => "job_unreachable",
            Error::HostedAuth { .. } => "hosted_auth",
            Error::Set { .. } => "set",
            Error::Tokenizer { .. } => "tokenizer",
            Error::Template { .. } => "template",
            Error::Prompt { .. } => "prompt",
            Error::Model { .. } => "model",
            Error::Adapter { .. } => "adapter",
            Error::Serve { .. } => "serve",
            Error::Hub { .. } => "hub",
            Error::Candle(_) => "tensor",
            Error::PromptTooLong { .. } => "prompt_too_long",
            Error::Cancelled => "cancelled",
            Error::NoQuery { .. } => "no_query",
            Error::OutOfTokens { .. } => "out_of_tokens",
            Error::UnknownAdapter { .. } => "unknown_adapter",
            Error::ChangeRequested { .. } => "change_requested",
            Error::Invalid { .. } => "invalid",
        }
    }

    /// Which of the broad classes of failure this is (a caller's exit
    /// code, say).
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Invalid { .. }
            | Error::Set { .. }
            | Error::Csv { .. }
            | Error::Prompt { .. }
            | Error::PromptTooLong { .. }
            | Error::UnknownAdapter { .. }
            | Error::ChangeRequested { .. } => ErrorClass::BadInput,
            Error::Io { .. }
            | Error::Database { .. }
            | Error::Tokenizer { .. }
            | Error::Template { .. }
            | Error::Model { .. }
            | Error::Adapter { .. }
            | Error::Hub { .. } => ErrorClass::NotLoadable,
            Error::NoQuery { .. }
            | Error::OutOfTokens { .. }
            | Error::Query { .. }
            | Error::NotReadOnly(_)
            | Error::Timeout { .. }
            | Error::Cancelled => ErrorClass::Generation,
            Error::Hosted { .. }
            | Error::JobUnreachable { .. }
            | Error::HostedAuth { .. }
            | Error::Serve { .. }
            | Error::Candle(_) => ErrorClass::Other,
        }
    }

    /// The file or directory the error is about, where there is one.
    pub fn path(&self) -> Option<&std::path::Path> {
        match self {
            Error::Io { path, .. }
            | Error::Database { path, .. }
            | Error::Csv { path, .. }
            | Error::Set { path, .. }
            | Error::Prompt { path, .. }
            | Error::Model { path, .. }
            | Error::Adapter { path, .. } => Some(path),
            _ => None,
        }
    }

    /// Shorthand for [`Error::Invalid`].
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    /// Shorthand for [`Error::Io`].
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// Shorthand for [`Error::Model`].
    pub fn model(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Model {
            path: path.into(),
            message: message.into(),
        }
    }
}
