//! State digests (issue 12, item 3): per origin, order-independent digests of what the store
//! holds and of what it offers each kind of audience, kept in the table `digests` and updated
//! in the same write transaction as every write that changes a record.
//!
//! A digest ([`protocol::wire::Digest`]) is a count and the sum modulo 2^256 of
//! SHA-256(`wb-digest/1\0` ++ the record's signing bytes), which cover its key, version and
//! content. Kinds, per origin:
//! - `HeldPublic` / `HeldTrusted`: the signed records held whose effective scope is public /
//!   trusted (what a peer compares with what this store offers it);
//! - `ToUntrusted`: what `leaving::Rule` lets leave to an untrusted audience, in the form it
//!   leaves (a record that leaves as its withdrawal counts as that withdrawal; comments on a
//!   hidden request and our records withheld for `Contact-*` values do not count);
//! - `ToTrustedPublic` / `ToTrustedTrusted`: the same for a trusted audience, split by the
//!   scope of the form that leaves.
//!
//! A comment's offer depends on its request (held and hidden, or not), so the table
//! `comment_index` (request key ++ comment key) finds a request's comments: when a write
//! changes whether a request is hidden from an audience, its comments' offers are moved in
//! the same transaction. Writes accumulate deltas in memory ([`Digesting`]); each touched row
//! is written once, at commit.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use protocol::wire::{Digest, DigestClass, DigestEntry};
use protocol::{Audience, Entity, PublicKey, Record, RecordKey, Scope};
use redb::{ReadableTable, Table, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::db::{CONTACT_ALLOWED, META, META_INSTANCE_KEY, RECORDS, Store, WITHDRAWALS, key_bytes};
use crate::error::Result;
use crate::leaving::{Lookup, Rule};

/// origin (32) ++ kind (1) → count (u64 BE) ++ sum (32, little-endian).
pub(crate) const DIGESTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("digests");
/// request key length (u16 BE) ++ request key ++ comment key → nothing.
pub(crate) const COMMENT_INDEX: TableDefinition<&[u8], &[u8]> =
    TableDefinition::new("comment_index");
/// `meta`: the version of the digest tables; absent: they are built by a scan on open.
pub(crate) const META_DIGESTS: &str = "digests";
const DIGESTS_VERSION: u8 = 1;
const DOMAIN: &[u8] = b"wb-digest/1\0";

/// What a digest row covers (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Kind {
    HeldPublic,
    HeldTrusted,
    ToUntrusted,
    ToTrustedPublic,
    ToTrustedTrusted,
}

impl Kind {
    fn byte(self) -> u8 {
        match self {
            Kind::HeldPublic => 0,
            Kind::HeldTrusted => 1,
            Kind::ToUntrusted => 2,
            Kind::ToTrustedPublic => 3,
            Kind::ToTrustedTrusted => 4,
        }
    }

    fn from_byte(b: u8) -> Option<Kind> {
        Some(match b {
            0 => Kind::HeldPublic,
            1 => Kind::HeldTrusted,
            2 => Kind::ToUntrusted,
            3 => Kind::ToTrustedPublic,
            4 => Kind::ToTrustedTrusted,
            _ => return None,
        })
    }
}

/// The digest entry of one record, from its signing bytes.
pub fn entry_hash(record: &Record) -> [u8; 32] {
    entry_hash_of_signing(&record.signing_bytes())
}

/// The digest entry of one record from its signing bytes as they are (what the store hashes
/// when it writes a record received sealed).
pub fn entry_hash_of_signing(signing: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(DOMAIN);
    h.update(signing);
    h.finalize().into()
}

/// Adds (or, with `negate`, subtracts) one entry, modulo 2^64 and 2^256.
fn add_entry(d: &mut Digest, hash: &[u8; 32], negate: bool) {
    let other = Digest {
        count: 1,
        sum: *hash,
    };
    combine(d, &other, negate);
}

/// `d += other` (or `d -= other`), component-wise, wrapping.
fn combine(d: &mut Digest, other: &Digest, negate: bool) {
    d.count = if negate {
        d.count.wrapping_sub(other.count)
    } else {
        d.count.wrapping_add(other.count)
    };
    let mut carry = 0u16;
    let mut borrow = 0i16;
    for i in 0..32 {
        if negate {
            let v = i16::from(d.sum[i]) - i16::from(other.sum[i]) - borrow;
            borrow = i16::from(v < 0);
            d.sum[i] = v.rem_euclid(256) as u8;
        } else {
            let v = u16::from(d.sum[i]) + u16::from(other.sum[i]) + carry;
            carry = v >> 8;
            d.sum[i] = (v & 0xff) as u8;
        }
    }
}

