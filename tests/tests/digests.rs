//! State digests, "fully synced" provable (issue 12, item 3): real instances compare digests
//! at the end of each session and `wb sync status` shows the outcome per peer.

use std::time::Duration;

use node::node::{Direction, sync_once};
use node::session::{Channel, expect_hello_at};
use protocol::Scope;
use protocol::wire::{
    DIGEST_ENTRIES_MAX, Digest, DigestClass, DigestEntry, Message, Role, SYNC_ALPN, capability,
};
use serde_json::Value;
use wb_tests::harness::{
    InProcess, TestHome, digests_between, digests_equal, link, put_user, raw_connect, runtime,
    store_put_user,
};

/// The `digests` object `wb sync status --json` shows for peer `name`.
fn digest_status(t: &TestHome, name: &str) -> Value {
    t.peer_digests(name)
}

fn state(t: &TestHome, name: &str) -> String {
    digest_status(t, name)["state"]
        .as_str()
        .unwrap_or("never")
        .to_string()
}

/// Two real instances sync and each shows the other "in sync"; a private record changes
/// nothing; one public change here shows which origin differs, and a sync makes them equal
/// again.
#[test]
fn two_instances_show_in_sync_and_which_origin_differs() {
    let a = TestHome::initialized();
    let b = TestHome::initialized();
    link(&a, "a", &b, "b", false);
    put_user(&a, "1", "public");
    put_user(&b, "2", "public");
    let node_b = b.start_node();
    a.set_peer_addr("b", node_b.addr());
    assert_eq!(digest_status(&a, "b"), Value::Null, "never compared yet");
    a.sync_now("b", &[]);
    assert_eq!(state(&a, "b"), "in_sync", "{}", digest_status(&a, "b"));
    // b's status goes through its running node (control socket).
    assert_eq!(state(&b, "a"), "in_sync", "{}", digest_status(&b, "a"));
    let text = a.ok(["sync", "status"]);
    assert!(text.contains("digests: in sync (compared "), "{text}");

    // A private record: what b may see has not changed.
    put_user(&a, "3", "private");
    assert_eq!(state(&a, "b"), "in_sync");

    // A public one: changed here, until the next comparison.
    put_user(&a, "4", "public");
    assert_eq!(state(&a, "b"), "changed_here");
    // Pulled only, the new record stays here: the comparison says which origin and class.
    a.sync_now("b", &["--pull-only"]);
    let d = digest_status(&a, "b");
    assert_eq!(d["state"], "differs", "{d}");
    let diffs = d["differences"].as_array().expect("differences");
    assert!(
        diffs.iter().any(|x| x["origin_name"] == "this instance"
            && x["class"] == "public"
            && x["direction"] == "outgoing"
            && x["offered"] == 2
            && x["held"] == 1),
        "{d}"
    );
    let text = a.ok(["sync", "status"]);
    assert!(
        text.contains("public: offered here 2, it holds 1"),
        "{text}"
    );
    assert_eq!(state(&b, "a"), "differs");
    a.sync_now("b", &[]);
    assert_eq!(state(&a, "b"), "in_sync", "{}", digest_status(&a, "b"));
    assert_eq!(state(&b, "a"), "in_sync", "{}", digest_status(&b, "a"));
    node_b.stop();
    digests_equal(&a, &b, false, false).expect("the oracle agrees");
}

/// One instance with a trusted and an untrusted peer: they are offered different digests (the
/// trusted one also our trusted class; a record narrowed to trusted reaches the untrusted one as
/// its withdrawal, which counts nowhere), and both reach "in sync".
#[test]
fn trusted_and_untrusted_peers_see_different_digests_and_both_reach_in_sync() {
    let a = TestHome::initialized();
    let t = TestHome::initialized();
    let u = TestHome::initialized();
    link(&a, "a", &t, "t", true);
    link(&a, "a", &u, "u", false);
    put_user(&a, "1", "public");
    put_user(&a, "2", "trusted");
    put_user(&a, "3", "public");
    put_user(&a, "3", "trusted");
    let (node_t, node_u) = (t.start_node(), u.start_node());
    a.set_peer_addr("t", node_t.addr());
    a.set_peer_addr("u", node_u.addr());
    a.sync_now("t", &[]);
    a.sync_now("u", &[]);
    assert_eq!(state(&a, "t"), "in_sync", "{}", digest_status(&a, "t"));
    assert_eq!(state(&a, "u"), "in_sync", "{}", digest_status(&a, "u"));
    assert_eq!(state(&t, "a"), "in_sync", "{}", digest_status(&t, "a"));
    assert_eq!(state(&u, "a"), "in_sync", "{}", digest_status(&u, "a"));
    node_t.stop();
    node_u.stop();
    digests_equal(&a, &t, true, true).expect("a and t");
    digests_equal(&a, &u, false, false).expect("a and u");
    let digests = |home: &TestHome| {
        store::Store::open_read_only(&home.path("store.redb"))
            .and_then(|s| s.digests())
            .expect("digests")
    };
    let da = digests(&a);
    let to_t = da.offer(&t.public_key(), true);
    let to_u = da.offer(&u.public_key(), false);
    let own = *a.public_key().as_bytes();
    assert_ne!(to_t, to_u);
    assert_eq!(to_t[&(own, DigestClass::Trusted)].count, 2);
    assert!(!to_u.contains_key(&(own, DigestClass::Trusted)));
    // u holds user 3's withdrawal, t the trusted record: withdrawals count nowhere, so their
    // public classes are the same (user 1), and t and u, compared, would agree.
    assert_eq!(to_u[&(own, DigestClass::Public)].count, 1);
    assert_eq!(
        to_t[&(own, DigestClass::Public)],
        to_u[&(own, DigestClass::Public)]
    );
    digests_equal(&t, &u, false, false).expect("t and u hold the same public state of a");
    // The untrusted peer's store holds nothing of our trusted class.
    let du = digests(&u);
    assert_eq!(du.held(&own, DigestClass::Trusted), Digest::default());
    assert_eq!(
        digests(&t).held(&own, DigestClass::Trusted),
        to_t[&(own, DigestClass::Trusted)]
    );
}

