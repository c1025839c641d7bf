//! Black-box tests of the `wb` command line (DESIGN.md §2–§7, §12; issue 2): the real binary,
//! run in a temporary directory per test.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::Stdio;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use protocol::SecretKey;
use serde_json::Value;
use sha2::{Digest, Sha256};
use wb_tests::harness::{Run, TestHome, assert_one_line_error};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// The app's key id: first 16 hex digits of SHA-256 of the raw public key.
fn key_id_of(public: &[u8]) -> String {
    hex::encode(Sha256::digest(public))[..16].to_string()
}

/// Decodes one line of base64 that must hold exactly 32 bytes.
fn b64_32(text: &str) -> [u8; 32] {
    B64.decode(text.trim_end_matches('\n'))
        .expect("base64")
        .try_into()
        .expect("32 bytes")
}

/// The (milliseconds, counter) of a `version` string `MS-COUNTER`, for ordering.
fn version(record: &Value) -> (u64, u64) {
    let v = record["version"].as_str().expect("version is a string");
    let (ms, counter) = v
        .split_once('-')
        .unwrap_or_else(|| panic!("version {v:?} is not MS-COUNTER"));
    (
        ms.parse().expect("version milliseconds"),
        counter.parse().expect("version counter"),
    )
}

/// Every file in `dir` with its bytes (empty map if the directory does not exist).
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let Ok(entries) = fs::read_dir(dir) else {
        return BTreeMap::new();
    };
    entries
        .map(|e| {
            let e = e.expect("directory entry");
            (
                e.file_name().to_string_lossy().into_owned(),
                fs::read(e.path()).expect("read file"),
            )
        })
        .collect()
}

/// `(entity, id)` of each record in a `record list --json` array, sorted (§12 does not fix
/// the order of entities in a list).
fn keys(list: &Value) -> Vec<(String, String)> {
    let mut keys: Vec<(String, String)> = list
        .as_array()
        .expect("record list --json prints an array")
        .iter()
        .map(|r| {
            (
                r["entity"].as_str().expect("entity").to_string(),
                r["id"].as_str().expect("id").to_string(),
            )
        })
        .collect();
    keys.sort();
    keys
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(e, i)| (e.to_string(), i.to_string()))
        .collect()
}

/// Field names of a record in the order `--json` prints them.
fn field_names(record: &Value) -> Vec<String> {
    record["fields"]
        .as_object()
        .expect("fields is an object")
        .keys()
        .cloned()
        .collect()
}

/// Writes an app-made key pair (only the two key files) into the home.
fn write_app_keys(t: &TestHome, secret_seed: [u8; 32], public_seed: [u8; 32]) {
    let keys = t.path("keys");
    fs::create_dir_all(&keys).expect("create keys dir");
    fs::write(
        keys.join("id_ed25519"),
        format!("{}\n", B64.encode(secret_seed)),
    )
    .expect("write secret key");
    let public = SecretKey::from_bytes(&public_seed).public();
    fs::write(
        keys.join("id_ed25519.pub"),
        format!("{}\n", public.to_base64()),
    )
    .expect("write public key");
}

/// Runs a command that must be refused: one `error:` line containing every needle, and no
/// change to any record.
fn assert_refused(t: &TestHome, args: &[&str], needles: &[&str]) {
    let before = t.all_records();
    let err = t.fail(args);
    for needle in needles {
        assert!(
            err.contains(needle),
            "`wb {}`: error should mention {needle:?}, got: {err}",
            args.join(" ")
        );
    }
    assert_eq!(
        t.all_records(),
        before,
        "`wb {}` failed but changed records",
        args.join(" ")
    );
}

fn put_request(t: &TestHome, id: &str, title: &str) -> Value {
    t.json([
        "record",
        "put",
        "request",
        id,
        "--field",
        &format!("Title={title}"),
        "--field",
        "Status=open",
    ])
}

// ---------------------------------------------------------------------------------------------
// wb init
// ---------------------------------------------------------------------------------------------

#[test]
fn init_creates_key_files_in_the_app_layout() {
    let t = TestHome::new();
    let out = t.json(["init"]);
    assert_eq!(out["outcome"], "created");

    let secret_text = fs::read_to_string(t.path("keys/id_ed25519")).expect("secret key file");
    let public_text = fs::read_to_string(t.path("keys/id_ed25519.pub")).expect("public key file");
    assert_eq!(secret_text.lines().count(), 1, "one line: {secret_text:?}");
    assert!(secret_text.ends_with('\n'));
    assert!(public_text.ends_with('\n'));
    let secret = b64_32(&secret_text);
    let public = b64_32(&public_text);
    assert_eq!(
        SecretKey::from_bytes(&secret).public().as_bytes(),
        &public,
        "the two key files are one key pair"
    );

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(t.path("keys/id_ed25519"))
            .expect("stat secret key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "secret key mode is {:o}", mode & 0o777);
    }

    let meta: Value = serde_json::from_str(
        &fs::read_to_string(t.path("keys/key_metadata.json")).expect("key_metadata.json"),
    )
    .expect("key_metadata.json is JSON");
    assert_eq!(meta["key_id"], key_id_of(&public).as_str());
    assert!(
        meta["created_at"].as_str().is_some_and(|s| !s.is_empty()),
        "created_at: {meta}"
    );

    // The identity printed is the one on disk.
    assert_eq!(out["public_key"], public_text.trim_end());
    assert_eq!(out["key_id"], key_id_of(&public).as_str());
    assert_eq!(out["endpoint_id"], hex::encode(public).as_str());
}

#[test]
fn init_text_output_shows_the_identity() {
    let t = TestHome::new();
    let text = t.ok(["init", "--name", "Alpha"]);
    let id = t.json(["id"]);
    for key in ["name", "endpoint_id", "key_id", "public_key"] {
        let value = id[key].as_str().expect("identity field");
        assert!(
            text.contains(value),
            "init output lacks {key} {value}:\n{text}"
        );
    }
}

#[test]
fn init_name_shows_in_id() {
    let t = TestHome::new();
    t.ok(["init", "--name", "Alpha Valley"]);
    assert_eq!(t.json(["id"])["name"], "Alpha Valley");
    assert!(t.ok(["id"]).contains("Alpha Valley"));
}

