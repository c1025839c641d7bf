//! The accept side of a `wb-sync/1` session, shared by a node ([`crate::node`]) and a hub
//! ([`crate::hub`]): the dialer's stream and `Hello` under a time limit and our `Hello` back, the
//! answer to a message out of place, and the end of a session: recorded and closed cleanly, or
//! closed with a code that tells the dialer what went wrong.

use std::sync::Arc;
use std::time::Duration;

use iroh::endpoint::Connection;
use protocol::PublicKey;
use protocol::wire::{Message, Role, code};
use store::Store;

use crate::NodeError;
use crate::node::record_session;
use crate::session::{Channel, PullStats, expect_hello};

/// How long an accepted connection may take to open its stream and say `Hello`.
const HELLO_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a finished session waits for the peer to close before giving up.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Takes the stream the dialer opens on `conn`, expects its `Hello` within [`HELLO_TIMEOUT`]
/// and answers with ours, as `role`. `name` is the peer as logs and errors show it. Returns the
/// channel and the peer's epoch.
pub(crate) async fn accept_hello(
    conn: &Connection,
    name: &str,
    store: &Store,
    role: Role,
) -> Result<(Channel, [u8; 16]), NodeError> {
    let hello = async {
        let (send, recv) = conn.accept_bi().await.map_err(|e| NodeError::Lost {
            peer: name.to_string(),
            reason: e.to_string(),
        })?;
        let mut ch = Channel::new(name.to_string(), send, recv);
        let (peer_epoch, _) = expect_hello(&mut ch).await?;
        Ok::<_, NodeError>((ch, peer_epoch))
    };
    let (mut ch, peer_epoch) =
        tokio::time::timeout(HELLO_TIMEOUT, hello)
            .await
            .map_err(|_| NodeError::Protocol {
                peer: name.to_string(),
                reason: format!("no Hello within {}s", HELLO_TIMEOUT.as_secs()),
            })??;
    ch.send(&Message::hello(store.epoch().0, role)).await?;
    Ok((ch, peer_epoch))
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

/// Ends a session that went well: records it in the peer's state, finishes our side of the
/// stream and waits (at most [`CLOSE_WAIT`]) for the peer to close.
pub(crate) async fn end_session(
    conn: &Connection,
    mut ch: Channel,
    store: &Arc<Store>,
    remote: PublicKey,
    sent: u64,
    received: &PullStats,
) {
    record_session(store, remote, sent, received, None).await;
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
        _ => (code::INTERNAL, format!("internal error on the {role}")),
    };
    conn.close(code.into(), reason.as_bytes());
}
