//! The bundle directory on disk: listing the files a bundle owns, writing record files (only
//! those that changed, atomically where a complete file stood), sealing them with a signed
//! manifest, removing a previous bundle's leftovers, and checking that a folder holds nothing but
//! this instance's own earlier bundle before any of that.

use std::collections::HashSet;
use std::fs;
use std::io::{Read, Write};
use std::path::Path;

use protocol::bundle::{
    BundleSignature, MANIFEST_FILE, Manifest, PUBLIC_KEYS_DIR, SIGNATURE_FILE,
    public_key_file_path, verify_bundle, write_public_key_file,
};
use protocol::sync_txt::MAX_SYNC_FILE_LEN;
use protocol::{CodecError, PublicKey, SecretKey};
use sha2::{Digest, Sha256};

use super::{BundleError, ENTITY_DIRS, Result};

/// Record files have this suffix (the manifest too).
pub(super) const SUFFIX: &str = ".sync.txt";

/// Record files written into a bundle directory. A previous export's files are known from the
/// start: only those are compared and, when their bytes change, replaced atomically (a cut
/// export never leaves a torn file where a complete one was); every other file is new and
/// written directly (a torn new file is listed by no manifest, so an import refuses it), and
/// each entity directory is created once.
pub(crate) struct RecordFiles<'a> {
    dir: &'a Path,
    /// Bundle files present before the export and not written again yet.
    existing: HashSet<String>,
    /// Entity directories known to exist.
    dirs: HashSet<String>,
    digests: Vec<(String, [u8; 32])>,
}

impl<'a> RecordFiles<'a> {
    /// `existing`: the bundle files in `dir` before the export.
    pub(crate) fn new(dir: &'a Path, existing: Vec<String>) -> Self {
        Self {
            dir,
            existing: existing.into_iter().collect(),
            dirs: HashSet::new(),
            digests: Vec::new(),
        }
    }

    /// Writes one record file; returns whether its bytes changed (or it is new).
    pub(crate) fn write(&mut self, rel: String, bytes: &[u8]) -> Result<bool> {
        let path = self.dir.join(&rel);
        let written = if self.existing.remove(&rel) {
            write_if_changed(&path, bytes)?
        } else {
            if let Some((parent, _)) = rel.rsplit_once('/')
                && !self.dirs.contains(parent)
            {
                let parent_path = self.dir.join(parent);
                fs::create_dir_all(&parent_path).map_err(|source| BundleError::Write {
                    path: parent_path,
                    source,
                })?;
                self.dirs.insert(parent.to_string());
            }
            write_new(&path, bytes)?
        };
        self.digests.push((rel, Sha256::digest(bytes).into()));
        Ok(written)
    }

    /// Ends the record files: their manifest, and the previous bundle's files not written again
    /// removed (see [`remove_stale`]); the caller then writes it with [`write_signed`].
    pub(crate) fn seal(self, local: &PublicKey) -> Result<Sealed> {
        let files = self.digests.len() as u64 + 3;
        let manifest =
            Manifest::from_digests(self.digests).map_err(|source| BundleError::Codec {
                path: MANIFEST_FILE.into(),
                source,
            })?;
        let removed = remove_stale(self.dir, self.existing, &public_key_file_path(local))?;
        Ok(Sealed {
            manifest: manifest.to_text(),
            removed,
            files,
        })
    }
}

/// A bundle's record files, written: what [`RecordFiles::seal`] returns.
pub(crate) struct Sealed {
    /// The manifest's text.
    pub(crate) manifest: String,
    /// Files of a previous bundle removed.
    pub(crate) removed: u64,
    /// Every file of the bundle: record files, manifest, bundle.sig, public key file.
    pub(crate) files: u64,
}

/// Writes a bundle's manifest, public key file and `bundle.sig` (signed now), each atomically
/// and last: a bundle whose writing was cut short has no manifest that matches its files.
/// Returns the bytes written.
pub(crate) fn write_signed(
    dir: &Path,
    key: &SecretKey,
    manifest: &str,
    now_ms: u64,
) -> Result<u64> {
    let local = key.public();
    let signature = BundleSignature::sign(manifest.as_bytes(), key, now_ms);
    let mut bytes = 0;
    for (path, text) in [
        (MANIFEST_FILE.to_string(), manifest.to_string()),
        (public_key_file_path(&local), write_public_key_file(&local)),
        (SIGNATURE_FILE.to_string(), signature.to_text()),
    ] {
        bytes += text.len() as u64;
        write_if_changed(&dir.join(&path), text.as_bytes())?;
    }
    Ok(bytes)
}

