//! The inbox (§14, inbound): what other instances sent, written so the app's importer applies it
//! without harm.
//!
//! The app's importer overwrites a row whose integer id matches, matches users by username,
//! obeys comment blocks in request bodies, imports tombstones as live rows and never deletes.
//! So the inbox holds only other origins' users and requests (with their public comments), each
//! under an id mapped once and kept in the store (negative: never one of the app's own),
//! usernames namespaced as `name@<origin>` and reserved for the user they were handed for,
//! foreign text neutralised, and no invites, vouches, `Contact-*` or tombstones. A record handed
//! earlier and since withdrawn is written emptied and private under its mapped id: the app
//! cannot delete, but it overwrites.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;

use protocol::bundle::SIGNATURE_FILE;
use protocol::sync_txt::{
    AppComment, app_request_body, app_value, format_timestamp, write_app_file,
};
use protocol::{Entity, PublicKey, Record, RecordKey, Reference, Scope, SecretKey};
use serde::{Deserialize, Serialize};

use super::{AppError, InboxState, MapTables, Mapped, STATE_INBOX};
use crate::bundles::{RecordFiles, check_export_dir, write_signed};
use crate::db::Store;

/// How to write the inbox.
#[derive(Clone, Debug, Default)]
pub struct InboxOptions {
    pub now_ms: u64,
    /// Peer names by key: an origin's label in `Instance:` and in usernames (else its key id).
    pub labels: BTreeMap<PublicKey, String>,
}

impl InboxOptions {
    /// The options for `home` now: origins labelled by the peer names of its registry.
    pub fn for_home(home: &crate::Home, now_ms: u64) -> Result<Self, crate::StoreError> {
        let labels = crate::load_peers(home)?
            .into_iter()
            .map(|p| (p.public_key, p.name))
            .collect();
        Ok(Self { now_ms, labels })
    }
}

/// What an inbox holds and what waits.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxReport {
    pub dir: String,
    pub manifest_digest: String,
    /// Every file of the inbox (record files, manifest, bundle.sig, public key file).
    pub files: u64,
    pub users: u64,
    pub requests: u64,
    pub comments: u64,
    /// Comment authors whose profile this instance does not hold: written private, under the
    /// name the comment carries.
    pub stub_users: u64,
    /// Rows handed earlier and since withdrawn or deleted: written emptied and private.
    pub withdrawn: u64,
    /// Record files whose bytes changed (or are new), and files of a previous inbox removed.
    pub written: u64,
    pub removed: u64,
    /// The inbox holds exactly what the previous one held (bundle.sig was not re-signed).
    pub unchanged: bool,
    /// Other instances' comments on this instance's requests: the app could take them only
    /// inside a rewrite of its own request, which could revert an edit made in the app, so they
    /// are held back.
    pub held_back_on_own_requests: u64,
    /// Comments whose request this instance does not hold (or holds withdrawn).
    pub held_back_no_request: u64,
    /// Usernames that had to be disambiguated (`name@origin~tag-n`).
    pub renamed: u64,
}

/// What one export decided for a foreign user.
struct UserOut {
    id: i64,
    name: String,
    scope: Scope,
    updated_ms: u64,
    label: String,
}

