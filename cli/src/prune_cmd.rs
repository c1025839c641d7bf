//! `wb sync prune --peer NAME | --older-than DAYS [--dry-run] [--yes]`: forget records that
//! came from other instances. Local records are never pruned.
//!
//! What is counted (and shown to the operator before asking) is read from the store, read-only
//! when no node runs; the removal itself is one transaction (`Store::prune_origin`,
//! `Store::prune_older_than`). A refusal (unknown peer, this instance, bad DAYS, no answer)
//! happens before anything is written. Nothing is sent to peers: they keep their copies, and a
//! peer that sends a pruned record again (a newer version, or a pull from the start, as the next
//! sync with a pruned peer is) brings it back.

use std::sync::Arc;

use anyhow::{Result, anyhow, bail};
use protocol::PublicKey;
use serde_json::json;
use store::{Home, PruneReport, Store, StoreError, time};

use crate::open::record_origins;
use crate::prompt::confirm;
use crate::render::Output;

const DAY_MS: u64 = 24 * 60 * 60 * 1000;

/// Which records to prune.
enum Target {
    /// Everything that originated at this key; `name` is the peer's registry name, if any.
    Origin {
        key: PublicKey,
        name: Option<String>,
    },
    /// Records of other origins whose version is older than this many days.
    OlderThan { days: u64 },
}

pub fn prune(
    home: &Home,
    peer: Option<&str>,
    older_than: Option<&str>,
    dry_run: bool,
    yes: bool,
) -> Result<Output> {
    // Arguments first: a bad DAYS is refused before the home is even opened.
    let days = older_than.map(parse_days).transpose()?;
    let (key, store) = open(home, true)?;
    let local = key.public();
    let target = match (peer, days) {
        (Some(text), None) => resolve_peer(home, &store, &local, text)?,
        (None, Some(days)) => Target::OlderThan { days },
        _ => bail!("give either --peer NAME or --older-than DAYS"),
    };
    let cutoff = |days: u64| time::now_ms().saturating_sub(days.saturating_mul(DAY_MS));
    let plan = match &target {
        Target::Origin { key, .. } => store.prune_origin(&local, key, true)?,
        Target::OlderThan { days } => store.prune_older_than(&local, cutoff(*days), true)?,
    };
    let nothing = plan.total() == 0 && plan.conflicts == 0 && !plan.cursor && !plan.peer_state;
    if dry_run || nothing {
        return Ok(render(&target, &plan, true, nothing));
    }
    if !yes {
        confirm(&question(&target, &plan))?;
    }
    // Reopen for writing (the read-only handle must be gone first); a node running in this
    // process lends its own store.
    drop(store);
    let (_, store) = open(home, false)?;
    let done = match &target {
        Target::Origin { key, .. } => store.prune_origin(&local, key, false)?,
        Target::OlderThan { days } => store.prune_older_than(&local, cutoff(*days), false)?,
    };
    Ok(render(&target, &done, false, false))
}

/// The key and store: the running node's (control-socket commands), else the home's, opened
/// read-only when only reading so that a refusal leaves the store file exactly as it was.
fn open(home: &Home, read_only: bool) -> Result<(protocol::SecretKey, Arc<Store>)> {
    if crate::running::get().is_some() || !read_only {
        let inst = crate::open::open(home)?;
        return Ok((inst.key().clone(), inst.store().clone()));
    }
    let (key, store) = home.open_read_only()?;
    Ok((key, Arc::new(store)))
}

fn parse_days(text: &str) -> Result<u64> {
    match text.trim().parse::<u64>() {
        Ok(days) if days > 0 => Ok(days),
        _ => bail!("--older-than expects a positive whole number of days, got {text:?}"),
    }
}

