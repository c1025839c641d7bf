//! Applying incoming versions (§5): the rules (higher version wins, equal version with other
//! content is a conflict), batches applied in one write transaction, and the dry run.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use protocol::wire::Cursor;
use protocol::{PublicKey, Record, RecordKey, Version};
use redb::{ReadTransaction, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::serving::Receiving;
use super::*;

use crate::error::{Rejection, Result, StoreError};

/// How to apply a batch of incoming versions.
#[derive(Clone, Debug)]
pub struct ApplyOptions {
    /// Who the batch came from (peer name, bundle), for the conflict log.
    pub source: String,
    /// The receiver's clock, for the future-dating guard.
    pub now_ms: u64,
    /// Reject the whole batch if any record is rejected.
    pub all_or_nothing: bool,
    /// Unsigned records are accepted only from this origin (the signer of an app bundle whose
    /// signature the caller verified). `None`: every record must be signed.
    pub unsigned_origin: Option<PublicKey>,
    /// Record this imported bundle's provenance in the same transaction (its report counts are
    /// filled in from the batch's report).
    pub provenance: Option<Provenance>,
    /// Store this peer's cursor (how far into its change log we are) in the same transaction
    /// as the batch, so a broken connection resumes exactly where it stopped.
    pub cursor: Option<(PublicKey, Cursor)>,
    /// Origins the receiver's registry revokes (`protocol::peers::revoked_keys`): their
    /// versions are rejected ([`Rejection::RevokedOrigin`]) before anything else is checked,
    /// whoever passes them on.
    pub revoked: Arc<HashSet<PublicKey>>,
    /// Test hook: fail with [`StoreError::InjectedFault`] after this many records were applied
    /// inside the transaction, as an I/O error would.
    #[doc(hidden)]
    pub fail_after: Option<usize>,
}

impl ApplyOptions {
    pub fn new(source: impl Into<String>, now_ms: u64) -> Self {
        Self {
            source: source.into(),
            now_ms,
            all_or_nothing: false,
            unsigned_origin: None,
            provenance: None,
            cursor: None,
            revoked: Arc::default(),
            fail_after: None,
        }
    }
}

/// What applying a batch did, record by record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyReport {
    pub new: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub stale: u64,
    pub conflicts: u64,
    pub rejected: u64,
    #[serde(skip)]
    pub rejections: Vec<(RecordKey, Rejection)>,
}

/// Batches being applied in one write transaction (see [`Store::begin_apply`]); dropped without
/// [`Applying::commit`], it writes nothing.
pub(crate) struct Applying<'a> {
    store: &'a Store,
    opts: &'a ApplyOptions,
    tx: WriteTransaction,
    report: ApplyReport,
    counts: BTreeMap<&'static str, u64>,
    first_seq: u64,
    seq: u64,
    /// Requests that may now reach more parties: their comments are logged again at commit.
    widened: HashSet<RecordKey>,
    /// Records handed in so far (for `ApplyOptions::fail_after`).
    applied: usize,
    /// The store's instance key, and the newest version of ours applied (see `commit`).
    own: Option<Vec<u8>>,
    own_newest: Version,
    /// The digests' deltas (`digest`), written at commit.
    digesting: Digesting,
}

