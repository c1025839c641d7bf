//! Tests of bundles on disk: streaming scans, re-exports, folders an export may not touch.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use protocol::Version;
use protocol::bundle::{
    BundleSignature, MANIFEST_FILE, Manifest, PUBLIC_KEYS_DIR, SIGNATURE_FILE,
    public_key_file_path, write_public_key_file,
};
use protocol::sync_txt::{self, RecordFileOptions};
use protocol::{Entity, Record, Scope, SecretKey};
use sha2::{Digest, Sha256};

use crate::db::{ApplyOptions, Store};
use crate::home::Home;

use super::files::{ManifestDraft, SUFFIX, bundle_files};
use super::*;
use crate::ListFilter;

const NOW: u64 = 1_800_000_000_000;

fn record(key: &SecretKey, entity: Entity, id: &str, fields: &[(&str, &str)]) -> Record {
    let mut r = Record {
        origin: key.public(),
        entity,
        id: id.to_string(),
        version: Version::new(NOW - 1_000, 0),
        scope: Scope::Public,
        deleted: false,
        fields: fields
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        body: format!("body of {id}"),
        signature: None,
    };
    r.sign(key).expect("sign");
    r
}

fn store_with_records(dir: &Path, key: &SecretKey) -> Store {
    let store = Store::open_or_create(&dir.join("store.redb")).expect("store");
    let mut records = Vec::new();
    for i in 0..20 {
        let id = i.to_string();
        records.push(record(key, Entity::User, &id, &[("Username", "u")]));
        records.push(record(
            key,
            Entity::Request,
            &id,
            &[("Title", "t"), ("Status", "open")],
        ));
        records.push(record(
            key,
            Entity::Comment,
            &id,
            &[("Request", &id), ("User-ID", "1")],
        ));
    }
    let report = store
        .apply_batch(&records, &ApplyOptions::new("test", NOW))
        .expect("apply");
    assert_eq!(report.new, 60);
    store
}

#[test]
fn scan_visits_the_wanted_entities_in_key_order() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let key = SecretKey::from_bytes(&[5; 32]);
    let store = store_with_records(tmp.path(), &key);
    let all = store
        .list(&ListFilter {
            include_deleted: true,
            ..Default::default()
        })
        .expect("list");
    let mut seen = Vec::new();
    store
        .scan(
            |e| e != "comment",
            |r| -> Result<()> {
                seen.push(r);
                Ok(())
            },
        )
        .expect("scan");
    let expected: Vec<Record> = all
        .iter()
        .filter(|r| r.entity != Entity::Comment)
        .cloned()
        .collect();
    assert_eq!(seen, expected);
    assert_eq!(store.record_count().expect("count"), 60);
}

#[test]
fn re_export_restores_torn_files_removes_stale_ones_and_keeps_the_rest() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let key = SecretKey::from_bytes(&[6; 32]);
    let store = store_with_records(tmp.path(), &key);
    let mut trusted = record(&key, Entity::User, "old", &[("Username", "o")]);
    trusted.scope = Scope::Trusted;
    trusted.sign(&key).expect("sign");
    store
        .apply_batch(&[trusted], &ApplyOptions::new("test", NOW))
        .expect("apply");
    let dir = tmp.path().join("bundle");
    let for_peer = ExportOptions {
        include_trusted: true,
        now_ms: NOW,
    };
    let first = export(&store, &key, &dir, &for_peer, &mut |_, _| {}).expect("export");
    assert_eq!((first.written, first.removed, first.files), (61, 0, 64));
    let request = dir.join("requests/request_3.sync.txt");
    let complete = fs::read(&request).expect("read");
    assert!(
        String::from_utf8_lossy(&complete).contains("body of 3"),
        "the request renders its comment"
    );
    fs::write(dir.join("README"), "ours").expect("readme");

    // A torn file (an export cut short), and the trusted record's file, stale in a public
    // export.
    fs::write(&request, &complete[..complete.len() / 2]).expect("tear");
    let opts = ExportOptions {
        include_trusted: false,
        now_ms: NOW,
    };
    let second = export(&store, &key, &dir, &opts, &mut |_, _| {}).expect("export");
    assert_eq!((second.written, second.removed, second.files), (1, 1, 63));
    assert_eq!(fs::read(&request).expect("read"), complete);
    assert!(!dir.join("users/user_old.sync.txt").exists());
    assert_eq!(fs::read(dir.join("README")).expect("readme"), b"ours");
    let leftovers: Vec<String> = bundle_files(&dir)
        .expect("files")
        .into_iter()
        .filter(|p| !p.ends_with(SUFFIX) && !p.starts_with(PUBLIC_KEYS_DIR))
        .collect();
    assert!(leftovers.is_empty(), "no temporary files: {leftovers:?}");
    let verified = verify_dir(&dir, None).expect("the bundle verifies");
    assert_eq!(verified.entities.values().sum::<u64>(), 60);
    // Read again a file at a time (what adoption does): the same 60.
    let mut again = 0;
    verified
        .for_each_file(&mut |_, records| {
            again += records.len();
            Ok(())
        })
        .expect("read again");
    assert_eq!(again, 60);
}

