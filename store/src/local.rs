//! Local writes (§5): an operator's (or the app's) wanted content becomes a signed version from
//! the instance's clock. [`Store::update_local`] writes one record in its own transaction;
//! [`Store::local_batch`] writes several, together with the crate's other tables (the app
//! bridge's bookkeeping), in one.

use protocol::{Entity, Record, RecordKey, Scope, SecretKey, Version};
use redb::{ReadableTable, Table, WriteTransaction};

use crate::db::{
    CONTACT_ALLOWED, COUNTERS, CommentIndex, Digesting, Draft, Env, LOG, LocalChange, META,
    META_CLOCK, META_NEXT_SEQ, RECORDS, Store, WITHDRAWALS, bump, counter, key_bytes,
    version_bytes, version_from_bytes, widens_request,
};

use crate::error::{Result, StoreError};

/// Local writes inside one open write transaction (see [`Store::local_batch`]).
pub struct LocalBatch<'a> {
    store: &'a Store,
    tx: &'a WriteTransaction,
    key: &'a SecretKey,
    records: Table<'a, &'static [u8], &'static [u8]>,
    log: Table<'a, u64, &'static [u8]>,
    meta: Table<'a, &'static str, &'static [u8]>,
    counters: Table<'a, &'static str, u64>,
    /// Versions this batch wrote.
    written: u64,
    /// Another table was written through [`LocalBatch::tx`].
    touched: bool,
    /// Roll everything back at the end (a dry run).
    discard: bool,
    /// Writes may keep `Contact-*` values in records that leave (`--allow-contact`).
    allow_contact: bool,
    /// The digests' deltas (`digest`), written before the commit.
    digesting: Digesting,
}

impl std::fmt::Debug for LocalBatch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalBatch")
            .field("store", &self.store.path())
            .field("written", &self.written)
            .finish()
    }
}

impl Store {
    /// Changes a local record inside one transaction. `edit` sees the current version (if any)
    /// and returns the wanted content; a new version is signed only if the content changed (or
    /// the current version carries no signature: a record taken from an app bundle before it
    /// was adopted). The version comes from the persisted clock and always exceeds the current
    /// one.
    pub fn update_local<E: From<StoreError>>(
        &self,
        key: &SecretKey,
        entity: Entity,
        id: &str,
        now_ms: u64,
        edit: impl FnOnce(Option<&Record>) -> Result<Draft, E>,
    ) -> Result<LocalChange, E> {
        self.local_batch(key, |batch| batch.update(entity, id, now_ms, edit))
    }

    /// Runs `work` over one write transaction: every [`LocalBatch::update`] it makes, and every
    /// other table it writes through [`LocalBatch::tx`], is committed together when it returns
    /// `Ok` and discarded when it returns an error.
    pub fn local_batch<T, E: From<StoreError>>(
        &self,
        key: &SecretKey,
        work: impl FnOnce(&mut LocalBatch<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let tx = self.write_tx()?;
        let (out, written) = {
            let meta = tx.open_table(META).map_err(|e| self.err(e))?;
            let digesting = Digesting::with_meta(self, &meta)?;
            let mut batch = LocalBatch {
                store: self,
                tx: &tx,
                key,
                records: tx.open_table(RECORDS).map_err(|e| self.err(e))?,
                log: tx.open_table(LOG).map_err(|e| self.err(e))?,
                meta,
                counters: tx.open_table(COUNTERS).map_err(|e| self.err(e))?,
                written: 0,
                touched: false,
                discard: false,
                allow_contact: false,
                digesting,
            };
            let out = work(&mut batch)?;
            let written = (batch.written > 0 || batch.touched) && !batch.discard;
            let LocalBatch {
                records,
                log,
                meta,
                counters,
                digesting,
                ..
            } = batch;
            drop((records, log, meta, counters));
            if written {
                digesting.write(self, &tx)?;
            }
            (out, written)
        };
        // Nothing written: no commit (dropping the transaction aborts it), so a no-op leaves
        // the file as it was.
        if written {
            tx.commit().map_err(|e| self.err(e))?;
        }
        Ok(out)
    }
}

impl<'a> LocalBatch<'a> {
    /// The open transaction, for tables other modules of the crate own; the batch commits.
    pub(crate) fn tx(&mut self) -> &'a WriteTransaction {
        self.touched = true;
        self.tx
    }

