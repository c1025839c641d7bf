//! Key rotation that keeps the identity (issue 15), on the store's side: the succession records
//! the store holds ([`protocol::succession`]), this instance's own ones (shown in its `Hello`s),
//! and [`settle`], which moves registry entries to their successors' keys in `wb_peers.txt`
//! — same name, trust, addresses and notes. Unlike a followed revocation (a view computed at
//! each read), a succession is written to the registry: the entry then *is* the new key, and
//! the old key is unknown here from then on.

use std::collections::{BTreeSet, HashSet};

use protocol::succession::{self, Plan, Succession};
use protocol::{PublicKey, Record};

use crate::error::Result;
use crate::{Home, ListFilter, Peer, Store};

/// Hops followed from the registry's keys at most (a key replaced this many times while a peer
/// was away still moves; a longer chain stops there, at the next settle it goes on).
const HOPS_MAX: usize = 64;

/// The held successions whose predecessors are `keys`, and the successions of their
/// successors in turn (one range read per key: cheap enough for every session).
pub fn held_from(
    store: &Store,
    keys: impl IntoIterator<Item = PublicKey>,
) -> Result<Vec<Succession>> {
    let mut todo: Vec<PublicKey> = keys.into_iter().collect();
    let mut seen: HashSet<PublicKey> = todo.iter().copied().collect();
    let mut out = Vec::new();
    let mut hops = 0;
    while let Some(key) = todo.pop() {
        for s in held_by(store, &key)? {
            if seen.insert(s.successor) && hops < HOPS_MAX {
                hops += 1;
                todo.push(s.successor);
            }
            out.push(s);
        }
    }
    Ok(out)
}

/// The live successions signed by `predecessor`, as records.
fn records_by(store: &Store, predecessor: &PublicKey) -> Result<Vec<Record>> {
    store.list(&ListFilter {
        entity: Some(succession::entity()),
        origin: Some(*predecessor),
        ..ListFilter::default()
    })
}

fn held_by(store: &Store, predecessor: &PublicKey) -> Result<Vec<Succession>> {
    Ok(records_by(store, predecessor)?
        .iter()
        .filter_map(Succession::from_record)
        .collect())
}

/// Every live succession the store holds, whoever signed it (`sync status`, `peers list`).
pub fn held_all(store: &Store) -> Result<Vec<Succession>> {
    let mut out = Vec::new();
    store.scan(
        |entity| entity == succession::ENTITY,
        |record| -> Result<()> {
            out.extend(Succession::from_record(&record));
            Ok(())
        },
    )?;
    Ok(out)
}

/// This instance's own successions (signed by the keys it replaced, naming a key it had or has),
/// newest last, at most [`succession::HELLO_MAX`]: what its `Hello`s show.
pub fn own_records(store: &Store) -> Result<Vec<Record>> {
    let former = store.former_keys()?;
    let ours: HashSet<PublicKey> = former
        .iter()
        .copied()
        .chain(store.instance_key()?)
        .collect();
    let mut out = Vec::new();
    for key in &former {
        for record in records_by(store, key)? {
            if Succession::from_record(&record).is_some_and(|s| ours.contains(&s.successor)) {
                out.push(record);
            }
        }
    }
    out.sort_by_key(|r| r.version);
    let skip = out.len().saturating_sub(succession::HELLO_MAX);
    Ok(out.split_off(skip))
}

/// What [`settle`] did and found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settled {
    /// The moves written to the registry, and the refusals of successions of its keys.
    pub plan: Plan,
}

/// Moves registry entries of `home` to their successors' keys, as the successions held in
/// `store` say ([`succession::plan`], against the revocations in force for `own`, with
/// `extra` followed revokers: a hub's `--follow-revocations`). Writes `wb_peers.txt` only when
/// an entry moves, re-reading it just before so an edit made meanwhile is kept (a move applies
/// only to an entry that still has the old key).
pub fn settle(home: &Home, store: &Store, own: &PublicKey, extra: &[PublicKey]) -> Result<Settled> {
    let peers = crate::peers::load_peers(home)?;
    settle_with(home, store, own, extra, &peers)
}

