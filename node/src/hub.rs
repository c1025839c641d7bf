//! The hub role (`wb hub run`, §11): the same endpoint, store and `wb-sync/1` sessions as a
//! node, with three differences. It stores and forwards **public** records only, from every
//! admitted instance, served to every admitted instance over its own log sequence numbers; it
//! answers the directory protocol (`wb-hub/1`: signed address announcements and lookups); and it
//! can run an iroh relay server for the instances it admits.
//!
//! Admission, per connection (the registry is read each time, so `wb hub allow|revoke` apply at
//! once): a key marked revoked in the hub's `wb_peers.txt` is refused; a key not in it is
//! refused unless the hub is open. Refusals close the connection with the `wb-sync` error codes
//! and are logged. Live connections and relay clients are checked again every
//! [`ADMISSION_RECHECK_INTERVAL`]: those of a key no longer admitted are cut.
//!
//! Intake ([`Intake`]): never a revoked origin's records; a closed hub stores its allowed
//! origins' only, an open hub at most [`NEW_ORIGINS_PER_CONNECTION_MAX`] new origins per
//! connection. Directory entries expire (`protocol::hub::DIRECTORY_ENTRY_TTL_MS`).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use iroh::endpoint::Connection;
use iroh::protocol::{AcceptError, ProtocolHandler, Router};
use protocol::hub::{HUB_ALPN, HUB_MESSAGE_LEN_MAX, HubRequest, HubResponse};
use protocol::wire::{Message, Role, SYNC_ALPN, code};
use protocol::{Audience, PublicKey, Record, SecretKey};
use store::{ApplyOptions, CheckedBatch, Home, Store, time};
use tracing::{Instrument, debug, info, info_span, warn};

mod access;
mod intake;

use access::{Access, Live};
pub use intake::Intake;

use crate::NodeError;
use crate::accept::{
    REQUESTS_PER_SESSION_MAX, accept_hello, close_with_error, end_session, too_many_requests,
    unexpected,
};
use crate::endpoint::bind_endpoint;
use crate::handle::NodeHandle;
use crate::outcome::record_session;
use crate::session::{Channel, Deadlines, Faults, PeerHello, PullStats, serve_pull};

/// Directory requests one connection may make at once; more wait for a stream.
const DIRECTORY_STREAMS_MAX: usize = 4;
/// `wb-sync/1` sessions served at once; a connection over the limit is closed at once (the
/// instance retries later).
pub const HUB_SESSIONS_MAX: usize = 256;
/// Origins the hub holds nothing of that an open hub takes records of from one connection.
/// Records of further new origins are refused, and the instance's stored cursor stays before
/// them, so its next connection offers them again: an honest instance relaying many origins
/// gets them all in, a few connections later, while one admitted key cannot make the hub
/// store a million throwaway origins in one session. A closed hub takes its allowed origins
/// only and needs no cap.
pub const NEW_ORIGINS_PER_CONNECTION_MAX: usize = 64;

/// How a hub runs.
#[derive(Clone, Debug)]
pub struct HubConfig {
    pub home: Home,
    pub listen: SocketAddr,
    /// Admit any instance that is not revoked.
    pub open: bool,
    /// Run a relay server on this address (plain HTTP; put TLS in front for real deployments).
    pub relay_listen: Option<SocketAddr>,
    /// The URL instances reach the relay at, when it is not `http://<relay_listen>` (behind a
    /// TLS proxy, or listening on an unspecified address).
    pub relay_url: Option<String>,
    /// Instances whose announced revocations the hub applies (`--follow-revocations`), besides
    /// the registry's peers marked `Follow-Revocations: yes`.
    pub follow_revocations: Vec<PublicKey>,
}

/// How often the hub drops expired directory entries.
const DIRECTORY_SWEEP_INTERVAL: Duration = Duration::from_secs(60);
/// How often the hub checks its live connections and relay clients against its registry
/// again: a key revoked (or taken off a closed hub's allowlist) is cut within this.
pub const ADMISSION_RECHECK_INTERVAL: Duration = Duration::from_secs(2);