/// Writes a file that did not exist: create, write, close. Should the file exist after all, it
/// is replaced only if its bytes differ, atomically; a file left torn by a failed write is
/// removed.
fn write_new(path: &Path, bytes: &[u8]) -> Result<bool> {
    let mut file = match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return write_if_changed(path, bytes);
        }
        Err(source) => {
            return Err(BundleError::Write {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    if let Err(source) = file.write_all(bytes) {
        drop(file);
        let _ = fs::remove_file(path);
        return Err(BundleError::Write {
            path: path.to_path_buf(),
            source,
        });
    }
    Ok(true)
}

/// Whether the file at `path` holds exactly `bytes` (its size is compared first).
fn holds(path: &Path, bytes: &[u8]) -> bool {
    let Ok(mut file) = fs::File::open(path) else {
        return false;
    };
    if file.metadata().map(|m| m.len()).ok() != Some(bytes.len() as u64) {
        return false;
    }
    let mut old = Vec::with_capacity(bytes.len());
    file.read_to_end(&mut old).is_ok() && old == bytes
}

/// Writes a file unless it already holds exactly these bytes, atomically (a temporary file
/// renamed over it); returns whether it wrote.
pub(crate) fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<bool> {
    if holds(path, bytes) {
        return Ok(false);
    }
    let err = |source| BundleError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(err)?;
    }
    // Whatever sits at the temporary name (a link committed to the folder, a file left by a
    // cut export) is removed, never followed, and the new file is created exclusively; the
    // rename then replaces the name itself, never what a link there points to.
    let tmp = path.with_extension("tmp");
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(err(source)),
    }
    let written = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .and_then(|mut file| file.write_all(bytes));
    if let Err(source) = written {
        let _ = fs::remove_file(&tmp);
        return Err(err(source));
    }
    fs::rename(&tmp, path).map_err(err)?;
    Ok(true)
}

/// Checks that `dir` holds no bundle file but those of this instance's previous export, which
/// an export may replace or remove (§14 "One home, two programs"): `bundle.sig` signed by
/// `local` and verifying over `manifest.sync.txt`, every bundle file listed in that manifest (or
/// the manifest itself, or `local`'s public key file), and the listed files written by
/// `wb sync export` — the app signs its export with the same key when it shares the home, but
/// its files carry no record signature. Files that are no bundle files (a README, `.git`) do
/// not matter. Returns the bundle files found; reads only.
pub(crate) fn check_export_dir(
    dir: &Path,
    local: &PublicKey,
    inbox: Option<&dyn Fn(&str) -> bool>,
) -> Result<Vec<String>> {
    let files = bundle_files(dir)?;
    let Some(first) = files.first() else {
        return Ok(files);
    };
    let refuse = |file: &str, why: String| BundleError::NotOurExport {
        dir: dir.to_path_buf(),
        file: file.to_string(),
        why,
    };
    let root = fs::canonicalize(dir).map_err(|source| BundleError::Read {
        path: dir.display().to_string(),
        source,
    })?;
    let read = |rel: &str, max: usize| {
        read_inside(&root, rel, max).map_err(|e| match e {
            BundleError::MissingFile { .. } => refuse(
                first,
                format!("is not from a wb export: there is no {rel} here"),
            ),
            e => refuse(first, format!("is not from a wb export: {e}")),
        })
    };
    let sig_bytes = read(SIGNATURE_FILE, protocol::bundle::MAX_SIGNATURE_FILE_LEN)?;
    let manifest_bytes = read(MANIFEST_FILE, protocol::bundle::MAX_MANIFEST_LEN)?;
    let (signature, manifest) = verify_bundle(&sig_bytes, &manifest_bytes).map_err(|e| {
        refuse(
            first,
            format!("is not from a wb export: {SIGNATURE_FILE} does not verify: {e}"),
        )
    })?;
    if signature.public_key != *local {
        return Err(refuse(
            first,
            format!(
                "is in a bundle signed by key id {}, not by this instance, key id {}",
                signature.key_id(),
                local.key_id()
            ),
        ));
    }
    let key_file = public_key_file_path(local);
    if let Some(rel) = files
        .iter()
        .find(|rel| **rel != MANIFEST_FILE && **rel != key_file && manifest.get(rel).is_none())
    {
        return Err(refuse(
            rel,
            "is not listed in wb's last manifest here".to_string(),
        ));
    }
    // The app's inbox is in the app's layout (no record signatures): it is wb's when wb signed
    // this very manifest for an inbox.
    if let Some(is_inbox) = inbox {
        if !is_inbox(&protocol::bundle::sha256_hex(&manifest_bytes)) {
            return Err(refuse(
                first,
                "is not from an inbox wb wrote here (wb never signed its manifest for one)"
                    .to_string(),
            ));
        }
        return Ok(files);
    }
    // One program wrote every file a manifest lists; the first whose headers can be read tells
    // which (a file torn by an export cut short is passed over).
    for entry in manifest.entries() {
        let bytes = match read_inside(&root, &entry.path, MAX_SYNC_FILE_LEN) {
            Ok(bytes) => bytes,
            Err(BundleError::MissingFile { .. }) => continue,
            Err(e) => return Err(refuse(&entry.path, format!("cannot be checked: {e}"))),
        };
        let Some(headers) = header_lines(&bytes) else {
            continue;
        };
        if headers.iter().any(|l| l.starts_with("Signature:")) {
            break;
        }
        return Err(refuse(
            &entry.path,
            "carries no record signature: the WhiteBalloon app wrote it, signed with the key it \
             shares with wb"
                .to_string(),
        ));
    }
    Ok(files)
}

