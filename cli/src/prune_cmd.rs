//! `wb sync prune --peer NAME | --older-than DAYS [--dry-run] [--yes]`: forget records that
//! came from other instances. Local records are never pruned.
//!
//! Which origin a name means and what is removed are the library's (`store::instance::prune`);
//! this module parses, asks and prints. What is counted (and shown to the operator before
//! asking) is read from the store, read-only when no node runs; the removal itself is one
//! transaction. A refusal (unknown peer, this instance, bad DAYS, no answer)
//! happens before anything is written. Nothing is sent to peers: they keep their copies, and a
//! peer that sends a pruned record again (a newer version, or a pull from the start, as the next
//! sync with a pruned peer is) brings it back.

use anyhow::{Result, bail};
use protocol::PublicKey;
use serde_json::json;
use store::instance::PruneTarget as Target;
use store::{Home, Instance, PruneReport};

use crate::prompt::confirm;
use crate::render::Output;

pub fn prune(
    home: &Home,
    peer: Option<&str>,
    older_than: Option<&str>,
    dry_run: bool,
    yes: bool,
) -> Result<Output> {
    // Arguments first: a bad DAYS is refused before the home is even opened.
    let days = older_than.map(parse_days).transpose()?;
    let inst = open(home, true)?;
    let target = match (peer, days) {
        (Some(text), None) => inst.prune_target(text)?,
        (None, Some(days)) => Target::OlderThan { days },
        _ => bail!("give either --peer NAME or --older-than DAYS"),
    };
    let plan = inst.prune(&target, true)?;
    let nothing = Target::finds_nothing(&plan);
    if dry_run || nothing {
        return Ok(render(&target, &plan, true, nothing));
    }
    if !yes {
        confirm(&question(&target, &plan))?;
    }
    // Reopen for writing (the read-only handle must be gone first); a node running in this
    // process lends its own store.
    drop(inst);
    let done = open(home, false)?.prune(&target, false)?;
    Ok(render(&target, &done, false, false))
}

/// The instance: the running node's (control-socket commands), else the home's, its store
/// opened read-only when only reading so that a refusal leaves the store file exactly as it was.
fn open(home: &Home, read_only: bool) -> Result<Instance> {
    if crate::running::get().is_some() || !read_only {
        return crate::open::open(home);
    }
    let (key, store) = home.open_read_only()?;
    Ok(Instance::from_parts(
        home.clone(),
        key,
        std::sync::Arc::new(store),
    ))
}

fn parse_days(text: &str) -> Result<u64> {
    match text.trim().parse::<u64>() {
        Ok(days) if days > 0 => Ok(days),
        _ => bail!("--older-than expects a positive whole number of days, got {text:?}"),
    }
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