/// A running hub; dropping it without `shutdown` aborts it.
#[derive(Debug)]
pub struct RunningHub {
    router: Router,
    relay: Option<iroh_relay::server::Server>,
    relay_url: Option<String>,
    handle: NodeHandle,
    /// The hub's background upkeep ([`upkeep`]); aborted when the hub stops or is dropped.
    upkeep: AbortOnDrop,
    live: Arc<Live>,
}

/// A task aborted when this is dropped.
#[derive(Debug)]
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl RunningHub {
    pub fn id(&self) -> PublicKey {
        self.handle.key().public()
    }

    pub fn addrs(&self) -> &[SocketAddr] {
        self.handle.addrs()
    }

    /// The relay URL the hub gives instances, when it runs a relay.
    pub fn relay_url(&self) -> Option<&str> {
        self.relay_url.as_deref()
    }

    pub fn handle(&self) -> NodeHandle {
        self.handle.clone()
    }

    /// The keys connected to the hub's relay now (the hub's own excepted).
    pub fn relay_clients(&self) -> HashSet<PublicKey> {
        self.live.relay_keys()
    }

    /// Stops accepting, closes the endpoint, then stops the relay.
    pub async fn shutdown(self) -> Result<(), NodeError> {
        drop(self.upkeep);
        let result = self
            .router
            .shutdown()
            .await
            .map_err(|e| NodeError::Internal(e.to_string()));
        if let Some(relay) = self.relay {
            let _ = relay.shutdown().await;
        }
        result
    }
}

/// Starts a hub on an opened home.
pub async fn start(
    config: HubConfig,
    key: SecretKey,
    store: Arc<Store>,
) -> Result<RunningHub, NodeError> {
    let live = Arc::new(Live::default());
    let access = Access {
        home: config.home.clone(),
        open: config.open,
        hub: key.public(),
        live: live.clone(),
        cache: Arc::new(store::RegistryCache::new(config.home.clone())),
        store: store.clone(),
        follow: Arc::new(config.follow_revocations.clone()),
    };
    let (relay, relay_url) = match config.relay_listen {
        None => (None, None),
        Some(addr) => {
            let (server, url) =
                start_relay(addr, config.relay_url.as_deref(), access.clone()).await?;
            (Some(server), Some(url))
        }
    };
    let endpoint = bind_endpoint(&key, config.listen).await?;
    let addrs = endpoint.bound_sockets();
    let sync = HubSync {
        access: access.clone(),
        key: key.clone(),
        store: store.clone(),
        sessions: Arc::new(tokio::sync::Semaphore::new(HUB_SESSIONS_MAX)),
    };
    let directory = Directory {
        access: access.clone(),
        store: store.clone(),
        relay_url: relay_url.clone(),
    };
    let router = Router::builder(endpoint.clone())
        .accept(SYNC_ALPN, sync)
        .accept(HUB_ALPN, directory)
        .spawn();
    let relay_service = relay
        .as_ref()
        .and_then(|r: &iroh_relay::server::Server| r.relay_service().cloned());
    let upkeep = AbortOnDrop(tokio::spawn(upkeep(store.clone(), access, relay_service)));
    Ok(RunningHub {
        router,
        relay,
        relay_url,
        handle: NodeHandle::new(key, store, endpoint, addrs, config.home),
        upkeep,
        live,
    })
}

