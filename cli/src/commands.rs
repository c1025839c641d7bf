//! Command execution: each command returns its [`Output`] (text and JSON); `main` prints it.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Context, Result, anyhow, bail};
use protocol::{Entity, PublicKey, Record, RecordKey, Scope, SecretKey};
use serde_json::{Value, json};
use store::{
    Draft, Home, InitOutcome, ListFilter, LocalChange, ReplaceStep, Store, StoreError, time,
};

use crate::args::{
    AppCommand, Cli, Command, ListArgs, RecordCommand, ScopeCommand, SyncCommand, TrustCommand,
};

/// What a command prints: text for people, one JSON document for scripts, warnings on stderr.
#[derive(Debug, Default)]
pub struct Output {
    pub text: String,
    pub json: Value,
    pub warnings: Vec<String>,
    /// The command ran and found something wrong (`wb doctor`): exit status 1, output printed.
    pub failed: bool,
}

impl Output {
    pub(crate) fn new(text: impl Into<String>, json: Value) -> Self {
        Self {
            text: text.into(),
            json,
            warnings: Vec::new(),
            failed: false,
        }
    }
}

pub fn run(cli: Cli) -> Result<Output> {
    let home = Home::new(&cli.home);
    let json = cli.json;
    match cli.command {
        Command::Init { name } => init(&home, name.as_deref()),
        Command::Id => id(&home),
        Command::Record(cmd) => record(&home, cmd),
        Command::Scope(ScopeCommand::Set {
            entity,
            id,
            scope,
            allow_contact,
        }) => scope_set(&home, &entity, &id, &scope, allow_contact),
        Command::Sync(SyncCommand::Keygen {
            force,
            yes,
            test_crash_after,
        }) => keygen(&home, force, yes, test_crash_after.as_deref()),
        Command::Sync(SyncCommand::Prune {
            peer,
            older_than,
            dry_run,
            yes,
        }) => crate::prune_cmd::prune(&home, peer.as_deref(), older_than.as_deref(), dry_run, yes),
        Command::Sync(SyncCommand::Peers(cmd)) => crate::peers_cmd::run(&home, cmd),
        Command::Sync(SyncCommand::Export { dir, for_peer }) => {
            crate::bundle_cmd::export(&home, &dir, for_peer.as_deref())
        }
        Command::Sync(SyncCommand::Import {
            dir,
            expect_key,
            dry_run,
        }) => crate::bundle_cmd::import(&home, &dir, expect_key.as_deref(), dry_run),
        Command::Sync(SyncCommand::Init {
            from,
            name,
            peer_name,
        }) => crate::bundle_cmd::init_from(&home, &from, name.as_deref(), peer_name.as_deref()),
        Command::Sync(SyncCommand::Status) => crate::bundle_cmd::status(&home),
        Command::Node(crate::args::NodeCommand::Run {
            common,
            sync,
            test_cut_after_batches,
            app,
        }) => {
            let flags = crate::config::Flags {
                common,
                sync,
                app,
                ..Default::default()
            };
            let settings = crate::config::resolve(&home, &flags)?;
            crate::config::init_logging(&settings);
            crate::node_cmd::run(&home, &settings, test_cut_after_batches, json)
        }
        Command::Config(crate::args::ConfigCommand::Show {
            common,
            sync,
            relay,
            app,
        }) => crate::config::show(
            &home,
            &crate::config::Flags {
                common,
                sync,
                relay,
                app,
            },
        ),
        Command::Completions { shell } => crate::install::completions(shell),
        Command::Man { dir } => crate::install::man(dir.as_deref()),
        Command::App(AppCommand::Import {
            dir,
            allow_contact,
            dry_run,
        }) => crate::app_cmd::import(&home, &dir, allow_contact, dry_run),
        Command::App(AppCommand::Export { dir }) => crate::app_cmd::export(&home, &dir),
        Command::App(AppCommand::Status) => crate::app_cmd::status(&home),
        Command::Sync(SyncCommand::Now {
            peer,
            hub,
            pull_only,
            push_only,
            timeout,
            discovery,
        }) => {
            let deadlines =
                node::session::Deadlines::per_message(std::time::Duration::from_secs(timeout));
            let direction = match (pull_only, push_only) {
                (true, _) => node::node::Direction::PullOnly,
                (_, true) => node::node::Direction::PushOnly,
                _ => node::node::Direction::Both,
            };
            match peer {
                Some(peer) if !hub => crate::node_cmd::sync_now_with(
                    &home,
                    &peer,
                    direction,
                    deadlines,
                    discovery.as_deref(),
                ),
                _ => crate::hub_cmd::sync_hubs(&home, direction, deadlines),
            }
        }
        Command::Hub(cmd) => crate::hub_cmd::run(&home, cmd, json),
        Command::Sync(SyncCommand::Pull { peer }) => crate::node_cmd::sync_now(
            &home,
            &peer,
            node::node::Direction::PullOnly,
            node::session::Deadlines::default(),
        ),
        Command::Sync(SyncCommand::Push { peer }) => crate::node_cmd::sync_now(
            &home,
            &peer,
            node::node::Direction::PushOnly,
            node::session::Deadlines::default(),
        ),
        Command::Sync(SyncCommand::Conflicts) => crate::bundle_cmd::conflicts(&home),
        Command::Sync(SyncCommand::Vouch(args)) => crate::trust_cmd::vouch(&home, args),
        Command::Trust(TrustCommand::Path { user, from }) => {
            crate::trust_cmd::path(&home, &user, from.as_deref())
        }
        Command::Trust(TrustCommand::Roots) => crate::trust_cmd::roots(&home),
        Command::Trust(TrustCommand::Graph { format }) => crate::trust_cmd::graph(&home, format),
        Command::Backup { file } => crate::backup_cmd::backup(&home, &file),
        Command::Restore { file, yes } => crate::backup_cmd::restore(&home, &file, yes),
        Command::Doctor(args) => crate::doctor_cmd::doctor(&home, &args),
    }
}

