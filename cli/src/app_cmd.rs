//! `wb app import|export|status`: the bridge to the WhiteBalloon app (§14). The work is
//! `store::app`; this module parses, calls and prints.

use std::path::Path;

use anyhow::Result;
use serde_json::json;
use store::app::{AdoptOptions, AdoptReport, InboxOptions, InboxReport};
use store::bundles::VerifiedBundle;
use store::{Home, time};

use crate::open::open;
use crate::render::Output;

pub fn import(home: &Home, dir: &Path, allow_contact: bool, dry_run: bool) -> Result<Output> {
    let bundle = store::bundles::verify_dir(dir, None)
        .map_err(|e| anyhow::anyhow!("the app's snapshot was not adopted: {e}"))?;
    let opts = AdoptOptions {
        allow_contact,
        now_ms: time::now_ms(),
        dry_run,
    };
    adopt_bundle(home, bundle, dir, &opts)
}

/// Adopts a verified snapshot (`app import`, and `sync import` of the app's own bundle). A
/// refusal, or a snapshot adopted before, leaves the store file as it was: without a running
/// node, those are decided on a read-only store first.
pub(crate) fn adopt_bundle(
    home: &Home,
    bundle: VerifiedBundle,
    dir: &Path,
    opts: &AdoptOptions,
) -> Result<Output> {
    let label = dir.display().to_string();
    if crate::running::get().is_none() {
        let (key, store) = home.open_read_only()?;
        if let Some(report) = store::app::precheck(&store, &key.public(), &bundle, &label)? {
            return Ok(adopt_output(&report));
        }
    }
    let inst = open(home)?;
    let report = store::app::adopt(inst.store(), inst.key(), bundle, &label, opts)?;
    Ok(adopt_output(&report))
}

