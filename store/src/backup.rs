//! Online backup and restore of the store (issue 13, item 2).
//!
//! A backup is a redb file with a copy of every table, written inside one read transaction of
//! the live store (so a running node keeps writing meanwhile and the copy is consistent), to a
//! temporary sibling (mode 0600) renamed over the target. The instance key is not in it.
//!
//! A restore (node stopped) writes the backup's tables into a new store file with a **new
//! epoch**, so peers whose cursors point past the restored sequence numbers pull from the
//! start, and without our cursors into peers' logs, so we pull everything from them again.
//! It keeps the clock at least where the replaced store had it, never hands out again an app id
//! given out after the backup, and marks the store as restored: until a full pull from a peer
//! completed, sessions ask that peer for our own records too (the capability
//! `protocol::wire::capability::OWN_RECORDS`), which is how the instance gets back what it
//! signed after the backup. The replaced store stays beside the new one.

use std::path::{Path, PathBuf};
use std::time::Instant;

use protocol::{PublicKey, Record, Version};
use redb::{
    ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableHandle,
    WriteTransaction,
};
use serde::Serialize;

use crate::db::format::{Found, STORE_FORMAT, check};
use crate::db::{
    BUNDLES, CONFLICTS, CONTACT_ALLOWED, COUNTERS, CURSORS, Epoch, LOG, META, META_BACKUP_TAKEN_AT,
    META_CLOCK, META_EPOCH, META_FORMAT, META_INSTANCE_KEY, PEER_STATE, RECORDS, Store,
    WITHDRAWALS, builder, copy_all, copy_to_new_file, db_err, db_open_err, io_err, known_names,
    sync_parent, version_bytes, version_from_bytes, write_new,
};
use crate::error::{Result, StoreError};

/// `meta`: when this store was restored from a backup (ms, big-endian).
pub(crate) const META_RESTORED_AT: &str = "restored_at_ms";
/// How far a restore moves the app's id allocator when the replaced store cannot say where it
/// was: ids handed out after the backup are then never handed to other rows.
pub const APP_ID_GAP: i64 = 1 << 20;

/// What `wb backup` wrote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BackupReport {
    pub path: PathBuf,
    /// Size of the backup file.
    pub bytes: u64,
    /// Records in it (tombstones included), and how many of them are this instance's own.
    pub records: u64,
    pub own_records: u64,
    pub tables: u64,
    pub format: u32,
    pub taken_at_ms: u64,
    pub elapsed_ms: u64,
}

/// What a backup file holds, read without changing it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupInfo {
    pub path: PathBuf,
    pub bytes: u64,
    pub records: u64,
    pub format: u32,
    /// `None`: a plain store file (copied while no node ran), not one `wb backup` wrote.
    pub taken_at_ms: Option<u64>,
    pub instance_key: Option<PublicKey>,
    pub clock: Version,
}

/// What `wb restore` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreReport {
    pub backup: BackupInfo,
    /// The restored store's new epoch.
    pub epoch: Epoch,
    /// Where the store that was replaced now is (`None`: there was none).
    pub replaced: Option<PathBuf>,
    /// The restored clock: the later of the backup's and the replaced store's.
    pub clock: Version,
}

impl Store {
    /// Writes a consistent copy of the store to `dest` while it stays in use: one read
    /// transaction copied into a new redb file (temporary sibling, mode 0600, renamed over
    /// `dest`). `dest` may replace an earlier backup, never a link, a folder, the store itself
    /// or any other file.
    pub fn backup_to(&self, dest: &Path, now_ms: u64) -> Result<BackupReport> {
        let started = Instant::now();
        check_target(dest, self.path())?;
        let src = self.read_tx()?;
        let (records, own_records) = count_records(self, &src)?;
        let tables = copy_to_new_file(&src, self.path(), dest, now_ms)?;
        let bytes = std::fs::metadata(dest).map_err(io_err(dest))?.len();
        Ok(BackupReport {
            path: dest.to_path_buf(),
            bytes,
            records,
            own_records,
            tables,
            format: self.format()?,
            taken_at_ms: now_ms,
            elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        })
    }

    /// The format recorded in this store.
    pub fn format(&self) -> Result<u32> {
        let tx = self.read_tx()?;
        let meta = tx.open_table(META).map_err(|e| self.err(e))?;
        let value = meta.get(META_FORMAT).map_err(|e| self.err(e))?;
        let bytes = value.map(|v| v.value().to_vec()).unwrap_or_default();
        <[u8; 4]>::try_from(bytes.as_slice())
            .map(u32::from_be_bytes)
            .map_err(|_| self.corrupt("format entry"))
    }

