//! What a pull remembers about requests between its transactions, so that a comment on a
//! request met before does not read the request again (`leaving`: a comment goes only where its
//! request goes; comments on random requests made these reads random, one page each):
//! - serving one peer ([`Serving`]): whether each request is hidden from the peer's audience;
//! - applying a pull ([`Receiving`]): whether each is hidden from an untrusted and from a
//!   trusted audience, which decides where the state digests count a comment on it.
//!
//! Each step (or group of batches) has its own transaction. A verdict learned in one is used in
//! the next only if the request cannot have changed in between:
//! - every write of a record appends a log entry with a sequence above every earlier one, so
//!   the entries after the last sequence the previous step saw name every key written since,
//!   and their verdicts are dropped;
//! - a prune removes records and their log entries without a new entry: it counts itself in
//!   [`Store`]'s removal counter before it commits, and a step that sees the counter moved
//!   forgets everything (the counter is read after the step's transaction began, so a prune the
//!   transaction sees is always counted);
//! - a different rule (our key replaced, the peer owed withdrawals) forgets everything too.
//!
//! A pull being applied also learns each request it writes, in its own transaction, as it writes
//! it; its log end is read at commit, and a transaction that fails leaves the memo empty.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::atomic::Ordering;

use protocol::{Entity, Record, RecordKey};
use redb::ReadableTable;

use super::Store;
use crate::error::Result;
use crate::leaving::Rule;

/// Verdicts kept at most: a map of this many `(u64, bool)` entries fits in about 4 MB. A
/// million-record store has about 250,000 requests; past the bound, further requests are read
/// each time, as without a memo.
pub(crate) const VERDICTS_MAX: usize = 229_376;
/// Log entries written since the previous step that are checked one by one; more, and the memo
/// starts again (cheaper than reading them all).
const CHANGES_CHECKED_MAX: usize = 4_096;
/// The largest request id remembered (`(origin index) << 48 | id` is the slot).
const ID_MAX: u64 = (1 << 48) - 1;
/// Origins given an index at most.
const ORIGINS_MAX: usize = 1 << 16;

/// What serving one peer learned about requests (see the module documentation). Start one per
/// pull ([`Serving::default`]) and pass it to every step of that pull
/// ([`Store::outgoing_serving`]).
#[derive(Debug, Default)]
pub struct Serving {
    /// Request slot → the request is held and hidden from the audience.
    pub(crate) memo: Verdicts<bool>,
    /// The rule the verdicts were decided with.
    rule: Option<Rule>,
}

impl Serving {
    /// Lookups answered by the memo and lookups that read the store, over the whole pull.
    pub fn lookups(&self) -> (u64, u64) {
        self.memo.lookups()
    }

    /// Verdicts held now.
    pub fn len(&self) -> usize {
        self.memo.verdicts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.memo.verdicts.is_empty()
    }

    /// Brings the memo to the state a new step's read transaction sees: `removals` read after
    /// the transaction began, `log` its change log.
    pub(crate) fn renew(
        &mut self,
        store: &Store,
        rule: &Rule,
        removals: u64,
        log: &impl ReadableTable<u64, &'static [u8]>,
    ) -> Result<()> {
        let same = self.rule.as_ref() == Some(rule);
        self.memo.renew(store, same, removals, log)?;
        self.rule = Some(rule.clone());
        Ok(())
    }

    /// Remembers the verdict on a request read by the step's scan of the log.
    pub(crate) fn learn_scanned(&mut self, rule: &Rule, record: &Record) {
        if record.entity == Entity::Request {
            self.memo
                .learn(&record.key(), rule.hides(Some(record)), false);
        }
    }
}

/// What applying one pull remembers between its transactions (see the module documentation):
/// whether each request met is held and hidden from an untrusted and from a trusted audience,
/// which decides where the state digests count a comment on it. Learned from the requests the
/// pull writes and from those read for a comment; the pull's own writes are learned as they
/// are made, and what others wrote between two of its transactions is found in the log as
/// for [`Serving`]. A transaction that fails leaves it empty. Start one per pull
/// ([`Receiving::default`]) and pass it to each of its transactions
/// ([`Store::apply_pulled`]).
#[derive(Debug, Default)]
pub struct Receiving {
    pub(crate) memo: Verdicts<(bool, bool)>,
    /// The rules for an untrusted and a trusted audience the verdicts were decided with.
    pub(crate) rules: Option<(Rule, Rule)>,
}

/// Verdicts on requests (`V`: what is known of each), by slot, and what they were decided on
/// (see the module documentation).
#[derive(Debug)]
pub(crate) struct Verdicts<V> {
    verdicts: HashMap<u64, V>,
    origins: HashMap<[u8; 32], u16>,
    /// The removal counter and the last log sequence of the transaction that decided them.
    removals: u64,
    pub(crate) log_end: u64,
    /// Lookups answered from the memo, and requests read (for tests and benchmarks).
    hits: u64,
    misses: u64,
}

impl<V> Default for Verdicts<V> {
    fn default() -> Self {
        Self {
            verdicts: HashMap::new(),
            origins: HashMap::new(),
            removals: 0,
            log_end: 0,
            hits: 0,
            misses: 0,
        }
    }
}

