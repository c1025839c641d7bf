//! Withdrawing our trusted records from a peer that is no longer trusted (§4): called before
//! serving a pull, in both directions of a session.

use std::sync::Arc;

use protocol::wire::Cursor;
use protocol::{Audience, PublicKey, SecretKey};
use store::Store;

use crate::NodeError;

/// Call before serving `peer` a pull (`cursor`: the one it sent). A peer that was served our
/// trusted records and is no longer trusted is owed their withdrawals: the first time, our
/// trusted records are re-versioned behind fresh signed withdrawals, which this pull and the
/// next ones carry until the peer's cursor has passed them (see
/// `Store::withdraw_from_untrusted`). Does nothing (one read) in the usual case. Returns how
/// many records were re-versioned.
pub async fn settle_trust(
    store: &Arc<Store>,
    key: &SecretKey,
    peer: PublicKey,
    audience: Audience,
    cursor: Cursor,
) -> Result<u64, NodeError> {
    let s = store.clone();
    let key = key.clone();
    let moved = tokio::task::spawn_blocking(move || {
        s.withdraw_from_untrusted(
            &key,
            &peer,
            audience.trusted,
            &cursor,
            store::time::now_ms(),
        )
    })
    .await
    .map_err(|e| NodeError::Internal(e.to_string()))??;
    if moved > 0 {
        tracing::info!(
            peer = %peer.key_id(),
            moved,
            "peer no longer trusted: our trusted records get withdrawals for it"
        );
    }
    Ok(moved)
}
