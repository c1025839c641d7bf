//! Maintenance of the state digests (`digest`) inside write transactions: the deltas of one
//! transaction ([`Digesting`]), written once at commit, and the digest tables read, computed
//! by a scan, and rebuilt. The digests' types and comparisons are in `digest`.

use std::collections::HashMap;

use protocol::wire::Digest;
use protocol::{Audience, Entity, PublicKey, Record, RecordKey, Scope};
use redb::{ReadableTable, Table, WriteTransaction};

use super::serving::Receiving;
use super::*;
use crate::digest::{
    Kind, StoreDigests, add_entry, combine, entry_hash, entry_hash_of_signing, is_zero,
};
use crate::error::Result;
use crate::leaving::{Lookup, Rule};

/// The digest tables' format: 2 counts live records only (1 counted tombstones too); 3 adds
/// `comment_pending` ([`CommentIndex`]).
const DIGESTS_VERSION: u8 = 3;
/// Version 2's tables are version 3's with nothing pending: taken as they are. A wb of version 2
/// that opens a version-3 store rebuilds its tables (the version differs) without knowing
/// `comment_pending`, so what it left there is dropped when this wb opens the store again.
const DIGESTS_VERSION_UNPENDED: u8 = 2;

/// The tables a contribution reads, inside one transaction.
pub(crate) struct Env<'a, T: ReadableTable<&'static [u8], &'static [u8]>> {
    pub records: &'a T,
    /// `None`: the store has no such table yet.
    pub allowed: Option<&'a T>,
}

struct EnvLookup<'a, 'e, T: ReadableTable<&'static [u8], &'static [u8]>> {
    store: &'a Store,
    env: &'e Env<'e, T>,
    /// The last record read: a comment's two rule checks (untrusted and trusted audience)
    /// read its request once.
    last: Option<(RecordKey, Option<Record>)>,
    /// A pull's verdicts on requests, when one is being applied (`serving`).
    memo: Option<&'e mut Receiving>,
}

impl<T: ReadableTable<&'static [u8], &'static [u8]>> Lookup for EnvLookup<'_, '_, T> {
    fn record(&mut self, key: &RecordKey) -> Result<Option<Record>> {
        if let Some((k, r)) = &self.last
            && k == key
        {
            return Ok(r.clone());
        }
        let r = read_record(self.store, self.env.records, &key_bytes(key))?;
        self.last = Some((key.clone(), r.clone()));
        Ok(r)
    }

    fn contact_allowed(&mut self, key: &RecordKey) -> Result<bool> {
        match self.env.allowed {
            None => Ok(false),
            Some(t) => Ok(t
                .get(key_bytes(key).as_slice())
                .map_err(|e| self.store.err(e))?
                .is_some()),
        }
    }

    fn request_hidden(&mut self, rule: &Rule, key: &RecordKey) -> Result<bool> {
        // Which of the pull's two rules this is; another rule reads the request.
        let trusted = match self.memo.as_deref().and_then(|m| m.rules.as_ref()) {
            Some((untrusted, _)) if untrusted == rule => false,
            Some((_, trusted)) if trusted == rule => true,
            _ => return Ok(rule.hides(self.record(key)?.as_ref())),
        };
        let pick = |(u, t): (bool, bool)| if trusted { t } else { u };
        if let Some(verdict) = self.memo.as_deref_mut().and_then(|m| m.memo.get(key)) {
            return Ok(pick(verdict));
        }
        let request = self.record(key)?;
        let Some(Receiving {
            memo,
            rules: Some((u, t)),
        }) = self.memo.as_deref_mut()
        else {
            return Ok(rule.hides(request.as_ref()));
        };
        let verdict = (u.hides(request.as_ref()), t.hides(request.as_ref()));
        memo.learn(key, verdict, true);
        Ok(pick(verdict))
    }
}

fn read_record<T: ReadableTable<&'static [u8], &'static [u8]>>(
    store: &Store,
    records: &T,
    kb: &[u8],
) -> Result<Option<Record>> {
    match records.get(kb).map_err(|e| store.err(e))? {
        Some(v) => Ok(Some(store.decode_value(v.value())?.1)),
        None => Ok(None),
    }
}

