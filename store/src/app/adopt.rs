//! Adoption (§14, outbound): the app's latest snapshot becomes the instance's own records.
//!
//! Each row the app wrote itself becomes a local record through [`LocalBatch::update`] — signed
//! by the instance, versioned by its clock, a new version only when the content changed (so the
//! app's `Updated-At` quirks do not matter). Comments inside request bodies become comment
//! records; one under a request `wb app export` handed the app references that request as
//! `<origin>/<id>`. Rows the inbox handed the app (negative ids) are not ours and are skipped. A
//! record adopted earlier and missing from this snapshot is deleted (a signed withdrawal reaches
//! peers); records made with `wb record put` are never touched. One transaction: all or nothing.
//!
//! The snapshot is read a file at a time, twice (verified, then adopted with each file checked
//! against its manifest hash again), and never held: what grows with its size is 20 bytes per
//! row (a 128-bit hash of its key, the file it came from), and the keys of the records it
//! deletes.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use protocol::{Entity, Record, RecordKey, Scope, SecretKey};
use serde::{Deserialize, Serialize};

use super::{Adopted, AppError, MapTables, STATE_SNAPSHOT, SnapshotState, app_int, bump_entity};
use crate::LocalBatch;
use crate::bundles::{self, VerifiedBundle};
use crate::db::{Draft, ListFilter, LocalChange, Store};

/// How to adopt.
#[derive(Clone, Debug)]
pub struct AdoptOptions {
    /// Keep `Contact-*` fields (dropped by default: contact data is private, §4).
    pub allow_contact: bool,
    pub now_ms: u64,
    /// Work out what would change, then discard it.
    pub dry_run: bool,
}

/// What an adoption did (or, with `dry_run`, would do).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdoptReport {
    pub dir: String,
    pub manifest_digest: String,
    pub signed_at: String,
    /// This very snapshot was adopted before: nothing changed.
    pub already_adopted: bool,
    pub dry_run: bool,
    /// Rows of the app's own, per entity (comments included).
    pub records: BTreeMap<String, u64>,
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    /// Adopted earlier, missing now: deleted (peers are told).
    pub deleted: u64,
    /// Records taken from an app bundle before adoption existed, now signed (counted in
    /// `updated` too).
    pub signed_now: u64,
    /// Local records made with `wb record put` under the same id: left as they are.
    pub kept_local: u64,
    /// Rows `wb app export` handed the app (other instances' records): not adopted.
    pub foreign_skipped: u64,
    /// Comments the app's users wrote under other instances' requests.
    pub comments_on_foreign: u64,
    /// Rows with a negative id wb never handed out (or references to them): skipped.
    pub unknown_foreign: u64,
    /// Non-empty `Contact-*` values dropped (see `--allow-contact`).
    pub contact_dropped: u64,
}

impl AdoptReport {
    /// Whether the store changed.
    pub fn changed(&self) -> bool {
        !self.dry_run && self.created + self.updated + self.deleted > 0
    }
}

/// One row to adopt.
struct Row {
    path: String,
    entity: Entity,
    id: String,
    scope: Scope,
    fields: Vec<(String, String)>,
    body: String,
}

/// Verifies the snapshot in `dir` (§8 order) and adopts it.
pub fn adopt_dir(
    store: &Store,
    key: &SecretKey,
    dir: &Path,
    opts: &AdoptOptions,
) -> Result<AdoptReport, AppError> {
    let bundle = bundles::verify_dir(dir, None)?;
    adopt(store, key, bundle, &dir.display().to_string(), opts)
}

