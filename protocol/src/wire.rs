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
//!   Digests{offer} ─────────────────────►                   (if both name `digests`)
//!          ◄───────────────────────────── Digests{offer, held}
//!   Digests{held} ──────────────────────►
//!   Bye ────────────────────────────────►
//! ```
//!
//! `Digests` (issue 12): state digests of what each side offers the other and holds of what
//! the other offers, compared by both (`store::digest`). Sent only when both `Hello`s name
//! [`capability::DIGESTS`], so older peers never see one. With a hub (its `Hello` names
//! [`capability::HUB_DIGESTS`] instead, the instance's `DIGESTS`), the same three messages
//! follow the instance's pull and push, but a hub stores only the origins its intake takes: in
//! its `Digests` it lists exactly the origins of the instance's offer it takes (even those it
//! holds nothing of yet), and both sides compare over those origins only.
//!
//! Either side may send `Error` and close instead.

use serde::{Deserialize, Serialize};

use crate::ProtocolError;

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
/// Entries in a `Hello`'s lists (schema versions, capabilities) at most.
pub const HELLO_LIST_MAX: usize = 64;
/// Largest frame of each kind but `Batch` (which may use all of [`MAX_FRAME_LEN`]): a
/// `Hello`, `Pull`, `Offer`, `Bye` or `Error` is small, so a receiver refuses a larger one
/// from its length prefix, before buffering it.
pub const SMALL_FRAME_MAX: usize = 64 * 1024;
/// Entries in each list of a `Digests` message at most (one per origin and class), checked
/// while decoding. A store holding more classes sends the first ones and says `more`.
pub const DIGEST_ENTRIES_MAX: usize = 4_096;
/// Largest `Digests` frame: two full lists of entries (about 75 bytes each) fit.
pub const DIGESTS_FRAME_MAX: usize = 1024 * 1024;

/// The `Hello` capability that carries the sender's wall clock, `time=<ms since 1970>`: a dialer
/// compares it with its own clock around the exchange (`wb doctor`). Peers that do not send it
/// are simply not measured; the message format is unchanged.
pub const CAPABILITY_TIME: &str = "time=";

/// The sender's wall clock in a `Hello`'s capabilities, if it sent one.
pub fn hello_time(capabilities: &[String]) -> Option<u64> {
    capabilities
        .iter()
        .find_map(|c| c.strip_prefix(CAPABILITY_TIME)?.parse().ok())
}

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
        #[serde(deserialize_with = "bounded::hello_list")]
        schema_versions: Vec<u16>,
        /// The sender's store epoch.
        epoch: [u8; 16],
        role: Role,
        #[serde(deserialize_with = "bounded::hello_list")]
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
        /// At most [`BATCH_RECORDS_MAX`], checked while decoding. Each is written as bytes
        /// (`serialize_bytes`): in postcard the same bytes as a list of `u8`, copied at once
        /// rather than one `u8` at a time.
        #[serde(
            serialize_with = "bounded::serialize_records",
            deserialize_with = "bounded::batch_records"
        )]
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
    /// State digests (see the module documentation): `offer` describes what the sender would
    /// send the receiver (per origin and class), `held` what the sender holds of the classes
    /// the receiver offers or may see. `trusted`: the sender offers its trusted class.
    Digests {
        trusted: bool,
        #[serde(deserialize_with = "bounded::digest_entries")]
        offer: Vec<DigestEntry>,
        #[serde(deserialize_with = "bounded::digest_entries")]
        held: Vec<DigestEntry>,
        /// The sender had more entries than [`DIGEST_ENTRIES_MAX`]: the comparison is partial.
        more: bool,
    },
}

/// Which records of an origin a digest covers: those of public, or of trusted, scope (in the
/// form they leave the sender: a record sent as its withdrawal counts as that withdrawal).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum DigestClass {
    Public,
    Trusted,
}

impl DigestClass {
    pub fn as_str(self) -> &'static str {
        match self {
            DigestClass::Public => "public",
            DigestClass::Trusted => "trusted",
        }
    }
}

/// An order-independent digest of a set of records: how many, and the sum modulo 2^256 of a
/// domain-separated SHA-256 of each record's signing bytes (its key, version and content).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Digest {
    pub count: u64,
    /// Little-endian 256-bit sum.
    pub sum: [u8; 32],
}

