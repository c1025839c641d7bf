//! Bundle metadata files (§8): `manifest.sync.txt` (a SHA-256 per file), `bundle.sig` (the
//! signer's Ed25519 signature over the manifest bytes) and `public_keys/<key id>.pub`, in the
//! app's formats. No I/O: callers read and write the files.

use std::cmp::Ordering;
use std::collections::HashSet;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use sha2::{Digest, Sha256};

use crate::sync_txt::{CodecError, format_timestamp, parse_header_lines};
use crate::{PublicKey, SecretKey, Signature};

/// File name of the manifest, at the bundle root.
pub const MANIFEST_FILE: &str = "manifest.sync.txt";
/// File name of the bundle signature, at the bundle root.
pub const SIGNATURE_FILE: &str = "bundle.sig";
/// Directory of the signers' public key files.
pub const PUBLIC_KEYS_DIR: &str = "public_keys";
/// The `Signature-Version` written and read.
pub const SIGNATURE_VERSION: &str = "1";
/// Most files one manifest may list. A manifest is read as a stream, never held whole (it grows
/// by about 100 bytes per file: 96 MB at a million records); while it verifies a bundle an
/// importer keeps 20 bytes per listed file ([`ListedPaths`]), so this bounds that at 80 MB and
/// the manifest at this many lines of at most [`MAX_MANIFEST_LINE_LEN`] bytes.
pub const MAX_MANIFEST_ENTRIES: usize = 4_000_000;
/// Longest manifest line: 64 hex digits, two spaces and the longest path.
pub const MAX_MANIFEST_LINE_LEN: usize = 66 + MAX_BUNDLE_PATH_LEN;
/// Largest manifest file read (streamed): its most lines, each at its longest (4.4 GB).
pub const MAX_MANIFEST_LEN: u64 = MAX_MANIFEST_ENTRIES as u64 * (MAX_MANIFEST_LINE_LEN as u64 + 1);
/// Largest total of the record files one pass of a bundle import reads. An import streams the
/// files twice (verify, then apply) and holds only a batch of them at a time, so this bounds
/// the work a bundle, however it is made, can make an importer do, not its memory: 2 GiB is
/// four times a million records of the usual size.
pub const MAX_BUNDLE_BYTES: u64 = 2 * 1024 * 1024 * 1024;
/// Largest `bundle.sig` or public key file read, checked before parsing.
pub const MAX_SIGNATURE_FILE_LEN: usize = 16 * 1024;
/// Longest relative path a manifest may list.
pub const MAX_BUNDLE_PATH_LEN: usize = 1024;
/// Longest single path segment (file systems' usual name limit).
pub const MAX_PATH_SEGMENT_LEN: usize = 255;

/// SHA-256 of `bytes`, as lowercase hex (the manifest's and `Manifest-Digest`'s form).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Checks that a manifest path stays inside the bundle: relative, `/`-separated, no empty,
/// `.` or `..` segment, no backslash, `:` or control character, within the length limits.
pub fn validate_bundle_path(path: &str) -> Result<(), CodecError> {
    let unsafe_path = |reason| {
        Err(CodecError::UnsafePath {
            path: path.to_string(),
            reason,
        })
    };
    if path.is_empty() {
        return unsafe_path("empty path");
    }
    if path.len() > MAX_BUNDLE_PATH_LEN {
        return unsafe_path("path too long");
    }
    if path.starts_with('/') {
        return unsafe_path("absolute path");
    }
    if path.contains('\\') {
        return unsafe_path("backslash in path");
    }
    if path.contains(':') {
        return unsafe_path("`:` in path (drive letter or stream name)");
    }
    if path.chars().any(char::is_control) {
        return unsafe_path("control character in path");
    }
    for segment in path.split('/') {
        match segment {
            "" => return unsafe_path("empty path segment"),
            "." | ".." => return unsafe_path("`.` or `..` path segment"),
            s if s.len() > MAX_PATH_SEGMENT_LEN => return unsafe_path("path segment too long"),
            _ => {}
        }
    }
    Ok(())
}

/// The manifest's order: by path, segment by segment (what the app's `sorted()` of paths gives).
fn path_order(a: &str, b: &str) -> Ordering {
    a.split('/').cmp(b.split('/'))
}

