//! The text-to-SQL prompt, kept as files so it can be iterated on, compared
//! and recorded without touching code.
//!
//! A prompt is a directory `prompts/NAME/` with four files (see
//! `prompts/README.md`):
//!
//! | file | what |
//! |---|---|
//! | `system.txt` | the system turn; a minijinja template with `{{ schema }}` and `{{ dialect }}` |
//! | `schema.j2` | renders the introspected [`Schema`] (as `schema`) to text |
//! | `examples.jsonl` | few-shot `{"question", "sql"}` pairs, one per line (may be empty) |
//! | `user.j2` | the user turn; `{{ question }}` (plus `schema`, `dialect`) |
//!
//! [`PromptSpec::messages`] is the one place where the text-to-SQL
//! conversation is built: system turn, then each few-shot as a user turn and
//! an assistant turn written by [`PromptSpec::assistant_reply`], then the
//! question. Asking, evaluation, data generation and tuning all call it, so
//! training and inference see the same prompt.
//!
//! The assistant answer format is the bare SQL statement ending in `;` — no
//! code fence, no prose — so the model's reply can be executed as is.

use std::path::{Path, PathBuf};

use minijinja::{context, AutoEscape, Environment, UndefinedBehavior, Value};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::retrieval::ExampleIndex;
use super::template::{error_chain, Message};
use crate::error::{Error, Result};
use crate::sql::Schema;

/// The SQL dialect named to the model (`{{ dialect }}` in templates).
pub const DIALECT: &str = "SQLite";

/// Environment variable naming a directory of prompt directories.
pub const PROMPTS_DIR_ENV: &str = "SQLAGENT_PROMPTS_DIR";

/// The name of the prompt used when none is named (built into the binary).
pub const DEFAULT_PROMPT: &str = "default";

const SYSTEM: &str = "system.txt";
const SCHEMA: &str = "schema.j2";
const EXAMPLES: &str = "examples.jsonl";
const USER: &str = "user.j2";
/// Optional: the user turn that reports a failed query for another try
/// (`eval --retries`); the built-in one is used when a directory has none.
const RETRY: &str = "retry.j2";
const BUILTIN_RETRY: &str = include_str!("../../prompts/default/retry.j2");

/// Where in an adapter directory the prompt it was trained with is kept.
pub const CARRIED_PROMPT_DIR: &str = "prompt";

/// The files of a prompt directory, in the order they are hashed.
pub const PROMPT_FILES: [&str; 4] = [SYSTEM, SCHEMA, EXAMPLES, USER];

/// `prompts/default/`, compiled in so the installed binary works anywhere.
const BUILTIN_DEFAULT: [(&str, &str); 4] = [
    (SYSTEM, include_str!("../../prompts/default/system.txt")),
    (SCHEMA, include_str!("../../prompts/default/schema.j2")),
    (
        EXAMPLES,
        include_str!("../../prompts/default/examples.jsonl"),
    ),
    (USER, include_str!("../../prompts/default/user.j2")),
];

/// The prompt adapters are tuned with (`prompts/tuned/`): the schema and
/// the question, no few-shot examples; compiled in like the default, so
/// `adapt` works outside the repository.
pub const TUNED_PROMPT: &str = "tuned";

/// `prompts/tuned/`, compiled in.
const BUILTIN_TUNED: [(&str, &str); 4] = [
    (SYSTEM, include_str!("../../prompts/tuned/system.txt")),
    (SCHEMA, include_str!("../../prompts/tuned/schema.j2")),
    (EXAMPLES, include_str!("../../prompts/tuned/examples.jsonl")),
    (USER, include_str!("../../prompts/tuned/user.j2")),
];

/// One few-shot example (a line of `examples.jsonl`; extra fields are
/// ignored, so dataset lines can be copied in as they are).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Example {
    /// The question, as a user would ask it.
    pub question: String,
    /// The SQL that answers it.
    pub sql: String,
}

