//! `wb sync prune` (forgetting what other instances sent), tickets (`wb id` → `peers add
//! --ticket`), and withdrawing trusted records from a peer that is no longer trusted (issue 4).
//! Black-box: the real `wb` binary, nodes as child processes; records with old versions are
//! written through the store API before any node runs.

use std::collections::{BTreeMap, BTreeSet};

use protocol::{Entity, PublicKey, Scope};
use serde_json::Value;
use store::{Draft, StoreError};
use wb_tests::harness::{TestHome, count, link, put_user, tree, tree_diff};

const DAY_MS: u64 = 24 * 60 * 60 * 1000;

/// A public user record written with its version dated `days_ago` days back (through the store:
/// the clock of a fresh home has issued nothing later yet).
fn put_old_user(t: &TestHome, id: &str, days_ago: u64) {
    let (key, store) = store::Home::new(t.home()).open().expect("open the home");
    let when = store::time::now_ms() - days_ago * DAY_MS;
    store
        .update_local(&key, Entity::User, id, when, |_| {
            Ok::<_, StoreError>(Draft {
                scope: Scope::Public,
                deleted: false,
                fields: vec![("Username".into(), id.into())],
                body: String::new(),
            })
        })
        .expect("write an old record");
}

/// Every record at `t` (deleted ones included), keyed by (origin key id, entity, id).
fn all(t: &TestHome) -> BTreeMap<(String, String, String), Value> {
    t.all_records()
        .as_array()
        .expect("record list --json prints an array")
        .iter()
        .map(|r| {
            let k = (
                r["origin_key_id"]
                    .as_str()
                    .expect("origin_key_id")
                    .to_string(),
                r["entity"].as_str().expect("entity").to_string(),
                r["id"].as_str().expect("id").to_string(),
            );
            (k, r.clone())
        })
        .collect()
}

/// The live (not deleted) record ids of one origin at `t`.
fn live_ids(t: &TestHome, origin: &PublicKey) -> BTreeSet<String> {
    all(t)
        .into_iter()
        .filter(|((o, _, _), r)| *o == origin.key_id() && r["deleted"] == false)
        .map(|((_, _, id), _)| id)
        .collect()
}

fn ids<const N: usize>(list: [&str; N]) -> BTreeSet<String> {
    list.iter().map(ToString::to_string).collect()
}

// ---------------------------------------------------------------------------------------------
// wb sync prune --peer
// ---------------------------------------------------------------------------------------------