impl<V: Copy> Verdicts<V> {
    pub(crate) fn lookups(&self) -> (u64, u64) {
        (self.hits, self.misses)
    }

    pub(crate) fn forget(&mut self) {
        self.verdicts.clear();
        self.origins.clear();
    }

    /// Brings the verdicts to the state a new transaction sees: `same_rule` if they were decided
    /// with the rule(s) it uses, `removals` read after it began, `log` its change log.
    pub(crate) fn renew(
        &mut self,
        store: &Store,
        same_rule: bool,
        removals: u64,
        log: &impl ReadableTable<u64, &'static [u8]>,
    ) -> Result<()> {
        let end = match log.last().map_err(|e| store.err(e))? {
            Some((seq, _)) => seq.value(),
            None => 0,
        };
        if !same_rule || self.removals != removals || end < self.log_end {
            self.forget();
        } else if end > self.log_end && !self.verdicts.is_empty() {
            let mut changed = Vec::new();
            for item in log
                .range(self.log_end.saturating_add(1)..)
                .map_err(|e| store.err(e))?
            {
                if changed.len() >= CHANGES_CHECKED_MAX {
                    break;
                }
                let (_, key) = item.map_err(|e| store.err(e))?;
                changed.push(self.slot_of_key_bytes(key.value()));
            }
            if changed.len() >= CHANGES_CHECKED_MAX {
                self.forget();
            } else {
                for slot in changed.into_iter().flatten() {
                    self.verdicts.remove(&slot);
                }
            }
        }
        self.removals = removals;
        self.log_end = end;
        Ok(())
    }

    /// The verdict on a request, if remembered (counted as a hit).
    pub(crate) fn get(&mut self, key: &RecordKey) -> Option<V> {
        let slot = self.existing_slot(key.origin.as_bytes(), &key.entity, &key.id)?;
        let verdict = self.verdicts.get(&slot).copied();
        if verdict.is_some() {
            self.hits += 1;
        }
        verdict
    }

    /// Remembers the verdict on a request, `read` when the store was read for it.
    pub(crate) fn learn(&mut self, key: &RecordKey, verdict: V, read: bool) {
        if read {
            self.misses += 1;
        }
        if self.verdicts.len() >= VERDICTS_MAX {
            return;
        }
        if let Some(slot) = self.new_slot(key.origin.as_bytes(), &key.entity, &key.id) {
            self.verdicts.insert(slot, verdict);
        }
    }

    /// Remembers the verdict on a record just written under `kb` (`tables::key_bytes`), if it
    /// is a request; one the memo cannot hold is forgotten.
    pub(crate) fn learn_written(&mut self, kb: &[u8], verdict: V) {
        let Some((origin, id)) = request_parts(kb) else {
            return;
        };
        if self.verdicts.len() < VERDICTS_MAX
            && let Some(slot) = self.new_slot(origin, &Entity::Request, id)
        {
            self.verdicts.insert(slot, verdict);
        } else if let Some(slot) = self.existing_slot(origin, &Entity::Request, id) {
            self.verdicts.remove(&slot);
        }
    }

    fn existing_slot(&self, origin: &[u8; 32], entity: &Entity, id: &str) -> Option<u64> {
        if *entity != Entity::Request {
            return None;
        }
        let index = *self.origins.get(origin)?;
        Some(slot(index, numeric_id(id)?))
    }

    fn new_slot(&mut self, origin: &[u8; 32], entity: &Entity, id: &str) -> Option<u64> {
        if *entity != Entity::Request {
            return None;
        }
        let id = numeric_id(id)?;
        let count = self.origins.len();
        let index = match self.origins.entry(*origin) {
            Entry::Occupied(e) => *e.get(),
            Entry::Vacant(e) if count < ORIGINS_MAX => *e.insert(u16::try_from(count).ok()?),
            Entry::Vacant(_) => return None,
        };
        Some(slot(index, id))
    }

    /// The slot of a stored key (`tables::key_bytes`), if it is a request the memo may hold.
    fn slot_of_key_bytes(&self, key: &[u8]) -> Option<u64> {
        let (origin, id) = request_parts(key)?;
        self.existing_slot(origin, &Entity::Request, id)
    }
}

/// The origin and id of a stored request key (`tables::key_bytes`); `None` for other entities.
fn request_parts(key: &[u8]) -> Option<(&[u8; 32], &str)> {
    let origin: &[u8; 32] = key.get(..32)?.try_into().ok()?;
    let rest = key.get(32..)?;
    let name = Entity::Request.as_str().as_bytes();
    let id = rest.strip_prefix(name)?.strip_prefix(&[0u8])?;
    Some((origin, std::str::from_utf8(id).ok()?))
}

fn slot(origin_index: u16, id: u64) -> u64 {
    (u64::from(origin_index) << 48) | id
}