/// An export killed mid-way (found by the crash matrix): a first one leaves record files and no
/// `bundle.sig`, a re-export leaves new files no manifest lists and temporaries. The marker it
/// wrote first lets the next export into the folder finish the job, and it goes away with it;
/// without the marker such a folder is still refused.
#[test]
fn an_export_killed_mid_way_is_finished_by_the_next_one() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let key = SecretKey::from_bytes(&[7; 32]);
    let store = store_with_records(tmp.path(), &key);
    let opts = ExportOptions {
        include_trusted: false,
        now_ms: NOW,
    };
    let reference = tmp.path().join("reference");
    export(&store, &key, &reference, &opts, &mut |_, _| {}).expect("export");

    for over_previous in [false, true] {
        let dir = tmp.path().join(format!("cut-{over_previous}"));
        if over_previous {
            export(&store, &key, &dir, &opts, &mut |_, _| {}).expect("export");
            fs::remove_file(dir.join("users/user_1.sync.txt")).expect("unlist one");
        } else {
            fs::create_dir_all(&dir).expect("dir");
        }
        // What the kill left: the marker, a new file, a torn one, a temporary.
        mark_pending(&dir, &key.public()).expect("mark");
        fs::create_dir_all(dir.join("users")).expect("users");
        fs::write(dir.join("users/user_new.sync.txt"), "Entity: us").expect("torn");
        fs::write(dir.join("users/user_2.sync.tmp"), "Entity: user\n").expect("tmp");
        fs::write(dir.join("users/user_1.sync.txt"), "Entity: user\nID: 1\n").expect("new");
        // A temporary beside a file the next export rewrites: that write removes it first (the
        // crash matrix's export seeds 4, 17, 30, 40, 45 and 50 found the stale-file sweep then
        // failing on it).
        fs::write(dir.join("users/user_1.sync.tmp"), "Entity: us").expect("tmp beside");

        // Without the marker the folder is refused, untouched.
        fs::rename(dir.join(files::PENDING_FILE), tmp.path().join("aside")).expect("aside");
        let before = tree(&dir);
        let err = export(&store, &key, &dir, &opts, &mut |_, _| {}).expect_err("refused");
        assert!(matches!(err, BundleError::NotOurExport { .. }), "{err}");
        assert_eq!(tree(&dir), before);
        fs::rename(tmp.path().join("aside"), dir.join(files::PENDING_FILE)).expect("back");

        export(&store, &key, &dir, &opts, &mut |_, _| {}).expect("the next export finishes");
        assert!(!dir.join(files::PENDING_FILE).exists(), "{over_previous}");
        assert!(!dir.join("users/user_new.sync.txt").exists());
        assert!(!dir.join("users/user_2.sync.tmp").exists());
        assert!(!dir.join("users/user_1.sync.tmp").exists());
        let (got, want) = (tree(&dir), tree(&reference));
        let rel = |t: &BTreeMap<PathBuf, Vec<u8>>, root: &Path| -> BTreeMap<PathBuf, Vec<u8>> {
            t.iter()
                .filter(|(p, _)| !p.ends_with(SIGNATURE_FILE))
                .map(|(p, b)| {
                    (
                        p.strip_prefix(root).expect("inside").to_path_buf(),
                        b.clone(),
                    )
                })
                .collect()
        };
        assert_eq!(rel(&got, &dir), rel(&want, &reference), "{over_previous}");
        verify_dir(&dir, None).expect("the bundle verifies");
    }
}

