//! What this instance keeps per peer: its runtime state (last sync, errors, counters, what we
//! owe it) and our cursor into its change log.

use protocol::PublicKey;
use protocol::wire::Cursor;
use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use super::*;
use crate::error::Result;

/// What this instance remembers about syncing with one peer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerState {
    pub last_sync_ms: Option<u64>,
    pub last_error: Option<String>,
    pub last_error_ms: Option<u64>,
    /// Records received from / sent to this peer, all sessions.
    pub received: u64,
    pub sent: u64,
    /// The highest sequence of our log the peer has confirmed (its cursor into our log).
    pub acked_seq: u64,
    /// Our epoch when the peer confirmed it.
    pub acked_epoch: Option<[u8; 16]>,
    /// We last served this peer as trusted: when it becomes trusted, it is served from the
    /// start once, so it gets the trusted records its cursor already went past.
    #[serde(default)]
    pub served_trusted: bool,
    /// The peer was served trusted records and is no longer trusted: our trusted records were
    /// re-versioned behind fresh withdrawals (see [`Store::withdraw_from_untrusted`]), and the
    /// peer receives those withdrawals until its cursor into our log reaches this sequence.
    #[serde(default)]
    pub withdraw_trusted_until: Option<u64>,
    /// After a restore (`backup::restore`): the epoch in which a full pull from this peer
    /// completed while asking for our own records back. Until it equals ours, we ask again.
    #[serde(default)]
    pub recovered_epoch: Option<[u8; 16]>,
    /// The last comparison of state digests with this peer (`digest`), if any.
    #[serde(default)]
    pub digests: Option<crate::digest::DigestOutcome>,
}

impl Store {
    /// How far into `peer`'s change log we are (what we asked it for last, and got).
    pub fn cursor(&self, peer: &PublicKey) -> Result<Option<Cursor>> {
        let tx = self.read_tx()?;
        let table = tx.open_table(CURSORS).map_err(|e| self.err(e))?;
        let value = table
            .get(peer.as_bytes().as_slice())
            .map_err(|e| self.err(e))?;
        value
            .map(|v| cursor_from_bytes(v.value()).ok_or_else(|| self.corrupt("cursor")))
            .transpose()
    }

    /// Forgets `peer`'s cursor: the next pull from it starts from 0.
    pub fn reset_cursor(&self, peer: &PublicKey) -> Result<()> {
        let tx = self.write_tx()?;
        {
            let mut table = tx.open_table(CURSORS).map_err(|e| self.err(e))?;
            table
                .remove(peer.as_bytes().as_slice())
                .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// The runtime state kept for a peer (last sync, errors, counters).
    pub fn peer_state(&self, peer: &PublicKey) -> Result<PeerState> {
        let tx = self.read_tx()?;
        let table = tx.open_table(PEER_STATE).map_err(|e| self.err(e))?;
        let value = table
            .get(peer.as_bytes().as_slice())
            .map_err(|e| self.err(e))?;
        match value {
            Some(v) => serde_json::from_slice(v.value())
                .map_err(|e| self.corrupt(format!("peer state: {e}"))),
            None => Ok(PeerState::default()),
        }
    }

    /// Changes a peer's runtime state in one transaction.
    pub fn update_peer_state(
        &self,
        peer: &PublicKey,
        edit: impl FnOnce(&mut PeerState),
    ) -> Result<PeerState> {
        let tx = self.write_tx()?;
        let state = {
            let mut table = tx.open_table(PEER_STATE).map_err(|e| self.err(e))?;
            let mut state: PeerState = match table
                .get(peer.as_bytes().as_slice())
                .map_err(|e| self.err(e))?
            {
                Some(v) => serde_json::from_slice(v.value())
                    .map_err(|e| self.corrupt(format!("peer state: {e}")))?,
                None => PeerState::default(),
            };
            edit(&mut state);
            let json = serde_json::to_vec(&state).map_err(|e| self.err(e))?;
            table
                .insert(peer.as_bytes().as_slice(), json.as_slice())
                .map_err(|e| self.err(e))?;
            state
        };
        tx.commit().map_err(|e| self.err(e))?;
        Ok(state)
    }
}