impl Applying<'_> {
    /// Applies one checked batch (§5 rules, in order). With `all_or_nothing`, a rejected record
    /// fails it, and the transaction is then dropped unwritten.
    pub(crate) fn apply(&mut self, batch: &CheckedBatch) -> Result<()> {
        let (store, opts) = (self.store, self.opts);
        if opts.all_or_nothing
            && let Some((index, key, reason)) = batch.first_rejection()
        {
            return Err(StoreError::BatchRejected {
                index: self.applied + index,
                key,
                reason,
            });
        }
        let mut records = self.tx.open_table(RECORDS).map_err(|e| store.err(e))?;
        let mut log = self.tx.open_table(LOG).map_err(|e| store.err(e))?;
        let mut conflicts = self.tx.open_table(CONFLICTS).map_err(|e| store.err(e))?;
        let allowed = self
            .tx
            .open_table(CONTACT_ALLOWED)
            .map_err(|e| store.err(e))?;
        let mut comment_index = CommentIndex::open(store, &self.tx)?;
        for ((incoming, verdict), sealed) in
            batch.records.iter().zip(&batch.verdicts).zip(&batch.sealed)
        {
            let index = self.applied;
            self.applied += 1;
            if opts.fail_after == Some(index) {
                return Err(StoreError::InjectedFault(index));
            }
            if let Some(reason) = verdict {
                *self.counts.entry(reason.counter()).or_default() += 1;
                self.report.count_rejection(incoming, reason);
                continue;
            }
            if self.own.as_deref() == Some(incoming.origin.as_bytes().as_slice()) {
                self.own_newest = self.own_newest.max(incoming.version);
            }
            let kb = key_bytes(&incoming.key());
            let current = match records.get(kb.as_slice()).map_err(|e| store.err(e))? {
                Some(v) => Some(store.decode_value(v.value())?),
                None => None,
            };
            let decision = decide(current.as_ref().map(|(_, r)| r), incoming);
            self.report.count(&decision);
            *self.counts.entry(decision.counter()).or_default() += 1;
            if let Decision::Conflict { winner, loser, .. } = &decision {
                let entry = Conflict {
                    origin: incoming.origin.to_base64(),
                    entity: incoming.entity.to_string(),
                    id: incoming.id.clone(),
                    version: incoming.version.to_string(),
                    winner_hash: hex::encode(winner),
                    loser_hash: hex::encode(loser),
                    source: opts.source.clone(),
                    at_ms: opts.now_ms,
                };
                let mut ck = kb.clone();
                ck.extend_from_slice(&version_bytes(incoming.version));
                ck.extend_from_slice(loser);
                let json = serde_json::to_vec(&entry).map_err(|e| store.err(e))?;
                conflicts
                    .insert(ck.as_slice(), json.as_slice())
                    .map_err(|e| store.err(e))?;
            }
            if decision.replaces() {
                let old_seq = current.as_ref().map(|(seq, _)| *seq);
                let env = Env {
                    records: &records,
                    allowed: Some(&allowed),
                };
                let comments = self.digesting.before(
                    store,
                    &env,
                    &mut comment_index,
                    &kb,
                    current.as_ref().map(|(_, r)| r),
                    Some(incoming),
                )?;
                store.put_sealed(&mut records, &mut log, &kb, old_seq, self.seq, sealed)?;
                self.seq += 1;
                let env = Env {
                    records: &records,
                    allowed: Some(&allowed),
                };
                // The sealed bytes are the signing bytes, then the signature flag and
                // signature (`Record::to_sealed_bytes`).
                let tail = if incoming.signature.is_some() { 65 } else { 1 };
                let signing = sealed.get(..sealed.len().saturating_sub(tail));
                self.digesting.after(
                    store,
                    &env,
                    &mut comment_index,
                    &kb,
                    Some(incoming),
                    signing,
                    comments,
                )?;
                if let Some((_, current)) = &current
                    && widens_request(current, incoming)
                {
                    self.widened.insert(incoming.key());
                }
            }
        }
        Ok(())
    }

    /// Uses a pull's verdicts on requests in this transaction (see [`Receiving`]).
    pub(crate) fn receive(&mut self, receiving: Receiving) -> Result<()> {
        let store = self.store;
        // After the transaction began: a prune committed before it has been counted.
        let removals = store.removals();
        let log = self.tx.open_table(LOG).map_err(|e| store.err(e))?;
        self.digesting.receive(store, receiving, removals, &log)
    }

    /// Ends the transaction: comments of widened requests logged again, sequence, counters,
    /// cursor and provenance written, committed.
    pub(crate) fn commit(self) -> Result<ApplyReport> {
        self.commit_receiving().map(|(report, _)| report)
    }

    /// [`Applying::commit`], handing back the pull's verdicts (see [`Applying::receive`]) as
    /// the committed transaction left them.
    pub(crate) fn commit_receiving(self) -> Result<(ApplyReport, Option<Receiving>)> {
        let Self {
            store,
            opts,
            tx,
            report,
            counts,
            first_seq,
            seq,
            widened,
            own_newest,
            mut digesting,
            ..
        } = self;
        let mut memo = digesting.take_memo();
        digesting.write(store, &tx)?;
        {
            let mut records = tx.open_table(RECORDS).map_err(|e| store.err(e))?;
            let mut log = tx.open_table(LOG).map_err(|e| store.err(e))?;
            let mut meta = tx.open_table(META).map_err(|e| store.err(e))?;
            let mut counters = tx.open_table(COUNTERS).map_err(|e| store.err(e))?;
            let seq = store.relog_comments(&mut records, &mut log, &widened, seq)?;
            if let Some(memo) = memo.as_mut() {
                memo.memo.log_end = match log.last().map_err(|e| store.err(e))? {
                    Some((last, _)) => last.value(),
                    None => 0,
                };
            }
            if own_newest > Version::ZERO {
                let clock = meta
                    .get(META_CLOCK)
                    .map_err(|e| store.err(e))?
                    .and_then(|v| version_from_bytes(v.value()))
                    .unwrap_or(Version::ZERO);
                if own_newest > clock {
                    meta.insert(META_CLOCK, version_bytes(own_newest).as_slice())
                        .map_err(|e| store.err(e))?;
                }
            }
            if seq != first_seq {
                meta.insert(META_NEXT_SEQ, seq.to_be_bytes().as_slice())
                    .map_err(|e| store.err(e))?;
            }
            for (name, by) in counts {
                bump(&mut counters, name, by).map_err(|e| store.err(e))?;
            }
            if let Some((peer, cursor)) = &opts.cursor {
                let mut cursors = tx.open_table(CURSORS).map_err(|e| store.err(e))?;
                cursors
                    .insert(peer.as_bytes().as_slice(), cursor_bytes(cursor).as_slice())
                    .map_err(|e| store.err(e))?;
            }
            if let Some(provenance) = &opts.provenance {
                let mut bundles = tx.open_table(BUNDLES).map_err(|e| store.err(e))?;
                let entry = Provenance {
                    report: report.clone(),
                    ..provenance.clone()
                };
                let json = serde_json::to_vec(&entry).map_err(|e| store.err(e))?;
                bundles
                    .insert(entry.manifest_digest.as_str(), json.as_slice())
                    .map_err(|e| store.err(e))?;
            }
        }
        tx.commit().map_err(|e| store.err(e))?;
        Ok((report, memo))
    }
}