/// The hub's background upkeep, until aborted: every [`ADMISSION_RECHECK_INTERVAL`], cuts the
/// live connections and relay clients of keys the registry no longer admits
/// ([`Access::recheck`]); at start and every [`DIRECTORY_SWEEP_INTERVAL`], drops expired
/// directory entries.
async fn upkeep(
    store: Arc<Store>,
    access: Access,
    relay: Option<iroh_relay::server::RelayService>,
) {
    let mut sweep = tokio::time::interval(DIRECTORY_SWEEP_INTERVAL);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut recheck = tokio::time::interval(ADMISSION_RECHECK_INTERVAL);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = sweep.tick() => {
                let s = store.clone();
                match tokio::task::spawn_blocking(move || s.expire_directory(time::now_ms())).await {
                    Ok(Ok(0)) => {}
                    Ok(Ok(dropped)) => info!(dropped, "dropped expired directory entries"),
                    Ok(Err(e)) => warn!("cannot drop expired directory entries: {e}"),
                    Err(e) => warn!("cannot drop expired directory entries: {e}"),
                }
            }
            _ = recheck.tick() => {
                let a = access.clone();
                let relay = relay.clone();
                let _ = tokio::task::spawn_blocking(move || a.recheck(relay.as_ref())).await;
            }
        }
    }
}

async fn start_relay(
    listen: SocketAddr,
    url: Option<&str>,
    access: Access,
) -> Result<(iroh_relay::server::Server, String), NodeError> {
    let bind_err = |reason: String| NodeError::Bind {
        addr: listen.to_string(),
        reason,
    };
    let url_given = url.map(str::to_string);
    if url_given.is_none() && listen.ip().is_unspecified() {
        return Err(bind_err(
            "a relay on an unspecified address needs --relay-url (the URL instances reach it at)"
                .into(),
        ));
    }
    let mut relay = iroh_relay::server::RelayConfig::new(listen);
    relay.access = Arc::new(access);
    let mut config = iroh_relay::server::ServerConfig::default();
    config.relay = Some(relay);
    let server = iroh_relay::server::Server::spawn(config)
        .await
        .map_err(|e| bind_err(e.to_string()))?;
    let url = match url_given {
        Some(u) => u,
        None => {
            let addr = server
                .http_addr()
                .ok_or_else(|| bind_err("the relay has no HTTP address".into()))?;
            format!("http://{addr}/")
        }
    };
    url.parse::<iroh::RelayUrl>()
        .map_err(|e| bind_err(format!("relay URL {url:?}: {e}")))?;
    info!(%url, "relay server listening");
    Ok((server, url))
}

/// Accepts `wb-sync/1` from admitted instances: serves every public record it holds, takes
/// their public records.
#[derive(Clone)]
struct HubSync {
    access: Access,
    key: SecretKey,
    store: Arc<Store>,
    /// Bounds the sessions served at once.
    sessions: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for HubSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HubSync({})", self.access.home.root().display())
    }
}

impl ProtocolHandler for HubSync {
    async fn accept(&self, conn: Connection) -> Result<(), AcceptError> {
        let span = info_span!("conn", peer = %conn.remote_id().fmt_short(), alpn = "wb-sync/1", role = "hub");
        let this = self.clone();
        async move {
            let Some((remote, name, _tracked, received)) =
                this.access.admit_sync_connection(&conn).await
            else {
                return Ok(());
            };
            let Ok(_permit) = this.sessions.clone().try_acquire_owned() else {
                warn!(instance = %name, "refused: already serving {HUB_SESSIONS_MAX} sessions");
                crate::metrics::session_refused();
                conn.close(
                    code::INTERNAL.into(),
                    b"busy: too many sessions, try again later",
                );
                return Ok(());
            };
            if let Err(e) = this.session(&conn, remote, &name, received).await {
                warn!(instance = %name, "session ended with an error: {e}");
                record_session(
                    &this.store,
                    remote,
                    crate::metrics::Side::Accepted,
                    0,
                    &PullStats::default(),
                    Some(&e),
                )
                .await;
                close_with_error(&conn, &e, "hub");
            }
            Ok(())
        }
        .instrument(span)
        .await
    }
}

