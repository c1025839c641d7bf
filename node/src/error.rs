//! Errors of the node crate: each names the peer and what went wrong.

use protocol::wire::code;

/// Why a sync session or the node failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    #[error("{0} is not a valid endpoint id")]
    BadKey(String),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("cannot listen on {addr}: {reason}")]
    Bind { addr: String, reason: String },
    #[error("peer {peer}: cannot resolve address {addr}: {reason}")]
    Resolve {
        peer: String,
        addr: String,
        reason: String,
    },
    #[error(
        "peer {peer} has no address to dial (add one with `wb sync peers add … --addr HOST:PORT`, \
         or find it by its key through a hub or with `--discovery pkarr=URL`)"
    )]
    NoAddress { peer: String },
    #[error("peer {peer} is unreachable: {reason}")]
    Unreachable { peer: String, reason: String },
    #[error("peer {peer} refused us: {reason} (wb-sync error {code}: {})", code_name(*code))]
    Refused {
        peer: String,
        code: u32,
        reason: String,
    },
    #[error("peer {peer} speaks wb-sync major version {theirs}; this node speaks {ours}")]
    VersionMismatch {
        peer: String,
        theirs: u16,
        ours: u16,
    },
    #[error("peer {peer} broke the protocol: {reason}")]
    Protocol { peer: String, reason: String },
    #[error("peer {peer} is too slow: {step} took longer than the deadline ({limit})")]
    Timeout {
        peer: String,
        step: String,
        limit: String,
    },
    #[error("connection to peer {peer} was lost: {reason}")]
    Lost { peer: String, reason: String },
    #[error("internal error: {0}")]
    Internal(String),
}

/// A readable name for a protocol error code.
pub fn code_name(c: u32) -> &'static str {
    match c {
        code::UNKNOWN_PEER => "unknown peer",
        code::REVOKED => "revoked",
        code::VERSION_MISMATCH => "protocol version mismatch",
        code::PROTOCOL_VIOLATION => "protocol violation",
        code::NOT_ALLOWED => "not allowed",
        code::INTERNAL => "internal error",
        code::SHUTDOWN => "shutting down",
        _ => "unknown code",
    }
}
