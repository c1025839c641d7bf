//! The cross-instance trust graph (issue 6): users joined by invites (a user record's
//! `Invited-By`) and vouches (`vouch` records), built purely from records. A **root user** has no
//! `Invited-By`; a vouch connects roots (or any users) across instances.
//!
//! Every link is asserted by one signed record, and its signer is the record's origin: the
//! invited user's record for an invite, the vouch record for a vouch. An instance vouches only
//! on behalf of its own users, so a vouch whose `Voucher` names another instance's user is not a
//! link.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

use sha2::{Digest, Sha256};

use crate::{Entity, ProtocolError, PublicKey, Record, RecordKey, Reference};

/// The user-record field naming who invited the user; absent (or empty) on a root user.
pub const INVITED_BY: &str = "Invited-By";
/// The vouch-record field naming the user who vouches.
pub const VOUCHER: &str = "Voucher";
/// The vouch-record field naming the user vouched for.
pub const SUBJECT: &str = "Subject";
/// The vouch-record field holding when the vouch was made (ISO 8601).
pub const CREATED_AT: &str = "Created-At";

/// A user anywhere: the origin holding the user record and the record's id there.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UserRef {
    pub origin: PublicKey,
    pub id: String,
}

impl UserRef {
    /// Resolves a reference written in a record of `referrer` (a bare id is a user of `referrer`).
    pub fn resolve(reference: &str, referrer: &PublicKey) -> Result<Self, ProtocolError> {
        let r = Reference::parse(reference)?;
        Ok(Self {
            origin: r.origin.unwrap_or(*referrer),
            id: r.id,
        })
    }

    /// The user of a user record.
    pub fn of(record: &Record) -> Self {
        Self {
            origin: record.origin,
            id: record.id.clone(),
        }
    }

    /// The reference to write in a record of `writer`: a bare id for the writer's own users
    /// (it survives a key replacement), `<origin hex>/<id>` otherwise or when the bare id would
    /// read back as something else.
    pub fn reference_from(&self, writer: &PublicKey) -> String {
        if self.origin == *writer
            && Reference::parse(&self.id).is_ok_and(|r| r.origin.is_none() && r.id == self.id)
        {
            self.id.clone()
        } else {
            self.to_string()
        }
    }

    /// The key of this user's record.
    pub fn record_key(&self) -> RecordKey {
        RecordKey {
            origin: self.origin,
            entity: Entity::User,
            id: self.id.clone(),
        }
    }
}

/// `<origin hex>/<id>`, the full reference form.
impl fmt::Display for UserRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.origin.to_hex(), self.id)
    }
}

/// True for a live user record without an inviter.
pub fn is_root(user: &Record) -> bool {
    user.entity == Entity::User
        && !user.deleted
        && user.field(INVITED_BY).is_none_or(|v| v.trim().is_empty())
}

/// The inviter a user record names, resolved against its origin; `None` for a root (or a value
/// that is not a reference, which validation refuses).
pub fn inviter(user: &Record) -> Option<UserRef> {
    let value = user.field(INVITED_BY)?.trim();
    if value.is_empty() {
        return None;
    }
    UserRef::resolve(value, &user.origin).ok()
}

/// The voucher and subject a live vouch record names, resolved against its origin.
pub fn vouch_pair(vouch: &Record) -> Option<(UserRef, UserRef)> {
    if vouch.entity != Entity::Vouch || vouch.deleted {
        return None;
    }
    let voucher = UserRef::resolve(vouch.field(VOUCHER)?.trim(), &vouch.origin).ok()?;
    let subject = UserRef::resolve(vouch.field(SUBJECT)?.trim(), &vouch.origin).ok()?;
    Some((voucher, subject))
}

/// A stable record id for the vouch of `voucher` for `subject`: the same pair always gets the
/// same id, so vouching again after a withdrawal revives the same record.
pub fn vouch_id(voucher: &UserRef, subject: &UserRef) -> String {
    let mut h = Sha256::new();
    h.update(b"whiteballoon/wb/vouch\0");
    h.update(voucher.to_string().as_bytes());
    h.update([0]);
    h.update(subject.to_string().as_bytes());
    let digest = h.finalize();
    format!("v{}", &hex::encode(digest)[..16])
}

/// How one user reaches another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LinkKind {
    /// `from` invited `to` (the `Invited-By` of `to`'s user record).
    Invite,
    /// `from` vouched for `to` (a vouch record).
    Vouch,
}

impl LinkKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkKind::Invite => "invite",
            LinkKind::Vouch => "vouch",
        }
    }
}

