//! The instance API: what an instance does, as typed calls with typed results — no argument
//! parsing and no printing. `wb` (the `cli` crate) parses a command line, calls one of these
//! and renders the result; a running node serves the same calls to control-socket clients; a
//! test or another program can call them directly.
//!
//! - [`Instance`]: an opened home (its key, its store and where it lives).
//! - [`records`]: put, remove and rescope a local record, with the `Contact-*` and vouch rules.
//! - [`trust`]: naming users and instances, vouch candidates, creating vouches;
//!   [`trust_path`]: the shortest chain of invites and vouches to a user.
//! - [`rotate`]: replacing the instance key.
//! - [`origins`]: naming the origins of records (`local`, a key, a key id).
//! - [`prune`]: forgetting records of other instances.
//! - [`status`]: what `wb sync status` reports: records, the outbox, each peer's sync state.
//!
//! Bundles (`bundles`), the app bridge (`app`) and backups (`backup`) are typed calls in their
//! own modules.

pub mod origins;
pub mod prune;
pub mod records;
pub mod rotate;
pub mod status;
pub mod trust;
pub mod trust_path;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use protocol::{Entity, ProtocolError, PublicKey, RecordKey, SecretKey};

use crate::error::StoreError;
use crate::{Home, Store};

pub use prune::PruneTarget;
pub use records::{PutOutcome, PutRecord, ScopeChange};
pub use rotate::Rotation;
pub use trust::{TrustView, UserView};

/// An opened, initialised home.
#[derive(Clone, Debug)]
pub struct Instance {
    home: Home,
    key: SecretKey,
    store: Arc<Store>,
}

impl Instance {
    /// Opens an initialised home (its key files and its store).
    pub fn open(home: &Home) -> Result<Self, StoreError> {
        let (key, store) = home.open()?;
        Ok(Self::from_parts(home.clone(), key, Arc::new(store)))
    }

    /// An instance whose key and store are already open (a running node's).
    pub fn from_parts(home: Home, key: SecretKey, store: Arc<Store>) -> Self {
        Self { home, key, store }
    }

    pub fn home(&self) -> &Home {
        &self.home
    }

    pub fn key(&self) -> &SecretKey {
        &self.key
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// This instance's public key: the origin of its records.
    pub fn public(&self) -> PublicKey {
        self.key.public()
    }
}

/// Why an instance call refused or failed. Nothing was written when it is returned.
#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{}", not_found(.key, .local))]
    NotFound { key: RecordKey, local: PublicKey },
    #[error("{entity} {id} is deleted; put it again before changing its scope")]
    Deleted { entity: Entity, id: String },
    #[error("vouch {id}: a user cannot vouch for themselves ({user})")]
    VouchForSelfInRecord { id: String, user: String },
    #[error("{user} cannot vouch for themselves")]
    VouchForSelf { user: String },
    #[error(
        "{voucher} already vouches for {subject} (vouch {id}); at most one vouch per voucher \
         and subject (withdraw it with `wb record rm vouch {id}`)"
    )]
    DuplicateVouch {
        voucher: String,
        subject: String,
        id: String,
    },
    #[error("vouch id {id} is taken by another vouch record")]
    VouchIdTaken { id: String },
    #[error(
        "no user {subject} known to this instance; a vouch names a user record this instance holds"
    )]
    UnknownSubject { subject: String },
    #[error("empty user reference (expected ORIGIN/ID or ID)")]
    EmptyUserRef,
    #[error("no user {text:?} known to this instance (local or received)")]
    UnknownUser { text: String },
    #[error("no user {id:?} known at {instance} (local or received)")]
    UnknownUserAt { id: String, instance: String },
    #[error("{text:?} names several users ({}); give ORIGIN/ID", .labels.join(", "))]
    AmbiguousUser { text: String, labels: Vec<String> },
    #[error(
        "no user {name:?} at this instance: the voucher must be a local user record \
         (wb record put user ID --field Username={name})"
    )]
    NoLocalUser { name: String },
    #[error(
        "this instance has no user records to start from; pass --from USER_REF to start from \
         another user"
    )]
    NoUsersToStartFrom,
    #[error("no known origin has key id {key_id}")]
    UnknownKeyId { key_id: String },
    #[error(
        "not a key or key id: {text:?} (expected base64, 64 hex digits, a 16-hex key id or `local`)"
    )]
    NotAnOrigin { text: String },
    #[error("{text} is this instance (key id {key_id}); local records are never pruned")]
    PruneOwnInstance { text: String, key_id: String },
    #[error("pruning by age needs a positive number of days")]
    PruneNoDays,
    #[error("cannot back up the old key to {}: {source}", .path.display())]
    KeyBackup {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

impl From<ProtocolError> for InstanceError {
    fn from(e: ProtocolError) -> Self {
        Self::Store(StoreError::Invalid(e))
    }
}

/// `no local request 7`, or `no request 7 from origin <key id>`.
fn not_found(key: &RecordKey, local: &PublicKey) -> String {
    if key.origin == *local {
        format!("no local {} {}", key.entity, key.id)
    } else {
        format!(
            "no {} {} from origin {}",
            key.entity,
            key.id,
            key.origin.key_id()
        )
    }
}