/// Every file under `dir`, with its bytes.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.insert(path.clone(), fs::read(&path).expect("read"));
            }
        }
    }
    out
}

/// Writes a bundle the way the WhiteBalloon app does (record files without record
/// signatures), signed by `signer`.
fn app_export(dir: &Path, signer: &SecretKey) {
    let files = [
        (
            "users/user_3.sync.txt",
            "Entity: user\nID: 3\nInstance: local-instance\nSchema-Version: 1\n\
             Updated-At: 2025-11-03T14:05:09Z\nSync-Scope: public\nUsername: sam\n\
             Contact-Email: \n\n",
        ),
        (
            "requests/request_2.sync.txt",
            "Entity: request\nID: 2\nInstance: local-instance\nSchema-Version: 1\n\
             Updated-At: 2025-11-03T14:05:09Z\nSync-Scope: public\nTitle: Bike repair\n\
             Status: open\nContact-Email: \nCreated-By: 3\n\nDescription:\nRear wheel.\n",
        ),
    ];
    for (rel, text) in files {
        let path = dir.join(rel);
        fs::create_dir_all(path.parent().expect("parent")).expect("dir");
        fs::write(path, text).expect("write");
    }
    let manifest = Manifest::from_files(files.iter().map(|(p, t)| (*p, t.as_bytes())))
        .expect("manifest")
        .to_text();
    fs::write(dir.join(MANIFEST_FILE), &manifest).expect("manifest");
    let sig = BundleSignature::sign(manifest.as_bytes(), signer, NOW);
    fs::write(dir.join(SIGNATURE_FILE), sig.to_text()).expect("sig");
    let key_file = dir.join(public_key_file_path(&signer.public()));
    fs::create_dir_all(key_file.parent().expect("parent")).expect("dir");
    fs::write(key_file, write_public_key_file(&signer.public())).expect("key file");
}

