//! What a hub keeps beyond a node's store (§7, §11): the directory of signed address
//! announcements, one per instance, and the per-origin figures of `wb hub status`. The records
//! a hub stores and forwards live in the ordinary tables.
//!
//! Table `hub_directory`: public key (32 bytes) → postcard [`DirectoryEntry`]. It is created by
//! the first accepted announcement; a store without it has an empty directory.

use std::collections::BTreeMap;

use protocol::PublicKey;
use protocol::hub::{AnnounceError, Announcement, DIRECTORY_ENTRY_TTL_MS};
use redb::{ReadableTable, TableError};
use serde::{Deserialize, Serialize};

use crate::db::{PEER_STATE, PeerState, RECORDS, Store};
use crate::error::Result;

pub(crate) use crate::db::HUB_DIRECTORY as DIRECTORY;

/// The last accepted announcement of one instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryEntry {
    pub announcement: Announcement,
    /// The hub's clock when it accepted the announcement.
    pub received_ms: u64,
}

impl DirectoryEntry {
    /// Whether the entry is too old to be given out at `now_ms` (its announcement is more than
    /// [`DIRECTORY_ENTRY_TTL_MS`] old): the instance stopped announcing itself.
    pub fn expired(&self, now_ms: u64) -> bool {
        now_ms.saturating_sub(self.announcement.timestamp_ms) > DIRECTORY_ENTRY_TTL_MS
    }
}

/// What a hub holds from one origin.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Holding {
    /// Record versions held (tombstones included).
    pub records: u64,
    /// Of which tombstones (deleted or withdrawn records).
    pub deleted: u64,
    /// Their sealed (signed, wire) bytes.
    pub bytes: u64,
}

impl Store {
    /// Checks an announcement received at `now_ms` ([`Announcement::check`], against the last
    /// one accepted from the same key) and, if it passes, makes it the key's directory entry —
    /// in one transaction, so two racing announcements cannot both pass the freshness check.
    /// The outer error is the store's; the inner one is the announcement's verdict.
    pub fn accept_announcement(
        &self,
        announcement: &Announcement,
        now_ms: u64,
    ) -> Result<std::result::Result<PublicKey, AnnounceError>> {
        let tx = self.write_tx()?;
        let verdict = {
            let mut table = tx.open_table(DIRECTORY).map_err(|e| self.err(e))?;
            let last = match table
                .get(announcement.key.as_slice())
                .map_err(|e| self.err(e))?
            {
                Some(v) => Some(self.decode_entry(v.value())?),
                None => None,
            };
            let verdict = announcement.check(now_ms, last.map(|e| e.announcement.timestamp_ms));
            if verdict.is_ok() {
                let entry = DirectoryEntry {
                    announcement: announcement.clone(),
                    received_ms: now_ms,
                };
                let bytes = postcard::to_allocvec(&entry).map_err(|e| self.err(e))?;
                table
                    .insert(announcement.key.as_slice(), bytes.as_slice())
                    .map_err(|e| self.err(e))?;
            }
            verdict
        };
        if verdict.is_ok() {
            tx.commit().map_err(|e| self.err(e))?;
        }
        Ok(verdict)
    }

