//! The README's main job: two wb instances on loopback, in temporary homes. `alpha` holds a
//! public, a trusted and a private record; `beta` runs a node; alpha syncs with it. The public
//! record arrives (verified against alpha's key), the private one does not, and the trusted one
//! only once beta is trusted. Every command is printed with its output; the demo fails if a step
//! does not behave as shown.
//!
//! Run it with `cargo run -p wb-tests --bin demo`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use wb_tests::harness::wb_bin;

struct Demo {
    dir: tempfile::TempDir,
}

impl Demo {
    fn home(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// Runs `wb --home <home> args…`, printing the command and its output.
    fn wb(&self, home: &str, args: &[&str]) -> Result<String, String> {
        println!("$ wb --home {home} {}", args.join(" "));
        let out = Command::new(wb_bin())
            .arg("--home")
            .arg(self.home(home))
            .args(args)
            .env_remove("WB_SYNC_HOME")
            .output()
            .map_err(|e| format!("cannot run wb: {e}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        print!("{stdout}");
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        println!();
        if out.status.success() {
            Ok(stdout)
        } else {
            Err(format!("`wb {}` failed", args.join(" ")))
        }
    }

    fn json(&self, home: &str, args: &[&str]) -> Result<Value, String> {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let text = self.wb(home, &all)?;
        serde_json::from_str(&text).map_err(|e| format!("bad JSON from wb: {e}"))
    }

    /// Starts `wb node run` for a home and waits for its ready line. Returns the child and the
    /// address it listens on.
    fn start_node(&self, home: &str) -> Result<(Child, String), String> {
        println!("$ wb --home {home} node run --listen 127.0.0.1:0 &");
        let mut child = Command::new(wb_bin())
            .arg("--home")
            .arg(self.home(home))
            .args(["--json", "node", "run", "--listen", "127.0.0.1:0"])
            .env_remove("WB_SYNC_HOME")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start the node: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut line = String::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| format!("reading the ready line: {e}"))?;
        if Instant::now() > deadline || line.is_empty() {
            let _ = child.kill();
            return Err("the node did not report ready".into());
        }
        println!("{}", line.trim_end());
        let ready: Value = serde_json::from_str(&line).map_err(|e| format!("ready line: {e}"))?;
        let addr = ready["addrs"][0]
            .as_str()
            .ok_or("ready line without an address")?
            .to_string();
        println!();
        Ok((child, addr))
    }

    fn stop_node(&self, mut guard: KillOnDrop) -> Result<(), String> {
        let mut child = guard.0.take().ok_or("no node")?;
        println!("(stopping the node with SIGTERM)\n");
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .map_err(|e| format!("kill: {e}"))?;
        let status = child.wait().map_err(|e| format!("wait: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("the node exited with {status}"))
        }
    }
}

/// Kills the node if the demo stops early, so no process outlives it.
struct KillOnDrop(Option<Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
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

fn ids(records: &Value) -> Vec<String> {
    records
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| {
                    format!(
                        "{} {}",
                        r["entity"].as_str().unwrap_or(""),
                        r["id"].as_str().unwrap_or("")
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn run() -> Result<(), String> {
    let demo = Demo {
        dir: tempfile::tempdir().map_err(|e| e.to_string())?,
    };
    println!(
        "# Two wb instances on loopback, in {}\n",
        demo.dir.path().display()
    );
    println!("# 1. Two instances, each with its own key.");
    let alpha = demo.json("alpha", &["init", "--name", "alpha"])?;
    let beta = demo.json("beta", &["init", "--name", "beta"])?;
    let alpha_key = alpha["public_key"].as_str().ok_or("no key")?.to_string();
    let beta_key = beta["public_key"].as_str().ok_or("no key")?.to_string();

    println!("# 2. alpha writes a public profile, a trusted request and a private note.");
    demo.wb(
        "alpha",
        &[
            "record",
            "put",
            "user",
            "1",
            "--field",
            "Username=rosa",
            "--scope",
            "public",
        ],
    )?;
    demo.wb(
        "alpha",
        &[
            "record",
            "put",
            "request",
            "7",
            "--field",
            "Title=Fix a bike tyre",
            "--field",
            "Status=open",
            "--scope",
            "trusted",
        ],
    )?;
    demo.wb(
        "alpha",
        &["record", "put", "user", "2", "--field", "Username=quiet"],
    )?;

    println!("# 3. beta runs a node; each side registers the other.");
    let (node, addr) = demo.start_node("beta")?;
    let node = KillOnDrop(Some(node));
    demo.wb(
        "beta",
        &["sync", "peers", "add", "alpha", "--key", &alpha_key],
    )?;
    demo.wb(
        "alpha",
        &[
            "sync", "peers", "add", "beta", "--key", &beta_key, "--addr", &addr,
        ],
    )?;

    println!("# 4. alpha syncs with beta (pull, then push) over QUIC.");
    let first = demo.json("alpha", &["sync", "now", "beta"])?;
    check(
        first["sent"] == 1,
        "alpha sent exactly one record: the public one",
    )?;

    println!("# 5. alpha marks beta trusted and syncs again.");
    demo.wb("alpha", &["sync", "peers", "trust", "beta"])?;
    let second = demo.json("alpha", &["sync", "now", "beta"])?;
    check(
        second["sent"] == 2,
        "now the trusted request goes too (beta's view widened, so it is served from the start once)",
    )?;
    demo.stop_node(node)?;

    println!("# 6. What beta holds.");
    let held = demo.json("beta", &["record", "list"])?;
    let held = ids(&held);
    check(
        held.contains(&"user 1".to_string()),
        "beta has alpha's public user 1",
    )?;
    check(
        held.contains(&"request 7".to_string()),
        "beta has alpha's trusted request 7",
    )?;
    check(
        !held.contains(&"user 2".to_string()),
        "alpha's private user 2 never left alpha",
    )?;
    let got = demo.json(
        "beta",
        &["record", "get", "user", "1", "--origin", &alpha_key],
    )?;
    check(
        got["signed"] == true && got["origin"] == alpha_key.as_str(),
        "it carries alpha's signature",
    )?;
    demo.wb("beta", &["sync", "status"])?;
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => {
            println!("Demo finished: every step behaved as expected.");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("demo failed: {e}");
            ExitCode::FAILURE
        }
    }
}
