//! What `wb sync status` reports: the records by scope, the outbox, the conflicts, the last
//! imported bundles, and for each peer its sync state, how far behind it is on our changes and
//! what the last comparison of state digests with it said.

use std::collections::BTreeMap;

use protocol::{Audience, PublicKey, Scope};

use super::{Instance, InstanceError};
use crate::{DigestOutcome, ListFilter, Peer, PeerState, Provenance, StoreDigests};

/// A peer's pending changes are counted exactly over at most this many log entries.
pub const BEHIND_SCAN_MAX: usize = 10_000;

/// The instance's sync state.
#[derive(Debug)]
pub struct SyncStatus {
    /// Live records by scope (all origins).
    pub private: u64,
    pub trusted: u64,
    pub public: u64,
    /// Live records of other origins.
    pub from_others: u64,
    /// Shareable changes in the change log (signed, not private; tombstones too).
    pub outbox: u64,
    /// Local records whose effective scope is private: they never leave.
    pub private_filtered: u64,
    /// Entries of the conflict log.
    pub conflicts: u64,
    /// Imported bundles, newest first.
    pub imports: Vec<Provenance>,
    /// The store's counters by name.
    pub counters: BTreeMap<String, u64>,
    /// Each registered peer, in the registry's order.
    pub peers: Vec<PeerStatus>,
}

/// One peer's sync state.
#[derive(Debug)]
pub struct PeerStatus {
    pub peer: Peer,
    pub state: PeerState,
    /// How many of our changes its next pull would bring: exact over up to
    /// [`BEHIND_SCAN_MAX`] log entries, else the number of log entries after its cursor (an
    /// upper bound). `None`: unknown until it pulled from this epoch once.
    pub behind: Option<u64>,
    /// The last comparison of state digests with it; `None`: never compared.
    pub digests: Option<DigestStatus>,
}

/// What the last comparison of state digests with a peer says (issue 12).
#[derive(Debug)]
pub struct DigestStatus {
    pub state: DigestState,
    pub compared_at_ms: u64,
    /// Our digests changed since the comparison.
    pub changed_here: bool,
    pub complete: bool,
    pub differences_total: u64,
    pub differences: Vec<DigestDifferenceView>,
    /// With a hub: origins left out because the hub does not take them.
    pub not_taken: u64,
}

/// The verdict of a digest comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DigestState {
    /// All digests were equal and ours have not changed since.
    InSync,
    /// All digests were equal, but ours changed since.
    ChangedHere,
    /// A side had more classes than a message holds.
    Incomplete,
    /// Some origins and classes differ.
    Differs,
}

impl DigestState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InSync => "in_sync",
            Self::ChangedHere => "changed_here",
            Self::Incomplete => "incomplete",
            Self::Differs => "differs",
        }
    }
}

/// One difference of a digest comparison, its origin named.
#[derive(Debug)]
pub struct DigestDifferenceView {
    /// The origin's key id (or the stored text when it is not a key).
    pub origin_key_id: String,
    pub origin: OriginKnownAs,
    pub class: String,
    /// `incoming` (the peer offers it) or `outgoing` (offered here).
    pub direction: String,
    pub offered: u64,
    pub held: u64,
}

/// Who an origin is to this instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OriginKnownAs {
    ThisInstance,
    Peer(String),
    NotInRegistry,
    /// The stored origin is not a key.
    Unknown,
}

impl OriginKnownAs {
    pub fn label(&self) -> String {
        match self {
            Self::ThisInstance => "this instance".into(),
            Self::Peer(name) => name.clone(),
            Self::NotInRegistry => "not in the registry".into(),
            Self::Unknown => "unknown".into(),
        }
    }
}