/// Writes the inbox into `dir` (created if needed), signed by the instance.
pub fn write_inbox(
    store: &Store,
    key: &SecretKey,
    dir: &Path,
    opts: &InboxOptions,
) -> Result<InboxReport, AppError> {
    let own = key.public();
    let label = |origin: &PublicKey| {
        opts.labels
            .get(origin)
            .cloned()
            .unwrap_or_else(|| origin.key_id())
    };
    let last_seq = store.last_seq()?;

    // One pass over the store: other origins' users, requests and comments; our public users'
    // names (the app holds those, so they are never handed out).
    let mut users: BTreeMap<RecordKey, Record> = BTreeMap::new();
    let mut requests: BTreeMap<RecordKey, Record> = BTreeMap::new();
    let mut comments: Vec<Record> = Vec::new();
    let mut local_names: HashSet<String> = HashSet::new();
    store.scan(
        |e| e == "user" || e == "request" || e == "comment",
        |r| -> Result<(), AppError> {
            if r.origin == own {
                if r.entity == Entity::User
                    && !r.deleted
                    && let Some(name) = r.field("Username")
                {
                    local_names.insert(app_value(name));
                }
                return Ok(());
            }
            match r.entity {
                Entity::User => {
                    users.insert(r.key(), r);
                }
                Entity::Request => {
                    requests.insert(r.key(), r);
                }
                _ => comments.push(r),
            }
            Ok(())
        },
    )?;
    let live = |r: &Record| !r.deleted && r.scope != Scope::Private && !r.is_draft();
    let live_users: BTreeSet<RecordKey> = users
        .iter()
        .filter(|(_, r)| live(r))
        .map(|(k, _)| k.clone())
        .collect();
    let live_requests: BTreeSet<RecordKey> = requests
        .iter()
        .filter(|(_, r)| live(r))
        .map(|(k, _)| k.clone())
        .collect();

    let mut report = InboxReport {
        dir: dir.display().to_string(),
        ..InboxReport::default()
    };
    // Live comments under live foreign requests, each with its request and author.
    let mut delivered: Vec<(RecordKey, RecordKey, Record)> = Vec::new();
    for c in comments.iter().filter(|c| live(c)) {
        let Some(parent) = reference(c, "Request", Entity::Request) else {
            report.held_back_no_request += 1;
            continue;
        };
        if parent.origin == own {
            report.held_back_on_own_requests += 1;
            continue;
        }
        if !live_requests.contains(&parent) {
            report.held_back_no_request += 1;
            continue;
        }
        let Some(author) = reference(c, "User-ID", Entity::User) else {
            report.held_back_no_request += 1;
            continue;
        };
        delivered.push((parent, author, c.clone()));
    }
    delivered.sort_by(|a, b| {
        (&a.0, a.2.field("Created-At"), &a.2.id).cmp(&(&b.0, b.2.field("Created-At"), &b.2.id))
    });

    store.local_batch(key, |batch| -> Result<InboxReport, AppError> {
        let tx = batch.tx();
        let mut maps = MapTables::open(batch.store(), tx)?;
        // Files in `dir` that an earlier inbox of ours did not write are refused, never replaced.
        let existing = {
            let is_inbox = |digest: &str| maps.is_inbox_digest(digest).unwrap_or(false);
            check_export_dir(dir, &own, &batch.store().former_keys()?, Some(&is_inbox))?
        };
        let mut names = Names {
            local: &local_names,
            now: HashSet::new(),
            salt: maps.name_salt()?,
        };
        let mut user_out: BTreeMap<RecordKey, UserOut> = BTreeMap::new();

        // Users: live profiles first, then the authors of delivered comments we hold no
        // profile of (stubs), each under its mapped id and a name reserved for it.
        for k in &live_users {
            let Some(r) = users.get(k) else { continue };
            let base = format!(
                "{}@{}",
                app_value(r.field("Username").unwrap_or("user")),
                label(&k.origin)
            );
            let out = hand_user(
                &mut maps,
                &mut names,
                k,
                &base,
                r.scope,
                r.version.ms,
                label(&k.origin),
                &mut report,
            )?;
            user_out.insert(k.clone(), out);
            report.users += 1;
        }
        for (_, author, c) in &delivered {
            if user_out.contains_key(author) {
                continue;
            }
            let shown = app_value(c.field("Username").unwrap_or_default());
            let shown = if shown.is_empty() {
                "user".to_string()
            } else {
                shown
            };
            let base = format!("{shown}@{}", label(&author.origin));
            let out = hand_user(
                &mut maps,
                &mut names,
                author,
                &base,
                Scope::Private,
                c.version.ms,
                label(&author.origin),
                &mut report,
            )?;
            user_out.insert(author.clone(), out);
            report.stub_users += 1;
        }

        // Comments, grouped under their request.
        let mut blocks: BTreeMap<i64, Vec<AppComment>> = BTreeMap::new();
        let mut live_comments: BTreeSet<RecordKey> = BTreeSet::new();
        let mut request_ids: BTreeMap<RecordKey, i64> = BTreeMap::new();
        for k in &live_requests {
            let mut m = maps.id_of(k)?;
            m.handed = true;
            maps.put(k, &m)?;
            request_ids.insert(k.clone(), m.id);
        }
        for (parent, author, c) in &delivered {
            let (Some(&request_id), Some(user)) = (request_ids.get(parent), user_out.get(author))
            else {
                continue;
            };
            let ck = c.key();
            let mut m = maps.id_of(&ck)?;
            m.handed = true;
            m.request = Some(request_id);
            m.user = Some(user.id);
            maps.put(&ck, &m)?;
            live_comments.insert(ck);
            let created = app_value(c.field("Created-At").unwrap_or_default());
            blocks.entry(request_id).or_default().push(AppComment {
                id: m.id,
                user_id: user.id,
                username: user.name.clone(),
                created_at: if created.is_empty() {
                    format_timestamp(c.version.ms)
                } else {
                    created
                },
                scope: app_scope(c.scope),
                text: c.body.clone(),
            });
            report.comments += 1;
        }

        // Rows handed earlier that are no longer live: emptied and private.
        let mut emptied_users: Vec<(i64, String, String)> = Vec::new();
        let mut emptied_requests: BTreeMap<i64, String> = BTreeMap::new();
        for (k, m) in maps.all()? {
            if !m.handed {
                continue;
            }
            let gone = match k.entity {
                Entity::User => !user_out.contains_key(&k),
                Entity::Request => !live_requests.contains(&k),
                Entity::Comment => !live_comments.contains(&k),
                _ => false,
            };
            if !gone {
                continue;
            }
            report.withdrawn += 1;
            match k.entity {
                Entity::User => {
                    let base = format!("withdrawn@{}", label(&k.origin));
                    let name = names.assign(&mut maps, &base, m.id)?;
                    if m.username.as_deref() != Some(name.as_str()) {
                        maps.put(
                            &k,
                            &Mapped {
                                username: Some(name.clone()),
                                ..m.clone()
                            },
                        )?;
                    }
                    emptied_users.push((m.id, name, label(&k.origin)));
                }
                Entity::Request => {
                    emptied_requests.insert(m.id, label(&k.origin));
                }
                Entity::Comment => {
                    if let (Some(request), Some(user)) = (m.request, m.user) {
                        blocks.entry(request).or_default().push(AppComment {
                            id: m.id,
                            user_id: user,
                            username: String::new(),
                            created_at: format_timestamp(0),
                            scope: Scope::Private,
                            text: String::new(),
                        });
                    }
                }
                _ => {}
            }
        }

        // The files.
        // Owner-only when wb makes it: trusted records reach the app through it too.
        crate::home::create_private_dir(dir)?;
        // One name for the folder, however it was given (the node's relative path, a control
        // client's absolute one), so an unchanged inbox is recognised as such.
        if let Ok(canonical) = std::fs::canonicalize(dir) {
            report.dir = canonical.display().to_string();
        }
        crate::bundles::mark_pending(dir, &own)?;
        let mut files = RecordFiles::new(dir, existing);
        let mut write =
            |rel: String, text: String, report: &mut InboxReport| -> Result<(), AppError> {
                if files.write(rel, text.as_bytes())? {
                    report.written += 1;
                }
                Ok(())
            };
        for out in user_out.values() {
            let text = user_file(out.id, &out.name, out.scope, out.updated_ms, &out.label);
            write(format!("users/user_{}.sync.txt", out.id), text, &mut report)?;
        }
        for (id, name, origin_label) in &emptied_users {
            let text = user_file(*id, name, Scope::Private, 0, origin_label);
            write(format!("users/user_{id}.sync.txt"), text, &mut report)?;
        }
        for (k, id) in &request_ids {
            let Some(r) = requests.get(k) else { continue };
            let created_by = reference(r, "Created-By", Entity::User)
                .and_then(|u| user_out.get(&u))
                .map(|u| u.id.to_string())
                .unwrap_or_default();
            let updated = format_timestamp(r.version.ms);
            let field = |n: &str| app_value(r.field(n).unwrap_or_default());
            let created_at = match field("Created-At") {
                v if v.is_empty() => updated.clone(),
                v => v,
            };
            let mut headers = vec![
                ("Entity", "request".to_string()),
                ("ID", id.to_string()),
                ("Instance", label(&k.origin)),
                ("Schema-Version", "1".to_string()),
                ("Updated-At", updated),
                ("Sync-Scope", app_scope(r.scope).to_string()),
                ("Title", field("Title")),
                ("Status", field("Status")),
                ("Created-By", created_by),
                ("Created-At", created_at),
            ];
            let completed = field("Completed-At");
            if !completed.is_empty() {
                headers.push(("Completed-At", completed));
            }
            let body = app_request_body(&r.body, blocks.get(id).map_or(&[][..], Vec::as_slice));
            write(
                format!("requests/request_{id}.sync.txt"),
                write_app_file(&headers, &body),
                &mut report,
            )?;
            report.requests += 1;
        }
        for (id, origin_label) in &emptied_requests {
            let headers = [
                ("Entity", "request".to_string()),
                ("ID", id.to_string()),
                ("Instance", origin_label.clone()),
                ("Schema-Version", "1".to_string()),
                ("Updated-At", format_timestamp(0)),
                ("Sync-Scope", Scope::Private.to_string()),
                ("Title", String::new()),
                ("Status", "completed".to_string()),
                ("Created-By", String::new()),
                ("Created-At", format_timestamp(0)),
            ];
            let body = app_request_body("", blocks.get(id).map_or(&[][..], Vec::as_slice));
            write(
                format!("requests/request_{id}.sync.txt"),
                write_app_file(&headers, &body),
                &mut report,
            )?;
        }

        // Manifest, signature, key file; files of a previous inbox not written again go.
        let sealed = files.seal(&own)?;
        report.files = sealed.files;
        report.removed = sealed.removed;
        report.manifest_digest = hex::encode(sealed.manifest.sha256);
        let previous: Option<InboxState> = maps.state_json(STATE_INBOX)?;
        let same_dir = previous
            .as_ref()
            .is_some_and(|p| p.manifest_digest == report.manifest_digest && p.dir == report.dir);
        report.unchanged = same_dir
            && report.written == 0
            && report.removed == 0
            && sealed.manifest.is_on_disk(dir)
            && dir.join(SIGNATURE_FILE).is_file();
        if !report.unchanged {
            write_signed(dir, key, sealed.manifest, opts.now_ms)?;
        }
        crate::bundles::clear_pending(dir)?;
        maps.note_inbox_digest(&report.manifest_digest)?;
        maps.set_state_json(
            STATE_INBOX,
            &InboxState {
                dir: report.dir.clone(),
                manifest_digest: report.manifest_digest.clone(),
                written_at_ms: if report.unchanged {
                    previous.map_or(opts.now_ms, |p| p.written_at_ms)
                } else {
                    opts.now_ms
                },
                last_seq,
                report: report.clone(),
            },
        )?;
        Ok(report)
    })
}

