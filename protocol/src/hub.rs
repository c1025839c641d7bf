//! The hub's directory protocol (§11), ALPN `wb-hub/1`, and its signed address announcement.
//!
//! One request per bidirectional stream: the node writes one postcard-encoded [`HubRequest`] and
//! finishes its side; the hub answers with one [`HubResponse`] and finishes. Both are at most
//! [`HUB_MESSAGE_LEN_MAX`] bytes. Record store-and-forward does not use this ALPN: a node syncs
//! with its hub over `wb-sync/1`, like with any peer.
//!
//! An [`Announcement`] says "instance K is reachable at these addresses, as of T", signed by K:
//! canonical bytes are `ANNOUNCE_SIGNING_DOMAIN`, format version (u8), key (32 bytes),
//! timestamp ms (u64 BE), address count (u32 BE) then each address as u32 BE length + UTF-8,
//! then a flag byte (0/1) and the relay URL the same way when present.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::{PublicKey, SecretKey, Signature};

/// ALPN of the hub's directory service.
pub const HUB_ALPN: &[u8] = b"wb-hub/1";
/// Domain-separation prefix of announcement signatures.
pub const ANNOUNCE_SIGNING_DOMAIN: &[u8] = b"whiteballoon/wb/announce\0";
/// Version of the announcement's canonical encoding; part of the signed bytes.
pub const ANNOUNCE_FORMAT_VERSION: u8 = 1;
/// Largest request or response, checked before decoding.
pub const HUB_MESSAGE_LEN_MAX: usize = 16 * 1024;
/// Addresses one announcement may carry.
pub const ANNOUNCE_ADDRS_MAX: usize = 16;
/// Longest relay URL an announcement may carry.
pub const RELAY_URL_LEN_MAX: usize = 512;
/// An announcement older than this when the hub receives it is stale.
pub const ANNOUNCE_MAX_AGE_MS: u64 = 5 * 60 * 1000;
/// An announcement dated further than this in the hub's future is refused (clock skew guard).
pub const ANNOUNCE_MAX_FUTURE_MS: u64 = crate::version::MAX_FUTURE_SKEW_MS;
/// A hub's directory entry expires this long after its announcement's timestamp: lookups no
/// longer return it, and the hub drops it. Several announce intervals (a node re-announces
/// every minute), and no shorter than [`ANNOUNCE_MAX_AGE_MS`], so an expired entry's
/// announcement is too old to be accepted again (a dropped entry cannot be replayed).
pub const DIRECTORY_ENTRY_TTL_MS: u64 = ANNOUNCE_MAX_AGE_MS;

/// Hub error codes, in [`HubResponse::Rejected`] (the access refusals close the connection
/// with the codes of [`crate::wire::code`]).
pub mod hub_code {
    /// The announcement's signature does not verify against the announced key.
    pub const FORGED: u32 = 20;
    /// The announcement is too old, or not newer than one already accepted from that key.
    pub const STALE: u32 = 21;
    /// The announcement is dated too far in the future.
    pub const FUTURE: u32 = 22;
    /// The announcement is malformed (bad address, too many addresses, too long a URL).
    pub const MALFORMED: u32 = 23;
    /// An instance may only announce itself.
    pub const NOT_SELF: u32 = 24;
}

/// "Instance `key` is reachable at `addrs` (and through `relay_url`), as of `timestamp_ms`",
/// signed by `key`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announcement {
    pub key: [u8; 32],
    pub timestamp_ms: u64,
    /// Direct addresses, `ip:port`.
    pub addrs: Vec<String>,
    /// The relay the instance is homed on, if any.
    pub relay_url: Option<String>,
    /// Ed25519 signature (64 bytes) of [`Announcement::signing_bytes`].
    pub signature: Vec<u8>,
}

/// Why an announcement is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AnnounceError {
    #[error("the announcement is not signed by the key it announces")]
    Forged,
    #[error("the announcement is stale: made {age_ms} ms ago (limit {limit_ms} ms)")]
    TooOld { age_ms: u64, limit_ms: u64 },
    #[error("the announcement is stale: not newer than the one accepted before")]
    Replayed,
    #[error("the announcement is dated {ahead_ms} ms in the future (limit {limit_ms} ms)")]
    Future { ahead_ms: u64, limit_ms: u64 },
    #[error("the announcement is malformed: {0}")]
    Malformed(String),
}

