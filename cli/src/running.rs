//! The node running in this process, if any. `wb node run` registers its [`NodeHandle`] here;
//! commands executed for control-socket clients then use the node's open store, key and
//! endpoint instead of opening the home themselves (the store is held by the node).
//!
//! The node clears the registration when it stops, so the last reference to its store goes and
//! redb closes the file cleanly before the process exits.

use std::sync::{Mutex, PoisonError};

use node::node::NodeHandle;

struct Running {
    node: NodeHandle,
    runtime: tokio::runtime::Handle,
}

static RUNNING: Mutex<Option<Running>> = Mutex::new(None);

/// Registers the node running in this process. Call it from inside the node's runtime.
pub(crate) fn set(node: NodeHandle) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    *RUNNING.lock().unwrap_or_else(PoisonError::into_inner) = Some(Running { node, runtime });
}

/// Forgets the node (it is stopping); commands no longer reach its store through here.
pub(crate) fn clear() {
    RUNNING
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
}

/// The node running in this process, if `wb node run` (or `wb hub run`) started one.
pub(crate) fn get() -> Option<NodeHandle> {
    RUNNING
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
        .map(|r| r.node.clone())
}

/// The running node's async runtime, for commands that act through the node's endpoint (from
/// a plain thread, with `block_on`).
pub(crate) fn runtime() -> Option<tokio::runtime::Handle> {
    RUNNING
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
        .map(|r| r.runtime.clone())
}
