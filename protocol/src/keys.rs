//! Instance keys and their textual forms (§3): base64 (the app's form), key id, hex (iroh's
//! endpoint id form).

use std::cell::RefCell;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::ProtocolError;

/// Length of a key id: hex digits of SHA-256 of the public key (the app's form).
pub const KEY_ID_LEN: usize = 16;

/// An instance's public key: the origin of its records and its iroh endpoint id.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey([u8; 32]);

/// A key is its bytes (its `Hash`, `Eq` and `Ord` are theirs), so a set of keys can be asked
/// about bytes without checking them as a point first.
impl std::borrow::Borrow<[u8; 32]> for PublicKey {
    fn borrow(&self) -> &[u8; 32] {
        &self.0
    }
}

impl PublicKey {
    /// Wraps raw bytes; fails if they are not a valid Ed25519 point.
    ///
    /// Checking the point is a decompression, about as costly as decoding a whole record, and
    /// most records come from a handful of origins: the decompressed keys are cached (see
    /// [`verifying_key`]), so repeated keys are checked once per thread.
    pub fn from_bytes(bytes: [u8; 32]) -> Result<Self, ProtocolError> {
        verifying_key(&bytes).ok_or_else(|| ProtocolError::InvalidKeyPoint {
            input: hex::encode(bytes),
        })?;
        Ok(Self(bytes))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Standard base64, the WhiteBalloon app's form.
    pub fn to_base64(&self) -> String {
        B64.encode(self.0)
    }

    /// 64 lowercase hex digits: iroh's endpoint id text form and the origin part of references.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// First 16 hex digits of SHA-256 of the key bytes (the app's key id).
    pub fn key_id(&self) -> String {
        let digest = Sha256::digest(self.0);
        let mut id = hex::encode(digest);
        id.truncate(KEY_ID_LEN);
        id
    }

    /// Parses base64, hex (iroh's display form) or iroh's base32 form. Key ids are not keys:
    /// resolving one needs a list of known keys, which callers hold.
    pub fn parse(input: &str) -> Result<Self, ProtocolError> {
        let s = input.trim();
        let bad = || ProtocolError::BadKey {
            input: input.to_string(),
        };
        let bytes: Vec<u8> = if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(s).map_err(|_| bad())?
        } else if s.len() == 52 {
            data_encoding::BASE32_NOPAD
                .decode(s.to_ascii_uppercase().as_bytes())
                .map_err(|_| bad())?
        } else {
            B64.decode(s).map_err(|_| bad())?
        };
        let arr: [u8; 32] = bytes.try_into().map_err(|_| bad())?;
        Self::from_bytes(arr).map_err(|_| ProtocolError::InvalidKeyPoint {
            input: input.to_string(),
        })
    }

    /// Verifies an Ed25519 signature (strict: rejects malleable encodings).
    pub fn verify(&self, message: &[u8], signature: &Signature) -> bool {
        let Some(key) = verifying_key(&self.0) else {
            return false;
        };
        let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
        key.verify_strict(message, &sig).is_ok()
    }

    /// Starts verifying an Ed25519 signature over a message given in pieces
    /// ([`StreamingVerify::update`]), with the rules of [`PublicKey::verify`]: a large manifest
    /// is checked as it is read, never held.
    pub fn verify_stream(&self, signature: &Signature) -> StreamingVerify {
        StreamingVerify(self.stream_verifier(signature))
    }

    fn stream_verifier(&self, signature: &Signature) -> Option<ed25519_dalek::StreamVerifier> {
        let key = verifying_key(&self.0)?;
        // What `verify_strict` refuses beyond the equation (dalek's stream verifier checks the
        // equation and a canonical S only): a small-order key or R.
        let mut r = [0u8; 32];
        r.copy_from_slice(signature.0.get(..32)?);
        let r_point = VerifyingKey::from_bytes(&r).ok()?;
        if key.is_weak() || r_point.is_weak() {
            return None;
        }
        key.verify_stream(&ed25519_dalek::Signature::from_bytes(&signature.0))
            .ok()
    }
}

/// An Ed25519 verification fed the message piece by piece (see [`PublicKey::verify_stream`]).
pub struct StreamingVerify(Option<ed25519_dalek::StreamVerifier>);

impl fmt::Debug for StreamingVerify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StreamingVerify")
    }
}

impl StreamingVerify {
    /// Adds the next bytes of the message.
    pub fn update(&mut self, bytes: &[u8]) {
        if let Some(v) = &mut self.0 {
            v.update(bytes);
        }
    }

    /// Whether the signature holds over everything given.
    pub fn finish(self) -> bool {
        self.0.is_some_and(|v| v.finalize_and_verify().is_ok())
    }
}

/// Keys decompressed most recently on this thread; a few slots, replaced in turn.
const RECENT_KEYS: usize = 8;

struct RecentKeys {
    slots: [Option<VerifyingKey>; RECENT_KEYS],
    next: usize,
}

