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
