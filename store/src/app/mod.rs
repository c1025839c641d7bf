//! The bridge to the WhiteBalloon app beside this instance (§14).
//!
//! - [`adopt`]: the app's snapshot (its `sync export`, signed with the instance's key) becomes
//!   the instance's own signed records, through the local-write path.
//! - [`inbox`]: other origins' users and requests, with their public comments, written as files
//!   the app's importer applies without harm: mapped integer ids that never collide with the
//!   app's rows, namespaced usernames, neutralised text.
//!
//! Bookkeeping tables (created by the first write; a store without them has no history):
//! - `app_ids`: record key bytes → postcard [`Mapped`] (the id handed to the app, and what was
//!   handed); `app_ids_rev`: mapped id → record key bytes. Ids are negative and never reused:
//!   SQLite gives the app's own rows max(id)+1, so they never reach them.
//! - `app_names`: a username handed to the app → the mapped user id it was handed for; a name
//!   stays reserved for that user, so no two foreign rows ever contend for one name, whichever
//!   inboxes the app imported.
//! - `app_adopted`: key bytes of local records adoption made (deletion candidates of later
//!   snapshots; records made with `wb record put` are never among them).
//! - `app_state`: `snapshot` / `inbox` / `import` → JSON of the last adoption, inbox and import
//!   command run; `inbox_digests` → the manifest digests of the inboxes wb wrote (so an inbox is
//!   never adopted as the app's snapshot); `next_id`.

pub mod adopt;
pub mod inbox;

use std::collections::BTreeMap;

use protocol::{Entity, PublicKey, RecordKey};
use redb::{ReadableTable, TableError};
use serde::{Deserialize, Serialize};

use crate::bundles::BundleError;
use crate::db::{Store, key_bytes};
use crate::error::StoreError;

pub use adopt::{AdoptOptions, AdoptReport, adopt, adopt_dir, precheck};
pub use inbox::{InboxOptions, InboxReport, write_inbox};

pub(crate) use crate::db::{
    APP_ADOPTED as ADOPTED, APP_IDS as IDS, APP_IDS_REV as IDS_REV, APP_NAMES as NAMES,
    APP_STATE as STATE,
};

const STATE_SNAPSHOT: &str = "snapshot";
const STATE_INBOX: &str = "inbox";
const STATE_IMPORT: &str = "import";
const STATE_INBOX_DIGESTS: &str = "inbox_digests";
pub(crate) const STATE_NEXT_ID: &str = "next_id";
const STATE_NAME_SALT: &str = "name_salt";

/// Inbox manifest digests remembered (an older inbox is rewritten long before this many).
const INBOX_DIGESTS_MAX: usize = 256;

/// The app's default export folder, relative to its working directory.
pub const DEFAULT_SNAPSHOT_DIR: &str = "data/public_sync";
/// Where `wb app export` writes for the app by default.
pub const DEFAULT_INBOX_DIR: &str = "data/wb_inbox";

/// Why the bridge refused or failed. Nothing was changed when one of these is returned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    #[error(
        "{dir}: the snapshot is signed by key id {signer}, not by this instance's key {own}. \
         The app and wb must share one home, so that the app signs with the instance's key: \
         run the app with WB_SYNC_HOME set to wb's home (or run wb with --home pointing at the \
         app's .sync folder); nothing was adopted"
    )]
    ForeignSigner {
        dir: String,
        signer: String,
        own: String,
    },
    #[error(
        "{dir}: this is an inbox wb wrote for the app (wb app export), not the app's snapshot; \
         nothing was adopted"
    )]
    OwnInbox { dir: String },
    #[error(
        "{dir}: the snapshot was signed at {signed_at}, before the one adopted last ({last}); \
         adopting it would undo newer changes, so nothing was adopted"
    )]
    OlderSnapshot {
        dir: String,
        signed_at: String,
        last: String,
    },
    #[error(
        "{path}: a record file written by wb (it carries Origin/Version/Signature headers), not \
         by the app; a snapshot to adopt holds the app's files only"
    )]
    NotAppWritten { path: String },
    #[error("{path}: {entity} {id} appears twice in the snapshot (also in {first})")]
    Duplicate {
        path: String,
        first: String,
        entity: String,
        id: String,
    },
    #[error("{0}")]
    Bundle(#[from] BundleError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the inbox handed the app for one foreign record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mapped {
    /// The record's id in the app (negative).
    pub id: i64,
    /// Written into an inbox at least once: once withdrawn, it is written emptied and private.
    pub handed: bool,
    /// Users: the username last written.
    pub username: Option<String>,
    /// Comments: the mapped id of the request it was written under, and of its author.
    pub request: Option<i64>,
    pub user: Option<i64>,
}

