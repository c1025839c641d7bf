//! Revocations that travel, on the network's side: the registry a session's decisions read is
//! [`store::revocations::effective_peers`] (keys revoked by a followed revoker's announcement are
//! revoked, as with `Revoked: yes`), read per session like the registry itself, so an
//! announcement applies from the next session on. Each revocation that starts or stops
//! applying is logged once per process and instance key.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Mutex;

use protocol::PublicKey;
use protocol::revocation::Revocation;
use store::{Peer, Store};
use tracing::{info, warn};

use crate::NodeError;

/// `(revoker, revoked)` of the revocations applied at the last read, per instance key (several
/// nodes share one test process).
type AppliedByInstance = HashMap<PublicKey, BTreeSet<([u8; 32], [u8; 32])>>;

/// The revocations applied at the last read: only changes are logged.
static APPLIED: Mutex<Option<AppliedByInstance>> = Mutex::new(None);

/// The registry `peers` as decisions see it: with the revocations applied that revokers it
/// follows (registry peers with `Follow-Revocations: yes`, and `extra`, a hub's
/// `--follow-revocations`) announced. A revocation of `own` is never applied.
pub fn effective(
    store: &Store,
    peers: &[Peer],
    extra: &[PublicKey],
    own: &PublicKey,
) -> Result<Vec<Peer>, NodeError> {
    let (view, applied) = store::revocations::effective_peers(store, peers, extra, own)?;
    log_changes(own, &view, &applied);
    Ok(view)
}

/// The keys whose records are not taken: [`effective`]'s revoked keys.
pub fn revoked_keys(
    store: &Store,
    peers: &[Peer],
    own: &PublicKey,
) -> Result<HashSet<PublicKey>, NodeError> {
    Ok(protocol::peers::revoked_keys(&effective(
        store,
        peers,
        &[],
        own,
    )?))
}

fn log_changes(own: &PublicKey, view: &[Peer], applied: &[Revocation]) {
    let now: BTreeSet<([u8; 32], [u8; 32])> = applied
        .iter()
        .map(|r| (*r.revoker.as_bytes(), *r.revoked.as_bytes()))
        .collect();
    let mut guard = APPLIED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let before = guard
        .get_or_insert_with(HashMap::new)
        .entry(*own)
        .or_default();
    if *before == now {
        return;
    }
    let name = |key: &PublicKey| {
        view.iter()
            .find(|p| p.public_key == *key)
            .map_or_else(|| key.key_id(), |p| p.name.clone())
    };
    for r in applied {
        if !before.contains(&(*r.revoker.as_bytes(), *r.revoked.as_bytes())) {
            warn!(
                revoked = %name(&r.revoked),
                revoked_key_id = %r.revoked.key_id(),
                revoker = %name(&r.revoker),
                reason = %r.reason,
                revoked_at = %r.revoked_at,
                "applied a revocation announced by a followed revoker: the key is refused"
            );
        }
    }
    for (revoker, revoked) in before.difference(&now) {
        let (Ok(revoker), Ok(revoked)) = (
            PublicKey::from_bytes(*revoker),
            PublicKey::from_bytes(*revoked),
        ) else {
            continue;
        };
        info!(
            revoked = %name(&revoked),
            revoker = %name(&revoker),
            "a revocation no longer applies (withdrawn, or its revoker is no longer followed)"
        );
    }
    *before = now;
}
