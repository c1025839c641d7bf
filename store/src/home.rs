//! The home directory (§2, §3): key files in the WhiteBalloon app's layout and the store file.
//!
//! ```text
//! <home>/keys/id_ed25519        base64 of the raw 32-byte secret, one line, mode 0600
//! <home>/keys/id_ed25519.pub    base64 of the raw 32-byte public key, one line
//! <home>/keys/key_metadata.json {"key_id": ..., "created_at": ...}
//! <home>/store.redb             the redb store
//! ```

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use protocol::{PublicKey, SecretKey};

use crate::error::{Result, StoreError};
use crate::random::random_bytes;
use crate::{Store, time};

/// What `init` found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitOutcome {
    /// A new identity and store were created.
    Created,
    /// An existing key pair (made by the WhiteBalloon app) was adopted; the store was created.
    AdoptedKeys,
    /// The home was already initialised; its identity was kept.
    Existing,
}

/// A wb home directory.
#[derive(Debug, Clone)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn keys_dir(&self) -> PathBuf {
        self.root.join("keys")
    }

    pub fn secret_key_path(&self) -> PathBuf {
        self.keys_dir().join("id_ed25519")
    }

    pub fn public_key_path(&self) -> PathBuf {
        self.keys_dir().join("id_ed25519.pub")
    }

    /// The new secret key of a key replacement in progress (`wb sync keygen --force`): its
    /// journal. See [`Home::replace_key`].
    pub fn staged_secret_key_path(&self) -> PathBuf {
        self.keys_dir().join("id_ed25519.next")
    }

    pub fn metadata_path(&self) -> PathBuf {
        self.keys_dir().join("key_metadata.json")
    }

    pub fn store_path(&self) -> PathBuf {
        self.root.join("store.redb")
    }

    /// True once `init` has run: the store exists.
    pub fn is_initialized(&self) -> bool {
        self.store_path().exists()
    }

    /// Creates the home, or keeps what is there: an existing key pair (also one made by the
    /// app) is never overwritten. Sets the instance name when one is given.
    pub fn init(&self, name: Option<&str>) -> Result<(InitOutcome, SecretKey, Store)> {
        let had_store = self.is_initialized();
        let had_keys = self.has_any_key_file();
        if had_store && !had_keys {
            return Err(StoreError::StoreWithoutKeys(self.store_path()));
        }
        let key = if had_keys {
            let key = self.load_key()?;
            restrict_secret_mode(&self.secret_key_path())?;
            if !self.metadata_path().exists() {
                self.write_metadata(&key.public())?;
            }
            key
        } else {
            let key = new_secret_key()?;
            self.write_key_files(&key)?;
            key
        };
        let store = Store::open_or_create(&self.store_path())?;
        if !had_store {
            // The store holds private records: owner-only, like the secret key.
            restrict_secret_mode(&self.store_path())?;
        }
        check_store_key(&store, &key, true)?;
        if let Some(name) = name {
            store.set_name(name)?;
        }
        let outcome = match (had_keys, had_store) {
            (false, _) => InitOutcome::Created,
            (true, false) => InitOutcome::AdoptedKeys,
            (true, true) => InitOutcome::Existing,
        };
        Ok((outcome, key, store))
    }

    /// Opens the store of an initialised home, with raw access to it (no key check).
    pub fn open_store(&self) -> Result<Store> {
        if !self.is_initialized() {
            return Err(StoreError::NotInitialized(self.root.clone()));
        }
        Store::open(&self.store_path())
    }

    /// Opens an initialised home: its key and its store, checked to belong together.
    pub fn open(&self) -> Result<(SecretKey, Store)> {
        if !self.is_initialized() {
            return Err(StoreError::NotInitialized(self.root.clone()));
        }
        if !self.has_any_key_file() {
            return Err(StoreError::StoreWithoutKeys(self.store_path()));
        }
        let key = self.load_key()?;
        let store = Store::open(&self.store_path())?;
        check_store_key(&store, &key, false)?;
        Ok((key, store))
    }

    fn has_any_key_file(&self) -> bool {
        self.secret_key_path().exists() || self.public_key_path().exists()
    }

    /// Opens an initialised home read-only: its key and its store, which stays byte-for-byte
    /// unchanged (see [`Store::open_read_only`]).
    pub fn open_read_only(&self) -> Result<(SecretKey, Store)> {
        if !self.is_initialized() {
            return Err(StoreError::NotInitialized(self.root.clone()));
        }
        if !self.has_any_key_file() {
            return Err(StoreError::StoreWithoutKeys(self.store_path()));
        }
        let key = self.load_key()?;
        let store = Store::open_read_only(&self.store_path())?;
        check_store_key(&store, &key, false)?;
        Ok((key, store))
    }

    /// Reads and checks the key pair: both files present, base64 of 32 bytes, matching. A key
    /// replacement that was interrupted is first completed or undone (see
    /// [`Home::replace_key`]).
    pub fn load_key(&self) -> Result<SecretKey> {
        self.settle_key_replacement()?;
        self.read_key()
    }

    /// Reads and checks the key pair as [`Home::load_key`] does, without settling an
    /// interrupted replacement: it never writes (`wb doctor`).
    pub fn read_key(&self) -> Result<SecretKey> {
        let (secret_path, public_path) = (self.secret_key_path(), self.public_key_path());
        match (secret_path.exists(), public_path.exists()) {
            (true, true) => {}
            (false, false) => return Err(StoreError::NotInitialized(self.root.clone())),
            (true, false) => return Err(StoreError::HalfKeyPair(secret_path)),
            (false, true) => return Err(StoreError::HalfKeyPair(public_path)),
        }
        let secret = SecretKey::from_bytes(&read_key_file(&secret_path)?);
        let public_bytes = read_key_file(&public_path)?;
        if secret.public().as_bytes() != &public_bytes {
            return Err(StoreError::MismatchedKeys {
                secret: secret_path,
                public: public_path,
            });
        }
        Ok(secret)
    }

    /// Writes a new key pair and its metadata, replacing any existing files (callers confirm).
    /// The secret is written to a temporary file created with mode 0600, then renamed.
    pub fn write_key_files(&self, key: &SecretKey) -> Result<()> {
        let dir = self.keys_dir();
        create_private_dir(&dir)?;
        let public = key.public();
        write_atomic(
            &self.secret_key_path(),
            format!("{}\n", B64.encode(key.to_bytes())).as_bytes(),
            0o600,
        )?;
        write_atomic(
            &self.public_key_path(),
            format!("{}\n", public.to_base64()).as_bytes(),
            0o644,
        )?;
        self.write_metadata(&public)
    }

    /// Replaces the instance key `old` of this home's `store` with `new`, crash-safe: every
    /// step can be interrupted and the next command that opens the home finds a home whose key
    /// files and store belong together.
    ///
    /// 1. The new secret is written to `keys/id_ed25519.next` (the journal; owner-only, synced).
    /// 2. The store is re-signed under the new key in one transaction ([`Store::rekey`]), which
    ///    also records the new key as the store's: this commit is the switch.
    /// 3. The public key and metadata files are rewritten, and the journal is renamed over
    ///    `keys/id_ed25519`.
    ///
    /// Interrupted before 2 commits, the store still names the old key and the journal is
    /// dropped; after, the store names the journal's key and step 3 is done again. That is
    /// what [`Home::load_key`] does first, so every command settles it. `after_step` is called
    /// after steps 1 and 2 (tests stop there, as a crash would); an error it returns stops the
    /// replacement as it is. The caller backs up the old secret first. Returns how many
    /// records were re-signed.
    pub fn replace_key(
        &self,
        store: &Store,
        old: &SecretKey,
        new: &SecretKey,
        now_ms: u64,
        after_step: &mut dyn FnMut(ReplaceStep) -> Result<()>,
    ) -> Result<u64> {
        let staged = self.staged_secret_key_path();
        write_atomic(
            &staged,
            format!("{}\n", B64.encode(new.to_bytes())).as_bytes(),
            0o600,
        )?;
        sync_dir(&self.keys_dir())?;
        after_step(ReplaceStep::Staged)?;
        let moved = store.rekey(old, new, now_ms)?;
        after_step(ReplaceStep::StoreSwitched)?;
        self.install_staged_key(new)?;
        Ok(moved)
    }

    /// Step 3 of [`Home::replace_key`]: the key files become `new`'s, the journal goes last.
    fn install_staged_key(&self, new: &SecretKey) -> Result<()> {
        let public = new.public();
        write_atomic(
            &self.public_key_path(),
            format!("{}\n", public.to_base64()).as_bytes(),
            0o644,
        )?;
        self.write_metadata(&public)?;
        let staged = self.staged_secret_key_path();
        let secret = self.secret_key_path();
        fs::rename(&staged, &secret).map_err(io_err(&secret))?;
        sync_dir(&self.keys_dir())
    }

    /// Completes or undoes a key replacement that was interrupted (see [`Home::replace_key`]):
    /// the store decides. Does nothing (one `stat`) when no replacement is pending; otherwise
    /// opens the store for writing once, even for a command that then reads only.
    fn settle_key_replacement(&self) -> Result<()> {
        let staged = self.staged_secret_key_path();
        if fs::symlink_metadata(&staged).is_err() {
            return Ok(());
        }
        let new = SecretKey::from_bytes(&read_key_file(&staged)?);
        // Opened for writing: the process that was interrupted may have left the store for
        // redb to repair (a killed process does), which a read-only open refuses to do.
        let store_key = if self.is_initialized() {
            Store::open(&self.store_path())?.instance_key()?
        } else {
            None
        };
        if store_key == Some(new.public()) {
            tracing::warn!(
                key_id = %new.public().key_id(),
                "completing a key replacement that was interrupted after the store switched"
            );
            self.install_staged_key(&new)
        } else {
            tracing::warn!(
                key_id = %new.public().key_id(),
                "dropping a key replacement that was interrupted before the store switched"
            );
            fs::remove_file(&staged).map_err(io_err(&staged))
        }
    }

    fn write_metadata(&self, public: &PublicKey) -> Result<()> {
        // The app's layout: json.dumps(indent=2) + "\n".
        let meta = serde_json::json!({
            "key_id": public.key_id(),
            "created_at": protocol::time::format_timestamp_micros(time::now_ms()),
        });
        let text = serde_json::to_string_pretty(&meta).unwrap_or_default() + "\n";
        write_atomic(&self.metadata_path(), text.as_bytes(), 0o644)
    }
}

