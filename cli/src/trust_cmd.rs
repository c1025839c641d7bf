//! `wb sync vouch`, `wb trust path`, `wb trust roots` and `wb trust graph`: vouches and the cross-instance trust
//! graph (issue 6). The graph itself is [`protocol::trust`], pure over records.
//!
//! `sync vouch` is split so that a control-socket client can run the questions on its own
//! terminal while the node process does the work: [`View::candidates`] computes who is offered,
//! [`ask_voucher`] and [`choose_subjects`] ask on any reader/writer, and [`create_vouches`]
//! writes what was chosen (what `--subject … --yes` does). The hidden `--list-candidates` prints
//! the candidates as [`UserView`]s.

use std::collections::BTreeSet;
use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Result, anyhow, bail};
use protocol::trust::{self, LinkKind, TrustGraph, UserRef};
use protocol::{Entity, PublicKey, Record, Scope};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use store::{Draft, Home, ListFilter, Peer, time};

use crate::args::VouchArgs;
use crate::commands::{Instance, Output, open, record_json};

/// Wrong answers to one y/n question before giving up.
const ANSWER_TRIES_MAX: usize = 3;

/// What the trust commands need to name things: the graph, this instance, the peer registry.
pub(crate) struct View {
    local: PublicKey,
    peers: Vec<Peer>,
    graph: TrustGraph,
}

/// A user as commands print it (JSON) and as control-socket clients receive candidates.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct UserView {
    /// `<origin hex>/<id>`: what `--subject` and `trust path` take.
    #[serde(rename = "ref")]
    pub(crate) reference: String,
    pub(crate) id: String,
    pub(crate) username: Option<String>,
    /// The origin's public key (base64).
    pub(crate) origin: String,
    pub(crate) origin_key_id: String,
    /// The origin's name in wb_peers.txt, if it is a peer.
    pub(crate) instance: Option<String>,
    pub(crate) local: bool,
    pub(crate) root: bool,
    /// A short label for text: `rosa (b/1)`.
    pub(crate) label: String,
    /// Where the user lives, for text: `this instance (key id …)`, `instance b (key id …)`.
    pub(crate) instance_text: String,
}

impl View {
    pub(crate) fn load(home: &Home, inst: &Instance) -> Result<Self> {
        let mut records = Vec::new();
        for entity in [Entity::User, Entity::Vouch] {
            records.extend(inst.store.list(&ListFilter {
                entity: Some(entity),
                ..Default::default()
            })?);
        }
        Ok(Self {
            local: inst.key.public(),
            peers: store::load_peers(home)?,
            graph: TrustGraph::from_records(&records),
        })
    }

    fn peer(&self, key: &PublicKey) -> Option<&Peer> {
        store::peer_by_key(&self.peers, key)
    }

    /// `local`, a peer's name, or the key id: the ORIGIN part of a REF.
    fn origin_short(&self, key: &PublicKey) -> String {
        if *key == self.local {
            "local".to_string()
        } else if let Some(p) = self.peer(key) {
            p.name.clone()
        } else {
            key.key_id()
        }
    }

    /// An instance for text: `this instance (key id …)`, `instance b (key id …)`.
    fn instance_text(&self, key: &PublicKey) -> String {
        if *key == self.local {
            format!("this instance (key id {})", key.key_id())
        } else if let Some(p) = self.peer(key) {
            format!("instance {} (key id {})", p.name, key.key_id())
        } else {
            format!("instance with key id {}", key.key_id())
        }
    }

    fn username(&self, u: &UserRef) -> Option<String> {
        self.graph
            .user(u)
            .and_then(|r| r.field("Username"))
            .map(str::to_string)
    }

    /// `rosa (b/1)`, or `b/1` when the user record is unknown here.
    fn label(&self, u: &UserRef) -> String {
        let at = format!("{}/{}", self.origin_short(&u.origin), u.id);
        match self.username(u) {
            Some(name) => format!("{name} ({at})"),
            None => at,
        }
    }

    pub(crate) fn user_view(&self, u: &UserRef) -> UserView {
        UserView {
            reference: u.to_string(),
            id: u.id.clone(),
            username: self.username(u),
            origin: u.origin.to_base64(),
            origin_key_id: u.origin.key_id(),
            instance: self.peer(&u.origin).map(|p| p.name.clone()),
            local: u.origin == self.local,
            root: self.graph.user(u).is_some_and(trust::is_root),
            label: self.label(u),
            instance_text: self.instance_text(&u.origin),
        }
    }

