//! Key rotation that keeps the instance's identity (issue 15): when an instance replaces its key
//! (`wb sync keygen --force`), the old key signs a *succession* record naming the new key, and
//! the new key countersigns it. The record is public, of entity `succession`, origin the old
//! key, id the new key's 64 hex digits, fields `Successor-Key` (the id again),
//! `Successor-Signature` (the new key's signature of [`statement`], base64) and `Succeeded-At`;
//! it travels through peers, hubs and bundles like any record (an unknown entity to older
//! versions, which keep and relay it). A dialer also shows its successions in its `Hello`
//! ([`CAPABILITY`]), so a peer that has not received one yet can still admit the new key.
//!
//! What held successions mean here is decided by [`plan`], from the local registry only: the
//! entry of a known key moves to its successor — same name, same trust, same addresses —
//! unless the entry is revoked here, the key was revoked by an applied announcement made before
//! the succession was signed, the key names more than one successor (a conflict: the operator
//! decides), or the successor is ours, revoked here, or another entry's key.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use crate::peers::Peer;
use crate::revocation::Revocation;
use crate::{Entity, PublicKey, Record, SecretKey, Signature, Version};

/// The entity name of a succession record.
pub const ENTITY: &str = "succession";
/// The successor key, 64 hex digits (the same as the record id).
pub const FIELD_SUCCESSOR_KEY: &str = "Successor-Key";
/// The successor's signature of [`statement`] (base64): the new key agrees to succeed.
pub const FIELD_SUCCESSOR_SIGNATURE: &str = "Successor-Signature";
/// When the key was replaced (ISO 8601).
pub const FIELD_SUCCEEDED_AT: &str = "Succeeded-At";
/// The `Hello` capability carrying one of the dialer's succession records, `succession=` then
/// the sealed record's bytes in hex: the listener may not hold it yet.
pub const CAPABILITY: &str = "succession=";
/// Successions a dialer shows in one `Hello` at most (its latest ones), and a listener reads.
pub const HELLO_MAX: usize = 8;
/// Sealed succession records are small (three short fields); a larger capability is ignored.
const SEALED_MAX: usize = 2_048;

/// The entity of succession records.
pub fn entity() -> Entity {
    Entity::Other(ENTITY.to_string())
}

/// What the successor signs: a fixed prefix, then both keys.
pub fn statement(predecessor: &PublicKey, successor: &PublicKey) -> Vec<u8> {
    let mut out = b"wb-succession/1\n".to_vec();
    out.extend_from_slice(predecessor.as_bytes());
    out.extend_from_slice(successor.as_bytes());
    out
}

/// The record id of the succession naming `successor`.
pub fn record_id(successor: &PublicKey) -> String {
    successor.to_hex()
}

/// The fields of the succession of `predecessor` by `successor` at `at_ms`, countersigned by
/// the successor.
pub fn fields(predecessor: &PublicKey, successor: &SecretKey, at_ms: u64) -> Vec<(String, String)> {
    let new = successor.public();
    vec![
        (FIELD_SUCCESSOR_KEY.to_string(), new.to_hex()),
        (
            FIELD_SUCCESSOR_SIGNATURE.to_string(),
            successor.sign(&statement(predecessor, &new)).to_base64(),
        ),
        (
            FIELD_SUCCEEDED_AT.to_string(),
            crate::time::format_timestamp(at_ms),
        ),
    ]
}

/// A succession, as a held record states it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Succession {
    /// The replaced key: the record's origin, whose signature the holder verified.
    pub predecessor: PublicKey,
    /// The new key, which countersigned.
    pub successor: PublicKey,
    /// As the predecessor wrote it.
    pub succeeded_at: String,
    pub version: Version,
}

