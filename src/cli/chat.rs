//! `sqlagent chat`: question after question with the model loaded once
//! ([`crate::agent::Conversation`]). On a terminal: line editing, a
//! history file, Ctrl-C to stop an answer; from a pipe: one question per
//! line, answered as `ask` answers it, without prompts.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};

use super::args::{prompt_for, ChatArgs, Format};
use super::{output, with_budget};
use crate::agent::{
    Answer, AskOptions, ChatCommand, Conversation, DatabaseHandle, Listener, Timings, BASE_MODEL,
    CHAT_HELP,
};
use crate::generate::CancelFlag;

/// Runs `sqlagent chat` until `.quit`, Ctrl-D or the end of the piped
/// questions.
pub fn chat(args: ChatArgs) -> Result<()> {
    let grammar_options = args.grammar.to_options()?;
    let budget = args.schema_budget;
    let db = DatabaseHandle::without_grammar(&args.db)?;
    // The model as loaded answers with a merged adapter's prompt; each
    // attached adapter with its own.
    let base_prompt = with_budget(
        if args.model.merge_adapter {
            args.model.answer_prompt(args.prompt.as_deref())?
        } else {
            prompt_for(args.prompt.as_deref(), None)?
        },
        budget,
    );
    let mut prompts = BTreeMap::new();
    if !args.model.merge_adapter {
        for (name, dir) in args.model.adapter_specs()? {
            let prompt = prompt_for(args.prompt.as_deref(), Some(&dir))?;
            prompts.insert(name, with_budget(prompt, budget));
        }
    }
    let (engine, adapter) = args.model.load_engine()?;
    let db = Arc::new(db.with_grammar(&engine, &grammar_options)?);
    let options = AskOptions {
        prompt: base_prompt,
        sampling: args.sampling.to_params()?,
        limits: args.exec.to_limits()?,
        adapter,
        retries: args.retries,
        execute: true,
    };
    let mut conversation = Conversation::new(engine, db, options, prompts)?;

    let interactive = std::io::stdin().is_terminal();
    let started = Instant::now();
    let fed = conversation.warm_up()?;
    if interactive {
        eprintln!(
            "sqlagent chat: {} ({} tables), model {}{}; schema prefilled ({fed} tokens, {:.1} s)",
            args.db.display(),
            conversation.tables().len(),
            args.model.model,
            describe_adapter(&conversation),
            started.elapsed().as_secs_f64()
        );
        eprintln!(".help lists the commands; Ctrl-D leaves.");
    }

    // Ctrl-C stops the answer being written. At the prompt the line
    // editor reads it as a key (the line is cleared); between the two, on
    // a terminal, it is ignored, so that a late Ctrl-C never ends the
    // conversation. Reading from a pipe, it ends the program as usual.
    let cancel = CancelFlag::new();
    let answering = Arc::new(AtomicBool::new(false));
    {
        let (cancel, answering) = (cancel.clone(), answering.clone());
        ctrlc::set_handler(move || {
            if answering.load(Ordering::SeqCst) {
                cancel.cancel();
            } else if !interactive {
                std::process::exit(130);
            }
        })
        .context("installing the Ctrl-C handler")?;
    }
    let mut turn = Turn {
        conversation: &mut conversation,
        format: args.format,
        interactive,
        cancel,
        answering,
        failed: 0,
        asked: 0,
    };
    if interactive {
        let history = (!args.no_history)
            .then(|| args.history.clone().or_else(default_history))
            .flatten();
        turn.read_terminal(history)?;
    } else {
        for line in std::io::stdin().lines() {
            let line = line.context("reading questions from stdin")?;
            if !turn.line(&line)? {
                break;
            }
        }
        if turn.failed > 0 {
            anyhow::bail!(
                "{} of {} questions got no rows (each said why above)",
                turn.failed,
                turn.asked
            );
        }
    }
    Ok(())
}

/// `sqlagent/chat_history` in the user's data directory.
fn default_history() -> Option<PathBuf> {
    dirs::data_dir().map(|d| d.join("sqlagent").join("chat_history"))
}

fn describe_adapter(conversation: &Conversation) -> String {
    match conversation.adapter() {
        Some(name) => format!(", adapter {name}"),
        None => String::new(),
    }
}

/// One conversation's loop state.
struct Turn<'c> {
    conversation: &'c mut Conversation,
    format: Format,
    interactive: bool,
    cancel: CancelFlag,
    answering: Arc<AtomicBool>,
    /// Questions that ended without rows.
    failed: usize,
    asked: usize,
}

