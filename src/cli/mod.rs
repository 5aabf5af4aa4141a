//! Command-line interface: clap arguments ([`args`]), one function per
//! command, and output formatting ([`output`]). The only module that knows
//! clap.

/// `println!` that returns an error instead of panicking when stdout is
/// closed (a broken pipe ends the program quietly, as a success).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?
    }};
}

/// `bail!` for a command line that cannot run as given (flags that clash,
/// or that a value needs): exit code 2, as for clap's own parse errors.
macro_rules! usage_bail {
    ($($arg:tt)*) => {
        return Err($crate::cli::UsageError(format!($($arg)*)).into())
    };
}

mod adapt;
pub mod args;
mod bench;
mod chat;
mod eval;
mod output;
mod serve;
mod synth;
mod tune;

use std::io::IsTerminal;

use anyhow::{Context, Result};

use crate::agent::{AskOptions, DatabaseHandle, Listener};
use crate::chat::PromptSpec;
use crate::sql::{self, Database, ImportOptions};
use args::{
    AskArgs, Cli, Command, DemoDbArgs, Format, GrammarArgs, ImportArgs, ModelsArgs, SchemaArgs,
};

/// A command line that cannot run as given (see `usage_bail!`).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Parses the command line, exiting on help, version or a parse error as
/// clap does — except that under `--format json` a parse error is the JSON
/// error object on stdout (kind `usage`, exit code 2).
pub fn parse_or_exit() -> Cli {
    use clap::Parser as _;
    match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() && json_requested(std::env::args()) => {
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or_default();
            let message = first.strip_prefix("error: ").unwrap_or(first).to_string();
            let _ = output::print_error_json(&UsageError(message).into());
            std::process::exit(2);
        }
        Err(e) => e.exit(),
    }
}

/// Whether the arguments ask for `--format json`.
fn json_requested(args: impl Iterator<Item = String>) -> bool {
    let args: Vec<String> = args.collect();
    args.iter().any(|a| a == "--format=json")
        || args
            .windows(2)
            .any(|w| w[0] == "--format" && w[1] == "json")
}

/// Runs the parsed command line. Under `--format json` a failure is also
/// printed as one JSON object on stdout ([`output::print_error_json`]).
pub fn run(cli: Cli) -> Result<()> {
    let json = cli.command.json_output();
    let result = run_command(cli).map_err(name_the_flag);
    if let (Err(e), true) = (&result, json) {
        if !e.is::<AnswerFailed>() {
            output::print_error_json(e)?;
        }
    }
    result
}

/// The exit code for a failure: 2 bad input, 3 a model or database that
/// cannot be loaded, 4 no usable SQL (or running it failed), 1 anything
/// else.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    if e.is::<UsageError>() {
        return 2;
    }
    let class = match e.downcast_ref::<AnswerFailed>() {
        Some(failed) => Some(failed.class),
        None => e
            .chain()
            .find_map(|c| c.downcast_ref::<crate::Error>())
            .map(crate::Error::class),
    };
    match class {
        Some(crate::ErrorClass::BadInput) => 2,
        Some(crate::ErrorClass::NotLoadable) => 3,
        Some(crate::ErrorClass::Generation) => 4,
        Some(crate::ErrorClass::Other) | None => 1,
    }
}

fn run_command(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Ask(a) => ask(a),
        Command::Chat(a) => chat::chat(a),
        Command::Models(a) => models(a),
        Command::Schema(a) => schema(a),
        Command::Import(a) => import(a),
        Command::DemoDb(a) => demo_db(a),
        Command::Grammar(a) => grammar(a),
        Command::Bench(a) => bench::bench(a),
        Command::Eval(a) => eval::eval(a),
        Command::Tune(a) => tune::tune(a),
        Command::Synth(a) => synth::synth(a),
        Command::Adapt(a) => adapt::adapt(a),
        Command::Serve(a) => serve::serve(a),
    }
}

/// A library error that a flag fixes, with that flag named (library
/// messages say what to do in their own words, never with flag names).
fn name_the_flag(e: anyhow::Error) -> anyhow::Error {
    match e.downcast::<crate::Error>() {
        Ok(crate::Error::Hub { repo, message }) if message.starts_with("cannot reach") => {
            anyhow::anyhow!(
                "{}; pass a local model directory or .gguf file with --model",
                crate::Error::Hub { repo, message }
            )
        }
        Ok(crate::Error::Invalid { field, message }) => match flag_of(&field) {
            Some(flag) => anyhow::anyhow!("invalid {flag}: {message}"),
            None => crate::Error::Invalid { field, message }.into(),
        },
        Ok(other) => other.into(),
        Err(e) => e,
    }
}

