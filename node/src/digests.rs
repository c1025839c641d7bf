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
//! the outcome in the peer's state, which `wb sync status` (and a hub's `wb hub status`) shows.
//!
//! With a hub (`capability::HUB_DIGESTS`), the instance dials and the hub answers, and both
//! compare over the origins the hub takes only (`store::digest::compare_within`): the hub's
//! answer lists exactly the origins of the instance's offer its intake takes (what it holds of
//! them, even nothing) and what it offers, and the instance reads from that list which origins
//! the hub takes (`store::digest::taken_by_hub`).

use std::sync::Arc;

use protocol::PublicKey;
use protocol::wire::{DIGEST_ENTRIES_MAX, DigestEntry, Message};
use store::digest::{compare_within, entries, taken_by_hub};
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

/// What a hub's side compares over: the origins its intake takes.
pub(crate) type Takes = dyn Fn(&[u8; 32]) -> bool + Send + Sync;

/// The dialer's side, after its pull and push. `trusted`: we serve the peer as trusted.
/// `hub`: the peer is a hub (`capability::HUB_DIGESTS`), compared with over the origins it
/// takes.
pub(crate) async fn exchange(
    ch: &mut Channel,
    store: &Arc<Store>,
    (me, peer): (PublicKey, PublicKey),
    trusted: bool,
    hub: bool,
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
    let taken = hub.then(|| taken_by_hub(&theirs));
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
    let takes = move |o: &[u8; 32]| taken.as_ref().is_none_or(|t| t.contains(o));
    keep(store, &ours, (me, peer), trusted, theirs, true, &takes).await
}

/// The listener's side: the dialer's first `Digests` came (`offer`); answer, read its
/// report of what it holds, compare. `record`: keep the outcome (a known peer). `takes`: a
/// hub's intake (see the module documentation); `None` for a node.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn answer(
    ch: &mut Channel,
    store: &Arc<Store>,
    (me, peer): (PublicKey, PublicKey),
    trusted: bool,
    first: PeerDigests,
    record: bool,
    takes: Option<&Takes>,
) -> Result<(), NodeError> {
    let ours = ours(store).await?;
    let (offer, more_offer) = offer_list(&ours, &peer, trusted);
    let mut held_report = ours.held_report(&me, &peer, &first.offer);
    // A hub also counts the origins it holds live records of (an allowed instance's former
    // key; an origin since left off its allowlist, still served until pruned).
    let holds = if takes.is_some() {
        ours.origins()
    } else {
        Default::default()
    };
    let takes = |o: &[u8; 32]| takes.is_none_or(|t| t(o) || holds.contains(o));
    held_report.retain(|(o, _), _| takes(o));
    let (held, more_held) = entries(&held_report, DIGEST_ENTRIES_MAX);
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
    keep(store, &ours, (me, peer), trusted, theirs, record, &takes).await
}

/// Compares over the origins `takes` accepts and, with `record`, keeps the outcome in the
/// peer's state.
async fn keep(
    store: &Arc<Store>,
    ours: &StoreDigests,
    (me, peer): (PublicKey, PublicKey),
    trusted: bool,
    theirs: PeerDigests,
    record: bool,
    takes: &(dyn Fn(&[u8; 32]) -> bool + Sync),
) -> Result<(), NodeError> {
    let outcome = compare_within(
        ours,
        &me,
        &peer,
        trusted,
        &theirs,
        store::time::now_ms(),
        takes,
    );
    info!(
        differences = outcome.differences_total,
        complete = outcome.complete,
        not_taken = outcome.not_taken.len(),
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
