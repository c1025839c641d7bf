//! The control socket (§7): while `wb node run` holds a home's store, other `wb` commands on
//! that home run through the node, with the same output as without it.

use std::os::unix::fs::PermissionsExt;

use wb_tests::harness::{TestHome, assert_one_line_error, link, put_user_named, record_ids};
use wb_tests::pty::PtyRun;

/// `wb record put` and `wb sync status` against a home with a running node: they work (no
/// "in use"), and what they print is what they print without a node.
#[test]
fn commands_run_through_the_running_node_with_identical_output() {
    let t = TestHome::initialized();
    put_user_named(&t, "u0", "before", "public");
    let node = t.start_node();
    let socket = t.path("node.sock");
    let mode = std::fs::metadata(&socket)
        .expect("the node creates its control socket in the home")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the socket is owner-only");

    let put = t.ok_run([
        "record",
        "put",
        "request",
        "r1",
        "--field",
        "Title=Soup",
        "--field",
        "Status=open",
        "--scope",
        "public",
    ]);
    assert!(put.stdout.contains("r1"), "{put}");
    let status = t.json(["sync", "status"]);
    assert_eq!(status["records"]["public"], 2, "{status}");

    // The same read commands, with and without the node: byte-identical output.
    let reads: Vec<Vec<&str>> = vec![
        vec!["record", "get", "request", "r1"],
        vec!["--json", "record", "get", "request", "r1"],
        vec!["--json", "record", "list"],
        vec!["record", "list"],
        vec!["--json", "id"],
        vec!["--json", "sync", "status"],
        vec!["sync", "peers", "list"],
    ];
    let through_node: Vec<_> = reads.iter().map(|a| t.run(a)).collect();
    // An error is the same one line too.
    let err_through_node = t.run(["record", "get", "request", "nope"]);
    assert_one_line_error(&err_through_node);

    let (status, _) = node.stop();
    assert!(status.success());
    assert!(!socket.exists(), "a stopped node removes its socket");
    for (args, via) in reads.iter().zip(&through_node) {
        let local = t.run(args);
        assert!(local.status.success(), "{local}");
        // `sync status` shows when the last sync happened: none happened, so it is stable.
        assert_eq!(via.stdout, local.stdout, "stdout of {args:?} differs");
        assert_eq!(via.stderr, local.stderr, "stderr of {args:?} differs");
    }
    let err_local = t.run(["record", "get", "request", "nope"]);
    assert_eq!(err_through_node.stderr, err_local.stderr);
    assert_eq!(err_through_node.status.code(), err_local.status.code());
}