#[test]
fn init_again_keeps_the_identity_and_says_so() {
    let t = TestHome::new();
    let first = t.json(["init", "--name", "Alpha"]);
    put_request(&t, "r1", "Keep me");
    let keys_before = snapshot(&t.path("keys"));

    let text = t.ok(["init"]);
    assert!(
        text.contains("kept") || text.contains("already"),
        "second init should say the identity was kept:\n{text}"
    );
    let again = t.json(["init"]);
    assert_eq!(again["outcome"], "existing");
    assert_eq!(again["public_key"], first["public_key"]);
    assert_eq!(again["name"], "Alpha", "a plain init keeps the name");
    assert_eq!(snapshot(&t.path("keys")), keys_before, "key files changed");
    assert_eq!(t.json(["id"])["public_key"], first["public_key"]);
    assert_eq!(
        keys(&t.json(["record", "list"])),
        pairs(&[("request", "r1")])
    );
}

#[test]
fn init_honours_wb_sync_home_when_home_is_not_given() {
    let t = TestHome::new();
    let env_home = t.dir().join("from-env");
    let run: Run = t
        .bare_command()
        .env("WB_SYNC_HOME", &env_home)
        .args(["--json", "init"])
        .output()
        .expect("run wb")
        .into();
    assert!(run.status.success(), "{run}");
    assert!(env_home.join("keys/id_ed25519").is_file());
    assert!(
        !t.dir().join(".sync").exists(),
        "used .sync despite WB_SYNC_HOME"
    );
    let created: Value = serde_json::from_str(&run.stdout).expect("JSON");

    // Later commands find the same home through the variable.
    let run: Run = t
        .bare_command()
        .env("WB_SYNC_HOME", &env_home)
        .args(["--json", "id"])
        .output()
        .expect("run wb")
        .into();
    assert!(run.status.success(), "{run}");
    let id: Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(id["public_key"], created["public_key"]);
}

#[test]
fn home_flag_wins_over_wb_sync_home() {
    let t = TestHome::new();
    let env_home = t.dir().join("from-env");
    let run: Run = t
        .bare_command()
        .env("WB_SYNC_HOME", &env_home)
        .arg("--home")
        .arg(t.home())
        .arg("init")
        .output()
        .expect("run wb")
        .into();
    assert!(run.status.success(), "{run}");
    assert!(t.path("keys/id_ed25519").is_file());
    assert!(!env_home.exists(), "WB_SYNC_HOME was used despite --home");
}

#[test]
fn init_defaults_to_dot_sync_in_the_working_directory() {
    let t = TestHome::new();
    let run: Run = t
        .bare_command()
        .args(["--json", "init"])
        .output()
        .expect("run wb")
        .into();
    assert!(run.status.success(), "{run}");
    let created: Value = serde_json::from_str(&run.stdout).expect("JSON");
    let pub_file = t.dir().join(".sync/keys/id_ed25519.pub");
    assert_eq!(
        fs::read_to_string(pub_file)
            .expect(".sync/keys/id_ed25519.pub")
            .trim_end(),
        created["public_key"].as_str().expect("public_key")
    );
    assert!(!t.home().exists());
}

// ---------------------------------------------------------------------------------------------
// Adopting a key pair made by the WhiteBalloon app
// ---------------------------------------------------------------------------------------------

const APP_SEED: [u8; 32] = [
    0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a, 0xf4, 0x92, 0xec, 0x2c, 0xc4,
    0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32, 0x69, 0x19, 0x70, 0x3b, 0xac, 0x03, 0x1c, 0xae, 0x7f, 0x60,
];
const OTHER_SEED: [u8; 32] = [7; 32];

#[test]
fn init_adopts_an_app_made_key_pair() {
    let t = TestHome::new();
    write_app_keys(&t, APP_SEED, APP_SEED);
    let keys_before = snapshot(&t.path("keys"));
    let expected = SecretKey::from_bytes(&APP_SEED).public();

    let out = t.json(["init"]);
    assert_eq!(out["outcome"], "adopted");
    assert_eq!(out["public_key"], expected.to_base64().as_str());
    assert_eq!(t.json(["id"])["public_key"], expected.to_base64().as_str());
    assert_eq!(
        t.json(["id"])["key_id"],
        key_id_of(expected.as_bytes()).as_str()
    );

    let keys_after = snapshot(&t.path("keys"));
    for file in ["id_ed25519", "id_ed25519.pub"] {
        assert_eq!(keys_after[file], keys_before[file], "{file} was rewritten");
    }
    // Records are signed by the adopted key.
    let r = put_request(&t, "r1", "Hello");
    assert_eq!(r["origin"], expected.to_base64().as_str());
}

#[test]
fn mismatched_key_files_are_refused_and_left_alone() {
    let t = TestHome::new();
    write_app_keys(&t, APP_SEED, OTHER_SEED);
    let keys_before = snapshot(&t.path("keys"));

    let err = t.fail(["init"]);
    assert!(
        err.contains("id_ed25519"),
        "error should name the key file: {err}"
    );
    assert!(
        err.contains("match"),
        "error should say the keys do not match: {err}"
    );
    // keygen without --force must not paper over it either.
    let err = t.fail(["sync", "keygen"]);
    assert!(err.contains("id_ed25519"), "{err}");
    t.fail(["id"]);

    assert_eq!(
        snapshot(&t.path("keys")),
        keys_before,
        "key files were modified"
    );
    assert!(!t.path("store.redb").exists(), "a store was created");
}

#[test]
fn a_single_key_file_is_refused() {
    for (present, missing) in [
        ("id_ed25519", "id_ed25519.pub"),
        ("id_ed25519.pub", "id_ed25519"),
    ] {
        let t = TestHome::new();
        write_app_keys(&t, APP_SEED, APP_SEED);
        fs::remove_file(t.path("keys").join(missing)).expect("remove one key file");
        let keys_before = snapshot(&t.path("keys"));

        let err = t.fail(["init"]);
        assert!(
            err.contains(present),
            "error should name the key file that is there ({present}): {err}"
        );
        assert_eq!(
            snapshot(&t.path("keys")),
            keys_before,
            "init with only {present} modified the keys"
        );
    }
}

#[test]
fn garbage_in_a_key_file_is_refused_naming_it() {
    for (file, content) in [
        ("id_ed25519", "this is not base64!\n"),
        ("id_ed25519", "AAAA\n"), // base64, but not 32 bytes
        ("id_ed25519.pub", "%%%%\n"),
    ] {
        let t = TestHome::new();
        write_app_keys(&t, APP_SEED, APP_SEED);
        fs::write(t.path("keys").join(file), content).expect("write garbage");
        let keys_before = snapshot(&t.path("keys"));

        let err = t.fail(["init"]);
        assert!(
            err.contains(&t.path("keys").join(file).display().to_string()),
            "error should name {file}: {err}"
        );
        assert_eq!(
            snapshot(&t.path("keys")),
            keys_before,
            "{file} was modified"
        );
        assert!(!t.path("store.redb").exists());
    }
}

