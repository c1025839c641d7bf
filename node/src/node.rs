//! The running node (`wb node run`) and one-shot syncs (`wb sync now`): an iroh endpoint with
//! the instance key, accepting ALPN `wb-sync/1` from known peers, and dialling peers by the
//! addresses in `wb_peers.txt`. Works with no internet: no relay, no address lookup, unless
//! the registry names hubs, whose relays and directories are then used ([`crate::directory`]),
//! or discovery is on (a pkarr relay, [`crate::discovery`]).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use iroh::endpoint::{ConnectionError, presets};
use iroh::protocol::{AcceptError, ProtocolHandler, Router};
use iroh::{Endpoint, EndpointAddr, RelayMode};
use protocol::wire::{Message, Role, SYNC_ALPN, code};
use protocol::{Audience, PublicKey, SecretKey};
use store::{Home, Peer, Store, time};
use tokio::sync::Semaphore;
use tracing::{Instrument, info, info_span, warn};

use crate::NodeError;
use crate::accept::{
    REQUESTS_PER_SESSION_MAX, accept_hello, close_with_error, end_session, too_many_requests,
    unexpected,
};
use crate::continuous::{Continuous, ContinuousConfig, PeerSyncStatus, Shared, changed_store};
use crate::directory::{HubLink, HubOptions, hub_targets};
use crate::discovery::Discovery;
use crate::identity::{endpoint_id, iroh_secret_key};
use crate::metrics::Side;
use crate::session::{Channel, Deadlines, Faults, PullStats, expect_hello_at, pull, serve_pull};

/// How long dialling a peer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Incoming sessions served at once; a connection over the limit is closed at once (the
/// dialer retries later).
pub const MAX_INCOMING_SESSIONS: usize = 64;

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

/// How a node treats connections.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub home: Home,
    pub listen: SocketAddr,
    /// Unknown peers may pull public records (they may not push).
    pub open: bool,
    /// How long sessions (both ways) may wait on a peer.
    pub deadlines: Deadlines,
    pub faults: Faults,
    /// Address lookup through a pkarr relay (publishing ours, resolving peers'); off by
    /// default.
    pub discovery: Discovery,
}

/// A running node; dropping it without `shutdown` aborts it.
#[derive(Debug)]
pub struct RunningNode {
    router: Router,
    handle: NodeHandle,
    continuous: Option<Continuous>,
    /// Announcements to and lookups through the node's hubs; dropped with the node.
    _hubs: HubLink,
}

/// What other parts of the process (the control socket, continuous sync) use to act through a
/// running node: its store, its key, its endpoint. Cheap to clone.
#[derive(Clone)]
pub struct NodeHandle {
    key: SecretKey,
    store: Arc<Store>,
    endpoint: Endpoint,
    addrs: Vec<SocketAddr>,
    home: Home,
    shared: Arc<Shared>,
    deadlines: Deadlines,
    discovery: Discovery,
}

impl std::fmt::Debug for NodeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodeHandle({})", self.key.public().key_id())
    }
}