#[test]
fn prune_peer_forgets_exactly_that_origin_and_the_next_sync_brings_it_back() {
    let (a, b, c) = (
        TestHome::initialized(),
        TestHome::initialized(),
        TestHome::initialized(),
    );
    put_user(&a, "mine", "public");
    put_user(&a, "secret", "private");
    put_user(&b, "b1", "public");
    put_user(&b, "b2", "public");
    b.ok(["record", "rm", "user", "b2"]);
    put_user(&b, "b3", "public");
    put_user(&c, "c1", "public");
    link(&a, "a", &b, "b", false);
    link(&a, "a", &c, "c", false);
    let (kb, kc) = (b.public_key(), c.public_key());
    let (node_b, node_c) = (b.start_node(), c.start_node());
    a.set_peer_addr("b", node_b.addr());
    a.set_peer_addr("c", node_c.addr());
    assert_eq!(count(&a.sync_now("b", &["--pull-only"]), "received"), 3);
    assert_eq!(count(&a.sync_now("c", &["--pull-only"]), "received"), 1);
    let before = all(&a);
    assert_eq!(live_ids(&a, &kb), ids(["b1", "b3"]));

    let planned = a.json(["sync", "prune", "--peer", "b", "--dry-run"]);
    assert_eq!(planned["dry_run"], true, "{planned}");
    assert_eq!(count(&planned, "total"), 3, "{planned}");
    assert_eq!(
        planned["records"],
        serde_json::json!({"user": 3}),
        "{planned}"
    );
    assert_eq!(count(&planned, "tombstones"), 1, "{planned}");
    assert_eq!(all(&a), before, "a dry run changes nothing");

    let done = a.json(["sync", "prune", "--peer", "b", "--yes"]);
    assert_eq!(done["dry_run"], false, "{done}");
    assert_eq!(done["peer"], "b", "{done}");
    assert_eq!(done["origin_key_id"], kb.key_id().as_str(), "{done}");
    assert_eq!(done["records"], serde_json::json!({"user": 3}), "{done}");
    assert_eq!(
        done["cursor"], true,
        "our cursor into b's log was dropped: {done}"
    );
    let after = all(&a);
    let expected: BTreeMap<_, _> = before
        .iter()
        .filter(|((o, _, _), _)| *o != kb.key_id())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(
        after, expected,
        "exactly b's records are gone; local and c's stay"
    );
    assert_eq!(live_ids(&a, &kc), ids(["c1"]));
    let status = a.json(["sync", "status"]);
    let row = status["peers"]
        .as_array()
        .expect("peers")
        .iter()
        .find(|p| p["name"] == "b")
        .cloned()
        .expect("b stays registered");
    assert_eq!(row["received"], 0, "b's sync state was reset: {row}");

    // Again: nothing left to prune.
    let again = a.ok(["sync", "prune", "--peer", "b", "--yes"]);
    assert!(again.contains("nothing to prune"), "{again}");

    // The cursor is gone, so the next sync pulls b's records again, from the start.
    let back = a.sync_now("b", &["--pull-only"]);
    assert_eq!(count(&back, "received"), 3, "{back}");
    assert_eq!(count(&back, "new"), 3, "{back}");
    assert_eq!(
        all(&a),
        before,
        "the next sync restores exactly what was pruned"
    );
    node_b.stop();
    node_c.stop();
}

#[test]
fn prune_by_key_id_works_for_an_origin_that_is_no_longer_a_peer() {
    let (a, b) = (TestHome::initialized(), TestHome::initialized());
    put_user(&b, "b1", "public");
    link(&a, "a", &b, "b", false);
    let node_b = b.start_node();
    a.set_peer_addr("b", node_b.addr());
    a.sync_now("b", &["--pull-only"]);
    node_b.stop();
    a.ok(["sync", "peers", "remove", "b"]);
    let kb = b.public_key();
    let text = a.ok(["sync", "prune", "--peer", &kb.key_id(), "--yes"]);
    assert!(text.contains("removed 1 records"), "{text}");
    assert!(live_ids(&a, &kb).is_empty());
}

// ---------------------------------------------------------------------------------------------
// wb sync prune --older-than
// ---------------------------------------------------------------------------------------------

#[test]
fn older_than_drops_only_old_records_of_other_origins_never_local_ones() {
    let (a, b) = (TestHome::new(), TestHome::new());
    a.ok(["init"]);
    b.ok(["init"]);
    put_old_user(&a, "mine-old", 400);
    put_old_user(&b, "old-1", 40);
    put_old_user(&b, "old-2", 31);
    put_user(&b, "fresh", "public");
    put_user(&a, "mine-new", "public");
    link(&a, "a", &b, "b", false);
    let kb = b.public_key();
    let node_b = b.start_node();
    a.set_peer_addr("b", node_b.addr());
    assert_eq!(count(&a.sync_now("b", &["--pull-only"]), "received"), 3);
    node_b.stop();
    let before = all(&a);

    let planned = a.json(["sync", "prune", "--older-than", "30", "--dry-run"]);
    assert_eq!(count(&planned, "total"), 2, "{planned}");
    assert_eq!(all(&a), before);
    let err = a.fail(["sync", "prune", "--older-than", "30"]);
    assert!(err.contains("--yes"), "no terminal to ask on: {err}");
    assert_eq!(all(&a), before);
    let done = a.json(["sync", "prune", "--older-than", "30", "--yes"]);
    assert_eq!(done["records"], serde_json::json!({"user": 2}), "{done}");
    assert_eq!(done["older_than_days"], 30, "{done}");
    assert_eq!(live_ids(&a, &kb), ids(["fresh"]));
    assert_eq!(
        live_ids(&a, &a.public_key()),
        ids(["mine-new", "mine-old"]),
        "local records are never pruned, however old"
    );
    // Everything is older than 0 days… but 0 is not a valid age; 1 day keeps the fresh one.
    let one = a.json(["sync", "prune", "--older-than", "1", "--yes"]);
    assert_eq!(count(&one, "total"), 0, "{one}");
    let text = a.ok(["sync", "prune", "--older-than", "365", "--yes"]);
    assert!(text.contains("nothing to prune"), "{text}");
    assert!(
        a.ok(["record", "get", "user", "mine-old"])
            .contains("mine-old")
    );
}

