//! What a command prints, as data: the same [`Reply`] is printed by `wb` itself and sent back by
//! a running node to a control-socket client, so both print exactly the same.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::commands::Output;

/// A finished command: its exit status and the lines for stdout and stderr.
#[derive(Debug, Serialize, Deserialize)]
pub struct Reply {
    pub code: u8,
    /// The text (or JSON document) for stdout, if any.
    pub stdout: Option<String>,
    /// Lines for stderr (warnings, or the one-line error).
    pub stderr: Vec<String>,
    /// Set by a node when the command needs the operator's "yes" first.
    #[serde(default)]
    pub ask: Option<String>,
}

impl Reply {
    pub fn render(result: Result<Output>, json: bool) -> Self {
        match result {
            Ok(out) => {
                let stdout = if json {
                    serde_json::to_string_pretty(&out.json).unwrap_or_default()
                } else {
                    out.text
                };
                Self {
                    code: u8::from(out.failed),
                    stdout: Some(stdout),
                    stderr: out
                        .warnings
                        .iter()
                        .map(|w| format!("warning: {w}"))
                        .collect(),
                    ask: None,
                }
            }
            Err(e) => Self::error(&e),
        }
    }

    pub fn error(e: &anyhow::Error) -> Self {
        Self {
            code: 1,
            stdout: None,
            stderr: vec![format!("error: {}", one_line(e))],
            ask: None,
        }
    }

    pub fn ask(question: String) -> Self {
        Self {
            code: 1,
            stdout: None,
            stderr: Vec::new(),
            ask: Some(question),
        }
    }

    /// Prints the reply; a closed stdout pipe (`wb record list | head`) is not an error.
    pub fn emit(&self) -> ExitCode {
        for line in &self.stderr {
            eprintln!("{line}");
        }
        let Some(text) = &self.stdout else {
            return ExitCode::from(self.code);
        };
        let mut out = std::io::stdout().lock();
        match writeln!(out, "{text}").and_then(|()| out.flush()) {
            Ok(()) => ExitCode::from(self.code),
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::from(self.code),
            Err(e) => {
                eprintln!("error: cannot write output: {e}");
                ExitCode::FAILURE
            }
        }
    }
}

/// The error and its causes on one line, without repeating a cause already in the message.
fn one_line(e: &anyhow::Error) -> String {
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !msg.contains(&c) {
            msg.push_str(": ");
            msg.push_str(&c);
        }
    }
    msg.replace('\n', " ")
}
