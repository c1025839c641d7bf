//! The README's "Running beside WhiteBalloon" loop, played end to end: two instances, alpha and
//! beta, each a WhiteBalloon app (the app model, `tests/app-model/`) and `wb` sharing one home in
//! one working directory. Alpha's app exports, wb adopts, the instances sync, beta's wb writes the
//! inbox and beta's app imports it; then a user of beta's app comments on alpha's request and the
//! comment travels back to alpha. Every command is printed with its output; the demo fails if a
//! step does not behave as shown.
//!
//! Run it with `cargo run -p wb-tests --bin demo_app`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};

use serde_json::Value;
use wb_tests::app::{find, model};
use wb_tests::harness::wb_bin;

/// One instance: a working directory holding the app's database and the shared home `.sync`.
struct Instance {
    name: &'static str,
    dir: PathBuf,
}

impl Instance {
    fn show(&self, program: &str, args: &[&str]) {
        println!("[{}]$ {program} {}", self.name, args.join(" "));
    }

    fn run(&self, mut cmd: Command, what: &str) -> Result<String, String> {
        let out = cmd
            .current_dir(&self.dir)
            .env("WB_SYNC_HOME", self.dir.join(".sync"))
            .output()
            .map_err(|e| format!("cannot run {what}: {e}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        print!("{stdout}");
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        println!();
        if out.status.success() {
            Ok(stdout)
        } else {
            Err(format!("`{what}` failed"))
        }
    }

    /// `wb ARGS…` in this instance's directory (home `.sync`, as the app's).
    fn wb(&self, args: &[&str]) -> Result<String, String> {
        self.show("wb", args);
        let mut cmd = Command::new(wb_bin());
        cmd.args(args);
        self.run(cmd, &format!("wb {}", args.join(" ")))
    }

    fn wb_json(&self, args: &[&str]) -> Result<Value, String> {
        let mut cmd = Command::new(wb_bin());
        cmd.arg("--json").args(args);
        let out = cmd
            .current_dir(&self.dir)
            .env("WB_SYNC_HOME", self.dir.join(".sync"))
            .output()
            .map_err(|e| format!("cannot run wb: {e}"))?;
        serde_json::from_slice(&out.stdout).map_err(|e| format!("bad JSON from wb: {e}"))
    }

    /// The app (its model): `app ARGS…` stands for the WhiteBalloon app's own command.
    fn app(&self, args: &[&str]) -> Result<String, String> {
        self.show("app", args);
        let mut cmd = Command::new("python3");
        cmd.arg(model()).arg(args[0]).arg("app.db").args(&args[1..]);
        self.run(cmd, &format!("app {}", args.join(" ")))
    }

    fn app_dump(&self) -> Result<Value, String> {
        let out = Command::new("python3")
            .arg(model())
            .args(["dump", "app.db"])
            .current_dir(&self.dir)
            .output()
            .map_err(|e| format!("cannot run the app model: {e}"))?;
        serde_json::from_slice(&out.stdout).map_err(|e| format!("bad JSON from the app: {e}"))
    }
}

fn check(ok: bool, what: &str) -> Result<(), String> {
    if ok {
        println!("ok: {what}\n");
        Ok(())
    } else {
        Err(format!("expected: {what}"))
    }
}

fn start_node(b: &Instance) -> Result<(Child, String), String> {
    b.show("wb", &["node", "run", "--listen", "127.0.0.1:0", "&"]);
    let mut child = Command::new(wb_bin())
        .args([
            "--json",
            "node",
            "run",
            "--listen",
            "127.0.0.1:0",
            "--no-auto-sync",
        ])
        .current_dir(&b.dir)
        .env("WB_SYNC_HOME", b.dir.join(".sync"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start the node: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| format!("reading the ready line: {e}"))?;
    println!("{}\n", line.trim_end());
    let ready: Value = serde_json::from_str(&line).map_err(|e| format!("ready line: {e}"))?;
    let addr = ready["addrs"][0]
        .as_str()
        .ok_or("ready line without an address")?
        .to_string();
    Ok((child, addr))
}

fn demo(root: &Path) -> Result<(), String> {
    let mk = |name: &'static str| -> Result<Instance, String> {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{e}"))?;
        Ok(Instance { name, dir })
    };
    let (a, b) = (mk("alpha")?, mk("beta")?);
    println!("# Two WhiteBalloon instances, each with wb beside it in one home (.sync).\n");
    for i in [&a, &b] {
        i.wb(&["init", "--name", i.name])?;
        i.app(&["seed"])?;
    }
    a.app(&[
        "exec",
        "UPDATE help_requests SET title = 'Alpha: ' || title",
    ])?;
    let key = |i: &Instance| -> Result<String, String> {
        Ok(i.wb_json(&["id"])?["public_key"]
            .as_str()
            .ok_or("no key")?
            .to_string())
    };
    let (ka, kb) = (key(&a)?, key(&b)?);
    b.wb(&["sync", "peers", "add", "alpha", "--key", &ka])?;
    let (mut node, addr) = start_node(&b)?;
    let result = (|| -> Result<(), String> {
        a.wb(&[
            "sync", "peers", "add", "beta", "--key", &kb, "--addr", &addr,
        ])?;

        println!("# 1. Alpha's app exports; wb adopts the snapshot as alpha's signed records.\n");
        a.app(&["export", "data/public_sync"])?;
        a.wb(&["app", "import"])?;
        println!("# 2. The instances sync.\n");
        a.wb(&["sync", "now", "beta"])?;
        println!("# 3. Beta's wb writes the inbox; beta's app imports it.\n");
        b.wb(&["app", "export"])?;
        b.app(&["import", "data/wb_inbox"])?;
        let dump = b.app_dump()?;
        let request = find(&dump, "help_requests", "title", "Alpha: Bike repair")
            .ok_or("alpha's request is not in beta's app")?;
        check(
            find(&dump, "users", "username", "sam@alpha").is_some()
                && request["id"].as_i64().is_some_and(|id| id < 0)
                && find(&dump, "help_requests", "title", "Alpha: Private: rent help").is_none()
                && find(&dump, "users", "username", "admin").is_some_and(|u| u["id"] == 1),
            "beta's app shows alpha's public user sam@alpha and request (under ids of their own); \
             alpha's private request did not come; beta's admin is still user 1",
        )?;

        println!(
            "# 4. Beta's sam comments on alpha's request, in beta's app; the loop runs back.\n"
        );
        let rid = request["id"].to_string();
        b.app(&[
            "exec",
            "INSERT INTO request_comments (help_request_id, user_id, body, created_at, sync_scope) \
             VALUES (?, 3, 'I can lend a wheel', '2025-11-05T09:00:00', 'public')",
            &rid,
        ])?;
        b.app(&["export", "data/public_sync"])?;
        b.wb(&["app", "import"])?;
        a.wb(&["sync", "now", "beta"])?;
        let comments = a.wb_json(&["record", "list", "--entity", "comment", "--origin", &kb])?;
        let reference = format!("{}/2", hex_of(&ka).ok_or("alpha's key is not base64")?);
        let found = comments.as_array().into_iter().flatten().any(|c| {
            c["body"] == "I can lend a wheel"
                && c["signed"] == true
                && c["fields"]["Request"] == reference.as_str()
        });
        a.wb(&["record", "list", "--entity", "comment"])?;
        check(
            found,
            "alpha's wb holds beta's comment, signed by beta, on alpha's request 2",
        )?;
        a.wb(&["app", "status"])?;
        Ok(())
    })();
    let _ = node.kill();
    let _ = node.wait();
    result
}

/// Hex of a base64 key, for references.
fn hex_of(b64: &str) -> Option<String> {
    let key = protocol::PublicKey::parse(b64).ok()?;
    Some(key.to_hex())
}

fn main() -> ExitCode {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("cannot create a temporary directory: {e}");
            return ExitCode::FAILURE;
        }
    };
    match demo(dir.path()) {
        Ok(()) => {
            println!("Demo finished: data flowed both ways between the two apps.");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("demo failed: {e}");
            ExitCode::FAILURE
        }
    }
}