impl Turn<'_> {
    /// Reads lines with editing and history until `.quit` or Ctrl-D.
    fn read_terminal(&mut self, history: Option<PathBuf>) -> Result<()> {
        use rustyline::error::ReadlineError;
        let config = rustyline::Config::builder()
            .auto_add_history(true)
            .max_history_size(1000)
            .context("line editor")?
            .build();
        let mut editor =
            rustyline::DefaultEditor::with_config(config).context("starting the line editor")?;
        if let Some(path) = &history {
            if let Some(dir) = path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            // A first session has no file yet.
            let _ = editor.load_history(path);
        }
        loop {
            match editor.readline("sql> ") {
                Ok(line) => {
                    if let Some(path) = &history {
                        if let Err(e) = editor.save_history(path) {
                            eprintln!("warning: history not saved to {}: {e}", path.display());
                        }
                    }
                    if !self.line(&line)? {
                        return Ok(());
                    }
                }
                Err(ReadlineError::Interrupted) => continue,
                Err(ReadlineError::Eof) => return Ok(()),
                Err(e) => return Err(e).context("reading a line"),
            }
        }
    }

    /// Handles one line; false when the conversation ends.
    fn line(&mut self, line: &str) -> Result<bool> {
        match ChatCommand::parse(line) {
            ChatCommand::Nothing => {}
            ChatCommand::Quit => return Ok(false),
            ChatCommand::Help => outln!("{CHAT_HELP}"),
            ChatCommand::Tables => {
                for t in self.conversation.tables() {
                    outln!(
                        "{} ({} row{}): {}",
                        t.name,
                        t.rows,
                        if t.rows == 1 { "" } else { "s" },
                        t.columns.join(", ")
                    );
                }
            }
            ChatCommand::Schema => outln!("{}", self.conversation.schema_text()?.trim_end()),
            ChatCommand::Sql => match self.conversation.last_sql() {
                Some(sql) => outln!("{sql};"),
                None => eprintln!("no SQL yet: ask a question first"),
            },
            ChatCommand::ShowAdapter => {
                let loaded = self.conversation.adapters();
                outln!(
                    "answering: {} (loaded: {})",
                    self.conversation.adapter().unwrap_or("the base model"),
                    if loaded.is_empty() {
                        "none".to_string()
                    } else {
                        loaded.join(", ")
                    }
                );
            }
            ChatCommand::UseAdapter(name) => match self.conversation.use_adapter(&name) {
                Ok(()) => {
                    let fed = self.conversation.warm_up()?;
                    eprintln!(
                        "{} answers now{}",
                        if name == BASE_MODEL {
                            "the base model"
                        } else {
                            &name
                        },
                        if fed > 0 {
                            format!(" (schema prefilled, {fed} tokens)")
                        } else {
                            String::new()
                        }
                    );
                }
                Err(e) => eprintln!("error: {e}"),
            },
            ChatCommand::Unknown(command) => {
                eprintln!("error: unknown command {command:?}; .help lists the commands")
            }
            ChatCommand::Ask(question) => self.ask(&question)?,
        }
        Ok(true)
    }

    /// Answers one question as `ask` prints it; a failure is said and the
    /// conversation goes on.
    fn ask(&mut self, question: &str) -> Result<()> {
        self.asked += 1;
        self.cancel.reset();
        self.answering.store(true, Ordering::SeqCst);
        let interactive = self.interactive;
        let mut on_text = output::reply_echo(interactive);
        let mut listener = Listener {
            on_text: Some(&mut on_text),
            cancel: Some(&self.cancel),
        };
        let answered = self.conversation.ask(question, &mut listener);
        self.answering.store(false, Ordering::SeqCst);
        if interactive {
            eprintln!();
        }
        let answer = match answered {
            Ok(answer) => answer,
            Err(crate::Error::Cancelled) => {
                self.failed += 1;
                eprintln!("(stopped)");
                return Ok(());
            }
            Err(e) => {
                self.failed += 1;
                let e = anyhow::Error::from(e);
                if self.format == Format::Json {
                    output::print_error_json(&e)?;
                }
                eprintln!("error: {e:#}");
                return Ok(());
            }
        };
        output::print_answer(&answer, &self.conversation.engine().info, self.format)?;
        if let Err(e) = super::answer_outcome(&answer) {
            self.failed += 1;
            eprintln!("error: {e:#}");
        }
        if interactive && self.format == Format::Text {
            eprintln!("{}", output::dim(&timing_line(&answer)));
        }
        Ok(())
    }
}

/// `prompt 812 tokens (803 kept) · prefill 41 ms · decode 290 ms (15 steps) · run 1 ms`.
fn timing_line(answer: &Answer) -> String {
    let t: Timings = answer
        .attempts
        .iter()
        .map(|a| a.draft.timings.clone())
        .reduce(|mut sum, t| {
            sum.prefill_ms += t.prefill_ms;
            sum.decode_ms += t.decode_ms;
            sum.decode_steps += t.decode_steps;
            sum.execute_ms += t.execute_ms;
            sum
        })
        .unwrap_or_default();
    format!(
        "prompt {} tokens ({} kept) · prefill {:.0} ms · decode {:.0} ms ({} steps) · run {:.0} ms{}",
        t.prompt_tokens,
        t.reused_prompt_tokens,
        t.prefill_ms,
        t.decode_ms,
        t.decode_steps,
        t.execute_ms,
        if answer.attempts.len() > 1 {
            format!(" · {} attempts", answer.attempts.len())
        } else {
            String::new()
        }
    )
}
