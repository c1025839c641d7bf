//! Black-box tests of `wb sync peers` (DESIGN.md §9, §12; issue 4 item 1): the peer registry
//! `wb_peers.txt`, edited through the real binary.

use std::fs;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use protocol::PublicKey;
use serde_json::Value;
use wb_tests::harness::{TestHome, base32, key};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// The registry's bytes, `None` while it does not exist.
fn peers_file(t: &TestHome) -> Option<Vec<u8>> {
    fs::read(t.path("wb_peers.txt")).ok()
}

fn peers_text(t: &TestHome) -> String {
    fs::read_to_string(t.path("wb_peers.txt")).expect("wb_peers.txt exists")
}

/// Runs a peers command that must fail: one `error:` line containing every needle, and
/// `wb_peers.txt` byte-identical (or still absent) afterwards.
fn assert_refused(t: &TestHome, args: &[&str], needles: &[&str]) -> String {
    let before = peers_file(t);
    let err = t.fail(args);
    for needle in needles {
        assert!(
            err.contains(needle),
            "`wb {}`: error should mention {needle:?}, got: {err}",
            args.join(" ")
        );
    }
    assert_eq!(
        peers_file(t),
        before,
        "`wb {}` failed but changed wb_peers.txt",
        args.join(" ")
    );
    err
}

/// `wb sync peers add NAME --key KEY EXTRA…`, asserting success; returns its text line.
fn add(t: &TestHome, name: &str, key: &str, extra: &[&str]) -> String {
    let mut args = vec!["sync", "peers", "add", name, "--key", key];
    args.extend_from_slice(extra);
    t.ok(args)
}

fn list_json(t: &TestHome) -> Vec<Value> {
    t.json(["sync", "peers", "list"])
        .as_array()
        .expect("peers list --json prints an array")
        .clone()
}

fn names(list: &[Value]) -> Vec<&str> {
    list.iter()
        .map(|p| p["name"].as_str().expect("name"))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// add and list
// ---------------------------------------------------------------------------------------------

#[test]
fn add_accepts_base64_hex_and_base32_keys() {
    let t = TestHome::initialized();
    let forms = [
        ("b64", key(2), key(2).to_base64()),
        ("hex", key(3), key(3).to_hex()),
        ("b32", key(4), base32(&key(4))),
        ("hexupper", key(5), key(5).to_hex().to_ascii_uppercase()),
    ];
    for (name, key, text) in &forms {
        let out = add(&t, name, text, &[]);
        assert_eq!(
            out,
            format!("added peer {name} (key id {}, untrusted)\n", key.key_id())
        );
    }
    let list = list_json(&t);
    assert_eq!(names(&list), ["b32", "b64", "hex", "hexupper"]);
    for (name, key, _) in &forms {
        let p = list
            .iter()
            .find(|p| p["name"] == *name)
            .expect("peer listed");
        assert_eq!(p["public_key"], key.to_base64().as_str(), "{name}");
        assert_eq!(p["key_id"], key.key_id().as_str(), "{name}");
    }
    // The file holds the app's base64 form, whatever form was given.
    let text = peers_text(&t);
    for (_, key, _) in &forms {
        assert!(
            text.contains(&format!("Public-Key: {}\n", key.to_base64())),
            "{text}"
        );
    }
}

#[test]
fn add_json_and_flags() {
    let t = TestHome::initialized();
    let j = t.json([
        "sync",
        "peers",
        "add",
        "hub.example",
        "--key",
        &key(2).to_base64(),
        "--addr",
        "hub.example.org:4433",
        "--addr",
        "192.0.2.7:1",
        "--trusted",
        "--hub",
        "--notes",
        "  run by the co-op  ",
    ]);
    assert_eq!(j["outcome"], "added");
    assert_eq!(j["name"], "hub.example");
    assert_eq!(j["trusted"], true);
    assert_eq!(j["hub"], true);
    assert_eq!(j["revoked"], false);
    assert_eq!(
        j["addrs"],
        serde_json::json!(["hub.example.org:4433", "192.0.2.7:1"])
    );
    assert_eq!(j["notes"], "run by the co-op");
    let out = add(&t, "other", &key(3).to_base64(), &["--hub"]);
    assert_eq!(
        out,
        format!(
            "added peer other (key id {}, untrusted, hub)\n",
            key(3).key_id()
        )
    );
    let out = add(&t, "third", &key(4).to_base64(), &["--trusted"]);
    assert!(out.contains(", trusted)"), "{out}");
}

#[test]
fn list_json_has_exactly_the_documented_shape() {
    let t = TestHome::initialized();
    assert_eq!(t.json(["sync", "peers", "list"]), serde_json::json!([]));
    add(
        &t,
        "riverside",
        &key(2).to_base64(),
        &[
            "--addr",
            "192.0.2.7:4433",
            "--trusted",
            "--notes",
            "met in October",
        ],
    );
    add(&t, "lake", &key(3).to_hex(), &[]);
    let list = list_json(&t);
    assert_eq!(names(&list), ["lake", "riverside"]);
    for p in &list {
        let mut keys: Vec<&str> = p
            .as_object()
            .expect("each peer is an object")
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            // DESIGN §12's shape, plus what issue 15 (revocations that travel) added:
            // `follow_revocations`, `refused` and `revoked_by`.
            [
                "addrs",
                "follow_revocations",
                "former_keys",
                "hub",
                "key_id",
                "name",
                "notes",
                "public_key",
                "refused",
                "revoked",
                "revoked_by",
                "trusted"
            ]
        );
    }
    assert_eq!(
        list[1],
        serde_json::json!({
            "name": "riverside",
            "key_id": key(2).key_id(),
            "public_key": key(2).to_base64(),
            "addrs": ["192.0.2.7:4433"],
            "trusted": true,
            "hub": false,
            "revoked": false,
            "follow_revocations": false,
            "refused": false,
            "revoked_by": [],
            "former_keys": [],
            "notes": "met in October",
        })
    );
    assert_eq!(list[0]["addrs"], serde_json::json!([]));
    assert_eq!(list[0]["notes"], "");
    // public_key is standard base64 of the 32 raw bytes.
    let raw = B64
        .decode(list[0]["public_key"].as_str().expect("public_key"))
        .expect("base64");
    assert_eq!(raw, key(3).as_bytes());
}

