//! State digests (issue 12, item 3): the maintained digests against a full scan, and what
//! each kind covers.

use proptest::prelude::*;
use protocol::wire::DigestClass;
use protocol::{Entity, PublicKey, Record, Scope, SecretKey, Version};

use crate::digest::{Kind, entry_hash};
use crate::*;

pub(crate) const NOW: u64 = 1_800_000_000_000;

pub(crate) fn temp_store(me: &SecretKey) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open_or_create(&dir.path().join("store.redb")).expect("store");
    store.set_instance_key(&me.public()).expect("instance key");
    (dir, store)
}

fn fields(entity: &Entity, request: &str) -> Vec<(String, String)> {
    let f = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    };
    match entity {
        Entity::User => f(&[("Username", "u")]),
        Entity::Request => f(&[("Title", "t"), ("Status", "open")]),
        _ => f(&[("Request", request), ("User-ID", "1")]),
    }
}

pub(crate) fn put(
    store: &Store,
    key: &SecretKey,
    entity: Entity,
    id: &str,
    scope: Scope,
    request: &str,
) {
    store
        .update_local::<StoreError>(key, entity.clone(), id, NOW, |_| {
            Ok(Draft {
                scope,
                deleted: false,
                fields: fields(&entity, request),
                body: String::new(),
            })
        })
        .expect("local write");
}

pub(crate) fn incoming(
    key: &SecretKey,
    entity: Entity,
    id: &str,
    scope: Scope,
    ms: u64,
    deleted: bool,
    request: &str,
) -> Record {
    let mut r = Record {
        origin: key.public(),
        entity: entity.clone(),
        id: id.to_string(),
        version: Version::new(ms, 0),
        scope,
        deleted,
        fields: if deleted {
            Vec::new()
        } else {
            fields(&entity, request)
        },
        body: String::new(),
        signature: None,
    };
    r.sign(key).expect("sign");
    r
}

/// Applies `origin`'s public user `id`, received from it.
fn public_user_from(store: &Store, origin: &SecretKey, id: &str) {
    let r = incoming(origin, Entity::User, id, Scope::Public, NOW, false, "");
    store
        .apply_batch(&[r], &ApplyOptions::new("c", NOW))
        .expect("apply");
}

/// What `from`'s store sends `to` (as trusted or not) from the start of its log.
fn sent(store: &Store, from: &SecretKey, to: &SecretKey, trusted: bool) -> Vec<Record> {
    store
        .outgoing(
            &from.public(),
            Some(&to.public()),
            protocol::Audience { trusted },
            0,
            100,
            100,
        )
        .expect("outgoing")
        .records
}

fn assert_matches_scan(store: &Store) {
    assert_eq!(
        store.digests().expect("digests"),
        store.digests_by_scan().expect("scan")
    );
}

#[test]
fn a_rescope_moves_a_record_between_classes_and_its_withdrawal_counts_nowhere() {
    let me = SecretKey::from_bytes(&[1; 32]);
    let (_dir, store) = temp_store(&me);
    let o = *me.public().as_bytes();
    put(&store, &me, Entity::User, "1", Scope::Public, "");
    let d = store.digests().expect("digests");
    let public = store
        .get(&protocol::RecordKey {
            origin: me.public(),
            entity: Entity::User,
            id: "1".into(),
        })
        .expect("get")
        .expect("held");
    assert_eq!(d.get(&o, Kind::HeldPublic).count, 1);
    assert_eq!(d.get(&o, Kind::HeldPublic).sum, entry_hash(&public));
    assert_eq!(d.get(&o, Kind::ToUntrusted), d.get(&o, Kind::HeldPublic));
    assert_eq!(
        d.get(&o, Kind::ToTrustedPublic),
        d.get(&o, Kind::HeldPublic)
    );

    // Narrowed to trusted: trusted peers get the record, the others its withdrawal, which
    // counts nowhere (format 2: live records only), as the tombstone an untrusted peer then
    // holds counts nowhere in its digests.
    put(&store, &me, Entity::User, "1", Scope::Trusted, "");
    let d = store.digests().expect("digests");
    assert_eq!(d.get(&o, Kind::HeldPublic).count, 0);
    assert_eq!(d.get(&o, Kind::HeldTrusted).count, 1);
    assert_eq!(
        d.get(&o, Kind::ToTrustedTrusted),
        d.get(&o, Kind::HeldTrusted)
    );
    assert_eq!(d.get(&o, Kind::ToTrustedPublic).count, 0);
    assert!(
        store.withdrawal(&public.key()).expect("read").is_some(),
        "the withdrawal is still sent"
    );
    assert_eq!(d.get(&o, Kind::ToUntrusted).count, 0);
    assert_matches_scan(&store);

    // Private: nothing leaves as itself; nothing counts.
    put(&store, &me, Entity::User, "1", Scope::Private, "");
    let d = store.digests().expect("digests");
    assert_eq!(d.get(&o, Kind::HeldTrusted).count, 0);
    assert_eq!(d.get(&o, Kind::ToUntrusted).count, 0);
    assert_eq!(d.get(&o, Kind::ToTrustedPublic).count, 0);
    assert_matches_scan(&store);
}

