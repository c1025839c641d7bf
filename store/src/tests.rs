//! Store tests: batch atomicity, log compaction, epoch persistence, §5 rules, convergence.

use proptest::prelude::*;
use protocol::{Audience, Entity, Record, RecordKey, Scope, SecretKey, Version};

use crate::*;

const NOW: u64 = 1_800_000_000_000;

fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open_or_create(&dir.path().join("store.redb")).expect("store");
    (dir, store)
}

fn signed(key: &SecretKey, id: &str, version: Version, title: &str) -> Record {
    let mut r = Record {
        origin: key.public(),
        entity: Entity::Request,
        id: id.to_string(),
        version,
        scope: Scope::Public,
        deleted: false,
        fields: vec![
            ("Title".into(), title.into()),
            ("Status".into(), "open".into()),
        ],
        body: String::new(),
        signature: None,
    };
    r.sign(key).expect("sign");
    r
}

/// Everything observable: records with their log sequence order, counters, conflicts.
fn snapshot(store: &Store) -> (Vec<Record>, Vec<Change>, u64, Vec<Conflict>) {
    let all = ListFilter {
        include_deleted: true,
        ..Default::default()
    };
    (
        store.list(&all).expect("list"),
        store.changes_since(0, usize::MAX).expect("changes"),
        store.last_seq().expect("seq"),
        store.conflicts().expect("conflicts"),
    )
}

#[test]
fn failed_batch_leaves_store_as_before() {
    let (_dir, store) = temp_store();
    let a = SecretKey::from_bytes(&[1; 32]);
    let first: Vec<Record> = (0..5)
        .map(|i| signed(&a, &i.to_string(), Version::new(NOW, 0), "t"))
        .collect();
    store
        .apply_batch(&first, &ApplyOptions::new("peer", NOW))
        .expect("apply");
    let before = (snapshot(&store), store.counters().expect("counters"));

    // An injected fault in the middle of a batch of updates and new records.
    let second: Vec<Record> = (0..10)
        .map(|i| signed(&a, &i.to_string(), Version::new(NOW + 1, 0), "t2"))
        .collect();
    let mut opts = ApplyOptions::new("peer", NOW);
    opts.fail_after = Some(6);
    assert!(matches!(
        store.apply_batch(&second, &opts),
        Err(StoreError::InjectedFault(6))
    ));
    assert_eq!(
        (snapshot(&store), store.counters().expect("counters")),
        before
    );

    // A bad signature in the middle of an all-or-nothing batch.
    let mut bad = second.clone();
    bad[4].fields[0].1 = "tampered".into();
    let mut opts = ApplyOptions::new("bundle", NOW);
    opts.all_or_nothing = true;
    let err = store.apply_batch(&bad, &opts).expect_err("rejected");
    assert!(matches!(
        err,
        StoreError::BatchRejected {
            index: 4,
            reason: Rejection::BadSignature,
            ..
        }
    ));
    assert_eq!(
        (snapshot(&store), store.counters().expect("counters")),
        before
    );

    // Without all-or-nothing, the good ones apply and the bad one is counted.
    let report = store
        .apply_batch(&bad, &ApplyOptions::new("peer", NOW))
        .expect("apply");
    assert_eq!((report.updated, report.new, report.rejected), (4, 5, 1));
    assert_eq!(store.counters().expect("c")[counter::REJECTED_SIGNATURE], 1);
}

#[test]
fn compaction_keeps_one_live_log_entry_per_key() {
    let (_dir, store) = temp_store();
    let key = SecretKey::from_bytes(&[2; 32]);
    for round in 0..20u64 {
        for id in ["a", "b", "c"] {
            store
                .update_local(&key, Entity::Request, id, NOW + round, |_| {
                    Ok::<_, StoreError>(Draft {
                        scope: Scope::Public,
                        fields: vec![
                            ("Title".into(), format!("round {round}")),
                            ("Status".into(), "open".into()),
                        ],
                        ..Default::default()
                    })
                })
                .expect("write");
        }
    }
    assert_eq!(store.log_len().expect("len"), 3);
    assert_eq!(store.last_seq().expect("seq"), 60);
    let changes = store.changes_since(0, 100).expect("changes");
    assert_eq!(changes.len(), 3);
    assert!(
        changes
            .iter()
            .all(|c| c.record.field("Title") == Some("round 19"))
    );
    assert_eq!(
        changes.iter().map(|c| c.seq).collect::<Vec<_>>(),
        vec![58, 59, 60]
    );
    assert!(store.changes_since(59, 100).expect("tail").len() == 1);
}

