//! The one integration test binary (STYLE.md: one binary with modules).

mod app;
mod app_property;
mod backup;
mod bundles;
mod cli;
mod config;
mod continuous;
mod control;
mod hostile;
mod hub;
mod peers;
mod prune;
mod revocation;
mod sync;
mod vouch;