impl NodeHandle {
    pub fn key(&self) -> &SecretKey {
        &self.key
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The sockets the node listens on.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    pub fn home(&self) -> &Home {
        &self.home
    }

    /// How long the node's sessions may wait on a peer.
    pub fn deadlines(&self) -> Deadlines {
        self.deadlines
    }

    /// The address lookup the node's endpoint was bound with.
    pub fn discovery(&self) -> &Discovery {
        &self.discovery
    }

    /// Tells the node its store changed (a local edit, an import, a sync run in this process
    /// that brought new records): continuous sync then offers the change to every peer.
    /// Cheap, never blocks; any number of calls in a burst make one round of sessions.
    pub fn local_changed(&self) {
        self.shared.changed(None);
    }

    /// What continuous sync knows about each peer it syncs with (empty when it is off).
    pub fn continuous_status(&self) -> Vec<PeerSyncStatus> {
        self.shared.status()
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// A handle for another role built on the node's code (the hub, [`crate::hub`]).
    pub(crate) fn new(
        key: SecretKey,
        store: Arc<Store>,
        endpoint: Endpoint,
        addrs: Vec<SocketAddr>,
        home: Home,
    ) -> Self {
        Self {
            key,
            store,
            endpoint,
            addrs,
            home,
            shared: Arc::new(Shared::new()),
            deadlines: Deadlines::default(),
            discovery: Discovery::Off,
        }
    }

    /// One sync session with `peer`, dialled from the node's own endpoint (so the peer sees the
    /// same endpoint it would dial back). Records the outcome in the peer's state.
    pub async fn sync_with(
        &self,
        peer: &Peer,
        direction: Direction,
    ) -> Result<SyncReport, NodeError> {
        self.sync_with_deadlines(peer, direction, self.deadlines)
            .await
    }

    /// [`NodeHandle::sync_with`] under other deadlines (`wb sync now --timeout`).
    pub async fn sync_with_deadlines(
        &self,
        peer: &Peer,
        direction: Direction,
        deadlines: Deadlines,
    ) -> Result<SyncReport, NodeError> {
        let span = info_span!("sync", peer = %peer.name);
        async {
            let result = async {
                let addrs = resolve(peer).await?;
                // Read per session: a revocation applies to the next session.
                let revoked = crate::revocations::revoked_keys(
                    &self.store,
                    &store::load_peers(&self.home)?,
                    &self.key.public(),
                )?;
                let terms = Terms {
                    deadlines,
                    revoked: Arc::new(revoked),
                };
                dial_and_sync(
                    &self.endpoint,
                    &self.key,
                    &self.store,
                    peer,
                    direction,
                    &addrs,
                    terms,
                )
                .await
            }
            .await;
            let (sent, pulled, error) = match &result {
                Ok(r) => (r.sent, r.pulled, None),
                Err(e) => (0, PullStats::default(), Some(e)),
            };
            record_session(
                &self.store,
                peer.public_key,
                Side::Dialled,
                sent,
                &pulled,
                error,
            )
            .await;
            result
        }
        .instrument(span)
        .await
    }
}

impl RunningNode {
    pub fn id(&self) -> PublicKey {
        self.handle.key.public()
    }

    pub fn addrs(&self) -> &[SocketAddr] {
        &self.handle.addrs
    }

    pub fn handle(&self) -> NodeHandle {
        self.handle.clone()
    }

    /// Starts continuous sync (module [`crate::continuous`]): the node syncs with every
    /// dialable peer at once, after local changes and every `config.interval`, retrying
    /// failures with backoff. Off until called; calling again restarts it with the new config.
    pub async fn start_continuous(&mut self, config: ContinuousConfig) {
        if let Some(old) = self.continuous.take() {
            old.stop().await;
        }
        self.continuous = Some(Continuous::start(self.handle.clone(), config));
    }

    /// Stops continuous sync, stops accepting, lets sessions end (they are aborted when the
    /// endpoint closes), closes the endpoint.
    pub async fn shutdown(mut self) -> Result<(), NodeError> {
        if let Some(c) = self.continuous.take() {
            c.stop().await;
        }
        self.router
            .shutdown()
            .await
            .map_err(|e| NodeError::Internal(e.to_string()))
    }
}

/// Starts a node on an opened home.
pub async fn start(
    config: NodeConfig,
    key: SecretKey,
    store: Arc<Store>,
) -> Result<RunningNode, NodeError> {
    start_with_hubs(config, key, store, HubOptions::default()).await
}

/// Starts a node on an opened home, using the hubs of its registry (`Hub: yes`) as `hubs` says:
/// with hubs, the endpoint can use their relays, looks peers up in their directories and
/// announces its addresses to them (module [`crate::directory`]). Hubs added to the registry
/// later are used after a restart. With `config.discovery` on, the node also publishes its
/// addresses to a pkarr relay and looks peers up there ([`crate::discovery`]).
pub async fn start_with_hubs(
    config: NodeConfig,
    key: SecretKey,
    store: Arc<Store>,
    hubs: HubOptions,
) -> Result<RunningNode, NodeError> {
    let targets = hub_targets(&store::load_peers(&config.home)?).await;
    let endpoint = bind_dialling_endpoint(
        &key,
        config.listen,
        !targets.is_empty(),
        &config.discovery,
        true,
    )
    .await?;
    let hub_link = crate::directory::attach(&endpoint, &key, targets, hubs).await?;
    let addrs = endpoint.bound_sockets();
    let shared = Arc::new(Shared::new());
    let handler = SyncHandler {
        home: config.home.clone(),
        key: key.clone(),
        store: store.clone(),
        open: config.open,
        deadlines: config.deadlines,
        faults: config.faults,
        shared: shared.clone(),
        sessions: Arc::new(Semaphore::new(MAX_INCOMING_SESSIONS)),
        registry: Arc::new(store::RegistryCache::new(config.home.clone())),
    };
    let router = Router::builder(endpoint.clone())
        .accept(SYNC_ALPN, handler)
        .spawn();
    Ok(RunningNode {
        router,
        handle: NodeHandle {
            key,
            store,
            endpoint,
            addrs,
            home: config.home,
            shared,
            deadlines: config.deadlines,
            discovery: config.discovery,
        },
        continuous: None,
        _hubs: hub_link,
    })
}

/// Accepts `wb-sync/1` connections.
#[derive(Clone)]
struct SyncHandler {
    home: Home,
    key: SecretKey,
    store: Arc<Store>,
    open: bool,
    deadlines: Deadlines,
    faults: Faults,
    /// Where a session that brought new records says so (continuous sync passes it on).
    shared: Arc<Shared>,
    /// Bounds the incoming sessions served at once.
    sessions: Arc<Semaphore>,
    registry: Arc<store::RegistryCache>,
}

impl std::fmt::Debug for SyncHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SyncHandler({})", self.home.root().display())
    }
}