impl Instance {
    /// The instance's sync state, read in one pass over the store plus one query per peer.
    pub fn sync_status(&self) -> Result<SyncStatus, InstanceError> {
        let store = &self.store;
        let all = store.list(&ListFilter {
            include_deleted: true,
            ..Default::default()
        })?;
        let local = self.public();
        let live = || all.iter().filter(|r| !r.deleted);
        let count = |s: Scope| live().filter(|r| r.scope == s).count() as u64;
        let peers = crate::load_peers(&self.home)?;
        let last_seq = store.last_seq()?;
        let epoch = store.epoch().0;
        let digests = store.digests()?;
        let mut peer_status = Vec::with_capacity(peers.len());
        for p in &peers {
            let state = store.peer_state(&p.public_key)?;
            let behind = match state.acked_epoch == Some(epoch) {
                false => None,
                true => {
                    let audience = Audience {
                        trusted: p.trusted && !p.revoked,
                    };
                    let pending = store.outgoing(
                        &local,
                        Some(&p.public_key),
                        audience,
                        state.acked_seq,
                        BEHIND_SCAN_MAX,
                        BEHIND_SCAN_MAX,
                    )?;
                    Some(if pending.done {
                        pending.records.len() as u64
                    } else {
                        last_seq.saturating_sub(state.acked_seq)
                    })
                }
            };
            let digest_status = state
                .digests
                .as_ref()
                .map(|o| digest_status(&digests, &local, &p.public_key, o, &peers));
            peer_status.push(PeerStatus {
                peer: p.clone(),
                state,
                behind,
                digests: digest_status,
            });
        }
        Ok(SyncStatus {
            private: count(Scope::Private),
            trusted: count(Scope::Trusted),
            public: count(Scope::Public),
            from_others: live().filter(|r| r.origin != local).count() as u64,
            // One live log entry per record key. Unsigned records (taken from an app bundle
            // before adoption) never leave, so they are not waiting to.
            outbox: all
                .iter()
                .filter(|r| r.scope != Scope::Private && r.signature.is_some())
                .count() as u64,
            private_filtered: all
                .iter()
                .filter(|r| r.origin == local && r.effective_scope() == Scope::Private)
                .count() as u64,
            conflicts: store.conflicts()?.len() as u64,
            imports: store.imported_bundles()?,
            counters: store.counters()?,
            peers: peer_status,
        })
    }
}

/// The verdict of a kept comparison with `peer`, against our digests now (`peers`: the
/// registry, to name origins).
pub fn digest_status(
    ours: &StoreDigests,
    local: &PublicKey,
    peer: &PublicKey,
    outcome: &DigestOutcome,
    peers: &[Peer],
) -> DigestStatus {
    let changed_here = crate::digest::fingerprint_within(
        ours,
        local,
        peer,
        outcome.trusted,
        &crate::digest::not_taken_set(outcome),
    ) != outcome.fingerprint;
    let state = if outcome.differences_total > 0 {
        DigestState::Differs
    } else if !outcome.complete {
        DigestState::Incomplete
    } else if changed_here {
        DigestState::ChangedHere
    } else {
        DigestState::InSync
    };
    let differences = outcome
        .differences
        .iter()
        .map(|d| {
            let (origin_key_id, origin) = match PublicKey::parse(&d.origin) {
                Ok(k) if k == *local => (k.key_id(), OriginKnownAs::ThisInstance),
                Ok(k) => (
                    k.key_id(),
                    crate::peer_by_key(peers, &k).map_or(OriginKnownAs::NotInRegistry, |p| {
                        OriginKnownAs::Peer(p.name.clone())
                    }),
                ),
                Err(_) => (d.origin.clone(), OriginKnownAs::Unknown),
            };
            DigestDifferenceView {
                origin_key_id,
                origin,
                class: d.class.clone(),
                direction: d.direction.clone(),
                offered: d.offered,
                held: d.held,
            }
        })
        .collect();
    DigestStatus {
        state,
        compared_at_ms: outcome.at_ms,
        changed_here,
        complete: outcome.complete,
        differences_total: outcome.differences_total,
        differences,
        not_taken: outcome.not_taken.len() as u64,
    }
}
