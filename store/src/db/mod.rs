//! The redb store (§7): records, compacted change log, epoch, clock, conflicts, counters.
//!
//! Tables (all keys and values are bytes owned by this module):
//! - `records`: record key bytes → change-log sequence (u64 BE) ++ sealed record bytes
//! - `log`: sequence → record key bytes; one live entry per key (older ones are removed)
//! - `meta`: epoch, clock (last issued local version), next sequence, instance name
//! - `conflicts`: record key ++ version ++ loser hash → JSON [`Conflict`] (idempotent)
//! - `counters`: name → u64

mod apply;
mod check;
mod conflicts;
mod copy;
mod digests;
pub mod format;
mod log;
mod meta;
mod outgoing;
mod peer_state;
mod provenance;
mod prune;
mod records;
mod rotation;
mod serving;
mod tables;
mod withdrawals;

pub use apply::{ApplyOptions, ApplyReport};
pub use check::CheckedBatch;
pub use conflicts::Conflict;
pub(crate) use copy::{
    copy_all, copy_to_new_file, db_err, io_err, known_names, sync_parent, write_new,
};
pub(crate) use digests::{CommentIndex, Digesting, Env};
pub use log::Change;
pub(crate) use log::widens_request;
pub(crate) use meta::bump;
pub use meta::{Epoch, counter};
pub use outgoing::Outgoing;
pub use peer_state::PeerState;
pub use provenance::Provenance;
pub use prune::PruneReport;
pub use records::{Draft, ListFilter, LocalChange};
pub use serving::{Receiving, Serving};
pub(crate) use tables::*;

use std::path::{Path, PathBuf};

use redb::{
    Database, ReadOnlyDatabase, ReadTransaction, ReadableDatabase, ReadableTable, WriteTransaction,
};

use crate::error::{Result, StoreError};
use crate::random::random_bytes;
use format::{Found, STORE_FORMAT};

/// The store: one redb file, opened by one process at a time.
#[derive(Debug)]
pub struct Store {
    db: Handle,
    path: PathBuf,
    epoch: Epoch,
    /// Write transactions begun through this handle (each commit is one sync to disk).
    writes: std::sync::atomic::AtomicU64,
    /// Removals of records without new log entries (prunes) begun through this handle
    /// (`serving`).
    removals: std::sync::atomic::AtomicU64,
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

impl Store {
    /// Opens an existing store, or creates it with a fresh epoch.
    pub fn open_or_create(path: &Path) -> Result<Store> {
        if path.exists() {
            format::refuse_newer(path)?;
        }
        let db = builder().create(path).map_err(|e| db_open_err(path, e))?;
        format::migrate(&db, path)?;
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
        format::refuse_newer(path)?;
        let db = builder().open(path).map_err(|e| db_open_err(path, e))?;
        format::migrate(&db, path)?;
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
            removals: std::sync::atomic::AtomicU64::new(0),
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
                removals: std::sync::atomic::AtomicU64::new(0),
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
            if format::check(path, format.as_deref())? == Found::Missing {
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
            removals: std::sync::atomic::AtomicU64::new(0),
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
        if format::check(path, get(META_FORMAT).as_deref())? == Found::Missing {
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
}

/// redb's page cache. Its default (1 GiB) kept most of a large store in memory while an export
/// read it once, sequentially, so it is bounded. redb keeps a transaction's dirty pages in at
/// most half of it and writes the rest out early (to read them back if they change again). A
/// pull's commit of 8 batches (`node::session::BATCHES_PER_COMMIT_MAX`) at a million records
/// dirties between 16 and 24 MB, mostly leaves of the comment index, which comments on random
/// requests touch at random: applying a million records in such commits, redb wrote 4.3 GB
/// through the kernel and read 785,000 pages back at 16 MiB; 2.5 GB and 164,000 at 48 MiB.
/// The whole `wb sync pull` spent 7.0 s in the kernel at 16 MiB and 4.9 s at 48, for 33 MB
/// more peak memory (75 → 108 MB).
const CACHE_BYTES: usize = 48 * 1024 * 1024;

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
