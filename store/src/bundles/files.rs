//! The bundle directory on disk: listing the files a bundle owns, writing record files (only
//! those that changed, atomically where a complete file stood), sealing them with a signed
//! manifest, removing a previous bundle's leftovers, and checking that a folder holds nothing but
//! this instance's own earlier bundle before any of that.

use std::collections::HashSet;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use protocol::bundle::{
    BundleSignature, ListedPaths, MANIFEST_FILE, MAX_MANIFEST_LEN, MAX_SIGNATURE_FILE_LEN,
    ManifestCheck, ManifestLines, PUBLIC_KEYS_DIR, SIGNATURE_FILE, public_key_file_path,
    validate_bundle_path, write_public_key_file,
};
use protocol::sync_txt::MAX_SYNC_FILE_LEN;
use protocol::{CodecError, PublicKey, SecretKey};
use sha2::{Digest, Sha256};

use super::spill::{Spill, run_bytes};
use super::{BundleError, ENTITY_DIRS, Result};

/// Record files have this suffix (the manifest too).
pub(super) const SUFFIX: &str = ".sync.txt";

/// Record files written into a bundle directory. A previous export's files are known from the
/// start: only those are compared and, when their bytes change, replaced atomically (a cut
/// export never leaves a torn file where a complete one was); every other file is new and
/// written directly (a torn new file is listed by no manifest, so an import refuses it), and
/// each entity directory is created once. Each file's path and digest go to a [`Spill`], not
/// a list: the manifest of a million files is sorted on disk.
pub(crate) struct RecordFiles<'a> {
    dir: &'a Path,
    /// Bundle files present before the export and not written again yet.
    existing: HashSet<String>,
    /// Entity directories known to exist.
    dirs: HashSet<String>,
    /// (path in manifest order, SHA-256) of every file written.
    digests: Spill,
}

impl<'a> RecordFiles<'a> {
    /// `existing`: the bundle files in `dir` before the export.
    pub(crate) fn new(dir: &'a Path, existing: Vec<String>) -> Self {
        Self {
            dir,
            existing: existing.into_iter().collect(),
            dirs: HashSet::new(),
            digests: Spill::new(dir, run_bytes()),
        }
    }

    /// Writes one record file; returns whether its bytes changed (or it is new).
    pub(crate) fn write(&mut self, rel: String, bytes: &[u8]) -> Result<bool> {
        validate_bundle_path(&rel).map_err(|source| BundleError::Codec {
            path: MANIFEST_FILE.into(),
            source,
        })?;
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
        let digest: [u8; 32] = Sha256::digest(bytes).into();
        self.digests.push(&manifest_sort_key(&rel), &digest)?;
        Ok(written)
    }

    /// Ends the record files: their manifest, written beside the current one (see
    /// [`ManifestDraft`]), and the previous bundle's files not written again removed (see
    /// [`remove_stale`]); the caller then puts it in place with [`write_signed`].
    pub(crate) fn seal(self, local: &PublicKey) -> Result<Sealed> {
        let mut sorted = self.digests.finish()?;
        let mut draft = ManifestDraft::create(self.dir)?;
        let mut previous: Option<Vec<u8>> = None;
        let mut files = 3u64;
        while let Some((key, digest)) = sorted.next_entry()? {
            if previous.as_deref() == Some(key.as_slice()) {
                return Err(BundleError::Codec {
                    path: MANIFEST_FILE.into(),
                    source: CodecError::UnsafePath {
                        path: manifest_path_of_key(&key),
                        reason: "listed twice",
                    },
                });
            }
            let mut line = hex::encode(&digest);
            line.push_str("  ");
            line.push_str(&manifest_path_of_key(&key));
            line.push('\n');
            draft.append(line.as_bytes())?;
            previous = Some(key);
            files += 1;
        }
        if files == 3 {
            // An empty manifest is a single line break, as the app writes it.
            draft.append(b"\n")?;
        }
        draft.close()?;
        let removed = remove_stale(self.dir, self.existing, &public_key_file_path(local))?;
        Ok(Sealed {
            manifest: draft,
            removed,
            files,
        })
    }
}

