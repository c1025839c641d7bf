//! Property tests of the record encoding and signatures.

use proptest::prelude::*;

use crate::*;

fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9 :._/-]{0,24}",
        any::<String>(),
        Just(String::new()),
        Just(" padded: value \n second line ".to_string()),
    ]
}

fn any_entity() -> impl Strategy<Value = Entity> {
    prop_oneof![
        Just(Entity::User),
        Just(Entity::Request),
        Just(Entity::Comment),
        Just(Entity::Invite),
        Just(Entity::Vouch),
        "[a-z]{1,10}".prop_map(|s| Entity::from_name(&s)),
    ]
}

fn any_record() -> impl Strategy<Value = (Record, SecretKey)> {
    (
        any::<[u8; 32]>(),
        any_entity(),
        any_text(),
        any::<u64>(),
        any::<u32>(),
        prop::sample::select(Scope::ALL.to_vec()),
        any::<bool>(),
        prop::collection::vec((any_text(), any_text()), 0..6),
        any_text(),
    )
        .prop_map(
            |(seed, entity, id, ms, counter, scope, deleted, fields, body)| {
                let key = SecretKey::from_bytes(&seed);
                let mut record = Record {
                    origin: key.public(),
                    entity,
                    id,
                    version: Version::new(ms, counter),
                    scope,
                    deleted,
                    fields,
                    body,
                    signature: None,
                };
                record.sign(&key).expect("origin is the key");
                (record, key)
            },
        )
}

