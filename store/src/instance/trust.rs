//! Naming users and instances for people, vouch candidates, and creating vouches (issue 6).
//! The trust graph itself is [`protocol::trust`], pure over records.

use std::collections::BTreeSet;

use protocol::trust::{self, TrustGraph, UserRef};
use protocol::{Entity, PublicKey, Record, Scope};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Instance, InstanceError};
use crate::{Draft, ListFilter, Peer, time};

/// What the trust commands need to name things: the graph, this instance, the peer registry.
#[derive(Debug)]
pub struct TrustView {
    pub local: PublicKey,
    pub peers: Vec<Peer>,
    pub graph: TrustGraph,
}

/// A user as commands print it (JSON) and as control-socket clients receive candidates.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserView {
    /// `<origin hex>/<id>`: what `--subject` and `trust path` take.
    #[serde(rename = "ref")]
    pub reference: String,
    pub id: String,
    pub username: Option<String>,
    /// The origin's public key (base64).
    pub origin: String,
    pub origin_key_id: String,
    /// The origin's name in wb_peers.txt, if it is a peer.
    pub instance: Option<String>,
    pub local: bool,
    pub root: bool,
    /// A short label for text: `rosa (b/1)`.
    pub label: String,
    /// Where the user lives, for text: `this instance (key id …)`, `instance b (key id …)`.
    pub instance_text: String,
}

impl TrustView {
    pub fn load(inst: &Instance) -> Result<Self, InstanceError> {
        let mut records = Vec::new();
        for entity in [Entity::User, Entity::Vouch] {
            records.extend(inst.store().list(&ListFilter {
                entity: Some(entity),
                ..Default::default()
            })?);
        }
        Ok(Self {
            local: inst.public(),
            peers: crate::load_peers(inst.home())?,
            graph: TrustGraph::from_records(&records),
        })
    }

    pub fn peer(&self, key: &PublicKey) -> Option<&Peer> {
        crate::peer_by_key(&self.peers, key)
    }

    /// `local`, a peer's name, or the key id: the ORIGIN part of a REF.
    pub fn origin_short(&self, key: &PublicKey) -> String {
        if *key == self.local {
            "local".to_string()
        } else if let Some(p) = self.peer(key) {
            p.name.clone()
        } else {
            key.key_id()
        }
    }

    /// An instance for text: `this instance (key id …)`, `instance b (key id …)`.
    pub fn instance_text(&self, key: &PublicKey) -> String {
        if *key == self.local {
            format!("this instance (key id {})", key.key_id())
        } else if let Some(p) = self.peer(key) {
            format!("instance {} (key id {})", p.name, key.key_id())
        } else {
            format!("instance with key id {}", key.key_id())
        }
    }

    pub fn username(&self, u: &UserRef) -> Option<String> {
        self.graph
            .user(u)
            .and_then(|r| r.field("Username"))
            .map(str::to_string)
    }

    /// `rosa (b/1)`, or `b/1` when the user record is unknown here.
    pub fn label(&self, u: &UserRef) -> String {
        let at = format!("{}/{}", self.origin_short(&u.origin), u.id);
        match self.username(u) {
            Some(name) => format!("{name} ({at})"),
            None => at,
        }
    }