/// The text and JSON of an adoption (also `wb sync import` of the app's snapshot).
pub(crate) fn adopt_output(r: &AdoptReport) -> Output {
    let short = &r.manifest_digest[..16.min(r.manifest_digest.len())];
    let text = if r.already_adopted {
        format!(
            "the app's snapshot in {} (manifest {short}) was already adopted; nothing changed",
            r.dir
        )
    } else {
        let rows = r
            .records
            .iter()
            .map(|(e, n)| format!("{n} {e}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut text = format!(
            "{} the app's snapshot in {} (signed {}): {} rows{}\n{} created, {} updated, {} unchanged, {} deleted",
            if r.dry_run { "would adopt" } else { "adopted" },
            r.dir,
            r.signed_at,
            r.records.values().sum::<u64>(),
            if rows.is_empty() {
                String::new()
            } else {
                format!(" ({rows})")
            },
            r.created,
            r.updated,
            r.unchanged,
            r.deleted,
        );
        let notes = [
            (
                r.signed_now,
                "taken unsigned from an earlier import, now signed",
            ),
            (
                r.comments_on_foreign,
                "comments on other instances' requests",
            ),
            (
                r.foreign_skipped,
                "rows wb handed the app from other instances (not adopted)",
            ),
            (
                r.kept_local,
                "ids held by records made with `wb record put` (left as they are)",
            ),
            (
                r.contact_dropped,
                "contact values dropped (--allow-contact keeps them)",
            ),
            (
                r.unknown_foreign,
                "rows with ids wb never handed out (skipped)",
            ),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect::<Vec<_>>();
        if !notes.is_empty() {
            text.push_str(&format!("\n{}", notes.join("; ")));
        }
        if r.dry_run {
            text.push_str("\ndry run: nothing was changed");
        } else if !r.changed() {
            text.push_str("\nnothing changed");
        }
        text
    };
    let mut j = serde_json::to_value(r).unwrap_or_default();
    j["changed"] = json!(r.changed());
    // The keys of `sync import`'s report (§12), which adopts the app's snapshot the same way.
    j["new"] = json!(r.created);
    j["already_imported"] = json!(r.already_adopted);
    for key in ["stale", "conflicts", "rejected"] {
        j[key] = json!(0);
    }
    Output::new(text, j)
}

pub fn export(home: &Home, dir: &Path) -> Result<Output> {
    let inst = open(home)?;
    let report = store::app::write_inbox(
        inst.store(),
        inst.key(),
        dir,
        &InboxOptions::for_home(home, time::now_ms())?,
    )?;
    Ok(Output::new(
        inbox_text(&report),
        serde_json::to_value(&report)?,
    ))
}

fn inbox_text(r: &InboxReport) -> String {
    let mut text = format!(
        "{} the app's inbox in {}: {} users, {} requests, {} comments from other instances{}",
        if r.unchanged { "unchanged:" } else { "wrote" },
        r.dir,
        r.users,
        r.requests,
        r.comments,
        if r.withdrawn > 0 {
            format!(", {} withdrawn rows emptied", r.withdrawn)
        } else {
            String::new()
        }
    );
    text.push_str(&format!(
        "\n{} files; {} changed, {} removed",
        r.files, r.written, r.removed
    ));
    let notes = [
        (r.stub_users, "comment authors without a profile here (written private)"),
        (r.renamed, "usernames disambiguated"),
        (
            r.held_back_on_own_requests,
            "comments on this instance's own requests held back (the app would have to rewrite its request)",
        ),
        (r.held_back_no_request, "comments whose request is not here"),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .collect::<Vec<_>>();
    if !notes.is_empty() {
        text.push_str(&format!("\n{}", notes.join("; ")));
    }
    text
}

pub fn status(home: &Home) -> Result<Output> {
    let inst = open(home)?;
    let status = inst.store().app_status()?;
    let when = protocol::time::format_timestamp;
    let mut text = String::new();
    match &status.snapshot {
        Some(s) => text.push_str(&format!(
            "last snapshot adopted: {} from {} (manifest {}, signed {}): {} rows, {} created, {} updated, {} deleted",
            when(s.adopted_at_ms),
            s.dir,
            &s.manifest_digest[..16.min(s.manifest_digest.len())],
            s.signed_at,
            s.report.records.values().sum::<u64>(),
            s.report.created,
            s.report.updated,
            s.report.deleted
        )),
        None => text.push_str("last snapshot adopted: none (wb app import, or wb node run --app-snapshot)"),
    }
    // Changes of other origins the store received since the last inbox.
    let last_seq = inst.store().last_seq()?;
    let own = inst.key().public();
    let pending = match &status.inbox {
        Some(i) => {
            let changes = inst.store().changes_since(i.last_seq, CHANGES_SCAN_MAX)?;
            Some(changes.iter().filter(|c| c.record.origin != own).count() as u64)
        }
        None => None,
    };
    match &status.inbox {
        Some(i) => {
            text.push_str(&format!(
                "\nlast inbox written: {} in {} (manifest {}): {} users, {} requests, {} comments, {} withdrawn",
                when(i.written_at_ms),
                i.dir,
                &i.manifest_digest[..16.min(i.manifest_digest.len())],
                i.report.users,
                i.report.requests,
                i.report.comments,
                i.report.withdrawn
            ));
        }
        None => {
            text.push_str("\nlast inbox written: none (wb app export, or wb node run --app-inbox)")
        }
    }
    let mut waiting = Vec::new();
    match pending {
        Some(n) if n > 0 => waiting.push(format!(
            "{n} changes from other instances received since the last inbox"
        )),
        None if last_seq > 0 => waiting.push("no inbox written yet".to_string()),
        _ => {}
    }
    if let Some(i) = &status.inbox {
        if i.report.held_back_on_own_requests > 0 {
            waiting.push(format!(
                "{} comments from other instances on this instance's own requests (held back: \
                 the app would have to rewrite its own request to take them)",
                i.report.held_back_on_own_requests
            ));
        }
        if i.report.held_back_no_request > 0 {
            waiting.push(format!(
                "{} comments whose request this instance does not hold",
                i.report.held_back_no_request
            ));
        }
        if let Some(run) = &status.import
            && run.inbox_digest != i.manifest_digest
        {
            waiting.push("the last inbox has not been imported by the import command yet".into());
        }
    }
    text.push_str(&format!(
        "\nwaiting for the app: {}",
        if waiting.is_empty() {
            "nothing".to_string()
        } else {
            waiting.join("; ")
        }
    ));
    match &status.import {
        Some(run) => {
            text.push_str(&format!(
                "\nlast import command: {} at {}: {} ({} ms)",
                run.command,
                when(run.started_at_ms),
                match (run.ok, run.exit_code) {
                    (true, _) => "succeeded".to_string(),
                    (false, Some(code)) => format!("failed with exit status {code}"),
                    (false, None) => "did not finish".to_string(),
                },
                run.duration_ms
            ));
            for line in &run.last_lines {
                text.push_str(&format!("\n  | {line}"));
            }
        }
        None => text.push_str("\nlast import command: none run"),
    }
    text.push_str(&format!(
        "\n{} local records adopted from the app; {} records of other instances mapped to app ids ({} handed to the app)",
        status.adopted, status.mapped, status.handed
    ));
    let mut j = serde_json::to_value(&status)?;
    j["waiting"] = json!(waiting);
    j["changes_since_inbox"] = json!(pending);
    Ok(Output::new(text, j))
}

/// `app status` counts changes since the last inbox over at most this many log entries.
const CHANGES_SCAN_MAX: usize = 10_000;