/// The manifest orders paths segment by segment (`Manifest`'s order, the app's `sorted()`):
/// with every `/` made a NUL byte, which no path holds, plain byte order is that order.
fn manifest_sort_key(rel: &str) -> Vec<u8> {
    rel.bytes().map(|b| if b == b'/' { 0 } else { b }).collect()
}

fn manifest_path_of_key(key: &[u8]) -> String {
    let bytes: Vec<u8> = key.iter().map(|&b| if b == 0 { b'/' } else { b }).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A new manifest, written to a temporary file beside the bundle's current one (never read
/// whole: it is about 100 bytes per file) with its SHA-256 and length. [`write_signed`] signs
/// it and puts it in place; dropped unused, it is removed.
pub(crate) struct ManifestDraft {
    path: PathBuf,
    out: Option<std::io::BufWriter<fs::File>>,
    digest: Sha256,
    /// SHA-256 of the manifest, once closed.
    pub(crate) sha256: [u8; 32],
    pub(crate) len: u64,
}

impl ManifestDraft {
    /// Starts the draft at `manifest.sync.tmp` in `dir`: whatever sits there (a file left by a
    /// cut export, a link) is removed, never followed, and the file is created exclusively.
    fn create(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST_FILE).with_extension("tmp");
        let err = |source| BundleError::Write {
            path: path.clone(),
            source,
        };
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(err(source)),
        }
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(err)?;
        Ok(Self {
            out: Some(std::io::BufWriter::with_capacity(READ_CHUNK, file)),
            path,
            digest: Sha256::new(),
            sha256: [0; 32],
            len: 0,
        })
    }

    /// A draft holding `text`: for manifests made in memory.
    #[cfg(test)]
    pub(crate) fn from_text(dir: &Path, text: &str) -> Result<Self> {
        let mut draft = Self::create(dir)?;
        draft.append(text.as_bytes())?;
        draft.close()?;
        Ok(draft)
    }

    fn append(&mut self, bytes: &[u8]) -> Result<()> {
        let Some(out) = self.out.as_mut() else {
            return Ok(());
        };
        self.digest.update(bytes);
        self.len += bytes.len() as u64;
        out.write_all(bytes).map_err(|source| BundleError::Write {
            path: self.path.clone(),
            source,
        })
    }

    fn close(&mut self) -> Result<()> {
        if let Some(out) = self.out.take() {
            out.into_inner()
                .map_err(|e| e.into_error())
                .map_err(|source| BundleError::Write {
                    path: self.path.clone(),
                    source,
                })?;
            self.sha256 = std::mem::take(&mut self.digest).finalize().into();
        }
        Ok(())
    }

    /// Whether the manifest at `dir` holds exactly this draft's bytes (length, then SHA-256,
    /// read as a stream).
    pub(crate) fn is_on_disk(&self, dir: &Path) -> bool {
        let Ok(file) = fs::File::open(dir.join(MANIFEST_FILE)) else {
            return false;
        };
        if file.metadata().map(|m| m.len()).ok() != Some(self.len) {
            return false;
        }
        hash_file(file).ok() == Some(self.sha256)
    }

    /// Hands the draft's bytes to `feed`, in pieces, from the file.
    fn read(&self, feed: &mut dyn FnMut(&[u8])) -> std::io::Result<()> {
        let mut file = fs::File::open(&self.path)?;
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            let n = file.read(&mut buf)?;
            match buf.get(..n) {
                Some(piece) if !piece.is_empty() => feed(piece),
                _ => return Ok(()),
            }
        }
    }
}

