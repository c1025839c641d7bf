//! Dialling a peer for one sync session: `wb sync now` (a one-shot endpoint) and a running
//! node's own sessions ([`crate::handle::NodeHandle::sync_with`], continuous sync). Pull its
//! changes, push ours, or both, then compare digests.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;

use iroh::endpoint::ConnectionError;
use iroh::{Endpoint, EndpointAddr};
use protocol::wire::{Message, Role, SYNC_ALPN};
use protocol::{Audience, PublicKey, SecretKey};
use store::{Peer, Store, time};
use tracing::{Instrument, info_span};

use crate::NodeError;
use crate::directory::{HubOptions, hub_targets};
use crate::discovery::Discovery;
use crate::endpoint::{CONNECT_TIMEOUT, bind_dialling_endpoint, connection_error, resolve};
use crate::identity::endpoint_id;
use crate::metrics::Side;
use crate::outcome::{mark_recovered, record_session};
use crate::session::{Channel, Deadlines, Faults, PullStats, expect_hello_at, pull, serve_pull};

/// What to do in a one-shot sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Both,
    PullOnly,
    PushOnly,
}

/// The outcome of a one-shot sync with one peer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub pulled: PullStats,
    pub sent: u64,
}

/// One sync session with a running peer node: pull its changes, push ours, or both. Without a
/// registry: no hubs, no revoked origins.
pub async fn sync_once(
    key: &SecretKey,
    store: &Arc<Store>,
    peer: &Peer,
    direction: Direction,
) -> Result<SyncReport, NodeError> {
    sync_once_with_hubs(
        key,
        store,
        peer,
        direction,
        &[],
        Deadlines::default(),
        &Discovery::Off,
    )
    .await
}

/// [`sync_once`] with the instance's registry: its hubs (entries marked `Hub: yes`) give the
/// one-shot endpoint their relays and directories, so a peer registered without an address is
/// found; records of the origins it revokes are not taken. With `discovery` on, a peer is also
/// looked up at the pkarr relay (the one-shot endpoint publishes nothing).
pub async fn sync_once_with_hubs(
    key: &SecretKey,
    store: &Arc<Store>,
    peer: &Peer,
    direction: Direction,
    registry: &[Peer],
    deadlines: Deadlines,
    discovery: &Discovery,
) -> Result<SyncReport, NodeError> {
    recorded(
        store,
        peer,
        sync_inner(key, store, peer, direction, registry, deadlines, discovery),
    )
    .await
}

/// Runs one dialled session with `peer` in its tracing span and records its outcome in the
/// peer's state and the metrics ([`record_session`]), whatever it was: a one-shot sync's and
/// a running node's own sessions alike.
pub(crate) async fn recorded(
    store: &Arc<Store>,
    peer: &Peer,
    session: impl Future<Output = Result<SyncReport, NodeError>>,
) -> Result<SyncReport, NodeError> {
    let span = info_span!("sync", peer = %peer.name);
    async {
        let result = session.await;
        let (sent, pulled, error) = match &result {
            Ok(r) => (r.sent, r.pulled, None),
            Err(e) => (0, PullStats::default(), Some(e)),
        };
        record_session(store, peer.public_key, Side::Dialled, sent, &pulled, error).await;
        result
    }
    .instrument(span)
    .await
}

/// The endpoint of a one-shot session with `peer` (a sync, a doctor's probe): bound on the
/// unspecified address of the family its addresses use, with the registry's other hubs (the
/// hub being dialled is dialled like any peer; the others help find it) as targets to attach,
/// and `discovery`'s lookup (resolving only: the running node publishes, not this endpoint).
pub(crate) async fn one_shot_endpoint(
    key: &SecretKey,
    peer: &Peer,
    registry: &[Peer],
    addrs: &[SocketAddr],
    discovery: &Discovery,
) -> Result<(Endpoint, Vec<crate::directory::HubTarget>), NodeError> {
    let unspecified: SocketAddr = if !addrs.is_empty() && addrs.iter().all(SocketAddr::is_ipv6) {
        ([0u16; 8], 0).into()
    } else {
        ([0u8; 4], 0).into()
    };
    let others: Vec<Peer> = registry
        .iter()
        .filter(|h| h.hub && h.public_key != peer.public_key)
        .cloned()
        .collect();
    let targets = hub_targets(&others).await;
    let endpoint =
        bind_dialling_endpoint(key, unspecified, !targets.is_empty(), discovery, false).await?;
    Ok((endpoint, targets))
}