    /// Whether the store was restored from a backup and has not yet pulled everything from
    /// `peer` since: sessions with it then ask for our own records back.
    pub fn recovering_from(&self, peer: &PublicKey) -> Result<bool> {
        let restored = {
            let tx = self.read_tx()?;
            let meta = tx.open_table(META).map_err(|e| self.err(e))?;
            meta.get(META_RESTORED_AT)
                .map_err(|e| self.err(e))?
                .is_some()
        };
        Ok(restored && self.peer_state(peer)?.recovered_epoch != Some(self.epoch().0))
    }

    /// A full pull from `peer` completed while asking for our own records back.
    pub fn mark_recovered(&self, peer: &PublicKey) -> Result<()> {
        let epoch = self.epoch().0;
        self.update_peer_state(peer, |st| st.recovered_epoch = Some(epoch))
            .map(|_| ())
    }
}

/// Records in the store, and how many originate at its own key.
fn count_records(store: &Store, tx: &ReadTransaction) -> Result<(u64, u64)> {
    let records = tx.open_table(RECORDS).map_err(|e| store.err(e))?;
    let total = records.len().map_err(|e| store.err(e))?;
    let own = match store.instance_key()? {
        None => 0,
        Some(key) => {
            let start = key.as_bytes().to_vec();
            let mut own = 0u64;
            for item in records
                .range(start.as_slice()..)
                .map_err(|e| store.err(e))?
            {
                let (k, _) = item.map_err(|e| store.err(e))?;
                if !k.value().starts_with(key.as_bytes()) {
                    break;
                }
                own += 1;
            }
            own
        }
    };
    Ok((total, own))
}

