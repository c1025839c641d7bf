//! Issue 11, item 13: revocation means what operators think. On nodes, no record of a revoked
//! origin is taken, whoever passes it on (a peer pushing or pulled, a hub, a bundle); on hubs,
//! a closed hub stores only its allowed origins, an open hub takes few new origins per
//! connection, directory entries expire, and revoking (or no longer allowing) a key cuts its
//! live connections and relay sessions. Nothing sleeps a fixed time: tests wait for a condition
//! with a deadline.

use std::collections::BTreeSet;
use std::path::Path;

use node::node::Direction;
use protocol::{Entity, PublicKey, Record, Scope, SecretKey, Version};
use store::{ApplyOptions, ListFilter, Store};
use wb_tests::harness::{InProcess, TestHome, put_user, runtime};

/// A public user record signed by `key`.
fn signed_user(key: &SecretKey, id: &str) -> Record {
    let mut r = Record {
        origin: key.public(),
        entity: Entity::User,
        id: id.to_string(),
        version: Version::new(store::time::now_ms(), 0),
        scope: Scope::Public,
        deleted: false,
        fields: vec![("Username".into(), id.to_string())],
        body: String::new(),
        signature: None,
    };
    r.sign(key).expect("sign");
    r
}

/// Stores `records` as received from elsewhere (a relay holds other origins' records).
fn hold(store: &Store, records: &[Record]) {
    let report = store
        .apply_batch(records, &ApplyOptions::new("test", store::time::now_ms()))
        .expect("apply");
    assert_eq!(report.new, records.len() as u64, "{report:?}");
}

/// The ids of the records of `origin` in `store`.
fn ids_of(store: &Store, origin: &PublicKey) -> BTreeSet<String> {
    store
        .list(&ListFilter {
            origin: Some(*origin),
            include_deleted: true,
            ..ListFilter::default()
        })
        .expect("list")
        .into_iter()
        .map(|r| r.id)
        .collect()
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

/// A revoked entry for `key` in the registry of `home`.
fn revoke_in(home: &store::Home, name: &str, key: PublicKey) {
    store::add_peer(
        home,
        store::Peer {
            name: name.to_string(),
            public_key: key,
            addrs: Vec::new(),
            hub: false,
            trusted: false,
            revoked: true,
            notes: String::new(),
        },
    )
    .expect("add a revoked peer");
}

// ---------------------------------------------------------------------------------------------
// Nodes
// ---------------------------------------------------------------------------------------------

/// A revokes X. B relays X's public records (and Y's): neither B pushing to A's node (the
/// accept side) nor A pulling from B (the dialling side, as it pulls from a hub) brings X's
/// records into A; Y's arrive, X's are counted as rejected.
#[test]
fn a_node_takes_no_record_of_a_revoked_origin_from_a_relay() {
    runtime().block_on(async {
        let (x, y) = (
            SecretKey::from_bytes(&[31; 32]),
            SecretKey::from_bytes(&[32; 32]),
        );
        let a = InProcess::start("a").await;
        let b = InProcess::start("b").await;
        a.add_peer("b", b.public(), &[b.addr()], false);
        b.add_peer("a", a.public(), &[a.addr()], false);
        revoke_in(&a.home, "x", x.public());
        hold(&b.store, &[signed_user(&x, "x-1"), signed_user(&y, "y-1")]);

        // B pushes: A's node pulls from B with A's registry.
        let peers = store::load_peers(&b.home).expect("B's registry");
        let to_a = store::find_peer(&peers, "a").expect("a");
        b.handle()
            .sync_with(to_a, Direction::PushOnly)
            .await
            .expect("B pushes to A");
        assert_eq!(ids_of(&a.store, &y.public()), set(&["y-1"]));
        assert_eq!(ids_of(&a.store, &x.public()), set(&[]), "pushed by B");

        // A pulls (a new record of each): the dialling side drops X's too.
        hold(&b.store, &[signed_user(&x, "x-2"), signed_user(&y, "y-2")]);
        let peers = store::load_peers(&a.home).expect("A's registry");
        let to_b = store::find_peer(&peers, "b").expect("b");
        let report = a
            .handle()
            .sync_with(to_b, Direction::PullOnly)
            .await
            .expect("A pulls from B");
        assert_eq!(report.pulled.new, 1, "{report:?}");
        assert_eq!(report.pulled.rejected, 1, "{report:?}");
        assert_eq!(ids_of(&a.store, &y.public()), set(&["y-1", "y-2"]));
        assert_eq!(ids_of(&a.store, &x.public()), set(&[]), "pulled from B");
        let counters = a.store.counters().expect("counters");
        assert_eq!(
            counters.get(store::counter::REJECTED_REVOKED).copied(),
            Some(2),
            "{counters:?}"
        );
    });
}

/// A revokes X. A bundle B exported, relaying X's public record, is imported without it (the
/// report counts it); a bundle X signed is refused whole, and nothing is imported.
#[test]
fn a_bundle_import_skips_revoked_origins_and_refuses_a_revoked_signer() {
    let (a, b, x) = (
        TestHome::initialized(),
        TestHome::initialized(),
        TestHome::initialized(),
    );
    put_user(&x, "x-pub", "public");
    let from_x = x.dir().join("from-x");
    x.ok(["sync", "export", s(&from_x)]);
    b.json(["sync", "import", s(&from_x)]);
    put_user(&b, "b-pub", "public");
    let from_b = b.dir().join("from-b");
    b.ok(["sync", "export", s(&from_b)]);

    a.add_peer("x", &x, None, false);
    a.ok(["sync", "peers", "revoke", "x"]);
    let dry = a.json(["sync", "import", s(&from_b), "--dry-run"]);
    assert_eq!(dry["revoked_origin"], 1, "{dry}");
    let report = a.json(["sync", "import", s(&from_b)]);
    assert_eq!(report["new"], 1, "{report}");
    assert_eq!(report["revoked_origin"], 1, "{report}");
    assert_eq!(report["rejected"], 1, "{report}");
    let text = a.ok(["sync", "import", s(&from_b)]);
    assert!(text.contains("already imported"), "{text}");
    let (_, store) = store::Home::new(a.home())
        .open_read_only()
        .expect("open A's store");
    assert_eq!(ids_of(&store, &b.public_key()), set(&["b-pub"]));
    assert_eq!(ids_of(&store, &x.public_key()), set(&[]));
    drop(store);

    let err = a.fail(["sync", "import", s(&from_x)]);
    assert!(err.contains("revokes"), "{err}");
    let (_, store) = store::Home::new(a.home())
        .open_read_only()
        .expect("open A's store");
    assert_eq!(ids_of(&store, &x.public_key()), set(&[]));
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}
