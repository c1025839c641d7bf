//! Withdrawals owed to a peer no longer trusted: our trusted records re-versioned behind fresh
//! withdrawals, once per un-trusting.

use protocol::wire::Cursor;
use protocol::{PublicKey, Record, Scope, SecretKey, Version};
use redb::{ReadTransaction, ReadableTable};

use super::*;

use crate::error::Result;

impl Store {
    /// Settles what `peer` is owed before we serve it a pull (`cursor` is the one it sent;
    /// `trusted`: whether it is trusted now). Returns how many records were re-versioned.
    ///
    /// A peer that was served trusted records (`PeerState::served_trusted`) and is no longer
    /// trusted still holds copies of them. The first time it is served untrusted, every live
    /// trusted record of ours gets, in one transaction, a fresh signed withdrawal (a tombstone
    /// with the widest scope the record ever had) and, one version above it, the same content
    /// re-signed, so the record moves to the end of the change log. The peer's next pull then
    /// carries those withdrawals (see [`Store::outgoing`]) and the peer deletes its copies;
    /// trusted peers get the re-signed records, and a peer trusted again later gets them too
    /// (they are newer than its withdrawals). Idempotent: this happens once per un-trusting;
    /// a pull cut midway resumes from the peer's cursor like any other. The peer stays owed
    /// those withdrawals until its cursor passes the last re-versioned record, or it is
    /// trusted again.
    pub fn withdraw_from_untrusted(
        &self,
        key: &SecretKey,
        peer: &PublicKey,
        trusted: bool,
        cursor: &Cursor,
        now_ms: u64,
    ) -> Result<u64> {
        let settle = |state: &PeerState| {
            let caught_up = state
                .withdraw_trusted_until
                .is_some_and(|until| cursor.epoch == self.epoch.0 && cursor.seq >= until);
            let bump = !trusted && state.served_trusted;
            let clear = state.withdraw_trusted_until.is_some() && (trusted || caught_up);
            (bump, clear)
        };
        if settle(&self.peer_state(peer)?) == (false, false) {
            return Ok(0);
        }
        let me = key.public();
        let tx = self.write_tx()?;
        let moved = {
            let mut states = tx.open_table(PEER_STATE).map_err(|e| self.err(e))?;
            let mut state: PeerState = match states
                .get(peer.as_bytes().as_slice())
                .map_err(|e| self.err(e))?
            {
                Some(v) => serde_json::from_slice(v.value())
                    .map_err(|e| self.corrupt(format!("peer state: {e}")))?,
                None => PeerState::default(),
            };
            let (bump, clear) = settle(&state);
            if clear {
                state.withdraw_trusted_until = None;
            }
            let mut moved = 0u64;
            if bump {
                let mut records = tx.open_table(RECORDS).map_err(|e| self.err(e))?;
                let mut log = tx.open_table(LOG).map_err(|e| self.err(e))?;
                let mut meta = tx.open_table(META).map_err(|e| self.err(e))?;
                let mut withdrawals = tx.open_table(WITHDRAWALS).map_err(|e| self.err(e))?;
                let allowed = tx.open_table(CONTACT_ALLOWED).map_err(|e| self.err(e))?;
                let mut index = CommentIndex::open(self, &tx)?;
                let mut digesting = Digesting::with_meta(self, &meta)?;
                let start = me.as_bytes().to_vec();
                let mut end = start.clone();
                end.push(0xff);
                let mut targets = Vec::new();
                for item in records
                    .range::<&[u8]>(start.as_slice()..end.as_slice())
                    .map_err(|e| self.err(e))?
                {
                    let (k, v) = item.map_err(|e| self.err(e))?;
                    let (seq, record) = self.decode_value(v.value())?;
                    if !record.deleted
                        && record.signature.is_some()
                        && record.effective_scope() == Scope::Trusted
                    {
                        targets.push((k.value().to_vec(), seq, record));
                    }
                }
                let mut clock = meta
                    .get(META_CLOCK)
                    .map_err(|e| self.err(e))?
                    .and_then(|v| version_from_bytes(v.value()))
                    .unwrap_or(Version::ZERO);
                for (kb, seq, record) in targets {
                    let env = Env {
                        records: &records,
                        allowed: Some(&allowed),
                    };
                    let comments = digesting.before(
                        self,
                        &env,
                        &mut index,
                        &kb,
                        Some(&record),
                        Some(&record),
                    )?;
                    let earlier = match withdrawals.get(kb.as_slice()).map_err(|e| self.err(e))? {
                        Some(v) => Some(
                            Record::from_sealed_bytes(v.value())
                                .map_err(|e| self.corrupt(format!("withdrawal: {e}")))?,
                        ),
                        None => None,
                    };
                    clock = Version::next_after(clock.max(record.version), now_ms);
                    let mut tombstone = Record {
                        version: clock,
                        scope: earlier.map_or(record.scope, |w| w.scope.max(record.scope)),
                        deleted: true,
                        fields: Vec::new(),
                        body: String::new(),
                        signature: None,
                        ..record.clone()
                    };
                    tombstone.sign(key)?;
                    withdrawals
                        .insert(kb.as_slice(), tombstone.to_sealed_bytes().as_slice())
                        .map_err(|e| self.err(e))?;
                    clock = Version::next_after(clock, now_ms);
                    let mut again = Record {
                        version: clock,
                        signature: None,
                        ..record
                    };
                    again.sign(key)?;
                    self.write_record(&mut records, &mut log, &mut meta, &kb, Some(seq), &again)?;
                    let env = Env {
                        records: &records,
                        allowed: Some(&allowed),
                    };
                    digesting.after(self, &env, &mut index, &kb, Some(&again), None, comments)?;
                    moved += 1;
                }
                drop((records, log, meta, withdrawals, allowed, index));
                digesting.write(self, &tx)?;
                let mut meta = tx.open_table(META).map_err(|e| self.err(e))?;
                meta.insert(META_CLOCK, version_bytes(clock).as_slice())
                    .map_err(|e| self.err(e))?;
                let last = meta
                    .get(META_NEXT_SEQ)
                    .map_err(|e| self.err(e))?
                    .and_then(|v| v.value().try_into().ok().map(u64::from_be_bytes))
                    .unwrap_or(1)
                    - 1;
                state.served_trusted = false;
                state.withdraw_trusted_until = Some(last);
            }
            let json = serde_json::to_vec(&state).map_err(|e| self.err(e))?;
            states
                .insert(peer.as_bytes().as_slice(), json.as_slice())
                .map_err(|e| self.err(e))?;
            moved
        };
        tx.commit().map_err(|e| self.err(e))?;
        Ok(moved)
    }

    /// Whether `peer` is owed the withdrawals of our trusted records (read in `tx`).
    pub(crate) fn owes_withdrawals(&self, tx: &ReadTransaction, peer: &PublicKey) -> Result<bool> {
        let states = tx.open_table(PEER_STATE).map_err(|e| self.err(e))?;
        let value = states
            .get(peer.as_bytes().as_slice())
            .map_err(|e| self.err(e))?;
        match value {
            Some(v) => Ok(serde_json::from_slice::<PeerState>(v.value())
                .map_err(|e| self.corrupt(format!("peer state: {e}")))?
                .withdraw_trusted_until
                .is_some()),
            None => Ok(false),
        }
    }
}
