//! Air-gapped bundles on disk (§8): export a store's shareable records as a signed directory of
//! `.sync.txt` files, and verify and import such a directory, all or nothing.
//!
//! The formats belong to `protocol::sync_txt` and `protocol::bundle`; this module decides which
//! records go out, walks directories, and applies what comes in through [`Store::apply_batch`].

use std::path::PathBuf;

use protocol::{CodecError, PublicKey};

use crate::db::ApplyOptions;
use crate::error::{Rejection, StoreError};

mod export;
mod files;
mod import;
mod spill;
mod verify;

pub use export::{ExportOptions, ExportReport, export};
pub(crate) use files::{RecordFiles, check_export_dir, clear_pending, mark_pending, write_signed};
pub use import::{ImportReport, import, import_with};
pub use verify::{ExpectedSigner, VerifiedBundle, VerifiedDir, verify, verify_dir};

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

/// How both passes of an import check and apply a bundle's records.
fn apply_options(signer: &PublicKey, now_ms: u64) -> ApplyOptions {
    let mut opts = ApplyOptions::new(format!("bundle {}", signer.key_id()), now_ms);
    opts.all_or_nothing = true;
    opts.unsigned_origin = Some(*signer);
    opts
}

#[cfg(test)]
mod tests;
