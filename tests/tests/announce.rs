//! Issue 15, item 2: revocations that travel. `wb sync peers revoke NAME --announce` publishes a
//! signed revocation record; a node applies it only when it follows the revoker
//! (`peers trust NAME --follow-revocations`), otherwise `sync status` shows it as advice; a hub
//! applies the revocations of the instances it is told to follow; a withdrawal un-applies; a
//! forged revocation, a non-followed revoker's, or one of the node's own key changes nothing.
//! Real `wb` binaries, each syncing over QUIC on 127.0.0.1.

use protocol::revocation;
use protocol::{Record, SecretKey};
use serde_json::Value;
use store::{ApplyOptions, ListFilter};
use wb_tests::app::App;
use wb_tests::harness::{
    HubProcess, TestHome, id_set, live_ids_of, peer_entry, put_user, signed_public,
};

/// A revocation record of `revoked` with origin `origin`, signed by `signer`.
fn revocation_record(origin: &SecretKey, signer: &SecretKey, revoked: &TestHome) -> Record {
    let mut r = signed_public(
        signer,
        revocation::entity(),
        &revocation::record_id(&revoked.public_key()),
        revocation::fields(&revoked.public_key(), "forged", store::time::now_ms()),
    );
    // Claimed by `origin`: the signature is `signer`'s.
    r.origin = origin.public();
    r
}

/// A revokes X with `--announce`. B follows A: it refuses X's sessions at once, takes no record
/// of X relayed by others, and lists X as revoked by A. C does not follow A: its `sync status`
/// shows the advice with the command, and it still takes X's records. A's withdrawal un-applies
/// it at B.
#[test]
fn an_announced_revocation_applies_where_its_revoker_is_followed() {
    let (a, b, c, x) = (
        TestHome::initialized(),
        TestHome::initialized(),
        TestHome::initialized(),
        TestHome::initialized(),
    );
    let node_b = b.start_node();
    let node_c = c.start_node();
    for (t, name, other) in [
        (&b, "a", &a),
        (&b, "c", &c),
        (&b, "x", &x),
        (&c, "a", &a),
        (&c, "b", &b),
        (&c, "x", &x),
    ] {
        t.add_peer(name, other, None, false);
    }
    for t in [&a, &x] {
        t.add_peer("b", &b, Some(node_b.addr()), false);
        t.add_peer("c", &c, Some(node_c.addr()), false);
    }
    a.add_peer("x", &x, None, false);
    c.set_peer_addr("b", node_b.addr());
    let follow = b.json(["sync", "peers", "trust", "a", "--follow-revocations"]);
    assert_eq!(follow["outcome"], "following", "{follow}");
    assert_eq!(follow["trusted"], false, "following is not trust: {follow}");
    assert!(
        std::fs::read_to_string(b.home().join("wb_peers.txt"))
            .expect("registry")
            .contains("Follow-Revocations: yes"),
        "the registry keeps the setting"
    );

    // Before the announcement, X syncs with B.
    put_user(&x, "x1", "public");
    x.sync_now("b", &[]);
    assert_eq!(live_ids_of(&b, &x.public_key()), id_set(&["x1"]));

    let revoked = a.json([
        "sync",
        "peers",
        "revoke",
        "x",
        "--announce",
        "--reason",
        "lost laptop",
    ]);
    assert_eq!(revoked["revoked"], true, "{revoked}");
    assert_eq!(revoked["announcement"], "announced", "{revoked}");
    let again = a.json([
        "sync",
        "peers",
        "revoke",
        "x",
        "--announce",
        "--reason",
        "lost laptop",
    ]);
    assert_eq!(again["announcement"], "unchanged", "{again}");
    a.sync_now("b", &[]);

    // B applies it at once: X's next session is refused.
    let refused = x.run(["sync", "now", "b"]);
    assert!(!refused.status.success(), "B refuses X:\n{refused}");
    assert!(refused.stderr.contains("revoked"), "{refused}");
    let entry = peer_entry(&b, "x");
    assert_eq!(
        entry["revoked"], false,
        "the registry line is unchanged: {entry}"
    );
    assert_eq!(entry["refused"], true, "{entry}");
    assert_eq!(entry["revoked_by"][0]["revoker"], "a", "{entry}");
    assert_eq!(entry["revoked_by"][0]["reason"], "lost laptop", "{entry}");
    let text = b.ok(["sync", "peers", "list"]);
    assert!(text.contains("revoked-by:a"), "{text}");
    // B does not dial X either: `sync now x` says why, and nothing is synced.
    let dial = b.run(["sync", "now", "x"]);
    assert!(!dial.status.success(), "{dial}");
    assert!(
        dial.stderr.contains("revoked by the announcement of a"),
        "{dial}"
    );
    let status = b.json(["sync", "status"]);
    assert_eq!(
        status["revocations"]["applied"][0]["revoked"], "x",
        "{status}"
    );
    assert!(node_b.log().contains("applied a revocation"), "logged");

    // X's new record reaches C (C does not follow A), but not through B.
    put_user(&x, "x2", "public");
    x.sync_now("c", &[]);
    assert_eq!(
        live_ids_of(&c, &x.public_key()),
        id_set(&["x1", "x2"]),
        "C still takes X's records"
    );
    c.sync_now("b", &[]);
    assert_eq!(
        live_ids_of(&b, &x.public_key()),
        id_set(&["x1"]),
        "B took nothing of X from C"
    );

    // C received A's revocation through B: advice, with the command.
    let status = c.json(["sync", "status"]);
    let advice = &status["revocations"]["advice"][0];
    assert_eq!(advice["revoker"], "a", "{status}");
    assert_eq!(advice["revoked"], "x", "{status}");
    assert_eq!(
        advice["revoked_key_id"],
        x.public_key().key_id(),
        "{status}"
    );
    assert_eq!(advice["reason"], "lost laptop", "{status}");
    assert_eq!(advice["command"], "wb sync peers revoke x", "{status}");
    assert_eq!(applied_here(&status), 0, "{status}");
    let text = c.ok(["sync", "status"]);
    assert!(
        text.contains("revocations announced by others (advice, not applied):")
            && text.contains("a revoked x (")
            && text.contains("to apply: wb sync peers revoke x"),
        "{text}"
    );
    x.sync_now("c", &[]);

    // A withdraws: B admits X again from the next session on.
    let withdrawn = a.json(["sync", "peers", "unrevoke", "x", "--announce"]);
    assert_eq!(withdrawn["withdrawn"], true, "{withdrawn}");
    assert_eq!(withdrawn["revoked"], false, "{withdrawn}");
    a.sync_now("b", &[]);
    assert_eq!(peer_entry(&b, "x")["refused"], false);
    x.sync_now("b", &[]);
    assert_eq!(
        live_ids_of(&b, &x.public_key()),
        id_set(&["x1", "x2"]),
        "X's records flow again"
    );
    // The withdrawal reached C too: no advice left.
    c.sync_now("b", &[]);
    let status = c.json(["sync", "status"]);
    assert!(
        status["revocations"]["advice"]
            .as_array()
            .expect("advice")
            .is_empty(),
        "{status}"
    );

    // Not following any more: a new announcement changes nothing at B.
    b.ok(["sync", "peers", "trust", "a", "--no-follow-revocations"]);
    a.ok(["sync", "peers", "revoke", "x", "--announce"]);
    a.sync_now("b", &[]);
    x.sync_now("b", &[]);
    assert_eq!(peer_entry(&b, "x")["refused"], false);
    assert!(
        !std::fs::read_to_string(b.home().join("wb_peers.txt"))
            .expect("registry")
            .contains("Follow-Revocations"),
    );
}