// ---------------------------------------------------------------------------------------------
// wb id
// ---------------------------------------------------------------------------------------------

#[test]
fn id_json_has_the_documented_shape() {
    let t = TestHome::new();
    t.ok(["init", "--name", "Alpha"]);
    let id = t.json(["id"]);
    let mut names: Vec<&str> = id
        .as_object()
        .expect("id --json is an object")
        .keys()
        .map(String::as_str)
        .collect();
    names.sort_unstable();
    // §12 allows keys to be added; if one is, add it here deliberately.
    assert_eq!(
        names,
        ["endpoint_id", "key_id", "name", "public_key", "ticket"],
        "{id}"
    );

    let public = b64_32(id["public_key"].as_str().expect("public_key"));
    let endpoint = id["endpoint_id"].as_str().expect("endpoint_id");
    assert_eq!(endpoint.len(), 64);
    assert!(
        endpoint
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "endpoint id is lowercase hex: {endpoint}"
    );
    assert_eq!(endpoint, hex::encode(public));
    assert_eq!(id["key_id"], key_id_of(&public).as_str());
    assert_eq!(id["name"], "Alpha");
    // On disk: the same key.
    let on_disk = fs::read_to_string(t.path("keys/id_ed25519.pub")).expect("public key file");
    assert_eq!(b64_32(&on_disk), public);

    let text = t.ok(["id"]);
    for key in ["endpoint_id", "key_id", "public_key", "name"] {
        let value = id[key].as_str().expect("string");
        assert!(text.contains(value), "`wb id` lacks {key} {value}:\n{text}");
    }
}

#[test]
fn id_without_name_is_null() {
    let t = TestHome::initialized();
    assert_eq!(t.json(["id"])["name"], Value::Null);
}

