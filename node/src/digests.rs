//! State digests at the end of a session (issue 12, item 3), when both `Hello`s named
//! `protocol::wire::capability::DIGESTS`:
//!
//! ```text
//! dialer                                  listener
//!   Digests{offer} ──────────────────────►
//!            ◄──────────────────────────── Digests{offer, held}
//!   Digests{held} ───────────────────────►
//! ```
//!
//! `offer`: what the sender would send the receiver (`store::StoreDigests::offer`); `held`: what
//! the sender holds of the classes the receiver offered or may see
//! (`StoreDigests::held_report`). Each side then compares (`store::digest::compare`) and keeps
//! the outcome in the peer's state, which `wb sync status` shows.

use std::sync::Arc;

use protocol::PublicKey;
use protocol::wire::{DIGEST_ENTRIES_MAX, DigestEntry, Message};
use store::digest::{compare, entries};
use store::{PeerDigests, Store, StoreDigests};
use tracing::info;

use crate::NodeError;
use crate::session::Channel;

/// Our digests, read on a blocking thread.
async fn ours(store: &Arc<Store>) -> Result<StoreDigests, NodeError> {
    let s = store.clone();
    tokio::task::spawn_blocking(move || s.digests())
        .await
        .map_err(|e| NodeError::Internal(e.to_string()))?
        .map_err(NodeError::from)
}

/// The peer's next message, which must be `Digests`.
async fn expect_digests(ch: &mut Channel) -> Result<PeerDigests, NodeError> {
    match ch.expect("Digests").await? {
        Message::Digests {
            trusted,
            offer,
            held,
            more,
        } => Ok(PeerDigests {
            trusted,
            offer,
            held,
            more,
        }),
        other => Err(NodeError::Protocol {
            peer: ch.peer().to_string(),
            reason: format!("expected Digests, got {}", other.kind()),
        }),
    }
}

/// What we offer `peer`, as a message's list.
fn offer_list(ours: &StoreDigests, peer: &PublicKey, trusted: bool) -> (Vec<DigestEntry>, bool) {
    entries(&ours.offer(peer, trusted), DIGEST_ENTRIES_MAX)
}

/// The dialer's side, after its pull and push. `trusted`: we serve the peer as trusted.
pub(crate) async fn exchange(
    ch: &mut Channel,
    store: &Arc<Store>,
    me: PublicKey,
    peer: PublicKey,
    trusted: bool,
) -> Result<(), NodeError> {
    let ours = ours(store).await?;
    let (offer, more_offer) = offer_list(&ours, &peer, trusted);
    ch.send(&Message::Digests {
        trusted,
        offer,
        held: Vec::new(),
        more: more_offer,
    })
    .await?;
    let mut theirs = expect_digests(ch).await?;
    let (held, more_held) = entries(
        &ours.held_report(&me, &peer, &theirs.offer),
        DIGEST_ENTRIES_MAX,
    );
    ch.send(&Message::Digests {
        trusted,
        offer: Vec::new(),
        held,
        more: more_held,
    })
    .await?;
    theirs.more |= more_offer || more_held;
    keep(store, &ours, me, peer, trusted, theirs, true).await
}

/// The listener's side: the dialer's first `Digests` came (`offer`); answer, read its
/// report of what it holds, compare. `record`: keep the outcome (a known peer).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn answer(
    ch: &mut Channel,
    store: &Arc<Store>,
    me: PublicKey,
    peer: PublicKey,
    trusted: bool,
    first: PeerDigests,
    record: bool,
) -> Result<(), NodeError> {
    let ours = ours(store).await?;
    let (offer, more_offer) = offer_list(&ours, &peer, trusted);
    let (held, more_held) = entries(
        &ours.held_report(&me, &peer, &first.offer),
        DIGEST_ENTRIES_MAX,
    );
    ch.send(&Message::Digests {
        trusted,
        offer,
        held,
        more: more_offer || more_held,
    })
    .await?;
    let report = expect_digests(ch).await?;
    let theirs = PeerDigests {
        trusted: first.trusted,
        offer: first.offer,
        held: report.held,
        more: first.more || report.more || more_offer || more_held,
    };
    keep(store, &ours, me, peer, trusted, theirs, record).await
}

/// Compares and, with `record`, keeps the outcome in the peer's state.
async fn keep(
    store: &Arc<Store>,
    ours: &StoreDigests,
    me: PublicKey,
    peer: PublicKey,
    trusted: bool,
    theirs: PeerDigests,
    record: bool,
) -> Result<(), NodeError> {
    let outcome = compare(ours, &me, &peer, trusted, &theirs, store::time::now_ms());
    info!(
        differences = outcome.differences_total,
        complete = outcome.complete,
        "state digests compared"
    );
    if !record {
        return Ok(());
    }
    let s = store.clone();
    tokio::task::spawn_blocking(move || {
        s.update_peer_state(&peer, |st| st.digests = Some(outcome))
    })
    .await
    .map_err(|e| NodeError::Internal(e.to_string()))??;
    Ok(())
}

/// Turns a received `Digests` into what [`answer`] takes.
pub(crate) fn first(message: Message) -> Option<PeerDigests> {
    match message {
        Message::Digests {
            trusted,
            offer,
            held,
            more,
        } => Some(PeerDigests {
            trusted,
            offer,
            held,
            more,
        }),
        _ => None,
    }
}
