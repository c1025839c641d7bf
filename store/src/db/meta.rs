//! Metadata and counters: the epoch, the instance's name, key and clock, advertised
//! addresses, and the counters `sync status` reads.

use std::collections::BTreeMap;

use protocol::{PublicKey, Version};
use redb::ReadableTable;

use super::*;
use crate::error::Result;

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

pub(crate) fn bump(
    counters: &mut redb::Table<&str, u64>,
    name: &str,
    by: u64,
) -> std::result::Result<(), redb::StorageError> {
    let now = counters.get(name)?.map_or(0, |v| v.value());
    counters.insert(name, now.saturating_add(by))?;
    Ok(())
}

impl Store {
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