#[test]
fn commands_before_init_say_run_wb_init_first() {
    let t = TestHome::new();
    for args in [
        &["id"][..],
        &["record", "list"],
        &["record", "get", "request", "r1"],
        &["record", "rm", "request", "r1"],
        &[
            "record",
            "put",
            "request",
            "r1",
            "--field",
            "Title=x",
            "--field",
            "Status=open",
        ],
        &["scope", "set", "request", "r1", "public"],
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
// wb sync keygen
// ---------------------------------------------------------------------------------------------

#[test]
fn keygen_creates_a_key_once_then_keeps_it() {
    let t = TestHome::new();
    let created = t.json(["sync", "keygen"]);
    assert_eq!(created["outcome"], "created");
    let public = b64_32(
        &fs::read_to_string(t.path("keys/id_ed25519.pub")).expect("keygen wrote the public key"),
    );
    assert_eq!(created["public_key"], B64.encode(public).as_str());
    let keys_before = snapshot(&t.path("keys"));

    let text = t.ok(["sync", "keygen"]);
    assert!(
        text.contains("kept"),
        "keygen again should say it kept the key:\n{text}"
    );
    assert_eq!(t.json(["sync", "keygen"])["outcome"], "existing");
    assert_eq!(snapshot(&t.path("keys")), keys_before);

    // `wb init` afterwards adopts that key.
    let init = t.json(["init"]);
    assert_eq!(init["public_key"], created["public_key"]);
}

#[test]
fn keygen_force_without_confirmation_changes_nothing() {
    let t = TestHome::initialized();
    put_request(&t, "r1", "Stay");
    let keys_before = snapshot(&t.path("keys"));
    let records_before = t.all_records();

    // stdin is /dev/null: no terminal to ask on.
    let err = t.fail(["sync", "keygen", "--force"]);
    assert!(err.contains("--yes"), "error should point at --yes: {err}");

    assert_eq!(snapshot(&t.path("keys")), keys_before, "keys changed");
    assert_eq!(t.all_records(), records_before, "records changed");
}

#[test]
fn keygen_force_yes_replaces_the_key_and_resigns_local_records() {
    let t = TestHome::new();
    t.ok(["init", "--name", "Alpha"]);
    let old = t.json(["id"]);
    let old_key = old["public_key"].as_str().expect("public_key").to_string();
    let old_key_id = old["key_id"].as_str().expect("key_id").to_string();
    let old_secret = fs::read(t.path("keys/id_ed25519")).expect("secret key");
    t.ok([
        "record",
        "put",
        "request",
        "r1",
        "--scope",
        "public",
        "--field",
        "Title=Soup",
        "--field",
        "Status=open",
        "--body",
        "Bring a pot",
    ]);
    t.ok(["record", "put", "user", "u1", "--field", "Username=ann"]);
    let before = t.json(["record", "list", "--origin", "local"]);

    let run = t.ok_run(["sync", "keygen", "--force", "--yes"]);
    let said = format!("{}{}", run.stdout, run.stderr);
    assert!(
        said.contains("signed a succession naming the new one"),
        "keygen --force should say peers take the new key by the succession:\n{run}"
    );

    let new = t.json(["id"]);
    let new_key = new["public_key"].as_str().expect("public_key").to_string();
    assert_ne!(new_key, old_key, "the key was not replaced");
    assert_eq!(new["name"], "Alpha", "the instance name survives a new key");
    let on_disk = fs::read_to_string(t.path("keys/id_ed25519.pub")).expect("public key");
    assert_eq!(on_disk.trim_end(), new_key);
    let meta: Value = serde_json::from_str(
        &fs::read_to_string(t.path("keys/key_metadata.json")).expect("metadata"),
    )
    .expect("JSON");
    assert_eq!(meta["key_id"], new["key_id"]);

    let backup = t
        .path("keys")
        .join(format!("id_ed25519.replaced-{old_key_id}"));
    assert_eq!(
        fs::read(&backup).expect("backup of the old secret key"),
        old_secret
    );

    // Local records now come from the new key, with the same content.
    let after = t.json(["record", "list", "--origin", "local"]);
    assert_eq!(keys(&after), keys(&before));
    for (b, a) in before
        .as_array()
        .expect("array")
        .iter()
        .zip(after.as_array().expect("array"))
    {
        assert_eq!(a["origin"], new_key.as_str());
        for k in ["entity", "id", "scope", "fields", "body", "deleted"] {
            assert_eq!(a[k], b[k], "{k} changed when re-signing");
        }
    }
    let r1 = t.json(["record", "get", "request", "r1"]);
    assert_eq!(r1["origin"], new_key.as_str());
    assert_eq!(r1["fields"]["Title"], "Soup");

    // Under the old key they are withdrawn: tombstones, hidden unless --deleted. The one live
    // record of the old key is its succession naming the new one (issue 15).
    let new_hex = protocol::PublicKey::parse(&new_key)
        .expect("a key")
        .to_hex();
    let succession = ("succession".to_string(), new_hex);
    let old_live = t.json(["record", "list", "--origin", &old_key]);
    assert_eq!(keys(&old_live), vec![succession.clone()]);
    let old_all = t.json(["record", "list", "--deleted", "--origin", &old_key]);
    let mut want = keys(&before);
    want.push(succession);
    want.sort();
    let mut got = keys(&old_all);
    got.sort();
    assert_eq!(got, want);
    for r in old_all.as_array().expect("array") {
        assert_eq!(r["deleted"], r["entity"] != "succession", "{r}");
        assert_eq!(r["origin"], old_key.as_str());
    }
    // The old key id still resolves while its tombstones are here.
    let by_id = t.json(["record", "list", "--deleted", "--origin", &old_key_id]);
    assert_eq!(by_id, old_all);
}

/// Issue 11 item 16: a key replacement killed between its steps leaves a home every command
/// opens: killed before the store switched, the old key; after, the new one (the next command
/// finishes the key files). The hidden `--test-crash-after` exits as a kill would.
#[test]
fn keygen_force_killed_midway_leaves_a_home_that_opens() {
    for (step, new_key_wins) in [("staged", false), ("store", true)] {
        let t = TestHome::new();
        t.ok(["init", "--name", "Alpha"]);
        t.ok([
            "record",
            "put",
            "user",
            "u1",
            "--scope",
            "trusted",
            "--field",
            "Username=ann",
        ]);
        let old = t.json(["id"]);
        let run = t.run([
            "sync",
            "keygen",
            "--force",
            "--yes",
            "--test-crash-after",
            step,
        ]);
        assert_eq!(run.status.code(), Some(70), "{step}: {run}");

        let id = t.json(["id"]);
        assert_eq!(id["name"], "Alpha", "{step}");
        if new_key_wins {
            assert_ne!(id["public_key"], old["public_key"], "{step}: {id}");
        } else {
            assert_eq!(id["public_key"], old["public_key"], "{step}: {id}");
        }
        let on_disk = fs::read_to_string(t.path("keys/id_ed25519.pub")).expect("public key");
        assert_eq!(on_disk.trim_end(), id["public_key"].as_str().expect("key"));
        assert!(
            !t.path("keys/id_ed25519.next").exists(),
            "{step}: the journal was settled"
        );
        let u1 = t.json(["record", "get", "user", "u1"]);
        assert_eq!(u1["origin"], id["public_key"], "{step}: {u1}");
        assert_eq!(u1["fields"]["Username"], "ann");
        // And a later replacement works from there.
        t.ok(["sync", "keygen", "--force", "--yes"]);
        assert_ne!(t.json(["id"])["public_key"], id["public_key"]);
    }
}

// ---------------------------------------------------------------------------------------------
// wb record put / get / list / rm
// ---------------------------------------------------------------------------------------------

#[test]
fn record_put_then_get_has_the_documented_shape() {
    let t = TestHome::initialized();
    let me = t.json(["id"]);
    let put = t.json([
        "record",
        "put",
        "request",
        "r1",
        "--field",
        "Title=Need a ladder",
        "--field",
        "Status=open",
        "--field",
        "Created-By=u1",
        "--body",
        "Two metres.\nBy Friday.",
    ]);
    assert_eq!(put["change"], "created");

    let r = t.json(["record", "get", "request", "r1"]);
    for key in [
        "origin", "entity", "id", "version", "scope", "deleted", "fields", "body",
    ] {
        assert!(r.get(key).is_some(), "record get --json lacks {key}: {r}");
    }
    assert_eq!(r["origin"], me["public_key"]);
    assert_eq!(r["entity"], "request");
    assert_eq!(r["id"], "r1");
    assert_eq!(r["version"], put["version"]);
    assert_eq!(r["scope"], "private", "new records default to private");
    assert_eq!(r["deleted"], false);
    assert_eq!(
        field_names(&r),
        ["Title", "Status", "Created-By"],
        "fields keep the order given"
    );
    assert_eq!(r["fields"]["Title"], "Need a ladder");
    assert_eq!(r["fields"]["Created-By"], "u1");
    assert_eq!(r["body"], "Two metres.\nBy Friday.");
    assert_eq!(
        t.json(["record", "get", "request", "r1", "--origin", "local"]),
        r
    );
    assert_eq!(
        t.json([
            "record",
            "get",
            "request",
            "r1",
            "--origin",
            me["key_id"].as_str().expect("key_id"),
        ]),
        r
    );

    let text = t.ok(["record", "get", "request", "r1"]);
    for needle in [
        "Title: Need a ladder",
        "Status: open",
        "Two metres.",
        "private",
    ] {
        assert!(text.contains(needle), "text get lacks {needle:?}:\n{text}");
    }
}

#[test]
fn every_entity_is_accepted_with_its_required_fields_and_refused_without_each() {
    let t = TestHome::initialized();
    let entities: [(&str, &[(&str, &str)]); 5] = [
        ("user", &[("Username", "ann")]),
        ("request", &[("Title", "Soup"), ("Status", "pending")]),
        ("comment", &[("Request", "r1"), ("User-ID", "u1")]),
        (
            "invite",
            // `Created-By` is optional: the app makes invites without a user (§14).
            &[
                ("Max-Uses", "3"),
                ("Use-Count", "0"),
                ("Auto-Approve", "false"),
            ],
        ),
        ("vouch", &[("Voucher", "u1"), ("Subject", "u2")]),
    ];
    for (entity, required) in entities {
        for (skip, (missing, _)) in required.iter().enumerate() {
            let mut args = vec![
                "record".to_string(),
                "put".to_string(),
                entity.to_string(),
                "x1".to_string(),
            ];
            for (i, (name, value)) in required.iter().enumerate() {
                if i != skip {
                    args.push("--field".to_string());
                    args.push(format!("{name}={value}"));
                }
            }
            let argv: Vec<&str> = args.iter().map(String::as_str).collect();
            assert_refused(&t, &argv, &[missing]);
        }
        let mut args = vec!["record", "put", entity, "x1"];
        let fields: Vec<String> = required.iter().map(|(n, v)| format!("{n}={v}")).collect();
        for f in &fields {
            args.extend(["--field", f.as_str()]);
        }
        assert_eq!(t.json(&args)["change"], "created", "{entity}");
    }
    let anonymous = t.json([
        "record",
        "put",
        "invite",
        "x2",
        "--field",
        "Created-By=",
        "--field",
        "Max-Uses=1",
        "--field",
        "Use-Count=0",
        "--field",
        "Auto-Approve=True",
    ]);
    assert_eq!(
        anonymous["change"], "created",
        "an invite made without a user"
    );
    t.ok(["record", "rm", "invite", "x2"]);
    assert_eq!(
        keys(&t.json(["record", "list"])),
        pairs(&[
            ("comment", "x1"),
            ("invite", "x1"),
            ("request", "x1"),
            ("user", "x1"),
            ("vouch", "x1"),
        ])
    );
}

#[test]
fn record_put_with_the_same_content_makes_no_new_version() {
    let t = TestHome::initialized();
    let args = [
        "record",
        "put",
        "request",
        "r1",
        "--field",
        "Title=Soup",
        "--field",
        "Status=open",
        "--body",
        "A pot",
    ];
    let first = t.json(args);
    let text = t.ok(args);
    assert!(
        text.contains("no new version"),
        "unchanged put should say so:\n{text}"
    );
    let second = t.json(args);
    assert_eq!(second["change"], "unchanged");
    assert_eq!(second["version"], first["version"]);
    assert_eq!(
        t.json(["record", "get", "request", "r1"])["version"],
        first["version"]
    );
}

#[test]
fn record_put_with_a_changed_field_makes_a_higher_version() {
    let t = TestHome::initialized();
    let first = put_request(&t, "r1", "Soup");
    let second = put_request(&t, "r1", "Soup and bread");
    assert_eq!(second["change"], "updated");
    assert!(
        version(&second) > version(&first),
        "{} is not above {}",
        second["version"],
        first["version"]
    );
    let r = t.json(["record", "get", "request", "r1"]);
    assert_eq!(r["fields"]["Title"], "Soup and bread");
    assert_eq!(r["version"], second["version"]);

    // A changed body alone is a change too; so is dropping a field.
    let third = t.json([
        "record",
        "put",
        "request",
        "r1",
        "--field",
        "Title=Soup and bread",
        "--field",
        "Status=open",
        "--body",
        "new body",
    ]);
    assert_eq!(third["change"], "updated");
    assert!(version(&third) > version(&second));
}

#[test]
fn record_put_fields_and_body_become_exactly_what_is_given() {
    let t = TestHome::initialized();
    t.ok([
        "record",
        "put",
        "request",
        "r1",
        "--field",
        "Title=Soup",
        "--field",
        "Status=open",
        "--field",
        "Created-By=u1",
        "--body",
        "old",
    ]);
    t.ok([
        "record",
        "put",
        "request",
        "r1",
        "--field",
        "Status=completed",
        "--field",
        "Title=Soup",
    ]);
    let r = t.json(["record", "get", "request", "r1"]);
    assert_eq!(field_names(&r), ["Status", "Title"]);
    assert_eq!(r["body"], "");
}

#[test]
fn record_put_scope_defaults_to_private_and_is_kept_when_omitted() {
    let t = TestHome::initialized();
    assert_eq!(put_request(&t, "r1", "One")["scope"], "private");

    let r2 = t.json([
        "record",
        "put",
        "request",
        "r2",
        "--scope",
        "public",
        "--field",
        "Title=Two",
        "--field",
        "Status=open",
    ]);
    assert_eq!(r2["scope"], "public");
    // Changing a field without --scope keeps the scope.
    let r2 = put_request(&t, "r2", "Two, again");
    assert_eq!(r2["change"], "updated");
    assert_eq!(r2["scope"], "public");
    // --scope on an existing record changes it.
    let r2 = t.json([
        "record",
        "put",
        "request",
        "r2",
        "--scope",
        "trusted",
        "--field",
        "Title=Two, again",
        "--field",
        "Status=open",
    ]);
    assert_eq!(r2["scope"], "trusted");
    assert_eq!(r2["change"], "updated");
    assert_eq!(
        t.json(["record", "get", "request", "r2"])["scope"],
        "trusted"
    );
}

#[test]
fn record_put_reads_the_body_from_a_file() {
    let t = TestHome::initialized();
    let body = "Line one: with a colon\nLine two = with equals\n\nÜnïcode ✓\n";
    let file = t.dir().join("body.txt");
    fs::write(&file, body).expect("write body file");
    let put = t.json([
        "record",
        "put",
        "comment",
        "c1",
        "--field",
        "Request=r1",
        "--field",
        "User-ID=u1",
        "--body-file",
        file.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(put["body"], body);
    assert_eq!(t.json(["record", "get", "comment", "c1"])["body"], body);
}

#[test]
fn record_put_field_values_may_contain_equals_and_colons() {
    let t = TestHome::initialized();
    t.ok([
        "record",
        "put",
        "user",
        "u1",
        "--field",
        "Username=ann",
        "--field",
        "Bio=a=b: c == d:",
        "--field",
        "Website=https://example.org/?q=1",
    ]);
    let r = t.json(["record", "get", "user", "u1"]);
    assert_eq!(r["fields"]["Bio"], "a=b: c == d:");
    assert_eq!(r["fields"]["Website"], "https://example.org/?q=1");
    assert_eq!(field_names(&r), ["Username", "Bio", "Website"]);
}

#[test]
fn record_list_filters_by_entity_scope_and_origin() {
    let t = TestHome::initialized();
    let me = t.json(["id"]);
    put_request(&t, "r1", "Private one");
    t.ok([
        "record",
        "put",
        "request",
        "r2",
        "--scope",
        "public",
        "--field",
        "Title=Public one",
        "--field",
        "Status=open",
    ]);
    t.ok([
        "record",
        "put",
        "user",
        "u1",
        "--scope",
        "public",
        "--field",
        "Username=ann",
    ]);
    t.ok([
        "record",
        "put",
        "user",
        "u2",
        "--scope",
        "trusted",
        "--field",
        "Username=bob",
    ]);
    let all = pairs(&[
        ("request", "r1"),
        ("request", "r2"),
        ("user", "u1"),
        ("user", "u2"),
    ]);

    assert_eq!(keys(&t.json(["record", "list"])), all);
    assert_eq!(
        keys(&t.json(["record", "list", "--entity", "request"])),
        pairs(&[("request", "r1"), ("request", "r2")])
    );
    assert_eq!(
        keys(&t.json(["record", "list", "--scope", "public"])),
        pairs(&[("request", "r2"), ("user", "u1")])
    );
    assert_eq!(
        keys(&t.json(["record", "list", "--scope", "private"])),
        pairs(&[("request", "r1")])
    );
    assert_eq!(
        keys(&t.json(["record", "list", "--entity", "user", "--scope", "trusted"])),
        pairs(&[("user", "u2")])
    );
    assert_eq!(
        keys(&t.json(["record", "list", "--entity", "vouch"])),
        Vec::<(String, String)>::new()
    );
    for origin in [
        "local",
        me["key_id"].as_str().expect("key_id"),
        me["public_key"].as_str().expect("public_key"),
        me["endpoint_id"].as_str().expect("endpoint_id"),
    ] {
        assert_eq!(
            keys(&t.json(["record", "list", "--origin", origin])),
            all,
            "--origin {origin}"
        );
    }
    // A valid key that wrote nothing here: an empty list, not an error.
    let stranger = SecretKey::from_bytes(&OTHER_SEED).public().to_base64();
    assert_eq!(
        keys(&t.json(["record", "list", "--origin", &stranger])),
        Vec::<(String, String)>::new()
    );

    let text = t.ok(["record", "list", "--entity", "request"]);
    assert!(
        text.contains("r1") && text.contains("r2") && !text.contains("u1"),
        "{text}"
    );
    assert!(text.contains("Public one"), "list shows a summary:\n{text}");
}

#[test]
fn record_rm_leaves_a_tombstone() {
    let t = TestHome::initialized();
    let put = put_request(&t, "r1", "Soon gone");
    put_request(&t, "r2", "Stays");

    let text = t.ok(["record", "rm", "request", "r1"]);
    assert!(text.contains("deleted"), "{text}");
    assert_eq!(
        keys(&t.json(["record", "list"])),
        pairs(&[("request", "r2")]),
        "deleted records are hidden from list"
    );
    let all = t.json(["record", "list", "--deleted"]);
    assert_eq!(keys(&all), pairs(&[("request", "r1"), ("request", "r2")]));
    let tomb = &all[0];
    assert_eq!(tomb["deleted"], true);
    assert!(version(tomb) > version(&put), "a deletion is a new version");
    assert!(
        t.ok(["record", "list", "--deleted"]).contains("deleted"),
        "text list marks tombstones"
    );

    // Deleting again changes nothing and says so.
    let text = t.ok(["record", "rm", "request", "r1"]);
    assert!(text.contains("already deleted"), "{text}");
    assert_eq!(t.all_records(), all);

    // Putting it again brings it back with a newer version.
    let back = put_request(&t, "r1", "Back");
    assert_eq!(back["deleted"], false);
    assert!(version(&back) > version(tomb));
    assert_eq!(
        keys(&t.json(["record", "list"])),
        pairs(&[("request", "r1"), ("request", "r2")])
    );
}

// ---------------------------------------------------------------------------------------------
// Errors: one line on stderr, non-zero exit, nothing changed
// ---------------------------------------------------------------------------------------------

#[test]
fn record_put_errors_change_nothing() {
    let t = TestHome::initialized();
    put_request(&t, "r1", "Existing");
    let missing = t.dir().join("no-such-body.txt");
    let missing = missing.to_str().expect("utf-8 path");
    let cases: &[(&[&str], &[&str])] = &[
        // unknown entity
        (
            &["record", "put", "widget", "w1", "--field", "Title=x"],
            &["widget"],
        ),
        // bad scope
        (
            &[
                "record",
                "put",
                "request",
                "r2",
                "--scope",
                "everyone",
                "--field",
                "Title=x",
                "--field",
                "Status=open",
            ],
            &["everyone"],
        ),
        // missing required field, on a new and on an existing record
        (
            &["record", "put", "request", "r2", "--field", "Title=x"],
            &["Status"],
        ),
        (
            &["record", "put", "request", "r1", "--field", "Status=open"],
            &["Title"],
        ),
        (&["record", "put", "user", "u1"], &["Username"]),
        // a required field given empty is missing
        (
            &["record", "put", "user", "u1", "--field", "Username="],
            &["Username"],
        ),
        // request with a bad Status
        (
            &[
                "record",
                "put",
                "request",
                "r1",
                "--field",
                "Title=x",
                "--field",
                "Status=finished",
            ],
            &["Status", "finished"],
        ),
        // --field without `=`
        (
            &[
                "record",
                "put",
                "request",
                "r2",
                "--field",
                "Title",
                "--field",
                "Status=open",
            ],
            &["NAME=VALUE", "Title"],
        ),
        // --body-file that does not exist names the path
        (
            &[
                "record",
                "put",
                "request",
                "r2",
                "--field",
                "Title=x",
                "--field",
                "Status=open",
                "--body-file",
                missing,
            ],
            &[missing],
        ),
        // the same field twice
        (
            &[
                "record",
                "put",
                "request",
                "r2",
                "--field",
                "Title=x",
                "--field",
                "Title=y",
                "--field",
                "Status=open",
            ],
            &["Title"],
        ),
        // a header name the .sync.txt format reserves
        (
            &[
                "record",
                "put",
                "request",
                "r2",
                "--field",
                "Title=x",
                "--field",
                "Status=open",
                "--field",
                "Origin=elsewhere",
            ],
            &["Origin"],
        ),
    ];
    for (args, needles) in cases {
        assert_refused(&t, args, needles);
    }
    assert_eq!(
        t.json(["record", "get", "request", "r1"])["fields"]["Title"],
        "Existing"
    );
}

#[test]
fn unknown_entity_and_bad_scope_are_refused_everywhere() {
    let t = TestHome::initialized();
    put_request(&t, "r1", "Existing");
    let cases: &[(&[&str], &[&str])] = &[
        (&["record", "get", "widget", "r1"], &["widget"]),
        (&["record", "rm", "widget", "r1"], &["widget"]),
        (&["record", "list", "--entity", "widget"], &["widget"]),
        (&["record", "list", "--scope", "everyone"], &["everyone"]),
        (&["scope", "set", "widget", "r1", "public"], &["widget"]),
        (
            &["scope", "set", "request", "r1", "everyone"],
            &["everyone"],
        ),
    ];
    for (args, needles) in cases {
        assert_refused(&t, args, needles);
    }
}

#[test]
fn missing_records_are_errors() {
    let t = TestHome::initialized();
    put_request(&t, "r1", "Existing");
    let cases: &[(&[&str], &[&str])] = &[
        (&["record", "get", "request", "nope"], &["nope"]),
        (&["record", "get", "user", "r1"], &["r1"]),
        (&["record", "rm", "request", "nope"], &["nope"]),
        (&["scope", "set", "request", "nope", "public"], &["nope"]),
    ];
    for (args, needles) in cases {
        assert_refused(&t, args, needles);
    }
    // A deleted record's scope cannot be set.
    t.ok(["record", "rm", "request", "r1"]);
    assert_refused(
        &t,
        &["scope", "set", "request", "r1", "public"],
        &["deleted"],
    );
}

#[test]
fn unknown_origins_are_errors() {
    let t = TestHome::initialized();
    put_request(&t, "r1", "Existing");
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["record", "list", "--origin", "0123456789abcdef"],
            &["0123456789abcdef"],
        ),
        (
            &[
                "record",
                "get",
                "request",
                "r1",
                "--origin",
                "0123456789abcdef",
            ],
            &["0123456789abcdef"],
        ),
        (&["record", "list", "--origin", "not-a-key"], &["not-a-key"]),
    ];
    for (args, needles) in cases {
        assert_refused(&t, args, needles);
    }
    // A valid key we hold nothing from: the record is not found.
    let stranger = SecretKey::from_bytes(&OTHER_SEED).public();
    let err = t.fail([
        "record",
        "get",
        "request",
        "r1",
        "--origin",
        &stranger.to_base64(),
    ]);
    assert!(err.contains("r1"), "{err}");
}

#[test]
fn a_store_in_use_by_another_process_is_a_clear_error() {
    let t = TestHome::initialized();
    put_request(&t, "r1", "Existing");
    // This test process holds the store open, as a running node would.
    let held = store::Store::open(&t.path("store.redb")).expect("open the store");
    let err = t.fail(["record", "list"]);
    assert!(err.contains("in use"), "{err}");
    let err = t.fail([
        "record",
        "put",
        "request",
        "r2",
        "--field",
        "Title=x",
        "--field",
        "Status=open",
    ]);
    assert!(err.contains("in use"), "{err}");
    drop(held);
    assert_eq!(
        keys(&t.json(["record", "list"])),
        pairs(&[("request", "r1")])
    );
}

#[test]
fn usage_errors_do_not_panic() {
    // Argument syntax errors are clap's: non-zero exit, an `error:` first, never a panic.
    let t = TestHome::initialized();
    for args in [
        &["record", "frobnicate"][..],
        &["record", "put", "request"],
        &[
            "record",
            "put",
            "request",
            "r1",
            "--body",
            "a",
            "--body-file",
            "b",
        ],
        &["--no-such-flag"],
    ] {
        let run = t.run(args);
        assert!(
            !run.status.success(),
            "`wb {}` succeeded:\n{run}",
            args.join(" ")
        );
        assert_eq!(run.status.code(), Some(2), "clap's usage exit code:\n{run}");
        assert!(run.stderr.starts_with("error: "), "{run}");
        assert!(run.stdout.is_empty(), "{run}");
    }
}

// ---------------------------------------------------------------------------------------------
// wb scope set
// ---------------------------------------------------------------------------------------------

#[test]
fn scope_set_reports_the_change_and_is_idempotent() {
    let t = TestHome::initialized();
    let put = put_request(&t, "r1", "Soup");

    let text = t.ok(["scope", "set", "request", "r1", "public"]);
    assert!(
        text.contains("private") && text.contains("public"),
        "scope set should print old and new scope:\n{text}"
    );
    let r = t.json(["record", "get", "request", "r1"]);
    assert_eq!(r["scope"], "public");
    assert!(version(&r) > version(&put));
    assert_eq!(r["fields"], put["fields"], "scope set keeps the fields");

    let text = t.ok(["scope", "set", "request", "r1", "public"]);
    assert!(text.contains("nothing changed"), "{text}");
    let again = t.json(["scope", "set", "request", "r1", "public"]);
    assert_eq!(
        again["version"], r["version"],
        "no new version for the same scope"
    );
    assert_eq!(t.json(["record", "get", "request", "r1"]), r);

    // Narrowing works the same way and says peers will be told.
    let text = t.ok(["scope", "set", "request", "r1", "trusted"]);
    assert!(
        text.contains("public") && text.contains("trusted"),
        "{text}"
    );
    let narrowed = t.json(["record", "get", "request", "r1"]);
    assert_eq!(narrowed["scope"], "trusted");
    assert!(version(&narrowed) > version(&r));
}

/// The `warning:` lines a run printed on stderr.
fn warnings(run: &Run) -> Vec<&str> {
    run.stderr
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .collect()
}

#[test]
fn widening_a_record_with_contact_data_warns_naming_the_field() {
    let t = TestHome::initialized();
    t.ok([
        "record",
        "put",
        "user",
        "u1",
        "--field",
        "Username=ann",
        "--field",
        "Bio=write to ann@example.org any time",
    ]);
    t.ok([
        "record",
        "put",
        "user",
        "u2",
        "--field",
        "Username=bob",
        "--field",
        "Display-Name=Bob, call +1 (555) 010-9999",
    ]);
    t.ok([
        "record",
        "put",
        "user",
        "u3",
        "--field",
        "Username=cy",
        "--field",
        "Bio=Born 2001-04-05, likes soup",
    ]);

    let run = t.ok_run(["scope", "set", "user", "u1", "public"]);
    let w = warnings(&run);
    assert_eq!(w.len(), 1, "one warning expected:\n{run}");
    assert!(w[0].contains("Bio"), "the warning names the field:\n{run}");
    assert!(
        !w[0].contains("Username"),
        "only the contact field is named:\n{run}"
    );
    assert_eq!(t.json(["record", "get", "user", "u1"])["scope"], "public");

    let run = t.ok_run(["scope", "set", "user", "u2", "trusted"]);
    let w = warnings(&run);
    assert!(
        w.len() == 1 && w[0].contains("Display-Name"),
        "a phone number warns too:\n{run}"
    );

    // No contact data, no warning.
    let run = t.ok_run(["scope", "set", "user", "u3", "public"]);
    assert_eq!(run.stderr, "", "{run}");

    // Narrowing to private does not warn.
    let run = t.ok_run(["scope", "set", "user", "u1", "private"]);
    assert_eq!(run.stderr, "", "{run}");

    // --allow-contact silences it.
    let run = t.ok_run(["scope", "set", "user", "u1", "public", "--allow-contact"]);
    assert_eq!(run.stderr, "", "{run}");
    assert_eq!(t.json(["record", "get", "user", "u1"])["scope"], "public");
}

/// Issue 11 item 12: `Contact-*` values leave only when forced (§4). A record put to leave
/// drops them (with a warning) unless `--allow-contact`; widening a record that holds them is
/// refused unless `--allow-contact`; an export carries only the allowed ones.
#[test]
fn contact_fields_leave_only_with_allow_contact() {
    let t = TestHome::initialized();
    let put = |id: &str, mail: &str, extra: &[&str]| {
        let mut args = vec![
            "record".to_string(),
            "put".into(),
            "user".into(),
            id.into(),
            "--field".into(),
            format!("Username={id}"),
            "--field".into(),
            format!("Contact-Email={mail}"),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        t.ok_run(args)
    };
    let run = put("u1", "dropped@example.org", &["--scope", "public"]);
    assert!(
        warnings(&run)
            .iter()
            .any(|w| w.contains("Contact-Email") && w.contains("dropped")),
        "{run}"
    );
    let u1 = t.json(["record", "get", "user", "u1"]);
    assert!(u1["fields"].get("Contact-Email").is_none(), "{u1}");
    assert_eq!(u1["scope"], "public");

    put(
        "u2",
        "forced@example.org",
        &["--scope", "public", "--allow-contact"],
    );
    let u2 = t.json(["record", "get", "user", "u2"]);
    assert_eq!(u2["fields"]["Contact-Email"], "forced@example.org", "{u2}");

    // Private: kept, and it stays home; widening it is refused until allowed.
    put("u3", "private@example.org", &[]);
    let before = t.all_records();
    let err = t.fail(["scope", "set", "user", "u3", "public"]);
    assert!(
        err.contains("Contact-Email") && err.contains("--allow-contact"),
        "{err}"
    );
    assert_eq!(
        t.all_records(),
        before,
        "a refused widening changed the store"
    );

    let out = t.path("export");
    t.ok(["sync", "export", out.to_str().expect("utf-8 path")]);
    let exported: String = wb_tests::harness::tree(&out)
        .values()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect();
    assert!(exported.contains("forced@example.org"));
    assert!(!exported.contains("dropped@example.org"));
    assert!(!exported.contains("private@example.org"));

    t.ok(["scope", "set", "user", "u3", "public", "--allow-contact"]);
    t.ok(["sync", "export", out.to_str().expect("utf-8 path")]);
    let exported: String = wb_tests::harness::tree(&out)
        .values()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect();
    assert!(exported.contains("private@example.org"));
}

#[test]
fn contact_warning_keeps_json_stdout_clean() {
    let t = TestHome::initialized();
    let run: Run = t
        .command([
            "--json",
            "record",
            "put",
            "user",
            "u1",
            "--scope",
            "public",
            "--field",
            "Username=ann",
            "--field",
            "Contact-Email=ann@example.org",
        ])
        .output()
        .expect("run wb")
        .into();
    run.assert_no_panic();
    assert!(run.status.success(), "{run}");
    let w = warnings(&run);
    assert!(
        w.len() == 1 && w[0].contains("Contact-Email"),
        "record put --scope public with contact data warns:\n{run}"
    );
    let r: Value = serde_json::from_str(&run.stdout).expect("stdout is only the JSON document");
    assert_eq!(r["scope"], "public");

    // Putting a private record with contact data does not warn.
    let run = t.ok_run([
        "record",
        "put",
        "user",
        "u2",
        "--field",
        "Username=bob",
        "--field",
        "Contact-Email=bob@example.org",
    ]);
    assert_eq!(run.stderr, "", "{run}");
}

// ---------------------------------------------------------------------------------------------
// Output hygiene and help
// ---------------------------------------------------------------------------------------------

#[test]
fn a_closed_stdout_is_not_an_error() {
    let t = TestHome::initialized();
    // A body larger than any pipe buffer: `wb` must block on the pipe and then see it closed,
    // whatever the scheduling.
    let body = "0123456789abcdef ".repeat(40_000);
    let file = t.dir().join("big.txt");
    fs::write(&file, &body).expect("write body");
    t.ok([
        "record",
        "put",
        "request",
        "big",
        "--field",
        "Title=Big",
        "--field",
        "Status=open",
        "--body-file",
        file.to_str().expect("utf-8 path"),
    ]);

    for args in [
        &["record", "list", "--json"][..],
        &["record", "get", "request", "big"],
    ] {
        let mut child = t
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn wb");
        let mut stdout = child.stdout.take().expect("piped stdout");
        let mut first = [0u8; 1];
        stdout.read_exact(&mut first).expect("read one byte");
        drop(stdout); // like `| head -c1`
        let run: Run = child.wait_with_output().expect("wait for wb").into();
        run.assert_no_panic();
        assert!(
            run.status.code().is_some(),
            "`wb {}` was killed by a signal:\n{run}",
            args.join(" ")
        );
        assert!(
            !run.stderr.contains("error"),
            "`wb {}` reported the closed pipe:\n{run}",
            args.join(" ")
        );
    }
}

#[test]
fn help_explains_home_resolution_and_required_fields() {
    let t = TestHome::new();
    let help = t.ok(["--help"]);
    for needle in ["--home", "WB_SYNC_HOME", ".sync", "init", "record", "scope"] {
        assert!(
            help.contains(needle),
            "`wb --help` lacks {needle:?}:\n{help}"
        );
    }
    let help = t.ok(["record", "put", "--help"]);
    for needle in [
        "Username",
        "Title",
        "Status",
        "draft",
        "Request",
        "User-ID",
        "Created-By",
        "Max-Uses",
        "Use-Count",
        "Auto-Approve",
        "Voucher",
        "Subject",
        "private",
        "--body-file",
    ] {
        assert!(
            help.contains(needle),
            "`wb record put --help` lacks {needle:?}:\n{help}"
        );
    }
    let help = t.ok(["scope", "set", "--help"]);
    assert!(help.contains("--allow-contact"), "{help}");
    let help = t.ok(["sync", "keygen", "--help"]);
    assert!(help.contains("--force") && help.contains("--yes"), "{help}");
    assert!(
        help.contains("re-add"),
        "keygen help warns about peers:\n{help}"
    );
    assert!(!t.home().exists(), "--help created the home");
}

/// A failing command prints its error on stderr only, also with `--json`.
#[test]
fn errors_go_to_stderr_not_stdout() {
    let t = TestHome::new();
    let run = t.run(["id"]);
    assert_one_line_error(&run);
    assert_eq!(run.stdout, "", "{run}");
    let run = t.run(["--json", "id"]);
    assert_one_line_error(&run);
    assert_eq!(
        run.stdout, "",
        "--json errors print no JSON on stdout:\n{run}"
    );
}