    fn user_json(&self, u: &UserRef) -> Value {
        serde_json::to_value(self.user_view(u)).unwrap_or(Value::Null)
    }

    fn signer_json(&self, key: &PublicKey) -> Value {
        json!({
            "public_key": key.to_base64(),
            "key_id": key.key_id(),
            "instance": self.peer(key).map(|p| p.name.clone()),
            "local": *key == self.local,
        })
    }

    /// Every known origin: for key ids given on the command line.
    fn known_origins(&self) -> BTreeSet<PublicKey> {
        self.graph
            .users()
            .map(|(u, _)| u.origin)
            .chain(self.peers.iter().map(|p| p.public_key))
            .chain([self.local])
            .collect()
    }

    /// The ORIGIN part of a REF: `local`, a key (base64, hex, base32), a key id, a peer name.
    fn origin_named(&self, text: &str) -> Option<PublicKey> {
        if text == "local" {
            return Some(self.local);
        }
        if let Ok(key) = PublicKey::parse(text) {
            return Some(key);
        }
        let lower = text.to_ascii_lowercase();
        if lower.len() == protocol::keys::KEY_ID_LEN && lower.bytes().all(|b| b.is_ascii_hexdigit())
        {
            let found: Vec<PublicKey> = self
                .known_origins()
                .into_iter()
                .filter(|k| k.key_id() == lower)
                .collect();
            if let [key] = found[..] {
                return Some(key);
            }
        }
        store::find_peer(&self.peers, text).map(|p| p.public_key)
    }

    /// Users matching `id_or_name` by id, else by username, at `origin` or anywhere.
    fn matching(&self, origin: Option<&PublicKey>, id_or_name: &str) -> Vec<UserRef> {
        let here = |u: &&UserRef| origin.is_none_or(|o| u.origin == *o);
        let by_id: Vec<UserRef> = self
            .graph
            .users()
            .map(|(u, _)| u)
            .filter(here)
            .filter(|u| u.id == id_or_name)
            .cloned()
            .collect();
        if !by_id.is_empty() {
            return by_id;
        }
        self.graph
            .users()
            .filter(|(u, r)| here(u) && r.field("Username") == Some(id_or_name))
            .map(|(u, _)| u.clone())
            .collect()
    }

