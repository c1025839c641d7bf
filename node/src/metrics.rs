//! Prometheus metrics (`--metrics HOST:PORT`): wb's own series next to iroh's endpoint counters,
//! in one `iroh_metrics::Registry`, served as text over HTTP by a small hyper server bounded in
//! connections, request size and time. Session counts live in the process; the rest is read
//! from the store at each scrape, so it matches `wb sync status` and survives restarts.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Request, Response, StatusCode};
use iroh_metrics::{Counter, EncodeLabelSet, Family, Gauge, MetricsGroup, MetricsSource, Registry};
use store::{Home, PeerState, Store};
use tokio::net::TcpListener;
use tokio::sync::{Mutex, Semaphore};
use tracing::{debug, info, warn};

use crate::NodeError;

/// Scrapes served at once; a connection over the limit is closed at once.
pub const METRICS_CONNECTIONS_MAX: usize = 8;
/// Bytes of request head (request line and headers) a scraper may send.
pub const METRICS_REQUEST_BYTES_MAX: usize = 16 * 1024;
/// Time a scraper has to send its request head.
pub const METRICS_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Time one connection may take in all (request, reading the store, answer).
pub const METRICS_CONNECTION_TIMEOUT: Duration = Duration::from_secs(15);

/// What one session ended as, for `wb_sessions_total{result}`.
pub fn session_result(error: Option<&NodeError>) -> &'static str {
    match error {
        None => "ok",
        Some(NodeError::Unreachable { .. } | NodeError::NoAddress { .. })
        | Some(NodeError::Resolve { .. }) => "unreachable",
        Some(NodeError::Refused { .. } | NodeError::VersionMismatch { .. }) => "refused",
        Some(NodeError::Timeout { .. }) => "timeout",
        Some(NodeError::Protocol { .. }) => "protocol",
        Some(NodeError::Lost { .. }) => "lost",
        Some(_) => "error",
    }
}

/// Which side of a session this process was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// We dialled (continuous sync, `wb sync now`).
    Dialled,
    /// A peer dialled us.
    Accepted,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct SessionLabels {
    side: &'static str,
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct PeerLabels {
    peer: String,
}

/// Counted as sessions end, for the life of the process.
#[derive(Debug, MetricsGroup)]
#[metrics(default, name = "wb")]
struct SessionMetrics {
    /// Sync sessions by side (dialled, accepted) and result (ok, unreachable, refused, timeout, protocol, lost, error)
    sessions: Family<SessionLabels, Counter>,
    /// Records sent to peers in sessions that ended well
    records_sent: Counter,
}

/// Read from the store at each scrape.
#[derive(Debug, MetricsGroup)]
#[metrics(default, name = "wb")]
struct StoreMetrics {
    /// Record versions received (sync and bundles) by result: new, updated, unchanged, stale
    records_received: Family<ResultLabels, Counter>,
    /// Record versions rejected by reason: signature, future, invalid, revoked
    records_rejected: Family<ReasonLabels, Counter>,
    /// Versions that arrived with the same version and other content
    conflicts: Counter,
    /// Local writes (record put, app adoption, rekey)
    local_writes: Counter,
    /// Records held, all origins, tombstones included
    store_records: Gauge,
    /// Size of the store file in bytes
    store_bytes: Gauge,
    /// Seconds since the last session that ended well, per peer that had one
    peer_seconds_since_sync: Family<PeerLabels, Gauge>,
    /// Changes of our log the peer has not confirmed yet, per peer
    peer_records_behind: Family<PeerLabels, Gauge>,
    /// 1 when the last session with the peer failed, else 0
    peer_failing: Family<PeerLabels, Gauge>,
    /// Tokio tasks alive in the process (the runtime's count), for leak watching
    runtime_tasks: Gauge,
}

/// A hub's own series, read from its store at each scrape.
#[derive(Debug, MetricsGroup)]
#[metrics(default, name = "wb_hub")]
struct HubMetrics {
    /// Address announcements in the hub's directory (expired ones until swept)
    directory_entries: Gauge,
    /// Instances whose records the hub holds
    origins: Gauge,
}

/// One process runs one node or hub: its session counts are process-wide, like a Prometheus
/// client's default registry.
static SESSIONS: LazyLock<Arc<SessionMetrics>> =
    LazyLock::new(|| Arc::new(SessionMetrics::default()));

/// Counts a session that ended (called where its outcome is recorded).
pub(crate) fn session_ended(side: Side, error: Option<&NodeError>, sent: u64) {
    let labels = SessionLabels {
        side: match side {
            Side::Dialled => "dialled",
            Side::Accepted => "accepted",
        },
        result: session_result(error),
    };
    SESSIONS.sessions.get_or_create(&labels).inc();
    if error.is_none() {
        SESSIONS.records_sent.inc_by(sent);
    }
}

/// A connection refused at the door (unknown or revoked key, busy).
pub(crate) fn session_refused() {
    let labels = SessionLabels {
        side: "accepted",
        result: "refused",
    };
    SESSIONS.sessions.get_or_create(&labels).inc();
}

/// The role whose series an [`Exporter`] adds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Node,
    Hub,
}