/// Refuses a target that is a link, a folder, the store itself, or a file other than a backup,
/// and one whose folder does not exist.
fn check_target(dest: &Path, store_path: &Path) -> Result<()> {
    let refuse = |reason: &str| StoreError::BackupTarget {
        path: dest.to_path_buf(),
        reason: reason.to_string(),
    };
    match std::fs::symlink_metadata(dest) {
        Ok(meta) if meta.file_type().is_symlink() => {
            return Err(refuse(
                "is a symbolic link; a backup is never written through a link",
            ));
        }
        Ok(meta) if meta.is_dir() => {
            return Err(refuse("is a folder; give the backup's file name"));
        }
        Ok(meta) => {
            if same_file(&meta, store_path) {
                return Err(refuse("is the store itself"));
            }
            match inspect(dest) {
                Ok(info) if info.taken_at_ms.is_some() => {}
                _ => {
                    return Err(refuse(
                        "exists and is not a wb backup; pick another name or move it away",
                    ));
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(dest)(e)),
    }
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        return Err(refuse(&format!(
            "its folder {} does not exist",
            parent.display()
        )));
    }
    Ok(())
}

#[cfg(unix)]
fn same_file(meta: &std::fs::Metadata, other: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(other).is_ok_and(|o| o.dev() == meta.dev() && o.ino() == meta.ino())
}

#[cfg(not(unix))]
fn same_file(_meta: &std::fs::Metadata, _other: &Path) -> bool {
    false
}

/// Reads a backup (or store) file without changing it: its format, metadata and record count.
/// Every record must decode; a file that is not a complete wb store is refused.
pub fn inspect(path: &Path) -> Result<BackupInfo> {
    let not = |reason: String| StoreError::NotABackup {
        path: path.to_path_buf(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(io_err(path))?;
    if !meta.is_file() {
        return Err(not("not a file".into()));
    }
    let db = builder().open_read_only(path).map_err(|e| match e {
        redb::DatabaseError::DatabaseAlreadyOpen => StoreError::InUse(path.to_path_buf()),
        other => not(format!("not a redb database ({other})")),
    })?;
    let tx = db
        .begin_read()
        .map_err(|e| not(format!("unreadable ({e})")))?;
    let table_names: Vec<String> = tx
        .list_tables()
        .map_err(|e| not(format!("unreadable ({e})")))?
        .map(|t| t.name().to_string())
        .collect();
    let known = known_names();
    if let Some(unknown) = table_names.iter().find(|t| !known.contains(&t.as_str())) {
        return Err(StoreError::UnknownTable {
            path: path.to_path_buf(),
            table: unknown.clone(),
        });
    }
    let required = [
        RECORDS.name(),
        LOG.name(),
        META.name(),
        CONFLICTS.name(),
        COUNTERS.name(),
        BUNDLES.name(),
        WITHDRAWALS.name(),
        CURSORS.name(),
        PEER_STATE.name(),
    ];
    let missing: Vec<&str> = required
        .iter()
        .copied()
        .filter(|r| !table_names.iter().any(|t| t == r))
        .collect();
    if !missing.is_empty() {
        return Err(not(format!(
            "not a wb store (tables missing: {})",
            missing.join(", ")
        )));
    }
    let meta_table = tx
        .open_table(META)
        .map_err(|e| not(format!("metadata unreadable ({e})")))?;
    let get = |k: &str| -> Result<Option<Vec<u8>>> {
        Ok(meta_table
            .get(k)
            .map_err(|e| not(format!("metadata unreadable ({e})")))?
            .map(|v| v.value().to_vec()))
    };
    let format = match check(path, get(META_FORMAT)?.as_deref())? {
        Found::Missing => return Err(not("no format entry".into())),
        Found::Current => STORE_FORMAT,
        Found::Older(f) => f,
    };
    if get(META_EPOCH)?.is_none_or(|e| e.len() != 16) {
        return Err(not("no epoch".into()));
    }
    let instance_key = get(META_INSTANCE_KEY)?
        .map(|b| {
            <[u8; 32]>::try_from(b.as_slice())
                .ok()
                .and_then(|b| PublicKey::from_bytes(b).ok())
                .ok_or_else(|| not("bad instance key".into()))
        })
        .transpose()?;
    let taken_at_ms = get(META_BACKUP_TAKEN_AT)?
        .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
        .map(u64::from_be_bytes);
    let clock = get(META_CLOCK)?
        .and_then(|b| version_from_bytes(&b))
        .unwrap_or(Version::ZERO);
    let records = tx
        .open_table(RECORDS)
        .map_err(|e| not(format!("records unreadable ({e})")))?;
    let mut count = 0u64;
    for item in records
        .iter()
        .map_err(|e| not(format!("records unreadable ({e})")))?
    {
        let (k, v) = item.map_err(|e| not(format!("records unreadable ({e})")))?;
        let value = v.value();
        let sealed = value
            .get(8..)
            .ok_or_else(|| not(format!("record entry {} too short", hex::encode(k.value()))))?;
        Record::from_sealed_bytes(sealed).map_err(|e| not(format!("a record: {e}")))?;
        count += 1;
    }
    Ok(BackupInfo {
        path: path.to_path_buf(),
        bytes: meta.len(),
        records: count,
        format,
        taken_at_ms,
        instance_key,
        clock,
    })
}

/// What the store being replaced says, if it can be read: its clock and the app's next id.
struct Replaced {
    clock: Version,
    next_app_id: Option<i64>,
}

/// Puts `backup` in place of the store at `store_path` (which must not be in use), for the
/// instance whose key is `key`. See the module documentation for what changes on the way.
/// Any refusal (not a backup, another instance's, a newer format, the store in use) comes
/// before anything is written; the replaced store is kept as `<store>.replaced-<ms>`.
pub fn restore(
    store_path: &Path,
    backup: &Path,
    key: &PublicKey,
    now_ms: u64,
) -> Result<RestoreReport> {
    let info = inspect(backup)?;
    if let Ok(meta) = std::fs::metadata(backup)
        && same_file(&meta, store_path)
    {
        return Err(StoreError::NotABackup {
            path: backup.to_path_buf(),
            reason: "it is the store itself".into(),
        });
    }
    if let Some(owner) = info.instance_key
        && owner != *key
    {
        return Err(StoreError::NotABackup {
            path: backup.to_path_buf(),
            reason: format!(
                "it belongs to key id {}, and this home's key is key id {}; put that \
                 instance's key files in keys/ first (a backup holds no key)",
                owner.key_id(),
                key.key_id()
            ),
        });
    }
    // Hold the current store's lock (a running node holds it: refused) and read what must
    // not go backwards.
    let current = match std::fs::symlink_metadata(store_path) {
        Ok(_) => match builder().open(store_path) {
            Ok(db) => Some(db),
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                return Err(StoreError::InUse(store_path.to_path_buf()));
            }
            Err(e) => {
                tracing::warn!(store = %store_path.display(), error = %e, "the store being replaced cannot be read");
                None
            }
        },
        Err(_) => None,
    };
    let replaced = current.as_ref().and_then(read_replaced);
    let src_db = builder()
        .open_read_only(backup)
        .map_err(|e| db_open_err(backup, e))?;
    let src = src_db.begin_read().map_err(|e| db_err(backup, e))?;
    let epoch = Epoch(crate::random::random_bytes::<16>()?);
    let clock = replaced
        .as_ref()
        .map_or(info.clock, |r| r.clock.max(info.clock));
    let aside = store_path.with_file_name(format!(
        "{}.replaced-{now_ms}",
        store_path.file_name().unwrap_or_default().to_string_lossy()
    ));
    let had_store = std::fs::symlink_metadata(store_path).is_ok();
    let staged = stage_path(store_path);
    let keep_aside = || -> Result<()> {
        if had_store {
            std::fs::hard_link(store_path, &aside).map_err(io_err(&aside))?;
        }
        Ok(())
    };
    write_new(&staged, |dst, tmp| {
        copy_all(&src, dst, backup)?;
        // Our cursors into peers' logs: gone, so everything is pulled from them again.
        dst.delete_table(CURSORS).map_err(|e| db_err(tmp, e))?;
        dst.open_table(CURSORS).map_err(|e| db_err(tmp, e))?;
        dst.open_table(CONTACT_ALLOWED)
            .map_err(|e| db_err(tmp, e))?;
        {
            let mut meta = dst.open_table(META).map_err(|e| db_err(tmp, e))?;
            meta.remove(META_BACKUP_TAKEN_AT)
                .map_err(|e| db_err(tmp, e))?;
            meta.insert(META_EPOCH, epoch.0.as_slice())
                .map_err(|e| db_err(tmp, e))?;
            meta.insert(META_CLOCK, version_bytes(clock).as_slice())
                .map_err(|e| db_err(tmp, e))?;
            meta.insert(META_RESTORED_AT, now_ms.to_be_bytes().as_slice())
                .map_err(|e| db_err(tmp, e))?;
        }
        keep_app_ids_unique(dst, tmp, replaced.as_ref())
    })?;
    // The old store stays (a second name for it), then the new one takes its name at once.
    let placed = keep_aside().and_then(|()| {
        std::fs::rename(&staged, store_path).map_err(io_err(store_path))?;
        sync_parent(store_path)
    });
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&staged);
        if had_store && std::fs::symlink_metadata(store_path).is_ok() {
            let _ = std::fs::remove_file(&aside);
        }
        return Err(e);
    }
    drop(current);
    Ok(RestoreReport {
        backup: info,
        epoch,
        replaced: had_store.then_some(aside),
        clock,
    })
}

