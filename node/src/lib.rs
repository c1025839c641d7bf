//! The wb node crate: everything that touches the network. [`identity`] maps the instance key
//! to its iroh endpoint identity; [`session`] is one `wb-sync/1` session (framing, `Hello`,
//! serving and pulling changes); `endpoint` binds endpoints and resolves addresses; `dial` is
//! the dialling side of a sync session; [`node`] runs the listener (`wb node run`) and
//! re-exports one-shot syncs (`wb sync now`); [`handle`] is a running node's handle;
//! [`continuous`] keeps a running node's peers up to date by itself; [`directory`] is a node's
//! side of its hubs (announcements, lookups, relays) and [`hub`] the hub role (`wb hub run`);
//! [`discovery`] finds peers by key through a pkarr relay, without a hub; [`revocations`]
//! applies the revocations of followed revokers to the registry decisions read; [`probe`] is
//! `wb doctor`'s look at a peer; [`ticket`] reads and writes tickets (endpoint id and addresses).

mod accept;
pub mod app_bridge;
pub mod continuous;
mod dial;
mod digests;
pub mod directory;
pub mod discovery;
mod endpoint;
mod error;
pub mod handle;
pub mod hub;
pub mod identity;
pub mod metrics;
pub mod node;
mod outcome;
pub mod probe;
pub mod revocations;
pub mod session;
mod shared;
mod succession;
pub mod ticket;
mod withdraw;

pub use error::{NodeError, code_name};
