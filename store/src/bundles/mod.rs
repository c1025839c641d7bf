//! Air-gapped bundles on disk (§8): export a store's shareable records as a signed directory of
//! `.sync.txt` files, and verify and import such a directory, all or nothing.
//!
//! The formats belong to `protocol::sync_txt` and `protocol::bundle`; this module decides which
//! records go out, walks directories, and applies what comes in through [`Store::apply_batch`].

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use protocol::bundle::{
    MANIFEST_FILE, PUBLIC_KEYS_DIR, parse_public_key_file, public_key_file_path,
    write_public_key_file,
};
use protocol::sync_txt::{self, MAX_SYNC_FILE_LEN, RecordFileOptions};
use protocol::{Audience, CodecError, Entity, PublicKey, Record, RecordKey, Scope, SecretKey};
use serde::Serialize;

use crate::db::{ApplyOptions, ApplyReport, CheckedBatch, Provenance, Store};
use crate::error::{Rejection, StoreError};
use crate::home::Home;
use crate::leaving::{Rule, Withheld};

mod files;
mod spill;

pub(crate) use files::{RecordFiles, check_export_dir, clear_pending, mark_pending, write_signed};
use files::{read_inside, walk_bundle_files};
use sha2::{Digest, Sha256};
use spill::Spill;

/// The directories record files live in; other content of a bundle directory is not ours.
pub const ENTITY_DIRS: &[&str] = &[
    "users", "requests", "comments", "invites", "vouches", "other",
];

/// Why a bundle could not be exported or imported. Import errors name the bundle-relative file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    #[error("{path}: missing (the bundle lists it or needs it)")]
    MissingFile { path: String },
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: cannot write: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Codec {
        path: String,
        #[source]
        source: CodecError,
    },
    #[error("the bundle is signed by key id {actual}, not by the expected key {expected}")]
    UnexpectedSigner { expected: String, actual: String },
    #[error("{path}: leaves the bundle directory (a symbolic link or special file)")]
    PathEscapes { path: String },
    #[error(
        "{path}: a symbolic link (a bundle holds regular files only; it would be read once per \
         link)"
    )]
    Symlink { path: String },
    #[error("the bundle's files hold more than {max} bytes (at {path}); refused before reading")]
    BundleTooLarge { path: String, max: u64 },
    #[error("{path}: checksum does not match the manifest (the file was changed after signing)")]
    DigestMismatch { path: String },
    /// The second pass of an import found a file other than the first pass verified.
    #[error(
        "{path}: changed while the bundle was being imported (after it was verified); nothing \
         was imported"
    )]
    ChangedDuringImport { path: String },
    #[error("{path}: not listed in the manifest (an unsigned file in the bundle)")]
    ExtraFile { path: String },
    #[error("{path}: {reason}")]
    BadRecord { path: String, reason: String },
    #[error("{path}: {entity} {id}: {reason}")]
    Rejected {
        path: String,
        entity: String,
        id: String,
        reason: Rejection,
    },
    /// The bundle's signer is revoked in this home's registry: nothing of it is imported.
    #[error("the bundle is signed by key id {key_id}, which this instance's registry revokes")]
    RevokedSigner { key_id: String },
    #[error("{0} is not a directory")]
    NotADirectory(PathBuf),
    /// `export` was pointed at a folder holding bundle files that are not its own previous
    /// export (the app's export, another signer's bundle, files added by hand).
    #[error(
        "{}: holds files wb did not write ({file} {why}); choose an empty folder or another \
         one — `wb sync export` never deletes or replaces files it did not write",
        dir.display()
    )]
    NotOurExport {
        dir: PathBuf,
        /// Bundle-relative, the first file found wrong.
        file: String,
        why: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

type Result<T, E = BundleError> = std::result::Result<T, E>;

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
    let existing = check_export_dir(dir, &key.public(), None)?;
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

/// Who must have signed a bundle (`--expect-key`): a key, or a key id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExpectedSigner {
    Key(PublicKey),
    KeyId(String),
}