/// A store whose digest tables are of format 1 (tombstones counted) rebuilds them at its next
/// read-write open.
#[test]
fn digests_of_an_older_format_are_rebuilt_at_open() {
    let me = SecretKey::from_bytes(&[1; 32]);
    let (dir, store) = temp_store(&me);
    put(&store, &me, Entity::User, "1", Scope::Public, "");
    let path = store.path().to_path_buf();
    let kept = store.digests().expect("digests");
    assert_ne!(kept, StoreDigests::default());
    store.set_digests_format_for_test(1).expect("mark format 1");
    assert_eq!(store.digests().expect("digests"), StoreDigests::default());
    drop(store);
    let reopened = Store::open(&path).expect("open");
    assert_eq!(reopened.digests_format().expect("format"), Some(3));
    assert_eq!(reopened.digests().expect("digests"), kept);
    drop(dir);
}

/// A private record never changes what a peer is offered or told.
#[test]
fn private_records_change_no_offer() {
    let me = SecretKey::from_bytes(&[1; 32]);
    let peer = SecretKey::from_bytes(&[2; 32]).public();
    let (_dir, store) = temp_store(&me);
    put(&store, &me, Entity::User, "1", Scope::Public, "");
    let before = store.digests().expect("digests");
    put(&store, &me, Entity::User, "2", Scope::Private, "");
    put(&store, &me, Entity::Request, "3", Scope::Private, "");
    let after = store.digests().expect("digests");
    for trusted in [false, true] {
        assert_eq!(before.offer(&peer, trusted), after.offer(&peer, trusted));
        assert_eq!(
            before.held_report(&me.public(), &peer, &[]),
            after.held_report(&me.public(), &peer, &[])
        );
    }
}

/// A comment goes where its request goes: a public comment of another origin on our trusted
/// request is offered to trusted peers only, and to everyone once the request is public.
#[test]
fn comments_follow_their_request_into_and_out_of_the_offers() {
    let me = SecretKey::from_bytes(&[1; 32]);
    let other = SecretKey::from_bytes(&[2; 32]);
    let (_dir, store) = temp_store(&me);
    let o = *other.public().as_bytes();
    put(&store, &me, Entity::Request, "q", Scope::Trusted, "");
    let reference = format!("{}/q", me.public().to_hex());
    let comment = incoming(
        &other,
        Entity::Comment,
        "c",
        Scope::Public,
        NOW,
        false,
        &reference,
    );
    store
        .apply_batch(&[comment], &ApplyOptions::new("peer", NOW))
        .expect("apply");
    let d = store.digests().expect("digests");
    assert_eq!(d.get(&o, Kind::HeldPublic).count, 1);
    assert_eq!(d.get(&o, Kind::ToUntrusted).count, 0);
    assert_eq!(d.get(&o, Kind::ToTrustedPublic).count, 1);
    assert_matches_scan(&store);
    put(&store, &me, Entity::Request, "q", Scope::Public, "");
    let d = store.digests().expect("digests");
    assert_eq!(d.get(&o, Kind::ToUntrusted).count, 1);
    assert_matches_scan(&store);
    put(&store, &me, Entity::Request, "q", Scope::Private, "");
    let d = store.digests().expect("digests");
    assert_eq!(d.get(&o, Kind::ToUntrusted).count, 0);
    assert_eq!(d.get(&o, Kind::ToTrustedPublic).count, 0);
    assert_matches_scan(&store);
}

