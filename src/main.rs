//! The `sqlagent` binary: parse arguments, run, map errors to exit codes.

use std::io::IsTerminal;
use std::process::ExitCode;

use sqlagent::cli;

fn main() -> ExitCode {
    let _ = dotenvy::dotenv();
    let cli = cli::parse_or_exit();
    if let Some(n) = cli.threads {
        // Read by rayon and candle's quantized kernels at first use.
        std::env::set_var("RAYON_NUM_THREADS", n.max(1).to_string());
    }
    init_logging(cli.verbose);
    sqlagent::heap::reuse_freed_memory();
    match cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::from(cli::exit_code(&e))
        }
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 if std::io::stderr().is_terminal() => "warn,sqlagent=info",
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("SQLAGENT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal() && !no_color)
        .with_writer(std::io::stderr)
        .with_target(false)
        .compact()
        .try_init();
}

/// The error and its causes on one line, skipping a cause whose text the
/// message already contains (library errors often quote their source).
fn one_line(e: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if message.contains(&text) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&text);
    }
    message.lines().map(str::trim).collect::<Vec<_>>().join(" ")
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