/// A request id the memo can hold: canonical decimal (no sign, no leading zero) up to
/// [`ID_MAX`], so that each slot stands for exactly one id. The app's ids are such numbers.
fn numeric_id(id: &str) -> Option<u64> {
    let bytes = id.as_bytes();
    if bytes.is_empty() || bytes.len() > 15 || (bytes.len() > 1 && bytes[0] == b'0') {
        return None;
    }
    if !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = id.parse().ok()?;
    (n <= ID_MAX).then_some(n)
}

impl Store {
    /// The removal counter a serving step reads after its transaction began (see
    /// [`Serving`]).
    pub(crate) fn removals(&self) -> u64 {
        self.removals.load(Ordering::Acquire)
    }

    /// Counts a removal of records without new log entries (a prune): called before the
    /// transaction that removes them commits.
    pub(crate) fn count_removal(&self) {
        self.removals.fetch_add(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use protocol::{Audience, PublicKey, Scope, SecretKey};

    use super::*;
    use crate::ApplyOptions;
    use crate::digest_tests::{NOW, comment_on, incoming, put, temp_store};

    /// One step of serving `to` as an untrusted peer: the log entry after `after` only.
    fn step(
        store: &Store,
        serving: &mut Serving,
        me: &SecretKey,
        to: &PublicKey,
        after: u64,
    ) -> (Vec<(Entity, String)>, u64) {
        let out = store
            .outgoing_serving(
                serving,
                &me.public(),
                Some(to),
                false,
                Audience { trusted: false },
                after,
                100,
                1,
            )
            .expect("outgoing");
        let sent = out.records.iter().map(|r| (r.entity.clone(), r.id.clone()));
        (sent.collect(), out.last_seq)
    }

    fn comment(id: &str) -> (Entity, String) {
        (Entity::Comment, id.to_string())
    }

    /// A request hidden between two steps of a pull: the comment served after that is withheld,
    /// though the step before answered from the memo that the request was public.
    #[test]
    fn a_request_hidden_between_two_steps_withholds_its_next_comment() {
        let me = SecretKey::from_bytes(&[1; 32]);
        let other = SecretKey::from_bytes(&[2; 32]);
        let peer = SecretKey::from_bytes(&[3; 32]).public();
        let (_dir, store) = temp_store(&me);
        put(&store, &me, Entity::Request, "7", Scope::Public, "");
        let on_7 = format!("{}/7", me.public().to_hex());
        let comments = [
            comment_on(&other, "1", &on_7),
            comment_on(&other, "2", &on_7),
        ];
        store
            .apply_batch(&comments, &ApplyOptions::new("peer", NOW))
            .expect("apply");
        let mut serving = Serving::default();
        let (sent, after) = step(&store, &mut serving, &me, &peer, 0);
        assert_eq!(sent, vec![(Entity::Request, "7".to_string())]);
        let (sent, after) = step(&store, &mut serving, &me, &peer, after);
        assert_eq!(sent, vec![comment("1")]);
        assert_eq!(
            serving.lookups(),
            (1, 0),
            "answered from what the scan learned"
        );

        put(&store, &me, Entity::Request, "7", Scope::Private, "");
        let (sent, _) = step(&store, &mut serving, &me, &peer, after);
        assert_eq!(sent, Vec::new(), "the comment would reveal the request");
        assert_eq!(serving.lookups(), (1, 1), "the request was read again");
    }

    /// A prune removes records without a log entry: a pull being served forgets what it
    /// learned, so a comment on a pruned hidden request goes by its own scope.
    #[test]
    fn a_prune_between_two_steps_is_not_answered_from_the_memo() {
        let me = SecretKey::from_bytes(&[1; 32]);
        let owner = SecretKey::from_bytes(&[2; 32]);
        let commenter = SecretKey::from_bytes(&[4; 32]);
        let peer = SecretKey::from_bytes(&[3; 32]).public();
        let (_dir, store) = temp_store(&me);
        let on_7 = format!("{}/7", owner.public().to_hex());
        let batch = [
            incoming(&owner, Entity::Request, "7", Scope::Trusted, NOW, false, ""),
            comment_on(&commenter, "1", &on_7),
        ];
        store
            .apply_batch(&batch, &ApplyOptions::new("peer", NOW))
            .expect("apply");
        let mut serving = Serving::default();
        let (sent, after) = step(&store, &mut serving, &me, &peer, 0);
        assert_eq!(
            sent,
            Vec::new(),
            "a trusted request does not go to an untrusted peer"
        );
        assert_eq!(serving.len(), 1);

        store
            .prune_origin(&me.public(), &owner.public(), false)
            .expect("prune");
        let (sent, _) = step(&store, &mut serving, &me, &peer, after);
        assert_eq!(sent, vec![comment("1")], "its request is no longer held");
        assert_eq!(serving.lookups(), (0, 1));
    }

    #[test]
    fn only_canonical_decimal_ids_have_a_slot() {
        assert_eq!(numeric_id("0"), Some(0));
        assert_eq!(numeric_id("42"), Some(42));
        assert_eq!(numeric_id("281474976710655"), Some(ID_MAX));
        for id in [
            "",
            "042",
            "00",
            "+4",
            "-4",
            "4a",
            " 4",
            "281474976710656",
            "1e3",
        ] {
            assert_eq!(numeric_id(id), None, "{id:?}");
        }
    }
}