impl ProtocolHandler for SyncHandler {
    async fn accept(&self, conn: iroh::endpoint::Connection) -> Result<(), AcceptError> {
        let remote = conn.remote_id();
        let span = info_span!("conn", peer = %remote.fmt_short(), alpn = "wb-sync/1");
        let this = self.clone();
        async move {
            let Ok(_permit) = this.sessions.clone().try_acquire_owned() else {
                warn!("refused: already serving {MAX_INCOMING_SESSIONS} sessions");
                crate::metrics::session_refused();
                conn.close(
                    code::INTERNAL.into(),
                    b"busy: too many sessions, try again later",
                );
                return Ok(());
            };
            if let Err(e) = this.session(&conn).await {
                warn!("session ended with an error: {e}");
                crate::metrics::session_ended(Side::Accepted, Some(&e), 0);
                close_with_error(&conn, &e, "node");
            }
            Ok(())
        }
        .instrument(span)
        .await
    }
}

impl SyncHandler {
    async fn session(&self, conn: &iroh::endpoint::Connection) -> Result<(), NodeError> {
        let remote = PublicKey::from_bytes(*conn.remote_id().as_bytes())
            .map_err(|e| NodeError::BadKey(e.to_string()))?;
        // The registry is checked per connection (parsed again only when the file changed), so
        // edits made while the node runs apply at once.
        let peers = crate::revocations::effective(
            &self.store,
            &self.registry.load()?,
            &[],
            &self.key.public(),
        )?;
        let known = store::peer_by_key(&peers, &remote).cloned();
        let name = known.as_ref().map_or_else(
            || format!("unknown {}", remote.key_id()),
            |p| p.name.clone(),
        );
        match &known {
            Some(p) if p.revoked => {
                warn!(peer = %name, "refused: revoked");
                crate::metrics::session_refused();
                conn.close(code::REVOKED.into(), b"revoked");
                return Ok(());
            }
            None if !self.open => {
                warn!(peer = %name, "refused: unknown key");
                crate::metrics::session_refused();
                conn.close(code::UNKNOWN_PEER.into(), b"unknown peer");
                return Ok(());
            }
            _ => {}
        }
        // A restored store asks known peers for its own records back until it pulled all.
        let ask_own = match &known {
            Some(_) => {
                let s = self.store.clone();
                tokio::task::spawn_blocking(move || s.recovering_from(&remote))
                    .await
                    .map_err(|e| NodeError::Internal(e.to_string()))??
            }
            None => false,
        };
        let (mut ch, peer_epoch, peer_role, return_own, digests) = accept_hello(
            conn,
            &name,
            &self.store,
            (Role::Node, ask_own),
            self.deadlines,
        )
        .await?;
        // Hubs are never a trusted audience (§4), whether the registry marks the entry as a hub
        // or the dialer says it is one, and whatever its `Trusted:` line says.
        let audience = Audience {
            trusted: peer_role == Role::Node && known.as_ref().is_some_and(|p| p.trusted && !p.hub),
        };
        let mut received = PullStats::default();
        let mut sent = 0;
        let mut requests = 0;
        let mut compared = false;
        let kinds: &[&'static str] = if digests {
            &["Pull", "Offer", "Digests", "Bye"]
        } else {
            &["Pull", "Offer", "Bye"]
        };
        loop {
            let message = ch.recv_of(kinds).await?;
            if matches!(message, Some(Message::Pull { .. } | Message::Offer)) {
                requests += 1;
                if requests > REQUESTS_PER_SESSION_MAX {
                    return Err(too_many_requests(&mut ch).await);
                }
            }
            match message {
                Some(Message::Pull { cursor }) => {
                    crate::withdraw::settle_trust(&self.store, &self.key, remote, audience, cursor)
                        .await?;
                    sent += serve_pull(
                        &mut ch,
                        &self.store,
                        self.key.public(),
                        remote,
                        audience,
                        cursor,
                        known.is_some(),
                        return_own && known.is_some(),
                        self.faults,
                    )
                    .await?;
                }
                Some(Message::Offer) => {
                    if known.is_none() {
                        ch.send_error(
                            code::NOT_ALLOWED,
                            "unknown peers may only pull public records",
                        )
                        .await;
                        break;
                    }
                    let revoked = Arc::new(protocol::peers::revoked_keys(&peers));
                    let stats = pull(
                        &mut ch,
                        &self.store,
                        remote,
                        peer_epoch,
                        revoked,
                        time::now_ms,
                    )
                    .await?;
                    if ask_own {
                        mark_recovered(&self.store, remote).await?;
                    }
                    if changed_store(&stats) {
                        // Pass the news on to our other peers (not back to this one).
                        self.shared.changed(Some(remote));
                    }
                    received.add(stats);
                }
                Some(message @ Message::Digests { .. }) if !compared => {
                    compared = true;
                    let Some(first) = crate::digests::first(message) else {
                        break;
                    };
                    crate::digests::answer(
                        &mut ch,
                        &self.store,
                        self.key.public(),
                        remote,
                        audience.trusted,
                        first,
                        known.is_some(),
                    )
                    .await?;
                }
                Some(Message::Bye) | None => break,
                Some(other) => return Err(unexpected(&mut ch, &other).await),
            }
        }
        info!(sent, received = received.received, "session finished");
        // A key we do not know (an open node) leaves no row behind.
        let record = known.is_some();
        end_session(conn, ch, &self.store, remote, sent, &received, record).await;
        Ok(())
    }
}

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