fn is_zero(d: &Digest) -> bool {
    d.count == 0 && d.sum == [0; 32]
}

/// Every digest row of a store (rows of nothing left out).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreDigests {
    rows: BTreeMap<([u8; 32], Kind), Digest>,
}

impl StoreDigests {
    /// One row; zero when the store holds nothing of it.
    pub fn get(&self, origin: &[u8; 32], kind: Kind) -> Digest {
        self.rows.get(&(*origin, kind)).copied().unwrap_or_default()
    }

    /// Every row that is not zero, by origin and kind.
    pub fn rows(&self) -> impl Iterator<Item = (&([u8; 32], Kind), &Digest)> {
        self.rows.iter()
    }

    /// The origins with any row.
    pub fn origins(&self) -> BTreeSet<[u8; 32]> {
        self.rows.keys().map(|(o, _)| *o).collect()
    }

    /// What this store holds of one origin's class.
    pub fn held(&self, origin: &[u8; 32], class: DigestClass) -> Digest {
        match class {
            DigestClass::Public => self.get(origin, Kind::HeldPublic),
            DigestClass::Trusted => self.get(origin, Kind::HeldTrusted),
        }
    }

    /// What this store offers `receiver` (trusted or not), per origin and class: what
    /// `Store::outgoing` would send it, its own records left out.
    pub fn offer(
        &self,
        receiver: &PublicKey,
        trusted: bool,
    ) -> BTreeMap<([u8; 32], DigestClass), Digest> {
        let mut out = BTreeMap::new();
        for ((origin, kind), d) in &self.rows {
            if origin == receiver.as_bytes() {
                continue;
            }
            let class = match (kind, trusted) {
                (Kind::ToUntrusted, false) | (Kind::ToTrustedPublic, true) => DigestClass::Public,
                (Kind::ToTrustedTrusted, true) => DigestClass::Trusted,
                _ => continue,
            };
            out.insert((*origin, class), *d);
        }
        out
    }

    /// What this store (`me`) tells `peer` it holds: the public class of every origin but its
    /// own, and of the classes `peer` offered, only those it may see (public ones, and the
    /// trusted class of its own records).
    pub fn held_report(
        &self,
        me: &PublicKey,
        peer: &PublicKey,
        peer_offer: &[DigestEntry],
    ) -> BTreeMap<([u8; 32], DigestClass), Digest> {
        let mut out = BTreeMap::new();
        for ((origin, kind), d) in &self.rows {
            if *kind == Kind::HeldPublic && origin != me.as_bytes() {
                out.insert((*origin, DigestClass::Public), *d);
            }
        }
        for e in peer_offer {
            let visible = match e.class {
                DigestClass::Public => true,
                DigestClass::Trusted => e.origin == *peer.as_bytes(),
            };
            if visible {
                out.insert((e.origin, e.class), self.held(&e.origin, e.class));
            }
        }
        out
    }
}

/// The result of one comparison with a peer, kept in its `PeerState`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestOutcome {
    /// When the digests were compared (ms since 1970).
    pub at_ms: u64,
    /// Both sides sent every entry (neither said `more`).
    pub complete: bool,
    /// We offered the peer our trusted class.
    pub trusted: bool,
    /// Classes whose digests differ (at most [`DIFFERENCES_KEPT`]).
    pub differences: Vec<DigestDifference>,
    pub differences_total: u64,
    /// SHA-256 (hex) of our own digests that took part ([`fingerprint`]): when it no longer
    /// matches, something changed here since.
    pub fingerprint: String,
}

/// Differences kept per peer.
pub const DIFFERENCES_KEPT: usize = 100;

/// One class whose digests differ.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestDifference {
    /// The origin (base64 public key).
    pub origin: String,
    pub class: String,
    /// `incoming`: what the peer offers us against what we hold; `outgoing`: what we offer
    /// the peer against what it holds.
    pub direction: String,
    pub offered: u64,
    pub held: u64,
}

/// What a peer's `Digests` messages told us.
#[derive(Clone, Debug, Default)]
pub struct PeerDigests {
    pub trusted: bool,
    pub offer: Vec<DigestEntry>,
    pub held: Vec<DigestEntry>,
    pub more: bool,
}

