//! Opening the home a command works on: its key and store, or those of the node running on it.

use anyhow::Result;
use store::Home;
pub(crate) use store::Instance;

/// Opens the home, or, inside a running node (a control-socket client's command), uses the
/// node's open store and key.
pub(crate) fn open(home: &Home) -> Result<Instance> {
    if let Some(node) = crate::running::get() {
        return Ok(Instance::from_parts(
            home.clone(),
            node.key().clone(),
            node.store().clone(),
        ));
    }
    Ok(Instance::open(home)?)
}
