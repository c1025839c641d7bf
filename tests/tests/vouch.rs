//! Vouches and the cross-instance trust graph (issue 6): `wb sync vouch` (driven through a
//! pseudo-terminal, and with `--subject`/`--yes`), `wb trust path` and `wb trust roots` across
//! instances that sync, vouches in bundles, and tampered vouches refused in bundles and on the
//! wire.

use std::fs;
use std::io::Write;
use std::path::Path;

use protocol::bundle::{BundleSignature, MANIFEST_FILE, Manifest, SIGNATURE_FILE};
use protocol::{Entity, Record, RecordKey, Scope, SecretKey, Version};
use serde_json::Value;
use sha2::{Digest, Sha256};
use store::{ListFilter, Store};
use wb_tests::harness::{
    InProcess, TestHome, assert_one_line_error, copy_tree, link, raw_push, runtime,
};
use wb_tests::pty::PtyRun;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn s(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

/// A home initialised with an instance name.
fn instance(name: &str) -> TestHome {
    let t = TestHome::new();
    t.ok(["init", "--name", name]);
    t
}

/// A public user record; `invited_by` is its `Invited-By` reference.
fn put_user(t: &TestHome, id: &str, username: &str, invited_by: Option<&str>) {
    let username = format!("Username={username}");
    let mut args = vec![
        "record", "put", "user", id, "--scope", "public", "--field", &username,
    ];
    let invited = invited_by.map(|i| format!("Invited-By={i}"));
    if let Some(i) = &invited {
        args.extend(["--field", i.as_str()]);
    }
    t.ok(args);
}

/// `<origin hex>/<id>`: a user of `t`.
fn user_ref(t: &TestHome, id: &str) -> String {
    format!("{}/{id}", t.public_key().to_hex())
}

/// Exports `from`'s public records and imports them into `to`.
fn carry(from: &TestHome, to: &TestHome) {
    let dir = from
        .dir()
        .join(format!("bundle-{}", to.public_key().key_id()));
    from.ok(["sync", "export", s(&dir)]);
    to.ok(["sync", "import", s(&dir)]);
}

/// The live vouch records `t` holds, any origin.
fn vouches(t: &TestHome) -> Vec<Value> {
    t.json(["record", "list", "--entity", "vouch"])
        .as_array()
        .expect("an array")
        .clone()
}

fn local_vouches(t: &TestHome) -> Vec<Value> {
    vouches(t)
        .into_iter()
        .filter(|v| v["local"] == true)
        .collect()
}

/// A: admin (root) and ann (invited by admin). B: root, and bob invited by root. C: carl, a
/// root. A holds B's and C's public users (through bundles).
fn three_instances() -> (TestHome, TestHome, TestHome) {
    let (a, b, c) = (instance("alpha"), instance("beta"), instance("gamma"));
    put_user(&a, "1", "admin", None);
    put_user(&a, "2", "ann", Some("1"));
    put_user(&b, "1", "root", None);
    put_user(&b, "2", "bob", Some("1"));
    put_user(&c, "1", "carl", None);
    carry(&b, &a);
    carry(&c, &a);
    (a, b, c)
}

// ---------------------------------------------------------------------------------------------
// wb sync vouch
// ---------------------------------------------------------------------------------------------

#[test]
fn interactive_vouch_asks_for_the_operator_and_each_root_user_on_a_terminal() {
    interactive_vouch(false);
}

/// With a node running on the home, the questions are asked by the client on its terminal and
/// the node makes the vouches: the same dialogue and the same result.
#[test]
fn interactive_vouch_works_through_a_running_node() {
    interactive_vouch(true);
}

fn interactive_vouch(with_node: bool) {
    let (a, b, c) = three_instances();
    let node = with_node.then(|| a.start_node());
    let mut run = PtyRun::spawn(&a, &["sync", "vouch"]);
    run.expect("username");
    run.send_line("admin");
    let listing = run.expect("not yet vouched for by this instance:");
    assert!(listing.contains("2 root users"), "{listing}");
    // Two questions, in an order of the instances' key ids: answer by who is asked about.
    let mut asked = Vec::new();
    for _ in 0..2 {
        let question = run.expect("[y/n] ");
        let who = if question.contains("root (") {
            run.send_line("y");
            "root"
        } else if question.contains("carl (") {
            // A wrong answer is asked again.
            run.send_line("perhaps");
            run.expect("Please answer y or n.");
            run.expect("[y/n] ");
            run.send_line("n");
            "carl"
        } else {
            panic!("unexpected question: {question}");
        };
        assert!(
            question.contains(&format!("key id {}", b.public_key().key_id()))
                || question.contains(&format!("key id {}", c.public_key().key_id())),
            "the question names the user's instance: {question}"
        );
        asked.push(who);
    }
    asked.sort_unstable();
    assert_eq!(asked, ["carl", "root"]);
    let (status, transcript) = run.finish();
    assert!(status.success(), "wb sync vouch failed:\n{transcript}");
    assert!(
        transcript.contains("vouched for 1 of 2 users") && transcript.contains("not vouched for"),
        "summary:\n{transcript}"
    );
    assert!(
        !transcript.contains("ann ("),
        "ann is not a root:\n{transcript}"
    );

    let made = local_vouches(&a);
    assert_eq!(made.len(), 1, "{made:#?}");
    let v = &made[0];
    assert_eq!(v["fields"]["Voucher"], "1");
    assert_eq!(v["fields"]["Subject"], user_ref(&b, "1"));
    assert!(
        v["fields"]["Created-At"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    assert_eq!(v["scope"], "public", "a vouch is public by default");
    assert_eq!(v["signed"], true);
    if let Some(node) = node {
        assert!(
            node.log().contains("control"),
            "the vouches were made by the node:\n{}",
            node.log()
        );
        node.stop();
    }
}

#[test]
fn a_terminal_session_ended_early_creates_nothing() {
    let (a, _, _) = three_instances();
    let mut run = PtyRun::spawn(&a, &["sync", "vouch", "--voucher", "admin"]);
    run.expect("[y/n] ");
    run.send_line("y");
    run.expect("[y/n] ");
    // Ctrl-D: the end of input.
    run.master.write_all(&[4]).expect("send EOF");
    let (status, transcript) = run.finish();
    assert!(!status.success(), "{transcript}");
    assert!(transcript.contains("nothing changed"), "{transcript}");
    assert!(local_vouches(&a).is_empty());
}

#[test]
fn subject_and_yes_vouch_without_asking_and_refuse_duplicates_and_unknown_users() {
    let (a, b, c) = three_instances();
    link(&a, "alpha", &b, "beta", false);

    // Without a terminal and without the flags: a clear refusal, not a hang.
    let err = a.fail(["sync", "vouch"]);
    assert!(err.contains("--voucher") && err.contains("--yes"), "{err}");
    let err = a.fail(["sync", "vouch", "--voucher", "admin"]);
    assert!(err.contains("--yes"), "{err}");

    // What would be offered, changing nothing (the control-socket client's first step).
    let listed = a.json(["sync", "vouch", "--list-candidates", "--voucher", "admin"]);
    let refs: Vec<&str> = listed["candidates"]
        .as_array()
        .expect("candidates")
        .iter()
        .map(|c| c["ref"].as_str().expect("ref"))
        .collect();
    let (b_root, c_root) = (user_ref(&b, "1"), user_ref(&c, "1"));
    assert_eq!(refs.len(), 2, "{listed:#}");
    assert!(refs.contains(&b_root.as_str()) && refs.contains(&c_root.as_str()));
    // With --subject, the subjects themselves (so a client can ask about each).
    let listed = a.json([
        "sync",
        "vouch",
        "--list-candidates",
        "--voucher",
        "admin",
        "--subject",
        "beta/root",
    ]);
    let candidates = listed["candidates"].as_array().expect("candidates");
    assert_eq!(candidates.len(), 1, "{listed:#}");
    assert_eq!(candidates[0]["ref"], b_root);
    assert_eq!(candidates[0]["username"], "root");
    assert!(local_vouches(&a).is_empty());

    // The voucher must be a local user; the subject a known one.
    let err = a.fail(["sync", "vouch", "--voucher", "nobody", "--yes"]);
    assert!(
        err.contains("nobody") && err.contains("local user"),
        "{err}"
    );
    let unknown = user_ref(&b, "42");
    let err = a.fail([
        "sync",
        "vouch",
        "--voucher",
        "admin",
        "--subject",
        &unknown,
        "--yes",
    ]);
    assert!(err.contains("no user") && err.contains("42"), "{err}");
    let err = a.fail([
        "sync",
        "vouch",
        "--voucher",
        "admin",
        "--subject",
        "admin",
        "--yes",
    ]);
    assert!(err.contains("themselves"), "{err}");
    assert!(local_vouches(&a).is_empty(), "refusals create nothing");

    // A subject by peer name and username.
    let j = a.json([
        "sync",
        "vouch",
        "--voucher",
        "admin",
        "--subject",
        "beta/root",
        "--yes",
        "--note",
        "Met at the regional meetup.",
    ]);
    let created = j["created"].as_array().expect("created");
    assert_eq!(created.len(), 1, "{j:#}");
    assert_eq!(created[0]["subject"]["ref"], b_root);
    let vouch = &created[0]["vouch"];
    let id = vouch["id"].as_str().expect("id").to_string();
    assert_eq!(vouch["body"], "Met at the regional meetup.");
    assert_eq!(vouch["scope"], "public");

    // A second vouch for the same pair is refused, whichever way it is made.
    let err = a.fail([
        "sync",
        "vouch",
        "--voucher",
        "admin",
        "--subject",
        &b_root,
        "--yes",
    ]);
    assert!(
        err.contains("already vouches") && err.contains(&id),
        "{err}"
    );
    let subject = format!("Subject={b_root}");
    let err = a.fail([
        "record",
        "put",
        "vouch",
        "other",
        "--field",
        "Voucher=1",
        "--field",
        &subject,
    ]);
    assert!(err.contains("already vouches"), "{err}");
    assert_eq!(local_vouches(&a).len(), 1);

    // --yes alone: every root user left.
    let j = a.json(["sync", "vouch", "--voucher", "admin", "--yes"]);
    let created: Vec<&str> = j["created"]
        .as_array()
        .expect("created")
        .iter()
        .map(|c| c["subject"]["ref"].as_str().expect("ref"))
        .collect();
    assert_eq!(created, [c_root.as_str()]);
    let j = a.json(["sync", "vouch", "--voucher", "admin", "--yes"]);
    assert_eq!(j["created"], Value::Array(vec![]), "nothing left: {j:#}");

    // Withdrawing is `record rm`; then vouching again works.
    a.ok(["record", "rm", "vouch", &id]);
    assert_eq!(local_vouches(&a).len(), 1);
    let j = a.json([
        "sync",
        "vouch",
        "--voucher",
        "admin",
        "--subject",
        &b_root,
        "--yes",
    ]);
    assert_eq!(j["created"].as_array().map(Vec::len), Some(1), "{j:#}");

    // `trust roots` shows who vouched.
    let roots = a.json(["trust", "roots"]);
    let vouched: Vec<(String, bool)> = roots
        .as_array()
        .expect("array")
        .iter()
        .map(|r| {
            (
                r["user"]["username"]
                    .as_str()
                    .expect("username")
                    .to_string(),
                r["vouched"].as_bool().expect("bool"),
            )
        })
        .collect();
    for (name, want) in [("admin", false), ("root", true), ("carl", true)] {
        assert!(
            vouched.contains(&(name.to_string(), want)),
            "{name} vouched={want}: {vouched:?}"
        );
    }
    assert!(!vouched.iter().any(|(n, _)| n == "ann"), "ann is no root");
}

#[test]
fn record_put_vouch_defaults_to_public_and_dates_the_vouch() {
    let a = instance("alpha");
    put_user(&a, "1", "admin", None);
    put_user(&a, "2", "eve", None);
    let put_v1 = [
        "record",
        "put",
        "vouch",
        "v1",
        "--field",
        "Voucher=1",
        "--field",
        "Subject=2",
    ];
    let j = a.json(put_v1);
    assert_eq!(j["scope"], "public");
    let created_at = j["fields"]["Created-At"].as_str().expect("Created-At");
    // Putting the same content again keeps the date and makes no new version.
    let again = a.json(put_v1);
    assert_eq!(again["change"], "unchanged", "{again:#}");
    assert_eq!(again["fields"]["Created-At"], created_at);
    // Narrowed like any record.
    let j = a.json(["scope", "set", "vouch", "v1", "trusted"]);
    assert_eq!(j["scope"], "trusted");
    // A user's Invited-By must be a reference.
    let bad = format!("Invited-By={}/", a.public_key().to_hex());
    let err = a.fail([
        "record",
        "put",
        "user",
        "3",
        "--field",
        "Username=x",
        "--field",
        &bad,
    ]);
    assert!(err.contains("Invited-By"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// The trust graph across instances that sync
// ---------------------------------------------------------------------------------------------

/// The hops of `trust path --json` as (kind, from ref, to ref, record id, signer key id).
fn hops(path: &Value) -> Vec<(String, String, String, String, String)> {
    path["hops"]
        .as_array()
        .expect("hops")
        .iter()
        .map(|h| {
            let s = |v: &Value| v.as_str().expect("a string").to_string();
            (
                s(&h["kind"]),
                s(&h["from"]["ref"]),
                s(&h["to"]["ref"]),
                s(&h["record"]["id"]),
                s(&h["signer"]["key_id"]),
            )
        })
        .collect()
}

#[test]
fn a_vouch_synced_between_two_roots_connects_their_users_and_a_third_instance_sees_it() {
    let (a, b, c) = (instance("alpha"), instance("beta"), instance("gamma"));
    put_user(&a, "1", "admin", None);
    put_user(&b, "1", "root", None);
    put_user(&b, "2", "bob", Some("1"));
    put_user(&b, "3", "bea", Some("2"));
    put_user(&c, "1", "cora", None);
    link(&a, "alpha", &b, "beta", false);
    link(&a, "alpha", &c, "gamma", false);

    // A and B sync: each learns the other's users; no path yet.
    let node_b = b.start_node();
    a.set_peer_addr("beta", node_b.addr());
    a.sync_now("beta", &[]);
    let (status, _) = node_b.stop();
    assert!(status.success());
    let j = a.json(["trust", "path", "beta/bea"]);
    assert_eq!(j["found"], false, "{j:#}");
    assert!(a.ok(["trust", "path", "beta/bea"]).contains("no path"));

    // A's operator vouches for B's root; A's node serves B and C.
    a.ok([
        "sync",
        "vouch",
        "--voucher",
        "admin",
        "--subject",
        "beta/root",
        "--yes",
    ]);
    let node_a = a.start_node();
    b.set_peer_addr("alpha", node_a.addr());
    c.set_peer_addr("alpha", node_a.addr());
    b.sync_now("alpha", &[]);
    c.sync_now("alpha", &[]);
    let (status, _) = node_a.stop();
    assert!(status.success());

    let (ka, kb) = (a.public_key().key_id(), b.public_key().key_id());
    let on_a = a.json(["trust", "path", "beta/bea"]);
    assert_eq!(on_a["found"], true, "{on_a:#}");
    let want_kinds: Vec<(&str, &str)> = vec![
        ("vouch", ka.as_str()),
        ("invite", kb.as_str()),
        ("invite", kb.as_str()),
    ];
    let got = hops(&on_a);
    assert_eq!(
        got.iter()
            .map(|h| (h.0.as_str(), h.4.as_str()))
            .collect::<Vec<_>>(),
        want_kinds,
        "{on_a:#}"
    );
    assert_eq!(got[0].1, user_ref(&a, "1"));
    assert_eq!(got[0].2, user_ref(&b, "1"));
    assert_eq!(got[2].2, user_ref(&b, "3"));
    let text = a.ok(["trust", "path", "beta/bea"]);
    for needle in [
        "3 steps",
        "admin (local/1) vouched for root (beta/1)",
        "root (beta/1) invited bob (beta/2)",
        "bob (beta/2) invited bea (beta/3)",
        &format!("signed by this instance (key id {ka})"),
        &format!("signed by instance beta (key id {kb})"),
    ] {
        assert!(text.contains(needle), "{needle:?} missing:\n{text}");
    }

    // B received the vouch: its root shows as vouched for, by A's admin, signed by A.
    let roots = b.json(["trust", "roots"]);
    let root = roots
        .as_array()
        .expect("array")
        .iter()
        .find(|r| r["user"]["ref"] == user_ref(&b, "1"))
        .expect("B's root is listed");
    assert_eq!(root["vouched"], true, "{roots:#}");
    assert_eq!(root["vouches"][0]["signer"]["key_id"], ka);
    assert_eq!(root["vouches"][0]["voucher"]["username"], "admin");

    // C got everything from A only (B's records relayed with B's signatures). From C's own
    // users there is no path; from A's admin, the same path, naming the same signers.
    let from_c = c.json(["trust", "path", &user_ref(&b, "3")]);
    assert_eq!(from_c["found"], false, "{from_c:#}");
    let on_c = c.json(["trust", "path", &user_ref(&b, "3"), "--from", "alpha/admin"]);
    assert_eq!(hops(&on_c), got, "C shows A's path:\n{on_c:#}");
    let text = c.ok(["trust", "path", &user_ref(&b, "3"), "--from", "alpha/1"]);
    for needle in [
        "admin (alpha/1) vouched for root",
        &format!("signed by instance alpha (key id {ka})"),
        &format!("signed by instance with key id {kb}"),
    ] {
        assert!(text.contains(needle), "{needle:?} missing:\n{text}");
    }
}

// ---------------------------------------------------------------------------------------------
// Bundles
// ---------------------------------------------------------------------------------------------

/// A's record of one vouch, as `record get --json` prints it, without instance-relative keys.
fn portable(mut record: Value) -> Value {
    if let Some(map) = record.as_object_mut() {
        map.remove("local");
        map.remove("change");
    }
    record
}

#[test]
fn a_vouch_round_trips_through_bundles_unchanged() {
    let (a, b, _) = three_instances();
    let j = a.json([
        "sync",
        "vouch",
        "--voucher",
        "admin",
        "--subject",
        &user_ref(&b, "1"),
        "--yes",
        "--note",
        "Known them for years.\nSecond line: kept.",
    ]);
    let id = j["created"][0]["vouch"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let original = portable(a.json(["record", "get", "vouch", &id]));

    let dir_a = a.dir().join("out-a");
    let exported = a.json(["sync", "export", s(&dir_a)]);
    assert_eq!(exported["records"]["vouch"], 1, "{exported:#}");
    let file = format!("vouches/vouch_{id}.sync.txt");
    assert!(dir_a.join(&file).is_file(), "{file} exported");

    let d = instance("delta");
    d.ok(["sync", "import", s(&dir_a)]);
    let origin = a.public_key().to_hex();
    let copy = portable(d.json(["record", "get", "vouch", &id, "--origin", &origin]));
    assert_eq!(copy, original, "the vouch is unchanged by the trip");

    // And back out of D: the same file, byte for byte.
    let dir_d = d.dir().join("out-d");
    d.ok(["sync", "export", s(&dir_d)]);
    let key_id = a.public_key().key_id();
    let relayed = format!("vouches/vouch_{id}@{key_id}.sync.txt");
    assert_eq!(
        fs::read(dir_d.join(&relayed)).expect("D re-exports A's vouch"),
        fs::read(dir_a.join(&file)).expect("A's file"),
    );
    let e = instance("epsilon");
    e.ok(["sync", "import", s(&dir_d)]);
    let again = portable(e.json(["record", "get", "vouch", &id, "--origin", &origin]));
    assert_eq!(again, original, "unchanged after two trips");
}

/// Writes a manifest of `dir`'s listed files with their current digests, signed by `key`: a
/// bundle whose signature checks pass whatever was edited.
fn resign(dir: &Path, key: &SecretKey) {
    let bytes = fs::read(dir.join(MANIFEST_FILE)).expect("read the manifest");
    let manifest = Manifest::parse(&bytes).expect("the manifest parses");
    let digests = manifest.entries().iter().map(|e| {
        let bytes = fs::read(dir.join(&e.path)).unwrap_or_default();
        (e.path.clone(), <[u8; 32]>::from(Sha256::digest(&bytes)))
    });
    let manifest = Manifest::from_digests(digests)
        .expect("safe paths")
        .to_text();
    let signature = BundleSignature::sign(manifest.as_bytes(), key, store::time::now_ms());
    fs::write(dir.join(MANIFEST_FILE), &manifest).expect("write the manifest");
    fs::write(dir.join(SIGNATURE_FILE), signature.to_text()).expect("write bundle.sig");
    let key_file = dir.join(protocol::bundle::public_key_file_path(&key.public()));
    fs::create_dir_all(key_file.parent().expect("public_keys/")).expect("mkdir");
    fs::write(
        key_file,
        protocol::bundle::write_public_key_file(&key.public()),
    )
    .expect("write the public key file");
}

/// Replaces the `Subject:` header of a vouch file.
fn retarget(file: &Path, subject: &str) {
    let text = fs::read_to_string(file).expect("read the vouch file");
    let edited: Vec<String> = text
        .lines()
        .map(|l| {
            if l.starts_with("Subject: ") {
                format!("Subject: {subject}")
            } else {
                l.to_string()
            }
        })
        .collect();
    let edited = edited.join("\n") + "\n";
    assert_ne!(edited, text, "the file has a Subject header");
    fs::write(file, edited).expect("write the vouch file");
}

/// Imports `dir` into `t`, which must refuse it naming `file`, with nothing imported.
fn refused(t: &TestHome, dir: &Path, file: &str, reason: &str) {
    let before = t.all_records();
    let run = t.run(["sync", "import", s(dir)]);
    assert_one_line_error(&run);
    assert!(
        run.stderr.contains(file) && run.stderr.contains(reason),
        "the refusal names {file} and {reason:?}:\n{run}"
    );
    assert_eq!(t.all_records(), before, "a refused bundle changes nothing");
}

#[test]
fn a_tampered_vouch_in_a_bundle_is_refused() {
    let (a, b, c) = three_instances();
    a.ok([
        "sync",
        "vouch",
        "--voucher",
        "admin",
        "--subject",
        &user_ref(&b, "1"),
        "--yes",
    ]);
    let pristine = a.dir().join("pristine");
    a.ok(["sync", "export", s(&pristine)]);
    let id = local_vouches(&a)[0]["id"].as_str().expect("id").to_string();
    let file = format!("vouches/vouch_{id}.sync.txt");
    let target = instance("delta");

    // Changed after signing: the manifest no longer matches.
    let dir = a.dir().join("edited");
    copy_tree(&pristine, &dir);
    retarget(&dir.join(&file), &user_ref(&c, "1"));
    refused(&target, &dir, &file, "checksum");

    // Changed and the bundle re-signed with A's own key: the bundle checks pass, the vouch's
    // own signature does not.
    let dir = a.dir().join("resigned");
    copy_tree(&pristine, &dir);
    retarget(&dir.join(&file), &user_ref(&c, "1"));
    resign(&dir, &a.secret_key());
    refused(&target, &dir, &file, "signature");

    // Relayed: D passes A's vouch on in its own bundle, altered, signed by D. The vouch is
    // checked against its origin A, not against the bundle's signer.
    target.ok(["sync", "import", s(&pristine)]);
    let relay = target.dir().join("relay");
    target.ok(["sync", "export", s(&relay)]);
    let relayed = format!("vouches/vouch_{id}@{}.sync.txt", a.public_key().key_id());
    retarget(&relay.join(&relayed), &user_ref(&c, "1"));
    resign(&relay, &target.secret_key());
    let e = instance("epsilon");
    refused(&e, &relay, &relayed, "signature");
    assert!(vouches(&e).is_empty());
}

// ---------------------------------------------------------------------------------------------
// The wire
// ---------------------------------------------------------------------------------------------

fn signed(key: &SecretKey, entity: Entity, id: &str, fields: &[(&str, String)]) -> Record {
    let mut r = Record {
        origin: key.public(),
        entity,
        id: id.to_string(),
        version: Version::new(store::time::now_ms(), 0),
        scope: Scope::Public,
        deleted: false,
        fields: fields
            .iter()
            .map(|(n, v)| (n.to_string(), v.clone()))
            .collect(),
        body: String::new(),
        signature: None,
    };
    r.sign(key).expect("sign with the origin key");
    r
}

#[test]
fn a_tampered_vouch_on_the_wire_is_refused() {
    let rt = runtime();
    let mut receiver = rt.block_on(InProcess::start("receiver"));
    let peer = SecretKey::from_bytes(&[0x66; 32]);
    let other = SecretKey::from_bytes(&[0x67; 32]);
    receiver.add_peer("pusher", peer.public(), &[], false);

    let admin = signed(&peer, Entity::User, "1", &[("Username", "padmin".into())]);
    let other_root = format!("{}/1", other.public().to_hex());
    let good = signed(
        &peer,
        Entity::Vouch,
        "good",
        &[("Voucher", "1".into()), ("Subject", other_root.clone())],
    );
    // Signed, then the subject changed: what a man in the middle or a relay would do.
    let mut tampered = signed(
        &peer,
        Entity::Vouch,
        "tampered",
        &[("Voucher", "1".into()), ("Subject", other_root.clone())],
    );
    tampered.fields[1].1 = format!("{}/2", other.public().to_hex());
    // Signed by the pusher but claiming another origin.
    let mut forged = signed(
        &peer,
        Entity::Vouch,
        "forged",
        &[("Voucher", "1".into()), ("Subject", other_root)],
    );
    forged.origin = other.public();
    // No signature at all.
    let mut unsigned = good.clone();
    unsigned.id = "unsigned".into();
    unsigned.signature = None;

    rt.block_on(async {
        raw_push(
            &peer,
            &receiver.public(),
            receiver.addr(),
            &[admin.clone(), tampered, forged, unsigned, good.clone()],
        )
        .await;
        receiver.shutdown().await;
    });
    assert_eq!(
        held_vouches(&receiver.store),
        vec![good.key()],
        "only the intact vouch is kept (and the user record)"
    );
    let user = receiver.store.get(&admin.key()).expect("read");
    assert_eq!(user, Some(admin));
}

fn held_vouches(store: &Store) -> Vec<RecordKey> {
    store
        .list(&ListFilter {
            entity: Some(Entity::Vouch),
            include_deleted: true,
            ..Default::default()
        })
        .expect("list")
        .iter()
        .map(Record::key)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// wb trust graph (issue 13, item 7)
// ---------------------------------------------------------------------------------------------

/// A cluster's label and its nodes (`id=label`); an edge's ends and label.
type Clusters = Vec<(String, Vec<String>)>;
type Edges = Vec<(String, String, String)>;

/// The statements of a DOT picture: clusters with their labels and nodes, and edges.
fn parse_dot(text: &str) -> (Clusters, Edges) {
    let mut clusters: Clusters = Vec::new();
    let mut edges = Vec::new();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("digraph trust {"), "{text}");
    let quoted = |s: &str| -> String {
        let inner = s.strip_prefix('"').and_then(|s| s.strip_suffix('"'));
        let inner = inner.unwrap_or_else(|| panic!("not a quoted string: {s}"));
        assert!(
            !inner.replace("\\\"", "").contains('"'),
            "a bare quote: {s}"
        );
        inner.replace("\\\"", "\"").replace("\\\\", "\\")
    };
    for line in lines {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("label=") {
            let label = quoted(rest.strip_suffix(';').expect("ends with ;"));
            clusters.last_mut().expect("a cluster").0 = label;
        } else if line.starts_with("subgraph cluster_") {
            clusters.push((String::new(), Vec::new()));
        } else if let Some((from, rest)) = line
            .split_once(' ')
            .and_then(|(from, rest)| Some((from, rest.strip_prefix("-> ")?)))
        {
            let (to, label) = rest.split_once(" [label=").expect("an edge label");
            let label = quoted(label.strip_suffix("];").expect("ends with ];"));
            edges.push((from.to_string(), to.to_string(), label));
        } else if let Some((id, rest)) = line.split_once(" [label=") {
            let label = quoted(rest.strip_suffix("];").expect("ends with ];"));
            let node = format!("{id}={label}");
            clusters.last_mut().expect("inside a cluster").1.push(node);
        } else {
            assert!(
                ["}", "rankdir=LR;", "node [shape=box];"].contains(&line),
                "unexpected line: {line:?}"
            );
        }
    }
    (clusters, edges)
}

/// The invite/vouch graph as DOT and as Mermaid: users grouped by instance, edges labelled,
/// a hostile username kept inside its label; `--json` gives the same nodes and edges.
#[test]
fn trust_graph_draws_users_by_instance_with_invite_and_vouch_edges() {
    let (a, b, _c) = three_instances();
    put_user(&a, "3", "eve\"];\n  u0 -> u1 [label=\"x", Some("2"));
    a.ok([
        "sync",
        "vouch",
        "--voucher",
        "admin",
        "--subject",
        &user_ref(&b, "1"),
        "--yes",
    ]);
    let dot = a.ok(["trust", "graph"]);
    let (clusters, edges) = parse_dot(&dot);
    assert_eq!(clusters.len(), 3, "alpha, beta, gamma: {dot}");
    let users: usize = clusters.iter().map(|(_, n)| n.len()).sum();
    assert_eq!(users, 6, "admin, ann, eve, root, bob, carl: {dot}");
    assert!(
        clusters
            .iter()
            .any(|(label, nodes)| label.starts_with("this instance")
                && nodes.iter().any(|n| n.contains("eve\"];")))
    );
    let mut kinds: Vec<&str> = edges.iter().map(|(_, _, k)| k.as_str()).collect();
    kinds.sort();
    assert_eq!(kinds, ["invite", "invite", "invite", "vouch"], "{dot}");

    let mermaid = a.ok(["trust", "graph", "--format", "mermaid"]);
    let mut lines = mermaid.lines();
    assert_eq!(lines.next(), Some("flowchart LR"));
    let (mut subgraphs, mut nodes, mut links) = (0, 0, Vec::new());
    for line in lines {
        let line = line.trim();
        if line.starts_with("subgraph i") {
            subgraphs += 1;
        } else if line == "end" {
        } else if let Some((_, rest)) = line.split_once(" -->|") {
            links.push(rest.split_once('|').expect("a label").0.to_string());
        } else {
            let (_, label) = line.split_once("[\"").expect("a node");
            let label = label.strip_suffix("\"]").expect("a closed label");
            assert!(!label.contains('"'), "a bare quote in {line:?}");
            nodes += 1;
        }
    }
    assert_eq!((subgraphs, nodes), (3, 6), "{mermaid}");
    links.sort();
    assert_eq!(links, ["invite", "invite", "invite", "vouch"], "{mermaid}");

    let j = a.json(["trust", "graph"]);
    assert_eq!(j["users"].as_array().map(Vec::len), Some(6), "{j:#}");
    assert_eq!(j["edges"].as_array().map(Vec::len), Some(4), "{j:#}");
}
