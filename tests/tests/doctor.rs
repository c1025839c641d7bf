//! `wb doctor` (issue 13 item 5): a healthy home passes every check and exits 0, with or
//! without its node running; a broken one exits 1 and names each problem with its fix, in text
//! and `--json`; the doctor never changes the home.

use serde_json::Value;
use wb_tests::app::App;
use wb_tests::harness::{TestHome, link, tree};

/// The checks of a `--json` report with this status, as `check subject` strings.
fn with_status(report: &Value, status: &str) -> Vec<String> {
    report["checks"]
        .as_array()
        .expect("checks is a list")
        .iter()
        .filter(|c| c["status"] == status)
        .map(|c| match c["subject"].as_str() {
            Some(s) => format!("{} {s}", c["check"].as_str().unwrap_or_default()),
            None => c["check"].as_str().unwrap_or_default().to_string(),
        })
        .collect()
}

fn doctor_json(home: &TestHome, extra: &[&str]) -> (i32, Value) {
    let mut args = vec![
        "--json",
        "doctor",
        "--listen",
        "127.0.0.1:0",
        "--timeout",
        "3",
    ];
    args.extend_from_slice(extra);
    let run = home.run(args);
    let report: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("wb doctor --json printed no JSON ({e}):\n{run}"));
    (run.status.code().unwrap_or(-1), report)
}

#[test]
fn a_healthy_home_passes_every_check_and_is_left_unchanged() {
    let (a, b, hub_home) = (
        TestHome::initialized(),
        TestHome::initialized(),
        TestHome::new(),
    );
    link(&a, "a", &b, "b", false);
    let b_node = b.start_node();
    a.set_peer_addr("b", b_node.addr());
    let hub = a_hub(&hub_home);
    a.add_hub("hub", &hub_home, &hub);
    let app = App::seeded(&a, "alpha");
    let snapshot = app.export();
    a.ok(["app", "import", &snapshot.display().to_string()]);
    let snapshot_arg = snapshot.display().to_string();

    let before = tree(a.home());
    let (code, report) = doctor_json(&a, &["--app-snapshot", &snapshot_arg]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["healthy"], true);
    assert_eq!(report["problems"], 0);
    let ok = with_status(&report, "ok");
    for check in [
        "keys",
        "store",
        "peer b",
        "clock b",
        "hub hub",
        "clock hub",
        "app snapshot",
        "listen",
        "control socket",
    ] {
        assert!(
            ok.iter().any(|c| c == check),
            "{check} is not ok: {report:#}"
        );
    }
    assert_eq!(tree(a.home()), before, "wb doctor changed the home");

    // The same with the home's node running: the doctor runs inside it (control socket).
    let a_node = a.start_node();
    let run = a.run(["doctor", "--timeout", "3", "--app-snapshot", &snapshot_arg]);
    assert!(run.status.success(), "{run}");
    assert!(run.stdout.contains("held by the running node"), "{run}");
    assert!(run.stdout.contains("the node answers on it"), "{run}");
    assert!(
        run.stdout
            .contains(&format!("listens on {}", a_node.addr())),
        "{run}"
    );
    assert!(run.stdout.trim_end().ends_with("is healthy"), "{run}");
}

fn a_hub(home: &TestHome) -> wb_tests::harness::NodeProcess {
    home.start_hub(&["--open"]).process
}

#[test]
fn a_broken_home_names_each_problem_with_its_fix() {
    let (a, c) = (TestHome::initialized(), TestHome::initialized());
    // A peer registered at an address where nothing answers (a port just freed).
    let free = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("find a free port");
    a.add_peer("c", &c, Some(free), false);
    // The secret key readable by everyone.
    let secret = a.home().join("keys/id_ed25519");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644))
        .expect("chmod the secret key");
    // An app folder without a snapshot.
    let empty = a.dir().join("not-a-snapshot");
    std::fs::create_dir_all(&empty).expect("create a folder");
    let empty_arg = empty.display().to_string();

    let (code, report) = doctor_json(&a, &["--app-snapshot", &empty_arg]);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["healthy"], false);
    let problems = with_status(&report, "problem");
    assert_eq!(problems, ["keys", "peer c", "app snapshot"], "{report:#}");
    for c in report["checks"].as_array().into_iter().flatten() {
        if c["status"] == "problem" {
            assert!(
                c["fix"].as_str().is_some_and(|f| !f.is_empty()),
                "no fix: {c}"
            );
        }
    }

    let run = a.run([
        "doctor",
        "--listen",
        "127.0.0.1:0",
        "--timeout",
        "2",
        "--app-snapshot",
        &empty_arg,
    ]);
    assert_eq!(run.status.code(), Some(1), "{run}");
    let text = &run.stdout;
    assert!(text.contains("mode 0644"), "{text}");
    assert!(
        text.contains(&format!("fix: chmod 600 {}", secret.display())),
        "{text}"
    );
    assert!(text.contains("peer c: peer c is unreachable"), "{text}");
    assert!(text.contains("bundle.sig"), "{text}");
    assert!(text.trim_end().ends_with("3 problems"), "{text}");

    // A snapshot the app exported after the last adoption waits: named, with its fix.
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600))
        .expect("chmod the secret key back");
    a.ok(["sync", "peers", "remove", "c"]);
    let app = App::seeded(&a, "alpha");
    let snapshot = app.export();
    a.ok(["app", "import", &snapshot.display().to_string()]);
    app.exec("UPDATE help_requests SET title = 'Edited: ' || title", &[]);
    app.export();
    let snapshot_arg = snapshot.display().to_string();
    let (code, report) = doctor_json(&a, &["--app-snapshot", &snapshot_arg]);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(
        with_status(&report, "problem"),
        ["app snapshot"],
        "{report:#}"
    );
    let fix = report["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["check"] == "app snapshot")
        .and_then(|c| c["fix"].as_str())
        .unwrap_or_default();
    assert!(fix.contains("wb app import"), "{fix}");
}