/// The index key of a comment (`ckb`) on a request (`qkb`), or its prefix (`ckb` empty).
fn index_key(qkb: &[u8], ckb: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + qkb.len() + ckb.len());
    out.extend_from_slice(&(qkb.len().min(u16::MAX as usize) as u16).to_be_bytes());
    out.extend_from_slice(qkb);
    out.extend_from_slice(ckb);
    out
}

/// Which comments point at which request, inside one write transaction: `comment_index`
/// (sorted by request) and `comment_pending` (the index keys written since it was last
/// folded in, in the order they were written).
///
/// A comment written is appended to `comment_pending`, at its end: the comments of a large
/// pull point at requests all over the key space, and inserting each into `comment_index`
/// rewrote one of its pages per comment at every commit (half the writes of a million-record
/// pull). The pending entries are folded into `comment_index` in one pass the first time a
/// request's comments are looked up (a request hidden or shown again, a prune).
///
/// An entry is a hint, checked when it is read: a comment replaced or removed takes its entry
/// out of `comment_index`, but one still pending stays behind, and a lookup keeps only the
/// comments whose current version points at the request (and drops the others' entries).
/// So the lookup's answer is exactly the held comments on the request, as an exact index
/// would give.
pub(crate) struct CommentIndex<'txn> {
    index: Table<'txn, &'static [u8], &'static [u8]>,
    pending: Table<'txn, u64, &'static [u8]>,
    /// The next pending sequence, once read.
    next: Option<u64>,
}

impl<'txn> CommentIndex<'txn> {
    pub(crate) fn open(store: &Store, tx: &'txn WriteTransaction) -> Result<Self> {
        Ok(Self {
            index: tx.open_table(COMMENT_INDEX).map_err(|e| store.err(e))?,
            pending: tx.open_table(COMMENT_PENDING).map_err(|e| store.err(e))?,
            next: None,
        })
    }

    /// Records that comment `ckb` points at request `qkb`.
    fn add(&mut self, store: &Store, qkb: &[u8], ckb: &[u8]) -> Result<()> {
        let mut next = match self.next {
            Some(n) => n,
            None => match self.pending.last().map_err(|e| store.err(e))? {
                Some((k, _)) => k.value().saturating_add(1),
                None => 0,
            },
        };
        if next == u64::MAX {
            // Never overwrite the last entry: fold, and start again from 0.
            self.fold(store)?;
            next = 0;
        }
        self.pending
            .insert(next, index_key(qkb, ckb).as_slice())
            .map_err(|e| store.err(e))?;
        self.next = Some(next.saturating_add(1));
        Ok(())
    }

    /// Takes out the entry of comment `ckb` on request `qkb` (its version is being replaced or
    /// removed); a pending one is left to the lookups' check.
    fn remove(&mut self, store: &Store, qkb: &[u8], ckb: &[u8]) -> Result<()> {
        self.index
            .remove(index_key(qkb, ckb).as_slice())
            .map_err(|e| store.err(e))?;
        Ok(())
    }

    /// Moves every pending entry into `comment_index`.
    fn fold(&mut self, store: &Store) -> Result<()> {
        if self.pending.first().map_err(|e| store.err(e))?.is_none() {
            return Ok(());
        }
        for item in self.pending.iter().map_err(|e| store.err(e))? {
            let (_, key) = item.map_err(|e| store.err(e))?;
            self.index
                .insert(key.value(), [].as_slice())
                .map_err(|e| store.err(e))?;
        }
        self.pending
            .retain(|_, _| false)
            .map_err(|e| store.err(e))?;
        self.next = None;
        Ok(())
    }

    /// The comments held on request `qkb`, with their current versions, in key order.
    fn comments_of<T: ReadableTable<&'static [u8], &'static [u8]>>(
        &mut self,
        store: &Store,
        records: &T,
        qkb: &[u8],
    ) -> Result<Vec<(Vec<u8>, Record)>> {
        self.fold(store)?;
        let prefix = index_key(qkb, &[]);
        let mut found = Vec::new();
        for item in self
            .index
            .range::<&[u8]>(prefix.as_slice()..)
            .map_err(|e| store.err(e))?
        {
            let (k, _) = item.map_err(|e| store.err(e))?;
            let Some(ckb) = k.value().strip_prefix(prefix.as_slice()) else {
                break;
            };
            found.push(ckb.to_vec());
        }
        let mut comments = Vec::with_capacity(found.len());
        for ckb in found {
            let current = read_record(store, records, &ckb)?;
            match current {
                Some(c) if c.commented_request().is_some_and(|q| key_bytes(&q) == qkb) => {
                    comments.push((ckb, c));
                }
                // Replaced by a version on another request, deleted or removed while its entry
                // was pending.
                _ => self.remove(store, qkb, &ckb)?,
            }
        }
        Ok(comments)
    }
}

