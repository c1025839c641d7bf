//! Runs the real `wb` binary in temporary directories, one home per [`TestHome`].
//!
//! The binary is built once per test process with the same cargo and profile as the test
//! binary itself, so `cargo test -p wb-tests` always runs the current `wb`.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;

use serde_json::Value;
use tempfile::TempDir;

/// Environment variables that change how `wb` behaves; every run starts without them.
const CLEARED_ENV: &[&str] = &["WB_SYNC_HOME", "RUST_LOG", "RUST_BACKTRACE"];

/// The path of a freshly built `wb` binary (built once per process).
pub fn wb_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(build_wb)
}

fn build_wb() -> PathBuf {
    // …/target/<profile>/deps/integration-xxxx (a test) or …/target/<profile>/demo (a binary
    // of this crate) → …/target/<profile>
    let exe = std::env::current_exe().expect("path of the running binary");
    let mut profile_dir = exe
        .parent()
        .expect("the running binary lives in <target>/<profile>")
        .to_path_buf();
    if profile_dir.file_name() == Some(OsStr::new("deps")) {
        profile_dir.pop();
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace");
    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .args(["build", "--quiet", "-p", "wb-cli", "--bin", "wb"])
        .current_dir(workspace);
    without_cargo_test_env(&mut cargo);
    if profile_dir.file_name() == Some(OsStr::new("release")) {
        cargo.arg("--release");
    }
    let out = cargo.output().expect("run cargo build for wb");
    assert!(
        out.status.success(),
        "cargo build -p wb-cli failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bin = profile_dir.join(format!("wb{}", std::env::consts::EXE_SUFFIX));
    assert!(bin.is_file(), "no wb binary at {}", bin.display());
    bin
}

/// What one `wb` run printed.
#[derive(Debug)]
pub struct Run {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(out: Output) -> Self {
        Self {
            status: out.status,
            stdout: String::from_utf8(out.stdout).expect("wb printed UTF-8 on stdout"),
            stderr: String::from_utf8(out.stderr).expect("wb printed UTF-8 on stderr"),
        }
    }
}

impl Run {
    /// Panics (with everything printed) if stderr shows a panic or a backtrace hint.
    pub fn assert_no_panic(&self) -> &Self {
        assert!(
            !self.stderr.contains("panicked") && !self.stderr.contains("RUST_BACKTRACE"),
            "wb panicked:\n{self}"
        );
        self
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// A temporary working directory with one wb home in it (`<tmp>/home`, not created until a
/// command creates it). Start several for tests that need several instances.
#[derive(Debug)]
pub struct TestHome {
    tmp: TempDir,
    home: PathBuf,
}

impl Default for TestHome {
    fn default() -> Self {
        Self::new()
    }
}

impl TestHome {
    pub fn new() -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("wb-test-")
            .tempdir()
            .expect("create a temporary directory");
        let home = tmp.path().join("home");
        Self { tmp, home }
    }

    /// A new home that has run `wb init`.
    pub fn initialized() -> Self {
        let t = Self::new();
        t.ok(["init"]);
        t
    }

    /// The working directory of every run.
    pub fn dir(&self) -> &Path {
        self.tmp.path()
    }

    /// The home passed as `--home`.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// A path inside the home.
    pub fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.home.join(rel)
    }

    /// `wb` with a clean environment and cwd = [`Self::dir`], but no `--home`: for tests of
    /// home resolution, stdin/stdout handling and the like.
    pub fn bare_command(&self) -> Command {
        let mut cmd = Command::new(wb_bin());
        cmd.current_dir(self.dir()).stdin(Stdio::null());
        for var in CLEARED_ENV {
            cmd.env_remove(var);
        }
        // wb's settings variables (WB_LISTEN, WB_NODE_*, …: `wb config show`).
        for (var, _) in std::env::vars_os() {
            if var.to_string_lossy().starts_with("WB_") {
                cmd.env_remove(var);
            }
        }
        cmd
    }

    /// `wb --home <home> ARGS…`, not yet run.
    pub fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.bare_command();
        cmd.arg("--home").arg(&self.home).args(args);
        cmd
    }

    /// Runs `wb --home <home> ARGS…` and returns what it printed, whatever the exit status.
    pub fn run<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let run: Run = self
            .command(args)
            .output()
            .expect("run the wb binary")
            .into();
        run.assert_no_panic();
        run
    }

    /// Runs and asserts success; returns everything printed (for warnings on stderr).
    pub fn ok_run<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let run = self.run(args);
        assert!(run.status.success(), "wb failed:\n{run}");
        run
    }

    /// Runs, asserts success and no `error:` on stderr; returns stdout.
    pub fn ok<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let run = self.ok_run(args);
        assert!(
            !run.stderr.contains("error"),
            "wb succeeded with an error:\n{run}"
        );
        run.stdout
    }

    /// Runs with `--json`, asserts success, and parses stdout as one JSON document.
    pub fn json<I, S>(&self, args: I) -> Value
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.command(["--json"]);
        cmd.args(args);
        let run: Run = cmd.output().expect("run the wb binary").into();
        run.assert_no_panic();
        assert!(run.status.success(), "wb --json failed:\n{run}");
        serde_json::from_str(&run.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{run}"))
    }

    /// Runs, asserts a non-zero exit with exactly one line on stderr that starts with
    /// `error: `; returns that line (without the newline).
    pub fn fail<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let run = self.run(args);
        assert_one_line_error(&run);
        run.stderr.trim_end_matches('\n').to_string()
    }

    /// Every record, deleted ones included, as `record list --json --deleted` prints them.
    pub fn all_records(&self) -> Value {
        self.json(["record", "list", "--deleted"])
    }
}

