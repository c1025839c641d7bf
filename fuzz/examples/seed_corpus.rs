//! Writes a seed corpus of valid encodings for the protocol fuzz targets:
//! `cargo +nightly run --example seed_corpus` (from `fuzz/`) fills `corpus/<target>/`.
//! The fuzzers start from these instead of rediscovering the formats (signed records of every
//! entity, each message and hub message kind, signed announcements).

use std::fs;
use std::net::SocketAddr;
use std::path::Path;

use protocol::hub::{Announcement, HubRequest, HubResponse, hub_code};
use protocol::wire::{Cursor, Message, Role, code};
use protocol::{Entity, Record, Scope, SecretKey, Version};

fn key(seed: u8) -> SecretKey {
    SecretKey::from_bytes(&[seed; 32])
}

fn record(
    key: &SecretKey,
    entity: Entity,
    id: &str,
    fields: &[(&str, &str)],
    body: &str,
    scope: Scope,
) -> Record {
    let mut r = Record {
        origin: key.public(),
        entity,
        id: id.to_string(),
        version: Version::new(1_767_225_600_000, 0),
        scope,
        deleted: false,
        fields: fields
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        body: body.to_string(),
        signature: None,
    };
    r.sign(key).expect("own key");
    r
}

fn records() -> Vec<Record> {
    let a = key(1);
    let b = key(2);
    let b_hex = b.public().to_hex();
    let mut tombstone = record(&a, Entity::Request, "r2", &[], "", Scope::Trusted);
    tombstone.deleted = true;
    tombstone.sign(&a).expect("own key");
    let mut unsigned = record(
        &a,
        Entity::Comment,
        "c2",
        &[("Request", "r1"), ("User-ID", "u1")],
        "hi",
        Scope::Public,
    );
    unsigned.signature = None;
    vec![
        record(
            &a,
            Entity::User,
            "u1",
            &[("Username", "alice")],
            "",
            Scope::Public,
        ),
        record(
            &b,
            Entity::User,
            "u2",
            &[
                ("Username", "bob"),
                ("Invited-By", &format!("{}/u1", a.public().to_hex())),
            ],
            "",
            Scope::Public,
        ),
        record(
            &a,
            Entity::Request,
            "r1",
            &[("Title", "Lift to town"), ("Status", "open")],
            "Description:\nNeed a lift\n on Monday\n",
            Scope::Public,
        ),
        record(
            &a,
            Entity::Request,
            "r3",
            &[("Title", "Draft"), ("Status", "draft")],
            "",
            Scope::Public,
        ),
        record(
            &a,
            Entity::Comment,
            "c1",
            &[("Request", "r1"), ("User-ID", "u1"), ("Username", "alice")],
            "I can\u{2028}help %20 \t",
            Scope::Trusted,
        ),
        record(
            &a,
            Entity::Invite,
            "i1",
            &[("Code", "abc")],
            "",
            Scope::Private,
        ),
        record(
            &a,
            Entity::Vouch,
            "v1",
            &[
                ("Voucher", "u1"),
                ("Subject", &format!("{b_hex}/u2")),
                ("Created-At", "2026-01-01T00:00:00Z"),
            ],
            "",
            Scope::Public,
        ),
        record(
            &b,
            Entity::Other("event".into()),
            "e1",
            &[("Escaped", " x "), ("%odd", "ctl\u{1}")],
            "body",
            Scope::Public,
        ),
        tombstone,
        unsigned,
    ]
}

fn announcements() -> Vec<Announcement> {
    let addr = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    let v6: SocketAddr = "[::1]:4433".parse().expect("addr");
    vec![
        Announcement::sign(&key(1), 1_767_225_600_000, &[addr(4433)], None),
        Announcement::sign(
            &key(2),
            1_767_225_600_000,
            &[addr(1), v6],
            Some("https://relay.example/"),
        ),
        Announcement::sign(&key(3), 0, &[], Some("http://127.0.0.1:3340/")),
    ]
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    fs::create_dir_all(dir).expect("corpus dir");
    fs::write(dir.join(name), bytes).expect("seed written");
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let records = records();
    let sealed: Vec<Vec<u8>> = records.iter().map(Record::to_sealed_bytes).collect();

    let dir = root.join("record_sealed");
    for (i, s) in sealed.iter().enumerate() {
        write(&dir, &format!("seed-{i:02}"), s);
    }

    let cursor = Cursor {
        epoch: [9; 16],
        seq: 1234,
    };
    let mut hello = Message::hello([7; 16], Role::Node);
    if let Message::Hello { capabilities, .. } = &mut hello {
        capabilities.push("relay".into());
    }
    let messages = vec![
        hello,
        Message::hello([8; 16], Role::Hub),
        Message::Pull { cursor },
        Message::Offer,
        Message::Batch {
            records: sealed.clone(),
            next: cursor,
            done: true,
        },
        Message::Batch {
            records: sealed[..2].to_vec(),
            next: Cursor::default(),
            done: false,
        },
        Message::Batch {
            records: vec![],
            next: cursor,
            done: true,
        },
        Message::Bye,
        Message::Error {
            code: code::REVOKED,
            message: "revoked\u{1b}[2J".into(),
        },
    ];
    let dir = root.join("message_decode");
    for (i, m) in messages.iter().enumerate() {
        write(&dir, &format!("seed-{i:02}"), &m.encode().expect("encodes"));
    }

    let anns = announcements();
    let dir = root.join("announcement");
    for (i, a) in anns.iter().enumerate() {
        write(&dir, &format!("seed-{i:02}"), &a.encode().expect("encodes"));
    }

    let mut hub = Vec::new();
    for a in &anns {
        hub.push(HubRequest::Announce(a.clone()).encode().expect("encodes"));
        hub.push(HubResponse::Found(a.clone()).encode().expect("encodes"));
    }
    hub.push(
        HubRequest::Lookup {
            key: *key(1).public().as_bytes(),
        }
        .encode()
        .expect("encodes"),
    );
    hub.push(HubRequest::Info.encode().expect("encodes"));
    for r in [
        HubResponse::Accepted,
        HubResponse::Rejected {
            code: hub_code::STALE,
            reason: "stale\u{7}".into(),
        },
        HubResponse::NotFound,
        HubResponse::Info {
            relay_url: Some("https://relay.example/".into()),
        },
        HubResponse::Info { relay_url: None },
    ] {
        hub.push(r.encode().expect("encodes"));
    }
    let dir = root.join("hub_message");
    for (i, h) in hub.iter().enumerate() {
        write(&dir, &format!("seed-{i:02}"), h);
    }
    println!("seed corpus written under {}", root.display());
}
