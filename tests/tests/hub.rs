//! The hub (DESIGN.md §11; issue 5, "Tests that must exist"): store-and-forward of public
//! records, discovery through the hub's directory, the hub's packet relay, revocation, forged
//! and stale announcements, and a load test. Hubs run as `wb hub run` child processes on
//! `127.0.0.1:0`; their relay is the in-process iroh relay server on loopback (plain HTTP).
//! Nothing sleeps a fixed time: tests wait on ready lines and poll the hub's status until a
//! condition holds, with a deadline.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant};

use iroh::EndpointAddr;
use node::directory::{HubOptions, request};
use node::node::{NodeConfig, bind_endpoint, start_with_hubs};
use node::session::Faults;
use protocol::hub::{Announcement, HUB_ALPN, HubRequest, HubResponse, hub_code};
use protocol::wire::Role;
use protocol::{Entity, PublicKey, Record, Scope, SecretKey, Version};
use serde_json::Value;
use store::{ApplyOptions, Home, ListFilter};
use wb_tests::harness::{
    HubProcess, Run, TestHome, bulk_public_users, count, finish_ok, put_user, raw_connect,
    raw_push, runtime,
};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// How long a test waits for a condition (an announcement reaching the hub) before failing.
const WAIT: Duration = Duration::from_secs(60);

fn allow(hub: &TestHome, name: &str, instance: &TestHome) {
    hub.ok([
        "hub",
        "allow",
        &instance.public_key().to_base64(),
        "--name",
        name,
    ]);
}

/// Every record (deleted ones included) of a stopped instance's or hub's store. Opened
/// read-write: a stopped process may leave redb's file to be repaired on the next open.
fn stored_records(t: &TestHome) -> Vec<Record> {
    let (_, store) = Home::new(t.home()).open().expect("open the store");
    store
        .list(&ListFilter {
            include_deleted: true,
            ..ListFilter::default()
        })
        .expect("list the store")
}

/// The ids of the live records of `origin` in `t` (through `wb record list`).
fn live_ids(t: &TestHome, origin: &PublicKey) -> BTreeSet<String> {
    t.json(["record", "list", "--origin", &origin.to_hex()])
        .as_array()
        .expect("an array")
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_string())
        .collect()
}

