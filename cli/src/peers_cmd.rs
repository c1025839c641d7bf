//! `wb sync peers add|list|remove|trust|untrust|revoke` (§9, §12): edits `wb_peers.txt`,
//! one peer and one line of output per action. `sync_peers.txt` is the WhiteBalloon app's
//! (§14): `list` says so when it is there, and nothing here writes it.
//!
//! These commands read the key files; the store is opened only to announce or withdraw a
//! revocation (`revoke --announce`, `unrevoke --announce`) and, read-only, to show the
//! revocations announced by followed peers that apply here (`list`, `trust
//! --follow-revocations`). While `wb node run` holds the store they run inside the node.

use anyhow::{Result, anyhow, bail};
use protocol::PublicKey;
use protocol::revocation::{Assessment, Revocation};
use serde_json::{Value, json};
use store::revocations::Announced;
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
        PeersCommand::Trust {
            name,
            follow_revocations,
            no_follow_revocations,
        } => match (follow_revocations, no_follow_revocations) {
            (false, false) => trust(home, &name),
            (follow, _) => follow_revocations_of(home, &name, follow),
        },
        PeersCommand::Untrust { name } => untrust(home, &name),
        PeersCommand::Revoke {
            name,
            announce,
            reason,
        } => {
            let out = revoke(home, &name)?;
            if announce {
                announce_revocation(home, &name, reason.as_deref().unwrap_or_default(), out)
            } else {
                Ok(out)
            }
        }
        PeersCommand::Unrevoke { name, announce } => unrevoke(home, &name, announce),
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
        "follow_revocations": p.follow_revocations,
        "notes": p.notes,
    })
}

/// What the store's revocations mean here (store opened read-only, or the running node's);
/// `None` when there is no store yet.
fn assessment(home: &Home, peers: &[Peer]) -> Result<Option<Assessment>> {
    let own = home.load_key()?.public();
    if let Some(node) = crate::running::get() {
        return Ok(Some(store::revocations::assess_all(
            node.store(),
            peers,
            &[],
            &own,
        )?));
    }
    if !home.store_path().exists() {
        return Ok(None);
    }
    let (_, store) = home.open_read_only()?;
    Ok(Some(store::revocations::assess_all(
        &store,
        peers,
        &[],
        &own,
    )?))
}

/// A peer's name in the registry, else the key id.
fn label(peers: &[Peer], key: &PublicKey) -> String {
    store::peer_by_key(peers, key).map_or_else(|| key.key_id(), |p| p.name.clone())
}

