//! The peer registry, `<home>/wb_peers.txt` (§9): loading it, saving it atomically, and
//! editing it one peer at a time. The text format itself lives in [`protocol::peers`].
//!
//! Every edit reads the file, changes the list in memory, checks the whole list, and replaces
//! the file through a temporary sibling and a rename: a failed edit leaves the file as it was,
//! and a reader never sees half a file. An edit that changes nothing does not rewrite the file.
//! Two edits racing from two processes may lose one of them (the last rename wins); neither
//! can break the file.
//!
//! `<home>/sync_peers.txt` is the WhiteBalloon app's peer file (an INI layout, §14); wb used
//! that name for its registry before. wb never writes it and reads it only while
//! `wb_peers.txt` does not exist: a file in wb's format is then copied to `wb_peers.txt` once
//! (and left in place), anything else is the app's and means no peers.

use std::fs;
use std::path::PathBuf;

use protocol::PublicKey;
pub use protocol::peers::Peer;
use protocol::peers::{parse_peers, valid_addr, valid_peer_name, write_peers};

use crate::Home;
use crate::error::{Result, StoreError};

/// The registry's file name inside the home.
pub const PEERS_FILE: &str = "wb_peers.txt";

/// The WhiteBalloon app's peer file in the home, and the registry's name before wb moved it.
pub const APP_PEERS_FILE: &str = "sync_peers.txt";

impl Home {
    /// `<home>/wb_peers.txt`.
    pub fn peers_path(&self) -> PathBuf {
        self.root().join(PEERS_FILE)
    }

    /// `<home>/sync_peers.txt`: the app's file; wb reads it only to tell whose it is (and to
    /// migrate its own old registry), never writes it.
    pub fn app_peers_path(&self) -> PathBuf {
        self.root().join(APP_PEERS_FILE)
    }
}

/// What `<home>/sync_peers.txt` is, as far as wb is concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppPeersFile {
    /// There is no such file.
    Absent,
    /// Not a registry in wb's format (the app's INI file, or one without any peer): not wb's.
    App,
    /// wb's registry from before the rename, holding these peers.
    OldRegistry(Vec<Peer>),
}

/// Reads `<home>/sync_peers.txt` and tells whose it is. A file that does not parse in wb's format
/// is the app's, unless it plainly is wb's registry broken by a hand edit (it has a
/// `Public-Key:` or `Peer-ID:` line): that is an error naming the line, so that wb's peers are
/// never silently dropped. A file wb cannot read is left to the app.
pub fn app_peers_file(home: &Home) -> Result<AppPeersFile> {
    Ok(read_app_peers_file(home)?.0)
}

/// [`app_peers_file`], with the text read when it is wb's old registry.
fn read_app_peers_file(home: &Home) -> Result<(AppPeersFile, String)> {
    let path = home.app_peers_path();
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok((AppPeersFile::Absent, String::new()));
        }
        Err(e) => {
            tracing::warn!(
                path = %path.display(),
                error = %e,
                "cannot read sync_peers.txt; taking it as the WhiteBalloon app's"
            );
            return Ok((AppPeersFile::App, String::new()));
        }
    };
    match parse_peers(&text) {
        Ok(peers) if peers.is_empty() => Ok((AppPeersFile::App, String::new())),
        Ok(peers) => Ok((AppPeersFile::OldRegistry(peers), text)),
        Err(source) if looks_like_wb_registry(&text) => Err(StoreError::OldPeersFile {
            path,
            new_path: home.peers_path(),
            source,
        }),
        Err(_) => Ok((AppPeersFile::App, String::new())),
    }
}

/// wb's registry names every peer's key in `Public-Key:` lines (the app writes `public_key =`).
fn looks_like_wb_registry(text: &str) -> bool {
    text.lines().any(|l| {
        let l = l.trim_start();
        l.starts_with("Public-Key:") || l.starts_with("Peer-ID:")
    })
}