/// One origin's class in a `Digests` message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestEntry {
    pub origin: [u8; 32],
    pub class: DigestClass,
    pub digest: Digest,
}

/// Capabilities a `Hello` may name.
pub mod capability {
    /// "Let us compare state digests at the end of the session" (`Message::Digests`).
    /// Format 2: digests of live records only (`store::digest`); a peer naming another format
    /// is not compared with.
    pub const DIGESTS: &str = "digests/2";
    /// A hub's "let us compare state digests" (format 2), over the origins its intake takes
    /// (`store::digest::compare_within`). An instance that names [`DIGESTS`] sends a hub that
    /// names this one its `Digests` after its pull and push.
    pub const HUB_DIGESTS: &str = "hub-digests/2";
    /// "Send me my own records too": the sender's store was restored from a backup and gets
    /// back from its peers what it signed after the backup (a receiver otherwise never sends a
    /// peer its own records). Only records whose origin is the sender itself are added.
    pub const OWN_RECORDS: &str = "own-records";
}

impl Message {
    /// Our `Hello`, naming `capabilities`.
    pub fn hello_with(epoch: [u8; 16], role: Role, capabilities: &[&str]) -> Self {
        let mut hello = Self::hello(epoch, role);
        if let Message::Hello {
            capabilities: c, ..
        } = &mut hello
        {
            *c = capabilities.iter().map(|s| (*s).to_string()).collect();
        }
        hello
    }

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

    /// A `Hello` that also tells the sender's wall clock ([`CAPABILITY_TIME`]).
    pub fn hello_at(epoch: [u8; 16], role: Role, now_ms: u64) -> Self {
        Self::hello(epoch, role).with_time(now_ms)
    }

    /// This message, a `Hello`, also telling the sender's wall clock ([`CAPABILITY_TIME`]);
    /// any other message is returned as it is.
    pub fn with_time(mut self, now_ms: u64) -> Self {
        if let Message::Hello { capabilities, .. } = &mut self {
            capabilities.push(format!("{CAPABILITY_TIME}{now_ms}"));
        }
        self
    }

    pub fn encode(&self) -> Result<Vec<u8>, ProtocolError> {
        // Sized first: a batch's half-megabyte frame is written into one allocation, not
        // grown (and copied) ten times on the way, and a frame over the limit is not written.
        let len = postcard::experimental::serialized_size(self)
            .map_err(|_| ProtocolError::Malformed("message does not encode"))?;
        if len > MAX_FRAME_LEN {
            return Err(ProtocolError::TooLarge {
                len,
                max: MAX_FRAME_LEN,
            });
        }
        postcard::to_extend(self, Vec::with_capacity(len))
            .map_err(|_| ProtocolError::Malformed("message does not encode"))
    }

    /// Decodes one frame. Lists are bounded while decoding ([`BATCH_RECORDS_MAX`] records,
    /// [`HELLO_LIST_MAX`] list entries), so what a frame decodes to stays within a small
    /// multiple of its size (a frame of empty records would otherwise make 24 bytes of `Vec`
    /// out of each byte).
    pub fn decode(bytes: &[u8]) -> Result<Self, ProtocolError> {
        if bytes.len() > MAX_FRAME_LEN {
            return Err(ProtocolError::TooLarge {
                len: bytes.len(),
                max: MAX_FRAME_LEN,
            });
        }
        postcard::from_bytes(bytes).map_err(|_| ProtocolError::Malformed("not a wb-sync message"))
    }

    /// The largest frame a message of `kind` may take.
    pub fn frame_limit(kind: &str) -> usize {
        if kind == "Batch" {
            MAX_FRAME_LEN
        } else if kind == "Digests" {
            DIGESTS_FRAME_MAX
        } else {
            SMALL_FRAME_MAX
        }
    }

    /// The kind of the message a frame holds, read from its first bytes without decoding the
    /// rest: a receiver checks it against what it expects before decoding a large body.
    pub fn peek_kind(bytes: &[u8]) -> Option<&'static str> {
        // postcard writes an enum's variant index first, as a varint: one byte below 128.
        match bytes.first()? {
            0 => Some("Hello"),
            1 => Some("Pull"),
            2 => Some("Offer"),
            3 => Some("Batch"),
            4 => Some("Bye"),
            5 => Some("Error"),
            6 => Some("Digests"),
            _ => None,
        }
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
            Message::Digests { .. } => "Digests",
        }
    }
}