/// Where to dial `peer`: its key with `addrs`; without addresses only if the endpoint can look
/// the key up (hubs' directories, discovery), else [`NodeError::NoAddress`].
pub(crate) fn dial_target(
    endpoint: &Endpoint,
    peer: &Peer,
    addrs: &[SocketAddr],
) -> Result<EndpointAddr, NodeError> {
    let can_look_up = endpoint
        .address_lookup()
        .is_ok_and(|services| !services.is_empty());
    if addrs.is_empty() && !can_look_up {
        return Err(NodeError::NoAddress {
            peer: peer.name.clone(),
        });
    }
    let mut target = EndpointAddr::new(endpoint_id(&peer.public_key)?);
    for a in addrs {
        target = target.with_ip_addr(*a);
    }
    Ok(target)
}

async fn sync_inner(
    key: &SecretKey,
    store: &Arc<Store>,
    peer: &Peer,
    direction: Direction,
    registry: &[Peer],
    deadlines: Deadlines,
    discovery: &Discovery,
) -> Result<SyncReport, NodeError> {
    let addrs = resolve(peer).await?;
    let (endpoint, targets) = one_shot_endpoint(key, peer, registry, &addrs, discovery).await?;
    let options = HubOptions {
        announce: false,
        ..HubOptions::default()
    };
    let result = match crate::directory::attach(&endpoint, key, targets, options).await {
        Ok(_link) => {
            let terms = Terms {
                deadlines,
                revoked: Arc::new(crate::revocations::revoked_keys(
                    store,
                    registry,
                    &key.public(),
                )?),
            };
            dial_and_sync(&endpoint, key, store, peer, direction, &addrs, terms).await
        }
        Err(e) => Err(e),
    };
    endpoint.close().await;
    result
}

/// What a dialled session runs under: its deadlines, and the origins whose records it does
/// not take (the registry's revoked keys, read once per session).
#[derive(Clone, Debug)]
pub(crate) struct Terms {
    pub(crate) deadlines: Deadlines,
    pub(crate) revoked: Arc<HashSet<PublicKey>>,
}

pub(crate) async fn dial_and_sync(
    endpoint: &Endpoint,
    key: &SecretKey,
    store: &Arc<Store>,
    peer: &Peer,
    direction: Direction,
    addrs: &[SocketAddr],
    terms: Terms,
) -> Result<SyncReport, NodeError> {
    let target = dial_target(endpoint, peer, addrs)?;
    let name = peer.name.clone();
    let conn = tokio::time::timeout(CONNECT_TIMEOUT, endpoint.connect(target, SYNC_ALPN))
        .await
        .map_err(|_| NodeError::Unreachable {
            peer: name.clone(),
            reason: format!("no answer within {}s", CONNECT_TIMEOUT.as_secs()),
        })?
        .map_err(|e| NodeError::Unreachable {
            peer: name.clone(),
            reason: e.to_string(),
        })?;
    let result = session(&conn, key, store, peer, direction, terms).await;
    let result = match result {
        // A refusal arrives as the connection closing with our code: report that.
        Err(NodeError::Lost { .. }) | Err(NodeError::Protocol { .. })
            if conn.close_reason().is_some() =>
        {
            let reason = conn.close_reason();
            match reason {
                Some(e @ ConnectionError::ApplicationClosed(_)) => Err(connection_error(&name, &e)),
                _ => result,
            }
        }
        other => other,
    };
    conn.close(0u32.into(), b"bye");
    result
}