impl Succession {
    /// The succession a record states: `None` for another entity, a tombstone, an unsigned
    /// record, or a malformed one (an id that is not a key, a `Successor-Key` that is not the
    /// id, a countersignature that does not verify), which therefore mean nothing. The record
    /// signature itself is the holder's to check (a store verified it; [`from_sealed`] does).
    pub fn from_record(record: &Record) -> Option<Self> {
        if record.entity.as_str() != ENTITY || record.deleted || record.signature.is_none() {
            return None;
        }
        if record.id.len() != 64 {
            return None;
        }
        let successor = PublicKey::parse(&record.id).ok()?;
        if record
            .field(FIELD_SUCCESSOR_KEY)
            .and_then(|t| PublicKey::parse(t).ok())
            != Some(successor)
        {
            return None;
        }
        let signature = Signature::from_base64(record.field(FIELD_SUCCESSOR_SIGNATURE)?)?;
        if successor == record.origin
            || !successor.verify(&statement(&record.origin, &successor), &signature)
        {
            return None;
        }
        Some(Succession {
            predecessor: record.origin,
            successor,
            succeeded_at: crate::text::bounded_text(
                record.field(FIELD_SUCCEEDED_AT).unwrap_or_default(),
                64,
            ),
            version: record.version,
        })
    }

    /// When it was signed, if its time reads.
    pub fn at_ms(&self) -> Option<u64> {
        crate::time::parse_timestamp(&self.succeeded_at)
    }
}

/// The `Hello` capability showing `record` (a sealed succession record).
pub fn capability(record: &Record) -> String {
    let sealed = record.to_sealed_bytes();
    let mut out = String::with_capacity(CAPABILITY.len() + sealed.len() * 2);
    out.push_str(CAPABILITY);
    for b in sealed {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// The succession records a `Hello`'s capabilities show (at most [`HELLO_MAX`]), each with its
/// record signature and countersignature verified; anything else there is ignored.
pub fn from_hello(capabilities: &[String]) -> Vec<(Record, Succession)> {
    capabilities
        .iter()
        .filter_map(|c| c.strip_prefix(CAPABILITY))
        .take(HELLO_MAX)
        .filter_map(from_sealed_hex)
        .collect()
}

fn from_sealed_hex(hex: &str) -> Option<(Record, Succession)> {
    if hex.len() > SEALED_MAX * 2 || hex.len() % 2 != 0 {
        return None;
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    from_sealed(&bytes)
}

/// A sealed succession record whose signature verifies, and what it states.
pub fn from_sealed(bytes: &[u8]) -> Option<(Record, Succession)> {
    let record = Record::from_sealed_bytes(bytes).ok()?;
    record.verify().ok()?;
    let succession = Succession::from_record(&record)?;
    Some((record, succession))
}

/// Why a held succession is not applied here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The predecessor names more than one successor: the operator decides.
    Conflicting {
        /// Every successor it names, this one included.
        successors: Vec<PublicKey>,
    },
    /// The predecessor's registry entry is revoked here (`Revoked: yes`).
    RevokedHere,
    /// An applied revocation of the predecessor was made before (or when) it was signed.
    RevokedBefore {
        revoker: PublicKey,
        revoked_at: String,
    },
    /// The successor is this instance's own key.
    SuccessorIsUs,
    /// The successor is revoked here.
    SuccessorRevoked,
    /// The successor is already another registry entry's key.
    SuccessorTaken { name: String },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Conflicting { successors } => write!(
                f,
                "the key names {} successors ({}): a conflict for the operator to settle",
                successors.len(),
                successors
                    .iter()
                    .map(PublicKey::key_id)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Refusal::RevokedHere => write!(f, "the key is revoked here"),
            Refusal::RevokedBefore {
                revoker,
                revoked_at,
            } => write!(
                f,
                "the key was revoked (by {}, at {revoked_at}) before the succession was signed",
                revoker.key_id()
            ),
            Refusal::SuccessorIsUs => write!(f, "the successor is this instance's own key"),
            Refusal::SuccessorRevoked => write!(f, "the successor key is revoked here"),
            Refusal::SuccessorTaken { name } => {
                write!(f, "the successor key is already the key of peer {name}")
            }
        }
    }
}

/// A registry entry moving to a successor key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Move {
    pub name: String,
    pub from: PublicKey,
    pub to: PublicKey,
    pub succeeded_at: String,
}