/// Asserts a failed run that printed exactly one `error: ` line on stderr and nothing else.
pub fn assert_one_line_error(run: &Run) {
    run.assert_no_panic();
    assert!(!run.status.success(), "wb should have failed:\n{run}");
    assert!(
        run.status.code().is_some(),
        "wb was killed by a signal:\n{run}"
    );
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert!(
        lines.len() == 1 && lines[0].starts_with("error: ") && run.stderr.ends_with('\n'),
        "stderr should be one `error: ` line:\n{run}"
    );
}

impl TestHome {
    /// The instance's secret key, read from the home's key files (for crafting signed input).
    pub fn secret_key(&self) -> protocol::SecretKey {
        store::Home::new(&self.home)
            .load_key()
            .unwrap_or_else(|e| panic!("read the key of {}: {e}", self.home.display()))
    }
}

/// Every file under `dir` (recursively, hidden ones included) by `/`-separated relative path,
/// with its bytes; a symbolic link is recorded as `-> TARGET`, not followed. Empty if `dir` does
/// not exist. For asserting that a command left a directory exactly as it was.
pub fn tree(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((path, rel)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&path) else {
            continue;
        };
        for entry in entries {
            let entry = entry.expect("read a directory entry");
            let name = entry.file_name().to_string_lossy().into_owned();
            let child = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let file_type = entry.file_type().expect("file type of a directory entry");
            if file_type.is_symlink() {
                let target = std::fs::read_link(entry.path()).expect("read a symbolic link");
                out.insert(child, format!("-> {}", target.display()).into_bytes());
            } else if file_type.is_dir() {
                stack.push((entry.path(), child));
            } else {
                out.insert(child, std::fs::read(entry.path()).expect("read a file"));
            }
        }
    }
    out
}

/// Copies the regular files and directories under `from` into `to` (created as needed).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the copy's directory");
    for entry in std::fs::read_dir(from).expect("read the directory to copy") {
        let entry = entry.expect("read a directory entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy a file");
        }
    }
}

/// The paths on which two [`tree`] snapshots differ (added, removed or changed), sorted.
pub fn tree_diff(
    before: &std::collections::BTreeMap<String, Vec<u8>>,
    after: &std::collections::BTreeMap<String, Vec<u8>>,
) -> Vec<String> {
    let mut paths: Vec<String> = before
        .keys()
        .chain(after.keys())
        .filter(|p| before.get(*p) != after.get(*p))
        .cloned()
        .collect();
    paths.sort();
    paths.dedup();
    paths
}

// ---------------------------------------------------------------------------------------------
// Nodes: `wb node run` as a child process, and peer registration between homes.
// ---------------------------------------------------------------------------------------------