impl Drop for ManifestDraft {
    fn drop(&mut self) {
        // Put in place, it is gone from here; otherwise a draft never outlives its export.
        let _ = fs::remove_file(&self.path);
    }
}

/// SHA-256 of a file's bytes, read as a stream.
fn hash_file(mut file: fs::File) -> std::io::Result<[u8; 32]> {
    let mut digest = Sha256::new();
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let n = file.read(&mut buf)?;
        match buf.get(..n) {
            Some(piece) if !piece.is_empty() => digest.update(piece),
            _ => return Ok(digest.finalize().into()),
        }
    }
}

/// A bundle's record files, written: what [`RecordFiles::seal`] returns.
pub(crate) struct Sealed {
    /// The manifest, not yet in place.
    pub(crate) manifest: ManifestDraft,
    /// Files of a previous bundle removed.
    pub(crate) removed: u64,
    /// Every file of the bundle: record files, manifest, bundle.sig, public key file.
    pub(crate) files: u64,
}

/// Puts a bundle's manifest, public key file and `bundle.sig` (signed now, the manifest read
/// from its draft as a stream, twice) in place, each atomically and last: a bundle whose
/// writing was cut short has no manifest that matches its files. Returns the bytes written.
pub(crate) fn write_signed(
    dir: &Path,
    key: &SecretKey,
    manifest: ManifestDraft,
    now_ms: u64,
) -> Result<u64> {
    let local = key.public();
    let signature = BundleSignature::sign_stream(key, now_ms, |feed| manifest.read(feed)).map_err(
        |source| BundleError::Write {
            path: manifest.path.clone(),
            source,
        },
    )?;
    if signature.manifest_digest != manifest.sha256 {
        return Err(BundleError::Write {
            path: manifest.path.clone(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the manifest changed on disk while it was being written",
            ),
        });
    }
    let mut bytes = manifest.len;
    if !manifest.is_on_disk(dir) {
        let target = dir.join(MANIFEST_FILE);
        fs::rename(&manifest.path, &target).map_err(|source| BundleError::Write {
            path: target,
            source,
        })?;
    }
    drop(manifest);
    for (path, text) in [
        (public_key_file_path(&local), write_public_key_file(&local)),
        (SIGNATURE_FILE.to_string(), signature.to_text()),
    ] {
        bytes += text.len() as u64;
        write_if_changed(&dir.join(&path), text.as_bytes())?;
    }
    Ok(bytes)
}

/// The marker of an export in progress (`wb sync export`, the app's inbox): written into the
/// folder, naming this instance's key, before the first record file, and removed once
/// `bundle.sig` is written. An export killed in between leaves it, and the folder's files (new
/// ones no manifest lists, a first export without `bundle.sig`, temporaries) are then this
/// instance's to redo: [`check_export_dir`] accepts the folder, the next export replaces or
/// removes them. Hidden and not a bundle file, so imports never see it.
pub(crate) const PENDING_FILE: &str = ".wb-export-pending";

/// The temporary name [`write_if_changed`] writes a record file under before renaming it.
const TMP_SUFFIX: &str = ".sync.tmp";

fn pending_text(local: &PublicKey) -> String {
    format!(
        "wb export in progress; the next export into this folder finishes it\nKey: {}\n",
        local.to_base64()
    )
}

/// Marks `dir` (which exists) as holding an export of `local` in progress (see [`PENDING_FILE`]).
pub(crate) fn mark_pending(dir: &Path, local: &PublicKey) -> Result<()> {
    write_if_changed(&dir.join(PENDING_FILE), pending_text(local).as_bytes()).map(|_| ())
}

/// Ends what [`mark_pending`] began: the export in `dir` is whole.
pub(crate) fn clear_pending(dir: &Path) -> Result<()> {
    let path = dir.join(PENDING_FILE);
    match fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(BundleError::Write { path, source }),
    }
}

