//! Incoming versions checked before the store is touched: signatures (on all cores for large
//! batches), validity, clock skew, revoked origins.

use protocol::{Record, RecordKey};

use super::*;
use crate::error::{Rejection, Result};

/// Incoming versions with the verdict of the checks that need no store: signature (against the
/// record's own origin), validity, clock skew. Made only by [`CheckedBatch::check`], so a batch
/// handed to [`Store::apply_checked`] is always checked.
#[derive(Debug, Clone)]
pub struct CheckedBatch {
    pub(super) records: Vec<Record>,
    pub(super) verdicts: Vec<Option<Rejection>>,
    /// Each record's sealed form, as checked: what the store writes.
    pub(super) sealed: Vec<Vec<u8>>,
}

/// Batches smaller than this are checked on the calling thread.
const PARALLEL_CHECK_MIN: usize = 256;

/// At most this many threads verify signatures.
const CHECK_THREADS_MAX: usize = 16;

impl CheckedBatch {
    /// Checks every record, verifying signatures on all cores for large batches.
    pub fn check(records: Vec<Record>, opts: &ApplyOptions) -> Self {
        let (verdicts, sealed) = par_map(&records, |r| {
            (check_incoming(r, opts).err(), r.to_sealed_bytes())
        })
        .into_iter()
        .unzip();
        Self {
            records,
            verdicts,
            sealed,
        }
    }

    /// Decodes sealed records (as received from a peer) and checks them like [`check`], on
    /// all cores for large batches; the store then writes exactly these bytes. Bytes that do
    /// not decode as a record fail the whole batch: their index and why.
    ///
    /// [`check`]: CheckedBatch::check
    pub fn check_sealed(
        sealed: Vec<Vec<u8>>,
        opts: &ApplyOptions,
    ) -> std::result::Result<Self, (usize, protocol::ProtocolError)> {
        let checked = par_map(&sealed, |bytes| {
            Record::from_sealed_bytes(bytes).map(|r| {
                let verdict = check_incoming(&r, opts).err();
                (r, verdict)
            })
        });
        let mut records = Vec::with_capacity(sealed.len());
        let mut verdicts = Vec::with_capacity(sealed.len());
        for (index, item) in checked.into_iter().enumerate() {
            let (record, verdict) = item.map_err(|e| (index, e))?;
            records.push(record);
            verdicts.push(verdict);
        }
        Ok(Self {
            records,
            verdicts,
            sealed,
        })
    }

    /// Records whose exact bytes passed [`CheckedBatch::check`] (with no rejection) earlier
    /// in this process, not verified again: a bundle's second pass, which re-checks each
    /// file's SHA-256 against the manifest whose signature the first pass verified, so these
    /// are the very records checked then.
    pub(crate) fn checked_earlier(records: Vec<Record>) -> Self {
        let sealed = par_map(&records, Record::to_sealed_bytes);
        Self {
            verdicts: vec![None; records.len()],
            records,
            sealed,
        }
    }

    /// Drops the records `keep` refuses (e.g. what a peer may not pass on); returns how many.
    pub fn retain(&mut self, mut keep: impl FnMut(&Record) -> bool) -> usize {
        let before = self.records.len();
        let mut kept = (Vec::new(), Vec::new(), Vec::new());
        for ((r, v), s) in std::mem::take(&mut self.records)
            .into_iter()
            .zip(std::mem::take(&mut self.verdicts))
            .zip(std::mem::take(&mut self.sealed))
        {
            if keep(&r) {
                kept.0.push(r);
                kept.1.push(v);
                kept.2.push(s);
            }
        }
        (self.records, self.verdicts, self.sealed) = kept;
        before - self.records.len()
    }

    /// Whether a record was rejected only for now: dated too far in the future, it is accepted
    /// once the receiver's clock catches up, so a pull must fetch it again.
    pub fn has_future_dated(&self) -> bool {
        self.verdicts
            .iter()
            .any(|v| matches!(v, Some(Rejection::FutureDated { .. })))
    }

    /// The first rejected record: its index, key and reason.
    pub fn first_rejection(&self) -> Option<(usize, RecordKey, Rejection)> {
        self.verdicts
            .iter()
            .enumerate()
            .find_map(|(i, v)| v.clone().map(|reason| (i, self.records[i].key(), reason)))
    }

    pub fn records(&self) -> &[Record] {
        &self.records
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

/// Items a checking thread takes at a time: small, so a thread slowed down (by another
/// process, or by the store writing the previous batch) leaves little for the others to wait on.
const PAR_CHUNK: usize = 32;

/// `f` over `items`, in order, on all cores (at most [`CHECK_THREADS_MAX`] threads, the
/// calling one included) when there are enough items to be worth the threads. Threads take
/// small chunks from a shared counter until none are left.
fn par_map<T: Sync, U: Send>(items: &[T], f: impl Fn(&T) -> U + Sync) -> Vec<U> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(CHECK_THREADS_MAX);
    if items.len() < PARALLEL_CHECK_MIN || threads < 2 {
        return items.iter().map(&f).collect();
    }
    let next = AtomicUsize::new(0);
    let work = || {
        let mut done: Vec<(usize, Vec<U>)> = Vec::new();
        loop {
            let start = next.fetch_add(PAR_CHUNK, Ordering::Relaxed);
            let Some(part) = items.get(start..(start + PAR_CHUNK).min(items.len())) else {
                return done;
            };
            if part.is_empty() {
                return done;
            }
            done.push((start, part.iter().map(&f).collect()));
        }
    };
    let mut parts = std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads).map(|_| scope.spawn(work)).collect();
        let mut parts = work();
        for h in helpers {
            // A panic in a checker is a bug; re-raise it on this thread.
            parts.extend(h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
        }
        parts
    });
    parts.sort_unstable_by_key(|(start, _)| *start);
    parts.into_iter().flat_map(|(_, part)| part).collect()
}

pub(super) fn check_incoming(record: &Record, opts: &ApplyOptions) -> Result<(), Rejection> {
    if opts.revoked.contains(&record.origin) {
        return Err(Rejection::RevokedOrigin {
            key_id: record.origin.key_id(),
        });
    }
    match &record.signature {
        None if opts.unsigned_origin == Some(record.origin) => {}
        None => return Err(Rejection::Unsigned),
        Some(_) => record.verify().map_err(|_| Rejection::BadSignature)?,
    }
    if record.version.is_future(opts.now_ms) {
        return Err(Rejection::FutureDated {
            ahead_ms: record.version.ms - opts.now_ms,
            limit_ms: protocol::version::MAX_FUTURE_SKEW_MS,
        });
    }
    protocol::validate(record).map_err(|e| Rejection::Invalid(e.to_string()))
}