/// How many records of origin `o` the store offers an untrusted peer.
fn untrusted_offer(store: &Store, o: &[u8; 32]) -> u64 {
    store
        .digests()
        .expect("digests")
        .get(o, Kind::ToUntrusted)
        .count
}

/// Entries in `comment_index` and in `comment_pending`.
fn comment_entries(store: &Store) -> (u64, u64) {
    use redb::ReadableTableMetadata;
    let tx = store.read_tx().expect("tx");
    let index = tx.open_table(crate::db::COMMENT_INDEX).expect("index");
    // Dropped (version-2 tables taken as they are) until the next write opens it.
    let pending = match tx.open_table(crate::db::COMMENT_PENDING) {
        Ok(t) => t.len().expect("len"),
        Err(redb::TableError::TableDoesNotExist(_)) => 0,
        Err(e) => panic!("pending: {e}"),
    };
    (index.len().expect("len"), pending)
}

pub(crate) fn comment_on(from: &SecretKey, id: &str, request: &str) -> Record {
    incoming(
        from,
        Entity::Comment,
        id,
        Scope::Public,
        NOW,
        false,
        request,
    )
}

/// Comments written are appended to `comment_pending`, never inserted into `comment_index`
/// one by one (each insert rewrote an index page per comment and commit); the first lookup
/// of a request's comments folds them in, and keeps only the comments that still point at it.
#[test]
fn comments_wait_in_pending_until_a_request_needs_them() {
    let me = SecretKey::from_bytes(&[1; 32]);
    let other = SecretKey::from_bytes(&[2; 32]);
    let (_dir, store) = temp_store(&me);
    let o = *other.public().as_bytes();
    put(&store, &me, Entity::Request, "q", Scope::Public, "");
    put(&store, &me, Entity::Request, "r", Scope::Public, "");
    let q = format!("{}/q", me.public().to_hex());
    let r = format!("{}/r", me.public().to_hex());
    let opts = ApplyOptions::new("peer", NOW);
    let batch = [
        comment_on(&other, "1", &q),
        comment_on(&other, "2", &q),
        comment_on(&other, "3", &r),
    ];
    store.apply_batch(&batch, &opts).expect("apply");
    assert_eq!(comment_entries(&store), (0, 3));
    // Comment 2 moves to request r while its entry on q is still pending: that entry is stale.
    let mut moved = incoming(
        &other,
        Entity::Comment,
        "2",
        Scope::Public,
        NOW + 1,
        false,
        &r,
    );
    moved.sign(&other).expect("sign");
    store.apply_batch(&[moved], &opts).expect("apply");
    assert_eq!(comment_entries(&store), (0, 4));
    assert_eq!(untrusted_offer(&store, &o), 3);

    // Hiding q looks up its comments: everything pending is folded in, the stale entry of
    // comment 2 on q dropped, and only comment 1 stops being offered.
    put(&store, &me, Entity::Request, "q", Scope::Private, "");
    assert_eq!(comment_entries(&store), (3, 0));
    let d = store.digests().expect("digests");
    assert_eq!(d.get(&o, Kind::HeldPublic).count, 3);
    assert_eq!(d.get(&o, Kind::ToUntrusted).count, 2);
    assert_matches_scan(&store);
    put(&store, &me, Entity::Request, "r", Scope::Private, "");
    assert_eq!(untrusted_offer(&store, &o), 0);
    assert_matches_scan(&store);
    put(&store, &me, Entity::Request, "q", Scope::Public, "");
    assert_eq!(untrusted_offer(&store, &o), 1);
    assert_matches_scan(&store);
}

