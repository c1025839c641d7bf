//! Key rotation that keeps the identity (issue 15), on the network's side:
//! - a dialer shows its own successions in its `Hello` ([`hello_capabilities`]);
//! - a listener settles its registry before each session ([`settle`]: entries whose key a held
//!   succession replaced move to the new key), and gives an unknown key that shows a succession
//!   from a known one its chance ([`admit_by_proof`]) before refusing it.

use std::time::Duration;

use iroh::endpoint::Connection;
use protocol::PublicKey;
use store::{Home, Peer, Store};

use crate::NodeError;
use crate::accept::receive_hello;
use crate::session::{Channel, Deadlines, PeerHello};

/// How long a closed listener awaits an unknown key's `Hello` (to see whether it shows a
/// succession from a known key) before refusing the key as unknown: a dialer sends it at once,
/// and a stranger holds a session slot no longer than this.
pub(crate) const UNKNOWN_HELLO_WAIT: Duration = Duration::from_secs(5);

/// An unknown dialer's stream and `Hello`, and the registry with it in if it proved to be a
/// registry entry's new key.
pub(crate) struct Unknown {
    pub received: (Channel, PeerHello),
    pub admitted: Option<Vec<Peer>>,
}

/// Reads the `Hello` of the unknown `remote` on `conn` within `wait`, and admits the key if it
/// proves to be a registry entry's new key ([`admit_by_proof`]). An error when no `Hello` came
/// in time (a [`NodeError::Timeout`]) or something else came (what [`receive_hello`] says):
/// a closed listener refuses the key as unknown then, an open one ends the session with it.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn unknown_hello(
    conn: &Connection,
    name: &str,
    (deadlines, wait): (Deadlines, Duration),
    home: &Home,
    store: &Store,
    own: &PublicKey,
    extra: &[PublicKey],
    remote: &PublicKey,
) -> Result<Unknown, NodeError> {
    let (ch, hello) = tokio::time::timeout(wait, receive_hello(conn, name, deadlines))
        .await
        .map_err(|_| NodeError::Timeout {
            peer: name.to_string(),
            step: "waiting for Hello".into(),
            limit: format!("{} s per message", wait.as_secs_f64()),
        })??;
    let admitted = if hello.successions.is_empty() {
        None
    } else {
        admit_by_proof(home, store, own, extra, remote, &hello)?
    };
    Ok(Unknown {
        received: (ch, hello),
        admitted,
    })
}

/// The `Hello` capabilities showing this instance's successions (none for a key never
/// replaced).
pub(crate) fn hello_capabilities(store: &Store) -> Result<Vec<String>, NodeError> {
    Ok(store::successions::own_records(store)?
        .iter()
        .map(protocol::succession::capability)
        .collect())
}

/// `peers` (the registry as read) after moving the entries whose keys held successions
/// replaced; the registry read again when one moved. `extra`: a hub's followed revokers. A
/// failure to settle (a registry that cannot be written, say) is logged and the registry used
/// as it is: the session goes on, and the next one tries again.
pub(crate) fn settle(
    home: &Home,
    store: &Store,
    own: &PublicKey,
    extra: &[PublicKey],
    peers: std::sync::Arc<Vec<Peer>>,
) -> Result<std::sync::Arc<Vec<Peer>>, NodeError> {
    match store::successions::settle_with(home, store, own, extra, &peers) {
        Ok(settled) if settled.plan.moves.is_empty() => Ok(peers),
        Ok(_) => Ok(std::sync::Arc::new(store::load_peers(home)?)),
        Err(e) => {
            tracing::warn!("cannot apply the successions held: {e}");
            Ok(peers)
        }
    }
}

/// For an unknown `remote`: the registry with it in, if its `Hello` showed successions that
/// make it a known entry's new key ([`store::successions::admit`]); `None` otherwise.
pub(crate) fn admit_by_proof(
    home: &Home,
    store: &Store,
    own: &PublicKey,
    extra: &[PublicKey],
    remote: &PublicKey,
    hello: &PeerHello,
) -> Result<Option<Vec<Peer>>, NodeError> {
    let admitted = store::successions::admit(home, store, own, extra, remote, &hello.successions)?;
    if let Some(peers) = &admitted
        && let Some(p) = store::peer_by_key(peers, remote)
    {
        tracing::info!(
            peer = %p.name,
            key_id = %remote.key_id(),
            "admitted a new key: its Hello showed the succession of the peer's former key"
        );
    }
    Ok(admitted)
}
