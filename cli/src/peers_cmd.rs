//! `wb sync peers add|list|remove|trust|untrust|revoke` (§9, §12): edits `wb_peers.txt`,
//! one peer and one line of output per action. `sync_peers.txt` is the WhiteBalloon app's
//! (§14): `list` says so when it is there, and nothing here writes it.
//!
//! These commands read the key files but never open the store, so they work while
//! `wb node run` holds it.

use anyhow::{Result, anyhow, bail};
use protocol::PublicKey;
use serde_json::{Value, json};
use store::{Home, Peer, StoreError};

use crate::args::PeersCommand;
use crate::render::Output;

pub fn run(home: &Home, cmd: PeersCommand) -> Result<Output> {
    require_home(home)?;
    match cmd {
        PeersCommand::Add {
            name,
            key,
            addrs,
            ticket,
            trusted,
            hub,
            notes,
        } => {
            // Everything is checked before the registry is touched: a bad ticket or key
            // leaves wb_peers.txt as it was.
            let source = match (ticket, key) {
                (Some(t), _) => {
                    Source::Ticket(node::ticket::decode(&t).map_err(|e| anyhow!("--ticket: {e}"))?)
                }
                (None, Some(k)) => Source::Key(
                    PublicKey::parse(&k).map_err(|e| anyhow!("--key: {e}"))?,
                    addrs,
                ),
                (None, None) => bail!("give the peer's --ticket (from its `wb id`), or its --key"),
            };
            add(home, name, source, trusted, hub, notes)
        }
        PeersCommand::List => list(home),
        PeersCommand::Remove { name } => remove(home, &name),
        PeersCommand::Trust { name } => trust(home, &name),
        PeersCommand::Untrust { name } => untrust(home, &name),
        PeersCommand::Revoke { name } => revoke(home, &name),
    }
}

/// The same "run `wb init` first" and key-file errors as every other command.
fn require_home(home: &Home) -> Result<()> {
    if !home.is_initialized() {
        return Err(StoreError::NotInitialized(home.root().to_path_buf()).into());
    }
    home.load_key()?;
    Ok(())
}

/// A peer as `peers list --json` prints it (§12); the other commands print the same object.
pub(crate) fn peer_json(p: &Peer) -> Value {
    json!({
        "name": p.name,
        "key_id": p.public_key.key_id(),
        "public_key": p.public_key.to_base64(),
        "addrs": p.addrs,
        "trusted": p.trusted,
        "hub": p.hub,
        "revoked": p.revoked,
        "notes": p.notes,
    })
}

fn outcome(p: &Peer, word: &str, text: String) -> Output {
    let mut j = peer_json(p);
    j["outcome"] = json!(word);
    Output::new(text, j)
}

/// Where `peers add` got the peer's key and addresses.
enum Source {
    Key(PublicKey, Vec<String>),
    Ticket(node::ticket::TicketInfo),
}

fn add(
    home: &Home,
    name: String,
    source: Source,
    trusted: bool,
    hub: bool,
    notes: Option<String>,
) -> Result<Output> {
    let mut warnings = Vec::new();
    let (public_key, addrs, from_ticket) = match source {
        Source::Key(key, addrs) => (key, addrs, false),
        Source::Ticket(t) => {
            if t.ignored > 0 {
                warnings.push(format!(
                    "the ticket also names {} relay or other non-IP address(es); wb dials IP \
                     addresses only and left them out",
                    t.ignored
                ));
            }
            if t.addrs.is_empty() {
                warnings.push(format!(
                    "the ticket carries no address (its node had not listened yet), so {name} \
                     cannot be dialled until it is added again with an address or found through \
                     a hub; it can still connect to us"
                ));
            }
            (
                t.key,
                t.addrs.iter().map(ToString::to_string).collect(),
                true,
            )
        }
    };
    let peer = Peer {
        name,
        public_key,
        addrs: addrs.iter().map(|a| a.trim().to_string()).collect(),
        hub,
        trusted,
        revoked: false,
        // The file keeps one trimmed line; trimming here makes what is saved what was given.
        notes: notes
            .as_deref()
            .map(str::trim)
            .unwrap_or_default()
            .to_string(),
    };
    store::add_peer(home, peer.clone())?;
    let mut details = vec![
        format!("key id {}", peer.public_key.key_id()),
        if peer.trusted { "trusted" } else { "untrusted" }.to_string(),
    ];
    if peer.hub {
        details.push("hub".into());
    }
    let mut text = format!("added peer {} ({})", peer.name, details.join(", "));
    if from_ticket {
        text.push_str(&format!(
            " from its ticket, with {} address{}{}",
            peer.addrs.len(),
            if peer.addrs.len() == 1 { "" } else { "es" },
            if peer.addrs.is_empty() {
                String::new()
            } else {
                format!(": {}", peer.addrs.join(", "))
            }
        ));
    }
    let mut out = outcome(&peer, "added", text);
    out.warnings = warnings;
    Ok(out)
}

