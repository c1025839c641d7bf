//! `wb`: the command-line entry point. Parses arguments, runs the command, prints its output
//! (text or `--json`), and maps errors to one line on stderr and a non-zero exit status.

mod app_cmd;
mod args;
mod backup_cmd;
mod bundle_cmd;
mod commands;
mod config;
mod control;
mod doctor_cmd;
mod hub_cmd;
mod identity_cmd;
mod install;
mod node_cmd;
mod open;
mod peers_cmd;
mod prompt;
mod prune_cmd;
mod record_cmd;
mod render;
mod running;
mod succession_view;
mod trust_cmd;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = match args::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    config::set_log_format(cli.log_format);
    // `node run` and `hub run` start logging once their settings are read (log.level); other
    // commands stay quiet unless RUST_LOG says otherwise (errors reach the user as the one-line
    // message, not as library logs).
    if !config::is_daemon(&cli.command) {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off"));
        config::init_logging_with(filter, config::command_log_json());
    }
    // With a node running on this home, the node runs the command (it holds the store).
    if let Some(reply) = control::forward(&cli) {
        return reply.emit();
    }
    let json = cli.json;
    render::Reply::render(commands::run(cli), json).emit()
}

/// Help and version go to stdout as clap renders them; usage mistakes become one line on stderr
/// (the message, then the usage) and exit status 2.
fn usage_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let code = if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
            2
        } else {
            0
        };
        if code == 0 {
            return print_stdout(e.to_string().trim_end());
        }
        eprint!("{e}");
        return ExitCode::from(code);
    }
    let text = e.to_string();
    // The message is the first paragraph (clap indents continuation lines such as `<ID>`).
    let message = text
        .split("\n\n")
        .next()
        .unwrap_or("error: invalid arguments")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let usage = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Usage: "))
        .map(|u| format!(" (usage: {u}; see --help)"))
        .unwrap_or_default();
    eprintln!("{message}{usage}");
    ExitCode::from(2)
}

/// Prints to stdout; a closed pipe (`wb record list | head`) is not an error.
fn print_stdout(text: &str) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: cannot write output: {e}");
            ExitCode::FAILURE
        }
    }
}
