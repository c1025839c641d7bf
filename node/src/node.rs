//! The running node (`wb node run`) and one-shot syncs (`wb sync now`): an iroh endpoint with
//! the instance key, accepting ALPN `wb-sync/1` from known peers, and dialling peers by the
//! addresses in `wb_peers.txt`. Works with no internet: no relay, no address lookup, unless
//! the registry names hubs, whose relays and directories are then used ([`crate::directory`]),
//! or discovery is on (a pkarr relay, [`crate::discovery`]).

use std::net::SocketAddr;
use std::sync::Arc;

use iroh::protocol::{AcceptError, ProtocolHandler, Router};
use protocol::wire::{Message, Role, SYNC_ALPN, code};
use protocol::{Audience, PublicKey, SecretKey};
use store::{Home, Store, time};
use tokio::sync::Semaphore;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::NodeError;
use crate::accept::{
    REQUESTS_PER_SESSION_MAX, accept_hello, close_with_error, end_session, too_many_requests,
    unexpected,
};
use crate::continuous::{Continuous, ContinuousConfig};
use crate::directory::{HubLink, HubOptions, hub_targets};
use crate::discovery::Discovery;
use crate::endpoint::bind_dialling_endpoint;
use crate::metrics::Side;
use crate::outcome::mark_recovered;
use crate::session::{Deadlines, Faults, PullStats, pull, serve_pull};
use crate::shared::{Shared, changed_store};

// The pieces a node is built from, under the paths callers have always used.
pub use crate::dial::{Direction, SyncReport, sync_once, sync_once_with_hubs};
pub use crate::endpoint::{
    CONNECTION_WINDOW, STREAM_WINDOW, STREAMS_PER_CONNECTION, bind_endpoint,
};
pub use crate::handle::NodeHandle;

/// Incoming sessions served at once; a connection over the limit is closed at once (the
/// dialer retries later).
pub const MAX_INCOMING_SESSIONS: usize = 64;

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
        // edits made while the node runs apply at once; entries whose key a held succession
        // replaced move to the new key first.
        let own = self.key.public();
        let registry =
            crate::succession::settle(&self.home, &self.store, &own, &[], self.registry.load()?)?;
        let mut peers = crate::revocations::effective(&self.store, &registry, &[], &own)?;
        let mut known = store::peer_by_key(&peers, &remote).cloned();
        let mut name = known.as_ref().map_or_else(
            || format!("unknown {}", remote.key_id()),
            |p| p.name.clone(),
        );
        // A key we do not know may be a known peer's new key: its Hello shows the succession.
        let mut received = None;
        if known.is_none() {
            let wait = if self.open {
                self.deadlines.message
            } else {
                crate::succession::UNKNOWN_HELLO_WAIT.min(self.deadlines.message)
            };
            let unknown = crate::succession::unknown_hello(
                conn,
                &name,
                (self.deadlines, wait),
                &self.home,
                &self.store,
                &own,
                &[],
                &remote,
            )
            .await;
            match unknown {
                Ok(unknown) => {
                    let (mut ch, hello) = unknown.received;
                    if let Some(registry) = unknown.admitted {
                        peers = crate::revocations::effective(&self.store, &registry, &[], &own)?;
                        known = store::peer_by_key(&peers, &remote).cloned();
                        if let Some(p) = &known {
                            name = p.name.clone();
                            ch.rename(name.clone());
                        }
                    }
                    received = Some((ch, hello));
                }
                // An open node ends the session as a bad Hello always did; a closed one refuses
                // the stranger as unknown (below).
                Err(e) if self.open => return Err(e),
                Err(e) => debug!(peer = %name, "no Hello showing a succession: {e}"),
            }
        }
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
            received,
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
                        (self.key.public(), remote),
                        audience.trusted,
                        first,
                        known.is_some(),
                        None,
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