#[test]
fn export_refuses_a_folder_holding_files_it_did_not_write() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let key = SecretKey::from_bytes(&[6; 32]);
    let store = store_with_records(tmp.path(), &key);
    let opts = ExportOptions {
        include_trusted: false,
        now_ms: NOW,
    };
    let refused = |dir: &Path, file: &str, why: &str| {
        let before = tree(dir);
        let err = export(&store, &key, dir, &opts, &mut |_, _| {}).expect_err("refused");
        let text = err.to_string();
        assert!(
            matches!(&err, BundleError::NotOurExport { file: f, .. } if f == file),
            "{text}"
        );
        assert!(
            text.starts_with(&format!("{}: holds files wb did not write", dir.display())),
            "{text}"
        );
        assert!(text.contains(why), "{text}");
        assert!(text.contains("never deletes or replaces files"), "{text}");
        assert_eq!(tree(dir), before, "{text}");
    };

    // The app's export, signed with the key it shares with wb; another signer's bundle.
    let app = tmp.path().join("public_sync");
    app_export(&app, &key);
    refused(
        &app,
        "requests/request_2.sync.txt",
        "carries no record signature: the WhiteBalloon app wrote it",
    );
    let other = tmp.path().join("other");
    app_export(&other, &SecretKey::from_bytes(&[7; 32]));
    let other_id = SecretKey::from_bytes(&[7; 32]).public().key_id();
    refused(
        &other,
        "manifest.sync.txt",
        &format!("is in a bundle signed by key id {other_id}, not by this instance"),
    );

    // Loose files without a signed manifest.
    let loose = tmp.path().join("loose");
    fs::create_dir_all(loose.join("users")).expect("dir");
    fs::write(loose.join("users/user_1.sync.txt"), "Entity: user\n").expect("write");
    refused(
        &loose,
        "users/user_1.sync.txt",
        "is not from a wb export: there is no bundle.sig here",
    );
    let sig = BundleSignature::sign(b"", &key, NOW).to_text();
    fs::write(loose.join(SIGNATURE_FILE), sig).expect("sig");
    refused(
        &loose,
        "users/user_1.sync.txt",
        "there is no manifest.sync.txt here",
    );
    fs::write(loose.join(MANIFEST_FILE), "changed").expect("manifest");
    refused(&loose, "manifest.sync.txt", "bundle.sig does not verify");

    // wb's own export with a file slipped in next to it.
    let ours = tmp.path().join("ours");
    export(&store, &key, &ours, &opts, &mut |_, _| {}).expect("export");
    fs::write(ours.join("users/user_x.sync.txt"), "Entity: user\n").expect("stray");
    refused(
        &ours,
        "users/user_x.sync.txt",
        "is not listed in wb's last manifest here",
    );
    fs::remove_file(ours.join("users/user_x.sync.txt")).expect("remove");
    let again = export(&store, &key, &ours, &opts, &mut |_, _| {}).expect("re-export");
    assert_eq!((again.written, again.removed), (0, 0));

    // Folders without bundle files are fine, and what they hold stays.
    let plain = tmp.path().join("plain");
    fs::create_dir_all(plain.join(".git")).expect("dir");
    fs::write(plain.join("README.md"), "notes").expect("readme");
    fs::write(plain.join(".git/HEAD"), "ref").expect("git");
    export(&store, &key, &plain, &opts, &mut |_, _| {}).expect("export");
    assert_eq!(fs::read(plain.join("README.md")).expect("readme"), b"notes");
    assert_eq!(fs::read(plain.join(".git/HEAD")).expect("git"), b"ref");
    verify_dir(&plain, None).expect("the bundle verifies");
}

/// A home of its own, initialised, with its store closed.
fn fresh_home(dir: &Path) -> Home {
    let home = Home::new(dir.join("home"));
    home.init(Some("importer")).expect("init");
    home
}

/// What a store holds, compared across an import that must change nothing.
fn contents(home: &Home) -> (Vec<Record>, u64, usize) {
    let (_, store) = home.open_read_only().expect("open");
    let records = store
        .list(&ListFilter {
            include_deleted: true,
            ..Default::default()
        })
        .expect("list");
    (
        records,
        store.log_len().expect("log"),
        store.imported_bundles().expect("bundles").len(),
    )
}

#[test]
fn a_manifest_larger_than_16_mib_is_streamed_and_imported() {
    // 17,000 copies of one signed record under paths of about 1,000 bytes: an 18 MB manifest
    // (the limit was 16 MiB, held whole), cheap to make.
    let tmp = tempfile::tempdir().expect("temp dir");
    let key = SecretKey::from_bytes(&[8; 32]);
    let r = record(&key, Entity::User, "1", &[("Username", "u")]);
    let bytes = sync_txt::write_record(
        &r,
        &RecordFileOptions {
            instance: None,
            comments: &[],
        },
    )
    .expect("write");
    let dir = tmp.path().join("bundle");
    let deep = format!(
        "other/{}/{}/{}",
        "a".repeat(250),
        "b".repeat(250),
        "c".repeat(250)
    );
    fs::create_dir_all(dir.join(&deep)).expect("dirs");
    let digest: [u8; 32] = Sha256::digest(bytes.as_bytes()).into();
    let mut digests = Vec::new();
    for i in 0..17_000 {
        let rel = format!("{deep}/{i:0>8}{}{SUFFIX}", "n".repeat(220));
        fs::write(dir.join(&rel), &bytes).expect("write");
        digests.push((rel, digest));
    }
    let manifest = Manifest::from_digests(digests).expect("manifest").to_text();
    assert!(manifest.len() > 16 * 1024 * 1024, "{}", manifest.len());
    let draft = ManifestDraft::from_text(&dir, &manifest).expect("draft");
    write_signed(&dir, &key, draft, NOW).expect("seal");

    let home = fresh_home(tmp.path());
    let verified = verify(&dir, None, None, NOW).expect("the bundle verifies");
    assert_eq!((verified.files, verified.unsigned), (17_000, 0));
    let report = import(&home, None, &verified, "big", NOW, false).expect("import");
    assert_eq!((report.new, report.unchanged), (1, 16_999));
    let (records, _, imports) = contents(&home);
    assert_eq!((records, imports), (vec![r], 1));
}

