//! Tests of the `.sync.txt` codec: the app's golden bundle, error reporting, and properties
//! (lossless round trips of any valid record, arbitrary input never panics).

use proptest::prelude::*;

use super::*;
use crate::entity::RESERVED_FIELD_NAMES;
use crate::{Entity, PublicKey, Record, Scope, SecretKey, Version, validate};

const FIXTURE_KEY: &str = "9jrsNPA1fHvtHAn7BvEPOsIQVmcIWSfhcgIaDMc+ooQ=";
const USER_1: &str = include_str!("../../tests/fixtures/app-bundle-v1/users/user_1.sync.txt");
const USER_2: &str = include_str!("../../tests/fixtures/app-bundle-v1/users/user_2.sync.txt");
const REQUEST_1: &str =
    include_str!("../../tests/fixtures/app-bundle-v1/requests/request_1.sync.txt");
const REQUEST_2: &str =
    include_str!("../../tests/fixtures/app-bundle-v1/requests/request_2.sync.txt");
const INVITE: &str =
    include_str!("../../tests/fixtures/app-bundle-v1/invites/invite_f00d42.sync.txt");
/// `2025-11-03T14:05:09Z`, the fixture's `Updated-At`.
const FIXTURE_MS: u64 = 1_762_178_709_000;
const FIXTURE_INSTANCE: &str = "http://127.0.0.1:8000";

fn fixture_key() -> PublicKey {
    PublicKey::parse(FIXTURE_KEY).expect("fixture key")
}

fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

fn read_fixture(text: &str) -> ParsedRecord {
    let parsed = read_record(text.as_bytes(), &fixture_key()).expect("fixture parses");
    assert!(parsed.app_written);
    assert_eq!(parsed.instance.as_deref(), Some(FIXTURE_INSTANCE));
    assert_eq!(parsed.record.origin, fixture_key());
    assert_eq!(parsed.record.version, Version::new(FIXTURE_MS, 0));
    assert_eq!(parsed.record.scope, Scope::Public);
    assert!(!parsed.record.deleted);
    assert_eq!(parsed.record.signature, None);
    assert_eq!(validate(&parsed.record), Ok(()));
    for comment in &parsed.comments {
        assert_eq!(validate(comment), Ok(()));
    }
    parsed
}

fn app_record(entity: Entity, id: &str, f: &[(&str, &str)], body: &str) -> Record {
    Record {
        origin: fixture_key(),
        entity,
        id: id.into(),
        version: Version::new(FIXTURE_MS, 0),
        scope: Scope::Public,
        deleted: false,
        fields: fields(f),
        body: body.into(),
        signature: None,
    }
}

fn fixture_comment(id: &str, request: &str, user: &str, name: &str, body: &str) -> Record {
    app_record(
        Entity::Comment,
        id,
        &[
            ("Request", request),
            ("User-ID", user),
            ("Username", name),
            ("Created-At", "2025-11-03T14:05:09"),
        ],
        body,
    )
}

#[test]
fn fixture_users() {
    for (text, id, name) in [(USER_1, "1", "rosa"), (USER_2, "2", "tomas")] {
        let parsed = read_fixture(text);
        assert_eq!(
            parsed.record,
            app_record(
                Entity::User,
                id,
                &[("Username", name), ("Contact-Email", "")],
                ""
            )
        );
        assert!(parsed.comments.is_empty());
    }
}