// ---------------------------------------------------------------------------------------------
// Refusals
// ---------------------------------------------------------------------------------------------

#[test]
fn prune_refusals_change_nothing() {
    let (a, b) = (TestHome::initialized(), TestHome::initialized());
    put_user(&a, "mine", "public");
    put_user(&b, "b1", "public");
    link(&a, "a", &b, "b", false);
    let node_b = b.start_node();
    a.set_peer_addr("b", node_b.addr());
    a.sync_now("b", &["--pull-only"]);
    node_b.stop();
    let records = all(&a);
    // `record list` opens the store for writing (redb then rewrites its header), so the files
    // are compared first and snapshotted again after each listing.
    let files = std::cell::RefCell::new(tree(a.home()));
    let unchanged = |what: &str| {
        let diff = tree_diff(&files.borrow(), &tree(a.home()));
        assert!(diff.is_empty(), "{what} changed {diff:?}");
        assert_eq!(all(&a), records, "{what} changed the records");
        *files.borrow_mut() = tree(a.home());
    };

    let err = a.fail(["sync", "prune", "--peer", "nobody", "--yes"]);
    assert!(err.contains("no peer named nobody"), "{err}");
    unchanged("an unknown peer");
    let stranger = wb_tests::harness::key(7);
    let err = a.fail(["sync", "prune", "--peer", &stranger.to_hex(), "--yes"]);
    assert!(err.contains("no peer named"), "{err}");
    unchanged("an unknown key");

    let own = a.public_key();
    for name in [
        "local".to_string(),
        own.to_hex(),
        own.key_id(),
        own.to_base64(),
    ] {
        let err = a.fail(["sync", "prune", "--peer", &name, "--yes"]);
        assert!(err.contains("this instance"), "{name}: {err}");
        assert!(err.contains("never pruned"), "{name}: {err}");
        unchanged("this instance's own key");
    }

    for days in ["0", "-3", "abc", "1.5", "", " ", "99999999999999999999999"] {
        let err = a.fail(["sync", "prune", "--older-than", days, "--yes"]);
        assert!(
            err.contains("positive whole number of days"),
            "{days:?}: {err}"
        );
        unchanged("a bad DAYS");
    }

    // No --yes and no terminal to ask on (the harness's stdin is /dev/null).
    let err = a.fail(["sync", "prune", "--peer", "b"]);
    assert!(err.contains("--yes"), "{err}");
    unchanged("a prune without confirmation");

    // Usage mistakes: neither or both of --peer and --older-than.
    for args in [
        vec!["sync", "prune", "--yes"],
        vec!["sync", "prune", "--peer", "b", "--older-than", "3", "--yes"],
    ] {
        let run = a.run(args.clone());
        assert_eq!(run.status.code(), Some(2), "{args:?}:\n{run}");
        unchanged("a usage mistake");
    }
}

// ---------------------------------------------------------------------------------------------
// Tickets
// ---------------------------------------------------------------------------------------------

