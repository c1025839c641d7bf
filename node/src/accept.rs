//! The accept side of a `wb-sync/1` session, shared by a node ([`crate::node`]) and a hub
//! ([`crate::hub`]): the dialer's stream and `Hello` under a time limit and our `Hello` back, the
//! answer to a message out of place, and the end of a session: recorded and closed cleanly, or
//! closed with a code that tells the dialer what went wrong.

use std::sync::Arc;
use std::time::Duration;

use iroh::endpoint::Connection;
use protocol::PublicKey;
use protocol::wire::{Message, Role, capability, code};
use store::Store;

use crate::NodeError;
use crate::metrics::Side;
use crate::outcome::record_session;
use crate::session::{Channel, Deadlines, PeerHello, PullStats, expect_hello_at};

/// `Pull`s and `Offer`s one session may make: a dialer makes one of each. More would let one
/// connection cost a store read and write per tiny frame.
pub(crate) const REQUESTS_PER_SESSION_MAX: u32 = 4;
/// How long a finished session waits for the peer to close before giving up.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Takes the stream the dialer opens on `conn`, expects its `Hello` within one message's
/// deadline and answers with ours, as `role` (asking for our own records back with `ask_own`:
/// see `Store::recovering_from`); the session then runs under `deadlines`. `name` is the peer
/// as logs and errors show it. Returns the channel, the peer's epoch, the role its `Hello`
/// claims, whether it asks for its own records back and whether both sides compare state
/// digests (we name [`capability::DIGESTS`], or as a hub [`capability::HUB_DIGESTS`]; the
/// dialer names `DIGESTS`).
/// `received`: the dialer's stream and `Hello` if they were already read ([`receive_hello`]:
/// an unknown key's, to see whether it succeeds a known one).
pub(crate) async fn accept_hello(
    conn: &Connection,
    name: &str,
    store: &Store,
    (role, ask_own): (Role, bool),
    deadlines: Deadlines,
    received: Option<(Channel, PeerHello)>,
) -> Result<(Channel, [u8; 16], Role, bool, bool), NodeError> {
    let (mut ch, peer) = match received {
        Some(received) => received,
        None => receive_hello(conn, name, deadlines).await?,
    };
    let mut capabilities: Vec<&str> = Vec::new();
    if ask_own {
        capabilities.push(capability::OWN_RECORDS);
    }
    capabilities.push(if role == Role::Hub {
        capability::HUB_DIGESTS
    } else {
        capability::DIGESTS
    });
    ch.send(
        &Message::hello_with(store.epoch().0, role, &capabilities).with_time(store::time::now_ms()),
    )
    .await?;
    Ok((ch, peer.epoch, peer.role, peer.own, peer.digests))
}

/// Takes the stream the dialer opens on `conn` and expects its `Hello`, within one message's
/// deadline; `name` is the peer as errors show it.
pub(crate) async fn receive_hello(
    conn: &Connection,
    name: &str,
    deadlines: Deadlines,
) -> Result<(Channel, PeerHello), NodeError> {
    let hello = async {
        let (send, recv) = conn.accept_bi().await.map_err(|e| NodeError::Lost {
            peer: name.to_string(),
            reason: e.to_string(),
        })?;
        let mut ch = Channel::with_deadlines(name.to_string(), send, recv, deadlines);
        let hello = expect_hello_at(&mut ch).await?;
        Ok::<_, NodeError>((ch, hello))
    };
    tokio::time::timeout(deadlines.message, hello)
        .await
        .map_err(|_| NodeError::Timeout {
            peer: name.to_string(),
            step: "waiting for Hello".into(),
            limit: format!("{} s per message", deadlines.message.as_secs_f64()),
        })?
}

/// Answers a message the session does not expect (best effort) and returns the error that
/// ends the session.
pub(crate) async fn unexpected(ch: &mut Channel, message: &Message) -> NodeError {
    let reason = format!("unexpected {}", message.kind());
    ch.send_error(code::PROTOCOL_VIOLATION, reason.clone())
        .await;
    NodeError::Protocol {
        peer: ch.peer().to_string(),
        reason,
    }
}

/// Ends the session of a dialer that made more than [`REQUESTS_PER_SESSION_MAX`] requests.
pub(crate) async fn too_many_requests(ch: &mut Channel) -> NodeError {
    let reason = format!("more than {REQUESTS_PER_SESSION_MAX} requests in one session");
    ch.send_error(code::PROTOCOL_VIOLATION, reason.clone())
        .await;
    NodeError::Protocol {
        peer: ch.peer().to_string(),
        reason,
    }
}

/// Ends a session that went well: records it in the peer's state (with `record`), finishes
/// our side of the stream and waits (at most [`CLOSE_WAIT`]) for the peer to close.
pub(crate) async fn end_session(
    conn: &Connection,
    mut ch: Channel,
    store: &Arc<Store>,
    remote: PublicKey,
    sent: u64,
    received: &PullStats,
    record: bool,
) {
    if record {
        record_session(store, remote, Side::Accepted, sent, received, None).await;
    } else {
        crate::metrics::session_ended(Side::Accepted, None, sent);
    }
    ch.finish().await;
    let _ = tokio::time::timeout(CLOSE_WAIT, conn.closed()).await;
}

/// Closes the connection of a session that failed with `e`. The close code tells the dialer
/// what happened (an `Error` message queued just before would be discarded by the close);
/// `role` is what the reason calls us: "node" or "hub".
pub(crate) fn close_with_error(conn: &Connection, e: &NodeError, role: &str) {
    let (code, reason) = match e {
        NodeError::VersionMismatch { ours, theirs, .. } => (
            code::VERSION_MISMATCH,
            format!("this {role} speaks wb-sync major version {ours}, not {theirs}"),
        ),
        NodeError::Protocol { reason, .. } => (code::PROTOCOL_VIOLATION, reason.clone()),
        NodeError::Lost { .. } => (code::PROTOCOL_VIOLATION, "connection lost".into()),
        NodeError::Timeout { step, limit, .. } => (
            code::PROTOCOL_VIOLATION,
            format!("too slow: {step} took longer than the {role}'s deadline ({limit})"),
        ),
        _ => (code::INTERNAL, format!("internal error on the {role}")),
    };
    conn.close(code.into(), reason.as_bytes());
}
