//! Instance keys and their textual forms (§3): base64 (the app's form), key id, hex (iroh's
//! endpoint id form).

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

impl PublicKey {
    /// Wraps raw bytes; fails if they are not a valid Ed25519 point.
    pub fn from_bytes(bytes: [u8; 32]) -> Result<Self, ProtocolError> {
        VerifyingKey::from_bytes(&bytes).map_err(|_| ProtocolError::InvalidKeyPoint {
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
        let Ok(key) = VerifyingKey::from_bytes(&self.0) else {
            return false;
        };
        let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
        key.verify_strict(message, &sig).is_ok()
    }
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
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({}..)", self.public().key_id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