impl ExpectedSigner {
    /// Parses any key form, or a 16-hex key id.
    pub fn parse(text: &str) -> Result<Self, protocol::ProtocolError> {
        let t = text.trim();
        if t.len() == protocol::keys::KEY_ID_LEN && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(Self::KeyId(t.to_ascii_lowercase()));
        }
        PublicKey::parse(t).map(Self::Key)
    }

    fn matches(&self, key: &PublicKey) -> bool {
        match self {
            Self::Key(k) => k == key,
            Self::KeyId(id) => *id == key.key_id(),
        }
    }

    fn label(&self) -> String {
        match self {
            Self::Key(k) => k.key_id(),
            Self::KeyId(id) => id.clone(),
        }
    }
}

/// A bundle that passed every check, its records held: what adopting the app's snapshot takes
/// (see [`verify_dir`]). A bundle to import is verified by [`verify`] instead, which holds none.
#[derive(Debug)]
pub struct VerifiedBundle {
    pub signer: PublicKey,
    pub signed_at: String,
    pub manifest_digest: String,
    pub files: u64,
    /// Each record with the bundle-relative file it came from.
    pub records: Vec<(String, Record)>,
    /// Records per entity.
    pub entities: BTreeMap<String, u64>,
}

/// Reads and verifies a bundle directory like [`verify`] (the signature over the manifest and
/// the expected signer, every listed file's checksum, no path leaving the directory, no unlisted
/// record file, each file's format and schema version) and keeps its records, whose signatures
/// are not checked here. For the app's snapshots, which are adopted, not imported. Touches no
/// store.
pub fn verify_dir(dir: &Path, expect_key: Option<&ExpectedSigner>) -> Result<VerifiedBundle> {
    let signed = verify_signed(dir, expect_key)?;
    let mut records = Vec::new();
    let mut entities: BTreeMap<String, u64> = BTreeMap::new();
    let files = for_each_file(&signed, Pass::Verify, &mut |path, parsed| {
        for r in parsed {
            *entities.entry(r.entity.to_string()).or_default() += 1;
            records.push((path.to_string(), r));
        }
        Ok(())
    })?;
    Ok(VerifiedBundle {
        signer: signed.signature.public_key,
        signed_at: signed.signature.signed_at.clone(),
        manifest_digest: hex::encode(signed.signature.manifest_digest),
        files,
        records,
        entities,
    })
}

/// Records checked (first pass) or applied (second pass) at a time: their files' records and
/// sealed bytes are what an import holds, a few MB.
const PASS_BATCH_RECORDS: usize = 2_048;

/// A bundle that passed every check of the first pass of an import ([`verify`]); its records
/// are not held: [`import`] reads them again.
#[derive(Debug)]
pub struct VerifiedDir {
    root: PathBuf,
    signature: protocol::bundle::BundleSignature,
    pub signer: PublicKey,
    pub signed_at: String,
    pub manifest_digest: String,
    pub files: u64,
    /// Records per entity.
    pub entities: BTreeMap<String, u64>,
    /// Records without a record signature (from files the app wrote), attributed to the signer.
    pub unsigned: u64,
    /// Signed by `own` (see [`verify`]) and holding unsigned records: the app's snapshot, which
    /// is adopted ([`verify_dir`], `app::adopt`), not imported; its unsigned records were not
    /// checked.
    pub app_snapshot: bool,
    /// The clock the records were checked against; the second pass applies with it.
    now_ms: u64,
}