impl HubSync {
    async fn session(
        &self,
        conn: &Connection,
        remote: PublicKey,
        name: &str,
        received: Option<(Channel, PeerHello)>,
    ) -> Result<(), NodeError> {
        // A hub never lost records of its own; a restored node gets its public ones back here.
        let (mut ch, peer_epoch, _, return_own, digests) = accept_hello(
            conn,
            name,
            &self.store,
            (Role::Hub, false),
            Deadlines::default(),
            received,
        )
        .await?;
        let mut received = PullStats::default();
        let mut new_origins = NewOrigins::default();
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
                    // Hubs are never trusted: the one check (`may_receive`) lets public
                    // records (and public withdrawals) through, whatever their origin.
                    sent += serve_pull(
                        &mut ch,
                        &self.store,
                        self.key.public(),
                        remote,
                        Audience { trusted: false },
                        cursor,
                        true,
                        return_own,
                        Faults::default(),
                    )
                    .await?;
                }
                Some(Message::Offer) => {
                    let mut intake = self.access.intake()?;
                    let stats = receive_public(
                        &mut ch,
                        &self.store,
                        remote,
                        peer_epoch,
                        &mut intake,
                        &mut new_origins,
                    )
                    .await?;
                    received.add(stats);
                }
                Some(message @ Message::Digests { .. }) if !compared => {
                    compared = true;
                    let Some(first) = crate::digests::first(message) else {
                        break;
                    };
                    // Compared over the origins the hub's intake takes, as it stands now.
                    let intake = self.access.intake()?;
                    let takes = move |o: &[u8; 32]| intake.takes_origin(o);
                    crate::digests::answer(
                        &mut ch,
                        &self.store,
                        (self.key.public(), remote),
                        false,
                        first,
                        true,
                        Some(&takes),
                    )
                    .await?;
                }
                Some(Message::Bye) | None => break,
                Some(other) => return Err(unexpected(&mut ch, &other).await),
            }
        }
        info!(
            sent,
            received = received.received,
            new = received.new,
            rejected = received.rejected,
            "session finished"
        );
        end_session(conn, ch, &self.store, remote, sent, &received, true).await;
        Ok(())
    }
}

/// The origins one connection brought to an open hub that it held nothing of (at most
/// [`NEW_ORIGINS_PER_CONNECTION_MAX`]), and those found already held (not looked up again).
#[derive(Debug, Default)]
pub struct NewOrigins {
    taken: HashSet<PublicKey>,
    held: HashSet<PublicKey>,
}

impl NewOrigins {
    /// Whether a record of `origin` may be stored: the hub holds records of it, or it is one
    /// of the new origins this connection may bring.
    fn admit(&mut self, store: &Store, origin: PublicKey) -> Result<bool, store::StoreError> {
        if self.taken.contains(&origin) || self.held.contains(&origin) {
            return Ok(true);
        }
        if store.holds_origin(&origin)? {
            self.held.insert(origin);
            return Ok(true);
        }
        if self.taken.len() < NEW_ORIGINS_PER_CONNECTION_MAX {
            self.taken.insert(origin);
            return Ok(true);
        }
        Ok(false)
    }
}