/// A forged revocation (origin A, signed by someone else) is rejected like any bad record; a
/// valid one from a revoker B does not follow is advice only; one of B's own key is advice
/// only; none of them keeps X from syncing with B.
#[test]
fn forged_unfollowed_and_own_key_revocations_change_nothing() {
    let (a, b, x, z) = (
        TestHome::initialized(),
        TestHome::initialized(),
        TestHome::initialized(),
        TestHome::initialized(),
    );
    b.add_peer("a", &a, None, false);
    b.add_peer("x", &x, None, false);
    b.add_peer("z", &z, None, false);
    b.ok(["sync", "peers", "trust", "a", "--follow-revocations"]);
    let (ka, kz) = (a.secret_key(), z.secret_key());
    {
        let (_, store) = store::Home::new(b.home()).open().expect("open B");
        let opts = ApplyOptions::new("test", store::time::now_ms());
        let forged = revocation_record(&ka, &kz, &x);
        let report = store.apply_batch(&[forged], &opts).expect("apply");
        assert_eq!(report.new, 0, "a bad signature is rejected: {report:?}");
        assert_eq!(report.rejected, 1, "{report:?}");
        let unfollowed = revocation_record(&kz, &kz, &x);
        let own = revocation_record(&ka, &ka, &b);
        let report = store.apply_batch(&[unfollowed, own], &opts).expect("apply");
        assert_eq!(report.new, 2, "{report:?}");
        assert!(
            store
                .list(&ListFilter {
                    origin: Some(ka.public()),
                    entity: Some(revocation::entity()),
                    ..ListFilter::default()
                })
                .expect("list")
                .iter()
                .all(|r| r.id == b.public_key().to_hex()),
            "only A's revocation of B's own key is held from A"
        );
    }
    let node_b = b.start_node();
    x.add_peer("b", &b, Some(node_b.addr()), false);
    put_user(&x, "x1", "public");
    x.sync_now("b", &[]);
    assert_eq!(
        live_ids_of(&b, &x.public_key()),
        id_set(&["x1"]),
        "X is not refused"
    );
    assert_eq!(peer_entry(&b, "x")["refused"], false);
    let status = b.json(["sync", "status"]);
    let advice = status["revocations"]["advice"].as_array().expect("advice");
    assert_eq!(advice.len(), 2, "{status}");
    let own = advice
        .iter()
        .find(|r| r["own_key"] == true)
        .unwrap_or_else(|| panic!("advice about B's own key: {status}"));
    assert_eq!(own["revoker"], "a");
    assert_eq!(own["command"], Value::Null, "never applied: {status}");
    let z_advice = advice
        .iter()
        .find(|r| r["revoker"] == "z")
        .unwrap_or_else(|| panic!("advice from z: {status}"));
    assert_eq!(z_advice["revoked"], "x");
    assert_eq!(applied_here(&status), 0, "{status}");
    // B still syncs with A (its own key's revocation is not applied to anything).
    let text = b.ok(["sync", "status"]);
    assert!(
        text.contains("this instance's own key: never applied here"),
        "{text}"
    );
}