/// The last snapshot adopted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotState {
    pub dir: String,
    pub manifest_digest: String,
    pub signed_at: String,
    pub adopted_at_ms: u64,
    pub report: AdoptReport,
}

/// The last inbox written.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxState {
    pub dir: String,
    pub manifest_digest: String,
    pub written_at_ms: u64,
    /// The store's last log sequence the inbox reflects.
    pub last_seq: u64,
    pub report: InboxReport,
}

/// The last run of the operator's import command.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportRun {
    pub command: String,
    pub started_at_ms: u64,
    pub duration_ms: u64,
    /// Exit status; `None` when it was killed (signal, deadline) or could not start.
    pub exit_code: Option<i32>,
    pub ok: bool,
    /// The last lines it printed (stdout and stderr), or why it could not run.
    pub last_lines: Vec<String>,
    /// The inbox manifest it imported.
    pub inbox_digest: String,
}

/// Everything `wb app status` shows from the store.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppStatus {
    pub snapshot: Option<SnapshotState>,
    pub inbox: Option<InboxState>,
    pub import: Option<ImportRun>,
    /// Foreign records mapped to app ids, and how many were handed to the app.
    pub mapped: u64,
    pub handed: u64,
    /// Local records adoption manages.
    pub adopted: u64,
}

impl Store {
    /// The bridge's state for `wb app status`.
    pub fn app_status(&self) -> Result<AppStatus, StoreError> {
        let tx = self.read_tx()?;
        let mut status = AppStatus::default();
        match tx.open_table(STATE) {
            Ok(t) => {
                status.snapshot = read_json(self, &t, STATE_SNAPSHOT)?;
                status.inbox = read_json(self, &t, STATE_INBOX)?;
                status.import = read_json(self, &t, STATE_IMPORT)?;
            }
            Err(TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(self.err(e)),
        }
        match tx.open_table(IDS) {
            Ok(t) => {
                for item in t.iter().map_err(|e| self.err(e))? {
                    let (_, v) = item.map_err(|e| self.err(e))?;
                    let m = decode_mapped(self, v.value())?;
                    status.mapped += 1;
                    status.handed += u64::from(m.handed);
                }
            }
            Err(TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(self.err(e)),
        }
        match tx.open_table(ADOPTED) {
            Ok(t) => {
                use redb::ReadableTableMetadata;
                status.adopted = t.len().map_err(|e| self.err(e))?;
            }
            Err(TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(self.err(e)),
        }
        Ok(status)
    }

    /// Whether a manifest digest is one of the inboxes wb wrote, and the snapshot adopted last.
    pub fn app_snapshot_state(
        &self,
        manifest_digest: &str,
    ) -> Result<(bool, Option<SnapshotState>), StoreError> {
        let tx = self.read_tx()?;
        match tx.open_table(STATE) {
            Ok(t) => {
                let digests: Vec<String> =
                    read_json(self, &t, STATE_INBOX_DIGESTS)?.unwrap_or_default();
                let last = read_json(self, &t, STATE_SNAPSHOT)?;
                Ok((digests.iter().any(|d| d == manifest_digest), last))
            }
            Err(TableError::TableDoesNotExist(_)) => Ok((false, None)),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Records the result of the operator's import command (`wb node run --app-import-cmd`).
    pub fn record_app_import(&self, run: &ImportRun) -> Result<(), StoreError> {
        let tx = self.write_tx()?;
        {
            let mut t = tx.open_table(STATE).map_err(|e| self.err(e))?;
            write_json(self, &mut t, STATE_IMPORT, run)?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// The foreign record an app id was mapped from.
    pub fn app_unmapped(&self, id: i64) -> Result<Option<RecordKey>, StoreError> {
        let tx = self.read_tx()?;
        match tx.open_table(IDS_REV) {
            Ok(t) => match t.get(id).map_err(|e| self.err(e))? {
                Some(v) => Ok(Some(key_from_bytes(self, v.value())?)),
                None => Ok(None),
            },
            Err(TableError::TableDoesNotExist(_)) => Ok(None),
            Err(e) => Err(self.err(e)),
        }
    }
}

fn read_json<T: serde::de::DeserializeOwned>(
    store: &Store,
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    name: &str,
) -> Result<Option<T>, StoreError> {
    match table.get(name).map_err(|e| store.err(e))? {
        Some(v) => serde_json::from_slice(v.value())
            .map(Some)
            .map_err(|e| store.corrupt(format!("app state {name}: {e}"))),
        None => Ok(None),
    }
}

fn write_json<T: Serialize>(
    store: &Store,
    table: &mut redb::Table<&'static str, &'static [u8]>,
    name: &str,
    value: &T,
) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(value).map_err(|e| store.err(e))?;
    table
        .insert(name, bytes.as_slice())
        .map_err(|e| store.err(e))?;
    Ok(())
}

fn decode_mapped(store: &Store, bytes: &[u8]) -> Result<Mapped, StoreError> {
    postcard::from_bytes(bytes).map_err(|e| store.corrupt(format!("app id mapping: {e}")))
}

/// The inverse of `key_bytes`.
fn key_from_bytes(store: &Store, bytes: &[u8]) -> Result<RecordKey, StoreError> {
    let bad = || store.corrupt("app id mapping key");
    let origin: [u8; 32] = bytes
        .get(..32)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(bad)?;
    let rest = bytes.get(32..).ok_or_else(bad)?;
    let nul = rest.iter().position(|&b| b == 0).ok_or_else(bad)?;
    let entity = std::str::from_utf8(&rest[..nul]).map_err(|_| bad())?;
    let id = std::str::from_utf8(&rest[nul + 1..]).map_err(|_| bad())?;
    Ok(RecordKey {
        origin: PublicKey::from_bytes(origin).map_err(|_| bad())?,
        entity: Entity::from_name(entity),
        id: id.to_string(),
    })
}

/// The app's integer reading of an id (`int()` of the text); `None` when it is not one.
pub(crate) fn app_int(id: &str) -> Option<i64> {
    let t = id.trim();
    if t.is_empty() {
        return None;
    }
    t.parse::<i64>().ok()
}

/// The mapping tables inside a write transaction.
pub(crate) struct MapTables<'a> {
    store: &'a Store,
    ids: redb::Table<'a, &'static [u8], &'static [u8]>,
    rev: redb::Table<'a, i64, &'static [u8]>,
    names: redb::Table<'a, &'static str, i64>,
    state: redb::Table<'a, &'static str, &'static [u8]>,
}

impl<'a> MapTables<'a> {
    pub(crate) fn open(
        store: &'a Store,
        tx: &'a redb::WriteTransaction,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            store,
            ids: tx.open_table(IDS).map_err(|e| store.err(e))?,
            rev: tx.open_table(IDS_REV).map_err(|e| store.err(e))?,
            names: tx.open_table(NAMES).map_err(|e| store.err(e))?,
            state: tx.open_table(STATE).map_err(|e| store.err(e))?,
        })
    }

    pub(crate) fn get(&self, key: &RecordKey) -> Result<Option<Mapped>, StoreError> {
        match self
            .ids
            .get(key_bytes(key).as_slice())
            .map_err(|e| self.store.err(e))?
        {
            Some(v) => Ok(Some(decode_mapped(self.store, v.value())?)),
            None => Ok(None),
        }
    }

    pub(crate) fn put(&mut self, key: &RecordKey, m: &Mapped) -> Result<(), StoreError> {
        let bytes = postcard::to_allocvec(m).map_err(|e| self.store.err(e))?;
        self.ids
            .insert(key_bytes(key).as_slice(), bytes.as_slice())
            .map_err(|e| self.store.err(e))?;
        Ok(())
    }

    /// The record's mapped id, allocating the next one (never reused) the first time.
    pub(crate) fn id_of(&mut self, key: &RecordKey) -> Result<Mapped, StoreError> {
        if let Some(m) = self.get(key)? {
            return Ok(m);
        }
        let next: i64 = self.state_json(STATE_NEXT_ID)?.unwrap_or(-1);
        let m = Mapped {
            id: next,
            ..Mapped::default()
        };
        self.put(key, &m)?;
        self.rev
            .insert(next, key_bytes(key).as_slice())
            .map_err(|e| self.store.err(e))?;
        self.set_state_json(STATE_NEXT_ID, &(next - 1))?;
        Ok(m)
    }

    pub(crate) fn unmapped(&self, id: i64) -> Result<Option<RecordKey>, StoreError> {
        match self.rev.get(id).map_err(|e| self.store.err(e))? {
            Some(v) => Ok(Some(key_from_bytes(self.store, v.value())?)),
            None => Ok(None),
        }
    }

    /// Every mapping, in key order.
    pub(crate) fn all(&self) -> Result<Vec<(RecordKey, Mapped)>, StoreError> {
        let mut out = Vec::new();
        for item in self.ids.iter().map_err(|e| self.store.err(e))? {
            let (k, v) = item.map_err(|e| self.store.err(e))?;
            out.push((
                key_from_bytes(self.store, k.value())?,
                decode_mapped(self.store, v.value())?,
            ));
        }
        Ok(out)
    }

    /// Who a username is reserved for.
    pub(crate) fn name_holder(&self, name: &str) -> Result<Option<i64>, StoreError> {
        Ok(self
            .names
            .get(name)
            .map_err(|e| self.store.err(e))?
            .map(|v| v.value()))
    }

    pub(crate) fn reserve_name(&mut self, name: &str, id: i64) -> Result<(), StoreError> {
        self.names.insert(name, id).map_err(|e| self.store.err(e))?;
        Ok(())
    }

    pub(crate) fn state_json<T: serde::de::DeserializeOwned>(
        &self,
        name: &str,
    ) -> Result<Option<T>, StoreError> {
        read_json(self.store, &self.state, name)
    }

    pub(crate) fn set_state_json<T: Serialize>(
        &mut self,
        name: &str,
        value: &T,
    ) -> Result<(), StoreError> {
        write_json(self.store, &mut self.state, name, value)
    }

    /// The random salt of username tags (see `inbox::Names`), made on first use.
    pub(crate) fn name_salt(&mut self) -> Result<[u8; 16], StoreError> {
        if let Some(salt) = self.state_json::<[u8; 16]>(STATE_NAME_SALT)? {
            return Ok(salt);
        }
        let salt = crate::random::random_bytes::<16>()?;
        self.set_state_json(STATE_NAME_SALT, &salt)?;
        Ok(salt)
    }

    /// Remembers an inbox's manifest digest (the newest [`INBOX_DIGESTS_MAX`]).
    pub(crate) fn note_inbox_digest(&mut self, digest: &str) -> Result<(), StoreError> {
        let mut digests: Vec<String> = self.state_json(STATE_INBOX_DIGESTS)?.unwrap_or_default();
        if !digests.iter().any(|d| d == digest) {
            digests.push(digest.to_string());
        }
        if digests.len() > INBOX_DIGESTS_MAX {
            let excess = digests.len() - INBOX_DIGESTS_MAX;
            digests.drain(..excess);
        }
        self.set_state_json(STATE_INBOX_DIGESTS, &digests)
    }

    pub(crate) fn is_inbox_digest(&self, digest: &str) -> Result<bool, StoreError> {
        let digests: Vec<String> = self.state_json(STATE_INBOX_DIGESTS)?.unwrap_or_default();
        Ok(digests.iter().any(|d| d == digest))
    }
}

/// The set of local records adoption manages, inside a write transaction.
pub(crate) struct Adopted<'a> {
    store: &'a Store,
    table: redb::Table<'a, &'static [u8], &'static [u8]>,
}

impl<'a> Adopted<'a> {
    pub(crate) fn open(
        store: &'a Store,
        tx: &'a redb::WriteTransaction,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            store,
            table: tx.open_table(ADOPTED).map_err(|e| store.err(e))?,
        })
    }