/// A loaded prompt: its templates compiled, its few-shots parsed, its
/// content hashed.
#[derive(Clone, Debug)]
pub struct PromptSpec {
    name: String,
    /// The directory it was read from; `None` for the built-in default.
    dir: Option<PathBuf>,
    /// Its files (name, text), `retry.j2` included, as hashed.
    files: Vec<(String, String)>,
    /// Most tokens a prompt may have before its schema is focused on the
    /// question's tables (`None`: the whole schema, always).
    schema_budget: Option<usize>,
    examples: Vec<Example>,
    /// Pairs chosen per question, after `examples`: the index and how
    /// many.
    retrieval: Option<(std::sync::Arc<ExampleIndex>, usize)>,
    env: Environment<'static>,
    hash: String,
}

/// Where a prompt name resolved to.
#[derive(Debug, PartialEq)]
enum Source {
    Dir(PathBuf),
    Builtin(&'static str),
}

impl PromptSpec {
    /// Load a prompt by directory path or by name. Tried in order:
    /// 1. `name_or_dir` is an existing directory;
    /// 2. `$SQLAGENT_PROMPTS_DIR/NAME`;
    /// 3. `./prompts/NAME`;
    /// 4. for `default` and `tuned`, the copy of `prompts/NAME/` built into
    ///    the binary.
    ///
    /// An unknown name is an [`Error::Prompt`] listing the prompts that exist.
    pub fn load(name_or_dir: &str) -> Result<PromptSpec> {
        let env_dir = std::env::var_os(PROMPTS_DIR_ENV).map(PathBuf::from);
        match resolve(name_or_dir, env_dir.as_deref(), Path::new("prompts"))? {
            Source::Dir(dir) => PromptSpec::from_dir(&dir),
            Source::Builtin(name) => PromptSpec::builtin(name),
        }
    }

