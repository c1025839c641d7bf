//! Entities and their rules (§6): required fields, allowed values, references.

use std::fmt;

use crate::{ProtocolError, PublicKey, Record, Scope};

/// Header names the `.sync.txt` format uses for record metadata; they cannot be fields.
pub const RESERVED_FIELD_NAMES: &[&str] = &[
    "Entity",
    "ID",
    "Schema-Version",
    "Sync-Scope",
    "Updated-At",
    "Origin",
    "Version",
    "Deleted",
    "Signature",
];

/// Request statuses the app knows; `draft` requests are never exported or synced.
pub const REQUEST_STATUSES: &[&str] = &["draft", "pending", "open", "completed"];

/// What kind of record this is. Unknown names are kept and relayed, not dropped.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Entity {
    User,
    Request,
    Comment,
    Invite,
    Vouch,
    /// An entity this version does not know; kept and relayed unchanged.
    Other(String),
}

impl Entity {
    pub const KNOWN: [Entity; 5] = [
        Entity::User,
        Entity::Request,
        Entity::Comment,
        Entity::Invite,
        Entity::Vouch,
    ];

    /// Any name: known names map to their variant, others are kept as [`Entity::Other`].
    pub fn from_name(name: &str) -> Self {
        match name {
            "user" => Entity::User,
            "request" => Entity::Request,
            "comment" => Entity::Comment,
            "invite" => Entity::Invite,
            "vouch" => Entity::Vouch,
            other => Entity::Other(other.to_string()),
        }
    }

    /// A name typed by an operator: only known entities are accepted.
    pub fn parse_known(name: &str) -> Result<Self, ProtocolError> {
        match Self::from_name(name.trim()) {
            Entity::Other(_) => Err(ProtocolError::UnknownEntity(name.to_string())),
            known => Ok(known),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Entity::User => "user",
            Entity::Request => "request",
            Entity::Comment => "comment",
            Entity::Invite => "invite",
            Entity::Vouch => "vouch",
            Entity::Other(name) => name,
        }
    }

    /// Fields a live record of this entity must carry with a non-empty value.
    pub fn required_fields(&self) -> &'static [&'static str] {
        match self {
            Entity::User => &["Username"],
            Entity::Request => &["Title", "Status"],
            Entity::Comment => &["Request", "User-ID"],
            // `Created-By` is optional: the app makes invites without a user and writes it empty.
            Entity::Invite => &["Max-Uses", "Use-Count", "Auto-Approve"],
            Entity::Vouch => &["Voucher", "Subject"],
            Entity::Other(_) => &[],
        }
    }

    /// The scope a new record gets when none is given: vouches exist to be shared, so they
    /// start public; everything else starts private (§4).
    pub fn default_scope(&self) -> Scope {
        match self {
            Entity::Vouch => Scope::Public,
            _ => Scope::Private,
        }
    }
}

impl fmt::Display for Entity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A reference to a record: `<origin hex>/<id>`, or a bare id meaning the referrer's origin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    pub origin: Option<PublicKey>,
    pub id: String,
}

impl Reference {
    pub fn parse(s: &str) -> Result<Self, ProtocolError> {
        let bad = || ProtocolError::BadReference(s.to_string());
        if let Some((head, id)) = s.split_once('/')
            && head.len() == 64
            && head.bytes().all(|b| b.is_ascii_hexdigit())
        {
            if id.is_empty() {
                return Err(bad());
            }
            let origin = PublicKey::parse(head).map_err(|_| bad())?;
            return Ok(Reference {
                origin: Some(origin),
                id: id.to_string(),
            });
        }
        if s.is_empty() {
            return Err(bad());
        }
        Ok(Reference {
            origin: None,
            id: s.to_string(),
        })
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.origin {
            Some(origin) => write!(f, "{}/{}", origin.to_hex(), self.id),
            None => f.write_str(&self.id),
        }
    }
}

fn field_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.trim() == name
        && !name.contains(':')
        && !name.chars().any(char::is_control)
}

/// Checks a record against the rules of its entity. Tombstones (deleted) only need a valid key.
pub fn validate(record: &Record) -> Result<(), ProtocolError> {
    if record.id.is_empty() {
        return Err(ProtocolError::EmptyId);
    }
    let entity = record.entity.as_str().to_string();
    let bad_field = |field: &str, value: &str, reason: &'static str| ProtocolError::BadField {
        entity: entity.clone(),
        id: record.id.clone(),
        field: field.to_string(),
        value: value.to_string(),
        reason,
    };
    if entity.is_empty() || !field_name_ok(&entity) || entity.contains('/') {
        return Err(bad_field("Entity", &entity, "not a valid entity name"));
    }
    // One pass with a set: a relaying node checks every record it receives, and a field list is
    // as long as the record size limit allows (quadratic here cost seconds per record).
    let mut seen = std::collections::HashSet::with_capacity(record.fields.len());
    for (name, _) in &record.fields {
        if !field_name_ok(name) {
            return Err(bad_field(name, "", "not a valid field name"));
        }
        if RESERVED_FIELD_NAMES
            .iter()
            .any(|r| r.eq_ignore_ascii_case(name))
        {
            return Err(bad_field(name, "", "reserved header name"));
        }
        if !seen.insert(name.as_str()) {
            return Err(bad_field(name, "", "field given twice"));
        }
    }
    if record.deleted {
        return Ok(());
    }
    for &field in record.entity.required_fields() {
        match record.field(field) {
            Some(v) if !v.trim().is_empty() => {}
            _ => {
                return Err(ProtocolError::MissingField {
                    entity,
                    id: record.id.clone(),
                    field,
                });
            }
        }
    }
    match record.entity {
        Entity::Request => {
            let status = record.field("Status").unwrap_or_default();
            if !REQUEST_STATUSES.contains(&status) {
                return Err(bad_field(
                    "Status",
                    status,
                    "expected draft, pending, open or completed",
                ));
            }
        }
        Entity::Comment => {
            let r = record.field("Request").unwrap_or_default();
            Reference::parse(r).map_err(|_| bad_field("Request", r, "not a record reference"))?;
        }
        Entity::User => {
            // Optional; empty (as the app writes absent values) means a root user.
            if let Some(r) = record.field(crate::trust::INVITED_BY)
                && !r.trim().is_empty()
            {
                Reference::parse(r.trim())
                    .map_err(|_| bad_field(crate::trust::INVITED_BY, r, "not a user reference"))?;
            }
        }
        Entity::Vouch => {
            for f in ["Voucher", "Subject"] {
                let r = record.field(f).unwrap_or_default();
                Reference::parse(r).map_err(|_| bad_field(f, r, "not a user reference"))?;
            }
        }
        _ => {}
    }
    Ok(())
}
