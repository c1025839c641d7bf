//! The hub's admission: who it admits (its registry, `--open`, the revocations it follows,
//! and an allowed instance's new key shown in its `Hello`), the live connections and relay
//! clients it tracks so that a registry change can cut them, and the relay server's access
//! control.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use iroh::endpoint::Connection;
use protocol::PublicKey;
use protocol::wire::code;
use store::{Home, Peer, Store};
use tracing::warn;

use super::intake::Intake;
use crate::NodeError;
use crate::session::{Channel, Deadlines, PeerHello};

/// The hub's live connections (`wb-sync/1`, `wb-hub/1`) and relay clients, by key, so that a
/// registry change can cut those it no longer admits.
#[derive(Debug, Default)]
pub(super) struct Live {
    pub(super) next: AtomicU64,
    pub(super) conns: Mutex<HashMap<u64, (PublicKey, Connection)>>,
    pub(super) relay: Mutex<HashMap<iroh_relay::server::ConnectionId, iroh::EndpointId>>,
}

impl Live {
    /// Registers an admitted connection until the guard is dropped.
    pub(super) fn track(self: &Arc<Self>, remote: PublicKey, conn: &Connection) -> Tracked {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        lock(&self.conns).insert(id, (remote, conn.clone()));
        Tracked {
            live: self.clone(),
            id,
        }
    }

    pub(super) fn relay_keys(&self) -> HashSet<PublicKey> {
        lock(&self.relay)
            .values()
            .filter_map(|id| PublicKey::from_bytes(*id.as_bytes()).ok())
            .collect()
    }
}

/// A live connection's registration; dropped when its handler ends.
#[derive(Debug)]
pub(super) struct Tracked {
    live: Arc<Live>,
    id: u64,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        lock(&self.live.conns).remove(&self.id);
    }
}

/// A mutex's guard, whether or not a holder panicked (the maps stay consistent: every change
/// is one insert or remove).
pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Who the hub admits: read from its registry at every connection, and again for the live
/// ones every [`super::ADMISSION_RECHECK_INTERVAL`].
#[derive(Clone, Debug)]
pub(super) struct Access {
    pub(super) home: Home,
    pub(super) open: bool,
    pub(super) hub: PublicKey,
    pub(super) live: Arc<Live>,
    /// The registry, parsed again only when `wb_peers.txt` changed (item 9 of issue 11).
    pub(super) cache: Arc<store::RegistryCache>,
    /// Read for the revocations announced by the instances the hub follows.
    pub(super) store: Arc<Store>,
    /// `HubConfig::follow_revocations`.
    pub(super) follow: Arc<Vec<PublicKey>>,
}

/// Why an instance is refused.
#[derive(Debug)]
pub(super) struct Refusal {
    pub(super) code: u32,
    pub(super) reason: &'static str,
    pub(super) name: String,
}

impl Access {
    /// The instance's registry entry (if any) when it is admitted. Entries whose key a held
    /// succession replaced move to the new key first.
    pub(super) fn admit(&self, remote: &PublicKey) -> Result<Option<Peer>, Refusal> {
        if let Err(e) = self.settle() {
            warn!("cannot apply the successions the hub holds: {e}");
        }
        let peers = self.registry().map_err(|_| Refusal {
            code: code::INTERNAL,
            reason: "the hub cannot read its registry",
            name: remote.key_id(),
        })?;
        self.admit_in(&peers, remote)
    }

    /// [`Access::admit`] against the registry `peers`.
    pub(super) fn admit_in(
        &self,
        peers: &[Peer],
        remote: &PublicKey,
    ) -> Result<Option<Peer>, Refusal> {
        let known = store::peer_by_key(peers, remote).cloned();
        let name = known.as_ref().map_or_else(
            || format!("unknown {}", remote.key_id()),
            |p| p.name.clone(),
        );
        match &known {
            Some(p) if p.revoked => Err(Refusal {
                code: code::REVOKED,
                reason: "revoked",
                name,
            }),
            None if !self.open => Err(Refusal {
                code: code::UNKNOWN_PEER,
                reason: "unknown instance (not on the hub's allowlist)",
                name,
            }),
            _ => Ok(known),
        }
    }