/// wb's and iroh's series in one registry; [`Exporter::render`] refreshes the store's series
/// and encodes everything as Prometheus/OpenMetrics text.
#[derive(Debug)]
pub struct Exporter {
    registry: Registry,
    store_metrics: Arc<StoreMetrics>,
    hub_metrics: Option<Arc<HubMetrics>>,
    store: Arc<Store>,
    home: Home,
    /// One scrape at a time refreshes and encodes: the per-peer families are rebuilt.
    scrape: Mutex<()>,
}

impl Exporter {
    /// The registry of a running node or hub: wb's series (`wb_…`, `wb_hub_…`) and the
    /// endpoint's iroh counters (`iroh_…`: bytes by transport, holepunching, relay use).
    pub fn new(role: Role, store: Arc<Store>, home: Home, endpoint: &iroh::Endpoint) -> Self {
        let mut registry = Registry::default();
        registry.register(SESSIONS.clone());
        let store_metrics = Arc::new(StoreMetrics::default());
        registry.register(store_metrics.clone());
        let hub_metrics = (role == Role::Hub).then(|| Arc::new(HubMetrics::default()));
        if let Some(h) = &hub_metrics {
            registry.register(h.clone());
        }
        registry
            .sub_registry_with_prefix("iroh")
            .register_all(endpoint.metrics());
        Self {
            registry,
            store_metrics,
            hub_metrics,
            store,
            home,
            scrape: Mutex::new(()),
        }
    }

    /// Reads the store's series and encodes the whole registry (blocking: call it off the
    /// async threads).
    pub fn render_blocking(&self) -> Result<String, NodeError> {
        self.refresh()?;
        self.registry
            .encode_openmetrics_to_string()
            .map_err(|e| NodeError::Internal(format!("cannot encode metrics: {e}")))
    }

    /// [`Exporter::render_blocking`] on a blocking thread, one scrape at a time.
    pub async fn render(self: &Arc<Self>) -> Result<String, NodeError> {
        let _one = self.scrape.lock().await;
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.render_blocking())
            .await
            .map_err(|e| NodeError::Internal(format!("metrics task: {e}")))?
    }

    fn refresh(&self) -> Result<(), NodeError> {
        let m = &self.store_metrics;
        let mut counters = self.store.counters()?;
        // Every result and reason is a series from the start, at 0 until it happens.
        for name in [
            store::counter::NEW,
            store::counter::UPDATED,
            store::counter::UNCHANGED,
            store::counter::STALE,
            store::counter::REJECTED_SIGNATURE,
            store::counter::REJECTED_FUTURE,
            store::counter::REJECTED_INVALID,
            store::counter::REJECTED_REVOKED,
        ] {
            counters.entry(name.to_string()).or_insert(0);
        }
        for (name, value) in &counters {
            let received = match name.as_str() {
                store::counter::NEW => Some("new"),
                store::counter::UPDATED => Some("updated"),
                store::counter::UNCHANGED => Some("unchanged"),
                store::counter::STALE => Some("stale"),
                _ => None,
            };
            if let Some(result) = received {
                m.records_received
                    .get_or_create(&ResultLabels {
                        result: result.into(),
                    })
                    .set(*value);
            } else if let Some(reason) = name.strip_prefix("rejected_") {
                m.records_rejected
                    .get_or_create(&ReasonLabels {
                        reason: reason.into(),
                    })
                    .set(*value);
            }
        }
        let counter = |name: &str| counters.get(name).copied().unwrap_or(0);
        m.conflicts.set(counter(store::counter::CONFLICTS));
        m.local_writes.set(counter(store::counter::LOCAL_WRITES));
        m.store_records.set(gauge(self.store.record_count()?));
        let bytes = std::fs::metadata(self.store.path()).map_or(0, |meta| meta.len());
        m.store_bytes.set(gauge(bytes));
        // The scrape runs on one of the runtime's blocking threads, so it sees the runtime.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            m.runtime_tasks
                .set(gauge(runtime.metrics().num_alive_tasks() as u64));
        }

        let peers = store::load_peers(&self.home)?;
        let states = self.store.peer_states()?;
        let now_ms = store::time::now_ms();
        let last_seq = self.store.last_seq()?;
        let epoch = self.store.epoch().0;
        let mut since = BTreeMap::new();
        let mut behind = BTreeMap::new();
        let mut failing = BTreeMap::new();
        for peer in peers.iter().filter(|p| !p.revoked) {
            let state = states.get(&peer.public_key).cloned().unwrap_or_default();
            if let Some(ms) = state.last_sync_ms {
                since.insert(peer.name.clone(), now_ms.saturating_sub(ms) / 1000);
            }
            behind.insert(peer.name.clone(), self.behind(&state, epoch, last_seq)?);
            failing.insert(peer.name.clone(), u64::from(is_failing(&state)));
        }
        set_family(&m.peer_seconds_since_sync, since);
        set_family(&m.peer_records_behind, behind);
        set_family(&m.peer_failing, failing);

        if let Some(h) = &self.hub_metrics {
            h.directory_entries
                .set(gauge(self.store.directory()?.len() as u64));
            h.origins.set(gauge(self.store.holdings()?.len() as u64));
        }
        Ok(())
    }

    /// Live log entries after the peer's confirmed cursor (all of them when it confirmed
    /// another epoch of ours, or nothing yet).
    fn behind(&self, state: &PeerState, epoch: [u8; 16], last_seq: u64) -> Result<u64, NodeError> {
        let after = match state.acked_epoch {
            Some(e) if e == epoch => state.acked_seq,
            _ => 0,
        };
        if after >= last_seq {
            return Ok(0);
        }
        Ok(self.store.log_entries_after(after)?)
    }
}

