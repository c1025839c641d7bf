//! What a finished session leaves behind, whichever side started it (a node, a hub, a one-shot
//! sync): the peer's runtime state (last sync or last error, counters), the session metrics,
//! and the end of a restore's recovery from that peer.

use std::sync::Arc;

use protocol::PublicKey;
use store::{Store, time};
use tracing::{info, warn};

use crate::NodeError;
use crate::metrics::Side;
use crate::session::PullStats;

/// Keeps a peer's runtime state: last sync or last error, counters; and counts the session
/// for the metrics.
pub(crate) async fn record_session(
    store: &Arc<Store>,
    peer: PublicKey,
    side: Side,
    sent: u64,
    received: &PullStats,
    error: Option<&NodeError>,
) {
    crate::metrics::session_ended(side, error, sent);
    let error = error.map(ToString::to_string);
    let s = store.clone();
    let received = received.received;
    let result = tokio::task::spawn_blocking(move || {
        s.update_peer_state(&peer, |st| {
            let now = time::now_ms();
            st.sent += sent;
            st.received += received;
            match error {
                None => st.last_sync_ms = Some(now),
                Some(e) => {
                    // Errors can quote a peer (close reasons, its messages): bounded, escaped.
                    st.last_error = Some(protocol::text::bounded_text(
                        &e,
                        protocol::text::STORED_ERROR_MAX_CHARS,
                    ));
                    st.last_error_ms = Some(now);
                }
            }
        })
    })
    .await;
    if let Ok(Err(e)) = result {
        warn!("cannot record the session: {e}");
    }
}

/// A full pull from `peer` completed while asking for our own records back (after a restore):
/// the next sessions with it no longer ask.
pub(crate) async fn mark_recovered(store: &Arc<Store>, peer: PublicKey) -> Result<(), NodeError> {
    let s = store.clone();
    tokio::task::spawn_blocking(move || s.mark_recovered(&peer))
        .await
        .map_err(|e| NodeError::Internal(e.to_string()))??;
    info!(peer = %peer.key_id(), "own records recovered from this peer after a restore");
    Ok(())
}