    /// The registry. One that cannot be read is an error, never an empty list: while it is
    /// broken, no revoked origin slips through.
    /// With the revocations applied that the instances it follows announced (their keys are
    /// refused and their records not taken, as with `Revoked: yes`).
    pub(super) fn registry(&self) -> Result<Arc<Vec<Peer>>, NodeError> {
        let peers = self.cache.load().map_err(|e| {
            warn!("cannot read the hub's registry: {e}");
            NodeError::Internal(format!("the hub cannot read its registry: {e}"))
        })?;
        if self.follow.is_empty() && !peers.iter().any(|p| p.follow_revocations) {
            return Ok(peers);
        }
        crate::revocations::effective(&self.store, &peers, &self.follow, &self.hub)
            .map(Arc::new)
            .inspect_err(|e| warn!("cannot read the revocations the hub follows: {e}"))
    }

    /// Moves registry entries whose key a held succession replaced (`wb_peers.txt` is written
    /// only when one moves).
    pub(super) fn settle(&self) -> Result<(), NodeError> {
        crate::succession::settle(
            &self.home,
            &self.store,
            &self.hub,
            &self.follow,
            self.cache.load()?,
        )?;
        Ok(())
    }

    /// Keys the registry marks revoked: their records are not taken, whoever relays them, and
    /// their addresses are not given out.
    pub(super) fn revoked(&self) -> Result<HashSet<PublicKey>, NodeError> {
        Ok(protocol::peers::revoked_keys(&self.registry()?))
    }

    /// Whose records the hub takes now ([`Intake`]).
    pub(super) fn intake(&self) -> Result<Intake, NodeError> {
        let peers = self.registry()?;
        let allowed = (!self.open).then(|| {
            peers
                .iter()
                .filter(|p| !p.revoked)
                .map(|p| p.public_key)
                .collect()
        });
        Ok(Intake {
            revoked: Arc::new(protocol::peers::revoked_keys(&peers)),
            allowed,
        })
    }

    /// Cuts the live connections and relay clients of keys the registry no longer admits
    /// (revoked, or no longer on a closed hub's allowlist), with the refusal's close code.
    /// While the registry cannot be read nothing is cut (new connections are refused, and the
    /// intake takes nothing), so a broken edit does not drop every instance at once.
    pub(super) fn recheck(&self, relay: Option<&iroh_relay::server::RelayService>) {
        let Ok(peers) = self.registry() else {
            return;
        };
        let conns: Vec<(PublicKey, Connection)> =
            lock(&self.live.conns).values().cloned().collect();
        for (remote, conn) in conns {
            if let Err(r) = self.admit_in(&peers, &remote) {
                warn!(instance = %r.name, "cut a live connection: {}", r.reason);
                conn.close(r.code.into(), r.reason.as_bytes());
            }
        }
        let Some(relay) = relay else {
            return;
        };
        let clients: Vec<_> = lock(&self.live.relay)
            .iter()
            .map(|(c, e)| (*c, *e))
            .collect();
        for (connection, endpoint) in clients {
            let Ok(remote) = PublicKey::from_bytes(*endpoint.as_bytes()) else {
                continue;
            };
            if let Err(r) = self.admit_in(&peers, &remote) {
                warn!(instance = %r.name, "cut a relay client: {}", r.reason);
                relay.clients().disconnect(endpoint, Some(connection));
            }
        }
    }