    pub fn user_view(&self, u: &UserRef) -> UserView {
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

    pub fn user_json(&self, u: &UserRef) -> Value {
        serde_json::to_value(self.user_view(u)).unwrap_or(Value::Null)
    }

    pub fn signer_json(&self, key: &PublicKey) -> Value {
        json!({
            "public_key": key.to_base64(),
            "key_id": key.key_id(),
            "instance": self.peer(key).map(|p| p.name.clone()),
            "local": *key == self.local,
        })
    }

    /// Every known origin: for key ids given on the command line.
    pub fn known_origins(&self) -> BTreeSet<PublicKey> {
        self.graph
            .users()
            .map(|(u, _)| u.origin)
            .chain(self.peers.iter().map(|p| p.public_key))
            .chain([self.local])
            .collect()
    }

    /// The ORIGIN part of a REF: `local`, a key (base64, hex, base32), a key id, a peer name.
    pub fn origin_named(&self, text: &str) -> Option<PublicKey> {
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
        crate::find_peer(&self.peers, text).map(|p| p.public_key)
    }

    /// Users matching `id_or_name` by id, else by username, at `origin` or anywhere.
    pub fn matching(&self, origin: Option<&PublicKey>, id_or_name: &str) -> Vec<UserRef> {
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

    pub fn one(&self, found: Vec<UserRef>, text: &str) -> Result<UserRef, InstanceError> {
        match &found[..] {
            [one] => Ok(one.clone()),
            [] => Err(InstanceError::UnknownUser {
                text: text.to_string(),
            }),
            several => Err(InstanceError::AmbiguousUser {
                text: text.to_string(),
                labels: several.iter().map(|u| self.label(u)).collect(),
            }),
        }
    }

    /// A user reference typed by an operator: ORIGIN/ID or ID (see `wb trust path --help`).
    /// Only users whose record this instance holds are found.
    pub fn resolve_user(&self, text: &str) -> Result<UserRef, InstanceError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(InstanceError::EmptyUserRef);
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
                    return Err(InstanceError::UnknownUserAt {
                        id: id.to_string(),
                        instance: self.instance_text(&origin),
                    });
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
    pub fn local_user(&self, name: &str) -> Result<UserRef, InstanceError> {
        let name = name.trim();
        let found = self.matching(Some(&self.local), name);
        if found.is_empty() {
            return Err(InstanceError::NoLocalUser {
                name: name.to_string(),
            });
        }
        self.one(found, name)
    }

    /// The root users `voucher` is offered: unvouched by this instance, not the voucher;
    /// local ones first, then by instance and username.
    pub fn candidates(&self, voucher: Option<&UserRef>) -> Vec<(UserRef, UserView)> {
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

impl protocol::trust_picture::Names for TrustView {
    fn user(&self, user: &UserRef) -> String {
        self.label(user)
    }
    fn instance(&self, key: &PublicKey) -> String {
        self.instance_text(key)
    }
}

impl Instance {
    /// The live local vouch (other than `except_id`) by `voucher` for `subject`, if any.
    fn existing_vouch(
        &self,
        voucher: &UserRef,
        subject: &UserRef,
        except_id: Option<&str>,
    ) -> Result<Option<String>, InstanceError> {
        let vouches = self.store.list(&ListFilter {
            entity: Some(Entity::Vouch),
            origin: Some(self.public()),
            ..Default::default()
        })?;
        Ok(vouches
            .into_iter()
            .filter(|r| Some(r.id.as_str()) != except_id)
            .find(|r| trust::vouch_pair(r).is_some_and(|(v, s)| v == *voucher && s == *subject))
            .map(|r| r.id))
    }

    /// `wb record put vouch`: refuses a second live vouch for the same voucher and subject and
    /// a vouch for oneself, and adds `Created-At` when missing (keeping the current one).
    pub(crate) fn prepare_vouch_put(
        &self,
        id: &str,
        current: Option<&Record>,
        fields: &mut Vec<(String, String)>,
        now_ms: u64,
    ) -> Result<(), InstanceError> {
        let local = self.public();
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
                return Err(InstanceError::VouchForSelfInRecord {
                    id: id.to_string(),
                    user: v,
                });
            }
            if let Some(other) = self.existing_vouch(&voucher, &subject, Some(id))? {
                return Err(InstanceError::DuplicateVouch {
                    voucher: v,
                    subject: s,
                    id: other,
                });
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

    /// Writes one signed vouch per subject (what `wb sync vouch --subject … --yes` does).
    /// Checks every subject first, so a refused one creates nothing.
    pub fn create_vouches(
        &self,
        view: &TrustView,
        voucher: &UserRef,
        subjects: &[UserRef],
        scope: Scope,
        note: &str,
    ) -> Result<Vec<Record>, InstanceError> {
        let local = self.public();
        for subject in subjects {
            self.check_subject(view, voucher, subject)?;
        }
        let mut created = Vec::new();
        for subject in subjects {
            let duplicate = |id: String| InstanceError::DuplicateVouch {
                voucher: view.label(voucher),
                subject: view.label(subject),
                id,
            };
            let id = trust::vouch_id(voucher, subject);
            let now = time::now_ms();
            let change = self.store.update_local(
                &self.key,
                Entity::Vouch,
                &id,
                now,
                |current| -> Result<Draft, InstanceError> {
                    if let Some(r) = current.filter(|r| !r.deleted) {
                        return Err(match trust::vouch_pair(r) {
                            Some((v, s)) if v == *voucher && s == *subject => duplicate(id.clone()),
                            _ => InstanceError::VouchIdTaken { id: id.clone() },
                        });
                    }
                    if let Some(other) = self.existing_vouch(voucher, subject, Some(&id))? {
                        return Err(duplicate(other));
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
    pub fn check_subject(
        &self,
        view: &TrustView,
        voucher: &UserRef,
        subject: &UserRef,
    ) -> Result<(), InstanceError> {
        if subject == voucher {
            return Err(InstanceError::VouchForSelf {
                user: view.label(voucher),
            });
        }
        if view.graph.user(subject).is_none() {
            return Err(InstanceError::UnknownSubject {
                subject: subject.to_string(),
            });
        }
        if let Some(id) = self.existing_vouch(voucher, subject, None)? {
            return Err(InstanceError::DuplicateVouch {
                voucher: view.label(voucher),
                subject: view.label(subject),
                id,
            });
        }
        Ok(())
    }

    /// Who `wb sync vouch` offers: the `subjects` named (each resolved and, with a voucher,
    /// checked), or else the candidates.
    pub fn vouch_offer(
        &self,
        view: &TrustView,
        voucher: Option<&UserRef>,
        subjects: &[String],
    ) -> Result<Vec<(UserRef, UserView)>, InstanceError> {
        if subjects.is_empty() {
            return Ok(view.candidates(voucher));
        }
        let mut out: Vec<(UserRef, UserView)> = Vec::new();
        for s in subjects {
            let u = view.resolve_user(s)?;
            if let Some(voucher) = voucher {
                self.check_subject(view, voucher, &u)?;
            }
            if !out.iter().any(|(known, _)| *known == u) {
                let v = view.user_view(&u);
                out.push((u, v));
            }
        }
        Ok(out)
    }
}
