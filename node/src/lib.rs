//! The wb node crate: everything that touches the network. [`identity`] maps the instance key
//! to its iroh endpoint identity; [`session`] is one `wb-sync/1` session (framing, `Hello`,
//! serving and pulling changes); [`node`] runs the listener (`wb node run`) and one-shot syncs
//! (`wb sync now`); [`continuous`] keeps a running node's peers up to date by itself;
//! [`directory`] is a node's side of its hubs (announcements, lookups, relays) and [`hub`] the
//! hub role (`wb hub run`); [`discovery`] finds peers by key through a pkarr relay, without a
//! hub; [`revocations`] applies the revocations of followed revokers to the registry decisions read; [`ticket`] reads and writes tickets (endpoint id and addresses).

mod accept;
pub mod app_bridge;
pub mod continuous;
mod digests;
pub mod directory;
pub mod discovery;
mod error;
pub mod hub;
pub mod identity;
pub mod metrics;
pub mod node;
pub mod probe;
pub mod revocations;
pub mod session;
pub mod ticket;
mod withdraw;

pub use error::{NodeError, code_name};