/// Reads the registry; a missing file is an empty list. Peers come sorted by name.
///
/// While `wb_peers.txt` does not exist, a `sync_peers.txt` in wb's format (the registry before
/// it was renamed) is copied to `wb_peers.txt` first, byte for byte; the old file is left as it
/// is. Every command and the node read the registry here, so whichever comes first migrates.
pub fn load_peers(home: &Home) -> Result<Vec<Peer>> {
    let path = home.peers_path();
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return migrate_peers(home),
        Err(source) => return Err(StoreError::Io { path, source }),
    };
    parse_peers(&text).map_err(|source| StoreError::PeersFile { path, source })
}

/// The registry as a long-running process reads it: parsed once per change of `wb_peers.txt`
/// (its size, modification time and inode), not once per connection. Edits apply at the next
/// read, as with [`load_peers`]; a registry that does not parse is an error at every read
/// (never an empty or stale list), so whoever decides on it fails closed.
#[derive(Debug)]
pub struct RegistryCache {
    home: Home,
    cached: std::sync::Mutex<Option<(FileStamp, std::sync::Arc<Vec<Peer>>)>>,
}

/// What tells one version of a file from the next without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileStamp {
    len: u64,
    modified: Option<std::time::SystemTime>,
    inode: u64,
}

fn stamp(path: &std::path::Path) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(path).ok()?;
    Some(FileStamp {
        len: meta.len(),
        modified: meta.modified().ok(),
        inode: meta.ino(),
    })
}

impl RegistryCache {
    pub fn new(home: Home) -> Self {
        Self {
            home,
            cached: std::sync::Mutex::new(None),
        }
    }

    /// The registry's peers (sorted by name), parsed again only if the file changed.
    pub fn load(&self) -> Result<std::sync::Arc<Vec<Peer>>> {
        let before = stamp(&self.home.peers_path());
        if let Some(before) = before
            && let Some((at, peers)) = self.lock().as_ref()
            && *at == before
        {
            return Ok(peers.clone());
        }
        let peers = std::sync::Arc::new(load_peers(&self.home)?);
        // Cached under the stamp seen before reading: a change made meanwhile has a newer
        // stamp, so the next read parses again.
        *self.lock() = before.map(|at| (at, peers.clone()));
        Ok(peers)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(FileStamp, std::sync::Arc<Vec<Peer>>)>> {
        self.cached
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The one-time move of an old registry: `sync_peers.txt` in wb's format becomes
/// `wb_peers.txt` (same bytes, written atomically); returns the registry's peers. The app's own
/// `sync_peers.txt` is not wb's: no peers, and nothing written.
fn migrate_peers(home: &Home) -> Result<Vec<Peer>> {
    let (AppPeersFile::OldRegistry(peers), text) = read_app_peers_file(home)? else {
        return Ok(Vec::new());
    };
    let (from, to) = (home.app_peers_path(), home.peers_path());
    crate::home::write_atomic(&to, text.as_bytes(), 0o644)?;
    tracing::info!(
        from = %from.display(),
        to = %to.display(),
        peers = peers.len(),
        "moved wb's peer registry to its new name; the old file is left untouched"
    );
    Ok(peers)
}

/// Checks every peer and the uniqueness of names and keys, then replaces the file atomically
/// with its deterministic text (sorted by name, fixed field order).
pub fn save_peers(home: &Home, peers: &[Peer]) -> Result<()> {
    check_peers(peers)?;
    crate::home::write_atomic(&home.peers_path(), write_peers(peers).as_bytes(), 0o644)
}

/// The peer with this name.
pub fn find_peer<'a>(peers: &'a [Peer], name: &str) -> Option<&'a Peer> {
    peers.iter().find(|p| p.name == name)
}

/// The peer with this public key.
pub fn peer_by_key<'a>(peers: &'a [Peer], key: &PublicKey) -> Option<&'a Peer> {
    peers.iter().find(|p| p.public_key == *key)
}

