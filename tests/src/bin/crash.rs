//! The crash matrix's long mode (issue 12, item 4): kills the real `wb` with SIGKILL at seeded
//! random points during each path that writes, and prints a table of paths × seeds × outcome
//! (see `wb_tests::crash`). Exits 1 if any case failed.
//!
//! ```text
//! cargo run --release -p wb-tests --bin crash -- --seeds 50
//! cargo run --release -p wb-tests --bin crash -- --path import --first-seed 17 --seeds 1 -v
//! ```

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use wb_tests::crash::{self, CrashPath};

#[derive(Debug, Parser)]
#[command(
    name = "crash",
    about = "wb's crash matrix: SIGKILL at seeded random points, then open, lost, duplicated, converged"
)]
struct Cli {
    /// Seeds per path.
    #[arg(long, default_value_t = 50)]
    seeds: u64,
    /// The first seed (seeds run from it upwards; 0 is the calibration run's).
    #[arg(long, default_value_t = 1)]
    first_seed: u64,
    /// Only these paths (repeatable): pull, push, continuous, hub, import, export, adopt,
    /// prune, keygen.
    #[arg(long = "path", value_parser = parse_path)]
    paths: Vec<CrashPath>,
    /// Print every case, not only failed ones.
    #[arg(long, short)]
    verbose: bool,
}

fn parse_path(s: &str) -> Result<CrashPath, String> {
    CrashPath::from_name(s).ok_or_else(|| {
        let names: Vec<&str> = CrashPath::ALL.iter().map(|p| p.name()).collect();
        format!("unknown path {s:?}; one of {}", names.join(", "))
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let paths = if cli.paths.is_empty() {
        CrashPath::ALL.to_vec()
    } else {
        cli.paths.clone()
    };
    let start = Instant::now();
    let mut all = Vec::new();
    for path in paths {
        let calibration = crash::calibrate(path);
        eprintln!("{} (calibration)", crash::describe(&calibration));
        if !calibration.ok() {
            all.push(calibration);
            continue;
        }
        for seed in cli.first_seed..cli.first_seed + cli.seeds {
            let o = crash::run_case(path, seed, Some(crash::kill_delay(path, seed)));
            if cli.verbose || !o.ok() {
                eprintln!("{}", crash::describe(&o));
            }
            all.push(o);
        }
        eprintln!(
            "{} done after {:.0} s",
            path.name(),
            start.elapsed().as_secs_f64()
        );
    }
    println!("{}", crash::table(&all));
    let failed = all.iter().filter(|o| !o.ok()).count();
    println!(
        "{} cases, {failed} failed, {:.0} s",
        all.len(),
        start.elapsed().as_secs_f64()
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
