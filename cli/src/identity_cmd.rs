//! `wb init`, `wb id` and `wb sync keygen`: the instance's identity.

use anyhow::{Result, bail};
use protocol::PublicKey;
use serde_json::json;
use store::instance::rotate::{Rotation, rotate_key};
use store::{Home, InitOutcome, ReplaceStep, Store, StoreError};

use crate::open::open;
use crate::prompt::confirm;
use crate::render::{Output, identity_json, identity_text};

/// A ticket for this instance (§9) and a line saying where its addresses come from: the node
/// running in this process (its live addresses), else the addresses `wb node run` recorded
/// when it last listened, else none (the ticket then carries only the endpoint id).
pub(crate) fn ticket(key: &PublicKey, store: &Store) -> Result<(String, String)> {
    let (addrs, note) = match crate::running::get() {
        Some(node) => {
            let addrs = node::ticket::advertised_addrs(node.endpoint(), node.addrs());
            let note = format!("the running node's addresses: {}", join_addrs(&addrs));
            (addrs, note)
        }
        None => {
            let addrs: Vec<std::net::SocketAddr> = store
                .listen_addrs()?
                .iter()
                .filter_map(|a| a.parse().ok())
                .collect();
            let note = if addrs.is_empty() {
                "no address: no node has listened on this home yet; after `wb node run`, \
                 `wb id` prints a ticket with its addresses"
                    .to_string()
            } else {
                format!(
                    "the addresses the node listened on when it last ran: {}",
                    join_addrs(&addrs)
                )
            };
            (addrs, note)
        }
    };
    Ok((node::ticket::encode(key, &addrs)?, note))
}

/// Addresses as `a, b, c`.
fn join_addrs(addrs: &[std::net::SocketAddr]) -> String {
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn init(home: &Home, name: Option<&str>) -> Result<Output> {
    let (outcome, key, store) = match crate::running::get() {
        // A running node's home is initialised: keep it, as `init` on any existing home does.
        Some(node) => {
            if let Some(name) = name {
                node.store().set_name(name)?;
            }
            (
                InitOutcome::Existing,
                node.key().clone(),
                node.store().clone(),
            )
        }
        None => {
            let (outcome, key, store) = home.init(name)?;
            (outcome, key, std::sync::Arc::new(store))
        }
    };
    let name = store.name()?;
    let mut j = identity_json(&key.public(), name.as_deref())?;
    let (word, headline) = match outcome {
        InitOutcome::Created => (
            "created",
            format!(
                "Created a new instance identity in {}",
                home.root().display()
            ),
        ),
        InitOutcome::AdoptedKeys => (
            "adopted",
            format!(
                "Adopted the existing key pair in {} and created the store",
                home.keys_dir().display()
            ),
        ),
        InitOutcome::Existing => (
            "existing",
            format!(
                "{} is already initialised; kept its identity (to replace the key: wb sync keygen --force)",
                home.root().display()
            ),
        ),
    };
    j["outcome"] = json!(word);
    j["home"] = json!(home.root().display().to_string());
    // The settings file, with the defaults, for `node run` and `hub run` (kept if there).
    let config = crate::config::write_template(home)?;
    let config_line = format!(
        "{} {}",
        if config {
            "Wrote the settings file"
        } else {
            "Kept the settings file"
        },
        home.root().join(crate::config::FILE_NAME).display()
    );
    j["config"] = json!(if config { "created" } else { "kept" });
    Ok(Output::new(
        format!("{headline}\n{config_line}\n{}", identity_text(&j)),
        j,
    ))
}

pub(crate) fn id(home: &Home) -> Result<Output> {
    let inst = open(home)?;
    let name = inst.store().name()?;
    let mut j = identity_json(&inst.key().public(), name.as_deref())?;
    let (ticket, note) = ticket(&inst.key().public(), inst.store())?;
    j["ticket"] = json!(ticket);
    let text = format!("{}\n             (carries {note})", identity_text(&j));
    Ok(Output::new(text, j))
}

pub(crate) fn keygen(
    home: &Home,
    force: bool,
    yes: bool,
    crash_after: Option<&str>,
) -> Result<Output> {
    if force && crate::running::get().is_some() {
        bail!(
            "a node is running on this home with the current key; stop it (Ctrl-C or SIGTERM) \
             before replacing the key"
        );
    }
    // An initialised home is opened whole, so a key that does not belong to its store is refused.
    let (existing, store) = if home.is_initialized() {
        let inst = open(home)?;
        (Some(inst.key().clone()), Some(inst.store().clone()))
    } else {
        match home.load_key() {
            Ok(key) => (Some(key), None),
            Err(StoreError::NotInitialized(_)) => (None, None),
            Err(e) => return Err(e.into()),
        }
    };
    let name = store.as_deref().map(Store::name).transpose()?.flatten();
    let Some(old) = existing else {
        let key = store::home::new_secret_key()?;
        home.write_key_files(&key)?;
        let mut j = identity_json(&key.public(), name.as_deref())?;
        j["outcome"] = json!("created");
        let text = format!(
            "Created a new instance key in {}\n{}",
            home.keys_dir().display(),
            identity_text(&j)
        );
        return Ok(Output::new(text, j));
    };
    if !force {
        let mut j = identity_json(&old.public(), name.as_deref())?;
        j["outcome"] = json!("existing");
        return Ok(Output::new(
            format!(
                "A key already exists (key id {}); kept it. To replace it: wb sync keygen --force",
                old.public().key_id()
            ),
            j,
        ));
    }
    if !yes {
        confirm(&format!(
            "Replace the instance key {}? Local records are re-signed under the new key and \
             withdrawn under the old one; the old key signs a succession naming the new one, so \
             peers that know this instance move to the new key as it reaches them.",
            old.public().key_id()
        ))?;
    }
    let mut after_step = |step: ReplaceStep| {
        let name = match step {
            ReplaceStep::Staged => "staged",
            ReplaceStep::StoreSwitched => "store",
        };
        if crash_after == Some(name) {
            // The test hook: stop here as a killed process would, without unwinding.
            std::process::exit(70);
        }
        Ok(())
    };
    let Rotation {
        new,
        backup,
        resigned: moved,
        ..
    } = rotate_key(home, store.as_deref(), &old, &mut after_step)?;
    let mut j = identity_json(&new.public(), name.as_deref())?;
    j["outcome"] = json!("replaced");
    j["previous_key_id"] = json!(old.public().key_id());
    j["records_resigned"] = json!(moved);
    let text = format!(
        "Replaced key {} with a new key; {moved} local records re-signed. {} The old secret \
         key is in {}.\n{}",
        old.public().key_id(),
        if store.is_some() {
            "The old key signed a succession naming the new one: peers that know this instance \
             take the new key when it reaches them (next sync, a hub, or a bundle), keeping its \
             name and trust."
        } else {
            "There is no store yet, so no succession was signed: peers must add the new key."
        },
        backup.display(),
        identity_text(&j)
    );
    j["succession"] = json!(store.is_some());
    Ok(Output::new(text, j))
}
