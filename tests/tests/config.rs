//! The settings file `<home>/wb.toml` (issue 13 item 1): precedence flag > `WB_*` variable >
//! file > default as `wb config show` reports it, refusals with line and column before a node
//! starts, `wb init`'s file, and a node that takes its settings from the file alone. Also item
//! 6's generated completions and manual pages.

use std::collections::BTreeSet;

use serde_json::Value;
use wb_tests::harness::{Run, TestHome, assert_one_line_error};

/// `wb --json config show ARGS…` with these variables set.
fn show(t: &TestHome, env: &[(&str, &str)], args: &[&str]) -> Value {
    let mut cmd = t.command(["--json", "config", "show"]);
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let run: Run = cmd.output().expect("run wb").into();
    run.assert_no_panic();
    assert!(run.status.success(), "config show failed:\n{run}");
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{run}"))
}

fn write_config(t: &TestHome, text: &str) {
    std::fs::create_dir_all(t.home()).expect("create the home");
    std::fs::write(t.path("wb.toml"), text).expect("write wb.toml");
}

#[test]
fn flag_beats_env_beats_file_beats_default() {
    let t = TestHome::initialized();
    write_config(
        &t,
        "listen = \"127.0.0.1:1001\"\nopen = true\n\n[node]\ntimeout = 7\nsync_interval = 9\n",
    );
    let env = [
        ("WB_LISTEN", "127.0.0.1:1002"),
        ("WB_OPEN", "false"),
        ("WB_NODE_SYNC_INTERVAL", "11"),
    ];
    let j = show(&t, &env, &["--listen", "127.0.0.1:1003"]);
    let s = &j["settings"];
    // listen: in all three layers, the flag wins.
    assert_eq!(s["listen"]["value"], "127.0.0.1:1003", "{j:#}");
    assert_eq!(s["listen"]["source"], "flag");
    assert_eq!(s["listen"]["flag"], "--listen");
    // open, sync_interval: variable over file.
    assert_eq!(s["open"]["value"], false);
    assert_eq!(s["open"]["source"], "env");
    assert_eq!(s["open"]["env"], "WB_OPEN");
    assert_eq!(s["node.sync_interval"]["value"], 11);
    assert_eq!(s["node.sync_interval"]["source"], "env");
    // timeout: the file, with its position.
    assert_eq!(s["node.timeout"]["value"], 7);
    assert_eq!(s["node.timeout"]["source"], "file");
    assert_eq!(s["node.timeout"]["line"], 5);
    assert_eq!(s["node.timeout"]["column"], 11);
    // The rest: defaults.
    assert_eq!(s["app.poll"]["value"], 3);
    assert_eq!(s["app.poll"]["source"], "default");
    assert_eq!(s["node.auto_sync"]["value"], true);
    assert_eq!(s["hub.relay_listen"]["value"], Value::Null);
    assert_eq!(j["file_found"], true);

    // The same without the flag and the variables: the file, then the defaults.
    let j = show(&t, &[], &[]);
    assert_eq!(j["settings"]["listen"]["value"], "127.0.0.1:1001");
    assert_eq!(j["settings"]["listen"]["source"], "file");
    assert_eq!(j["settings"]["open"]["value"], true);
    // A flag turns a boolean the file set back off; --no-auto-sync / --auto-sync likewise.
    let j = show(&t, &[("WB_NODE_AUTO_SYNC", "false")], &["--open=false"]);
    assert_eq!(j["settings"]["open"]["value"], false);
    assert_eq!(j["settings"]["open"]["source"], "flag");
    assert_eq!(j["settings"]["node.auto_sync"]["value"], false);
    let j = show(&t, &[("WB_NODE_AUTO_SYNC", "false")], &["--auto-sync"]);
    assert_eq!(j["settings"]["node.auto_sync"]["value"], true);
    assert_eq!(j["settings"]["node.auto_sync"]["flag"], "--auto-sync");

    // The text form names each setting and where it came from; hubs come from the registry.
    t.ok([
        "sync",
        "peers",
        "add",
        "h1",
        "--key",
        &TestHome::initialized().public_key().to_base64(),
        "--hub",
    ]);
    let text = t.ok(["config", "show", "--timeout", "5"]);
    assert!(text.contains("wb.toml line 1"), "{text}");
    assert!(text.contains("flag --timeout"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("hubs") && l.contains("h1")),
        "{text}"
    );
    let j = show(&t, &[], &[]);
    assert_eq!(j["hubs"]["names"], serde_json::json!(["h1"]));
}

