//! Exporting a store's shareable records as a signed bundle directory (§8), streamed: records
//! are written as they are decoded, comments rendered into their requests' bodies.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::Path;

use protocol::sync_txt::{self, RecordFileOptions};
use protocol::{Audience, CodecError, Entity, PublicKey, Record, RecordKey, Scope, SecretKey};
use serde::Serialize;

use crate::db::Store;
use crate::leaving::{Rule, Withheld};

use super::spill::Spill;
use super::*;

/// Which records an export takes.
#[derive(Clone, Debug)]
pub struct ExportOptions {
    /// Include `trusted` records too: an export made for one trusted peer.
    pub include_trusted: bool,
    /// `Signed-At` of the bundle.
    pub now_ms: u64,
}

/// What an export wrote.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ExportReport {
    pub dir: String,
    /// Every file of the bundle: record files, manifest, bundle.sig, public key file.
    pub files: u64,
    /// Record files per entity.
    pub records: BTreeMap<String, u64>,
    /// Record files whose bytes changed (or are new) since the previous export.
    pub written: u64,
    /// Files of a previous export that are no longer part of the bundle, removed.
    pub removed: u64,
    pub bytes: u64,
    pub skipped_private: u64,
    /// Trusted records left out because the export is not for a trusted peer.
    pub skipped_trusted: u64,
    pub skipped_draft: u64,
    /// Comments left out because their request is not exported (private or draft).
    pub skipped_hidden_parent: u64,
    /// Our records holding `Contact-*` values that were not allowed to leave (`--allow-contact`).
    pub skipped_contact: u64,
    /// Records without their origin's signature (taken from app bundles): they cannot be
    /// verified by anyone else, so they are not passed on.
    pub skipped_unsigned: u64,
    /// Records that may no longer go out, exported as their signed withdrawal instead.
    pub withdrawals: u64,
    /// Comments not rendered into their request's body because the request's file would exceed
    /// the size limit (each still has its own file in the bundle).
    pub comments_left_out_of_bodies: u64,
}

/// Bundle-relative path of a record's file. When the export holds records of one origin only,
/// names are plain (`users/user_1.sync.txt`, as the app writes them); when it holds several,
/// records of origins other than the signer get their origin's key id in the name (§8).
fn record_path(r: &Record, signer: &PublicKey, several_origins: bool) -> String {
    let key_id = (several_origins && r.origin != *signer).then(|| r.origin.key_id());
    sync_txt::safe_file_name(&r.entity, &r.id, key_id.as_deref())
}