/// A relayed origin is compared: a's records reach c through b; c, pushing only, sees that b
/// offers it more of a's origin than it holds, and a full sync closes the gap.
#[test]
fn a_relayed_origin_is_compared() {
    let a = TestHome::initialized();
    let b = TestHome::initialized();
    let c = TestHome::initialized();
    link(&a, "a", &b, "b", false);
    link(&b, "b", &c, "c", false);
    put_user(&a, "1", "public");
    let node_b = b.start_node();
    a.set_peer_addr("b", node_b.addr());
    c.set_peer_addr("b", node_b.addr());
    a.sync_now("b", &[]);
    c.sync_now("b", &[]);
    assert_eq!(state(&c, "b"), "in_sync", "{}", digest_status(&c, "b"));
    put_user(&a, "2", "public");
    a.sync_now("b", &[]);
    c.sync_now("b", &["--push-only"]);
    let d = digest_status(&c, "b");
    assert_eq!(d["state"], "differs", "{d}");
    let a_id = a.public_key().key_id();
    let diffs = d["differences"].as_array().expect("differences");
    assert!(
        diffs.iter().any(|x| x["origin"] == a_id.as_str()
            && x["direction"] == "incoming"
            && x["offered"] == 2
            && x["held"] == 1),
        "{d}"
    );
    c.sync_now("b", &[]);
    assert_eq!(state(&c, "b"), "in_sync", "{}", digest_status(&c, "b"));
    node_b.stop();
    digests_equal(&c, &b, false, false).expect("c and b");
}

/// A peer's `Digests` message with more entries than allowed is refused while decoding: the
/// node ends the session with a protocol error, keeps nothing, and still serves good peers.
#[test]
fn an_oversized_digests_message_is_refused() {
    let rt = runtime();
    rt.block_on(async {
        let a = InProcess::start("a").await;
        let good = InProcess::start("good").await;
        let hostile = protocol::SecretKey::from_bytes(&[77; 32]);
        a.add_peer("hostile", hostile.public(), &[], false);
        a.add_peer("good", good.public(), &[], false);
        good.add_peer("a", a.public(), &[a.addr()], false);
        store_put_user(&a.store, &a.key, "u1", Scope::Public);

        let (endpoint, conn) = raw_connect(&hostile, &a.public(), a.addr(), SYNC_ALPN).await;
        let (send, recv) = conn.open_bi().await.expect("open a stream");
        let mut ch = Channel::new("raw".into(), send, recv);
        ch.send(&Message::hello_with(
            [9; 16],
            Role::Node,
            &[capability::DIGESTS],
        ))
        .await
        .expect("send Hello");
        let hello = expect_hello_at(&mut ch).await.expect("Hello back");
        assert!(hello.digests, "a node names the digests capability");
        let entry = DigestEntry {
            origin: [5; 32],
            class: DigestClass::Public,
            digest: Digest::default(),
        };
        ch.send(&Message::Digests {
            trusted: false,
            offer: vec![entry; DIGEST_ENTRIES_MAX + 1],
            held: Vec::new(),
            more: false,
        })
        .await
        .expect("send an oversized Digests");
        let closed = tokio::time::timeout(Duration::from_secs(30), conn.closed())
            .await
            .expect("the node closes the connection");
        let text = closed.to_string();
        assert!(
            text.contains("not a wb-sync message") || text.contains("Digests"),
            "{text}"
        );
        endpoint.close().await;
        let state = a.store.peer_state(&hostile.public()).expect("state");
        assert_eq!(state.digests, None);

        // A good peer still syncs and compares.
        let peer = store::load_peers(&good.home)
            .expect("registry")
            .into_iter()
            .find(|p| p.name == "a")
            .expect("peer a");
        let report = sync_once(&good.key, &good.store, &peer, Direction::Both)
            .await
            .expect("sync");
        assert_eq!(report.pulled.new, 1);
        let outcome = good
            .store
            .peer_state(&a.public())
            .expect("state")
            .digests
            .expect("compared");
        assert_eq!(outcome.differences_total, 0, "{outcome:?}");
        let (da, dg) = (
            a.store.digests().expect("a"),
            good.store.digests().expect("good"),
        );
        digests_between(&da, &a.public(), false, &dg, &good.public(), false)
            .expect("in sync by the oracle");
    });
}
