//! Copying a store file: every table the store may hold, each with its own key and value types,
//! written in one write transaction into a new file (mode 0600) renamed over the target. What a
//! backup, a restore and a format migration write.

use std::path::Path;

use redb::{
    MultimapTableHandle, ReadTransaction, ReadableTable, TableDefinition, TableHandle,
    WriteTransaction,
};

use super::*;
use crate::error::{Result, StoreError};

/// Every table a store may hold, copied with its own key and value types. A table not listed
/// here makes a backup fail rather than be left out.
macro_rules! known_tables {
    ($visit:ident) => {
        $visit!(
            RECORDS,
            LOG,
            META,
            CONFLICTS,
            COUNTERS,
            BUNDLES,
            WITHDRAWALS,
            CURSORS,
            PEER_STATE,
            CONTACT_ALLOWED,
            DIGESTS,
            COMMENT_INDEX,
            COMMENT_PENDING,
            HUB_DIRECTORY,
            APP_IDS,
            APP_IDS_REV,
            APP_NAMES,
            APP_ADOPTED,
            APP_STATE,
        )
    };
}

/// The names of [`known_tables`].
pub(crate) fn known_names() -> Vec<&'static str> {
    macro_rules! names {
        ($($def:expr),* $(,)?) => { vec![$($def.name()),*] };
    }
    known_tables!(names)
}

/// Copies the table called `name` from `src` to `dst`: `None` if no known table has that name.
fn copy_named(
    name: &str,
    src: &ReadTransaction,
    dst: &WriteTransaction,
) -> Option<std::result::Result<u64, String>> {
    macro_rules! dispatch {
        ($($def:expr),* $(,)?) => {{
            $( if name == $def.name() { return Some(copy_table(src, dst, $def)); } )*
            None
        }};
    }
    known_tables!(dispatch)
}

fn copy_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    src: &ReadTransaction,
    dst: &WriteTransaction,
    def: TableDefinition<K, V>,
) -> std::result::Result<u64, String> {
    let from = src.open_table(def).map_err(|e| e.to_string())?;
    let mut to = dst.open_table(def).map_err(|e| e.to_string())?;
    let mut copied = 0;
    for item in from.iter().map_err(|e| e.to_string())? {
        let (k, v) = item.map_err(|e| e.to_string())?;
        to.insert(k.value(), v.value()).map_err(|e| e.to_string())?;
        copied += 1;
    }
    Ok(copied)
}

/// Copies every table of `src` into `dst`; an unknown table (or a multimap table, which wb
/// never makes) is an error naming it.
pub(crate) fn copy_all(src: &ReadTransaction, dst: &WriteTransaction, path: &Path) -> Result<u64> {
    let db_err = |e: String| StoreError::Database {
        path: path.to_path_buf(),
        message: e,
    };
    if let Some(table) = src
        .list_multimap_tables()
        .map_err(|e| db_err(e.to_string()))?
        .next()
    {
        return Err(StoreError::UnknownTable {
            path: path.to_path_buf(),
            table: table.name().to_string(),
        });
    }
    let mut tables = 0;
    for table in src.list_tables().map_err(|e| db_err(e.to_string()))? {
        match copy_named(table.name(), src, dst) {
            None => {
                return Err(StoreError::UnknownTable {
                    path: path.to_path_buf(),
                    table: table.name().to_string(),
                });
            }
            Some(copied) => {
                copied.map_err(|e| db_err(format!("copying table {}: {e}", table.name())))?;
                tables += 1;
            }
        }
    }
    Ok(tables)
}

/// Writes every table `src` sees into a new backup file at `dest` (see [`write_new`]), marked
/// as taken at `now_ms`. Returns how many tables were copied.
pub(crate) fn copy_to_new_file(
    src: &ReadTransaction,
    src_path: &Path,
    dest: &Path,
    now_ms: u64,
) -> Result<u64> {
    write_new(dest, |dst, tmp| {
        let tables = copy_all(src, dst, src_path)?;
        let mut meta = dst.open_table(META).map_err(|e| db_err(tmp, e))?;
        meta.insert(META_BACKUP_TAKEN_AT, now_ms.to_be_bytes().as_slice())
            .map_err(|e| db_err(tmp, e))?;
        Ok(tables)
    })
}

/// Creates a new redb file beside `dest` (mode 0600), fills it with `fill` in one write
/// transaction, and renames it over `dest`; the temporary file is removed on failure.
pub(crate) fn write_new<T>(
    dest: &Path,
    fill: impl FnOnce(&WriteTransaction, &Path) -> Result<T>,
) -> Result<T> {
    let name = dest.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dest.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    drop(options.open(&tmp).map_err(io_err(&tmp))?);
    let written = (|| {
        let db = builder().create(&tmp).map_err(|e| db_open_err(&tmp, e))?;
        let tx = db.begin_write().map_err(|e| db_err(&tmp, e))?;
        let out = fill(&tx, &tmp)?;
        tx.commit().map_err(|e| db_err(&tmp, e))?;
        drop(db);
        restrict(&tmp)?;
        std::fs::rename(&tmp, dest).map_err(io_err(dest))?;
        sync_parent(dest)?;
        Ok(out)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Owner-only: a copy of the store holds private records.
pub(crate) fn restrict(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(
            |source| StoreError::Io {
                path: path.to_path_buf(),
                source,
            },
        )?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

pub(crate) fn sync_parent(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(dir))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

pub(crate) fn db_err(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Database {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}