fn lost(peer: &str, e: impl std::fmt::Display) -> NodeError {
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
    let span = info_span!("sync", peer = %peer.name);
    async {
        let result = sync_inner(key, store, peer, direction, registry, deadlines, discovery).await;
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
struct Terms {
    deadlines: Deadlines,
    revoked: Arc<HashSet<PublicKey>>,
}

async fn dial_and_sync(
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
    ch.send(
        &Message::hello_with(store.epoch().0, Role::Node, &capabilities).with_time(time::now_ms()),
    )
    .await?;
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
    if hello.digests {
        crate::digests::exchange(
            &mut ch,
            store,
            key.public(),
            peer.public_key,
            audience.trusted,
        )
        .await?;
    }
    ch.send(&Message::Bye).await?;
    ch.finish().await;
    // Wait until the peer finished its side: everything it sent has been read.
    while let Ok(Some(_)) = ch.recv().await {}
    Ok(report)
}

/// A full pull from `peer` completed while asking for our own records back (after a restore):
/// the next sessions with it no longer ask.
async fn mark_recovered(store: &Arc<Store>, peer: PublicKey) -> Result<(), NodeError> {
    let s = store.clone();
    tokio::task::spawn_blocking(move || s.mark_recovered(&peer))
        .await
        .map_err(|e| NodeError::Internal(e.to_string()))??;
    info!(peer = %peer.key_id(), "own records recovered from this peer after a restore");
    Ok(())
}
