//! Continuous sync (§10): a running node keeps its peers up to date by itself.
//!
//! - A local change (`NodeHandle::local_changed`, called by whoever wrote to the store in this
//!   process) bumps a coalescing signal: a `watch` value (a generation counter and the peer a
//!   change came from, if any), never a queue, so any number of changes cost one wake-up.
//! - One worker task per dialable peer (in the registry, not revoked, with an address or a hub
//!   to look it up through), started and stopped by a supervisor that re-reads
//!   `wb_peers.txt` every `rescan`. A worker runs one session at a time with its peer
//!   (`Direction::Both`: it offers our changes, which the peer pulls, and pulls the peer's):
//!   at start, shortly after a local change (debounced), and every `interval` to catch up.
//! - A failed session is retried with capped exponential backoff and jitter; while a peer is
//!   backing off, local changes wait for the next retry.
//! - At most `max_sessions` outgoing sessions run at once (a semaphore shared by the workers).
//! - Records that arrive (pulled by a worker, or pushed to us by a peer) count as a local change
//!   only when they changed the store (new, updated, conflict), so they propagate onward
//!   (A → B → C) but a session that applies nothing never starts another round. A change that
//!   came from peer P does not wake P's own worker (P already has it).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use protocol::PublicKey;
use store::Peer;
use tokio::sync::{Semaphore, watch};
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::dial::{Direction, SyncReport};
use crate::handle::NodeHandle;
pub use crate::shared::PeerSyncStatus;
use crate::shared::Shared;
use crate::shared::changed_store;

/// The knobs of continuous sync.
#[derive(Clone, Debug)]
pub struct ContinuousConfig {
    /// A session with every peer at least this often (±10 %), changes or not.
    pub interval: Duration,
    /// How long a worker waits after a local change before syncing, so a burst of changes
    /// makes one session.
    pub debounce: Duration,
    /// The first retry delay after a failure; it doubles with each failure in a row…
    pub retry_min: Duration,
    /// …up to this cap. Every delay is jittered by ±20 %.
    pub retry_max: Duration,
    /// Outgoing sessions running at once, across all peers.
    pub max_sessions: usize,
    /// How often `wb_peers.txt` is read again to start and stop workers.
    pub rescan: Duration,
}

impl Default for ContinuousConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(30),
            debounce: Duration::from_millis(150),
            retry_min: Duration::from_secs(1),
            retry_max: Duration::from_secs(300),
            max_sessions: 4,
            rescan: Duration::from_secs(5),
        }
    }
}

/// The shortest interval a worker accepts: an interval of zero must not spin.
const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// Continuous sync running for a node; stopped by [`Continuous::stop`] (or aborted on drop).
#[derive(Debug)]
pub(crate) struct Continuous {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Continuous {
    pub(crate) fn start(node: NodeHandle, config: ContinuousConfig) -> Self {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(
            supervise(node, Arc::new(config), stopped).instrument(info_span!("auto-sync")),
        );
        Self { stop, task }
    }

