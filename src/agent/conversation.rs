//! A conversation: one database, a model loaded once, question after
//! question. The schema's part of the prompt is prefilled when the
//! conversation opens and stays in the prompt cache, so that every
//! question, the first included, only feeds its own tokens. What `chat`
//! (the terminal) does between questions — the dot commands — is parsed
//! here too ([`ChatCommand`]), so that any front end reads them alike.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Answer, AskOptions, DatabaseHandle, Engine, Listener};
use crate::chat::PromptSpec;
use crate::error::{Error, Result};

/// One line typed in a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatCommand {
    /// A question about the database.
    Ask(String),
    /// `.schema`: the schema as the prompt shows it.
    Schema,
    /// `.tables`: the tables with their row and column counts.
    Tables,
    /// `.sql`: the last SQL written.
    Sql,
    /// `.adapter`: which adapter answers (and which are loaded).
    ShowAdapter,
    /// `.adapter NAME`: this adapter answers from now on (`none`: the base
    /// model).
    UseAdapter(String),
    /// `.help`.
    Help,
    /// `.quit` (or `.exit`).
    Quit,
    /// A dot command this conversation does not know.
    Unknown(String),
    /// Nothing (a blank line).
    Nothing,
}

impl ChatCommand {
    /// Reads one line: a dot command, a question, or nothing.
    pub fn parse(line: &str) -> Self {
        let line = line.trim();
        if line.is_empty() {
            return Self::Nothing;
        }
        let Some(command) = line.strip_prefix('.') else {
            return Self::Ask(line.to_string());
        };
        let mut words = command.split_whitespace();
        let name = words.next().unwrap_or_default();
        let argument = words.collect::<Vec<_>>().join(" ");
        match (name, argument.is_empty()) {
            ("schema", true) => Self::Schema,
            ("tables", true) => Self::Tables,
            ("sql", true) => Self::Sql,
            ("adapter", true) => Self::ShowAdapter,
            ("adapter", false) => Self::UseAdapter(argument),
            ("help", true) => Self::Help,
            ("quit" | "exit", true) => Self::Quit,
            _ => Self::Unknown(line.to_string()),
        }
    }
}

/// What `.help` prints.
pub const CHAT_HELP: &str = "\
Type a question about the database and press Enter: the SQL and its rows follow.
  .tables          the tables, with their rows and columns
  .schema          the schema as the model sees it
  .sql             the last SQL written
  .adapter         which adapter answers; .adapter NAME switches (none: the base model)
  .help            this text
  .quit            leave (or Ctrl-D)
Ctrl-C stops a question being answered; the conversation goes on.";

/// The adapter name that means "the base model" in `.adapter NAME`.
pub const BASE_MODEL: &str = "none";

/// A table as `.tables` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSummary {
    /// The table's name.
    pub name: String,
    /// Its rows.
    pub rows: u64,
    /// Its columns, by name.
    pub columns: Vec<String>,
}

/// A conversation about one database with a model loaded once.
pub struct Conversation {
    engine: Engine,
    db: Arc<DatabaseHandle>,
    options: AskOptions,
    /// The prompt the model as loaded answers with.
    base_prompt: PromptSpec,
    /// The prompt each attached adapter answers with (others: the base's).
    prompts: BTreeMap<String, PromptSpec>,
    last_sql: Option<String>,
}

impl Conversation {
    /// A conversation over `db` answered by `engine` as `options` say
    /// (`options.adapter` answers first). `prompts` gives the prompt of
    /// each attached adapter by name (an adapter not in it answers with
    /// `options.prompt`, and so does the base model).
    pub fn new(
        engine: Engine,
        db: Arc<DatabaseHandle>,
        options: AskOptions,
        prompts: BTreeMap<String, PromptSpec>,
    ) -> Result<Self> {
        let mut conversation = Self {
            engine,
            db,
            base_prompt: options.prompt.clone(),
            options,
            prompts,
            last_sql: None,
        };
        let first = conversation.options.adapter.clone();
        conversation.use_adapter(first.as_deref().unwrap_or(BASE_MODEL))?;
        Ok(conversation)
    }