    /// Admits or refuses a connection; a refused one is closed with the code and logged. An
    /// admitted one is tracked (for [`Access::recheck`]) until the guard is dropped.
    pub(super) fn admit_connection(
        &self,
        conn: &Connection,
    ) -> Option<(PublicKey, String, Tracked)> {
        let Ok(remote) = PublicKey::from_bytes(*conn.remote_id().as_bytes()) else {
            conn.close(code::PROTOCOL_VIOLATION.into(), b"bad key");
            return None;
        };
        match self.admit(&remote) {
            Ok(known) => Some(self.admitted(conn, remote, known)),
            Err(r) => {
                refuse(conn, &r);
                None
            }
        }
    }

    /// [`Access::admit_connection`] for a sync session: a key not on a closed hub's allowlist
    /// may be an allowed instance's new key, shown in its `Hello` (read here, and returned, so
    /// the session goes on from it).
    pub(super) async fn admit_sync_connection(
        &self,
        conn: &Connection,
    ) -> Option<(PublicKey, String, Tracked, Option<(Channel, PeerHello)>)> {
        let Ok(remote) = PublicKey::from_bytes(*conn.remote_id().as_bytes()) else {
            conn.close(code::PROTOCOL_VIOLATION.into(), b"bad key");
            return None;
        };
        let r = match self.admit(&remote) {
            Ok(known) => {
                let (remote, name, tracked) = self.admitted(conn, remote, known);
                return Some((remote, name, tracked, None));
            }
            Err(r) if r.code == code::UNKNOWN_PEER => r,
            Err(r) => {
                refuse(conn, &r);
                return None;
            }
        };
        let unknown = crate::succession::unknown_hello(
            conn,
            &r.name,
            (Deadlines::default(), crate::succession::UNKNOWN_HELLO_WAIT),
            &self.home,
            &self.store,
            &self.hub,
            &self.follow,
            &remote,
        )
        .await;
        match unknown {
            Ok(crate::succession::Unknown {
                received: (mut ch, hello),
                admitted: Some(_),
            }) => match self.admit(&remote) {
                Ok(known) => {
                    let (remote, name, tracked) = self.admitted(conn, remote, known);
                    ch.rename(name.clone());
                    Some((remote, name, tracked, Some((ch, hello))))
                }
                Err(r) => {
                    refuse(conn, &r);
                    None
                }
            },
            Ok(_) => {
                refuse(conn, &r);
                None
            }
            Err(e) => {
                warn!(instance = %r.name, "cannot check the succession it showed: {e}");
                refuse(conn, &r);
                None
            }
        }
    }

    pub(super) fn admitted(
        &self,
        conn: &Connection,
        remote: PublicKey,
        known: Option<Peer>,
    ) -> (PublicKey, String, Tracked) {
        (
            remote,
            known.map_or_else(|| format!("open {}", remote.key_id()), |p| p.name),
            self.live.track(remote, conn),
        )
    }
}

/// Closes a refused connection with the refusal's code, and logs it.
pub(super) fn refuse(conn: &Connection, r: &Refusal) {
    warn!(instance = %r.name, code = r.code, "refused: {}", r.reason);
    conn.close(r.code.into(), r.reason.as_bytes());
}

impl iroh_relay::server::AccessControl for Access {
    async fn on_connect(
        &self,
        request: &iroh_relay::server::ClientRequest,
    ) -> iroh_relay::server::Access {
        let Ok(remote) = PublicKey::from_bytes(*request.endpoint_id().as_bytes()) else {
            return iroh_relay::server::Access::Deny { reason: None };
        };
        if remote == self.hub {
            return iroh_relay::server::Access::Allow;
        }
        match self.admit(&remote) {
            Ok(_) => {
                lock(&self.live.relay).insert(request.connection_id(), request.endpoint_id());
                iroh_relay::server::Access::Allow
            }
            Err(r) => {
                warn!(instance = %r.name, "relay refused: {}", r.reason);
                iroh_relay::server::Access::Deny {
                    reason: Some(r.reason.to_string()),
                }
            }
        }
    }

    fn on_disconnect(
        &self,
        _endpoint: iroh::EndpointId,
        connection: iroh_relay::server::ConnectionId,
    ) {
        lock(&self.live.relay).remove(&connection);
    }
}