/// A hub told to follow A (`--follow-revocations`) refuses X once A's revocation reached it,
/// and stores none of X's records any more, whoever brings them.
#[test]
fn a_hub_applies_the_revocations_of_the_instances_it_follows() {
    let (hub, a, c, x, d) = (
        TestHome::new(),
        TestHome::initialized(),
        TestHome::initialized(),
        TestHome::initialized(),
        TestHome::initialized(),
    );
    let ka = a.public_key().to_base64();
    let HubProcess {
        process: hub_node, ..
    } = hub.start_hub(&["--open", "--follow-revocations", &ka]);
    for t in [&a, &c, &x, &d] {
        t.add_hub("hub", &hub, &hub_node);
    }
    a.add_peer("x", &x, None, false);
    put_user(&x, "x1", "public");
    x.sync_now("hub", &[]);
    a.ok(["sync", "peers", "revoke", "x", "--announce"]);
    a.sync_now("hub", &[]);

    // X itself is refused.
    put_user(&x, "x2", "public");
    let refused = x.run(["sync", "now", "hub"]);
    assert!(!refused.status.success(), "the hub refuses X:\n{refused}");
    // C holds X's new record (C follows no one) and pushes it: the hub does not store it.
    let node_x = x.start_node();
    c.add_peer("x", &x, Some(node_x.addr()), false);
    x.add_peer("c", &c, None, false);
    c.sync_now("x", &[]);
    assert_eq!(live_ids_of(&c, &x.public_key()), id_set(&["x1", "x2"]));
    c.sync_now("hub", &[]);
    // D pulls everything the hub has: X's old record (held from before), never x2.
    d.sync_now("hub", &[]);
    assert_eq!(
        live_ids_of(&d, &x.public_key()),
        id_set(&["x1"]),
        "the hub forwarded nothing new of X"
    );
    assert!(
        hub_node.log().contains("applied a revocation"),
        "the hub logs it"
    );
}

/// `wb app export` never hands a revocation to the app, and the app's importer, given a bundle
/// that holds one (a `wb sync export`), ignores it without harm.
#[test]
fn the_app_never_gets_a_revocation_and_ignores_one() {
    let (a, b, x) = (
        TestHome::initialized(),
        TestHome::initialized(),
        TestHome::initialized(),
    );
    let node_b = b.start_node();
    a.add_peer("b", &b, Some(node_b.addr()), false);
    a.add_peer("x", &x, None, false);
    b.add_peer("a", &a, None, false);
    a.ok([
        "sync",
        "peers",
        "revoke",
        "x",
        "--announce",
        "--reason",
        "gone",
    ]);
    a.sync_now("b", &[]);
    node_b.stop();

    let inbox = b.json(["app", "export"]);
    let dir = b.dir().join("data/wb_inbox");
    let files: Vec<String> = walk(&dir);
    assert!(
        files.iter().all(|f| !f.contains("revocation")),
        "no revocation file in the inbox: {files:?} ({inbox})"
    );
    let app = App::seeded(&b, "https://b.example");
    let before = app.dump();
    let run = app.import(&dir);
    assert!(run.status.success(), "{run}");

    // A's own export holds the revocation file; the app's importer skips it.
    let export_dir = a.dir().join("out");
    a.json(["sync", "export", &export_dir.display().to_string()]);
    let files = walk(&export_dir);
    assert!(
        files.iter().any(|f| f.contains("revocation")),
        "the bundle carries the revocation: {files:?}"
    );
    let app_a = App::seeded(&a, "https://a.example");
    let before_a = app_a.dump();
    let run = app_a.import(&export_dir);
    assert!(run.status.success(), "{run}");
    assert_eq!(
        app_a.dump(),
        before_a,
        "the app's importer skipped the revocation"
    );
    assert_eq!(app.dump(), before, "nothing from A reached B's app");
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).expect("inside").display().to_string());
            }
        }
    }
    out
}

/// How many revocations a `sync status --json` says are applied here.
fn applied_here(status: &serde_json::Value) -> usize {
    status["revocations"]["applied"]
        .as_array()
        .expect("applied")
        .len()
}