/// Whether `dir` holds the marker of an export of `local` cut short.
fn cut_export_of(dir: &Path, local: &PublicKey) -> bool {
    let expected = pending_text(local);
    read_inside(dir, PENDING_FILE, expected.len() + 1)
        .is_ok_and(|bytes| bytes == expected.as_bytes())
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
///
/// `former`: keys this instance replaced (`wb sync keygen --force`): an export the instance
/// signed before it replaced its key is its own too.
pub(crate) fn check_export_dir(
    dir: &Path,
    local: &PublicKey,
    former: &[PublicKey],
    inbox: Option<&dyn Fn(&str) -> bool>,
) -> Result<Vec<String>> {
    let files = bundle_files(dir)?;
    let Some(first) = files.first() else {
        return Ok(files);
    };
    // An export of ours killed mid-way: whatever it left is ours to redo.
    if cut_export_of(dir, local) {
        return Ok(files);
    }
    let refuse = |file: &str, why: String| BundleError::NotOurExport {
        dir: dir.to_path_buf(),
        file: file.to_string(),
        why,
    };
    let root = fs::canonicalize(dir).map_err(|source| BundleError::Read {
        path: dir.display().to_string(),
        source,
    })?;
    let not_ours = |e: BundleError| match e {
        BundleError::MissingFile { path } => refuse(
            first,
            format!("is not from a wb export: there is no {path} here"),
        ),
        e => refuse(
            first,
            format!("is not from a wb export: {SIGNATURE_FILE} does not verify: {e}"),
        ),
    };
    // Read, never held: the manifest of a large export is larger than any fixed bound.
    let signed = verify_manifest(&root).map_err(not_ours)?;
    let signature = &signed.signature;
    if signature.public_key != *local && !former.contains(&signature.public_key) {
        return Err(refuse(
            first,
            format!(
                "is in a bundle signed by key id {}, not by this instance, key id {}",
                signature.key_id(),
                local.key_id()
            ),
        ));
    }
    let key_file = public_key_file_path(&signature.public_key);
    if let Some(rel) = files.iter().find(|rel| {
        **rel != MANIFEST_FILE && **rel != key_file && !signed.listed.contains(rel.as_str())
    }) {
        return Err(refuse(
            rel,
            "is not listed in wb's last manifest here".to_string(),
        ));
    }
    // The app's inbox is in the app's layout (no record signatures): it is wb's when wb signed
    // this very manifest for an inbox.
    if let Some(is_inbox) = inbox {
        if !is_inbox(&hex::encode(signature.manifest_digest)) {
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
    let mut verdict: Option<Result<()>> = None;
    let streamed = stream_manifest(&root, None, &mut |_, _, path| {
        if verdict.is_some() {
            return Ok(());
        }
        let bytes = match read_inside(&root, path, MAX_SYNC_FILE_LEN) {
            Ok(bytes) => bytes,
            Err(BundleError::MissingFile { .. }) => return Ok(()),
            Err(e) => {
                verdict = Some(Err(refuse(path, format!("cannot be checked: {e}"))));
                return Ok(());
            }
        };
        let Some(headers) = header_lines(&bytes) else {
            return Ok(());
        };
        verdict = Some(if headers.iter().any(|l| l.starts_with("Signature:")) {
            Ok(())
        } else {
            Err(refuse(
                path,
                "carries no record signature: the WhiteBalloon app wrote it, signed with the \
                 key it shares with wb"
                    .to_string(),
            ))
        });
        Ok(())
    })
    .map_err(not_ours)?;
    if streamed.digest != signature.manifest_digest {
        return Err(refuse(
            MANIFEST_FILE,
            "changed while it was being checked".to_string(),
        ));
    }
    verdict.unwrap_or(Ok(()))?;
    Ok(files)
}

/// A manifest whose bytes matched `bundle.sig` as they were read: its signature, and what it
/// lists (see [`verify_manifest`]).
pub(super) struct SignedManifest {
    pub(super) signature: BundleSignature,
    pub(super) listed: ListedPaths,
}

/// Reads `bundle.sig` and streams the manifest through its signature check and the parser,
/// keeping only [`ListedPaths`]: a failed signature is reported first, then a malformed line,
/// then a repeated path. Reads only.
pub(super) fn verify_manifest(root: &Path) -> Result<SignedManifest> {
    let sig_bytes = read_inside(root, SIGNATURE_FILE, MAX_SIGNATURE_FILE_LEN)?;
    let signature = BundleSignature::parse(&sig_bytes).map_err(|source| BundleError::Codec {
        path: SIGNATURE_FILE.into(),
        source,
    })?;
    let check = signature.manifest_check();
    let mut listed = ListedPaths::default();
    stream_manifest(root, Some(check), &mut |line, _, path| {
        listed.insert(line, path);
        Ok(())
    })?;
    if let Some((line, _)) = listed.seal() {
        let path = manifest_line_path(root, line).unwrap_or_default();
        return Err(BundleError::Codec {
            path: MANIFEST_FILE.into(),
            source: CodecError::DuplicateManifestPath { line, path },
        });
    }
    Ok(SignedManifest { signature, listed })
}

/// The path on line `line` of the manifest (for an error message).
fn manifest_line_path(root: &Path, line: usize) -> Option<String> {
    let mut found = None;
    stream_manifest(root, None, &mut |at, _, path| {
        if at == line {
            found = Some(path.to_string());
        }
        Ok(())
    })
    .ok()?;
    found
}

/// What reading a manifest to its end gave.
pub(super) struct StreamedManifest {
    /// SHA-256 of the bytes read.
    pub(super) digest: [u8; 32],
}

/// What [`stream_manifest`] hands each line to: (line number, SHA-256, path).
pub(super) type ManifestEntryFn<'a> = dyn FnMut(usize, [u8; 32], &str) -> Result<()> + 'a;

/// Bytes read from a file at a time when streaming it.
const READ_CHUNK: usize = 256 * 1024;

/// Streams the manifest at `root` through the parser, handing each line to `entry` as (line
/// number, SHA-256, path); with `check`, through its signature check too, to the end even past
/// a malformed line, so that a failed signature is the error reported. Without `check`, the
/// first error stops the read. Only a piece of the file and one line are held.
pub(super) fn stream_manifest(
    root: &Path,
    mut check: Option<ManifestCheck>,
    entry: &mut ManifestEntryFn<'_>,
) -> Result<StreamedManifest> {
    let (mut file, _) = open_inside(root, MANIFEST_FILE, MAX_MANIFEST_LEN)?;
    let mut digest = Sha256::new();
    let mut lines = ManifestLines::default();
    let mut failed: Option<StreamError> = None;
    let mut on_line = |line: usize, sha256: [u8; 32], path: &str| -> Result<(), StreamError> {
        entry(line, sha256, path).map_err(StreamError::Bundle)
    };
    let mut buf = vec![0u8; READ_CHUNK];
    let mut total: u64 = 0;
    loop {
        let n = file.read(&mut buf).map_err(|source| BundleError::Read {
            path: MANIFEST_FILE.into(),
            source,
        })?;
        let Some(piece) = buf.get(..n).filter(|p| !p.is_empty()) else {
            break;
        };
        total += n as u64;
        if total > MAX_MANIFEST_LEN {
            return Err(too_large(MANIFEST_FILE, total, MAX_MANIFEST_LEN));
        }
        digest.update(piece);
        if let Some(check) = check.as_mut() {
            check.update(piece);
        }
        if failed.is_none()
            && let Err(e) = lines.feed(piece, &mut on_line)
        {
            if check.is_none() {
                return Err(e.into_bundle());
            }
            failed = Some(e);
        }
    }
    if failed.is_none()
        && let Err(e) = lines.finish(&mut on_line)
    {
        failed = Some(e);
    }
    if let Some(check) = check {
        check.finish().map_err(|source| BundleError::Codec {
            path: SIGNATURE_FILE.into(),
            source,
        })?;
    }
    if let Some(e) = failed {
        return Err(e.into_bundle());
    }
    Ok(StreamedManifest {
        digest: digest.finalize().into(),
    })
}

/// An error while streaming the manifest: the parser's (about the manifest), or the caller's.
enum StreamError {
    Codec(CodecError),
    Bundle(BundleError),
}

impl From<CodecError> for StreamError {
    fn from(e: CodecError) -> Self {
        Self::Codec(e)
    }
}

impl StreamError {
    fn into_bundle(self) -> BundleError {
        match self {
            Self::Codec(source) => BundleError::Codec {
                path: MANIFEST_FILE.into(),
                source,
            },
            Self::Bundle(e) => e,
        }
    }
}

fn too_large(path: &str, len: u64, max: u64) -> BundleError {
    BundleError::Codec {
        path: path.into(),
        source: CodecError::TooLarge {
            what: "file",
            len: usize::try_from(len).unwrap_or(usize::MAX),
            max: usize::try_from(max).unwrap_or(usize::MAX),
        },
    }
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
        let bundle_file = rel.ends_with(SUFFIX)
            || rel.ends_with(TMP_SUFFIX)
            || rel.starts_with(&format!("{PUBLIC_KEYS_DIR}/"));
        if rel != key_file && bundle_file && rel != MANIFEST_FILE {
            let path = dir.join(&rel);
            match fs::remove_file(&path) {
                Ok(()) => removed += 1,
                // Already gone: a cut export's `.sync.tmp`, removed when this export wrote the
                // file it stood for (`write_if_changed`).
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(BundleError::Write { path, source }),
            }
        }
    }
    Ok(removed)
}

/// Bundle-relative paths of the files a bundle owns in `dir`, sorted (see [`walk_bundle_files`]).
pub(super) fn bundle_files(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    walk_bundle_files(dir, &mut |rel| {
        out.push(rel);
        Ok(())
    })?;
    out.sort();
    Ok(out)
}

/// Hands `each` the bundle-relative path of every file a bundle owns in `dir`, in no set order:
/// everything under the entity directories and `public_keys/`, and `*.sync.txt` files anywhere
/// else (hidden directories such as `.git` are skipped). Symbolic links are listed, not
/// followed. Holds one directory's listing at a time, never the whole tree.
pub(super) fn walk_bundle_files(
    dir: &Path,
    each: &mut dyn FnMut(String) -> Result<()>,
) -> Result<()> {
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((path, rel)) = stack.pop() {
        let entries = match fs::read_dir(&path) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && rel.is_empty() => {
                return Ok(());
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
                each(child)?;
            }
        }
    }
    Ok(())
}

/// Reads `root/rel` after checking that it resolves inside `root` and is a regular file of at
/// most `max` bytes.
pub(super) fn read_inside(root: &Path, rel: &str, max: usize) -> Result<Vec<u8>> {
    let (file, len) = open_inside(root, rel, max as u64)?;
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    // A file that grew since its size was checked is still read only up to the bound.
    file.take(max as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| BundleError::Read {
            path: rel.into(),
            source,
        })?;
    if bytes.len() > max {
        return Err(too_large(rel, bytes.len() as u64, max as u64));
    }
    Ok(bytes)
}

/// Opens `root/rel` after checking that it resolves inside `root`, with no link on the way, and
/// is a regular file of at most `max` bytes; returns it with its length.
fn open_inside(root: &Path, rel: &str, max: u64) -> Result<(fs::File, u64)> {
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
    let file = fs::File::open(&resolved).map_err(|source| BundleError::Read {
        path: rel.into(),
        source,
    })?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    if len > max {
        return Err(too_large(rel, len, max));
    }
    Ok((file, len))
}