    fn one(&self, found: Vec<UserRef>, text: &str) -> Result<UserRef> {
        match &found[..] {
            [one] => Ok(one.clone()),
            [] => Err(anyhow!(
                "no user {text:?} known to this instance (local or received)"
            )),
            several => bail!(
                "{text:?} names several users ({}); give ORIGIN/ID",
                several
                    .iter()
                    .map(|u| self.label(u))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// A user reference typed by an operator: ORIGIN/ID or ID (see `wb trust path --help`).
    /// Only users whose record this instance holds are found.
    pub(crate) fn resolve_user(&self, text: &str) -> Result<UserRef> {
        let text = text.trim();
        if text.is_empty() {
            bail!("empty user reference (expected ORIGIN/ID or ID)");
        }
        // Longest ORIGIN first: a base64 key may itself hold `/`.
        for (at, _) in text.rmatch_indices('/') {
            let (head, id) = (&text[..at], &text[at + 1..]);
            if id.is_empty() {
                continue;
            }
            if let Some(origin) = self.origin_named(head) {
                let found = self.matching(Some(&origin), id);
                if found.is_empty() {
                    bail!(
                        "no user {id:?} known at {} (local or received)",
                        self.instance_text(&origin)
                    );
                }
                return self.one(found, text);
            }
        }
        let local = self.matching(Some(&self.local), text);
        if !local.is_empty() {
            return self.one(local, text);
        }
        self.one(self.matching(None, text), text)
    }

    /// The operator: a live local user, by username or id.
    pub(crate) fn local_user(&self, name: &str) -> Result<UserRef> {
        let name = name.trim();
        let found = self.matching(Some(&self.local), name);
        if found.is_empty() {
            bail!(
                "no user {name:?} at this instance: the voucher must be a local user record \
                 (wb record put user ID --field Username={name})"
            );
        }
        self.one(found, name)
    }

    /// The root users `voucher` is offered: unvouched by this instance, not the voucher;
    /// local ones first, then by instance and username.
    pub(crate) fn candidates(&self, voucher: Option<&UserRef>) -> Vec<(UserRef, UserView)> {
        let mut out: Vec<(UserRef, UserView)> = self
            .graph
            .unvouched_roots(&self.local, voucher)
            .into_iter()
            .map(|u| (u.clone(), self.user_view(u)))
            .collect();
        out.sort_by(|(_, a), (_, b)| {
            (!a.local, &a.instance_text, &a.username, &a.id).cmp(&(
                !b.local,
                &b.instance_text,
                &b.username,
                &b.id,
            ))
        });
        out
    }
}

/// True when this process may ask questions: a terminal on stdin, and not a command run inside
/// a node for a control-socket client (its stdin is not the operator's).
fn can_ask() -> bool {
    crate::running::get().is_none() && std::io::stdin().is_terminal()
}

/// Reads one line; `None` at the end of input.
fn read_answer(input: &mut dyn BufRead) -> Result<Option<String>> {
    let mut line = String::new();
    if input.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    Ok(Some(line.trim().to_string()))
}

/// Asks for the operator's username.
pub(crate) fn ask_voucher(input: &mut dyn BufRead, out: &mut dyn Write) -> Result<String> {
    write!(out, "Your username at this instance (the voucher): ")?;
    out.flush()?;
    match read_answer(input)? {
        Some(name) if !name.is_empty() => Ok(name),
        Some(_) => bail!("no username given; nothing changed"),
        None => bail!("cancelled (end of input); nothing changed"),
    }
}

/// Asks y/n for each candidate; returns the indices answered yes, in order. The end of input
/// cancels everything (nothing is created).
pub(crate) fn choose_subjects(
    candidates: &[UserView],
    input: &mut dyn BufRead,
    out: &mut dyn Write,
) -> Result<Vec<usize>> {
    writeln!(
        out,
        "{} {} not yet vouched for by this instance:",
        candidates.len(),
        if candidates.len() == 1 {
            "root user (nobody invited them) is"
        } else {
            "root users (nobody invited them) are"
        }
    )?;
    let mut chosen = Vec::new();
    for (i, c) in candidates.iter().enumerate() {
        let mut tries = 0;
        loop {
            write!(
                out,
                "Vouch for {}, a root user of {}? [y/n] ",
                c.label, c.instance_text
            )?;
            out.flush()?;
            let Some(answer) = read_answer(input)? else {
                bail!("cancelled (end of input); nothing changed");
            };
            match answer.to_ascii_lowercase().as_str() {
                "y" | "yes" => {
                    chosen.push(i);
                    break;
                }
                "n" | "no" => break,
                _ => {
                    tries += 1;
                    if tries >= ANSWER_TRIES_MAX {
                        bail!("no y/n answer for {}; nothing changed", c.label);
                    }
                    writeln!(out, "Please answer y or n.")?;
                }
            }
        }
    }
    Ok(chosen)
}

/// The live local vouch (other than `except_id`) by `voucher` for `subject`, if any.
fn existing_vouch(
    inst: &Instance,
    voucher: &UserRef,
    subject: &UserRef,
    except_id: Option<&str>,
) -> Result<Option<String>> {
    let vouches = inst.store.list(&ListFilter {
        entity: Some(Entity::Vouch),
        origin: Some(inst.key.public()),
        ..Default::default()
    })?;
    Ok(vouches
        .into_iter()
        .filter(|r| Some(r.id.as_str()) != except_id)
        .find(|r| trust::vouch_pair(r).is_some_and(|(v, s)| v == *voucher && s == *subject))
        .map(|r| r.id))
}

fn duplicate(view_voucher: &str, view_subject: &str, id: &str) -> anyhow::Error {
    anyhow!(
        "{view_voucher} already vouches for {view_subject} (vouch {id}); at most one vouch per \
         voucher and subject (withdraw it with `wb record rm vouch {id}`)"
    )
}

/// `wb record put vouch`: refuses a second live vouch for the same voucher and subject and a
/// vouch for oneself, and adds `Created-At` when missing (keeping the current one).
pub(crate) fn prepare_vouch_put(
    inst: &Instance,
    id: &str,
    current: Option<&Record>,
    fields: &mut Vec<(String, String)>,
    now_ms: u64,
) -> Result<()> {
    let local = inst.key.public();
    let get = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.trim().to_string())
    };
    // Missing or malformed references are left to the entity rules, which name the field.
    if let (Some(v), Some(s)) = (get(trust::VOUCHER), get(trust::SUBJECT))
        && let (Ok(voucher), Ok(subject)) =
            (UserRef::resolve(&v, &local), UserRef::resolve(&s, &local))
    {
        if voucher == subject {
            bail!("vouch {id}: a user cannot vouch for themselves ({v})");
        }
        if let Some(other) = existing_vouch(inst, &voucher, &subject, Some(id))? {
            return Err(duplicate(&v, &s, &other));
        }
    }
    if get(trust::CREATED_AT).is_none() {
        let created = current
            .filter(|r| !r.deleted)
            .and_then(|r| r.field(trust::CREATED_AT))
            .map_or_else(|| protocol::time::format_timestamp(now_ms), str::to_string);
        fields.push((trust::CREATED_AT.to_string(), created));
    }
    Ok(())
}

/// Writes one signed vouch per subject (what `--subject … --yes` does). Checks every subject
/// first, so a refused one creates nothing.
pub(crate) fn create_vouches(
    inst: &Instance,
    view: &View,
    voucher: &UserRef,
    subjects: &[UserRef],
    scope: Scope,
    note: &str,
) -> Result<Vec<Record>> {
    let local = inst.key.public();
    for subject in subjects {
        check_subject(inst, view, voucher, subject)?;
    }
    let mut created = Vec::new();
    for subject in subjects {
        let id = trust::vouch_id(voucher, subject);
        let now = time::now_ms();
        let change = inst.store.update_local(
            &inst.key,
            Entity::Vouch,
            &id,
            now,
            |current| -> Result<Draft> {
                if let Some(r) = current.filter(|r| !r.deleted) {
                    return Err(match trust::vouch_pair(r) {
                        Some((v, s)) if v == *voucher && s == *subject => {
                            duplicate(&view.label(voucher), &view.label(subject), &id)
                        }
                        _ => anyhow!("vouch id {id} is taken by another vouch record"),
                    });
                }
                if let Some(other) = existing_vouch(inst, voucher, subject, Some(&id))? {
                    return Err(duplicate(
                        &view.label(voucher),
                        &view.label(subject),
                        &other,
                    ));
                }
                Ok(Draft {
                    scope,
                    deleted: false,
                    fields: vec![
                        (trust::VOUCHER.into(), voucher.reference_from(&local)),
                        (trust::SUBJECT.into(), subject.reference_from(&local)),
                        (
                            trust::CREATED_AT.into(),
                            protocol::time::format_timestamp(now),
                        ),
                    ],
                    body: note.to_string(),
                })
            },
        )?;
        created.push(change.record().clone());
    }
    Ok(created)
}

/// Refuses a vouch for oneself, for an unknown user, or a second one for the same pair.
fn check_subject(inst: &Instance, view: &View, voucher: &UserRef, subject: &UserRef) -> Result<()> {
    if subject == voucher {
        bail!("{} cannot vouch for themselves", view.label(voucher));
    }
    if view.graph.user(subject).is_none() {
        bail!(
            "no user {subject} known to this instance; a vouch names a user record this \
             instance holds"
        );
    }
    if let Some(id) = existing_vouch(inst, voucher, subject, None)? {
        return Err(duplicate(&view.label(voucher), &view.label(subject), &id));
    }
    Ok(())
}

/// `wb sync vouch`.
pub fn vouch(home: &Home, args: VouchArgs) -> Result<Output> {
    let scope = match args.scope.as_deref() {
        Some(s) => s.parse::<Scope>()?,
        None => Entity::Vouch.default_scope(),
    };
    let inst = open(home)?;
    let view = View::load(home, &inst)?;
    if args.list_candidates {
        let voucher = args
            .voucher
            .as_deref()
            .map(|v| view.local_user(v))
            .transpose()?;
        let offered = offered(&inst, &view, voucher.as_ref(), &args.subjects)?;
        return Ok(list_candidates(&view, voucher.as_ref(), offered));
    }
    if args.answers.is_none() && !can_ask() && (args.voucher.is_none() || !args.yes) {
        bail!(
            "no terminal to ask on: pass --voucher USERNAME and --yes (with --subject REF, \
             repeatable, to choose whom to vouch for; without it, every root user not yet \
             vouched for)"
        );
    }
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut prompts = std::io::stderr();
    let voucher = match args.voucher.as_deref() {
        Some(v) => view.local_user(v)?,
        None => view.local_user(&ask_voucher(&mut input, &mut prompts)?)?,
    };
    let (offered, views): (Vec<UserRef>, Vec<UserView>) =
        offered(&inst, &view, Some(&voucher), &args.subjects)?
            .into_iter()
            .unzip();
    if offered.is_empty() {
        return Ok(Output::new(
            "Nothing to vouch for: every root user this instance knows is vouched for by it.",
            json!({
                "voucher": view.user_json(&voucher),
                "created": [],
                "declined": [],
            }),
        ));
    }
    let chosen: Vec<usize> = if let Some(answers) = &args.answers {
        answered(answers, offered.len())?
    } else if args.yes {
        (0..offered.len()).collect()
    } else {
        choose_subjects(&views, &mut input, &mut prompts)?
    };
    let subjects: Vec<UserRef> = chosen.iter().map(|&i| offered[i].clone()).collect();
    let records = create_vouches(
        &inst,
        &view,
        &voucher,
        &subjects,
        scope,
        args.note.as_deref().unwrap_or_default(),
    )?;
    Ok(vouch_summary(
        &view, &inst, &voucher, &offered, &chosen, &records,
    ))
}

/// The indices answered yes in a control-socket client's `--answers` (one y/n per offered user).
fn answered(answers: &str, offered: usize) -> Result<Vec<usize>> {
    if answers.chars().count() != offered {
        bail!(
            "{} answers for {offered} users: the root users changed while you answered; run \
             `wb sync vouch` again (nothing changed)",
            answers.chars().count()
        );
    }
    answers
        .chars()
        .enumerate()
        .filter_map(|(i, c)| match c {
            'y' => Some(Ok(i)),
            'n' => None,
            other => Some(Err(anyhow!("--answers takes y and n only, not {other:?}"))),
        })
        .collect()
}

/// Who `sync vouch` asks about: the `--subject` users (each checked), or else the candidates.
fn offered(
    inst: &Instance,
    view: &View,
    voucher: Option<&UserRef>,
    subjects: &[String],
) -> Result<Vec<(UserRef, UserView)>> {
    if subjects.is_empty() {
        return Ok(view.candidates(voucher));
    }
    let mut out: Vec<(UserRef, UserView)> = Vec::new();
    for s in subjects {
        let u = view.resolve_user(s)?;
        if let Some(voucher) = voucher {
            check_subject(inst, view, voucher, &u)?;
        }
        if !out.iter().any(|(known, _)| *known == u) {
            let v = view.user_view(&u);
            out.push((u, v));
        }
    }
    Ok(out)
}

fn list_candidates(
    view: &View,
    voucher: Option<&UserRef>,
    offered: Vec<(UserRef, UserView)>,
) -> Output {
    let candidates: Vec<UserView> = offered.into_iter().map(|(_, v)| v).collect();
    let mut text = String::new();
    for c in &candidates {
        text.push_str(&format!(
            "{}  {}  {}\n",
            c.reference, c.label, c.instance_text
        ));
    }
    if candidates.is_empty() {
        text.push_str("no root users left to vouch for\n");
    }
    Output::new(
        text.trim_end().to_string(),
        json!({
            "voucher": voucher.map(|v| view.user_json(v)),
            "candidates": candidates,
        }),
    )
}

fn vouch_summary(
    view: &View,
    inst: &Instance,
    voucher: &UserRef,
    offered: &[UserRef],
    chosen: &[usize],
    records: &[Record],
) -> Output {
    let local = inst.key.public();
    let mut text = format!(
        "{} vouched for {} of {} {}",
        view.label(voucher),
        records.len(),
        offered.len(),
        if offered.len() == 1 { "user" } else { "users" }
    );
    let mut created = Vec::new();
    for (&i, r) in chosen.iter().zip(records) {
        let subject = &offered[i];
        text.push_str(&format!(
            "\n  {} ({}): vouch {} ({})",
            view.label(subject),
            view.instance_text(&subject.origin),
            r.id,
            r.scope
        ));
        created.push(json!({
            "subject": view.user_json(subject),
            "vouch": record_json(r, &local),
        }));
    }
    let declined: Vec<&UserRef> = (0..offered.len())
        .filter(|i| !chosen.contains(i))
        .map(|i| &offered[i])
        .collect();
    if !declined.is_empty() {
        text.push_str(&format!(
            "\nnot vouched for: {}",
            declined
                .iter()
                .map(|u| view.label(u))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Output::new(
        text,
        json!({
            "voucher": view.user_json(voucher),
            "created": created,
            "declined": declined.iter().map(|u| view.user_json(u)).collect::<Vec<_>>(),
        }),
    )
}

/// `wb trust path USER_REF [--from USER_REF]`.
pub fn path(home: &Home, target: &str, from: Option<&str>) -> Result<Output> {
    let inst = open(home)?;
    let view = View::load(home, &inst)?;
    let target = view.resolve_user(target)?;
    let (anchors, start_text): (BTreeSet<UserRef>, String) = match from {
        Some(f) => {
            let u = view.resolve_user(f)?;
            let text = view.label(&u);
            (BTreeSet::from([u]), text)
        }
        None => (
            view.graph
                .users()
                .map(|(u, _)| u)
                .filter(|u| u.origin == view.local)
                .cloned()
                .collect(),
            "this instance's users".to_string(),
        ),
    };
    if anchors.is_empty() {
        bail!(
            "this instance has no user records to start from; pass --from USER_REF to start from \
             another user"
        );
    }
    let found = view.graph.shortest_path(&anchors, &target);
    let mut j = json!({
        "user": view.user_json(&target),
        "from": anchors.iter().map(|u| view.user_json(u)).collect::<Vec<_>>(),
        "found": found.is_some(),
        "steps": found.as_ref().map(Vec::len),
        "hops": [],
    });
    let Some(links) = found else {
        let text = format!(
            "no path: {} is not reached from {start_text} by invites and vouches",
            view.label(&target)
        );
        return Ok(Output::new(text, j));
    };
    if links.is_empty() {
        let text = format!(
            "{} is one of {start_text}: no invite or vouch needed",
            view.label(&target)
        );
        return Ok(Output::new(text, j));
    }
    let mut text = format!(
        "{} is reached from {start_text} in {} {}:",
        view.label(&target),
        links.len(),
        if links.len() == 1 { "step" } else { "steps" }
    );
    let mut hops = Vec::new();
    for (n, link) in links.iter().enumerate() {
        let (verb, what) = match link.kind {
            LinkKind::Invite => ("invited", "user record"),
            LinkKind::Vouch => ("vouched for", "vouch"),
        };
        text.push_str(&format!(
            "\n  {}. {} {verb} {}: {what} {}, signed by {}",
            n + 1,
            view.label(&link.from),
            view.label(&link.to),
            link.record.id,
            view.instance_text(link.signer()),
        ));
        hops.push(json!({
            "kind": link.kind.as_str(),
            "from": view.user_json(&link.from),
            "to": view.user_json(&link.to),
            "record": {
                "entity": link.record.entity.as_str(),
                "id": link.record.id,
                "origin": link.record.origin.to_base64(),
            },
            "signer": view.signer_json(link.signer()),
        }));
    }
    j["hops"] = Value::Array(hops);
    Ok(Output::new(text, j))
}

/// `wb trust roots`.
pub fn roots(home: &Home) -> Result<Output> {
    let inst = open(home)?;
    let view = View::load(home, &inst)?;
    let mut text = String::new();
    let mut out = Vec::new();
    for root in view.graph.roots() {
        let vouches = view.graph.vouches_for(root);
        let by: Vec<String> = vouches
            .iter()
            .map(|l| {
                format!(
                    "{} (vouch {}, signed by {})",
                    view.label(&l.from),
                    l.record.id,
                    view.instance_text(l.signer())
                )
            })
            .collect();
        text.push_str(&format!(
            "{} at {}: {}\n",
            view.label(root),
            view.instance_text(&root.origin),
            if by.is_empty() {
                "not vouched for".to_string()
            } else {
                format!("vouched for by {}", by.join("; "))
            }
        ));
        out.push(json!({
            "user": view.user_json(root),
            "vouched": !vouches.is_empty(),
            "vouched_here": vouches.iter().any(|l| *l.signer() == view.local),
            "vouches": vouches.iter().map(|l| json!({
                "id": l.record.id,
                "voucher": view.user_json(&l.from),
                "signer": view.signer_json(l.signer()),
            })).collect::<Vec<_>>(),
        }));
    }
    if out.is_empty() {
        text.push_str("no root users known to this instance\n");
    }
    Ok(Output::new(text.trim_end().to_string(), Value::Array(out)))
}

impl protocol::trust_picture::Names for View {
    fn user(&self, user: &UserRef) -> String {
        self.label(user)
    }
    fn instance(&self, key: &PublicKey) -> String {
        self.instance_text(key)
    }
}

/// `wb trust graph`: the picture as text; with `--json`, its nodes and edges.
pub fn graph(home: &Home, format: crate::args::GraphFormat) -> Result<Output> {
    use protocol::trust_picture::{Format, render};
    let inst = open(home)?;
    let view = View::load(home, &inst)?;
    let format = match format {
        crate::args::GraphFormat::Dot => Format::Dot,
        crate::args::GraphFormat::Mermaid => Format::Mermaid,
    };
    let text = render(&view.graph, format, &view);
    let users: Vec<Value> = view
        .graph
        .users()
        .map(|(u, _)| json!({"user": view.user_json(u), "instance": view.signer_json(&u.origin)}))
        .collect();
    let edges: Vec<Value> = view
        .graph
        .links()
        .iter()
        .map(|l| {
            json!({
                "from": l.from.to_string(),
                "to": l.to.to_string(),
                "kind": l.kind.as_str(),
                "record": l.record.id,
                "signer": view.signer_json(l.signer()),
            })
        })
        .collect();
    let text = text.trim_end().to_string();
    Ok(Output::new(text, json!({"users": users, "edges": edges})))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(label: &str) -> UserView {
        UserView {
            reference: format!("{}/1", "ab".repeat(32)),
            id: "1".into(),
            username: Some(label.into()),
            origin: String::new(),
            origin_key_id: "0123456789abcdef".into(),
            instance: Some("b".into()),
            local: false,
            root: true,
            label: format!("{label} (b/1)"),
            instance_text: "instance b (key id 0123456789abcdef)".into(),
        }
    }

    #[test]
    fn answers_pick_subjects_and_bad_answers_are_asked_again() {
        let cands = [candidate("rosa"), candidate("tomas"), candidate("ines")];
        let mut input: &[u8] = b"y\nmaybe\nn\nYES\n";
        let mut prompts = Vec::new();
        let chosen = choose_subjects(&cands, &mut input, &mut prompts).expect("answers");
        assert_eq!(chosen, vec![0, 2]);
        let prompts = String::from_utf8(prompts).expect("utf-8");
        assert_eq!(prompts.matches("[y/n]").count(), 4, "{prompts}");
        assert!(prompts.contains("Please answer y or n."), "{prompts}");
        assert!(prompts.contains("rosa (b/1)") && prompts.contains("instance b"));
    }

    #[test]
    fn the_end_of_input_cancels_and_so_do_repeated_bad_answers() {
        let cands = [candidate("rosa"), candidate("tomas")];
        let mut input: &[u8] = b"y\n";
        let err = choose_subjects(&cands, &mut input, &mut Vec::new()).expect_err("eof");
        assert!(err.to_string().contains("nothing changed"), "{err}");
        let mut input: &[u8] = b"a\nb\nc\n";
        let err = choose_subjects(&cands, &mut input, &mut Vec::new()).expect_err("no y/n");
        assert!(err.to_string().contains("rosa"), "{err}");
    }

    #[test]
    fn the_voucher_is_read_from_one_line() {
        let mut input: &[u8] = b"  admin \n";
        let mut prompts = Vec::new();
        let name = ask_voucher(&mut input, &mut prompts).expect("a name");
        assert_eq!(name, "admin");
        assert!(String::from_utf8_lossy(&prompts).contains("username"));
        let mut input: &[u8] = b"";
        assert!(ask_voucher(&mut input, &mut Vec::new()).is_err());
    }

    #[test]
    fn candidates_round_trip_through_json() {
        let c = candidate("rosa");
        let j = serde_json::to_value(&c).expect("json");
        assert!(j["ref"].is_string());
        let back: UserView = serde_json::from_value(j).expect("back");
        assert_eq!(back, c);
    }
}
