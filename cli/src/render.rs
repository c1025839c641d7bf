//! What a command prints, as data: the same [`Reply`] is printed by `wb` itself and sent back by
//! a running node to a control-socket client, so both print exactly the same.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use protocol::{PublicKey, Record};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

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

/// What a command prints: text for people, one JSON document for scripts, warnings on stderr.
#[derive(Debug, Default)]
pub struct Output {
    pub text: String,
    pub json: Value,
    pub warnings: Vec<String>,
    /// The command ran and found something wrong (`wb doctor`): exit status 1, output printed.
    pub failed: bool,
}

impl Output {
    pub(crate) fn new(text: impl Into<String>, json: Value) -> Self {
        Self {
            text: text.into(),
            json,
            warnings: Vec::new(),
            failed: false,
        }
    }
}

pub(crate) fn identity_json(key: &PublicKey, name: Option<&str>) -> Result<Value> {
    Ok(json!({
        "name": name,
        "endpoint_id": node::identity::endpoint_id(key)?.to_string(),
        "key_id": key.key_id(),
        "public_key": key.to_base64(),
        // The endpoint id alone; `wb id` adds the node's addresses (see `ticket`).
        "ticket": node::ticket::encode(key, &[])?,
    }))
}

pub(crate) fn identity_text(j: &Value) -> String {
    let s = |k: &str| j[k].as_str().unwrap_or("(none)").to_string();
    format!(
        "name:        {}\nendpoint id: {}\nkey id:      {}\npublic key:  {}\nticket:      {}",
        s("name"),
        s("endpoint_id"),
        s("key_id"),
        s("public_key"),
        s("ticket")
    )
}

pub fn record_json(r: &Record, local: &PublicKey) -> Value {
    let fields: serde_json::Map<String, Value> = r
        .fields
        .iter()
        .map(|(n, v)| (n.clone(), json!(v)))
        .collect();
    json!({
        "origin": r.origin.to_base64(),
        "entity": r.entity.as_str(),
        "id": r.id,
        "version": r.version.to_string(),
        "scope": r.scope.as_str(),
        "deleted": r.deleted,
        "fields": fields,
        "body": r.body,
        "origin_key_id": r.origin.key_id(),
        "local": r.origin == *local,
        "signed": r.signature.is_some(),
    })
}
