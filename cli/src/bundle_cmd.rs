//! `wb sync export|import|init --from|status|conflicts`: bundles and the instance's sync state
//! (computed by `store::instance::status`, rendered here).

use std::io::IsTerminal;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use store::bundles::{self, ExpectedSigner, ExportOptions, ImportReport, VerifiedDir};
use store::instance::status::{DigestState, DigestStatus};
use store::{Home, Peer, time};

use crate::identity_cmd::init;
use crate::open::open;
use crate::render::Output;

/// Exports below this many records show no progress bar.
const PROGRESS_MIN_RECORDS: u64 = 2_000;

pub fn export(home: &Home, dir: &Path, for_peer: Option<&str>) -> Result<Output> {
    let inst = open(home)?;
    let include_trusted = match for_peer {
        None => false,
        Some(name) => {
            let peers = store::load_peers(home)?;
            let peer = store::find_peer(&peers, name)
                .with_context(|| format!("no peer named {name:?} (see `wb sync peers list`)"))?;
            if peer.revoked {
                bail!("peer {name} is revoked; it receives nothing");
            }
            if peer.hub {
                bail!(
                    "peer {name} is a hub, and a hub is never a trusted audience (§4): it gets \
                     only the public export (run without --for)"
                );
            }
            if !peer.trusted {
                bail!(
                    "peer {name} is not trusted, so --for would give it nothing more than the \
                     public export; trust it first with `wb sync peers trust {name}`"
                );
            }
            true
        }
    };
    let bar = progress_bar();
    let mut progress = |done: u64, total: u64| {
        if let Some(bar) = &bar
            && total >= PROGRESS_MIN_RECORDS
        {
            bar.set_length(total);
            bar.set_position(done);
        }
    };
    let report = bundles::export(
        inst.store(),
        inst.key(),
        dir,
        &ExportOptions {
            include_trusted,
            now_ms: time::now_ms(),
        },
        &mut progress,
    )?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let per_entity = report
        .records
        .iter()
        .map(|(e, n)| format!("{n} {e}"))
        .collect::<Vec<_>>()
        .join(", ");
    let total: u64 = report.records.values().sum();
    let mut text = format!(
        "exported {total} records to {}{}{}\n{} files, {} bytes; {} record files changed, {} stale files removed",
        report.dir,
        if per_entity.is_empty() {
            String::new()
        } else {
            format!(" ({per_entity})")
        },
        for_peer
            .map(|p| format!(" for trusted peer {p}"))
            .unwrap_or_default(),
        report.files,
        report.bytes,
        report.written,
        report.removed,
    );
    let skipped = [
        (report.skipped_private, "private"),
        (report.skipped_trusted, "trusted (no --for)"),
        (report.skipped_draft, "draft requests"),
        (
            report.skipped_hidden_parent,
            "comments on withheld requests",
        ),
        (report.skipped_unsigned, "unsigned (from app bundles)"),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .collect::<Vec<_>>();
    if !skipped.is_empty() {
        text.push_str(&format!("\nnot exported: {}", skipped.join(", ")));
    }
    if report.comments_left_out_of_bodies > 0 {
        text.push_str(&format!(
            "\n{} comments left out of their request's body (it would exceed the file size limit); \
             each is still in the bundle as its own file",
            report.comments_left_out_of_bodies
        ));
    }
    let mut j = serde_json::to_value(&report)?;
    j["for"] = json!(for_peer);
    Ok(Output::new(text, j))
}

fn progress_bar() -> Option<indicatif::ProgressBar> {
    // Inside a node for a control-socket client, stderr is the node's log, not the client's.
    if crate::prompt::client_tty().is_some() || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({per_sec}, {eta})")
            .ok()?
            .progress_chars("=> "),
    );
    bar.set_message("exporting");
    Some(bar)
}

