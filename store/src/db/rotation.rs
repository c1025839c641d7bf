//! Key rotation: moving our records to a new key (`wb sync keygen --force`) and the keys this
//! instance replaced.

use protocol::{PublicKey, Record, RecordKey, SecretKey, Version};
use redb::ReadableTable;

use super::*;
use crate::error::Result;

impl Store {
    /// Moves every live record of `old`'s origin to `new` after a key replacement, in one
    /// transaction: each gets a tombstone signed by the old key (so peers withdraw it) and a
    /// copy signed by the new key, and the old key signs a succession naming the new one
    /// (`protocol::succession`); the store then belongs to the new key. Returns how many
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
                    self.replace_record(&mut records, &mut log, &mut meta, &next)?;
                }
            }
            // The succession (issue 15): the old key names the new one, which countersigns;
            // peers that know the old key move their entry to the new one when it reaches them.
            clock = Version::next_after(clock, now_ms);
            let mut succession = Record {
                origin: old.public(),
                entity: protocol::succession::entity(),
                id: protocol::succession::record_id(&new.public()),
                version: clock,
                scope: protocol::Scope::Public,
                deleted: false,
                fields: protocol::succession::fields(&old.public(), new, now_ms),
                body: String::new(),
                signature: None,
            };
            succession.sign(old)?;
            self.replace_record(&mut records, &mut log, &mut meta, &succession)?;
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

    /// Writes `record` under its key, in place of what is held there (its log entry moves).
    fn replace_record(
        &self,
        records: &mut redb::Table<&[u8], &[u8]>,
        log: &mut redb::Table<u64, &[u8]>,
        meta: &mut redb::Table<&str, &[u8]>,
        record: &Record,
    ) -> Result<u64> {
        let kb = key_bytes(&record.key());
        let old_seq = match records.get(kb.as_slice()).map_err(|e| self.err(e))? {
            Some(v) => Some(self.decode_value(v.value())?.0),
            None => None,
        };
        self.write_record(records, log, meta, &kb, old_seq, record)
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
}
