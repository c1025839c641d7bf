//! The benchmarks of `bench` (see `src/bin/bench.rs`): one module per benchmark, plus the data
//! set and the child-process measurement they share.

pub mod bundles;
pub mod dataset;
pub mod fields;
pub mod hub;
pub mod measure;
pub mod soak;
pub mod sync;

use std::path::Path;

use serde_json::Value;

/// Benchmarks stop at the first error and print it; they never fail on a missed target.
pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Decimal megabytes, the unit of every size the benchmarks print.
pub const MB: f64 = 1_000_000.0;

/// Stops a child `wb` as an operator would (SIGTERM), waiting up to `grace` for it to exit
/// before killing it.
pub fn stop_child(child: &mut std::process::Child, grace: std::time::Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let deadline = std::time::Instant::now() + grace;
    while std::time::Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A benchmark's working directory: a new temporary directory named `prefix…`, in `dir` if
/// given, else in the system's temporary directory.
pub fn work_dir(prefix: &str, dir: Option<&Path>) -> Result<tempfile::TempDir> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(prefix);
    Ok(match dir {
        Some(dir) => builder.tempdir_in(dir)?,
        None => builder.tempdir()?,
    })
}

/// Prints a benchmark's result on stdout: as pretty JSON, or as the benchmark's `table`.
pub fn print_result(doc: &Value, json_out: bool, table: impl Fn(&Value) -> String) -> Result<()> {
    if json_out {
        println!("{}", serde_json::to_string_pretty(doc)?);
    } else {
        print!("{}", table(doc));
    }
    Ok(())
}