thread_local! {
    static RECENT: RefCell<RecentKeys> = const {
        RefCell::new(RecentKeys {
            slots: [None; RECENT_KEYS],
            next: 0,
        })
    };
}

/// The decompressed Ed25519 point of `bytes`, or `None` if they are not a valid point.
///
/// Decompression is a pure function of the bytes, so a key found among this thread's recent
/// valid keys is the same key `VerifyingKey::from_bytes` would return: the cache changes no
/// result, it only spares the decompression (a quarter of the time of exporting a record, a
/// fifth of importing one) for the origins seen again and again in a scan, an import or a pull.
/// Invalid bytes are never cached: each attempt fails the full check.
fn verifying_key(bytes: &[u8; 32]) -> Option<VerifyingKey> {
    let cached = RECENT
        .try_with(|recent| {
            let recent = recent.try_borrow().ok()?;
            recent
                .slots
                .iter()
                .flatten()
                .find(|k| k.as_bytes() == bytes)
                .copied()
        })
        .ok()
        .flatten();
    if cached.is_some() {
        return cached;
    }
    let key = VerifyingKey::from_bytes(bytes).ok()?;
    // Without thread-local storage (a thread being torn down) the key is simply not cached.
    let _ = RECENT.try_with(|recent| {
        if let Ok(mut recent) = recent.try_borrow_mut() {
            let slot = recent.next;
            recent.slots[slot] = Some(key);
            recent.next = (slot + 1) % RECENT_KEYS;
        }
    });
    Some(key)
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.key_id())
    }
}

/// Displays the base64 form (the app's, and the JSON `origin` form).
impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

/// An Ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature(pub [u8; 64]);

impl Signature {
    pub fn to_base64(&self) -> String {
        B64.encode(self.0)
    }

    pub fn from_base64(s: &str) -> Option<Self> {
        let bytes = B64.decode(s.trim()).ok()?;
        Some(Self(bytes.try_into().ok()?))
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({}..)", hex::encode(&self.0[..8]))
    }
}

/// The instance's secret key. The same 32 bytes seed iroh's `SecretKey`: one key, not two.
#[derive(Clone)]
pub struct SecretKey(SigningKey);