fn list(home: &Home) -> Result<Output> {
    let peers = store::load_peers(home)?;
    let j = Value::Array(peers.iter().map(peer_json).collect());
    // The app's file of the same home is named in the text only; the JSON stays the list. A
    // broken old registry no longer matters once wb_peers.txt exists (load_peers said so before).
    let (old, new) = (home.app_peers_path(), home.peers_path());
    let app_file = store::app_peers_file(home).unwrap_or(store::AppPeersFile::App);
    let note = match app_file {
        store::AppPeersFile::Absent => None,
        store::AppPeersFile::App if peers.is_empty() => {
            return Ok(Output::new(
                format!(
                    "no peers yet ({} belongs to the WhiteBalloon app; wb keeps its peers in {})",
                    old.display(),
                    new.display()
                ),
                j,
            ));
        }
        store::AppPeersFile::App => None,
        store::AppPeersFile::OldRegistry(_) => Some(format!(
            "note: {} is wb's peer registry under its old name, copied to {}; wb no longer \
             reads it (the name belongs to the WhiteBalloon app), so it can be deleted",
            old.display(),
            new.display()
        )),
    };
    if peers.is_empty() {
        let text = match note {
            Some(note) => format!("no peers\n{note}"),
            None => "no peers".to_string(),
        };
        return Ok(Output::new(text, j));
    }
    let dash = |s: String| if s.is_empty() { "-".to_string() } else { s };
    let mut rows = vec![[
        "NAME".to_string(),
        "KEY ID".to_string(),
        "FLAGS".to_string(),
        "ADDRS".to_string(),
        "NOTES".to_string(),
    ]];
    for p in &peers {
        let flags: Vec<&str> = [
            (p.trusted, "trusted"),
            (p.hub, "hub"),
            (p.revoked, "revoked"),
        ]
        .iter()
        .filter_map(|(on, word)| on.then_some(*word))
        .collect();
        rows.push([
            p.name.clone(),
            p.public_key.key_id(),
            dash(flags.join(",")),
            dash(p.addrs.join(",")),
            p.notes.clone(),
        ]);
    }
    let mut widths = [0usize; 4];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let lines: Vec<String> = rows
        .iter()
        .map(|row| {
            let mut line = String::new();
            for (w, cell) in widths.iter().zip(row) {
                line.push_str(&format!("{cell:<w$}  "));
            }
            line.push_str(&row[4]);
            line.trim_end().to_string()
        })
        .collect();
    let mut text = lines.join("\n");
    if let Some(note) = note {
        text.push('\n');
        text.push_str(&note);
    }
    Ok(Output::new(text, j))
}

fn remove(home: &Home, name: &str) -> Result<Output> {
    let peer = store::remove_peer(home, name)?;
    Ok(outcome(&peer, "removed", format!("removed peer {name}")))
}

fn trust(home: &Home, name: &str) -> Result<Output> {
    let (mut was_trusted, mut revoked) = (false, false);
    let peer = store::update_peer(home, name, |p| {
        (was_trusted, revoked) = (p.trusted, p.revoked);
        if !p.revoked {
            p.trusted = true;
        }
    })?;
    if revoked {
        bail!(
            "peer {name} is revoked; a revoked peer cannot be trusted (to start over with it: \
             `wb sync peers remove {name}`, then add it again)"
        );
    }
    Ok(if was_trusted {
        outcome(
            &peer,
            "unchanged",
            format!("peer {name} is already trusted; nothing changed"),
        )
    } else {
        outcome(&peer, "trusted", format!("peer {name} is now trusted"))
    })
}

fn untrust(home: &Home, name: &str) -> Result<Output> {
    let mut was_trusted = false;
    let peer = store::update_peer(home, name, |p| {
        was_trusted = p.trusted;
        p.trusted = false;
    })?;
    Ok(if was_trusted {
        outcome(
            &peer,
            "untrusted",
            format!(
                "peer {name} is no longer trusted; at the next sync with it, it is told to delete \
                 the trusted records it received from us"
            ),
        )
    } else {
        outcome(
            &peer,
            "unchanged",
            format!("peer {name} is already untrusted; nothing changed"),
        )
    })
}

fn revoke(home: &Home, name: &str) -> Result<Output> {
    let (mut was_revoked, mut was_trusted) = (false, false);
    // Revoking also clears Trusted, so that undoing `Revoked: yes` by hand cannot quietly
    // restore trust; readers treat a revoked peer as untrusted whatever the file says.
    let peer = store::update_peer(home, name, |p| {
        (was_revoked, was_trusted) = (p.revoked, p.trusted);
        p.revoked = true;
        p.trusted = false;
    })?;
    Ok(if was_revoked && was_trusted {
        outcome(
            &peer,
            "revoked",
            format!("peer {name} was already revoked; cleared its Trusted flag"),
        )
    } else if was_revoked {
        outcome(
            &peer,
            "unchanged",
            format!("peer {name} is already revoked; nothing changed"),
        )
    } else {
        outcome(
            &peer,
            "revoked",
            format!(
                "revoked peer {name}: its connections will be refused and it receives nothing{}",
                if was_trusted {
                    " (it keeps the trusted records it already received: to withdraw them, \
                     untrust it and sync with it before revoking)"
                } else {
                    ""
                }
            ),
        )
    })
}
