//! Records as stored: the drafts and results of local writes, and reading records back
//! (one, a filtered list, a streaming scan).

use protocol::{Entity, PublicKey, Record, RecordKey, Scope};

use super::*;
use crate::error::{Result, StoreError};

/// The content of a local record as its operator wants it; the store adds version and signature.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Draft {
    pub scope: Scope,
    pub deleted: bool,
    pub fields: Vec<(String, String)>,
    pub body: String,
}

impl Draft {
    /// The draft that reproduces an existing record's content.
    pub fn from_record(record: &Record) -> Self {
        Self {
            scope: record.scope,
            deleted: record.deleted,
            fields: record.fields.clone(),
            body: record.body.clone(),
        }
    }
}

/// What a local write did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LocalChange {
    Created(Record),
    Updated {
        previous: Box<Record>,
        record: Record,
    },
    /// The draft equals the current content: no new version was made.
    Unchanged(Record),
}

impl LocalChange {
    pub fn record(&self) -> &Record {
        match self {
            LocalChange::Created(r) | LocalChange::Unchanged(r) => r,
            LocalChange::Updated { record, .. } => record,
        }
    }
}

/// Which records `list` returns.
#[derive(Clone, Debug, Default)]
pub struct ListFilter {
    pub entity: Option<Entity>,
    pub origin: Option<PublicKey>,
    pub scope: Option<Scope>,
    pub include_deleted: bool,
}

impl Store {
    pub(crate) fn decode_value(&self, value: &[u8]) -> Result<(u64, Record)> {
        let seq = value
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_be_bytes)
            .ok_or_else(|| self.corrupt("record entry too short"))?;
        let record = Record::from_sealed_bytes(&value[8..])
            .map_err(|e| self.corrupt(format!("record entry: {e}")))?;
        Ok((seq, record))
    }

    pub fn get(&self, key: &RecordKey) -> Result<Option<Record>> {
        let tx = self.read_tx()?;
        let records = tx.open_table(RECORDS).map_err(|e| self.err(e))?;
        let value = records
            .get(key_bytes(key).as_slice())
            .map_err(|e| self.err(e))?;
        value
            .map(|v| self.decode_value(v.value()).map(|(_, r)| r))
            .transpose()
    }

    /// Records matching the filter, ordered by origin, entity, id.
    pub fn list(&self, filter: &ListFilter) -> Result<Vec<Record>> {
        let mut out = Vec::new();
        self.each_listed(filter, |record| {
            out.push(record);
            Ok::<_, StoreError>(())
        })?;
        Ok(out)
    }

    /// Visits the records [`Store::list`] would return, in its order, one at a time inside one
    /// read transaction (a filter on an origin reads that origin's key range only). An error
    /// from `visit` stops the scan and is returned.
    pub fn each_listed<E: From<StoreError>>(
        &self,
        filter: &ListFilter,
        mut visit: impl FnMut(Record) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        let tx = self.read_tx()?;
        let records = tx.open_table(RECORDS).map_err(|e| self.err(e))?;
        let iter = match &filter.origin {
            Some(origin) => {
                let mut start = origin.as_bytes().to_vec();
                let mut end = start.clone();
                if let Some(entity) = &filter.entity {
                    // One origin's records of one entity: `origin ++ entity ++ NUL ++ id`.
                    start.extend_from_slice(entity.as_str().as_bytes());
                    end = start.clone();
                    start.push(0);
                    end.push(1);
                } else {
                    end.push(0xff);
                }
                // Keys of one origin are `origin ++ entity …`; UTF-8 never starts with 0xff.
                records.range(start.as_slice()..end.as_slice())
            }
            None => records.range::<&[u8]>(..),
        }
        .map_err(|e| self.err(e))?;
        for item in iter {
            let (_, value) = item.map_err(|e| self.err(e))?;
            let (_, record) = self.decode_value(value.value())?;
            if filter.entity.as_ref().is_some_and(|e| *e != record.entity)
                || filter.scope.is_some_and(|s| s != record.scope)
                || filter.origin.is_some_and(|o| o != record.origin)
                || (record.deleted && !filter.include_deleted)
            {
                continue;
            }
            visit(record)?;
        }
        Ok(())
    }

    /// Number of records in the store, every origin, entity and scope (tombstones included).
    pub fn record_count(&self) -> Result<u64> {
        use redb::ReadableTableMetadata;
        let tx = self.read_tx()?;
        let records = tx.open_table(RECORDS).map_err(|e| self.err(e))?;
        records.len().map_err(|e| self.err(e))
    }

    /// Visits every record (tombstones included) whose entity name `wanted` accepts, in key
    /// order (origin, entity, id), one at a time, inside one read transaction: nothing is
    /// collected, and unwanted records are skipped on their key, before being decoded. An error
    /// from `visit` stops the scan and is returned.
    pub fn scan<E: From<StoreError>>(
        &self,
        mut wanted: impl FnMut(&str) -> bool,
        mut visit: impl FnMut(Record) -> Result<(), E>,
    ) -> Result<(), E> {
        let tx = self.read_tx()?;
        let records = tx.open_table(RECORDS).map_err(|e| self.err(e))?;
        for item in records.range::<&[u8]>(..).map_err(|e| self.err(e))? {
            let (key, value) = item.map_err(|e| self.err(e))?;
            // Key bytes: origin (32) ++ entity ++ NUL ++ id (see `key_bytes`).
            let entity = key
                .value()
                .get(32..)
                .and_then(|rest| rest.split(|&b| b == 0).next())
                .and_then(|name| std::str::from_utf8(name).ok())
                .ok_or_else(|| self.corrupt("record key"))?;
            if !wanted(entity) {
                continue;
            }
            let (_, record) = self.decode_value(value.value())?;
            visit(record)?;
        }
        Ok(())
    }
}
