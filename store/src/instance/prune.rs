//! Forgetting records that came from other instances (`wb sync prune`). Local records are never
//! pruned, and nothing is sent to peers: a peer that sends a pruned record again (a newer
//! version, or a pull from the start, as the next sync with a pruned peer is) brings it back.

use protocol::PublicKey;

use super::origins::is_key_id;
use super::{Instance, InstanceError};
use crate::error::StoreError;
use crate::{PruneReport, time};

const DAY_MS: u64 = 24 * 60 * 60 * 1000;

/// Which records to prune.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PruneTarget {
    /// Everything that originated at this key: its records (tombstones included), their
    /// conflict-log entries, our cursor into its log and its sync state. `name` is the peer's
    /// registry name, if it has one.
    Origin {
        key: PublicKey,
        name: Option<String>,
    },
    /// Records of other origins whose version is older than this many days (at least 1).
    OlderThan { days: u64 },
}

impl PruneTarget {
    /// Whether `report` (a dry run's) finds nothing at all to remove.
    pub fn finds_nothing(report: &PruneReport) -> bool {
        report.total() == 0 && report.conflicts == 0 && !report.cursor && !report.peer_state
    }
}

impl Instance {
    /// The origin `text` names, for pruning: a peer by registry name, or any other origin by
    /// key (any textual form) or key id. This instance is refused, and so is a name or key
    /// nothing is known about.
    pub fn prune_target(&self, text: &str) -> Result<PruneTarget, InstanceError> {
        let local = self.public();
        let peers = crate::load_peers(&self.home)?;
        let own = || InstanceError::PruneOwnInstance {
            text: text.to_string(),
            key_id: local.key_id(),
        };
        let unknown = || {
            InstanceError::Store(StoreError::UnknownPeer {
                name: text.to_string(),
                known: peers.iter().map(|p| p.name.clone()).collect(),
            })
        };
        if let Some(p) = crate::find_peer(&peers, text) {
            if p.public_key == local {
                return Err(own());
            }
            return Ok(PruneTarget::Origin {
                key: p.public_key,
                name: Some(p.name.clone()),
            });
        }
        if text.trim() == "local" {
            return Err(own());
        }
        let wanted = text.trim().to_ascii_lowercase();
        let key = if let Ok(key) = PublicKey::parse(text) {
            Some(key)
        } else if is_key_id(&wanted) {
            if local.key_id() == wanted {
                return Err(own());
            }
            let mut found: Vec<PublicKey> = self
                .record_origins()?
                .into_iter()
                .chain(peers.iter().map(|p| p.public_key))
                .filter(|k| k.key_id() == wanted)
                .collect();
            found.sort_by_key(|k| *k.as_bytes());
            found.dedup();
            match found[..] {
                [key] => Some(key),
                _ => None,
            }
        } else {
            None
        };
        let Some(key) = key else {
            return Err(unknown());
        };
        if key == local {
            return Err(own());
        }
        if let Some(p) = crate::peer_by_key(&peers, &key) {
            return Ok(PruneTarget::Origin {
                key,
                name: Some(p.name.clone()),
            });
        }
        let known = self.record_origins()?.contains(&key) || self.store.cursor(&key)?.is_some();
        if !known {
            return Err(unknown());
        }
        Ok(PruneTarget::Origin { key, name: None })
    }

    /// Prunes `target` in one transaction, or (`dry_run`) counts what it would remove and
    /// changes nothing. `OlderThan` counts its days back from now.
    pub fn prune(&self, target: &PruneTarget, dry_run: bool) -> Result<PruneReport, InstanceError> {
        let local = self.public();
        Ok(match target {
            PruneTarget::Origin { key, .. } => self.store.prune_origin(&local, key, dry_run)?,
            PruneTarget::OlderThan { days } => {
                if *days == 0 {
                    return Err(InstanceError::PruneNoDays);
                }
                let cutoff = time::now_ms().saturating_sub(days.saturating_mul(DAY_MS));
                self.store.prune_older_than(&local, cutoff, dry_run)?
            }
        })
    }
}