#[test]
fn list_text_is_an_aligned_table() {
    let t = TestHome::initialized();
    assert_eq!(t.ok(["sync", "peers", "list"]), "no peers\n");
    add(
        &t,
        "riverside",
        &key(2).to_base64(),
        &[
            "--addr",
            "192.0.2.7:4433",
            "--addr",
            "river.example:9",
            "--trusted",
            "--notes",
            "met in October",
        ],
    );
    add(&t, "a", &key(3).to_base64(), &["--hub"]);
    add(&t, "zed", &key(4).to_base64(), &[]);
    t.ok(["sync", "peers", "revoke", "zed"]);
    let text = t.ok(["sync", "peers", "list"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[0].starts_with("NAME"), "{text}");
    for word in ["KEY ID", "FLAGS", "ADDRS", "NOTES"] {
        assert!(lines[0].contains(word), "{text}");
    }
    assert!(lines[1].starts_with("a "), "{text}");
    assert!(lines[2].starts_with("riverside "), "{text}");
    assert!(lines[3].starts_with("zed "), "{text}");
    // Columns line up: every key id starts where the header's KEY ID does.
    let col = lines[0].find("KEY ID").expect("KEY ID column");
    for (line, k) in lines[1..].iter().zip([key(3), key(2), key(4)]) {
        assert_eq!(line.find(&k.key_id()), Some(col), "{text}");
    }
    let flags = lines[0].find("FLAGS").expect("FLAGS column");
    assert_eq!(&lines[1][flags..flags + 4], "hub ", "{text}");
    assert_eq!(&lines[2][flags..flags + 8], "trusted ", "{text}");
    assert_eq!(&lines[3][flags..flags + 8], "revoked ", "{text}");
    assert!(
        lines[2].contains("192.0.2.7:4433,river.example:9"),
        "{text}"
    );
    assert!(lines[2].ends_with("met in October"), "{text}");
    assert!(
        text.lines().all(|l| l == l.trim_end()),
        "trailing spaces:\n{text}"
    );
}

// ---------------------------------------------------------------------------------------------
// The file
// ---------------------------------------------------------------------------------------------

#[test]
fn file_is_deterministic_sorted_and_stable_under_no_ops() {
    let t = TestHome::initialized();
    add(&t, "zeta", &key(2).to_hex(), &["--addr", "192.0.2.1:4433"]);
    add(
        &t,
        "alpha",
        &key(3).to_base64(),
        &["--trusted", "--notes", "first: second"],
    );
    let expected = format!(
        "Peer-ID: {}\nName: alpha\nPublic-Key: {}\nHub: no\nTrusted: yes\nRevoked: no\n\
         Notes: first: second\n\n\
         Peer-ID: {}\nName: zeta\nPublic-Key: {}\nAddr: 192.0.2.1:4433\nHub: no\nTrusted: no\n\
         Revoked: no\nNotes: \n",
        key(3).key_id(),
        key(3).to_base64(),
        key(2).key_id(),
        key(2).to_base64(),
    );
    assert_eq!(peers_text(&t), expected);

    // The same peers added in the other order give the same bytes.
    let other = TestHome::initialized();
    add(
        &other,
        "alpha",
        &base32(&key(3)),
        &["--trusted", "--notes", "first: second"],
    );
    add(
        &other,
        "zeta",
        &key(2).to_base64(),
        &["--addr", "192.0.2.1:4433"],
    );
    assert_eq!(peers_file(&other), peers_file(&t));

    // No-ops and reads leave the file byte-identical.
    let before = peers_file(&t);
    for args in [
        &["sync", "peers", "trust", "alpha"][..],
        &["sync", "peers", "untrust", "zeta"],
        &["sync", "peers", "list"],
    ] {
        t.ok(args);
        assert_eq!(peers_file(&t), before, "`wb {}`", args.join(" "));
    }
    // A change and its reversal come back to the same bytes.
    t.ok(["sync", "peers", "trust", "zeta"]);
    assert_ne!(peers_file(&t), before);
    t.ok(["sync", "peers", "untrust", "zeta"]);
    assert_eq!(peers_file(&t), before);
    let leftovers: Vec<String> = fs::read_dir(t.home())
        .expect("list home")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("wb_peers") && n != "wb_peers.txt")
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn hand_broken_file_names_the_line_and_is_left_as_is() {
    let t = TestHome::initialized();
    add(&t, "alpha", &key(2).to_base64(), &[]);
    add(&t, "beta", &key(3).to_base64(), &[]);
    let broken = peers_text(&t).replacen("Trusted: no", "Trusted: maybe", 2);
    // The first broken line is in the first block: line 5.
    assert_eq!(broken.lines().nth(4), Some("Trusted: maybe"));
    fs::write(t.path("wb_peers.txt"), &broken).expect("hand edit");
    let err = assert_refused(&t, &["sync", "peers", "list"], &["wb_peers.txt", "line 5"]);
    assert!(
        err.ends_with("line 5: Trusted must be yes or no, found \"maybe\""),
        "{err}"
    );
    for args in [
        &["sync", "peers", "trust", "alpha"][..],
        &["sync", "peers", "remove", "beta"],
        &[
            "sync",
            "peers",
            "add",
            "gamma",
            "--key",
            &key(4).to_base64(),
        ],
    ] {
        assert_refused(&t, args, &["line 5"]);
    }
    assert_eq!(peers_text(&t), broken);

    // A hand edit that keeps the format is read; comments are allowed.
    let fine = format!("# our peers\n{}", broken.replace("maybe", "yes"));
    fs::write(t.path("wb_peers.txt"), &fine).expect("hand edit");
    let list = list_json(&t);
    assert!(list.iter().all(|p| p["trusted"] == true), "{list:?}");
}

// ---------------------------------------------------------------------------------------------
// trust, untrust, revoke, remove
// ---------------------------------------------------------------------------------------------

#[test]
fn trust_untrust_revoke_and_remove() {
    let t = TestHome::initialized();
    add(&t, "riverside", &key(2).to_base64(), &[]);
    let flag = |field: &str| list_json(&t)[0][field].clone();

    assert_eq!(
        t.ok(["sync", "peers", "trust", "riverside"]),
        "peer riverside is now trusted\n"
    );
    assert_eq!(flag("trusted"), true);
    assert!(peers_text(&t).contains("Trusted: yes\n"));
    assert_eq!(
        t.ok(["sync", "peers", "trust", "riverside"]),
        "peer riverside is already trusted; nothing changed\n"
    );
    let j = t.json(["sync", "peers", "trust", "riverside"]);
    assert_eq!(j["outcome"], "unchanged");
    assert_eq!(j["name"], "riverside");
    assert_eq!(j["trusted"], true);

    assert_eq!(
        t.ok(["sync", "peers", "untrust", "riverside"]),
        "peer riverside is no longer trusted; at the next sync with it, it is told to delete \
         the trusted records it received from us\n"
    );
    assert_eq!(flag("trusted"), false);
    assert_eq!(
        t.ok(["sync", "peers", "untrust", "riverside"]),
        "peer riverside is already untrusted; nothing changed\n"
    );
    let j = t.json(["sync", "peers", "trust", "riverside"]);
    assert_eq!(j["outcome"], "trusted");

    // Revoking clears trust; a revoked peer cannot be trusted again.
    assert_eq!(
        t.ok(["sync", "peers", "revoke", "riverside"]),
        "revoked peer riverside: its connections will be refused and it receives nothing (it \
         keeps the trusted records it already received: to withdraw them, untrust it and sync \
         with it before revoking)\n"
    );
    assert_eq!(flag("revoked"), true);
    assert_eq!(flag("trusted"), false);
    assert!(peers_text(&t).contains("Trusted: no\nRevoked: yes\n"));
    assert_eq!(
        t.ok(["sync", "peers", "revoke", "riverside"]),
        "peer riverside is already revoked; nothing changed\n"
    );
    assert_refused(
        &t,
        &["sync", "peers", "trust", "riverside"],
        &["riverside is revoked", "remove"],
    );
    assert_eq!(
        t.json(["sync", "peers", "untrust", "riverside"])["outcome"],
        "unchanged"
    );

    let j = t.json(["sync", "peers", "remove", "riverside"]);
    assert_eq!(j["outcome"], "removed");
    assert_eq!(j["public_key"], key(2).to_base64().as_str());
    assert!(list_json(&t).is_empty());
    assert_eq!(peers_text(&t), "");
    // Removed, it can be added again, under the same name and key.
    add(&t, "riverside", &key(2).to_base64(), &[]);
    assert_eq!(
        t.ok(["sync", "peers", "remove", "riverside"]),
        "removed peer riverside\n"
    );
}

#[test]
fn unknown_names_are_refused_and_name_the_known_peers() {
    let t = TestHome::initialized();
    for cmd in ["remove", "trust", "untrust", "revoke"] {
        assert_refused(
            &t,
            &["sync", "peers", cmd, "ghost"],
            &["no peer named ghost", "no peers yet"],
        );
    }
    assert_eq!(peers_file(&t), None, "a refused command created the file");
    add(&t, "riverside", &key(2).to_base64(), &[]);
    add(&t, "lake", &key(3).to_base64(), &[]);
    for cmd in ["remove", "trust", "untrust", "revoke"] {
        assert_refused(
            &t,
            &["sync", "peers", cmd, "ghost"],
            &["no peer named ghost", "known peers: lake, riverside"],
        );
    }
    // Names are matched exactly: no key ids, no case folding.
    assert_refused(
        &t,
        &["sync", "peers", "trust", "Lake"],
        &["no peer named Lake"],
    );
    assert_refused(
        &t,
        &["sync", "peers", "trust", &key(3).key_id()],
        &["no peer named"],
    );
}

// ---------------------------------------------------------------------------------------------
// Refused additions
// ---------------------------------------------------------------------------------------------

#[test]
fn duplicate_names_and_keys_are_refused() {
    let t = TestHome::initialized();
    add(&t, "riverside", &key(2).to_base64(), &[]);
    assert_refused(
        &t,
        &[
            "sync",
            "peers",
            "add",
            "riverside",
            "--key",
            &key(3).to_base64(),
        ],
        &["riverside already exists", &key(2).key_id()],
    );
    // The same key in another textual form is the same key.
    for form in [key(2).to_hex(), base32(&key(2)), key(2).to_base64()] {
        assert_refused(
            &t,
            &["sync", "peers", "add", "other", "--key", &form],
            &[&key(2).key_id(), "already registered as peer riverside"],
        );
    }
}

#[test]
fn own_key_is_refused_in_every_form() {
    let t = TestHome::initialized();
    let own = PublicKey::parse(t.json(["id"])["public_key"].as_str().expect("public_key"))
        .expect("own key");
    for form in [own.to_base64(), own.to_hex(), base32(&own)] {
        assert_refused(
            &t,
            &["sync", "peers", "add", "me", "--key", &form],
            &["this instance's own key"],
        );
    }
    assert_eq!(peers_file(&t), None);
}

#[test]
fn bad_input_is_refused_with_one_line_and_no_change() {
    let t = TestHome::initialized();
    let k = key(5).to_base64();
    // Refused before the file exists: it is not created.
    assert_refused(
        &t,
        &["sync", "peers", "add", "x", "--key", &k, "--addr", "nope"],
        &["\"nope\"", "HOST:PORT"],
    );
    assert_eq!(peers_file(&t), None);
    add(&t, "riverside", &key(2).to_base64(), &[]);
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (vec!["--addr", "192.0.2.7"], vec!["\"192.0.2.7\""]),
        (vec!["--addr", "192.0.2.7:0"], vec!["\"192.0.2.7:0\""]),
        (
            vec!["--addr", "192.0.2.7:70000"],
            vec!["\"192.0.2.7:70000\""],
        ),
        (vec!["--addr", "host name:1"], vec!["\"host name:1\""]),
        (vec!["--addr", ":4433"], vec!["\":4433\""]),
        (
            vec!["--addr", "ok.example:1", "--addr", "bad"],
            vec!["\"bad\""],
        ),
        (vec!["--notes", "two\nlines"], vec!["one line"]),
        (vec!["--notes", "carriage\rreturn"], vec!["one line"]),
    ];
    for (extra, needles) in cases {
        let mut args = vec!["sync", "peers", "add", "newpeer", "--key", &k];
        args.extend(extra);
        assert_refused(&t, &args, &needles);
    }
    for bad_key in [
        "not-a-key",
        "",
        &key(5).key_id(),
        &key(5).to_hex()[..62],
        "AAAA",
    ] {
        assert_refused(
            &t,
            &["sync", "peers", "add", "newpeer", "--key", bad_key],
            &["--key", "not a public key"],
        );
    }
    // 32 bytes that are not a point on the curve.
    let not_a_point = (0..=u8::MAX)
        .map(|n| [n; 32])
        .find(|b| PublicKey::from_bytes(*b).is_err())
        .expect("some byte pattern is not a valid key");
    assert_refused(
        &t,
        &[
            "sync",
            "peers",
            "add",
            "newpeer",
            "--key",
            &B64.encode(not_a_point),
        ],
        &["--key", "not a valid Ed25519 public key"],
    );
    let long = "n".repeat(65);
    for bad_name in ["has space", "slash/name", "", "ünï", "colon:name", &long] {
        assert_refused(
            &t,
            &["sync", "peers", "add", bad_name, "--key", &k],
            &["invalid peer name"],
        );
    }
    add(&t, &"n".repeat(64), &k, &[]);
}