/// A pending table whose next sequence would be the largest one is folded first, so no entry
/// is ever written over.
#[test]
fn a_full_pending_sequence_folds_instead_of_overwriting() {
    let me = SecretKey::from_bytes(&[1; 32]);
    let other = SecretKey::from_bytes(&[2; 32]);
    let (_dir, store) = temp_store(&me);
    let o = *other.public().as_bytes();
    put(&store, &me, Entity::Request, "q", Scope::Public, "");
    {
        let tx = store.write_tx().expect("tx");
        tx.open_table(crate::db::COMMENT_PENDING)
            .expect("pending")
            .insert(u64::MAX - 1, b"a stale hint".as_slice())
            .expect("insert");
        tx.commit().expect("commit");
    }
    let q = format!("{}/q", me.public().to_hex());
    let opts = ApplyOptions::new("peer", NOW);
    for id in ["1", "2"] {
        store
            .apply_batch(&[comment_on(&other, id, &q)], &opts)
            .expect("apply");
    }
    // The old entry went to `comment_index`; the two comments are pending from 0.
    assert_eq!(comment_entries(&store), (1, 2));
    put(&store, &me, Entity::Request, "q", Scope::Private, "");
    assert_eq!(untrusted_offer(&store, &o), 0);
    assert_eq!(comment_entries(&store), (3, 0));
    assert_matches_scan(&store);
}

/// Digest tables of version 2 kept every comment in `comment_index`: they are taken as they
/// are, and whatever `comment_pending` still holds (left by a newer wb before an older one
/// rebuilt the tables without it) is dropped, not folded in.
#[test]
fn version_2_digest_tables_are_kept_and_a_leftover_pending_table_dropped() {
    let me = SecretKey::from_bytes(&[1; 32]);
    let other = SecretKey::from_bytes(&[2; 32]);
    let (dir, store) = temp_store(&me);
    let o = *other.public().as_bytes();
    put(&store, &me, Entity::Request, "q", Scope::Public, "");
    let q = format!("{}/q", me.public().to_hex());
    let opts = ApplyOptions::new("peer", NOW);
    store
        .apply_batch(&[comment_on(&other, "1", &q)], &opts)
        .expect("apply");
    // Folded, as a version-2 wb keeps it; then a leftover pending entry and version 2.
    put(&store, &me, Entity::Request, "q", Scope::Trusted, "");
    put(&store, &me, Entity::Request, "q", Scope::Public, "");
    assert_eq!(comment_entries(&store), (1, 0));
    {
        let tx = store.write_tx().expect("tx");
        tx.open_table(crate::db::COMMENT_PENDING)
            .expect("pending")
            .insert(7, b"not an index key".as_slice())
            .expect("insert");
        tx.open_table(crate::db::META)
            .expect("meta")
            .insert(crate::db::META_DIGESTS, [2u8].as_slice())
            .expect("version");
        tx.commit().expect("commit");
    }
    let path = store.path().to_path_buf();
    let kept = store.digests().expect("digests");
    drop(store);
    let store = Store::open(&path).expect("open");
    assert_eq!(store.digests_format().expect("format"), Some(3));
    assert_eq!(comment_entries(&store), (1, 0));
    assert_eq!(store.digests().expect("digests"), kept);
    put(&store, &me, Entity::Request, "q", Scope::Private, "");
    assert_eq!(untrusted_offer(&store, &o), 0);
    assert_matches_scan(&store);
    drop(dir);
}