#[test]
fn fixture_requests_with_embedded_comments() {
    let parsed = read_fixture(REQUEST_1);
    assert_eq!(
        parsed.record,
        app_record(
            Entity::Request,
            "1",
            &[
                ("Title", "Groceries for the week"),
                ("Status", "open"),
                ("Contact-Email", ""),
                ("Created-By", "1"),
            ],
            "Two bags from the market on Elm St.\nI can pay back on Friday.",
        )
    );
    assert_eq!(
        parsed.comments,
        [
            fixture_comment(
                "1",
                "1",
                "2",
                "tomas",
                "I'm at the market Saturday morning.\nCan bring both bags."
            ),
            fixture_comment("2", "1", "1", "rosa", "Thank you!"),
        ]
    );

    let parsed = read_fixture(REQUEST_2);
    assert_eq!(
        parsed.record,
        app_record(
            Entity::Request,
            "2",
            &[
                ("Title", "Fix a bike tyre"),
                ("Status", "completed"),
                ("Contact-Email", ""),
                ("Created-By", "2"),
            ],
            "Rear wheel, 26 inch.",
        )
    );
    assert_eq!(
        parsed.comments,
        [fixture_comment(
            "4",
            "2",
            "1",
            "rosa",
            "Done: tyre patched."
        )]
    );
}

#[test]
fn fixture_invite() {
    let parsed = read_fixture(INVITE);
    assert_eq!(
        parsed.record,
        app_record(
            Entity::Invite,
            "f00d42",
            &[
                ("Created-By", "1"),
                ("Max-Uses", "2"),
                ("Use-Count", "1"),
                ("Auto-Approve", "True"),
                ("Suggested-Username", "neighbour"),
            ],
            "Gratitude:\nThanks for the soup in October.\n\nSupport:\nHappy to help with rides.",
        )
    );
    assert!(parsed.comments.is_empty());
}

/// Writing what we read from the app gives the app's file back, plus only our own headers.
#[test]
fn fixture_files_written_back_match_the_app() {
    for text in [USER_1, USER_2, REQUEST_1, REQUEST_2, INVITE] {
        let parsed = read_fixture(text);
        let options = RecordFileOptions {
            instance: parsed.instance.as_deref(),
            comments: &parsed.comments,
        };
        let ours = write_record(&parsed.record, &options).expect("writes");
        let (head, body) = text.split_once("\n\n").expect("separator");
        let extra = format!("\nOrigin: {FIXTURE_KEY}\nVersion: {FIXTURE_MS}-0\nDeleted: no");
        assert_eq!(ours, format!("{head}{extra}\n\n{body}"));
        // Parse(write(f)) is f for the app's files too.
        let file = parse(text).expect("parses");
        assert_eq!(write(&file), text);
        // And what we wrote reads back to the same record, now not app-written.
        let back =
            read_record(ours.as_bytes(), &SecretKey::from_bytes(&[1; 32]).public()).expect("reads");
        assert_eq!(back.record, parsed.record);
        assert!(!back.app_written);
        assert!(back.comments.is_empty());
    }
}

