//! The wb store crate: the home directory with its key files ([`home`]) and the redb store of
//! records, change log, epoch, clock, conflicts and counters ([`db`]). It knows nothing of the
//! network, and redb types never appear in its public API.

pub mod db;
mod error;
pub mod home;
pub mod time;

pub use db::{
    ApplyOptions, ApplyReport, Change, Conflict, Draft, Epoch, ListFilter, LocalChange, Store,
    counter,
};
pub use error::{Rejection, Result, StoreError};
pub use home::{Home, InitOutcome};

#[cfg(test)]
mod tests;