/// Batches being planned on a read transaction (see [`Store::begin_plan`]).
pub(crate) struct Planning<'a> {
    store: &'a Store,
    tx: ReadTransaction,
    /// Versions planned earlier, as the write transaction would see them, by 16 bytes of the
    /// SHA-256 of their key: what [`decide`] needs of each (about 90 bytes a record that would
    /// be written, where whole records took about a kilobyte).
    overlay: HashMap<[u8; 16], Planned>,
    pub(crate) report: ApplyReport,
}

impl Planning<'_> {
    /// Plans one checked batch.
    pub(crate) fn plan(&mut self, batch: &CheckedBatch) -> Result<()> {
        let store = self.store;
        let records = self.tx.open_table(RECORDS).map_err(|e| store.err(e))?;
        for (incoming, verdict) in batch.records.iter().zip(&batch.verdicts) {
            if let Some(reason) = verdict {
                self.report.count_rejection(incoming, reason);
                continue;
            }
            let kb = key_bytes(&incoming.key());
            let short: [u8; 16] = {
                let digest = <sha2::Sha256 as sha2::Digest>::digest(&kb);
                let mut short = [0u8; 16];
                short.copy_from_slice(digest.get(..16).unwrap_or(&[0; 16]));
                short
            };
            let decision = match self.overlay.get(&short) {
                Some(planned) => decide_over(Some(Current::Planned(planned)), incoming),
                None => {
                    let held = match records.get(kb.as_slice()).map_err(|e| store.err(e))? {
                        Some(v) => Some(store.decode_value(v.value())?.1),
                        None => None,
                    };
                    decide(held.as_ref(), incoming)
                }
            };
            self.report.count(&decision);
            if decision.replaces() {
                let planned = Planned {
                    version: incoming.version,
                    content_hash: match &decision {
                        Decision::Conflict { winner, .. } => *winner,
                        _ => incoming.content_hash(),
                    },
                    signed: incoming.signature.is_some(),
                };
                self.overlay.insert(short, planned);
            }
        }
        Ok(())
    }
}

/// What the §5 rules do with one incoming version, given the current one.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Decision {
    New,
    Updated,
    Stale,
    /// Same content; `upgrade` when the incoming copy carries a signature ours lacks.
    Unchanged {
        upgrade: bool,
    },
    /// Same version, other content: the larger content hash wins.
    Conflict {
        incoming_wins: bool,
        winner: [u8; 32],
        loser: [u8; 32],
    },
}

