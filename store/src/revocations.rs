//! Revocations that travel (issue 15), on the store's side: announcing and withdrawing this
//! instance's revocations (records of [`protocol::revocation`]), reading the ones held, and the
//! registry as the decisions see it ([`effective_peers`]: the keys that followed revokers
//! announced revoked are revoked, exactly as if the registry said `Revoked: yes`). Nothing is
//! written to `wb_peers.txt`: the view is computed from the registry and the store at each read,
//! so a withdrawal, or no longer following a revoker, un-applies at once.

use std::collections::HashSet;

use protocol::revocation::{self, Assessment, Revocation};
use protocol::{PublicKey, Scope};

use crate::error::Result;
use crate::instance::{Instance, InstanceError};
use crate::{Draft, Home, ListFilter, LocalChange, Peer, Store, time};

/// The live revocations announced by `revokers` that the store holds (one range read per
/// revoker: cheap enough for every session).
pub fn held_by(store: &Store, revokers: &HashSet<PublicKey>) -> Result<Vec<Revocation>> {
    let mut out = Vec::new();
    for revoker in revokers {
        let records = store.list(&ListFilter {
            entity: Some(revocation::entity()),
            origin: Some(*revoker),
            ..ListFilter::default()
        })?;
        out.extend(records.iter().filter_map(Revocation::from_record));
    }
    Ok(out)
}

/// Every live revocation the store holds, whoever announced it (`sync status`, `peers list`).
pub fn held_all(store: &Store) -> Result<Vec<Revocation>> {
    let mut out = Vec::new();
    store.scan(
        |entity| entity == revocation::ENTITY,
        |record| -> Result<()> {
            out.extend(Revocation::from_record(&record));
            Ok(())
        },
    )?;
    Ok(out)
}

/// What the held revocations mean here, all of them (for showing; decisions use
/// [`effective_peers`], which reads only the followed revokers' records).
pub fn assess_all(
    store: &Store,
    peers: &[Peer],
    extra: &[PublicKey],
    own: &PublicKey,
) -> Result<Assessment> {
    let followed = revocation::followed(peers, extra);
    Ok(revocation::assess(peers, &followed, own, held_all(store)?))
}

/// The registry as decisions see it: `peers` with every key a followed revoker (registry
/// peers with `Follow-Revocations: yes`, and `extra`) announced revoked marked revoked, unknown
/// ones added ([`revocation::overlay`]), and the revocations applied. Without followed
/// revokers, the registry as it is (no store read).
pub fn effective_peers(
    store: &Store,
    peers: &[Peer],
    extra: &[PublicKey],
    own: &PublicKey,
) -> Result<(Vec<Peer>, Vec<Revocation>)> {
    let followed = revocation::followed(peers, extra);
    if followed.is_empty() {
        return Ok((peers.to_vec(), Vec::new()));
    }
    let held = held_by(store, &followed)?;
    let applied = revocation::assess(peers, &followed, own, held).applied;
    Ok((revocation::overlay(peers, &applied), applied))
}

/// The keys whose records are not taken: the registry's revoked keys and those of the
/// revocations applied ([`effective_peers`]).
pub fn revoked_keys(store: &Store, peers: &[Peer], own: &PublicKey) -> Result<HashSet<PublicKey>> {
    let (view, _) = effective_peers(store, peers, &[], own)?;
    Ok(protocol::peers::revoked_keys(&view))
}

/// [`revoked_keys`] for a bundle import, which may not have opened the store yet: without
/// followed revokers the registry alone (today's rule, no store read); otherwise the store
/// given, or the home's opened read-only for the time of the read.
pub fn revoked_keys_for_import(home: &Home, open: Option<&Store>) -> Result<HashSet<PublicKey>> {
    let peers = crate::peers::load_peers(home)?;
    if revocation::followed(&peers, &[]).is_empty() {
        return Ok(protocol::peers::revoked_keys(&peers));
    }
    let own = home.load_key()?.public();
    match open {
        Some(store) => revoked_keys(store, &peers, &own),
        None => revoked_keys(&Store::open_read_only(&home.store_path())?, &peers, &own),
    }
}

/// What announcing or withdrawing did.
#[derive(Clone, Debug)]
// Returned once per command: the size of a `LocalChange` inline costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Announced {
    /// A new version of the revocation record (a live one, or its withdrawal).
    Changed(LocalChange),
    /// Nothing to do: the same revocation is already announced, or there is none to withdraw.
    Unchanged,
}

