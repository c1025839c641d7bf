//! What leaves for a peer: our changes after its cursor, each as itself, as its withdrawal or
//! not at all (`leaving`), with the `Contact-*` allowances and withdrawals it reads.

use protocol::{Audience, PublicKey, Record, RecordKey};
use redb::{ReadTransaction, ReadableTable};

use super::serving::Serving;
use super::*;
use crate::error::Result;
use crate::leaving::{Lookup, Rule};

/// A batch of outgoing changes for one audience (see [`Store::outgoing`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    pub records: Vec<Record>,
    /// Each record's sealed form as the store holds it (what a pull sends: not encoded again).
    pub sealed: Vec<Vec<u8>>,
    /// The last log sequence scanned: the cursor to resume from.
    pub last_seq: u64,
    /// The end of the log was reached.
    pub done: bool,
    /// Log entries the audience may not receive (private, trusted for others, unsigned).
    pub filtered: u64,
}

/// The rule's reads (`leaving::Lookup`) inside an open read transaction.
struct TableLookup<'a, T: ReadableTable<&'static [u8], &'static [u8]>> {
    store: &'a Store,
    records: &'a T,
    /// `None`: the store has no such table yet (nothing was allowed).
    contact_allowed: Option<&'a T>,
    serving: &'a mut Serving,
}

impl<T: ReadableTable<&'static [u8], &'static [u8]>> Lookup for TableLookup<'_, T> {
    fn record(&mut self, key: &RecordKey) -> Result<Option<Record>> {
        match self
            .records
            .get(key_bytes(key).as_slice())
            .map_err(|e| self.store.err(e))?
        {
            Some(v) => Ok(Some(self.store.decode_value(v.value())?.1)),
            None => Ok(None),
        }
    }

    fn contact_allowed(&mut self, key: &RecordKey) -> Result<bool> {
        match self.contact_allowed {
            None => Ok(false),
            Some(table) => Ok(table
                .get(key_bytes(key).as_slice())
                .map_err(|e| self.store.err(e))?
                .is_some()),
        }
    }

    fn request_hidden(&mut self, rule: &Rule, key: &RecordKey) -> Result<bool> {
        if let Some(hidden) = self.serving.memo.get(key) {
            return Ok(hidden);
        }
        let hidden = rule.hides(self.record(key)?.as_ref());
        self.serving.memo.learn(key, hidden, true);
        Ok(hidden)
    }
}

/// The rule's reads, one read transaction each (bundle export).
impl Lookup for &Store {
    fn record(&mut self, key: &RecordKey) -> Result<Option<Record>> {
        self.get(key)
    }

    fn contact_allowed(&mut self, key: &RecordKey) -> Result<bool> {
        Store::contact_allowed(self, key)
    }
}

