//! The one integration test binary (STYLE.md: one binary with modules).

mod cli;
mod peers;