/// Adds a new peer to an initialised home's registry. Refuses an invalid peer, a name or key
/// already registered, and the instance's own key.
pub fn add_peer(home: &Home, peer: Peer) -> Result<()> {
    let own = home_key(home)?;
    check_peer(&peer)?;
    if peer.public_key == own {
        return Err(StoreError::OwnKeyAsPeer {
            key_id: own.key_id(),
        });
    }
    let mut peers = load_peers(home)?;
    if let Some(existing) = find_peer(&peers, &peer.name) {
        return Err(StoreError::DuplicatePeerName {
            name: existing.name.clone(),
            key_id: existing.public_key.key_id(),
        });
    }
    if let Some(existing) = peer_by_key(&peers, &peer.public_key) {
        return Err(StoreError::DuplicatePeerKey {
            key_id: existing.public_key.key_id(),
            existing: existing.name.clone(),
        });
    }
    peers.push(peer);
    save_peers(home, &peers)
}

/// Changes one peer of an initialised home's registry through `edit` and returns it as saved.
/// The result is checked like a new peer (a rename must not collide, a key must stay unique);
/// when `edit` changes nothing, the file is not rewritten.
pub fn update_peer(home: &Home, name: &str, edit: impl FnOnce(&mut Peer)) -> Result<Peer> {
    let own = home_key(home)?;
    let mut peers = load_peers(home)?;
    let index = index_of(&peers, name)?;
    let before = peers[index].clone();
    edit(&mut peers[index]);
    let after = peers[index].clone();
    if after == before {
        return Ok(after);
    }
    if after.public_key == own {
        return Err(StoreError::OwnKeyAsPeer {
            key_id: own.key_id(),
        });
    }
    save_peers(home, &peers)?;
    Ok(after)
}

/// Removes one peer from an initialised home's registry and returns it.
pub fn remove_peer(home: &Home, name: &str) -> Result<Peer> {
    home_key(home)?;
    let mut peers = load_peers(home)?;
    let index = index_of(&peers, name)?;
    let removed = peers.remove(index);
    save_peers(home, &peers)?;
    Ok(removed)
}

/// The registry belongs to an initialised home; its key is never a peer.
fn home_key(home: &Home) -> Result<PublicKey> {
    if !home.is_initialized() {
        return Err(StoreError::NotInitialized(home.root().to_path_buf()));
    }
    Ok(home.load_key()?.public())
}

fn index_of(peers: &[Peer], name: &str) -> Result<usize> {
    peers
        .iter()
        .position(|p| p.name == name)
        .ok_or_else(|| StoreError::UnknownPeer {
            name: name.to_string(),
            known: peers.iter().map(|p| p.name.clone()).collect(),
        })
}

/// What the text format can hold: a valid name, `host:port` addresses, one line of notes.
fn check_peer(peer: &Peer) -> Result<()> {
    if !valid_peer_name(&peer.name) {
        return Err(StoreError::BadPeerName(peer.name.clone()));
    }
    if let Some(addr) = peer.addrs.iter().find(|a| !valid_addr(a)) {
        return Err(StoreError::BadPeerAddr(addr.clone()));
    }
    if peer.notes.contains(['\n', '\r']) {
        return Err(StoreError::MultiLinePeerNotes);
    }
    Ok(())
}

fn check_peers(peers: &[Peer]) -> Result<()> {
    for (i, peer) in peers.iter().enumerate() {
        check_peer(peer)?;
        let earlier = &peers[..i];
        if let Some(other) = find_peer(earlier, &peer.name) {
            return Err(StoreError::DuplicatePeerName {
                name: other.name.clone(),
                key_id: other.public_key.key_id(),
            });
        }
        if let Some(other) = peer_by_key(earlier, &peer.public_key) {
            return Err(StoreError::DuplicatePeerKey {
                key_id: other.public_key.key_id(),
                existing: other.name.clone(),
            });
        }
    }
    Ok(())
}

/// Writes a temporary sibling (named by process id, so concurrent writers do not share it),
/// syncs it, and renames it over `path`; on failure the temporary file is removed.
#[cfg(test)]
mod tests {
    use super::*;
    use protocol::SecretKey;