/// One manifest line: a file's SHA-256 and its bundle-relative path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestEntry {
    pub sha256: [u8; 32],
    pub path: String,
}

impl ManifestEntry {
    /// True when `bytes` hash to this entry's digest.
    pub fn matches(&self, bytes: &[u8]) -> bool {
        <[u8; 32]>::from(Sha256::digest(bytes)) == self.sha256
    }
}

/// `manifest.sync.txt`: `<sha256 hex>  <relative path>` per file, sorted by path.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Manifest {
    entries: Vec<ManifestEntry>,
}

impl Manifest {
    /// A manifest of the given files (path, content), sorted by path. Fails on an unsafe or
    /// repeated path.
    pub fn from_files<'a>(
        files: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> Result<Self, CodecError> {
        Self::from_digests(
            files
                .into_iter()
                .map(|(path, bytes)| (path.to_string(), Sha256::digest(bytes).into())),
        )
    }

    /// A manifest of files given by path and SHA-256 digest, sorted by path: for writers that
    /// hash files as they go instead of keeping their bytes. Fails on an unsafe or repeated path.
    pub fn from_digests(
        files: impl IntoIterator<Item = (String, [u8; 32])>,
    ) -> Result<Self, CodecError> {
        let mut entries = Vec::new();
        let mut seen = HashSet::new();
        for (path, sha256) in files {
            validate_bundle_path(&path)?;
            if !seen.insert(path.clone()) {
                return Err(CodecError::UnsafePath {
                    path,
                    reason: "listed twice",
                });
            }
            entries.push(ManifestEntry { sha256, path });
        }
        entries.sort_by(|a, b| path_order(&a.path, &b.path));
        Ok(Self { entries })
    }

    /// The entries, in path order.
    pub fn entries(&self) -> &[ManifestEntry] {
        &self.entries
    }

    /// The entry of a path, if listed.
    pub fn get(&self, path: &str) -> Option<&ManifestEntry> {
        self.entries
            .binary_search_by(|e| path_order(&e.path, path))
            .ok()
            .and_then(|i| self.entries.get(i))
    }

    /// The manifest's text: one `<hex>  <path>\n` line per entry, as the app writes it (an
    /// empty manifest is a single `\n`).
    pub fn to_text(&self) -> String {
        if self.entries.is_empty() {
            return "\n".to_string();
        }
        let mut out = String::new();
        for entry in &self.entries {
            out.push_str(&hex::encode(entry.sha256));
            out.push_str("  ");
            out.push_str(&entry.path);
            out.push('\n');
        }
        out
    }

    /// Parses a manifest held in memory (see [`ManifestLines`] for the rules; large manifests
    /// are streamed through it instead). Repeated paths are refused. Entries are returned
    /// sorted by path whatever their order in the file.
    pub fn parse(bytes: &[u8]) -> Result<Self, CodecError> {
        let mut entries = Vec::new();
        let mut seen = HashSet::new();
        let mut take = |line: usize, sha256: [u8; 32], path: &str| {
            if !seen.insert(path.to_string()) {
                return Err(CodecError::DuplicateManifestPath {
                    line,
                    path: path.to_string(),
                });
            }
            entries.push(ManifestEntry {
                sha256,
                path: path.to_string(),
            });
            Ok(())
        };
        let mut lines = ManifestLines::default();
        lines.feed(bytes, &mut take)?;
        lines.finish(&mut take)?;
        entries.sort_by(|a, b| path_order(&a.path, &b.path));
        Ok(Self { entries })
    }
}

/// A manifest parsed as its bytes arrive, in pieces of any size: [`ManifestLines::feed`] hands
/// each complete line to a callback as (line number, digest, path), [`ManifestLines::finish`]
/// the last one. Lines are `<64 hex digits>  <path>` with a safe path; the last line's `\n` is
/// optional; empty lines are refused, but a manifest of just `\n` is empty. At most
/// [`MAX_MANIFEST_ENTRIES`] lines of [`MAX_MANIFEST_LINE_LEN`] bytes: only the line being read
/// is held. Repeated paths are the caller's to refuse (a large manifest's caller remembers
/// paths compactly: [`ListedPaths`]).
#[derive(Debug, Default)]
pub struct ManifestLines {
    /// The line being read.
    pending: Vec<u8>,
    /// Lines ended so far.
    line: usize,
    /// The first line was empty: a manifest of just `\n`, unless anything follows.
    first_empty: bool,
}