/// What the held successions mean for a registry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Entries moving to a new key, one hop each, in order (a key replaced twice moves twice).
    pub moves: Vec<Move>,
    /// Successions of registry keys that are not applied, with the entry's name and why.
    pub refused: Vec<(String, Succession, Refusal)>,
}

impl Plan {
    /// The registry with the moves applied: each moved entry keeps its name, trust, addresses
    /// and notes, with its last successor as its key. A move applies only to the entry of that
    /// name that still has the key it moves from (the registry may have changed meanwhile).
    pub fn apply(&self, peers: &[Peer]) -> Vec<Peer> {
        let mut out = peers.to_vec();
        for m in &self.moves {
            if let Some(p) = out
                .iter_mut()
                .find(|p| p.name == m.name && p.public_key == m.from)
            {
                p.public_key = m.to;
            }
        }
        out
    }
}

/// Decides which `held` successions apply to the registry `peers` ([`Plan`]). `applied` are the
/// revocations in force here (`revocation::assess`'s applied list); `own` is this instance's
/// key. Successions are followed hop by hop, so a key replaced twice while a peer was away moves
/// to its latest successor.
pub fn plan(peers: &[Peer], own: &PublicKey, applied: &[Revocation], held: &[Succession]) -> Plan {
    let by_predecessor = by_predecessor(held);
    let revoked: HashSet<PublicKey> = crate::peers::revoked_keys(peers)
        .into_iter()
        .chain(applied.iter().map(|r| r.revoked))
        .collect();
    let mut taken: BTreeMap<PublicKey, String> = peers
        .iter()
        .map(|p| (p.public_key, p.name.clone()))
        .collect();
    let mut out = Plan::default();
    for peer in peers {
        let mut key = peer.public_key;
        let mut seen = BTreeSet::from([*key.as_bytes()]);
        while let Some(candidates) = by_predecessor.get(key.as_bytes()) {
            let refuse = |out: &mut Plan, why: Refusal| {
                for s in candidates {
                    out.refused
                        .push((peer.name.clone(), (*s).clone(), why.clone()));
                }
            };
            if peer.revoked {
                refuse(&mut out, Refusal::RevokedHere);
                break;
            }
            if candidates.len() > 1 {
                let successors = candidates.iter().map(|s| s.successor).collect();
                refuse(&mut out, Refusal::Conflicting { successors });
                break;
            }
            let s = candidates[0];
            if let Some(r) = revoked_before(applied, s) {
                refuse(
                    &mut out,
                    Refusal::RevokedBefore {
                        revoker: r.revoker,
                        revoked_at: r.revoked_at.clone(),
                    },
                );
                break;
            }
            if s.successor == *own {
                refuse(&mut out, Refusal::SuccessorIsUs);
                break;
            }
            if revoked.contains(&s.successor) {
                refuse(&mut out, Refusal::SuccessorRevoked);
                break;
            }
            match taken.get(&s.successor) {
                Some(name) if *name != peer.name => {
                    let name = name.clone();
                    refuse(&mut out, Refusal::SuccessorTaken { name });
                    break;
                }
                _ => {}
            }
            if !seen.insert(*s.successor.as_bytes()) {
                break;
            }
            out.moves.push(Move {
                name: peer.name.clone(),
                from: key,
                to: s.successor,
                succeeded_at: s.succeeded_at.clone(),
            });
            taken.insert(s.successor, peer.name.clone());
            key = s.successor;
        }
    }
    out
}

/// Held successions by predecessor, one per distinct successor (the latest version).
fn by_predecessor(held: &[Succession]) -> BTreeMap<[u8; 32], Vec<&Succession>> {
    let mut map: BTreeMap<[u8; 32], Vec<&Succession>> = BTreeMap::new();
    for s in held {
        let list = map.entry(*s.predecessor.as_bytes()).or_default();
        match list.iter_mut().find(|o| o.successor == s.successor) {
            Some(o) if o.version < s.version => *o = s,
            Some(_) => {}
            None => list.push(s),
        }
    }
    for list in map.values_mut() {
        list.sort_by_key(|s| *s.successor.as_bytes());
    }
    map
}

