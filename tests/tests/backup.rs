//! Online backup and restore (issue 13, item 2): `wb backup FILE` while the node runs (through
//! the control socket), `wb restore FILE` with the node stopped. A restored store has a new
//! epoch, so peers whose cursors point past the restored sequence numbers pull from the start;
//! it pulls everything from its peers and gets back what it signed after the backup.

use std::collections::BTreeMap;

use protocol::PublicKey;
use serde_json::Value;
use wb_tests::harness::{TestHome, link, put_user, put_user_named, tree};

/// Every record of one origin at `t` (a stopped home), by id: (username, deleted).
fn users_of(t: &TestHome, origin: &PublicKey) -> BTreeMap<String, String> {
    let list = t.json(["record", "list", "--deleted", "--origin", &origin.to_hex()]);
    list.as_array()
        .expect("record list --json prints an array")
        .iter()
        .map(|r| {
            (
                r["id"].as_str().expect("id").to_string(),
                username(r).to_string(),
            )
        })
        .collect()
}

fn username(r: &Value) -> &str {
    r["fields"]["Username"].as_str().unwrap_or("")
}

#[test]
fn restore_after_changes_loses_nothing_at_peers_or_here() {
    let a = TestHome::initialized();
    let b = TestHome::initialized();
    link(&a, "a", &b, "b", true);
    put_user(&a, "u1", "public");
    put_user(&a, "t1", "trusted");

    // Peers in sync before the backup (so the backup knows B as served, trusted, with its
    // cursor): only the new epoch makes B pull A's log from the start again.
    let node_a = a.start_node_with("127.0.0.1:0", &["--no-auto-sync"]);
    b.set_peer_addr("a", node_a.addr());
    b.sync_now("a", &[]);
    // Back up while A's node runs: through the control socket, on the node's open store.
    let file = a.dir().join("a.wbbackup");
    let file_arg = file.to_str().expect("utf-8 path");
    let report = a.json(["backup", file_arg]);
    assert_eq!(report["records"], 2, "{report}");
    assert_eq!(report["key_included"], false, "{report}");
    assert!(report["bytes"].as_u64().is_some_and(|b| b > 0), "{report}");
    let text = a.ok(["backup", file_arg]);
    assert!(
        text.contains("2 records") && text.contains("key is not in the backup"),
        "{text}"
    );
    // Restoring is refused while the node runs.
    let refused = a.fail(["restore", file_arg, "--yes"]);
    assert!(refused.contains("node is running"), "{refused}");

    // Changes after the backup, synced to B; B's record reaches A.
    put_user(&a, "u2", "public");
    put_user_named(&a, "u1", "u1-edited", "public");
    put_user(&a, "t2", "trusted");
    put_user(&b, "bu1", "public");
    b.sync_now("a", &[]);
    node_a.stop();
    let ka = a.public_key();
    let at_b = users_of(&b, &ka);
    assert_eq!(at_b.get("u1").map(String::as_str), Some("u1-edited"));
    assert!(
        at_b.contains_key("u2") && at_b.contains_key("t2"),
        "{at_b:?}"
    );

    // Restore: asks first (no terminal here: refused, nothing changed), then with --yes.
    let before = tree(a.home());
    let asked = a.fail(["restore", file_arg]);
    assert!(asked.contains("--yes"), "{asked}");
    assert_eq!(tree(a.home()), before, "a refused restore changes nothing");
    let restored = a.json(["restore", file_arg, "--yes"]);
    assert_eq!(restored["records"], 2, "{restored}");
    assert!(restored["replaced"].is_string(), "{restored}");
    let here = users_of(&a, &ka);
    assert_eq!(here.get("u1").map(String::as_str), Some("u1"), "{here:?}");
    assert!(!here.contains_key("u2"), "{here:?}");

    // New changes after the restore: their sequence numbers are ones B's cursor went past.
    put_user(&a, "u3", "public");
    put_user_named(&a, "u2", "u2-new", "public");
    let node_b = b.start_node_with("127.0.0.1:0", &["--no-auto-sync"]);
    a.set_peer_addr("b", node_b.addr());
    let sync = a.sync_now("b", &[]);
    // Once recovered, a session no longer asks for our own records back.
    let again = a.sync_now("b", &[]);
    let log = node_b.log();
    node_b.stop();

    // The peer received the new changes (a new epoch: it pulled A's log from the start).
    let at_b = users_of(&b, &ka);
    assert_eq!(
        at_b.get("u3").map(String::as_str),
        Some("u3"),
        "{at_b:?}\n{sync}\n{log}"
    );
    assert_eq!(
        at_b.get("u2").map(String::as_str),
        Some("u2-new"),
        "{at_b:?}"
    );
    assert_eq!(
        at_b.get("u1").map(String::as_str),
        Some("u1-edited"),
        "{at_b:?}"
    );
    // A got back what it lost: its own edits and records, trusted ones too, and B's record.
    let here = users_of(&a, &ka);
    assert_eq!(
        here.get("u1").map(String::as_str),
        Some("u1-edited"),
        "{here:?}\n{sync}"
    );
    assert_eq!(
        here.get("u2").map(String::as_str),
        Some("u2-new"),
        "{here:?}"
    );
    assert!(
        here.contains_key("t2") && here.contains_key("u3"),
        "{here:?}"
    );
    let theirs = users_of(&a, &b.public_key());
    assert!(theirs.contains_key("bu1"), "{theirs:?}");
    // The second session moved nothing.
    assert_eq!(again["received"], 0, "{again}");
    // And a new edit of a recovered record lands above the version B holds.
    put_user_named(&a, "u1", "u1-after", "public");
    let node_b = b.start_node_with("127.0.0.1:0", &["--no-auto-sync"]);
    a.set_peer_addr("b", node_b.addr());
    a.sync_now("b", &[]);
    node_b.stop();
    assert_eq!(
        users_of(&b, &ka).get("u1").map(String::as_str),
        Some("u1-after")
    );
}

#[test]
fn corrupt_or_foreign_backups_are_refused_and_change_nothing() {
    let a = TestHome::initialized();
    let other = TestHome::initialized();
    put_user(&a, "u1", "public");
    put_user(&other, "o1", "public");
    let foreign = other.dir().join("other.wbbackup");
    other.ok(["backup", foreign.to_str().expect("utf-8")]);
    let before = tree(a.home());

    let junk = a.dir().join("junk.wbbackup");
    std::fs::write(&junk, b"this is not a backup").expect("write");
    let e = a.fail(["restore", junk.to_str().expect("utf-8"), "--yes"]);
    assert!(e.contains("not a usable wb backup"), "{e}");

    let e = a.fail(["restore", foreign.to_str().expect("utf-8"), "--yes"]);
    assert!(e.contains("key id"), "{e}");

    let bytes = std::fs::read(&foreign).expect("read");
    let cut = a.dir().join("cut.wbbackup");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).expect("write");
    a.fail(["restore", cut.to_str().expect("utf-8"), "--yes"]);

    let e = a.fail([
        "restore",
        a.dir().join("missing").to_str().expect("utf-8"),
        "--yes",
    ]);
    assert!(e.contains("missing"), "{e}");
    assert_eq!(tree(a.home()), before, "refused restores change nothing");

    // A backup never overwrites another file.
    let notes = a.dir().join("notes.txt");
    std::fs::write(&notes, "keep").expect("write");
    let e = a.fail(["backup", notes.to_str().expect("utf-8")]);
    assert!(e.contains("not a wb backup"), "{e}");
    assert_eq!(std::fs::read_to_string(&notes).expect("read"), "keep");
}