/// Deltas of one write transaction, and the rules they are computed with.
pub(crate) struct Digesting {
    /// The rules for an untrusted and a trusted audience; `None` while the store has no
    /// instance key (it offers nothing).
    rules: Option<(Rule, Rule)>,
    delta: HashMap<([u8; 32], Kind), Digest>,
    /// A pull's verdicts on requests, while one is being applied (`serving`).
    memo: Option<Receiving>,
}

impl Digesting {
    /// The rules of the store as `tx` sees it.
    pub(crate) fn begin(store: &Store, tx: &WriteTransaction) -> Result<Self> {
        let meta = tx.open_table(META).map_err(|e| store.err(e))?;
        Self::with_meta(store, &meta)
    }

    pub(crate) fn with_meta(
        store: &Store,
        meta: &impl ReadableTable<&'static str, &'static [u8]>,
    ) -> Result<Self> {
        let me = match meta.get(META_INSTANCE_KEY).map_err(|e| store.err(e))? {
            Some(v) => {
                let bytes: [u8; 32] = v
                    .value()
                    .try_into()
                    .map_err(|_| store.corrupt("instance key"))?;
                Some(PublicKey::from_bytes(bytes).map_err(|_| store.corrupt("instance key"))?)
            }
            None => None,
        };
        let former = store.read_former_keys(meta)?;
        let rule = |trusted: bool, sender: PublicKey| Rule {
            sender,
            former: former.clone(),
            audience: Audience { trusted },
            owed: false,
        };
        Ok(Self {
            rules: me.map(|me| (rule(false, me), rule(true, me))),
            delta: HashMap::new(),
            memo: None,
        })
    }

    /// Uses a pull's verdicts on requests in this transaction, brought to the state it sees:
    /// `removals` read after it began, `log` its change log (`serving`).
    pub(crate) fn receive(
        &mut self,
        store: &Store,
        mut receiving: Receiving,
        removals: u64,
        log: &impl ReadableTable<u64, &'static [u8]>,
    ) -> Result<()> {
        let same = receiving.rules.is_some() && receiving.rules == self.rules;
        receiving.memo.renew(store, same, removals, log)?;
        receiving.rules = self.rules.clone();
        self.memo = Some(receiving);
        Ok(())
    }

    /// The pull's verdicts, as this transaction leaves them (valid once it commits).
    pub(crate) fn take_memo(&mut self) -> Option<Receiving> {
        self.memo.take()
    }

    fn add(&mut self, origin: &PublicKey, kind: Kind, hash: &[u8; 32], negate: bool) {
        add_entry(
            self.delta.entry((*origin.as_bytes(), kind)).or_default(),
            hash,
            negate,
        );
    }