impl ManifestLines {
    /// Reads the next bytes of the manifest.
    pub fn feed<E: From<CodecError>>(
        &mut self,
        mut bytes: &[u8],
        entry: &mut impl FnMut(usize, [u8; 32], &str) -> Result<(), E>,
    ) -> Result<(), E> {
        while !bytes.is_empty() {
            if self.first_empty {
                return Err(bad_line(1, "empty line").into());
            }
            match bytes.iter().position(|&b| b == b'\n') {
                Some(end) => {
                    self.push(bytes.get(..end).unwrap_or_default())?;
                    bytes = bytes.get(end + 1..).unwrap_or_default();
                    self.end_line(entry)?;
                }
                None => {
                    self.push(bytes)?;
                    break;
                }
            }
        }
        Ok(())
    }

    /// Ends the manifest (its last line needs no `\n`); returns how many lines it listed.
    pub fn finish<E: From<CodecError>>(
        mut self,
        entry: &mut impl FnMut(usize, [u8; 32], &str) -> Result<(), E>,
    ) -> Result<usize, E> {
        if !self.pending.is_empty() {
            self.end_line(entry)?;
        }
        Ok(if self.first_empty { 0 } else { self.line })
    }

    fn push(&mut self, part: &[u8]) -> Result<(), CodecError> {
        if self.pending.len() + part.len() > MAX_MANIFEST_LINE_LEN {
            return Err(bad_line(
                self.line + 1,
                "line too long: a path is at most 1,024 bytes",
            ));
        }
        self.pending.extend_from_slice(part);
        Ok(())
    }

    fn end_line<E: From<CodecError>>(
        &mut self,
        entry: &mut impl FnMut(usize, [u8; 32], &str) -> Result<(), E>,
    ) -> Result<(), E> {
        self.line += 1;
        let line_no = self.line;
        if self.pending.is_empty() {
            if line_no == 1 {
                self.first_empty = true;
                return Ok(());
            }
            return Err(bad_line(line_no, "empty line").into());
        }
        if line_no > MAX_MANIFEST_ENTRIES {
            return Err(bad_line(line_no, "more files than a bundle may list (4,000,000)").into());
        }
        let (sha256, path) = parse_manifest_line(&self.pending, line_no)?;
        entry(line_no, sha256, path)?;
        self.pending.clear();
        Ok(())
    }
}

fn bad_line(line: usize, reason: &'static str) -> CodecError {
    CodecError::BadManifestLine { line, reason }
}

/// One manifest line (without its `\n`): its digest and its checked path.
fn parse_manifest_line(b: &[u8], line_no: usize) -> Result<([u8; 32], &str), CodecError> {
    let line = std::str::from_utf8(b).map_err(|_| CodecError::InvalidUtf8 { line: line_no })?;
    let (Some(hex_digits), Some(sep), Some(path)) = (b.get(..64), b.get(64..66), line.get(66..))
    else {
        return Err(bad_line(
            line_no,
            "expected 64 hex digits of SHA-256, two spaces and a path",
        ));
    };
    if !hex_digits.iter().all(u8::is_ascii_hexdigit) {
        return Err(bad_line(
            line_no,
            "expected 64 hex digits of SHA-256, two spaces and a path",
        ));
    }
    if sep != b"  " {
        return Err(bad_line(
            line_no,
            "expected two spaces between the digest and the path",
        ));
    }
    let mut sha256 = [0u8; 32];
    hex::decode_to_slice(hex_digits, &mut sha256)
        .map_err(|_| bad_line(line_no, "digest is not hex"))?;
    validate_bundle_path(path).map_err(|e| match e {
        CodecError::UnsafePath { path, reason } => CodecError::BadManifestPath {
            line: line_no,
            path,
            reason,
        },
        other => other,
    })?;
    Ok((sha256, path))
}