#[test]
fn a_file_changed_between_the_passes_is_refused_and_nothing_is_imported() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let key = SecretKey::from_bytes(&[9; 32]);
    let store = store_with_records(tmp.path(), &key);
    let dir = tmp.path().join("bundle");
    let opts = ExportOptions {
        include_trusted: false,
        now_ms: NOW,
    };
    export(&store, &key, &dir, &opts, &mut |_, _| {}).expect("export");
    let home = fresh_home(tmp.path());
    let before = contents(&home);
    let request = "requests/request_3.sync.txt";
    let other = fs::read(dir.join("requests/request_4.sync.txt")).expect("read");
    // A record file swapped for another valid, signed one; then the manifest itself.
    for (changed, bytes) in [(request, other), (MANIFEST_FILE, b"\n".to_vec())] {
        for dry_run in [false, true] {
            let original = fs::read(dir.join(changed)).expect("read");
            let verified = verify(&dir, None, None, NOW).expect("the bundle verifies");
            let err = import_with(&home, None, &verified, "b", NOW, dry_run, &mut || {
                fs::write(dir.join(changed), &bytes).expect("change the file");
            })
            .expect_err("a changed file is refused");
            assert!(
                matches!(&err, BundleError::ChangedDuringImport { path } if path == changed),
                "{err}"
            );
            assert!(err.to_string().contains("nothing was imported"), "{err}");
            assert_eq!(contents(&home), before, "the store is unchanged");
            fs::write(dir.join(changed), original).expect("restore");
        }
    }
    // Unchanged, the same bundle imports.
    let verified = verify(&dir, None, None, NOW).expect("the bundle verifies");
    let report = import(&home, None, &verified, "b", NOW, false).expect("import");
    assert_eq!(report.new, 60);
}

/// A store of three origins with many comments: several per request, equal `Created-At`s,
/// ids whose byte order is not their file names' order, deleted comments, comments on a
/// private request, a draft, a request of another origin and a request not held.
fn store_with_comments(dir: &Path, keys: &[SecretKey; 3]) -> Store {
    let store = Store::open_or_create(&dir.join("store.redb")).expect("store");
    let mut records = Vec::new();
    let ids = ["1", "10", "2", "a", "a-b", "a.b", "b"];
    for key in keys {
        let origin = hex::encode(key.public().as_bytes());
        for (n, request) in ids.iter().enumerate() {
            let status = if n == 3 { "draft" } else { "open" };
            let mut r = record(
                key,
                Entity::Request,
                request,
                &[("Title", "t"), ("Status", status)],
            );
            if n == 1 {
                r.scope = Scope::Private;
                r.sign(key).expect("sign");
            }
            records.push(r);
            for (m, comment) in ids.iter().enumerate() {
                let id = format!("{request}-{comment}");
                let at = format!("2026-01-0{}T00:00:00Z", 1 + (m * 5) % 3);
                let parent = if m == 4 {
                    format!("{origin}/{request}")
                } else {
                    (*request).to_string()
                };
                let mut c = record(
                    key,
                    Entity::Comment,
                    &id,
                    &[("Request", &parent), ("User-ID", "1"), ("Created-At", &at)],
                );
                if m == 6 {
                    c.deleted = true;
                    c.fields.clear();
                    c.body.clear();
                    c.sign(key).expect("sign");
                }
                records.push(c);
            }
        }
        // A comment on a request this store does not hold.
        records.push(record(
            key,
            Entity::Comment,
            "orphan",
            &[("Request", "missing"), ("User-ID", "1")],
        ));
    }
    let report = store
        .apply_batch(&records, &ApplyOptions::new("test", NOW))
        .expect("apply");
    assert_eq!(report.new as usize, records.len(), "{report:?}");
    store
}