/// How long a node may take to print its ready line, and to stop after SIGTERM.
const NODE_START_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
const NODE_STOP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A `wb --home H --json node run --listen ADDR` child process that printed its ready line.
/// Killed (SIGKILL) when dropped; [`NodeProcess::stop`] stops it cleanly with SIGTERM. Its
/// stderr (with `RUST_LOG=info`) goes to a log file in the home's working directory, printed
/// when a test panics while the node is alive.
#[derive(Debug)]
pub struct NodeProcess {
    child: std::process::Child,
    endpoint_id: String,
    addr: std::net::SocketAddr,
    log: PathBuf,
    /// The rest of stdout after the ready line, read by a thread until the process exits.
    rest: Option<std::thread::JoinHandle<String>>,
}

impl NodeProcess {
    /// The endpoint id the ready line printed (64 hex digits).
    pub fn endpoint_id(&self) -> &str {
        &self.endpoint_id
    }

    /// The bound address the ready line printed (the first IPv4 one).
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the node logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for the process to exit; returns its exit status and the rest
    /// of its stdout (the shutdown summary). Panics if it does not stop in time.
    pub fn stop(mut self) -> (ExitStatus, String) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill -TERM");
        assert!(status.success(), "kill -TERM {} failed", self.child.id());
        let status = self.wait_exit(NODE_STOP_TIMEOUT);
        let rest = self
            .rest
            .take()
            .map(|t| t.join().unwrap_or_default())
            .unwrap_or_default();
        (status, rest)
    }

    /// Kills the process with SIGKILL, mid-whatever, and waits for it to be gone.
    pub fn kill(mut self) -> ExitStatus {
        self.child.kill().expect("send SIGKILL to the node");
        self.wait_exit(NODE_STOP_TIMEOUT)
    }

    fn wait_exit(&mut self, timeout: std::time::Duration) -> ExitStatus {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the node") {
                return status;
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "wb node (pid {}) did not exit within {timeout:?}; its log:\n{}",
                    self.child.id(),
                    self.log()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
            if std::thread::panicking() {
                eprintln!(
                    "--- log of wb node {} (pid {}) ---\n{}",
                    self.endpoint_id,
                    self.child.id(),
                    self.log()
                );
            }
        }
    }
}

impl TestHome {
    /// The instance's public key.
    pub fn public_key(&self) -> protocol::PublicKey {
        self.secret_key().public()
    }

    /// Starts `wb node run --listen 127.0.0.1:0` on this home and waits for its ready line.
    pub fn start_node(&self) -> NodeProcess {
        self.start_node_with("127.0.0.1:0", &[])
    }

    /// Starts `wb --json node run --listen LISTEN EXTRA…` on this home and waits for its ready
    /// line (never a fixed sleep). Use the address of an earlier run to restart a node where
    /// its peers expect it.
    pub fn start_node_with(&self, listen: &str, extra: &[&str]) -> NodeProcess {
        let mut args = vec!["node", "run", "--listen", listen];
        args.extend_from_slice(extra);
        self.start_ready(&args).0
    }

