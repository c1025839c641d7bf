//! `wb node run` and `wb sync now|pull|push`.

use std::io::Write;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use node::continuous::ContinuousConfig;
use node::discovery::Discovery;
use node::node::{Direction, NodeConfig, sync_once_with_hubs};
use node::session::{Deadlines, Faults};
use serde_json::json;
use store::Home;

use crate::config::Settings;
use crate::render::Output;

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Runs the node until Ctrl-C or SIGTERM. The ready line is printed as soon as the node
/// listens (tests and scripts wait for it); the returned output is the shutdown summary.
/// With `auto_sync`, the node syncs with its peers by itself (continuous sync).
pub fn run(
    home: &Home,
    settings: &Settings,
    cut_after_batches: Option<u64>,
    json: bool,
    run_command: crate::control::RunCommand,
) -> Result<Output> {
    let listen = settings.listen.value;
    let open = settings.open.value;
    let auto_sync = settings
        .auto_sync
        .value
        .then(|| std::time::Duration::from_secs(settings.sync_interval.value));
    let metrics = settings.metrics.value;
    let deadlines = Deadlines::per_message(std::time::Duration::from_secs(settings.timeout.value));
    if std::os::unix::net::UnixStream::connect(crate::control::socket_path(home)).is_ok() {
        anyhow::bail!(
            "a node is already running on {} (its control socket answers); stop it first",
            home.root().display()
        );
    }
    let (key, store) = home.open()?;
    let store = Arc::new(store);
    runtime()?.block_on(async move {
        let config = NodeConfig {
            home: home.clone(),
            listen,
            open,
            deadlines,
            faults: Faults { cut_after_batches },
            discovery: settings.discovery.value.clone(),
        };
        let mut node = node::node::start(config, key, store).await?;
        if let Some(interval) = auto_sync {
            node.start_continuous(ContinuousConfig {
                interval,
                ..ContinuousConfig::default()
            })
            .await;
        }
        crate::running::set(node.handle());
        let metrics = start_metrics(metrics, node::metrics::Role::Node, &node.handle()).await?;
        // `wb id` puts these addresses in its ticket, also after the node stopped.
        record_addrs(node.handle()).await;
        // Other `wb` commands on this home now reach the node through its control socket.
        let handle = node.handle();
        let control = crate::control::Server::start(
            home,
            Arc::new(move || handle.local_changed()),
            run_command,
        )?;
        // The app beside this instance: adopt its snapshots, write its inbox (§14).
        let snapshot = settings.app_snapshot.value.clone();
        let inbox = settings.app_inbox.value.clone();
        let bridge = (snapshot.is_some() || inbox.is_some()).then(|| {
            node::app_bridge::spawn(
                node.handle(),
                node::app_bridge::AppBridgeConfig {
                    snapshot,
                    inbox,
                    import_cmd: settings.app_import_cmd.value.clone(),
                    poll: std::time::Duration::from_secs(settings.app_poll.value),
                    allow_contact: settings.app_allow_contact.value,
                },
            )
        });
        let addrs: Vec<String> = node.addrs().iter().map(ToString::to_string).collect();
        let id = node::identity::endpoint_id(&node.id())?.to_string();
        let ready = if json {
            json!({
                "event": "ready",
                "endpoint_id": id,
                "addrs": addrs,
                "open": open,
                "sync_interval_s": auto_sync.map(|d| d.as_secs()),
                "metrics": metrics.as_ref().map(|m| m.local_addr().to_string()),
            })
            .to_string()
        } else {
            format!(
                "wb node ready: endpoint {id} listening on {}{}{}{}",
                addrs.join(", "),
                metrics_note(metrics.as_ref()),
                if open {
                    " (open: unknown peers may pull public records)"
                } else {
                    ""
                },
                match auto_sync {
                    Some(d) => format!(
                        "; syncing with peers every {} s and on changes",
                        d.as_secs()
                    ),
                    None => "; not dialling peers (auto_sync off)".into(),
                }
            )
        };
        serve_until_shutdown(&ready, control).await;
        if let Some(bridge) = bridge {
            bridge.abort();
        }
        drop(metrics);
        node.shutdown().await?;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(Output::new("wb node stopped", json!({"event": "stopped"})))
}

/// Serves `/metrics` for a running node or hub when `--metrics` was given.
pub(crate) async fn start_metrics(
    addr: Option<std::net::SocketAddr>,
    role: node::metrics::Role,
    handle: &node::node::NodeHandle,
) -> Result<Option<node::metrics::MetricsServer>> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    let exporter = node::metrics::Exporter::new(
        role,
        handle.store().clone(),
        handle.home().clone(),
        handle.endpoint(),
    );
    Ok(Some(node::metrics::serve(addr, Arc::new(exporter)).await?))
}

/// The ready line's words about `--metrics`.
pub(crate) fn metrics_note(server: Option<&node::metrics::MetricsServer>) -> String {
    server.map_or_else(String::new, |m| {
        format!("; metrics at http://{}/metrics", m.local_addr())
    })
}

/// Prints the ready line at once (tests and scripts wait for it), serves until Ctrl-C or
/// SIGTERM, then stops the control socket and forgets the node running in this process. The
/// caller shuts its node or hub down.
pub(crate) async fn serve_until_shutdown(ready: &str, control: crate::control::Server) {
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{ready}");
        let _ = out.flush();
    }
    wait_for_shutdown().await;
    control.stop();
    crate::running::clear();
}

