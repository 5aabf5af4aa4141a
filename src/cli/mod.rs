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

pub mod args;
mod bench;
mod eval;
mod output;
mod synth;
mod tune;

use std::io::{IsTerminal, Write};

use anyhow::{Context, Result};

use crate::agent::Agent;
use crate::chat::PromptSpec;
use crate::sql::{self, Database, ImportOptions};
use args::{AskArgs, Cli, Command, DemoDbArgs, Format, GrammarArgs, ImportArgs, SchemaArgs};

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Ask(a) => ask(a),
        Command::Schema(a) => schema(a),
        Command::Import(a) => import(a),
        Command::DemoDb(a) => demo_db(a),
        Command::Grammar(a) => grammar(a),
        Command::Bench(a) => bench::bench(a),
        Command::Eval(a) => eval::eval(a),
        Command::Tune(a) => tune::tune(a),
        Command::Synth(a) => synth::synth(a),
    }
}

fn ask(args: AskArgs) -> Result<()> {
    if args.question.trim().is_empty() {
        return Err(crate::Error::invalid(
            "question",
            "is empty; ask something about the database",
        )
        .into());
    }
    let sampling = args.sampling.to_params()?;
    let grammar_options = args.grammar.to_options()?;
    let limits = args.exec.to_limits()?;
    let db = Database::open(&args.db)?;
    let schema = db.schema()?;
    if schema.tables.is_empty() {
        return Err(crate::Error::Database {
            path: args.db.clone(),
            message: "has no tables; there is nothing to ask about".into(),
        }
        .into());
    }
    let prompt = PromptSpec::load(&args.prompt)?;
    let interactive = std::io::stderr().is_terminal();

    let (engine, adapter) = args.model.load_engine()?;
    let grammar = Agent::compile_grammar(&engine, &schema, &grammar_options)?;
    let agent = Agent {
        engine,
        prompt,
        sampling,
        limits,
        grammar,
        adapter,
    };

    // Stream the reply to a terminal's stderr as it is produced.
    let mut stderr = std::io::stderr();
    let mut on_text = |piece: &str| {
        if interactive {
            let _ = write!(stderr, "\x1b[2m{piece}\x1b[0m");
            let _ = stderr.flush();
        }
    };
    let draft = agent.draft(&db, &schema, &args.question, &mut on_text)?;
    if interactive {
        eprintln!();
    }
    if draft.sql.is_empty()
        && agent.grammar.is_some()
        && draft.stop == crate::generate::StopReason::MaxTokens
    {
        anyhow::bail!(
            "the model did not finish a query within {} tokens (raise --max-tokens)",
            agent.sampling.max_tokens
        );
    }
    if draft.sql.is_empty() {
        anyhow::bail!(
            "the model's reply contains no SQL query (reply: {:?})",
            draft.reply.chars().take(200).collect::<String>()
        );
    }
    if args.no_execute {
        return output::print_draft(
            &draft,
            &agent.engine.info,
            agent.adapter_info(),
            None,
            args.format,
        );
    }
    let start = std::time::Instant::now();
    let result = db.execute(&draft.sql, &agent.limits);
    let mut draft = draft;
    draft.timings.execute_ms = start.elapsed().as_secs_f64() * 1000.0;
    match result {
        Ok(rows) => output::print_draft(
            &draft,
            &agent.engine.info,
            agent.adapter_info(),
            Some(&rows),
            args.format,
        ),
        Err(e) => {
            // Show what the model wrote before the error.
            if args.format == Format::Text {
                outln!("{}", draft.sql);
            }
            Err(anyhow::Error::new(e).context("the generated SQL failed"))
        }
    }
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
    if let Some(lark) = crate::grammar::lark::lark_grammar(&schema, &args.grammar.to_options()?) {
        outln!("{}", lark.trim_end());
    }
    Ok(())
}

fn import(args: ImportArgs) -> Result<()> {
    let report = sql::import_csv(&ImportOptions {
        csv: args.csv.clone(),
        db: args.db.clone(),
        table: args.table.clone(),
        replace: args.replace,
    })?;
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
    let tables: Vec<String> = report
        .tables
        .iter()
        .map(|(t, n)| format!("{t} ({n} rows)"))
        .collect();
    outln!("built {}: {}", report.path.display(), tables.join(", "));
    Ok(())
}