    /// Starts `wb --json ARGS…` (a command that prints a JSON ready line: `node run`, `hub run`)
    /// and waits for its ready line; returns the process and the parsed ready line.
    pub fn start_ready(&self, args: &[&str]) -> (NodeProcess, Value) {
        use std::io::BufRead;
        use std::sync::atomic::{AtomicUsize, Ordering};
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, Ordering::Relaxed);
        let log = self.dir().join(format!("node-{n}.log"));
        let log_file = std::fs::File::create(&log).expect("create the node's log file");
        let mut cmd = self.command(["--json"]);
        cmd.args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file));
        let mut child = cmd.spawn().expect("spawn wb node run");
        let stdout = child.stdout.take().expect("the node's stdout is piped");
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let rest = std::thread::spawn(move || {
            let mut lines = std::io::BufReader::new(stdout).lines();
            if let Some(Ok(first)) = lines.next() {
                let _ = tx.send(first);
            }
            drop(tx);
            let mut rest = String::new();
            for line in lines.map_while(Result::ok) {
                rest.push_str(&line);
                rest.push('\n');
            }
            rest
        });
        let line = match rx.recv_timeout(NODE_START_TIMEOUT) {
            Ok(line) => line,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "wb node run on {} printed no ready line ({e}); its log:\n{}",
                    self.home().display(),
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        };
        let ready: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("the ready line is not JSON ({e}): {line}"));
        assert_eq!(ready["event"], "ready", "unexpected first line: {line}");
        let endpoint_id = ready["endpoint_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no endpoint_id in the ready line: {line}"))
            .to_string();
        let addr = ready["addrs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str()?.parse::<std::net::SocketAddr>().ok())
            .find(std::net::SocketAddr::is_ipv4)
            .unwrap_or_else(|| panic!("no IPv4 address in the ready line: {line}"));
        (
            NodeProcess {
                child,
                endpoint_id,
                addr,
                log,
                rest: Some(rest),
            },
            ready,
        )
    }

    /// Registers `other` as peer NAME: `wb sync peers add NAME --key HEX [--addr A] [--trusted]`.
    pub fn add_peer(
        &self,
        name: &str,
        other: &TestHome,
        addr: Option<std::net::SocketAddr>,
        trusted: bool,
    ) {
        let key = other.public_key().to_hex();
        let mut args = vec![
            "sync".to_string(),
            "peers".into(),
            "add".into(),
            name.into(),
            "--key".into(),
            key,
        ];
        if let Some(addr) = addr {
            args.extend(["--addr".into(), addr.to_string()]);
        }
        if trusted {
            args.push("--trusted".into());
        }
        self.ok(args);
    }

    /// Points a registered peer at one address (e.g. where its node now listens). Edits
    /// `wb_peers.txt` only, so it works while this home's node runs.
    pub fn set_peer_addr(&self, name: &str, addr: std::net::SocketAddr) {
        store::update_peer(&store::Home::new(&self.home), name, |p| {
            p.addrs = vec![addr.to_string()];
        })
        .unwrap_or_else(|e| panic!("set the address of peer {name}: {e}"));
    }

    /// `wb --json sync now PEER EXTRA…`, asserting success; the parsed report.
    pub fn sync_now(&self, peer: &str, extra: &[&str]) -> Value {
        let mut args = vec!["sync", "now", peer];
        args.extend_from_slice(extra);
        self.json(args)
    }

    /// The `digests` object `wb sync status --json` shows for peer `name` (`null`: never
    /// compared).
    pub fn peer_digests(&self, name: &str) -> Value {
        let status = self.json(["sync", "status"]);
        status["peers"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no peer {name} in {status}"))["digests"]
            .clone()
    }
}

/// Makes two homes peers of each other without addresses: `a` knows `b` as `b_name`, `b`
/// knows `a` as `a_name`, both trusted or both not. Set addresses with
/// [`TestHome::set_peer_addr`] once nodes listen.
pub fn link(a: &TestHome, a_name: &str, b: &TestHome, b_name: &str, trusted: bool) {
    a.add_peer(b_name, b, None, trusted);
    b.add_peer(a_name, a, None, trusted);
}

/// Removes the variables cargo sets for a running test (`CARGO_PKG_NAME`, `CARGO_MANIFEST_DIR`,
/// …) from a nested cargo command. Build scripts such as ring's declare
/// `rerun-if-env-changed` on them, so a nested `cargo build` that sees the test's values
/// reruns them, and every later `cargo test` rebuilds ring, rustls and iroh all over again.
fn without_cargo_test_env(cmd: &mut Command) {
    const EXACT: &[&str] = &[
        "CARGO_MANIFEST_DIR",
        "CARGO_MANIFEST_PATH",
        "CARGO_MANIFEST_LINKS",
        "CARGO_CRATE_NAME",
        "CARGO_BIN_NAME",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_TMPDIR",
        "CARGO_RUSTC_CURRENT_DIR",
        "OUT_DIR",
    ];
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else {
            continue;
        };
        if EXACT.contains(&name)
            || name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_BIN_EXE_")
        {
            cmd.env_remove(name);
        }
    }
}

/// The public key of a fixed test instance (no home needed).
pub fn key(seed: u8) -> protocol::PublicKey {
    protocol::SecretKey::from_bytes(&[seed; 32]).public()
}