#[test]
fn writes_through_the_node_are_in_the_store_after_it_stops() {
    let t = TestHome::initialized();
    let node = t.start_node();
    // Several clients at once.
    let handles: Vec<_> = (0..6)
        .map(|i| {
            let mut cmd = t.command([
                "record",
                "put",
                "user",
                &format!("u{i}"),
                "--field",
                &format!("Username=user{i}"),
            ]);
            std::thread::spawn(move || cmd.output().expect("run wb"))
        })
        .collect();
    for h in handles {
        let out = h.join().expect("client thread");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    t.ok(["scope", "set", "user", "u1", "public"]);
    t.ok(["record", "rm", "user", "u2"]);
    node.stop();
    let list = t.json(["record", "list"]);
    assert_eq!(record_ids(&list), ["u0", "u1", "u3", "u4", "u5"]);
    let u1 = t.json(["record", "get", "user", "u1"]);
    assert_eq!(u1["scope"], "public");
    // The node closed its store cleanly: a read-only open (a dry-run import) works at once.
    t.ok(["sync", "export", "bundle"]);
    let dry = t.json(["sync", "import", "bundle", "--dry-run"]);
    assert_eq!(dry["unchanged"], 1, "{dry}");
}

/// Paths in a client's arguments are relative to the client's working directory, not the
/// node's.
#[test]
fn relative_paths_are_the_clients() {
    let t = TestHome::initialized();
    put_user_named(&t, "u1", "alice", "public");
    let node = t.start_node();
    let client_dir = t.dir().join("elsewhere");
    std::fs::create_dir_all(&client_dir).expect("mkdir");
    std::fs::write(client_dir.join("body.txt"), "from a file\n").expect("write");
    let run = |args: &[&str]| {
        let mut cmd = t.command(args);
        cmd.current_dir(&client_dir);
        let out = cmd.output().expect("run wb");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    run(&[
        "record",
        "put",
        "comment",
        "c1",
        "--scope",
        "public",
        "--field",
        "Request=r1",
        "--field",
        "User-ID=u1",
        "--body-file",
        "body.txt",
    ]);
    run(&["sync", "export", "out"]);
    let users = std::fs::read_dir(client_dir.join("out/users"))
        .expect("users/ exported")
        .count();
    assert_eq!(users, 1);
    // Import the bundle back into a second home through its own node.
    let other = TestHome::initialized();
    let other_node = other.start_node();
    let mut cmd = other.command(["--json", "sync", "import", "out"]);
    cmd.current_dir(&client_dir);
    let out = cmd.output().expect("run wb");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["new"], 2, "{report}");
    other_node.stop();
    node.stop();
    let c1 = t.json(["record", "get", "comment", "c1"]);
    assert_eq!(c1["body"], "from a file\n");
}

/// A node killed with SIGKILL leaves its socket file behind; commands then run locally.
#[test]
fn a_stale_socket_is_ignored() {
    let t = TestHome::initialized();
    let node = t.start_node();
    node.kill();
    assert!(t.path("node.sock").exists(), "SIGKILL leaves the socket");
    put_user_named(&t, "u1", "alice", "private");
    // And a new node replaces the stale socket.
    let node = t.start_node();
    put_user_named(&t, "u2", "bob", "private");
    node.stop();
    assert_eq!(t.json(["record", "list"]).as_array().map(Vec::len), Some(2));
}

#[test]
fn a_second_node_and_a_key_change_are_refused_while_a_node_runs() {
    let t = TestHome::initialized();
    let node = t.start_node();
    let err = t.fail(["node", "run", "--listen", "127.0.0.1:0"]);
    assert!(err.contains("already running"), "{err}");
    let err = t.fail(["sync", "keygen", "--force", "--yes"]);
    assert!(err.contains("stop it"), "{err}");
    let id = t.json(["id"]);
    node.stop();
    assert_eq!(t.json(["id"])["public_key"], id["public_key"]);
}

/// A record put through a running node reaches a linked peer's running node without any
/// `wb sync now` (continuous sync, started by the change).
#[test]
fn a_change_through_the_node_reaches_peers_by_itself() {
    let a = TestHome::initialized();
    let b = TestHome::initialized();
    link(&a, "a", &b, "b", false);
    let node_a = a.start_node();
    let node_b = b.start_node();
    a.set_peer_addr("b", node_b.addr());
    b.set_peer_addr("a", node_a.addr());
    put_user_named(&a, "u1", "alice", "public");
    put_user_named(&a, "secret", "hidden", "private");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let got = b.run([
            "--json",
            "record",
            "list",
            "--origin",
            &a.public_key().to_base64(),
        ]);
        let v: serde_json::Value = serde_json::from_str(&got.stdout).unwrap_or_default();
        if v.as_array().is_some_and(|l| !l.is_empty()) {
            assert_eq!(record_ids(&v), ["u1"], "only the public record arrives");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the record never reached b; a's log:\n{}",
            node_a.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    node_a.stop();
    node_b.stop();
}

/// A confirmation the node cannot ask itself: without a terminal the command is refused (and
/// nothing changes); on a terminal the client asks, and "y" lets the node go on.
#[test]
fn confirmations_are_asked_by_the_client() {
    let a = TestHome::initialized();
    let b = TestHome::initialized();
    link(&a, "a", &b, "b", false);
    put_user_named(&b, "u1", "bob", "public");
    let node_b = b.start_node();
    a.set_peer_addr("b", node_b.addr());
    assert_eq!(a.sync_now("b", &[])["received"], 1);
    node_b.stop();
    let node_a = a.start_node_with("127.0.0.1:0", &["--no-auto-sync"]);
    let before = a.all_records();

    let err = a.fail(["sync", "prune", "--peer", "b"]);
    assert!(err.contains("--yes"), "{err}");
    assert_eq!(a.all_records(), before, "a refusal changes nothing");

    // "n" on the terminal: cancelled.
    let mut run = PtyRun::spawn(&a, &["sync", "prune", "--peer", "b"]);
    run.expect("[y/N] ");
    run.send_line("n");
    let (status, transcript) = run.finish();
    assert!(!status.success(), "{transcript}");
    assert!(transcript.contains("nothing changed"), "{transcript}");
    assert_eq!(a.all_records(), before);

    // "y": the node prunes.
    let mut run = PtyRun::spawn(&a, &["sync", "prune", "--peer", "b"]);
    run.expect("[y/N] ");
    run.send_line("y");
    let (status, transcript) = run.finish();
    assert!(status.success(), "{transcript}");
    let after = a.json(["record", "list", "--origin", &b.public_key().to_base64()]);
    assert_eq!(after.as_array().map(Vec::len), Some(0), "{after}");
    node_a.stop();
}

/// `sync status` says how far behind a peer is on our changes: what its next pull would bring
/// (private records and the peer's own records do not count).
#[test]
fn status_counts_what_a_peer_is_behind() {
    let a = TestHome::initialized();
    let b = TestHome::initialized();
    link(&a, "a", &b, "b", false);
    put_user_named(&a, "u1", "alice", "public");
    put_user_named(&b, "w1", "walt", "public");
    let node_a = a.start_node_with("127.0.0.1:0", &["--no-auto-sync"]);
    b.set_peer_addr("a", node_a.addr());
    let behind = |t: &TestHome| {
        let s = t.json(["sync", "status"]);
        s["peers"][0]["behind"].clone()
    };
    assert_eq!(
        behind(&a),
        serde_json::Value::Null,
        "unknown before b's first pull"
    );
    assert_eq!(b.sync_now("a", &[])["received"], 1);
    // A peer confirms what it holds with the cursor of its next pull.
    assert_eq!(b.sync_now("a", &[])["received"], 0);
    assert_eq!(
        behind(&a),
        0,
        "b has everything of a's (and its own w1 does not count)"
    );
    put_user_named(&a, "u2", "ann", "public");
    put_user_named(&a, "secret", "sam", "private");
    t_put_request(&a);
    assert_eq!(
        behind(&a),
        2,
        "one public user and one public request; not the private one"
    );
    assert_eq!(b.sync_now("a", &[])["received"], 2);
    assert_eq!(b.sync_now("a", &[])["received"], 0);
    assert_eq!(behind(&a), 0);
    node_a.stop();
}

fn t_put_request(t: &TestHome) {
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
    ]);
}

