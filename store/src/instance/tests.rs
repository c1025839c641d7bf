//! The instance API's own calls: naming origins, choosing what to prune, the sync status.

use protocol::{Entity, Scope, SecretKey};

use super::*;
use crate::{Peer, add_peer};

fn instance() -> (tempfile::TempDir, Instance) {
    let dir = tempfile::tempdir().expect("dir");
    let home = Home::new(dir.path().join("home"));
    let (_, key, store) = home.init(None).expect("init");
    (dir, Instance::from_parts(home, key, Arc::new(store)))
}

fn put(inst: &Instance, id: &str, scope: Scope) {
    inst.put(PutRecord {
        entity: Entity::User,
        id: id.to_string(),
        scope: Some(scope),
        fields: vec![("Username".into(), id.into())],
        body: String::new(),
        allow_contact: false,
    })
    .expect("put");
}

#[test]
fn origins_are_named_by_local_key_or_key_id() {
    let (_dir, inst) = instance();
    let own = inst.public();
    assert_eq!(inst.resolve_origin("local").expect("local"), own);
    assert_eq!(inst.resolve_origin(&own.to_base64()).expect("key"), own);
    assert_eq!(inst.resolve_origin(&own.key_id()).expect("key id"), own);
    let other = SecretKey::from_bytes(&[7; 32]).public();
    assert!(matches!(
        inst.resolve_origin(&other.key_id()),
        Err(InstanceError::UnknownKeyId { .. })
    ));
    assert!(matches!(
        inst.resolve_origin("nonsense"),
        Err(InstanceError::NotAnOrigin { .. })
    ));
}

#[test]
fn prune_targets_are_other_origins_only() {
    let (_dir, inst) = instance();
    for own in ["local", &inst.public().key_id(), &inst.public().to_base64()] {
        assert!(
            matches!(
                inst.prune_target(own),
                Err(InstanceError::PruneOwnInstance { .. })
            ),
            "{own}"
        );
    }
    assert!(matches!(
        inst.prune_target("nobody"),
        Err(InstanceError::Store(StoreError::UnknownPeer { .. }))
    ));
    let other = SecretKey::from_bytes(&[7; 32]).public();
    add_peer(
        inst.home(),
        Peer {
            name: "b".into(),
            public_key: other,
            addrs: Vec::new(),
            hub: false,
            trusted: false,
            revoked: false,
            follow_revocations: false,
            notes: String::new(),
        },
    )
    .expect("add peer");
    let expected = PruneTarget::Origin {
        key: other,
        name: Some("b".into()),
    };
    assert_eq!(inst.prune_target("b").expect("by name"), expected);
    assert_eq!(
        inst.prune_target(&other.key_id()).expect("by key id"),
        expected
    );
    let plan = inst.prune(&expected, true).expect("dry run");
    assert!(PruneTarget::finds_nothing(&plan));
    assert!(matches!(
        inst.prune(&PruneTarget::OlderThan { days: 0 }, true),
        Err(InstanceError::PruneNoDays)
    ));
}

#[test]
fn sync_status_counts_by_scope_and_what_leaves() {
    let (_dir, inst) = instance();
    put(&inst, "u1", Scope::Public);
    put(&inst, "u2", Scope::Private);
    put(&inst, "u3", Scope::Trusted);
    let s = inst.sync_status().expect("status");
    assert_eq!((s.public, s.trusted, s.private), (1, 1, 1));
    assert_eq!(s.from_others, 0);
    assert_eq!(s.outbox, 2, "the private record does not wait to leave");
    assert_eq!(s.private_filtered, 1);
    assert_eq!(s.conflicts, 0);
    assert!(s.peers.is_empty() && s.imports.is_empty());
}