/// Entries of a map, in order, at most `max`; whether some were left out.
pub fn entries(
    map: &BTreeMap<([u8; 32], DigestClass), Digest>,
    max: usize,
) -> (Vec<DigestEntry>, bool) {
    let list = map
        .iter()
        .take(max)
        .map(|((origin, class), digest)| DigestEntry {
            origin: *origin,
            class: *class,
            digest: *digest,
        })
        .collect();
    (list, map.len() > max)
}

fn to_map(list: &[DigestEntry]) -> BTreeMap<([u8; 32], DigestClass), Digest> {
    list.iter()
        .map(|e| ((e.origin, e.class), e.digest))
        .collect()
}

/// The classes of our own digests a comparison with `peer` reads: what we offer it and what
/// we hold of what it may offer us.
fn relevant(
    ours: &StoreDigests,
    me: &PublicKey,
    peer: &PublicKey,
    trusted: bool,
) -> BTreeMap<(u8, [u8; 32], DigestClass), Digest> {
    let mut out = BTreeMap::new();
    for (k, d) in ours.offer(peer, trusted) {
        out.insert((0, k.0, k.1), d);
    }
    for ((origin, kind), d) in &ours.rows {
        if origin == me.as_bytes() {
            continue;
        }
        match kind {
            Kind::HeldPublic => {
                out.insert((1, *origin, DigestClass::Public), *d);
            }
            Kind::HeldTrusted if origin == peer.as_bytes() => {
                out.insert((1, *origin, DigestClass::Trusted), *d);
            }
            _ => {}
        }
    }
    out
}

/// SHA-256 (hex) of the digests of ours a comparison with `peer` reads.
pub fn fingerprint(ours: &StoreDigests, me: &PublicKey, peer: &PublicKey, trusted: bool) -> String {
    let mut h = Sha256::new();
    for ((side, origin, class), d) in relevant(ours, me, peer, trusted) {
        h.update([side, class as u8]);
        h.update(origin);
        h.update(d.count.to_be_bytes());
        h.update(d.sum);
    }
    hex::encode(h.finalize())
}

/// Compares our digests with a peer's: (a) what it offers us against what we hold, (b) what
/// we offer it (`trusted`: our trusted class too) against what it holds.
pub fn compare(
    ours: &StoreDigests,
    me: &PublicKey,
    peer: &PublicKey,
    trusted: bool,
    theirs: &PeerDigests,
    now_ms: u64,
) -> DigestOutcome {
    let mut differences = Vec::new();
    let mut total = 0u64;
    let mut note = |origin: &[u8; 32],
                    class: DigestClass,
                    direction: &str,
                    offered: &Digest,
                    held: &Digest| {
        if offered == held {
            return;
        }
        total += 1;
        if differences.len() < DIFFERENCES_KEPT {
            differences.push(DigestDifference {
                origin: PublicKey::from_bytes(*origin)
                    .map_or_else(|_| hex::encode(origin), |k| k.to_base64()),
                class: class.as_str().to_string(),
                direction: direction.to_string(),
                offered: offered.count,
                held: held.count,
            });
        }
    };
    // (a) What the peer offers us, against what we hold of what it could offer: the public
    // class of every origin but ours, its trusted class if it offers it.
    let their_offer = to_map(&theirs.offer);
    let mut keys: BTreeSet<([u8; 32], DigestClass)> = their_offer
        .keys()
        .filter(|(o, c)| o != me.as_bytes() && (*c == DigestClass::Public || o == peer.as_bytes()))
        .copied()
        .collect();
    for (origin, kind) in ours.rows.keys() {
        if origin == me.as_bytes() {
            continue;
        }
        if *kind == Kind::HeldPublic {
            keys.insert((*origin, DigestClass::Public));
        }
    }
    if theirs.trusted {
        keys.insert((*peer.as_bytes(), DigestClass::Trusted));
    }
    for (origin, class) in &keys {
        let offered = their_offer
            .get(&(*origin, *class))
            .copied()
            .unwrap_or_default();
        note(
            origin,
            *class,
            "incoming",
            &offered,
            &ours.held(origin, *class),
        );
    }
    // (b) What we offer the peer, against what it holds of it; it reports the public class of
    // every origin but its own, and the trusted class of ours.
    let our_offer = ours.offer(peer, trusted);
    let their_held = to_map(&theirs.held);
    let mut keys: BTreeSet<([u8; 32], DigestClass)> = our_offer
        .keys()
        .filter(|(o, c)| *c == DigestClass::Public || o == me.as_bytes())
        .copied()
        .collect();
    keys.extend(
        their_held
            .keys()
            .filter(|(o, c)| *c == DigestClass::Public && o != peer.as_bytes()),
    );
    if trusted {
        keys.insert((*me.as_bytes(), DigestClass::Trusted));
    }
    for (origin, class) in &keys {
        let offered = our_offer
            .get(&(*origin, *class))
            .copied()
            .unwrap_or_default();
        let held = their_held
            .get(&(*origin, *class))
            .copied()
            .unwrap_or_default();
        note(origin, *class, "outgoing", &offered, &held);
    }
    DigestOutcome {
        at_ms: now_ms,
        complete: !theirs.more,
        trusted,
        differences,
        differences_total: total,
        fingerprint: fingerprint(ours, me, peer, trusted),
    }
}