/// Pulls an instance's changes into the hub's store: like [`crate::session::pull`], with the
/// hub's stricter intake ([`Intake`]; refusals are counted as rejected and logged). On an open
/// hub, records of new origins beyond the connection's allowance are refused too, and from
/// that batch on the stored cursor stays where it was, so the instance offers them again next
/// time. Versions the hub already holds byte for byte (an instance offering back what it
/// pulled from the hub) are counted unchanged without verifying their signature again.
pub async fn receive_public(
    ch: &mut Channel,
    store: &Arc<Store>,
    peer: PublicKey,
    peer_epoch: [u8; 16],
    intake: &mut Intake,
    new_origins: &mut NewOrigins,
) -> Result<PullStats, NodeError> {
    let start = crate::session::request_pull(ch, store, peer, peer_epoch).await?;
    let mut stats = PullStats::default();
    // The cursor everything before is settled up to; held once a record must be offered again.
    let mut settled = start;
    let mut held_back = false;
    loop {
        let (records, next, done) = match ch.expect("Batch").await? {
            Message::Batch {
                records,
                next,
                done,
            } => (records, next, done),
            other => {
                return Err(NodeError::Protocol {
                    peer: ch.peer().to_string(),
                    reason: format!("expected Batch, got {}", other.kind()),
                });
            }
        };
        stats.received += records.len() as u64;
        let mut decoded = Vec::with_capacity(records.len());
        for bytes in &records {
            let r = Record::from_sealed_bytes(bytes).map_err(|e| NodeError::Protocol {
                peer: ch.peer().to_string(),
                reason: format!("undecodable record: {e}"),
            })?;
            decoded.push(r);
        }
        intake.allow_former_keys(store, &decoded)?;
        let mut refused = 0u64;
        decoded.retain(|r| match intake.refusal(r) {
            None => true,
            Some(why) => {
                refused += 1;
                debug!(instance = %ch.peer(), origin = %r.origin.key_id(), "refused a record {why}");
                false
            }
        });
        if refused > 0 {
            warn!(
                instance = %ch.peer(),
                refused,
                "refused records that are not public, or of a revoked origin or one not allowed"
            );
        }
        stats.rejected += refused;
        let mut opts = ApplyOptions::new(format!("hub instance {}", peer.key_id()), time::now_ms());
        opts.revoked = intake.revoked.clone();
        let s = store.clone();
        let open = intake.allowed.is_none();
        let mut origins = std::mem::take(new_origins);
        let (report, held, capped, origins) = tokio::task::spawn_blocking(move || {
            let mut fresh = Vec::with_capacity(decoded.len());
            let mut held = 0u64;
            let mut capped = 0u64;
            for r in decoded {
                match s.get(&r.key())? {
                    Some(current) if current == r => held += 1,
                    _ if open && !origins.admit(&s, r.origin)? => capped += 1,
                    _ => fresh.push(r),
                }
            }
            let hold = held_back || capped > 0;
            opts.cursor = Some((peer, if hold { settled } else { next }));
            let checked = CheckedBatch::check(fresh, &opts);
            s.apply_checked(&checked, &opts)
                .map(|rep| (rep, held, capped, origins))
        })
        .await
        .map_err(|e| NodeError::Internal(e.to_string()))??;
        *new_origins = origins;
        held_back |= capped > 0;
        if !held_back {
            settled = next;
        }
        if capped > 0 {
            warn!(
                instance = %ch.peer(),
                capped,
                "refused records of origins new to the hub beyond {NEW_ORIGINS_PER_CONNECTION_MAX} \
                 per connection (offered again next time)"
            );
        }
        debug!(new = report.new, held, "applied a batch");
        stats.add(PullStats {
            new: report.new,
            updated: report.updated,
            unchanged: report.unchanged + held,
            stale: report.stale,
            conflicts: report.conflicts,
            rejected: report.rejected + capped,
            received: 0,
        });
        if done {
            return Ok(stats);
        }
    }
}

/// Accepts `wb-hub/1`: announcements, lookups, relay info.
#[derive(Clone)]
struct Directory {
    access: Access,
    store: Arc<Store>,
    relay_url: Option<String>,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Directory({})", self.access.home.root().display())
    }
}

