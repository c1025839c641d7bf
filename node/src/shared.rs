//! What a running node's parts share (its handle, its listener, the continuous-sync tasks):
//! the coalescing change signal and what continuous sync knows about each peer. Below
//! [`crate::handle`] and [`crate::continuous`], which both use it.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use protocol::PublicKey;
use store::Peer;
use tokio::sync::watch;
use tokio::time::Instant;

/// What continuous sync knows about one peer (for status displays and tests).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerSyncStatus {
    pub name: String,
    pub public_key: PublicKey,
    /// Sessions started by continuous sync with this peer (since its worker started).
    pub sessions: u64,
    /// Of which failed.
    pub failures: u64,
    /// Failures since the last successful session.
    pub consecutive_failures: u32,
    /// The delay chosen after the last failure (`None` after a success).
    pub retry_delay: Option<Duration>,
    /// The last failure's message (`None` after a success).
    pub last_error: Option<String>,
    /// When the next session is due at the latest.
    pub next_sync: Option<Instant>,
}

impl PeerSyncStatus {
    pub(crate) fn new(peer: &Peer) -> Self {
        Self {
            name: peer.name.clone(),
            public_key: peer.public_key,
            sessions: 0,
            failures: 0,
            consecutive_failures: 0,
            retry_delay: None,
            last_error: None,
            next_sync: None,
        }
    }
}

/// The latest state of the change signal.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Change {
    /// Bumped by every change.
    pub(crate) generation: u64,
    /// Where the latest change came from: `None` for a local edit, the peer for records it
    /// sent us.
    pub(crate) source: Option<PublicKey>,
}

/// State shared by the node's handle, its listener and the continuous-sync tasks.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) changes: watch::Sender<Change>,
    status: Mutex<BTreeMap<PublicKey, PeerSyncStatus>>,
}

impl Shared {
    pub(crate) fn new() -> Self {
        Self {
            changes: watch::Sender::new(Change::default()),
            status: Mutex::new(BTreeMap::new()),
        }
    }

    /// Something changed in the store: from a local edit (`source` `None`) or records `source`
    /// sent. Coalescing: a counter bump, whoever listens or not.
    pub(crate) fn changed(&self, source: Option<PublicKey>) {
        self.changes.send_modify(|c| {
            c.generation = c.generation.wrapping_add(1);
            c.source = source;
        });
    }

    pub(crate) fn status(&self) -> Vec<PeerSyncStatus> {
        self.lock_status().values().cloned().collect()
    }

    pub(crate) fn lock_status(
        &self,
    ) -> std::sync::MutexGuard<'_, BTreeMap<PublicKey, PeerSyncStatus>> {
        // A panic while holding the lock leaves plain counters behind: still usable.
        self.status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn update_status(&self, peer: &PublicKey, f: impl FnOnce(&mut PeerSyncStatus)) {
        if let Some(s) = self.lock_status().get_mut(peer) {
            f(s);
        }
    }
}

/// Did this session change our store (so the change should travel on)?
pub(crate) fn changed_store(pulled: &crate::session::PullStats) -> bool {
    pulled.new + pulled.updated + pulled.conflicts > 0
}
