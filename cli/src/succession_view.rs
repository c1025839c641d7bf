//! How `wb sync peers list` and `wb sync status` show key successions (issue 15): the keys a
//! peer had before (its entry moved to each new key as the succession reached this instance),
//! and the successions that were refused, with why and what the operator can do.

use anyhow::Result;
use protocol::PublicKey;
use serde_json::{Value, json};
use store::successions::Report;
use store::{Home, Peer, Store};

/// What the held successions mean for `peers` (the store opened read-only, or the running
/// node's); an empty report when there is no store yet.
pub(crate) fn report(home: &Home, peers: &[Peer]) -> Result<Report> {
    let own = home.load_key()?.public();
    if let Some(node) = crate::running::get() {
        return Ok(store::successions::report(node.store(), peers, &own)?);
    }
    if !home.store_path().exists() {
        return Ok(Report::default());
    }
    let (_, store) = home.open_read_only()?;
    Ok(store::successions::report(&store, peers, &own)?)
}

/// The keys `name` had before, newest first.
pub(crate) fn former<'a>(report: &'a Report, name: &str) -> &'a [PublicKey] {
    report
        .former
        .iter()
        .find(|(n, _)| n == name)
        .map_or(&[], |(_, keys)| keys.as_slice())
}

/// `former_keys` of a peer's JSON: key ids, newest first.
pub(crate) fn former_json(keys: &[PublicKey]) -> Value {
    Value::Array(keys.iter().map(|k| json!(k.key_id())).collect())
}

/// The `successions` part of `wb sync status`: the refused successions of registry keys, as
/// JSON and as text lines (none when there are none).
pub(crate) fn status(
    store: &Store,
    peers: &[Peer],
    own: &PublicKey,
) -> Result<(Value, Vec<String>)> {
    let report = store::successions::report(store, peers, own)?;
    let mut lines = Vec::new();
    let mut refused = Vec::new();
    if !report.refused.is_empty() {
        lines.push("key successions refused (the operator decides):".into());
    }
    for (name, s, why) in &report.refused {
        let trusted = store::find_peer(peers, name).is_some_and(|p| p.trusted);
        let command = format!(
            "wb sync peers remove {name} && wb sync peers add {name} --key {}{}",
            s.successor.to_hex(),
            if trusted { " --trusted" } else { "" }
        );
        lines.push(format!(
            "  {name}: {} -> {} at {}: {why}; to accept this one by hand: {command}",
            s.predecessor.key_id(),
            s.successor.key_id(),
            s.succeeded_at
        ));
        refused.push(json!({
            "peer": name,
            "from": s.predecessor.to_base64(),
            "from_key_id": s.predecessor.key_id(),
            "to": s.successor.to_base64(),
            "to_key_id": s.successor.key_id(),
            "succeeded_at": s.succeeded_at,
            "reason": why,
            "command": command,
        }));
    }
    let moved: Vec<Value> = report
        .former
        .iter()
        .map(|(name, keys)| json!({ "peer": name, "former_keys": former_json(keys) }))
        .collect();
    Ok((json!({ "refused": refused, "moved": moved }), lines))
}
