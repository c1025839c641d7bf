//! Errors of the `.sync.txt` and bundle codecs: each names the line, header or path at fault.

/// Why a `.sync.txt` file, a manifest, a `bundle.sig` or a public key file could not be read or
/// written. Line numbers are 1-based and count `\n`-terminated lines of the file; the caller adds
/// the file name.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CodecError {
    #[error("{what} too large: {len} bytes (limit {max})")]
    TooLarge {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("line {line}: invalid UTF-8")]
    InvalidUtf8 { line: usize },
    #[error("line {line}: malformed header line: {reason}")]
    MalformedHeader { line: usize, reason: &'static str },
    #[error("line {line}: no empty line after the headers (reached the end of the file)")]
    MissingSeparator { line: usize },
    #[error("line {line}: header {name:?} given twice")]
    DuplicateHeader { line: usize, name: String },
    #[error("missing header {name}")]
    MissingHeader { name: &'static str },
    #[error("line {line}: header {name}: invalid value {value:?}: {reason}")]
    BadHeaderValue {
        line: usize,
        name: String,
        value: String,
        reason: &'static str,
    },
    #[error("line {line}: unsupported Schema-Version {value:?} (this version reads 1)")]
    UnsupportedSchemaVersion { line: usize, value: String },
    #[error("line {line}: request body: {reason}")]
    BadBody { line: usize, reason: &'static str },
    #[error("cannot write header {name:?}: {reason}")]
    Unwritable { name: String, reason: &'static str },
    #[error("manifest line {line}: {reason}")]
    BadManifestLine { line: usize, reason: &'static str },
    #[error("unsafe bundle path {path:?}: {reason}")]
    UnsafePath { path: String, reason: &'static str },
    #[error("manifest line {line}: unsafe path {path:?}: {reason}")]
    BadManifestPath {
        line: usize,
        path: String,
        reason: &'static str,
    },
    #[error("manifest line {line}: {path:?} is listed twice")]
    DuplicateManifestPath { line: usize, path: String },
    #[error("unsupported Signature-Version {value:?} (this version reads 1)")]
    UnsupportedSignatureVersion { value: String },
    #[error("Key-ID {stated} does not match the public key, whose key id is {actual}")]
    KeyIdMismatch { stated: String, actual: String },
    #[error("manifest digest mismatch: bundle.sig says {stated}, the manifest hashes to {actual}")]
    ManifestDigestMismatch { stated: String, actual: String },
    #[error("the bundle signature does not verify with key {key_id}")]
    BadBundleSignature { key_id: String },
}
