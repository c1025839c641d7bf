//! Store tests for `prune_origin`, `prune_older_than` and `withdraw_from_untrusted`.

use protocol::wire::Cursor;
use protocol::{Audience, Entity, PublicKey, Record, Scope, SecretKey, Version};

use crate::*;

const NOW: u64 = 1_800_000_000_000;
const DAY: u64 = 24 * 60 * 60 * 1000;

fn user(key: &SecretKey, id: &str, ms: u64, scope: Scope) -> Record {
    let mut r = Record {
        origin: key.public(),
        entity: Entity::User,
        id: id.to_string(),
        version: Version::new(ms, 0),
        scope,
        deleted: false,
        fields: vec![("Username".into(), id.into())],
        body: String::new(),
        signature: None,
    };
    r.sign(key).expect("sign");
    r
}

fn put(store: &Store, key: &SecretKey, id: &str, scope: Scope) {
    store
        .update_local(key, Entity::User, id, NOW, |_| {
            Ok::<_, StoreError>(Draft {
                scope,
                deleted: false,
                fields: vec![("Username".into(), id.into())],
                body: String::new(),
            })
        })
        .expect("local write");
}

fn all(store: &Store) -> Vec<Record> {
    store
        .list(&ListFilter {
            include_deleted: true,
            ..Default::default()
        })
        .expect("list")
}

fn origins(store: &Store) -> Vec<PublicKey> {
    let mut keys: Vec<PublicKey> = all(store).iter().map(|r| r.origin).collect();
    keys.dedup();
    keys
}

#[test]
fn prune_origin_removes_exactly_one_origin_with_its_log_entries_and_cursor() {
    let store = Store::in_memory().expect("store");
    let (me, b, c) = (
        SecretKey::from_bytes(&[1; 32]),
        SecretKey::from_bytes(&[2; 32]),
        SecretKey::from_bytes(&[3; 32]),
    );
    put(&store, &me, "mine", Scope::Public);
    let batch = vec![
        user(&b, "b1", NOW - DAY, Scope::Public),
        user(&b, "b2", NOW - DAY, Scope::Public),
        user(&c, "c1", NOW - DAY, Scope::Public),
    ];
    let mut opts = ApplyOptions::new("peer", NOW);
    opts.cursor = Some((
        b.public(),
        Cursor {
            epoch: [9; 16],
            seq: 7,
        },
    ));
    store.apply_batch(&batch, &opts).expect("apply");
    store
        .update_peer_state(&b.public(), |s| {
            s.received = 2;
            s.served_trusted = true;
        })
        .expect("state");
    assert_eq!(store.log_len().expect("log"), 4);

    let err = store.prune_origin(&me.public(), &me.public(), false);
    assert!(
        matches!(err, Err(StoreError::OwnKeyAsPeer { .. })),
        "{err:?}"
    );

    let plan = store
        .prune_origin(&me.public(), &b.public(), true)
        .expect("plan");
    assert_eq!(store.log_len().expect("log"), 4, "a dry run writes nothing");
    let done = store
        .prune_origin(&me.public(), &b.public(), false)
        .expect("prune");
    assert_eq!(plan, done);
    assert_eq!(done.total(), 2);
    assert!(done.cursor && done.peer_state);
    assert_eq!(store.log_len().expect("log"), 2);
    assert_eq!(origins(&store).len(), 2);
    assert!(all(&store).iter().all(|r| r.origin != b.public()));
    assert_eq!(store.cursor(&b.public()).expect("cursor"), None);
    let state = store.peer_state(&b.public()).expect("state");
    assert_eq!(state.received, 0, "counters reset");
    assert!(state.served_trusted, "what we owe the peer is kept");
    // The change log still serves the rest.
    let changes = store.changes_since(0, 10).expect("changes");
    assert_eq!(changes.len(), 2);
    let again = store
        .prune_origin(&me.public(), &b.public(), false)
        .expect("again");
    assert_eq!(again.total(), 0);
    assert!(!again.cursor && !again.peer_state);
}