    /// Stops the workers (a session in flight is dropped: batches are applied atomically, so
    /// nothing is half-written) and waits for them to be gone.
    pub(crate) async fn stop(mut self) {
        let _ = self.stop.send(true);
        if tokio::time::timeout(Duration::from_secs(5), &mut self.task)
            .await
            .is_err()
        {
            warn!("continuous sync did not stop within 5 s");
        }
    }
}

impl Drop for Continuous {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// May continuous sync dial this peer? It needs an address, or a hub to look it up
/// (`can_look_up`).
fn dialable(peer: &Peer, me: &PublicKey, can_look_up: bool) -> bool {
    !peer.revoked && (!peer.addrs.is_empty() || can_look_up) && peer.public_key != *me
}

/// Keeps one worker per dialable peer, following edits of the registry.
async fn supervise(
    node: NodeHandle,
    config: Arc<ContinuousConfig>,
    mut stopped: watch::Receiver<bool>,
) {
    let sessions = Arc::new(Semaphore::new(config.max_sessions.max(1)));
    let me = node.key().public();
    // With hubs, peers without an address are looked up in their directories.
    let can_look_up = node
        .endpoint()
        .address_lookup()
        .is_ok_and(|services| !services.is_empty());
    let mut workers = JoinSet::new();
    let mut running: BTreeMap<PublicKey, (Peer, AbortHandle)> = BTreeMap::new();
    let mut last_error: Option<String> = None;
    info!(
        interval_s = config.interval.as_secs_f64(),
        "continuous sync started"
    );
    loop {
        while workers.try_join_next().is_some() {}
        let (home, store) = (node.home().clone(), node.store().clone());
        // Keys revoked by a followed revoker's announcement get no worker, as revoked peers.
        let loaded = tokio::task::spawn_blocking(move || -> Result<Vec<Peer>, crate::NodeError> {
            // Entries whose key a held succession replaced move to the new key first.
            let registry = std::sync::Arc::new(store::load_peers(&home)?);
            let registry = crate::succession::settle(&home, &store, &me, &[], registry)?;
            crate::revocations::effective(&store, &registry, &[], &me)
        })
        .await;
        match loaded {
            Ok(Ok(peers)) => {
                last_error = None;
                let wanted: BTreeMap<PublicKey, Peer> = peers
                    .into_iter()
                    .filter(|p| dialable(p, &me, can_look_up))
                    .map(|p| (p.public_key, p))
                    .collect();
                // Stop workers of peers that went away or changed (a changed peer gets a
                // fresh worker, which syncs at once: a new address is worth trying now).
                running.retain(|key, (peer, abort)| {
                    let keep = wanted.get(key) == Some(peer);
                    if !keep {
                        abort.abort();
                        node.shared().lock_status().remove(key);
                        debug!(peer = %peer.name, "worker stopped");
                    }
                    keep
                });
                for (key, peer) in wanted {
                    if running.contains_key(&key) {
                        continue;
                    }
                    node.shared()
                        .lock_status()
                        .insert(key, PeerSyncStatus::new(&peer));
                    let span = info_span!("peer", peer = %peer.name);
                    let abort = workers.spawn(
                        worker(peer.clone(), node.clone(), config.clone(), sessions.clone())
                            .instrument(span),
                    );
                    debug!(peer = %peer.name, "worker started");
                    running.insert(key, (peer, abort));
                }
            }
            Ok(Err(e)) => {
                // A hand edit in progress, say: keep the workers we have, say so once.
                let msg = e.to_string();
                if last_error.as_deref() != Some(msg.as_str()) {
                    warn!("cannot read the peer registry, keeping the current peers: {msg}");
                    last_error = Some(msg);
                }
            }
            Err(e) => warn!("reading the peer registry failed: {e}"),
        }
        tokio::select! {
            _ = stopped.changed() => break,
            () = tokio::time::sleep(config.rescan.max(MIN_INTERVAL)) => {}
        }
    }
    workers.shutdown().await;
    node.shared().lock_status().clear();
    info!("continuous sync stopped");
}

/// Syncs with one peer for as long as it is dialable: at start, after local changes, every
/// interval; after failures, with backoff.
async fn worker(
    peer: Peer,
    node: NodeHandle,
    config: Arc<ContinuousConfig>,
    sessions: Arc<Semaphore>,
) {
    let key = peer.public_key;
    let shared = node.shared().clone();
    let mut changes = shared.changes.subscribe();
    let mut seen = changes.borrow_and_update().generation;
    let mut failures: u32 = 0;
    let mut due = Instant::now();
    loop {
        set_next(&shared, &key, due);
        tokio::select! {
            () = tokio::time::sleep_until(due) => {}
            // While backing off, changes wait for the next retry.
            r = changes.changed(), if failures == 0 => {
                if r.is_err() {
                    return;
                }
                let c = *changes.borrow_and_update();
                if c.generation == seen.wrapping_add(1) && c.source == Some(key) {
                    // The only change since our last session came from this peer itself.
                    seen = c.generation;
                    continue;
                }
                // Let a burst of changes settle into one session.
                tokio::time::sleep(config.debounce).await;
            }
        }
        let Ok(permit) = sessions.clone().acquire_owned().await else {
            return;
        };
        seen = changes.borrow_and_update().generation;
        shared.update_status(&key, |s| s.sessions += 1);
        let result = node.sync_with(&peer, Direction::Both).await;
        drop(permit);
        match result {
            Ok(report) => {
                failures = 0;
                if changed_store(&report.pulled) {
                    shared.changed(Some(key));
                }
                log_success(&report);
                shared.update_status(&key, |s| {
                    s.consecutive_failures = 0;
                    s.retry_delay = None;
                    s.last_error = None;
                });
                due = Instant::now() + jitter(config.interval.max(MIN_INTERVAL), 0.1);
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let delay = backoff(&config, failures);
                warn!(
                    failures,
                    "sync failed: {e}; retrying in {:.1} s",
                    delay.as_secs_f64()
                );
                shared.update_status(&key, |s| {
                    s.failures += 1;
                    s.consecutive_failures = failures;
                    s.retry_delay = Some(delay);
                    s.last_error = Some(e.to_string());
                });
                due = Instant::now() + delay;
            }
        }
    }
}

fn set_next(shared: &Shared, key: &PublicKey, due: Instant) {
    shared.update_status(key, |s| s.next_sync = Some(due));
}

fn log_success(report: &SyncReport) {
    let p = &report.pulled;
    if changed_store(p) || report.sent > 0 {
        info!(
            received = p.received,
            new = p.new,
            updated = p.updated,
            conflicts = p.conflicts,
            rejected = p.rejected,
            sent = report.sent,
            "synced"
        );
    } else {
        debug!(received = p.received, "synced, nothing new");
    }
}

/// The delay before retry number `failures` (1 = after the first failure): `retry_min`
/// doubling, capped at `retry_max`, ±20 % jitter.
fn backoff(config: &ContinuousConfig, failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(30);
    let base = config
        .retry_min
        .saturating_mul(1u32 << doublings)
        .min(config.retry_max);
    jitter(base, 0.2)
}

/// `d` scaled by a random factor in `[1 - spread, 1 + spread)`.
fn jitter(d: Duration, spread: f64) -> Duration {
    // 53 random bits → [0, 1); without randomness, no jitter.
    let unit = getrandom::u64().map_or(0.5, |x| (x >> 11) as f64 / (1u64 << 53) as f64);
    let factor = 1.0 - spread + 2.0 * spread * unit;
    Duration::try_from_secs_f64(d.as_secs_f64() * factor).unwrap_or(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_bounded_jitter() {
        let config = ContinuousConfig {
            retry_min: Duration::from_secs(1),
            retry_max: Duration::from_secs(300),
            ..ContinuousConfig::default()
        };
        for failures in 1..=40u32 {
            let base = (1u64 << (failures - 1).min(30)).min(300) as f64;
            for _ in 0..20 {
                let d = backoff(&config, failures).as_secs_f64();
                assert!(
                    d >= base * 0.8 - 1e-9 && d <= base * 1.2 + 1e-9,
                    "failure {failures}: {d} s is not within 20 % of {base} s"
                );
            }
        }
        // Huge settings neither panic nor overflow.
        let huge = ContinuousConfig {
            retry_min: Duration::MAX,
            retry_max: Duration::MAX,
            ..ContinuousConfig::default()
        };
        let _ = backoff(&huge, u32::MAX);
    }

    #[test]
    fn jitter_varies() {
        let d = Duration::from_secs(10);
        let all: std::collections::BTreeSet<Duration> = (0..20).map(|_| jitter(d, 0.2)).collect();
        assert!(all.len() > 1, "jitter gives different delays");
    }

    #[test]
    fn the_change_signal_coalesces() {
        let shared = Shared::new();
        let mut rx = shared.changes.subscribe();
        for _ in 0..1000 {
            shared.changed(None);
        }
        assert!(rx.has_changed().unwrap_or(false));
        assert_eq!(rx.borrow_and_update().generation, 1000);
        assert!(!rx.has_changed().unwrap_or(true));
    }
}