/// The first pass of an import, in the order of §8, holding no file longer than it takes to
/// check it: `bundle.sig` and the manifest streamed through the signature check (and the
/// expected signer), no repeated or unsafe path, the signer's key file, no unlisted record
/// file; then every listed file, read in turn: inside the directory, its checksum, its format
/// and schema version, and its records checked as [`Store::apply_checked`] would (signatures on
/// all cores, entity rules, clock skew at `now_ms`) a batch at a time. A rejected record
/// rejects the bundle, naming its file. Touches no store.
///
/// `own`: this instance's key. A bundle it signed that holds unsigned records is the app's
/// snapshot ([`VerifiedDir::app_snapshot`]): its unsigned records are left to the adoption.
pub fn verify(
    dir: &Path,
    expect_key: Option<&ExpectedSigner>,
    own: Option<&PublicKey>,
    now_ms: u64,
) -> Result<VerifiedDir> {
    let signed = verify_signed(dir, expect_key)?;
    let signer = signed.signature.public_key;
    let adopting = own == Some(&signer);
    let opts = apply_options(&signer, now_ms);
    let mut entities: BTreeMap<String, u64> = BTreeMap::new();
    let mut unsigned = 0u64;
    let mut pending: Vec<(String, Record)> = Vec::new();
    let check = |pending: &mut Vec<(String, Record)>| -> Result<()> {
        let (paths, records): (Vec<String>, Vec<Record>) =
            std::mem::take(pending).into_iter().unzip();
        let batch = CheckedBatch::check(records, &opts);
        if let Some((index, key, reason)) = batch.first_rejection() {
            return Err(BundleError::Rejected {
                path: paths.get(index).cloned().unwrap_or_default(),
                entity: key.entity.to_string(),
                id: key.id,
                reason,
            });
        }
        Ok(())
    };
    let files = for_each_file(&signed, Pass::Verify, &mut |path, parsed| {
        for r in parsed {
            *entities.entry(r.entity.to_string()).or_default() += 1;
            if r.signature.is_none() {
                unsigned += 1;
                if adopting {
                    continue;
                }
            }
            pending.push((path.to_string(), r));
        }
        if pending.len() >= PASS_BATCH_RECORDS {
            check(&mut pending)?;
        }
        Ok(())
    })?;
    check(&mut pending)?;
    Ok(VerifiedDir {
        root: signed.root.clone(),
        signer,
        signed_at: signed.signature.signed_at.clone(),
        manifest_digest: hex::encode(signed.signature.manifest_digest),
        files,
        entities,
        unsigned,
        app_snapshot: adopting && unsigned > 0,
        now_ms,
        signature: signed.signature,
    })
}

/// A bundle directory whose manifest verified (see [`verify_signed`]).
struct Signed {
    root: PathBuf,
    signature: protocol::bundle::BundleSignature,
    /// What the manifest lists (the first pass looks for unlisted files; empty in the second).
    listed: protocol::bundle::ListedPaths,
}

/// The checks of a bundle before its files: the manifest against `bundle.sig` (streamed), the
/// expected signer and the signer's public key file.
fn verify_signed(dir: &Path, expect_key: Option<&ExpectedSigner>) -> Result<Signed> {
    if !dir.is_dir() {
        return Err(BundleError::NotADirectory(dir.to_path_buf()));
    }
    let root = fs::canonicalize(dir).map_err(|source| BundleError::Read {
        path: dir.display().to_string(),
        source,
    })?;
    let manifest = files::verify_manifest(&root)?;
    let signature = manifest.signature;
    let signer = signature.public_key;
    if let Some(expected) = expect_key
        && !expected.matches(&signer)
    {
        return Err(BundleError::UnexpectedSigner {
            expected: expected.label(),
            actual: signer.key_id(),
        });
    }
    // The signer's public key file is not in the manifest; it must be exactly what the app and
    // wb write for this key, so no byte of it can change unnoticed.
    let key_file = public_key_file_path(&signer);
    let key_bytes = read_inside(&root, &key_file, 64 * 1024)?;
    if key_bytes != write_public_key_file(&signer).as_bytes() {
        let reason = match parse_public_key_file(&key_bytes) {
            Ok(k) if k != signer => "holds another key than the bundle's signer".to_string(),
            Ok(_) => "not in the expected `Key-ID:`/`Public-Key:` layout".to_string(),
            Err(e) => e.to_string(),
        };
        return Err(BundleError::BadRecord {
            path: key_file,
            reason,
        });
    }
    Ok(Signed {
        root,
        signature,
        listed: manifest.listed,
    })
}

/// Which pass reads a bundle's files: what a file that does not match the manifest means.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// The first: the file was changed after signing.
    Verify,
    /// The second: the file was changed since the first pass verified it.
    Apply,
}