/// Where a restore stages the new store before renaming it over the old one.
fn stage_path(store_path: &Path) -> PathBuf {
    let name = store_path.file_name().unwrap_or_default().to_string_lossy();
    store_path.with_file_name(format!("{name}.restoring"))
}

fn read_replaced(db: &redb::Database) -> Option<Replaced> {
    let tx = db.begin_read().ok()?;
    let meta = tx.open_table(META).ok()?;
    let clock = meta
        .get(META_CLOCK)
        .ok()
        .flatten()
        .and_then(|v| version_from_bytes(v.value()))
        .unwrap_or(Version::ZERO);
    let next_app_id = tx.open_table(crate::db::APP_STATE).ok().and_then(|t| {
        t.get(crate::app::STATE_NEXT_ID)
            .ok()
            .flatten()
            .and_then(|v| serde_json::from_slice::<i64>(v.value()).ok())
    });
    Some(Replaced { clock, next_app_id })
}

/// The app's ids are never reused (ARCHITECTURE, invariants): the restored allocator starts
/// below every id the replaced store handed out, or, when it cannot be read, [`APP_ID_GAP`]
/// below the backup's.
fn keep_app_ids_unique(
    dst: &WriteTransaction,
    tmp: &Path,
    replaced: Option<&Replaced>,
) -> Result<()> {
    let mut state = dst
        .open_table(crate::db::APP_STATE)
        .map_err(|e| db_err(tmp, e))?;
    let backup_next: Option<i64> = state
        .get(crate::app::STATE_NEXT_ID)
        .map_err(|e| db_err(tmp, e))?
        .and_then(|v| serde_json::from_slice(v.value()).ok());
    let next = match replaced {
        Some(r) => match (backup_next, r.next_app_id) {
            (Some(b), Some(o)) => Some(b.min(o)),
            (b, o) => b.or(o),
        },
        None => Some(backup_next.unwrap_or(-1).saturating_sub(APP_ID_GAP)),
    };
    if let Some(next) = next
        && Some(next) != backup_next
    {
        let json = serde_json::to_vec(&next).map_err(|e| db_err(tmp, e))?;
        state
            .insert(crate::app::STATE_NEXT_ID, json.as_slice())
            .map_err(|e| db_err(tmp, e))?;
    }
    Ok(())
}