/// The flag that sets a library field, where one does.
fn flag_of(field: &str) -> Option<&'static str> {
    Some(match field {
        "resume" | "checkpoint" => "--resume",
        "db" => "--db",
        "training pairs" => "--train",
        "validation fraction" => "--val-fraction",
        "warm-up share" => "--warmup",
        "maximum length" => "--max-len",
        "targets" => "--targets",
        "tune options" => "--rank/--epochs/--grad-accum",
        "Lamini URL" => "--lamini-url",
        "shape" => "--shape",
        "prompt ids" => "--prompt-ids",
        _ => return None,
    })
}

fn ask(args: AskArgs) -> Result<()> {
    let format = args.format;
    let (answer, model) = answer_question(args)?;
    output::print_answer(&answer, &model, format)?;
    answer_outcome(&answer)
}

/// An answer that ended without rows, already printed with its answer
/// (under `--format json`, inside the answer's object).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub(crate) struct AnswerFailed {
    message: String,
    class: crate::ErrorClass,
}

/// An answer whose last attempt failed, as the error the command exits
/// with.
pub(crate) fn answer_outcome(answer: &crate::agent::Answer) -> Result<()> {
    let Some(e) = answer.error() else {
        return Ok(());
    };
    let message = match e {
        crate::Error::OutOfTokens { max_tokens } => format!(
            "the model did not finish a query within {max_tokens} tokens (raise --max-tokens)"
        ),
        crate::Error::NoQuery { .. } => e.to_string(),
        _ => format!("the generated SQL failed: {e}"),
    };
    Err(AnswerFailed {
        message,
        class: crate::ErrorClass::Generation,
    }
    .into())
}

/// `prompt` with `--schema-budget` when it is given; else as it came (an
/// adapter's carried prompt keeps the budget it was trained with).
pub(crate) fn with_budget(prompt: PromptSpec, budget: Option<usize>) -> PromptSpec {
    match budget {
        Some(_) => prompt.with_schema_budget(budget),
        None => prompt,
    }
}

/// `prompt` with retrieval as `--retrieve`/`--examples` ask: from the
/// examples file, else from the answering adapter's training pairs.
pub(crate) fn with_retrieval(
    prompt: PromptSpec,
    model: &args::ModelArgs,
    retrieval: &args::RetrievalArgs,
) -> Result<PromptSpec> {
    use crate::chat::ExampleIndex;
    let k = retrieval
        .retrieve
        .unwrap_or(if retrieval.examples.is_some() { 3 } else { 0 });
    if k == 0 {
        return Ok(prompt);
    }
    let file = match (&retrieval.examples, model.answering_adapter_dir()?) {
        (Some(file), _) => file.clone(),
        (None, Some(dir)) => {
            let file = dir.join(crate::tune::TRAINING_PAIRS_FILE);
            if !file.is_file() {
                usage_bail!(
                    "--retrieve: the adapter in {} does not carry its training pairs ({}); pass --examples FILE.jsonl",
                    dir.display(),
                    crate::tune::TRAINING_PAIRS_FILE
                );
            }
            file
        }
        (None, None) => {
            anyhow::bail!(
                "--retrieve needs --examples FILE.jsonl or an adapter trained by this version"
            )
        }
    };
    let index = ExampleIndex::from_jsonl(&file)?;
    Ok(prompt.with_retrieval(std::sync::Arc::new(index), k))
}