#[test]
fn parse_errors_name_the_line() {
    let cases: [(&[u8], CodecError); 8] = [
        (b"", CodecError::MissingSeparator { line: 1 }),
        (
            b"Entity: user\nID: 1\n",
            CodecError::MissingSeparator { line: 3 },
        ),
        (
            b"Entity: user\nno colon here\n\n",
            CodecError::MalformedHeader {
                line: 2,
                reason: "expected `Name: value`",
            },
        ),
        (
            b"Entity: user\n : x\n\n",
            CodecError::MalformedHeader {
                line: 2,
                reason: "empty header name",
            },
        ),
        (
            b"A: 1\nB: 2\r3\n\n",
            CodecError::MalformedHeader {
                line: 2,
                reason: "carriage return inside the line",
            },
        ),
        (
            b"A: 1\nB: 2\nA: 3\n\n",
            CodecError::DuplicateHeader {
                line: 3,
                name: "A".into(),
            },
        ),
        (b"A: 1\nB: \xff\n\n", CodecError::InvalidUtf8 { line: 2 }),
        (b"A: 1\n\nbody \xc3", CodecError::InvalidUtf8 { line: 3 }),
    ];
    for (input, expected) in cases {
        assert_eq!(
            parse_bytes(input),
            Err(expected),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
    let too_big = vec![b'a'; MAX_SYNC_FILE_LEN + 1];
    assert!(matches!(
        parse_bytes(&too_big),
        Err(CodecError::TooLarge { .. })
    ));
    let msg = parse(" x\n").expect_err("malformed").to_string();
    assert_eq!(msg, "line 1: malformed header line: expected `Name: value`");
}

#[test]
fn crlf_headers_are_accepted() {
    let file = parse("A: 1\r\nB:  two \r\n\r\nbody\r\n").expect("parses");
    assert_eq!(file.headers(), fields(&[("A", "1"), ("B", "two")]));
    assert_eq!(file.body(), "body\r\n");
    assert_eq!(file.body_first_line(), 4);
}

#[test]
fn record_errors_name_the_header() {
    let key = fixture_key();
    let read = |s: &str| read_record(s.as_bytes(), &key);
    assert_eq!(
        read("ID: 1\nSync-Scope: public\nUpdated-At: 2025-11-03T14:05:09Z\n\n"),
        Err(CodecError::MissingHeader { name: "Entity" })
    );
    assert_eq!(
        read("Entity: user\nID: 1\nUpdated-At: 2025-11-03T14:05:09Z\n\n"),
        Err(CodecError::MissingHeader { name: "Sync-Scope" })
    );
    assert_eq!(
        read("Entity: user\nID: 1\nSync-Scope: public\n\n"),
        Err(CodecError::MissingHeader { name: "Updated-At" })
    );
    assert!(matches!(
        read("Entity: user\nID: 1\nSync-Scope: everyone\nUpdated-At: 2025-11-03\n\n"),
        Err(CodecError::BadHeaderValue { line: 3, ref name, .. }) if name == "Sync-Scope"
    ));
    assert!(matches!(
        read("Entity: user\nID: 1\nSchema-Version: 2\nSync-Scope: public\n\n"),
        Err(CodecError::UnsupportedSchemaVersion { line: 3, .. })
    ));
    assert!(matches!(
        read("Entity: user\nID: 1\nSync-Scope: public\nVersion: soon\n\n"),
        Err(CodecError::BadHeaderValue { line: 4, ref name, .. }) if name == "Version"
    ));
    assert!(matches!(
        read("Entity: user\nID: %zz\nSync-Scope: public\nVersion: 1-0\nEscaped: ID\n\n"),
        Err(CodecError::BadHeaderValue { line: 2, ref name, .. }) if name == "ID"
    ));
    assert!(matches!(
        read("Entity: user\nID: 1\nSync-Scope: public\nVersion: 1-0\nEscaped: Bio\n\n"),
        Err(CodecError::BadHeaderValue { line: 5, ref name, .. }) if name == "Escaped"
    ));
    let comment_without_id = "Entity: request\nID: 1\nSync-Scope: public\n\
        Updated-At: 2025-11-03T14:05:09Z\n\nDescription:\nx\n\nComments:\n---\nUser-ID: 2\n\
        Sync-Scope: public\n\nhi\n";
    assert_eq!(
        read(comment_without_id),
        Err(CodecError::BadBody {
            line: 10,
            reason: "comment without a Comment-ID"
        })
    );
    let same_comment_twice = "Entity: request\nID: 1\nSync-Scope: public\n\
        Updated-At: 2025-11-03T14:05:09Z\n\nDescription:\nx\n\nComments:\n---\nComment-ID: 4\n\
        Sync-Scope: public\n\nhi\n---\nComment-ID: 4\nSync-Scope: public\n\nagain\n";
    assert_eq!(
        read(same_comment_twice),
        Err(CodecError::BadBody {
            line: 15,
            reason: "Comment-ID given twice"
        })
    );
    let bad_lines = "Entity: request\nID: 1\nSync-Scope: public\nVersion: 1-0\n\
        Description-Lines: 3\n\nDescription:\nx\n";
    assert!(matches!(
        read(bad_lines),
        Err(CodecError::BadBody { line: 5, .. })
    ));
}

#[test]
fn unwritable_records_are_refused() {
    let key = SecretKey::from_bytes(&[2; 32]);
    let mut record = app_record(Entity::User, "1", &[("Username", "a")], "");
    record.origin = key.public();
    for bad in ["", "a:b", "line\nbreak", " lead", "Signature", "Entity"] {
        let mut r = record.clone();
        r.fields.push((bad.into(), "v".into()));
        assert!(
            matches!(
                record_to_file(&r, &RecordFileOptions::default()),
                Err(CodecError::Unwritable { .. })
            ),
            "{bad:?}"
        );
    }
    let mut twice = record.clone();
    twice.fields.push(("Username".into(), "b".into()));
    assert!(record_to_file(&twice, &RecordFileOptions::default()).is_err());
    let mut huge = record;
    huge.body = "x".repeat(crate::record::MAX_RECORD_LEN);
    assert!(matches!(
        record_to_file(&huge, &RecordFileOptions::default()),
        Err(CodecError::TooLarge { what: "record", .. })
    ));
}

#[test]
fn sync_file_new_refuses_unwritable_headers() {
    for (name, value) in [
        ("", "v"),
        ("a:b", "v"),
        ("a", "x\ny"),
        ("a", " x"),
        ("a", "x\r"),
    ] {
        assert!(
            SyncFile::new(vec![(name.into(), value.into())], String::new()).is_err(),
            "{name:?}: {value:?}"
        );
    }
    assert!(SyncFile::new(fields(&[("a", "1"), ("a", "2")]), String::new()).is_err());
    let ok =
        SyncFile::new(fields(&[("a", ""), ("b", "x: y %")]), "any\r\nbody".into()).expect("valid");
    assert_eq!(write(&ok), "a: \nb: x: y %\n\nany\r\nbody");
    assert_eq!(parse(&write(&ok)), Ok(ok));
}

/// What the escaped form looks like: ordinary values untouched, odd ones listed in `Escaped`.
#[test]
fn escaping_is_visible_and_minimal() {
    let key = SecretKey::from_bytes(&[4; 32]);
    let mut record = Record {
        origin: key.public(),
        entity: Entity::Request,
        id: "a/b\n".into(),
        version: Version::new(FIXTURE_MS + 123, 7),
        scope: Scope::Trusted,
        deleted: false,
        fields: fields(&[
            ("Title", " padded: 100% "),
            ("Status", "open"),
            ("Instance", "a field, not the label"),
            ("%odd", "x"),
            ("Bio", "two\nlines"),
        ]),
        body: "\nComments:\n---\n".into(),
        signature: None,
    };
    record.sign(&key).expect("sign");
    let text = write_record(
        &record,
        &RecordFileOptions {
            instance: Some("https://wb.example"),
            comments: &[],
        },
    )
    .expect("writes");
    let expected_head = format!(
        "Entity: request\nID: a/b%0A\nInstance: https://wb.example\nSchema-Version: 1\n\
         Updated-At: 2025-11-03T14:05:09Z\nSync-Scope: trusted\nTitle: %20padded: 100%25%20\n\
         Status: open\n%49nstance: a field, not the label\n%25odd: x\nBio: two%0Alines\n\
         Origin: {}\nVersion: {}-7\nDeleted: no\nSignature: {}\nDescription-Lines: 4\n\
         Escaped: ID, Title, Bio\n\nDescription:\n\nComments:\n---\n\n",
        key.public().to_base64(),
        FIXTURE_MS + 123,
        record.signature.expect("signed").to_base64(),
    );
    assert_eq!(text, expected_head);
    let back = read_record(text.as_bytes(), &fixture_key()).expect("reads");
    assert_eq!(back.record, record);
    assert_eq!(back.instance.as_deref(), Some("https://wb.example"));
    assert_eq!(back.record.verify(), Ok(()));
}

#[test]
fn app_style_comments_are_rendered_for_the_app() {
    let key = SecretKey::from_bytes(&[5; 32]);
    let mut request = app_record(
        Entity::Request,
        "9",
        &[("Title", "t"), ("Status", "open")],
        "  indented description\n",
    );
    request.origin = key.public();
    let mut comment = fixture_comment("c\n1", "9", "2", "tomas", "line\n---\nafter\n");
    comment.origin = key.public();
    let text = write_record(
        &request,
        &RecordFileOptions {
            instance: None,
            comments: &[comment],
        },
    )
    .expect("writes");
    let (_, body) = text.split_once("\n\n").expect("separator");
    assert_eq!(
        body,
        "Description:\n  indented description\n\n\nComments:\n---\nComment-ID: c 1\n\
         User-ID: 2\nUsername: tomas\nCreated-At: 2025-11-03T14:05:09\nSync-Scope: public\n\n\
         line\n- --\nafter\n"
    );
    let back = read_record(text.as_bytes(), &key.public()).expect("reads");
    assert_eq!(back.record, request);
    assert!(
        back.comments.is_empty(),
        "wb-written: comments are not read back"
    );

    // The same body read as app-written yields the embedded comment.
    let app_text = text
        .lines()
        .filter(|l| !l.starts_with("Origin:") && !l.starts_with("Version:"))
        .filter(|l| !l.starts_with("Deleted:") && !l.starts_with("Description-Lines:"))
        .collect::<Vec<_>>()
        .join("\n");
    let app = read_record(app_text.as_bytes(), &key.public()).expect("reads");
    assert!(app.app_written);
    assert_eq!(app.record.body, "indented description");
    assert_eq!(app.comments.len(), 1);
    assert_eq!(app.comments[0].id, "c 1");
    assert_eq!(app.comments[0].body, "line\n- --\nafter");
}

// ---- properties ----

/// Strings meant to break a line-oriented format.
fn nasty_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just(String::new()),
        Just(" ".to_string()),
        Just("\n".to_string()),
        Just("\r".to_string()),
        Just("\r\n".to_string()),
        Just("\t".to_string()),
        Just(":".to_string()),
        Just("%".to_string()),
        Just("%41".to_string()),
        Just(",".to_string()),
        Just("\\".to_string()),
        Just("---".to_string()),
        Just("Comments:".to_string()),
        Just("\nComments:\n".to_string()),
        Just("Description:\n".to_string()),
        Just("Escaped".to_string()),
        Just("Instance".to_string()),
        Just("\u{2028}".to_string()),
        Just("\u{a0}".to_string()),
        Just("\u{1c}".to_string()),
        Just("\u{85}".to_string()),
        Just("\0".to_string()),
        Just("é".to_string()),
        Just("日本".to_string()),
        "[a-zA-Z0-9 ._/-]{1,8}",
        any::<char>().prop_map(String::from),
    ];
    prop_oneof![
        proptest::collection::vec(piece, 0..8).prop_map(|v| v.concat()),
        any::<String>(),
    ]
}

