//! What a hub takes from an instance that offers ([`Intake`]): public, signed records of
//! origins it admits, and on a closed hub those of an allowed instance's former keys.

use std::collections::HashSet;
use std::sync::Arc;

use protocol::{PublicKey, Record, Scope};
use store::Store;

use crate::NodeError;

/// Whose records a hub takes, read from its registry when an instance offers: never a revoked
/// origin's; on a closed hub, only its allowed origins' (the registry's keys that are not
/// revoked), whoever relays them; on an open hub, any other origin, within
/// [`super::NEW_ORIGINS_PER_CONNECTION_MAX`] new ones per connection (`NewOrigins`).
#[derive(Clone, Debug)]
pub struct Intake {
    pub(super) revoked: Arc<HashSet<PublicKey>>,
    /// `None` on an open hub.
    pub(super) allowed: Option<HashSet<PublicKey>>,
}

impl Intake {
    /// On a closed hub, allows the origins of `batch` that are former keys of allowed
    /// instances: a succession (verified, in the batch or held) leads from them to an allowed
    /// key, so the old key's withdrawals and the succession itself are taken.
    pub(super) fn allow_former_keys(
        &mut self,
        store: &Store,
        batch: &[Record],
    ) -> Result<(), NodeError> {
        let Some(allowed) = &mut self.allowed else {
            return Ok(());
        };
        let outside: HashSet<PublicKey> = batch
            .iter()
            .map(|r| r.origin)
            .filter(|o| !allowed.contains(o) && !self.revoked.contains(o))
            .collect();
        if outside.is_empty() {
            return Ok(());
        }
        let mut successions: Vec<protocol::succession::Succession> = batch
            .iter()
            .filter(|r| r.entity.as_str() == protocol::succession::ENTITY && r.verify().is_ok())
            .filter_map(protocol::succession::Succession::from_record)
            .collect();
        successions.extend(store::successions::held_from(
            store,
            outside.iter().copied(),
        )?);
        loop {
            let before = allowed.len();
            for s in &successions {
                if outside.contains(&s.predecessor) && allowed.contains(&s.successor) {
                    allowed.insert(s.predecessor);
                }
            }
            if allowed.len() == before {
                break;
            }
        }
        Ok(())
    }

    /// Whether the hub takes records of `origin` at all: not revoked and, on a closed hub,
    /// allowed (an allowed instance's former keys aside: see [`Self::allow_former_keys`]).
    pub(crate) fn takes_origin(&self, origin: &[u8; 32]) -> bool {
        !self.revoked.contains(origin)
            && self
                .allowed
                .as_ref()
                .is_none_or(|allowed| allowed.contains(origin))
    }

    /// Why the hub does not take `record` (checks that need no store), if it does not: public
    /// records (and public withdrawals) only, signed, of an origin neither revoked nor, on a
    /// closed hub, missing from the allowlist.
    pub(super) fn refusal(&self, record: &Record) -> Option<&'static str> {
        if record.effective_scope() != Scope::Public || record.signature.is_none() {
            Some("not public and signed")
        } else if self.revoked.contains(&record.origin) {
            Some("of a revoked origin")
        } else if !self.takes_origin(record.origin.as_bytes()) {
            Some("of an origin not on the hub's allowlist")
        } else {
            None
        }
    }
}