fn is_failing(state: &PeerState) -> bool {
    match (state.last_error_ms, state.last_sync_ms) {
        (Some(err), Some(ok)) => err > ok,
        (Some(_), None) => true,
        _ => false,
    }
}

fn gauge(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Replaces a per-peer family's members: peers removed from the registry disappear.
fn set_family(family: &Family<PeerLabels, Gauge>, values: BTreeMap<String, u64>) {
    family.clear();
    for (peer, v) in values {
        family.get_or_create(&PeerLabels { peer }).set(gauge(v));
    }
}

/// The metrics endpoint; dropping it stops the server.
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl MetricsServer {
    /// The address the server listens on (the port chosen for `:0`).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `GET /metrics` on `addr`: at most [`METRICS_CONNECTIONS_MAX`] connections at once,
/// one request each, its head within [`METRICS_REQUEST_BYTES_MAX`] bytes and
/// [`METRICS_REQUEST_TIMEOUT`], the whole connection within [`METRICS_CONNECTION_TIMEOUT`].
pub async fn serve(addr: SocketAddr, exporter: Arc<Exporter>) -> Result<MetricsServer, NodeError> {
    let bind_err = |e: std::io::Error| NodeError::Bind {
        addr: addr.to_string(),
        reason: format!("metrics: {e}"),
    };
    let listener = TcpListener::bind(addr).await.map_err(bind_err)?;
    let addr = listener.local_addr().map_err(bind_err)?;
    info!(%addr, "serving metrics at http://{addr}/metrics");
    let task = tokio::spawn(accept_loop(listener, exporter));
    Ok(MetricsServer { addr, task })
}

async fn accept_loop(listener: TcpListener, exporter: Arc<Exporter>) {
    let slots = Arc::new(Semaphore::new(METRICS_CONNECTIONS_MAX));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                warn!("metrics: cannot accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            debug!(%peer, "metrics: busy, connection closed");
            continue;
        };
        let exporter = exporter.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let io = hyper_util::rt::TokioIo::new(stream);
            let service = hyper::service::service_fn(move |req| {
                let exporter = exporter.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(req, &exporter).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(METRICS_REQUEST_TIMEOUT)
                .max_buf_size(METRICS_REQUEST_BYTES_MAX)
                .keep_alive(false)
                .serve_connection(io, service);
            match tokio::time::timeout(METRICS_CONNECTION_TIMEOUT, conn).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => debug!(%peer, "metrics: connection ended: {e}"),
                Err(_) => debug!(%peer, "metrics: connection took too long, closed"),
            }
        });
    }
}

async fn answer(
    req: Request<hyper::body::Incoming>,
    exporter: &Arc<Exporter>,
) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r
    };
    if req.uri().path() != "/metrics" {
        return reply(StatusCode::NOT_FOUND, "not found: try /metrics\n".into());
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(StatusCode::METHOD_NOT_ALLOWED, "GET /metrics\n".into());
    }
    match exporter.render().await {
        Ok(text) => {
            let mut r = reply(StatusCode::OK, text);
            // As iroh's own metrics server: Prometheus reads this encoding as its text format.
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            r
        }
        Err(e) => {
            warn!("metrics: {e}");
            reply(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n"))
        }
    }
}
