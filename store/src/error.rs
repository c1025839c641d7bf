//! Errors of the store crate. redb's own error types never cross this crate's API.

use std::path::PathBuf;

use protocol::peers::PeersError;
use protocol::{ProtocolError, RecordKey};

/// Why a home, key file or store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error(
        "{entity} {id} would be {scope} with contact data in {fields}: contact data leaves this \
         instance only when allowed (--allow-contact); nothing changed"
    )]
    ContactData {
        entity: String,
        id: String,
        scope: String,
        fields: String,
    },
    #[error("no wb home at {0}: run `wb init` first")]
    NotInitialized(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    BadKeyFile { path: PathBuf, reason: String },
    #[error(
        "{public}: this public key does not match the private key in {secret}; \
         restore the matching pair or move both files away"
    )]
    MismatchedKeys { secret: PathBuf, public: PathBuf },
    #[error("{0}: only one of the two key files exists; restore the other or move it away")]
    HalfKeyPair(PathBuf),
    #[error(
        "{store} belongs to key id {store_key_id} but keys/ holds key id {key_id}; restore that \
         store's key files, or move the store away to start a new instance"
    )]
    WrongKeyForStore {
        store: PathBuf,
        store_key_id: String,
        key_id: String,
    },
    #[error(
        "{0} exists but the key files are missing; restore keys/id_ed25519 and \
         keys/id_ed25519.pub from a backup, or move the store away to start a new instance"
    )]
    StoreWithoutKeys(PathBuf),
    #[error("the store {0} is in use by another process (is `wb node run` running on this home?)")]
    InUse(PathBuf),
    #[error(
        "store {path} has format {found}, newer than this wb's format {supported}: it was written \
         by a newer wb; run that version (the file was not changed)"
    )]
    NewerFormat {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    /// `wb backup`: the target cannot be written (a link, a directory, the store itself, a
    /// file that is not a backup).
    #[error("{path}: {reason}; nothing was written")]
    BackupTarget { path: PathBuf, reason: String },
    /// `wb restore`: the file is not a backup of a wb store (or of this instance).
    #[error("{path} is not a usable wb backup: {reason}; nothing was changed")]
    NotABackup { path: PathBuf, reason: String },
    /// The store holds a table this wb does not know, so a copy would lose it.
    #[error(
        "store {path} holds a table {table:?} this wb does not know; a copy without it would \
         lose data, so nothing was written (use the wb that made it)"
    )]
    UnknownTable { path: PathBuf, table: String },
    #[error("store {path}: {message}")]
    Database { path: PathBuf, message: String },
    #[error("store {path} is corrupt: {what}")]
    Corrupt { path: PathBuf, what: String },
    #[error("{0}")]
    Invalid(#[from] ProtocolError),
    #[error(
        "{entity} {id} originates at another instance ({origin}); only its origin can change it"
    )]
    NotLocal {
        origin: String,
        entity: String,
        id: String,
    },
    #[error("record {index} of the batch ({}/{} from {}) was rejected: {reason}; nothing from the batch was applied", key.entity, key.id, key.origin.key_id())]
    BatchRejected {
        index: usize,
        key: RecordKey,
        reason: Rejection,
    },
    /// A fault injected by a test, standing for an I/O error in the middle of a batch.
    #[error("injected fault after {0} records")]
    InjectedFault(usize),
    /// `wb_peers.txt` does not parse (a hand edit broke it); names the file and the line.
    #[error("{path}: {source}")]
    PeersFile {
        path: PathBuf,
        #[source]
        source: PeersError,
    },
    /// `sync_peers.txt` is wb's registry from before the rename but does not parse, so it cannot
    /// be moved to `wb_peers.txt`.
    #[error(
        "{path}: {source}; this is wb's peer registry under its old name, to be moved to \
         {new_path}: fix that line (or move the file away) and run the command again"
    )]
    OldPeersFile {
        path: PathBuf,
        new_path: PathBuf,
        #[source]
        source: PeersError,
    },
    #[error("{}", unknown_peer_message(.name, .known))]
    UnknownPeer { name: String, known: Vec<String> },
    #[error("a peer named {name} already exists (key id {key_id}); pick another name")]
    DuplicatePeerName { name: String, key_id: String },
    #[error("key id {key_id} is already registered as peer {existing}")]
    DuplicatePeerKey { key_id: String, existing: String },
    #[error("key id {key_id} is this instance's own key; a peer is another instance")]
    OwnKeyAsPeer { key_id: String },
    #[error("invalid peer name {0:?}: use 1 to 64 letters, digits, '.', '_' or '-'")]
    BadPeerName(String),
    #[error("invalid peer address {0:?}: expected HOST:PORT with a port from 1 to 65535")]
    BadPeerAddr(String),
    #[error("peer notes must be one line (found a line break)")]
    MultiLinePeerNotes,
}

fn unknown_peer_message(name: &str, known: &[String]) -> String {
    if known.is_empty() {
        format!("no peer named {name}: there are no peers yet (add one with `wb sync peers add`)")
    } else {
        format!("no peer named {name} (known peers: {})", known.join(", "))
    }
}

/// Why an incoming record version was not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    #[error("bad signature")]
    BadSignature,
    #[error("not signed")]
    Unsigned,
    #[error("dated {ahead_ms} ms in the future (limit {limit_ms} ms)")]
    FutureDated { ahead_ms: u64, limit_ms: u64 },
    #[error("{0}")]
    Invalid(String),
    /// The receiver's registry revokes the record's origin: taken from no one.
    #[error("its origin (key id {key_id}) is revoked")]
    RevokedOrigin { key_id: String },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
