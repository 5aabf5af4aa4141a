//! `sqlagent serve`: parse the flags, hand the loading to the server, print
//! where it listens.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use super::args::ServeArgs;
use crate::agent::{AskOptions, Engine};
use crate::chat::PromptSpec;
use crate::server::{self, RequestLimits, ServeEvent, ServeOptions};

/// Runs `sqlagent serve` until SIGINT or SIGTERM.
pub fn serve(args: ServeArgs) -> Result<()> {
    let databases = args
        .databases
        .iter()
        .map(|spec| database_spec(spec))
        .collect::<Result<Vec<_>>>()?;
    let api_key = match &args.api_key_env {
        Some(var) => {
            let key = std::env::var(var).ok().filter(|k| !k.trim().is_empty());
            match key {
                Some(k) => Some(k.trim().to_string()),
                None => usage_bail!("--api-key-env {var}: {var} is not set (put the key in the environment or .env)"),
            }
        }
        None => None,
    };
    // One prompt for every request when --prompt is given; else each
    // adapter answers with the prompt it carries.
    let mut adapter_prompts = std::collections::BTreeMap::new();
    if args.prompt.is_none() {
        for (name, dir) in args.model.adapter_specs()? {
            if let Some(prompt) = PromptSpec::carried_by(&dir)? {
                adapter_prompts.insert(name, prompt);
            }
        }
    }
    let ask = AskOptions {
        prompt: PromptSpec::load(
            args.prompt
                .as_deref()
                .unwrap_or(crate::chat::DEFAULT_PROMPT),
        )?,
        sampling: args.sampling.to_params()?,
        limits: args.exec.to_limits()?,
        adapter: args.model.use_adapter.clone(),
        retries: args.retries,
        execute: true,
    };
    let workers = args.parallel.unwrap_or_else(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (cores / 2).clamp(1, 4)
    });
    if workers == 0 {
        usage_bail!("--parallel must be at least 1");
    }
    let options = ServeOptions {
        host: args.host.clone(),
        port: args.port,
        databases,
        grammar: args.grammar.to_options()?,
        model_name: args
            .model_name
            .clone()
            .unwrap_or_else(|| model_name(&args.model.model)),
        ask,
        adapter_prompts,
        workers,
        queue: args.queue,
        api_key,
        limits: RequestLimits {
            max_body_bytes: args.max_body_bytes,
            max_question_chars: args.max_question_chars,
            max_tokens: args.max_request_tokens.max(args.sampling.max_tokens),
            request_timeout: Duration::from_secs(args.request_timeout_s.max(1)),
        },
        shutdown_grace: Duration::from_secs(args.shutdown_grace_s),
    };
    let model = args.model.clone();
    let load = move || -> crate::Result<Engine> {
        let mut engine = Engine::load(&model.to_options(false)?)?;
        for (name, dir) in model.adapter_specs()? {
            if model.merge_adapter {
                engine.merge_adapter(&name, &dir)?;
            } else {
                engine.attach_adapter(&name, &dir)?;
            }
        }
        Ok(engine)
    };
    let name = options.model_name.clone();
    let dbs: Vec<String> = options.databases.iter().map(|(n, _)| n.clone()).collect();
    let parallel = options.workers;
    let keyed = options.api_key.is_some();
    server::serve(options, load, move |event| {
        let mut out = std::io::stdout().lock();
        let _ = match event {
            ServeEvent::Listening(addr) => writeln!(
                out,
                "listening on http://{addr} ({parallel} worker{}, {}; loading {name})",
                if parallel == 1 { "" } else { "s" },
                if keyed {
                    "API key required"
                } else {
                    "no API key"
                },
            ),
            ServeEvent::Ready { seconds } => writeln!(
                out,
                "ready: model {name}, database{} {} ({seconds:.1} s)",
                if dbs.len() == 1 { "" } else { "s" },
                dbs.join(", ")
            ),
            ServeEvent::ShuttingDown => {
                writeln!(out, "shutting down: finishing requests in flight")
            }
        };
        let _ = out.flush();
    })
    .context("sqlagent serve")?;
    Ok(())
}

/// `NAME=FILE`, or `FILE` named after its stem.
fn database_spec(spec: &str) -> Result<(String, PathBuf)> {
    let (name, file) = match spec.split_once('=') {
        Some((name, file)) => (name.to_string(), PathBuf::from(file)),
        None => {
            let file = PathBuf::from(spec);
            let name = file
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            (name, file)
        }
    };
    if name.is_empty() || file.as_os_str().is_empty() {
        usage_bail!("--db {spec:?}: give NAME=FILE or a FILE");
    }
    Ok((name, file))
}

/// The name clients use for a model: a file's stem, a directory's name, or
/// the repo id.
fn model_name(spec: &str) -> String {
    let path = Path::new(spec);
    if path.exists() {
        let stem = if path.is_dir() {
            path.file_name()
        } else {
            path.file_stem()
        };
        if let Some(s) = stem {
            return s.to_string_lossy().into_owned();
        }
    }
    spec.to_string()
}
