//! State digests (issue 12, item 3): per origin, order-independent digests of what the store
//! holds and of what it offers each kind of audience, kept in the table `digests` and updated
//! in the same write transaction as every write that changes a record.
//!
//! A digest ([`protocol::wire::Digest`]) is a count and the sum modulo 2^256 of
//! SHA-256(`wb-digest/1\0` ++ the record's signing bytes), which cover its key, version and
//! content, over the **live** records (format 2): a tombstone, or a record that leaves as its
//! withdrawal, counts nowhere, so two stores agree when neither holds a live version of a key,
//! whether or not one holds its tombstone (a trusted peer of a record narrowed from public to
//! trusted holds the trusted version, an untrusted one the public withdrawal), and a store
//! still holding a version another deleted differs. Kinds, per origin:
//! - `HeldPublic` / `HeldTrusted`: the signed records held whose effective scope is public /
//!   trusted (what a peer compares with what this store offers it);
//! - `ToUntrusted`: what `leaving::Rule` lets leave to an untrusted audience as itself (a record
//!   that leaves as its withdrawal, comments on a hidden request and our records withheld for
//!   `Contact-*` values do not count);
//! - `ToTrustedPublic` / `ToTrustedTrusted`: the same for a trusted audience, split by the
//!   scope of the form that leaves.
//!
//! A comment's offer depends on its request (held and hidden, or not), so the table
//! `comment_index` (request key ++ comment key) finds a request's comments: when a write
//! changes whether a request is hidden from an audience, its comments' offers are moved in
//! the same transaction. A comment written is appended to `comment_pending` and folded into
//! `comment_index` by the next lookup (`db::CommentIndex`), which checks each entry against
//! the comment's current version. Writes accumulate deltas in memory ([`Digesting`]); each
//! touched row is written once, at commit.

use std::collections::{BTreeMap, BTreeSet};

use protocol::wire::{Digest, DigestClass, DigestEntry};
use protocol::{PublicKey, Record};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

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
    pub(crate) fn byte(self) -> u8 {
        match self {
            Kind::HeldPublic => 0,
            Kind::HeldTrusted => 1,
            Kind::ToUntrusted => 2,
            Kind::ToTrustedPublic => 3,
            Kind::ToTrustedTrusted => 4,
        }
    }

    pub(crate) fn from_byte(b: u8) -> Option<Kind> {
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
pub(crate) fn add_entry(d: &mut Digest, hash: &[u8; 32], negate: bool) {
    let other = Digest {
        count: 1,
        sum: *hash,
    };
    combine(d, &other, negate);
}

/// `d += other` (or `d -= other`), component-wise, wrapping.
pub(crate) fn combine(d: &mut Digest, other: &Digest, negate: bool) {
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

pub(crate) fn is_zero(d: &Digest) -> bool {
    d.count == 0 && d.sum == [0; 32]
}

/// Every digest row of a store (rows of nothing left out).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreDigests {
    pub(crate) rows: BTreeMap<([u8; 32], Kind), Digest>,
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
    /// SHA-256 (hex) of our own digests that took part ([`fingerprint_within`]): when it no
    /// longer matches, something changed here since.
    pub fingerprint: String,
    /// With a hub: the origins (hex) left out of the comparison because the hub does not take
    /// them (a closed hub's allowlist, a revoked origin). Empty with a node.
    #[serde(default)]
    pub not_taken: Vec<String>,
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

/// SHA-256 (hex) of the digests of ours a comparison with `peer` reads, the origins of
/// `left_out` (see [`DigestOutcome::not_taken`]) left out.
pub fn fingerprint_within(
    ours: &StoreDigests,
    me: &PublicKey,
    peer: &PublicKey,
    trusted: bool,
    left_out: &BTreeSet<[u8; 32]>,
) -> String {
    let mut h = Sha256::new();
    for ((side, origin, class), d) in relevant(ours, me, peer, trusted) {
        if left_out.contains(&origin) {
            continue;
        }
        h.update([side, class as u8]);
        h.update(origin);
        h.update(d.count.to_be_bytes());
        h.update(d.sum);
    }
    hex::encode(h.finalize())
}

/// The origins (hex) of a kept outcome's [`DigestOutcome::not_taken`], as a set.
pub fn not_taken_set(outcome: &DigestOutcome) -> BTreeSet<[u8; 32]> {
    outcome
        .not_taken
        .iter()
        .filter_map(|h| hex::decode(h).ok()?.try_into().ok())
        .collect()
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
    compare_within(ours, me, peer, trusted, theirs, now_ms, |_| true)
}

/// With a hub, what it takes as a test on origins, seen from the instance: the origins the
/// hub listed in its `Digests` (it offers, or it reports what it holds of one we offered, even
/// nothing). A hub lists exactly the origins of our offer it takes, and offers only origins it
/// took.
pub fn taken_by_hub(theirs: &PeerDigests) -> BTreeSet<[u8; 32]> {
    theirs
        .offer
        .iter()
        .chain(&theirs.held)
        .map(|e| e.origin)
        .collect()
}

/// [`compare`] over the origins `takes` accepts: with a hub, which stores the origins its
/// intake takes only ([`taken_by_hub`] on the instance, the hub's intake rule on the hub).
/// The origins left out are kept in [`DigestOutcome::not_taken`].
pub fn compare_within(
    ours: &StoreDigests,
    me: &PublicKey,
    peer: &PublicKey,
    trusted: bool,
    theirs: &PeerDigests,
    now_ms: u64,
    takes: impl Fn(&[u8; 32]) -> bool,
) -> DigestOutcome {
    let mut differences = Vec::new();
    let mut total = 0u64;
    let mut left_out: BTreeSet<[u8; 32]> = BTreeSet::new();
    let mut note = |origin: &[u8; 32],
                    class: DigestClass,
                    direction: &str,
                    offered: &Digest,
                    held: &Digest| {
        if !takes(origin) {
            left_out.insert(*origin);
            return;
        }
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
    // Our own rows a later fingerprint reads, of origins left out, are left out there too.
    for (_, origin, _) in relevant(ours, me, peer, trusted).keys() {
        if !takes(origin) {
            left_out.insert(*origin);
        }
    }
    DigestOutcome {
        at_ms: now_ms,
        complete: !theirs.more,
        trusted,
        differences,
        differences_total: total,
        fingerprint: fingerprint_within(ours, me, peer, trusted, &left_out),
        not_taken: left_out.iter().map(hex::encode).collect(),
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