/// `ask` up to its answer: what fails here fails before anything is printed.
fn answer_question(args: AskArgs) -> Result<(crate::agent::Answer, crate::agent::ModelInfo)> {
    let options = AskOptions {
        prompt: with_retrieval(
            with_budget(
                args.model.answer_prompt(args.prompt.as_deref())?,
                args.schema_budget,
            ),
            &args.model,
            &args.retrieval,
        )?,
        sampling: args.sampling.to_params()?,
        limits: args.exec.to_limits()?,
        adapter: None,
        retries: args.retries,
        execute: !args.no_execute,
    };
    let grammar_options = args.grammar.to_options()?;
    // The question and the database before the model: mistakes fail at once.
    if args.question.trim().is_empty() {
        return Err(crate::Error::invalid(
            "question",
            "is empty; ask something about the database",
        )
        .into());
    }
    if let Some(verb) = crate::agent::requested_change(&args.question) {
        return Err(crate::Error::ChangeRequested { verb }.into());
    }
    let db = DatabaseHandle::without_grammar(&args.db)?;
    let (engine, adapter) = args.model.load_engine()?;
    let options = AskOptions { adapter, ..options };
    let db = db.with_grammar(&engine, &grammar_options)?;

    // Stream the reply to a terminal's stderr as it is produced.
    let interactive = std::io::stderr().is_terminal();
    let mut on_text = output::reply_echo(interactive);
    let mut listener = Listener {
        on_text: Some(&mut on_text),
        cancel: None,
    };
    let answer = engine.ask(&db, &args.question, &options, &mut listener)?;
    if interactive {
        eprintln!();
    }
    Ok((answer, engine.info.clone()))
}

fn models(args: ModelsArgs) -> Result<()> {
    let found = crate::model::catalog::local_models_here(&args.dir);
    match args.format {
        Format::Json => outln!("{}", serde_json::to_string_pretty(&found)?),
        Format::Text => {
            if found.is_empty() {
                outln!(
                    "no models in {} or the hub cache; see models/README.md to fetch one",
                    args.dir.display()
                );
                return Ok(());
            }
            outln!("{}", output::models_table(&found));
        }
    }
    Ok(())
}

fn schema(args: SchemaArgs) -> Result<()> {
    let db = Database::open(&args.db)?;
    let schema = db.schema()?;
    match args.format {
        Format::Json => outln!("{}", serde_json::to_string_pretty(&schema)?),
        Format::Text => {
            let prompt = PromptSpec::load(&args.prompt)?;
            outln!("{}", prompt.render_schema(&schema)?.trim_end());
        }
    }
    Ok(())
}

fn grammar(args: GrammarArgs) -> Result<()> {
    let db = Database::open(&args.db)?;
    let schema = db.schema()?;
    let lark = crate::grammar::lark::lark_grammar(&schema, &args.grammar.to_options()?);
    match (args.format, lark) {
        (Format::Json, lark) => outln!("{}", serde_json::json!({ "grammar": lark })),
        (Format::Text, Some(lark)) => outln!("{}", lark.trim_end()),
        (Format::Text, None) => {}
    }
    Ok(())
}

fn import(args: ImportArgs) -> Result<()> {
    let report = sql::import_csv(&ImportOptions {
        csv: args.csv.clone(),
        db: args.db.clone(),
        table: args.table.clone(),
        replace: args.replace,
    })
    .map_err(|e| match e {
        crate::Error::Database { path, message } if message.ends_with("already exists") => {
            crate::Error::Database {
                path,
                message: format!("{message}; pass --replace to replace it"),
            }
        }
        other => other,
    })?;
    if args.format == Format::Json {
        let columns: Vec<serde_json::Value> = report
            .columns
            .iter()
            .map(|(name, ty)| serde_json::json!({"name": name, "type": ty}))
            .collect();
        let obj = serde_json::json!({
            "db": args.db, "table": report.table, "rows": report.rows, "columns": columns,
        });
        outln!("{obj}");
        return Ok(());
    }
    let columns: Vec<String> = report
        .columns
        .iter()
        .map(|(name, ty)| format!("{} {ty}", sql::quote_ident(name)))
        .collect();
    outln!(
        "imported {} rows into {} in {} ({})",
        report.rows,
        sql::quote_ident(&report.table),
        args.db.display(),
        columns.join(", ")
    );
    Ok(())
}

fn demo_db(args: DemoDbArgs) -> Result<()> {
    let report = sql::build_demo_db(&args.out)
        .with_context(|| format!("building the demo database at {}", args.out.display()))?;
    if args.format == Format::Json {
        outln!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    let tables: Vec<String> = report
        .tables
        .iter()
        .map(|(t, n)| format!("{t} ({n} rows)"))
        .collect();
    outln!("built {}: {}", report.path.display(), tables.join(", "));
    Ok(())
}