    /// Adds (or subtracts) everything `r`, stored under `kb`, contributes. `signing`: its
    /// signing bytes if the caller has them.
    fn contribute<T: ReadableTable<&'static [u8], &'static [u8]>>(
        &mut self,
        store: &Store,
        env: &Env<'_, T>,
        r: &Record,
        signing: Option<&[u8]>,
        negate: bool,
    ) -> Result<()> {
        // Digests cover live records only (format 2): a tombstone, or a record that leaves as
        // its withdrawal, counts nowhere. Two stores that both hold no live version of a key
        // agree whether or not one of them holds its tombstone — which a trusted peer of a
        // record narrowed from public to trusted never does (it holds the trusted version, its
        // untrusted peers the public withdrawal; both are right). A store still holding a
        // live version another deleted differs, as it should.
        if r.deleted {
            return Ok(());
        }
        let mut own: Option<[u8; 32]> = None;
        let mut own_hash = |r: &Record| -> [u8; 32] {
            *own.get_or_insert_with(|| match signing {
                Some(s) => entry_hash_of_signing(s),
                None => entry_hash(r),
            })
        };
        if r.signature.is_some() {
            match r.effective_scope() {
                Scope::Public => {
                    let h = own_hash(r);
                    self.add(&r.origin, Kind::HeldPublic, &h, negate);
                }
                Scope::Trusted => {
                    let h = own_hash(r);
                    self.add(&r.origin, Kind::HeldTrusted, &h, negate);
                }
                Scope::Private => {}
            }
        }
        let Some((untrusted, trusted)) = self.rules.clone() else {
            return Ok(());
        };
        let mut offered = [false; 2];
        {
            let mut lookup = EnvLookup {
                store,
                env,
                last: None,
                memo: self.memo.as_mut(),
            };
            for (i, rule) in [&untrusted, &trusted].into_iter().enumerate() {
                offered[i] = rule.check(r, &mut lookup)?.is_ok();
            }
        }
        for (is_trusted, offered) in [(false, offered[0]), (true, offered[1])] {
            let kind = match (offered.then(|| r.effective_scope()), is_trusted) {
                (Some(Scope::Public), false) => Kind::ToUntrusted,
                (Some(Scope::Public), true) => Kind::ToTrustedPublic,
                (Some(Scope::Trusted), true) => Kind::ToTrustedTrusted,
                _ => continue,
            };
            let h = own_hash(r);
            self.add(&r.origin, kind, &h, negate);
        }
        Ok(())
    }

    /// Whether a request is held and hidden from the untrusted / the trusted audience.
    fn hidden(&self, request: Option<&Record>) -> (bool, bool) {
        match (request, &self.rules) {
            (Some(q), Some((u, t))) if q.entity == Entity::Request => {
                (!u.by_scope(q), !t.by_scope(q))
            }
            _ => (false, false),
        }
    }

    /// Before the record under `kb` changes from `old` to `new` (and before its withdrawal or
    /// `Contact-*` allowance changes): takes out what `old` contributed. If it is a request
    /// whose hiding changes, takes out its comments' contributions too and returns their keys
    /// (hand them to [`Digesting::after`]).
    pub(crate) fn before<T: ReadableTable<&'static [u8], &'static [u8]>>(
        &mut self,
        store: &Store,
        env: &Env<'_, T>,
        index: &mut CommentIndex<'_>,
        kb: &[u8],
        old: Option<&Record>,
        new: Option<&Record>,
    ) -> Result<Vec<Vec<u8>>> {
        if let Some(old) = old {
            self.contribute(store, env, old, None, true)?;
            if let Some(q) = old.commented_request() {
                index.remove(store, &key_bytes(&q), kb)?;
            }
        }
        let is_request = old.or(new).is_some_and(|r| r.entity == Entity::Request);
        if !is_request || self.rules.is_none() || self.hidden(old) == self.hidden(new) {
            return Ok(Vec::new());
        }
        let comments = index.comments_of(store, env.records, kb)?;
        let mut keys = Vec::with_capacity(comments.len());
        for (ckb, c) in comments {
            self.contribute(store, env, &c, None, true)?;
            keys.push(ckb);
        }
        Ok(keys)
    }