impl AnnounceError {
    /// The [`hub_code`] that reports this error.
    pub fn code(&self) -> u32 {
        match self {
            AnnounceError::Forged => hub_code::FORGED,
            AnnounceError::TooOld { .. } | AnnounceError::Replayed => hub_code::STALE,
            AnnounceError::Future { .. } => hub_code::FUTURE,
            AnnounceError::Malformed(_) => hub_code::MALFORMED,
        }
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&u32::try_from(s.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

impl Announcement {
    /// Signs an announcement of `key`'s addresses at `timestamp_ms`.
    pub fn sign(
        key: &SecretKey,
        timestamp_ms: u64,
        addrs: &[SocketAddr],
        relay_url: Option<&str>,
    ) -> Self {
        let mut a = Announcement {
            key: *key.public().as_bytes(),
            timestamp_ms,
            addrs: addrs.iter().map(ToString::to_string).collect(),
            relay_url: relay_url.map(str::to_string),
            signature: Vec::new(),
        };
        a.signature = key.sign(&a.signing_bytes()).0.to_vec();
        a
    }

    /// The canonical bytes the signature covers.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + 32 * self.addrs.len());
        out.extend_from_slice(ANNOUNCE_SIGNING_DOMAIN);
        out.push(ANNOUNCE_FORMAT_VERSION);
        out.extend_from_slice(&self.key);
        out.extend_from_slice(&self.timestamp_ms.to_be_bytes());
        out.extend_from_slice(
            &u32::try_from(self.addrs.len())
                .unwrap_or(u32::MAX)
                .to_be_bytes(),
        );
        for a in &self.addrs {
            put_str(&mut out, a);
        }
        match &self.relay_url {
            None => out.push(0),
            Some(url) => {
                out.push(1);
                put_str(&mut out, url);
            }
        }
        out
    }

    /// The announced key.
    pub fn public_key(&self) -> Result<PublicKey, AnnounceError> {
        PublicKey::from_bytes(self.key)
            .map_err(|_| AnnounceError::Malformed("not a valid public key".into()))
    }

    /// The direct addresses, parsed.
    pub fn socket_addrs(&self) -> Result<Vec<SocketAddr>, AnnounceError> {
        self.addrs
            .iter()
            .map(|a| {
                a.parse()
                    .map_err(|_| AnnounceError::Malformed(format!("{a:?} is not ip:port")))
            })
            .collect()
    }

    /// Checks the shape and the signature: the announcement is well formed and signed by the
    /// key it announces. Returns that key.
    pub fn verify(&self) -> Result<PublicKey, AnnounceError> {
        if self.addrs.len() > ANNOUNCE_ADDRS_MAX {
            return Err(AnnounceError::Malformed(format!(
                "{} addresses (limit {ANNOUNCE_ADDRS_MAX})",
                self.addrs.len()
            )));
        }
        self.socket_addrs()?;
        if self
            .relay_url
            .as_ref()
            .is_some_and(|u| u.len() > RELAY_URL_LEN_MAX || u.contains(char::is_whitespace))
        {
            return Err(AnnounceError::Malformed(
                "relay URL too long or not one word".into(),
            ));
        }
        let key = self.public_key()?;
        let signature: [u8; 64] = self
            .signature
            .as_slice()
            .try_into()
            .map_err(|_| AnnounceError::Forged)?;
        if !key.verify(&self.signing_bytes(), &Signature(signature)) {
            return Err(AnnounceError::Forged);
        }
        Ok(key)
    }

    /// What a hub checks before storing an announcement received at `now_ms`: the signature,
    /// then freshness (not older than [`ANNOUNCE_MAX_AGE_MS`], not more than
    /// [`ANNOUNCE_MAX_FUTURE_MS`] ahead, newer than `last_ms`, the timestamp of the last one
    /// accepted from that key).
    pub fn check(&self, now_ms: u64, last_ms: Option<u64>) -> Result<PublicKey, AnnounceError> {
        let key = self.verify()?;
        if self.timestamp_ms > now_ms.saturating_add(ANNOUNCE_MAX_FUTURE_MS) {
            return Err(AnnounceError::Future {
                ahead_ms: self.timestamp_ms - now_ms,
                limit_ms: ANNOUNCE_MAX_FUTURE_MS,
            });
        }
        let age_ms = now_ms.saturating_sub(self.timestamp_ms);
        if age_ms > ANNOUNCE_MAX_AGE_MS {
            return Err(AnnounceError::TooOld {
                age_ms,
                limit_ms: ANNOUNCE_MAX_AGE_MS,
            });
        }
        if last_ms.is_some_and(|last| self.timestamp_ms <= last) {
            return Err(AnnounceError::Replayed);
        }
        Ok(key)
    }

    pub fn encode(&self) -> Result<Vec<u8>, crate::ProtocolError> {
        postcard::to_allocvec(self)
            .map_err(|_| crate::ProtocolError::Malformed("announcement does not encode"))
    }

    /// Decodes an announcement of at most [`HUB_MESSAGE_LEN_MAX`] bytes (the most a hub
    /// message carrying it may hold).
    pub fn decode(bytes: &[u8]) -> Result<Self, crate::ProtocolError> {
        decode_limited(bytes, "not an announcement")
    }
}

/// What a node asks its hub.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HubRequest {
    /// "Here is where I am."
    Announce(Announcement),
    /// "Where is this endpoint?"
    Lookup { key: [u8; 32] },
    /// "What do you offer?" (the relay URL)
    Info,
}

/// What the hub answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HubResponse {
    Accepted,
    Rejected { code: u32, reason: String },
    Found(Announcement),
    NotFound,
    Info { relay_url: Option<String> },
}

