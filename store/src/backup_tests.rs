//! Tests of online backup and restore (`backup`) and of the store's format version (`format`).

use std::path::Path;

use protocol::{Entity, Scope, SecretKey, Version};

use crate::backup::{APP_ID_GAP, inspect, restore};
use crate::db::format::{STORE_FORMAT, read_format};
use crate::db::{CONTACT_ALLOWED, META, META_FORMAT};
use crate::*;

const NOW: u64 = 1_800_000_000_000;

fn key() -> SecretKey {
    SecretKey::from_bytes(&[7; 32])
}

/// A home-like folder with a store of `n` local users, belonging to `key()`.
fn store_with(dir: &Path, n: usize) -> Store {
    let store = Store::open_or_create(&dir.join("store.redb")).expect("store");
    store.set_instance_key(&key().public()).expect("key");
    for i in 0..n {
        put(&store, &i.to_string(), NOW + i as u64);
    }
    store
}

fn put(store: &Store, id: &str, now: u64) -> Version {
    store
        .update_local(&key(), Entity::User, id, now, |_| {
            Ok::<_, StoreError>(Draft {
                scope: Scope::Public,
                fields: vec![("Username".into(), format!("user{id}"))],
                ..Default::default()
            })
        })
        .expect("write")
        .record()
        .version
}

fn ids(store: &Store) -> Vec<String> {
    let mut ids: Vec<String> = store
        .list(&ListFilter::default())
        .expect("list")
        .into_iter()
        .map(|r| r.id)
        .collect();
    ids.sort();
    ids
}

#[test]
fn backup_while_in_use_then_restore_with_a_new_epoch() {
    let dir = tempfile::tempdir().expect("dir");
    let store = store_with(dir.path(), 20);
    let peer = SecretKey::from_bytes(&[9; 32]).public();
    store
        .apply_batch(&[], &{
            let mut o = ApplyOptions::new("peer", NOW);
            o.cursor = Some((
                peer,
                protocol::wire::Cursor {
                    epoch: [3; 16],
                    seq: 5,
                },
            ));
            o
        })
        .expect("cursor");
    let file = dir.path().join("b.wbbackup");
    let report = store.backup_to(&file, NOW + 100).expect("backup");
    assert_eq!((report.records, report.own_records), (20, 20));
    assert!(report.bytes > 0);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Writes go on; the backup does not see them.
    let late = put(&store, "late", NOW + 200);
    let old_epoch = store.epoch();
    let next_seq = store.last_seq().expect("seq");
    // A second backup replaces the first.
    store.backup_to(&file, NOW + 150).expect("again");
    let info = inspect(&file).expect("inspect");
    assert_eq!(info.records, 21);
    let file = dir.path().join("c.wbbackup");
    let _ = std::fs::remove_file(&file);
    drop(store);
    let first = dir.path().join("first.wbbackup");
    {
        // A backup of 20 records only: restore it.
        let store = Store::open(&dir.path().join("store.redb")).expect("open");
        store.backup_to(&first, NOW + 300).expect("backup");
    }
    let restored = restore(
        &dir.path().join("store.redb"),
        &first,
        &key().public(),
        NOW + 400,
    )
    .expect("restore");
    assert!(restored.replaced.as_ref().is_some_and(|p| p.exists()));
    assert!(restored.clock >= late, "the clock never goes back");
    let store = Store::open(&dir.path().join("store.redb")).expect("open restored");
    assert_ne!(store.epoch(), old_epoch);
    assert_eq!(store.epoch(), restored.epoch);
    assert_eq!(store.last_seq().expect("seq"), next_seq);
    assert_eq!(
        store.cursor(&peer).expect("cursor"),
        None,
        "cursors dropped"
    );
    assert!(store.recovering_from(&peer).expect("recovering"));
    store.mark_recovered(&peer).expect("mark");
    assert!(!store.recovering_from(&peer).expect("recovering"));
    assert!(store.clock().expect("clock") >= late);
    // A new local write lands above everything signed before the restore.
    assert!(put(&store, "new", NOW + 1) > late);
}