    /// After the record under `kb` became `new` (`signing`: its signing bytes, if at hand):
    /// adds what it contributes, and what the comments [`Digesting::before`] took out
    /// contribute now.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn after<T: ReadableTable<&'static [u8], &'static [u8]>>(
        &mut self,
        store: &Store,
        env: &Env<'_, T>,
        index: &mut CommentIndex<'_>,
        kb: &[u8],
        new: Option<&Record>,
        signing: Option<&[u8]>,
        comments: Vec<Vec<u8>>,
    ) -> Result<()> {
        // The request is written: the comments' offers below, and the pull's next lookups of
        // it, see its new verdict.
        if self.memo.is_some() {
            let verdict = self.hidden(new);
            if let Some(memo) = self.memo.as_mut() {
                memo.memo.learn_written(kb, verdict);
            }
        }
        if let Some(new) = new {
            self.contribute(store, env, new, signing, false)?;
            if let Some(q) = new.commented_request() {
                index.add(store, &key_bytes(&q), kb)?;
            }
        }
        for ckb in &comments {
            if let Some(c) = read_record(store, env.records, ckb)? {
                self.contribute(store, env, &c, None, false)?;
            }
        }
        Ok(())
    }

    /// Writes every touched row once (in the caller's transaction).
    pub(crate) fn write(self, store: &Store, tx: &WriteTransaction) -> Result<()> {
        if self.delta.is_empty() {
            return Ok(());
        }
        let mut table = tx.open_table(DIGESTS).map_err(|e| store.err(e))?;
        for ((origin, kind), delta) in self.delta {
            if is_zero(&delta) {
                continue;
            }
            let mut key = [0u8; 33];
            key[..32].copy_from_slice(&origin);
            key[32] = kind.byte();
            let mut row = match table.get(key.as_slice()).map_err(|e| store.err(e))? {
                Some(v) => decode_row(store, v.value())?,
                None => Digest::default(),
            };
            combine(&mut row, &delta, false);
            if is_zero(&row) {
                table.remove(key.as_slice()).map_err(|e| store.err(e))?;
            } else {
                table
                    .insert(key.as_slice(), encode_row(&row).as_slice())
                    .map_err(|e| store.err(e))?;
            }
        }
        Ok(())
    }
}

fn encode_row(d: &Digest) -> [u8; 40] {
    let mut out = [0u8; 40];
    out[..8].copy_from_slice(&d.count.to_be_bytes());
    out[8..].copy_from_slice(&d.sum);
    out
}

fn decode_row(store: &Store, v: &[u8]) -> Result<Digest> {
    let bytes: &[u8; 40] = v.try_into().map_err(|_| store.corrupt("digest row"))?;
    let mut sum = [0u8; 32];
    sum.copy_from_slice(&bytes[8..]);
    let mut count = [0u8; 8];
    count.copy_from_slice(&bytes[..8]);
    Ok(Digest {
        count: u64::from_be_bytes(count),
        sum,
    })
}

impl Store {
    /// The store's digests, as maintained (read-only stores of an older version that have no
    /// digest table yet: computed by a scan).
    pub fn digests(&self) -> Result<StoreDigests> {
        let tx = self.read_tx()?;
        let meta = tx.open_table(META).map_err(|e| self.err(e))?;
        let built = meta.get(META_DIGESTS).map_err(|e| self.err(e))?.is_some();
        drop(meta);
        if !built {
            drop(tx);
            return self.digests_by_scan();
        }
        let table = match tx.open_table(DIGESTS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(StoreDigests::default()),
            Err(e) => return Err(self.err(e)),
        };
        let mut out = StoreDigests::default();
        for item in table.range::<&[u8]>(..).map_err(|e| self.err(e))? {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let k = k.value();
            let origin: [u8; 32] = k
                .get(..32)
                .and_then(|o| o.try_into().ok())
                .ok_or_else(|| self.corrupt("digest key"))?;
            let kind = k
                .get(32)
                .and_then(|b| Kind::from_byte(*b))
                .ok_or_else(|| self.corrupt("digest key"))?;
            out.rows
                .insert((origin, kind), decode_row(self, v.value())?);
        }
        Ok(out)
    }

    /// The digests computed from scratch by reading every record (the oracle the maintained
    /// ones are tested against; also what a store without the table reports).
    pub fn digests_by_scan(&self) -> Result<StoreDigests> {
        let tx = self.read_tx()?;
        let records = tx.open_table(RECORDS).map_err(|e| self.err(e))?;
        let allowed = match tx.open_table(CONTACT_ALLOWED) {
            Ok(t) => Some(t),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(self.err(e)),
        };
        let meta = tx.open_table(META).map_err(|e| self.err(e))?;
        let mut digesting = Digesting::with_meta(self, &meta)?;
        let env = Env {
            records: &records,
            allowed: allowed.as_ref(),
        };
        for item in records.range::<&[u8]>(..).map_err(|e| self.err(e))? {
            let (_, v) = item.map_err(|e| self.err(e))?;
            let (_, r) = self.decode_value(v.value())?;
            digesting.contribute(self, &env, &r, None, false)?;
        }
        let mut out = StoreDigests::default();
        for (key, d) in digesting.delta {
            if !is_zero(&d) {
                out.rows.insert(key, d);
            }
        }
        Ok(out)
    }