#[test]
fn epoch_clock_and_records_survive_reopen() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("store.redb");
    let key = SecretKey::from_bytes(&[3; 32]);
    let (epoch, clock) = {
        let store = Store::open_or_create(&path).expect("create");
        store
            .update_local(&key, Entity::User, "1", NOW, |_| {
                Ok::<_, StoreError>(Draft {
                    fields: vec![("Username".into(), "rosa".into())],
                    ..Default::default()
                })
            })
            .expect("write");
        (store.epoch(), store.clock().expect("clock"))
    };
    let store = Store::open(&path).expect("reopen");
    assert_eq!(store.epoch(), epoch);
    assert_eq!(store.clock().expect("clock"), clock);
    // The wall clock went back an hour: the next version still goes forward.
    let change = store
        .update_local(&key, Entity::User, "1", NOW - 3_600_000, |_| {
            Ok::<_, StoreError>(Draft {
                fields: vec![("Username".into(), "rosa2".into())],
                ..Default::default()
            })
        })
        .expect("write");
    assert!(change.record().version > clock);
    let other = tempfile::tempdir().expect("dir");
    let fresh = Store::open_or_create(&other.path().join("s.redb")).expect("fresh");
    assert_ne!(fresh.epoch(), epoch);
}

#[test]
fn second_open_is_refused_as_in_use() {
    let (dir, _store) = temp_store();
    let err = Store::open(&dir.path().join("store.redb")).expect_err("locked");
    assert!(matches!(err, StoreError::InUse(_)), "{err}");
}

#[test]
fn local_write_without_change_makes_no_version() {
    let (_dir, store) = temp_store();
    let key = SecretKey::from_bytes(&[4; 32]);
    let draft = || Draft {
        fields: vec![("Username".into(), "rosa".into())],
        ..Default::default()
    };
    let first = store
        .update_local(&key, Entity::User, "1", NOW, |_| {
            Ok::<_, StoreError>(draft())
        })
        .expect("write");
    assert!(matches!(first, LocalChange::Created(_)));
    let again = store
        .update_local(&key, Entity::User, "1", NOW + 5, |_| {
            Ok::<_, StoreError>(draft())
        })
        .expect("write");
    assert_eq!(again, LocalChange::Unchanged(first.record().clone()));
    assert_eq!(store.last_seq().expect("seq"), 1);
    // Invalid content is refused and changes nothing.
    let err = store
        .update_local(&key, Entity::User, "2", NOW, |_| {
            Ok::<_, StoreError>(Draft::default())
        })
        .expect_err("missing Username");
    assert!(err.to_string().contains("Username"), "{err}");
    assert_eq!(store.last_seq().expect("seq"), 1);
}

#[test]
fn rules_of_section_5() {
    let (_dir, store) = temp_store();
    let a = SecretKey::from_bytes(&[5; 32]);
    let opts = ApplyOptions::new("peer", NOW);
    let v1 = signed(&a, "1", Version::new(NOW, 0), "one");
    let v2 = signed(&a, "1", Version::new(NOW, 1), "two");
    let v2b = signed(&a, "1", Version::new(NOW, 1), "two-bis");
    let future = signed(&a, "2", Version::new(NOW + 11 * 60_000, 0), "later");
    let near_future = signed(&a, "3", Version::new(NOW + 9 * 60_000, 0), "soon");
    let mut unsigned = v1.clone();
    unsigned.signature = None;

    let r = store
        .apply_batch(std::slice::from_ref(&v2), &opts)
        .expect("apply");
    assert_eq!(r.new, 1);
    let r = store
        .apply_batch(std::slice::from_ref(&v1), &opts)
        .expect("apply");
    assert_eq!(r.stale, 1);
    let r = store
        .apply_batch(std::slice::from_ref(&v2), &opts)
        .expect("apply");
    assert_eq!(r.unchanged, 1);
    let r = store
        .apply_batch(std::slice::from_ref(&v2b), &opts)
        .expect("apply");
    assert_eq!(r.conflicts, 1);
    let winner = if v2b.content_hash() > v2.content_hash() {
        &v2b
    } else {
        &v2
    };
    assert_eq!(store.get(&v2.key()).expect("get").as_ref(), Some(winner));
    assert_eq!(store.conflicts().expect("log").len(), 1);
    let r = store
        .apply_batch(&[future, near_future, unsigned.clone()], &opts)
        .expect("apply");
    assert_eq!((r.rejected, r.new), (2, 1));
    // An app bundle's signer may bring unsigned records of its own origin.
    let mut bundle = ApplyOptions::new("bundle", NOW);
    bundle.unsigned_origin = Some(a.public());
    let other = SecretKey::from_bytes(&[6; 32]);
    let mut foreign = signed(&other, "9", Version::new(NOW, 0), "x");
    foreign.signature = None;
    let r = store
        .apply_batch(&[unsigned, foreign], &bundle)
        .expect("apply");
    assert_eq!((r.stale, r.rejected), (1, 1));
}

