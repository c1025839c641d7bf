//! Revocations that travel (issue 15): an instance announces that it revoked a key as a record
//! of entity `revocation` (id: the revoked key's 64 hex digits; fields `Revoked-Key`, `Reason`,
//! `Revoked-At`), public and signed by the revoker like any record, so it travels through
//! peers, hubs and bundles unchanged (an unknown entity to older versions, which keep and relay
//! it). Withdrawing it is a newer version that is a tombstone (deleted).
//!
//! What a held revocation means here is decided by [`assess`], from the local registry only:
//! it applies when its revoker is followed (`Follow-Revocations: yes`, not revoked itself), and
//! never to this instance's own key; otherwise it is advice for the operator.

use std::collections::HashSet;

use crate::peers::Peer;
use crate::{Entity, PublicKey, Record, Version};

/// The entity name of a revocation record.
pub const ENTITY: &str = "revocation";
/// The revoked key, 64 hex digits (the same as the record id).
pub const FIELD_REVOKED_KEY: &str = "Revoked-Key";
/// Why, in the revoker's words (one line; may be empty).
pub const FIELD_REASON: &str = "Reason";
/// When the revoker revoked it (ISO 8601).
pub const FIELD_REVOKED_AT: &str = "Revoked-At";

/// The entity of revocation records.
pub fn entity() -> Entity {
    Entity::Other(ENTITY.to_string())
}

/// The record id of the revocation of `revoked`.
pub fn record_id(revoked: &PublicKey) -> String {
    revoked.to_hex()
}

/// The fields of a revocation of `revoked` made at `at_ms`.
pub fn fields(revoked: &PublicKey, reason: &str, at_ms: u64) -> Vec<(String, String)> {
    vec![
        (FIELD_REVOKED_KEY.to_string(), revoked.to_hex()),
        (
            FIELD_REASON.to_string(),
            reason.replace(['\n', '\r'], " ").trim().to_string(),
        ),
        (
            FIELD_REVOKED_AT.to_string(),
            crate::time::format_timestamp(at_ms),
        ),
    ]
}

/// A revocation in force, as a held record states it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revocation {
    /// Who announced it: the record's origin, whose signature the store verified.
    pub revoker: PublicKey,
    pub revoked: PublicKey,
    pub reason: String,
    /// As the revoker wrote it.
    pub revoked_at: String,
    pub version: Version,
}

impl Revocation {
    /// The revocation a record states: `None` for another entity, a withdrawal (tombstone), an
    /// unsigned record, or a malformed one (an id that is not a key, a `Revoked-Key` that is
    /// not the id), which therefore mean nothing.
    pub fn from_record(record: &Record) -> Option<Self> {
        if record.entity.as_str() != ENTITY || record.deleted || record.signature.is_none() {
            return None;
        }
        if record.id.len() != 64 {
            return None;
        }
        let revoked = PublicKey::parse(&record.id).ok()?;
        match record.field(FIELD_REVOKED_KEY) {
            Some(text) if PublicKey::parse(text).ok() == Some(revoked) => {}
            _ => return None,
        }
        Some(Revocation {
            revoker: record.origin,
            revoked,
            reason: crate::text::bounded_text(
                record.field(FIELD_REASON).unwrap_or_default(),
                crate::text::STORED_ERROR_MAX_CHARS,
            ),
            revoked_at: crate::text::bounded_text(
                record.field(FIELD_REVOKED_AT).unwrap_or_default(),
                64,
            ),
            version: record.version,
        })
    }

    /// A key that revokes itself (its own signed statement that it must not be used).
    pub fn is_self_revocation(&self) -> bool {
        self.revoker == self.revoked
    }
}

/// The revokers whose announcements apply here: registry peers marked `Follow-Revocations: yes`
/// that are not revoked, plus `extra` (a hub's `--follow-revocations`) unless revoked.
pub fn followed(peers: &[Peer], extra: &[PublicKey]) -> HashSet<PublicKey> {
    let revoked = crate::peers::revoked_keys(peers);
    peers
        .iter()
        .filter(|p| p.follow_revocations)
        .map(|p| p.public_key)
        .chain(extra.iter().copied())
        .filter(|k| !revoked.contains(k))
        .collect()
}

/// What the held revocations mean here.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Assessment {
    /// In force: announced by a followed revoker, of a key that is not ours.
    pub applied: Vec<Revocation>,
    /// Shown to the operator only: the revoker is not followed (and the key is not revoked
    /// here already), or the revoked key is this instance's own.
    pub advice: Vec<Revocation>,
}

/// Sorts `held` into applied and advice. Following is decided by the local registry alone: an
/// announcement never changes whom this instance follows (a followed revoker revoked by
/// another followed revoker is cut off, but what it announced before still applies until the
/// operator stops following it). A revocation of `own` is never applied.
pub fn assess(
    peers: &[Peer],
    followed: &HashSet<PublicKey>,
    own: &PublicKey,
    mut held: Vec<Revocation>,
) -> Assessment {
    held.sort_by(|a, b| {
        (a.revoked.as_bytes(), a.revoker.as_bytes())
            .cmp(&(b.revoked.as_bytes(), b.revoker.as_bytes()))
    });
    let revoked_here = crate::peers::revoked_keys(peers);
    let mut out = Assessment::default();
    for r in held {
        if r.revoked == *own {
            out.advice.push(r);
        } else if followed.contains(&r.revoker) {
            out.applied.push(r);
        } else if !revoked_here.contains(&r.revoked) {
            out.advice.push(r);
        }
    }
    out
}

