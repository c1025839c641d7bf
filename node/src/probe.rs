//! One look at a peer or hub for `wb doctor`: dial it as a sync would (its addresses, the
//! registry's hubs to find it), exchange `Hello`s under one deadline, say `Bye`. Nothing is
//! pulled or pushed and nothing is written to our store; the peer sees a session that
//! exchanged nothing. Its `Hello` gives its role and, from peers that send it, its clock.

use std::time::{Duration, Instant};

use futures::StreamExt;
use iroh::EndpointAddr;
use iroh::endpoint::ConnectionError;
use protocol::wire::{Message, Role, SYNC_ALPN};
use protocol::{PublicKey, SecretKey};
use store::{Peer, time};

use crate::NodeError;
use crate::dial::{dial_target, one_shot_endpoint};
use crate::directory::HubOptions;
use crate::discovery::Discovery;
use crate::endpoint::{connection_error, resolve};
use crate::session::{Channel, Deadlines, expect_hello_at};

/// How long closing the probe's endpoint may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// What a probe found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    /// The role the peer's `Hello` claims.
    pub role: Role,
    /// From dialling to its `Hello`.
    pub round_trip_ms: u64,
    /// Its clock minus ours, from the `Hello` exchange (our clock read before sending ours and
    /// after receiving its, the midpoint taken as the moment it answered); `None` when the peer
    /// does not send its clock (an older wb).
    pub clock_offset_ms: Option<i64>,
    /// How far off the offset may be: half the `Hello` round trip.
    pub clock_uncertainty_ms: u64,
}

/// Dials `peer` with `key` and exchanges `Hello`s, all within `deadline`. `epoch` is what our
/// `Hello` says (the peer uses it only when we offer records, which a probe never does).
/// `registry`'s hubs (other than `peer`) help find a peer without an address, and so does
/// `discovery` when it is on.
pub async fn probe(
    key: &SecretKey,
    epoch: [u8; 16],
    peer: &Peer,
    registry: &[Peer],
    deadline: Duration,
    discovery: &Discovery,
) -> Result<Probe, NodeError> {
    let addrs = resolve(peer).await?;
    let (endpoint, targets) = one_shot_endpoint(key, peer, registry, &addrs, discovery).await?;
    let options = HubOptions {
        announce: false,
        ..HubOptions::default()
    };
    let result = async {
        let _link = crate::directory::attach(&endpoint, key, targets, options).await?;
        let target = dial_target(&endpoint, peer, &addrs)?;
        tokio::time::timeout(deadline, hello(&endpoint, target, peer, epoch, deadline))
            .await
            .map_err(|_| NodeError::Unreachable {
                peer: peer.name.clone(),
                reason: format!("no answer within {} s", deadline.as_secs_f64()),
            })?
    }
    .await;
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, endpoint.close()).await;
    result
}

async fn hello(
    endpoint: &iroh::Endpoint,
    target: EndpointAddr,
    peer: &Peer,
    epoch: [u8; 16],
    deadline: Duration,
) -> Result<Probe, NodeError> {
    let name = peer.name.clone();
    let started = Instant::now();
    let conn = endpoint
        .connect(target, SYNC_ALPN)
        .await
        .map_err(|e| NodeError::Unreachable {
            peer: name.clone(),
            reason: e.to_string(),
        })?;
    let result = async {
        let (send, recv) = conn
            .open_bi()
            .await
            .map_err(|e| connection_error(&name, &e))?;
        let mut ch =
            Channel::with_deadlines(name.clone(), send, recv, Deadlines::per_message(deadline));
        let sent_at = time::now_ms();
        ch.send(&Message::hello_at(epoch, Role::Node, sent_at))
            .await?;
        let theirs = match expect_hello_at(&mut ch).await {
            // A refusal arrives as the connection closing with the peer's code.
            Err(NodeError::Lost { .. }) if conn.close_reason().is_some() => {
                return Err(match conn.close_reason() {
                    Some(e @ ConnectionError::ApplicationClosed(_)) => connection_error(&name, &e),
                    _ => NodeError::Lost {
                        peer: name.clone(),
                        reason: "closed before its Hello".into(),
                    },
                });
            }
            other => other?,
        };
        let received_at = time::now_ms();
        ch.send(&Message::Bye).await?;
        ch.finish().await;
        // Until the peer finished its side, as a sync does before closing.
        while let Ok(Some(_)) = ch.recv().await {}
        let midpoint = sent_at + received_at.saturating_sub(sent_at) / 2;
        Ok(Probe {
            role: theirs.role,
            round_trip_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            clock_offset_ms: theirs
                .time_ms
                .map(|t| i64::try_from(i128::from(t) - i128::from(midpoint)).unwrap_or(i64::MAX)),
            clock_uncertainty_ms: received_at.saturating_sub(sent_at).div_ceil(2),
        })
    }
    .await;
    conn.close(0u32.into(), b"bye");
    result
}

/// The direct addresses and relay URLs the pkarr relay holds for `whose` (its packet checked
/// against that key), looked up from a resolve-only endpoint with `key` within `deadline`
/// (`wb doctor`: is this instance findable?). Discovery off: an error saying so.
pub async fn published(
    key: &SecretKey,
    discovery: &Discovery,
    whose: &PublicKey,
    deadline: Duration,
) -> Result<Vec<String>, NodeError> {
    let Discovery::Pkarr(url) = discovery else {
        return Err(NodeError::Internal("discovery is off".into()));
    };
    let unspecified = std::net::SocketAddr::from(([0u8; 4], 0));
    let endpoint = crate::endpoint::bind_endpoint_with_relays(
        key,
        unspecified,
        iroh::RelayMode::Disabled,
        discovery,
        false,
    )
    .await?;
    let id = crate::identity::endpoint_id(whose)?;
    let unreachable = |reason: String| NodeError::Unreachable {
        peer: format!("pkarr relay {url}"),
        reason,
    };
    let result = async {
        let services = endpoint
            .address_lookup()
            .map_err(|e| NodeError::Internal(format!("address lookup: {e}")))?;
        let mut found = std::pin::pin!(services.resolve(id));
        match tokio::time::timeout(deadline, found.next()).await {
            Err(_) => Err(unreachable(format!(
                "no answer within {} s",
                deadline.as_secs_f64()
            ))),
            Ok(None) => Err(unreachable("no answer".into())),
            Ok(Some(Err(e))) => Err(unreachable(e.to_string())),
            Ok(Some(Ok(Err(e)))) => Err(unreachable(e.to_string())),
            Ok(Some(Ok(Ok(item)))) => Ok(item
                .endpoint_info()
                .addrs()
                .map(|a| match a {
                    iroh::TransportAddr::Ip(ip) => ip.to_string(),
                    iroh::TransportAddr::Relay(relay) => relay.to_string(),
                    other => format!("{other:?}"),
                })
                .collect()),
        }
    }
    .await;
    let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.close()).await;
    result
}