    fn key(seed: u8) -> PublicKey {
        SecretKey::from_bytes(&[seed; 32]).public()
    }

    fn peer(seed: u8, name: &str) -> Peer {
        Peer {
            name: name.into(),
            public_key: key(seed),
            addrs: vec!["192.0.2.7:4433".into()],
            hub: false,
            trusted: false,
            revoked: false,
            follow_revocations: false,
            notes: String::new(),
        }
    }

    /// An initialised home in a temporary directory (key seed 1).
    fn home() -> (tempfile::TempDir, Home) {
        let dir = tempfile::tempdir().expect("temp dir");
        let home = Home::new(dir.path().join("home"));
        fs::create_dir_all(home.root()).expect("home dir");
        home.write_key_files(&SecretKey::from_bytes(&[1; 32]))
            .expect("keys");
        home.init(None).expect("init");
        (dir, home)
    }

    fn file_bytes(home: &Home) -> Option<Vec<u8>> {
        fs::read(home.peers_path()).ok()
    }

    /// Issue 11, item 9: the cache parses once per change, sees every edit, and fails closed.
    #[test]
    fn the_registry_cache_parses_once_per_change_and_fails_closed() {
        let (_dir, home) = home();
        add_peer(&home, peer(2, "b")).expect("add b");
        let cache = RegistryCache::new(home.clone());
        let first = cache.load().expect("load");
        let again = cache.load().expect("load");
        assert!(std::sync::Arc::ptr_eq(&first, &again), "not parsed again");
        add_peer(&home, peer(3, "c")).expect("add c");
        let edited = cache.load().expect("load");
        assert_eq!(edited.len(), 2, "the edit is seen at the next read");
        fs::write(home.peers_path(), "Name: b\nKey: nonsense\n").expect("break it");
        assert!(cache.load().is_err(), "a broken registry is an error");
        assert!(cache.load().is_err(), "every time, not a stale list");
    }