/// iroh's base32 form of a key (RFC 4648 base32 without padding, lowercase), which every
/// command taking a key accepts.
pub fn base32(key: &protocol::PublicKey) -> String {
    data_encoding::BASE32_NOPAD
        .encode(key.as_bytes())
        .to_ascii_lowercase()
}

// ---------------------------------------------------------------------------------------------
// Hubs: `wb hub run` as a child process.
// ---------------------------------------------------------------------------------------------

/// A running `wb hub run` and what its ready line said.
#[derive(Debug)]
pub struct HubProcess {
    pub process: NodeProcess,
    /// The relay URL instances are given (`--relay-listen`), if any.
    pub relay_url: Option<String>,
}

impl TestHome {
    /// Starts `wb --json hub run --listen 127.0.0.1:0 EXTRA…` on this home (created if new) and
    /// waits for its ready line.
    pub fn start_hub(&self, extra: &[&str]) -> HubProcess {
        let mut args = vec!["hub", "run", "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let (process, ready) = self.start_ready(&args);
        assert_eq!(ready["role"], "hub", "not a hub's ready line: {ready}");
        HubProcess {
            process,
            relay_url: ready["relay_url"].as_str().map(str::to_string),
        }
    }

    /// Registers a running hub as peer NAME: `wb sync peers add NAME --key HEX --addr A --hub`.
    pub fn add_hub(&self, name: &str, hub: &TestHome, process: &NodeProcess) {
        self.ok([
            "sync",
            "peers",
            "add",
            name,
            "--key",
            &hub.public_key().to_hex(),
            "--addr",
            &process.addr().to_string(),
            "--hub",
        ]);
    }
}

// ---------------------------------------------------------------------------------------------
// Records and background `sync now`: what several test files do the same way.
// ---------------------------------------------------------------------------------------------

/// `wb record put user ID --scope SCOPE --field Username=ID`.
/// The live record ids of `origin` that `t` holds (`wb record list --origin`; through the
/// control socket while its node runs).
pub fn live_ids_of(
    t: &TestHome,
    origin: &protocol::PublicKey,
) -> std::collections::BTreeSet<String> {
    let list = t.json(["record", "list", "--origin", &origin.to_hex()]);
    list.as_array()
        .expect("an array")
        .iter()
        .filter_map(|r| r["id"].as_str().map(str::to_string))
        .collect()
}

/// A public record of `key`'s origin, versioned now, with `fields` and no body, signed by `key`.
pub fn signed_public(
    key: &protocol::SecretKey,
    entity: protocol::Entity,
    id: &str,
    fields: Vec<(String, String)>,
) -> protocol::Record {
    let mut r = protocol::Record {
        origin: key.public(),
        entity,
        id: id.to_string(),
        version: protocol::Version::new(store::time::now_ms(), 0),
        scope: protocol::Scope::Public,
        deleted: false,
        fields,
        body: String::new(),
        signature: None,
    };
    r.sign(key).expect("sign");
    r
}

/// A set of record ids, to compare with [`live_ids_of`].
pub fn id_set(ids: &[&str]) -> std::collections::BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

/// `t`'s `wb sync peers list --json` entry for NAME.
pub fn peer_entry(t: &TestHome, name: &str) -> Value {
    let list = t.json(["sync", "peers", "list"]);
    list.as_array()
        .expect("an array")
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no peer {name} in {list}"))
        .clone()
}

pub fn put_user(t: &TestHome, id: &str, scope: &str) {
    put_user_named(t, id, id, scope);
}

/// `wb record put user ID --scope SCOPE --field Username=USERNAME`.
pub fn put_user_named(t: &TestHome, id: &str, username: &str, scope: &str) {
    t.ok([
        "record",
        "put",
        "user",
        id,
        "--scope",
        scope,
        "--field",
        &format!("Username={username}"),
    ]);
}

/// The ids in a `wb --json record list` answer, in its order.
pub fn record_ids(list: &Value) -> Vec<&str> {
    list.as_array()
        .expect("record list --json prints an array")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect()
}

/// A count in a JSON report (`sync now`, `sync prune`, …); fails if it is missing.
pub fn count(report: &Value, key: &str) -> u64 {
    report[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no count {key:?} in {report}"))
}

/// Writes `n` public user records `u00000`… straight into `t`'s store, signed with its key, in
/// batches of 1,000 (10,000 CLI calls would take minutes). Returns them.
pub fn bulk_public_users(t: &TestHome, n: usize) -> Vec<protocol::Record> {
    bulk_users(t, n, |_| (protocol::Scope::Public, false))
}

/// Writes `n` user records `u00000`… straight into `t`'s store, signed with its key, in
/// batches of 1,000; `kind(i)` gives record `i`'s scope and whether it is a tombstone (no
/// fields). Returns them.
pub fn bulk_users(
    t: &TestHome,
    n: usize,
    kind: impl Fn(usize) -> (protocol::Scope, bool),
) -> Vec<protocol::Record> {
    use protocol::{Entity, Record, Version};
    let (key, store) = store::Home::new(t.home())
        .open()
        .expect("open the home's store");
    let now = store::time::now_ms();
    let mut all = Vec::with_capacity(n);
    for start in (0..n).step_by(1_000) {
        let batch: Vec<Record> = (start..n.min(start + 1_000))
            .map(|i| {
                let id = format!("u{i:05}");
                let (scope, deleted) = kind(i);
                let fields = if deleted {
                    Vec::new()
                } else {
                    vec![
                        ("Username".into(), id.clone()),
                        ("Bio".into(), format!("bulk record number {i}")),
                    ]
                };
                let mut r = Record {
                    origin: key.public(),
                    entity: Entity::User,
                    id,
                    version: Version::new(now, u32::try_from(i).expect("small")),
                    scope,
                    deleted,
                    fields,
                    body: String::new(),
                    signature: None,
                };
                r.sign(&key).expect("sign");
                r
            })
            .collect();
        let report = store
            .apply_batch(&batch, &store::ApplyOptions::new("test bulk load", now))
            .expect("apply a bulk batch");
        assert_eq!(report.new, batch.len() as u64, "bulk load: {report:?}");
        all.extend(batch);
    }
    all
}

impl TestHome {
    /// `wb --json sync now ARGS…` started in the background; see [`finish`].
    pub fn spawn_sync_now(&self, args: &[&str]) -> std::process::Child {
        let mut cmd = self.command(["--json", "sync", "now"]);
        cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.spawn().expect("spawn wb sync now")
    }
}

/// Waits for a background `wb` (no time limit: `sync now` has its own connect timeout).
pub fn finish(child: std::process::Child) -> Run {
    let run: Run = child
        .wait_with_output()
        .expect("wait for a background wb")
        .into();
    run.assert_no_panic();
    run
}

/// A background `sync now` that must have succeeded; its JSON report.
pub fn finish_ok(child: std::process::Child) -> Value {
    let run = finish(child);
    assert!(run.status.success(), "sync now failed:\n{run}");
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{run}"))
}

// ---------------------------------------------------------------------------------------------
// In-process nodes and raw `wb-sync/1` clients.
// ---------------------------------------------------------------------------------------------

/// A multi-threaded tokio runtime with two workers, for tests that are not async themselves.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("start a tokio runtime")
}

/// One in-process instance: a home in a temporary directory, its store and its node (`None`
/// once [`InProcess::shutdown`]).
pub struct InProcess {
    pub dir: TempDir,
    pub home: store::Home,
    pub key: protocol::SecretKey,
    pub store: std::sync::Arc<store::Store>,
    pub node: Option<node::node::RunningNode>,
}

impl std::fmt::Debug for InProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "InProcess({})", self.home.root().display())
    }
}

