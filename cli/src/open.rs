//! Opening the home a command works on: its key and store, or those of the node running on it.

use anyhow::{Result, bail};
use protocol::PublicKey;
pub(crate) use store::Instance;
use store::{Home, ListFilter, Store};

/// Opens the home, or, inside a running node (a control-socket client's command), uses the
/// node's open store and key.
pub(crate) fn open(home: &Home) -> Result<Instance> {
    if let Some(node) = crate::running::get() {
        return Ok(Instance::from_parts(
            home.clone(),
            node.key().clone(),
            node.store().clone(),
        ));
    }
    Ok(Instance::open(home)?)
}

/// The origins of the store's records (deleted ones included), each once.
pub(crate) fn record_origins(store: &Store) -> Result<Vec<PublicKey>> {
    let mut keys: Vec<PublicKey> = store
        .list(&ListFilter {
            include_deleted: true,
            ..Default::default()
        })?
        .into_iter()
        .map(|r| r.origin)
        .collect();
    keys.dedup();
    Ok(keys)
}

/// Resolves `--origin`: `local`, a key in any textual form, or a key id known to the store.
pub(crate) fn resolve_origin(inst: &Instance, text: &str) -> Result<PublicKey> {
    if text == "local" {
        return Ok(inst.key().public());
    }
    if let Ok(key) = PublicKey::parse(text) {
        return Ok(key);
    }
    let wanted = text.trim().to_ascii_lowercase();
    if wanted.len() == protocol::keys::KEY_ID_LEN && wanted.bytes().all(|b| b.is_ascii_hexdigit()) {
        let mut found: Vec<PublicKey> = record_origins(inst.store())?
            .into_iter()
            .chain([inst.key().public()])
            .filter(|k| k.key_id() == wanted)
            .collect();
        found.dedup();
        if let [key] = found[..] {
            return Ok(key);
        }
        bail!("no known origin has key id {wanted}");
    }
    bail!(
        "not a key or key id: {text:?} (expected base64, 64 hex digits, a 16-hex key id or `local`)"
    )
}