#[test]
fn prune_older_than_keeps_local_and_recent_records() {
    let store = Store::in_memory().expect("store");
    let (me, b) = (
        SecretKey::from_bytes(&[1; 32]),
        SecretKey::from_bytes(&[2; 32]),
    );
    store
        .update_local(&me, Entity::User, "old-mine", NOW - 100 * DAY, |_| {
            Ok::<_, StoreError>(Draft {
                scope: Scope::Public,
                fields: vec![("Username".into(), "x".into())],
                ..Draft::default()
            })
        })
        .expect("local");
    let batch = vec![
        user(&b, "old", NOW - 40 * DAY, Scope::Public),
        user(&b, "new", NOW - DAY, Scope::Public),
    ];
    store
        .apply_batch(&batch, &ApplyOptions::new("peer", NOW))
        .expect("apply");
    let done = store
        .prune_older_than(&me.public(), NOW - 30 * DAY, false)
        .expect("prune");
    assert_eq!(done.total(), 1);
    let ids: Vec<String> = all(&store).into_iter().map(|r| r.id).collect();
    assert!(ids.contains(&"old-mine".to_string()) && ids.contains(&"new".to_string()));
    assert!(!ids.contains(&"old".to_string()));
    assert_eq!(store.log_len().expect("log"), 2);
}

#[test]
fn an_untrusted_peer_gets_withdrawals_once_and_others_never_see_them() {
    let store = Store::in_memory().expect("store");
    let me = SecretKey::from_bytes(&[1; 32]);
    let (ex, never, friend) = (
        SecretKey::from_bytes(&[2; 32]).public(),
        SecretKey::from_bytes(&[3; 32]).public(),
        SecretKey::from_bytes(&[4; 32]).public(),
    );
    put(&store, &me, "secret", Scope::Trusted);
    put(&store, &me, "open", Scope::Public);
    put(&store, &me, "mine", Scope::Private);
    let epoch = store.epoch().0;
    let end = Cursor {
        epoch,
        seq: store.last_seq().expect("seq"),
    };
    store
        .update_peer_state(&ex, |s| s.served_trusted = true)
        .expect("state");
    let untrusted = Audience { trusted: false };
    let out = |peer: &PublicKey, audience: Audience, after: u64| {
        store
            .outgoing(&me.public(), Some(peer), audience, after, 100, 1000)
            .expect("outgoing")
            .records
    };

    // Still trusted: nothing to settle.
    let moved = store
        .withdraw_from_untrusted(&me, &ex, true, &end, NOW)
        .expect("settle");
    assert_eq!(moved, 0);
    // No longer trusted: the trusted record is re-versioned once.
    let moved = store
        .withdraw_from_untrusted(&me, &ex, false, &end, NOW)
        .expect("settle");
    assert_eq!(moved, 1);
    let moved = store
        .withdraw_from_untrusted(&me, &ex, false, &end, NOW)
        .expect("settle");
    assert_eq!(moved, 0, "idempotent");
    let sent = out(&ex, untrusted, end.seq);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(sent[0].deleted && sent[0].fields.is_empty() && sent[0].scope == Scope::Trusted);
    assert_eq!(sent[0].id, "secret");
    assert!(sent[0].verify().is_ok());
    // A peer that was never trusted sees nothing of it; a trusted one gets the live record,
    // newer than the withdrawal.
    assert!(out(&never, untrusted, end.seq).is_empty());
    let live = out(&friend, Audience { trusted: true }, end.seq);
    assert_eq!(live.len(), 1);
    assert!(!live[0].deleted && live[0].version > sent[0].version);
    assert_eq!(live[0].fields, vec![("Username".into(), "secret".into())]);
    // Once the peer's cursor passed the re-versioned records, it is owed nothing more.
    let caught_up = Cursor {
        epoch,
        seq: store.last_seq().expect("seq"),
    };
    store
        .withdraw_from_untrusted(&me, &ex, false, &caught_up, NOW)
        .expect("settle");
    assert_eq!(
        store.peer_state(&ex).expect("state").withdraw_trusted_until,
        None
    );
    assert!(
        out(&ex, untrusted, 0)
            .iter()
            .all(|r| r.scope == Scope::Public)
    );
}