/// Announces that this instance revoked `revoked`: a public revocation record signed by the
/// instance (a new version only when the revocation was withdrawn or its reason changed; the
/// time stays that of the first announcement).
pub fn announce(
    inst: &Instance,
    revoked: &PublicKey,
    reason: &str,
) -> std::result::Result<Announced, InstanceError> {
    let now = time::now_ms();
    let change = inst.store().update_local(
        inst.key(),
        revocation::entity(),
        &revocation::record_id(revoked),
        now,
        |current| -> std::result::Result<Draft, InstanceError> {
            let mut fields = revocation::fields(revoked, reason, now);
            // Same reason as the live announcement: keep it as it is (no new version).
            if let Some(held) = current.and_then(Revocation::from_record)
                && held.reason == fields[1].1
                && let Some(at) = current.and_then(|r| r.field(revocation::FIELD_REVOKED_AT))
            {
                fields[2].1 = at.to_string();
            }
            Ok(Draft {
                scope: Scope::Public,
                deleted: false,
                fields,
                body: String::new(),
            })
        },
    )?;
    Ok(match change {
        LocalChange::Unchanged(_) => Announced::Unchanged,
        change => Announced::Changed(change),
    })
}

/// Withdraws this instance's announced revocation of `revoked`: a tombstone version, public,
/// so it travels where the announcement went.
pub fn withdraw(
    inst: &Instance,
    revoked: &PublicKey,
) -> std::result::Result<Announced, InstanceError> {
    let id = revocation::record_id(revoked);
    let key = protocol::RecordKey {
        origin: inst.public(),
        entity: revocation::entity(),
        id: id.clone(),
    };
    match inst.store().get(&key)? {
        Some(r) if !r.deleted => {}
        _ => return Ok(Announced::Unchanged),
    }
    let change = inst.store().update_local(
        inst.key(),
        revocation::entity(),
        &id,
        time::now_ms(),
        |_| -> std::result::Result<Draft, InstanceError> {
            Ok(Draft {
                scope: Scope::Public,
                deleted: true,
                ..Draft::default()
            })
        },
    )?;
    Ok(Announced::Changed(change))
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::SecretKey;

    fn peer(key: PublicKey, name: &str, follow: bool) -> Peer {
        Peer {
            name: name.into(),
            public_key: key,
            addrs: Vec::new(),
            hub: false,
            trusted: false,
            revoked: false,
            follow_revocations: follow,
            notes: String::new(),
        }
    }

    #[test]
    fn announced_withdrawn_and_followed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = Home::new(dir.path());
        home.init(Some("a")).expect("init");
        let inst = Instance::open(&home).expect("open");
        let x = SecretKey::from_bytes(&[7; 32]).public();
        assert!(matches!(
            announce(&inst, &x, "lost key").expect("announce"),
            Announced::Changed(LocalChange::Created(_))
        ));
        assert!(matches!(
            announce(&inst, &x, "lost key").expect("again"),
            Announced::Unchanged
        ));
        let held = held_all(inst.store()).expect("held");
        assert_eq!(held.len(), 1);
        assert_eq!((held[0].revoker, held[0].revoked), (inst.public(), x));

        // Seen from another instance that follows this one (a second store, as a receiver).
        let other = SecretKey::from_bytes(&[9; 32]).public();
        let me = inst.public();
        let registry = vec![peer(me, "a", true), peer(x, "x", false)];
        let (view, applied) = effective_peers(inst.store(), &registry, &[], &other).expect("view");
        assert_eq!(applied.len(), 1);
        assert!(
            view.iter()
                .find(|p| p.name == "x")
                .is_some_and(|p| p.revoked)
        );
        // Not followed: nothing applies.
        let registry = vec![peer(me, "a", false), peer(x, "x", false)];
        let (view, applied) = effective_peers(inst.store(), &registry, &[], &other).expect("view");
        assert!(applied.is_empty() && view == registry);
        // A hub told to follow it (extra).
        assert!(
            revoked_keys(inst.store(), &registry, &other)
                .expect("keys")
                .is_empty(),
            "not followed"
        );
        let (_, applied) = effective_peers(inst.store(), &registry, &[me], &other).expect("hub");
        assert_eq!(applied.len(), 1);

        assert!(matches!(
            withdraw(&inst, &x).expect("withdraw"),
            Announced::Changed(LocalChange::Updated { .. })
        ));
        assert!(matches!(
            withdraw(&inst, &x).expect("again"),
            Announced::Unchanged
        ));
        assert!(held_all(inst.store()).expect("held").is_empty());
        let (_, applied) = effective_peers(inst.store(), &registry, &[me], &other).expect("hub");
        assert!(applied.is_empty(), "withdrawn");
    }
}
