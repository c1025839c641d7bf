//! The handle of a running node: what other parts of the process (the control socket, the app
//! bridge, continuous sync, the hub) use to act through it.

use std::net::SocketAddr;
use std::sync::Arc;

use iroh::Endpoint;
use protocol::SecretKey;
use store::{Home, Peer, Store};

use crate::NodeError;
use crate::dial::{Direction, SyncReport, Terms, dial_and_sync, recorded};
use crate::discovery::Discovery;
use crate::endpoint::resolve;
use crate::session::Deadlines;
use crate::shared::{PeerSyncStatus, Shared};

/// What other parts of the process (the control socket, continuous sync) use to act through a
/// running node: its store, its key, its endpoint. Cheap to clone.
#[derive(Clone)]
pub struct NodeHandle {
    pub(crate) key: SecretKey,
    pub(crate) store: Arc<Store>,
    pub(crate) endpoint: Endpoint,
    pub(crate) addrs: Vec<SocketAddr>,
    pub(crate) home: Home,
    pub(crate) shared: Arc<Shared>,
    pub(crate) deadlines: Deadlines,
    pub(crate) discovery: Discovery,
}

impl std::fmt::Debug for NodeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodeHandle({})", self.key.public().key_id())
    }
}

impl NodeHandle {
    pub fn key(&self) -> &SecretKey {
        &self.key
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The sockets the node listens on.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    pub fn home(&self) -> &Home {
        &self.home
    }

    /// How long the node's sessions may wait on a peer.
    pub fn deadlines(&self) -> Deadlines {
        self.deadlines
    }

    /// The address lookup the node's endpoint was bound with.
    pub fn discovery(&self) -> &Discovery {
        &self.discovery
    }

    /// Tells the node its store changed (a local edit, an import, a sync run in this process
    /// that brought new records): continuous sync then offers the change to every peer.
    /// Cheap, never blocks; any number of calls in a burst make one round of sessions.
    pub fn local_changed(&self) {
        self.shared.changed(None);
    }

    /// What continuous sync knows about each peer it syncs with (empty when it is off).
    pub fn continuous_status(&self) -> Vec<PeerSyncStatus> {
        self.shared.status()
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// A handle for another role built on the node's code (the hub, [`crate::hub`]).
    pub(crate) fn new(
        key: SecretKey,
        store: Arc<Store>,
        endpoint: Endpoint,
        addrs: Vec<SocketAddr>,
        home: Home,
    ) -> Self {
        Self {
            key,
            store,
            endpoint,
            addrs,
            home,
            shared: Arc::new(Shared::new()),
            deadlines: Deadlines::default(),
            discovery: Discovery::Off,
        }
    }

    /// One sync session with `peer`, dialled from the node's own endpoint (so the peer sees the
    /// same endpoint it would dial back). Records the outcome in the peer's state.
    pub async fn sync_with(
        &self,
        peer: &Peer,
        direction: Direction,
    ) -> Result<SyncReport, NodeError> {
        self.sync_with_deadlines(peer, direction, self.deadlines)
            .await
    }

    /// [`NodeHandle::sync_with`] under other deadlines (`wb sync now --timeout`).
    pub async fn sync_with_deadlines(
        &self,
        peer: &Peer,
        direction: Direction,
        deadlines: Deadlines,
    ) -> Result<SyncReport, NodeError> {
        let session = async {
            let addrs = resolve(peer).await?;
            // Read per session: a revocation applies to the next session.
            let revoked = crate::revocations::revoked_keys(
                &self.store,
                &store::load_peers(&self.home)?,
                &self.key.public(),
            )?;
            let terms = Terms {
                deadlines,
                revoked: Arc::new(revoked),
            };
            dial_and_sync(
                &self.endpoint,
                &self.key,
                &self.store,
                peer,
                direction,
                &addrs,
                terms,
            )
            .await
        };
        recorded(&self.store, peer, session).await
    }
}