/// An applied revocation of `s`'s predecessor made at or before `s` was signed (a time that does
/// not read counts as before: the revocation wins).
fn revoked_before<'a>(applied: &'a [Revocation], s: &Succession) -> Option<&'a Revocation> {
    applied.iter().find(|r| {
        r.revoked == s.predecessor
            && match (crate::time::parse_timestamp(&r.revoked_at), s.at_ms()) {
                (Some(revoked), Some(succeeded)) => revoked <= succeeded,
                _ => true,
            }
    })
}

/// The keys each registry entry had before, newest first, as the held successions show them
/// (followed back from its key while exactly one held succession names it).
pub fn former_keys(peer: &Peer, held: &[Succession]) -> Vec<PublicKey> {
    let mut out = Vec::new();
    let mut key = peer.public_key;
    loop {
        let mut before = held.iter().filter(|s| s.successor == key);
        let (Some(s), None) = (before.next(), before.next()) else {
            break;
        };
        if s.predecessor == peer.public_key || out.contains(&s.predecessor) {
            break;
        }
        out.push(s.predecessor);
        key = s.predecessor;
    }
    out
}

/// Held successions from an entry's former keys that the entry did not follow: a key that
/// already moved to one successor and names another (a conflict reported to the operator, never
/// applied). Returns `(entry name, succession)`.
pub fn conflicts_after_move(peers: &[Peer], held: &[Succession]) -> Vec<(String, Succession)> {
    let mut out = Vec::new();
    for peer in peers {
        let mut chain = vec![peer.public_key];
        chain.extend(former_keys(peer, held));
        for s in held {
            if chain[1..].contains(&s.predecessor) && !chain.contains(&s.successor) {
                out.push((peer.name.clone(), s.clone()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Scope;

    fn key(seed: u8) -> SecretKey {
        SecretKey::from_bytes(&[seed; 32])
    }

    fn record(old: &SecretKey, new: &SecretKey, at_ms: u64) -> Record {
        let mut r = Record {
            origin: old.public(),
            entity: entity(),
            id: record_id(&new.public()),
            version: Version::new(at_ms, 0),
            scope: Scope::Public,
            deleted: false,
            fields: fields(&old.public(), new, at_ms),
            body: String::new(),
            signature: None,
        };
        r.sign(old).expect("sign");
        r
    }

    fn succession(old: &SecretKey, new: &SecretKey, at_ms: u64) -> Succession {
        Succession::from_record(&record(old, new, at_ms)).expect("a succession")
    }

    fn peer(k: &PublicKey, name: &str) -> Peer {
        Peer {
            name: name.into(),
            public_key: *k,
            addrs: vec!["127.0.0.1:1".into()],
            hub: false,
            trusted: true,
            revoked: false,
            follow_revocations: false,
            notes: "n".into(),
        }
    }

    const T: u64 = 1_700_000_000_000;

    #[test]
    fn reads_only_countersigned_well_formed_successions() {
        let (a, a2, z) = (key(1), key(2), key(3));
        let r = record(&a, &a2, T);
        let s = Succession::from_record(&r).expect("a succession");
        assert_eq!((s.predecessor, s.successor), (a.public(), a2.public()));
        assert_eq!(s.at_ms(), Some(T));
        // Countersigned by another key than the one it names: nothing.
        let mut forged = r.clone();
        forged.fields = fields(&a.public(), &z, T);
        forged.fields[0].1 = a2.public().to_hex();
        forged.sign(&a).expect("sign");
        assert_eq!(Succession::from_record(&forged), None);
        // The countersignature of another predecessor's statement: nothing.
        let mut moved = r.clone();
        moved.fields = fields(&z.public(), &a2, T);
        moved.sign(&a).expect("sign");
        assert_eq!(Succession::from_record(&moved), None);
        let mut dead = r.clone();
        dead.deleted = true;
        assert_eq!(Succession::from_record(&dead), None);
        let mut other_id = r.clone();
        other_id.id = z.public().to_hex();
        assert_eq!(Succession::from_record(&other_id), None);
        // Through a Hello: a tampered record signature is ignored.
        let caps = vec![capability(&r), "digests".into(), format!("{CAPABILITY}zz")];
        assert_eq!(from_hello(&caps).len(), 1);
        let mut tampered = r.clone();
        tampered.fields[2].1 = crate::time::format_timestamp(T + 60_000);
        assert!(from_hello(&[capability(&tampered)]).is_empty());
    }

    #[test]
    fn moves_entries_hop_by_hop_keeping_everything_but_the_key() {
        let (me, a, a2, a3, b) = (key(9), key(1), key(2), key(3), key(4));
        let peers = vec![peer(&a.public(), "a"), peer(&b.public(), "b")];
        let held = vec![succession(&a2, &a3, T + 5), succession(&a, &a2, T)];
        let plan = plan(&peers, &me.public(), &[], &held);
        assert!(plan.refused.is_empty(), "{:?}", plan.refused);
        assert_eq!(plan.moves.len(), 2);
        let after = plan.apply(&peers);
        assert_eq!(after[0].public_key, a3.public());
        assert_eq!(
            (after[0].trusted, &after[0].addrs, &after[0].notes),
            (true, &peers[0].addrs, &peers[0].notes)
        );
        assert_eq!(after[1], peers[1]);
        assert_eq!(former_keys(&after[0], &held), vec![a2.public(), a.public()]);
        // Applied again: nothing more to do.
        assert!(
            super::plan(&after, &me.public(), &[], &held)
                .moves
                .is_empty()
        );
    }

    #[test]
    fn refuses_conflicts_revoked_predecessors_and_taken_successors() {
        let (me, a, a2, evil, b) = (key(9), key(1), key(2), key(3), key(4));
        let peers = vec![peer(&a.public(), "a"), peer(&b.public(), "b")];
        // Two successors: neither applies.
        let both = vec![succession(&a, &a2, T), succession(&a, &evil, T + 1)];
        let p = plan(&peers, &me.public(), &[], &both);
        assert!(p.moves.is_empty());
        assert_eq!(p.refused.len(), 2);
        assert!(
            matches!(p.refused[0].2, Refusal::Conflicting { ref successors } if successors.len() == 2)
        );
        // After the first applied, the second is a conflict reported, never applied.
        let after = plan(&peers, &me.public(), &[], &both[..1]).apply(&peers);
        let reported = conflicts_after_move(&after, &both);
        assert_eq!(reported, vec![("a".to_string(), both[1].clone())]);
        assert!(plan(&after, &me.public(), &[], &both).moves.is_empty());
        // Revoked here.
        let mut revoked = peers.clone();
        revoked[0].revoked = true;
        let p = plan(&revoked, &me.public(), &[], &both[..1]);
        assert_eq!(p.refused[0].2, Refusal::RevokedHere);
        // Revoked by an applied announcement before the succession: refused; after: applied.
        let revocation = |at: u64| Revocation {
            revoker: b.public(),
            revoked: a.public(),
            reason: String::new(),
            revoked_at: crate::time::format_timestamp(at),
            version: Version::new(at, 0),
        };
        let p = plan(&peers, &me.public(), &[revocation(T - 60_000)], &both[..1]);
        assert!(matches!(p.refused[0].2, Refusal::RevokedBefore { .. }));
        let p = plan(&peers, &me.public(), &[revocation(T + 60_000)], &both[..1]);
        assert_eq!(p.moves.len(), 1);
        // A successor that is another entry's key, or ours.
        let p = plan(&peers, &me.public(), &[], &[succession(&a, &b, T)]);
        assert_eq!(p.refused[0].2, Refusal::SuccessorTaken { name: "b".into() });
        let p = plan(&peers, &me.public(), &[], &[succession(&a, &me, T)]);
        assert_eq!(p.refused[0].2, Refusal::SuccessorIsUs);
    }
}
