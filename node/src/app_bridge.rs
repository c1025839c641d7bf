//! A running node's bridge to the WhiteBalloon app beside it (§14): it adopts each new snapshot
//! the app exports, writes the app's inbox after received changes, and runs the operator's
//! import command. The work itself is `store::app` (the same functions as `wb app import` and
//! `wb app export`); this module only decides when, off the async threads.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use store::app::{AdoptOptions, ImportRun, InboxOptions};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tracing::{info, warn};

use crate::handle::NodeHandle;

/// Longest an import command may run before it is killed.
pub const IMPORT_TIMEOUT: Duration = Duration::from_secs(600);
/// Lines of the import command's output kept for `wb app status`, and their length.
pub const IMPORT_LINES_KEPT: usize = 20;
const IMPORT_LINE_MAX: usize = 500;
/// Largest bundle.sig read when polling the snapshot.
const SIGNATURE_READ_MAX: u64 = 64 * 1024;

/// What the bridge watches and runs.
#[derive(Clone, Debug)]
pub struct AppBridgeConfig {
    /// The app's export folder (its snapshot), polled for a new `bundle.sig`.
    pub snapshot: Option<PathBuf>,
    /// Where to write the inbox for the app.
    pub inbox: Option<PathBuf>,
    /// Run through `sh -c` after each new inbox.
    pub import_cmd: Option<String>,
    pub poll: Duration,
    pub allow_contact: bool,
}

/// Starts the bridge; it runs until the returned task is aborted.
pub fn spawn(node: NodeHandle, config: AppBridgeConfig) -> tokio::task::JoinHandle<()> {
    tokio::spawn(run(node, config))
}

async fn run(node: NodeHandle, config: AppBridgeConfig) {
    let mut snapshot = SnapshotWatch::default();
    // `None`: no inbox written yet by this run, so the first tick writes one.
    let mut inbox_seq: Option<u64> = None;
    let mut seen_seq: Option<u64> = None;
    let mut ticker = tokio::time::interval(config.poll);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if let Some(dir) = &config.snapshot {
            snapshot.poll(&node, dir, config.allow_contact).await;
        }
        let Some(inbox) = &config.inbox else { continue };
        let store = node.store().clone();
        let seq = match tokio::task::spawn_blocking(move || store.last_seq()).await {
            Ok(Ok(seq)) => seq,
            Ok(Err(e)) => {
                warn!("app bridge: cannot read the store: {e}");
                continue;
            }
            Err(_) => continue,
        };
        // Debounced: write once the log has not moved for one poll interval (a sync in
        // progress applies batch after batch).
        let settled = seen_seq == Some(seq);
        seen_seq = Some(seq);
        if inbox_seq == Some(seq) || (!settled && inbox_seq.is_some()) {
            continue;
        }
        if write_inbox(&node, inbox, config.import_cmd.as_deref()).await {
            inbox_seq = Some(seq);
        }
    }
}

/// The snapshot's `bundle.sig` as last seen, and whether it was dealt with.
#[derive(Default)]
struct SnapshotWatch {
    /// Digest of bundle.sig at the previous poll (a new snapshot is adopted once it is the same
    /// on two polls in a row: the app writes bundle.sig before its public key file).
    last: Option<[u8; 32]>,
    /// Digest of the bundle.sig adopted (or refused for good) last.
    done: Option<[u8; 32]>,
    /// Digest whose failure was logged, so a bad snapshot is reported once.
    reported: Option<[u8; 32]>,
}

impl SnapshotWatch {
    async fn poll(&mut self, node: &NodeHandle, dir: &std::path::Path, allow_contact: bool) {
        let Some(digest) = read_digest(&dir.join(protocol::bundle::SIGNATURE_FILE)) else {
            self.last = None;
            return;
        };
        let stable = self.last == Some(digest);
        self.last = Some(digest);
        if !stable || self.done == Some(digest) {
            return;
        }
        let store = node.store().clone();
        let key = node.key().clone();
        let path = dir.to_path_buf();
        let opts = AdoptOptions {
            allow_contact,
            now_ms: store::time::now_ms(),
            dry_run: false,
        };
        let result = tokio::task::spawn_blocking(move || {
            // Refusals that a retry cannot mend are final for this snapshot; anything else (a
            // snapshot still being written) is retried at the next poll.
            store::app::adopt_dir(&store, &key, &path, &opts).map_err(|e| {
                let final_refusal = matches!(
                    e,
                    store::app::AppError::ForeignSigner { .. }
                        | store::app::AppError::OwnInbox { .. }
                        | store::app::AppError::OlderSnapshot { .. }
                );
                (final_refusal, e.to_string())
            })
        })
        .await;
        match result {
            Ok(Ok(report)) => {
                self.done = Some(digest);
                if report.changed() {
                    info!(
                        created = report.created,
                        updated = report.updated,
                        deleted = report.deleted,
                        "app bridge: adopted the app's snapshot in {}",
                        dir.display()
                    );
                    node.local_changed();
                }
            }
            Ok(Err((final_refusal, e))) => {
                if final_refusal {
                    self.done = Some(digest);
                }
                if self.reported != Some(digest) {
                    warn!("app bridge: snapshot not adopted: {e}");
                    self.reported = Some(digest);
                }
            }
            Err(e) => warn!("app bridge: adoption task failed: {e}"),
        }
    }
}

