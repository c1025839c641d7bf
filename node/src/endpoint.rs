//! Binding and reaching endpoints: the QUIC limits every `wb` endpoint is bound with, binding
//! with the instance key (no relay, no address lookup unless hubs or discovery add them),
//! resolving a peer's `host:port` addresses, and what a closed connection means. At the bottom
//! of the crate's network modules: the node, one-shot syncs, hubs, directories and probes all
//! bind and dial through here.

use std::net::SocketAddr;
use std::time::Duration;

use iroh::endpoint::{ConnectionError, presets};
use iroh::{Endpoint, RelayMode};
use protocol::SecretKey;
use store::Peer;

use crate::NodeError;
use crate::discovery::Discovery;
use crate::identity::iroh_secret_key;

/// How long dialling a peer may take.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bidirectional streams a peer may have open on one connection at once: `wb-sync/1` uses
/// one, `wb-hub/1` up to its directory limit (4). Unidirectional streams: none.
pub const STREAMS_PER_CONNECTION: u32 = 4;
/// Bytes a peer may send on one stream before we read them: QUIC's usual 1.25 MB (100 ms at
/// 100 Mbit/s). Smaller than a frame on purpose: a frame is read as it arrives, into the
/// session's buffer, which holds at most one frame of the kind it waits for. (A window of a
/// whole frame lets so many packets be in flight that loss can leave more gaps than the QUIC
/// stack keeps, which kills the connection.)
pub const STREAM_WINDOW: u32 = 1_250_000;
/// Bytes a peer may send on all streams of one connection before we read them: what one
/// connection can make us buffer in QUIC, whatever streams it opens.
pub const CONNECTION_WINDOW: u32 = 2 * STREAM_WINDOW;

/// The QUIC limits of every endpoint `wb` binds (issue 11, item 3), set rather than left to
/// the defaults (100 streams of each kind, 1.25 MB each, no bound per connection).
fn transport_config() -> iroh::endpoint::QuicTransportConfig {
    use iroh::endpoint::{QuicTransportConfig, VarInt};
    QuicTransportConfig::builder()
        .max_concurrent_bidi_streams(VarInt::from_u32(STREAMS_PER_CONNECTION))
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .stream_receive_window(VarInt::from_u32(STREAM_WINDOW))
        .receive_window(VarInt::from_u32(CONNECTION_WINDOW))
        .build()
}

/// Binds an endpoint with the instance key: no relay, no address lookup, no port mapping.
pub async fn bind_endpoint(key: &SecretKey, listen: SocketAddr) -> Result<Endpoint, NodeError> {
    bind_endpoint_with_relays(key, listen, RelayMode::Disabled, &Discovery::Off, false).await
}

/// The endpoint of a node or of a one-shot session: with `hubs`, able to use relays added later
/// (the hubs' relays, [`crate::directory::bind_endpoint_for_hubs`]); with `discovery` on, its
/// address lookup, publishing our addresses only when `publish` (a running node).
pub(crate) async fn bind_dialling_endpoint(
    key: &SecretKey,
    listen: SocketAddr,
    hubs: bool,
    discovery: &Discovery,
    publish: bool,
) -> Result<Endpoint, NodeError> {
    let relay_mode = if hubs {
        RelayMode::Custom(iroh::RelayMap::empty())
    } else {
        RelayMode::Disabled
    };
    bind_endpoint_with_relays(key, listen, relay_mode, discovery, publish).await
}

/// Binds an endpoint with the instance key and `relay_mode`, no port mapping, and no address
/// lookup but `discovery`'s (publishing with `publish`).
pub(crate) async fn bind_endpoint_with_relays(
    key: &SecretKey,
    listen: SocketAddr,
    relay_mode: RelayMode,
    discovery: &Discovery,
    publish: bool,
) -> Result<Endpoint, NodeError> {
    let bind_err = |reason: String| NodeError::Bind {
        addr: listen.to_string(),
        reason,
    };
    let builder = Endpoint::builder(presets::Minimal)
        .transport_config(transport_config())
        .secret_key(iroh_secret_key(key))
        .relay_mode(relay_mode)
        .clear_address_lookup()
        .portmapper_config(iroh::endpoint::PortmapperConfig::Disabled)
        .clear_ip_transports()
        .bind_addr(listen)
        .map_err(|e| bind_err(e.to_string()))?;
    discovery
        .install(builder, publish)
        .bind()
        .await
        .map_err(|e| bind_err(e.to_string()))
}

pub(crate) fn lost(peer: &str, e: impl std::fmt::Display) -> NodeError {
    NodeError::Lost {
        peer: peer.to_string(),
        reason: e.to_string(),
    }
}

/// Maps a connection error to what the peer told us, when it closed with one of our codes.
pub(crate) fn connection_error(peer: &str, e: &ConnectionError) -> NodeError {
    match e {
        ConnectionError::ApplicationClosed(close) => {
            let code = u32::try_from(close.error_code.into_inner()).unwrap_or(u32::MAX);
            NodeError::Refused {
                peer: peer.to_string(),
                code,
                reason: String::from_utf8_lossy(&close.reason).into_owned(),
            }
        }
        other => lost(peer, other),
    }
}

/// Resolves a peer's `host:port` addresses. No address is not an error here: a node may find
/// the peer through a hub (checked when dialling); a hub must have one
/// ([`crate::directory::HubTarget::from_peer`]).
pub(crate) async fn resolve(peer: &Peer) -> Result<Vec<SocketAddr>, NodeError> {
    let mut out = Vec::new();
    for addr in &peer.addrs {
        let found =
            tokio::net::lookup_host(addr.as_str())
                .await
                .map_err(|e| NodeError::Resolve {
                    peer: peer.name.clone(),
                    addr: addr.clone(),
                    reason: e.to_string(),
                })?;
        out.extend(found);
    }
    Ok(out)
}