/// Exports the store's shareable records into `dir` (created if needed). `progress` is called
/// with (records handled so far, records in the store) as the export goes.
///
/// A `dir` that holds bundle files must hold this instance's previous export and nothing else
/// of the kind (`check_export_dir`); otherwise the export is refused with
/// [`BundleError::NotOurExport`] before anything is written. A re-export replaces that export's
/// files and removes those no longer part of it; nothing else in `dir` is touched.
///
/// The store is read as a stream, never listed whole, and no record is kept: first its
/// comments (those rendered into request bodies are sorted on disk by request, [`Spill`]),
/// then every other record, whose file is written as soon as it is decoded, each request
/// taking its comments from the sorted ones; comment files go last, read from the store again.
/// The manifest's lines are sorted on disk too, and the manifest is signed as it is read back
/// ([`write_signed`]): memory does not grow with the store.
pub fn export(
    store: &Store,
    key: &SecretKey,
    dir: &Path,
    opts: &ExportOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<ExportReport> {
    let existing = check_export_dir(dir, &key.public(), &store.former_keys()?, None)?;
    let mut out = Export {
        store,
        local: key.public(),
        // What may leave is decided by the same rule as for sync (`leaving`);
        // `Export::choose` only counts why a record stayed home.
        rule: store.leaving_rule(
            key.public(),
            Audience {
                trusted: opts.include_trusted,
            },
        )?,
        report: ExportReport {
            dir: dir.display().to_string(),
            ..Default::default()
        },
        withheld_requests: HashSet::new(),
        origins: Origins::default(),
        deferred: Vec::new(),
        counting: true,
    };
    let total = store.record_count()?;
    let comment = Entity::Comment.as_str();

    if opts.include_trusted {
        // Trusted records are for one peer: a folder made for them is owner-only.
        crate::home::create_private_dir(dir)?;
    } else {
        fs::create_dir_all(dir).map_err(|source| BundleError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    mark_pending(dir, &key.public())?;
    // The comments rendered into request bodies, sorted on disk by request, then as the app
    // shows them: each request then takes its own as the store streams by.
    let mut rendered = Spill::new(dir, spill::run_bytes());
    store.scan(
        |entity| entity == comment,
        |r| -> Result<()> {
            let Some(c) = out.choose(r)? else {
                return Ok(());
            };
            out.origins.note(&c.origin);
            if let Some(request) = c.commented_request() {
                let group = order_key_part(&crate::db::key_bytes(&request));
                let mut key = group.clone();
                // Stable: comments equal on (Created-At, id) keep the store's order.
                match c.field("Created-At") {
                    None => key.push(0),
                    Some(at) => {
                        key.push(1);
                        key.extend_from_slice(&order_key_part(at.as_bytes()));
                    }
                }
                key.extend_from_slice(&order_key_part(c.id.as_bytes()));
                let mut value = (group.len() as u32).to_le_bytes().to_vec();
                value.extend_from_slice(&c.to_sealed_bytes());
                rendered.push(&key, &value)?;
            }
            Ok(())
        },
    )?;
    let mut rendered = RenderedComments {
        sorted: rendered.finish()?,
    };

    let mut files = RecordFiles::new(dir, existing);
    let mut done = 0u64;
    store.scan(
        |entity| entity != comment,
        |r| -> Result<()> {
            if done % 256 == 0 {
                progress(done, total);
            }
            done += 1;
            let Some(r) = out.choose(r)? else {
                return Ok(());
            };
            // A request that goes out as its withdrawal carries no comments: they stay home.
            let comments = match r.entity {
                Entity::Request => {
                    let key = r.key();
                    let of_request = rendered.of(&key)?;
                    if out.withheld_requests.contains(&key) {
                        Vec::new()
                    } else {
                        of_request
                    }
                }
                _ => Vec::new(),
            };
            let (text, left_out) = render_fitting(&r, &comments, &out.local, out.origins.several)?;
            drop(comments);
            out.report.comments_left_out_of_bodies += left_out;
            out.origins.note(&r.origin);
            if r.origin == out.local || out.origins.several {
                out.write(&mut files, &r, &text)?;
                if out.origins.several && !out.deferred.is_empty() {
                    for (r, text) in std::mem::take(&mut out.deferred) {
                        out.write(&mut files, &r, &text)?;
                    }
                }
            } else {
                // Its file name depends on whether the export holds several origins, which the
                // rest of the store decides.
                out.deferred.push((r, text));
            }
            Ok(())
        },
    )?;
    drop(rendered);

    // Whether the export holds several origins is now known.
    for (r, text) in std::mem::take(&mut out.deferred) {
        out.write(&mut files, &r, &text)?;
    }
    // Comment files last, read from the store again (chosen by the same rule: comments whose
    // request stays home stay home; counted once, above).
    out.counting = false;
    store.scan(
        |entity| entity == comment,
        |r| -> Result<()> {
            let Some(c) = out.choose(r)? else {
                return Ok(());
            };
            if done % 256 == 0 {
                progress(done.min(total), total);
            }
            done += 1;
            let text = render(&c, &[], &out.local, out.origins.several)?;
            out.write(&mut files, &c, &text)
        },
    )?;
    progress(total, total);

    let Export {
        mut report, local, ..
    } = out;
    let sealed = files.seal(&local)?;
    report.files = sealed.files;
    report.removed = sealed.removed;
    report.bytes += write_signed(dir, key, sealed.manifest, opts.now_ms)?;
    clear_pending(dir)?;
    Ok(report)
}

/// `part` in a form whose byte order is `part`'s and which no longer key extends: each NUL
/// byte doubled as NUL 0xFF, then NUL NUL. Keys made of such parts sort part by part.
fn order_key_part(part: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(part.len() + 2);
    for &b in part {
        out.push(b);
        if b == 0 {
            out.push(0xff);
        }
    }
    out.extend_from_slice(&[0, 0]);
    out
}

/// The live comments an export renders into request bodies, in request key order (the store's
/// order: [`order_key_part`] keeps it), taken request by request as the store streams by.
struct RenderedComments {
    sorted: spill::Sorted,
}

impl RenderedComments {
    /// The comments of `request`, in the app's order; those of requests before it, which did
    /// not go out, are passed over.
    fn of(&mut self, request: &RecordKey) -> Result<Vec<Record>> {
        let group = order_key_part(&crate::db::key_bytes(request));
        let mut out = Vec::new();
        while let Some(key) = self.sorted.peek_key()? {
            let Some(head) = key.get(..group.len()) else {
                // Shorter than this request's part: a request before it.
                self.sorted.next_entry()?;
                continue;
            };
            match head.cmp(group.as_slice()) {
                std::cmp::Ordering::Less => {
                    self.sorted.next_entry()?;
                }
                std::cmp::Ordering::Greater => break,
                std::cmp::Ordering::Equal => {
                    let Some((_, value)) = self.sorted.next_entry()? else {
                        break;
                    };
                    let group_len = value
                        .get(..4)
                        .and_then(|b| <[u8; 4]>::try_from(b).ok())
                        .map(|b| u32::from_le_bytes(b) as usize);
                    if group_len != Some(group.len()) {
                        // Another request whose part starts like this one's: never, as
                        // parts end in NUL NUL; passed over.
                        continue;
                    }
                    let sealed = value.get(4..).unwrap_or_default();
                    let c = Record::from_sealed_bytes(sealed).map_err(|e| BundleError::Read {
                        path: "(temporary sort file)".into(),
                        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
                    })?;
                    out.push(c);
                }
            }
        }
        Ok(out)
    }
}

/// The state of one export as the store streams by.
struct Export<'a> {
    store: &'a Store,
    local: PublicKey,
    rule: Rule,
    report: ExportReport,
    /// Requests that do not go out as themselves (withheld, or sent as their withdrawal).
    withheld_requests: HashSet<RecordKey>,
    origins: Origins,
    /// Records of other origins than ours, rendered, waiting to know their file name.
    deferred: Vec<(Record, String)>,
    /// Whether [`Export::choose`] counts what it withholds (not when it reads records again).
    counting: bool,
}

impl Export<'_> {
    /// What goes out for a stored record: itself, its signed withdrawal (a record that may not
    /// go out, but was narrowed from a scope that may, so importers of an earlier export delete
    /// their copy, §4), or nothing, counted by why.
    fn choose(&mut self, r: Record) -> Result<Option<Record>> {
        let mut lookup = self.store;
        let why = match self.rule.check(&r, &mut lookup)? {
            Ok(()) => return Ok(Some(r)),
            Err(why) => why,
        };
        if r.entity == Entity::Request {
            self.withheld_requests.insert(r.key());
        }
        if let Some(w) = self.store.withdrawal(&r.key())?
            && self.rule.check(&w, &mut lookup)?.is_ok()
        {
            if self.counting {
                self.report.withdrawals += 1;
            }
            return Ok(Some(w));
        }
        if !self.counting {
            return Ok(None);
        }
        let report = &mut self.report;
        if why == Withheld::HiddenRequest {
            report.skipped_hidden_parent += 1;
        } else if why == Withheld::Contact {
            report.skipped_contact += 1;
        } else if r.signature.is_none() {
            report.skipped_unsigned += 1;
        } else if r.is_draft() {
            report.skipped_draft += 1;
        } else if r.scope == Scope::Private {
            report.skipped_private += 1;
        } else {
            report.skipped_trusted += 1;
        }
        Ok(None)
    }

    /// Writes a record's file (its name known: see [`record_path`]) and counts it.
    fn write(&mut self, files: &mut RecordFiles<'_>, r: &Record, text: &str) -> Result<()> {
        let path = record_path(r, &self.local, self.origins.several);
        self.report.bytes += text.len() as u64;
        if files.write(path, text.as_bytes())? {
            self.report.written += 1;
        }
        match self.report.records.get_mut(r.entity.as_str()) {
            Some(count) => *count += 1,
            None => {
                self.report.records.insert(r.entity.to_string(), 1);
            }
        }
        Ok(())
    }
}

/// Whether the records that go out come from more than one origin (file names depend on it).
#[derive(Default)]
struct Origins {
    first: Option<PublicKey>,
    several: bool,
}

impl Origins {
    fn note(&mut self, origin: &PublicKey) {
        match self.first {
            None => self.first = Some(*origin),
            Some(first) => self.several |= first != *origin,
        }
    }
}

/// A record's `.sync.txt` text, with `comments` rendered into a request's body for the app.
/// `several_origins` only names the file in an error.
fn render(
    r: &Record,
    comments: &[Record],
    signer: &PublicKey,
    several_origins: bool,
) -> Result<String> {
    let options = RecordFileOptions {
        instance: None,
        comments,
    };
    sync_txt::write_record(r, &options).map_err(|source| BundleError::Codec {
        path: record_path(r, signer, several_origins),
        source,
    })
}

/// A record's text with as many of `comments` rendered into its body as fit the file size
/// limit: the app reads comments from request bodies only, but each comment keeps its own file,
/// so a flood of large comments (from any origin) leaves some out of the body instead of
/// failing the whole export. The earliest comments are kept; returns how many were left out.
fn render_fitting(
    r: &Record,
    comments: &[Record],
    signer: &PublicKey,
    several_origins: bool,
) -> Result<(String, u64)> {
    let mut kept = comments.len();
    loop {
        let attempt = comments.get(..kept).unwrap_or_default();
        match render(r, attempt, signer, several_origins) {
            Ok(text) => return Ok((text, (comments.len() - kept) as u64)),
            Err(BundleError::Codec {
                source: CodecError::TooLarge { what, .. },
                ..
            }) if kept > 0 && what == ".sync.txt file" => kept /= 2,
            Err(e) => return Err(e),
        }
    }
}