/// The hub's view of one instance in `wb hub status --json` (the hub runs: the command runs
/// inside it, through its control socket).
fn hub_instance(hub: &TestHome, key: &PublicKey) -> Option<Value> {
    let status = hub.json(["hub", "status"]);
    status["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .find(|i| i["key_id"] == key.key_id())
        .cloned()
}

/// Polls the hub's status until `ok` holds for the instance, or fails after [`WAIT`].
fn wait_for_instance(hub: &TestHome, key: &PublicKey, what: &str, ok: impl Fn(&Value) -> bool) {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(i) = hub_instance(hub, key)
            && ok(&i)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the hub never saw {what}: {:?}",
            hub_instance(hub, key)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn signed_user(key: &SecretKey, id: &str, scope: Scope, counter: u32) -> Record {
    let mut r = Record {
        origin: key.public(),
        entity: Entity::User,
        id: id.to_string(),
        version: Version::new(store::time::now_ms(), counter),
        scope,
        deleted: false,
        fields: vec![("Username".into(), id.to_string())],
        body: String::new(),
        signature: None,
    };
    r.sign(key).expect("sign");
    r
}

// ---------------------------------------------------------------------------------------------
// Store-and-forward
// ---------------------------------------------------------------------------------------------

/// A pushes to the hub and goes offline; B, which never connected to A, pulls A's public
/// records from the hub and verifies them against A's key. A's trusted and private records
/// never reach the hub (not even when A marks the hub trusted, nor when a client pushes them
/// raw). A withdrawal travels through the hub.
#[test]
fn the_hub_stores_and_forwards_public_records_only() {
    let (hub, a, b) = (
        TestHome::new(),
        TestHome::initialized(),
        TestHome::initialized(),
    );
    allow(&hub, "a", &a);
    allow(&hub, "b", &b);
    let HubProcess { process: node, .. } = hub.start_hub(&[]);
    put_user(&a, "a-pub-1", "public");
    put_user(&a, "a-pub-2", "public");
    put_user(&a, "a-trusted", "trusted");
    put_user(&a, "a-private", "private");
    a.ok([
        "record",
        "put",
        "request",
        "a-draft",
        "--scope",
        "public",
        "--field",
        "Title=t",
        "--field",
        "Status=draft",
    ]);
    // A even marks the hub trusted: the sender still never gives a hub trusted records.
    a.add_hub("hub", &hub, &node);
    a.ok(["sync", "peers", "trust", "hub"]);
    b.add_hub("hub", &hub, &node);

    let pushed = a.sync_now("--hub", &[]);
    assert_eq!(count(&pushed, "sent"), 2, "two public records: {pushed}");

    // A is offline from now on (it never ran a node). B never connected to A.
    let pulled = b.sync_now("hub", &[]);
    assert_eq!(
        count(&pulled, "new"),
        2,
        "B gets A's public records: {pulled}"
    );
    let ka = a.public_key();
    assert_eq!(
        live_ids(&b, &ka),
        BTreeSet::from(["a-pub-1".to_string(), "a-pub-2".to_string()])
    );
    for r in stored_records(&b).iter().filter(|r| r.origin == ka) {
        r.verify()
            .unwrap_or_else(|e| panic!("{} does not verify against A's key: {e}", r.id));
    }

    // A narrows one record: its withdrawal goes through the hub to B.
    a.ok(["scope", "set", "user", "a-pub-2", "private"]);
    a.sync_now("hub", &["--push-only"]);
    let withdrawn = b.sync_now("hub", &["--pull-only"]);
    assert_eq!(count(&withdrawn, "updated"), 1, "{withdrawn}");
    assert_eq!(
        live_ids(&b, &ka),
        BTreeSet::from(["a-pub-1".to_string()]),
        "B deleted its copy of the withdrawn record"
    );

    // A client that breaks the rules: the hub checks again on the way in.
    let key_a = a.secret_key();
    let hub_key = hub.public_key();
    let role = runtime().block_on(raw_push(
        &key_a,
        &hub_key,
        node.addr(),
        &[
            signed_user(&key_a, "raw-trusted", Scope::Trusted, 0),
            signed_user(&key_a, "raw-private", Scope::Private, 0),
            signed_user(&key_a, "raw-public", Scope::Public, 0),
        ],
    ));
    assert_eq!(role, Role::Hub);

    let (status, _) = node.stop();
    assert!(status.success());
    let held = stored_records(&hub);
    let ids: BTreeSet<&str> = held.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        BTreeSet::from(["a-pub-1", "a-pub-2", "raw-public"]),
        "the hub holds A's public records (a-pub-2 as its withdrawal) and nothing else"
    );
    for r in &held {
        assert_eq!(r.effective_scope(), Scope::Public, "{} on the hub", r.id);
        assert_eq!(r.origin, ka);
        r.verify().expect("records keep their origin signature");
    }
    assert!(
        held.iter().any(|r| r.id == "a-pub-2" && r.deleted),
        "the hub keeps the withdrawal"
    );
}

/// State digests with a closed hub (issue 12, item 3): an instance and the hub compare over
/// the origins the hub takes. A relays the public records of C, which is not on the hub's
/// allowlist: A and the hub are in sync all the same, and both say one origin was not
/// compared. B, which pushed without pulling, sees which origin it lacks, until it pulls.
#[test]
fn an_instance_and_a_closed_hub_compare_digests_over_the_origins_the_hub_takes() {
    let (hub, a, b, c) = (
        TestHome::new(),
        TestHome::initialized(),
        TestHome::initialized(),
        TestHome::initialized(),
    );
    allow(&hub, "a", &a);
    allow(&hub, "b", &b);
    // A holds C's public record, got directly from C.
    wb_tests::harness::link(&a, "a", &c, "c", false);
    put_user(&c, "c-1", "public");
    let node_c = c.start_node();
    a.set_peer_addr("c", node_c.addr());
    a.sync_now("c", &["--pull-only"]);
    drop(node_c);
    put_user(&a, "a-1", "public");
    put_user(&a, "a-2", "public");
    put_user(&a, "a-private", "private");
    put_user(&b, "b-1", "public");
    let HubProcess { process: node, .. } = hub.start_hub(&[]);
    a.add_hub("hub", &hub, &node);
    b.add_hub("hub", &hub, &node);

    let pushed = a.sync_now("hub", &[]);
    assert_eq!(count(&pushed, "sent"), 3, "a-1, a-2 and C's c-1: {pushed}");
    let d = a.peer_digests("hub");
    assert_eq!(d["state"], "in_sync", "{d}");
    assert_eq!(d["not_taken_by_hub"], 1, "C's origin: {d}");
    let text = a.ok(["sync", "status"]);
    assert!(
        text.contains("1 origin not compared (the hub does not take it)"),
        "{text}"
    );
    let seen = hub_instance(&hub, &a.public_key()).expect("a on the hub");
    assert_eq!(seen["digests"]["state"], "in_sync", "{seen}");
    assert_eq!(seen["digests"]["not_taken_by_hub"], 1, "{seen}");
    assert!(
        hub.ok(["hub", "status"]).contains("digests: in sync"),
        "the hub's text status"
    );

    // B pushes without pulling: the hub offers A's two records, B holds none.
    b.sync_now("hub", &["--push-only"]);
    let d = b.peer_digests("hub");
    assert_eq!(d["state"], "differs", "{d}");
    let diffs = d["differences"].as_array().expect("differences");
    assert!(
        diffs
            .iter()
            .all(|x| x["origin"] == a.public_key().key_id().as_str()),
        "only A's origin differs: {d}"
    );
    assert!(
        diffs
            .iter()
            .any(|x| x["direction"] == "incoming" && x["offered"] == 2 && x["held"] == 0),
        "{d}"
    );
    assert_eq!(d["not_taken_by_hub"], 0, "{d}");
    let seen = hub_instance(&hub, &b.public_key()).expect("b on the hub");
    assert_eq!(seen["digests"]["state"], "differs", "{seen}");

    // Full syncs: each holds what the hub offers, and A gets B's record through the hub.
    b.sync_now("hub", &[]);
    assert_eq!(b.peer_digests("hub")["state"], "in_sync");
    a.sync_now("hub", &[]);
    let d = a.peer_digests("hub");
    assert_eq!(d["state"], "in_sync", "{d}");
    assert_eq!(
        live_ids(&a, &b.public_key()),
        BTreeSet::from(["b-1".to_string()])
    );
    let (status, _) = node.stop();
    assert!(status.success());
}

/// A hub names `hub-digests/2`, answers one `Digests` exchange per session (listing the origins
/// of the offer it takes, even those it holds nothing of) and refuses a second one.
#[test]
fn a_hub_answers_one_digests_exchange_per_session() {
    use node::session::{Channel, expect_hello_at};
    use protocol::wire::{Digest, DigestClass, DigestEntry, Message, SYNC_ALPN, capability};
    let (hub, a) = (TestHome::new(), TestHome::initialized());
    allow(&hub, "a", &a);
    let HubProcess { process: node, .. } = hub.start_hub(&[]);
    let key = a.secret_key();
    let not_allowed = SecretKey::from_bytes(&[42; 32]).public();
    let text = runtime().block_on(async {
        let (endpoint, conn) = raw_connect(&key, &hub.public_key(), node.addr(), SYNC_ALPN).await;
        let (send, recv) = conn.open_bi().await.expect("open a stream");
        let mut ch = Channel::new("raw".into(), send, recv);
        ch.send(&Message::hello_with(
            [3; 16],
            Role::Node,
            &[capability::DIGESTS],
        ))
        .await
        .expect("send Hello");
        let hello = expect_hello_at(&mut ch).await.expect("Hello back");
        assert!(hello.hub_digests && !hello.digests, "{:?}", hello.role);
        let entry = |origin: [u8; 32]| DigestEntry {
            origin,
            class: DigestClass::Public,
            digest: Digest::default(),
        };
        let offer = Message::Digests {
            trusted: false,
            offer: vec![
                entry(*key.public().as_bytes()),
                entry(*not_allowed.as_bytes()),
            ],
            held: Vec::new(),
            more: false,
        };
        ch.send(&offer).await.expect("send Digests");
        let Some(Message::Digests { held, .. }) = ch.recv().await.expect("an answer") else {
            panic!("no Digests back");
        };
        let listed: Vec<[u8; 32]> = held.iter().map(|e| e.origin).collect();
        assert_eq!(
            listed,
            vec![*key.public().as_bytes()],
            "only the allowed origin"
        );
        ch.send(&Message::Digests {
            trusted: false,
            offer: Vec::new(),
            held: Vec::new(),
            more: false,
        })
        .await
        .expect("send held");
        ch.send(&offer).await.expect("send a second Digests");
        let text = match ch.recv().await {
            Ok(Some(Message::Error { message, .. })) => message,
            Ok(other) => format!("{other:?}"),
            Err(e) => e.to_string(),
        };
        endpoint.close().await;
        text
    });
    assert!(text.contains("unexpected Digests"), "{text}");
    let (status, _) = node.stop();
    assert!(status.success());
}

// ---------------------------------------------------------------------------------------------
// Discovery
// ---------------------------------------------------------------------------------------------

/// B syncs directly with A knowing only A's key: A announced its addresses to the hub, and B's
/// lookup found them. An id the hub does not know fails at once with a clear error.
#[test]
fn a_peer_known_only_by_its_key_is_found_through_the_hub() {
    let (hub, a, b) = (
        TestHome::new(),
        TestHome::initialized(),
        TestHome::initialized(),
    );
    let HubProcess {
        process: hub_node, ..
    } = hub.start_hub(&["--open"]);
    put_user(&a, "a-pub", "public");
    a.add_hub("hub", &hub, &hub_node);
    b.add_hub("hub", &hub, &hub_node);
    // Each knows the other by key only: no address anywhere but on the hub.
    a.add_peer("b", &b, None, false);
    b.add_peer("a", &a, None, false);
    let ka = a.public_key();
    let node_a = a.start_node();
    wait_for_instance(&hub, &ka, "A's announcement", |i| {
        i["addrs"].as_array().is_some_and(|a| !a.is_empty())
    });
    let announced = hub_instance(&hub, &ka).expect("A is on the hub");
    assert!(
        announced["addrs"]
            .as_array()
            .expect("addrs")
            .iter()
            .any(|x| x == &Value::String(node_a.addr().to_string())),
        "A announced where it listens: {announced}"
    );

    let report = b.sync_now("a", &[]);
    assert_eq!(
        count(&report, "new"),
        1,
        "B pulled from A directly: {report}"
    );
    assert_eq!(live_ids(&b, &ka), BTreeSet::from(["a-pub".to_string()]));
    assert!(
        node_a.log().contains("session finished"),
        "A served B itself (not the hub): {}",
        node_a.log()
    );

    // A key nobody announced: "not found", not a hang.
    let nobody = SecretKey::from_bytes(&[0x5a; 32]).public();
    b.ok(["sync", "peers", "add", "nobody", "--key", &nobody.to_hex()]);
    let run = b.run(["sync", "now", "nobody"]);
    wb_tests::harness::assert_one_line_error(&run);
    assert!(run.stderr.contains("nobody"), "{run}");

    node_a.stop();
    hub_node.stop();
}

// ---------------------------------------------------------------------------------------------
// Relay
// ---------------------------------------------------------------------------------------------

/// A and B have no usable direct address for each other: A announces only the hub's relay
/// URL, B knows A by key only. B still reaches A through the hub's relay and syncs.
#[test]
fn two_instances_without_direct_addresses_sync_through_the_hub_relay() {
    let (hub, b) = (TestHome::new(), TestHome::initialized());
    let HubProcess {
        process: hub_node,
        relay_url,
    } = hub.start_hub(&["--open", "--relay-listen", "127.0.0.1:0"]);
    let relay_url = relay_url.expect("the hub runs a relay");
    assert!(relay_url.starts_with("http://127.0.0.1:"), "{relay_url}");

    // A runs in this process, announcing the relay only.
    let dir = tempfile::Builder::new()
        .prefix("wb-relay-")
        .tempdir()
        .expect("temp dir");
    let home_a = Home::new(dir.path().join("home"));
    let (_, key_a, store_a) = home_a.init(Some("a")).expect("init A");
    let ka = key_a.public();
    store_a
        .apply_batch(
            &[signed_user(&key_a, "a-pub", Scope::Public, 0)],
            &ApplyOptions::new("test", store::time::now_ms()),
        )
        .expect("write A's record");
    store::add_peer(
        &home_a,
        store::Peer {
            name: "hub".into(),
            public_key: hub.public_key(),
            addrs: vec![hub_node.addr().to_string()],
            hub: true,
            trusted: false,
            revoked: false,
            follow_revocations: false,
            notes: String::new(),
        },
    )
    .expect("add the hub to A");
    store::add_peer(
        &home_a,
        store::Peer {
            name: "b".into(),
            public_key: b.public_key(),
            addrs: Vec::new(),
            hub: false,
            trusted: false,
            revoked: false,
            follow_revocations: false,
            notes: String::new(),
        },
    )
    .expect("add B to A");
    let rt = runtime();
    let node_a = rt
        .block_on(start_with_hubs(
            NodeConfig {
                home: home_a.clone(),
                listen: "127.0.0.1:0".parse().expect("addr"),
                open: false,
                deadlines: node::session::Deadlines::default(),
                faults: Faults::default(),
                discovery: node::discovery::Discovery::Off,
            },
            key_a.clone(),
            Arc::new(store_a),
            HubOptions {
                announce: true,
                announce_direct: false,
            },
        ))
        .expect("start A");

    wait_for_instance(&hub, &ka, "A's relay announcement", |i| {
        i["relay_url"] == Value::String(relay_url.clone())
    });
    let announced = hub_instance(&hub, &ka).expect("A is on the hub");
    assert_eq!(
        announced["addrs"],
        Value::Array(Vec::new()),
        "A announced no direct address: {announced}"
    );

    b.add_hub("hub", &hub, &hub_node);
    b.ok(["sync", "peers", "add", "a", "--key", &ka.to_hex()]);
    let report = b.sync_now("a", &[]);
    assert_eq!(
        count(&report, "new"),
        1,
        "B pulled A's record via the relay: {report}"
    );
    assert_eq!(live_ids(&b, &ka), BTreeSet::from(["a-pub".to_string()]));

    rt.block_on(node_a.shutdown()).expect("stop A");
    hub_node.stop();
}

// ---------------------------------------------------------------------------------------------
// Revocation
// ---------------------------------------------------------------------------------------------

/// After `wb hub revoke` of A (while the hub runs), A can neither push nor pull nor announce,
/// and nothing A sends later is stored; an instance never allowed is refused as well; B keeps
/// syncing.
#[test]
fn a_revoked_instance_can_neither_push_nor_pull() {
    let (hub, a, b) = (
        TestHome::new(),
        TestHome::initialized(),
        TestHome::initialized(),
    );
    allow(&hub, "a", &a);
    allow(&hub, "b", &b);
    let HubProcess { process: node, .. } = hub.start_hub(&[]);
    a.add_hub("hub", &hub, &node);
    b.add_hub("hub", &hub, &node);
    put_user(&a, "a-before", "public");
    a.sync_now("hub", &[]);

    let revoked = hub.json(["hub", "revoke", &a.public_key().to_hex()]);
    assert_eq!(revoked["revoked"], true, "{revoked}");
    let listed = hub.json(["hub", "list"]);
    assert!(
        listed
            .as_array()
            .expect("an array")
            .iter()
            .any(|e| e["name"] == "a" && e["revoked"] == true),
        "{listed}"
    );

    put_user(&a, "a-after", "public");
    for extra in [&[][..], &["--pull-only"][..], &["--push-only"][..]] {
        let mut args = vec!["sync", "now", "hub"];
        args.extend_from_slice(extra);
        let run: Run = a.run(&args);
        wb_tests::harness::assert_one_line_error(&run);
        assert!(run.stderr.contains("revoked"), "{run}");
    }
    // A's announcements are refused too.
    let ka = a.public_key();
    let key_a = a.secret_key();
    let hub_key = hub.public_key();
    let addr = node.addr();
    let refused = runtime().block_on(async {
        let endpoint = bind_endpoint(&key_a, "127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind");
        let id = node::identity::endpoint_id(&hub_key).expect("endpoint id");
        let answer = match endpoint
            .connect(EndpointAddr::new(id).with_ip_addr(addr), HUB_ALPN)
            .await
        {
            Ok(conn) => {
                let announcement = Announcement::sign(&key_a, store::time::now_ms(), &[addr], None);
                request(&conn, "hub", &HubRequest::Announce(announcement))
                    .await
                    .map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        };
        endpoint.close().await;
        answer
    });
    assert!(
        refused.is_err(),
        "a revoked key gets no answer: {refused:?}"
    );

    // An instance that was never allowed is refused too (the hub is not open).
    let c = TestHome::initialized();
    c.add_hub("hub", &hub, &node);
    put_user(&c, "c-pub", "public");
    let run: Run = c.run(["sync", "now", "hub"]);
    wb_tests::harness::assert_one_line_error(&run);
    assert!(run.stderr.contains("unknown"), "{run}");

    let report = b.sync_now("hub", &[]);
    assert_eq!(
        count(&report, "new"),
        1,
        "B gets what A pushed before: {report}"
    );
    assert_eq!(live_ids(&b, &ka), BTreeSet::from(["a-before".to_string()]));
    assert!(
        node.log().contains("refused"),
        "the hub logs refusals: {}",
        node.log()
    );
    node.stop();
    let held: BTreeSet<String> = stored_records(&hub).into_iter().map(|r| r.id).collect();
    assert_eq!(held, BTreeSet::from(["a-before".to_string()]));
}

// ---------------------------------------------------------------------------------------------
// Announcements
// ---------------------------------------------------------------------------------------------

/// The hub refuses an announcement signed by another key than the one it announces, a stale
/// one (too old, or a replay), and one of another instance; it accepts a fresh signed one and
/// answers lookups with it; an unknown id is "not found".
#[test]
fn forged_and_stale_announcements_are_rejected() {
    let (hub, a) = (TestHome::new(), TestHome::initialized());
    let HubProcess { process: node, .. } = hub.start_hub(&["--open"]);
    let key_a = a.secret_key();
    let other = SecretKey::from_bytes(&[0x42; 32]);
    let hub_key = hub.public_key();
    let addr = node.addr();
    let me: SocketAddr = "127.0.0.1:4433".parse().expect("addr");
    runtime().block_on(async {
        let (endpoint, conn) = raw_connect(&key_a, &hub_key, addr, HUB_ALPN).await;
        let ask = |req: HubRequest| {
            let conn = conn.clone();
            async move { request(&conn, "hub", &req).await.expect("the hub answers") }
        };
        let now = store::time::now_ms();
        let rejected = |answer: HubResponse, code: u32, what: &str| match answer {
            HubResponse::Rejected { code: c, reason } => {
                assert_eq!(c, code, "{what}: {reason}");
            }
            other => panic!("{what} was not rejected: {other:?}"),
        };

        // Claims to be A, signed by another key.
        let mut forged = Announcement::sign(&other, now, &[me], None);
        forged.key = *key_a.public().as_bytes();
        rejected(
            ask(HubRequest::Announce(forged)).await,
            hub_code::FORGED,
            "forged",
        );
        // Signed by A, but ten minutes old.
        let old = Announcement::sign(&key_a, now - 10 * 60 * 1000, &[me], None);
        rejected(ask(HubRequest::Announce(old)).await, hub_code::STALE, "old");
        // Another instance's (validly signed) announcement, sent by A.
        let theirs = Announcement::sign(&other, now, &[me], None);
        rejected(
            ask(HubRequest::Announce(theirs)).await,
            hub_code::NOT_SELF,
            "not A's",
        );
        // Nothing of that was stored.
        assert_eq!(
            ask(HubRequest::Lookup {
                key: *key_a.public().as_bytes()
            })
            .await,
            HubResponse::NotFound
        );

        let good = Announcement::sign(&key_a, now, &[me], None);
        assert_eq!(
            ask(HubRequest::Announce(good.clone())).await,
            HubResponse::Accepted
        );
        // The same one again is a replay.
        rejected(
            ask(HubRequest::Announce(good.clone())).await,
            hub_code::STALE,
            "replay",
        );
        assert_eq!(
            ask(HubRequest::Lookup {
                key: *key_a.public().as_bytes()
            })
            .await,
            HubResponse::Found(good)
        );
        assert_eq!(
            ask(HubRequest::Lookup {
                key: *other.public().as_bytes()
            })
            .await,
            HubResponse::NotFound
        );
        conn.close(0u32.into(), b"bye");
        endpoint.close().await;
    });
    assert!(
        node.log().contains("refused an announcement"),
        "the hub logs refusals: {}",
        node.log()
    );
    node.stop();
}

// ---------------------------------------------------------------------------------------------
// Load
// ---------------------------------------------------------------------------------------------

/// One hub, 20 instances syncing with it at once, 1,000 public records each: every instance
/// ends with all 20,000 records, and no sync fails (about 15 s in a debug build on two cores;
/// `bench hub` times it).
#[test]
fn twenty_instances_syncing_at_once_through_one_hub_all_get_everything() {
    fan_out(20, 1_000);
}

/// One hub, `instances` instances syncing with it at once, each publishing `records` public
/// records: every instance ends with all of them, and no sync fails.
fn fan_out(instances: usize, records: usize) {
    let hub = TestHome::new();
    let HubProcess { process: node, .. } = hub.start_hub(&["--open"]);
    let homes: Vec<TestHome> = (0..instances).map(|_| TestHome::initialized()).collect();
    for t in &homes {
        bulk_public_users(t, records);
        t.add_hub("hub", &hub, &node);
    }
    // Round 1, all at once: each pushes its records and pulls what the hub has so far.
    let round: Vec<Child> = homes.iter().map(|t| t.spawn_sync_now(&["--hub"])).collect();
    for child in round {
        let report = finish_ok(child);
        assert_eq!(count(&report, "rejected"), 0, "{report}");
    }
    // Round 2, all at once: each pulls the rest.
    let round: Vec<Child> = homes
        .iter()
        .map(|t| t.spawn_sync_now(&["--hub", "--pull-only"]))
        .collect();
    for child in round {
        let report = finish_ok(child);
        assert_eq!(count(&report, "rejected"), 0, "{report}");
    }
    let status = hub.json(["hub", "status"]);
    assert_eq!(
        status["records"].as_u64(),
        Some((instances * records) as u64),
        "{status}"
    );
    for i in status["instances"].as_array().expect("instances") {
        assert_eq!(i["last_error"], Value::Null, "no session failed: {i}");
    }
    node.stop();
    for (n, t) in homes.iter().enumerate() {
        let (_, store) = Home::new(t.home()).open_read_only().expect("open");
        assert_eq!(
            store.log_len().expect("log length"),
            (instances * records) as u64,
            "instance {n} holds every record"
        );
    }
}

/// Nodes configured with a hub's relay that dial a peer by relay URL only start on the relay
/// and move to a direct path once one exists (here: both on loopback, so holepunching finds
/// it). The endpoints are configured as wb's nodes are: the hub's relay, no address lookup.
#[test]
fn a_relayed_connection_switches_to_a_direct_path() {
    use iroh::endpoint::presets;
    use iroh::{Endpoint, RelayMode};
    let hub = TestHome::new();
    let HubProcess {
        process: hub_node,
        relay_url,
    } = hub.start_hub(&["--open", "--relay-listen", "127.0.0.1:0"]);
    let relay_url: iroh::RelayUrl = relay_url
        .expect("the hub runs a relay")
        .parse()
        .expect("a relay URL");
    const ALPN: &[u8] = b"wb-test/path";
    let rt = runtime();
    let (relayed_first, direct_later) = rt.block_on(async {
        let bind = || async {
            let map = iroh::RelayMap::from(iroh::RelayConfig::new(relay_url.clone(), None));
            Endpoint::builder(presets::Minimal)
                .relay_mode(RelayMode::Custom(map))
                .clear_address_lookup()
                .portmapper_config(iroh::endpoint::PortmapperConfig::Disabled)
                .clear_ip_transports()
                .alpns(vec![ALPN.to_vec()])
                .bind_addr("127.0.0.1:0")
                .expect("bind address")
                .bind()
                .await
                .expect("bind")
        };
        let (a, b) = (bind().await, bind().await);
        tokio::time::timeout(Duration::from_secs(20), async {
            a.online().await;
            b.online().await;
        })
        .await
        .expect("both endpoints reach the hub's relay");
        let accept = tokio::spawn({
            let b = b.clone();
            async move {
                let conn = b
                    .accept()
                    .await
                    .expect("an incoming connection")
                    .await
                    .expect("accepted");
                conn.closed().await;
            }
        });
        // A knows B by key and the relay URL only: no direct address.
        let conn = a
            .connect(
                EndpointAddr::new(b.id()).with_relay_url(relay_url.clone()),
                ALPN,
            )
            .await
            .expect("connect through the relay");
        let relayed_first = conn.paths().iter().any(|p| p.is_relay());
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut direct = false;
        while Instant::now() < deadline {
            if conn.paths().iter().any(|p| p.is_selected() && p.is_ip()) {
                direct = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        conn.close(0u32.into(), b"done");
        let _ = tokio::time::timeout(Duration::from_secs(5), accept).await;
        a.close().await;
        b.close().await;
        (relayed_first, direct)
    });
    assert!(relayed_first, "the connection starts on the relay path");
    assert!(
        direct_later,
        "the connection moves to a direct path once one exists"
    );
    hub_node.stop();
}

/// Issue 11, item 9: a registry broken by a hand edit while the hub runs fails closed: the hub
/// takes nothing until it is mended, and a revoked origin's records relayed by another instance
/// are refused before and after.
#[test]
fn a_hub_with_a_broken_registry_takes_nothing() {
    let (hub, a, b) = (
        TestHome::new(),
        TestHome::initialized(),
        TestHome::initialized(),
    );
    allow(&hub, "a", &a);
    allow(&hub, "b", &b);
    let HubProcess { process: node, .. } = hub.start_hub(&[]);
    b.add_hub("hub", &hub, &node);
    // B holds one of A's public records (received from A directly) and one of its own.
    {
        let (_, store) = Home::new(b.home()).open().expect("open B's store");
        let relayed = signed_user(&a.secret_key(), "a-relayed", Scope::Public, 0);
        store
            .apply_batch(
                &[relayed],
                &ApplyOptions::new("test", store::time::now_ms()),
            )
            .expect("apply");
    }
    put_user(&b, "b-own", "public");
    hub.ok(["hub", "revoke", &a.public_key().to_hex()]);

    let registry = hub.path("wb_peers.txt");
    let good = std::fs::read(&registry).expect("the hub's registry");
    std::fs::write(&registry, "this line is not `Name: value`\n").expect("break it");
    let run: Run = b.run(["sync", "now", "hub"]);
    wb_tests::harness::assert_one_line_error(&run);
    assert!(run.stderr.contains("registry"), "{run}");

    std::fs::write(&registry, &good).expect("mend it");
    let report = b.sync_now("hub", &[]);
    assert_eq!(report["peer"], "hub", "{report}");
    node.stop();
    let held: BTreeSet<String> = stored_records(&hub).into_iter().map(|r| r.id).collect();
    assert_eq!(held, BTreeSet::from(["b-own".to_string()]));
}
