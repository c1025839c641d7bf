//! Pruning (`wb sync prune`): forgetting an origin, or other origins' records older than a
//! cutoff.

use std::collections::BTreeMap;

use protocol::{PublicKey, Record};
use redb::{ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::*;

use crate::error::{Result, StoreError};

/// One record picked by a prune.
struct Pruned {
    key: Vec<u8>,
    seq: u64,
    entity: String,
    deleted: bool,
}

/// What a prune removed (or, in a dry run, would remove).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruneReport {
    /// Records by entity name, tombstones included.
    pub records: BTreeMap<String, u64>,
    /// How many of those were tombstones (deleted records).
    pub tombstones: u64,
    /// Conflict-log entries about those records (`prune_origin` only).
    pub conflicts: u64,
    /// Our cursor into the peer's log was dropped: the next pull from it starts from 0.
    pub cursor: bool,
    /// The peer's runtime state (last sync, errors, counters) was reset.
    pub peer_state: bool,
}

impl PruneReport {
    fn counting(victims: &[Pruned]) -> Self {
        let mut report = PruneReport::default();
        for v in victims {
            *report.records.entry(v.entity.clone()).or_default() += 1;
            report.tombstones += u64::from(v.deleted);
        }
        report
    }

    /// Records in all, tombstones included.
    pub fn total(&self) -> u64 {
        self.records.values().sum()
    }
}

impl PeerState {
    /// What `prune_origin` keeps of a peer's state: what we owe it (whether it was served
    /// trusted records, the withdrawals it is still due); last sync, errors and counters go.
    fn pruned(&self) -> PeerState {
        PeerState {
            served_trusted: self.served_trusted,
            withdraw_trusted_until: self.withdraw_trusted_until,
            ..PeerState::default()
        }
    }
}

impl Store {
    /// Forgets everything that originated at `origin`, in one transaction: its records
    /// (tombstones included), their change-log and conflict-log entries, our cursor into its log
    /// and its runtime state (last sync, errors, counters). What we owe that peer is kept (that
    /// it was served trusted records, the withdrawals it is still due). `local` is this
    /// instance: pruning it is refused, local records are never pruned. With `dry_run` nothing is
    /// written (a read-only store works) and the report says what would go.
    ///
    /// Nothing is sent to anyone: peers keep their copies. Since the cursor is gone, the next
    /// pull from `origin` starts from 0 and brings its records back; another peer relays one back
    /// only when a newer version of it reaches that peer (its cursor is already past the rest).
    pub fn prune_origin(
        &self,
        local: &PublicKey,
        origin: &PublicKey,
        dry_run: bool,
    ) -> Result<PruneReport> {
        if origin == local || self.instance_key()?.as_ref() == Some(origin) {
            return Err(StoreError::OwnKeyAsPeer {
                key_id: origin.key_id(),
            });
        }
        let start = origin.as_bytes().to_vec();
        let mut end = start.clone();
        // Keys of one origin are `origin ++ entity …`; UTF-8 never holds 0xff.
        end.push(0xff);
        let bounds = (
            std::ops::Bound::Included(start.as_slice()),
            std::ops::Bound::Excluded(end.as_slice()),
        );
        let peer_key = origin.as_bytes().as_slice();
        if dry_run {
            let tx = self.read_tx()?;
            let records = tx.open_table(RECORDS).map_err(|e| self.err(e))?;
            let conflicts = tx.open_table(CONFLICTS).map_err(|e| self.err(e))?;
            let cursors = tx.open_table(CURSORS).map_err(|e| self.err(e))?;
            let states = tx.open_table(PEER_STATE).map_err(|e| self.err(e))?;
            let victims = self.prunable(&records, bounds, |_| true)?;
            let mut report = PruneReport::counting(&victims);
            report.conflicts = self.keys_in(&conflicts, bounds)?.len() as u64;
            report.cursor = cursors.get(peer_key).map_err(|e| self.err(e))?.is_some();
            if let Some(v) = states.get(peer_key).map_err(|e| self.err(e))? {
                let state: PeerState = serde_json::from_slice(v.value())
                    .map_err(|e| self.corrupt(format!("peer state: {e}")))?;
                report.peer_state = state != state.pruned();
            }
            return Ok(report);
        }
        let tx = self.write_tx()?;
        let report = {
            let mut records = tx.open_table(RECORDS).map_err(|e| self.err(e))?;
            let mut log = tx.open_table(LOG).map_err(|e| self.err(e))?;
            let mut withdrawals = tx.open_table(WITHDRAWALS).map_err(|e| self.err(e))?;
            let mut conflicts = tx.open_table(CONFLICTS).map_err(|e| self.err(e))?;
            let mut cursors = tx.open_table(CURSORS).map_err(|e| self.err(e))?;
            let mut states = tx.open_table(PEER_STATE).map_err(|e| self.err(e))?;
            let victims = self.prunable(&records, bounds, |_| true)?;
            self.remove_pruned(&tx, &mut records, &mut log, &mut withdrawals, &victims)?;
            let mut report = PruneReport::counting(&victims);
            let conflict_keys = self.keys_in(&conflicts, bounds)?;
            for k in &conflict_keys {
                conflicts.remove(k.as_slice()).map_err(|e| self.err(e))?;
            }
            report.conflicts = conflict_keys.len() as u64;
            report.cursor = cursors.remove(peer_key).map_err(|e| self.err(e))?.is_some();
            let state = match states.get(peer_key).map_err(|e| self.err(e))? {
                Some(v) => Some(
                    serde_json::from_slice::<PeerState>(v.value())
                        .map_err(|e| self.corrupt(format!("peer state: {e}")))?,
                ),
                None => None,
            };
            if let Some(state) = state
                && state != state.pruned()
            {
                report.peer_state = true;
                let json = serde_json::to_vec(&state.pruned()).map_err(|e| self.err(e))?;
                states
                    .insert(peer_key, json.as_slice())
                    .map_err(|e| self.err(e))?;
            }
            report
        };
        tx.commit().map_err(|e| self.err(e))?;
        Ok(report)
    }

