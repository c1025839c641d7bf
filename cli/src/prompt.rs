//! Asking the operator: on this process's terminal, or, for a control-socket client, on the
//! client's (the node sends the question back and the client repeats the command).

use std::cell::Cell;
use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Result, bail};

thread_local! {
    /// Set while a command runs for a control client: whether that client has a terminal.
    static CLIENT_TTY: Cell<Option<bool>> = const { Cell::new(None) };
}

/// `Some(client has a terminal)` while running a command for a control client, else `None`.
pub(crate) fn client_tty() -> Option<bool> {
    CLIENT_TTY.with(Cell::get)
}

/// The node cannot ask the client's operator; the client asks this question and repeats the
/// command with `--yes` if the answer is yes.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct NeedsAnswer(pub String);

/// Runs `work` for a control-socket client, so that questions go back to it.
pub(crate) fn for_client<T>(stdin_tty: bool, work: impl FnOnce() -> T) -> T {
    CLIENT_TTY.with(|c| c.set(Some(stdin_tty)));
    let out = work();
    CLIENT_TTY.with(|c| c.set(None));
    out
}

/// Asks y/N before going on; refuses without a terminal to ask on (`--yes` skips the question).
/// For a control-socket client the node cannot ask: the client asks and repeats the command.
pub(crate) fn confirm(question: &str) -> Result<()> {
    let has_terminal = match client_tty() {
        Some(true) => return Err(NeedsAnswer(question.to_string()).into()),
        Some(false) => false,
        None => std::io::stdin().is_terminal(),
    };
    if !has_terminal {
        bail!("refusing to continue without confirmation: no terminal to ask on (pass --yes)");
    }
    if ask_terminal(question)? {
        Ok(())
    } else {
        bail!("cancelled; nothing changed")
    }
}

/// Asks y/N on this process's terminal (question on stderr, answer on stdin).
pub(crate) fn ask_terminal(question: &str) -> Result<bool> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        bail!("refusing to continue without confirmation: no terminal to ask on (pass --yes)");
    }
    let mut stderr = std::io::stderr();
    write!(stderr, "{question} [y/N] ")?;
    stderr.flush()?;
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer)?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}