/// Deserializers that refuse lists longer than their bound while reading them, before the
/// entries past the bound are allocated.
mod bounded {
    use std::fmt;
    use std::marker::PhantomData;

    use serde::de::{Deserialize, Deserializer, Error, SeqAccess, Visitor};

    use super::{BATCH_RECORDS_MAX, DIGEST_ENTRIES_MAX, DigestEntry, HELLO_LIST_MAX};

    struct Bounded<T> {
        max: usize,
        what: &'static str,
        _entries: PhantomData<T>,
    }

    impl<'de, T: Deserialize<'de>> Visitor<'de> for Bounded<T> {
        type Value = Vec<T>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "at most {} {}", self.max, self.what)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let declared = seq.size_hint().unwrap_or(0);
            if declared > self.max {
                return Err(A::Error::invalid_length(declared, &self));
            }
            let mut out = Vec::with_capacity(declared);
            while let Some(entry) = seq.next_element()? {
                if out.len() == self.max {
                    return Err(A::Error::invalid_length(self.max + 1, &self));
                }
                out.push(entry);
            }
            Ok(out)
        }
    }

    fn seq<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
        max: usize,
        what: &'static str,
    ) -> Result<Vec<T>, D::Error> {
        d.deserialize_seq(Bounded {
            max,
            what,
            _entries: PhantomData,
        })
    }

    pub(super) fn batch_records<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
        let records: Vec<serde_bytes::ByteBuf> = seq(d, BATCH_RECORDS_MAX, "records")?;
        Ok(records
            .into_iter()
            .map(serde_bytes::ByteBuf::into_vec)
            .collect())
    }

    pub(super) fn serialize_records<S: serde::Serializer>(
        records: &[Vec<u8>],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(records.iter().map(|r| serde_bytes::Bytes::new(r)))
    }

    pub(super) fn digest_entries<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<DigestEntry>, D::Error> {
        seq(d, DIGEST_ENTRIES_MAX, "digest entries")
    }

    pub(super) fn hello_list<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
    ) -> Result<Vec<T>, D::Error> {
        seq(d, HELLO_LIST_MAX, "entries")
    }
}