/// The paths a streamed manifest listed, as 16 bytes of each path's SHA-256 and its line (20
/// bytes a path): what an importer keeps instead of the manifest, to refuse a repeated path and
/// to find a file the manifest does not list. Two paths sharing 128 bits of SHA-256 would take
/// about 2^64 work to find, and would only make a bundle be refused.
#[derive(Debug, Default)]
pub struct ListedPaths {
    entries: Vec<([u8; 16], u32)>,
}

impl ListedPaths {
    fn key(path: &str) -> [u8; 16] {
        let digest = Sha256::digest(path.as_bytes());
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest[..16]);
        key
    }

    /// Notes the path of manifest line `line`.
    pub fn insert(&mut self, line: usize, path: &str) {
        self.entries
            .push((Self::key(path), u32::try_from(line).unwrap_or(u32::MAX)));
    }

    /// Ends the listing: sorts it, and returns the first line (in file order) that repeats the
    /// path of an earlier line, with that earlier line.
    pub fn seal(&mut self) -> Option<(usize, usize)> {
        self.entries.sort_unstable();
        self.entries
            .windows(2)
            .filter_map(|pair| match pair {
                [(a, first), (b, again)] if a == b => Some((*again as usize, *first as usize)),
                _ => None,
            })
            .min()
    }

    /// Whether `path` is listed (after [`ListedPaths::seal`]).
    pub fn contains(&self, path: &str) -> bool {
        let key = Self::key(path);
        self.entries.binary_search_by(|(k, _)| k.cmp(&key)).is_ok()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// `bundle.sig`: who signed the manifest, when, and the signature over its exact bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleSignature {
    pub public_key: PublicKey,
    /// SHA-256 of the manifest bytes.
    pub manifest_digest: [u8; 32],
    /// As written: the app writes Python's `isoformat()` (`2026-11-21T23:38:05.084824+00:00`),
    /// wb writes `2026-11-21T23:38:05Z`. Informational; not signed.
    pub signed_at: String,
    pub signature: Signature,
}

impl BundleSignature {
    /// Signs the manifest bytes.
    pub fn sign(manifest: &[u8], key: &SecretKey, signed_at_ms: u64) -> Self {
        Self {
            public_key: key.public(),
            manifest_digest: Sha256::digest(manifest).into(),
            signed_at: format_timestamp(signed_at_ms),
            signature: key.sign(manifest),
        }
    }

