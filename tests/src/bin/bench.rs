//! Benchmarks of wb: figures and ratios against baselines measured in the same run, never
//! pass/fail timings (these machines are noisy; DESIGN §13). A missed target is reported, not
//! an error: the command exits 0 unless something breaks.
//!
//! ```text
//! cargo run --release -p wb-tests --bin bench -- bundles [--records N] [--runs R] [--json]
//! cargo run --release -p wb-tests --bin bench -- sync [--records N] [--runs R] [--json]
//! cargo run --release -p wb-tests --bin bench -- hub [--instances 5,20] [--records R] [--concurrency K] [--json]
//! cargo run --release -p wb-tests --bin bench -- fields [--fields N] [--runs R] [--json]
//! cargo run --release -p wb-tests --bin bench -- soak [--minutes N] [--sample-s S] [--json]
//! ```
//!
//! Each benchmark is a subcommand with its module in `src/bench/`.

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[path = "../bench/mod.rs"]
mod bench;

use bench::{bundles, fields, hub, measure, soak, sync};

#[derive(Debug, Parser)]
#[command(
    name = "bench",
    about = "wb benchmarks: figures and ratios against a baseline measured in the same run"
)]
struct Cli {
    /// Print one JSON document with every figure instead of a table.
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Export and import N records through the real `wb sync export|import` (issue 3).
    Bundles(bundles::BundlesArgs),
    /// Sync N records from a node to a fresh node over iroh on loopback, with its stages
    /// measured alone, and one-record incremental syncs (issue 4).
    Sync(sync::SyncArgs),
    /// Fan-out through a hub: N instances each publishing R public records, synced through
    /// one `wb hub run` until every instance holds all; hub peak memory (issue 5).
    Hub(hub::HubArgs),
    /// Validating and verifying one signed record with very many fields (issue 11, item 5).
    Fields(fields::FieldsArgs),
    /// Three nodes and a hub under continuous churn for N minutes: memory, file descriptors,
    /// threads and tokio tasks of each process sampled, with their slopes (issue 12, item 6).
    Soak(soak::SoakArgs),
    /// Runs one program and prints its wall time, peak memory and CPU time as JSON (used by
    /// the benchmarks to measure `wb`).
    #[command(name = measure::MEASURE_CHILD, hide = true)]
    MeasureChild {
        program: OsString,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Bundles(args) => bundles::run(args, cli.json),
        Command::Sync(args) => sync::run(args, cli.json),
        Command::Hub(args) => hub::run(args, cli.json),
        Command::Fields(args) => fields::run(args, cli.json),
        Command::Soak(args) => soak::run(args, cli.json),
        Command::MeasureChild { program, args } => return measure::measure_child(program, args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
