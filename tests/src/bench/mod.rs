//! The benchmarks of `bench` (see `src/bin/bench.rs`): one module per benchmark, plus the data
//! set and the child-process measurement they share.

pub mod bundles;
pub mod dataset;
pub mod hub;
pub mod measure;
pub mod sync;

/// Benchmarks stop at the first error and print it; they never fail on a missed target.
pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Decimal megabytes, the unit of every size the benchmarks print.
pub const MB: f64 = 1_000_000.0;