    /// [`BundleSignature::sign`] over a manifest too large to hold: `manifest` hands its bytes
    /// to its argument in pieces (it reads them from a file) and is called twice, as Ed25519
    /// hashes the message twice. The two readings must hash alike, or the manifest changed
    /// while it was signed and nothing is signed (an error of kind `InvalidData`).
    pub fn sign_stream(
        key: &SecretKey,
        signed_at_ms: u64,
        manifest: impl Fn(&mut dyn FnMut(&[u8])) -> std::io::Result<()>,
    ) -> std::io::Result<Self> {
        let digests: std::cell::RefCell<Vec<[u8; 32]>> = std::cell::RefCell::new(Vec::new());
        let signature = key.sign_stream(|feed| {
            let mut digest = Sha256::new();
            manifest(&mut |piece| {
                digest.update(piece);
                feed(piece);
            })?;
            digests.borrow_mut().push(digest.finalize().into());
            Ok(())
        })?;
        match digests.into_inner().as_slice() {
            [first, second] if first == second => Ok(Self {
                public_key: key.public(),
                manifest_digest: *first,
                signed_at: format_timestamp(signed_at_ms),
                signature,
            }),
            _ => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the manifest changed while it was being signed",
            )),
        }
    }

    /// The key id of the signer (first 16 hex digits of SHA-256 of its key).
    pub fn key_id(&self) -> String {
        self.public_key.key_id()
    }

    /// The file's text, in the app's header order.
    pub fn to_text(&self) -> String {
        format!(
            "Signature-Version: {SIGNATURE_VERSION}\nKey-ID: {}\nPublic-Key: {}\n\
             Manifest-Digest: {}\nSigned-At: {}\nSignature: {}\n",
            self.key_id(),
            self.public_key.to_base64(),
            hex::encode(self.manifest_digest),
            self.signed_at,
            self.signature.to_base64(),
        )
    }

    /// Parses `bundle.sig`. Requires `Signature-Version: 1`, `Public-Key`, `Manifest-Digest`,
    /// `Signed-At` and `Signature`; a `Key-ID`, when present, must be the key's. Unknown headers
    /// are ignored. Does not verify: see [`BundleSignature::verify`].
    pub fn parse(bytes: &[u8]) -> Result<Self, CodecError> {
        let headers = parse_header_lines(bytes, SIGNATURE_FILE, MAX_SIGNATURE_FILE_LEN)?;
        let get = |name: &'static str| {
            headers
                .iter()
                .find(|(_, n, _)| n == name)
                .map(|(line, _, v)| (*line, v.as_str()))
                .ok_or(CodecError::MissingHeader { name })
        };
        let (_, version) = get("Signature-Version")?;
        if version != SIGNATURE_VERSION {
            return Err(CodecError::UnsupportedSignatureVersion {
                value: version.to_string(),
            });
        }
        let public_key = parse_key(get("Public-Key")?)?;
        if let Ok((_, stated)) = get("Key-ID") {
            check_key_id(stated, &public_key)?;
        }
        let (line, digest) = get("Manifest-Digest")?;
        let mut manifest_digest = [0u8; 32];
        hex::decode_to_slice(digest, &mut manifest_digest)
            .map_err(|_| bad_header(line, "Manifest-Digest", digest, "expected 64 hex digits"))?;
        let (_, signed_at) = get("Signed-At")?;
        let (line, signature) = get("Signature")?;
        let signature = Signature::from_base64(signature).ok_or_else(|| {
            bad_header(
                line,
                "Signature",
                signature,
                "expected a base64 Ed25519 signature",
            )
        })?;
        Ok(Self {
            public_key,
            manifest_digest,
            signed_at: signed_at.to_string(),
            signature,
        })
    }

    /// Checks the manifest's bytes against `Manifest-Digest` and the signature.
    pub fn verify(&self, manifest: &[u8]) -> Result<(), CodecError> {
        let mut check = self.manifest_check();
        check.update(manifest);
        check.finish()
    }

    /// The same check as [`BundleSignature::verify`], over a manifest read in pieces.
    pub fn manifest_check(&self) -> ManifestCheck {
        ManifestCheck {
            digest: Sha256::new(),
            signature: self.public_key.verify_stream(&self.signature),
            stated: self.manifest_digest,
            key_id: self.key_id(),
        }
    }
}

/// A manifest checked against its `bundle.sig` as its bytes arrive (see
/// [`BundleSignature::manifest_check`]).
#[derive(Debug)]
pub struct ManifestCheck {
    digest: Sha256,
    signature: crate::keys::StreamingVerify,
    stated: [u8; 32],
    key_id: String,
}

impl ManifestCheck {
    /// Adds the next bytes of the manifest.
    pub fn update(&mut self, bytes: &[u8]) {
        self.digest.update(bytes);
        self.signature.update(bytes);
    }

    /// Whether the bytes given match `Manifest-Digest` and the signature.
    pub fn finish(self) -> Result<(), CodecError> {
        let actual: [u8; 32] = self.digest.finalize().into();
        if actual != self.stated {
            return Err(CodecError::ManifestDigestMismatch {
                stated: hex::encode(self.stated),
                actual: hex::encode(actual),
            });
        }
        if !self.signature.finish() {
            return Err(CodecError::BadBundleSignature {
                key_id: self.key_id,
            });
        }
        Ok(())
    }
}

/// Verifies a bundle's signature file against its manifest bytes, then parses the manifest:
/// the first steps of an import (§8). The caller checks the signer against `--expect-key`.
pub fn verify_bundle(
    signature_file: &[u8],
    manifest: &[u8],
) -> Result<(BundleSignature, Manifest), CodecError> {
    let signature = BundleSignature::parse(signature_file)?;
    signature.verify(manifest)?;
    Ok((signature, Manifest::parse(manifest)?))
}

/// Bundle-relative path of a signer's public key file: `public_keys/<key id>.pub`.
pub fn public_key_file_path(key: &PublicKey) -> String {
    format!("{PUBLIC_KEYS_DIR}/{}.pub", key.key_id())
}