#[test]
fn a_running_nodes_ticket_makes_peers_add_one_paste() {
    let (a, b) = (TestHome::initialized(), TestHome::initialized());
    put_user(&a, "hello", "public");
    // Before any node ran, the ticket carries only the endpoint id, and says so.
    let text = a.ok(["id"]);
    assert!(text.contains("ticket:"), "{text}");
    assert!(text.contains("no address"), "{text}");
    let bare = a.json(["id"])["ticket"]
        .as_str()
        .expect("ticket string")
        .to_string();
    assert!(bare.starts_with("endpoint"), "{bare}");

    a.add_peer("b", &b, None, false);
    let node_a = a.start_node();
    let live = a.json(["id"]);
    let ticket = live["ticket"].as_str().expect("ticket").to_string();
    assert_ne!(
        ticket, bare,
        "a running node's ticket carries its addresses"
    );
    let text = a.ok(["id"]);
    assert!(text.contains(&node_a.addr().to_string()), "{text}");

    let added = b.json(["sync", "peers", "add", "a", "--ticket", &ticket]);
    assert_eq!(
        added["public_key"],
        a.public_key().to_base64().as_str(),
        "{added}"
    );
    assert_eq!(
        added["addrs"],
        serde_json::json!([node_a.addr().to_string()]),
        "{added}"
    );
    let synced = b.sync_now("a", &[]);
    assert_eq!(count(&synced, "received"), 1, "{synced}");
    node_a.stop();
    assert_eq!(live_ids(&b, &a.public_key()), ids(["hello"]));

    // With the node stopped, `wb id` still knows where it last listened.
    let text = a.ok(["id"]);
    assert!(text.contains("last ran"), "{text}");
    assert_eq!(a.json(["id"])["ticket"], ticket.as_str());

    // A ticket without addresses adds the key, with a warning.
    let c = TestHome::initialized();
    let run = c.ok_run(["sync", "peers", "add", "a", "--ticket", &bare]);
    assert!(run.stderr.contains("no address"), "{run}");
    let listed = c.json(["sync", "peers", "list"]);
    assert_eq!(listed[0]["addrs"], serde_json::json!([]), "{listed}");
    assert_eq!(listed[0]["key_id"], a.public_key().key_id().as_str());
}

#[test]
fn bad_tickets_are_refused_and_leave_the_registry_unchanged() {
    let (a, b) = (TestHome::initialized(), TestHome::initialized());
    a.add_peer("x", &TestHome::initialized(), None, false);
    let good = b.json(["id"])["ticket"]
        .as_str()
        .expect("ticket")
        .to_string();
    let own = a.json(["id"])["ticket"]
        .as_str()
        .expect("ticket")
        .to_string();
    let files = tree(a.home());
    let cut = &good[..good.len() - 5];
    for bad in [
        "",
        "hello",
        "endpoint",
        "endpoint!!!!",
        "endpointaaaaaaaaaaaaaaaaaaaa",
        cut,
    ] {
        let err = a.fail(["sync", "peers", "add", "y", "--ticket", bad]);
        assert!(err.contains("--ticket"), "{bad:?}: {err}");
        assert!(tree_diff(&files, &tree(a.home())).is_empty(), "{bad:?}");
    }
    let err = a.fail(["sync", "peers", "add", "me", "--ticket", &own]);
    assert!(err.contains("own key"), "{err}");
    // --ticket with --key or --addr is a usage mistake.
    for extra in [vec!["--key", "AAAA"], vec!["--addr", "127.0.0.1:1"]] {
        let mut args = vec!["sync", "peers", "add", "y", "--ticket", &good];
        args.extend(extra);
        let run = a.run(args);
        assert_eq!(run.status.code(), Some(2), "{run}");
    }
    let run = a.run(["sync", "peers", "add", "y"]);
    assert_eq!(
        run.status.code(),
        Some(2),
        "neither --key nor --ticket:\n{run}"
    );
    assert!(tree_diff(&files, &tree(a.home())).is_empty());
}

// ---------------------------------------------------------------------------------------------
// Un-trusting withdraws the trusted records the peer holds
// ---------------------------------------------------------------------------------------------