/// A store made before the digest tables builds them once, when opened for writing.
#[test]
fn a_store_without_digests_builds_them_on_open() {
    let me = SecretKey::from_bytes(&[1; 32]);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.redb");
    {
        let store = Store::open_or_create(&path).expect("store");
        store.set_instance_key(&me.public()).expect("key");
        put(&store, &me, Entity::User, "1", Scope::Public, "");
        put(&store, &me, Entity::Request, "2", Scope::Trusted, "");
        let tx = store.write_tx().expect("tx");
        tx.delete_table(crate::db::DIGESTS).expect("drop");
        tx.delete_table(crate::db::COMMENT_INDEX).expect("drop");
        tx.open_table(crate::db::META)
            .expect("meta")
            .remove(crate::db::META_DIGESTS)
            .expect("forget");
        tx.commit().expect("commit");
    }
    // Read-only: computed by a scan, nothing written.
    let ro = Store::open_read_only(&path).expect("read-only");
    let scanned = ro.digests().expect("digests");
    assert_eq!(
        scanned.get(me.public().as_bytes(), Kind::HeldPublic).count,
        1
    );
    drop(ro);
    let store = Store::open(&path).expect("open");
    assert_eq!(store.digests().expect("digests"), scanned);
    assert_matches_scan(&store);
}

/// Two stores that exchanged everything compare equal; one more record makes them differ,
/// naming the origin and class.
#[test]
fn between_names_the_class_that_differs() {
    let a = SecretKey::from_bytes(&[1; 32]);
    let b = SecretKey::from_bytes(&[2; 32]);
    let (_da, sa) = temp_store(&a);
    let (_db, sb) = temp_store(&b);
    put(&sa, &a, Entity::User, "1", Scope::Public, "");
    put(&sa, &a, Entity::User, "2", Scope::Trusted, "");
    sb.apply_batch(&sent(&sa, &a, &b, true), &ApplyOptions::new("a", NOW))
        .expect("apply");
    let (da, db) = (sa.digests().expect("a"), sb.digests().expect("b"));
    let outcome = digest::between(&da, &a.public(), true, &db, &b.public(), true);
    assert_eq!(outcome.differences_total, 0, "{:?}", outcome.differences);
    // Served as untrusted, b should not hold the trusted record: a's offer has no trusted
    // class and b reports none of it as missing.
    put(&sa, &a, Entity::User, "3", Scope::Public, "");
    let da = sa.digests().expect("a");
    let outcome = digest::between(&da, &a.public(), true, &db, &b.public(), true);
    assert_eq!(outcome.differences_total, 1, "{:?}", outcome.differences);
    let d = &outcome.differences[0];
    assert_eq!(
        (
            d.origin.as_str(),
            d.class.as_str(),
            d.direction.as_str(),
            d.offered,
            d.held
        ),
        (
            a.public().to_base64().as_str(),
            DigestClass::Public.as_str(),
            "outgoing",
            2,
            1
        )
    );
}

/// With a hub (`compare_within`): an origin the hub does not take is left out of the
/// comparison, kept in `not_taken`, and a later change to it leaves the fingerprint as it was;
/// a change to a compared origin does not.
#[test]
fn an_origin_left_out_of_a_comparison_neither_differs_nor_changes_the_fingerprint() {
    let (a, hub, c) = (
        SecretKey::from_bytes(&[1; 32]),
        SecretKey::from_bytes(&[2; 32]),
        SecretKey::from_bytes(&[3; 32]),
    );
    let (_da, sa) = temp_store(&a);
    put(&sa, &a, Entity::User, "1", Scope::Public, "");
    public_user_from(&sa, &c, "c1");
    // The hub holds a's record only, and says so for a, not for c.
    let (_dh, sh) = temp_store(&hub);
    let of_a: Vec<Record> = sent(&sa, &a, &hub, false)
        .into_iter()
        .filter(|r| r.origin == a.public())
        .collect();
    sh.apply_batch(&of_a, &ApplyOptions::new("a", NOW))
        .expect("apply");
    let (ours, theirs) = (sa.digests().expect("a"), sh.digests().expect("hub"));
    let (a_offer, _) = digest::entries(&ours.offer(&hub.public(), false), usize::MAX);
    let mut report = theirs.held_report(&hub.public(), &a.public(), &a_offer);
    report.retain(|(o, _), _| o != c.public().as_bytes());
    let (held, _) = digest::entries(&report, usize::MAX);
    let (offer, _) = digest::entries(&theirs.offer(&a.public(), false), usize::MAX);
    let peer = PeerDigests {
        trusted: false,
        offer,
        held,
        more: false,
    };
    let taken = digest::taken_by_hub(&peer);
    assert!(taken.contains(a.public().as_bytes()) && !taken.contains(c.public().as_bytes()));
    let within = |o: &[u8; 32]| taken.contains(o);
    let outcome =
        digest::compare_within(&ours, &a.public(), &hub.public(), false, &peer, NOW, within);
    assert_eq!(outcome.differences_total, 0, "{:?}", outcome.differences);
    assert_eq!(outcome.not_taken, vec![hex::encode(c.public().as_bytes())]);
    // Compared over every origin, c differs.
    let all = digest::compare(&ours, &a.public(), &hub.public(), false, &peer, NOW);
    assert_eq!(all.differences_total, 2, "{:?}", all.differences);

    let fingerprint = |s: &Store| {
        digest::fingerprint_within(
            &s.digests().expect("digests"),
            &a.public(),
            &hub.public(),
            false,
            &digest::not_taken_set(&outcome),
        )
    };
    public_user_from(&sa, &c, "c2");
    assert_eq!(fingerprint(&sa), outcome.fingerprint, "c is not compared");
    put(&sa, &a, Entity::User, "2", Scope::Public, "");
    assert_ne!(fingerprint(&sa), outcome.fingerprint, "a is");
}