    /// The directory entry of one instance.
    pub fn directory_entry(&self, key: &PublicKey) -> Result<Option<DirectoryEntry>> {
        let tx = self.read_tx()?;
        let table = match tx.open_table(DIRECTORY) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(self.err(e)),
        };
        let value = table
            .get(key.as_bytes().as_slice())
            .map_err(|e| self.err(e))?;
        value.map(|v| self.decode_entry(v.value())).transpose()
    }

    /// Drops the directory entries expired at `now_ms` ([`DirectoryEntry::expired`]) in one
    /// transaction; returns how many. Writes nothing when none has expired.
    pub fn expire_directory(&self, now_ms: u64) -> Result<u64> {
        let expired: Vec<PublicKey> = self
            .directory()?
            .into_iter()
            .filter(|(_, e)| e.expired(now_ms))
            .map(|(k, _)| k)
            .collect();
        if expired.is_empty() {
            return Ok(0);
        }
        let tx = self.write_tx()?;
        let mut dropped = 0;
        {
            let mut table = tx.open_table(DIRECTORY).map_err(|e| self.err(e))?;
            for key in &expired {
                // Checked again inside the transaction: an announcement accepted meanwhile stays.
                let still = match table
                    .get(key.as_bytes().as_slice())
                    .map_err(|e| self.err(e))?
                {
                    Some(v) => self.decode_entry(v.value())?.expired(now_ms),
                    None => false,
                };
                if still {
                    table
                        .remove(key.as_bytes().as_slice())
                        .map_err(|e| self.err(e))?;
                    dropped += 1;
                }
            }
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(dropped)
    }

    /// Every directory entry, by key (expired ones included until dropped).
    pub fn directory(&self) -> Result<BTreeMap<PublicKey, DirectoryEntry>> {
        let tx = self.read_tx()?;
        let table = match tx.open_table(DIRECTORY) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(BTreeMap::new()),
            Err(e) => return Err(self.err(e)),
        };
        let mut out = BTreeMap::new();
        for item in table.range::<&[u8]>(..).map_err(|e| self.err(e))? {
            let (_, v) = item.map_err(|e| self.err(e))?;
            let entry = self.decode_entry(v.value())?;
            let key = entry
                .announcement
                .public_key()
                .map_err(|e| self.corrupt(format!("directory entry: {e}")))?;
            out.insert(key, entry);
        }
        Ok(out)
    }

    /// Whether the store holds any record (tombstones included) of `origin`: one key lookup
    /// (record keys start with their origin).
    pub fn holds_origin(&self, origin: &PublicKey) -> Result<bool> {
        let tx = self.read_tx()?;
        let records = tx.open_table(RECORDS).map_err(|e| self.err(e))?;
        let start = origin.as_bytes().to_vec();
        let mut end = start.clone();
        // Keys of one origin are `origin ++ entity …`; UTF-8 never holds 0xff.
        end.push(0xff);
        let mut range = records
            .range::<&[u8]>(start.as_slice()..end.as_slice())
            .map_err(|e| self.err(e))?;
        Ok(range.next().transpose().map_err(|e| self.err(e))?.is_some())
    }

    /// Records held per origin: count, tombstones, sealed bytes. One pass over the records.
    pub fn holdings(&self) -> Result<BTreeMap<PublicKey, Holding>> {
        let tx = self.read_tx()?;
        let records = tx.open_table(RECORDS).map_err(|e| self.err(e))?;
        let mut out: BTreeMap<PublicKey, Holding> = BTreeMap::new();
        for item in records.range::<&[u8]>(..).map_err(|e| self.err(e))? {
            let (_, v) = item.map_err(|e| self.err(e))?;
            let (_, record) = self.decode_value(v.value())?;
            let h = out.entry(record.origin).or_default();
            h.records += 1;
            h.deleted += u64::from(record.deleted);
            h.bytes += (v.value().len() as u64).saturating_sub(8);
        }
        Ok(out)
    }

    /// The runtime state of every peer (for a hub: every instance) that synced at least once.
    pub fn peer_states(&self) -> Result<BTreeMap<PublicKey, PeerState>> {
        let tx = self.read_tx()?;
        let table = tx.open_table(PEER_STATE).map_err(|e| self.err(e))?;
        let mut out = BTreeMap::new();
        for item in table.range::<&[u8]>(..).map_err(|e| self.err(e))? {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let bytes: [u8; 32] = k
                .value()
                .try_into()
                .map_err(|_| self.corrupt("peer state key"))?;
            let key = PublicKey::from_bytes(bytes).map_err(|_| self.corrupt("peer state key"))?;
            let state = serde_json::from_slice(v.value())
                .map_err(|e| self.corrupt(format!("peer state: {e}")))?;
            out.insert(key, state);
        }
        Ok(out)
    }

    fn decode_entry(&self, bytes: &[u8]) -> Result<DirectoryEntry> {
        postcard::from_bytes(bytes).map_err(|e| self.corrupt(format!("directory entry: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use protocol::SecretKey;

    use super::*;

    #[test]
    fn the_directory_keeps_the_newest_fresh_signed_announcement() {
        let store = Store::in_memory().expect("store");
        let key = SecretKey::from_bytes(&[7; 32]);
        let addr = SocketAddr::from(([127, 0, 0, 1], 1));
        assert_eq!(store.directory_entry(&key.public()).expect("read"), None);
        let first = Announcement::sign(&key, 1_000, &[addr], None);
        assert_eq!(
            store.accept_announcement(&first, 1_000).expect("store"),
            Ok(key.public())
        );
        // The same one again (a replay), and an older one, are stale; the entry stays.
        assert_eq!(
            store.accept_announcement(&first, 2_000).expect("store"),
            Err(AnnounceError::Replayed)
        );
        let older = Announcement::sign(&key, 999, &[addr], None);
        assert_eq!(
            store.accept_announcement(&older, 2_000).expect("store"),
            Err(AnnounceError::Replayed)
        );
        let mut forged = Announcement::sign(&key, 3_000, &[addr], None);
        forged.key = *SecretKey::from_bytes(&[8; 32]).public().as_bytes();
        assert_eq!(
            store.accept_announcement(&forged, 3_000).expect("store"),
            Err(AnnounceError::Forged)
        );
        let entry = store
            .directory_entry(&key.public())
            .expect("read")
            .expect("an entry");
        assert_eq!(entry.announcement, first);
        assert_eq!(store.directory().expect("read").len(), 1);
    }

    #[test]
    fn directory_entries_expire_and_are_dropped() {
        let store = Store::in_memory().expect("store");
        let addr = SocketAddr::from(([127, 0, 0, 1], 1));
        let (old, fresh) = (
            SecretKey::from_bytes(&[7; 32]),
            SecretKey::from_bytes(&[8; 32]),
        );
        let t0 = 10_000_000;
        let a = Announcement::sign(&old, t0, &[addr], None);
        assert!(store.accept_announcement(&a, t0).expect("store").is_ok());
        let later = t0 + DIRECTORY_ENTRY_TTL_MS;
        let b = Announcement::sign(&fresh, later, &[addr], None);
        assert!(store.accept_announcement(&b, later).expect("store").is_ok());
        let entry = store.directory_entry(&old.public()).expect("read");
        assert!(!entry.as_ref().expect("an entry").expired(later));
        assert!(entry.expect("an entry").expired(later + 1));
        assert_eq!(store.expire_directory(later).expect("expire"), 0);
        assert_eq!(store.expire_directory(later + 1).expect("expire"), 1);
        assert_eq!(store.directory_entry(&old.public()).expect("read"), None);
        assert!(
            store
                .directory_entry(&fresh.public())
                .expect("read")
                .is_some()
        );
        // The dropped entry's announcement cannot come back: it is too old.
        assert!(
            store
                .accept_announcement(&a, later + 1)
                .expect("store")
                .is_err()
        );
    }

    #[test]
    fn holds_origin_sees_any_record_of_an_origin() {
        let store = Store::in_memory().expect("store");
        let key = SecretKey::from_bytes(&[9; 32]);
        assert!(!store.holds_origin(&key.public()).expect("read"));
        let mut r = protocol::Record {
            origin: key.public(),
            entity: protocol::Entity::User,
            id: "u".into(),
            version: protocol::Version::new(1_000, 0),
            scope: protocol::Scope::Public,
            deleted: false,
            fields: vec![("Username".into(), "u".into())],
            body: String::new(),
            signature: None,
        };
        r.sign(&key).expect("sign");
        store
            .apply_batch(&[r], &crate::ApplyOptions::new("test", 2_000))
            .expect("apply");
        assert!(store.holds_origin(&key.public()).expect("read"));
        assert!(
            !store
                .holds_origin(&SecretKey::from_bytes(&[10; 32]).public())
                .expect("read")
        );
    }
}