/// The `contact_allowed` table of a read transaction, if the store has one yet.
fn contact_allowed_table(
    store: &Store,
    tx: &ReadTransaction,
) -> Result<Option<redb::ReadOnlyTable<&'static [u8], &'static [u8]>>> {
    match tx.open_table(CONTACT_ALLOWED) {
        Ok(table) => Ok(Some(table)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(store.err(e)),
    }
}

impl Store {
    /// Our changes after `after_seq` that `audience` may receive, in log order: at most
    /// `limit` records, scanning at most `scan_max` log entries. Each live record goes out as
    /// itself if the audience may see it, else as its withdrawal if the audience may see that,
    /// else not at all (see `protocol::may_receive`, the one check). Returns the records, the
    /// last sequence scanned (the next cursor), and whether the log end was reached.
    pub fn outgoing(
        &self,
        sender: &PublicKey,
        receiver: Option<&PublicKey>,
        audience: Audience,
        after_seq: u64,
        limit: usize,
        scan_max: usize,
    ) -> Result<Outgoing> {
        self.outgoing_serving(
            &mut Serving::default(),
            sender,
            receiver,
            false,
            audience,
            after_seq,
            limit,
            scan_max,
        )
    }

    /// One step of serving a pull: [`Store::outgoing`], remembering in `serving` what it
    /// learned about requests for the next steps of the same pull (see [`Serving`]). With
    /// `return_own`, the receiver's own records are sent back to it as they are (it was
    /// restored from a backup and recovers what it signed since).
    #[allow(clippy::too_many_arguments)]
    pub fn outgoing_serving(
        &self,
        serving: &mut Serving,
        sender: &PublicKey,
        receiver: Option<&PublicKey>,
        return_own: bool,
        audience: Audience,
        after_seq: u64,
        limit: usize,
        scan_max: usize,
    ) -> Result<Outgoing> {
        let tx = self.read_tx()?;
        // After the transaction began: a prune it sees has been counted (`serving`).
        let removals = self.removals();
        let log = tx.open_table(LOG).map_err(|e| self.err(e))?;
        let records = tx.open_table(RECORDS).map_err(|e| self.err(e))?;
        let withdrawals = tx.open_table(WITHDRAWALS).map_err(|e| self.err(e))?;
        // A peer that was un-trusted is still owed the withdrawals of our trusted records.
        let owed = match receiver {
            Some(peer) => self.owes_withdrawals(&tx, peer)?,
            None => false,
        };
        let rule = Rule {
            sender: *sender,
            // Withdrawals signed by a key we replaced are ours too (`wb sync keygen --force`).
            former: self.read_former_keys(&tx.open_table(META).map_err(|e| self.err(e))?)?,
            audience,
            owed,
        };
        serving.renew(self, &rule, removals, &log)?;
        let allowed = contact_allowed_table(self, &tx)?;
        let mut lookup = TableLookup {
            store: self,
            records: &records,
            contact_allowed: allowed.as_ref(),
            serving,
        };
        let mut out = Outgoing {
            records: Vec::new(),
            sealed: Vec::new(),
            last_seq: after_seq,
            done: true,
            filtered: 0,
        };
        for (scanned, item) in log
            .range(after_seq.saturating_add(1)..)
            .map_err(|e| self.err(e))?
            .enumerate()
        {
            if scanned >= scan_max || out.records.len() >= limit {
                out.done = false;
                break;
            }
            let (seq, kb) = item.map_err(|e| self.err(e))?;
            out.last_seq = seq.value();
            let value = records
                .get(kb.value())
                .map_err(|e| self.err(e))?
                .ok_or_else(|| self.corrupt(format!("log entry {} has no record", seq.value())))?;
            let (_, record) = self.decode_value(value.value())?;
            lookup.serving.learn_scanned(&rule, &record);
            let sealed = || value.value().get(8..).unwrap_or_default().to_vec();
            // The origin never needs its own records back, unless it lost them (a restore).
            if receiver == Some(&record.origin) {
                if return_own {
                    out.sealed.push(sealed());
                    out.records.push(record);
                }
                continue;
            }
            if rule.check(&record, &mut lookup)?.is_ok() {
                out.sealed.push(sealed());
                out.records.push(record);
                continue;
            }
            let withdrawal = match withdrawals.get(kb.value()).map_err(|e| self.err(e))? {
                Some(v) => Some((
                    Record::from_sealed_bytes(v.value())
                        .map_err(|e| self.corrupt(format!("withdrawal: {e}")))?,
                    v.value().to_vec(),
                )),
                None => None,
            };
            match withdrawal {
                Some((w, sealed)) if rule.check(&w, &mut lookup)?.is_ok() => {
                    out.sealed.push(sealed);
                    out.records.push(w);
                }
                _ => out.filtered += 1,
            }
        }
        Ok(out)
    }

    /// The rule of what leaves for one audience (`leaving`), with this store's former keys.
    pub(crate) fn leaving_rule(&self, sender: PublicKey, audience: Audience) -> Result<Rule> {
        Ok(Rule {
            sender,
            former: self.former_keys()?,
            audience,
            owed: false,
        })
    }

    /// Whether the operator let this record's `Contact-*` values leave (`--allow-contact`).
    pub fn contact_allowed(&self, key: &RecordKey) -> Result<bool> {
        let tx = self.read_tx()?;
        match contact_allowed_table(self, &tx)? {
            None => Ok(false),
            Some(table) => Ok(table
                .get(key_bytes(key).as_slice())
                .map_err(|e| self.err(e))?
                .is_some()),
        }
    }

    /// The signed withdrawal of a record narrowed at some point, if any (see `update_local`).
    pub fn withdrawal(&self, key: &RecordKey) -> Result<Option<Record>> {
        let tx = self.read_tx()?;
        let table = tx.open_table(WITHDRAWALS).map_err(|e| self.err(e))?;
        let value = table
            .get(key_bytes(key).as_slice())
            .map_err(|e| self.err(e))?;
        value
            .map(|v| {
                Record::from_sealed_bytes(v.value())
                    .map_err(|e| self.corrupt(format!("withdrawal: {e}")))
            })
            .transpose()
    }
}