    /// Load the prompt in `dir`. Every file of [`PROMPT_FILES`] must exist.
    pub fn from_dir(dir: &Path) -> Result<PromptSpec> {
        let mut files = Vec::with_capacity(PROMPT_FILES.len());
        for file in PROMPT_FILES {
            let path = dir.join(file);
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(Error::Prompt {
                        path,
                        message: format!(
                            "missing {file} (a prompt directory holds {})",
                            PROMPT_FILES.join(", ")
                        ),
                    })
                }
                Err(e) => return Err(Error::io(path, e)),
            };
            files.push((file, text));
        }
        let retry = dir.join(RETRY);
        match std::fs::read_to_string(&retry) {
            Ok(text) => files.push((RETRY, text)),
            // The built-in one, hashed too: the hash is of what is used.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                files.push((RETRY, BUILTIN_RETRY.to_owned()))
            }
            Err(e) => return Err(Error::io(retry, e)),
        }
        let name = dir
            .canonicalize()
            .ok()
            .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| dir.display().to_string());
        PromptSpec::from_files(name, Some(dir.to_path_buf()), &files)
    }

    /// The `default` prompt as built into the binary (a copy of
    /// `prompts/default/` at build time).
    pub fn builtin_default() -> Result<PromptSpec> {
        PromptSpec::builtin(DEFAULT_PROMPT)
    }

    /// A prompt built into the binary by name: `default` or `tuned`.
    pub fn builtin(name: &str) -> Result<PromptSpec> {
        let (name, table) = match name {
            DEFAULT_PROMPT => (DEFAULT_PROMPT, &BUILTIN_DEFAULT),
            TUNED_PROMPT => (TUNED_PROMPT, &BUILTIN_TUNED),
            other => {
                return Err(Error::Prompt {
                    path: PathBuf::from(other),
                    message: format!(
                        "no prompt named {other:?} is built in ({DEFAULT_PROMPT}, {TUNED_PROMPT})"
                    ),
                })
            }
        };
        let mut files: Vec<(&str, String)> = table
            .iter()
            .map(|(file, text)| (*file, (*text).to_owned()))
            .collect();
        files.push((RETRY, BUILTIN_RETRY.to_owned()));
        PromptSpec::from_files(name.to_owned(), None, &files)
    }

    fn from_files(
        name: String,
        dir: Option<PathBuf>,
        files: &[(&str, String)],
    ) -> Result<PromptSpec> {
        let origin = dir.clone();
        let path_of = |file: &str| file_path(origin.as_deref(), &name, file);

        let mut hasher = Sha256::new();
        for (file, text) in files {
            hasher.update(file.as_bytes());
            hasher.update([0u8]);
            hasher.update((text.len() as u64).to_le_bytes());
            hasher.update(text.as_bytes());
        }
        let hash = format!("{:x}", hasher.finalize());

        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_keep_trailing_newline(false);
        env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.set_fuel(Some(super::TEMPLATE_FUEL));
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);

        let mut examples = Vec::new();
        for (file, text) in files {
            if *file == EXAMPLES {
                examples = parse_examples(text, &path_of(file))?;
            } else {
                env.add_template_owned(file.to_string(), text.clone())
                    .map_err(|e| Error::Prompt {
                        path: path_of(file),
                        message: error_chain(&e),
                    })?;
            }
        }
        Ok(PromptSpec {
            name,
            dir,
            files: files
                .iter()
                .map(|(f, t)| (f.to_string(), t.clone()))
                .collect(),
            schema_budget: None,
            examples,
            retrieval: None,
            env,
            hash,
        })
    }

    /// The prompt an adapter was trained with, if the adapter directory
    /// carries it (`DIR/prompt/`, written by tuning, named and hashed in
    /// `DIR/training.json`). It keeps its recorded name and schema budget. A carried prompt
    /// whose files no longer hash as recorded is an error: the adapter
    /// would answer with a prompt it was not trained on.
    pub fn carried_by(adapter_dir: &Path) -> Result<Option<PromptSpec>> {
        let dir = adapter_dir.join(CARRIED_PROMPT_DIR);
        if !dir.is_dir() {
            return Ok(None);
        }
        let mut prompt = PromptSpec::from_dir(&dir)?;
        let record_path = adapter_dir.join("training.json");
        let record: Option<serde_json::Value> = match std::fs::read_to_string(&record_path) {
            Ok(text) => Some(serde_json::from_str(&text).map_err(|e| Error::Prompt {
                path: record_path.clone(),
                message: format!("not valid JSON: {e}"),
            })?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io(record_path, e)),
        };
        if let Some(record) = record {
            if let Some(name) = record["prompt"].as_str() {
                prompt.name = name.to_string();
            }
            // Trained on focused schemas: answer with them too.
            prompt.schema_budget = record["schema_budget"].as_u64().map(|b| b as usize);
            if let Some(hash) = record["prompt_hash"].as_str() {
                if hash != prompt.hash {
                    return Err(Error::Prompt {
                        path: dir,
                        message: format!(
                            "its files hash to {} but {} records {hash}: the adapter was trained with other files",
                            prompt.hash,
                            record_path.display()
                        ),
                    });
                }
            }
        }
        Ok(Some(prompt))
    }

    /// Writes the prompt's files (`retry.j2` too) into `dir`, created if
    /// missing: what an adapter carries ([`PromptSpec::carried_by`]).
    pub fn save_to(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        for (file, text) in &self.files {
            let path = dir.join(file);
            std::fs::write(&path, text).map_err(|e| Error::io(path, e))?;
        }
        Ok(())
    }

    /// The same prompt, its schema focused on the tables a question needs
    /// when the whole prompt would be longer than `budget` tokens
    /// ([`crate::agent::focus_schema`]; `None`: never).
    pub fn with_schema_budget(mut self, budget: Option<usize>) -> Self {
        self.schema_budget = budget;
        self
    }

    /// The same prompt, followed (after its own few-shot examples) by the
    /// `k` pairs of `index` most like each question ([`ExampleIndex`]).
    pub fn with_retrieval(mut self, index: std::sync::Arc<ExampleIndex>, k: usize) -> Self {
        self.retrieval = (k > 0).then_some((index, k));
        self
    }

    /// How many pairs are retrieved per question, from how many (`None`:
    /// no retrieval).
    pub fn retrieval(&self) -> Option<(usize, usize)> {
        self.retrieval.as_ref().map(|(index, k)| (*k, index.len()))
    }

    /// See [`PromptSpec::with_schema_budget`].
    pub fn schema_budget(&self) -> Option<usize> {
        self.schema_budget
    }

    /// The prompt's name (its directory name, or `default`/`tuned` when
    /// built in).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The directory the prompt was read from; `None` when built in.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// SHA-256 (lowercase hex) over the prompt files (`retry.j2` too),
    /// names and contents: the
    /// same text gives the same hash wherever it was loaded from (the
    /// built-in default hashes like `prompts/default/`).
    pub fn content_hash(&self) -> String {
        self.hash.clone()
    }

    /// The few-shot examples, in file order.
    pub fn examples(&self) -> &[Example] {
        &self.examples
    }

    /// The schema as the model sees it: `schema.j2` rendered, trimmed.
    ///
    /// Besides the serialized [`Schema`] fields, the template gets for every
    /// table `constraints` (lines for composite primary and foreign keys,
    /// e.g. `PRIMARY KEY (a, b)`), for every column `references`
    /// (`table(column)` of a single-column foreign key, or none), and for
    /// every foreign key `quoted_columns`, `quoted_table`,
    /// `quoted_to_columns`.
    pub fn render_schema(&self, schema: &Schema) -> Result<String> {
        let view = schema_view(schema)?;
        self.render(SCHEMA, context! { schema => view, dialect => DIALECT })
    }

    /// THE text-to-SQL conversation: the system turn (with the rendered
    /// schema), each few-shot as a user turn and an assistant turn, then the
    /// question as the last user turn. An empty system turn is left out.
    pub fn messages(&self, schema: &Schema, question: &str) -> Result<Vec<Message>> {
        let question = question.trim();
        if question.is_empty() {
            return Err(Error::invalid("question", "is empty"));
        }
        let schema_text = self.render_schema(schema)?;
        let system = self.render(
            SYSTEM,
            context! { schema => &schema_text, dialect => DIALECT },
        )?;
        let user = |question: &str| {
            self.render(
                USER,
                context! { question => question, schema => &schema_text, dialect => DIALECT },
            )
        };

        let retrieved = match &self.retrieval {
            Some((index, k)) => index.nearest(question, *k),
            None => Vec::new(),
        };
        let mut messages = Vec::with_capacity(2 + 2 * (self.examples.len() + retrieved.len()));
        if !system.is_empty() {
            messages.push(Message::system(system));
        }
        for example in self.examples.iter().chain(retrieved) {
            messages.push(Message::user(user(example.question.trim())?));
            messages.push(Message::assistant(self.assistant_reply(&example.sql)));
        }
        messages.push(Message::user(user(question)?));
        Ok(messages)
    }

    /// The turns that report a failed attempt and ask for another: the
    /// failed query as the assistant's reply, then `retry.j2` with the
    /// `sql`, SQLite's `error` and the `dialect`.
    pub fn retry_messages(&self, failed_sql: &str, error: &str) -> Result<Vec<Message>> {
        let user = self.render(
            RETRY,
            context! { sql => failed_sql, error => error, dialect => DIALECT },
        )?;
        Ok(vec![
            Message::assistant(self.assistant_reply(failed_sql)),
            Message::user(user),
        ])
    }

    /// How an answer is written in an assistant turn: the bare statement,
    /// trimmed, ending in exactly one `;`. Few-shots use it, and training
    /// data must too.
    pub fn assistant_reply(&self, sql: &str) -> String {
        format!("{};", strip_semicolons(sql))
    }

    /// The SQL in a model's reply, read back with the one extractor the
    /// engine uses ([`crate::sql::extract_sql`]): code fences, leading prose
    /// and trailing text are dropped; no trailing `;`. Empty when the reply
    /// holds no query. `sql_from_reply(&assistant_reply(s))` gives back `s`
    /// without its trailing `;`.
    pub fn sql_from_reply(&self, reply: &str) -> String {
        crate::sql::extract_sql(reply).unwrap_or_default()
    }

    fn render(&self, file: &str, ctx: Value) -> Result<String> {
        let path = || file_path(self.dir.as_deref(), &self.name, file);
        let template = self.env.get_template(file).map_err(|e| Error::Prompt {
            path: path(),
            message: error_chain(&e),
        })?;
        let text = template.render(ctx).map_err(|e| Error::Prompt {
            path: path(),
            message: error_chain(&e),
        })?;
        Ok(text.trim().to_owned())
    }
}

