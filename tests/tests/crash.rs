//! The crash matrix in CI (issue 12, item 4): each path that writes, killed with SIGKILL at a
//! few seeded points (`wb_tests::crash`); the long mode is
//! `cargo run --release -p wb-tests --bin crash -- --seeds 50`.

use wb_tests::crash::{self, CrashPath};

/// Seeds per path in CI: one killed case, on top of the unkilled calibration run, which is
/// checked the same way (the nine paths take about two minutes on two cores).
const CI_SEEDS: std::ops::Range<u64> = 1..2;

fn matrix(path: CrashPath) {
    let calibration = crash::calibrate(path);
    assert!(
        calibration.ok(),
        "the unkilled run fails: {}",
        crash::describe(&calibration)
    );
    let outcomes = crash::run_seeds(path, CI_SEEDS);
    let table = crash::table(&outcomes);
    let failed: Vec<String> = outcomes
        .iter()
        .filter(|o| !o.ok())
        .map(crash::describe)
        .collect();
    assert!(failed.is_empty(), "{table}\n{}", failed.join("\n"));
    eprintln!("{table}");
}

#[test]
fn crash_matrix_pull() {
    matrix(CrashPath::Pull);
}

#[test]
fn crash_matrix_push() {
    matrix(CrashPath::Push);
}

#[test]
fn crash_matrix_continuous() {
    matrix(CrashPath::Continuous);
}

#[test]
fn crash_matrix_hub() {
    matrix(CrashPath::Hub);
}

#[test]
fn crash_matrix_import() {
    matrix(CrashPath::Import);
}

#[test]
fn crash_matrix_export() {
    matrix(CrashPath::Export);
}

#[test]
fn crash_matrix_adopt() {
    matrix(CrashPath::Adopt);
}

#[test]
fn crash_matrix_prune() {
    matrix(CrashPath::Prune);
}

#[test]
fn crash_matrix_keygen() {
    matrix(CrashPath::Keygen);
}