proptest! {
    #[test]
    fn canonical_bytes_round_trip((record, _key) in any_record()) {
        let bytes = record.signing_bytes();
        let back = Record::from_signing_bytes(&bytes, record.signature).expect("decodes");
        prop_assert_eq!(&back, &record);
        let sealed = record.to_sealed_bytes();
        prop_assert_eq!(Record::from_sealed_bytes(&sealed).expect("decodes"), record.clone());
        let mut unsigned = record;
        unsigned.signature = None;
        prop_assert_eq!(Record::from_sealed_bytes(&unsigned.to_sealed_bytes()).expect("decodes"), unsigned);
    }

    /// Flipping any single bit of a sealed, signed record makes it undecodable or unverifiable.
    #[test]
    fn any_bit_flip_fails_verification((record, _key) in any_record(), pick in any::<prop::sample::Index>(), bit in 0u8..8) {
        prop_assert!(record.verify().is_ok());
        let mut sealed = record.to_sealed_bytes();
        let at = pick.index(sealed.len());
        sealed[at] ^= 1 << bit;
        match Record::from_sealed_bytes(&sealed) {
            Err(_) => {}
            Ok(mutated) => prop_assert!(mutated.verify().is_err(), "bit {bit} of byte {at} still verifies"),
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = Record::from_sealed_bytes(&bytes);
        let _ = Record::from_signing_bytes(&bytes, None);
    }

    #[test]
    fn content_hash_tracks_content((record, key) in any_record(), body in any_text()) {
        let mut other = record.clone();
        other.body = body;
        other.sign(&key).expect("origin is the key");
        prop_assert_eq!(other.content_hash() == record.content_hash(), other.body == record.body);
    }
}

fn user(key: &SecretKey, fields: &[(&str, &str)]) -> Record {
    Record {
        origin: key.public(),
        entity: Entity::User,
        id: "1".into(),
        version: Version::new(1, 0),
        scope: Scope::Public,
        deleted: false,
        fields: fields
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        body: String::new(),
        signature: None,
    }
}

#[test]
fn unsigned_and_foreign_signed_records_fail() {
    let key = SecretKey::from_bytes(&[3; 32]);
    let mut r = user(&key, &[("Username", "rosa")]);
    assert_eq!(r.verify(), Err(ProtocolError::Unsigned));
    let other = SecretKey::from_bytes(&[4; 32]);
    assert!(r.sign(&other).is_err());
    r.signature = Some(other.sign(&r.signing_bytes()));
    assert!(matches!(
        r.verify(),
        Err(ProtocolError::BadSignature { .. })
    ));
}

#[test]
fn validation_names_what_is_wrong() {
    let key = SecretKey::from_bytes(&[5; 32]);
    assert!(validate(&user(&key, &[("Username", "rosa"), ("Bio", "hi")])).is_ok());
    let err = validate(&user(&key, &[("Bio", "hi")])).expect_err("missing Username");
    assert_eq!(err.to_string(), "user 1: missing required field Username");
    assert!(validate(&user(&key, &[("Username", " ")])).is_err());
    assert!(validate(&user(&key, &[("Username", "a"), ("Version", "1")])).is_err());
    assert!(validate(&user(&key, &[("Username", "a"), ("X", "1"), ("X", "2")])).is_err());
    assert!(validate(&user(&key, &[("Username", "a"), ("Bad:Name", "1")])).is_err());

    let mut req = user(&key, &[("Title", "t"), ("Status", "closed")]);
    req.entity = Entity::Request;
    assert!(validate(&req).is_err());
    req.fields[1].1 = "open".into();
    assert!(validate(&req).is_ok());

    let mut c = user(&key, &[("Request", "abc/1"), ("User-ID", "2")]);
    c.entity = Entity::Comment;
    assert!(validate(&c).is_ok(), "a bare id may contain a slash");
    c.fields[0].1 = format!("{}/", key.public().to_hex());
    assert!(validate(&c).is_err());

    let mut tomb = user(&key, &[]);
    tomb.deleted = true;
    assert!(validate(&tomb).is_ok(), "tombstones carry no fields");
}

#[test]
fn references_parse() {
    let key = SecretKey::from_bytes(&[6; 32]).public();
    let r = Reference::parse(&format!("{}/42", key.to_hex())).expect("reference");
    assert_eq!(r.origin, Some(key));
    assert_eq!(r.id, "42");
    assert_eq!(Reference::parse("42").expect("bare").origin, None);
    assert!(Reference::parse("").is_err());
}

/// Issue 11, item 5: the duplicate-field check is one pass (`bench fields` measures it), and
/// still finds a repeated name however far apart the two are.
#[test]
fn validate_finds_a_repeated_field_among_many_in_one_pass() {
    let key = SecretKey::from_bytes(&[9; 32]);
    let mut record = Record {
        origin: key.public(),
        entity: Entity::User,
        id: "1".into(),
        version: Version::new(1, 0),
        scope: Scope::Public,
        deleted: false,
        fields: std::iter::once(("Username".to_string(), "rosa".to_string()))
            .chain((0..50_000).map(|i| (format!("F{i}"), String::new())))
            .collect(),
        body: String::new(),
        signature: None,
    };
    assert!(validate(&record).is_ok());
    record.fields.push(("F0".into(), "again".into()));
    let err = validate(&record)
        .expect_err("F0 is given twice")
        .to_string();
    assert!(err.contains("F0") && err.contains("given twice"), "{err}");
}

/// A replaced key's withdrawals are sent on the instance's behalf and taken from any peer;
/// nothing else of a former key goes out, and no other trusted record is taken from a relay.
#[test]
fn former_key_withdrawals_go_out_and_are_accepted_from_the_new_key() {
    let (old, new) = (
        SecretKey::from_bytes(&[5; 32]),
        SecretKey::from_bytes(&[6; 32]),
    );
    let trusted = Audience { trusted: true };
    let mut live = user(&old, &[("Username", "rosa")]);
    live.scope = Scope::Trusted;
    live.sign(&old).expect("sign");
    let mut withdrawal = Record {
        deleted: true,
        fields: Vec::new(),
        version: Version::new(2, 0),
        signature: None,
        ..live.clone()
    };
    withdrawal.sign(&old).expect("sign");
    let former = [old.public()];
    let (me, none) = (new.public(), &[][..]);
    assert!(!may_receive(
        &withdrawal,
        sent_on_behalf_of(&withdrawal, &me, none),
        trusted
    ));
    assert!(may_receive(
        &withdrawal,
        sent_on_behalf_of(&withdrawal, &me, &former),
        trusted
    ));
    assert!(!may_receive(
        &live,
        sent_on_behalf_of(&live, &me, &former),
        trusted
    ));
    assert!(!may_receive(
        &withdrawal,
        sent_on_behalf_of(&withdrawal, &me, &former),
        Audience { trusted: false }
    ));
    assert!(may_accept(&withdrawal, &me));
    assert!(!may_accept(&live, &me));
    assert!(may_accept(&live, &old.public()));
    let mut private = withdrawal.clone();
    private.scope = Scope::Private;
    private.sign(&old).expect("sign");
    assert!(!may_accept(&private, &old.public()));
}