/// The scope a foreign row gets in the app: public stays public; trusted records are for this
/// instance only, and the app knows no `trusted`, so they are private there.
fn app_scope(scope: Scope) -> Scope {
    match scope {
        Scope::Public => Scope::Public,
        _ => Scope::Private,
    }
}

/// A reference field of a record, resolved against the record's origin.
fn reference(r: &Record, field: &str, entity: Entity) -> Option<RecordKey> {
    let value = r.field(field)?.trim();
    if value.is_empty() {
        return None;
    }
    let reference = Reference::parse(value).ok()?;
    Some(RecordKey {
        origin: reference.origin.unwrap_or(r.origin),
        entity,
        id: reference.id,
    })
}

fn user_file(id: i64, name: &str, scope: Scope, updated_ms: u64, origin_label: &str) -> String {
    write_app_file(
        &[
            ("Entity", "user".to_string()),
            ("ID", id.to_string()),
            ("Instance", origin_label.to_string()),
            ("Schema-Version", "1".to_string()),
            ("Updated-At", format_timestamp(updated_ms)),
            ("Sync-Scope", app_scope(scope).to_string()),
            ("Username", name.to_string()),
        ],
        "",
    )
}

/// Maps a user, assigns its name, and records both.
#[allow(clippy::too_many_arguments)]
fn hand_user(
    maps: &mut MapTables<'_>,
    names: &mut Names<'_>,
    k: &RecordKey,
    base: &str,
    scope: Scope,
    updated_ms: u64,
    label: String,
    report: &mut InboxReport,
) -> Result<UserOut, AppError> {
    let mut m = maps.id_of(k)?;
    let name = names.assign(maps, base, m.id)?;
    if name != names.tagged(base, m.id) {
        report.renamed += 1;
    }
    m.handed = true;
    m.username = Some(name.clone());
    maps.put(k, &m)?;
    Ok(UserOut {
        id: m.id,
        name,
        scope,
        updated_ms,
        label,
    })
}