fn encode_limited<T: Serialize>(
    value: &T,
    what: &'static str,
) -> Result<Vec<u8>, crate::ProtocolError> {
    let bytes = postcard::to_allocvec(value).map_err(|_| crate::ProtocolError::Malformed(what))?;
    if bytes.len() > HUB_MESSAGE_LEN_MAX {
        return Err(crate::ProtocolError::TooLarge {
            len: bytes.len(),
            max: HUB_MESSAGE_LEN_MAX,
        });
    }
    Ok(bytes)
}

fn decode_limited<'a, T: Deserialize<'a>>(
    bytes: &'a [u8],
    what: &'static str,
) -> Result<T, crate::ProtocolError> {
    if bytes.len() > HUB_MESSAGE_LEN_MAX {
        return Err(crate::ProtocolError::TooLarge {
            len: bytes.len(),
            max: HUB_MESSAGE_LEN_MAX,
        });
    }
    postcard::from_bytes(bytes).map_err(|_| crate::ProtocolError::Malformed(what))
}

impl HubRequest {
    pub fn encode(&self) -> Result<Vec<u8>, crate::ProtocolError> {
        encode_limited(self, "hub request does not encode")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, crate::ProtocolError> {
        decode_limited(bytes, "not a wb-hub request")
    }

    /// A short name for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            HubRequest::Announce(_) => "Announce",
            HubRequest::Lookup { .. } => "Lookup",
            HubRequest::Info => "Info",
        }
    }
}

impl HubResponse {
    pub fn encode(&self) -> Result<Vec<u8>, crate::ProtocolError> {
        encode_limited(self, "hub response does not encode")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, crate::ProtocolError> {
        decode_limited(bytes, "not a wb-hub response")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(seed: u8) -> SecretKey {
        SecretKey::from_bytes(&[seed; 32])
    }

    fn addr() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 4433))
    }

    #[test]
    fn a_signed_announcement_verifies_and_round_trips() {
        let a = Announcement::sign(&key(1), 1_000, &[addr()], Some("http://127.0.0.1:3340/"));
        assert_eq!(a.verify(), Ok(key(1).public()));
        assert_eq!(a.check(1_000, None), Ok(key(1).public()));
        let bytes = HubRequest::Announce(a.clone()).encode().expect("encodes");
        assert_eq!(HubRequest::decode(&bytes), Ok(HubRequest::Announce(a)));
    }

    #[test]
    fn an_announcement_signed_by_another_key_is_forged() {
        let mut a = Announcement::sign(&key(1), 1_000, &[addr()], None);
        a.key = *key(2).public().as_bytes();
        assert_eq!(a.verify(), Err(AnnounceError::Forged));
        let mut b = Announcement::sign(&key(1), 1_000, &[addr()], None);
        b.addrs.push("10.0.0.1:1".into());
        assert_eq!(b.verify(), Err(AnnounceError::Forged));
    }

    #[test]
    fn old_replayed_and_future_announcements_are_refused() {
        let a = Announcement::sign(&key(1), 1_000_000, &[addr()], None);
        assert!(matches!(
            a.check(1_000_000 + ANNOUNCE_MAX_AGE_MS + 1, None),
            Err(AnnounceError::TooOld { .. })
        ));
        assert_eq!(
            a.check(1_000_000, Some(1_000_000)),
            Err(AnnounceError::Replayed)
        );
        assert!(matches!(
            a.check(1_000_000 - ANNOUNCE_MAX_FUTURE_MS - 1, None),
            Err(AnnounceError::Future { .. })
        ));
        assert_eq!(a.check(1_000_001, Some(999_999)), Ok(key(1).public()));
    }

    #[test]
    fn malformed_announcements_are_refused() {
        let mut a = Announcement::sign(&key(1), 1, &[addr()], None);
        a.addrs = vec!["not an address".into()];
        assert!(matches!(a.verify(), Err(AnnounceError::Malformed(_))));
        let many: Vec<SocketAddr> = (0..=ANNOUNCE_ADDRS_MAX as u16)
            .map(|p| SocketAddr::from(([127, 0, 0, 1], p + 1)))
            .collect();
        let b = Announcement::sign(&key(1), 1, &many, None);
        assert!(matches!(b.verify(), Err(AnnounceError::Malformed(_))));
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = HubRequest::decode(&bytes);
            let _ = HubResponse::decode(&bytes);
        }
    }
}
