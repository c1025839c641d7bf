//! `wb node run` and `wb sync now|pull|push`.

use std::io::Write;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use node::node::{Direction, NodeConfig, sync_once};
use node::session::Faults;
use serde_json::json;
use store::Home;

use crate::commands::Output;

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Runs the node until Ctrl-C or SIGTERM. The ready line is printed as soon as the node
/// listens (tests and scripts wait for it); the returned output is the shutdown summary.
pub fn run(
    home: &Home,
    listen: &str,
    open: bool,
    cut_after_batches: Option<u64>,
    json: bool,
) -> Result<Output> {
    let listen: std::net::SocketAddr = listen
        .parse()
        .with_context(|| format!("--listen {listen:?} is not HOST:PORT (e.g. 0.0.0.0:4433)"))?;
    let (key, store) = home.open()?;
    let store = Arc::new(store);
    runtime()?.block_on(async move {
        let config = NodeConfig {
            home: home.clone(),
            listen,
            open,
            faults: Faults { cut_after_batches },
        };
        let node = node::node::start(config, key, store).await?;
        crate::running::set(node.handle());
        let addrs: Vec<String> = node.addrs().iter().map(ToString::to_string).collect();
        let id = node::identity::endpoint_id(&node.id())?.to_string();
        let ready = if json {
            json!({"event": "ready", "endpoint_id": id, "addrs": addrs, "open": open}).to_string()
        } else {
            format!(
                "wb node ready: endpoint {id} listening on {}{}",
                addrs.join(", "),
                if open {
                    " (open: unknown peers may pull public records)"
                } else {
                    ""
                }
            )
        };
        {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{ready}");
            let _ = out.flush();
        }
        wait_for_shutdown().await;
        node.shutdown().await?;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(Output::new("wb node stopped", json!({"event": "stopped"})))
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

pub fn sync_now(home: &Home, peer_name: &str, direction: Direction) -> Result<Output> {
    let peers = store::load_peers(home)?;
    let peer = store::find_peer(&peers, peer_name)
        .ok_or_else(|| anyhow!("no peer named {peer_name:?} (see `wb sync peers list`)"))?
        .clone();
    if peer.revoked {
        return Err(anyhow!(
            "peer {peer_name} is revoked; nothing is synced with it"
        ));
    }
    let (key, store) = home.open()?;
    let store = Arc::new(store);
    let report = runtime()?.block_on(sync_once(&key, &store, &peer, direction))?;
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