impl Decision {
    fn replaces(&self) -> bool {
        match self {
            Decision::New | Decision::Updated => true,
            Decision::Stale => false,
            Decision::Unchanged { upgrade } => *upgrade,
            Decision::Conflict { incoming_wins, .. } => *incoming_wins,
        }
    }

    fn counter(&self) -> &'static str {
        match self {
            Decision::New => counter::NEW,
            Decision::Updated => counter::UPDATED,
            Decision::Stale => counter::STALE,
            Decision::Unchanged { .. } => counter::UNCHANGED,
            Decision::Conflict { .. } => counter::CONFLICTS,
        }
    }
}

/// The §5 rules, in one place: used by both [`Store::apply_checked`] and [`Store::plan`].
fn decide(current: Option<&Record>, incoming: &Record) -> Decision {
    decide_over(current.map(Current::Record), incoming)
}

/// What [`decide`] needs of the version held: the record, or what a dry run keeps of a version
/// it planned ([`Planned`]).
#[derive(Clone, Copy)]
enum Current<'a> {
    Record(&'a Record),
    Planned(&'a Planned),
}

impl Current<'_> {
    fn version(&self) -> Version {
        match self {
            Self::Record(r) => r.version,
            Self::Planned(p) => p.version,
        }
    }

    fn content_hash(&self) -> [u8; 32] {
        match self {
            Self::Record(r) => r.content_hash(),
            Self::Planned(p) => p.content_hash,
        }
    }

    fn signed(&self) -> bool {
        match self {
            Self::Record(r) => r.signature.is_some(),
            Self::Planned(p) => p.signed,
        }
    }
}

/// A version a dry run planned to write: what a later copy of the same key is decided against.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Planned {
    version: Version,
    content_hash: [u8; 32],
    signed: bool,
}

fn decide_over(current: Option<Current<'_>>, incoming: &Record) -> Decision {
    let Some(existing) = current else {
        return Decision::New;
    };
    match incoming.version.cmp(&existing.version()) {
        std::cmp::Ordering::Greater => Decision::Updated,
        std::cmp::Ordering::Less => Decision::Stale,
        std::cmp::Ordering::Equal => {
            let (ours, theirs) = (existing.content_hash(), incoming.content_hash());
            if ours == theirs {
                Decision::Unchanged {
                    upgrade: !existing.signed() && incoming.signature.is_some(),
                }
            } else if theirs > ours {
                Decision::Conflict {
                    incoming_wins: true,
                    winner: theirs,
                    loser: ours,
                }
            } else {
                Decision::Conflict {
                    incoming_wins: false,
                    winner: ours,
                    loser: theirs,
                }
            }
        }
    }
}

impl ApplyReport {
    fn count(&mut self, decision: &Decision) {
        match decision {
            Decision::New => self.new += 1,
            Decision::Updated => self.updated += 1,
            Decision::Stale => self.stale += 1,
            Decision::Unchanged { .. } => self.unchanged += 1,
            Decision::Conflict { .. } => self.conflicts += 1,
        }
    }

    fn count_rejection(&mut self, record: &Record, reason: &Rejection) {
        self.rejected += 1;
        self.rejections.push((record.key(), reason.clone()));
    }
}

impl Rejection {
    fn counter(&self) -> &'static str {
        match self {
            Rejection::BadSignature | Rejection::Unsigned => counter::REJECTED_SIGNATURE,
            Rejection::FutureDated { .. } => counter::REJECTED_FUTURE,
            Rejection::Invalid(_) => counter::REJECTED_INVALID,
            Rejection::RevokedOrigin { .. } => counter::REJECTED_REVOKED,
        }
    }
}

impl Store {
    /// Applies incoming versions in one transaction with the §5 rules: higher version wins;
    /// equal version with other content is a conflict won by the larger content hash (logged);
    /// lower is stale; unsigned, badly signed, invalid or future-dated versions are rejected.
    /// With `all_or_nothing`, one rejection aborts the batch and nothing is written.
    pub fn apply_batch(&self, batch: &[Record], opts: &ApplyOptions) -> Result<ApplyReport> {
        self.apply_checked(&CheckedBatch::check(batch.to_vec(), opts), opts)
    }

