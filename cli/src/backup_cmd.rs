//! `wb backup FILE` and `wb restore FILE [--yes]` (issue 13, item 2), over `store::backup`.
//!
//! A backup runs on the open store, the running node's when there is one (the control socket
//! brings the command there), so the node keeps syncing while the copy is made. A restore
//! needs the node stopped: it replaces the store file. Neither touches the key files: a backup
//! holds no key.

use std::path::Path;

use anyhow::{Result, bail};
use serde_json::json;
use store::{Home, time};

use crate::prompt::confirm;
use crate::render::Output;

const KEY_NOTE: &str = "The instance key is not in the backup: keep keys/id_ed25519 and \
                        keys/id_ed25519.pub safe separately (one small file pair); a restore \
                        needs them in the home.";

pub fn backup(home: &Home, file: &Path) -> Result<Output> {
    let inst = crate::open::open(home)?;
    let report = inst.store().backup_to(file, time::now_ms())?;
    let text = format!(
        "backup written to {}: {} ({} bytes), {} records ({} of this instance), store format \
         {}, in {} ms\n{KEY_NOTE}",
        file.display(),
        size(report.bytes),
        report.bytes,
        report.records,
        report.own_records,
        report.format,
        report.elapsed_ms,
    );
    Ok(Output::new(
        text,
        json!({
            "path": file.display().to_string(),
            "bytes": report.bytes,
            "records": report.records,
            "own_records": report.own_records,
            "tables": report.tables,
            "format": report.format,
            "taken_at": protocol::time::format_timestamp(report.taken_at_ms),
            "elapsed_ms": report.elapsed_ms,
            "key_included": false,
        }),
    ))
}

pub fn restore(home: &Home, file: &Path, yes: bool) -> Result<Output> {
    if crate::running::get().is_some() {
        bail!(
            "a node is running on this home: stop it (Ctrl-C or SIGTERM) and run `wb restore` \
             again; nothing was changed"
        );
    }
    if !home.secret_key_path().exists() && !home.public_key_path().exists() {
        bail!(
            "no instance key in {}: a backup holds no key; put the instance's key files \
             (id_ed25519, id_ed25519.pub) back there first; nothing was changed",
            home.keys_dir().display()
        );
    }
    let key = home.load_key()?;
    // Refusals (not a backup, another instance's, a newer format) come before the question.
    let info = store::backup::inspect(file)?;
    if let Some(owner) = info.instance_key
        && owner != key.public()
    {
        bail!(
            "{} is a backup of key id {}, and this home's key is key id {}; nothing was changed",
            file.display(),
            owner.key_id(),
            key.public().key_id()
        );
    }
    let taken = info
        .taken_at_ms
        .map_or("a plain store file".to_string(), |ms| {
            format!("taken {}", protocol::time::format_timestamp(ms))
        });
    if !yes {
        confirm(&format!(
            "Replace the store of {} with {} ({taken}, {} records)? The current store is kept \
             beside it; peers will pull everything again, and send back what this instance \
             made or received since the backup.",
            home.root().display(),
            file.display(),
            info.records,
        ))?;
    }
    let report = store::backup::restore(&home.store_path(), file, &key.public(), time::now_ms())?;
    let kept = report.replaced.as_ref().map_or_else(
        || "there was no store to replace".to_string(),
        |p| format!("the replaced store is kept as {}", p.display()),
    );
    let text = format!(
        "restored {} records from {} ({taken}) with a new epoch {}; {kept}.\nStart the node \
         (or `wb sync now PEER`): peers pull everything from the start, and this instance gets \
         back from them what it made or received since the backup.",
        report.backup.records,
        file.display(),
        report.epoch,
    );
    Ok(Output::new(
        text,
        json!({
            "path": file.display().to_string(),
            "records": report.backup.records,
            "format": report.backup.format,
            "taken_at": report.backup.taken_at_ms.map(protocol::time::format_timestamp),
            "epoch": report.epoch.to_string(),
            "replaced": report.replaced.map(|p| p.display().to_string()),
            "clock": report.clock.to_string(),
        }),
    ))
}

/// A size for people: bytes, KiB, MiB or GiB with one decimal.
fn size(bytes: u64) -> String {
    const UNITS: [&str; 3] = ["KiB", "MiB", "GiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = UNITS[0];
    for next in &UNITS[1..] {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = next;
    }
    format!("{value:.1} {unit}")
}