impl InProcess {
    /// A new home named `name` with a node listening on 127.0.0.1 (any port).
    pub async fn start(name: &str) -> Self {
        Self::start_on(name, "127.0.0.1:0".parse().expect("addr")).await
    }

    /// A new home named `name` with a node listening on `listen`.
    pub async fn start_on(name: &str, listen: std::net::SocketAddr) -> Self {
        Self::start_with(name, listen, node::session::Deadlines::default()).await
    }

    /// A new home named `name` with a node listening on `listen`, its sessions under
    /// `deadlines`.
    pub async fn start_with(
        name: &str,
        listen: std::net::SocketAddr,
        deadlines: node::session::Deadlines,
    ) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("wb-node-")
            .tempdir()
            .expect("temp dir");
        let home = store::Home::new(dir.path().join("home"));
        let (_, key, store) = home.init(Some(name)).expect("init a home");
        let mut this = Self {
            dir,
            home,
            key,
            store: std::sync::Arc::new(store),
            node: None,
        };
        this.run_with(listen, deadlines).await;
        this
    }

    /// Starts the home's node on `listen` (it must not be running).
    pub async fn run(&mut self, listen: std::net::SocketAddr) {
        self.run_with(listen, node::session::Deadlines::default())
            .await;
    }

    /// Starts the home's node on `listen` under `deadlines` (it must not be running).
    pub async fn run_with(
        &mut self,
        listen: std::net::SocketAddr,
        deadlines: node::session::Deadlines,
    ) {
        assert!(self.node.is_none(), "the node already runs");
        // A port this home's node just left can stay held for a moment while its endpoint's
        // tasks wind down: binding it again is retried for a few seconds, not failed at once.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        let node = loop {
            let started = node::node::start(
                node::node::NodeConfig {
                    home: self.home.clone(),
                    listen,
                    open: false,
                    deadlines,
                    faults: node::session::Faults::default(),
                    discovery: node::discovery::Discovery::Off,
                },
                self.key.clone(),
                self.store.clone(),
            )
            .await;
            match started {
                Err(node::NodeError::Bind { .. })
                    if listen.port() != 0 && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                other => break other.expect("start a node"),
            }
        };
        self.node = Some(node);
    }

    /// Shuts the node down, if it runs; the home and its store stay.
    pub async fn shutdown(&mut self) {
        if let Some(node) = self.node.take() {
            node.shutdown().await.expect("shut the node down");
        }
    }

    pub fn running(&mut self) -> &mut node::node::RunningNode {
        self.node.as_mut().expect("running")
    }

    pub fn handle(&self) -> node::node::NodeHandle {
        self.node.as_ref().expect("running").handle()
    }

    /// Where the node listens.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.node.as_ref().expect("running").addrs()[0]
    }

    pub fn public(&self) -> protocol::PublicKey {
        self.key.public()
    }

    /// Registers peer `name` with `key` at `addrs` (none: the peer dials, or a hub finds it).
    pub fn add_peer(
        &self,
        name: &str,
        key: protocol::PublicKey,
        addrs: &[std::net::SocketAddr],
        trusted: bool,
    ) {
        store::add_peer(
            &self.home,
            store::Peer {
                name: name.to_string(),
                public_key: key,
                addrs: addrs.iter().map(ToString::to_string).collect(),
                hub: false,
                trusted,
                revoked: false,
                follow_revocations: false,
                notes: String::new(),
            },
        )
        .expect("add peer");
    }
}

