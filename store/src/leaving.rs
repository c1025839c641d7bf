//! What leaves the instance (§4): the one rule for sync (`Store::outgoing`, which a hub serves
//! too) and bundle exports (`bundles::export`).
//!
//! `protocol::may_receive` decides on a record alone (its scope, its origin, the audience);
//! this adds what needs the store: a comment goes only where its request goes, and our own
//! records carry `Contact-*` values out only if the operator allowed them (§4).

use protocol::{
    Audience, PublicKey, Record, RecordKey, may_receive, may_receive_withdrawal, sent_on_behalf_of,
};

use crate::error::Result;

/// Why a record does not leave as itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Withheld {
    /// Its scope (or draft status, or missing signature) keeps it from this audience.
    Scope,
    /// A comment whose request is held here and does not go to this audience as itself
    /// (private, a draft, trusted for another audience, or sent as its withdrawal): the comment
    /// would reveal the request.
    HiddenRequest,
    /// One of our records holding `Contact-*` values the operator did not let leave
    /// (`--allow-contact`): a record written before that was enforced at write time.
    Contact,
}

/// What the rule needs to read from the store.
pub(crate) trait Lookup {
    /// The stored version of a record (tombstones included), if any.
    fn record(&mut self, key: &RecordKey) -> Result<Option<Record>>;
    /// Whether the operator let this record's `Contact-*` values leave.
    fn contact_allowed(&mut self, key: &RecordKey) -> Result<bool>;
    /// Whether a request is held here and does not go to `rule`'s audience as itself (a lookup
    /// may answer from what it remembers: `db::serving`).
    fn request_hidden(&mut self, rule: &Rule, key: &RecordKey) -> Result<bool> {
        Ok(rule.hides(self.record(key)?.as_ref()))
    }
}

/// The rule for one audience.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Rule {
    /// This instance's key.
    pub sender: PublicKey,
    /// Keys it replaced: their withdrawals are still its own (`protocol::sent_on_behalf_of`).
    pub former: Vec<PublicKey>,
    pub audience: Audience,
    /// The receiver was served trusted records and is no longer trusted: it may also receive
    /// trusted withdrawals (`protocol::may_receive_withdrawal`).
    pub owed: bool,
}

impl Rule {
    /// Whether `r` may go to the audience as itself; `Err(why)` if not.
    ///
    /// A comment goes only where its request goes. A comment on a request that is not held
    /// here goes by its own scope: nothing held here is revealed by it, and whatever instance
    /// holds the request applies the same rule (its origin withholds comments on a hidden
    /// request of its own).
    pub(crate) fn check(
        &self,
        r: &Record,
        lookup: &mut dyn Lookup,
    ) -> Result<std::result::Result<(), Withheld>> {
        if !self.by_scope(r) {
            return Ok(Err(Withheld::Scope));
        }
        if let Some(request) = r.commented_request()
            && lookup.request_hidden(self, &request)?
        {
            return Ok(Err(Withheld::HiddenRequest));
        }
        if r.origin == self.sender
            && !protocol::contact::named_contact_fields(r).is_empty()
            && !lookup.contact_allowed(&r.key())?
        {
            return Ok(Err(Withheld::Contact));
        }
        Ok(Ok(()))
    }

    /// Whether `request` (the stored version of a request, if held) keeps its comments from
    /// the audience: it is held and does not go to it as itself.
    pub(crate) fn hides(&self, request: Option<&Record>) -> bool {
        request.is_some_and(|q| !self.by_scope(q))
    }

    /// The part of the rule that reads nothing but the record: `protocol::may_receive` (and,
    /// for a peer owed them, trusted withdrawals), on behalf of the key that signed it.
    pub(crate) fn by_scope(&self, r: &Record) -> bool {
        let sender = sent_on_behalf_of(r, &self.sender, &self.former);
        may_receive(r, sender, self.audience) || (self.owed && may_receive_withdrawal(r, sender))
    }
}
