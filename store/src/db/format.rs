//! The store's format version (`meta` key `format`, u32 big-endian): a store of an older format
//! is migrated when it is opened for writing, after a copy of the file is left beside it; a
//! newer one is refused, naming both versions, before the file is opened for writing.
//!
//! Formats:
//! - 1: the tables of `db`; `contact_allowed` created by the first write that needs it.
//! - 2: every table of `db` exists from the start (`contact_allowed` too).

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase};

use super::{CONTACT_ALLOWED, META, META_FORMAT, builder, db_open_err};
use crate::error::{Result, StoreError};

/// The format this wb writes.
pub const STORE_FORMAT: u32 = 2;
/// The oldest format this wb migrates; every format from it up to [`STORE_FORMAT`] can also be
/// read as it is (read-only opens do not migrate).
pub const OLDEST_FORMAT: u32 = 1;

/// What a store's `format` entry says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Found {
    /// No entry: a store being created.
    Missing,
    Current,
    /// An older format this wb migrates.
    Older(u32),
}

/// Reads a `format` value; a newer format, or one too old to migrate, is an error naming both.
pub(crate) fn check(path: &Path, value: Option<&[u8]>) -> Result<Found> {
    let Some(bytes) = value else {
        return Ok(Found::Missing);
    };
    let found = <[u8; 4]>::try_from(bytes)
        .map(u32::from_be_bytes)
        .map_err(|_| StoreError::Corrupt {
            path: path.to_path_buf(),
            what: format!("format entry of {} bytes (expected 4)", bytes.len()),
        })?;
    match found {
        STORE_FORMAT => Ok(Found::Current),
        f if f > STORE_FORMAT => Err(StoreError::NewerFormat {
            path: path.to_path_buf(),
            found: f,
            supported: STORE_FORMAT,
        }),
        f if f >= OLDEST_FORMAT => Ok(Found::Older(f)),
        f => Err(StoreError::Corrupt {
            path: path.to_path_buf(),
            what: format!(
                "store format {f} is older than any this wb knows (it reads formats \
                 {OLDEST_FORMAT} to {STORE_FORMAT})"
            ),
        }),
    }
}

/// The format recorded in a store file, read without opening it for writing (the file is left
/// exactly as it was). `None`: the file holds no format entry (not a complete store).
pub fn read_format(path: &Path) -> Result<Option<u32>> {
    let db = builder()
        .open_read_only(path)
        .map_err(|e| db_open_err(path, e))?;
    let value = format_value(&db, path)?;
    value
        .map(|v| {
            <[u8; 4]>::try_from(v.as_slice())
                .map(u32::from_be_bytes)
                .map_err(|_| StoreError::Corrupt {
                    path: path.to_path_buf(),
                    what: "format entry".into(),
                })
        })
        .transpose()
}

fn format_value(db: &impl ReadableDatabase, path: &Path) -> Result<Option<Vec<u8>>> {
    let err = |e: &dyn std::fmt::Display| StoreError::Database {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let tx = db.begin_read().map_err(|e| err(&e))?;
    let meta = match tx.open_table(META) {
        Ok(meta) => meta,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(err(&e)),
    };
    let value = meta.get(META_FORMAT).map_err(|e| err(&e))?;
    Ok(value.map(|v| v.value().to_vec()))
}

/// Refuses a store of a newer format before it is opened for writing (a read-write open
/// changes the file's bytes even when nothing is written). A store that cannot be opened
/// read-only here (in use, needing repair) is left to the read-write open to report.
pub(crate) fn refuse_newer(path: &Path) -> Result<()> {
    let Ok(db) = builder().open_read_only(path) else {
        return Ok(());
    };
    match check(path, format_value(&db, path)?.as_deref()) {
        Err(e @ StoreError::NewerFormat { .. }) => Err(e),
        _ => Ok(()),
    }
}

/// Migrates a store of an older format to [`STORE_FORMAT`] in one transaction, after a backup of
/// it is written to `<store>.format-<old>.bak` (or a name with the time if that exists). Returns the
/// copy's path when a migration ran. `db` holds the file's lock, so nobody writes it meanwhile.
pub(crate) fn migrate(db: &Database, path: &Path) -> Result<Option<PathBuf>> {
    let old = match check(path, format_value(db, path)?.as_deref())? {
        Found::Older(old) => old,
        Found::Missing | Found::Current => return Ok(None),
    };
    let err = |e: &dyn std::fmt::Display| StoreError::Database {
        path: path.to_path_buf(),
        message: format!("migrating from format {old} to {STORE_FORMAT}: {e}"),
    };
    // A consistent copy, as `wb backup` makes (a copy of the bytes of a file open for writing
    // would need repairing), which `wb restore` takes back.
    let copy = backup_name(path, old);
    {
        let tx = db.begin_read().map_err(|e| err(&e))?;
        super::copy::copy_to_new_file(&tx, path, &copy, crate::time::now_ms())?;
    }
    let tx = db.begin_write().map_err(|e| err(&e))?;
    {
        // 1 → 2: `contact_allowed` exists from the start.
        tx.open_table(CONTACT_ALLOWED).map_err(|e| err(&e))?;
        let mut meta = tx.open_table(META).map_err(|e| err(&e))?;
        meta.insert(META_FORMAT, STORE_FORMAT.to_be_bytes().as_slice())
            .map_err(|e| err(&e))?;
    }
    tx.commit().map_err(|e| err(&e))?;
    tracing::info!(
        store = %path.display(),
        from = old,
        to = STORE_FORMAT,
        copy = %copy.display(),
        "store format migrated"
    );
    Ok(Some(copy))
}

/// `<store>.format-<old>.bak`, or `<store>.format-<old>.<ms>.bak` when that exists.
fn backup_name(path: &Path, old: u32) -> PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let plain = path.with_file_name(format!("{name}.format-{old}.bak"));
    if std::fs::symlink_metadata(&plain).is_err() {
        return plain;
    }
    path.with_file_name(format!("{name}.format-{old}.{}.bak", crate::time::now_ms()))
}