/// Reads every file the manifest lists, in the manifest's order, one at a time: inside the
/// directory, unchanged since signing (its SHA-256 against its manifest line), parsed (format,
/// schema version, entity rules; records of app-written files belong to the signer), handed to
/// `each` with its path. The manifest is read again as it goes, and must hash to the digest
/// `bundle.sig` signed: nothing can change between the passes unnoticed. Returns how many files
/// were read. At most [`protocol::bundle::MAX_BUNDLE_BYTES`] of files are read.
fn for_each_file(
    signed: &Signed,
    pass: Pass,
    each: &mut dyn FnMut(&str, Vec<Record>) -> Result<()>,
) -> Result<u64> {
    let signer = signed.signature.public_key;
    let changed = |path: &str| BundleError::ChangedDuringImport {
        path: path.to_string(),
    };
    let mut total: u64 = 0;
    let mut files: u64 = 0;
    // The first pass reports, as §8 orders the checks, any file that is missing, a link or
    // changed before an unlisted file, and that before any malformed record: an error of
    // the latter kind is kept while the remaining files are still read and checksummed.
    let mut deferred: Option<BundleError> = None;
    let streamed = files::stream_manifest(&signed.root, None, &mut |_, sha256, path| {
        let bytes = match read_inside(&signed.root, path, MAX_SYNC_FILE_LEN) {
            Ok(bytes) => bytes,
            Err(e) if pass == Pass::Apply => {
                return Err(match e {
                    BundleError::Read { .. } => e,
                    _ => changed(path),
                });
            }
            Err(e) => return Err(e),
        };
        files += 1;
        total += bytes.len() as u64;
        if total > protocol::bundle::MAX_BUNDLE_BYTES {
            return Err(BundleError::BundleTooLarge {
                path: path.to_string(),
                max: protocol::bundle::MAX_BUNDLE_BYTES,
            });
        }
        if <[u8; 32]>::from(Sha256::digest(&bytes)) != sha256 {
            return Err(match pass {
                Pass::Verify => BundleError::DigestMismatch {
                    path: path.to_string(),
                },
                Pass::Apply => changed(path),
            });
        }
        if deferred.is_some() {
            return Ok(());
        }
        let parsed = sync_txt::read_record(&bytes, &signer)
            .map_err(|source| BundleError::Codec {
                path: path.to_string(),
                source,
            })
            .and_then(|parsed| {
                let records: Vec<Record> = std::iter::once(parsed.record)
                    .chain(parsed.comments)
                    .collect();
                for r in &records {
                    protocol::validate(r).map_err(|e| BundleError::BadRecord {
                        path: path.to_string(),
                        reason: e.to_string(),
                    })?;
                }
                Ok(records)
            });
        drop(bytes);
        match parsed.and_then(|records| each(path, records)) {
            Err(e) if pass == Pass::Verify => {
                deferred = Some(e);
                Ok(())
            }
            other => other,
        }
    })?;
    if streamed.digest != signed.signature.manifest_digest {
        return Err(changed(MANIFEST_FILE));
    }
    if pass == Pass::Verify {
        check_unlisted(signed)?;
    }
    match deferred {
        Some(e) => Err(e),
        None => Ok(files),
    }
}

/// Refuses a bundle file the manifest does not list (the first in path order is named).
fn check_unlisted(signed: &Signed) -> Result<()> {
    let mut extra: Option<String> = None;
    let keys_dir = format!("{PUBLIC_KEYS_DIR}/");
    walk_bundle_files(&signed.root, &mut |rel| {
        let ours = rel == MANIFEST_FILE || rel.starts_with(&keys_dir);
        if !ours && !signed.listed.contains(&rel) && extra.as_ref().is_none_or(|e| rel < *e) {
            extra = Some(rel);
        }
        Ok(())
    })?;
    match extra {
        Some(path) => Err(BundleError::ExtraFile { path }),
        None => Ok(()),
    }
}

fn apply_options(signer: &PublicKey, now_ms: u64) -> ApplyOptions {
    let mut opts = ApplyOptions::new(format!("bundle {}", signer.key_id()), now_ms);
    opts.all_or_nothing = true;
    opts.unsigned_origin = Some(*signer);
    opts
}

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
        applying.commit()?
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

#[cfg(test)]
mod tests;