/// The steps of [`Home::replace_key`] after which it can be stopped (as a crash would).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplaceStep {
    /// The new secret is in the journal; the store and key files are the old key's.
    Staged,
    /// The store is re-signed and names the new key; the key files are still the old key's.
    StoreSwitched,
}

/// The store records the key it belongs to; a home whose key files were swapped is refused.
/// `record_if_missing` records the key in a store that has none yet (a new or adopted home).
fn check_store_key(store: &Store, key: &SecretKey, record_if_missing: bool) -> Result<()> {
    match store.instance_key()? {
        Some(k) if k == key.public() => Ok(()),
        Some(k) => Err(StoreError::WrongKeyForStore {
            store: store.path().to_path_buf(),
            store_key_id: k.key_id(),
            key_id: key.public().key_id(),
        }),
        None if record_if_missing => store.set_instance_key(&key.public()),
        None => Ok(()),
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn read_key_file(path: &Path) -> Result<[u8; 32]> {
    let text = fs::read_to_string(path).map_err(io_err(path))?;
    let bad = |reason: &str| StoreError::BadKeyFile {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    let bytes = B64
        .decode(text.trim())
        .map_err(|_| bad("not base64 (expected one line of base64 of 32 raw key bytes)"))?;
    bytes
        .try_into()
        .map_err(|_| bad("does not hold 32 key bytes"))
}

/// A file that must be owner-only (an adopted secret key file: the app writes it with the
/// default umask; a new store) becomes so.
fn restrict_secret_mode(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = fs::metadata(path).map_err(io_err(path))?;
        if meta.permissions().mode() & 0o077 != 0 {
            fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(io_err(path))?;
        }
    }
    Ok(())
}

/// Creates `dir` and missing parents owner-only (mode 0700); existing ones keep their mode.
pub(crate) fn create_private_dir(dir: &Path) -> Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(io_err(dir))
}

/// Writes `bytes` to a temporary sibling (created with `mode`), syncs it and renames it over
/// `path`, so readers see the old file or the new one, never a half-written one. The temporary
/// file is removed if anything fails.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let written = (|| {
        let mut options = fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
        #[cfg(not(unix))]
        let _ = mode;
        let mut file = options.open(&tmp).map_err(io_err(&tmp))?;
        file.write_all(bytes).map_err(io_err(&tmp))?;
        file.sync_all().map_err(io_err(&tmp))?;
        fs::rename(&tmp, path).map_err(io_err(path))
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// Makes the renames in `dir` durable (on Unix, by syncing the directory).
fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// A fresh instance key from the system's random source.
pub fn new_secret_key() -> Result<SecretKey> {
    Ok(SecretKey::from_bytes(&random_bytes::<32>()?))
}