/// A non-blank value (required fields).
fn nasty_required() -> impl Strategy<Value = String> {
    nasty_text().prop_map(|s| format!("{s}x{s}"))
}

/// Field names that pass `validate`, including ones this codec must escape.
fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("Instance".to_string()),
        Just("Escaped".to_string()),
        Just("Description-Lines".to_string()),
        Just("%".to_string()),
        Just("%49nstance".to_string()),
        Just("signature".to_string()),
        Just("Comment-ID".to_string()),
        Just("A, B".to_string()),
        Just("Bio".to_string()),
        Just("x\u{2028}y".to_string()),
        "[A-Za-z][A-Za-z0-9 ,%._-]{0,10}[A-Za-z0-9%]",
        any::<String>(),
    ]
    .prop_filter("a valid field name", |name| {
        !name.is_empty()
            && name.trim() == name
            && !name.contains(':')
            && !name.chars().any(char::is_control)
            && !RESERVED_FIELD_NAMES
                .iter()
                .any(|r| r.eq_ignore_ascii_case(name))
    })
}

fn entity() -> impl Strategy<Value = Entity> {
    prop_oneof![
        Just(Entity::User),
        Just(Entity::Request),
        Just(Entity::Comment),
        Just(Entity::Invite),
        Just(Entity::Vouch),
        "[a-z][a-z_.\u{e9}-]{0,8}".prop_map(|s| Entity::from_name(&s)),
    ]
}