fn import_text(r: &ImportReport, dir: &Path) -> String {
    if r.already_imported {
        return format!(
            "bundle {} (manifest {}) was already imported; nothing changed",
            dir.display(),
            &r.manifest_digest[..16.min(r.manifest_digest.len())]
        );
    }
    let verb = if r.dry_run {
        "would import"
    } else {
        "imported"
    };
    let mut text = format!(
        "{verb} {} signed by {} ({} files): {} new, {} updated, {} unchanged, {} stale, {} conflicts",
        dir.display(),
        r.signer_key_id,
        r.files,
        r.new,
        r.updated,
        r.unchanged,
        r.stale,
        r.conflicts
    );
    if r.revoked_origin > 0 {
        text.push_str(&format!(
            "\nskipped {} records of revoked origins (not imported)",
            r.revoked_origin
        ));
    }
    for moved in &r.peers_moved {
        text.push_str(&format!(
            "\npeer {moved}: it replaced its key (the bundle brought its succession); same name and trust"
        ));
    }
    if r.dry_run {
        text.push_str("\ndry run: nothing was changed");
    }
    text
}

fn parse_expected(expect_key: Option<&str>) -> Result<Option<ExpectedSigner>> {
    expect_key
        .map(|k| {
            ExpectedSigner::parse(k)
                .with_context(|| format!("--expect-key {k:?} is not a public key or key id"))
        })
        .transpose()
}

fn rejected(e: bundles::BundleError) -> anyhow::Error {
    anyhow::anyhow!("bundle rejected, nothing imported: {e}")
}

/// Imports a verified bundle read from `dir`, through the store of the node running in this
/// process when there is one.
fn import_checked(
    home: &Home,
    bundle: &VerifiedDir,
    dir: &Path,
    now: u64,
    dry_run: bool,
) -> Result<ImportReport> {
    let node_store = crate::running::get().map(|node| node.store().clone());
    bundles::import(
        home,
        node_store.as_deref(),
        bundle,
        &dir.display().to_string(),
        now,
        dry_run,
    )
    .map_err(rejected)
}

pub fn import(home: &Home, dir: &Path, expect_key: Option<&str>, dry_run: bool) -> Result<Output> {
    let expected = parse_expected(expect_key)?;
    if !home.is_initialized() {
        return Err(store::StoreError::NotInitialized(home.root().to_path_buf()).into());
    }
    // Everything about the bundle is checked before the store is opened for writing.
    let now = time::now_ms();
    let own = home.load_key()?.public();
    // The first pass: the whole bundle verified, its files read one at a time.
    let bundle = bundles::verify(dir, expected.as_ref(), Some(&own), now).map_err(rejected)?;
    // The app's snapshot, signed with this instance's own key (the app beside wb, one home):
    // its rows are adopted as the instance's own signed records (§14), not stored unsigned.
    if bundle.app_snapshot {
        let bundle = bundles::verify_dir(dir, expected.as_ref()).map_err(rejected)?;
        let opts = store::app::AdoptOptions {
            allow_contact: false,
            now_ms: now,
            dry_run,
        };
        return crate::app_cmd::adopt_bundle(home, bundle, dir, &opts);
    }
    let report = import_checked(home, &bundle, dir, now, dry_run)?;
    Ok(Output::new(
        import_text(&report, dir),
        serde_json::to_value(&report)?,
    ))
}

pub fn init_from(
    home: &Home,
    dir: &Path,
    name: Option<&str>,
    peer_name: Option<&str>,
) -> Result<Output> {
    // Everything is checked before the home is touched: a bad bundle creates nothing.
    let now = time::now_ms();
    let bundle = bundles::verify(dir, None, None, now).map_err(|e| {
        anyhow::anyhow!(
            "cannot bootstrap from {}: {e}; nothing was created",
            dir.display()
        )
    })?;
    let peer_name = peer_name
        .map(str::to_string)
        .unwrap_or_else(|| bundle.signer.key_id());
    if !protocol::peers::valid_peer_name(&peer_name) {
        bail!("peer name {peer_name:?} must be 1-64 letters, digits, '.', '_' or '-'");
    }
    let peers = if home.is_initialized() {
        store::load_peers(home)?
    } else {
        Vec::new()
    };
    let known = store::peer_by_key(&peers, &bundle.signer).cloned();
    if known.is_none()
        && let Some(other) = store::find_peer(&peers, &peer_name)
    {
        bail!(
            "peer name {peer_name} is taken by key id {}; choose another with --peer-name",
            other.public_key.key_id()
        );
    }

    let init_out = init(home, name)?;
    let own_key = home.load_key()?.public();
    let report = import_checked(home, &bundle, dir, now, false)?;
    let registered = if bundle.signer == own_key {
        "the bundle is this instance's own export; no peer registered".to_string()
    } else if let Some(peer) = known {
        format!("the signer is already known as peer {}", peer.name)
    } else {
        store::add_peer(
            home,
            Peer {
                name: peer_name.clone(),
                public_key: bundle.signer,
                addrs: Vec::new(),
                hub: false,
                trusted: false,
                revoked: false,
                follow_revocations: false,
                notes: format!("bootstrap bundle {}", dir.display()).replace('\n', " "),
            },
        )?;
        format!(
            "registered the signer as peer {peer_name} (not trusted; `wb sync peers trust {peer_name}` to trust it)"
        )
    };
    let text = format!(
        "{}\n{}\n{registered}",
        init_out.text,
        import_text(&report, dir)
    );
    let j = json!({
        "identity": init_out.json,
        "import": serde_json::to_value(&report)?,
        "peer": registered,
    });
    Ok(Output::new(text, j))
}

