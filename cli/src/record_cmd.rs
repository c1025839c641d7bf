//! `wb record put|get|list|rm` and `wb scope set`.

use anyhow::{Context, Result, anyhow};
use protocol::{Entity, PublicKey, Record, RecordKey, Scope};
use serde_json::{Value, json};
use store::instance::{PutOutcome, PutRecord};
use store::{Home, ListFilter, LocalChange};

use crate::args::{ListArgs, RecordCommand};
use crate::open::open;
use crate::render::{Output, record_json};

fn parse_entity(s: &str) -> Result<Entity> {
    Ok(Entity::parse_known(s)?)
}

fn parse_scope(s: &str) -> Result<Scope> {
    Ok(s.parse::<Scope>()?)
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

pub(crate) fn record(home: &Home, cmd: RecordCommand) -> Result<Output> {
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
            let PutOutcome {
                change,
                contact_dropped: dropped,
            } = inst.put(PutRecord {
                entity,
                id,
                scope,
                fields,
                body,
                allow_contact,
            })?;
            let local = inst.key().public();
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
                Some(o) => inst.resolve_origin(&o)?,
                None => inst.key().public(),
            };
            let key = RecordKey { origin, entity, id };
            let local = inst.key().public();
            let r = inst.get(&key)?;
            Ok(Output::new(
                record_text(&r, &local),
                record_json(&r, &local),
            ))
        }
        RecordCommand::List(args) => list(home, args),
        RecordCommand::Rm { entity, id } => {
            let entity = parse_entity(&entity)?;
            let inst = open(home)?;
            let local = inst.key().public();
            let change = inst.remove(entity, &id)?;
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

fn list(home: &Home, args: ListArgs) -> Result<Output> {
    let entity = args.entity.as_deref().map(parse_entity).transpose()?;
    let scope = args.scope.as_deref().map(parse_scope).transpose()?;
    let inst = open(home)?;
    let origin = args
        .origin
        .as_deref()
        .map(|o| inst.resolve_origin(o))
        .transpose()?;
    let records = inst.store().list(&ListFilter {
        entity,
        origin,
        scope,
        include_deleted: args.deleted,
    })?;
    let local = inst.key().public();
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

pub(crate) fn scope_set(
    home: &Home,
    entity: &str,
    id: &str,
    scope: &str,
    allow_contact: bool,
) -> Result<Output> {
    let entity = parse_entity(entity)?;
    let scope = parse_scope(scope)?;
    let inst = open(home)?;
    let local = inst.key().public();
    let rescoped = inst.set_scope(entity, id, scope, allow_contact)?;
    let change = &rescoped.change;
    let r = change.record();
    let text = match (change, rescoped.before) {
        (LocalChange::Unchanged(_), _) => {
            format!(
                "{} {} is already {}; nothing changed",
                r.entity, r.id, r.scope
            )
        }
        (_, prev) if prev > scope => format!(
            "{} {}: {} → {} (version {}); peers that may no longer see it will be told to delete it",
            r.entity, r.id, prev, scope, r.version
        ),
        (_, prev) => format!(
            "{} {}: {} → {} (version {})",
            r.entity, r.id, prev, scope, r.version
        ),
    };
    let mut out = Output::new(text, record_json(r, &local));
    if !allow_contact && rescoped.widened() {
        out.warnings.extend(contact_warning(r));
    }
    Ok(out)
}