/// Any record `validate` accepts, built valid rather than filtered.
fn valid_record() -> impl Strategy<Value = Record> {
    (
        any::<[u8; 32]>(),
        entity(),
        nasty_required(),
        (any::<u64>(), any::<u32>()),
        prop::sample::select(Scope::ALL.to_vec()),
        any::<bool>(),
        (
            prop::sample::select(crate::entity::REQUEST_STATUSES.to_vec()),
            nasty_required(),
            nasty_required(),
            nasty_required(),
        ),
        prop::collection::vec((field_name(), nasty_text()), 0..6),
        nasty_text(),
        any::<bool>(),
    )
        .prop_map(
            |(seed, entity, id, (ms, counter), scope, deleted, req, extra, body, signed)| {
                let key = SecretKey::from_bytes(&seed);
                let (status, a, b, c) = req;
                let mut fields: Vec<(String, String)> = match entity {
                    Entity::Request => vec![("Title".into(), a), ("Status".into(), status.into())],
                    Entity::Comment => vec![
                        ("Request".into(), a.replace('/', "|")),
                        ("User-ID".into(), b),
                    ],
                    Entity::Vouch => vec![
                        ("Voucher".into(), a.replace('/', "|")),
                        ("Subject".into(), format!("{}/{b}", key.public().to_hex())),
                    ],
                    Entity::Invite => vec![
                        ("Created-By".into(), a),
                        ("Max-Uses".into(), b),
                        ("Use-Count".into(), c.clone()),
                        ("Auto-Approve".into(), c),
                    ],
                    Entity::User => vec![("Username".into(), a)],
                    Entity::Other(_) => vec![],
                };
                for (name, value) in extra {
                    if fields.iter().all(|(n, _)| *n != name) {
                        fields.push((name, value));
                    }
                }
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
                if signed {
                    record.sign(&key).expect("origin is the key");
                }
                record
            },
        )
}