/// Every (origin, id, counter, content) combination, signed once: 2 × 3 × 3 × 3 versions.
fn pool() -> &'static [Record] {
    static POOL: std::sync::OnceLock<Vec<Record>> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        let keys = [
            SecretKey::from_bytes(&[7; 32]),
            SecretKey::from_bytes(&[8; 32]),
        ];
        let mut out = Vec::new();
        for key in &keys {
            for id in 0..3 {
                for counter in 0..3 {
                    for content in 0..3 {
                        out.push(signed(
                            key,
                            &id.to_string(),
                            Version::new(NOW, counter),
                            &format!("content {content}"),
                        ));
                    }
                }
            }
        }
        out
    })
}

fn dataset() -> impl Strategy<Value = Vec<Record>> {
    // Few keys, few versions, several contents per version: plenty of conflicts and staleness.
    prop::collection::vec(any::<prop::sample::Index>(), 1..24).prop_map(|picks| {
        picks
            .iter()
            .map(|i| pool()[i.index(pool().len())].clone())
            .collect()
    })
}

proptest! {
    /// Any two orders of the same versions (with duplicates) converge to the same records,
    /// and every key holds the largest-hash content of its highest version.
    #[test]
    fn convergence(set in dataset(), seed_a in any::<u64>(), seed_b in any::<u64>(), dups in prop::collection::vec(any::<prop::sample::Index>(), 0..8)) {
        let mut all = set.clone();
        for d in &dups {
            all.push(set[d.index(set.len())].clone());
        }
        let shuffle = |seed: u64| {
            let mut v = all.clone();
            let mut s = seed | 1;
            for i in (1..v.len()).rev() {
                s ^= s << 13; s ^= s >> 7; s ^= s << 17;
                v.swap(i, (s % (i as u64 + 1)) as usize);
            }
            v
        };
        let a = Store::in_memory().expect("store");
        let b = Store::in_memory().expect("store");
        let opts = ApplyOptions::new("peer", NOW);
        // Apply in uneven batches to also vary transaction boundaries.
        for chunk in shuffle(seed_a).chunks(3) { a.apply_batch(chunk, &opts).expect("apply"); }
        for chunk in shuffle(seed_b).chunks(5) { b.apply_batch(chunk, &opts).expect("apply"); }
        let filter = ListFilter { include_deleted: true, ..Default::default() };
        let (ra, rb) = (a.list(&filter).expect("list"), b.list(&filter).expect("list"));
        prop_assert_eq!(&ra, &rb);
        for r in &ra {
            let best = set.iter().filter(|x| x.key() == r.key()).max_by_key(|x| (x.version, x.content_hash())).expect("present");
            prop_assert_eq!(r, best);
        }
        // Every logged conflict names the larger hash as winner.
        for c in a.conflicts().expect("c").iter().chain(b.conflicts().expect("c").iter()) {
            prop_assert!(c.winner_hash > c.loser_hash);
        }
    }

    /// When every version of a key shares one counter, the conflict logs are identical too.
    #[test]
    fn convergence_of_conflict_logs(contents in prop::collection::vec(0u8..4, 1..8), seed in any::<u64>()) {
        let key = SecretKey::from_bytes(&[9; 32]);
        let set: Vec<Record> = contents.iter().map(|c| signed(&key, "x", Version::new(NOW, 0), &format!("c{c}"))).collect();
        let mut rev = set.clone();
        rev.rotate_left((seed as usize) % set.len());
        rev.reverse();
        let a = Store::in_memory().expect("store");
        let b = Store::in_memory().expect("store");
        let opts = ApplyOptions::new("peer", NOW);
        for r in &set { a.apply_batch(std::slice::from_ref(r), &opts).expect("apply"); }
        for r in &rev { b.apply_batch(std::slice::from_ref(r), &opts).expect("apply"); }
        let losers = |s: &Store| s.conflicts().expect("c").into_iter().map(|c| c.loser_hash).collect::<std::collections::BTreeSet<_>>();
        prop_assert_eq!(losers(&a), losers(&b));
        prop_assert_eq!(snapshot(&a).0, snapshot(&b).0);
    }
}