#[test]
fn restore_into_a_home_without_a_store_moves_app_ids_away() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("b.wbbackup");
    {
        let store = store_with(dir.path(), 3);
        store.backup_to(&file, NOW).expect("backup");
    }
    std::fs::remove_file(dir.path().join("store.redb")).expect("lose the store");
    let report =
        restore(&dir.path().join("store.redb"), &file, &key().public(), NOW).expect("restore");
    assert_eq!(report.replaced, None);
    let store = Store::open(&dir.path().join("store.redb")).expect("open");
    assert_eq!(ids(&store).len(), 3);
    let tx = store.read_tx().expect("tx");
    let state = tx.open_table(crate::app::STATE).expect("state");
    let next: i64 = serde_json::from_slice(
        state
            .get(crate::app::STATE_NEXT_ID)
            .expect("get")
            .expect("next id")
            .value(),
    )
    .expect("json");
    assert_eq!(next, -1 - APP_ID_GAP);
}

#[test]
fn foreign_or_corrupt_backups_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    let store_path = dir.path().join("store.redb");
    let file = dir.path().join("b.wbbackup");
    {
        let store = store_with(dir.path(), 2);
        store.backup_to(&file, NOW).expect("backup");
    }
    let before = std::fs::read(&store_path).expect("read");
    // Not a redb file.
    let junk = dir.path().join("junk");
    std::fs::write(&junk, b"not a backup at all").expect("write");
    let e = restore(&store_path, &junk, &key().public(), NOW).expect_err("junk");
    assert!(e.to_string().contains("not a usable wb backup"), "{e}");
    // Another instance's.
    let other = SecretKey::from_bytes(&[8; 32]).public();
    let e = restore(&store_path, &file, &other, NOW).expect_err("other key");
    assert!(e.to_string().contains("belongs to key id"), "{e}");
    // A redb file that is no wb store.
    let foreign = dir.path().join("foreign.redb");
    {
        let db = redb::Database::create(&foreign).expect("db");
        let tx = db.begin_write().expect("tx");
        {
            let def: redb::TableDefinition<&str, &str> = redb::TableDefinition::new("x");
            tx.open_table(def).expect("t").insert("a", "b").expect("i");
        }
        tx.commit().expect("commit");
    }
    let e = restore(&store_path, &foreign, &key().public(), NOW).expect_err("foreign");
    assert!(e.to_string().contains("does not know"), "{e}");
    // A truncated backup.
    let bytes = std::fs::read(&file).expect("read");
    let cut = dir.path().join("cut.wbbackup");
    std::fs::write(&cut, &bytes[..bytes.len() / 3]).expect("write");
    assert!(restore(&store_path, &cut, &key().public(), NOW).is_err());
    assert_eq!(std::fs::read(&store_path).expect("read"), before);
    let leftovers: Vec<String> = std::fs::read_dir(dir.path())
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("replaced") || n.contains("restoring") || n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn backup_targets_are_checked() {
    let dir = tempfile::tempdir().expect("dir");
    let store = store_with(dir.path(), 1);
    let other = dir.path().join("notes.txt");
    std::fs::write(&other, "keep me").expect("write");
    let e = store.backup_to(&other, NOW).expect_err("other file");
    assert!(e.to_string().contains("not a wb backup"), "{e}");
    assert_eq!(std::fs::read_to_string(&other).expect("read"), "keep me");
    let e = store
        .backup_to(&dir.path().join("store.redb"), NOW)
        .expect_err("itself");
    assert!(e.to_string().contains("the store itself"), "{e}");
    let e = store.backup_to(dir.path(), NOW).expect_err("folder");
    assert!(e.to_string().contains("folder"), "{e}");
    #[cfg(unix)]
    {
        let link = dir.path().join("link.wbbackup");
        std::os::unix::fs::symlink(&other, &link).expect("link");
        let e = store.backup_to(&link, NOW).expect_err("link");
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert_eq!(std::fs::read_to_string(&other).expect("read"), "keep me");
    }
    let e = store
        .backup_to(&dir.path().join("no/such/dir/b"), NOW)
        .expect_err("no folder");
    assert!(e.to_string().contains("does not exist"), "{e}");
}

#[test]
fn restore_refuses_a_store_in_use() {
    let dir = tempfile::tempdir().expect("dir");
    let store = store_with(dir.path(), 1);
    let file = dir.path().join("b.wbbackup");
    store.backup_to(&file, NOW).expect("backup");
    let e =
        restore(&dir.path().join("store.redb"), &file, &key().public(), NOW).expect_err("in use");
    assert!(matches!(e, StoreError::InUse(_)), "{e}");
}

