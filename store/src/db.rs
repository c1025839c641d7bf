//! The redb store (§7): records, compacted change log, epoch, clock, conflicts, counters.
//!
//! Tables (all keys and values are bytes owned by this module):
//! - `records`: record key bytes → change-log sequence (u64 BE) ++ sealed record bytes
//! - `log`: sequence → record key bytes; one live entry per key (older ones are removed)
//! - `meta`: epoch, clock (last issued local version), next sequence, instance name
//! - `conflicts`: record key ++ version ++ loser hash → JSON [`Conflict`] (idempotent)
//! - `counters`: name → u64

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use protocol::wire::Cursor;
use protocol::{Audience, Entity, PublicKey, Record, RecordKey, Scope, SecretKey, Version};
use redb::{
    Database, ReadOnlyDatabase, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition,
    WriteTransaction,
};
use serde::{Deserialize, Serialize};

use crate::digest::{COMMENT_INDEX, Digesting, Env};
use crate::error::{Rejection, Result, StoreError};
use crate::format::{Found, STORE_FORMAT};
use crate::home::random_bytes;
use crate::leaving::{Lookup, Rule};

pub(crate) const RECORDS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("records");
pub(crate) const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
pub(crate) const CONFLICTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("conflicts");
pub(crate) const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");
pub(crate) const BUNDLES: TableDefinition<&str, &[u8]> = TableDefinition::new("bundles");
pub(crate) const WITHDRAWALS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("withdrawals");
pub(crate) const CURSORS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("cursors");
pub(crate) const PEER_STATE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("peer_state");
/// Our records whose `Contact-*` values the operator let leave (`--allow-contact`): record key
/// bytes → nothing. Created by the first write that needs it (stores made before it have none).
pub(crate) const CONTACT_ALLOWED: TableDefinition<&[u8], &[u8]> =
    TableDefinition::new("contact_allowed");

pub(crate) const META_FORMAT: &str = "format";
pub(crate) const META_EPOCH: &str = "epoch";
pub(crate) const META_CLOCK: &str = "clock";
pub(crate) const META_NEXT_SEQ: &str = "next_seq";
const META_NAME: &str = "name";
pub(crate) const META_INSTANCE_KEY: &str = "instance_key";
const META_LISTEN_ADDRS: &str = "listen_addrs";
/// The keys this instance replaced (`wb sync keygen --force`), 32 bytes each, oldest first.
const META_FORMER_KEYS: &str = "former_keys";

/// Counter names, stable: `sync status` and tests read them.
pub mod counter {
    pub const LOCAL_WRITES: &str = "local_writes";
    pub const NEW: &str = "received_new";
    pub const UPDATED: &str = "received_updated";
    pub const UNCHANGED: &str = "received_unchanged";
    pub const STALE: &str = "stale";
    pub const CONFLICTS: &str = "conflicts";
    pub const REJECTED_SIGNATURE: &str = "rejected_signature";
    pub const REJECTED_FUTURE: &str = "rejected_future";
    pub const REJECTED_INVALID: &str = "rejected_invalid";
    pub const REJECTED_REVOKED: &str = "rejected_revoked";
}

/// The store's random identity; a cursor from another epoch means "start from 0".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Epoch(pub [u8; 16]);

impl std::fmt::Display for Epoch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// The content of a local record as its operator wants it; the store adds version and signature.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Draft {
    pub scope: Scope,
    pub deleted: bool,
    pub fields: Vec<(String, String)>,
    pub body: String,
}

impl Draft {
    /// The draft that reproduces an existing record's content.
    pub fn from_record(record: &Record) -> Self {
        Self {
            scope: record.scope,
            deleted: record.deleted,
            fields: record.fields.clone(),
            body: record.body.clone(),
        }
    }
}

/// What a local write did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LocalChange {
    Created(Record),
    Updated {
        previous: Box<Record>,
        record: Record,
    },
    /// The draft equals the current content: no new version was made.
    Unchanged(Record),
}

impl LocalChange {
    pub fn record(&self) -> &Record {
        match self {
            LocalChange::Created(r) | LocalChange::Unchanged(r) => r,
            LocalChange::Updated { record, .. } => record,
        }
    }
}

/// How to apply a batch of incoming versions.
#[derive(Clone, Debug)]
pub struct ApplyOptions {
    /// Who the batch came from (peer name, bundle), for the conflict log.
    pub source: String,
    /// The receiver's clock, for the future-dating guard.
    pub now_ms: u64,
    /// Reject the whole batch if any record is rejected.
    pub all_or_nothing: bool,
    /// Unsigned records are accepted only from this origin (the signer of an app bundle whose
    /// signature the caller verified). `None`: every record must be signed.
    pub unsigned_origin: Option<PublicKey>,
    /// Record this imported bundle's provenance in the same transaction (its report counts are
    /// filled in from the batch's report).
    pub provenance: Option<Provenance>,
    /// Store this peer's cursor (how far into its change log we are) in the same transaction
    /// as the batch, so a broken connection resumes exactly where it stopped.
    pub cursor: Option<(PublicKey, Cursor)>,
    /// Origins the receiver's registry revokes (`protocol::peers::revoked_keys`): their
    /// versions are rejected ([`Rejection::RevokedOrigin`]) before anything else is checked,
    /// whoever passes them on.
    pub revoked: Arc<HashSet<PublicKey>>,
    /// Test hook: fail with [`StoreError::InjectedFault`] after this many records were applied
    /// inside the transaction, as an I/O error would.
    #[doc(hidden)]
    pub fail_after: Option<usize>,
}

impl ApplyOptions {
    pub fn new(source: impl Into<String>, now_ms: u64) -> Self {
        Self {
            source: source.into(),
            now_ms,
            all_or_nothing: false,
            unsigned_origin: None,
            provenance: None,
            cursor: None,
            revoked: Arc::default(),
            fail_after: None,
        }
    }
}

/// What applying a batch did, record by record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyReport {
    pub new: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub stale: u64,
    pub conflicts: u64,
    pub rejected: u64,
    #[serde(skip)]
    pub rejections: Vec<(RecordKey, Rejection)>,
}

/// One entry of the conflict log: two different contents under the same version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conflict {
    pub origin: String,
    pub entity: String,
    pub id: String,
    pub version: String,
    pub winner_hash: String,
    pub loser_hash: String,
    pub source: String,
    pub at_ms: u64,
}

/// Where an imported bundle came from and what it did; keyed by its manifest digest, so the
/// same bundle is never applied twice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    /// SHA-256 (hex) of the manifest bytes.
    pub manifest_digest: String,
    /// The signer's public key (base64) and key id.
    pub signer: String,
    pub signer_key_id: String,
    /// `Signed-At` as the bundle states it.
    pub signed_at: String,
    pub imported_at_ms: u64,
    /// The directory it was imported from, as given.
    pub dir: String,
    pub files: u64,
    pub report: ApplyReport,
}

/// A batch of outgoing changes for one audience (see [`Store::outgoing`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    pub records: Vec<Record>,
    /// The last log sequence scanned: the cursor to resume from.
    pub last_seq: u64,
    /// The end of the log was reached.
    pub done: bool,
    /// Log entries the audience may not receive (private, trusted for others, unsigned).
    pub filtered: u64,
}

/// What this instance remembers about syncing with one peer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerState {
    pub last_sync_ms: Option<u64>,
    pub last_error: Option<String>,
    pub last_error_ms: Option<u64>,
    /// Records received from / sent to this peer, all sessions.
    pub received: u64,
    pub sent: u64,
    /// The highest sequence of our log the peer has confirmed (its cursor into our log).
    pub acked_seq: u64,
    /// Our epoch when the peer confirmed it.
    pub acked_epoch: Option<[u8; 16]>,
    /// We last served this peer as trusted: when it becomes trusted, it is served from the
    /// start once, so it gets the trusted records its cursor already went past.
    #[serde(default)]
    pub served_trusted: bool,
    /// The peer was served trusted records and is no longer trusted: our trusted records were
    /// re-versioned behind fresh withdrawals (see [`Store::withdraw_from_untrusted`]), and the
    /// peer receives those withdrawals until its cursor into our log reaches this sequence.
    #[serde(default)]
    pub withdraw_trusted_until: Option<u64>,
    /// After a restore (`backup::restore`): the epoch in which a full pull from this peer
    /// completed while asking for our own records back. Until it equals ours, we ask again.
    #[serde(default)]
    pub recovered_epoch: Option<[u8; 16]>,
    /// The last comparison of state digests with this peer (`digest`), if any.
    #[serde(default)]
    pub digests: Option<crate::digest::DigestOutcome>,
}

/// One live change-log entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub seq: u64,
    pub record: Record,
}

/// Which records `list` returns.
#[derive(Clone, Debug, Default)]
pub struct ListFilter {
    pub entity: Option<Entity>,
    pub origin: Option<PublicKey>,
    pub scope: Option<Scope>,
    pub include_deleted: bool,
}

/// The store: one redb file, opened by one process at a time.
#[derive(Debug)]
pub struct Store {
    db: Handle,
    path: PathBuf,
    epoch: Epoch,
    /// Write transactions begun through this handle (each commit is one sync to disk).
    writes: std::sync::atomic::AtomicU64,
}

/// A read-write handle, or a read-only one that never changes the file (redb records its
/// allocator state when a read-write handle closes, so even a read changes the file's bytes).
enum Handle {
    ReadWrite(Database),
    ReadOnly(ReadOnlyDatabase),
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Handle::ReadWrite(_) => "ReadWrite",
            Handle::ReadOnly(_) => "ReadOnly",
        })
    }
}

/// Key bytes: origin (32) ++ entity ++ NUL ++ id, so keys sort by origin, entity name, id.
/// Entity names never hold NUL: `protocol::validate` refuses control characters, and every
/// record is validated before it is written.
pub(crate) fn key_bytes(key: &RecordKey) -> Vec<u8> {
    let entity = key.entity.as_str().as_bytes();
    let mut out = Vec::with_capacity(33 + entity.len() + key.id.len());
    out.extend_from_slice(key.origin.as_bytes());
    out.extend_from_slice(entity);
    out.push(0);
    out.extend_from_slice(key.id.as_bytes());
    out
}

/// Whether `next`, replacing `current`, is a request that may reach more parties (its effective
/// scope widened: a wider scope, or no longer a draft), so its comments must be logged again
/// (see [`Store::relog_comments`]).
pub(crate) fn widens_request(current: &Record, next: &Record) -> bool {
    next.entity == Entity::Request && next.effective_scope() > current.effective_scope()
}

/// The rule's reads (`leaving::Lookup`) inside an open read transaction.
struct TableLookup<'a, T: ReadableTable<&'static [u8], &'static [u8]>> {
    store: &'a Store,
    records: &'a T,
    /// `None`: the store has no such table yet (nothing was allowed).
    contact_allowed: Option<&'a T>,
}