impl ProtocolHandler for Directory {
    async fn accept(&self, conn: Connection) -> Result<(), AcceptError> {
        let span = info_span!("conn", peer = %conn.remote_id().fmt_short(), alpn = "wb-hub/1");
        let this = self.clone();
        async move {
            let Some((remote, name, _tracked)) = this.access.admit_connection(&conn) else {
                return Ok(());
            };
            let limit = Arc::new(tokio::sync::Semaphore::new(DIRECTORY_STREAMS_MAX));
            while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                let Ok(permit) = limit.clone().acquire_owned().await else {
                    break;
                };
                let this = this.clone();
                let name = name.clone();
                tokio::spawn(
                    async move {
                        // A request is one small message: read within one message's
                        // deadline, or the stream's permit would be held for ever.
                        let read = tokio::time::timeout(
                            Deadlines::MESSAGE,
                            recv.read_to_end(HUB_MESSAGE_LEN_MAX),
                        )
                        .await;
                        let answer = match read {
                            Ok(Ok(bytes)) => match HubRequest::decode(&bytes) {
                                Ok(req) => this.answer(remote, &name, req).await,
                                Err(e) => HubResponse::Rejected {
                                    code: code::PROTOCOL_VIOLATION,
                                    reason: e.to_string(),
                                },
                            },
                            Ok(Err(e)) => HubResponse::Rejected {
                                code: code::PROTOCOL_VIOLATION,
                                reason: format!("bad request: {e}"),
                            },
                            Err(_) => HubResponse::Rejected {
                                code: code::PROTOCOL_VIOLATION,
                                reason: format!(
                                    "no whole request within {} s",
                                    Deadlines::MESSAGE.as_secs()
                                ),
                            },
                        };
                        if let Ok(bytes) = answer.encode() {
                            let _ =
                                tokio::time::timeout(Deadlines::MESSAGE, send.write_all(&bytes))
                                    .await;
                        }
                        let _ = send.finish();
                        drop(permit);
                    }
                    .in_current_span(),
                );
            }
            Ok(())
        }
        .instrument(span)
        .await
    }
}

impl Directory {
    async fn answer(&self, remote: PublicKey, name: &str, req: HubRequest) -> HubResponse {
        match req {
            HubRequest::Info => HubResponse::Info {
                relay_url: self.relay_url.clone(),
            },
            HubRequest::Lookup { key } => {
                let Ok(wanted) = PublicKey::from_bytes(key) else {
                    return HubResponse::NotFound;
                };
                // A revoked instance's addresses are not given out (nor anyone's while the
                // registry cannot be read).
                match self.access.revoked() {
                    Ok(revoked) if !revoked.contains(&wanted) => {}
                    Ok(_) => return HubResponse::NotFound,
                    Err(_) => return internal(),
                }
                let s = self.store.clone();
                let now = time::now_ms();
                match tokio::task::spawn_blocking(move || s.directory_entry(&wanted)).await {
                    // An instance that stopped announcing itself is no longer given out.
                    Ok(Ok(Some(entry))) if !entry.expired(now) => {
                        HubResponse::Found(entry.announcement)
                    }
                    Ok(Ok(_)) => HubResponse::NotFound,
                    Ok(Err(e)) => {
                        warn!("directory lookup: {e}");
                        internal()
                    }
                    Err(e) => {
                        warn!("directory lookup: {e}");
                        internal()
                    }
                }
            }
            HubRequest::Announce(a) => {
                if a.key != *remote.as_bytes() {
                    warn!(instance = %name, "refused an announcement of another key");
                    return HubResponse::Rejected {
                        code: protocol::hub::hub_code::NOT_SELF,
                        reason: "an instance may only announce itself".into(),
                    };
                }
                let s = self.store.clone();
                let now = time::now_ms();
                match tokio::task::spawn_blocking(move || s.accept_announcement(&a, now)).await {
                    Ok(Ok(Ok(_))) => {
                        debug!(instance = %name, "announcement accepted");
                        HubResponse::Accepted
                    }
                    Ok(Ok(Err(e))) => {
                        warn!(instance = %name, "refused an announcement: {e}");
                        HubResponse::Rejected {
                            code: e.code(),
                            reason: e.to_string(),
                        }
                    }
                    Ok(Err(e)) => {
                        warn!("storing an announcement: {e}");
                        internal()
                    }
                    Err(e) => {
                        warn!("storing an announcement: {e}");
                        internal()
                    }
                }
            }
        }
    }
}

fn internal() -> HubResponse {
    HubResponse::Rejected {
        code: code::INTERNAL,
        reason: "internal error on the hub".into(),
    }
}
