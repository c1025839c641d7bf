//! What serving one peer remembers between the steps of a pull ([`Serving`]): whether each
//! request met so far is hidden from the peer's audience, so that a comment on it does not read
//! the request again (`leaving`: a comment goes only where its request goes).
//!
//! Each step reads the store in its own read transaction. A verdict learned in one is used in
//! the next only if the request cannot have changed in between:
//! - every write of a record appends a log entry with a sequence above every earlier one, so
//!   the entries after the last sequence the previous step saw name every key written since,
//!   and their verdicts are dropped;
//! - a prune removes records and their log entries without a new entry: it counts itself in
//!   [`Store`]'s removal counter before it commits, and a step that sees the counter moved
//!   forgets everything (the counter is read after the step's transaction began, so a prune the
//!   transaction sees is always counted);
//! - a different rule (our key replaced, the peer owed withdrawals) forgets everything too.

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
    verdicts: HashMap<u64, bool>,
    origins: HashMap<[u8; 32], u16>,
    /// What the verdicts were decided for: the rule, the removal counter and the last log
    /// sequence of the transaction that decided them.
    rule: Option<Rule>,
    removals: u64,
    log_end: u64,
    /// Lookups answered from the memo, and requests read (for tests and benchmarks).
    hits: u64,
    misses: u64,
}

impl Serving {
    /// Lookups answered by the memo and lookups that read the store, over the whole pull.
    pub fn lookups(&self) -> (u64, u64) {
        (self.hits, self.misses)
    }

    /// Verdicts held now.
    pub fn len(&self) -> usize {
        self.verdicts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.verdicts.is_empty()
    }

    fn forget(&mut self) {
        self.verdicts.clear();
        self.origins.clear();
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
        let end = match log.last().map_err(|e| store.err(e))? {
            Some((seq, _)) => seq.value(),
            None => 0,
        };
        if self.rule.as_ref() != Some(rule) || self.removals != removals || end < self.log_end {
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
        self.rule = Some(rule.clone());
        self.removals = removals;
        self.log_end = end;
        Ok(())
    }

    /// The verdict on a request, if remembered (counted as a hit).
    pub(crate) fn get(&mut self, key: &RecordKey) -> Option<bool> {
        let slot = self.existing_slot(key.origin.as_bytes(), &key.entity, &key.id)?;
        let verdict = self.verdicts.get(&slot).copied();
        if verdict.is_some() {
            self.hits += 1;
        }
        verdict
    }

    /// Remembers whether a request is hidden (`hidden`), `read` when the store was read for it.
    pub(crate) fn learn(&mut self, key: &RecordKey, hidden: bool, read: bool) {
        if read {
            self.misses += 1;
        }
        if self.verdicts.len() >= VERDICTS_MAX {
            return;
        }
        if let Some(slot) = self.new_slot(key.origin.as_bytes(), &key.entity, &key.id) {
            self.verdicts.insert(slot, hidden);
        }
    }

    /// Remembers the verdict on a request read by the step's scan of the log.
    pub(crate) fn learn_scanned(&mut self, rule: &Rule, record: &Record) {
        if record.entity == Entity::Request {
            self.learn(&record.key(), !rule.by_scope(record), false);
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
        let origin: &[u8; 32] = key.get(..32)?.try_into().ok()?;
        let rest = key.get(32..)?;
        let name = Entity::Request.as_str().as_bytes();
        let id = rest.strip_prefix(name)?.strip_prefix(&[0u8])?;
        let id = std::str::from_utf8(id).ok()?;
        self.existing_slot(origin, &Entity::Request, id)
    }
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
    use crate::digest_tests::{NOW, incoming, put, temp_store};

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
            incoming(
                &other,
                Entity::Comment,
                "1",
                Scope::Public,
                NOW,
                false,
                &on_7,
            ),
            incoming(
                &other,
                Entity::Comment,
                "2",
                Scope::Public,
                NOW,
                false,
                &on_7,
            ),
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
            incoming(
                &commenter,
                Entity::Comment,
                "1",
                Scope::Public,
                NOW,
                false,
                &on_7,
            ),
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