/// Splits sealed records into batches under [`BATCH_RECORDS_MAX`] records and about
/// [`BATCH_BYTES_MAX`] bytes, in order.
pub fn batches_of_sealed(records: impl IntoIterator<Item = Vec<u8>>) -> Vec<Vec<Vec<u8>>> {
    let mut batches = Vec::new();
    let mut current: Vec<Vec<u8>> = Vec::new();
    let mut bytes = 0;
    for sealed in records {
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

    /// `Batch` as wb wrote it before its records were serialized as bytes.
    #[derive(Serialize)]
    struct PlainBatch {
        records: Vec<Vec<u8>>,
        next: Cursor,
        done: bool,
    }

    proptest! {
        /// Records written as bytes are the same bytes on the wire as a list of `u8` (what
        /// nodes before wrote and read), and decode back to the same records.
        #[test]
        fn batch_records_as_bytes_keep_the_wire_format(
            records in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..20),
            seq in any::<u64>(),
            done in any::<bool>(),
        ) {
            let next = Cursor { epoch: [7; 16], seq };
            let message = Message::Batch { records: records.clone(), next, done };
            let encoded = message.encode().expect("encodes");
            let plain = postcard::to_allocvec(&PlainBatch { records: records.clone(), next, done })
                .expect("plain");
            // One byte of variant index, then the fields exactly as before.
            prop_assert_eq!(&encoded[1..], plain.as_slice());
            let mut old_form = encoded[..1].to_vec();
            old_form.extend_from_slice(&plain);
            let Message::Batch { records: back, .. } = Message::decode(&old_form).expect("decodes")
            else {
                panic!("not a batch");
            };
            prop_assert_eq!(back, records);
        }
    }

    #[test]
    fn a_hello_carries_the_senders_clock_as_a_capability() {
        let hello = Message::hello_at([1; 16], Role::Hub, 1_700_000_000_123);
        let decoded = Message::decode(&hello.encode().expect("encodes")).expect("decodes");
        let Message::Hello { capabilities, .. } = decoded else {
            panic!("not a Hello");
        };
        assert_eq!(hello_time(&capabilities), Some(1_700_000_000_123));
        assert_eq!(hello_time(&[]), None);
        assert_eq!(hello_time(&["time=soon".into(), "other".into()]), None);
    }

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
            Message::Digests {
                trusted: false,
                offer: vec![DigestEntry {
                    origin: [3; 32],
                    class: DigestClass::Public,
                    digest: Digest {
                        count: 2,
                        sum: [4; 32],
                    },
                }],
                held: Vec::new(),
                more: true,
            },
            Message::Error {
                code: code::REVOKED,
                message: "revoked".into(),
            },
        ];
        for m in msgs {
            assert_eq!(Message::decode(&m.encode().expect("encodes")), Ok(m));
        }
    }

    #[test]
    fn peek_kind_names_every_message() {
        let msgs = [
            Message::hello([7; 16], Role::Node),
            Message::Pull {
                cursor: Cursor::default(),
            },
            Message::Offer,
            Message::Batch {
                records: vec![],
                next: Cursor::default(),
                done: false,
            },
            Message::Bye,
            Message::Error {
                code: 1,
                message: String::new(),
            },
        ];
        for m in msgs {
            let bytes = m.encode().expect("encodes");
            assert_eq!(Message::peek_kind(&bytes), Some(m.kind()));
        }
        assert_eq!(Message::peek_kind(&[]), None);
        assert_eq!(Message::peek_kind(&[7]), None);
    }

    /// Issue 11, item 2: a batch of more records than a sender may put in one is refused
    /// while decoding; so are long `Hello` lists.
    #[test]
    fn lists_over_their_bound_are_refused_while_decoding() {
        let batch = |n: usize| Message::Batch {
            records: vec![Vec::new(); n],
            next: Cursor::default(),
            done: false,
        };
        let ok = batch(BATCH_RECORDS_MAX);
        assert_eq!(Message::decode(&ok.encode().expect("encodes")), Ok(ok));
        let over = batch(BATCH_RECORDS_MAX + 1).encode().expect("encodes");
        assert!(Message::decode(&over).is_err());
        let hello = |n: usize| Message::Hello {
            major: 1,
            minor: 0,
            schema_versions: vec![1; n],
            epoch: [0; 16],
            role: Role::Node,
            capabilities: vec![String::new(); n],
        };
        let ok = hello(HELLO_LIST_MAX);
        assert_eq!(Message::decode(&ok.encode().expect("encodes")), Ok(ok));
        assert!(Message::decode(&hello(HELLO_LIST_MAX + 1).encode().expect("encodes")).is_err());
    }

    /// Issue 12: a `Digests` message with more entries than a sender may put in one is
    /// refused while decoding, and its frame limit holds two full lists.
    #[test]
    fn digest_lists_over_their_bound_are_refused_while_decoding() {
        let entry = DigestEntry {
            origin: [9; 32],
            class: DigestClass::Trusted,
            digest: Digest {
                count: u64::MAX,
                sum: [0xff; 32],
            },
        };
        let digests = |offer: usize, held: usize| Message::Digests {
            trusted: true,
            offer: vec![entry; offer],
            held: vec![entry; held],
            more: false,
        };
        let ok = digests(DIGEST_ENTRIES_MAX, DIGEST_ENTRIES_MAX);
        let bytes = ok.encode().expect("encodes");
        assert!(bytes.len() <= DIGESTS_FRAME_MAX, "{} bytes", bytes.len());
        assert_eq!(Message::peek_kind(&bytes), Some("Digests"));
        assert_eq!(Message::decode(&bytes), Ok(ok));
        for (offer, held) in [(DIGEST_ENTRIES_MAX + 1, 0), (0, DIGEST_ENTRIES_MAX + 1)] {
            let over = digests(offer, held).encode().expect("encodes");
            assert!(Message::decode(&over).is_err());
        }
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = Message::decode(&bytes);
        }
    }
}