#[test]
fn every_table_is_copied() {
    let dir = tempfile::tempdir().expect("dir");
    let store = store_with(dir.path(), 1);
    // Tables other modules create on first use.
    {
        let tx = store.write_tx().expect("tx");
        tx.open_table(crate::hub::DIRECTORY).expect("t");
        tx.open_table(crate::app::IDS).expect("t");
        tx.open_table(crate::app::IDS_REV).expect("t");
        tx.open_table(crate::app::NAMES).expect("t");
        tx.open_table(crate::app::ADOPTED).expect("t");
        tx.open_table(crate::app::STATE).expect("t");
        tx.commit().expect("commit");
    }
    let file = dir.path().join("b.wbbackup");
    let report = store.backup_to(&file, NOW).expect("backup");
    // 16, plus `digests`, `comment_index` and `comment_pending` (issue 12, state digests).
    assert_eq!(report.tables, 19);
}

/// Makes a store look like format 1: its format entry, and no `contact_allowed` table.
fn downgrade_to_format_1(path: &Path) {
    let db = redb::Database::create(path).expect("db");
    let tx = db.begin_write().expect("tx");
    tx.delete_table(CONTACT_ALLOWED).expect("drop");
    tx.open_table(META)
        .expect("meta")
        .insert(META_FORMAT, 1u32.to_be_bytes().as_slice())
        .expect("format");
    tx.commit().expect("commit");
}

fn set_format(path: &Path, format: u32) {
    let db = redb::Database::create(path).expect("db");
    let tx = db.begin_write().expect("tx");
    tx.open_table(META)
        .expect("meta")
        .insert(META_FORMAT, format.to_be_bytes().as_slice())
        .expect("format");
    tx.commit().expect("commit");
}

#[test]
fn an_older_format_is_migrated_after_a_copy() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("store.redb");
    drop(store_with(dir.path(), 3));
    downgrade_to_format_1(&path);
    assert_eq!(read_format(&path).expect("format"), Some(1));
    // Read-only opens read it as it is, and leave it so.
    {
        let store = Store::open_read_only(&path).expect("read-only");
        assert_eq!(ids(&store).len(), 3);
    }
    assert_eq!(read_format(&path).expect("format"), Some(1));
    let store = Store::open(&path).expect("open migrates");
    assert_eq!(store.format().expect("format"), STORE_FORMAT);
    {
        let tx = store.read_tx().expect("tx");
        tx.open_table(CONTACT_ALLOWED)
            .expect("created by the migration");
    }
    assert_eq!(ids(&store).len(), 3);
    let copy = dir.path().join("store.redb.format-1.bak");
    assert_eq!(read_format(&copy).expect("copy"), Some(1));
    let store_copy = Store::open_read_only(&copy).expect("copy opens");
    assert_eq!(ids(&store_copy).len(), 3);
    drop(store);
    // Opening again migrates nothing more.
    drop(Store::open(&path).expect("open"));
    let baks = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".bak"))
        })
        .count();
    assert_eq!(baks, 1);
}

#[test]
fn a_newer_format_is_refused_naming_both_and_left_unchanged() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("store.redb");
    drop(store_with(dir.path(), 1));
    set_format(&path, STORE_FORMAT + 1);
    let before = std::fs::read(&path).expect("read");
    for e in [
        Store::open(&path).expect_err("newer"),
        Store::open_or_create(&path).expect_err("newer"),
        Store::open_read_only(&path).expect_err("newer"),
    ] {
        let text = e.to_string();
        assert!(
            text.contains(&format!("format {}", STORE_FORMAT + 1))
                && text.contains(&format!("format {STORE_FORMAT}")),
            "{text}"
        );
    }
    assert_eq!(std::fs::read(&path).expect("read"), before);
    // A backup of a newer format is refused the same way.
    let e = restore(&dir.path().join("other.redb"), &path, &key().public(), NOW)
        .expect_err("newer backup");
    assert!(matches!(e, StoreError::NewerFormat { .. }), "{e}");
}

#[test]
fn own_records_coming_back_move_the_clock() {
    let dir = tempfile::tempdir().expect("dir");
    let store = store_with(dir.path(), 1);
    let mut record = store
        .get(&protocol::RecordKey {
            origin: key().public(),
            entity: Entity::User,
            id: "0".into(),
        })
        .expect("get")
        .expect("record");
    record.version = Version::new(NOW + 60_000, 3);
    record.fields = vec![("Username".into(), "changed".into())];
    record.sign(&key()).expect("sign");
    store
        .apply_batch(&[record], &ApplyOptions::new("peer", NOW + 60_000))
        .expect("apply");
    assert_eq!(store.clock().expect("clock"), Version::new(NOW + 60_000, 3));
    assert!(put(&store, "0", NOW) > Version::new(NOW + 60_000, 3));
}
