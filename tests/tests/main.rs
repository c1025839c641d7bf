//! The one integration test binary (STYLE.md: one binary with modules).

mod announce;
mod app;
mod app_property;
mod backup;
mod bundles;
mod cli;
mod config;
mod continuous;
mod control;
mod crash;
mod digests;
mod discovery;
mod docs;
mod doctor;
mod hostile;
mod hub;
mod metrics;
mod partition;
mod peers;
mod prune;
mod revocation;
mod succession;
mod sync;
mod vouch;