impl SecretKey {
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        Self(SigningKey::from_bytes(bytes))
    }

    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes())
    }

    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.0.sign(message).to_bytes())
    }

    /// The Ed25519 signature [`SecretKey::sign`] makes, over a message too large to hold:
    /// `message` hands the message to its argument in pieces of any size, and is called twice
    /// (Ed25519 hashes the message twice); both calls must give the same bytes, or the
    /// signature is worthless (a check that the message did not change meanwhile, such as
    /// comparing a digest of each call, is the caller's). The first error `message` returns
    /// (it reads the message from a file) stops the signing and is returned.
    pub fn sign_stream(
        &self,
        message: impl Fn(&mut dyn FnMut(&[u8])) -> std::io::Result<()>,
    ) -> std::io::Result<Signature> {
        use ed25519_dalek::hazmat::{ExpandedSecretKey, raw_sign_byupdate};

        let failed: RefCell<Option<std::io::Error>> = RefCell::new(None);
        let expanded = ExpandedSecretKey::from(&self.0.to_bytes());
        let signed = raw_sign_byupdate::<sha2::Sha512, _>(
            &expanded,
            |hasher| {
                message(&mut |piece| hasher.update(piece)).map_err(|e| {
                    failed.replace(Some(e));
                    ed25519_dalek::SignatureError::new()
                })
            },
            &self.0.verifying_key(),
        );
        match (signed, failed.into_inner()) {
            (_, Some(e)) => Err(e),
            (Ok(signature), None) => Ok(Signature(signature.to_bytes())),
            // Only the closure fails, and it records why; kept for a future dalek that fails
            // on its own.
            (Err(e), None) => Err(std::io::Error::other(format!("Ed25519 signing: {e}"))),
        }
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({}..)", self.public().key_id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `verify_stream`, the message given in pieces of `chunk` bytes.
    fn verify_streamed(key: &PublicKey, message: &[u8], sig: &Signature, chunk: usize) -> bool {
        let mut v = key.verify_stream(sig);
        for piece in message.chunks(chunk.max(1)) {
            v.update(piece);
        }
        v.finish()
    }

    proptest::proptest! {
        #[test]
        fn streamed_verification_agrees_with_verify(
            seed in 0u8..8,
            message in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            chunk in 1usize..64,
            flip in proptest::prelude::any::<(u16, u8)>(),
        ) {
            let sk = SecretKey::from_bytes(&[seed; 32]);
            let key = sk.public();
            let sig = sk.sign(&message);
            proptest::prop_assert!(verify_streamed(&key, &message, &sig, chunk));
            // One changed bit of the message or of the signature: both checks say the same.
            let mut bad_sig = sig;
            let at = usize::from(flip.0) % 64;
            bad_sig.0[at] ^= 1 << (flip.1 % 8);
            proptest::prop_assert_eq!(
                verify_streamed(&key, &message, &bad_sig, chunk),
                key.verify(&message, &bad_sig)
            );
            if !message.is_empty() {
                let mut bad = message.clone();
                let at = usize::from(flip.0) % bad.len();
                bad[at] ^= 1 << (flip.1 % 8);
                proptest::prop_assert!(!verify_streamed(&key, &bad, &sig, chunk));
            }
        }

        #[test]
        fn streamed_signing_equals_one_shot_signing(
            seed in proptest::prelude::any::<[u8; 32]>(),
            message in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2_000),
            chunk in 1usize..300,
        ) {
            let sk = SecretKey::from_bytes(&seed);
            let calls = std::cell::Cell::new(0);
            let streamed = sk.sign_stream(|feed| {
                calls.set(calls.get() + 1);
                for piece in message.chunks(chunk) {
                    feed(piece);
                }
                Ok(())
            });
            proptest::prop_assert_eq!(calls.get(), 2);
            let streamed = streamed.map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
            proptest::prop_assert_eq!(streamed, sk.sign(&message));
            proptest::prop_assert!(sk.public().verify(&message, &streamed));
        }
    }

    #[test]
    fn streamed_signing_returns_the_readers_error() {
        let sk = SecretKey::from_bytes(&[5; 32]);
        let calls = std::cell::Cell::new(0);
        let signed = sk.sign_stream(|feed| {
            calls.set(calls.get() + 1);
            feed(b"first half");
            Err(std::io::Error::other("disk went away"))
        });
        match signed {
            Err(e) => assert_eq!(e.to_string(), "disk went away"),
            Ok(sig) => panic!("signed despite the error: {sig:?}"),
        }
        assert_eq!(calls.get(), 1, "the first error stops the signing");
    }

    #[test]
    fn streamed_verification_is_strict() {
        // A small-order R (the identity) with S = 0 satisfies the equation for the identity
        // key... and is refused by both checks, as are non-canonical S and a weak key.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let weak = PublicKey(identity);
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&identity);
        let sig = Signature(sig);
        assert!(!weak.verify(b"m", &sig));
        assert!(!verify_streamed(&weak, b"m", &sig, 1));
        let sk = SecretKey::from_bytes(&[5; 32]);
        assert!(!verify_streamed(&sk.public(), b"m", &sig, 1));
        let mut high_s = sk.sign(b"m");
        high_s.0[63] |= 0xf0;
        assert!(!sk.public().verify(b"m", &high_s));
        assert!(!verify_streamed(&sk.public(), b"m", &high_s, 1));
    }

    #[test]
    fn textual_forms_parse_back() {
        let sk = SecretKey::from_bytes(&[7; 32]);
        let pk = sk.public();
        assert_eq!(PublicKey::parse(&pk.to_base64()), Ok(pk));
        assert_eq!(PublicKey::parse(&pk.to_hex()), Ok(pk));
        let b32 = data_encoding::BASE32_NOPAD
            .encode(pk.as_bytes())
            .to_ascii_lowercase();
        assert_eq!(PublicKey::parse(&b32), Ok(pk));
        assert_eq!(pk.key_id().len(), KEY_ID_LEN);
        assert!(PublicKey::parse("not a key").is_err());
        assert!(PublicKey::parse(&pk.key_id()).is_err());
    }

    #[test]
    fn fixture_key_id_matches_the_app() {
        // From shared/fixtures/app-bundle-v1: the app computed this key id.
        let pk =
            PublicKey::parse("9jrsNPA1fHvtHAn7BvEPOsIQVmcIWSfhcgIaDMc+ooQ=").expect("fixture key");
        assert_eq!(pk.key_id(), "1c2233b4c96971e2");
    }

    #[test]
    fn cached_key_checks_agree_with_the_full_check() {
        // More distinct inputs than cache slots, valid and invalid, each checked three times:
        // the answer never depends on what the cache holds.
        let mut invalid = 0;
        for round in 0..3 {
            for i in 0..=u8::MAX {
                let mut bytes = [i; 32];
                bytes[0] = i.wrapping_mul(37);
                let full = VerifyingKey::from_bytes(&bytes).is_ok();
                assert_eq!(PublicKey::from_bytes(bytes).is_ok(), full, "bytes {i}");
                if round == 0 && !full {
                    invalid += 1;
                }
            }
        }
        assert!(invalid > 0, "the inputs include invalid points");
        let sk = SecretKey::from_bytes(&[9; 32]);
        let sig = sk.sign(b"msg");
        for _ in 0..3 {
            assert!(sk.public().verify(b"msg", &sig));
            assert!(!sk.public().verify(b"msh", &sig));
        }
    }

    #[test]
    fn signatures_verify_only_for_their_message() {
        let sk = SecretKey::from_bytes(&[1; 32]);
        let sig = sk.sign(b"hello");
        assert!(sk.public().verify(b"hello", &sig));
        assert!(!sk.public().verify(b"hellp", &sig));
        assert!(
            !SecretKey::from_bytes(&[2; 32])
                .public()
                .verify(b"hello", &sig)
        );
    }
}
