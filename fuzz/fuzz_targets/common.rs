//! What a receiver does with untrusted protocol values once they decode, shared by the targets:
//! every step must not panic, and the codecs' stated round trips must hold.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::sync::OnceLock;

use protocol::hub::{ANNOUNCE_MAX_AGE_MS, ANNOUNCE_MAX_FUTURE_MS, AnnounceError, Announcement};
use protocol::record::MAX_RECORD_LEN;
use protocol::sync_txt::{RecordFileOptions, read_record, write_record};
use protocol::text::{PEER_TEXT_MAX_CHARS, peer_text};
use protocol::trust::{TrustGraph, UserRef, inviter, is_root, vouch_pair};
use protocol::{
    Audience, PublicKey, Record, SecretKey, may_receive, may_receive_withdrawal, validate,
};

/// A fixed "now" for freshness checks (2026-01-01T00:00:00Z).
pub const NOW_MS: u64 = 1_767_225_600_000;

/// A key that is no record's origin here: the default origin when reading an export back
/// (a wb-written file names its origin, so this one must not show up).
fn other_origin() -> PublicKey {
    static KEY: OnceLock<PublicKey> = OnceLock::new();
    *KEY.get_or_init(|| SecretKey::from_bytes(&[0x5a; 32]).public())
}

/// What a node does with one sealed record of a `Batch` (or a hub with a pushed one): decode,
/// then, if that worked, the checks of `CheckedBatch::check_sealed` (signature, clock, entity
/// rules), the scope decisions, the trust-graph readings and, for a valid record, an export to
/// `.sync.txt` and back. The signature check (an Ed25519 verification, most of the cost of an
/// execution) is skipped when `verify` is false: the `record_sealed` target does it.
pub fn receive_record(bytes: &[u8], verify: bool) -> Option<Record> {
    let record = Record::from_sealed_bytes(bytes).ok()?;
    // The sealed form is canonical: the store keeps exactly these bytes, and they must be the
    // record's own encoding.
    assert_eq!(
        record.to_sealed_bytes(),
        bytes,
        "sealed bytes are not canonical"
    );
    // The signing bytes decode to the same record (so they are injective: one signature
    // cannot cover two records).
    let signing = record.signing_bytes();
    assert_eq!(
        Record::from_signing_bytes(&signing, record.signature).as_ref(),
        Ok(&record)
    );
    let _ = record.content_hash();
    let _ = record.key();
    if verify && record.verify().is_ok() {
        assert!(record.signature.is_some());
    }
    let _ = record.version.is_future(NOW_MS);
    let valid = validate(&record).is_ok();
    // The scope decisions a relay makes before passing the record on.
    for trusted in [false, true] {
        let _ = may_receive(&record, &record.origin, Audience { trusted });
    }
    let _ = may_receive_withdrawal(&record, &record.origin);
    if record.is_draft() {
        assert!(!may_receive(
            &record,
            &record.origin,
            Audience { trusted: true }
        ));
    }
    // The trust graph's readings of one record.
    let _ = is_root(&record);
    let _ = inviter(&record);
    if let Some((voucher, subject)) = vouch_pair(&record) {
        let _ = voucher.reference_from(&record.origin);
        let _ = subject.reference_from(&record.origin);
    }
    // A user reference written by the record's origin resolves back to the user.
    if !record.id.is_empty() {
        let me = UserRef::of(&record);
        let reference = me.reference_from(&record.origin);
        assert_eq!(
            UserRef::resolve(&reference, &record.origin).as_ref(),
            Ok(&me)
        );
    }
    // A valid record received over sync can be exported, and reads back unchanged
    // (`record_file`'s contract, for every record `validate` accepts within MAX_RECORD_LEN).
    if valid && signing.len() <= MAX_RECORD_LEN {
        let text = write_record(&record, &RecordFileOptions::default())
            .expect("a valid received record is writable as .sync.txt");
        let back =
            read_record(text.as_bytes(), &other_origin()).expect("a written record reads back");
        assert_eq!(back.record, record, "export/import changed a record");
    }
    Some(record)
}

/// What a node does with a batch of received records as a whole: the trust graph.
pub fn receive_records(records: &[Record]) {
    let graph = TrustGraph::from_records(records);
    let roots: BTreeSet<UserRef> = graph.roots().cloned().collect();
    for (user, _) in graph.users() {
        if let Some(path) = graph.shortest_path(&roots, user) {
            if let Some(last) = path.last() {
                assert_eq!(&last.to, user);
            }
        }
        let _ = graph.links_from(user);
        let _ = graph.vouches_for(user);
    }
    if let Some(r) = records.first() {
        let _ = graph.unvouched_roots(&r.origin, None);
    }
}

