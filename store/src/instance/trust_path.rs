//! How a user connects to this instance's users (`wb trust path`): the shortest chain of invites
//! and vouches.

use std::collections::BTreeSet;

use protocol::trust::{Link, UserRef};

use super::{InstanceError, TrustView};

/// The answer to "how is `target` reached from `anchors`?".
#[derive(Debug)]
pub struct TrustPath<'a> {
    pub target: UserRef,
    /// Where the chain may start: the one user asked for, or all of this instance's users.
    pub anchors: BTreeSet<UserRef>,
    /// The anchors are this instance's users (no start was given).
    pub from_local: bool,
    /// The shortest chain, each link with the record and instance that signed it; empty when
    /// the target is one of the anchors; `None`: no chain.
    pub links: Option<Vec<&'a Link>>,
}

impl TrustView {
    /// The shortest chain from `from` (a user reference), else from any of this instance's
    /// users, to `target` (a user reference). Refused when there is nowhere to start from.
    pub fn path(&self, target: &str, from: Option<&str>) -> Result<TrustPath<'_>, InstanceError> {
        let target = self.resolve_user(target)?;
        let (anchors, from_local) = match from {
            Some(f) => (BTreeSet::from([self.resolve_user(f)?]), false),
            None => (
                self.graph
                    .users()
                    .map(|(u, _)| u)
                    .filter(|u| u.origin == self.local)
                    .cloned()
                    .collect(),
                true,
            ),
        };
        if anchors.is_empty() {
            return Err(InstanceError::NoUsersToStartFrom);
        }
        let links = self.graph.shortest_path(&anchors, &target);
        Ok(TrustPath {
            target,
            anchors,
            from_local,
            links,
        })
    }
}