#[test]
fn peers_commands_before_init_say_run_wb_init_first() {
    let t = TestHome::new();
    let k = key(2).to_base64();
    for args in [
        &["sync", "peers", "list"][..],
        &["sync", "peers", "add", "riverside", "--key", &k],
        &["sync", "peers", "remove", "riverside"],
        &["sync", "peers", "trust", "riverside"],
        &["sync", "peers", "untrust", "riverside"],
        &["sync", "peers", "revoke", "riverside"],
    ] {
        let err = t.fail(args);
        assert!(
            err.contains("run `wb init` first"),
            "`wb {}`: {err}",
            args.join(" ")
        );
    }
    assert!(!t.home().exists(), "a failed command created the home");
}

// ---------------------------------------------------------------------------------------------
// sync_peers.txt: the WhiteBalloon app's file in the same home (DESIGN.md §14)
// ---------------------------------------------------------------------------------------------

/// The app's own peer file, in its INI layout.
fn app_ini() -> String {
    format!(
        "[riverside]\npath = ../riverside/data/public_sync\nurl = https://riverside.example\n\
         token = abc\npublic_key = {}\n",
        key(7).to_base64()
    )
}

#[test]
fn the_apps_sync_peers_txt_is_left_alone_and_wb_keeps_its_own() {
    let t = TestHome::initialized();
    let app = app_ini();
    fs::write(t.path("sync_peers.txt"), &app).expect("the app's file");

    let text = t.ok(["sync", "peers", "list"]);
    let note = format!(
        "no peers yet ({} belongs to the WhiteBalloon app; wb keeps its peers in {})\n",
        t.path("sync_peers.txt").display(),
        t.path("wb_peers.txt").display()
    );
    assert_eq!(text, note);
    assert_eq!(list_json(&t), Vec::<Value>::new());
    assert_eq!(peers_file(&t), None, "a read writes nothing");

    add(&t, "lake", &key(2).to_base64(), &[]);
    t.ok(["sync", "peers", "trust", "lake"]);
    add(
        &t,
        "hill",
        &key(3).to_base64(),
        &["--addr", "192.0.2.7:4433"],
    );
    t.ok(["sync", "peers", "revoke", "hill"]);
    t.ok(["sync", "peers", "remove", "hill"]);
    let list = list_json(&t);
    assert_eq!(names(&list), ["lake"]);
    assert_eq!(list[0]["trusted"], true);
    let text = t.ok(["sync", "peers", "list"]);
    assert!(text.starts_with("NAME") && text.contains("lake"), "{text}");
    assert!(!text.contains("WhiteBalloon"), "{text}");
    assert!(peers_text(&t).contains(&format!("Public-Key: {}", key(2).to_base64())));

    // The hub's allowlist is the same registry.
    t.ok(["hub", "allow", &key(4).to_base64(), "--name", "member"]);
    assert!(peers_text(&t).contains("Name: member"));
    assert_eq!(
        fs::read_to_string(t.path("sync_peers.txt")).expect("the app's file"),
        app,
        "the app's file changed"
    );
}