    #[test]
    fn missing_file_is_empty_and_add_writes_sorted_text() {
        let (_dir, home) = home();
        assert_eq!(home.peers_path(), home.root().join("wb_peers.txt"));
        assert_eq!(load_peers(&home).expect("load"), []);
        add_peer(&home, peer(3, "zeta")).expect("add zeta");
        add_peer(&home, peer(2, "alpha")).expect("add alpha");
        let peers = load_peers(&home).expect("load");
        let names: Vec<&str> = peers.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["alpha", "zeta"]);
        let text = fs::read_to_string(home.peers_path()).expect("read");
        assert_eq!(text, write_peers(&peers));
        assert_eq!(find_peer(&peers, "zeta"), Some(&peer(3, "zeta")));
        assert_eq!(
            peer_by_key(&peers, &key(2)).map(|p| p.name.as_str()),
            Some("alpha")
        );
        assert_eq!(find_peer(&peers, "nobody"), None);
        assert_eq!(peer_by_key(&peers, &key(9)), None);
        let leftovers: Vec<_> = fs::read_dir(home.root())
            .expect("list home")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    }

    #[test]
    fn refused_adds_change_nothing() {
        let (_dir, home) = home();
        add_peer(&home, peer(2, "river")).expect("add");
        let before = file_bytes(&home);
        let mut bad_addr = peer(4, "other");
        bad_addr.addrs.push("no-port".into());
        let mut bad_notes = peer(4, "other");
        bad_notes.notes = "two\nlines".into();
        let cases = [
            (peer(3, "river"), "a peer named river already exists"),
            (peer(2, "again"), "already registered as peer river"),
            (peer(1, "me"), "this instance's own key"),
            (peer(4, "bad name"), "invalid peer name"),
            (bad_addr, "\"no-port\""),
            (bad_notes, "one line"),
        ];
        for (p, expected) in cases {
            let err = add_peer(&home, p).expect_err(expected).to_string();
            assert!(err.contains(expected), "{err} / {expected}");
            assert_eq!(file_bytes(&home), before, "{expected}");
        }
    }

    #[test]
    fn update_changes_one_peer_and_skips_no_ops() {
        let (_dir, home) = home();
        add_peer(&home, peer(2, "river")).expect("add");
        add_peer(&home, peer(3, "lake")).expect("add");
        let saved = update_peer(&home, "river", |p| p.trusted = true).expect("trust");
        assert!(saved.trusted);
        assert!(find_peer(&load_peers(&home).expect("load"), "river").is_some_and(|p| p.trusted));

        // A no-op does not rewrite the file: a comment added by hand survives.
        let with_comment = format!(
            "# kept\n{}",
            fs::read_to_string(home.peers_path()).expect("read")
        );
        fs::write(home.peers_path(), &with_comment).expect("write");
        update_peer(&home, "river", |p| p.trusted = true).expect("no-op");
        assert_eq!(
            fs::read_to_string(home.peers_path()).expect("read"),
            with_comment
        );

        // An edit that would break the registry is refused and changes nothing.
        let before = file_bytes(&home);
        let err = update_peer(&home, "river", |p| p.name = "lake".into()).expect_err("dup name");
        assert!(err.to_string().contains("a peer named lake"), "{err}");
        let err = update_peer(&home, "river", |p| p.public_key = key(1)).expect_err("own key");
        assert!(err.to_string().contains("own key"), "{err}");
        let err = update_peer(&home, "river", |p| p.notes = "a\r\nb".into()).expect_err("notes");
        assert!(matches!(err, StoreError::MultiLinePeerNotes), "{err}");
        assert_eq!(file_bytes(&home), before);
    }

    #[test]
    fn unknown_names_list_the_known_ones() {
        let (_dir, home) = home();
        let err = update_peer(&home, "ghost", |_| {}).expect_err("no peers");
        assert!(err.to_string().contains("there are no peers yet"), "{err}");
        assert_eq!(file_bytes(&home), None);
        add_peer(&home, peer(2, "river")).expect("add");
        add_peer(&home, peer(3, "lake")).expect("add");
        let err = remove_peer(&home, "ghost").expect_err("unknown");
        assert_eq!(
            err.to_string(),
            "no peer named ghost (known peers: lake, river)"
        );
        let removed = remove_peer(&home, "river").expect("remove");
        assert_eq!(removed.name, "river");
        let names: Vec<String> = load_peers(&home)
            .expect("load")
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(names, ["lake"]);
    }

    #[test]
    fn broken_file_names_path_and_line_and_is_left_alone() {
        let (_dir, home) = home();
        add_peer(&home, peer(2, "river")).expect("add");
        let text = fs::read_to_string(home.peers_path()).expect("read");
        let broken = text.replace("Trusted: no", "Trusted: maybe");
        fs::write(home.peers_path(), &broken).expect("write");
        let line = broken
            .lines()
            .position(|l| l.starts_with("Trusted"))
            .expect("Trusted line")
            + 1;
        let err = load_peers(&home).expect_err("broken");
        let expected = format!(
            "{}: line {line}: Trusted must be yes or no, found \"maybe\"",
            home.peers_path().display()
        );
        assert_eq!(err.to_string(), expected);
        assert!(add_peer(&home, peer(3, "lake")).is_err());
        assert!(update_peer(&home, "river", |p| p.hub = true).is_err());
        assert!(remove_peer(&home, "river").is_err());
        assert_eq!(fs::read_to_string(home.peers_path()).expect("read"), broken);
    }

    #[test]
    fn edits_need_an_initialised_home() {
        let dir = tempfile::tempdir().expect("temp dir");
        let home = Home::new(dir.path().join("home"));
        let err = add_peer(&home, peer(2, "river")).expect_err("not initialised");
        assert!(err.to_string().contains("run `wb init` first"), "{err}");
        assert!(matches!(
            remove_peer(&home, "river"),
            Err(StoreError::NotInitialized(_))
        ));
        assert_eq!(load_peers(&home).expect("no file, no peers"), []);
    }

    /// The app's own peer file, as it writes it.
    const APP_INI: &str = "[riverside]\npath = ../riverside/data/public_sync\n\
                           url = https://riverside.example\ntoken = abc\n\
                           public_key = 9jrsNPA1fHvtHAn7BvEPOsIQVmcIWSfhcgIaDMc+ooQ=\n";

    #[test]
    fn the_apps_sync_peers_txt_is_not_read_as_peers_nor_written() {
        let (_dir, home) = home();
        fs::write(home.app_peers_path(), APP_INI).expect("app file");
        assert_eq!(app_peers_file(&home).expect("classify"), AppPeersFile::App);
        assert_eq!(load_peers(&home).expect("load"), []);
        assert_eq!(file_bytes(&home), None, "a read writes nothing");
        add_peer(&home, peer(2, "river")).expect("add");
        update_peer(&home, "river", |p| p.trusted = true).expect("trust");
        let peers = load_peers(&home).expect("load");
        assert_eq!(peers.len(), 1);
        assert_eq!(
            fs::read_to_string(home.peers_path()).expect("wb_peers.txt"),
            write_peers(&peers)
        );
        assert_eq!(
            fs::read_to_string(home.app_peers_path()).expect("app file"),
            APP_INI
        );
        // An empty file holds no registry to move either.
        fs::remove_file(home.peers_path()).expect("remove");
        fs::write(home.app_peers_path(), "").expect("empty");
        assert_eq!(load_peers(&home).expect("load"), []);
        assert_eq!(file_bytes(&home), None);
    }

    #[test]
    fn an_old_registry_is_copied_once_and_left_in_place() {
        let (_dir, home) = home();
        let old = format!(
            "# by hand\n{}",
            write_peers(&[peer(2, "river"), peer(3, "lake")])
        );
        fs::write(home.app_peers_path(), &old).expect("old registry");
        assert!(matches!(
            app_peers_file(&home).expect("classify"),
            AppPeersFile::OldRegistry(p) if p.len() == 2
        ));
        let names =
            |peers: Vec<Peer>| -> Vec<String> { peers.into_iter().map(|p| p.name).collect() };
        assert_eq!(names(load_peers(&home).expect("load")), ["lake", "river"]);
        assert_eq!(
            file_bytes(&home),
            Some(old.clone().into_bytes()),
            "copied byte for byte"
        );

        // From now on the old file is not read: edits go to wb_peers.txt only.
        remove_peer(&home, "lake").expect("remove");
        fs::write(home.app_peers_path(), APP_INI).expect("the app takes its name back");
        assert_eq!(names(load_peers(&home).expect("load")), ["river"]);
        assert_eq!(
            fs::read_to_string(home.app_peers_path()).expect("app file"),
            APP_INI
        );
    }

    #[test]
    fn a_broken_old_registry_is_an_error_not_an_empty_list() {
        let (_dir, home) = home();
        let old = write_peers(&[peer(2, "river")]).replace("Trusted: no", "Trusted: maybe");
        fs::write(home.app_peers_path(), &old).expect("old registry");
        let err = load_peers(&home).expect_err("broken");
        let text = err.to_string();
        assert!(matches!(err, StoreError::OldPeersFile { .. }), "{text}");
        assert!(
            text.contains("sync_peers.txt: line 6: Trusted must be yes or no"),
            "{text}"
        );
        assert!(text.contains("wb_peers.txt"), "{text}");
        assert!(add_peer(&home, peer(3, "lake")).is_err());
        assert_eq!(file_bytes(&home), None);
        assert_eq!(fs::read_to_string(home.app_peers_path()).expect("old"), old);
    }

    #[test]
    fn save_refuses_duplicates() {
        let (_dir, home) = home();
        let err = save_peers(&home, &[peer(2, "a"), peer(2, "b")]).expect_err("dup key");
        assert!(
            err.to_string().contains("already registered as peer a"),
            "{err}"
        );
        let err = save_peers(&home, &[peer(2, "a"), peer(3, "a")]).expect_err("dup name");
        assert!(err.to_string().contains("a peer named a"), "{err}");
        assert_eq!(file_bytes(&home), None);
    }
}
