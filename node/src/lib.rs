//! The wb node crate: everything that touches the network. For now it holds the mapping from
//! the instance key to its iroh endpoint identity ([`identity`]); the sync node, peers and the
//! hub role come with the sync issues.

pub mod identity;

/// Errors of the node crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    #[error("{0} is not a valid endpoint id")]
    BadKey(String),
}