/// A public key file's text: `Key-ID:` and `Public-Key:` lines.
pub fn write_public_key_file(key: &PublicKey) -> String {
    format!(
        "Key-ID: {}\nPublic-Key: {}\n",
        key.key_id(),
        key.to_base64()
    )
}

/// Parses a public key file; a `Key-ID`, when present, must be the key's.
pub fn parse_public_key_file(bytes: &[u8]) -> Result<PublicKey, CodecError> {
    let headers = parse_header_lines(bytes, "public key file", MAX_SIGNATURE_FILE_LEN)?;
    let find = |name| headers.iter().find(|(_, n, _)| n == name);
    let (line, _, value) =
        find("Public-Key").ok_or(CodecError::MissingHeader { name: "Public-Key" })?;
    let key = parse_key((*line, value))?;
    if let Some((_, _, stated)) = find("Key-ID") {
        check_key_id(stated, &key)?;
    }
    Ok(key)
}

fn parse_key((line, value): (usize, &str)) -> Result<PublicKey, CodecError> {
    // The app drops any whitespace inside the base64 text.
    let compact: String = value.split_whitespace().collect();
    let bytes = B64
        .decode(&compact)
        .map_err(|_| bad_header(line, "Public-Key", value, "expected a base64 public key"))?;
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|_| bad_header(line, "Public-Key", value, "expected 32 bytes"))?;
    PublicKey::from_bytes(bytes)
        .map_err(|_| bad_header(line, "Public-Key", value, "not an Ed25519 public key"))
}

fn check_key_id(stated: &str, key: &PublicKey) -> Result<(), CodecError> {
    let actual = key.key_id();
    if stated.eq_ignore_ascii_case(&actual) {
        Ok(())
    } else {
        Err(CodecError::KeyIdMismatch {
            stated: stated.to_string(),
            actual,
        })
    }
}

