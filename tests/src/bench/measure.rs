//! Wall time, peak memory and CPU time of one child process.
//!
//! The peak resident set of a child is only known to its parent after `wait`, and
//! `getrusage(RUSAGE_CHILDREN)` reports the largest of *all* waited-for children. So each
//! measured program runs under a fresh copy of this binary (`bench measure-child PROGRAM ARGS…`)
//! whose only child it is; that copy prints the figures as JSON. `nix` gives `getrusage` without
//! `unsafe`, which the workspace forbids.

use std::ffi::{OsStr, OsString};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use nix::sys::resource::{UsageWho, getrusage};
use serde_json::{Value, json};

use super::Result;

/// Name of the hidden subcommand that runs and measures one program.
pub const MEASURE_CHILD: &str = "measure-child";

/// Environment variables that change how `wb` behaves; measured runs start without them.
const CLEARED_ENV: &[&str] = &["WB_SYNC_HOME", "RUST_LOG", "RUST_BACKTRACE"];

/// What one measured run did and cost.
#[derive(Debug, Clone)]
pub struct Measured {
    pub wall: Duration,
    /// Peak resident set size of the program, in bytes.
    pub peak_rss_bytes: u64,
    pub user: Duration,
    pub sys: Duration,
    pub stdout: String,
}

/// Runs `program ARGS…` (stdin closed, output captured) through [`MEASURE_CHILD`]; fails with
/// what it printed if it exits unsuccessfully.
pub fn run(program: &OsStr, args: &[&OsStr]) -> Result<Measured> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg(MEASURE_CHILD)
        .arg("--")
        .arg(program)
        .args(args)
        .stdin(Stdio::null());
    for var in CLEARED_ENV {
        cmd.env_remove(var);
    }
    let out = cmd.output()?;
    let report: Value = serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "{MEASURE_CHILD} printed no report ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    let text = |k: &str| report[k].as_str().unwrap_or_default().to_string();
    let number = |k: &str| report[k].as_u64().unwrap_or(0);
    if report["success"] != Value::Bool(true) {
        return Err(format!(
            "{} {} failed ({}):\n{}{}",
            program.to_string_lossy(),
            args.iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" "),
            text("status"),
            text("stdout"),
            text("stderr"),
        )
        .into());
    }
    Ok(Measured {
        wall: Duration::from_nanos(number("wall_ns")),
        peak_rss_bytes: number("max_rss_kib") * 1024,
        user: Duration::from_micros(number("user_us")),
        sys: Duration::from_micros(number("sys_us")),
        stdout: text("stdout"),
    })
}

/// The body of [`MEASURE_CHILD`]: runs the program, waits, and prints one JSON report.
pub fn measure_child(program: &OsStr, args: &[OsString]) -> ExitCode {
    let start = Instant::now();
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output();
    let wall = start.elapsed();
    let out = match out {
        Ok(out) => out,
        Err(e) => {
            eprintln!("error: cannot run {}: {e}", program.to_string_lossy());
            return ExitCode::FAILURE;
        }
    };
    let usage = match getrusage(UsageWho::RUSAGE_CHILDREN) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("error: getrusage: {e}");
            return ExitCode::FAILURE;
        }
    };
    let micros = |t: nix::sys::time::TimeVal| {
        u64::try_from(t.tv_sec()).unwrap_or(0) * 1_000_000 + u64::try_from(t.tv_usec()).unwrap_or(0)
    };
    let report = json!({
        "success": out.status.success(),
        "status": out.status.to_string(),
        "wall_ns": u64::try_from(wall.as_nanos()).unwrap_or(u64::MAX),
        // Linux reports ru_maxrss in KiB.
        "max_rss_kib": u64::try_from(usage.max_rss()).unwrap_or(0),
        "user_us": micros(usage.user_time()),
        "sys_us": micros(usage.system_time()),
        "stdout": String::from_utf8_lossy(&out.stdout),
        "stderr": String::from_utf8_lossy(&out.stderr),
    });
    println!("{report}");
    ExitCode::SUCCESS
}