/// Issue 11, item 17: the client sends its arguments only to a socket of its own user.
#[test]
fn the_client_sends_nothing_to_a_socket_it_does_not_own() {
    use std::os::unix::net::UnixListener;
    let t = TestHome::initialized();
    let sock = t.path("node.sock");
    // A symbolic link planted where the socket goes (to a socket elsewhere).
    let elsewhere = t.dir().join("elsewhere.sock");
    let listener = UnixListener::bind(&elsewhere).expect("bind a socket");
    std::os::unix::fs::symlink(&elsewhere, &sock).expect("plant a link");
    let err = t.fail([
        "record",
        "put",
        "user",
        "1",
        "--field",
        "Username=x",
        "--body",
        "secret",
    ]);
    assert!(err.contains("not a socket"), "{err}");
    std::fs::remove_file(&sock).expect("remove the link");
    drop(listener);

    // A socket of another user (only root can make one here; others check the link case).
    if nix_is_root() {
        let listener = UnixListener::bind(&sock).expect("bind the socket");
        std::os::unix::fs::chown(&sock, Some(65534), Some(65534)).expect("chown");
        let err = t.fail(["record", "put", "user", "1", "--field", "Username=x"]);
        assert!(err.contains("belongs to uid 65534"), "{err}");
        drop(listener);
        std::fs::remove_file(&sock).expect("remove the socket");
    }
    assert!(
        t.all_records().as_array().is_some_and(Vec::is_empty),
        "nothing was written"
    );
}