    /// The managed keys `keep` accepts (one pass over the table; only those are collected).
    pub(crate) fn keys_where(
        &self,
        mut keep: impl FnMut(&RecordKey) -> bool,
    ) -> Result<Vec<RecordKey>, StoreError> {
        let mut out = Vec::new();
        for item in self.table.iter().map_err(|e| self.store.err(e))? {
            let (k, _) = item.map_err(|e| self.store.err(e))?;
            let key = key_from_bytes(self.store, k.value())?;
            if keep(&key) {
                out.push(key);
            }
        }
        Ok(out)
    }

    /// Whether adoption manages `key`.
    pub(crate) fn contains(&self, key: &RecordKey) -> Result<bool, StoreError> {
        Ok(self
            .table
            .get(key_bytes(key).as_slice())
            .map_err(|e| self.store.err(e))?
            .is_some())
    }

    pub(crate) fn insert(&mut self, key: &RecordKey) -> Result<(), StoreError> {
        self.table
            .insert(key_bytes(key).as_slice(), [].as_slice())
            .map_err(|e| self.store.err(e))?;
        Ok(())
    }
}

/// Counts per entity, for reports.
pub(crate) fn bump_entity(map: &mut BTreeMap<String, u64>, entity: &Entity) {
    *map.entry(entity.to_string()).or_default() += 1;
}
