//! A `wb` child on a pseudo-terminal (nix's openpty: no unsafe code), for interactive flows.

use std::fs;
use std::io::{Read, Write};
use std::process::Stdio;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::harness::TestHome;

/// How long a pseudo-terminal test waits for one prompt before failing (never a fixed sleep).
pub const PROMPT_TIMEOUT: Duration = Duration::from_secs(60);

/// A `wb` child whose stdin, stdout and stderr are one pseudo-terminal.
pub struct PtyRun {
    child: std::process::Child,
    pub master: fs::File,
    output: Receiver<Vec<u8>>,
    /// Everything read so far and not yet consumed by [`PtyRun::expect`].
    pending: String,
    /// Everything read, for failure messages.
    transcript: String,
}

impl std::fmt::Debug for PtyRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PtyRun(pid {})", self.child.id())
    }
}

impl PtyRun {
    pub fn spawn(t: &TestHome, args: &[&str]) -> Self {
        let pty = nix::pty::openpty(None, None).expect("open a pseudo-terminal");
        let slave = fs::File::from(pty.slave);
        let mut cmd = t.command(args);
        cmd.stdin(Stdio::from(slave.try_clone().expect("dup the pty")))
            .stdout(Stdio::from(slave.try_clone().expect("dup the pty")))
            .stderr(Stdio::from(slave));
        let child = cmd.spawn().expect("spawn wb on a pseudo-terminal");
        // The parent's copies of the terminal side must close, or reading never ends.
        drop(cmd);
        let master = fs::File::from(pty.master);
        let mut reader = master.try_clone().expect("dup the pty master");
        let (tx, output) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // Linux reports EIO once the child side is closed: the end of the output.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            master,
            output,
            pending: String::new(),
            transcript: String::new(),
        }
    }

    fn read_more(&mut self, deadline: Instant) -> bool {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.output.recv_timeout(left) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes).replace('\r', "");
                self.pending.push_str(&text);
                self.transcript.push_str(&text);
                true
            }
            Err(RecvTimeoutError::Timeout) => panic!(
                "wb printed nothing more within {PROMPT_TIMEOUT:?}; so far:\n{}",
                self.transcript
            ),
            Err(RecvTimeoutError::Disconnected) => false,
        }
    }

    /// Waits for `needle`; returns what came before it (inclusive) and consumes it.
    pub fn expect(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + PROMPT_TIMEOUT;
        loop {
            if let Some(at) = self.pending.find(needle) {
                let upto: String = self.pending.drain(..at + needle.len()).collect();
                return upto;
            }
            assert!(
                self.read_more(deadline),
                "wb ended before printing {needle:?}:\n{}",
                self.transcript
            );
        }
    }

    pub fn send_line(&mut self, line: &str) {
        writeln!(self.master, "{line}").expect("type into the pseudo-terminal");
    }

    /// Waits for the exit; returns its status and everything printed.
    pub fn finish(mut self) -> (std::process::ExitStatus, String) {
        let deadline = Instant::now() + PROMPT_TIMEOUT;
        while self.read_more(deadline) {}
        let status = self.child.wait().expect("wait for wb");
        (status, self.transcript)
    }
}