/// Adopts a verified snapshot. Refused (nothing changed) when another key signed it, when it is
/// an inbox wb wrote, when it is older than the snapshot adopted last, or when it holds files
/// wb wrote.
pub fn adopt(
    store: &Store,
    key: &SecretKey,
    bundle: VerifiedBundle,
    dir: &str,
    opts: &AdoptOptions,
) -> Result<AdoptReport, AppError> {
    let own = key.public();
    if let Some(report) = precheck(store, &own, &bundle, dir)? {
        return Ok(report);
    }
    let mut report = AdoptReport {
        dir: dir.to_string(),
        manifest_digest: bundle.manifest_digest.clone(),
        signed_at: bundle.signed_at.clone(),
        dry_run: opts.dry_run,
        ..AdoptReport::default()
    };
    // Records taken from app bundles before adoption existed: app rows, unsigned (few: only
    // their keys are kept).
    let mut unsigned: Vec<RecordKey> = Vec::new();
    let ours = ListFilter {
        origin: Some(own),
        include_deleted: true,
        ..ListFilter::default()
    };
    store.each_listed::<AppError>(&ours, |r| {
        if r.signature.is_none() {
            unsigned.push(r.key());
        }
        Ok(())
    })?;

    store.local_batch(key, |batch| -> Result<AdoptReport, AppError> {
        // `Contact-*` values reach the rows only with --allow-contact (see `app_row`).
        batch.allow_contact(opts.allow_contact);
        let tx = batch.tx();
        let maps = MapTables::open(batch.store(), tx)?;
        // Checked again inside the transaction: a node may have adopted meanwhile.
        let last = maps.state_json::<SnapshotState>(STATE_SNAPSHOT)?;
        if let Some(done) = verdict(
            &bundle,
            dir,
            maps.is_inbox_digest(&bundle.manifest_digest)?,
            last,
        )? {
            return Ok(done);
        }
        let mut adopted = Adopted::open(batch.store(), tx)?;
        // Each row's key (hashed) and the file it came from: repeats are refused.
        let mut seen: HashMap<[u8; 16], u32> = HashMap::new();
        let mut failed: Option<AppError> = None;
        let mut file: u32 = 0;
        let read = bundle.for_each_file(&mut |path, records| {
            let done = (|| -> Result<(), AppError> {
                for r in &records {
                    if r.signature.is_some() {
                        return Err(AppError::NotAppWritten {
                            path: path.to_string(),
                        });
                    }
                    let Some(row) = app_row(path, r, &maps, opts, &mut report)? else {
                        continue;
                    };
                    let record_key = RecordKey {
                        origin: own,
                        entity: row.entity.clone(),
                        id: row.id.clone(),
                    };
                    if let Some(first) = seen.insert(key_hash(&record_key), file) {
                        return Err(AppError::Duplicate {
                            path: path.to_string(),
                            first: bundle
                                .listed_path(u64::from(first))?
                                .unwrap_or_else(|| format!("file #{first}")),
                            entity: row.entity.to_string(),
                            id: row.id,
                        });
                    }
                    bump_entity(&mut report.records, &row.entity);
                    adopt_row(batch, &mut adopted, &record_key, row, opts, &mut report)?;
                }
                Ok(())
            })();
            file = file.saturating_add(1);
            done.map_err(|e| {
                failed = Some(e);
                // Stands for the error kept in `failed`, returned below.
                bundles::BundleError::BadRecord {
                    path: path.to_string(),
                    reason: "adoption stopped".into(),
                }
            })
        });
        if let Err(e) = read {
            return Err(failed.take().unwrap_or(AppError::Bundle(e)));
        }
        // Rows adopted before (or taken unsigned from an app bundle) that the app no longer
        // exports: deleted, so peers withdraw them.
        let mut gone: Vec<RecordKey> = adopted
            .keys_where(|k| !seen.contains_key(&key_hash(k)))?
            .into_iter()
            .chain(
                unsigned
                    .into_iter()
                    .filter(|k| !seen.contains_key(&key_hash(k))),
            )
            .collect();
        gone.sort();
        gone.dedup();
        for gone in &gone {
            if batch.get(&gone.entity, &gone.id)?.is_none() {
                continue;
            }
            let deleted = batch.update(gone.entity.clone(), &gone.id, opts.now_ms, |cur| {
                Ok::<_, AppError>(match cur {
                    Some(c) if !c.deleted => Draft {
                        scope: c.scope,
                        deleted: true,
                        ..Draft::default()
                    },
                    Some(c) => Draft::from_record(c),
                    None => Draft::default(),
                })
            })?;
            if let LocalChange::Updated { previous, .. } = deleted
                && !previous.deleted
            {
                report.deleted += 1;
            }
            adopted.insert(gone)?;
        }
        let mut maps = maps;
        maps.set_state_json(
            STATE_SNAPSHOT,
            &SnapshotState {
                dir: dir.to_string(),
                manifest_digest: bundle.manifest_digest.clone(),
                signed_at: bundle.signed_at.clone(),
                adopted_at_ms: opts.now_ms,
                report: report.clone(),
            },
        )?;
        if opts.dry_run {
            batch.discard();
        }
        Ok(report.clone())
    })
}

