//! The sync protocol's messages (§10), ALPN `wb-sync/1`: postcard-encoded, each in one
//! length-prefixed frame of at most [`MAX_FRAME_LEN`] bytes (the framing is checked by the
//! reader before it allocates). Records travel in their sealed canonical form, so what a peer
//! verifies is exactly what the origin signed.
//!
//! A session on one bidirectional stream, opened by the dialer:
//!
//! ```text
//! dialer                                listener
//!   Hello  ─────────────────────────────►
//!          ◄───────────────────────────── Hello            (versions, epoch, role)
//!   Pull{cursor} ───────────────────────►                   (if the dialer pulls)
//!          ◄───────────────────────────── Batch{records, next, done} …
//!   Offer ──────────────────────────────►                   (if the dialer pushes)
//!          ◄───────────────────────────── Pull{cursor}
//!   Batch{records, next, done} … ───────►
//!   Bye ────────────────────────────────►
//! ```
//!
//! Either side may send `Error` and close instead.

use serde::{Deserialize, Serialize};

use crate::{ProtocolError, Record};

/// ALPN of instance-to-instance (and instance-to-hub) sync.
pub const SYNC_ALPN: &[u8] = b"wb-sync/1";
/// Major protocol version: peers with another major version cannot talk.
pub const PROTOCOL_MAJOR: u16 = 1;
pub const PROTOCOL_MINOR: u16 = 0;
/// `.sync.txt` schema versions this node reads.
pub const SCHEMA_VERSIONS: &[u16] = &[1];
/// Hard limit of one frame; a larger length prefix is refused before any allocation.
pub const MAX_FRAME_LEN: usize = 8 * 1024 * 1024;
/// Records per batch a server sends at most.
pub const BATCH_RECORDS_MAX: usize = 1_000;
/// Encoded bytes per batch a server aims to stay under (a single record may exceed it).
pub const BATCH_BYTES_MAX: usize = 2 * 1024 * 1024;

/// Application error codes, used in `Error` messages and as QUIC close codes.
pub mod code {
    /// The dialer's key is not in the registry (and the node is not open).
    pub const UNKNOWN_PEER: u32 = 1;
    /// The dialer's key is revoked.
    pub const REVOKED: u32 = 2;
    /// Another major protocol version.
    pub const VERSION_MISMATCH: u32 = 3;
    /// A malformed, oversized or unexpected message.
    pub const PROTOCOL_VIOLATION: u32 = 4;
    /// The peer may not push to us (unknown peers in open mode may only pull).
    pub const NOT_ALLOWED: u32 = 5;
    /// Something failed on the node's side (store, disk).
    pub const INTERNAL: u32 = 6;
    /// The node is shutting down.
    pub const SHUTDOWN: u32 = 7;
}

/// The role a node plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    Node,
    Hub,
}

/// A position in a store's change log: "everything up to `seq` of epoch `epoch` is here".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Cursor {
    pub epoch: [u8; 16],
    pub seq: u64,
}

/// One protocol message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    Hello {
        major: u16,
        minor: u16,
        schema_versions: Vec<u16>,
        /// The sender's store epoch.
        epoch: [u8; 16],
        role: Role,
        capabilities: Vec<String>,
    },
    /// "Send me your changes after this cursor" (a cursor of another epoch means from 0).
    Pull {
        cursor: Cursor,
    },
    /// The dialer offers its changes: the listener answers with `Pull`.
    Offer,
    /// Changes in log order: sealed records, and the cursor that covers them.
    Batch {
        records: Vec<Vec<u8>>,
        next: Cursor,
        done: bool,
    },
    /// The dialer is finished.
    Bye,
    Error {
        code: u32,
        message: String,
    },
}

impl Message {
    pub fn hello(epoch: [u8; 16], role: Role) -> Self {
        Message::Hello {
            major: PROTOCOL_MAJOR,
            minor: PROTOCOL_MINOR,
            schema_versions: SCHEMA_VERSIONS.to_vec(),
            epoch,
            role,
            capabilities: Vec::new(),
        }
    }

    pub fn encode(&self) -> Result<Vec<u8>, ProtocolError> {
        let bytes = postcard::to_allocvec(self)
            .map_err(|_| ProtocolError::Malformed("message does not encode"))?;
        if bytes.len() > MAX_FRAME_LEN {
            return Err(ProtocolError::TooLarge {
                len: bytes.len(),
                max: MAX_FRAME_LEN,
            });
        }
        Ok(bytes)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, ProtocolError> {
        if bytes.len() > MAX_FRAME_LEN {
            return Err(ProtocolError::TooLarge {
                len: bytes.len(),
                max: MAX_FRAME_LEN,
            });
        }
        postcard::from_bytes(bytes).map_err(|_| ProtocolError::Malformed("not a wb-sync message"))
    }

    /// A short name for logs and errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Hello { .. } => "Hello",
            Message::Pull { .. } => "Pull",
            Message::Offer => "Offer",
            Message::Batch { .. } => "Batch",
            Message::Bye => "Bye",
            Message::Error { .. } => "Error",
        }
    }
}

/// Splits records into batches under [`BATCH_RECORDS_MAX`] records and about
/// [`BATCH_BYTES_MAX`] bytes, in order, as sealed bytes.
pub fn seal_batches(records: &[Record]) -> Vec<Vec<Vec<u8>>> {
    let mut batches = Vec::new();
    let mut current: Vec<Vec<u8>> = Vec::new();
    let mut bytes = 0;
    for r in records {
        let sealed = r.to_sealed_bytes();
        if !current.is_empty()
            && (current.len() >= BATCH_RECORDS_MAX || bytes + sealed.len() > BATCH_BYTES_MAX)
        {
            batches.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += sealed.len();
        current.push(sealed);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn messages_round_trip() {
        let msgs = [
            Message::hello([7; 16], Role::Node),
            Message::Pull {
                cursor: Cursor {
                    epoch: [1; 16],
                    seq: 42,
                },
            },
            Message::Offer,
            Message::Batch {
                records: vec![vec![1, 2, 3], vec![]],
                next: Cursor {
                    epoch: [2; 16],
                    seq: u64::MAX,
                },
                done: true,
            },
            Message::Bye,
            Message::Error {
                code: code::REVOKED,
                message: "revoked".into(),
            },
        ];
        for m in msgs {
            assert_eq!(Message::decode(&m.encode().expect("encodes")), Ok(m));
        }
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = Message::decode(&bytes);
        }
    }
}