#[test]
fn untrusting_a_peer_withdraws_our_trusted_records_at_its_next_pull() {
    let (a, b) = (TestHome::initialized(), TestHome::initialized());
    put_user(&a, "for-friends", "trusted");
    put_user(&a, "for-all", "public");
    link(&a, "a", &b, "b", true);
    let ka = a.public_key();
    let node_a = a.start_node();
    b.set_peer_addr("a", node_a.addr());
    assert_eq!(count(&b.sync_now("a", &["--pull-only"]), "received"), 2);
    assert_eq!(live_ids(&b, &ka), ids(["for-all", "for-friends"]));

    a.ok(["sync", "peers", "untrust", "b"]);
    let pulled = b.sync_now("a", &["--pull-only"]);
    assert_eq!(count(&pulled, "received"), 1, "one withdrawal: {pulled}");
    assert_eq!(live_ids(&b, &ka), ids(["for-all"]), "B deleted its copy");
    let gone = &all(&b)[&(ka.key_id(), "user".into(), "for-friends".into())];
    assert_eq!(gone["deleted"], true, "{gone}");
    assert_eq!(
        gone["fields"],
        serde_json::json!({}),
        "no content left: {gone}"
    );
    assert_eq!(gone["signed"], true, "{gone}");
    // Bounded and idempotent: the next pulls carry nothing.
    for _ in 0..2 {
        let again = b.sync_now("a", &["--pull-only"]);
        assert_eq!(count(&again, "received"), 0, "{again}");
    }
    node_a.stop();
    // A still has its record, trusted and unchanged in content.
    let mine = a.json(["record", "get", "user", "for-friends"]);
    assert_eq!(mine["deleted"], false, "{mine}");
    assert_eq!(mine["scope"], "trusted", "{mine}");
    assert_eq!(mine["fields"]["Username"], "for-friends", "{mine}");
}

#[test]
fn untrusting_withdraws_on_push_too_spares_trusted_peers_and_trusting_again_restores() {
    let (a, b, c) = (
        TestHome::initialized(),
        TestHome::initialized(),
        TestHome::initialized(),
    );
    put_user(&a, "t1", "trusted");
    put_user(&a, "t2", "trusted");
    put_user(&a, "p1", "public");
    link(&a, "a", &b, "b", true);
    link(&a, "a", &c, "c", true);
    let ka = a.public_key();
    let (node_b, node_c) = (b.start_node(), c.start_node());
    a.set_peer_addr("b", node_b.addr());
    a.set_peer_addr("c", node_c.addr());
    assert_eq!(count(&a.sync_now("b", &["--push-only"]), "sent"), 3);
    assert_eq!(count(&a.sync_now("c", &["--push-only"]), "sent"), 3);

    a.ok(["sync", "peers", "untrust", "b"]);
    let pushed = a.sync_now("b", &["--push-only"]);
    assert_eq!(count(&pushed, "sent"), 2, "two withdrawals: {pushed}");
    let again = a.sync_now("b", &["--push-only"]);
    assert_eq!(count(&again, "sent"), 0, "{again}");
    // C, still trusted, gets the re-signed records and keeps them live.
    a.sync_now("c", &["--push-only"]);
    node_b.stop();
    node_c.stop();
    assert_eq!(live_ids(&b, &ka), ids(["p1"]));
    assert_eq!(live_ids(&c, &ka), ids(["p1", "t1", "t2"]));
    let at_a = all(&a);
    let at_c = all(&c);
    for id in ["t1", "t2"] {
        let k = (ka.key_id(), "user".to_string(), id.to_string());
        let (mut theirs, mut ours) = (at_c[&k].clone(), at_a[&k].clone());
        theirs["local"] = Value::Null;
        ours["local"] = Value::Null;
        assert_eq!(theirs, ours, "C holds A's current {id}");
    }

    // Trusted again: B gets the records back (they are newer than its withdrawals).
    a.ok(["sync", "peers", "trust", "b"]);
    let node_b = b.start_node();
    a.set_peer_addr("b", node_b.addr());
    let back = a.sync_now("b", &["--push-only"]);
    assert!(count(&back, "sent") >= 2, "{back}");
    node_b.stop();
    assert_eq!(live_ids(&b, &ka), ids(["p1", "t1", "t2"]));
}