#[test]
fn rekey_moves_local_records_and_withdraws_old_ones() {
    let (_dir, store) = temp_store();
    let (old, new) = (
        SecretKey::from_bytes(&[10; 32]),
        SecretKey::from_bytes(&[11; 32]),
    );
    for id in ["1", "2"] {
        store
            .update_local(&old, Entity::User, id, NOW, |_| {
                Ok::<_, StoreError>(Draft {
                    scope: Scope::Public,
                    fields: vec![("Username".into(), format!("u{id}"))],
                    ..Default::default()
                })
            })
            .expect("write");
    }
    assert_eq!(store.rekey(&old, &new, NOW).expect("rekey"), 2);
    let moved = store
        .list(&ListFilter {
            origin: Some(new.public()),
            ..Default::default()
        })
        .expect("list");
    assert_eq!(moved.len(), 2);
    assert!(
        moved
            .iter()
            .all(|r| r.verify().is_ok() && r.scope == Scope::Public)
    );
    let gone = store
        .list(&ListFilter {
            origin: Some(old.public()),
            include_deleted: true,
            ..Default::default()
        })
        .expect("list");
    // The old key's records are withdrawn; the one live record left of it is the succession
    // naming the new key (issue 15).
    let (succession, withdrawn): (Vec<_>, Vec<_>) = gone
        .iter()
        .partition(|r| r.entity == protocol::succession::entity());
    assert!(withdrawn.iter().all(|r| r.deleted && r.verify().is_ok()));
    assert_eq!(succession.len(), 1);
    let s = protocol::succession::Succession::from_record(succession[0]).expect("a succession");
    assert_eq!((s.predecessor, s.successor), (old.public(), new.public()));
    assert_eq!(store.log_len().expect("len"), 5);
}

/// A key replacement stopped after each of its steps (as a crash would) leaves a home that
/// opens, with key files and store that belong together: before the store switched, the old
/// key; after, the new one.
#[test]
fn interrupted_key_replacement_leaves_a_home_that_opens() {
    for (stop, survives_as_new) in [
        (ReplaceStep::Staged, false),
        (ReplaceStep::StoreSwitched, true),
    ] {
        let dir = tempfile::tempdir().expect("temp dir");
        let home = Home::new(dir.path().join("home"));
        let (_, old, store) = home.init(None).expect("init");
        store
            .update_local(&old, Entity::User, "1", NOW, |_| {
                Ok::<_, StoreError>(Draft {
                    scope: Scope::Trusted,
                    fields: vec![("Username".into(), "ann".into())],
                    ..Default::default()
                })
            })
            .expect("write");
        let new = home::new_secret_key().expect("key");
        let err = home
            .replace_key(&store, &old, &new, NOW, &mut |step| {
                if step == stop {
                    Err(StoreError::Corrupt {
                        path: dir.path().to_path_buf(),
                        what: "stopped here by the test".into(),
                    })
                } else {
                    Ok(())
                }
            })
            .expect_err("stopped");
        assert!(err.to_string().contains("stopped here"), "{err}");
        drop(store);

        let (key, store) = home.open().unwrap_or_else(|e| panic!("{stop:?}: {e}"));
        let expected = if survives_as_new { &new } else { &old };
        assert_eq!(key.public(), expected.public(), "{stop:?}");
        assert_eq!(store.instance_key().expect("key"), Some(expected.public()));
        assert!(
            !home.staged_secret_key_path().exists(),
            "{stop:?}: journal left"
        );
        let live = store
            .list(&ListFilter {
                origin: Some(expected.public()),
                ..Default::default()
            })
            .expect("list");
        assert_eq!(
            live.len(),
            1,
            "{stop:?}: the user is live under the home's key"
        );
        assert!(live[0].verify().is_ok());
        let meta = std::fs::read_to_string(home.metadata_path()).expect("metadata");
        assert!(
            meta.contains(&expected.public().key_id()),
            "{stop:?}: {meta}"
        );
    }
}