    /// Applies a batch whose records were checked by [`CheckedBatch::check`], in one
    /// transaction. With `all_or_nothing` and a rejected record, returns the first rejection
    /// without opening a write transaction. Records are stored as the sealed bytes that were
    /// checked; sequence numbers and counters are read and written once per batch.
    pub fn apply_checked(&self, batch: &CheckedBatch, opts: &ApplyOptions) -> Result<ApplyReport> {
        self.apply_checked_all(&[batch], opts)
    }

    /// Applies checked batches in order in one transaction, as [`Store::apply_checked`] applies
    /// one (records indexed across the batches, as if they were one), with one commit: the
    /// cursor and provenance of `opts` are written once. With `all_or_nothing` and a rejected
    /// record, returns the first rejection without opening a write transaction.
    pub fn apply_checked_all(
        &self,
        batches: &[&CheckedBatch],
        opts: &ApplyOptions,
    ) -> Result<ApplyReport> {
        self.apply_checked_all_with(batches, opts, None)
    }

    /// [`Store::apply_checked_all`] for one transaction of a pull: `receiving` is what its
    /// earlier transactions learned about requests, and what this one learns is added (it is
    /// left empty if this one fails; see [`Receiving`]).
    pub fn apply_pulled(
        &self,
        batches: &[&CheckedBatch],
        opts: &ApplyOptions,
        receiving: &mut Receiving,
    ) -> Result<ApplyReport> {
        self.apply_checked_all_with(batches, opts, Some(receiving))
    }

    fn apply_checked_all_with(
        &self,
        batches: &[&CheckedBatch],
        opts: &ApplyOptions,
        receiving: Option<&mut Receiving>,
    ) -> Result<ApplyReport> {
        if opts.all_or_nothing {
            let mut before = 0;
            for batch in batches {
                if let Some((index, key, reason)) = batch.first_rejection() {
                    return Err(StoreError::BatchRejected {
                        index: before + index,
                        key,
                        reason,
                    });
                }
                before += batch.len();
            }
        }
        let mut applying = self.begin_apply(opts)?;
        let Some(receiving) = receiving else {
            for batch in batches {
                applying.apply(batch)?;
            }
            return applying.commit();
        };
        // Taken: whatever fails below leaves the pull's verdicts empty.
        applying.receive(std::mem::take(receiving))?;
        for batch in batches {
            applying.apply(batch)?;
        }
        let (report, memo) = applying.commit_receiving()?;
        *receiving = memo.unwrap_or_default();
        Ok(report)
    }

    /// Starts applying batches one after another in one write transaction: what
    /// [`Store::apply_checked`] does with one batch, for input too large to hold at once (a
    /// bundle's second pass). Nothing is written unless [`Applying::commit`] is called.
    pub(crate) fn begin_apply<'a>(&'a self, opts: &'a ApplyOptions) -> Result<Applying<'a>> {
        let tx = self.write_tx()?;
        // Our own records coming back (a restored store recovering them): the clock never
        // stays below a version we signed, so no new version can fall under one.
        let (first_seq, own, digesting) = {
            let meta = tx.open_table(META).map_err(|e| self.err(e))?;
            let own = meta
                .get(META_INSTANCE_KEY)
                .map_err(|e| self.err(e))?
                .map(|v| v.value().to_vec());
            (
                self.next_seq(&meta)?,
                own,
                Digesting::with_meta(self, &meta)?,
            )
        };
        Ok(Applying {
            store: self,
            opts,
            tx,
            report: ApplyReport::default(),
            counts: BTreeMap::new(),
            first_seq,
            seq: first_seq,
            widened: HashSet::new(),
            applied: 0,
            own,
            own_newest: Version::ZERO,
            digesting,
        })
    }

    /// What [`Store::apply_checked`] would report, computed from reads only (works on a
    /// read-only store): the dry run of an import.
    pub fn plan(&self, batch: &CheckedBatch) -> Result<ApplyReport> {
        let mut planning = self.begin_plan()?;
        planning.plan(batch)?;
        Ok(planning.report)
    }

    /// Starts planning batches one after another, as [`Store::begin_apply`] would apply them.
    pub(crate) fn begin_plan(&self) -> Result<Planning<'_>> {
        Ok(Planning {
            store: self,
            tx: self.read_tx()?,
            overlay: HashMap::new(),
            report: ApplyReport::default(),
        })
    }
}