    /// Drops every record of another origin (tombstones included) whose version is dated
    /// before `cutoff_ms` (Unix ms), with its change-log entry, in one transaction. Records of
    /// `local` (and of the store's own instance key) are never pruned; cursors, peer state and
    /// the conflict log stay. With `dry_run` nothing is written.
    ///
    /// A dropped record comes back only if a peer sends it again: a newer version, or a pull
    /// that starts from 0. A dropped tombstone can therefore let an old copy held elsewhere
    /// come back the same way.
    pub fn prune_older_than(
        &self,
        local: &PublicKey,
        cutoff_ms: u64,
        dry_run: bool,
    ) -> Result<PruneReport> {
        let own = self.instance_key()?;
        let select =
            |r: &Record| r.origin != *local && Some(r.origin) != own && r.version.ms < cutoff_ms;
        let all = (
            std::ops::Bound::<&[u8]>::Unbounded,
            std::ops::Bound::<&[u8]>::Unbounded,
        );
        if dry_run {
            let tx = self.read_tx()?;
            let records = tx.open_table(RECORDS).map_err(|e| self.err(e))?;
            return Ok(PruneReport::counting(
                &self.prunable(&records, all, select)?,
            ));
        }
        let tx = self.write_tx()?;
        let report = {
            let mut records = tx.open_table(RECORDS).map_err(|e| self.err(e))?;
            let mut log = tx.open_table(LOG).map_err(|e| self.err(e))?;
            let mut withdrawals = tx.open_table(WITHDRAWALS).map_err(|e| self.err(e))?;
            let victims = self.prunable(&records, all, select)?;
            self.remove_pruned(&tx, &mut records, &mut log, &mut withdrawals, &victims)?;
            PruneReport::counting(&victims)
        };
        tx.commit().map_err(|e| self.err(e))?;
        Ok(report)
    }

    /// The records in `bounds` that `select` picks: key bytes, log sequence, entity, deleted.
    fn prunable<T>(
        &self,
        records: &T,
        bounds: (std::ops::Bound<&[u8]>, std::ops::Bound<&[u8]>),
        select: impl Fn(&Record) -> bool,
    ) -> Result<Vec<Pruned>>
    where
        T: ReadableTable<&'static [u8], &'static [u8]>,
    {
        let mut out = Vec::new();
        for item in records.range::<&[u8]>(bounds).map_err(|e| self.err(e))? {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let (seq, record) = self.decode_value(v.value())?;
            if select(&record) {
                out.push(Pruned {
                    key: k.value().to_vec(),
                    seq,
                    entity: record.entity.to_string(),
                    deleted: record.deleted,
                });
            }
        }
        Ok(out)
    }

    /// The keys of a byte-keyed table in `bounds`.
    fn keys_in<T>(
        &self,
        table: &T,
        bounds: (std::ops::Bound<&[u8]>, std::ops::Bound<&[u8]>),
    ) -> Result<Vec<Vec<u8>>>
    where
        T: ReadableTable<&'static [u8], &'static [u8]>,
    {
        let mut out = Vec::new();
        for item in table.range::<&[u8]>(bounds).map_err(|e| self.err(e))? {
            let (k, _) = item.map_err(|e| self.err(e))?;
            out.push(k.value().to_vec());
        }
        Ok(out)
    }

    fn remove_pruned(
        &self,
        tx: &WriteTransaction,
        records: &mut redb::Table<&[u8], &[u8]>,
        log: &mut redb::Table<u64, &[u8]>,
        withdrawals: &mut redb::Table<&[u8], &[u8]>,
        victims: &[Pruned],
    ) -> Result<()> {
        // Before the commit: a pull being served forgets what it learned (`serving`).
        self.count_removal();
        let mut digesting = Digesting::begin(self, tx)?;
        {
            let allowed = tx.open_table(CONTACT_ALLOWED).map_err(|e| self.err(e))?;
            let mut index = CommentIndex::open(self, tx)?;
            for v in victims {
                let old = match records.get(v.key.as_slice()).map_err(|e| self.err(e))? {
                    Some(value) => Some(self.decode_value(value.value())?.1),
                    None => None,
                };
                let env = Env {
                    records: &*records,
                    allowed: Some(&allowed),
                };
                let comments =
                    digesting.before(self, &env, &mut index, &v.key, old.as_ref(), None)?;
                records.remove(v.key.as_slice()).map_err(|e| self.err(e))?;
                log.remove(v.seq).map_err(|e| self.err(e))?;
                withdrawals
                    .remove(v.key.as_slice())
                    .map_err(|e| self.err(e))?;
                let env = Env {
                    records: &*records,
                    allowed: Some(&allowed),
                };
                digesting.after(self, &env, &mut index, &v.key, None, None, comments)?;
            }
        }
        digesting.write(self, tx)
    }
}