fn strip_semicolons(sql: &str) -> &str {
    sql.trim()
        .trim_end_matches(|c: char| c == ';' || c.is_whitespace())
}

/// The path a prompt file is reported under (built-in files are named
/// after their source in `prompts/NAME/`).
fn file_path(dir: Option<&Path>, name: &str, file: &str) -> PathBuf {
    match dir {
        Some(dir) => dir.join(file),
        None => PathBuf::from(format!("(built-in) prompts/{name}/{file}")),
    }
}

/// Where `name_or_dir` points; `prompts_dir` is `./prompts` (a parameter so
/// tests need not change the working directory).
fn resolve(name_or_dir: &str, env_dir: Option<&Path>, prompts_dir: &Path) -> Result<Source> {
    let as_path = Path::new(name_or_dir);
    if as_path.is_dir() {
        return Ok(Source::Dir(as_path.to_path_buf()));
    }
    let is_name = !name_or_dir.is_empty()
        && !name_or_dir.contains(['/', '\\'])
        && name_or_dir != "."
        && name_or_dir != "..";
    if !is_name {
        return Err(Error::Prompt {
            path: as_path.to_path_buf(),
            message: if as_path.exists() {
                "not a directory (a prompt is a directory of files)".to_owned()
            } else {
                "no such directory".to_owned()
            },
        });
    }
    let candidates = env_dir.into_iter().chain(Some(prompts_dir));
    for base in candidates.clone() {
        let dir = base.join(name_or_dir);
        if dir.is_dir() {
            return Ok(Source::Dir(dir));
        }
    }
    for builtin in [DEFAULT_PROMPT, TUNED_PROMPT] {
        if name_or_dir == builtin {
            return Ok(Source::Builtin(builtin));
        }
    }

    let mut known = Vec::new();
    let mut searched = Vec::new();
    for base in candidates {
        searched.push(base.display().to_string());
        if let Ok(entries) = std::fs::read_dir(base) {
            for entry in entries.flatten() {
                if entry.path().join(SYSTEM).is_file() {
                    known.push(entry.file_name().to_string_lossy().into_owned());
                }
            }
        }
    }
    for builtin in [DEFAULT_PROMPT, TUNED_PROMPT] {
        if !known.iter().any(|n| n == builtin) {
            known.push(format!("{builtin} (built in)"));
        }
    }
    known.sort();
    Err(Error::Prompt {
        path: as_path.to_path_buf(),
        message: format!(
            "no prompt named {name_or_dir:?} in {} (set {PROMPTS_DIR_ENV} or pass a directory); available: {}",
            searched.join(", "),
            known.join(", ")
        ),
    })
}