/// Writes user `id` (Username = id) in `scope` into `store` as a local record signed by `key`:
/// what `wb record put user` does, for in-process tests.
pub fn store_put_user(
    store: &store::Store,
    key: &protocol::SecretKey,
    id: &str,
    scope: protocol::Scope,
) {
    store
        .update_local::<store::StoreError>(
            key,
            protocol::Entity::User,
            id,
            store::time::now_ms(),
            |_| {
                Ok(store::Draft {
                    scope,
                    deleted: false,
                    fields: vec![("Username".into(), id.to_string())],
                    body: String::new(),
                })
            },
        )
        .unwrap_or_else(|e| panic!("put user {id}: {e}"));
}

/// Runs `handler` as a fake peer node (its own key, on loopback) and registers it in `t` as
/// NAME with its address; shut the router down at the end.
pub fn fake_peer<H: iroh::protocol::ProtocolHandler>(
    t: &TestHome,
    rt: &tokio::runtime::Runtime,
    name: &str,
    key: protocol::SecretKey,
    handler: H,
) -> iroh::protocol::Router {
    let (router, addr) = rt.block_on(async {
        let ep = node::node::bind_endpoint(&key, "127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind");
        let addr = ep.bound_sockets()[0];
        (
            iroh::protocol::Router::builder(ep)
                .accept(protocol::wire::SYNC_ALPN, handler)
                .spawn(),
            addr,
        )
    });
    t.ok([
        "sync",
        "peers",
        "add",
        name,
        "--key",
        &key.public().to_hex(),
        "--addr",
        &addr.to_string(),
    ]);
    router
}

