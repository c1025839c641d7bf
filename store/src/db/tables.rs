//! The store file's tables and `meta` keys, and the byte encodings of their keys and values
//! (record keys, versions, cursors). Table definitions never leave the crate.

use protocol::wire::Cursor;
use protocol::{RecordKey, Version};
use redb::TableDefinition;

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

pub(crate) const META_NAME: &str = "name";

pub(crate) const META_INSTANCE_KEY: &str = "instance_key";

pub(crate) const META_LISTEN_ADDRS: &str = "listen_addrs";

/// The keys this instance replaced (`wb sync keygen --force`), 32 bytes each, oldest first.
pub(crate) const META_FORMER_KEYS: &str = "former_keys";

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

pub(crate) fn version_bytes(v: Version) -> [u8; 12] {
    let mut out = [0u8; 12];
    out[..8].copy_from_slice(&v.ms.to_be_bytes());
    out[8..].copy_from_slice(&v.counter.to_be_bytes());
    out
}

pub(crate) fn cursor_bytes(c: &Cursor) -> [u8; 24] {
    let mut out = [0u8; 24];
    out[..16].copy_from_slice(&c.epoch);
    out[16..].copy_from_slice(&c.seq.to_be_bytes());
    out
}

pub(crate) fn cursor_from_bytes(b: &[u8]) -> Option<Cursor> {
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

/// origin (32) ++ kind (1) → count (u64 BE) ++ sum (32, little-endian).
pub(crate) const DIGESTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("digests");
/// request key length (u16 BE) ++ request key ++ comment key → nothing.
pub(crate) const COMMENT_INDEX: TableDefinition<&[u8], &[u8]> =
    TableDefinition::new("comment_index");
/// Index keys of `comment_index` not yet folded into it, in the order they were written
/// (`digests::CommentIndex`).
pub(crate) const COMMENT_PENDING: TableDefinition<u64, &[u8]> =
    TableDefinition::new("comment_pending");
/// `meta`: the version of the digest tables; absent: they are built by a scan on open.
pub(crate) const META_DIGESTS: &str = "digests";
/// `meta`: when the backup was taken (ms, big-endian); only in backup files.
pub(crate) const META_BACKUP_TAKEN_AT: &str = "backup_taken_at_ms";

/// A hub's directory of announced addresses (`hub`).
pub(crate) const HUB_DIRECTORY: TableDefinition<&[u8], &[u8]> =
    TableDefinition::new("hub_directory");

/// The app bridge's tables (`app`): record ids ↔ the app's integer ids, names, adopted
/// snapshots, and its state.
pub(crate) const APP_IDS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("app_ids");
pub(crate) const APP_IDS_REV: TableDefinition<i64, &[u8]> = TableDefinition::new("app_ids_rev");
pub(crate) const APP_NAMES: TableDefinition<&str, i64> = TableDefinition::new("app_names");
pub(crate) const APP_ADOPTED: TableDefinition<&[u8], &[u8]> = TableDefinition::new("app_adopted");
pub(crate) const APP_STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("app_state");
