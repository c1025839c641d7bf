//! Privacy scopes (§4).

use std::fmt;
use std::str::FromStr;

use crate::ProtocolError;

/// Who may receive a record. New records default to [`Scope::Private`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Scope {
    /// Never leaves the instance.
    #[default]
    Private,
    /// Only to peers the operator marked trusted, over a direct connection or a `--for` export.
    Trusted,
    /// To any peer, hub or public export.
    Public,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Private, Scope::Trusted, Scope::Public];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Private => "private",
            Scope::Trusted => "trusted",
            Scope::Public => "public",
        }
    }

    pub(crate) fn to_byte(self) -> u8 {
        match self {
            Scope::Private => 0,
            Scope::Trusted => 1,
            Scope::Public => 2,
        }
    }

    pub(crate) fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(Scope::Private),
            1 => Some(Scope::Trusted),
            2 => Some(Scope::Public),
            _ => None,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = ProtocolError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "private" => Ok(Scope::Private),
            "trusted" => Ok(Scope::Trusted),
            "public" => Ok(Scope::Public),
            _ => Err(ProtocolError::BadScope(s.to_string())),
        }
    }
}

/// Who receives a record on the way out: a peer over a direct connection, a hub, or an export.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Audience {
    /// The receiver is a peer this instance's operator marked trusted (direct connection or an
    /// export made `--for` it). Hubs and unknown peers are never trusted.
    pub trusted: bool,
}

/// The privacy invariant (§4), checked here and nowhere else on the way out: a record reaches a
/// party only if its current scope allows that party.
///
/// - `private` never leaves; draft requests count as private (they are never synced).
/// - `trusted` goes only from its origin (`sender`) to a trusted audience: trust is the origin
///   operator's choice, so nobody relays another instance's trusted records.
/// - `public` goes to everyone, relayed records included.
/// - Records without their origin's signature (taken from app bundles) never leave: nobody else
///   could verify them.
pub fn may_receive(record: &crate::Record, sender: &crate::PublicKey, audience: Audience) -> bool {
    if record.signature.is_none() {
        return false;
    }
    match record.effective_scope() {
        Scope::Private => false,
        Scope::Trusted => audience.trusted && record.origin == *sender,
        Scope::Public => true,
    }
}

/// The one exception to [`may_receive`], for withdrawals only: a party that was served trusted
/// records and is no longer trusted may receive the withdrawals of trusted records, so that it
/// deletes the copies it holds. A withdrawal here is a signed tombstone from its origin
/// (`sender`) with no fields and no body: it carries the record's key, scope and version,
/// never its content. The caller decides who is owed withdrawals (the store remembers which
/// peers were served trusted records).
pub fn may_receive_withdrawal(record: &crate::Record, sender: &crate::PublicKey) -> bool {
    is_withdrawal(record) && record.origin == *sender && record.effective_scope() == Scope::Trusted
}

/// A signed tombstone with no fields and no body: it carries a record's key, scope and version,
/// never its content.
pub fn is_withdrawal(record: &crate::Record) -> bool {
    record.signature.is_some()
        && record.deleted
        && record.fields.is_empty()
        && record.body.is_empty()
}

/// The key a record is sent on behalf of, for [`may_receive`] and [`may_receive_withdrawal`]:
/// `sender`, except for a withdrawal signed by one of `former` — keys this instance replaced
/// (`wb sync keygen --force`). Those withdrawals are the instance's own, so they go where its
/// withdrawals go (trusted ones to trusted peers too), and parties holding records signed by
/// the old key delete them. Nothing but withdrawals is ever sent on behalf of a former key.
pub fn sent_on_behalf_of<'a>(
    record: &'a crate::Record,
    sender: &'a crate::PublicKey,
    former: &[crate::PublicKey],
) -> &'a crate::PublicKey {
    if is_withdrawal(record) && former.contains(&record.origin) {
        &record.origin
    } else {
        sender
    }
}

/// What a receiver takes from `peer` (it checks again what the sender checked): never a private
/// record; a trusted one only from its origin, or as a withdrawal (signed by its origin, without
/// content: it can only delete a copy of that origin's record, and is how an instance that
/// replaced its key withdraws what the old key signed); public ones from anyone.
pub fn may_accept(record: &crate::Record, peer: &crate::PublicKey) -> bool {
    match record.effective_scope() {
        Scope::Private => false,
        Scope::Trusted => record.origin == *peer || is_withdrawal(record),
        Scope::Public => true,
    }
}
