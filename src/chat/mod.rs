//! Chat templates and the text-to-SQL prompt.
//!
//! [`PromptSpec`] builds the one text-to-SQL conversation (system prompt with
//! the rendered schema, few-shot turns, the question) from the files of a
//! `prompts/NAME/` directory; ask, eval, data generation and tuning all go
//! through [`PromptSpec::messages`], so training and inference cannot drift
//! apart. [`ChatTemplate`] then turns that conversation into the model's
//! prompt string: the built-in Llama 3 format, or a model's own Jinja
//! template.

pub mod prompt;
pub mod retrieval;
pub mod template;

/// The most template instructions one rendering may run: prompts and chat
/// templates take well under a million, and a template that loops without
/// end stops with an error instead of hanging.
pub const TEMPLATE_FUEL: u64 = 20_000_000;

pub use prompt::{Example, PromptSpec, CARRIED_PROMPT_DIR, DEFAULT_PROMPT, TUNED_PROMPT};
pub use retrieval::ExampleIndex;
pub use template::{ChatTemplate, Message};
