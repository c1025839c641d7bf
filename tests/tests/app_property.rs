//! The inbox invariant of the app bridge (issue 10; DESIGN.md §14) as a property test: for random
//! app databases and random records of other instances, the app model's import of two successive
//! inboxes (`store::app::write_inbox`, with records changed and withdrawn in between) never
//! changes a row the app created, never widens a row's scope, never creates a usable invite and
//! never fails. Stores are built in-process; each case runs one python process
//! (`tests/app-model/check_import.py`) that holds the app database and imports both inboxes.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{RngSeed, TestRunner};
use protocol::sync_txt::app_value;
use protocol::{Entity, Record, RecordKey, Reference, Scope, SecretKey, Version};
use serde_json::{Value, json};
use store::app::{InboxOptions, InboxReport, write_inbox};
use store::{ApplyOptions, Draft, ListFilter, Store, StoreError};
use wb_tests::harness::copy_tree;

/// The fixed seed; `PROPTEST_RNG_SEED=N` explores others.
const SEED: u64 = 0x0a99_1b0c;
/// Cases of a default run; `WB_PROPTEST_CASES=N` runs more (or fewer).
const CASES: u32 = 48;
/// The receiver's clock for every write: record versions are dated shortly before it.
const NOW: u64 = 1_762_178_709_000;
const APP_TIME: &str = "2025-11-03T14:05:09";

/// The app's usernames: plain ones that foreign users also carry, and ones shaped like the names
/// the inbox writes (`%C%` stands for the unlabelled origin's key id).
const APP_NAMES: [&str; 10] = [
    "admin",
    "rosa",
    "sam",
    "x@y",
    "rosa@alpha",
    "sam@beta",
    "withdrawn@alpha",
    "user@beta",
    "rosa@%C%",
    "rosa@alpha#1",
];
/// Usernames foreign users (and comments) carry.
const FOREIGN_NAMES: [&str; 8] = [
    "rosa",
    "sam",
    "admin",
    "x@y",
    "rosa@alpha",
    " rosa ",
    "Comments:",
    "",
];
/// Foreign ids: integers equal to the app's ids, a negative one, non-integers.
const IDS: [&str; 5] = ["1", "2", "-1", "r x", "007"];
/// The app's invite tokens, some equal to foreign invite ids.
const TOKENS: [&str; 5] = ["1", "-1", "r x", "tok", "invite-2"];
const STATUSES: [&str; 4] = ["draft", "pending", "open", "completed"];
/// Pieces of text that imitate the app's request layout and header lines.
const FRAGMENTS: [&str; 14] = [
    "Comments:",
    "---",
    " --- ",
    "Comment-ID: 1",
    "User-ID: 1",
    "Sync-Scope: public",
    "Username: rosa",
    "Entity: invite",
    "ID: 1",
    "Description:",
    "",
    "help me",
    "Title: x",
    "Max-Uses: 9",
];
const SEPARATORS: [&str; 6] = ["\n", "\r\n", "\r", "\u{2028}", "\u{85}", " "];
const TABLES: [&str; 4] = [
    "users",
    "help_requests",
    "request_comments",
    "invite_tokens",
];

// ---------------------------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------------------------

/// Text as fragment + separator pairs (printed as such when a case fails).
type Text = Vec<(&'static str, &'static str)>;

fn render(text: &Text) -> String {
    text.iter().map(|(f, s)| format!("{f}{s}")).collect()
}

#[derive(Clone, Debug)]
struct AppUser {
    name: &'static str,
    public: bool,
    admin: bool,
}

#[derive(Clone, Debug)]
struct AppRequest {
    title: Text,
    description: Text,
    status: &'static str,
    creator: usize,
    public: bool,
}

#[derive(Clone, Debug)]
struct AppComment {
    request: usize,
    user: usize,
    body: Text,
    public: bool,
}

#[derive(Clone, Debug)]
struct AppInvite {
    token: &'static str,
    creator: usize,
    public: bool,
    auto_approve: bool,
}