    /// Prefills the schema's part of the prompt (see
    /// [`Engine::prefill_schema`]); returns the tokens fed.
    pub fn warm_up(&self) -> Result<usize> {
        self.engine.prefill_schema(&self.db, &self.options)
    }

    /// Answers `question` as [`Engine::ask`] does (a question that asks
    /// for a change is refused before anything runs). The SQL is kept for
    /// [`Conversation::last_sql`], even when running it failed.
    pub fn ask(&mut self, question: &str, listener: &mut Listener<'_>) -> Result<Answer> {
        if question.trim().is_empty() {
            return Err(Error::invalid(
                "question",
                "is empty; ask something about the database",
            ));
        }
        let answer = self
            .engine
            .ask(&self.db, question, &self.options, listener)?;
        let sql = &answer.draft().sql;
        if !sql.is_empty() {
            self.last_sql = Some(sql.clone());
        }
        Ok(answer)
    }

    /// The last SQL written in this conversation.
    pub fn last_sql(&self) -> Option<&str> {
        self.last_sql.as_deref()
    }

    /// The tables (and views), in the database's order.
    pub fn tables(&self) -> Vec<TableSummary> {
        self.db
            .schema()
            .tables
            .iter()
            .map(|t| TableSummary {
                name: t.name.clone(),
                rows: t.row_count,
                columns: t.columns.iter().map(|c| c.name.clone()).collect(),
            })
            .collect()
    }

    /// The schema as the answering prompt renders it for the model.
    pub fn schema_text(&self) -> Result<String> {
        self.options.prompt.render_schema(self.db.schema())
    }

    /// The adapter that answers (`None`: the base model).
    pub fn adapter(&self) -> Option<&str> {
        self.options.adapter.as_deref()
    }

    /// The attached adapters, by name.
    pub fn adapters(&self) -> Vec<String> {
        self.engine
            .adapters()
            .iter()
            .map(|a| a.name.clone())
            .collect()
    }

    /// Makes `name` answer from now on ([`BASE_MODEL`]: the model as
    /// loaded), with the prompt it carries; the schema is prefilled for it
    /// when it was not already.
    pub fn use_adapter(&mut self, name: &str) -> Result<()> {
        let adapter = (name != BASE_MODEL).then(|| name.to_string());
        self.engine.adapter_slot_for(adapter.as_deref())?;
        let prompt = adapter
            .as_ref()
            .and_then(|name| self.prompts.get(name))
            .unwrap_or(&self.base_prompt)
            .clone();
        self.options = AskOptions {
            adapter,
            prompt,
            ..self.options.clone()
        };
        Ok(())
    }

    /// The engine (its model information, its prompt cache).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_questions_unless_they_start_with_a_dot() {
        assert_eq!(
            ChatCommand::parse("  How many artists are there?\n"),
            ChatCommand::Ask("How many artists are there?".into())
        );
        assert_eq!(ChatCommand::parse("   "), ChatCommand::Nothing);
        assert_eq!(ChatCommand::parse(".schema"), ChatCommand::Schema);
        assert_eq!(ChatCommand::parse(".tables "), ChatCommand::Tables);
        assert_eq!(ChatCommand::parse(".sql"), ChatCommand::Sql);
        assert_eq!(ChatCommand::parse(".help"), ChatCommand::Help);
        assert_eq!(ChatCommand::parse(".quit"), ChatCommand::Quit);
        assert_eq!(ChatCommand::parse(".exit"), ChatCommand::Quit);
        assert_eq!(ChatCommand::parse(".adapter"), ChatCommand::ShowAdapter);
        assert_eq!(
            ChatCommand::parse(".adapter  spotify-songs"),
            ChatCommand::UseAdapter("spotify-songs".into())
        );
        assert_eq!(
            ChatCommand::parse(".drop songs"),
            ChatCommand::Unknown(".drop songs".into())
        );
        assert_eq!(
            ChatCommand::parse(".schema songs"),
            ChatCommand::Unknown(".schema songs".into())
        );
    }
}