    /// Builds the digest tables from scratch inside `tx` (a store without them, a new instance
    /// key): clears them, then one scan of every record. Returns how many records it read.
    pub(crate) fn rebuild_digests(&self, tx: &WriteTransaction) -> Result<u64> {
        tx.delete_table(DIGESTS).map_err(|e| self.err(e))?;
        tx.delete_table(COMMENT_INDEX).map_err(|e| self.err(e))?;
        tx.delete_table(COMMENT_PENDING).map_err(|e| self.err(e))?;
        let mut digesting = Digesting::begin(self, tx)?;
        let records = tx.open_table(RECORDS).map_err(|e| self.err(e))?;
        let allowed = tx.open_table(CONTACT_ALLOWED).map_err(|e| self.err(e))?;
        let mut index = CommentIndex::open(self, tx)?;
        let env = Env {
            records: &records,
            allowed: Some(&allowed),
        };
        let mut n = 0u64;
        for item in records.range::<&[u8]>(..).map_err(|e| self.err(e))? {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let (_, r) = self.decode_value(v.value())?;
            digesting.after(
                self,
                &env,
                &mut index,
                k.value(),
                Some(&r),
                None,
                Vec::new(),
            )?;
            n += 1;
        }
        drop((records, allowed, index));
        tx.open_table(DIGESTS).map_err(|e| self.err(e))?;
        digesting.write(self, tx)?;
        let mut meta = tx.open_table(META).map_err(|e| self.err(e))?;
        meta.insert(META_DIGESTS, [DIGESTS_VERSION].as_slice())
            .map_err(|e| self.err(e))?;
        Ok(n)
    }

    /// The format of the digest tables (`None`: none built yet).
    pub fn digests_format(&self) -> Result<Option<u8>> {
        let tx = self.read_tx()?;
        let meta = tx.open_table(META).map_err(|e| self.err(e))?;
        Ok(meta
            .get(META_DIGESTS)
            .map_err(|e| self.err(e))?
            .and_then(|v| v.value().first().copied()))
    }

    /// Test hook: marks the digest tables as of `format` and empties them, as a store of that
    /// format would look to a newer version.
    #[doc(hidden)]
    pub fn set_digests_format_for_test(&self, format: u8) -> Result<()> {
        let tx = self.write_tx()?;
        tx.delete_table(DIGESTS).map_err(|e| self.err(e))?;
        {
            let mut meta = tx.open_table(META).map_err(|e| self.err(e))?;
            meta.insert(META_DIGESTS, [format].as_slice())
                .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Builds the digest tables of a store opened for writing that has none yet (made before
    /// them, or restored from such a backup): one scan, logged.
    pub(crate) fn ensure_digests(&self) -> Result<()> {
        let version = {
            let tx = self.read_tx()?;
            let meta = tx.open_table(META).map_err(|e| self.err(e))?;
            meta.get(META_DIGESTS)
                .map_err(|e| self.err(e))?
                .and_then(|v| match v.value() {
                    [b] => Some(*b),
                    _ => None,
                })
        };
        if version == Some(DIGESTS_VERSION) {
            return Ok(());
        }
        let tx = self.write_tx()?;
        if version == Some(DIGESTS_VERSION_UNPENDED) {
            tx.delete_table(COMMENT_PENDING).map_err(|e| self.err(e))?;
            {
                let mut meta = tx.open_table(META).map_err(|e| self.err(e))?;
                meta.insert(META_DIGESTS, [DIGESTS_VERSION].as_slice())
                    .map_err(|e| self.err(e))?;
            }
            return tx.commit().map_err(|e| self.err(e));
        }
        let started = std::time::Instant::now();
        let n = self.rebuild_digests(&tx)?;
        tx.commit().map_err(|e| self.err(e))?;
        if n > 0 {
            tracing::info!(
                store = %self.path().display(),
                records = n,
                ms = started.elapsed().as_millis() as u64,
                "built the state digests of a store made before them, or before their format changed (one scan)"
            );
        }
        Ok(())
    }
}
