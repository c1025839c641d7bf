//! Replacing the instance key (`wb sync keygen --force`).

use std::path::PathBuf;

use protocol::{PublicKey, SecretKey};

use super::InstanceError;
use crate::error::StoreError;
use crate::{Home, ReplaceStep, Store, time};

/// What a key replacement did.
#[derive(Debug)]
pub struct Rotation {
    /// The key that was replaced.
    pub previous: PublicKey,
    /// The new key (now in the key files).
    pub new: SecretKey,
    /// Where the old secret is kept: `keys/id_ed25519.replaced-<key id>`.
    pub backup: PathBuf,
    /// Local records re-signed under the new key (and withdrawn under the old one).
    pub resigned: u64,
}

/// Replaces the key of `home`. The old secret is kept first; then the store (if the home has
/// one) switches and the key files follow, so an interruption at any point leaves a home that
/// opens (see [`Home::replace_key`]). `after_step` is called after each step (a test stops
/// there, as a crash would). The caller makes sure no node runs on the home.
pub fn rotate_key(
    home: &Home,
    store: Option<&Store>,
    old: &SecretKey,
    after_step: &mut dyn FnMut(ReplaceStep) -> Result<(), StoreError>,
) -> Result<Rotation, InstanceError> {
    let new = crate::home::new_secret_key()?;
    let backup = home
        .keys_dir()
        .join(format!("id_ed25519.replaced-{}", old.public().key_id()));
    std::fs::copy(home.secret_key_path(), &backup).map_err(|source| InstanceError::KeyBackup {
        path: backup.clone(),
        source,
    })?;
    let resigned = match store {
        Some(store) => home.replace_key(store, old, &new, time::now_ms(), after_step)?,
        None => {
            home.write_key_files(&new)?;
            0
        }
    };
    Ok(Rotation {
        previous: old.public(),
        new,
        backup,
        resigned,
    })
}
