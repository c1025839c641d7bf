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

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::SecretKey;

    fn peer(key: PublicKey, name: &str, revoked: bool) -> Peer {
        Peer {
            name: name.into(),
            public_key: key,
            addrs: vec!["127.0.0.1:9".into()],
            hub: false,
            trusted: true,
            revoked,
            follow_revocations: false,
            notes: "kept".into(),
        }
    }

    /// A home that knows A (and a revoked R): a held succession of A moves A's entry in
    /// `wb_peers.txt` (name, trust, addresses, notes kept); one of R is refused and reported;
    /// `own_records` of the rotated instance is its succession.
    #[test]
    fn settle_moves_the_entry_in_the_file_and_reports_refusals() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A rotates: its store holds the succession.
        let a_home = Home::new(dir.path().join("a"));
        let (_, a_old, a_store) = a_home.init(Some("a")).expect("init a");
        let rotation =
            crate::instance::rotate::rotate_key(&a_home, Some(&a_store), &a_old, &mut |_| Ok(()))
                .expect("rotate");
        let own = own_records(&a_store).expect("own");
        assert_eq!(own.len(), 1);
        let s = Succession::from_record(&own[0]).expect("a succession");
        assert_eq!(
            (s.predecessor, s.successor),
            (a_old.public(), rotation.new.public())
        );

        // B knows A's old key and a revoked R that rotated too.
        let b_home = Home::new(dir.path().join("b"));
        let (_, b_key, b_store) = b_home.init(Some("b")).expect("init b");
        let (r_old, r_new) = (
            SecretKey::from_bytes(&[5; 32]),
            SecretKey::from_bytes(&[6; 32]),
        );
        crate::peers::save_peers(
            &b_home,
            &[
                peer(a_old.public(), "a", false),
                peer(r_old.public(), "r", true),
            ],
        )
        .expect("registry");
        let mut r_succession = own[0].clone();
        r_succession.origin = r_old.public();
        r_succession.id = succession::record_id(&r_new.public());
        r_succession.fields = succession::fields(&r_old.public(), &r_new, 1_700_000_000_000);
        r_succession.sign(&r_old).expect("sign");
        let report = b_store
            .apply_batch(
                &[own[0].clone(), r_succession],
                &crate::ApplyOptions::new("test", crate::time::now_ms()),
            )
            .expect("apply");
        assert_eq!(report.new, 2);
        let settled = settle(&b_home, &b_store, &b_key.public(), &[]).expect("settle");
        assert_eq!(settled.plan.moves.len(), 1);
        let peers = crate::peers::load_peers(&b_home).expect("load");
        let a = crate::peers::find_peer(&peers, "a").expect("a");
        assert_eq!(a.public_key, rotation.new.public());
        assert_eq!(
            (a.trusted, a.notes.as_str(), a.addrs.len()),
            (true, "kept", 1)
        );
        let r = crate::peers::find_peer(&peers, "r").expect("r");
        assert_eq!(
            r.public_key,
            r_old.public(),
            "a revoked entry does not move"
        );
        // Settling again changes nothing; the report shows A's former key and R's refusal.
        assert!(
            settle(&b_home, &b_store, &b_key.public(), &[])
                .expect("again")
                .plan
                .moves
                .is_empty()
        );
        let shown = report_of(&b_store, &peers, &b_key.public());
        assert_eq!(shown.former, vec![("a".to_string(), vec![a_old.public()])]);
        assert_eq!(shown.refused.len(), 1);
        assert_eq!(shown.refused[0].0, "r");
        assert!(
            shown.refused[0].2.contains("revoked here"),
            "{:?}",
            shown.refused
        );
    }

    fn report_of(store: &Store, peers: &[Peer], own: &PublicKey) -> Report {
        report(store, peers, own).expect("report")
    }
}
