//! The one integration test binary (STYLE.md: one binary with modules).

mod bundles;
mod cli;
mod peers;
mod sync;