#[test]
fn a_bad_file_is_refused_with_its_position_and_no_node_starts() {
    let cases = [
        (
            "open = false\n[node]\nsync_intervall = 5\n",
            "wb.toml:3:1: unknown key `node.sync_intervall`",
        ),
        (
            "[node]\nsync_interval = 0\n",
            "wb.toml:2:17: bad value for `node.sync_interval`",
        ),
        (
            "listen = \"here\"\n",
            "wb.toml:1:10: bad value for `listen`",
        ),
        ("open = \"yes\"\n", "wb.toml:1:8: bad value for `open`"),
        (
            "hubs = [\"riverside\"]\n",
            "wb.toml:1:1: unknown key `hubs`",
        ),
        ("[node\n", "wb.toml:1:"),
    ];
    for (text, expected) in cases {
        let t = TestHome::initialized();
        write_config(&t, text);
        for args in [
            &["node", "run", "--listen", "127.0.0.1:0"][..],
            &["hub", "run", "--listen", "127.0.0.1:0"][..],
            &["config", "show"][..],
        ] {
            let run = t.run(args);
            assert_one_line_error(&run);
            assert!(
                run.stderr.contains(expected),
                "{args:?} with {text:?}: expected {expected:?}\n{run}"
            );
            // Refused before anything started: no ready line, no control socket.
            assert!(run.stdout.is_empty(), "{run}");
            assert!(!t.path("node.sock").exists());
        }
    }
    // A bad variable, even one a flag overrides, is refused too, naming the variable.
    let t = TestHome::initialized();
    let run: Run = t
        .command(["node", "run", "--listen", "127.0.0.1:0", "--timeout", "5"])
        .env("WB_NODE_TIMEOUT", "soon")
        .output()
        .expect("run wb")
        .into();
    assert_one_line_error(&run);
    assert!(run.stderr.contains("WB_NODE_TIMEOUT=\"soon\""), "{run}");
    // Settings that need each other.
    write_config(&t, "[app]\nimport_cmd = \"true\"\n");
    let e = t.fail(["node", "run", "--listen", "127.0.0.1:0"]);
    assert!(
        e.contains("app.import_cmd (wb.toml line 2) needs app.inbox"),
        "{e}"
    );
}

#[test]
fn init_writes_the_defaults_and_keeps_an_edited_file() {
    let fresh = TestHome::new();
    let defaults = show(&fresh, &[], &[]);
    assert_eq!(defaults["file_found"], false);

    let t = TestHome::new();
    let out = t.json(["init"]);
    assert_eq!(out["config"], "created");
    let text = std::fs::read_to_string(t.path("wb.toml")).expect("wb.toml written");
    assert!(
        text.lines().filter(|l| l.starts_with('#')).count() > 20,
        "commented:\n{text}"
    );
    let written = show(&t, &[], &[]);
    assert_eq!(written["file_found"], true);
    let values = |j: &Value| -> Vec<(String, Value)> {
        j["settings"]
            .as_object()
            .expect("settings")
            .iter()
            .map(|(k, v)| (k.clone(), v["value"].clone()))
            .collect()
    };
    assert_eq!(values(&written), values(&defaults));
    assert_eq!(written["settings"]["listen"]["source"], "file");

    // An existing file is the operator's: init keeps it.
    write_config(&t, "open = true\n");
    let out = t.json(["init"]);
    assert_eq!(out["config"], "kept");
    assert_eq!(
        std::fs::read_to_string(t.path("wb.toml")).expect("read"),
        "open = true\n"
    );
}

#[test]
fn a_node_takes_its_settings_from_the_file() {
    let t = TestHome::initialized();
    write_config(
        &t,
        "listen = \"127.0.0.1:0\"\nopen = true\n[node]\nauto_sync = false\n[log]\nlevel = \"node=debug\"\n",
    );
    // No flag at all: the default would listen on 0.0.0.0:4433 and dial peers.
    let (node, ready) = t.start_ready(&["node", "run"]);
    let addrs: Vec<&str> = ready["addrs"]
        .as_array()
        .expect("addrs")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        !addrs.is_empty()
            && addrs
                .iter()
                .all(|a| a.starts_with("127.0.0.1:") && !a.ends_with(":4433")),
        "{ready}"
    );
    assert_eq!(ready["open"], true, "{ready}");
    assert_eq!(
        ready["sync_interval_s"],
        Value::Null,
        "no auto sync: {ready}"
    );
    // Commands on the home still reach the node; `config show` reads the file here.
    let j = t.json(["config", "show"]);
    assert_eq!(j["settings"]["node.auto_sync"]["source"], "file");
    let (status, _) = node.stop();
    assert!(status.success());

    // A hub's home likewise.
    let hub = TestHome::new();
    write_config(&hub, "listen = \"127.0.0.1:0\"\nopen = true\n");
    let (process, ready) = hub.start_ready(&["hub", "run"]);
    assert_eq!(ready["open"], true, "{ready}");
    assert!(
        ready["addrs"][0]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:")),
        "{ready}"
    );
    process.stop();
}