/// A peer by registry name, or any other origin by key (any textual form) or key id. This
/// instance is refused, and so is a name or key nothing is known about.
fn resolve_peer(home: &Home, store: &Store, local: &PublicKey, text: &str) -> Result<Target> {
    let peers = store::load_peers(home)?;
    let own = || {
        anyhow!(
            "{text} is this instance (key id {}); local records are never pruned",
            local.key_id()
        )
    };
    if let Some(p) = store::find_peer(&peers, text) {
        if p.public_key == *local {
            return Err(own());
        }
        return Ok(Target::Origin {
            key: p.public_key,
            name: Some(p.name.clone()),
        });
    }
    if text.trim() == "local" {
        return Err(own());
    }
    let origins = || record_origins(store);
    let wanted = text.trim().to_ascii_lowercase();
    let key = if let Ok(key) = PublicKey::parse(text) {
        Some(key)
    } else if wanted.len() == protocol::keys::KEY_ID_LEN
        && wanted.bytes().all(|b| b.is_ascii_hexdigit())
    {
        if local.key_id() == wanted {
            return Err(own());
        }
        let mut found: Vec<PublicKey> = origins()?
            .into_iter()
            .chain(peers.iter().map(|p| p.public_key))
            .filter(|k| k.key_id() == wanted)
            .collect();
        found.sort_by_key(|k| *k.as_bytes());
        found.dedup();
        match found[..] {
            [key] => Some(key),
            _ => None,
        }
    } else {
        None
    };
    let Some(key) = key else {
        return Err(unknown(text, &peers));
    };
    if key == *local {
        return Err(own());
    }
    if let Some(p) = store::peer_by_key(&peers, &key) {
        return Ok(Target::Origin {
            key,
            name: Some(p.name.clone()),
        });
    }
    let known = origins()?.contains(&key) || store.cursor(&key)?.is_some();
    if !known {
        return Err(unknown(text, &peers));
    }
    Ok(Target::Origin { key, name: None })
}

fn unknown(text: &str, peers: &[store::Peer]) -> anyhow::Error {
    StoreError::UnknownPeer {
        name: text.to_string(),
        known: peers.iter().map(|p| p.name.clone()).collect(),
    }
    .into()
}

fn who(key: &PublicKey, name: &Option<String>) -> String {
    match name {
        Some(name) => format!("peer {name} (key id {})", key.key_id()),
        None => format!("origin {}", key.key_id()),
    }
}

fn question(target: &Target, plan: &PruneReport) -> String {
    match target {
        Target::Origin { key, name } => format!(
            "Forget the {} records that originated at {} and our sync state with it? The next \
             sync with it pulls them again.",
            plan.total(),
            who(key, name)
        ),
        Target::OlderThan { days } => format!(
            "Drop {} records of other instances not updated for {days} days?",
            plan.total()
        ),
    }
}

fn per_entity(report: &PruneReport) -> String {
    if report.records.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = report
        .records
        .iter()
        .map(|(entity, n)| format!("{entity} {n}"))
        .collect();
    format!(" ({})", parts.join(", "))
}

fn render(target: &Target, report: &PruneReport, dry_run: bool, nothing: bool) -> Output {
    let verb = if dry_run { "would remove" } else { "removed" };
    let mut j = json!({
        "dry_run": dry_run,
        "records": report.records,
        "total": report.total(),
        "tombstones": report.tombstones,
    });
    let text = match target {
        Target::Origin { key, name } => {
            j["peer"] = json!(name);
            j["origin"] = json!(key.to_base64());
            j["origin_key_id"] = json!(key.key_id());
            j["conflicts"] = json!(report.conflicts);
            j["cursor"] = json!(report.cursor);
            j["peer_state"] = json!(report.peer_state);
            if nothing {
                format!(
                    "nothing to prune: no records or sync state from {}",
                    who(key, name)
                )
            } else {
                let mut text = format!(
                    "{}: {verb} {} records{} ({} tombstones) and {} conflict-log entries",
                    who(key, name),
                    report.total(),
                    per_entity(report),
                    report.tombstones,
                    report.conflicts,
                );
                if report.cursor || report.peer_state {
                    text.push_str(if dry_run {
                        "; would drop our cursor into its log and its sync state"
                    } else {
                        "; dropped our cursor into its log and its sync state"
                    });
                }
                if !dry_run {
                    text.push_str(&match name {
                        Some(name) => format!(
                            ".\nThe next sync with {name} pulls its records again from the \
                             start (to stop that: `wb sync peers remove {name}` or `revoke`)."
                        ),
                        None => ".\nA peer that sends them again brings them back.".to_string(),
                    });
                }
                text
            }
        }
        Target::OlderThan { days } => {
            j["older_than_days"] = json!(days);
            if nothing {
                format!("nothing to prune: no records of other instances older than {days} days")
            } else {
                let mut text = format!(
                    "{verb} {} records of other instances not updated for {days} days{} ({} \
                     tombstones)",
                    report.total(),
                    per_entity(report),
                    report.tombstones,
                );
                if !dry_run {
                    text.push_str(
                        ".\nLocal records are never pruned; a peer that sends one of these again \
                         (a newer version, or a sync from the start) brings it back.",
                    );
                }
                text
            }
        }
    };
    Output::new(text, j)
}
