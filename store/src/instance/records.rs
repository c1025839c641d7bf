//! Putting, removing and rescoping this instance's own records (§4, §5).

use protocol::{Entity, Record, RecordKey, Scope};

use super::{Instance, InstanceError};
use crate::{Draft, LocalChange, time};

/// `wb record put`: a local record's fields and body become exactly these.
#[derive(Clone, Debug)]
pub struct PutRecord {
    pub entity: Entity,
    pub id: String,
    /// The scope; `None` keeps an existing record's, and a new record gets its entity's default
    /// (private; a vouch: public).
    pub scope: Option<Scope>,
    pub fields: Vec<(String, String)>,
    pub body: String,
    /// Lets `Contact-*` values leave with a record that is not private (§4).
    pub allow_contact: bool,
}

/// What a put did.
#[derive(Clone, Debug)]
pub struct PutOutcome {
    pub change: LocalChange,
    /// `Contact-*` fields dropped from a record that may leave (no `allow_contact`).
    pub contact_dropped: Vec<String>,
}

/// What a scope change did.
#[derive(Clone, Debug)]
pub struct ScopeChange {
    pub change: LocalChange,
    /// The scope before the change.
    pub before: Scope,
}

impl ScopeChange {
    /// The record is seen by fewer instances than before.
    pub fn narrowed(&self) -> bool {
        self.before > self.change.record().scope
    }

    /// The record is seen by more instances than before (and a new version was made).
    pub fn widened(&self) -> bool {
        !matches!(self.change, LocalChange::Unchanged(_))
            && self.change.record().scope > self.before
    }
}

impl Instance {
    /// Creates or replaces a local record. A new version is made only if something changed.
    /// A vouch is checked first (no vouch for oneself, at most one live vouch per voucher and
    /// subject) and gets `Created-At` when it has none.
    pub fn put(&self, put: PutRecord) -> Result<PutOutcome, InstanceError> {
        let PutRecord {
            entity,
            id,
            scope,
            fields,
            body,
            allow_contact,
        } = put;
        let default_scope = entity.default_scope();
        let is_vouch = entity == Entity::Vouch;
        let now = time::now_ms();
        let mut dropped: Vec<String> = Vec::new();
        let change = self.store.local_batch(&self.key, |batch| {
            batch.allow_contact(allow_contact);
            batch.update(
                entity,
                &id,
                now,
                |current| -> Result<Draft, InstanceError> {
                    let mut fields = fields;
                    if is_vouch {
                        self.prepare_vouch_put(&id, current, &mut fields, now)?;
                    }
                    let scope = scope.or(current.map(|r| r.scope)).unwrap_or(default_scope);
                    // Contact data stays home unless allowed (§4): dropped from a record that may
                    // leave, as `wb app import` drops it.
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
                },
            )
        })?;
        Ok(PutOutcome {
            change,
            contact_dropped: dropped,
        })
    }

    /// Deletes a local record: a tombstone, so peers delete their copy at their next sync.
    pub fn remove(&self, entity: Entity, id: &str) -> Result<LocalChange, InstanceError> {
        let key = self.local_key(entity.clone(), id);
        self.store.update_local(
            &self.key,
            entity,
            id,
            time::now_ms(),
            |current| match current {
                None => Err(self.not_found(key)),
                Some(r) => Ok(Draft {
                    scope: r.scope,
                    deleted: true,
                    ..Draft::default()
                }),
            },
        )
    }

    /// Changes a live local record's scope (the privacy toggle). Widening a record with
    /// `Contact-*` values is refused unless `allow_contact` (§4).
    pub fn set_scope(
        &self,
        entity: Entity,
        id: &str,
        scope: Scope,
        allow_contact: bool,
    ) -> Result<ScopeChange, InstanceError> {
        let key = self.local_key(entity.clone(), id);
        let mut before = None;
        let change = self.store.local_batch(&self.key, |batch| {
            batch.allow_contact(allow_contact);
            batch.update(entity, id, time::now_ms(), |current| {
                let r = current.ok_or_else(|| self.not_found(key))?;
                if r.deleted {
                    return Err(InstanceError::Deleted {
                        entity: r.entity.clone(),
                        id: r.id.clone(),
                    });
                }
                before = Some(r.scope);
                Ok(Draft {
                    scope,
                    ..Draft::from_record(r)
                })
            })
        })?;
        let before = before.unwrap_or(change.record().scope);
        Ok(ScopeChange { change, before })
    }

    /// A record of this instance or of another origin.
    pub fn get(&self, key: &RecordKey) -> Result<Record, InstanceError> {
        self.store
            .get(key)?
            .ok_or_else(|| self.not_found(key.clone()))
    }

    fn local_key(&self, entity: Entity, id: &str) -> RecordKey {
        RecordKey {
            origin: self.public(),
            entity,
            id: id.to_string(),
        }
    }

    fn not_found(&self, key: RecordKey) -> InstanceError {
        InstanceError::NotFound {
            key,
            local: self.public(),
        }
    }
}
