//! `wb hub run|allow|revoke|list|status` (§11) and `wb sync now --hub`.
//!
//! A hub's allowlist is its home's `wb_peers.txt`: `allow` adds (or un-revokes) an entry,
//! `revoke` marks one revoked. These edit the file only, so they work while the hub runs (the
//! hub reads the file at every connection, and cuts the live connections and relay sessions of
//! keys it no longer admits within `node::hub::ADMISSION_RECHECK_INTERVAL`). `status` reads the hub's store: through the running
//! hub when there is one (the control socket), else directly.

use std::collections::BTreeSet;
use std::sync::Arc;

use anyhow::{Result, anyhow, bail};
use node::hub::HubConfig;
use node::node::Direction;
use node::session::Deadlines;
use protocol::PublicKey;
use protocol::time::format_timestamp;
use serde_json::{Value, json};
use store::{Home, ListFilter, Peer};

use crate::args::HubCommand;
use crate::render::Output;

pub fn run(
    home: &Home,
    cmd: HubCommand,
    json_out: bool,
    run_command: crate::control::RunCommand,
) -> Result<Output> {
    match cmd {
        HubCommand::Run {
            common,
            relay,
            follow_revocations,
        } => {
            let follow = follow_revocations
                .iter()
                .map(|k| {
                    PublicKey::parse(k).map_err(|e| anyhow!("--follow-revocations {k:?}: {e}"))
                })
                .collect::<Result<Vec<_>>>()?;
            let flags = crate::config::Flags {
                common,
                relay,
                ..Default::default()
            };
            let settings = crate::config::resolve(home, &flags)?;
            crate::config::init_logging(&settings);
            run_hub(home, &settings, follow, json_out, run_command)
        }
        HubCommand::Allow { key, name } => allow(home, &key, name),
        HubCommand::Revoke { key } => revoke(home, &key),
        HubCommand::List => list(home),
        HubCommand::Status => status(home),
    }
}

/// A hub's home is created on first use, with its own identity.
fn ensure_home(home: &Home) -> Result<()> {
    if !home.is_initialized() {
        home.init(Some("hub"))?;
    }
    Ok(())
}