/// The app's database before the first import: every row is one the app created.
#[derive(Clone, Debug)]
struct AppDb {
    users: Vec<AppUser>,
    requests: Vec<AppRequest>,
    comments: Vec<AppComment>,
    invites: Vec<AppInvite>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    User,
    Request,
    Comment,
    Invite,
    Vouch,
}

/// A user reference of a foreign record.
#[derive(Clone, Debug)]
enum UserRef {
    /// A user record received earlier in the case (any origin), else `Same("1")`.
    Received(Index),
    /// A bare id: a user of the record's own origin (held or not).
    Same(&'static str),
    /// `<hex>/<id>` of another foreign origin.
    Other(usize, &'static str),
    /// `<hex>/<n>` of this instance (an app user's id).
    Own(usize),
}

/// A comment's request.
#[derive(Clone, Debug)]
enum RequestRef {
    /// A request received earlier in the case (any origin), else `Unknown`.
    Received(Index),
    Same(&'static str),
    Other(usize, &'static str),
    /// One of the app's own requests (`<own hex>/<n>`).
    Own(usize),
    /// A request nobody holds.
    Unknown,
}

/// One version of another instance's record, as this instance receives it: content when its
/// scope reaches us, a tombstone (no fields, no body) when deleted or withdrawn.
#[derive(Clone, Debug)]
struct Foreign {
    origin: usize,
    kind: Kind,
    id: &'static str,
    scope: Scope,
    deleted: bool,
    name: &'static str,
    status: &'static str,
    title: Text,
    body: Text,
    request: RequestRef,
    user: UserRef,
}

/// A round-2 version: of a round-1 record (`again`), or of any key.
#[derive(Clone, Debug)]
struct Later {
    again: Option<Index>,
    write: Foreign,
}

#[derive(Clone, Debug)]
struct Case {
    app: AppDb,
    round1: Vec<Foreign>,
    round2: Vec<Later>,
}

fn text() -> impl Strategy<Value = Text> {
    prop::collection::vec(
        (
            prop::sample::select(&FRAGMENTS[..]),
            prop::sample::select(&SEPARATORS[..]),
        ),
        0..6,
    )
}

fn app_db() -> impl Strategy<Value = AppDb> {
    let user = (
        prop::sample::select(&APP_NAMES[..]),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(name, public, admin)| AppUser {
            name,
            public,
            admin,
        });
    let request = (
        text(),
        text(),
        prop::sample::select(&STATUSES[..]),
        0..6usize,
        any::<bool>(),
    )
        .prop_map(|(title, description, status, creator, public)| AppRequest {
            title,
            description,
            status,
            creator,
            public,
        });
    let comment =
        (0..6usize, 0..6usize, text(), any::<bool>()).prop_map(|(request, user, body, public)| {
            AppComment {
                request,
                user,
                body,
                public,
            }
        });
    let invite = (
        prop::sample::select(&TOKENS[..]),
        0..6usize,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(token, creator, public, auto_approve)| AppInvite {
            token,
            creator,
            public,
            auto_approve,
        });
    (
        prop::collection::vec(user, 0..6),
        prop::collection::vec(request, 0..6),
        prop::collection::vec(comment, 0..6),
        prop::collection::vec(invite, 0..6),
    )
        .prop_map(|(users, requests, comments, invites)| AppDb {
            users,
            requests,
            comments,
            invites,
        })
}

fn origin() -> impl Strategy<Value = usize> {
    prop_oneof![3 => Just(0usize), 2 => Just(1usize), 1 => Just(2usize)]
}

fn foreign() -> impl Strategy<Value = Foreign> {
    let kind = prop_oneof![
        3 => Just(Kind::User),
        3 => Just(Kind::Request),
        4 => Just(Kind::Comment),
        1 => Just(Kind::Invite),
        1 => Just(Kind::Vouch),
    ];
    let scope = prop_oneof![
        5 => Just(Scope::Public),
        2 => Just(Scope::Trusted),
        1 => Just(Scope::Private),
    ];
    let id = || prop::sample::select(&IDS[..]);
    let user = prop_oneof![
        3 => any::<Index>().prop_map(UserRef::Received),
        2 => id().prop_map(UserRef::Same),
        1 => (origin(), id()).prop_map(|(o, i)| UserRef::Other(o, i)),
        1 => (0..4usize).prop_map(UserRef::Own),
    ];
    let request = prop_oneof![
        8 => any::<Index>().prop_map(RequestRef::Received),
        2 => id().prop_map(RequestRef::Same),
        2 => (origin(), id()).prop_map(|(o, i)| RequestRef::Other(o, i)),
        1 => (0..4usize).prop_map(RequestRef::Own),
        1 => Just(RequestRef::Unknown),
    ];
    (
        (origin(), kind, id(), scope, prop::bool::weighted(0.2)),
        (
            prop::sample::select(&FOREIGN_NAMES[..]),
            prop::sample::select(&STATUSES[..]),
            text(),
            text(),
            request,
            user,
        ),
    )
        .prop_map(
            |((origin, kind, id, scope, deleted), (name, status, title, body, request, user))| {
                Foreign {
                    origin,
                    kind,
                    id,
                    scope,
                    deleted,
                    name,
                    status,
                    title,
                    body,
                    request,
                    user,
                }
            },
        )
}

fn case() -> impl Strategy<Value = Case> {
    let later = (prop::option::weighted(0.6, any::<Index>()), foreign())
        .prop_map(|(again, write)| Later { again, write });
    (
        app_db(),
        prop::collection::vec(foreign(), 0..10),
        prop::collection::vec(later, 0..8),
    )
        .prop_map(|(app, round1, round2)| Case {
            app,
            round1,
            round2,
        })
}

// ---------------------------------------------------------------------------------------------
// Building the store and the app's rows
// ---------------------------------------------------------------------------------------------

struct Keys {
    own: SecretKey,
    foreign: [SecretKey; 3],
}

impl Keys {
    fn new() -> Self {
        Self {
            own: SecretKey::from_bytes(&[1; 32]),
            foreign: [2u8, 3, 4].map(|n| SecretKey::from_bytes(&[n; 32])),
        }
    }

    /// Peer names of the first two origins; the third goes by its key id.
    fn labels(&self) -> BTreeMap<protocol::PublicKey, String> {
        BTreeMap::from([
            (self.foreign[0].public(), "alpha".to_string()),
            (self.foreign[1].public(), "beta".to_string()),
        ])
    }

    fn app_name(&self, name: &str) -> String {
        name.replace("%C%", &self.foreign[2].public().key_id())
    }

    /// `key` as a reference from a record of `origin`: bare when the origin is the same.
    fn key_ref(&self, origin: usize, key: &RecordKey) -> String {
        if key.origin == self.foreign[origin].public() {
            key.id.clone()
        } else {
            format!("{}/{}", key.origin.to_hex(), key.id)
        }
    }

    fn user_ref(&self, origin: usize, r: &UserRef, received: &[RecordKey]) -> String {
        let users: Vec<RecordKey> = received
            .iter()
            .filter(|k| k.entity == Entity::User)
            .cloned()
            .collect();
        match r {
            UserRef::Received(i) if !users.is_empty() => self.key_ref(origin, i.get(&users)),
            UserRef::Received(_) => "1".to_string(),
            UserRef::Same(id) => (*id).to_string(),
            UserRef::Other(o, id) => format!("{}/{id}", self.foreign[*o].public().to_hex()),
            UserRef::Own(n) => format!("{}/{}", self.own.public().to_hex(), n + 1),
        }
    }

    fn request_ref(&self, origin: usize, r: &RequestRef, received: &[RecordKey]) -> String {
        let requests: Vec<RecordKey> = received
            .iter()
            .filter(|k| k.entity == Entity::Request)
            .cloned()
            .collect();
        match r {
            RequestRef::Received(i) if !requests.is_empty() => {
                self.key_ref(origin, i.get(&requests))
            }
            RequestRef::Received(_) | RequestRef::Unknown => "no-such-request".to_string(),
            RequestRef::Same(id) => (*id).to_string(),
            RequestRef::Other(o, id) => format!("{}/{id}", self.foreign[*o].public().to_hex()),
            RequestRef::Own(n) => format!("{}/{}", self.own.public().to_hex(), n + 1),
        }
    }
}

/// The signed version this instance receives for `w`; `received`: the keys of the records
/// received before it.
fn foreign_record(keys: &Keys, w: &Foreign, ms: u64, received: &[RecordKey]) -> Record {
    let entity = match w.kind {
        Kind::User => Entity::User,
        Kind::Request => Entity::Request,
        Kind::Comment => Entity::Comment,
        Kind::Invite => Entity::Invite,
        Kind::Vouch => Entity::Vouch,
    };
    let (fields, body): (Vec<(&str, String)>, String) = if w.deleted {
        (Vec::new(), String::new())
    } else {
        let user = keys.user_ref(w.origin, &w.user, received);
        let name = if w.name.trim().is_empty() && w.kind == Kind::User {
            "user"
        } else {
            w.name
        };
        match w.kind {
            Kind::User => (
                vec![
                    ("Username", name.to_string()),
                    ("Display-Name", render(&w.title)),
                    ("Contact-Email", "someone@example.org".to_string()),
                ],
                String::new(),
            ),
            Kind::Request => (
                vec![
                    ("Title", format!("T {}", render(&w.title))),
                    ("Status", w.status.to_string()),
                    ("Created-By", user),
                    ("Created-At", APP_TIME.to_string()),
                    ("Contact-Email", "someone@example.org".to_string()),
                ],
                render(&w.body),
            ),
            Kind::Comment => (
                vec![
                    ("Request", keys.request_ref(w.origin, &w.request, received)),
                    ("User-ID", user),
                    ("Username", name.to_string()),
                    ("Created-At", render(&w.title)),
                ],
                render(&w.body),
            ),
            Kind::Invite => (
                vec![
                    ("Created-By", user),
                    ("Max-Uses", "5".to_string()),
                    ("Use-Count", "0".to_string()),
                    ("Auto-Approve", "True".to_string()),
                    ("Suggested-Username", name.to_string()),
                ],
                render(&w.body),
            ),
            Kind::Vouch => (
                vec![("Voucher", user), ("Subject", "2".to_string())],
                render(&w.body),
            ),
        }
    };
    let signer = &keys.foreign[w.origin];
    let mut record = Record {
        origin: signer.public(),
        entity,
        id: w.id.to_string(),
        version: Version::new(ms, 0),
        scope: w.scope,
        deleted: w.deleted,
        fields: fields
            .into_iter()
            .map(|(n, v)| (n.to_string(), v))
            .collect(),
        body,
        signature: None,
    };
    record.sign(signer).expect("sign a foreign record");
    record
}

fn apply(store: &Store, record: Record, received: &mut Vec<RecordKey>) {
    received.push(record.key());
    let report = store
        .apply_batch(
            std::slice::from_ref(&record),
            &ApplyOptions::new("test", NOW),
        )
        .expect("apply a foreign record");
    assert_eq!(report.rejected, 0, "rejected: {record:?}");
}

fn scope_name(public: bool) -> &'static str {
    if public { "public" } else { "private" }
}

/// The app's rows (JSON for the driver), and the instance's own records for what the app
/// exported (its public users and non-draft requests, as adoption makes them).
fn app_rows(keys: &Keys, app: &AppDb, store: &Store) -> Value {
    let mut names = BTreeSet::new();
    let mut users = Vec::new();
    for u in &app.users {
        let name = keys.app_name(u.name);
        if !names.insert(name.clone()) {
            continue;
        }
        let id = users.len() + 1;
        users.push(json!({
            "id": id, "username": name, "is_admin": i64::from(u.admin),
            "contact_email": format!("u{id}@local.example"), "created_at": APP_TIME,
            "sync_scope": scope_name(u.public),
        }));
        if u.public {
            own_record(store, keys, Entity::User, id, vec![("Username", name)]);
        }
    }
    let user_id = |n: usize| (!users.is_empty()).then(|| n % users.len() + 1);
    let mut requests = Vec::new();
    for (i, r) in app.requests.iter().enumerate() {
        let id = i + 1;
        let title = render(&r.title);
        requests.push(json!({
            "id": id, "title": title, "description": render(&r.description),
            "status": r.status, "contact_email": null, "created_by_user_id": user_id(r.creator),
            "created_at": APP_TIME, "updated_at": APP_TIME, "completed_at": null,
            "sync_scope": scope_name(r.public),
        }));
        if r.public && r.status != "draft" {
            let title = if title.trim().is_empty() {
                "untitled".to_string()
            } else {
                title
            };
            let fields = vec![("Title", title), ("Status", r.status.to_string())];
            own_record(store, keys, Entity::Request, id, fields);
        }
    }
    let comments: Vec<Value> = app
        .comments
        .iter()
        .enumerate()
        .map(|(i, c)| {
            json!({
                "id": i + 1, "help_request_id": c.request % app.requests.len().max(1) + 1,
                "user_id": user_id(c.user).unwrap_or(1), "body": render(&c.body),
                "created_at": APP_TIME, "deleted_at": null, "sync_scope": scope_name(c.public),
            })
        })
        .collect();
    let mut tokens = BTreeSet::new();
    let invites: Vec<Value> = app
        .invites
        .iter()
        .filter(|v| tokens.insert(v.token))
        .map(|v| {
            json!({
                "token": v.token, "created_by_user_id": user_id(v.creator), "created_at": APP_TIME,
                "expires_at": null, "max_uses": 3, "use_count": 1, "disabled": 0,
                "auto_approve": i64::from(v.auto_approve), "suggested_username": null,
                "suggested_bio": null, "sync_scope": scope_name(v.public),
            })
        })
        .collect();
    json!({
        "users": users, "help_requests": requests, "request_comments": comments,
        "invite_tokens": invites,
    })
}

fn own_record(store: &Store, keys: &Keys, entity: Entity, id: usize, fields: Vec<(&str, String)>) {
    let draft = Draft {
        scope: Scope::Public,
        deleted: false,
        fields: fields
            .into_iter()
            .map(|(n, v)| (n.to_string(), v))
            .collect(),
        body: String::new(),
    };
    store
        .update_local(&keys.own, entity, &id.to_string(), NOW, |_| {
            Ok::<_, StoreError>(draft)
        })
        .expect("an own record");
}

/// Every record the store holds, tombstones included, by key.
fn records(store: &Store) -> BTreeMap<RecordKey, Record> {
    store
        .list(&ListFilter {
            include_deleted: true,
            ..Default::default()
        })
        .expect("list the store")
        .into_iter()
        .map(|r| (r.key(), r))
        .collect()
}

/// Every app id the store mapped (allocated from -1 downwards, never reused).
fn mapped_ids(store: &Store) -> BTreeMap<i64, RecordKey> {
    let mut out = BTreeMap::new();
    for id in (i64::MIN..0).rev() {
        match store.app_unmapped(id).expect("read the id mapping") {
            Some(key) => out.insert(id, key),
            None => break,
        };
    }
    out
}

/// What the driver reports: the dumps before and after each import, and each import's result.
struct AppRun {
    before: Value,
    after: Vec<Value>,
    imports: Vec<Value>,
}

fn run_app(db: &Path, rows: &Value, imports: &[PathBuf]) -> Result<AppRun, TestCaseError> {
    let driver = wb_tests::app::model().with_file_name("check_import.py");
    let spec = json!({
        "db": db, "rows": rows, "imports": imports, "expect_key": null,
    });
    let mut child = Command::new("python3")
        .arg(&driver)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3 with the import driver");
    child
        .stdin
        .take()
        .expect("the driver's stdin")
        .write_all(spec.to_string().as_bytes())
        .expect("write the driver's spec");
    let out = child.wait_with_output().expect("wait for the driver");
    if !out.status.success() {
        return Err(TestCaseError::fail(format!(
            "the driver failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let mut v: Value = serde_json::from_slice(&out.stdout).expect("the driver prints JSON");
    let list = |v: &mut Value, k: &str| v[k].as_array_mut().map(std::mem::take).unwrap_or_default();
    Ok(AppRun {
        after: list(&mut v, "after"),
        imports: list(&mut v, "imports"),
        before: v["before"].take(),
    })
}

// ---------------------------------------------------------------------------------------------
// The property
// ---------------------------------------------------------------------------------------------

/// A table's rows by primary key (`id`, or an invite's `token`), as JSON text.
fn rows_by_key(dump: &Value, table: &str) -> BTreeMap<String, Value> {
    let key = if table == "invite_tokens" {
        "token"
    } else {
        "id"
    };
    dump[table]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| (r[key].to_string(), r.clone()))
                .collect()
        })
        .unwrap_or_default()
}

fn table_entity(table: &str) -> Entity {
    match table {
        "users" => Entity::User,
        "help_requests" => Entity::Request,
        _ => Entity::Comment,
    }
}

/// A reference field of a record, resolved against the record's origin.
fn reference(r: &Record, field: &str, entity: Entity) -> Option<RecordKey> {
    let reference = Reference::parse(r.field(field)?.trim()).ok()?;
    Some(RecordKey {
        origin: reference.origin.unwrap_or(r.origin),
        entity,
        id: reference.id,
    })
}

/// The record is one the inbox hands the app (any scope but private, not deleted, no draft).
fn live(state: &BTreeMap<RecordKey, Record>, key: &RecordKey) -> bool {
    state
        .get(key)
        .is_some_and(|r| !r.deleted && r.scope != Scope::Private && !r.is_draft())
}

/// The record may be public in the app: live and public; a comment also only under a foreign
/// request it is handed with.
fn may_be_public(state: &BTreeMap<RecordKey, Record>, own: &Keys, key: &RecordKey) -> bool {
    let Some(r) = state.get(key) else {
        return false;
    };
    live(state, key)
        && r.scope == Scope::Public
        && (key.entity != Entity::Comment
            || reference(r, "Request", Entity::Request)
                .is_some_and(|p| p.origin != own.own.public() && live(state, &p)))
}

/// One round's expectations on the app's database after its import.
struct Round<'a> {
    /// 1-based, for messages.
    n: usize,
    state: &'a BTreeMap<RecordKey, Record>,
    after: &'a Value,
    /// The dump after the previous import and the store then (none before round 1).
    previous: Option<(&'a Value, &'a BTreeMap<RecordKey, Record>)>,
}

fn check_round(
    keys: &Keys,
    before: &Value,
    ids: &BTreeMap<i64, RecordKey>,
    round: &Round<'_>,
) -> Result<(), TestCaseError> {
    let n = round.n;
    for table in TABLES {
        let was = rows_by_key(before, table);
        let now = rows_by_key(round.after, table);
        // 1. The app's own rows, byte for byte.
        for (k, row) in &was {
            prop_assert_eq!(
                now.get(k).map(Value::to_string),
                Some(row.to_string()),
                "import {}: the app's own {} row {} changed",
                n,
                table,
                k
            );
        }
        // 3. No invite but the app's own.
        if table == "invite_tokens" {
            prop_assert_eq!(
                now.keys().collect::<Vec<_>>(),
                was.keys().collect::<Vec<_>>(),
                "import {}: invite tokens",
                n
            );
            continue;
        }
        let previous = round.previous.map(|(dump, _)| rows_by_key(dump, table));
        for (k, row) in now.iter().filter(|(k, _)| !was.contains_key(*k)) {
            let id = row["id"].as_i64().unwrap_or(0);
            prop_assert!(
                id < 0,
                "import {n}: a foreign {table} row without a negative id: {row}"
            );
            let key = ids.get(&id);
            prop_assert!(
                key.is_some_and(|key| key.entity == table_entity(table)),
                "import {n}: {table} row {id} maps to {key:?}"
            );
            let Some(key) = key else { continue };
            let scope = row["sync_scope"].as_str().unwrap_or_default();
            prop_assert!(
                scope == "public" || scope == "private",
                "import {n}: {table} row {row}"
            );
            prop_assert!(
                row.get("contact_email").is_none_or(Value::is_null),
                "import {n}: a foreign contact: {row}"
            );
            // 2. Public only while its record is live and public: trusted, withdrawn, deleted
            // or narrowed records are private in the app.
            prop_assert!(
                scope != "public" || may_be_public(round.state, keys, key),
                "import {n}: {table} row {row} is public, its record is {:?}",
                round.state.get(key)
            );
            // 2. Never widened by an import unless its origin widened the record.
            if let (Some(previous), Some((_, state))) = (&previous, round.previous)
                && scope == "public"
                && previous
                    .get(k)
                    .is_some_and(|p| p["sync_scope"].as_str() != Some("public"))
            {
                prop_assert!(
                    !may_be_public(state, keys, key),
                    "import {n}: {table} row {id} widened to public; its record was public \
                     already: {:?}",
                    state.get(key)
                );
            }
        }
    }
    // What the app holds for each live foreign user and request is that record's, under the id
    // the store mapped for it.
    let by_key: BTreeMap<&RecordKey, i64> = ids.iter().map(|(id, k)| (k, *id)).collect();
    let users = rows_by_key(round.after, "users");
    let requests = rows_by_key(round.after, "help_requests");
    for (key, r) in round.state {
        if key.origin == keys.own.public() || !live(round.state, key) {
            continue;
        }
        let Some(id) = by_key.get(key) else {
            prop_assert!(
                !matches!(key.entity, Entity::User | Entity::Request),
                "round {n}: {key:?} was not handed"
            );
            continue;
        };
        let expected_scope = if r.scope == Scope::Public {
            "public"
        } else {
            "private"
        };
        match key.entity {
            Entity::User => {
                let row = users.get(&id.to_string());
                prop_assert!(
                    row.is_some_and(
                        |row| row["username"].as_str().is_some_and(|u| !u.is_empty())
                            && row["sync_scope"] == expected_scope
                    ),
                    "import {n}: user {key:?} as {id}: {row:?}"
                );
            }
            Entity::Request => {
                let row = requests.get(&id.to_string());
                let title = app_value(r.field("Title").unwrap_or_default());
                prop_assert!(
                    row.is_some_and(
                        |row| row["title"] == title.as_str() && row["sync_scope"] == expected_scope
                    ),
                    "import {n}: request {key:?} as {id}: {row:?}"
                );
            }
            _ => {}
        }
    }
    Ok(())
}

/// What the inboxes of all cases held, summed: printed so a run shows what it exercised.
#[derive(Default)]
struct Coverage {
    users: Cell<u64>,
    requests: Cell<u64>,
    comments: Cell<u64>,
    stub_users: Cell<u64>,
    withdrawn: Cell<u64>,
    held_back: Cell<u64>,
    renamed: Cell<u64>,
}

impl Coverage {
    fn add(&self, r: &InboxReport) {
        let held_back = r.held_back_on_own_requests + r.held_back_no_request;
        for (cell, n) in [
            (&self.users, r.users),
            (&self.requests, r.requests),
            (&self.comments, r.comments),
            (&self.stub_users, r.stub_users),
            (&self.withdrawn, r.withdrawn),
            (&self.held_back, held_back),
            (&self.renamed, r.renamed),
        ] {
            cell.set(cell.get() + n);
        }
    }
}

fn run_case(case: &Case, coverage: &Coverage) -> Result<(), TestCaseError> {
    let keys = Keys::new();
    let tmp = tempfile::tempdir().expect("temporary directory");
    let store = Store::open_or_create(&tmp.path().join("store.redb")).expect("store");
    let rows = app_rows(&keys, &case.app, &store);
    let opts = InboxOptions {
        now_ms: NOW,
        labels: keys.labels(),
    };

    // Round 1: records arrive, the inbox is written (a copy is what the app imports first).
    let mut received = Vec::new();
    for (i, w) in case.round1.iter().enumerate() {
        let record = foreign_record(&keys, w, NOW - 100_000 + i as u64, &received);
        apply(&store, record, &mut received);
    }
    let inbox = tmp.path().join("wb_inbox");
    coverage.add(&write_inbox(&store, &keys.own, &inbox, &opts).expect("the first inbox"));
    let first = tmp.path().join("inbox1");
    copy_tree(&inbox, &first);
    let state1 = records(&store);
    let ids1 = mapped_ids(&store);

    // Round 2: newer versions (edits, narrowing, withdrawals, new records), the same inbox
    // folder written again.
    for (i, later) in case.round2.iter().enumerate() {
        let mut w = later.write.clone();
        if let Some(again) = later.again.as_ref().filter(|_| !case.round1.is_empty()) {
            let old = again.get(&case.round1);
            (w.origin, w.kind, w.id) = (old.origin, old.kind, old.id);
        }
        let record = foreign_record(&keys, &w, NOW - 50_000 + i as u64, &received);
        apply(&store, record, &mut received);
    }
    coverage.add(&write_inbox(&store, &keys.own, &inbox, &opts).expect("the second inbox"));
    let state2 = records(&store);
    let ids2 = mapped_ids(&store);

    // 5. A foreign record keeps its app id.
    for (id, key) in &ids1 {
        prop_assert_eq!(ids2.get(id), Some(key), "app id {} changed its record", id);
    }
    let distinct: BTreeSet<&RecordKey> = ids2.values().collect();
    prop_assert_eq!(distinct.len(), ids2.len(), "a record with two app ids");

    let app = run_app(&tmp.path().join("app.db"), &rows, &[first, inbox.clone()])?;
    // 4. Every import succeeded.
    for (i, result) in app.imports.iter().enumerate() {
        prop_assert_eq!(
            result["status"].as_i64(),
            Some(0),
            "import {} failed: {}",
            i + 1,
            result["error"]
        );
    }
    prop_assert_eq!(app.after.len(), 2);
    check_round(
        &keys,
        &app.before,
        &ids2,
        &Round {
            n: 1,
            state: &state1,
            after: &app.after[0],
            previous: None,
        },
    )?;
    check_round(
        &keys,
        &app.before,
        &ids2,
        &Round {
            n: 2,
            state: &state2,
            after: &app.after[1],
            previous: Some((&app.after[0], &state1)),
        },
    )?;
    Ok(())
}

fn cases() -> u32 {
    std::env::var("WB_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(CASES)
}

/// Random app databases (users with names shaped like the inbox's, requests and comments with
/// text imitating the app's layout, invites) and two rounds of records from three other
/// instances (colliding and non-integer ids, tombstones, withdrawals, drafts, trusted records,
/// invites and vouches, comments on the app's requests, on foreign and on unknown requests, by
/// authors without a profile): the app's import of both inboxes keeps every row it created,
/// widens no scope, admits no foreign invite and never fails.
#[test]
fn the_apps_import_of_the_inbox_never_harms_the_app() {
    let cases = cases();
    let mut config = ProptestConfig::with_cases(cases);
    config.failure_persistence = None;
    config.max_shrink_iters = 1024;
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        config.rng_seed = RngSeed::Fixed(SEED);
    }
    let seed = std::env::var("PROPTEST_RNG_SEED").unwrap_or_else(|_| format!("{SEED:#x}"));
    let started = Instant::now();
    let coverage = Coverage::default();
    let mut runner = TestRunner::new(config);
    if let Err(e) = runner.run(&case(), |case| run_case(&case, &coverage)) {
        panic!("{e}");
    }
    eprintln!(
        "app_property: {cases} cases passed in {:.1} s (seed {seed}; WB_PROPTEST_CASES=N runs \
         more, PROPTEST_RNG_SEED=N another seed); the inboxes handed {} users, {} requests, {} \
         comments, {} comment authors without a profile, {} withdrawn rows, held back {} \
         comments, renamed {} users",
        started.elapsed().as_secs_f64(),
        coverage.users.get(),
        coverage.requests.get(),
        coverage.comments.get(),
        coverage.stub_users.get(),
        coverage.withdrawn.get(),
        coverage.held_back.get(),
        coverage.renamed.get(),
    );
}