fn bad_header(line: usize, name: &str, value: &str, reason: &'static str) -> CodecError {
    CodecError::BadHeaderValue {
        line,
        name: name.to_string(),
        value: value.to_string(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const FIXTURE_MANIFEST: &[u8] =
        include_bytes!("../tests/fixtures/app-bundle-v1/manifest.sync.txt");
    const FIXTURE_SIG: &[u8] = include_bytes!("../tests/fixtures/app-bundle-v1/bundle.sig");
    const FIXTURE_PUB: &[u8] =
        include_bytes!("../tests/fixtures/app-bundle-v1/public_keys/1c2233b4c96971e2.pub");
    const FIXTURE_FILES: [(&str, &[u8]); 5] = [
        (
            "invites/invite_f00d42.sync.txt",
            include_bytes!("../tests/fixtures/app-bundle-v1/invites/invite_f00d42.sync.txt"),
        ),
        (
            "requests/request_1.sync.txt",
            include_bytes!("../tests/fixtures/app-bundle-v1/requests/request_1.sync.txt"),
        ),
        (
            "requests/request_2.sync.txt",
            include_bytes!("../tests/fixtures/app-bundle-v1/requests/request_2.sync.txt"),
        ),
        (
            "users/user_1.sync.txt",
            include_bytes!("../tests/fixtures/app-bundle-v1/users/user_1.sync.txt"),
        ),
        (
            "users/user_2.sync.txt",
            include_bytes!("../tests/fixtures/app-bundle-v1/users/user_2.sync.txt"),
        ),
    ];
    const FIXTURE_KEY: &str = "9jrsNPA1fHvtHAn7BvEPOsIQVmcIWSfhcgIaDMc+ooQ=";

    #[test]
    fn fixture_bundle_verifies() {
        let (sig, manifest) = verify_bundle(FIXTURE_SIG, FIXTURE_MANIFEST).expect("verifies");
        assert_eq!(sig.public_key, PublicKey::parse(FIXTURE_KEY).expect("key"));
        assert_eq!(sig.key_id(), "1c2233b4c96971e2");
        assert_eq!(sig.signed_at, "2026-11-21T23:38:05.084824+00:00");
        assert_eq!(manifest.entries().len(), 5);
        for (path, bytes) in FIXTURE_FILES {
            let entry = manifest.get(path).expect("listed");
            assert!(entry.matches(bytes), "{path}");
        }
        // Writing the same files gives the app's manifest byte for byte.
        let ours = Manifest::from_files(FIXTURE_FILES).expect("manifest");
        assert_eq!(ours.to_text().as_bytes(), FIXTURE_MANIFEST);
        assert_eq!(ours, manifest);
        // The signature file parses back to the same text.
        assert_eq!(sig.to_text().as_bytes(), FIXTURE_SIG);
        let key = parse_public_key_file(FIXTURE_PUB).expect("public key file");
        assert_eq!(key, sig.public_key);
        assert_eq!(write_public_key_file(&key).as_bytes(), FIXTURE_PUB);
        assert_eq!(
            public_key_file_path(&key),
            "public_keys/1c2233b4c96971e2.pub"
        );
    }

    #[test]
    fn any_changed_manifest_byte_fails() {
        let sig = BundleSignature::parse(FIXTURE_SIG).expect("parses");
        for at in 0..FIXTURE_MANIFEST.len() {
            let mut manifest = FIXTURE_MANIFEST.to_vec();
            manifest[at] ^= 0x01;
            assert!(sig.verify(&manifest).is_err(), "byte {at}");
            // Even with a digest matching the changed bytes, the signature fails.
            let mut forged = sig.clone();
            forged.manifest_digest = Sha256::digest(&manifest).into();
            assert!(matches!(
                forged.verify(&manifest),
                Err(CodecError::BadBundleSignature { .. })
            ));
        }
    }

    #[test]
    fn tampered_signature_files_fail() {
        let text = std::str::from_utf8(FIXTURE_SIG).expect("utf-8");
        let other = SecretKey::from_bytes(&[9; 32]).public();
        let cases = [
            text.replace("Signature-Version: 1", "Signature-Version: 2"),
            text.replace("Key-ID: 1c2233b4c96971e2", "Key-ID: 0000000000000000"),
            text.replace(FIXTURE_KEY, &other.to_base64()),
            text.replace("Manifest-Digest: c0", "Manifest-Digest: c1"),
            text.replace("Signature: 4y", "Signature: 5y"),
            text.replace("Signed-At", "Signed-On"),
        ];
        for case in cases {
            assert!(
                verify_bundle(case.as_bytes(), FIXTURE_MANIFEST).is_err(),
                "{case}"
            );
        }
        // Signed-At is not covered by the signature.
        let later = text.replace("2026-11-21T23:38:05.084824+00:00", "2030-01-01T00:00:00Z");
        assert!(verify_bundle(later.as_bytes(), FIXTURE_MANIFEST).is_ok());
    }

    #[test]
    fn sign_and_verify() {
        let key = SecretKey::from_bytes(&[3; 32]);
        let manifest = Manifest::from_files([
            ("users/user_2.sync.txt", &b"b"[..]),
            ("users/user_10.sync.txt", &b"a"[..]),
            ("requests/request_1.sync.txt", &b""[..]),
        ])
        .expect("manifest");
        let text = manifest.to_text();
        let paths: Vec<&str> = manifest.entries().iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "requests/request_1.sync.txt",
                "users/user_10.sync.txt",
                "users/user_2.sync.txt"
            ]
        );
        let sig = BundleSignature::sign(text.as_bytes(), &key, 1_762_178_709_000);
        assert_eq!(sig.signed_at, "2025-11-03T14:05:09Z");
        let sig_text = sig.to_text();
        let (back, parsed) = verify_bundle(sig_text.as_bytes(), text.as_bytes()).expect("ok");
        assert_eq!(back, sig);
        assert_eq!(parsed, manifest);
        assert_eq!(Manifest::parse(b"\n"), Ok(Manifest::default()));
        assert_eq!(Manifest::default().to_text(), "\n");
    }

    #[test]
    fn a_streamed_signature_file_equals_the_one_shot_one() {
        let key = SecretKey::from_bytes(&[11; 32]);
        let files: Vec<(String, Vec<u8>)> = (0..500)
            .map(|i| {
                (
                    format!("users/user_{i}.sync.txt"),
                    format!("user {i}").into_bytes(),
                )
            })
            .collect();
        let manifest = Manifest::from_files(files.iter().map(|(p, b)| (p.as_str(), b.as_slice())))
            .expect("manifest");
        let text = manifest.to_text();
        let one_shot = BundleSignature::sign(text.as_bytes(), &key, 1_762_178_709_000);
        for chunk in [1, 7, 64, 4096, text.len()] {
            let streamed = BundleSignature::sign_stream(&key, 1_762_178_709_000, |feed| {
                text.as_bytes().chunks(chunk).for_each(&mut *feed);
                Ok(())
            })
            .expect("signs");
            assert_eq!(streamed, one_shot, "pieces of {chunk} bytes");
            assert_eq!(streamed.to_text(), one_shot.to_text());
            assert!(verify_bundle(streamed.to_text().as_bytes(), text.as_bytes()).is_ok());
        }
        // A manifest that reads differently the second time is not signed.
        let reads = std::cell::Cell::new(0);
        let changed = BundleSignature::sign_stream(&key, 0, |feed| {
            reads.set(reads.get() + 1);
            feed(text.as_bytes());
            if reads.get() == 2 {
                feed(b"one more line");
            }
            Ok(())
        });
        assert!(matches!(changed, Err(e) if e.kind() == std::io::ErrorKind::InvalidData));
    }

    #[test]
    fn unsafe_manifest_paths_are_refused() {
        let digest = "0".repeat(64);
        for (path, reason) in [
            ("/etc/passwd", "absolute path"),
            ("../x.sync.txt", "`.` or `..` path segment"),
            ("users/../../x", "`.` or `..` path segment"),
            ("users/./x", "`.` or `..` path segment"),
            ("users\\x", "backslash in path"),
            ("users//x", "empty path segment"),
            ("users/", "empty path segment"),
            ("C:/x", "`:` in path (drive letter or stream name)"),
            ("users/x\u{7}", "control character in path"),
        ] {
            let line = format!("{digest}  users/ok\n{digest}  {path}\n");
            assert_eq!(
                Manifest::parse(line.as_bytes()),
                Err(CodecError::BadManifestPath {
                    line: 2,
                    path: path.to_string(),
                    reason
                }),
                "{path}"
            );
            assert!(Manifest::from_files([(path, &b""[..])]).is_err());
        }
        let long = "x".repeat(300);
        assert!(validate_bundle_path(&long).is_err());
        assert!(validate_bundle_path("").is_err());
        for (text, line) in [
            (format!("{digest}  a\n\n{digest}  b\n"), 2),
            (format!("{digest} a\n"), 1),
            (format!("{}  a\n", "g".repeat(64)), 1),
            (format!("{digest}  a\n{digest}  a\n"), 2),
        ] {
            match Manifest::parse(text.as_bytes()) {
                Err(CodecError::BadManifestLine { line: l, .. })
                | Err(CodecError::DuplicateManifestPath { line: l, .. }) => {
                    assert_eq!(l, line, "{text}")
                }
                other => panic!("{text}: {other:?}"),
            }
        }
        assert_eq!(
            Manifest::parse(b"\xff"),
            Err(CodecError::InvalidUtf8 { line: 1 })
        );
    }

    proptest! {
        #[test]
        fn manifest_round_trip(files in proptest::collection::btree_map("[a-z]{1,8}(/[a-z0-9_.]{1,12}){0,2}", proptest::collection::vec(any::<u8>(), 0..16), 0..12)) {
            let files: Vec<(&str, &[u8])> = files.iter().map(|(p, b)| (p.as_str(), b.as_slice())).collect();
            prop_assume!(files.iter().all(|(p, _)| validate_bundle_path(p).is_ok()));
            let manifest = Manifest::from_files(files.iter().copied()).expect("valid paths");
            prop_assert_eq!(Manifest::parse(manifest.to_text().as_bytes()), Ok(manifest));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = Manifest::parse(&bytes);
            let _ = BundleSignature::parse(&bytes);
            let _ = parse_public_key_file(&bytes);
            let _ = verify_bundle(&bytes, &bytes);
        }

        #[test]
        fn arbitrary_text_never_panics(text in "([0-9a-f]{0,66}[ ]{0,3}[a-z/.\\\\:]{0,10}\n?){0,6}") {
            let _ = Manifest::parse(text.as_bytes());
            let _ = BundleSignature::parse(text.as_bytes());
        }
    }
}