/// Peer-supplied text as a node stores or prints it: bounded, no control characters.
pub fn show_peer_text(text: &str) {
    let shown = peer_text(text);
    assert!(!shown.chars().any(|c| c.is_control()), "{shown:?}");
    // At most PEER_TEXT_MAX_CHARS characters, each escaped as at most `\u{10ffff}`, plus the
    // "… (N more bytes)" note.
    assert!(shown.chars().count() <= PEER_TEXT_MAX_CHARS * 10 + 40);
    if text.chars().count() <= PEER_TEXT_MAX_CHARS && !text.chars().any(char::is_control) {
        if !text.contains(['\u{2028}', '\u{2029}']) {
            assert_eq!(shown, text);
        }
    }
}

/// The canonical announcement bytes, parsed back (the format in `protocol::hub`'s docs).
fn parse_announce_signing_bytes(mut b: &[u8]) -> Option<Announcement> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if b.len() < n {
            return None;
        }
        let (head, tail) = b.split_at(n);
        *b = tail;
        Some(head)
    }
    fn u32be(b: &mut &[u8]) -> Option<usize> {
        Some(u32::from_be_bytes(take(b, 4)?.try_into().ok()?) as usize)
    }
    fn string(b: &mut &[u8]) -> Option<String> {
        let n = u32be(b)?;
        String::from_utf8(take(b, n)?.to_vec()).ok()
    }
    if take(&mut b, protocol::hub::ANNOUNCE_SIGNING_DOMAIN.len())?
        != protocol::hub::ANNOUNCE_SIGNING_DOMAIN
    {
        return None;
    }
    if take(&mut b, 1)? != [protocol::hub::ANNOUNCE_FORMAT_VERSION] {
        return None;
    }
    let key: [u8; 32] = take(&mut b, 32)?.try_into().ok()?;
    let timestamp_ms = u64::from_be_bytes(take(&mut b, 8)?.try_into().ok()?);
    let count = u32be(&mut b)?;
    let mut addrs = Vec::new();
    for _ in 0..count {
        addrs.push(string(&mut b)?);
    }
    let relay_url = match take(&mut b, 1)?[0] {
        0 => None,
        1 => Some(string(&mut b)?),
        _ => return None,
    };
    if !b.is_empty() {
        return None;
    }
    Some(Announcement {
        key,
        timestamp_ms,
        addrs,
        relay_url,
        signature: Vec::new(),
    })
}

/// What a hub does with an announced address set, and a node with one it looked up: the
/// shape and signature check, then the freshness rules at a few clocks.
pub fn receive_announcement(a: &Announcement) {
    // The signed bytes are canonical and injective: they parse back to the announcement.
    let parsed = parse_announce_signing_bytes(&a.signing_bytes())
        .expect("announcement signing bytes parse back");
    assert_eq!(
        parsed,
        Announcement {
            signature: Vec::new(),
            ..a.clone()
        }
    );
    let _ = a.public_key();
    let _ = a.socket_addrs();
    let verified = a.verify();
    if verified.is_err() {
        // `check` verifies first: an announcement that does not verify fails the same way.
        assert_eq!(a.check(NOW_MS, Some(a.timestamp_ms)), verified);
    }
    if let Ok(key) = verified {
        // Freshness arithmetic at the extremes never overflows.
        for now in [0, NOW_MS, u64::MAX] {
            for last in [None, Some(0), Some(u64::MAX)] {
                let _ = a.check(now, last);
            }
        }
        assert_eq!(PublicKey::from_bytes(a.key).as_ref(), Ok(&key));
        let ts = a.timestamp_ms;
        assert_eq!(a.check(ts, None), Ok(key));
        assert_eq!(a.check(ts, Some(ts)), Err(AnnounceError::Replayed));
        if let Some(now) = ts.checked_add(ANNOUNCE_MAX_AGE_MS + 1) {
            assert!(matches!(
                a.check(now, None),
                Err(AnnounceError::TooOld { .. })
            ));
        }
        if let Some(now) = ts.checked_sub(ANNOUNCE_MAX_FUTURE_MS + 1) {
            assert!(matches!(
                a.check(now, None),
                Err(AnnounceError::Future { .. })
            ));
        }
        // Any change to what is signed breaks the signature.
        let mut moved = a.clone();
        moved.timestamp_ms = ts.wrapping_add(1);
        assert_eq!(moved.verify(), Err(AnnounceError::Forged));
    }
}