/// 128 bits of SHA-256 of a record key: what adoption remembers of each row.
fn key_hash(key: &RecordKey) -> [u8; 16] {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(crate::db::key_bytes(key));
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

/// Writes one row as the instance's own record, unless a record made with `wb record put`
/// holds its key.
fn adopt_row(
    batch: &mut LocalBatch<'_>,
    adopted: &mut Adopted<'_>,
    record_key: &RecordKey,
    row: Row,
    opts: &AdoptOptions,
    report: &mut AdoptReport,
) -> Result<(), AppError> {
    let is_managed = adopted.contains(record_key)?;
    let current = batch.get(&row.entity, &row.id)?;
    if let Some(c) = &current
        && c.signature.is_some()
        && !is_managed
    {
        report.kept_local += 1;
        return Ok(());
    }
    let unsigned_before = current.as_ref().is_some_and(|c| c.signature.is_none());
    let change = batch.update(row.entity.clone(), &row.id, opts.now_ms, |cur| {
        // Adopted records keep a scope the operator narrowed in wb.
        let scope = match cur {
            Some(c) if !c.deleted => c.scope.min(row.scope),
            _ => row.scope,
        };
        Ok::<_, AppError>(Draft {
            scope,
            deleted: false,
            fields: row.fields,
            body: row.body,
        })
    });
    let change = change.map_err(|e| match e {
        AppError::Store(source) => AppError::Bundle(bundles::BundleError::BadRecord {
            path: row.path.clone(),
            reason: source.to_string(),
        }),
        other => other,
    })?;
    match change {
        LocalChange::Created(_) => report.created += 1,
        LocalChange::Updated { .. } => {
            report.updated += 1;
            report.signed_now += u64::from(unsigned_before);
        }
        LocalChange::Unchanged(_) => report.unchanged += 1,
    }
    adopted.insert(record_key)?;
    Ok(())
}

/// The checks that need no write: the signer, whether the snapshot is an inbox wb wrote, or the
/// snapshot adopted last, or older than it. `Some`: adopted before, nothing to do. Callers that
/// must leave the store file untouched on a refusal run this on a read-only store first.
pub fn precheck(
    store: &Store,
    own: &protocol::PublicKey,
    bundle: &VerifiedBundle,
    dir: &str,
) -> Result<Option<AdoptReport>, AppError> {
    if bundle.signer != *own {
        return Err(AppError::ForeignSigner {
            dir: dir.to_string(),
            signer: bundle.signer.key_id(),
            own: own.key_id(),
        });
    }
    let (is_inbox, last) = store.app_snapshot_state(&bundle.manifest_digest)?;
    verdict(bundle, dir, is_inbox, last)
}

fn verdict(
    bundle: &VerifiedBundle,
    dir: &str,
    is_inbox: bool,
    last: Option<SnapshotState>,
) -> Result<Option<AdoptReport>, AppError> {
    if is_inbox {
        return Err(AppError::OwnInbox {
            dir: dir.to_string(),
        });
    }
    let Some(last) = last else { return Ok(None) };
    if last.manifest_digest == bundle.manifest_digest {
        return Ok(Some(AdoptReport {
            dir: dir.to_string(),
            manifest_digest: bundle.manifest_digest.clone(),
            signed_at: bundle.signed_at.clone(),
            already_adopted: true,
            ..AdoptReport::default()
        }));
    }
    let when = |s: &str| protocol::time::parse_timestamp(s);
    if let (Some(new), Some(old)) = (when(&bundle.signed_at), when(&last.signed_at))
        && new < old
    {
        return Err(AppError::OlderSnapshot {
            dir: dir.to_string(),
            signed_at: bundle.signed_at.clone(),
            last: last.signed_at,
        });
    }
    Ok(None)
}

/// What a negative (inbox-handed) id in a reference stands for.
enum Handed {
    /// Not a handed-out id: the app's own, kept as written.
    Own,
    /// A foreign record: its `<origin hex>/<id>` reference.
    Foreign(String),
    /// Negative, but never handed out by this instance.
    Unknown,
}

fn handed(maps: &MapTables<'_>, value: &str, entity: Entity) -> Result<Handed, AppError> {
    match app_int(value) {
        Some(n) if n <= 0 => Ok(match maps.unmapped(n)? {
            Some(k) if k.entity == entity => {
                Handed::Foreign(format!("{}/{}", k.origin.to_hex(), k.id))
            }
            _ => Handed::Unknown,
        }),
        _ => Ok(Handed::Own),
    }
}

fn app_row(
    path: &str,
    r: &Record,
    maps: &MapTables<'_>,
    opts: &AdoptOptions,
    report: &mut AdoptReport,
) -> Result<Option<Row>, AppError> {
    // Integer ids at or below zero are the inbox's (the app's own rows count up from 1);
    // invites are keyed by token and never handed to the app.
    let handed_row = r.entity != Entity::Invite && app_int(&r.id).is_some_and(|n| n <= 0);
    if handed_row {
        report.foreign_skipped += 1;
        return Ok(None);
    }
    let mut fields = Vec::with_capacity(r.fields.len());
    for (name, value) in &r.fields {
        if name.to_ascii_lowercase().starts_with("contact-") {
            if value.trim().is_empty() {
                continue;
            }
            if !opts.allow_contact {
                report.contact_dropped += 1;
                continue;
            }
        }
        let reference = match (r.entity.clone(), name.as_str()) {
            (Entity::Comment, "Request") => Some(Entity::Request),
            (Entity::Comment, "User-ID")
            | (Entity::Request | Entity::Invite, "Created-By")
            | (Entity::User, "Invited-By") => Some(Entity::User),
            _ => None,
        };
        let value = match reference {
            None => value.clone(),
            Some(entity) => match handed(maps, value, entity.clone())? {
                Handed::Own => value.clone(),
                Handed::Foreign(reference) => {
                    if entity == Entity::Request {
                        report.comments_on_foreign += 1;
                    }
                    reference
                }
                Handed::Unknown => {
                    report.unknown_foreign += 1;
                    return Ok(None);
                }
            },
        };
        fields.push((name.clone(), value));
    }
    Ok(Some(Row {
        path: path.to_string(),
        entity: r.entity.clone(),
        id: r.id.clone(),
        scope: r.scope,
        fields,
        body: r.body.clone(),
    }))
}