/// One step of the property test.
#[derive(Clone, Debug)]
enum Op {
    /// A local write: entity (0 user, 1 request, 2 comment), id, scope, deleted, the request a
    /// comment names (0..2 ours, 2..4 the other origin's), draft request, contact allowed.
    Local(u8, u8, u8, bool, u8, bool, bool),
    /// An incoming version from another origin (0 or 1): entity, id, scope, ms offset, deleted,
    /// the request a comment names.
    Apply(u8, u8, u8, u8, u64, bool, u8),
    /// Two incoming batches applied in one transaction (a bundle's second pass).
    Import(Vec<(u8, u8, u8, u8, u64, bool, u8)>),
    /// `wb sync prune --peer`: everything of origin 0 or 1 goes.
    Prune(u8),
    /// A peer served trusted records is no longer trusted: ours are re-versioned.
    Untrust,
    /// What the peer (trusted or not) is sent from the start of the log, served with the
    /// verdicts remembered since the first operation (`Serving`) and without.
    Serve(bool),
}

fn op() -> impl Strategy<Value = Op> {
    let incoming = (
        0u8..2,
        0u8..3,
        0u8..3,
        0u8..3,
        0u64..8,
        any::<bool>(),
        0u8..4,
    );
    prop_oneof![
        4 => (0u8..3, 0u8..3, 0u8..3, any::<bool>(), 0u8..4, any::<bool>(), any::<bool>())
            .prop_map(|(e, i, s, d, q, draft, c)| Op::Local(e, i, s, d, q, draft, c)),
        4 => incoming.clone().prop_map(|(o, e, i, s, ms, d, q)| Op::Apply(o, e, i, s, ms, d, q)),
        1 => prop::collection::vec(incoming, 1..6).prop_map(Op::Import),
        1 => (0u8..2).prop_map(Op::Prune),
        1 => Just(Op::Untrust),
        2 => any::<bool>().prop_map(Op::Serve),
    ]
}

fn entity(e: u8) -> Entity {
    match e {
        0 => Entity::User,
        1 => Entity::Request,
        _ => Entity::Comment,
    }
}

fn scope(s: u8) -> Scope {
    Scope::ALL[usize::from(s) % 3]
}

struct World {
    me: SecretKey,
    others: [SecretKey; 2],
    peer: PublicKey,
    /// Kept over all the operations, as if they happened while one pull was served and
    /// another applied: a stale verdict would change what is sent, or the digests.
    serving: [std::cell::RefCell<Serving>; 2],
    receiving: std::cell::RefCell<Receiving>,
}

impl World {
    fn request_ref(&self, q: u8) -> String {
        let owner = if q < 2 { &self.me } else { &self.others[0] };
        format!("{}/{}", owner.public().to_hex(), q % 2)
    }

