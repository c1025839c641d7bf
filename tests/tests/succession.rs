//! Issue 15, item 1: key rotation that keeps the identity. `wb sync keygen --force` makes the old
//! key sign a succession naming the new key (countersigned by it); peers that know the old key
//! move their registry entry to the new one — same name, same trust — when the succession
//! reaches them: through a hub (B), a bundle (C), or the rotated instance's own `Hello` (D),
//! without any command on their side. A forged succession is refused; a second, conflicting one
//! from the same key is refused and reported. Real `wb` binaries over QUIC on 127.0.0.1.

use std::time::{Duration, Instant};

use protocol::succession;
use protocol::wire::{Message, Role, SYNC_ALPN, code};
use protocol::{Record, SecretKey};
use store::ApplyOptions;
use wb_tests::app::App;
use wb_tests::harness::{
    HubProcess, TestHome, id_set, live_ids_of, peer_entry, put_user, raw_connect, signed_public,
};

/// Replaces `t`'s key (`wb sync keygen --force --yes`); returns the old secret key.
fn rotate(t: &TestHome) -> SecretKey {
    let old = t.secret_key();
    let out = t.json(["sync", "keygen", "--force", "--yes"]);
    assert_eq!(out["outcome"], "replaced", "{out}");
    assert_eq!(out["succession"], true, "{out}");
    assert_ne!(t.public_key(), old.public());
    old
}

/// Polls `check` every 200 ms for up to 60 s.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A signed succession record of `old` by `new`.
fn succession_record(old: &SecretKey, new: &SecretKey) -> Record {
    signed_public(
        old,
        succession::entity(),
        &succession::record_id(&new.public()),
        succession::fields(&old.public(), new, store::time::now_ms()),
    )
}

/// B runs a node and does nothing else; it knows A (trusted) and a closed hub that allows both.
/// A replaces its key and syncs with the hub: the hub admits the new key from A's `Hello` (and
/// moves its allowlist entry), B receives the succession from the hub, moves its entry for A to
/// the new key (same name, still trusted), and A's trusted records signed by the new key reach
/// B directly.
#[test]
fn a_rotation_reaches_a_peer_that_does_nothing_through_a_closed_hub() {
    let (hub, a, b) = (
        TestHome::new(),
        TestHome::initialized(),
        TestHome::initialized(),
    );
    let HubProcess {
        process: hub_node, ..
    } = hub.start_hub(&[]);
    for (name, t) in [("a", &a), ("b", &b)] {
        hub.ok(["hub", "allow", &t.public_key().to_hex(), "--name", name]);
        t.add_hub("hub", &hub, &hub_node);
    }
    b.add_peer("a", &a, None, true);
    let node_b = b.start_node_with("127.0.0.1:0", &["--sync-interval", "1"]);
    a.add_peer("b", &b, Some(node_b.addr()), true);
    put_user(&a, "p1", "public");
    a.sync_now("hub", &[]);
    let old = a.public_key();
    eventually("B pulls p1 from the hub", || {
        live_ids_of(&b, &old) == id_set(&["p1"])
    });

    let old_secret = rotate(&a);
    let new = a.public_key();
    put_user(&a, "p2", "public");
    // The closed hub never heard of the new key: A's Hello shows the succession.
    a.sync_now("hub", &[]);
    let hub_registry =
        std::fs::read_to_string(hub.home().join("wb_peers.txt")).expect("the hub's registry");
    assert!(
        hub_registry.contains(&new.to_base64()) && !hub_registry.contains(&old.to_base64()),
        "the hub moved its entry for A:\n{hub_registry}"
    );
    assert!(
        hub_node.log().contains("succession"),
        "the hub logs the admission"
    );

    // B, doing nothing, takes the succession from the hub and moves its entry.
    eventually("B moves its entry for A to the new key", || {
        peer_entry(&b, "a")["key_id"] == new.key_id()
    });
    let entry = peer_entry(&b, "a");
    assert_eq!(entry["trusted"], true, "same trust: {entry}");
    assert_eq!(
        entry["former_keys"],
        serde_json::json!([old_secret.public().key_id()]),
        "{entry}"
    );
    eventually("B holds A's records under the new key", || {
        live_ids_of(&b, &new) == id_set(&["p1", "p2"])
    });
    assert_eq!(
        live_ids_of(&b, &old),
        id_set(&[&new.to_hex()]),
        "the old key's copies are withdrawn; its succession record stays"
    );
    // A's trusted records go straight to B, which knows the new key as trusted A.
    put_user(&a, "t1", "trusted");
    a.sync_now("b", &[]);
    assert_eq!(live_ids_of(&b, &new), id_set(&["p1", "p2", "t1"]));
    let text = b.run(["sync", "peers", "list"]);
    assert!(
        text.stdout
            .contains(&format!("new-key-since:{}", old.key_id())),
        "{text}"
    );
    let log = node_b.log();
    assert!(log.contains("replaced its key"), "B logs the move:\n{log}");
}