    /// Lets the following writes keep `Contact-*` values in records that may leave (§4,
    /// `--allow-contact`); otherwise such a write is refused with [`StoreError::ContactData`].
    /// Off by default.
    pub fn allow_contact(&mut self, allow: bool) {
        self.allow_contact = allow;
    }

    /// Discards everything this batch wrote when it ends (a dry run).
    pub fn discard(&mut self) {
        self.discard = true;
    }

    /// Versions written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    pub(crate) fn store(&self) -> &'a Store {
        self.store
    }

    /// The instance's current version of a record, tombstones included.
    pub fn get(&self, entity: &Entity, id: &str) -> Result<Option<Record>> {
        let kb = key_bytes(&self.record_key(entity.clone(), id));
        match self
            .records
            .get(kb.as_slice())
            .map_err(|e| self.store.err(e))?
        {
            Some(v) => Ok(Some(self.store.decode_value(v.value())?.1)),
            None => Ok(None),
        }
    }

    fn record_key(&self, entity: Entity, id: &str) -> RecordKey {
        RecordKey {
            origin: self.key.public(),
            entity,
            id: id.to_string(),
        }
    }

    /// One local write (see [`Store::update_local`]).
    pub fn update<E: From<StoreError>>(
        &mut self,
        entity: Entity,
        id: &str,
        now_ms: u64,
        edit: impl FnOnce(Option<&Record>) -> Result<Draft, E>,
    ) -> Result<LocalChange, E> {
        let store = self.store;
        let record_key = self.record_key(entity, id);
        let kb = key_bytes(&record_key);
        let current = match self.records.get(kb.as_slice()).map_err(|e| store.err(e))? {
            Some(v) => Some(store.decode_value(v.value())?),
            None => None,
        };
        let draft = edit(current.as_ref().map(|(_, r)| r))?;
        if let Some((_, existing)) = &current {
            let unchanged = existing.scope == draft.scope
                && existing.deleted == draft.deleted
                && existing.fields == draft.fields
                && existing.body == draft.body
                && existing.signature.is_some();
            if unchanged {
                return Ok(LocalChange::Unchanged(existing.clone()));
            }
        }
        let clock = self
            .meta
            .get(META_CLOCK)
            .map_err(|e| store.err(e))?
            .and_then(|v| version_from_bytes(v.value()))
            .unwrap_or(Version::ZERO);
        let floor = current
            .as_ref()
            .map_or(clock, |(_, r)| r.version.max(clock));
        let mut version = Version::next_after(floor, now_ms);
        let mut withdrawal: Option<Vec<u8>> = None;
        // Narrowing who may see a live record (scope, or a request turned draft) first signs a
        // withdrawal: a tombstone carrying the widest scope the record ever had, one version
        // below the new record. Parties that may no longer see the record get the tombstone and
        // delete their copy; the others get the newer record (§4). A tombstone counts with its
        // scope: a record deleted while public and written again as trusted is withdrawn from
        // the untrusted, who may have missed the deletion and still hold the public version.
        if let Some((_, existing)) = &current {
            let new_scope = if draft.deleted {
                existing.effective_scope()
            } else {
                let probe = Record {
                    scope: draft.scope,
                    fields: draft.fields.clone(),
                    ..existing.clone()
                };
                probe.effective_scope()
            };
            if !(existing.deleted && draft.deleted) && new_scope < existing.effective_scope() {
                let withdrawals = self.tx.open_table(WITHDRAWALS).map_err(|e| store.err(e))?;
                let earlier = match withdrawals.get(kb.as_slice()).map_err(|e| store.err(e))? {
                    Some(v) => Some(
                        Record::from_sealed_bytes(v.value())
                            .map_err(|e| store.corrupt(format!("withdrawal: {e}")))?,
                    ),
                    None => None,
                };
                let widest = earlier.map_or(existing.scope, |w| w.scope.max(existing.scope));
                let mut tombstone = Record {
                    version,
                    scope: widest,
                    deleted: true,
                    fields: Vec::new(),
                    body: String::new(),
                    signature: None,
                    ..existing.clone()
                };
                tombstone.sign(self.key).map_err(StoreError::from)?;
                // Written with the record, below: the digests take out what the record
                // contributed with its earlier withdrawal first.
                withdrawal = Some(tombstone.to_sealed_bytes());
                version = Version::next_after(version, now_ms);
            }
        }
        let mut record = Record {
            origin: record_key.origin,
            entity: record_key.entity,
            id: record_key.id,
            version,
            scope: draft.scope,
            deleted: draft.deleted,
            fields: draft.fields,
            body: draft.body,
            signature: None,
        };
        protocol::validate(&record).map_err(StoreError::from)?;
        // Contact data leaves only when the operator allows it (§4): refused before anything
        // is written; what was allowed is remembered for the way out (`leaving`).
        let contact = protocol::contact::named_contact_fields(&record);
        if !contact.is_empty() && record.scope != Scope::Private && !self.allow_contact {
            return Err(StoreError::ContactData {
                entity: record.entity.to_string(),
                id: record.id.clone(),
                scope: record.scope.to_string(),
                fields: contact.join(", "),
            }
            .into());
        }
        record.sign(self.key).map_err(StoreError::from)?;
        {
            let mut withdrawals = self.tx.open_table(WITHDRAWALS).map_err(|e| store.err(e))?;
            let mut allowed = self
                .tx
                .open_table(CONTACT_ALLOWED)
                .map_err(|e| store.err(e))?;
            let mut index = CommentIndex::open(store, self.tx)?;
            let env = Env {
                records: &self.records,
                allowed: Some(&allowed),
            };
            let comments = self.digesting.before(
                store,
                &env,
                &mut index,
                &kb,
                current.as_ref().map(|(_, r)| r),
                Some(&record),
            )?;
            if let Some(sealed) = &withdrawal {
                withdrawals
                    .insert(kb.as_slice(), sealed.as_slice())
                    .map_err(|e| store.err(e))?;
            }
            if !contact.is_empty() && self.allow_contact {
                allowed
                    .insert(kb.as_slice(), [].as_slice())
                    .map_err(|e| store.err(e))?;
            } else {
                allowed.remove(kb.as_slice()).map_err(|e| store.err(e))?;
            }
            self.meta
                .insert(META_CLOCK, version_bytes(version).as_slice())
                .map_err(|e| store.err(e))?;
            let old_seq = current.as_ref().map(|(seq, _)| *seq);
            store.write_record(
                &mut self.records,
                &mut self.log,
                &mut self.meta,
                &kb,
                old_seq,
                &record,
            )?;
            let env = Env {
                records: &self.records,
                allowed: Some(&allowed),
            };
            self.digesting
                .after(store, &env, &mut index, &kb, Some(&record), None, comments)?;
        }
        if let Some((_, existing)) = &current
            && widens_request(existing, &record)
        {
            let next = store.next_seq(&self.meta)?;
            let widened = std::collections::HashSet::from([record.key()]);
            let after = store.relog_comments(&mut self.records, &mut self.log, &widened, next)?;
            self.meta
                .insert(META_NEXT_SEQ, after.to_be_bytes().as_slice())
                .map_err(|e| store.err(e))?;
        }
        bump(&mut self.counters, counter::LOCAL_WRITES, 1).map_err(|e| store.err(e))?;
        self.written += 1;
        Ok(match current {
            None => LocalChange::Created(record),
            Some((_, previous)) => LocalChange::Updated {
                previous: Box::new(previous),
                record,
            },
        })
    }
}