    fn incoming(&self, (o, e, i, s, ms, d, q): (u8, u8, u8, u8, u64, bool, u8)) -> Record {
        incoming(
            &self.others[usize::from(o)],
            entity(e),
            &i.to_string(),
            scope(s),
            NOW + ms,
            d,
            &self.request_ref(q),
        )
    }

    fn run(&self, store: &Store, op: &Op) {
        match op {
            Op::Local(e, i, s, d, q, draft, contact) => {
                let entity = entity(*e);
                let mut f = fields(&entity, &self.request_ref(*q));
                if *draft && entity == Entity::Request {
                    f[1].1 = "draft".into();
                }
                if *contact {
                    f.push(("Contact-Email".into(), "a@example.org".into()));
                }
                let wanted = Draft {
                    scope: scope(*s),
                    deleted: *d,
                    fields: if *d { Vec::new() } else { f },
                    body: String::new(),
                };
                let _ = store.local_batch::<_, StoreError>(&self.me, |batch| {
                    batch.allow_contact(*contact);
                    batch.update(entity.clone(), &i.to_string(), NOW, |_| Ok(wanted))
                });
            }
            Op::Apply(o, e, i, s, ms, d, q) => {
                let r = self.incoming((*o, *e, *i, *s, *ms, *d, *q));
                let opts = ApplyOptions::new("peer", NOW + 60_000);
                let checked = CheckedBatch::check(vec![r], &opts);
                store
                    .apply_pulled(&[&checked], &opts, &mut self.receiving.borrow_mut())
                    .expect("apply");
            }
            Op::Serve(trusted) => {
                let audience = protocol::Audience { trusted: *trusted };
                let mut serving = self.serving[usize::from(*trusted)].borrow_mut();
                let (me, peer) = (self.me.public(), Some(&self.peer));
                let remembered = store
                    .outgoing_serving(&mut serving, &me, peer, false, audience, 0, 1000, 1000)
                    .expect("outgoing");
                let fresh = store
                    .outgoing(&me, peer, audience, 0, 1000, 1000)
                    .expect("outgoing");
                assert_eq!(remembered, fresh, "served with remembered verdicts");
            }
            Op::Import(items) => {
                let opts = ApplyOptions::new("bundle", NOW + 60_000);
                let records: Vec<Record> = items.iter().map(|it| self.incoming(*it)).collect();
                let (first, second) = records.split_at(records.len() / 2);
                let mut applying = store.begin_apply(&opts).expect("begin");
                for part in [first, second] {
                    applying
                        .apply(&CheckedBatch::check(part.to_vec(), &opts))
                        .expect("apply");
                }
                applying.commit().expect("commit");
            }
            Op::Prune(o) => {
                store
                    .prune_origin(
                        &self.me.public(),
                        &self.others[usize::from(*o)].public(),
                        false,
                    )
                    .expect("prune");
            }
            Op::Untrust => {
                store
                    .update_peer_state(&self.peer, |st| st.served_trusted = true)
                    .expect("peer state");
                let cursor = protocol::wire::Cursor {
                    epoch: store.epoch().0,
                    seq: 0,
                };
                store
                    .withdraw_from_untrusted(&self.me, &self.peer, false, &cursor, NOW)
                    .expect("withdraw");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// The maintained digests always equal the digests a full scan computes, after any
    /// sequence of local puts, rescopes, deletes, drafts, applied batches, imports in one
    /// transaction, prunes and re-versionings for an un-trusted peer.
    #[test]
    fn maintained_digests_equal_a_full_scan(ops in prop::collection::vec(op(), 1..40)) {
        let world = World {
            me: SecretKey::from_bytes(&[1; 32]),
            others: [SecretKey::from_bytes(&[2; 32]), SecretKey::from_bytes(&[3; 32])],
            peer: SecretKey::from_bytes(&[4; 32]).public(),
            serving: Default::default(),
            receiving: Default::default(),
        };
        let (_dir, store) = temp_store(&world.me);
        for op in &ops {
            world.run(&store, op);
            prop_assert_eq!(store.digests().expect("digests"), store.digests_by_scan().expect("scan"), "after {:?}", op);
        }
    }
}