/// Few-shots from `examples.jsonl`: one JSON object per non-blank line.
pub(super) fn parse_examples(text: &str, path: &Path) -> Result<Vec<Example>> {
    let mut examples = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let example: Example = serde_json::from_str(line).map_err(|e| Error::Prompt {
            path: path.to_path_buf(),
            message: format!(
                "line {}: {e} (expected {{\"question\": …, \"sql\": …}})",
                i + 1
            ),
        })?;
        examples.push(example);
    }
    Ok(examples)
}

/// The schema as templates see it: the serialized [`Schema`] plus quoted
/// key names ready to print (see [`PromptSpec::render_schema`]).
fn schema_view(schema: &Schema) -> Result<serde_json::Value> {
    // Quoting depends only on the name; reuse what introspection decided.
    let mut quoted = std::collections::HashMap::new();
    for table in &schema.tables {
        quoted.insert(table.name.as_str(), table.quoted.as_str());
        for column in &table.columns {
            quoted.insert(column.name.as_str(), column.quoted.as_str());
        }
    }
    let quote = |name: &str| -> String {
        match quoted.get(name) {
            Some(q) => (*q).to_owned(),
            None => format!("\"{}\"", name.replace('"', "\"\"")),
        }
    };
    let quote_list = |names: &[String]| names.iter().map(|n| quote(n)).collect::<Vec<_>>();
    let references = |fk: &crate::sql::ForeignKey| {
        let table = quote(&fk.table);
        if fk.to_columns.is_empty() {
            table
        } else {
            format!("{table}({})", quote_list(&fk.to_columns).join(", "))
        }
    };

    let mut view = serde_json::to_value(schema).map_err(|e| Error::Invalid {
        field: "schema".to_owned(),
        message: format!("cannot serialize: {e}"),
    })?;
    let Some(tables) = view.get_mut("tables").and_then(|t| t.as_array_mut()) else {
        return Ok(view);
    };
    for (table, tv) in schema.tables.iter().zip(tables.iter_mut()) {
        let mut constraints = Vec::new();
        if table.primary_key.len() > 1 {
            constraints.push(format!(
                "PRIMARY KEY ({})",
                quote_list(&table.primary_key).join(", ")
            ));
        }
        for fk in table.foreign_keys.iter().filter(|fk| fk.columns.len() > 1) {
            constraints.push(format!(
                "FOREIGN KEY ({}) REFERENCES {}",
                quote_list(&fk.columns).join(", "),
                references(fk)
            ));
        }
        tv["constraints"] = serde_json::json!(constraints);

        if let Some(columns) = tv.get_mut("columns").and_then(|c| c.as_array_mut()) {
            for (column, cv) in table.columns.iter().zip(columns.iter_mut()) {
                let single = table
                    .foreign_keys
                    .iter()
                    .find(|fk| fk.columns.len() == 1 && fk.columns[0] == column.name);
                cv["references"] = match single {
                    Some(fk) => serde_json::Value::String(references(fk)),
                    None => serde_json::Value::Null,
                };
            }
        }
        if let Some(fks) = tv.get_mut("foreign_keys").and_then(|f| f.as_array_mut()) {
            for (fk, fv) in table.foreign_keys.iter().zip(fks.iter_mut()) {
                fv["quoted_columns"] = serde_json::json!(quote_list(&fk.columns));
                fv["quoted_table"] = serde_json::json!(quote(&fk.table));
                fv["quoted_to_columns"] = serde_json::json!(quote_list(&fk.to_columns));
            }
        }
    }
    Ok(view)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::{Column, ForeignKey, Table};

    #[test]
    fn retry_turns_show_the_failed_query_and_the_error() {
        let spec = PromptSpec::builtin_default().unwrap();
        let turns = spec
            .retry_messages("SELECT nme FROM artists", "no such column: nme")
            .unwrap();
        assert_eq!(turns[0], Message::assistant("SELECT nme FROM artists;"));
        assert_eq!(turns[1].role, "user");
        assert!(
            turns[1].content.contains("no such column: nme"),
            "{}",
            turns[1].content
        );
        assert!(turns[1].content.contains("SQLite"));
    }

    fn column(name: &str, quoted: &str, ty: &str, pk: bool, samples: &[&str]) -> Column {
        Column {
            name: name.into(),
            quoted: quoted.into(),
            decl_type: ty.into(),
            not_null: false,
            primary_key: pk,
            samples: samples.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn two_tables() -> Schema {
        Schema {
            tables: vec![
                Table {
                    name: "artists".into(),
                    quoted: "artists".into(),
                    is_view: false,
                    columns: vec![
                        column("id", "id", "INTEGER", true, &[]),
                        column("name", "name", "TEXT", false, &["'Adele'", "'Drake'"]),
                    ],
                    primary_key: vec!["id".into()],
                    foreign_keys: vec![],
                    row_count: 2,
                },
                Table {
                    name: "plays".into(),
                    quoted: "plays".into(),
                    is_view: false,
                    columns: vec![
                        column("artist_id", "artist_id", "INTEGER", true, &[]),
                        column("order", "\"order\"", "", true, &["1", "2", "3", "4"]),
                    ],
                    primary_key: vec!["artist_id".into(), "order".into()],
                    foreign_keys: vec![
                        ForeignKey {
                            columns: vec!["artist_id".into()],
                            table: "artists".into(),
                            to_columns: vec!["id".into()],
                        },
                        ForeignKey {
                            columns: vec!["artist_id".into(), "order".into()],
                            table: "other table".into(),
                            to_columns: vec![],
                        },
                    ],
                    row_count: 0,
                },
            ],
        }
    }

    #[test]
    fn default_schema_template_renders_keys_and_samples() {
        let spec = PromptSpec::builtin_default().expect("built-in prompt loads");
        let text = spec.render_schema(&two_tables()).expect("renders");
        assert_eq!(
            text,
            "\
CREATE TABLE artists (
  id INTEGER PRIMARY KEY,
  name TEXT -- e.g. 'Adele', 'Drake'
);

CREATE TABLE plays (
  artist_id INTEGER REFERENCES artists(id),
  \"order\", -- e.g. 1, 2, 3
  PRIMARY KEY (artist_id, \"order\"),
  FOREIGN KEY (artist_id, \"order\") REFERENCES \"other table\"
);"
        );
    }

    #[test]
    fn empty_schema_renders_empty() {
        let spec = PromptSpec::builtin_default().expect("built-in prompt loads");
        assert_eq!(
            spec.render_schema(&Schema { tables: vec![] })
                .expect("renders"),
            ""
        );
    }

    #[test]
    fn assistant_reply_ends_in_one_semicolon() {
        let spec = PromptSpec::builtin_default().expect("built-in prompt loads");
        assert_eq!(spec.assistant_reply("  SELECT 1 \n"), "SELECT 1;");
        assert_eq!(spec.assistant_reply("SELECT 1;; \n"), "SELECT 1;");
        assert_eq!(spec.assistant_reply("SELECT ';'"), "SELECT ';';");
    }

    #[test]
    fn sql_from_reply_reads_bare_and_fenced_answers() {
        let spec = PromptSpec::builtin_default().expect("built-in prompt loads");
        for (reply, want) in [
            ("SELECT 1;", "SELECT 1"),
            ("  SELECT a\nFROM t ;\n", "SELECT a\nFROM t"),
            ("Here:\n```sql\nSELECT 2;\n```\nDone.", "SELECT 2"),
            ("```\nSELECT 3\n```", "SELECT 3"),
            ("```SELECT 4;```", "SELECT 4"),
            ("```sql\nSELECT 5;", "SELECT 5"),
        ] {
            assert_eq!(spec.sql_from_reply(reply), want, "reply {reply:?}");
        }
        let sql = "SELECT \"top genre\" FROM songs";
        assert_eq!(spec.sql_from_reply(&spec.assistant_reply(sql)), sql);
    }

    #[test]
    fn examples_parse_and_report_bad_lines() {
        let path = Path::new("x/examples.jsonl");
        let ok = parse_examples(
            "{\"question\": \"q\", \"sql\": \"SELECT 1\", \"db\": \"extra\"}\n\n",
            path,
        )
        .expect("parses");
        assert_eq!(
            ok,
            vec![Example {
                question: "q".into(),
                sql: "SELECT 1".into()
            }]
        );
        assert!(parse_examples("", path).expect("parses").is_empty());
        let err = parse_examples("\n{\"question\": \"q\"}\n", path).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("examples.jsonl") && text.contains("line 2"),
            "{text}"
        );
    }

    #[test]
    fn resolve_order_env_then_prompts_then_builtin() {
        let env_dir = tempfile::tempdir().expect("temp dir");
        let local = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(env_dir.path().join("a")).expect("mkdir");
        std::fs::create_dir(local.path().join("a")).expect("mkdir");
        std::fs::create_dir(local.path().join("b")).expect("mkdir");
        std::fs::write(local.path().join("b").join(SYSTEM), "x").expect("write");

        let r = |name: &str, env: Option<&Path>| resolve(name, env, local.path());
        assert_eq!(
            r("a", Some(env_dir.path())).expect("found"),
            Source::Dir(env_dir.path().join("a"))
        );
        assert_eq!(
            r("a", None).expect("found"),
            Source::Dir(local.path().join("a"))
        );
        assert_eq!(
            r("b", Some(env_dir.path())).expect("found"),
            Source::Dir(local.path().join("b"))
        );
        assert_eq!(
            r("default", None).expect("found"),
            Source::Builtin("default")
        );
        assert_eq!(r("tuned", None).expect("found"), Source::Builtin("tuned"));
        let by_path = local.path().join("a");
        assert_eq!(
            resolve(&by_path.to_string_lossy(), None, Path::new("nowhere")).expect("found"),
            Source::Dir(by_path.clone())
        );

        let err = r("nope", Some(env_dir.path())).unwrap_err().to_string();
        assert!(
            err.contains("\"nope\"") && err.contains("b, default (built in), tuned (built in)"),
            "{err}"
        );
        let err = resolve("no/such/dir", None, local.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("no such directory"), "{err}");
    }

    #[test]
    fn builtin_errors_name_the_builtin_file() {
        let path = file_path(None, DEFAULT_PROMPT, SCHEMA);
        assert_eq!(path, PathBuf::from("(built-in) prompts/default/schema.j2"));
    }
}