/// After a key replacement, the old key's withdrawals of trusted records go to trusted
/// audiences (they are ours), never to others; nothing else of the old key goes anywhere.
#[test]
fn old_key_trusted_withdrawals_go_to_trusted_peers() {
    let (_dir, store) = temp_store();
    let (old, new) = (
        SecretKey::from_bytes(&[10; 32]),
        SecretKey::from_bytes(&[11; 32]),
    );
    let peer = SecretKey::from_bytes(&[12; 32]).public();
    store
        .update_local(&old, Entity::User, "1", NOW, |_| {
            Ok::<_, StoreError>(Draft {
                scope: Scope::Trusted,
                fields: vec![("Username".into(), "ann".into())],
                ..Default::default()
            })
        })
        .expect("write");
    store.rekey(&old, &new, NOW).expect("rekey");
    assert_eq!(store.former_keys().expect("former"), vec![old.public()]);
    let sent = |trusted: bool| -> Vec<(String, bool)> {
        let out = store
            .outgoing(
                &new.public(),
                Some(&peer),
                Audience { trusted },
                0,
                100,
                1000,
            )
            .expect("outgoing");
        // What a pull sends as it is stored: each record's sealed form, withdrawals too.
        let sealed: Vec<Vec<u8>> = out.records.iter().map(Record::to_sealed_bytes).collect();
        assert_eq!(out.sealed, sealed);
        out.records
            .iter()
            .map(|r| (r.origin.key_id(), r.deleted))
            .collect()
    };
    let (old_id, new_id) = (old.public().key_id(), new.public().key_id());
    // The old key's withdrawal and the new key's copy go to trusted peers only; the succession
    // (public, signed by the old key) to everyone.
    assert_eq!(
        sent(true),
        vec![
            (old_id.clone(), true),
            (new_id, false),
            (old_id.clone(), false)
        ]
    );
    assert_eq!(sent(false), vec![(old_id, false)]);
}

/// Issue 11 item 12: our records carry `Contact-*` values out only when the operator allowed
/// them: a write without leave is refused, and a record that holds them without leave (written
/// before this was enforced) is withheld from sync and exports alike.
#[test]
fn own_contact_data_leaves_only_when_allowed() {
    let (dir, store) = temp_store();
    let key = SecretKey::from_bytes(&[20; 32]);
    store.set_instance_key(&key.public()).expect("key");
    let put = |id: &str, allow: bool| {
        store.local_batch(&key, |batch| {
            batch.allow_contact(allow);
            batch.update(Entity::User, id, NOW, |_| {
                Ok::<_, StoreError>(Draft {
                    scope: Scope::Public,
                    fields: vec![
                        ("Username".into(), id.into()),
                        ("Contact-Email".into(), format!("{id}@example.org")),
                    ],
                    ..Default::default()
                })
            })
        })
    };
    let before = snapshot(&store);
    let err = put("refused", false).expect_err("contact data without leave");
    assert!(matches!(err, StoreError::ContactData { .. }), "{err}");
    assert!(err.to_string().contains("Contact-Email"), "{err}");
    assert_eq!(
        snapshot(&store),
        before,
        "a refused write changed the store"
    );

    put("allowed", true).expect("allowed");
    put("legacy", true).expect("allowed");
    // As if written before the rule: the leave is not on record.
    let legacy = RecordKey {
        origin: key.public(),
        entity: Entity::User,
        id: "legacy".into(),
    };
    {
        let tx = store.write_tx().expect("tx");
        tx.open_table(crate::db::CONTACT_ALLOWED)
            .expect("table")
            .remove(crate::db::key_bytes(&legacy).as_slice())
            .expect("remove");
        tx.commit().expect("commit");
    }
    let out = store
        .outgoing(
            &key.public(),
            None,
            Audience { trusted: false },
            0,
            100,
            1000,
        )
        .expect("outgoing");
    let ids: Vec<&str> = out.records.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, vec!["allowed"]);
    assert_eq!(out.filtered, 1);

    let export = dir.path().join("export");
    let report = bundles::export(
        &store,
        &key,
        &export,
        &bundles::ExportOptions {
            include_trusted: false,
            now_ms: NOW,
        },
        &mut |_, _| {},
    )
    .expect("export");
    assert_eq!(report.skipped_contact, 1);
    assert_eq!(report.records.get("user"), Some(&1));
}