/// [`settle`] with the registry already read (`peers`, as a long-running process caches it).
pub fn settle_with(
    home: &Home,
    store: &Store,
    own: &PublicKey,
    extra: &[PublicKey],
    peers: &[Peer],
) -> Result<Settled> {
    let held = held_from(store, peers.iter().map(|p| p.public_key))?;
    if held.is_empty() {
        return Ok(Settled::default());
    }
    let (_, applied) = crate::revocations::effective_peers(store, peers, extra, own)?;
    let plan = succession::plan(peers, own, &applied, &held);
    if !plan.moves.is_empty() {
        let fresh = crate::peers::load_peers(home)?;
        let moved = plan.apply(&fresh);
        if moved != fresh {
            crate::peers::save_peers(home, &moved)?;
        }
        for m in &plan.moves {
            tracing::info!(
                peer = %m.name,
                from = %m.from.key_id(),
                to = %m.to.key_id(),
                succeeded_at = %m.succeeded_at,
                "the peer replaced its key: its registry entry now has the new key (same name, trust and addresses)"
            );
        }
    }
    Ok(Settled { plan })
}

/// An unknown key `remote` showing `offered` successions (in its `Hello`, record signatures
/// and countersignatures verified): if, with what the store holds, they move a registry entry
/// to `remote`, the offered records on that entry's chain are stored (as any public record a
/// peer sends: so they are relayed on and shown) and the registry settled; returns the registry
/// as it is then. Otherwise nothing is stored or written and `None` is returned.
pub fn admit(
    home: &Home,
    store: &Store,
    own: &PublicKey,
    extra: &[PublicKey],
    remote: &PublicKey,
    offered: &[(Record, Succession)],
) -> Result<Option<Vec<Peer>>> {
    if offered.is_empty() {
        return Ok(None);
    }
    let peers = crate::peers::load_peers(home)?;
    let mut held = held_from(store, peers.iter().map(|p| p.public_key))?;
    held.extend(offered.iter().map(|(_, s)| s.clone()));
    let (view, applied) = crate::revocations::effective_peers(store, &peers, extra, own)?;
    let plan = succession::plan(&peers, own, &applied, &held);
    let Some(entry) = plan
        .apply(&peers)
        .into_iter()
        .find(|p| p.public_key == *remote)
    else {
        return Ok(None);
    };
    let chain: Vec<Record> = offered
        .iter()
        .filter(|(_, s)| {
            plan.moves
                .iter()
                .any(|m| m.name == entry.name && m.from == s.predecessor && m.to == s.successor)
        })
        .map(|(r, _)| r.clone())
        .collect();
    let mut opts = crate::ApplyOptions::new(
        format!("the Hello of {}", remote.key_id()),
        crate::time::now_ms(),
    );
    opts.revoked = std::sync::Arc::new(protocol::peers::revoked_keys(&view));
    store.apply_batch(&chain, &opts)?;
    settle_with(home, store, own, extra, &peers)?;
    let after = crate::peers::load_peers(home)?;
    Ok(crate::peers::peer_by_key(&after, remote)
        .is_some()
        .then_some(after))
}

/// A registry entry's succession history and the successions of its keys that are not applied,
/// for showing (`peers list`, `sync status`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Per entry name, the keys it had before, newest first.
    pub former: Vec<(String, Vec<PublicKey>)>,
    /// Successions not applied: the entry's name, the succession, why.
    pub refused: Vec<(String, Succession, String)>,
}

/// What the held successions mean for the registry `peers` (all held ones: a full read).
pub fn report(store: &Store, peers: &[Peer], own: &PublicKey) -> Result<Report> {
    let held = held_all(store)?;
    let mut out = Report::default();
    if held.is_empty() {
        return Ok(out);
    }
    for p in peers {
        let former = succession::former_keys(p, &held);
        if !former.is_empty() {
            out.former.push((p.name.clone(), former));
        }
    }
    let (_, applied) = crate::revocations::effective_peers(store, peers, &[], own)?;
    let plan = succession::plan(peers, own, &applied, &held);
    let mut seen = BTreeSet::new();
    for (name, s, why) in plan.refused {
        if seen.insert((name.clone(), *s.successor.as_bytes())) {
            out.refused.push((name, s, why.to_string()));
        }
    }
    for (name, s) in succession::conflicts_after_move(peers, &held) {
        if seen.insert((name.clone(), *s.successor.as_bytes())) {
            out.refused.push((
                name,
                s,
                "the key already moved to another successor: a conflict for the operator to settle"
                    .to_string(),
            ));
        }
    }
    Ok(out)
}