/// A raw connection with `key` to the node or hub `to` at `addr`, on `alpn`.
pub async fn raw_connect(
    key: &protocol::SecretKey,
    to: &protocol::PublicKey,
    addr: std::net::SocketAddr,
    alpn: &[u8],
) -> (iroh::Endpoint, iroh::endpoint::Connection) {
    let endpoint = node::node::bind_endpoint(key, "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("bind a raw client endpoint");
    let id = node::identity::endpoint_id(to).expect("endpoint id");
    let conn = endpoint
        .connect(iroh::EndpointAddr::new(id).with_ip_addr(addr), alpn)
        .await
        .expect("connect");
    (endpoint, conn)
}

/// Pushes `records` to the node or hub `to` at `addr` as instance `key` would in a `wb-sync/1`
/// session (Hello, Offer, one Batch, Bye), whatever they hold, and waits until the other side
/// has finished the session. Returns the role its `Hello` gave.
pub async fn raw_push(
    key: &protocol::SecretKey,
    to: &protocol::PublicKey,
    addr: std::net::SocketAddr,
    records: &[protocol::Record],
) -> protocol::wire::Role {
    use protocol::wire::{Cursor, Message, Role, SYNC_ALPN};
    let (endpoint, conn) = raw_connect(key, to, addr, SYNC_ALPN).await;
    let (send, recv) = conn.open_bi().await.expect("open a stream");
    let mut ch = node::session::Channel::new("raw".into(), send, recv);
    ch.send(&Message::hello([9; 16], Role::Node))
        .await
        .expect("send Hello");
    let (_, role, _) = node::session::expect_hello(&mut ch)
        .await
        .expect("the other side says Hello");
    ch.send(&Message::Offer).await.expect("send Offer");
    match ch.expect("Pull").await.expect("the other side pulls") {
        Message::Pull { .. } => {}
        other => panic!("expected Pull, got {other:?}"),
    }
    ch.send(&Message::Batch {
        records: records
            .iter()
            .map(protocol::Record::to_sealed_bytes)
            .collect(),
        next: Cursor {
            epoch: [9; 16],
            seq: records.len() as u64,
        },
        done: true,
    })
    .await
    .expect("send a batch");
    ch.send(&Message::Bye).await.expect("send Bye");
    ch.finish().await;
    // The other side finishes its side once the batch is applied and our Bye read.
    while let Ok(Some(_)) = ch.recv().await {}
    conn.close(0u32.into(), b"bye");
    endpoint.close().await;
    role
}

/// The convergence oracle (issue 12): whether `a` and `b` hold what each offers the other,
/// by their state digests (`store::digest::between`), with the trust each has in the other.
/// `Err` lists the differences. Opens both stores (for writing, so a store left by a killed
/// process is repaired first): call it while their nodes are stopped (a running node holds its
/// store).
pub fn digests_equal(
    a: &TestHome,
    b: &TestHome,
    a_trusts_b: bool,
    b_trusts_a: bool,
) -> Result<(), String> {
    let read = |t: &TestHome| {
        store::Store::open(&t.path("store.redb"))
            .and_then(|s| s.digests())
            .unwrap_or_else(|e| panic!("digests of {}: {e}", t.home().display()))
    };
    digests_between(
        &read(a),
        &a.public_key(),
        a_trusts_b,
        &read(b),
        &b.public_key(),
        b_trusts_a,
    )
}

/// [`digests_equal`] over digests already read (in-process stores: `store.digests()`).
pub fn digests_between(
    a: &store::StoreDigests,
    a_key: &protocol::PublicKey,
    a_trusts_b: bool,
    b: &store::StoreDigests,
    b_key: &protocol::PublicKey,
    b_trusts_a: bool,
) -> Result<(), String> {
    let outcome = store::digest::between(a, a_key, a_trusts_b, b, b_key, b_trusts_a);
    if outcome.differences_total == 0 {
        Ok(())
    } else {
        Err(format!("{:?}", outcome.differences))
    }
}