#[test]
fn an_export_sorted_on_disk_writes_the_same_bundle_as_one_sorted_in_memory() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let keys = [
        SecretKey::from_bytes(&[21; 32]),
        SecretKey::from_bytes(&[22; 32]),
        SecretKey::from_bytes(&[23; 32]),
    ];
    let store = store_with_comments(tmp.path(), &keys);
    let opts = ExportOptions {
        include_trusted: false,
        now_ms: NOW,
    };
    let mut bundles = Vec::new();
    for (name, run_bytes) in [("memory", None), ("disk", Some(512))] {
        spill::TEST_RUN_BYTES.with(|r| r.set(run_bytes));
        let dir = tmp.path().join(name);
        let report = export(&store, &keys[0], &dir, &opts, &mut |_, _| {}).expect("export");
        spill::TEST_RUN_BYTES.with(|r| r.set(None));
        let mut report = serde_json::to_value(&report).expect("json");
        report["dir"] = serde_json::Value::Null;
        let files: BTreeMap<String, Vec<u8>> = tree(&dir)
            .into_iter()
            .map(|(path, bytes)| {
                let rel = path.strip_prefix(&dir).expect("inside");
                (rel.display().to_string(), bytes)
            })
            .collect();
        bundles.push((report, files));
    }
    let (memory, disk) = (&bundles[0], &bundles[1]);
    assert_eq!(memory.0, disk.0, "the same report");
    assert_eq!(
        memory.1.keys().collect::<Vec<_>>(),
        disk.1.keys().collect::<Vec<_>>()
    );
    assert_eq!(memory.1, disk.1, "the same bytes in every file");
    assert!(
        !memory.1.keys().any(|p| p.ends_with(".tmp")),
        "no draft left"
    );
    // What the bundle holds: every origin's public requests (not the private one, not the
    // draft) with their live comments rendered in (Created-At, id) order.
    let report = &memory.0;
    assert_eq!(report["records"]["request"], 15, "{report}");
    assert_eq!(report["skipped_private"], 3, "{report}");
    assert_eq!(report["skipped_draft"], 3, "{report}");
    // Live comments of the private and the draft request, per origin (a deleted comment no
    // longer names its request: it goes by its own scope).
    assert_eq!(report["skipped_hidden_parent"], 3 * 2 * 6, "{report}");
    let theirs = keys[1].public().key_id();
    let request = memory
        .1
        .get(&format!("requests/request_2@{theirs}.sync.txt"))
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_else(|| panic!("a request of another origin: {:?}", memory.1.keys()));
    // By Created-At (days 1, 1, 2, 2, 3, 3), then id.
    let order: Vec<usize> = ["2-1", "2-a", "2-2", "2-a.b", "2-10", "2-a-b"]
        .iter()
        .map(|id| {
            request
                .find(&format!("body of {id}\n"))
                .unwrap_or_else(|| panic!("comment {id} rendered: {request}"))
        })
        .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "{order:?}: {request}"
    );
    assert!(
        !request.contains("body of 2-b"),
        "a deleted comment is not rendered"
    );
    let verified = verify_dir(&memory_dir(tmp.path()), None).expect("verifies");
    // Every file but the manifest, bundle.sig and the key file is a record file.
    assert_eq!(verified.files as usize, memory.1.len() - 3);
}

fn memory_dir(root: &Path) -> PathBuf {
    root.join("memory")
}