fn comment_for(request: &Record) -> impl Strategy<Value = Vec<Record>> + use<> {
    let request_id = request.id.clone();
    let origin = request.origin;
    prop::collection::vec(
        (nasty_required(), nasty_text(), nasty_text(), nasty_text()),
        0..3,
    )
    .prop_map(move |items| {
        items
            .into_iter()
            .map(|(id, user, name, body)| Record {
                origin,
                entity: Entity::Comment,
                id,
                version: Version::new(1, 0),
                scope: Scope::Public,
                deleted: false,
                fields: vec![
                    ("Request".into(), request_id.clone()),
                    ("User-ID".into(), user),
                    ("Username".into(), name),
                ],
                body,
                signature: None,
            })
            .collect()
    })
}

fn record_with_options() -> impl Strategy<Value = (Record, Vec<Record>, Option<String>)> {
    valid_record().prop_flat_map(|record| {
        let comments = comment_for(&record);
        (Just(record), comments, proptest::option::of(nasty_text()))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// parse(write(record_to_file(r))) maps back to r, for every valid record, with or without
    /// an instance label and rendered comments; a signed record still verifies.
    #[test]
    fn every_valid_record_round_trips((record, comments, instance) in record_with_options()) {
        prop_assert_eq!(validate(&record), Ok(()));
        let options = RecordFileOptions { instance: instance.as_deref(), comments: &comments };
        let text = write_record(&record, &options).expect("a valid record is writable");
        let other_origin = SecretKey::from_bytes(&[0xee; 32]).public();
        let back = read_record(text.as_bytes(), &other_origin).expect("reads back");
        prop_assert_eq!(&back.record, &record, "file:\n{}", text);
        prop_assert_eq!(back.instance.as_deref(), instance.as_deref());
        prop_assert!(back.comments.is_empty());
        prop_assert!(!back.app_written);
        if record.signature.is_some() {
            prop_assert_eq!(back.record.verify(), Ok(()));
        }
        // Every header line of the file is one line: no value spans lines.
        let file = parse(&text).expect("parses");
        prop_assert_eq!(write(&file), text.clone());
        // Deterministic: writing again gives the same bytes.
        prop_assert_eq!(write_record(&record, &options).expect("writes"), text);
    }

    /// Ordinary values (no line breaks, no whitespace at the ends) are written as they are.
    #[test]
    fn ordinary_values_are_not_escaped(value in "[a-zA-Z0-9%:,/.-][a-zA-Z0-9 %:,/.-]{0,20}[a-zA-Z0-9%:,/.-]") {
        let key = SecretKey::from_bytes(&[6; 32]);
        let record = Record {
            origin: key.public(),
            entity: Entity::User,
            id: value.clone(),
            version: Version::new(5, 0),
            scope: Scope::Public,
            deleted: false,
            fields: vec![("Username".into(), value.clone())],
            body: String::new(),
            signature: None,
        };
        let text = write_record(&record, &RecordFileOptions::default()).expect("writes");
        let id_line = format!("\nID: {value}\n");
        let username_line = format!("\nUsername: {value}\n");
        prop_assert!(text.contains(&id_line));
        prop_assert!(text.contains(&username_line));
        prop_assert!(!text.contains("Escaped:"));
    }

    /// Bytes from anywhere never panic; whatever parses writes back to itself, and whatever
    /// reads as a valid record round-trips through our writer.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check_any_input(&bytes)?;
    }

    /// The same, with inputs shaped like sync files so that the deeper paths run.
    #[test]
    fn arbitrary_sync_files_never_panic(
        headers in prop::collection::vec((prop_oneof![
            Just("Entity".to_string()), Just("ID".to_string()), Just("Sync-Scope".to_string()),
            Just("Updated-At".to_string()), Just("Version".to_string()), Just("Origin".to_string()),
            Just("Escaped".to_string()), Just("Description-Lines".to_string()),
            Just("Deleted".to_string()), Just("Signature".to_string()), Just("Instance".to_string()),
            Just("Schema-Version".to_string()), "%?[A-Za-z%0-9-]{1,6}",
        ], prop_oneof![
            Just("request".to_string()), Just("public".to_string()), Just("1".to_string()),
            Just("2025-11-03T14:05:09Z".to_string()), Just("1-0".to_string()),
            Just(FIXTURE_KEY.to_string()), Just("ID, Title".to_string()), "[ -~]{0,12}",
        ]), 0..10),
        body in prop_oneof![
            nasty_text(),
            Just("Description:\nx\n\nComments:\n---\nComment-ID: 1\nSync-Scope: public\n\nhi\n".to_string()),
            "(Description:|Comments:|---|Comment-ID: [0-9]|Sync-Scope: public|Created-At: 2025-11-03| |x|\r)?(\n(Description:|Comments:|---|Comment-ID: [0-9]|Sync-Scope: (public|nope)|Created-At: 2025-11-03| |x|\r)){0,12}",
        ],
    ) {
        let mut text = String::new();
        for (name, value) in headers {
            text.push_str(&format!("{name}: {value}\n"));
        }
        text.push('\n');
        text.push_str(&body);
        check_any_input(text.as_bytes())?;
    }
}

fn check_any_input(bytes: &[u8]) -> Result<(), TestCaseError> {
    let key = fixture_key();
    let Ok(file) = parse_bytes(bytes) else {
        return Ok(());
    };
    let text = write(&file);
    prop_assert_eq!(parse(&text), Ok(file.clone()));
    let Ok(parsed) = file_to_record(&file, &key) else {
        return Ok(());
    };
    for record in std::iter::once(&parsed.record).chain(&parsed.comments) {
        if validate(record).is_err() {
            continue;
        }
        let options = RecordFileOptions {
            instance: parsed.instance.as_deref(),
            comments: &parsed.comments,
        };
        let written = write_record(record, &options).expect("a valid record is writable");
        let back = read_record(written.as_bytes(), &key).expect("reads back");
        prop_assert_eq!(&back.record, record);
    }
    Ok(())
}