/// One edge of the graph and the signed record that asserts it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Link {
    pub from: UserRef,
    pub to: UserRef,
    pub kind: LinkKind,
    /// The record saying so; its origin signed it.
    pub record: RecordKey,
}

impl Link {
    /// The instance that signed the record behind this link.
    pub fn signer(&self) -> &PublicKey {
        &self.record.origin
    }
}

/// Users, invites and vouches, from live records.
#[derive(Clone, Debug, Default)]
pub struct TrustGraph {
    users: BTreeMap<UserRef, Record>,
    /// Links by their `from` user, sorted.
    out: BTreeMap<UserRef, Vec<Link>>,
    /// Vouch links by their subject, sorted.
    vouches_for: BTreeMap<UserRef, Vec<Link>>,
}

impl TrustGraph {
    /// Builds the graph from any records: live users and vouches count, the rest is ignored.
    pub fn from_records<'a>(records: impl IntoIterator<Item = &'a Record>) -> Self {
        let mut g = TrustGraph::default();
        let mut links = Vec::new();
        for r in records {
            if r.deleted {
                continue;
            }
            match r.entity {
                Entity::User => {
                    let user = UserRef::of(r);
                    if let Some(inviter) = inviter(r) {
                        links.push(Link {
                            from: inviter,
                            to: user.clone(),
                            kind: LinkKind::Invite,
                            record: r.key(),
                        });
                    }
                    g.users.insert(user, r.clone());
                }
                Entity::Vouch => {
                    if let Some((voucher, subject)) = vouch_pair(r)
                        && voucher.origin == r.origin
                    {
                        links.push(Link {
                            from: voucher,
                            to: subject,
                            kind: LinkKind::Vouch,
                            record: r.key(),
                        });
                    }
                }
                _ => {}
            }
        }
        links.sort();
        links.dedup();
        for link in links {
            if link.from == link.to {
                continue;
            }
            if link.kind == LinkKind::Vouch {
                g.vouches_for
                    .entry(link.to.clone())
                    .or_default()
                    .push(link.clone());
            }
            g.out.entry(link.from.clone()).or_default().push(link);
        }
        g
    }

    /// The live user record of `user`, if known.
    pub fn user(&self, user: &UserRef) -> Option<&Record> {
        self.users.get(user)
    }

    /// Every known user, sorted by origin and id.
    pub fn users(&self) -> impl Iterator<Item = (&UserRef, &Record)> {
        self.users.iter()
    }

    /// Root users (no inviter), sorted by origin and id.
    pub fn roots(&self) -> impl Iterator<Item = &UserRef> {
        self.users
            .iter()
            .filter(|(_, r)| is_root(r))
            .map(|(u, _)| u)
    }

    /// The vouches naming `subject`, sorted.
    pub fn vouches_for(&self, subject: &UserRef) -> &[Link] {
        self.vouches_for.get(subject).map_or(&[], Vec::as_slice)
    }

    /// Every link, sorted by the user it leaves, then kind and record.
    pub fn links(&self) -> Vec<&Link> {
        self.out.values().flatten().collect()
    }

    /// The links leaving `user` (whom it invited or vouched for), sorted.
    pub fn links_from(&self, user: &UserRef) -> &[Link] {
        self.out.get(user).map_or(&[], Vec::as_slice)
    }

    /// Root users no vouch signed by `instance` names yet, without `except` (the operator who
    /// is about to vouch): what `wb sync vouch` offers.
    pub fn unvouched_roots(&self, instance: &PublicKey, except: Option<&UserRef>) -> Vec<&UserRef> {
        self.roots()
            .filter(|u| Some(*u) != except)
            .filter(|u| !self.vouches_for(u).iter().any(|l| l.signer() == instance))
            .collect()
    }

    /// The shortest chain of links from any of `from` to `to` (breadth-first, deterministic:
    /// ties go to the smaller user, then the smaller link). `Some(empty)` when `to` is one of
    /// `from`; `None` when no chain exists.
    pub fn shortest_path(&self, from: &BTreeSet<UserRef>, to: &UserRef) -> Option<Vec<&Link>> {
        if from.contains(to) {
            return Some(Vec::new());
        }
        let mut came_by: BTreeMap<&UserRef, &Link> = BTreeMap::new();
        let mut seen: BTreeSet<&UserRef> = from.iter().collect();
        let mut queue: VecDeque<&UserRef> = from.iter().collect();
        while let Some(user) = queue.pop_front() {
            for link in self.links_from(user) {
                if !seen.insert(&link.to) {
                    continue;
                }
                came_by.insert(&link.to, link);
                if link.to == *to {
                    let mut path = vec![link];
                    let mut at = &link.from;
                    while let Some(prev) = came_by.get(at) {
                        path.push(prev);
                        at = &prev.from;
                    }
                    path.reverse();
                    return Some(path);
                }
                queue.push_back(&link.to);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Scope, SecretKey, Version};

    fn key(seed: u8) -> SecretKey {
        SecretKey::from_bytes(&[seed; 32])
    }

    fn record(origin: &SecretKey, entity: Entity, id: &str, fields: &[(&str, &str)]) -> Record {
        let mut r = Record {
            origin: origin.public(),
            entity,
            id: id.to_string(),
            version: Version::new(1, 0),
            scope: Scope::Public,
            deleted: false,
            fields: fields
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: String::new(),
            signature: None,
        };
        r.sign(origin).expect("origin key");
        r
    }

    fn user(origin: &SecretKey, id: &str, invited_by: Option<&str>) -> Record {
        let mut fields = vec![("Username", id)];
        if let Some(i) = invited_by {
            fields.push((INVITED_BY, i));
        }
        record(origin, Entity::User, id, &fields)
    }

    fn vouch(origin: &SecretKey, id: &str, voucher: &str, subject: &str) -> Record {
        record(
            origin,
            Entity::Vouch,
            id,
            &[(VOUCHER, voucher), (SUBJECT, subject)],
        )
    }

    fn u(origin: &SecretKey, id: &str) -> UserRef {
        UserRef {
            origin: origin.public(),
            id: id.to_string(),
        }
    }

    /// A: admin (root) invited ann. B: root (root) invited bob, bob invited bea. C: carl (root).
    fn world() -> (SecretKey, SecretKey, SecretKey, Vec<Record>) {
        let (a, b, c) = (key(1), key(2), key(3));
        let records = vec![
            user(&a, "admin", None),
            user(&a, "ann", Some("admin")),
            user(&b, "root", None),
            user(&b, "bob", Some("root")),
            user(&b, "bea", Some(&format!("{}/bob", b.public().to_hex()))),
            user(&c, "carl", Some("")),
        ];
        (a, b, c, records)
    }

    #[test]
    fn roots_are_users_without_an_inviter() {
        let (a, b, c, records) = world();
        let g = TrustGraph::from_records(&records);
        let roots: Vec<&UserRef> = g.roots().collect();
        let mut want = [u(&a, "admin"), u(&b, "root"), u(&c, "carl")];
        want.sort();
        assert_eq!(roots, want.iter().collect::<Vec<_>>());
    }

    #[test]
    fn without_a_vouch_there_is_no_path_between_instances() {
        let (a, b, _, records) = world();
        let g = TrustGraph::from_records(&records);
        let from = BTreeSet::from([u(&a, "admin"), u(&a, "ann")]);
        assert!(g.shortest_path(&from, &u(&b, "bea")).is_none());
        assert_eq!(g.shortest_path(&from, &u(&a, "ann")), Some(vec![]));
    }

    #[test]
    fn a_vouch_joins_two_instances_and_the_path_names_each_signer() {
        let (a, b, _, mut records) = world();
        let subject = format!("{}/root", b.public().to_hex());
        records.push(vouch(&a, "v1", "admin", &subject));
        let g = TrustGraph::from_records(&records);
        let from = BTreeSet::from([u(&a, "admin"), u(&a, "ann")]);
        let path = g.shortest_path(&from, &u(&b, "bea")).expect("a path");
        let hops: Vec<(LinkKind, &str, &str, PublicKey)> = path
            .iter()
            .map(|l| (l.kind, l.from.id.as_str(), l.to.id.as_str(), *l.signer()))
            .collect();
        assert_eq!(
            hops,
            vec![
                (LinkKind::Vouch, "admin", "root", a.public()),
                (LinkKind::Invite, "root", "bob", b.public()),
                (LinkKind::Invite, "bob", "bea", b.public()),
            ]
        );
        assert_eq!(path[0].record.id, "v1");
        // Direction matters: B's users do not reach A's through A's vouch.
        let from_b = BTreeSet::from([u(&b, "root")]);
        assert!(g.shortest_path(&from_b, &u(&a, "ann")).is_none());
    }

    #[test]
    fn the_shortest_chain_wins() {
        let (a, b, _, mut records) = world();
        let hex = b.public().to_hex();
        records.push(vouch(&a, "v1", "admin", &format!("{hex}/root")));
        records.push(vouch(&a, "v2", "ann", &format!("{hex}/bea")));
        let g = TrustGraph::from_records(&records);
        let from = BTreeSet::from([u(&a, "admin"), u(&a, "ann")]);
        let path = g.shortest_path(&from, &u(&b, "bea")).expect("a path");
        assert_eq!(path.len(), 1);
        assert_eq!(path[0].record.id, "v2");
    }

    #[test]
    fn a_vouch_for_another_instances_voucher_is_no_link() {
        let (a, b, c, mut records) = world();
        // C claims A's admin vouched for B's root: only A may say that.
        let voucher = format!("{}/admin", a.public().to_hex());
        let subject = format!("{}/root", b.public().to_hex());
        records.push(vouch(&c, "v1", &voucher, &subject));
        let g = TrustGraph::from_records(&records);
        assert!(g.vouches_for(&u(&b, "root")).is_empty());
        let from = BTreeSet::from([u(&a, "admin")]);
        assert!(g.shortest_path(&from, &u(&b, "root")).is_none());
    }

    #[test]
    fn deleted_records_and_self_vouches_do_not_count() {
        let (a, b, _, mut records) = world();
        let subject = format!("{}/root", b.public().to_hex());
        let mut withdrawn = vouch(&a, "v1", "admin", &subject);
        withdrawn.deleted = true;
        records.push(withdrawn);
        records.push(vouch(&a, "v2", "admin", "admin"));
        let g = TrustGraph::from_records(&records);
        assert!(g.vouches_for(&u(&b, "root")).is_empty());
        assert!(
            g.links_from(&u(&a, "admin"))
                .iter()
                .all(|l| l.to.id != "admin")
        );
    }

    #[test]
    fn unvouched_roots_leave_out_the_operator_and_what_this_instance_vouched_for() {
        let (a, b, c, mut records) = world();
        let g = TrustGraph::from_records(&records);
        let admin = u(&a, "admin");
        let all = g.unvouched_roots(&a.public(), Some(&admin));
        assert_eq!(all.len(), 2);
        assert!(!all.contains(&&admin));
        records.push(vouch(
            &a,
            "v1",
            "admin",
            &format!("{}/root", b.public().to_hex()),
        ));
        // A vouch by another instance does not count for this one.
        records.push(user(&c, "cop", None));
        records.push(vouch(
            &c,
            "v9",
            "cop",
            &format!("{}/carl", c.public().to_hex()),
        ));
        let g = TrustGraph::from_records(&records);
        let left = g.unvouched_roots(&a.public(), Some(&admin));
        assert_eq!(left, vec![&u(&c, "carl"), &u(&c, "cop")]);
    }

    #[test]
    fn references_resolve_against_the_referrer_and_are_written_back_the_same() {
        let (a, b) = (key(1).public(), key(2).public());
        let bare = UserRef::resolve("7", &a).expect("bare");
        assert_eq!(
            bare,
            UserRef {
                origin: a,
                id: "7".into()
            }
        );
        let full = UserRef::resolve(&format!("{}/x/y", b.to_hex()), &a).expect("full");
        assert_eq!(full.origin, b);
        assert_eq!(full.id, "x/y");
        assert_eq!(bare.reference_from(&a), "7");
        assert_eq!(full.reference_from(&a), format!("{}/x/y", b.to_hex()));
        // An id that would read back as a full reference is written in full.
        let tricky = UserRef {
            origin: a,
            id: format!("{}/z", b.to_hex()),
        };
        let written = tricky.reference_from(&a);
        assert_eq!(UserRef::resolve(&written, &a).expect("parses"), tricky);
        assert!(UserRef::resolve("", &a).is_err());
    }

    #[test]
    fn invited_by_is_checked_and_vouches_default_to_public() {
        let a = key(1);
        assert!(crate::validate(&user(&a, "x", Some("admin"))).is_ok());
        assert!(crate::validate(&user(&a, "x", Some(" "))).is_ok());
        let bad = format!("{}/", a.public().to_hex());
        let err = crate::validate(&user(&a, "x", Some(&bad))).expect_err("no id");
        assert!(err.to_string().contains(INVITED_BY), "{err}");
        assert_eq!(Entity::Vouch.default_scope(), Scope::Public);
        assert_eq!(Entity::User.default_scope(), Scope::Private);
    }

    #[test]
    fn vouch_ids_are_stable_per_pair() {
        let (a, b) = (key(1).public(), key(2).public());
        let x = UserRef {
            origin: a,
            id: "1".into(),
        };
        let y = UserRef {
            origin: b,
            id: "1".into(),
        };
        assert_eq!(vouch_id(&x, &y), vouch_id(&x, &y));
        assert_ne!(vouch_id(&x, &y), vouch_id(&y, &x));
        assert_eq!(vouch_id(&x, &y).len(), 17);
    }
}