/// A revocation as JSON (`peers list`, `sync status`).
pub(crate) fn revocation_json(peers: &[Peer], r: &Revocation) -> Value {
    json!({
        "revoker": label(peers, &r.revoker),
        "revoker_key_id": r.revoker.key_id(),
        "revoked": store::peer_by_key(peers, &r.revoked).map(|p| p.name.clone()),
        "revoked_key_id": r.revoked.key_id(),
        "revoked_key": r.revoked.to_hex(),
        "reason": r.reason,
        "revoked_at": r.revoked_at,
        "self_revocation": r.is_self_revocation(),
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
        follow_revocations: false,
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
    let applied = assessment(home, &peers)?.unwrap_or_default().applied;
    let successions = crate::succession_view::report(home, &peers)?;
    let by = |p: &Peer| -> Vec<&Revocation> {
        applied
            .iter()
            .filter(|r| r.revoked == p.public_key)
            .collect()
    };
    let j = Value::Array(
        peers
            .iter()
            .map(|p| {
                let mut j = peer_json(p);
                let by = by(p);
                // Revoked here, by the file or by the announcement of a followed peer.
                j["refused"] = json!(p.revoked || !by.is_empty());
                j["revoked_by"] =
                    Value::Array(by.iter().map(|r| revocation_json(&peers, r)).collect());
                // The keys it had before, as held successions show (newest first).
                j["former_keys"] = crate::succession_view::former_json(
                    crate::succession_view::former(&successions, &p.name),
                );
                j
            })
            .collect(),
    );
    // Keys outside the registry revoked by a followed peer's announcement: named in the text.
    let unlisted: Vec<String> = applied
        .iter()
        .filter(|r| store::peer_by_key(&peers, &r.revoked).is_none())
        .map(|r| {
            format!(
                "also refused: key {} (revoked by {}'s announcement{})",
                r.revoked.key_id(),
                label(&peers, &r.revoker),
                if r.reason.is_empty() {
                    String::new()
                } else {
                    format!(": {}", r.reason)
                }
            )
        })
        .collect();
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
        let mut flags: Vec<String> = [
            (p.trusted, "trusted"),
            (p.hub, "hub"),
            (p.revoked, "revoked"),
            (p.follow_revocations, "follows-revocations"),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, word)| word.to_string())
        .collect();
        for r in by(p) {
            flags.push(format!("revoked-by:{}", label(&peers, &r.revoker)));
        }
        if let Some(before) = crate::succession_view::former(&successions, &p.name).first() {
            flags.push(format!("new-key-since:{}", before.key_id()));
        }
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
    for line in unlisted {
        text.push('\n');
        text.push_str(&line);
    }
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

/// `peers trust NAME --follow-revocations` / `--no-follow-revocations`: only that line changes.
fn follow_revocations_of(home: &Home, name: &str, follow: bool) -> Result<Output> {
    let (mut before, mut revoked) = (false, false);
    let peer = store::update_peer(home, name, |p| {
        (before, revoked) = (p.follow_revocations, p.revoked);
        if !(follow && p.revoked) {
            p.follow_revocations = follow;
        }
    })?;
    if follow && revoked {
        bail!("peer {name} is revoked; the revocations of a revoked peer are not followed");
    }
    if before == follow {
        let text = if follow {
            format!(
                "the revocations peer {name} announces are already applied here; nothing changed"
            )
        } else {
            format!("the revocations peer {name} announces are not followed; nothing changed")
        };
        return Ok(outcome(&peer, "unchanged", text));
    }
    if !follow {
        return Ok(outcome(
            &peer,
            "unfollowed",
            format!(
                "the revocations peer {name} announces no longer apply here (keys revoked only \
                 by them are admitted again from the next session)"
            ),
        ));
    }
    // What it announced already applies from now on: say which.
    let peers = store::load_peers(home)?;
    let applied: Vec<Revocation> = assessment(home, &peers)?
        .unwrap_or_default()
        .applied
        .into_iter()
        .filter(|r| r.revoker == peer.public_key)
        .collect();
    let mut text =
        format!("the revocations peer {name} announces now apply here (from the next session on)");
    if !applied.is_empty() {
        let keys: Vec<String> = applied.iter().map(|r| label(&peers, &r.revoked)).collect();
        text.push_str(&format!(
            "; applied now: {} revoked by {name}",
            keys.join(", ")
        ));
    }
    let mut out = outcome(&peer, "following", text);
    out.json["applied"] =
        Value::Array(applied.iter().map(|r| revocation_json(&peers, r)).collect());
    Ok(out)
}

/// `peers revoke NAME --announce`, after the local revocation (`out`): publishes it.
fn announce_revocation(home: &Home, name: &str, reason: &str, out: Output) -> Result<Output> {
    let peers = store::load_peers(home)?;
    let peer = store::find_peer(&peers, name)
        .ok_or_else(|| anyhow!("peer {name} is no longer in the registry"))?
        .clone();
    let inst = crate::open::open(home)?;
    let announced = store::revocations::announce(&inst, &peer.public_key, reason)?;
    let mut out = out;
    let (word, note) = match announced {
        Announced::Changed(_) => (
            "announced",
            "; announced it: peers that follow this instance's revocations apply it, others \
             see it as advice",
        ),
        Announced::Unchanged => ("unchanged", "; it was announced already"),
    };
    out.text.push_str(note);
    out.json["announcement"] = json!(word);
    out.json["reason"] = json!(reason.replace(['\n', '\r'], " ").trim());
    Ok(out)
}

/// `peers unrevoke NAME [--announce]`: lifts the revocation made here, and withdraws the one
/// this instance announced.
fn unrevoke(home: &Home, name: &str, announce: bool) -> Result<Output> {
    let mut was_revoked = false;
    let peer = store::update_peer(home, name, |p| {
        was_revoked = p.revoked;
        p.revoked = false;
    })?;
    let mut parts = vec![if was_revoked {
        format!("peer {name} is no longer revoked here (it stays untrusted)")
    } else {
        format!("peer {name} was not revoked here")
    }];
    let mut withdrawn = None;
    if announce {
        let inst = crate::open::open(home)?;
        let done = matches!(
            store::revocations::withdraw(&inst, &peer.public_key)?,
            Announced::Changed(_)
        );
        parts.push(if done {
            "withdrew this instance's announced revocation (peers that applied it lift it)"
                .to_string()
        } else {
            "this instance had no announced revocation of it to withdraw".to_string()
        });
        withdrawn = Some(done);
    }
    // Still refused through a followed peer's announcement?
    let peers = store::load_peers(home)?;
    let by: Vec<String> = assessment(home, &peers)?
        .unwrap_or_default()
        .applied
        .iter()
        .filter(|r| r.revoked == peer.public_key)
        .map(|r| label(&peers, &r.revoker))
        .collect();
    if !by.is_empty() {
        parts.push(format!(
            "it stays refused: revoked by the announcement of {} (whose revocations this \
             instance follows)",
            by.join(", ")
        ));
    }
    let changed = was_revoked || withdrawn == Some(true);
    let mut out = outcome(
        &peer,
        if changed { "unrevoked" } else { "unchanged" },
        parts.join("; "),
    );
    out.json["withdrawn"] = json!(withdrawn);
    out.json["refused"] = json!(!by.is_empty());
    Ok(out)
}

/// The `revocations` part of `wb sync status`: the announced revocations applied here, and
/// the others as advice with the command that applies them.
pub(crate) fn revocations_status(
    store: &store::Store,
    peers: &[Peer],
    own: &PublicKey,
) -> Result<(Value, Vec<String>)> {
    let a = store::revocations::assess_all(store, peers, &[], own)?;
    let mut lines = Vec::new();
    let reason = |r: &Revocation| {
        if r.reason.is_empty() {
            String::new()
        } else {
            format!(": {}", r.reason)
        }
    };
    let revoked_text = |r: &Revocation| match store::peer_by_key(peers, &r.revoked) {
        Some(p) => format!("{} ({})", p.name, r.revoked.key_id()),
        None => format!("key {}", r.revoked.key_id()),
    };
    if !a.applied.is_empty() {
        lines.push("revocations applied (announced by peers whose revocations you follow):".into());
        for r in &a.applied {
            lines.push(format!(
                "  {} revoked by {} at {}{}",
                revoked_text(r),
                label(peers, &r.revoker),
                r.revoked_at,
                reason(r)
            ));
        }
    }
    let mut advice_json = Vec::new();
    if !a.advice.is_empty() {
        lines.push("revocations announced by others (advice, not applied):".into());
        for r in &a.advice {
            let who = label(peers, &r.revoker);
            let (command, note) = if r.revoked == *own {
                (
                    None,
                    "this instance's own key: never applied here; if the key is compromised, \
                     rotate it (`wb sync keygen`)"
                        .to_string(),
                )
            } else {
                let command = match store::peer_by_key(peers, &r.revoked) {
                    Some(p) => format!("wb sync peers revoke {}", p.name),
                    None => format!(
                        "wb sync peers add NAME --key {} && wb sync peers revoke NAME",
                        r.revoked.to_hex()
                    ),
                };
                let follow = store::peer_by_key(peers, &r.revoker)
                    .filter(|p| !p.revoked)
                    .map(|p| {
                        format!(
                            " (or follow {}'s revocations: wb sync peers trust {} --follow-revocations)",
                            p.name, p.name
                        )
                    })
                    .unwrap_or_default();
                (
                    Some(command.clone()),
                    format!("to apply: {command}{follow}"),
                )
            };
            lines.push(format!(
                "  {} revoked {} at {}{}; {note}",
                who,
                if r.is_self_revocation() {
                    "its own key".to_string()
                } else {
                    revoked_text(r)
                },
                r.revoked_at,
                reason(r),
            ));
            let mut j = revocation_json(peers, r);
            j["command"] = json!(command);
            j["own_key"] = json!(r.revoked == *own);
            advice_json.push(j);
        }
    }
    let j = json!({
        "applied": a.applied.iter().map(|r| revocation_json(peers, r)).collect::<Vec<_>>(),
        "advice": advice_json,
    });
    Ok((j, lines))
}