#[test]
fn an_old_wb_sync_peers_txt_moves_to_wb_peers_txt_once() {
    let old_home = TestHome::initialized();
    add(&old_home, "lake", &key(2).to_base64(), &["--trusted"]);
    add(
        &old_home,
        "hill",
        &key(3).to_base64(),
        &["--addr", "192.0.2.7:4433"],
    );
    let before = list_json(&old_home);
    let old = format!("# kept by hand\n{}", peers_text(&old_home));

    // A home from before the rename: only sync_peers.txt, in wb's format.
    let t = TestHome::initialized();
    fs::write(t.path("sync_peers.txt"), &old).expect("old registry");
    assert_eq!(
        list_json(&t),
        before,
        "the first command sees the same peers"
    );
    assert_eq!(
        peers_file(&t),
        Some(old.clone().into_bytes()),
        "copied as is"
    );
    let text = t.ok(["sync", "peers", "list"]);
    assert!(
        text.contains("is wb's peer registry under its old name"),
        "{text}"
    );

    // Later edits go to wb_peers.txt only; the old file is no longer read.
    t.ok(["sync", "peers", "remove", "hill"]);
    t.ok(["sync", "peers", "untrust", "lake"]);
    assert_eq!(names(&list_json(&t)), ["lake"]);
    assert!(peers_text(&t).contains("Trusted: no"));
    assert_eq!(
        fs::read_to_string(t.path("sync_peers.txt")).expect("old file"),
        old,
        "the old file changed"
    );
    fs::remove_file(t.path("sync_peers.txt")).expect("remove the old file");
    assert_eq!(names(&list_json(&t)), ["lake"]);

    // Any command migrates, not only `peers`: here the hub's allowlist.
    let other = TestHome::initialized();
    fs::write(other.path("sync_peers.txt"), &old).expect("old registry");
    let hub_list = other.ok(["hub", "list"]);
    assert!(
        hub_list.contains("hill") && hub_list.contains("lake"),
        "{hub_list}"
    );
    assert_eq!(peers_file(&other), Some(old.into_bytes()));

    // A registry broken by hand under the old name is an error naming the line, not "no peers".
    let broken = TestHome::initialized();
    let text = peers_text(&old_home).replacen("Trusted: no", "Trusted: maybe", 1);
    fs::write(broken.path("sync_peers.txt"), &text).expect("broken old registry");
    let err = broken.fail(["sync", "peers", "list"]);
    assert!(err.contains("sync_peers.txt: line"), "{err}");
    assert!(err.contains("wb_peers.txt"), "{err}");
    assert_eq!(peers_file(&broken), None);
}
