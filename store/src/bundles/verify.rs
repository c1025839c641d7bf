//! Verifying a bundle directory (§8): the signed manifest and expected signer, every listed
//! file's checksum, path and format; the first pass of an import, and the app's snapshots.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use protocol::bundle::{
    MANIFEST_FILE, PUBLIC_KEYS_DIR, parse_public_key_file, public_key_file_path,
    write_public_key_file,
};
use protocol::sync_txt::{self, MAX_SYNC_FILE_LEN};
use protocol::{PublicKey, Record};

use crate::db::CheckedBatch;

use super::files::{read_inside, walk_bundle_files};
use super::*;
use sha2::{Digest, Sha256};

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

/// A bundle that passed every check, its records not held: what adopting the app's snapshot
/// takes (see [`verify_dir`]), which reads them again, a file at a time
/// ([`VerifiedBundle::for_each_file`]). A bundle to import is verified by [`verify`] instead.
#[derive(Debug)]
pub struct VerifiedBundle {
    pub signer: PublicKey,
    pub signed_at: String,
    pub manifest_digest: String,
    pub files: u64,
    /// Records per entity.
    pub entities: BTreeMap<String, u64>,
    signed: Signed,
}

impl VerifiedBundle {
    /// Reads the bundle's files again, in the manifest's order, one at a time: each must still
    /// hash to its manifest line, and the manifest to what `bundle.sig` signed
    /// ([`BundleError::ChangedDuringImport`] otherwise), so these are the very records
    /// [`verify_dir`] checked. `each` gets a file's path and records (its comments included).
    /// Returns how many files were read.
    pub fn for_each_file(
        &self,
        each: &mut dyn FnMut(&str, Vec<Record>) -> Result<()>,
    ) -> Result<u64> {
        for_each_file(&self.signed, Pass::Apply, each)
    }

    /// The path of the manifest's `n`-th file (from 0), for a message naming an earlier file.
    pub fn listed_path(&self, n: u64) -> Result<Option<String>> {
        let mut seen = 0u64;
        let mut found = None;
        files::stream_manifest(&self.signed.root, None, &mut |_, _, path| {
            if seen == n {
                found = Some(path.to_string());
            }
            seen += 1;
            Ok(())
        })?;
        Ok(found)
    }
}

/// Reads and verifies a bundle directory like [`verify`] (the signature over the manifest and
/// the expected signer, every listed file's checksum, no path leaving the directory, no unlisted
/// record file, each file's format and schema version), one file at a time, holding none of its
/// records, whose signatures are not checked here. For the app's snapshots, which are adopted,
/// not imported. Touches no store.
pub fn verify_dir(dir: &Path, expect_key: Option<&ExpectedSigner>) -> Result<VerifiedBundle> {
    let mut signed = verify_signed(dir, expect_key)?;
    let mut entities: BTreeMap<String, u64> = BTreeMap::new();
    let files = for_each_file(&signed, Pass::Verify, &mut |_, parsed| {
        for r in parsed {
            *entities.entry(r.entity.to_string()).or_default() += 1;
        }
        Ok(())
    })?;
    // Only the first pass looks for unlisted files.
    signed.listed = protocol::bundle::ListedPaths::default();
    Ok(VerifiedBundle {
        signer: signed.signature.public_key,
        signed_at: signed.signature.signed_at.clone(),
        manifest_digest: hex::encode(signed.signature.manifest_digest),
        files,
        entities,
        signed,
    })
}

/// Records checked (first pass) or applied (second pass) at a time: their files' records and
/// sealed bytes are what an import holds, a few MB.
pub(super) const PASS_BATCH_RECORDS: usize = 2_048;

/// A bundle that passed every check of the first pass of an import ([`verify`]); its records
/// are not held: [`import`] reads them again.
#[derive(Debug)]
pub struct VerifiedDir {
    pub(super) root: PathBuf,
    pub(super) signature: protocol::bundle::BundleSignature,
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
    pub(super) now_ms: u64,
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
#[derive(Debug)]
pub(super) struct Signed {
    pub(super) root: PathBuf,
    pub(super) signature: protocol::bundle::BundleSignature,
    /// What the manifest lists (the first pass looks for unlisted files; empty in the second).
    pub(super) listed: protocol::bundle::ListedPaths,
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
pub(super) enum Pass {
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
pub(super) fn for_each_file(
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
