//! Importing a verified bundle (§8): the second pass, applied in one transaction with its
//! provenance, all or nothing.

use std::collections::BTreeMap;

use protocol::Record;
use protocol::bundle::MANIFEST_FILE;
use serde::Serialize;

use crate::db::{ApplyReport, CheckedBatch, Provenance, Store};
use crate::home::Home;

use super::verify::{PASS_BATCH_RECORDS, Pass, Signed, for_each_file};
use super::*;

/// What an import did (or, with `dry_run`, would do).
#[derive(Clone, Debug, Default, Serialize)]
pub struct ImportReport {
    pub new: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub stale: u64,
    pub conflicts: u64,
    pub rejected: u64,
    /// Records of origins this instance's registry revokes: not imported (also counted in
    /// `rejected`).
    pub revoked_origin: u64,
    pub already_imported: bool,
    pub dry_run: bool,
    pub signer: String,
    pub signer_key_id: String,
    pub manifest_digest: String,
    pub files: u64,
    pub records: BTreeMap<String, u64>,
    /// Registry entries moved to a new key by a succession the bundle brought
    /// (`protocol::succession`): `name: old key id -> new key id`.
    pub peers_moved: Vec<String>,
}

/// Imports a bundle that passed [`verify`] into the home's store: the second pass reads every
/// file again, re-checks its SHA-256 against the manifest (itself re-hashed against the signed
/// digest), and applies the records a batch at a time, all in one transaction with the
/// bundle's provenance, committed only once the whole bundle was read unchanged: a file changed
/// since the first pass ([`BundleError::ChangedDuringImport`]) or any error leaves the store
/// as it was. A bundle imported before, and a dry run, only read the store (opened read-only,
/// so its file stays byte-for-byte the same). `open`: the home's store when it is already open
/// (a running node holds it); `None` opens it here.
///
/// Revocation (the home's registry, read here): a bundle signed by a revoked key is refused
/// ([`BundleError::RevokedSigner`]); records of other revoked origins that a bundle relays are
/// skipped and counted (`revoked_origin`, and in `rejected`), the rest is imported.
pub fn import(
    home: &Home,
    open: Option<&Store>,
    bundle: &VerifiedDir,
    dir_label: &str,
    now_ms: u64,
    dry_run: bool,
) -> Result<ImportReport> {
    import_with(home, open, bundle, dir_label, now_ms, dry_run, &mut || {})
}

/// [`import`], calling `between_passes` once the store is open, before the second pass reads
/// the bundle again. Test hook: a test changes a file there to see the import refused.
#[doc(hidden)]
pub fn import_with(
    home: &Home,
    open: Option<&Store>,
    bundle: &VerifiedDir,
    dir_label: &str,
    now_ms: u64,
    dry_run: bool,
    between_passes: &mut dyn FnMut(),
) -> Result<ImportReport> {
    if bundle.app_snapshot {
        return Err(BundleError::BadRecord {
            path: MANIFEST_FILE.into(),
            reason: "the app's snapshot is adopted (`wb app import`), not imported".into(),
        });
    }
    let mut out = ImportReport {
        dry_run,
        signer: bundle.signer.to_base64(),
        signer_key_id: bundle.signer.key_id(),
        manifest_digest: bundle.manifest_digest.clone(),
        files: bundle.files,
        records: bundle.entities.clone(),
        ..Default::default()
    };
    let revoked = crate::revocations::revoked_keys_for_import(home, open)?;
    if revoked.contains(&bundle.signer) {
        return Err(BundleError::RevokedSigner {
            key_id: bundle.signer.key_id(),
        });
    }
    let signed = Signed {
        root: bundle.root.clone(),
        signature: bundle.signature.clone(),
        listed: protocol::bundle::ListedPaths::default(),
    };
    // The second pass: each batch of records, exactly as the first pass checked them, without
    // the revoked origins' records. Files are read, hashed and parsed on a helper thread while
    // this one applies the batch before (one batch in flight): the store's writes and the
    // parsing share the cores.
    let mut revoked_origin = 0u64;
    let mut second_pass = |sink: &mut dyn FnMut(&CheckedBatch) -> Result<()>| -> Result<()> {
        let (batches, received) = std::sync::mpsc::sync_channel::<CheckedBatch>(1);
        let (signed, revoked) = (&signed, &revoked);
        std::thread::scope(|scope| {
            let reader = scope.spawn(move || -> Result<u64> {
                let mut skipped = 0u64;
                let mut pending: Vec<Record> = Vec::new();
                let mut flush = |pending: &mut Vec<Record>| -> Result<()> {
                    let mut batch = CheckedBatch::checked_earlier(std::mem::take(pending));
                    skipped += batch.retain(|r| !revoked.contains(&r.origin)) as u64;
                    // Refused only once the applying side stopped, on an error it reports.
                    batches.send(batch).map_err(|_| BundleError::Read {
                        path: MANIFEST_FILE.into(),
                        source: std::io::Error::other("the import stopped"),
                    })
                };
                for_each_file(signed, Pass::Apply, &mut |_, records| {
                    pending.extend(records);
                    if pending.len() >= PASS_BATCH_RECORDS {
                        flush(&mut pending)?;
                    }
                    Ok(())
                })?;
                flush(&mut pending)?;
                Ok(skipped)
            });
            let mut failed = None;
            for batch in received.iter() {
                if let Err(e) = sink(&batch) {
                    failed = Some(e);
                    break;
                }
            }
            drop(received);
            let read = reader
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            match failed {
                Some(e) => Err(e),
                None => {
                    revoked_origin = read?;
                    Ok(())
                }
            }
        })
    };
    let planned = {
        let read_only;
        let store = match open {
            Some(store) => store,
            None => {
                read_only = home.open_read_only()?.1;
                &read_only
            }
        };
        if store.imported_bundle(&bundle.manifest_digest)?.is_some() {
            out.already_imported = true;
            return Ok(out);
        }
        if dry_run {
            between_passes();
            let mut planning = store.begin_plan()?;
            second_pass(&mut |batch| Ok(planning.plan(batch)?))?;
            Some(planning.report)
        } else {
            None
        }
    };
    let report = if let Some(planned) = planned {
        planned
    } else {
        let writable;
        let store = match open {
            Some(store) => store,
            None => {
                writable = home.open()?.1;
                &writable
            }
        };
        let mut opts = apply_options(&bundle.signer, bundle.now_ms);
        opts.provenance = Some(Provenance {
            manifest_digest: bundle.manifest_digest.clone(),
            signer: bundle.signer.to_base64(),
            signer_key_id: bundle.signer.key_id(),
            signed_at: bundle.signed_at.clone(),
            imported_at_ms: now_ms,
            dir: dir_label.to_string(),
            files: bundle.files,
            report: ApplyReport::default(),
        });
        let mut applying = store.begin_apply(&opts)?;
        between_passes();
        second_pass(&mut |batch| Ok(applying.apply(batch)?))?;
        let report = applying.commit()?;
        // A succession the bundle brought moves its peer's registry entry to the new key.
        if let Some(own) = store.instance_key()? {
            let settled = crate::successions::settle(home, store, &own, &[])?;
            out.peers_moved = settled
                .plan
                .moves
                .iter()
                .map(|m| format!("{}: {} -> {}", m.name, m.from.key_id(), m.to.key_id()))
                .collect();
        }
        report
    };
    out.revoked_origin = revoked_origin;
    out.new = report.new;
    out.updated = report.updated;
    out.unchanged = report.unchanged;
    out.stale = report.stale;
    out.conflicts = report.conflicts;
    out.rejected = report.rejected + out.revoked_origin;
    Ok(out)
}
