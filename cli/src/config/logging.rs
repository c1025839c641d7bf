//! Logging: a command's (quiet unless RUST_LOG), or a node's (its `log.level` and `log.format`).

use super::Settings;

/// `node run` and `hub run`: the commands these settings are for, which start logging
/// themselves once their settings are read.
pub fn is_daemon(command: &crate::args::Command) -> bool {
    use crate::args::{Command, HubCommand, NodeCommand};
    matches!(
        command,
        Command::Node(NodeCommand::Run { .. }) | Command::Hub(HubCommand::Run { .. })
    )
}

/// Starts logging to stderr with `log.level` and `log.format` (checked when the settings were
/// read).
pub fn init_logging(settings: &Settings) {
    let filter = tracing_subscriber::EnvFilter::try_new(&settings.log_level.value)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("node=info"));
    init_logging_with(filter, settings.log_format.value == "json");
}

/// `--log-format` as given on the command line (`None`: not given), set once by `main`.
static LOG_FORMAT: std::sync::OnceLock<Option<crate::args::LogFormat>> = std::sync::OnceLock::new();

/// Records the command line's `--log-format` (before any settings are read).
pub fn set_log_format(format: Option<crate::args::LogFormat>) {
    let _ = LOG_FORMAT.set(format);
}

/// `--log-format` as given on the command line, if it was.
pub(super) fn command_line_format() -> Option<crate::args::LogFormat> {
    LOG_FORMAT.get().copied().flatten()
}

/// The log format of a command that reads no settings: `--log-format`, else `WB_LOG_FORMAT`
/// (json or text), else text.
pub fn command_log_json() -> bool {
    match LOG_FORMAT.get().copied().flatten() {
        Some(format) => format == crate::args::LogFormat::Json,
        None => std::env::var("WB_LOG_FORMAT").is_ok_and(|v| v == "json"),
    }
}

/// Starts logging to stderr with this filter, as JSON lines or text (once per process; later
/// calls do nothing).
pub fn init_logging_with(filter: tracing_subscriber::EnvFilter, json: bool) {
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        logs.json().try_init()
    } else {
        logs.try_init()
    };
}