#[test]
fn sealed_batches_check_and_apply_like_records() {
    // Large enough to be checked on several threads, with a bad signature and a future-dated
    // version among good ones: verdicts stay in order, and what is stored is the same.
    let a = SecretKey::from_bytes(&[1; 32]);
    let mut records: Vec<Record> = (0..700)
        .map(|i| signed(&a, &i.to_string(), Version::new(NOW - 1_000 + i, 0), "t"))
        .collect();
    records[123].fields[0].1 = "tampered".into();
    records[456].version = Version::new(NOW + 3_600_000, 0);
    records[456].sign(&a).expect("sign");
    let opts = ApplyOptions::new("peer", NOW);
    let sealed: Vec<Vec<u8>> = records.iter().map(Record::to_sealed_bytes).collect();
    let from_sealed = CheckedBatch::check_sealed(sealed.clone(), &opts).expect("decodes");
    let from_records = CheckedBatch::check(records.clone(), &opts);
    assert_eq!(from_sealed.records(), from_records.records());
    assert_eq!(from_sealed.first_rejection().map(|(i, ..)| i), Some(123));
    let (_d1, s1) = temp_store();
    let (_d2, s2) = temp_store();
    let r1 = s1.apply_checked(&from_sealed, &opts).expect("apply");
    let r2 = s2.apply_checked(&from_records, &opts).expect("apply");
    assert_eq!((r1.new, r1.rejected), (698, 2));
    assert_eq!(r1, r2);
    assert_eq!(snapshot(&s1), snapshot(&s2));
    assert_eq!(
        s1.counters().expect("counters"),
        s2.counters().expect("counters")
    );
    assert_eq!(s1.last_seq().expect("seq"), 698);

    // Bytes that are no record fail the whole batch, naming the index.
    let mut bad = sealed;
    bad[500].truncate(10);
    assert_eq!(
        CheckedBatch::check_sealed(bad, &opts)
            .map(|_| ())
            .map_err(|(i, _)| i),
        Err(500)
    );

    // Dropping records keeps the rest aligned with their verdicts.
    let mut batch = from_sealed;
    let dropped = batch.retain(|r| r.id != "123" && r.id != "7");
    assert_eq!(dropped, 2);
    assert_eq!(batch.len(), 698);
    assert_eq!(
        batch.first_rejection().map(|(_, k, _)| k.id),
        Some("456".into())
    );
}

/// A record deleted while public and written again with a narrower scope (partition run, seed
/// 117 of `WB_TEST_PARTITION_SEEDS`): a peer that held the public version and missed the
/// deletion must still be told, so those who may not see the new version get a withdrawal.
#[test]
fn a_deleted_public_record_written_again_narrower_is_withdrawn_from_the_others() {
    let (_dir, store) = temp_store();
    let key = SecretKey::from_bytes(&[7; 32]);
    let peer = SecretKey::from_bytes(&[8; 32]).public();
    let write = |now: u64, scope: Scope, deleted: bool| {
        store
            .update_local(&key, Entity::User, "u4", now, |_| {
                Ok::<_, StoreError>(Draft {
                    scope,
                    deleted,
                    fields: if deleted {
                        vec![]
                    } else {
                        vec![("Username".into(), "u4".into())]
                    },
                    body: String::new(),
                })
            })
            .expect("write")
    };
    write(NOW, Scope::Public, false);
    // The peer pulled this far: it holds the public version.
    let seen = store.last_seq().expect("seq");
    write(NOW + 1, Scope::Public, true);
    let untrusted_gets = || {
        store
            .outgoing(
                &key.public(),
                Some(&peer),
                Audience { trusted: false },
                seen,
                100,
                1000,
            )
            .expect("outgoing")
            .records
    };
    // Written again as trusted, then narrowed once more to private: each time, an untrusted
    // peer gets a withdrawal carrying the widest scope the record had.
    for (now, scope) in [(NOW + 2, Scope::Trusted), (NOW + 3, Scope::Private)] {
        write(now, scope, false);
        let sent = untrusted_gets();
        assert_eq!(
            sent.len(),
            1,
            "an untrusted peer gets a withdrawal: {sent:?}"
        );
        assert!(
            sent[0].deleted && sent[0].fields.is_empty(),
            "{:?}",
            sent[0]
        );
        assert_eq!(sent[0].scope, Scope::Public, "the widest scope it had");
    }
}