/// The header lines of a `.sync.txt` file, up to its first empty line; `None` if it has none.
fn header_lines(bytes: &[u8]) -> Option<Vec<&str>> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut headers = Vec::new();
    for line in text.split('\n') {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            return Some(headers);
        }
        headers.push(line);
    }
    None
}

/// Removes the files of a previous export that this one did not write (`leftover`, bundle-
/// relative, all of them checked to be this instance's by `check_export_dir`): record files and
/// public key files other than ours. Nothing else in the directory is touched.
pub(crate) fn remove_stale(dir: &Path, leftover: HashSet<String>, key_file: &str) -> Result<u64> {
    let mut removed = 0;
    for rel in leftover {
        let bundle_file = rel.ends_with(SUFFIX) || rel.starts_with(&format!("{PUBLIC_KEYS_DIR}/"));
        if rel != key_file && bundle_file && rel != MANIFEST_FILE {
            let path = dir.join(&rel);
            fs::remove_file(&path).map_err(|source| BundleError::Write { path, source })?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Bundle-relative paths of the files a bundle owns in `dir`: everything under the entity
/// directories and `public_keys/`, and `*.sync.txt` files anywhere else (hidden directories such
/// as `.git` are skipped). Symbolic links are listed, not followed.
pub(super) fn bundle_files(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((path, rel)) = stack.pop() {
        let entries = match fs::read_dir(&path) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && rel.is_empty() => {
                return Ok(out);
            }
            Err(source) => {
                return Err(BundleError::Read {
                    path: if rel.is_empty() { ".".into() } else { rel },
                    source,
                });
            }
        };
        for entry in entries {
            let entry = entry.map_err(|source| BundleError::Read {
                path: rel.clone(),
                source,
            })?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let child = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let file_type = entry.file_type().map_err(|source| BundleError::Read {
                path: child.clone(),
                source,
            })?;
            let top = child.split('/').next().unwrap_or_default();
            let owned_dir = ENTITY_DIRS.contains(&top) || top == PUBLIC_KEYS_DIR;
            if file_type.is_dir() {
                if !name.starts_with('.') {
                    stack.push((entry.path(), child));
                }
            } else if owned_dir || name.ends_with(SUFFIX) {
                out.push(child);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Reads `root/rel` after checking that it resolves inside `root` and is a regular file.
pub(super) fn read_inside(root: &Path, rel: &str, max: usize) -> Result<Vec<u8>> {
    let path = root.join(rel);
    let meta = match fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(BundleError::MissingFile { path: rel.into() });
        }
        Err(source) => {
            return Err(BundleError::Read {
                path: rel.into(),
                source,
            });
        }
    };
    let resolved = fs::canonicalize(&path).map_err(|source| BundleError::Read {
        path: rel.into(),
        source,
    })?;
    if !resolved.starts_with(root) || !(meta.is_file() || meta.file_type().is_symlink()) {
        return Err(BundleError::PathEscapes { path: rel.into() });
    }
    if !resolved.is_file() {
        return Err(BundleError::PathEscapes { path: rel.into() });
    }
    // Inside, but through a link (the file or a folder on its way): one file could be listed
    // under many names and read once per name.
    if meta.file_type().is_symlink() || resolved != root.join(rel) {
        return Err(BundleError::Symlink { path: rel.into() });
    }
    let len = fs::metadata(&resolved).map(|m| m.len()).unwrap_or(0);
    if len > max as u64 {
        return Err(BundleError::Codec {
            path: rel.into(),
            source: CodecError::TooLarge {
                what: "file",
                len: usize::try_from(len).unwrap_or(usize::MAX),
                max,
            },
        });
    }
    fs::read(&resolved).map_err(|source| BundleError::Read {
        path: rel.into(),
        source,
    })
}