/// The comparison `a` would make after exchanging digests with `b` (`a_trusts_b`: `a` serves
/// `b` as trusted, and the other way round): what the tests use as their convergence oracle.
/// No differences: each holds exactly what the other offers it.
pub fn between(
    a: &StoreDigests,
    a_key: &PublicKey,
    a_trusts_b: bool,
    b: &StoreDigests,
    b_key: &PublicKey,
    b_trusts_a: bool,
) -> DigestOutcome {
    let (a_offer, _) = entries(&a.offer(b_key, a_trusts_b), usize::MAX);
    let (b_offer, _) = entries(&b.offer(a_key, b_trusts_a), usize::MAX);
    let (b_held, _) = entries(&b.held_report(b_key, a_key, &a_offer), usize::MAX);
    let theirs = PeerDigests {
        trusted: b_trusts_a,
        offer: b_offer,
        held: b_held,
        more: false,
    };
    compare(a, a_key, b_key, a_trusts_b, &theirs, 0)
}

/// The tables a contribution reads, inside one transaction.
pub(crate) struct Env<'a, T: ReadableTable<&'static [u8], &'static [u8]>> {
    pub records: &'a T,
    pub withdrawals: &'a T,
    /// `None`: the store has no such table yet.
    pub allowed: Option<&'a T>,
}

struct EnvLookup<'a, 'e, T: ReadableTable<&'static [u8], &'static [u8]>> {
    store: &'a Store,
    env: &'e Env<'e, T>,
}