fn run_hub(
    home: &Home,
    settings: &crate::config::Settings,
    follow_revocations: Vec<PublicKey>,
    json_out: bool,
    run_command: crate::control::RunCommand,
) -> Result<Output> {
    let listen = settings.listen.value;
    let open = settings.open.value;
    let relay_listen = settings.relay_listen.value;
    let relay_url = settings.relay_url.value.clone();
    let metrics = settings.metrics.value;
    if std::os::unix::net::UnixStream::connect(crate::control::socket_path(home)).is_ok() {
        bail!(
            "a node or hub is already running on {} (its control socket answers); stop it first",
            home.root().display()
        );
    }
    let (key, store) = if home.is_initialized() {
        home.open()?
    } else {
        let (_, key, store) = home.init(Some("hub"))?;
        // Its settings file, for the next start (this one's settings are read already).
        crate::config::write_template(home)?;
        (key, store)
    };
    let own = store.list(&ListFilter {
        origin: Some(key.public()),
        include_deleted: true,
        ..ListFilter::default()
    })?;
    if !own.is_empty() {
        bail!(
            "{} holds {} records of its own: it is an instance's home, and a hub needs a home \
             of its own (--home DIR)",
            home.root().display(),
            own.len()
        );
    }
    let store = Arc::new(store);
    crate::node_cmd::runtime()?.block_on(async move {
        let config = HubConfig {
            home: home.clone(),
            listen,
            open,
            relay_listen,
            relay_url,
            follow_revocations,
        };
        let hub = node::hub::start(config, key, store).await?;
        crate::running::set(hub.handle());
        let metrics =
            crate::node_cmd::start_metrics(metrics, node::metrics::Role::Hub, &hub.handle())
                .await?;
        // `wb hub status` and the other commands on this home now run inside the hub.
        let control = crate::control::Server::start(home, Arc::new(|| {}), run_command)?;
        let addrs: Vec<String> = hub.addrs().iter().map(ToString::to_string).collect();
        let id = node::identity::endpoint_id(&hub.id())?.to_string();
        let ready = if json_out {
            json!({
                "event": "ready",
                "role": "hub",
                "endpoint_id": id,
                "addrs": addrs,
                "open": open,
                "relay_url": hub.relay_url(),
                "metrics": metrics.as_ref().map(|m| m.local_addr().to_string()),
            })
            .to_string()
        } else {
            format!(
                "wb hub ready: endpoint {id} listening on {}{}{}{}",
                addrs.join(", "),
                crate::node_cmd::metrics_note(metrics.as_ref()),
                match hub.relay_url() {
                    Some(url) => format!("; relay at {url}"),
                    None => String::new(),
                },
                if open {
                    " (open: any instance that is not revoked)"
                } else {
                    " (allowlist: wb hub allow KEY)"
                }
            )
        };
        crate::node_cmd::serve_until_shutdown(&ready, control).await;
        drop(metrics);
        hub.shutdown().await?;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(Output::new("wb hub stopped", json!({"event": "stopped"})))
}

fn entry_json(p: &Peer) -> Value {
    json!({
        "name": p.name,
        "key_id": p.public_key.key_id(),
        "public_key": p.public_key.to_base64(),
        "revoked": p.revoked,
    })
}

fn parse_key(text: &str) -> Result<PublicKey> {
    PublicKey::parse(text).map_err(|e| anyhow!("{e}"))
}

fn allow(home: &Home, key: &str, name: Option<String>) -> Result<Output> {
    ensure_home(home)?;
    let key = parse_key(key)?;
    let peers = store::load_peers(home)?;
    if let Some(existing) = store::peer_by_key(&peers, &key) {
        if !existing.revoked {
            let mut j = entry_json(existing);
            j["outcome"] = json!("unchanged");
            return Ok(Output::new(
                format!(
                    "{} ({}) is already allowed",
                    existing.name,
                    existing.public_key.key_id()
                ),
                j,
            ));
        }
        let p = store::update_peer(home, &existing.name.clone(), |p| p.revoked = false)?;
        let mut j = entry_json(&p);
        j["outcome"] = json!("readmitted");
        return Ok(Output::new(
            format!("{} ({}) is allowed again", p.name, p.public_key.key_id()),
            j,
        ));
    }
    let peer = Peer {
        name: name.unwrap_or_else(|| key.key_id()),
        public_key: key,
        addrs: Vec::new(),
        hub: false,
        trusted: false,
        revoked: false,
        follow_revocations: false,
        notes: String::new(),
    };
    store::add_peer(home, peer.clone())?;
    let mut j = entry_json(&peer);
    j["outcome"] = json!("allowed");
    Ok(Output::new(
        format!("allowed {} ({})", peer.name, key.key_id()),
        j,
    ))
}

fn revoke(home: &Home, key_or_name: &str) -> Result<Output> {
    ensure_home(home)?;
    let peers = store::load_peers(home)?;
    let existing = match store::find_peer(&peers, key_or_name) {
        Some(p) => Some(p.clone()),
        None => match PublicKey::parse(key_or_name) {
            Ok(k) => store::peer_by_key(&peers, &k).cloned(),
            Err(_) => bail!(
                "{key_or_name:?} is neither a name on the hub's allowlist nor a public key \
                 (see `wb hub list`)"
            ),
        },
    };
    let p = match existing {
        Some(p) => store::update_peer(home, &p.name, |p| {
            p.revoked = true;
            p.trusted = false;
        })?,
        None => {
            // Not on the list: keep its key as revoked, so even an open hub refuses it.
            let key = parse_key(key_or_name)?;
            let peer = Peer::revoked_key(key.key_id(), key);
            store::add_peer(home, peer.clone())?;
            peer
        }
    };
    let mut j = entry_json(&p);
    j["outcome"] = json!("revoked");
    Ok(Output::new(
        format!(
            "revoked {} ({}): refused from its next connection on",
            p.name,
            p.public_key.key_id()
        ),
        j,
    ))
}

fn list(home: &Home) -> Result<Output> {
    let peers = store::load_peers(home)?;
    let text = if peers.is_empty() {
        "no instance on the allowlist (add one with `wb hub allow KEY`)".to_string()
    } else {
        peers
            .iter()
            .map(|p| {
                format!(
                    "{:<24} {}{}",
                    p.name,
                    p.public_key.key_id(),
                    if p.revoked { "  revoked" } else { "" }
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    Ok(Output::new(
        text,
        Value::Array(peers.iter().map(entry_json).collect()),
    ))
}

fn status(home: &Home) -> Result<Output> {
    let inst = crate::open::open(home)?;
    let me = inst.key().public();
    let peers = store::load_peers(home)?;
    let mut directory = inst.store().directory()?;
    // Expired entries (no longer given out, dropped by the running hub) are not shown.
    let now = store::time::now_ms();
    directory.retain(|_, e| !e.expired(now));
    let holdings = inst.store().holdings()?;
    let states = inst.store().peer_states()?;
    let digests = inst.store().digests()?;
    let mut keys: BTreeSet<PublicKey> = peers.iter().map(|p| p.public_key).collect();
    keys.extend(directory.keys().copied());
    keys.extend(holdings.keys().copied());
    keys.extend(states.keys().copied());
    keys.remove(&me);
    let mut instances = Vec::new();
    let mut lines = Vec::new();
    let (mut total_records, mut total_bytes) = (0u64, 0u64);
    for key in &keys {
        let entry = store::peer_by_key(&peers, key);
        let state = states.get(key).cloned().unwrap_or_default();
        let held = holdings.get(key).copied().unwrap_or_default();
        total_records += held.records;
        total_bytes += held.bytes;
        let announced = directory.get(key);
        let ts = |ms: Option<u64>| ms.map(format_timestamp);
        let name = entry.map(|p| p.name.clone());
        let revoked = entry.is_some_and(|p| p.revoked);
        let (digests_json, digests_line) = crate::bundle_cmd::digest_state(
            state
                .digests
                .as_ref()
                .map(|o| store::instance::status::digest_status(&digests, &me, key, o, &peers))
                .as_ref(),
        );
        instances.push(json!({
            "name": name,
            "key_id": key.key_id(),
            "public_key": key.to_base64(),
            "listed": entry.is_some(),
            "revoked": revoked,
            "last_announcement": ts(announced.map(|e| e.received_ms)),
            "addrs": announced.map(|e| e.announcement.addrs.clone()).unwrap_or_default(),
            "relay_url": announced.and_then(|e| e.announcement.relay_url.clone()),
            "records": held.records,
            "deleted": held.deleted,
            "bytes": held.bytes,
            "last_sync": ts(state.last_sync_ms),
            "last_error": state.last_error,
            "received": state.received,
            "sent": state.sent,
            "digests": digests_json,
        }));
        lines.push(format!(
            "{:<20} {}  records {:>7} ({} bytes)  announced {}  last sync {}{}",
            name.unwrap_or_else(|| "(not listed)".into()),
            key.key_id(),
            held.records,
            held.bytes,
            ts(announced.map(|e| e.received_ms)).unwrap_or_else(|| "never".into()),
            ts(state.last_sync_ms).unwrap_or_else(|| "never".into()),
            if revoked { "  REVOKED" } else { "" },
        ));
        if state.digests.is_some() {
            lines.push(format!("    digests: {digests_line}"));
        }
    }
    let hub = json!({
        "endpoint_id": node::identity::endpoint_id(&me)?.to_string(),
        "key_id": me.key_id(),
        "running": crate::running::get().is_some(),
    });
    let head = format!(
        "hub {}: {} instances, {} records held ({} bytes)",
        me.key_id(),
        keys.len(),
        total_records,
        total_bytes
    );
    let text = if lines.is_empty() {
        head
    } else {
        format!("{head}\n{}", lines.join("\n"))
    };
    Ok(Output::new(
        text,
        json!({
            "hub": hub,
            "instances": instances,
            "records": total_records,
            "bytes": total_bytes,
        }),
    ))
}

/// `wb sync now --hub`: one sync with each hub of the registry (push our public records, pull
/// everything public the hub holds). With one hub the output is that sync's.
pub fn sync_hubs(home: &Home, direction: Direction, deadlines: Deadlines) -> Result<Output> {
    let peers = store::load_peers(home)?;
    let hubs: Vec<&Peer> = peers.iter().filter(|p| p.hub && !p.revoked).collect();
    match hubs.as_slice() {
        [] => bail!(
            "no hub in wb_peers.txt (add one with `wb sync peers add NAME --key KEY --addr \
             HOST:PORT --hub`)"
        ),
        [one] => crate::node_cmd::sync_now(home, &one.name, direction, deadlines),
        many => {
            let mut reports = Vec::new();
            let mut texts = Vec::new();
            let mut warnings = Vec::new();
            for hub in many {
                match crate::node_cmd::sync_now(home, &hub.name, direction, deadlines) {
                    Ok(out) => {
                        texts.push(out.text);
                        reports.push(out.json);
                    }
                    Err(e) => warnings.push(format!("hub {}: {e:#}", hub.name)),
                }
            }
            if reports.is_empty() {
                bail!("no hub could be synced: {}", warnings.join("; "));
            }
            let mut out = Output::new(texts.join("\n"), json!({ "hubs": reports }));
            out.warnings = warnings;
            Ok(out)
        }
    }
}