pub fn status(home: &Home) -> Result<Output> {
    let inst = open(home)?;
    let status = inst.sync_status()?;
    let when = |ms: Option<u64>| ms.map(protocol::time::format_timestamp);
    let mut peers_json: Vec<Value> = Vec::new();
    let mut peer_lines: Vec<String> = Vec::new();
    for ps in &status.peers {
        let (p, st) = (&ps.peer, &ps.state);
        let (digests_json, digests_line) = digest_state(ps.digests.as_ref());
        peers_json.push(json!({
            "name": p.name,
            "key_id": p.public_key.key_id(),
            "trusted": p.trusted,
            "revoked": p.revoked,
            "last_sync": when(st.last_sync_ms),
            "last_error": st
                .last_error
                .as_deref()
                .map(|e| protocol::text::bounded_text(e, protocol::text::STORED_ERROR_MAX_CHARS)),
            "last_error_at": when(st.last_error_ms),
            "received": st.received,
            "sent": st.sent,
            "behind": ps.behind,
            "digests": digests_json,
        }));
        let flags = [
            p.trusted.then_some("trusted"),
            p.revoked.then_some("revoked"),
            p.hub.then_some("hub"),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(", ");
        let mut line = format!(
            "  {} ({}){}: last sync {}, received {}, sent {}, behind {}",
            p.name,
            p.public_key.key_id(),
            if flags.is_empty() {
                String::new()
            } else {
                format!(" {flags}")
            },
            when(st.last_sync_ms).unwrap_or_else(|| "never".into()),
            st.received,
            st.sent,
            ps.behind
                .map_or_else(|| "unknown".into(), |b| b.to_string()),
        );
        if let Some(e) = &st.last_error {
            // Stored by older versions unbounded: made safe again for the terminal.
            line.push_str(&format!(
                "; last error: {}",
                protocol::text::bounded_text(e, protocol::text::STORED_ERROR_MAX_CHARS)
            ));
        }
        peer_lines.push(line);
        peer_lines.push(format!("    digests: {digests_line}"));
    }
    let j = json!({
        "peers": peers_json,
        "records": {
            "private": status.private,
            "trusted": status.trusted,
            "public": status.public,
        },
        "records_from_others": status.from_others,
        "outbox": status.outbox,
        "private_filtered": status.private_filtered,
        "conflicts": status.conflicts,
        "imports": status.imports,
        "counters": status.counters,
    });
    let registry: Vec<Peer> = status.peers.iter().map(|ps| ps.peer.clone()).collect();
    let (revocations, revocation_lines) =
        crate::peers_cmd::revocations_status(inst.store(), &registry, &inst.public())?;
    let (successions, succession_lines) =
        crate::succession_view::status(inst.store(), &registry, &inst.public())?;
    let mut j = j;
    j["revocations"] = revocations;
    j["successions"] = successions;
    let mut text = format!(
        "records: {} public, {} trusted, {} private ({} from other instances)\nconflicts: {}\npeers: {}",
        status.public,
        status.trusted,
        status.private,
        status.from_others,
        status.conflicts,
        if status.peers.is_empty() {
            "none".to_string()
        } else {
            status.peers.len().to_string()
        },
    );
    for line in &peer_lines {
        text.push('\n');
        text.push_str(line);
    }
    text.push_str(&format!(
        "\noutbox: {} shareable changes in the log; {} private records never leave",
        status.outbox, status.private_filtered
    ));
    for line in revocation_lines.iter().chain(&succession_lines) {
        text.push('\n');
        text.push_str(line);
    }
    if status.imports.is_empty() {
        text.push_str("\nimported bundles: none");
    } else {
        text.push_str("\nlast imported bundles:");
        for b in status.imports.iter().take(5) {
            text.push_str(&format!(
                "\n  {} from {} signed by {} ({} files): {} new, {} updated, {} unchanged, {} stale, {} conflicts",
                protocol::time::format_timestamp(b.imported_at_ms),
                b.dir,
                b.signer_key_id,
                b.files,
                b.report.new,
                b.report.updated,
                b.report.unchanged,
                b.report.stale,
                b.report.conflicts
            ));
        }
    }
    Ok(Output::new(text, j))
}

/// The last comparison of state digests with a peer, as JSON (`null`: never compared) and as
/// the text of its `digests:` line.
pub(crate) fn digest_state(digests: Option<&DigestStatus>) -> (Value, String) {
    let Some(d) = digests else {
        return (Value::Null, "never compared".into());
    };
    let at = protocol::time::format_timestamp(d.compared_at_ms);
    let differences: Vec<Value> = d
        .differences
        .iter()
        .map(|x| {
            json!({
                "origin": x.origin_key_id,
                "origin_name": x.origin.label(),
                "class": x.class,
                "direction": x.direction,
                "offered": x.offered,
                "held": x.held,
            })
        })
        .collect();
    let j = json!({
        "state": d.state.as_str(),
        "compared_at": at,
        "changed_here": d.changed_here,
        "complete": d.complete,
        "differences_total": d.differences_total,
        "differences": differences,
        "not_taken_by_hub": d.not_taken,
    });
    let mut text = match d.state {
        DigestState::InSync => format!("in sync (compared {at})"),
        DigestState::ChangedHere => format!("in sync at {at}; changed here since"),
        DigestState::Incomplete => format!("not compared in full at {at} (too many origins)"),
        DigestState::Differs => format!(
            "differ at {at}{}:",
            if d.changed_here {
                ", changed here since"
            } else {
                ""
            }
        ),
    };
    for x in d.differences.iter().take(10) {
        let (offered, held) = if x.direction == "incoming" {
            ("it offers", "held here")
        } else {
            ("offered here", "it holds")
        };
        text.push_str(&format!(
            " {} ({}) {}: {offered} {}, {held} {};",
            x.origin_key_id,
            x.origin.label(),
            x.class,
            x.offered,
            x.held
        ));
    }
    if d.differences_total > 10 {
        text.push_str(&format!(" … {} in all", d.differences_total));
    }
    let mut text = text.trim_end_matches(';').to_string();
    if d.not_taken > 0 {
        text.push_str(&format!(
            "; {} origin{} not compared (the hub does not take {})",
            d.not_taken,
            if d.not_taken == 1 { "" } else { "s" },
            if d.not_taken == 1 { "it" } else { "them" },
        ));
    }
    (j, text)
}

pub fn conflicts(home: &Home) -> Result<Output> {
    let inst = open(home)?;
    let list = inst.store().conflicts()?;
    let mut text = String::new();
    for c in &list {
        let origin = protocol::PublicKey::parse(&c.origin)
            .map(|k| k.key_id())
            .unwrap_or_else(|_| c.origin.clone());
        text.push_str(&format!(
            "{} {} {} from {origin}: version {} had two contents; kept {}…, dropped {}… (via {}, {})\n",
            protocol::time::format_timestamp(c.at_ms),
            c.entity,
            c.id,
            c.version,
            &c.winner_hash[..12.min(c.winner_hash.len())],
            &c.loser_hash[..12.min(c.loser_hash.len())],
            c.source,
            "larger content hash wins",
        ));
    }
    if list.is_empty() {
        text.push_str("no conflicts");
    }
    Ok(Output::new(
        text.trim_end().to_string(),
        serde_json::to_value(&list)?,
    ))
}