/// The registry as decisions see it: every key an applied revocation names is revoked — a
/// registry peer is marked so, an unknown key is added as a revoked entry (named after its key
/// id, never saved) — so every check of `Peer::revoked` and [`crate::peers::revoked_keys`]
/// refuses it.
pub fn overlay(peers: &[Peer], applied: &[Revocation]) -> Vec<Peer> {
    let mut out = peers.to_vec();
    for r in applied {
        match out.iter_mut().find(|p| p.public_key == r.revoked) {
            Some(p) => p.revoked = true,
            None => out.push(Peer::revoked_key(
                format!("{} (revoked by announcement)", r.revoked.key_id()),
                r.revoked,
            )),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Scope, SecretKey};

    fn key(seed: u8) -> SecretKey {
        SecretKey::from_bytes(&[seed; 32])
    }

    fn record(revoker: &SecretKey, revoked: &PublicKey) -> Record {
        let mut r = Record {
            origin: revoker.public(),
            entity: entity(),
            id: record_id(revoked),
            version: Version::new(1_700_000_000_000, 0),
            scope: Scope::Public,
            deleted: false,
            fields: fields(revoked, "lost\nlaptop", 1_700_000_000_000),
            body: String::new(),
            signature: None,
        };
        r.sign(revoker).expect("sign");
        r
    }

    fn peer(k: &SecretKey, name: &str, follow: bool, revoked: bool) -> Peer {
        Peer {
            name: name.into(),
            public_key: k.public(),
            addrs: Vec::new(),
            hub: false,
            trusted: false,
            revoked,
            follow_revocations: follow,
            notes: String::new(),
        }
    }

    #[test]
    fn reads_only_live_signed_well_formed_revocations() {
        let (a, x) = (key(1), key(2));
        let r = record(&a, &x.public());
        let rev = Revocation::from_record(&r).expect("a revocation");
        assert_eq!((rev.revoker, rev.revoked), (a.public(), x.public()));
        assert_eq!(rev.reason, "lost laptop");
        assert!(rev.revoked_at.starts_with("2023-"));
        let mut dead = r.clone();
        dead.deleted = true;
        assert_eq!(Revocation::from_record(&dead), None, "a withdrawal");
        let mut unsigned = r.clone();
        unsigned.signature = None;
        assert_eq!(Revocation::from_record(&unsigned), None);
        let mut other = r.clone();
        other.fields[0].1 = key(3).public().to_hex();
        assert_eq!(
            Revocation::from_record(&other),
            None,
            "Revoked-Key is not the id"
        );
        let mut bad_id = r.clone();
        bad_id.id = "x".repeat(64);
        assert_eq!(Revocation::from_record(&bad_id), None);
        let mut user = r;
        user.entity = Entity::User;
        assert_eq!(Revocation::from_record(&user), None);
    }

    #[test]
    fn applies_only_followed_revokers_and_never_to_our_own_key() {
        let (me, a, c, x, y) = (key(1), key(2), key(3), key(4), key(5));
        let peers = vec![
            peer(&a, "a", true, false),
            peer(&c, "c", false, false),
            peer(&y, "y", false, true),
        ];
        let followed = followed(&peers, &[]);
        assert_eq!(followed, HashSet::from([a.public()]));
        let rev = |by: &SecretKey, of: &SecretKey| {
            Revocation::from_record(&record(by, &of.public())).expect("revocation")
        };
        let held = vec![
            rev(&a, &x),  // followed: applied
            rev(&c, &x),  // not followed: advice
            rev(&a, &me), // our own key: advice only
            rev(&c, &y),  // already revoked here: nothing to advise
        ];
        let out = assess(&peers, &followed, &me.public(), held);
        assert_eq!(out.applied, vec![rev(&a, &x)]);
        let mut advice = out.advice.clone();
        advice.sort_by_key(|r| r.revoked.key_id());
        let mut want = vec![rev(&c, &x), rev(&a, &me)];
        want.sort_by_key(|r| r.revoked.key_id());
        assert_eq!(advice, want);
        // A followed revoker that is revoked locally is followed no more.
        let mut revoked_a = peers.clone();
        revoked_a[0].revoked = true;
        assert!(followed_is_empty(&revoked_a));
        // The overlay revokes a registry peer in place and adds unknown keys.
        let view = overlay(&peers, &[rev(&a, &c), rev(&a, &x)]);
        assert!(
            view.iter()
                .find(|p| p.name == "c")
                .is_some_and(|p| p.revoked)
        );
        assert!(crate::peers::revoked_keys(&view).contains(&x.public()));
        assert_eq!(view.len(), 4);
    }

    fn followed_is_empty(peers: &[Peer]) -> bool {
        followed(peers, &[]).is_empty()
    }
}