impl<T: ReadableTable<&'static [u8], &'static [u8]>> Lookup for TableLookup<'_, T> {
    fn record(&mut self, key: &RecordKey) -> Result<Option<Record>> {
        match self
            .records
            .get(key_bytes(key).as_slice())
            .map_err(|e| self.store.err(e))?
        {
            Some(v) => Ok(Some(self.store.decode_value(v.value())?.1)),
            None => Ok(None),
        }
    }

    fn contact_allowed(&mut self, key: &RecordKey) -> Result<bool> {
        match self.contact_allowed {
            None => Ok(false),
            Some(table) => Ok(table
                .get(key_bytes(key).as_slice())
                .map_err(|e| self.store.err(e))?
                .is_some()),
        }
    }
}

/// The rule's reads, one read transaction each (bundle export).
impl Lookup for &Store {
    fn record(&mut self, key: &RecordKey) -> Result<Option<Record>> {
        self.get(key)
    }

    fn contact_allowed(&mut self, key: &RecordKey) -> Result<bool> {
        Store::contact_allowed(self, key)
    }
}

/// The `contact_allowed` table of a read transaction, if the store has one yet.
fn contact_allowed_table(
    store: &Store,
    tx: &ReadTransaction,
) -> Result<Option<redb::ReadOnlyTable<&'static [u8], &'static [u8]>>> {
    match tx.open_table(CONTACT_ALLOWED) {
        Ok(table) => Ok(Some(table)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(store.err(e)),
    }
}

pub(crate) fn version_bytes(v: Version) -> [u8; 12] {
    let mut out = [0u8; 12];
    out[..8].copy_from_slice(&v.ms.to_be_bytes());
    out[8..].copy_from_slice(&v.counter.to_be_bytes());
    out
}

fn cursor_bytes(c: &Cursor) -> [u8; 24] {
    let mut out = [0u8; 24];
    out[..16].copy_from_slice(&c.epoch);
    out[16..].copy_from_slice(&c.seq.to_be_bytes());
    out
}

fn cursor_from_bytes(b: &[u8]) -> Option<Cursor> {
    Some(Cursor {
        epoch: b.get(..16)?.try_into().ok()?,
        seq: u64::from_be_bytes(b.get(16..24)?.try_into().ok()?),
    })
}

pub(crate) fn version_from_bytes(b: &[u8]) -> Option<Version> {
    let ms = u64::from_be_bytes(b.get(..8)?.try_into().ok()?);
    let counter = u32::from_be_bytes(b.get(8..12)?.try_into().ok()?);
    Some(Version::new(ms, counter))
}

impl Store {
    /// Opens an existing store, or creates it with a fresh epoch.
    pub fn open_or_create(path: &Path) -> Result<Store> {
        if path.exists() {
            crate::format::refuse_newer(path)?;
        }
        let db = builder().create(path).map_err(|e| db_open_err(path, e))?;
        crate::format::migrate(&db, path)?;
        let store = Self::init_meta(db, path)?;
        store.ensure_digests()?;
        Ok(store)
    }

    /// A store held in memory, for tests that need many stores quickly.
    #[cfg(test)]
    pub(crate) fn in_memory() -> Result<Store> {
        let path = Path::new("<memory>");
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(|e| db_open_err(path, e))?;
        let store = Self::init_meta(db, path)?;
        store.ensure_digests()?;
        Ok(store)
    }

    /// Opens an existing store; a missing file is an error.
    pub fn open(path: &Path) -> Result<Store> {
        if !path.exists() {
            return Err(StoreError::NotInitialized(
                path.parent().unwrap_or(path).to_path_buf(),
            ));
        }
        crate::format::refuse_newer(path)?;
        let db = builder().open(path).map_err(|e| db_open_err(path, e))?;
        crate::format::migrate(&db, path)?;
        let store = Self::init_meta(db, path)?;
        store.ensure_digests()?;
        Ok(store)
    }

    /// Opens an existing store read-only: reads work, writes fail, and the file is left exactly
    /// as it was.
    pub fn open_read_only(path: &Path) -> Result<Store> {
        if !path.exists() {
            return Err(StoreError::NotInitialized(
                path.parent().unwrap_or(path).to_path_buf(),
            ));
        }
        let db = builder()
            .open_read_only(path)
            .map_err(|e| db_open_err(path, e))?;
        let epoch = Self::read_epoch(&db, path)?.ok_or_else(|| StoreError::Corrupt {
            path: path.to_path_buf(),
            what: "tables or metadata missing".into(),
        })?;
        Ok(Store {
            db: Handle::ReadOnly(db),
            path: path.to_path_buf(),
            epoch,
            writes: std::sync::atomic::AtomicU64::new(0),
        })
    }

    fn init_meta(db: Database, path: &Path) -> Result<Store> {
        let err = |e: &dyn std::fmt::Display| StoreError::Database {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        if let Some(epoch) = Self::read_epoch(&db, path)? {
            return Ok(Store {
                db: Handle::ReadWrite(db),
                path: path.to_path_buf(),
                epoch,
                writes: std::sync::atomic::AtomicU64::new(0),
            });
        }
        let tx = db.begin_write().map_err(|e| err(&e))?;
        let epoch = {
            let mut meta = tx.open_table(META).map_err(|e| err(&e))?;
            // Create every table so read transactions never miss one.
            tx.open_table(RECORDS).map_err(|e| err(&e))?;
            tx.open_table(LOG).map_err(|e| err(&e))?;
            tx.open_table(CONFLICTS).map_err(|e| err(&e))?;
            tx.open_table(COUNTERS).map_err(|e| err(&e))?;
            tx.open_table(BUNDLES).map_err(|e| err(&e))?;
            tx.open_table(WITHDRAWALS).map_err(|e| err(&e))?;
            tx.open_table(CURSORS).map_err(|e| err(&e))?;
            tx.open_table(PEER_STATE).map_err(|e| err(&e))?;
            tx.open_table(CONTACT_ALLOWED).map_err(|e| err(&e))?;
            let format = meta
                .get(META_FORMAT)
                .map_err(|e| err(&e))?
                .map(|v| v.value().to_vec());
            // An older format was migrated by `open` before this.
            if crate::format::check(path, format.as_deref())? == Found::Missing {
                meta.insert(META_FORMAT, STORE_FORMAT.to_be_bytes().as_slice())
                    .map_err(|e| err(&e))?;
            }
            let existing = meta
                .get(META_EPOCH)
                .map_err(|e| err(&e))?
                .map(|v| v.value().to_vec());
            match existing {
                Some(bytes) => Epoch(bytes.try_into().map_err(|_| StoreError::Corrupt {
                    path: path.to_path_buf(),
                    what: "epoch".into(),
                })?),
                None => {
                    let epoch = Epoch(random_bytes::<16>()?);
                    meta.insert(META_EPOCH, epoch.0.as_slice())
                        .map_err(|e| err(&e))?;
                    epoch
                }
            }
        };
        tx.commit().map_err(|e| err(&e))?;
        Ok(Store {
            db: Handle::ReadWrite(db),
            path: path.to_path_buf(),
            epoch,
            writes: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// The epoch of a complete store of this format; `None` when tables or metadata are missing
    /// (a new store). A store of another format is an error.
    fn read_epoch(db: &impl ReadableDatabase, path: &Path) -> Result<Option<Epoch>> {
        let Ok(tx) = db.begin_read() else {
            return Ok(None);
        };
        let complete = tx.open_table(RECORDS).is_ok()
            && tx.open_table(LOG).is_ok()
            && tx.open_table(CONFLICTS).is_ok()
            && tx.open_table(COUNTERS).is_ok()
            && tx.open_table(BUNDLES).is_ok()
            && tx.open_table(WITHDRAWALS).is_ok()
            && tx.open_table(CURSORS).is_ok()
            && tx.open_table(PEER_STATE).is_ok();
        if !complete {
            return Ok(None);
        }
        let Ok(meta) = tx.open_table(META) else {
            return Ok(None);
        };
        let get = |k: &str| meta.get(k).ok().flatten().map(|v| v.value().to_vec());
        // An older format is read as it is (read-only opens do not migrate; see `format`).
        if crate::format::check(path, get(META_FORMAT).as_deref())? == Found::Missing {
            return Ok(None);
        }
        Ok(get(META_EPOCH)
            .and_then(|b| <[u8; 16]>::try_from(b).ok())
            .map(Epoch))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn read_tx(&self) -> Result<ReadTransaction> {
        match &self.db {
            Handle::ReadWrite(db) => db.begin_read(),
            Handle::ReadOnly(db) => db.begin_read(),
        }
        .map_err(|e| self.err(e))
    }

    pub(crate) fn write_tx(&self) -> Result<WriteTransaction> {
        self.writes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match &self.db {
            Handle::ReadWrite(db) => db.begin_write().map_err(|e| self.err(e)),
            Handle::ReadOnly(_) => Err(self.err("opened read-only")),
        }
    }

    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// How many write transactions this handle began: each is one commit, one sync to disk.
    /// What the tests of write storms count (issue 11, item 4).
    pub fn write_transactions(&self) -> u64 {
        self.writes.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn err(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Database {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    pub(crate) fn corrupt(&self, what: impl Into<String>) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            what: what.into(),
        }
    }

    pub(crate) fn decode_value(&self, value: &[u8]) -> Result<(u64, Record)> {
        let seq = value
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_be_bytes)
            .ok_or_else(|| self.corrupt("record entry too short"))?;
        let record = Record::from_sealed_bytes(&value[8..])
            .map_err(|e| self.corrupt(format!("record entry: {e}")))?;
        Ok((seq, record))
    }

    /// The instance name, if one was set.
    pub fn name(&self) -> Result<Option<String>> {
        let tx = self.read_tx()?;
        let meta = tx.open_table(META).map_err(|e| self.err(e))?;
        let name = meta.get(META_NAME).map_err(|e| self.err(e))?;
        Ok(name.map(|v| String::from_utf8_lossy(v.value()).into_owned()))
    }

    pub fn set_name(&self, name: &str) -> Result<()> {
        let tx = self.write_tx()?;
        {
            let mut meta = tx.open_table(META).map_err(|e| self.err(e))?;
            meta.insert(META_NAME, name.as_bytes())
                .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// The public key this store belongs to (recorded by `init` and key replacement).
    pub fn instance_key(&self) -> Result<Option<PublicKey>> {
        let tx = self.read_tx()?;
        let meta = tx.open_table(META).map_err(|e| self.err(e))?;
        let value = meta.get(META_INSTANCE_KEY).map_err(|e| self.err(e))?;
        match value {
            None => Ok(None),
            Some(v) => {
                let bytes: [u8; 32] = v
                    .value()
                    .try_into()
                    .map_err(|_| self.corrupt("instance key"))?;
                Ok(Some(
                    PublicKey::from_bytes(bytes).map_err(|_| self.corrupt("instance key"))?,
                ))
            }
        }
    }

    pub fn set_instance_key(&self, key: &PublicKey) -> Result<()> {
        let tx = self.write_tx()?;
        {
            let mut meta = tx.open_table(META).map_err(|e| self.err(e))?;
            meta.insert(META_INSTANCE_KEY, key.as_bytes().as_slice())
                .map_err(|e| self.err(e))?;
        }
        // What leaves depends on whose store this is: the digests are computed again.
        self.rebuild_digests(&tx)?;
        tx.commit().map_err(|e| self.err(e))
    }

    /// The last version this instance issued (its hybrid logical clock).
    pub fn clock(&self) -> Result<Version> {
        let tx = self.read_tx()?;
        let meta = tx.open_table(META).map_err(|e| self.err(e))?;
        let v = meta.get(META_CLOCK).map_err(|e| self.err(e))?;
        Ok(v.and_then(|v| version_from_bytes(v.value()))
            .unwrap_or(Version::ZERO))
    }

    pub fn get(&self, key: &RecordKey) -> Result<Option<Record>> {
        let tx = self.read_tx()?;
        let records = tx.open_table(RECORDS).map_err(|e| self.err(e))?;
        let value = records
            .get(key_bytes(key).as_slice())
            .map_err(|e| self.err(e))?;
        value
            .map(|v| self.decode_value(v.value()).map(|(_, r)| r))
            .transpose()
    }

    /// Records matching the filter, ordered by origin, entity, id.
    pub fn list(&self, filter: &ListFilter) -> Result<Vec<Record>> {
        let tx = self.read_tx()?;
        let records = tx.open_table(RECORDS).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        let iter = match &filter.origin {
            Some(origin) => {
                let mut start = origin.as_bytes().to_vec();
                let mut end = start.clone();
                if let Some(entity) = &filter.entity {
                    // One origin's records of one entity: `origin ++ entity ++ NUL ++ id`.
                    start.extend_from_slice(entity.as_str().as_bytes());
                    end = start.clone();
                    start.push(0);
                    end.push(1);
                } else {
                    end.push(0xff);
                }
                // Keys of one origin are `origin ++ entity …`; UTF-8 never starts with 0xff.
                records.range(start.as_slice()..end.as_slice())
            }
            None => records.range::<&[u8]>(..),
        }
        .map_err(|e| self.err(e))?;
        for item in iter {
            let (_, value) = item.map_err(|e| self.err(e))?;
            let (_, record) = self.decode_value(value.value())?;
            if filter.entity.as_ref().is_some_and(|e| *e != record.entity)
                || filter.scope.is_some_and(|s| s != record.scope)
                || filter.origin.is_some_and(|o| o != record.origin)
                || (record.deleted && !filter.include_deleted)
            {
                continue;
            }
            out.push(record);
        }
        Ok(out)
    }

    /// Number of records in the store, every origin, entity and scope (tombstones included).
    pub fn record_count(&self) -> Result<u64> {
        use redb::ReadableTableMetadata;
        let tx = self.read_tx()?;
        let records = tx.open_table(RECORDS).map_err(|e| self.err(e))?;
        records.len().map_err(|e| self.err(e))
    }

    /// Visits every record (tombstones included) whose entity name `wanted` accepts, in key
    /// order (origin, entity, id), one at a time, inside one read transaction: nothing is
    /// collected, and unwanted records are skipped on their key, before being decoded. An error
    /// from `visit` stops the scan and is returned.
    pub fn scan<E: From<StoreError>>(
        &self,
        mut wanted: impl FnMut(&str) -> bool,
        mut visit: impl FnMut(Record) -> Result<(), E>,
    ) -> Result<(), E> {
        let tx = self.read_tx()?;
        let records = tx.open_table(RECORDS).map_err(|e| self.err(e))?;
        for item in records.range::<&[u8]>(..).map_err(|e| self.err(e))? {
            let (key, value) = item.map_err(|e| self.err(e))?;
            // Key bytes: origin (32) ++ entity ++ NUL ++ id (see `key_bytes`).
            let entity = key
                .value()
                .get(32..)
                .and_then(|rest| rest.split(|&b| b == 0).next())
                .and_then(|name| std::str::from_utf8(name).ok())
                .ok_or_else(|| self.corrupt("record key"))?;
            if !wanted(entity) {
                continue;
            }
            let (_, record) = self.decode_value(value.value())?;
            visit(record)?;
        }
        Ok(())
    }

    /// Moves every live record of `old`'s origin to `new` after a key replacement, in one
    /// transaction: each gets a tombstone signed by the old key (so peers withdraw it) and a
    /// copy signed by the new key; the store then belongs to the new key. Returns how many
    /// records moved.
    pub fn rekey(&self, old: &SecretKey, new: &SecretKey, now_ms: u64) -> Result<u64> {
        let live = self.list(&ListFilter {
            origin: Some(old.public()),
            ..Default::default()
        })?;
        let tx = self.write_tx()?;
        {
            let mut records = tx.open_table(RECORDS).map_err(|e| self.err(e))?;
            let mut log = tx.open_table(LOG).map_err(|e| self.err(e))?;
            let mut meta = tx.open_table(META).map_err(|e| self.err(e))?;
            // What the operator let leave stays allowed under the new key.
            let mut allowed = tx.open_table(CONTACT_ALLOWED).map_err(|e| self.err(e))?;
            for record in &live {
                let old_kb = key_bytes(&record.key());
                if allowed
                    .remove(old_kb.as_slice())
                    .map_err(|e| self.err(e))?
                    .is_some()
                {
                    let new_kb = key_bytes(&RecordKey {
                        origin: new.public(),
                        ..record.key()
                    });
                    allowed
                        .insert(new_kb.as_slice(), [].as_slice())
                        .map_err(|e| self.err(e))?;
                }
            }
            let mut clock = meta
                .get(META_CLOCK)
                .map_err(|e| self.err(e))?
                .and_then(|v| version_from_bytes(v.value()))
                .unwrap_or(Version::ZERO);
            for record in &live {
                for (key, deleted) in [(old, true), (new, false)] {
                    clock = Version::next_after(clock.max(record.version), now_ms);
                    let mut next = Record {
                        origin: key.public(),
                        version: clock,
                        deleted,
                        fields: if deleted {
                            Vec::new()
                        } else {
                            record.fields.clone()
                        },
                        body: if deleted {
                            String::new()
                        } else {
                            record.body.clone()
                        },
                        signature: None,
                        ..record.clone()
                    };
                    next.sign(key)?;
                    let kb = key_bytes(&next.key());
                    let old_seq = match records.get(kb.as_slice()).map_err(|e| self.err(e))? {
                        Some(v) => Some(self.decode_value(v.value())?.0),
                        None => None,
                    };
                    self.write_record(&mut records, &mut log, &mut meta, &kb, old_seq, &next)?;
                }
            }
            meta.insert(META_CLOCK, version_bytes(clock).as_slice())
                .map_err(|e| self.err(e))?;
            meta.insert(META_INSTANCE_KEY, new.public().as_bytes().as_slice())
                .map_err(|e| self.err(e))?;
            // The old key's withdrawals are still ours to send (`protocol::sent_on_behalf_of`).
            let mut former = self.read_former_keys(&meta)?;
            if !former.contains(&old.public()) {
                former.push(old.public());
            }
            let bytes: Vec<u8> = former.iter().flat_map(|k| *k.as_bytes()).collect();
            meta.insert(META_FORMER_KEYS, bytes.as_slice())
                .map_err(|e| self.err(e))?;
        }
        // A new instance key and former keys change what leaves: one scan, in the same
        // transaction (key replacement is rare).
        self.rebuild_digests(&tx)?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(live.len() as u64)
    }

    /// The keys this instance replaced (`wb sync keygen --force`), oldest first.
    pub fn former_keys(&self) -> Result<Vec<PublicKey>> {
        let tx = self.read_tx()?;
        let meta = tx.open_table(META).map_err(|e| self.err(e))?;
        self.read_former_keys(&meta)
    }

    pub(crate) fn read_former_keys(
        &self,
        meta: &impl ReadableTable<&'static str, &'static [u8]>,
    ) -> Result<Vec<PublicKey>> {
        let Some(value) = meta.get(META_FORMER_KEYS).map_err(|e| self.err(e))? else {
            return Ok(Vec::new());
        };
        let bytes = value.value();
        if bytes.len() % 32 != 0 {
            return Err(self.corrupt("former keys"));
        }
        bytes
            .chunks_exact(32)
            .map(|chunk| {
                let mut key = [0u8; 32];
                key.copy_from_slice(chunk);
                PublicKey::from_bytes(key).map_err(|_| self.corrupt("former keys"))
            })
            .collect()
    }

    /// Stores `record` under `kb` with a new change-log sequence, removing its old log entry.
    pub(crate) fn write_record(
        &self,
        records: &mut redb::Table<&[u8], &[u8]>,
        log: &mut redb::Table<u64, &[u8]>,
        meta: &mut redb::Table<&str, &[u8]>,
        kb: &[u8],
        old_seq: Option<u64>,
        record: &Record,
    ) -> Result<u64> {
        let seq = self.next_seq(meta)?;
        meta.insert(META_NEXT_SEQ, (seq + 1).to_be_bytes().as_slice())
            .map_err(|e| self.err(e))?;
        self.put_sealed(records, log, kb, old_seq, seq, &record.to_sealed_bytes())?;
        Ok(seq)
    }

    /// The next change-log sequence to issue.
    pub(crate) fn next_seq(&self, meta: &redb::Table<&str, &[u8]>) -> Result<u64> {
        Ok(meta
            .get(META_NEXT_SEQ)
            .map_err(|e| self.err(e))?
            .and_then(|v| v.value().try_into().ok().map(u64::from_be_bytes))
            .unwrap_or(1))
    }

    /// Gives every stored comment on one of `requests` a new change-log entry from `seq` on
    /// (its bytes unchanged), and returns the next sequence to issue (the caller stores it).
    ///
    /// A comment goes only where its request goes (`leaving`), so while its request stayed
    /// home, peers' cursors went past it; once the request may reach more parties (its scope
    /// widened, it stopped being a draft), its comments must come after it in the log. One scan
    /// of the store, only in a transaction that widened a request.
    pub(crate) fn relog_comments(
        &self,
        records: &mut redb::Table<&[u8], &[u8]>,
        log: &mut redb::Table<u64, &[u8]>,
        requests: &HashSet<RecordKey>,
        mut seq: u64,
    ) -> Result<u64> {
        if requests.is_empty() {
            return Ok(seq);
        }
        let mut found = Vec::new();
        for item in records.range::<&[u8]>(..).map_err(|e| self.err(e))? {
            let (key, value) = item.map_err(|e| self.err(e))?;
            // Key bytes: origin (32) ++ entity ++ NUL ++ id (see `key_bytes`).
            let is_comment = key
                .value()
                .get(32..)
                .and_then(|rest| rest.split(|&b| b == 0).next())
                == Some(Entity::Comment.as_str().as_bytes());
            if !is_comment {
                continue;
            }
            let (old_seq, comment) = self.decode_value(value.value())?;
            if comment
                .commented_request()
                .is_some_and(|r| requests.contains(&r))
            {
                found.push((key.value().to_vec(), old_seq, value.value()[8..].to_vec()));
            }
        }
        for (kb, old_seq, sealed) in found {
            self.put_sealed(records, log, &kb, Some(old_seq), seq, &sealed)?;
            seq += 1;
        }
        Ok(seq)
    }

    /// Stores a sealed record under `kb` with change-log sequence `seq` (the caller issues it),
    /// removing the key's old log entry.
    fn put_sealed(
        &self,
        records: &mut redb::Table<&[u8], &[u8]>,
        log: &mut redb::Table<u64, &[u8]>,
        kb: &[u8],
        old_seq: Option<u64>,
        seq: u64,
        sealed: &[u8],
    ) -> Result<()> {
        if let Some(old) = old_seq {
            log.remove(old).map_err(|e| self.err(e))?;
        }
        log.insert(seq, kb).map_err(|e| self.err(e))?;
        let mut value = Vec::with_capacity(8 + sealed.len());
        value.extend_from_slice(&seq.to_be_bytes());
        value.extend_from_slice(sealed);
        records
            .insert(kb, value.as_slice())
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Applies incoming versions in one transaction with the §5 rules: higher version wins;
    /// equal version with other content is a conflict won by the larger content hash (logged);
    /// lower is stale; unsigned, badly signed, invalid or future-dated versions are rejected.
    /// With `all_or_nothing`, one rejection aborts the batch and nothing is written.
    pub fn apply_batch(&self, batch: &[Record], opts: &ApplyOptions) -> Result<ApplyReport> {
        self.apply_checked(&CheckedBatch::check(batch.to_vec(), opts), opts)
    }

    /// Applies a batch whose records were checked by [`CheckedBatch::check`], in one
    /// transaction. With `all_or_nothing` and a rejected record, returns the first rejection
    /// without opening a write transaction. Records are stored as the sealed bytes that were
    /// checked; sequence numbers and counters are read and written once per batch.
    pub fn apply_checked(&self, batch: &CheckedBatch, opts: &ApplyOptions) -> Result<ApplyReport> {
        self.apply_checked_all(&[batch], opts)
    }

    /// Applies checked batches in order in one transaction, as [`Store::apply_checked`] applies
    /// one (records indexed across the batches, as if they were one), with one commit: the
    /// cursor and provenance of `opts` are written once. With `all_or_nothing` and a rejected
    /// record, returns the first rejection without opening a write transaction.
    pub fn apply_checked_all(
        &self,
        batches: &[&CheckedBatch],
        opts: &ApplyOptions,
    ) -> Result<ApplyReport> {
        if opts.all_or_nothing {
            let mut before = 0;
            for batch in batches {
                if let Some((index, key, reason)) = batch.first_rejection() {
                    return Err(StoreError::BatchRejected {
                        index: before + index,
                        key,
                        reason,
                    });
                }
                before += batch.len();
            }
        }
        let mut applying = self.begin_apply(opts)?;
        for batch in batches {
            applying.apply(batch)?;
        }
        applying.commit()
    }

    /// Starts applying batches one after another in one write transaction: what
    /// [`Store::apply_checked`] does with one batch, for input too large to hold at once (a
    /// bundle's second pass). Nothing is written unless [`Applying::commit`] is called.
    pub(crate) fn begin_apply<'a>(&'a self, opts: &'a ApplyOptions) -> Result<Applying<'a>> {
        let tx = self.write_tx()?;
        // Our own records coming back (a restored store recovering them): the clock never
        // stays below a version we signed, so no new version can fall under one.
        let (first_seq, own, digesting) = {
            let meta = tx.open_table(META).map_err(|e| self.err(e))?;
            let own = meta
                .get(META_INSTANCE_KEY)
                .map_err(|e| self.err(e))?
                .map(|v| v.value().to_vec());
            (
                self.next_seq(&meta)?,
                own,
                Digesting::with_meta(self, &meta)?,
            )
        };
        Ok(Applying {
            store: self,
            opts,
            tx,
            report: ApplyReport::default(),
            counts: BTreeMap::new(),
            first_seq,
            seq: first_seq,
            widened: HashSet::new(),
            applied: 0,
            own,
            own_newest: Version::ZERO,
            digesting,
        })
    }

    /// What [`Store::apply_checked`] would report, computed from reads only (works on a
    /// read-only store): the dry run of an import.
    pub fn plan(&self, batch: &CheckedBatch) -> Result<ApplyReport> {
        let mut planning = self.begin_plan()?;
        planning.plan(batch)?;
        Ok(planning.report)
    }

    /// Starts planning batches one after another, as [`Store::begin_apply`] would apply them.
    pub(crate) fn begin_plan(&self) -> Result<Planning<'_>> {
        Ok(Planning {
            store: self,
            tx: self.read_tx()?,
            overlay: HashMap::new(),
            report: ApplyReport::default(),
        })
    }

    /// How far into `peer`'s change log we are (what we asked it for last, and got).
    pub fn cursor(&self, peer: &PublicKey) -> Result<Option<Cursor>> {
        let tx = self.read_tx()?;
        let table = tx.open_table(CURSORS).map_err(|e| self.err(e))?;
        let value = table
            .get(peer.as_bytes().as_slice())
            .map_err(|e| self.err(e))?;
        value
            .map(|v| cursor_from_bytes(v.value()).ok_or_else(|| self.corrupt("cursor")))
            .transpose()
    }

    /// Forgets `peer`'s cursor: the next pull from it starts from 0.
    pub fn reset_cursor(&self, peer: &PublicKey) -> Result<()> {
        let tx = self.write_tx()?;
        {
            let mut table = tx.open_table(CURSORS).map_err(|e| self.err(e))?;
            table
                .remove(peer.as_bytes().as_slice())
                .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Our changes after `after_seq` that `audience` may receive, in log order: at most
    /// `limit` records, scanning at most `scan_max` log entries. Each live record goes out as
    /// itself if the audience may see it, else as its withdrawal if the audience may see that,
    /// else not at all (see `protocol::may_receive`, the one check). Returns the records, the
    /// last sequence scanned (the next cursor), and whether the log end was reached.
    pub fn outgoing(
        &self,
        sender: &PublicKey,
        receiver: Option<&PublicKey>,
        audience: Audience,
        after_seq: u64,
        limit: usize,
        scan_max: usize,
    ) -> Result<Outgoing> {
        self.outgoing_with(
            sender, receiver, false, audience, after_seq, limit, scan_max,
        )
    }

    /// Like [`Store::outgoing`]; with `return_own`, the receiver's own records are sent back
    /// to it as they are (it was restored from a backup and recovers what it signed since).
    #[allow(clippy::too_many_arguments)]
    pub fn outgoing_with(
        &self,
        sender: &PublicKey,
        receiver: Option<&PublicKey>,
        return_own: bool,
        audience: Audience,
        after_seq: u64,
        limit: usize,
        scan_max: usize,
    ) -> Result<Outgoing> {
        let tx = self.read_tx()?;
        let log = tx.open_table(LOG).map_err(|e| self.err(e))?;
        let records = tx.open_table(RECORDS).map_err(|e| self.err(e))?;
        let withdrawals = tx.open_table(WITHDRAWALS).map_err(|e| self.err(e))?;
        // A peer that was un-trusted is still owed the withdrawals of our trusted records.
        let owed = match receiver {
            Some(peer) => self.owes_withdrawals(&tx, peer)?,
            None => false,
        };
        let rule = Rule {
            sender: *sender,
            // Withdrawals signed by a key we replaced are ours too (`wb sync keygen --force`).
            former: self.read_former_keys(&tx.open_table(META).map_err(|e| self.err(e))?)?,
            audience,
            owed,
        };
        let allowed = contact_allowed_table(self, &tx)?;
        let mut lookup = TableLookup {
            store: self,
            records: &records,
            contact_allowed: allowed.as_ref(),
        };
        let mut out = Outgoing {
            records: Vec::new(),
            last_seq: after_seq,
            done: true,
            filtered: 0,
        };
        for (scanned, item) in log
            .range(after_seq.saturating_add(1)..)
            .map_err(|e| self.err(e))?
            .enumerate()
        {
            if scanned >= scan_max || out.records.len() >= limit {
                out.done = false;
                break;
            }
            let (seq, kb) = item.map_err(|e| self.err(e))?;
            out.last_seq = seq.value();
            let value = records
                .get(kb.value())
                .map_err(|e| self.err(e))?
                .ok_or_else(|| self.corrupt(format!("log entry {} has no record", seq.value())))?;
            let (_, record) = self.decode_value(value.value())?;
            // The origin never needs its own records back, unless it lost them (a restore).
            if receiver == Some(&record.origin) {
                if return_own {
                    out.records.push(record);
                }
                continue;
            }
            if rule.check(&record, &mut lookup)?.is_ok() {
                out.records.push(record);
                continue;
            }
            let withdrawal = match withdrawals.get(kb.value()).map_err(|e| self.err(e))? {
                Some(v) => Some(
                    Record::from_sealed_bytes(v.value())
                        .map_err(|e| self.corrupt(format!("withdrawal: {e}")))?,
                ),
                None => None,
            };
            match withdrawal {
                Some(w) if rule.check(&w, &mut lookup)?.is_ok() => out.records.push(w),
                _ => out.filtered += 1,
            }
        }
        Ok(out)
    }

    /// The rule of what leaves for one audience (`leaving`), with this store's former keys.
    pub(crate) fn leaving_rule(&self, sender: PublicKey, audience: Audience) -> Result<Rule> {
        Ok(Rule {
            sender,
            former: self.former_keys()?,
            audience,
            owed: false,
        })
    }

    /// Whether the operator let this record's `Contact-*` values leave (`--allow-contact`).
    pub fn contact_allowed(&self, key: &RecordKey) -> Result<bool> {
        let tx = self.read_tx()?;
        match contact_allowed_table(self, &tx)? {
            None => Ok(false),
            Some(table) => Ok(table
                .get(key_bytes(key).as_slice())
                .map_err(|e| self.err(e))?
                .is_some()),
        }
    }

    /// The signed withdrawal of a record narrowed at some point, if any (see `update_local`).
    pub fn withdrawal(&self, key: &RecordKey) -> Result<Option<Record>> {
        let tx = self.read_tx()?;
        let table = tx.open_table(WITHDRAWALS).map_err(|e| self.err(e))?;
        let value = table
            .get(key_bytes(key).as_slice())
            .map_err(|e| self.err(e))?;
        value
            .map(|v| {
                Record::from_sealed_bytes(v.value())
                    .map_err(|e| self.corrupt(format!("withdrawal: {e}")))
            })
            .transpose()
    }

    /// The runtime state kept for a peer (last sync, errors, counters).
    pub fn peer_state(&self, peer: &PublicKey) -> Result<PeerState> {
        let tx = self.read_tx()?;
        let table = tx.open_table(PEER_STATE).map_err(|e| self.err(e))?;
        let value = table
            .get(peer.as_bytes().as_slice())
            .map_err(|e| self.err(e))?;
        match value {
            Some(v) => serde_json::from_slice(v.value())
                .map_err(|e| self.corrupt(format!("peer state: {e}"))),
            None => Ok(PeerState::default()),
        }
    }

    /// Changes a peer's runtime state in one transaction.
    pub fn update_peer_state(
        &self,
        peer: &PublicKey,
        edit: impl FnOnce(&mut PeerState),
    ) -> Result<PeerState> {
        let tx = self.write_tx()?;
        let state = {
            let mut table = tx.open_table(PEER_STATE).map_err(|e| self.err(e))?;
            let mut state: PeerState = match table
                .get(peer.as_bytes().as_slice())
                .map_err(|e| self.err(e))?
            {
                Some(v) => serde_json::from_slice(v.value())
                    .map_err(|e| self.corrupt(format!("peer state: {e}")))?,
                None => PeerState::default(),
            };
            edit(&mut state);
            let json = serde_json::to_vec(&state).map_err(|e| self.err(e))?;
            table
                .insert(peer.as_bytes().as_slice(), json.as_slice())
                .map_err(|e| self.err(e))?;
            state
        };
        tx.commit().map_err(|e| self.err(e))?;
        Ok(state)
    }

    /// The provenance of an imported bundle, by manifest digest (hex).
    pub fn imported_bundle(&self, manifest_digest: &str) -> Result<Option<Provenance>> {
        let tx = self.read_tx()?;
        let table = tx.open_table(BUNDLES).map_err(|e| self.err(e))?;
        let value = table.get(manifest_digest).map_err(|e| self.err(e))?;
        value
            .map(|v| {
                serde_json::from_slice(v.value())
                    .map_err(|e| self.corrupt(format!("bundle entry: {e}")))
            })
            .transpose()
    }

    /// Imported bundles, most recent first.
    pub fn imported_bundles(&self) -> Result<Vec<Provenance>> {
        let tx = self.read_tx()?;
        let table = tx.open_table(BUNDLES).map_err(|e| self.err(e))?;
        let mut out: Vec<Provenance> = Vec::new();
        for item in table.range::<&str>(..).map_err(|e| self.err(e))? {
            let (_, v) = item.map_err(|e| self.err(e))?;
            out.push(
                serde_json::from_slice(v.value())
                    .map_err(|e| self.corrupt(format!("bundle entry: {e}")))?,
            );
        }
        out.sort_by_key(|p| std::cmp::Reverse(p.imported_at_ms));
        Ok(out)
    }

    /// Live change-log entries after `after_seq`, oldest first, at most `limit`.
    pub fn changes_since(&self, after_seq: u64, limit: usize) -> Result<Vec<Change>> {
        let tx = self.read_tx()?;
        let log = tx.open_table(LOG).map_err(|e| self.err(e))?;
        let records = tx.open_table(RECORDS).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for item in log
            .range(after_seq.saturating_add(1)..)
            .map_err(|e| self.err(e))?
            .take(limit)
        {
            let (seq, kb) = item.map_err(|e| self.err(e))?;
            let value = records
                .get(kb.value())
                .map_err(|e| self.err(e))?
                .ok_or_else(|| self.corrupt(format!("log entry {} has no record", seq.value())))?;
            let (_, record) = self.decode_value(value.value())?;
            out.push(Change {
                seq: seq.value(),
                record,
            });
        }
        Ok(out)
    }

    /// Number of live change-log entries (one per record key).
    pub fn log_len(&self) -> Result<u64> {
        use redb::ReadableTableMetadata;
        let tx = self.read_tx()?;
        let log = tx.open_table(LOG).map_err(|e| self.err(e))?;
        log.len().map_err(|e| self.err(e))
    }

    /// Live change-log entries after sequence `seq`: what a peer whose cursor is `seq` has not
    /// confirmed yet (metrics).
    pub fn log_entries_after(&self, seq: u64) -> Result<u64> {
        let tx = self.read_tx()?;
        let log = tx.open_table(LOG).map_err(|e| self.err(e))?;
        let mut n = 0;
        for item in log
            .range(seq.saturating_add(1)..)
            .map_err(|e| self.err(e))?
        {
            item.map_err(|e| self.err(e))?;
            n += 1;
        }
        Ok(n)
    }

    /// The highest sequence number issued so far (0 when empty).
    pub fn last_seq(&self) -> Result<u64> {
        let tx = self.read_tx()?;
        let meta = tx.open_table(META).map_err(|e| self.err(e))?;
        let next = meta
            .get(META_NEXT_SEQ)
            .map_err(|e| self.err(e))?
            .and_then(|v| v.value().try_into().ok().map(u64::from_be_bytes))
            .unwrap_or(1);
        Ok(next - 1)
    }

    /// The conflict log, ordered by record key, version and loser hash.
    pub fn conflicts(&self) -> Result<Vec<Conflict>> {
        let tx = self.read_tx()?;
        let table = tx.open_table(CONFLICTS).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for item in table.range::<&[u8]>(..).map_err(|e| self.err(e))? {
            let (_, v) = item.map_err(|e| self.err(e))?;
            out.push(
                serde_json::from_slice(v.value())
                    .map_err(|e| self.corrupt(format!("conflict entry: {e}")))?,
            );
        }
        Ok(out)
    }

    /// All counters by name (absent ones are 0).
    pub fn counters(&self) -> Result<BTreeMap<String, u64>> {
        let tx = self.read_tx()?;
        let table = tx.open_table(COUNTERS).map_err(|e| self.err(e))?;
        let mut out = BTreeMap::new();
        for item in table.range::<&str>(..).map_err(|e| self.err(e))? {
            let (k, v) = item.map_err(|e| self.err(e))?;
            out.insert(k.value().to_string(), v.value());
        }
        Ok(out)
    }

    // -----------------------------------------------------------------------------------------
    // Pruning (`wb sync prune`), withdrawals owed to un-trusted peers, advertised addresses.
    // -----------------------------------------------------------------------------------------

    /// Forgets everything that originated at `origin`, in one transaction: its records
    /// (tombstones included), their change-log and conflict-log entries, our cursor into its log
    /// and its runtime state (last sync, errors, counters). What we owe that peer is kept (that
    /// it was served trusted records, the withdrawals it is still due). `local` is this
    /// instance: pruning it is refused, local records are never pruned. With `dry_run` nothing is
    /// written (a read-only store works) and the report says what would go.
    ///
    /// Nothing is sent to anyone: peers keep their copies. Since the cursor is gone, the next
    /// pull from `origin` starts from 0 and brings its records back; another peer relays one back
    /// only when a newer version of it reaches that peer (its cursor is already past the rest).
    pub fn prune_origin(
        &self,
        local: &PublicKey,
        origin: &PublicKey,
        dry_run: bool,
    ) -> Result<PruneReport> {
        if origin == local || self.instance_key()?.as_ref() == Some(origin) {
            return Err(StoreError::OwnKeyAsPeer {
                key_id: origin.key_id(),
            });
        }
        let start = origin.as_bytes().to_vec();
        let mut end = start.clone();
        // Keys of one origin are `origin ++ entity …`; UTF-8 never holds 0xff.
        end.push(0xff);
        let bounds = (
            std::ops::Bound::Included(start.as_slice()),
            std::ops::Bound::Excluded(end.as_slice()),
        );
        let peer_key = origin.as_bytes().as_slice();
        if dry_run {
            let tx = self.read_tx()?;
            let records = tx.open_table(RECORDS).map_err(|e| self.err(e))?;
            let conflicts = tx.open_table(CONFLICTS).map_err(|e| self.err(e))?;
            let cursors = tx.open_table(CURSORS).map_err(|e| self.err(e))?;
            let states = tx.open_table(PEER_STATE).map_err(|e| self.err(e))?;
            let victims = self.prunable(&records, bounds, |_| true)?;
            let mut report = PruneReport::counting(&victims);
            report.conflicts = self.keys_in(&conflicts, bounds)?.len() as u64;
            report.cursor = cursors.get(peer_key).map_err(|e| self.err(e))?.is_some();
            if let Some(v) = states.get(peer_key).map_err(|e| self.err(e))? {
                let state: PeerState = serde_json::from_slice(v.value())
                    .map_err(|e| self.corrupt(format!("peer state: {e}")))?;
                report.peer_state = state != state.pruned();
            }
            return Ok(report);
        }
        let tx = self.write_tx()?;
        let report = {
            let mut records = tx.open_table(RECORDS).map_err(|e| self.err(e))?;
            let mut log = tx.open_table(LOG).map_err(|e| self.err(e))?;
            let mut withdrawals = tx.open_table(WITHDRAWALS).map_err(|e| self.err(e))?;
            let mut conflicts = tx.open_table(CONFLICTS).map_err(|e| self.err(e))?;
            let mut cursors = tx.open_table(CURSORS).map_err(|e| self.err(e))?;
            let mut states = tx.open_table(PEER_STATE).map_err(|e| self.err(e))?;
            let victims = self.prunable(&records, bounds, |_| true)?;
            self.remove_pruned(&tx, &mut records, &mut log, &mut withdrawals, &victims)?;
            let mut report = PruneReport::counting(&victims);
            let conflict_keys = self.keys_in(&conflicts, bounds)?;
            for k in &conflict_keys {
                conflicts.remove(k.as_slice()).map_err(|e| self.err(e))?;
            }
            report.conflicts = conflict_keys.len() as u64;
            report.cursor = cursors.remove(peer_key).map_err(|e| self.err(e))?.is_some();
            let state = match states.get(peer_key).map_err(|e| self.err(e))? {
                Some(v) => Some(
                    serde_json::from_slice::<PeerState>(v.value())
                        .map_err(|e| self.corrupt(format!("peer state: {e}")))?,
                ),
                None => None,
            };
            if let Some(state) = state
                && state != state.pruned()
            {
                report.peer_state = true;
                let json = serde_json::to_vec(&state.pruned()).map_err(|e| self.err(e))?;
                states
                    .insert(peer_key, json.as_slice())
                    .map_err(|e| self.err(e))?;
            }
            report
        };
        tx.commit().map_err(|e| self.err(e))?;
        Ok(report)
    }

    /// Drops every record of another origin (tombstones included) whose version is dated
    /// before `cutoff_ms` (Unix ms), with its change-log entry, in one transaction. Records of
    /// `local` (and of the store's own instance key) are never pruned; cursors, peer state and
    /// the conflict log stay. With `dry_run` nothing is written.
    ///
    /// A dropped record comes back only if a peer sends it again: a newer version, or a pull
    /// that starts from 0. A dropped tombstone can therefore let an old copy held elsewhere
    /// come back the same way.
    pub fn prune_older_than(
        &self,
        local: &PublicKey,
        cutoff_ms: u64,
        dry_run: bool,
    ) -> Result<PruneReport> {
        let own = self.instance_key()?;
        let select =
            |r: &Record| r.origin != *local && Some(r.origin) != own && r.version.ms < cutoff_ms;
        let all = (
            std::ops::Bound::<&[u8]>::Unbounded,
            std::ops::Bound::<&[u8]>::Unbounded,
        );
        if dry_run {
            let tx = self.read_tx()?;
            let records = tx.open_table(RECORDS).map_err(|e| self.err(e))?;
            return Ok(PruneReport::counting(
                &self.prunable(&records, all, select)?,
            ));
        }
        let tx = self.write_tx()?;
        let report = {
            let mut records = tx.open_table(RECORDS).map_err(|e| self.err(e))?;
            let mut log = tx.open_table(LOG).map_err(|e| self.err(e))?;
            let mut withdrawals = tx.open_table(WITHDRAWALS).map_err(|e| self.err(e))?;
            let victims = self.prunable(&records, all, select)?;
            self.remove_pruned(&tx, &mut records, &mut log, &mut withdrawals, &victims)?;
            PruneReport::counting(&victims)
        };
        tx.commit().map_err(|e| self.err(e))?;
        Ok(report)
    }

    /// The records in `bounds` that `select` picks: key bytes, log sequence, entity, deleted.
    fn prunable<T>(
        &self,
        records: &T,
        bounds: (std::ops::Bound<&[u8]>, std::ops::Bound<&[u8]>),
        select: impl Fn(&Record) -> bool,
    ) -> Result<Vec<Pruned>>
    where
        T: ReadableTable<&'static [u8], &'static [u8]>,
    {
        let mut out = Vec::new();
        for item in records.range::<&[u8]>(bounds).map_err(|e| self.err(e))? {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let (seq, record) = self.decode_value(v.value())?;
            if select(&record) {
                out.push(Pruned {
                    key: k.value().to_vec(),
                    seq,
                    entity: record.entity.to_string(),
                    deleted: record.deleted,
                });
            }
        }
        Ok(out)
    }

    /// The keys of a byte-keyed table in `bounds`.
    fn keys_in<T>(
        &self,
        table: &T,
        bounds: (std::ops::Bound<&[u8]>, std::ops::Bound<&[u8]>),
    ) -> Result<Vec<Vec<u8>>>
    where
        T: ReadableTable<&'static [u8], &'static [u8]>,
    {
        let mut out = Vec::new();
        for item in table.range::<&[u8]>(bounds).map_err(|e| self.err(e))? {
            let (k, _) = item.map_err(|e| self.err(e))?;
            out.push(k.value().to_vec());
        }
        Ok(out)
    }

    fn remove_pruned(
        &self,
        tx: &WriteTransaction,
        records: &mut redb::Table<&[u8], &[u8]>,
        log: &mut redb::Table<u64, &[u8]>,
        withdrawals: &mut redb::Table<&[u8], &[u8]>,
        victims: &[Pruned],
    ) -> Result<()> {
        let mut digesting = Digesting::begin(self, tx)?;
        {
            let allowed = tx.open_table(CONTACT_ALLOWED).map_err(|e| self.err(e))?;
            let mut index = tx.open_table(COMMENT_INDEX).map_err(|e| self.err(e))?;
            for v in victims {
                let old = match records.get(v.key.as_slice()).map_err(|e| self.err(e))? {
                    Some(value) => Some(self.decode_value(value.value())?.1),
                    None => None,
                };
                let env = Env {
                    records: &*records,
                    withdrawals: &*withdrawals,
                    allowed: Some(&allowed),
                };
                let comments =
                    digesting.before(self, &env, &mut index, &v.key, old.as_ref(), None)?;
                records.remove(v.key.as_slice()).map_err(|e| self.err(e))?;
                log.remove(v.seq).map_err(|e| self.err(e))?;
                withdrawals
                    .remove(v.key.as_slice())
                    .map_err(|e| self.err(e))?;
                let env = Env {
                    records: &*records,
                    withdrawals: &*withdrawals,
                    allowed: Some(&allowed),
                };
                digesting.after(self, &env, &mut index, &v.key, None, None, comments)?;
            }
        }
        digesting.write(self, tx)
    }

    /// Settles what `peer` is owed before we serve it a pull (`cursor` is the one it sent;
    /// `trusted`: whether it is trusted now). Returns how many records were re-versioned.
    ///
    /// A peer that was served trusted records (`PeerState::served_trusted`) and is no longer
    /// trusted still holds copies of them. The first time it is served untrusted, every live
    /// trusted record of ours gets, in one transaction, a fresh signed withdrawal (a tombstone
    /// with the widest scope the record ever had) and, one version above it, the same content
    /// re-signed, so the record moves to the end of the change log. The peer's next pull then
    /// carries those withdrawals (see [`Store::outgoing`]) and the peer deletes its copies;
    /// trusted peers get the re-signed records, and a peer trusted again later gets them too
    /// (they are newer than its withdrawals). Idempotent: this happens once per un-trusting;
    /// a pull cut midway resumes from the peer's cursor like any other. The peer stays owed
    /// those withdrawals until its cursor passes the last re-versioned record, or it is
    /// trusted again.
    pub fn withdraw_from_untrusted(
        &self,
        key: &SecretKey,
        peer: &PublicKey,
        trusted: bool,
        cursor: &Cursor,
        now_ms: u64,
    ) -> Result<u64> {
        let settle = |state: &PeerState| {
            let caught_up = state
                .withdraw_trusted_until
                .is_some_and(|until| cursor.epoch == self.epoch.0 && cursor.seq >= until);
            let bump = !trusted && state.served_trusted;
            let clear = state.withdraw_trusted_until.is_some() && (trusted || caught_up);
            (bump, clear)
        };
        if settle(&self.peer_state(peer)?) == (false, false) {
            return Ok(0);
        }
        let me = key.public();
        let tx = self.write_tx()?;
        let moved = {
            let mut states = tx.open_table(PEER_STATE).map_err(|e| self.err(e))?;
            let mut state: PeerState = match states
                .get(peer.as_bytes().as_slice())
                .map_err(|e| self.err(e))?
            {
                Some(v) => serde_json::from_slice(v.value())
                    .map_err(|e| self.corrupt(format!("peer state: {e}")))?,
                None => PeerState::default(),
            };
            let (bump, clear) = settle(&state);
            if clear {
                state.withdraw_trusted_until = None;
            }
            let mut moved = 0u64;
            if bump {
                let mut records = tx.open_table(RECORDS).map_err(|e| self.err(e))?;
                let mut log = tx.open_table(LOG).map_err(|e| self.err(e))?;
                let mut meta = tx.open_table(META).map_err(|e| self.err(e))?;
                let mut withdrawals = tx.open_table(WITHDRAWALS).map_err(|e| self.err(e))?;
                let allowed = tx.open_table(CONTACT_ALLOWED).map_err(|e| self.err(e))?;
                let mut index = tx.open_table(COMMENT_INDEX).map_err(|e| self.err(e))?;
                let mut digesting = Digesting::with_meta(self, &meta)?;
                let start = me.as_bytes().to_vec();
                let mut end = start.clone();
                end.push(0xff);
                let mut targets = Vec::new();
                for item in records
                    .range::<&[u8]>(start.as_slice()..end.as_slice())
                    .map_err(|e| self.err(e))?
                {
                    let (k, v) = item.map_err(|e| self.err(e))?;
                    let (seq, record) = self.decode_value(v.value())?;
                    if !record.deleted
                        && record.signature.is_some()
                        && record.effective_scope() == Scope::Trusted
                    {
                        targets.push((k.value().to_vec(), seq, record));
                    }
                }
                let mut clock = meta
                    .get(META_CLOCK)
                    .map_err(|e| self.err(e))?
                    .and_then(|v| version_from_bytes(v.value()))
                    .unwrap_or(Version::ZERO);
                for (kb, seq, record) in targets {
                    let env = Env {
                        records: &records,
                        withdrawals: &withdrawals,
                        allowed: Some(&allowed),
                    };
                    let comments = digesting.before(
                        self,
                        &env,
                        &mut index,
                        &kb,
                        Some(&record),
                        Some(&record),
                    )?;
                    let earlier = match withdrawals.get(kb.as_slice()).map_err(|e| self.err(e))? {
                        Some(v) => Some(
                            Record::from_sealed_bytes(v.value())
                                .map_err(|e| self.corrupt(format!("withdrawal: {e}")))?,
                        ),
                        None => None,
                    };
                    clock = Version::next_after(clock.max(record.version), now_ms);
                    let mut tombstone = Record {
                        version: clock,
                        scope: earlier.map_or(record.scope, |w| w.scope.max(record.scope)),
                        deleted: true,
                        fields: Vec::new(),
                        body: String::new(),
                        signature: None,
                        ..record.clone()
                    };
                    tombstone.sign(key)?;
                    withdrawals
                        .insert(kb.as_slice(), tombstone.to_sealed_bytes().as_slice())
                        .map_err(|e| self.err(e))?;
                    clock = Version::next_after(clock, now_ms);
                    let mut again = Record {
                        version: clock,
                        signature: None,
                        ..record
                    };
                    again.sign(key)?;
                    self.write_record(&mut records, &mut log, &mut meta, &kb, Some(seq), &again)?;
                    let env = Env {
                        records: &records,
                        withdrawals: &withdrawals,
                        allowed: Some(&allowed),
                    };
                    digesting.after(self, &env, &mut index, &kb, Some(&again), None, comments)?;
                    moved += 1;
                }
                drop((records, log, meta, withdrawals, allowed, index));
                digesting.write(self, &tx)?;
                let mut meta = tx.open_table(META).map_err(|e| self.err(e))?;
                meta.insert(META_CLOCK, version_bytes(clock).as_slice())
                    .map_err(|e| self.err(e))?;
                let last = meta
                    .get(META_NEXT_SEQ)
                    .map_err(|e| self.err(e))?
                    .and_then(|v| v.value().try_into().ok().map(u64::from_be_bytes))
                    .unwrap_or(1)
                    - 1;
                state.served_trusted = false;
                state.withdraw_trusted_until = Some(last);
            }
            let json = serde_json::to_vec(&state).map_err(|e| self.err(e))?;
            states
                .insert(peer.as_bytes().as_slice(), json.as_slice())
                .map_err(|e| self.err(e))?;
            moved
        };
        tx.commit().map_err(|e| self.err(e))?;
        Ok(moved)
    }

    /// Whether `peer` is owed the withdrawals of our trusted records (read in `tx`).
    fn owes_withdrawals(&self, tx: &ReadTransaction, peer: &PublicKey) -> Result<bool> {
        let states = tx.open_table(PEER_STATE).map_err(|e| self.err(e))?;
        let value = states
            .get(peer.as_bytes().as_slice())
            .map_err(|e| self.err(e))?;
        match value {
            Some(v) => Ok(serde_json::from_slice::<PeerState>(v.value())
                .map_err(|e| self.corrupt(format!("peer state: {e}")))?
                .withdraw_trusted_until
                .is_some()),
            None => Ok(false),
        }
    }

    /// Records the addresses a running node can be reached at (`wb node run` does), so that
    /// `wb id` can put them in a ticket while no node runs.
    pub fn set_listen_addrs(&self, addrs: &[String]) -> Result<()> {
        let json = serde_json::to_vec(addrs).map_err(|e| self.err(e))?;
        let tx = self.write_tx()?;
        {
            let mut meta = tx.open_table(META).map_err(|e| self.err(e))?;
            meta.insert(META_LISTEN_ADDRS, json.as_slice())
                .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// The addresses recorded by [`Store::set_listen_addrs`] (empty if none were).
    pub fn listen_addrs(&self) -> Result<Vec<String>> {
        let tx = self.read_tx()?;
        let meta = tx.open_table(META).map_err(|e| self.err(e))?;
        let value = meta.get(META_LISTEN_ADDRS).map_err(|e| self.err(e))?;
        match value {
            Some(v) => serde_json::from_slice(v.value())
                .map_err(|e| self.corrupt(format!("listen addresses: {e}"))),
            None => Ok(Vec::new()),
        }
    }
}

/// Batches being applied in one write transaction (see [`Store::begin_apply`]); dropped without
/// [`Applying::commit`], it writes nothing.
pub(crate) struct Applying<'a> {
    store: &'a Store,
    opts: &'a ApplyOptions,
    tx: WriteTransaction,
    report: ApplyReport,
    counts: BTreeMap<&'static str, u64>,
    first_seq: u64,
    seq: u64,
    /// Requests that may now reach more parties: their comments are logged again at commit.
    widened: HashSet<RecordKey>,
    /// Records handed in so far (for `ApplyOptions::fail_after`).
    applied: usize,
    /// The store's instance key, and the newest version of ours applied (see `commit`).
    own: Option<Vec<u8>>,
    own_newest: Version,
    /// The digests' deltas (`digest`), written at commit.
    digesting: Digesting,
}

impl Applying<'_> {
    /// Applies one checked batch (§5 rules, in order). With `all_or_nothing`, a rejected record
    /// fails it, and the transaction is then dropped unwritten.
    pub(crate) fn apply(&mut self, batch: &CheckedBatch) -> Result<()> {
        let (store, opts) = (self.store, self.opts);
        if opts.all_or_nothing
            && let Some((index, key, reason)) = batch.first_rejection()
        {
            return Err(StoreError::BatchRejected {
                index: self.applied + index,
                key,
                reason,
            });
        }
        let mut records = self.tx.open_table(RECORDS).map_err(|e| store.err(e))?;
        let mut log = self.tx.open_table(LOG).map_err(|e| store.err(e))?;
        let mut conflicts = self.tx.open_table(CONFLICTS).map_err(|e| store.err(e))?;
        let withdrawals = self.tx.open_table(WITHDRAWALS).map_err(|e| store.err(e))?;
        let allowed = self
            .tx
            .open_table(CONTACT_ALLOWED)
            .map_err(|e| store.err(e))?;
        let mut comment_index = self
            .tx
            .open_table(COMMENT_INDEX)
            .map_err(|e| store.err(e))?;
        for ((incoming, verdict), sealed) in
            batch.records.iter().zip(&batch.verdicts).zip(&batch.sealed)
        {
            let index = self.applied;
            self.applied += 1;
            if opts.fail_after == Some(index) {
                return Err(StoreError::InjectedFault(index));
            }
            if let Some(reason) = verdict {
                *self.counts.entry(reason.counter()).or_default() += 1;
                self.report.count_rejection(incoming, reason);
                continue;
            }
            if self.own.as_deref() == Some(incoming.origin.as_bytes().as_slice()) {
                self.own_newest = self.own_newest.max(incoming.version);
            }
            let kb = key_bytes(&incoming.key());
            let current = match records.get(kb.as_slice()).map_err(|e| store.err(e))? {
                Some(v) => Some(store.decode_value(v.value())?),
                None => None,
            };
            let decision = decide(current.as_ref().map(|(_, r)| r), incoming);
            self.report.count(&decision);
            *self.counts.entry(decision.counter()).or_default() += 1;
            if let Decision::Conflict { winner, loser, .. } = &decision {
                let entry = Conflict {
                    origin: incoming.origin.to_base64(),
                    entity: incoming.entity.to_string(),
                    id: incoming.id.clone(),
                    version: incoming.version.to_string(),
                    winner_hash: hex::encode(winner),
                    loser_hash: hex::encode(loser),
                    source: opts.source.clone(),
                    at_ms: opts.now_ms,
                };
                let mut ck = kb.clone();
                ck.extend_from_slice(&version_bytes(incoming.version));
                ck.extend_from_slice(loser);
                let json = serde_json::to_vec(&entry).map_err(|e| store.err(e))?;
                conflicts
                    .insert(ck.as_slice(), json.as_slice())
                    .map_err(|e| store.err(e))?;
            }
            if decision.replaces() {
                let old_seq = current.as_ref().map(|(seq, _)| *seq);
                let env = Env {
                    records: &records,
                    withdrawals: &withdrawals,
                    allowed: Some(&allowed),
                };
                let comments = self.digesting.before(
                    store,
                    &env,
                    &mut comment_index,
                    &kb,
                    current.as_ref().map(|(_, r)| r),
                    Some(incoming),
                )?;
                store.put_sealed(&mut records, &mut log, &kb, old_seq, self.seq, sealed)?;
                self.seq += 1;
                let env = Env {
                    records: &records,
                    withdrawals: &withdrawals,
                    allowed: Some(&allowed),
                };
                // The sealed bytes are the signing bytes, then the signature flag and
                // signature (`Record::to_sealed_bytes`).
                let tail = if incoming.signature.is_some() { 65 } else { 1 };
                let signing = sealed.get(..sealed.len().saturating_sub(tail));
                self.digesting.after(
                    store,
                    &env,
                    &mut comment_index,
                    &kb,
                    Some(incoming),
                    signing,
                    comments,
                )?;
                if let Some((_, current)) = &current
                    && widens_request(current, incoming)
                {
                    self.widened.insert(incoming.key());
                }
            }
        }
        Ok(())
    }

    /// Ends the transaction: comments of widened requests logged again, sequence, counters,
    /// cursor and provenance written, committed.
    pub(crate) fn commit(self) -> Result<ApplyReport> {
        let Self {
            store,
            opts,
            tx,
            report,
            counts,
            first_seq,
            seq,
            widened,
            own_newest,
            digesting,
            ..
        } = self;
        digesting.write(store, &tx)?;
        {
            let mut records = tx.open_table(RECORDS).map_err(|e| store.err(e))?;
            let mut log = tx.open_table(LOG).map_err(|e| store.err(e))?;
            let mut meta = tx.open_table(META).map_err(|e| store.err(e))?;
            let mut counters = tx.open_table(COUNTERS).map_err(|e| store.err(e))?;
            let seq = store.relog_comments(&mut records, &mut log, &widened, seq)?;
            if own_newest > Version::ZERO {
                let clock = meta
                    .get(META_CLOCK)
                    .map_err(|e| store.err(e))?
                    .and_then(|v| version_from_bytes(v.value()))
                    .unwrap_or(Version::ZERO);
                if own_newest > clock {
                    meta.insert(META_CLOCK, version_bytes(own_newest).as_slice())
                        .map_err(|e| store.err(e))?;
                }
            }
            if seq != first_seq {
                meta.insert(META_NEXT_SEQ, seq.to_be_bytes().as_slice())
                    .map_err(|e| store.err(e))?;
            }
            for (name, by) in counts {
                bump(&mut counters, name, by).map_err(|e| store.err(e))?;
            }
            if let Some((peer, cursor)) = &opts.cursor {
                let mut cursors = tx.open_table(CURSORS).map_err(|e| store.err(e))?;
                cursors
                    .insert(peer.as_bytes().as_slice(), cursor_bytes(cursor).as_slice())
                    .map_err(|e| store.err(e))?;
            }
            if let Some(provenance) = &opts.provenance {
                let mut bundles = tx.open_table(BUNDLES).map_err(|e| store.err(e))?;
                let entry = Provenance {
                    report: report.clone(),
                    ..provenance.clone()
                };
                let json = serde_json::to_vec(&entry).map_err(|e| store.err(e))?;
                bundles
                    .insert(entry.manifest_digest.as_str(), json.as_slice())
                    .map_err(|e| store.err(e))?;
            }
        }
        tx.commit().map_err(|e| store.err(e))?;
        Ok(report)
    }
}

/// Batches being planned on a read transaction (see [`Store::begin_plan`]).
pub(crate) struct Planning<'a> {
    store: &'a Store,
    tx: ReadTransaction,
    /// Versions planned earlier, as the write transaction would see them, by 16 bytes of the
    /// SHA-256 of their key: what [`decide`] needs of each (about 90 bytes a record that would
    /// be written, where whole records took about a kilobyte).
    overlay: HashMap<[u8; 16], Planned>,
    pub(crate) report: ApplyReport,
}

impl Planning<'_> {
    /// Plans one checked batch.
    pub(crate) fn plan(&mut self, batch: &CheckedBatch) -> Result<()> {
        let store = self.store;
        let records = self.tx.open_table(RECORDS).map_err(|e| store.err(e))?;
        for (incoming, verdict) in batch.records.iter().zip(&batch.verdicts) {
            if let Some(reason) = verdict {
                self.report.count_rejection(incoming, reason);
                continue;
            }
            let kb = key_bytes(&incoming.key());
            let short: [u8; 16] = {
                let digest = <sha2::Sha256 as sha2::Digest>::digest(&kb);
                let mut short = [0u8; 16];
                short.copy_from_slice(digest.get(..16).unwrap_or(&[0; 16]));
                short
            };
            let decision = match self.overlay.get(&short) {
                Some(planned) => decide_over(Some(Current::Planned(planned)), incoming),
                None => {
                    let held = match records.get(kb.as_slice()).map_err(|e| store.err(e))? {
                        Some(v) => Some(store.decode_value(v.value())?.1),
                        None => None,
                    };
                    decide(held.as_ref(), incoming)
                }
            };
            self.report.count(&decision);
            if decision.replaces() {
                let planned = Planned {
                    version: incoming.version,
                    content_hash: match &decision {
                        Decision::Conflict { winner, .. } => *winner,
                        _ => incoming.content_hash(),
                    },
                    signed: incoming.signature.is_some(),
                };
                self.overlay.insert(short, planned);
            }
        }
        Ok(())
    }
}

/// Incoming versions with the verdict of the checks that need no store: signature (against the
/// record's own origin), validity, clock skew. Made only by [`CheckedBatch::check`], so a batch
/// handed to [`Store::apply_checked`] is always checked.
#[derive(Debug, Clone)]
pub struct CheckedBatch {
    records: Vec<Record>,
    verdicts: Vec<Option<Rejection>>,
    /// Each record's sealed form, as checked: what the store writes.
    sealed: Vec<Vec<u8>>,
}

/// Batches smaller than this are checked on the calling thread.
const PARALLEL_CHECK_MIN: usize = 256;
/// At most this many threads verify signatures.
const CHECK_THREADS_MAX: usize = 16;

impl CheckedBatch {
    /// Checks every record, verifying signatures on all cores for large batches.
    pub fn check(records: Vec<Record>, opts: &ApplyOptions) -> Self {
        let (verdicts, sealed) = par_map(&records, |r| {
            (check_incoming(r, opts).err(), r.to_sealed_bytes())
        })
        .into_iter()
        .unzip();
        Self {
            records,
            verdicts,
            sealed,
        }
    }

    /// Decodes sealed records (as received from a peer) and checks them like [`check`], on
    /// all cores for large batches; the store then writes exactly these bytes. Bytes that do
    /// not decode as a record fail the whole batch: their index and why.
    ///
    /// [`check`]: CheckedBatch::check
    pub fn check_sealed(
        sealed: Vec<Vec<u8>>,
        opts: &ApplyOptions,
    ) -> std::result::Result<Self, (usize, protocol::ProtocolError)> {
        let checked = par_map(&sealed, |bytes| {
            Record::from_sealed_bytes(bytes).map(|r| {
                let verdict = check_incoming(&r, opts).err();
                (r, verdict)
            })
        });
        let mut records = Vec::with_capacity(sealed.len());
        let mut verdicts = Vec::with_capacity(sealed.len());
        for (index, item) in checked.into_iter().enumerate() {
            let (record, verdict) = item.map_err(|e| (index, e))?;
            records.push(record);
            verdicts.push(verdict);
        }
        Ok(Self {
            records,
            verdicts,
            sealed,
        })
    }

    /// Records whose exact bytes passed [`CheckedBatch::check`] (with no rejection) earlier
    /// in this process, not verified again: a bundle's second pass, which re-checks each
    /// file's SHA-256 against the manifest whose signature the first pass verified, so these
    /// are the very records checked then.
    pub(crate) fn checked_earlier(records: Vec<Record>) -> Self {
        let sealed = par_map(&records, Record::to_sealed_bytes);
        Self {
            verdicts: vec![None; records.len()],
            records,
            sealed,
        }
    }

    /// Drops the records `keep` refuses (e.g. what a peer may not pass on); returns how many.
    pub fn retain(&mut self, mut keep: impl FnMut(&Record) -> bool) -> usize {
        let before = self.records.len();
        let mut kept = (Vec::new(), Vec::new(), Vec::new());
        for ((r, v), s) in std::mem::take(&mut self.records)
            .into_iter()
            .zip(std::mem::take(&mut self.verdicts))
            .zip(std::mem::take(&mut self.sealed))
        {
            if keep(&r) {
                kept.0.push(r);
                kept.1.push(v);
                kept.2.push(s);
            }
        }
        (self.records, self.verdicts, self.sealed) = kept;
        before - self.records.len()
    }

    /// Whether a record was rejected only for now: dated too far in the future, it is accepted
    /// once the receiver's clock catches up, so a pull must fetch it again.
    pub fn has_future_dated(&self) -> bool {
        self.verdicts
            .iter()
            .any(|v| matches!(v, Some(Rejection::FutureDated { .. })))
    }

    /// The first rejected record: its index, key and reason.
    pub fn first_rejection(&self) -> Option<(usize, RecordKey, Rejection)> {
        self.verdicts
            .iter()
            .enumerate()
            .find_map(|(i, v)| v.clone().map(|reason| (i, self.records[i].key(), reason)))
    }

    pub fn records(&self) -> &[Record] {
        &self.records
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

/// Items a checking thread takes at a time: small, so a thread slowed down (by another
/// process, or by the store writing the previous batch) leaves little for the others to wait on.
const PAR_CHUNK: usize = 32;

/// `f` over `items`, in order, on all cores (at most [`CHECK_THREADS_MAX`] threads, the
/// calling one included) when there are enough items to be worth the threads. Threads take
/// small chunks from a shared counter until none are left.
fn par_map<T: Sync, U: Send>(items: &[T], f: impl Fn(&T) -> U + Sync) -> Vec<U> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(CHECK_THREADS_MAX);
    if items.len() < PARALLEL_CHECK_MIN || threads < 2 {
        return items.iter().map(&f).collect();
    }
    let next = AtomicUsize::new(0);
    let work = || {
        let mut done: Vec<(usize, Vec<U>)> = Vec::new();
        loop {
            let start = next.fetch_add(PAR_CHUNK, Ordering::Relaxed);
            let Some(part) = items.get(start..(start + PAR_CHUNK).min(items.len())) else {
                return done;
            };
            if part.is_empty() {
                return done;
            }
            done.push((start, part.iter().map(&f).collect()));
        }
    };
    let mut parts = std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads).map(|_| scope.spawn(work)).collect();
        let mut parts = work();
        for h in helpers {
            // A panic in a checker is a bug; re-raise it on this thread.
            parts.extend(h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
        }
        parts
    });
    parts.sort_unstable_by_key(|(start, _)| *start);
    parts.into_iter().flat_map(|(_, part)| part).collect()
}

/// What the §5 rules do with one incoming version, given the current one.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Decision {
    New,
    Updated,
    Stale,
    /// Same content; `upgrade` when the incoming copy carries a signature ours lacks.
    Unchanged {
        upgrade: bool,
    },
    /// Same version, other content: the larger content hash wins.
    Conflict {
        incoming_wins: bool,
        winner: [u8; 32],
        loser: [u8; 32],
    },
}

impl Decision {
    fn replaces(&self) -> bool {
        match self {
            Decision::New | Decision::Updated => true,
            Decision::Stale => false,
            Decision::Unchanged { upgrade } => *upgrade,
            Decision::Conflict { incoming_wins, .. } => *incoming_wins,
        }
    }

    fn counter(&self) -> &'static str {
        match self {
            Decision::New => counter::NEW,
            Decision::Updated => counter::UPDATED,
            Decision::Stale => counter::STALE,
            Decision::Unchanged { .. } => counter::UNCHANGED,
            Decision::Conflict { .. } => counter::CONFLICTS,
        }
    }
}

/// The §5 rules, in one place: used by both [`Store::apply_checked`] and [`Store::plan`].
fn decide(current: Option<&Record>, incoming: &Record) -> Decision {
    decide_over(current.map(Current::Record), incoming)
}

/// What [`decide`] needs of the version held: the record, or what a dry run keeps of a version
/// it planned ([`Planned`]).
#[derive(Clone, Copy)]
enum Current<'a> {
    Record(&'a Record),
    Planned(&'a Planned),
}

impl Current<'_> {
    fn version(&self) -> Version {
        match self {
            Self::Record(r) => r.version,
            Self::Planned(p) => p.version,
        }
    }

    fn content_hash(&self) -> [u8; 32] {
        match self {
            Self::Record(r) => r.content_hash(),
            Self::Planned(p) => p.content_hash,
        }
    }

    fn signed(&self) -> bool {
        match self {
            Self::Record(r) => r.signature.is_some(),
            Self::Planned(p) => p.signed,
        }
    }
}

/// A version a dry run planned to write: what a later copy of the same key is decided against.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Planned {
    version: Version,
    content_hash: [u8; 32],
    signed: bool,
}

fn decide_over(current: Option<Current<'_>>, incoming: &Record) -> Decision {
    let Some(existing) = current else {
        return Decision::New;
    };
    match incoming.version.cmp(&existing.version()) {
        std::cmp::Ordering::Greater => Decision::Updated,
        std::cmp::Ordering::Less => Decision::Stale,
        std::cmp::Ordering::Equal => {
            let (ours, theirs) = (existing.content_hash(), incoming.content_hash());
            if ours == theirs {
                Decision::Unchanged {
                    upgrade: !existing.signed() && incoming.signature.is_some(),
                }
            } else if theirs > ours {
                Decision::Conflict {
                    incoming_wins: true,
                    winner: theirs,
                    loser: ours,
                }
            } else {
                Decision::Conflict {
                    incoming_wins: false,
                    winner: ours,
                    loser: theirs,
                }
            }
        }
    }
}

impl ApplyReport {
    fn count(&mut self, decision: &Decision) {
        match decision {
            Decision::New => self.new += 1,
            Decision::Updated => self.updated += 1,
            Decision::Stale => self.stale += 1,
            Decision::Unchanged { .. } => self.unchanged += 1,
            Decision::Conflict { .. } => self.conflicts += 1,
        }
    }

    fn count_rejection(&mut self, record: &Record, reason: &Rejection) {
        self.rejected += 1;
        self.rejections.push((record.key(), reason.clone()));
    }
}

impl Rejection {
    fn counter(&self) -> &'static str {
        match self {
            Rejection::BadSignature | Rejection::Unsigned => counter::REJECTED_SIGNATURE,
            Rejection::FutureDated { .. } => counter::REJECTED_FUTURE,
            Rejection::Invalid(_) => counter::REJECTED_INVALID,
            Rejection::RevokedOrigin { .. } => counter::REJECTED_REVOKED,
        }
    }
}

fn check_incoming(record: &Record, opts: &ApplyOptions) -> Result<(), Rejection> {
    if opts.revoked.contains(&record.origin) {
        return Err(Rejection::RevokedOrigin {
            key_id: record.origin.key_id(),
        });
    }
    match &record.signature {
        None if opts.unsigned_origin == Some(record.origin) => {}
        None => return Err(Rejection::Unsigned),
        Some(_) => record.verify().map_err(|_| Rejection::BadSignature)?,
    }
    if record.version.is_future(opts.now_ms) {
        return Err(Rejection::FutureDated {
            ahead_ms: record.version.ms - opts.now_ms,
            limit_ms: protocol::version::MAX_FUTURE_SKEW_MS,
        });
    }
    protocol::validate(record).map_err(|e| Rejection::Invalid(e.to_string()))
}

pub(crate) fn bump(
    counters: &mut redb::Table<&str, u64>,
    name: &str,
    by: u64,
) -> std::result::Result<(), redb::StorageError> {
    let now = counters.get(name)?.map_or(0, |v| v.value());
    counters.insert(name, now.saturating_add(by))?;
    Ok(())
}

/// redb's page cache. Its default (1 GiB) kept most of a large store in memory while an export
/// read it once, sequentially; a small cache bounds memory with no measured loss (bench bundles).
const CACHE_BYTES: usize = 16 * 1024 * 1024;

pub(crate) fn builder() -> redb::Builder {
    let mut b = Database::builder();
    b.set_cache_size(CACHE_BYTES);
    b
}

pub(crate) fn db_open_err(path: &Path, e: redb::DatabaseError) -> StoreError {
    match e {
        redb::DatabaseError::DatabaseAlreadyOpen => StoreError::InUse(path.to_path_buf()),
        redb::DatabaseError::Storage(redb::StorageError::Io(source)) => StoreError::Io {
            path: path.to_path_buf(),
            source,
        },
        other => StoreError::Database {
            path: path.to_path_buf(),
            message: other.to_string(),
        },
    }
}

/// One record picked by a prune.
struct Pruned {
    key: Vec<u8>,
    seq: u64,
    entity: String,
    deleted: bool,
}

/// What a prune removed (or, in a dry run, would remove).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruneReport {
    /// Records by entity name, tombstones included.
    pub records: BTreeMap<String, u64>,
    /// How many of those were tombstones (deleted records).
    pub tombstones: u64,
    /// Conflict-log entries about those records (`prune_origin` only).
    pub conflicts: u64,
    /// Our cursor into the peer's log was dropped: the next pull from it starts from 0.
    pub cursor: bool,
    /// The peer's runtime state (last sync, errors, counters) was reset.
    pub peer_state: bool,
}

impl PruneReport {
    fn counting(victims: &[Pruned]) -> Self {
        let mut report = PruneReport::default();
        for v in victims {
            *report.records.entry(v.entity.clone()).or_default() += 1;
            report.tombstones += u64::from(v.deleted);
        }
        report
    }

    /// Records in all, tombstones included.
    pub fn total(&self) -> u64 {
        self.records.values().sum()
    }
}

impl PeerState {
    /// What `prune_origin` keeps of a peer's state: what we owe it (whether it was served
    /// trusted records, the withdrawals it is still due); last sync, errors and counters go.
    fn pruned(&self) -> PeerState {
        PeerState {
            served_trusted: self.served_trusted,
            withdraw_trusted_until: self.withdraw_trusted_until,
            ..PeerState::default()
        }
    }
}
