//! Shared helpers of the wb integration tests (the `integration` test binary in `tests/`).
//!
//! [`harness`] runs the real `wb` binary in temporary directories (ripgrep's `TestCommand`).

pub mod app;
pub mod crash;
pub mod harness;
pub mod partition;
pub mod pty;
