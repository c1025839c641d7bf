//! The node running in this process, if any. `wb node run` registers its [`NodeHandle`] here;
//! commands executed for control-socket clients then use the node's open store, key and
//! endpoint instead of opening the home themselves (the store is held by the node).

use std::sync::OnceLock;

use node::node::NodeHandle;

static RUNNING: OnceLock<NodeHandle> = OnceLock::new();

/// Registers the node running in this process (once; later calls are ignored).
pub(crate) fn set(handle: NodeHandle) {
    let _ = RUNNING.set(handle);
}

/// The node running in this process, if `wb node run` started one.
pub(crate) fn get() -> Option<&'static NodeHandle> {
    RUNNING.get()
}