impl<T: ReadableTable<&'static [u8], &'static [u8]>> Lookup for EnvLookup<'_, '_, T> {
    fn record(&mut self, key: &RecordKey) -> Result<Option<Record>> {
        read_record(self.store, self.env.records, &key_bytes(key))
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

/// Deltas of one write transaction, and the rules they are computed with.
pub(crate) struct Digesting {
    /// The rules for an untrusted and a trusted audience; `None` while the store has no
    /// instance key (it offers nothing).
    rules: Option<(Rule, Rule)>,
    delta: HashMap<([u8; 32], Kind), Digest>,
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
        })
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
        kb: &[u8],
        signing: Option<&[u8]>,
        negate: bool,
    ) -> Result<()> {
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
        let mut lookup = EnvLookup { store, env };
        let mut withdrawal: Option<Option<Record>> = None;
        for (rule, is_trusted) in [(&untrusted, false), (&trusted, true)] {
            let form = if rule.check(r, &mut lookup)?.is_ok() {
                Some((r.effective_scope(), own_hash(r)))
            } else {
                let w = match &withdrawal {
                    Some(w) => w.clone(),
                    None => {
                        let w = match env.withdrawals.get(kb).map_err(|e| store.err(e))? {
                            Some(v) => Some(
                                Record::from_sealed_bytes(v.value())
                                    .map_err(|e| store.corrupt(format!("withdrawal: {e}")))?,
                            ),
                            None => None,
                        };
                        withdrawal = Some(w.clone());
                        w
                    }
                };
                match w {
                    Some(w) if rule.check(&w, &mut lookup)?.is_ok() => {
                        Some((w.effective_scope(), entry_hash(&w)))
                    }
                    _ => None,
                }
            };
            let kind = match (form.as_ref().map(|f| f.0), is_trusted) {
                (Some(Scope::Public), false) => Kind::ToUntrusted,
                (Some(Scope::Public), true) => Kind::ToTrustedPublic,
                (Some(Scope::Trusted), true) => Kind::ToTrustedTrusted,
                _ => continue,
            };
            if let Some((_, h)) = form {
                self.add(&r.origin, kind, &h, negate);
            }
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
        index: &mut Table<&'static [u8], &'static [u8]>,
        kb: &[u8],
        old: Option<&Record>,
        new: Option<&Record>,
    ) -> Result<Vec<Vec<u8>>> {
        if let Some(old) = old {
            self.contribute(store, env, old, kb, None, true)?;
            if let Some(q) = old.commented_request() {
                index
                    .remove(index_key(&key_bytes(&q), kb).as_slice())
                    .map_err(|e| store.err(e))?;
            }
        }
        let is_request = old.or(new).is_some_and(|r| r.entity == Entity::Request);
        if !is_request || self.rules.is_none() || self.hidden(old) == self.hidden(new) {
            return Ok(Vec::new());
        }
        let prefix = index_key(kb, &[]);
        let mut comments = Vec::new();
        for item in index
            .range::<&[u8]>(prefix.as_slice()..)
            .map_err(|e| store.err(e))?
        {
            let (k, _) = item.map_err(|e| store.err(e))?;
            let Some(ckb) = k.value().strip_prefix(prefix.as_slice()) else {
                break;
            };
            comments.push(ckb.to_vec());
        }
        for ckb in &comments {
            if let Some(c) = read_record(store, env.records, ckb)? {
                self.contribute(store, env, &c, ckb, None, true)?;
            }
        }
        Ok(comments)
    }

    /// After the record under `kb` became `new` (`signing`: its signing bytes, if at hand):
    /// adds what it contributes, and what the comments [`Digesting::before`] took out
    /// contribute now.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn after<T: ReadableTable<&'static [u8], &'static [u8]>>(
        &mut self,
        store: &Store,
        env: &Env<'_, T>,
        index: &mut Table<&'static [u8], &'static [u8]>,
        kb: &[u8],
        new: Option<&Record>,
        signing: Option<&[u8]>,
        comments: Vec<Vec<u8>>,
    ) -> Result<()> {
        if let Some(new) = new {
            self.contribute(store, env, new, kb, signing, false)?;
            if let Some(q) = new.commented_request() {
                index
                    .insert(index_key(&key_bytes(&q), kb).as_slice(), [].as_slice())
                    .map_err(|e| store.err(e))?;
            }
        }
        for ckb in &comments {
            if let Some(c) = read_record(store, env.records, ckb)? {
                self.contribute(store, env, &c, ckb, None, false)?;
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
        let withdrawals = tx.open_table(WITHDRAWALS).map_err(|e| self.err(e))?;
        let allowed = match tx.open_table(CONTACT_ALLOWED) {
            Ok(t) => Some(t),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(self.err(e)),
        };
        let meta = tx.open_table(META).map_err(|e| self.err(e))?;
        let mut digesting = Digesting::with_meta(self, &meta)?;
        let env = Env {
            records: &records,
            withdrawals: &withdrawals,
            allowed: allowed.as_ref(),
        };
        for item in records.range::<&[u8]>(..).map_err(|e| self.err(e))? {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let (_, r) = self.decode_value(v.value())?;
            digesting.contribute(self, &env, &r, k.value(), None, false)?;
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
        let mut digesting = Digesting::begin(self, tx)?;
        let records = tx.open_table(RECORDS).map_err(|e| self.err(e))?;
        let withdrawals = tx.open_table(WITHDRAWALS).map_err(|e| self.err(e))?;
        let allowed = tx.open_table(CONTACT_ALLOWED).map_err(|e| self.err(e))?;
        let mut index = tx.open_table(COMMENT_INDEX).map_err(|e| self.err(e))?;
        let env = Env {
            records: &records,
            withdrawals: &withdrawals,
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
        drop((records, withdrawals, allowed, index));
        tx.open_table(DIGESTS).map_err(|e| self.err(e))?;
        digesting.write(self, tx)?;
        let mut meta = tx.open_table(META).map_err(|e| self.err(e))?;
        meta.insert(META_DIGESTS, [DIGESTS_VERSION].as_slice())
            .map_err(|e| self.err(e))?;
        Ok(n)
    }

    /// Builds the digest tables of a store opened for writing that has none yet (made before
    /// them, or restored from such a backup): one scan, logged.
    pub(crate) fn ensure_digests(&self) -> Result<()> {
        {
            let tx = self.read_tx()?;
            let meta = tx.open_table(META).map_err(|e| self.err(e))?;
            if meta.get(META_DIGESTS).map_err(|e| self.err(e))?.is_some() {
                return Ok(());
            }
        }
        let tx = self.write_tx()?;
        let started = std::time::Instant::now();
        let n = self.rebuild_digests(&tx)?;
        tx.commit().map_err(|e| self.err(e))?;
        if n > 0 {
            tracing::info!(
                store = %self.path().display(),
                records = n,
                ms = started.elapsed().as_millis() as u64,
                "built the state digests of a store made before them (one scan)"
            );
        }
        Ok(())
    }
}