/// Every command path (`node run`, `sync peers add`, …) as `wb … --help` lists them.
fn command_paths(t: &TestHome, prefix: &[String], out: &mut Vec<Vec<String>>) {
    let mut args = prefix.to_vec();
    args.push("--help".into());
    let help = t.ok(&args);
    let Some(commands) = help.split("\nCommands:\n").nth(1) else {
        return;
    };
    for line in commands.lines() {
        if !line.starts_with("  ") || line.starts_with("   ") {
            if line.trim().is_empty() || !line.starts_with(' ') {
                break;
            }
            continue;
        }
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        if name == "help" {
            continue;
        }
        let mut path = prefix.to_vec();
        path.push(name.to_string());
        out.push(path.clone());
        command_paths(t, &path, out);
    }
}

#[test]
fn completions_and_manual_pages_name_every_command() {
    let t = TestHome::new();
    let mut paths = Vec::new();
    command_paths(&t, &[], &mut paths);
    let names: BTreeSet<&str> = paths.iter().flatten().map(String::as_str).collect();
    for expected in [
        "node",
        "run",
        "config",
        "show",
        "peers",
        "completions",
        "man",
    ] {
        assert!(names.contains(expected), "{expected} in {names:?}");
    }

    let bash = t.ok(["completions", "bash"]);
    for name in &names {
        assert!(bash.contains(name), "bash completion lacks {name}");
    }
    assert!(bash.contains("complete -F"), "a bash completion script");
    for shell in ["zsh", "fish"] {
        let script = t.ok(["completions", shell]);
        assert!(
            script.contains("config") && script.contains("sync-interval"),
            "{shell}"
        );
    }

    // The main page lists every top-level command; each command has a page of its own.
    let page = t.ok(["man"]);
    assert!(page.contains(".TH wb 1"), "roff:\n{page}");
    for path in paths.iter().filter(|p| p.len() == 1) {
        let reference = format!("wb\\-{}(1)", path[0]);
        assert!(page.contains(&reference), "{reference} in the page");
    }
    let dir = t.dir().join("man1");
    let out = t.json(["man", "--dir", dir.to_str().expect("utf-8 path")]);
    let written: BTreeSet<String> = out["pages"]
        .as_array()
        .expect("pages")
        .iter()
        .filter_map(|p| p.as_str().map(str::to_string))
        .collect();
    assert!(written.contains("wb.1"));
    for path in &paths {
        let file = format!("wb-{}.1", path.join("-"));
        assert!(written.contains(&file), "{file} in {written:?}");
        let text = std::fs::read_to_string(dir.join(&file)).expect("page written");
        assert!(text.contains(".TH"), "{file} is a manual page");
    }
}

/// The settings merged from the metrics branch: `metrics` and `log.format` layer like the
/// others (the global `--log-format` is their flag), and a bad value is refused.
#[test]
fn metrics_and_log_format_are_settings_like_the_others() {
    let t = TestHome::initialized();
    write_config(
        &t,
        "metrics = \"127.0.0.1:9464\"\n\n[log]\nformat = \"json\"\n",
    );
    let j = show(&t, &[], &[]);
    let s = &j["settings"];
    assert_eq!(s["metrics"]["value"], "127.0.0.1:9464", "{j:#}");
    assert_eq!(s["metrics"]["source"], "file");
    assert_eq!(s["log.format"]["value"], "json");
    assert_eq!(s["log.format"]["source"], "file");
    let j = show(
        &t,
        &[("WB_METRICS", "127.0.0.1:9465")],
        &["--log-format", "text"],
    );
    let s = &j["settings"];
    assert_eq!(s["metrics"]["value"], "127.0.0.1:9465", "{j:#}");
    assert_eq!(s["metrics"]["source"], "env");
    assert_eq!(s["log.format"]["value"], "text");
    assert_eq!(s["log.format"]["source"], "flag");
    write_config(&t, "[log]\nformat = \"xml\"\n");
    let err = t.fail(["config", "show"]);
    assert!(
        err.contains("wb.toml:2:") && err.contains("\"text\" or \"json\""),
        "{err}"
    );
}