/// An opened, initialised home.
pub(crate) struct Instance {
    pub(crate) key: SecretKey,
    pub(crate) store: std::sync::Arc<Store>,
}

/// Opens the home, or, inside a running node (a control-socket client's command), uses the
/// node's open store and key.
pub(crate) fn open(home: &Home) -> Result<Instance> {
    if let Some(node) = crate::running::get() {
        return Ok(Instance {
            key: node.key().clone(),
            store: node.store().clone(),
        });
    }
    let (key, store) = home.open()?;
    Ok(Instance {
        key,
        store: std::sync::Arc::new(store),
    })
}

pub(crate) fn identity_json(key: &PublicKey, name: Option<&str>) -> Result<Value> {
    Ok(json!({
        "name": name,
        "endpoint_id": node::identity::endpoint_id(key)?.to_string(),
        "key_id": key.key_id(),
        "public_key": key.to_base64(),
        // The endpoint id alone; `wb id` adds the node's addresses (see `ticket`).
        "ticket": node::ticket::encode(key, &[])?,
    }))
}

/// A ticket for this instance (§9) and a line saying where its addresses come from: the node
/// running in this process (its live addresses), else the addresses `wb node run` recorded
/// when it last listened, else none (the ticket then carries only the endpoint id).
pub(crate) fn ticket(key: &PublicKey, store: &Store) -> Result<(String, String)> {
    let (addrs, note) = match crate::running::get() {
        Some(node) => {
            let addrs = node::ticket::advertised_addrs(node.endpoint(), node.addrs());
            let note = format!("the running node's addresses: {}", join_addrs(&addrs));
            (addrs, note)
        }
        None => {
            let addrs: Vec<std::net::SocketAddr> = store
                .listen_addrs()?
                .iter()
                .filter_map(|a| a.parse().ok())
                .collect();
            let note = if addrs.is_empty() {
                "no address: no node has listened on this home yet; after `wb node run`, \
                 `wb id` prints a ticket with its addresses"
                    .to_string()
            } else {
                format!(
                    "the addresses the node listened on when it last ran: {}",
                    join_addrs(&addrs)
                )
            };
            (addrs, note)
        }
    };
    Ok((node::ticket::encode(key, &addrs)?, note))
}