/// C is air-gapped: it only imports A's bundles. A replaces its key and exports for C: the
/// import moves C's entry for A (the text says so), C keeps A's trusted records under the new
/// key, and C's next export for A is for the new key.
#[test]
fn a_rotation_reaches_an_air_gapped_peer_through_a_bundle() {
    let (a, c) = (TestHome::initialized(), TestHome::initialized());
    a.add_peer("c", &c, None, true);
    c.add_peer("a", &a, None, true);
    put_user(&a, "t1", "trusted");
    let out = a.dir().join("for-c");
    let out_s = out.display().to_string();
    a.json(["sync", "export", &out_s, "--for", "c"]);
    c.json(["sync", "import", &out_s]);
    let old = a.public_key();
    assert_eq!(live_ids_of(&c, &old), id_set(&["t1"]));

    rotate(&a);
    let new = a.public_key();
    a.json(["sync", "export", &out_s, "--for", "c"]);
    let text = c.run(["sync", "import", &out_s]);
    assert!(text.status.success(), "{text}");
    assert!(
        text.stdout.contains("replaced its key"),
        "the import says the entry moved:\n{text}"
    );
    let entry = peer_entry(&c, "a");
    assert_eq!(entry["key_id"], new.key_id(), "{entry}");
    assert_eq!(entry["trusted"], true, "{entry}");
    assert_eq!(live_ids_of(&c, &new), id_set(&["t1"]));
    assert_eq!(live_ids_of(&c, &old), id_set(&[&new.to_hex()]));
    // The app, given A's bundle with the succession in it, imports it without harm and keeps
    // no trace of the succession.
    let manifest = std::fs::read_to_string(out.join("manifest.sync.txt")).expect("manifest");
    assert!(
        manifest.contains("succession"),
        "the bundle carries the succession:\n{manifest}"
    );
    let app = App::seeded(&c, "https://c.example");
    let run = app.import(&out);
    assert!(run.status.success(), "{run}");
    let dump = app.dump().to_string();
    assert!(
        !dump.contains(&new.to_hex()) && !dump.contains("succession"),
        "nothing of the succession in the app's tables"
    );
    // C's bundle for A now goes to the new key: A imports it.
    put_user(&c, "c1", "trusted");
    let back = c.dir().join("for-a");
    let back_s = back.display().to_string();
    c.json(["sync", "export", &back_s, "--for", "a"]);
    a.json(["sync", "import", &back_s]);
    assert_eq!(live_ids_of(&a, &c.public_key()), id_set(&["c1"]));
}

/// D runs a node and knows only A's old key. A replaces its key and dials D: D admits the new
/// key from A's `Hello` and moves its entry. A forged succession (in the `Hello` of a stranger)
/// is refused and changes nothing; a second succession signed by A's old key, naming another
/// key, is refused and reported in `sync status`.
#[test]
fn a_peer_admits_the_successor_from_its_hello_and_refuses_forgeries_and_conflicts() {
    let (a, d, f) = (
        TestHome::initialized(),
        TestHome::initialized(),
        TestHome::initialized(),
    );
    d.add_peer("a", &a, None, true);
    d.add_peer("f", &f, None, false);
    let node_d = d.start_node_with("127.0.0.1:0", &["--no-auto-sync"]);
    a.add_peer("d", &d, Some(node_d.addr()), true);
    f.add_peer("d", &d, Some(node_d.addr()), false);
    put_user(&a, "t1", "trusted");
    a.sync_now("d", &[]);
    let old_secret = rotate(&a);
    let new = a.public_key();
    let report = a.sync_now("d", &[]);
    assert_eq!(
        report["sent"].as_u64().map(|n| n > 0),
        Some(true),
        "{report}"
    );
    let entry = peer_entry(&d, "a");
    assert_eq!(entry["key_id"], new.key_id(), "{entry}");
    assert_eq!(entry["trusted"], true, "{entry}");
    assert_eq!(live_ids_of(&d, &new), id_set(&["t1"]));

    // A stranger Z shows a succession "from A's old key to Z" that Z signed itself, and one
    // that a real old key signed for someone else: both are refused as unknown.
    let z = SecretKey::from_bytes(&[77; 32]);
    let mut forged = succession_record(&z, &z);
    forged.origin = old_secret.public();
    let other = SecretKey::from_bytes(&[78; 32]);
    let not_z = succession_record(&old_secret, &other);
    let before = std::fs::read_to_string(d.home().join("wb_peers.txt")).expect("registry");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let closed = runtime.block_on(async {
        let (_endpoint, conn) = raw_connect(&z, &d.public_key(), node_d.addr(), SYNC_ALPN).await;
        let (send, recv) = conn.open_bi().await.expect("open a stream");
        let mut ch = node::session::Channel::new("raw".into(), send, recv);
        let mut hello = Message::hello([9; 16], Role::Node);
        if let Message::Hello { capabilities, .. } = &mut hello {
            capabilities.push(succession::capability(&forged));
            capabilities.push(succession::capability(&not_z));
        }
        ch.send(&hello).await.expect("send Hello");
        conn.closed().await
    });
    assert!(
        matches!(
            &closed,
            iroh::endpoint::ConnectionError::ApplicationClosed(c)
                if c.error_code == code::UNKNOWN_PEER.into()
        ),
        "refused as unknown: {closed:?}"
    );
    let after = std::fs::read_to_string(d.home().join("wb_peers.txt")).expect("registry");
    assert_eq!(before, after, "the registry is unchanged");

    // F relays a second succession signed by A's old key, naming another key: D keeps the new
    // key it took and reports the conflict.
    {
        let store = store::Store::open(&f.home().join("store.redb")).expect("open F's store");
        let report = store
            .apply_batch(
                std::slice::from_ref(&not_z),
                &ApplyOptions::new("test", store::time::now_ms()),
            )
            .expect("apply");
        assert_eq!(report.new, 1);
    }
    f.sync_now("d", &[]);
    assert_eq!(peer_entry(&d, "a")["key_id"], new.key_id());
    let status = d.json(["sync", "status"]);
    let refused = status["successions"]["refused"]
        .as_array()
        .expect("a list")
        .clone();
    assert_eq!(refused.len(), 1, "{status}");
    assert_eq!(refused[0]["peer"], "a");
    assert_eq!(refused[0]["to_key_id"], other.public().key_id());
    assert!(
        refused[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("conflict")),
        "{refused:?}"
    );
    let text = d.run(["sync", "status"]);
    assert!(text.stdout.contains("key successions refused"), "{text}");
}