async fn session(
    conn: &iroh::endpoint::Connection,
    key: &SecretKey,
    store: &Arc<Store>,
    peer: &Peer,
    direction: Direction,
    terms: Terms,
) -> Result<SyncReport, NodeError> {
    let name = peer.name.clone();
    // Opening waits for the peer only when it allows no stream: within the message deadline.
    let Terms { deadlines, revoked } = terms;
    let (send, recv) = tokio::time::timeout(deadlines.message, conn.open_bi())
        .await
        .map_err(|_| NodeError::Timeout {
            peer: name.clone(),
            step: "opening a stream".into(),
            limit: format!("{} s per message", deadlines.message.as_secs_f64()),
        })?
        .map_err(|e| connection_error(&name, &e))?;
    let mut ch = Channel::with_deadlines(name.clone(), send, recv, deadlines);
    // A restored store asks for its own records back until it pulled all from this peer.
    let s = store.clone();
    let peer_key = peer.public_key;
    let ask_own = tokio::task::spawn_blocking(move || s.recovering_from(&peer_key))
        .await
        .map_err(|e| NodeError::Internal(e.to_string()))??;
    let mut capabilities = vec![protocol::wire::capability::DIGESTS];
    if ask_own {
        capabilities.push(protocol::wire::capability::OWN_RECORDS);
    }
    let mut hello = Message::hello_with(store.epoch().0, Role::Node, &capabilities);
    // A replaced key's successions: a peer that has not received them yet still admits us.
    let s = store.clone();
    let successions =
        tokio::task::spawn_blocking(move || crate::succession::hello_capabilities(&s))
            .await
            .map_err(|e| NodeError::Internal(e.to_string()))??;
    if let Message::Hello { capabilities, .. } = &mut hello {
        capabilities.extend(successions);
    }
    ch.send(&hello.with_time(time::now_ms())).await?;
    let hello = match expect_hello_at(&mut ch).await {
        Err(NodeError::Lost { .. }) if conn.close_reason().is_some() => {
            let e = conn.closed().await;
            return Err(connection_error(&name, &e));
        }
        other => other?,
    };
    let (peer_epoch, return_own) = (hello.epoch, hello.own);
    let audience = Audience {
        // Hubs are never trusted (§4): enforced here, on the sender, whatever the registry
        // says; the hub checks again.
        trusted: peer.trusted && !peer.revoked && !peer.hub,
    };
    let mut report = SyncReport::default();
    if direction != Direction::PushOnly {
        report.pulled = pull(
            &mut ch,
            store,
            peer.public_key,
            peer_epoch,
            revoked,
            time::now_ms,
        )
        .await?;
        if ask_own {
            mark_recovered(store, peer.public_key).await?;
        }
    }
    if direction != Direction::PullOnly {
        ch.send(&Message::Offer).await?;
        let cursor = match ch.expect("Pull").await? {
            Message::Pull { cursor } => cursor,
            other => {
                return Err(NodeError::Protocol {
                    peer: name,
                    reason: format!("expected Pull, got {}", other.kind()),
                });
            }
        };
        crate::withdraw::settle_trust(store, key, peer.public_key, audience, cursor).await?;
        report.sent = serve_pull(
            &mut ch,
            store,
            key.public(),
            peer.public_key,
            audience,
            cursor,
            true,
            return_own,
            Faults::default(),
        )
        .await?;
    }
    if hello.digests || hello.hub_digests {
        crate::digests::exchange(
            &mut ch,
            store,
            (key.public(), peer.public_key),
            audience.trusted,
            hello.hub_digests,
        )
        .await?;
    }
    ch.send(&Message::Bye).await?;
    ch.finish().await;
    // Wait until the peer finished its side: everything it sent has been read.
    while let Ok(Some(_)) = ch.recv().await {}
    Ok(report)
}