/// Addresses as `a, b, c`.
fn join_addrs(addrs: &[std::net::SocketAddr]) -> String {
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn identity_text(j: &Value) -> String {
    let s = |k: &str| j[k].as_str().unwrap_or("(none)").to_string();
    format!(
        "name:        {}\nendpoint id: {}\nkey id:      {}\npublic key:  {}\nticket:      {}",
        s("name"),
        s("endpoint_id"),
        s("key_id"),
        s("public_key"),
        s("ticket")
    )
}

pub(crate) fn init(home: &Home, name: Option<&str>) -> Result<Output> {
    let (outcome, key, store) = match crate::running::get() {
        // A running node's home is initialised: keep it, as `init` on any existing home does.
        Some(node) => {
            if let Some(name) = name {
                node.store().set_name(name)?;
            }
            (
                InitOutcome::Existing,
                node.key().clone(),
                node.store().clone(),
            )
        }
        None => {
            let (outcome, key, store) = home.init(name)?;
            (outcome, key, std::sync::Arc::new(store))
        }
    };
    let name = store.name()?;
    let mut j = identity_json(&key.public(), name.as_deref())?;
    let (word, headline) = match outcome {
        InitOutcome::Created => (
            "created",
            format!(
                "Created a new instance identity in {}",
                home.root().display()
            ),
        ),
        InitOutcome::AdoptedKeys => (
            "adopted",
            format!(
                "Adopted the existing key pair in {} and created the store",
                home.keys_dir().display()
            ),
        ),
        InitOutcome::Existing => (
            "existing",
            format!(
                "{} is already initialised; kept its identity (to replace the key: wb sync keygen --force)",
                home.root().display()
            ),
        ),
    };
    j["outcome"] = json!(word);
    j["home"] = json!(home.root().display().to_string());
    // The settings file, with the defaults, for `node run` and `hub run` (kept if there).
    let config = crate::config::write_template(home)?;
    let config_line = format!(
        "{} {}",
        if config {
            "Wrote the settings file"
        } else {
            "Kept the settings file"
        },
        home.root().join(crate::config::FILE_NAME).display()
    );
    j["config"] = json!(if config { "created" } else { "kept" });
    Ok(Output::new(
        format!("{headline}\n{config_line}\n{}", identity_text(&j)),
        j,
    ))
}

fn id(home: &Home) -> Result<Output> {
    let inst = open(home)?;
    let name = inst.store.name()?;
    let mut j = identity_json(&inst.key.public(), name.as_deref())?;
    let (ticket, note) = ticket(&inst.key.public(), &inst.store)?;
    j["ticket"] = json!(ticket);
    let text = format!("{}\n             (carries {note})", identity_text(&j));
    Ok(Output::new(text, j))
}

fn parse_entity(s: &str) -> Result<Entity> {
    Ok(Entity::parse_known(s)?)
}

fn parse_scope(s: &str) -> Result<Scope> {
    Ok(s.parse::<Scope>()?)
}

/// The origins of the store's records (deleted ones included), each once.
pub(crate) fn record_origins(store: &Store) -> Result<Vec<PublicKey>> {
    let mut keys: Vec<PublicKey> = store
        .list(&ListFilter {
            include_deleted: true,
            ..Default::default()
        })?
        .into_iter()
        .map(|r| r.origin)
        .collect();
    keys.dedup();
    Ok(keys)
}

/// Resolves `--origin`: `local`, a key in any textual form, or a key id known to the store.
pub(crate) fn resolve_origin(inst: &Instance, text: &str) -> Result<PublicKey> {
    if text == "local" {
        return Ok(inst.key.public());
    }
    if let Ok(key) = PublicKey::parse(text) {
        return Ok(key);
    }
    let wanted = text.trim().to_ascii_lowercase();
    if wanted.len() == protocol::keys::KEY_ID_LEN && wanted.bytes().all(|b| b.is_ascii_hexdigit()) {
        let mut found: Vec<PublicKey> = record_origins(&inst.store)?
            .into_iter()
            .chain([inst.key.public()])
            .filter(|k| k.key_id() == wanted)
            .collect();
        found.dedup();
        if let [key] = found[..] {
            return Ok(key);
        }
        bail!("no known origin has key id {wanted}");
    }
    bail!(
        "not a key or key id: {text:?} (expected base64, 64 hex digits, a 16-hex key id or `local`)"
    )
}

pub fn record_json(r: &Record, local: &PublicKey) -> Value {
    let fields: serde_json::Map<String, Value> = r
        .fields
        .iter()
        .map(|(n, v)| (n.clone(), json!(v)))
        .collect();
    json!({
        "origin": r.origin.to_base64(),
        "entity": r.entity.as_str(),
        "id": r.id,
        "version": r.version.to_string(),
        "scope": r.scope.as_str(),
        "deleted": r.deleted,
        "fields": fields,
        "body": r.body,
        "origin_key_id": r.origin.key_id(),
        "local": r.origin == *local,
        "signed": r.signature.is_some(),
    })
}

fn record_text(r: &Record, local: &PublicKey) -> String {
    let mut out = format!(
        "entity:  {}\nid:      {}\norigin:  {} (key id {}{})\nversion: {}\nscope:   {}\n",
        r.entity,
        r.id,
        r.origin.to_base64(),
        r.origin.key_id(),
        if r.origin == *local {
            ", this instance"
        } else {
            ""
        },
        r.version,
        r.scope,
    );
    if r.deleted {
        out.push_str("deleted: yes\n");
    }
    for (name, value) in &r.fields {
        out.push_str(&format!("{name}: {value}\n"));
    }
    if !r.body.is_empty() {
        out.push('\n');
        out.push_str(&r.body);
        if !r.body.ends_with('\n') {
            out.push('\n');
        }
    }
    out.trim_end_matches('\n').to_string()
}

fn summary(r: &Record) -> String {
    [
        "Title",
        "Username",
        "Display-Name",
        "Suggested-Username",
        "Subject",
    ]
    .iter()
    .find_map(|f| r.field(f))
    .map(|v| v.to_string())
    .or_else(|| r.body.lines().next().map(|l| l.chars().take(40).collect()))
    .unwrap_or_default()
}

fn record(home: &Home, cmd: RecordCommand) -> Result<Output> {
    match cmd {
        RecordCommand::Put {
            entity,
            id,
            scope,
            fields,
            body,
            body_file,
            allow_contact,
        } => {
            let entity = parse_entity(&entity)?;
            let scope = scope.as_deref().map(parse_scope).transpose()?;
            let fields = fields
                .iter()
                .map(|f| {
                    f.split_once('=')
                        .map(|(n, v)| (n.trim().to_string(), v.to_string()))
                        .ok_or_else(|| anyhow!("--field expects NAME=VALUE, got {f:?}"))
                })
                .collect::<Result<Vec<_>>>()?;
            let body = match (body, body_file) {
                (Some(b), _) => b,
                (None, Some(path)) => std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read --body-file {}", path.display()))?,
                (None, None) => String::new(),
            };
            let inst = open(home)?;
            let default_scope = entity.default_scope();
            let is_vouch = entity == Entity::Vouch;
            let now = time::now_ms();
            let mut dropped: Vec<String> = Vec::new();
            let change = inst.store.local_batch(&inst.key, |batch| {
                batch.allow_contact(allow_contact);
                batch.update(entity, &id, now, |current| -> Result<Draft> {
                    let mut fields = fields;
                    if is_vouch {
                        crate::trust_cmd::prepare_vouch_put(&inst, &id, current, &mut fields, now)?;
                    }
                    let scope = scope.or(current.map(|r| r.scope)).unwrap_or(default_scope);
                    // Contact data stays home unless allowed (§4): dropped from a record that
                    // may leave, as `wb app import` drops it.
                    if scope != Scope::Private && !allow_contact {
                        fields.retain(|(name, value)| {
                            let contact = name.to_ascii_lowercase().starts_with("contact-")
                                && !value.trim().is_empty();
                            if contact {
                                dropped.push(name.clone());
                            }
                            !contact
                        });
                    }
                    Ok(Draft {
                        scope,
                        deleted: false,
                        fields,
                        body,
                    })
                })
            })?;
            let local = inst.key.public();
            let r = change.record();
            let (word, text) = match &change {
                LocalChange::Created(_) => (
                    "created",
                    format!(
                        "created {} {} (version {}, {})",
                        r.entity, r.id, r.version, r.scope
                    ),
                ),
                LocalChange::Updated { .. } => (
                    "updated",
                    format!(
                        "updated {} {} (version {}, {})",
                        r.entity, r.id, r.version, r.scope
                    ),
                ),
                LocalChange::Unchanged(_) => (
                    "unchanged",
                    format!(
                        "{} {} already has this content; no new version (version {})",
                        r.entity, r.id, r.version
                    ),
                ),
            };
            let mut j = record_json(r, &local);
            j["change"] = json!(word);
            if !dropped.is_empty() {
                j["contact_dropped"] = json!(dropped);
            }
            let mut out = Output::new(text, j);
            if !dropped.is_empty() {
                out.warnings.push(format!(
                    "{} {} is {}: dropped {} (contact data leaves this instance only with \
                     --allow-contact)",
                    r.entity,
                    r.id,
                    r.scope,
                    dropped.join(", ")
                ));
            }
            if !allow_contact && !matches!(change, LocalChange::Unchanged(_)) {
                out.warnings.extend(contact_warning(r));
            }
            Ok(out)
        }
        RecordCommand::Get { entity, id, origin } => {
            let entity = parse_entity(&entity)?;
            let inst = open(home)?;
            let origin = match origin {
                Some(o) => resolve_origin(&inst, &o)?,
                None => inst.key.public(),
            };
            let key = RecordKey { origin, entity, id };
            let local = inst.key.public();
            let r = inst
                .store
                .get(&key)?
                .ok_or_else(|| not_found(&key, &local))?;
            Ok(Output::new(
                record_text(&r, &local),
                record_json(&r, &local),
            ))
        }
        RecordCommand::List(args) => list(home, args),
        RecordCommand::Rm { entity, id } => {
            let entity = parse_entity(&entity)?;
            let inst = open(home)?;
            let local = inst.key.public();
            let key = RecordKey {
                origin: local,
                entity: entity.clone(),
                id: id.clone(),
            };
            let change =
                inst.store
                    .update_local(
                        &inst.key,
                        entity,
                        &id,
                        time::now_ms(),
                        |current| match current {
                            None => Err(not_found(&key, &local)),
                            Some(r) => Ok(Draft {
                                scope: r.scope,
                                deleted: true,
                                ..Draft::default()
                            }),
                        },
                    )?;
            let r = change.record();
            let text = match change {
                LocalChange::Unchanged(_) => format!("{} {} is already deleted", r.entity, r.id),
                _ => format!(
                    "deleted {} {} (version {}); peers that had it remove their copy at their next sync",
                    r.entity, r.id, r.version
                ),
            };
            Ok(Output::new(text, record_json(r, &local)))
        }
    }
}

fn not_found(key: &RecordKey, local: &PublicKey) -> anyhow::Error {
    if key.origin == *local {
        anyhow!("no local {} {}", key.entity, key.id)
    } else {
        anyhow!(
            "no {} {} from origin {}",
            key.entity,
            key.id,
            key.origin.key_id()
        )
    }
}

fn list(home: &Home, args: ListArgs) -> Result<Output> {
    let entity = args.entity.as_deref().map(parse_entity).transpose()?;
    let scope = args.scope.as_deref().map(parse_scope).transpose()?;
    let inst = open(home)?;
    let origin = args
        .origin
        .as_deref()
        .map(|o| resolve_origin(&inst, o))
        .transpose()?;
    let records = inst.store.list(&ListFilter {
        entity,
        origin,
        scope,
        include_deleted: args.deleted,
    })?;
    let local = inst.key.public();
    let mut text = String::new();
    for r in &records {
        let who = if r.origin == local {
            "local".to_string()
        } else {
            r.origin.key_id()
        };
        let line = format!(
            "{:<8} {:<12} {:<8} {:<17} {:<16} {}{}",
            r.entity.as_str(),
            r.id,
            r.scope.as_str(),
            r.version.to_string(),
            who,
            if r.deleted { "(deleted) " } else { "" },
            summary(r),
        );
        text.push_str(line.trim_end());
        text.push('\n');
    }
    if records.is_empty() {
        text.push_str("no records\n");
    }
    let j = Value::Array(records.iter().map(|r| record_json(r, &local)).collect());
    Ok(Output::new(text.trim_end().to_string(), j))
}

fn contact_warning(r: &Record) -> Option<String> {
    if r.scope == Scope::Private || r.deleted {
        return None;
    }
    let fields = protocol::contact::contact_fields(r);
    if fields.is_empty() {
        return None;
    }
    Some(format!(
        "{} {} is {} and {} {} like contact data (an e-mail address or phone number); \
         check it is meant to leave this instance (--allow-contact silences this warning)",
        r.entity,
        r.id,
        r.scope,
        fields.join(", "),
        if fields.len() == 1 { "looks" } else { "look" },
    ))
}

fn scope_set(
    home: &Home,
    entity: &str,
    id: &str,
    scope: &str,
    allow_contact: bool,
) -> Result<Output> {
    let entity = parse_entity(entity)?;
    let scope = parse_scope(scope)?;
    let inst = open(home)?;
    let local = inst.key.public();
    let key = RecordKey {
        origin: local,
        entity: entity.clone(),
        id: id.to_string(),
    };
    let mut before = None;
    let change = inst.store.local_batch(&inst.key, |batch| {
        // Widening a record with `Contact-*` values is refused unless allowed (§4).
        batch.allow_contact(allow_contact);
        batch.update(entity, id, time::now_ms(), |current| {
            let r = current.ok_or_else(|| not_found(&key, &local))?;
            if r.deleted {
                bail!(
                    "{} {} is deleted; put it again before changing its scope",
                    r.entity,
                    r.id
                );
            }
            before = Some(r.scope);
            Ok(Draft {
                scope,
                ..Draft::from_record(r)
            })
        })
    })?;
    let r = change.record();
    let text = match (&change, before) {
        (LocalChange::Unchanged(_), _) => {
            format!(
                "{} {} is already {}; nothing changed",
                r.entity, r.id, r.scope
            )
        }
        (_, Some(prev)) if prev > scope => format!(
            "{} {}: {} → {} (version {}); peers that may no longer see it will be told to delete it",
            r.entity, r.id, prev, scope, r.version
        ),
        (_, prev) => format!(
            "{} {}: {} → {} (version {})",
            r.entity,
            r.id,
            prev.map_or("?", Scope::as_str),
            scope,
            r.version
        ),
    };
    let mut out = Output::new(text, record_json(r, &local));
    let widened = before.is_some_and(|prev| scope > prev);
    if !allow_contact && widened && !matches!(change, LocalChange::Unchanged(_)) {
        out.warnings.extend(contact_warning(r));
    }
    Ok(out)
}

fn keygen(home: &Home, force: bool, yes: bool, crash_after: Option<&str>) -> Result<Output> {
    if force && crate::running::get().is_some() {
        bail!(
            "a node is running on this home with the current key; stop it (Ctrl-C or SIGTERM) \
             before replacing the key"
        );
    }
    // An initialised home is opened whole, so a key that does not belong to its store is refused.
    let (existing, store) = if home.is_initialized() {
        let inst = open(home)?;
        (Some(inst.key), Some(inst.store))
    } else {
        match home.load_key() {
            Ok(key) => (Some(key), None),
            Err(StoreError::NotInitialized(_)) => (None, None),
            Err(e) => return Err(e.into()),
        }
    };
    let name = store.as_deref().map(Store::name).transpose()?.flatten();
    let Some(old) = existing else {
        let key = store::home::new_secret_key()?;
        home.write_key_files(&key)?;
        let mut j = identity_json(&key.public(), name.as_deref())?;
        j["outcome"] = json!("created");
        let text = format!(
            "Created a new instance key in {}\n{}",
            home.keys_dir().display(),
            identity_text(&j)
        );
        return Ok(Output::new(text, j));
    };
    if !force {
        let mut j = identity_json(&old.public(), name.as_deref())?;
        j["outcome"] = json!("existing");
        return Ok(Output::new(
            format!(
                "A key already exists (key id {}); kept it. To replace it: wb sync keygen --force",
                old.public().key_id()
            ),
            j,
        ));
    }
    if !yes {
        confirm(&format!(
            "Replace the instance key {}? Every peer must re-add this instance under its new key; \
             local records are re-signed under the new key and withdrawn under the old one.",
            old.public().key_id()
        ))?;
    }
    let new = store::home::new_secret_key()?;
    // The old secret is kept; then the store switches first and the key files follow, so an
    // interruption at any point leaves a home that opens (see `Home::replace_key`).
    let backup = home
        .keys_dir()
        .join(format!("id_ed25519.replaced-{}", old.public().key_id()));
    std::fs::copy(home.secret_key_path(), &backup)
        .with_context(|| format!("cannot back up the old key to {}", backup.display()))?;
    let moved = match &store {
        Some(store) => {
            let mut after_step = |step: ReplaceStep| {
                let name = match step {
                    ReplaceStep::Staged => "staged",
                    ReplaceStep::StoreSwitched => "store",
                };
                if crash_after == Some(name) {
                    // The test hook: stop here as a killed process would, without unwinding.
                    std::process::exit(70);
                }
                Ok(())
            };
            home.replace_key(store, &old, &new, time::now_ms(), &mut after_step)?
        }
        None => {
            home.write_key_files(&new)?;
            0
        }
    };
    let mut j = identity_json(&new.public(), name.as_deref())?;
    j["outcome"] = json!("replaced");
    j["previous_key_id"] = json!(old.public().key_id());
    j["records_resigned"] = json!(moved);
    let text = format!(
        "Replaced key {} with a new key; {moved} local records re-signed. Peers must re-add this \
         instance. The old secret key is in {}.\n{}",
        old.public().key_id(),
        backup.display(),
        identity_text(&j)
    );
    Ok(Output::new(text, j))
}

/// Asks y/N before going on; refuses without a terminal to ask on (`--yes` skips the question).
/// For a control-socket client the node cannot ask: the client asks and repeats the command.
pub(crate) fn confirm(question: &str) -> Result<()> {
    let has_terminal = match crate::control::client_tty() {
        Some(true) => return Err(crate::control::NeedsAnswer(question.to_string()).into()),
        Some(false) => false,
        None => std::io::stdin().is_terminal(),
    };
    if !has_terminal {
        bail!("refusing to continue without confirmation: no terminal to ask on (pass --yes)");
    }
    if ask_terminal(question)? {
        Ok(())
    } else {
        bail!("cancelled; nothing changed")
    }
}

/// Asks y/N on this process's terminal (question on stderr, answer on stdin).
pub(crate) fn ask_terminal(question: &str) -> Result<bool> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        bail!("refusing to continue without confirmation: no terminal to ask on (pass --yes)");
    }
    let mut stderr = std::io::stderr();
    write!(stderr, "{question} [y/N] ")?;
    stderr.flush()?;
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer)?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}
