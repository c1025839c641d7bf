//! A node's side of its hubs (§11): it announces its addresses to every hub it is configured
//! with (`wb sync peers add … --hub`), uses the hubs' relays, and plugs the hubs' directories
//! into iroh's address lookup, so that dialling a peer by its key alone works.
//!
//! iroh calls [`AddressLookup::resolve`] from inside the endpoint; the lookup service must not
//! hold the endpoint (that would be a reference cycle), so it hands each query to a task that
//! does, through a bounded channel. The task and the announcer stop when the endpoint closes or
//! the [`HubLink`] is dropped.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use iroh::address_lookup::{self, AddressLookup, EndpointInfo, Item};
use iroh::endpoint::Connection;
use iroh::{Endpoint, EndpointAddr, EndpointId, RelayMap, RelayMode, RelayUrl, Watcher};
use protocol::hub::{Announcement, HUB_ALPN, HUB_MESSAGE_LEN_MAX, HubRequest, HubResponse};
use protocol::{PublicKey, SecretKey};
use store::Peer;
use tokio::sync::{Mutex, mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::NodeError;
use crate::endpoint::{bind_endpoint_with_relays, connection_error, resolve};
use crate::identity::endpoint_id;

/// How long one request to a hub (dial included) may take.
pub const HUB_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// A node re-announces itself this often even when nothing changed (hubs keep the time of the
/// last announcement; an announcement is stale after `ANNOUNCE_MAX_AGE_MS`, and a hub's entry
/// expires after `DIRECTORY_ENTRY_TTL_MS`, several intervals).
pub const ANNOUNCE_INTERVAL: Duration = Duration::from_secs(60);
const _: () = assert!(
    3 * ANNOUNCE_INTERVAL.as_millis() <= protocol::hub::DIRECTORY_ENTRY_TTL_MS as u128,
    "a directory entry must outlive a few announce intervals"
);
/// First and longest wait before retrying a failed announcement.
const ANNOUNCE_RETRY_MIN: Duration = Duration::from_millis(500);
const ANNOUNCE_RETRY_MAX: Duration = Duration::from_secs(60);
/// Address queries waiting for the lookup task at most; more fail at once.
const LOOKUP_QUEUE_LEN: usize = 64;
/// What iroh shows as the source of addresses found through a hub.
const PROVENANCE: &str = "wb-hub";

/// One hub as a node dials it: its key and direct addresses from `wb_peers.txt`.
#[derive(Clone, Debug)]
pub struct HubTarget {
    pub name: String,
    pub key: PublicKey,
    pub id: EndpointId,
    pub addrs: Vec<SocketAddr>,
}

impl HubTarget {
    /// The hub peer's addresses, resolved. A hub must be directly reachable: without an address
    /// it cannot be used.
    pub async fn from_peer(peer: &Peer) -> Result<Self, NodeError> {
        let addrs = resolve(peer).await?;
        if addrs.is_empty() {
            return Err(NodeError::NoAddress {
                peer: peer.name.clone(),
            });
        }
        Ok(Self {
            name: peer.name.clone(),
            key: peer.public_key,
            id: endpoint_id(&peer.public_key)?,
            addrs,
        })
    }

    fn endpoint_addr(&self) -> EndpointAddr {
        self.addrs
            .iter()
            .fold(EndpointAddr::new(self.id), |a, s| a.with_ip_addr(*s))
    }
}

/// The usable hubs of a peer registry (marked `Hub: yes`, not revoked, with an address);
/// the others are skipped with a warning.
pub async fn hub_targets(peers: &[Peer]) -> Vec<HubTarget> {
    let mut out = Vec::new();
    for p in peers.iter().filter(|p| p.hub && !p.revoked) {
        match HubTarget::from_peer(p).await {
            Ok(t) => out.push(t),
            Err(e) => warn!(hub = %p.name, "hub not used: {e}"),
        }
    }
    out
}

/// Binds an endpoint like [`crate::node::bind_endpoint`], but able to use relays added later
/// (the hubs' relays, learned from the hubs): a relay transport with an empty relay map.
pub async fn bind_endpoint_for_hubs(
    key: &SecretKey,
    listen: SocketAddr,
) -> Result<Endpoint, NodeError> {
    bind_endpoint_with_relays(
        key,
        listen,
        RelayMode::Custom(RelayMap::empty()),
        &crate::discovery::Discovery::Off,
        false,
    )
    .await
}

/// How a node uses its hubs.
#[derive(Clone, Copy, Debug)]
pub struct HubOptions {
    /// Announce our addresses to the hubs (a running node); a one-shot sync only looks up.
    pub announce: bool,
    /// Include direct addresses in announcements; without, only the relay URL is announced
    /// (for nodes whose direct addresses are private or unreachable).
    pub announce_direct: bool,
}

impl Default for HubOptions {
    fn default() -> Self {
        Self {
            announce: true,
            announce_direct: true,
        }
    }
}

/// A node's link to its hubs; dropping it stops announcing and answering lookups.
#[derive(Debug, Default)]
pub struct HubLink {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    relays: Vec<String>,
}

impl HubLink {
    /// The relay URLs learned from the hubs and added to the endpoint.
    pub fn relays(&self) -> &[String] {
        &self.relays
    }
}

impl Drop for HubLink {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Connects `endpoint` to its hubs: asks each for its relay and adds it (once, now; a running
/// node retries later), installs the hub lookup, and with `options.announce` starts announcing.
/// The endpoint must have been bound with [`bind_endpoint_for_hubs`] for relays to be used.
pub async fn attach(
    endpoint: &Endpoint,
    key: &SecretKey,
    hubs: Vec<HubTarget>,
    options: HubOptions,
) -> Result<HubLink, NodeError> {
    if hubs.is_empty() {
        return Ok(HubLink::default());
    }
    let client = Arc::new(Client {
        endpoint: endpoint.clone(),
        hubs,
        conns: Mutex::new(HashMap::new()),
        relays: Mutex::new(Vec::new()),
        informed: Mutex::new(std::collections::HashSet::new()),
    });
    // A one-shot sync needs the relays before it dials; a running node learns them in the
    // background (its announcer asks first), so a hub that is down does not delay its start.
    if !options.announce {
        for hub in &client.hubs {
            if let Err(e) = client.learn_relay(hub).await {
                warn!(hub = %hub.name, "cannot ask the hub for its relay: {e}");
            }
        }
    }
    let (tx, rx) = mpsc::channel(LOOKUP_QUEUE_LEN);
    let services = endpoint
        .address_lookup()
        .map_err(|e| NodeError::Internal(format!("address lookup: {e}")))?;
    services.add(HubLookup {
        hubs: client.hubs.iter().map(|h| h.id).collect(),
        queries: tx,
    });
    let mut tasks = vec![tokio::spawn(serve_lookups(client.clone(), rx))];
    if options.announce {
        tasks.push(tokio::spawn(announce_loop(
            client.clone(),
            key.clone(),
            options.announce_direct,
        )));
    }
    let relays = client.relays.lock().await.clone();
    Ok(HubLink { tasks, relays })
}

/// Dials hubs and asks them things; holds one connection per hub.
#[derive(Debug)]
struct Client {
    endpoint: Endpoint,
    hubs: Vec<HubTarget>,
    conns: Mutex<HashMap<EndpointId, Connection>>,
    /// Relay URLs already added to the endpoint.
    relays: Mutex<Vec<String>>,
    /// Hubs that answered `Info` (whether or not they run a relay).
    informed: Mutex<std::collections::HashSet<EndpointId>>,
}

impl Client {
    async fn connection(&self, hub: &HubTarget) -> Result<Connection, NodeError> {
        let mut conns = self.conns.lock().await;
        if let Some(c) = conns.get(&hub.id)
            && c.close_reason().is_none()
        {
            return Ok(c.clone());
        }
        let conn = tokio::time::timeout(
            HUB_REQUEST_TIMEOUT,
            self.endpoint.connect(hub.endpoint_addr(), HUB_ALPN),
        )
        .await
        .map_err(|_| NodeError::Unreachable {
            peer: hub.name.clone(),
            reason: format!("no answer within {}s", HUB_REQUEST_TIMEOUT.as_secs()),
        })?
        .map_err(|e| NodeError::Unreachable {
            peer: hub.name.clone(),
            reason: e.to_string(),
        })?;
        conns.insert(hub.id, conn.clone());
        Ok(conn)
    }

    /// One request to one hub, on a cached connection; a connection that broke since is
    /// replaced once.
    async fn request(&self, hub: &HubTarget, req: &HubRequest) -> Result<HubResponse, NodeError> {
        let conn = self.connection(hub).await?;
        match request(&conn, &hub.name, req).await {
            Err(NodeError::Lost { .. }) if conn.close_reason().is_some() => {
                if let Some(reason) = conn.close_reason()
                    && matches!(
                        reason,
                        iroh::endpoint::ConnectionError::ApplicationClosed(_)
                    )
                {
                    // The hub closed with a code (a refusal): report it, do not redial.
                    self.conns.lock().await.remove(&hub.id);
                    return Err(connection_error(&hub.name, &reason));
                }
                self.conns.lock().await.remove(&hub.id);
                let conn = self.connection(hub).await?;
                request(&conn, &hub.name, req).await
            }
            other => other,
        }
    }

    /// Asks the hub for its relay and adds it to the endpoint (once).
    async fn learn_relay(&self, hub: &HubTarget) -> Result<(), NodeError> {
        let answer = self.request(hub, &HubRequest::Info).await?;
        self.informed.lock().await.insert(hub.id);
        let HubResponse::Info {
            relay_url: Some(url),
        } = answer
        else {
            return Ok(());
        };
        let mut relays = self.relays.lock().await;
        if relays.contains(&url) {
            return Ok(());
        }
        let parsed: RelayUrl = url.parse().map_err(|e| NodeError::Protocol {
            peer: hub.name.clone(),
            reason: format!("relay URL {url:?}: {e}"),
        })?;
        self.endpoint
            .insert_relay(
                parsed.clone(),
                Arc::new(iroh::RelayConfig::new(parsed, None)),
            )
            .await;
        info!(hub = %hub.name, relay = %url, "using the hub's relay");
        relays.push(url);
        Ok(())
    }

    /// Asks every hub where `id` is; the first signed answer wins.
    async fn lookup(&self, id: EndpointId) -> Result<Option<Item>, NodeError> {
        let key =
            PublicKey::from_bytes(*id.as_bytes()).map_err(|e| NodeError::BadKey(e.to_string()))?;
        let mut last_err = None;
        for hub in &self.hubs {
            let answer = tokio::time::timeout(
                HUB_REQUEST_TIMEOUT,
                self.request(
                    hub,
                    &HubRequest::Lookup {
                        key: *key.as_bytes(),
                    },
                ),
            )
            .await
            .unwrap_or_else(|_| {
                Err(NodeError::Unreachable {
                    peer: hub.name.clone(),
                    reason: "lookup timed out".into(),
                })
            });
            match answer {
                Ok(HubResponse::Found(a)) => match a.verify() {
                    Ok(k) if k == key => return Ok(Some(item(id, &a, &hub.name))),
                    Ok(_) | Err(_) => {
                        warn!(hub = %hub.name, "the hub answered with a bad announcement")
                    }
                },
                Ok(HubResponse::NotFound) => {}
                Ok(other) => warn!(hub = %hub.name, "unexpected answer to a lookup: {other:?}"),
                Err(e) => {
                    debug!(hub = %hub.name, "lookup failed: {e}");
                    last_err = Some(e);
                }
            }
        }
        match last_err {
            Some(e) if self.hubs.len() == 1 => Err(e),
            _ => Ok(None),
        }
    }
}

/// The addresses of a verified announcement, as iroh's lookup result.
fn item(id: EndpointId, a: &Announcement, hub: &str) -> Item {
    let mut info = EndpointInfo::new(id);
    if let Ok(addrs) = a.socket_addrs() {
        info = info.with_ip_addrs(addrs);
    }
    if let Some(url) = &a.relay_url {
        match url.parse::<RelayUrl>() {
            Ok(u) => info = info.with_relay_url(u),
            Err(e) => warn!(%hub, "announced relay URL {url:?}: {e}"),
        }
    }
    Item::new(info, PROVENANCE, Some(a.timestamp_ms.saturating_mul(1000)))
}

/// One `wb-hub/1` request on its own stream of `conn`, answered within
/// [`HUB_REQUEST_TIMEOUT`].
pub async fn request(
    conn: &Connection,
    hub: &str,
    req: &HubRequest,
) -> Result<HubResponse, NodeError> {
    tokio::time::timeout(HUB_REQUEST_TIMEOUT, request_untimed(conn, hub, req))
        .await
        .map_err(|_| NodeError::Timeout {
            peer: hub.to_string(),
            step: format!("the {} request", req.kind()),
            limit: format!("{} s per hub request", HUB_REQUEST_TIMEOUT.as_secs()),
        })?
}

async fn request_untimed(
    conn: &Connection,
    hub: &str,
    req: &HubRequest,
) -> Result<HubResponse, NodeError> {
    let lost = |e: &dyn std::fmt::Display| NodeError::Lost {
        peer: hub.to_string(),
        reason: e.to_string(),
    };
    let bytes = req
        .encode()
        .map_err(|e| NodeError::Internal(format!("encoding {}: {e}", req.kind())))?;
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| lost(&e))?;
    send.write_all(&bytes).await.map_err(|e| lost(&e))?;
    send.finish().map_err(|e| lost(&e))?;
    let answer = recv
        .read_to_end(HUB_MESSAGE_LEN_MAX)
        .await
        .map_err(|e| lost(&e))?;
    HubResponse::decode(&answer).map_err(|e| NodeError::Protocol {
        peer: hub.to_string(),
        reason: e.to_string(),
    })
}

type Query = (EndpointId, oneshot::Sender<Result<Option<Item>, NodeError>>);

/// The hub directories as one of iroh's address lookup services.
#[derive(Debug)]
struct HubLookup {
    /// The hubs themselves are dialled by their configured addresses, never looked up.
    hubs: Vec<EndpointId>,
    queries: mpsc::Sender<Query>,
}

impl AddressLookup for HubLookup {
    fn resolve(
        &self,
        id: EndpointId,
    ) -> Option<BoxStream<'static, Result<Item, address_lookup::Error>>> {
        if self.hubs.contains(&id) {
            return None;
        }
        let queries = self.queries.clone();
        let answer = async move {
            let (tx, rx) = oneshot::channel();
            let fail = |e: NodeError| address_lookup::Error::from_err(PROVENANCE, e);
            queries
                .try_send((id, tx))
                .map_err(|_| fail(NodeError::Internal("hub lookups are busy".into())))?;
            rx.await
                .map_err(|_| fail(NodeError::Internal("hub lookup stopped".into())))?
                .map_err(fail)
        };
        Some(
            futures::stream::once(answer)
                .filter_map(|r| async move { r.transpose() })
                .boxed(),
        )
    }
}

/// Answers the lookup service's queries until the endpoint closes.
async fn serve_lookups(client: Arc<Client>, mut queries: mpsc::Receiver<Query>) {
    loop {
        tokio::select! {
            _ = client.endpoint.closed() => break,
            query = queries.recv() => {
                let Some((id, answer)) = query else { break };
                let client = client.clone();
                tokio::spawn(async move {
                    let _ = answer.send(client.lookup(id).await);
                });
            }
        }
    }
}

/// Learns the hubs' relays, then announces the endpoint's addresses to every hub now, whenever
/// they change, and every [`ANNOUNCE_INTERVAL`]; failures (a hub down, a refusal) are retried
/// with capped exponential backoff.
async fn announce_loop(client: Arc<Client>, key: SecretKey, direct: bool) {
    let mut watcher = client.endpoint.watch_addr();
    let mut last_ts = 0u64;
    let mut retry = ANNOUNCE_RETRY_MIN;
    loop {
        let mut failed = false;
        for hub in &client.hubs {
            if !client.informed.lock().await.contains(&hub.id)
                && let Err(e) = client.learn_relay(hub).await
            {
                warn!(hub = %hub.name, "cannot ask the hub for its relay: {e}");
                failed = true;
            }
        }
        let addr = watcher.get();
        let ips: Vec<SocketAddr> = if direct {
            addr.ip_addrs().copied().collect()
        } else {
            Vec::new()
        };
        let relay = addr.relay_urls().next().map(|u| u.as_str().to_string());
        // Nothing to announce yet (relay-only, before the relay is connected): wait for it.
        if !ips.is_empty() || relay.is_some() {
            // Strictly increasing, as hubs refuse an announcement not newer than the last.
            last_ts = store::time::now_ms().max(last_ts + 1);
            let announcement = Announcement::sign(&key, last_ts, &ips, relay.as_deref());
            for hub in &client.hubs {
                if !announce(&client, hub, &announcement).await {
                    failed = true;
                }
            }
        }
        let wait = if failed {
            let wait = retry;
            retry = (retry * 2).min(ANNOUNCE_RETRY_MAX);
            wait
        } else {
            retry = ANNOUNCE_RETRY_MIN;
            ANNOUNCE_INTERVAL
        };
        tokio::select! {
            _ = client.endpoint.closed() => break,
            changed = watcher.updated() => if changed.is_err() { break },
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// One announcement to one hub; false if it was not accepted (logged).
async fn announce(client: &Client, hub: &HubTarget, announcement: &Announcement) -> bool {
    match client
        .request(hub, &HubRequest::Announce(announcement.clone()))
        .await
    {
        Ok(HubResponse::Accepted) => {
            info!(
                hub = %hub.name,
                addrs = ?announcement.addrs,
                relay = ?announcement.relay_url,
                "announced to hub"
            );
            true
        }
        Ok(HubResponse::Rejected { code, reason }) => {
            warn!(hub = %hub.name, code, "the hub refused our announcement: {reason}");
            false
        }
        Ok(other) => {
            warn!(hub = %hub.name, "unexpected answer to an announcement: {other:?}");
            false
        }
        Err(e) => {
            warn!(hub = %hub.name, "cannot announce to the hub: {e}");
            false
        }
    }
}