async fn wait_for_shutdown() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// `wb sync now PEER` (and `sync pull|push`, one hub of `sync now --hub`) with the discovery
/// of the settings (wb.toml, WB_DISCOVERY), or of the running node.
pub fn sync_now(
    home: &Home,
    peer_name: &str,
    direction: Direction,
    deadlines: Deadlines,
) -> Result<Output> {
    sync_now_with(home, peer_name, direction, deadlines, None)
}

/// [`sync_now`] with `--discovery` as given (`None`: not given).
pub fn sync_now_with(
    home: &Home,
    peer_name: &str,
    direction: Direction,
    deadlines: Deadlines,
    discovery: Option<&str>,
) -> Result<Output> {
    let find = |peers: &[store::Peer]| {
        store::find_peer(peers, peer_name)
            .cloned()
            .ok_or_else(|| anyhow!("no peer named {peer_name:?} (see `wb sync peers list`)"))
    };
    find(&store::load_peers(home)?)?;
    // The peer's entry moves to its new key first if a held succession replaced it; a key
    // revoked by the announcement of a peer whose revocations we follow is revoked here too.
    let (opened, view) = match crate::running::get() {
        Some(node) => {
            let own = node.key().public();
            store::successions::settle(home, node.store(), &own, &[])?;
            let peers = store::load_peers(home)?;
            (
                None,
                store::revocations::effective_peers(node.store(), &peers, &[], &own)?,
            )
        }
        None => {
            let (key, store) = home.open()?;
            store::successions::settle(home, &store, &key.public(), &[])?;
            let peers = store::load_peers(home)?;
            let view = store::revocations::effective_peers(&store, &peers, &[], &key.public())?;
            (Some((key, Arc::new(store))), view)
        }
    };
    let peers = store::load_peers(home)?;
    let peer = find(&peers)?;
    if peer.revoked {
        return Err(anyhow!(
            "peer {peer_name} is revoked; nothing is synced with it"
        ));
    }
    if let Some(r) = view.1.iter().find(|r| r.revoked == peer.public_key) {
        let by = store::peer_by_key(&peers, &r.revoker)
            .map_or_else(|| r.revoker.key_id(), |p| p.name.clone());
        return Err(anyhow!(
            "peer {peer_name} is revoked by the announcement of {by}, whose revocations you              follow; nothing is synced with it"
        ));
    }
    let report = match opened {
        // A control-socket client's command: sync from the running node's own endpoint.
        None => {
            let node = crate::running::get()
                .ok_or_else(|| anyhow!("the node running on this home stopped"))?;
            // The node's endpoint is bound with its own discovery: another cannot apply.
            if let Some(flag) = discovery {
                let wanted: Discovery = flag
                    .parse()
                    .map_err(|e| anyhow!("--discovery {flag:?}: {e}"))?;
                if wanted != *node.discovery() {
                    return Err(anyhow!(
                        "the node running on this home syncs with discovery {}; `--discovery \
                         {wanted}` applies only to a sync without a running node (restart the \
                         node with it, or leave the flag out)",
                        node.discovery()
                    ));
                }
            }
            let runtime = crate::running::runtime()
                .ok_or_else(|| anyhow!("the running node has no async runtime"))?;
            let report = runtime.block_on(node.sync_with_deadlines(&peer, direction, deadlines))?;
            if report.pulled.new + report.pulled.updated > 0 {
                node.local_changed();
            }
            report
        }
        Some((key, store)) => {
            let discovery = crate::config::discovery(home, discovery)?;
            // Hubs, and discovery when it is on, help find a peer registered without an
            // address (hubs relay to it too); revoked origins' records are not taken.
            runtime()?.block_on(sync_once_with_hubs(
                &key, &store, &peer, direction, &peers, deadlines, &discovery,
            ))?
        }
    };
    let p = report.pulled;
    let text = format!(
        "synced with {}: received {} ({} new, {} updated, {} unchanged), sent {}, {} conflicts, {} stale, {} rejected",
        peer.name,
        p.received,
        p.new,
        p.updated,
        p.unchanged,
        report.sent,
        p.conflicts,
        p.stale,
        p.rejected
    );
    Ok(Output::new(
        text,
        json!({
            "peer": peer.name,
            "received": p.received,
            "sent": report.sent,
            "conflicts": p.conflicts,
            "stale": p.stale,
            "rejected": p.rejected,
            "new": p.new,
            "updated": p.updated,
            "unchanged": p.unchanged,
        }),
    ))
}

/// Records the addresses the node can be reached at in the store (for `wb id`'s ticket): at
/// once, and for a node bound to the unspecified address once more when the endpoint has found
/// the machine's interface addresses. A failure only loses the hint; it is logged.
async fn record_addrs(handle: node::node::NodeHandle) {
    async fn write(handle: &node::node::NodeHandle, addrs: Vec<std::net::SocketAddr>) {
        let store = handle.store().clone();
        let addrs: Vec<String> = addrs.iter().map(ToString::to_string).collect();
        let result = tokio::task::spawn_blocking(move || store.set_listen_addrs(&addrs)).await;
        if let Ok(Err(e)) = result {
            tracing::warn!("cannot record the node's addresses: {e}");
        }
    }
    let now = node::ticket::advertised_addrs(handle.endpoint(), handle.addrs());
    write(&handle, now.clone()).await;
    if handle.addrs().iter().any(|a| a.ip().is_unspecified()) {
        tokio::spawn(async move {
            let later = node::ticket::settled_addrs(
                handle.endpoint(),
                handle.addrs(),
                std::time::Duration::from_secs(10),
            )
            .await;
            if later != now {
                write(&handle, later).await;
            }
        });
    }
}
