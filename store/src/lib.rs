//! The wb store crate: the home directory with its key files ([`home`]) and the redb store of
//! records, change log, epoch, clock, conflicts and counters ([`db`]), the peer registry
//! `wb_peers.txt` ([`peers`]), revocations announced and followed ([`revocations`]), a hub's directory of announced addresses ([`hub`]), online backup
//! and restore ([`backup`]) and the store's format version ([`format`]). It
//! knows nothing of the network, and redb types never appear in its public API.

pub mod app;
pub mod backup;
pub mod bundles;
pub mod db;
pub mod digest;
mod error;
pub mod home;
pub mod hub;
pub mod instance;
mod leaving;
mod local;
pub mod peers;
mod random;
pub mod revocations;
pub mod successions;
pub mod time;

pub use db::format;
pub use db::{
    ApplyOptions, ApplyReport, Change, CheckedBatch, Conflict, Draft, Epoch, ListFilter,
    LocalChange, Outgoing, PeerState, Provenance, PruneReport, Receiving, Serving, Store, counter,
};
pub use digest::{DigestDifference, DigestOutcome, Kind as DigestKind, PeerDigests, StoreDigests};
pub use error::{Rejection, Result, StoreError};
pub use home::{Home, InitOutcome, ReplaceStep};
pub use hub::{DirectoryEntry, Holding};
pub use instance::{Instance, InstanceError};
pub use local::LocalBatch;
pub use peers::{
    AppPeersFile, Peer, RegistryCache, add_peer, app_peers_file, find_peer, load_peers,
    peer_by_key, remove_peer, save_peers, update_peer,
};

#[cfg(test)]
mod backup_tests;
#[cfg(test)]
mod digest_tests;
#[cfg(test)]
mod prune_tests;
#[cfg(test)]
mod tests;
