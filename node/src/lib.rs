//! The wb node crate: everything that touches the network. [`identity`] maps the instance key
//! to its iroh endpoint identity; [`session`] is one `wb-sync/1` session (framing, `Hello`,
//! serving and pulling changes); [`node`] runs the listener (`wb node run`) and one-shot syncs
//! (`wb sync now`).

mod error;
pub mod identity;
pub mod node;
pub mod session;

pub use error::{NodeError, code_name};