/// Several checked batches in one transaction (a pull whose store fell behind its checks): the
/// same store as applying them one by one, one commit, the cursor written once; a rejection
/// with `all_or_nothing` is indexed across the batches and writes nothing; an injected fault
/// in the last batch undoes the earlier ones too.
#[test]
fn batches_applied_together_equal_one_by_one_in_one_commit() {
    let a = SecretKey::from_bytes(&[1; 32]);
    let peer = SecretKey::from_bytes(&[2; 32]).public();
    let batches: Vec<Vec<Record>> = (0..3)
        .map(|b| {
            (0..4)
                .map(|i| {
                    // Batch 2 updates two records of batch 0 and repeats one of batch 1.
                    let (id, v, t) = match (b, i) {
                        (2, 0) => ("0-1".to_string(), NOW + 1, "newer"),
                        (2, 1) => ("0-2".to_string(), NOW + 1, "newer"),
                        (2, 2) => ("1-3".to_string(), NOW, "t"),
                        _ => (format!("{b}-{i}"), NOW, "t"),
                    };
                    signed(&a, &id, Version::new(v, 0), t)
                })
                .collect()
        })
        .collect();
    let cursor = |seq| {
        Some((
            peer,
            protocol::wire::Cursor {
                epoch: [7; 16],
                seq,
            },
        ))
    };
    let opts = |seq| {
        let mut o = ApplyOptions::new("peer", NOW);
        o.cursor = cursor(seq);
        o
    };
    let checked: Vec<CheckedBatch> = batches
        .iter()
        .map(|b| CheckedBatch::check(b.clone(), &opts(0)))
        .collect();

    let (_d1, one_by_one) = temp_store();
    for (i, batch) in checked.iter().enumerate() {
        one_by_one
            .apply_checked(batch, &opts(i as u64 + 1))
            .expect("apply");
    }
    let (_d2, together) = temp_store();
    let before = together.write_transactions();
    let all: Vec<&CheckedBatch> = checked.iter().collect();
    let report = together.apply_checked_all(&all, &opts(3)).expect("apply");
    assert_eq!(together.write_transactions() - before, 1, "one commit");
    assert_eq!(
        (report.new, report.updated, report.unchanged),
        (9, 2, 1),
        "{report:?}"
    );
    assert_eq!(snapshot(&together), snapshot(&one_by_one));
    assert_eq!(
        together.counters().expect("counters"),
        one_by_one.counters().expect("counters")
    );
    assert_eq!(
        together.cursor(&peer).expect("cursor"),
        cursor(3).map(|c| c.1)
    );

    // A bad signature in the second batch: its index counts the first batch's records.
    let mut bad = batches[1].clone();
    bad[2].fields[0].1 = "tampered".into();
    let mut strict = opts(9);
    strict.all_or_nothing = true;
    let bad = CheckedBatch::check(bad, &strict);
    let (_d3, fresh) = temp_store();
    let empty = (snapshot(&fresh), fresh.counters().expect("counters"));
    let err = fresh
        .apply_checked_all(&[&checked[0], &bad], &strict)
        .expect_err("rejected");
    assert!(
        matches!(
            err,
            StoreError::BatchRejected {
                index: 6,
                reason: Rejection::BadSignature,
                ..
            }
        ),
        "{err:?}"
    );
    // A fault in the last batch: nothing of the first ones is written either.
    let mut failing = opts(9);
    failing.fail_after = Some(9);
    assert!(matches!(
        fresh.apply_checked_all(&all, &failing),
        Err(StoreError::InjectedFault(9))
    ));
    assert_eq!((snapshot(&fresh), fresh.counters().expect("c")), empty);
    assert_eq!(fresh.cursor(&peer).expect("cursor"), None);
}