fn read_digest(path: &std::path::Path) -> Option<[u8; 32]> {
    use std::io::Read;
    let meta = std::fs::symlink_metadata(path).ok()?;
    if !meta.is_file() || meta.len() > SIGNATURE_READ_MAX {
        return None;
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .ok()?
        .take(SIGNATURE_READ_MAX)
        .read_to_end(&mut bytes)
        .ok()?;
    Some(Sha256::digest(&bytes).into())
}

/// Writes the inbox; on a new one, runs the import command. Returns whether the inbox was
/// written (a failure is retried at the next change).
async fn write_inbox(node: &NodeHandle, dir: &std::path::Path, import_cmd: Option<&str>) -> bool {
    let store = node.store().clone();
    let key = node.key().clone();
    let home = node.home().clone();
    let path = dir.to_path_buf();
    let result = tokio::task::spawn_blocking(move || {
        // An unreadable registry fails this write (retried at the next change) rather than
        // labelling every origin by key id, which would rename every foreign user in the app.
        let opts =
            InboxOptions::for_home(&home, store::time::now_ms()).map_err(|e| e.to_string())?;
        store::app::write_inbox(&store, &key, &path, &opts).map_err(|e| e.to_string())
    })
    .await;
    let report = match result {
        Ok(Ok(report)) => report,
        Ok(Err(e)) => {
            warn!("app bridge: cannot write the inbox: {e}");
            return false;
        }
        Err(e) => {
            warn!("app bridge: inbox task failed: {e}");
            return false;
        }
    };
    if report.unchanged {
        return true;
    }
    info!(
        users = report.users,
        requests = report.requests,
        comments = report.comments,
        withdrawn = report.withdrawn,
        "app bridge: wrote the app's inbox in {}",
        dir.display()
    );
    if let Some(cmd) = import_cmd {
        let run = run_import(cmd, &report.manifest_digest).await;
        if run.ok {
            info!("app bridge: import command succeeded: {cmd}");
        } else {
            warn!(
                exit_code = run.exit_code,
                "app bridge: import command failed: {cmd}: {}",
                run.last_lines.last().map(String::as_str).unwrap_or("")
            );
        }
        let store = node.store().clone();
        match tokio::task::spawn_blocking(move || store.record_app_import(&run)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!("app bridge: cannot record the import result: {e}"),
            Err(e) => warn!("app bridge: {e}"),
        }
    }
    true
}

/// Runs the operator's import command through `sh -c`, under [`IMPORT_TIMEOUT`], keeping its
/// last [`IMPORT_LINES_KEPT`] lines of output.
pub async fn run_import(cmd: &str, inbox_digest: &str) -> ImportRun {
    let started = Instant::now();
    let mut run = ImportRun {
        command: cmd.to_string(),
        started_at_ms: store::time::now_ms(),
        inbox_digest: inbox_digest.to_string(),
        ..ImportRun::default()
    };
    let child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => {
            run.last_lines = vec![format!("cannot start `sh -c {cmd}`: {e}")];
            return run;
        }
    };
    let lines = Arc::new(Mutex::new(VecDeque::with_capacity(IMPORT_LINES_KEPT)));
    let readers = [
        child.stdout.take().map(|s| keep_lines(s, lines.clone())),
        child.stderr.take().map(|s| keep_lines(s, lines.clone())),
    ];
    let status = tokio::time::timeout(IMPORT_TIMEOUT, child.wait()).await;
    match status {
        Ok(Ok(status)) => {
            run.exit_code = status.code();
            run.ok = status.success();
        }
        Ok(Err(e)) => {
            push_line(&lines, format!("waiting for the command failed: {e}"));
        }
        Err(_) => {
            let _ = child.kill().await;
            push_line(
                &lines,
                format!("killed after {} s (the deadline)", IMPORT_TIMEOUT.as_secs()),
            );
        }
    }
    for reader in readers.into_iter().flatten() {
        let _ = tokio::time::timeout(Duration::from_secs(5), reader).await;
    }
    run.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    run.last_lines = lines
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .cloned()
        .collect();
    run
}

fn push_line(lines: &Mutex<VecDeque<String>>, line: String) {
    let mut lines = lines.lock().unwrap_or_else(PoisonError::into_inner);
    if lines.len() == IMPORT_LINES_KEPT {
        lines.pop_front();
    }
    lines.push_back(line);
}

fn keep_lines(
    stream: impl AsyncRead + Unpin + Send + 'static,
    lines: Arc<Mutex<VecDeque<String>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut reader = BufReader::new(stream);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            // Lines are read whole but kept short; a line without an end is bounded by what
            // the pipe delivers before EOF.
            match (&mut reader)
                .take(64 * 1024)
                .read_until(b'\n', &mut buf)
                .await
            {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&buf);
                    let line: String = text.trim_end().chars().take(IMPORT_LINE_MAX).collect();
                    push_line(&lines, line);
                }
            }
        }
    })
}