/// Username assignment. The app's importer looks a user up by username when it has no row with
/// the user's id yet (a first import), and its usernames are unique: a name the app already holds
/// would overwrite that user or fail the whole import. wb cannot see the app's private users, so
/// no readable form (`name@origin`) is safe on its own: a private app user may hold exactly that
/// name. Each name therefore ends in a tag `~xxxxxxxx` derived from a random salt kept in the
/// store, the user's app id and the name: nobody can predict it before wb hands it out, and once
/// handed, the app's uniqueness keeps it. A name handed to one mapped user is also reserved for
/// it for good, and names of the instance's own users are never handed out.
struct Names<'a> {
    local: &'a HashSet<String>,
    /// Assigned in this inbox.
    now: HashSet<String>,
    salt: [u8; 16],
}

/// Hex digits of a name's tag (32 bits: guessing one is a one-in-four-billion shot).
const NAME_TAG_LEN: usize = 8;

impl Names<'_> {
    fn tagged(&self, base: &str, id: i64) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(b"wb app username tag v1\0");
        h.update(self.salt);
        h.update(id.to_be_bytes());
        h.update(base.as_bytes());
        let tag = hex::encode(h.finalize());
        format!("{base}~{}", &tag[..NAME_TAG_LEN])
    }

    fn assign(
        &mut self,
        maps: &mut MapTables<'_>,
        base: &str,
        id: i64,
    ) -> Result<String, AppError> {
        let tagged = self.tagged(base, id);
        let mut candidate = tagged.clone();
        let mut n = 0u64;
        loop {
            let free = match maps.name_holder(&candidate)? {
                Some(holder) => holder == id,
                None => !self.local.contains(&candidate),
            } && !self.now.contains(&candidate);
            if free {
                maps.reserve_name(&candidate, id)?;
                self.now.insert(candidate.clone());
                return Ok(candidate);
            }
            n += 1;
            candidate = format!("{tagged}-{n}");
        }
    }
}
