//! The compacted change log: one live sequence per record key, issued as records are written;
//! comments logged again after their request widened; reading the log.

use std::collections::HashSet;

use protocol::{Entity, Record, RecordKey};
use redb::ReadableTable;

use super::*;
use crate::error::Result;

/// One live change-log entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub seq: u64,
    pub record: Record,
}

/// Whether `next`, replacing `current`, is a request that may reach more parties (its effective
/// scope widened: a wider scope, or no longer a draft), so its comments must be logged again
/// (see [`Store::relog_comments`]).
pub(crate) fn widens_request(current: &Record, next: &Record) -> bool {
    next.entity == Entity::Request && next.effective_scope() > current.effective_scope()
}

impl Store {
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
    pub(crate) fn put_sealed(
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
}