fn nix_is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    // The owner of a file this process creates is its effective user.
    let probe = tempfile::NamedTempFile::new().expect("a temporary file");
    probe
        .as_file()
        .metadata()
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// Issue 14: the socket carries parsed commands. A request the node cannot decode — not JSON,
/// the older form that sent an argument list, another wb version, an unknown command, a relative
/// path, a command that never runs through a node — gets one clear error line, and nothing runs.
#[test]
fn a_request_the_node_cannot_decode_is_refused_and_changes_nothing() {
    let t = TestHome::initialized();
    put_user_named(&t, "u0", "before", "public");
    let node = t.start_node_with("127.0.0.1:0", &["--no-auto-sync"]);
    let before = t.all_records();
    let version = env!("CARGO_PKG_VERSION");
    let put = r#"{"Record":{"Put":{"entity":"user","id":"u9","scope":null,"fields":["Username=x"],"body":null,"body_file":null,"allow_contact":false}}}"#;
    let cases: Vec<(String, &str)> = vec![
        ("garbage\n".into(), "not one JSON line"),
        ("[1,2]\n".into(), "not a JSON object"),
        (
            r#"{"argv":["record","put","user","u9","--field","Username=x"],"cwd":"/","stdin_tty":false}"#
                .to_string()
                + "\n",
            "older wb",
        ),
        (
            format!(r#"{{"wb":"0.0.0-other","command":{put},"json":false,"stdin_tty":false}}"#)
                + "\n",
            "this client is wb 0.0.0-other",
        ),
        (
            format!(r#"{{"wb":"{version}","command":{{"Record":{{"Frobnicate":{{}}}}}},"json":false,"stdin_tty":false}}"#)
                + "\n",
            "cannot decode this request",
        ),
        (
            format!(r#"{{"wb":"{version}","command":{{"Backup":{{"file":"relative.bak"}}}},"json":false,"stdin_tty":false}}"#)
                + "\n",
            "is not absolute",
        ),
        (
            format!(r#"{{"wb":"{version}","command":{{"Node":{{"Run":{{"common":{{"listen":null,"open":null,"log_level":null,"metrics":null}},"sync":{{"sync_interval":null,"no_auto_sync":false,"auto_sync":false,"discovery":null,"timeout":null}},"test_cut_after_batches":null,"app":{{"app_snapshot":null,"app_inbox":null,"app_import_cmd":null,"app_poll":null,"app_allow_contact":null}}}}}}}},"json":false,"stdin_tty":false}}"#)
                + "\n",
            "never through a running node",
        ),
    ];
    for (request, expected) in &cases {
        let reply = ask_raw(&t, request);
        assert_eq!(reply["code"], 1, "{request}: {reply}");
        assert_eq!(reply["stdout"], serde_json::Value::Null, "{reply}");
        let lines = reply["stderr"].as_array().expect("stderr lines");
        assert_eq!(lines.len(), 1, "{reply}");
        let line = lines[0].as_str().unwrap_or_default();
        assert!(line.starts_with("error: "), "{line}");
        assert!(line.contains(expected), "{request}: {line}");
        assert!(line.contains("nothing ran"), "{line}");
    }
    assert_eq!(t.all_records(), before, "nothing changed");
    assert!(!t.dir().join("relative.bak").exists());

    // The same command, well formed and of this version, runs.
    let ok = format!(r#"{{"wb":"{version}","command":{put},"json":false,"stdin_tty":false}}"#);
    let reply = ask_raw(&t, &ok);
    assert_eq!(reply["code"], 0, "{reply}");
    node.stop();
    assert!(record_ids(&t.all_records()).contains(&"u9"));
}

/// Sends `request` as it is to the running node's control socket of `t` and returns the JSON
/// reply.
fn ask_raw(t: &TestHome, request: &str) -> serde_json::Value {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    let mut stream = UnixStream::connect(t.path("node.sock")).expect("connect to the node");
    stream.write_all(request.as_bytes()).expect("send");
    stream
        .shutdown(std::net::Shutdown::Write)
        .expect("end the request");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("read the reply");
    serde_json::from_str(&reply).expect("a JSON reply")
}
