//! The instance key as iroh sees it: the same 32 bytes are the endpoint identity (§3).

use protocol::{PublicKey, SecretKey};

/// iroh's secret key built from the instance key's bytes: one key, not two.
pub fn iroh_secret_key(key: &SecretKey) -> iroh::SecretKey {
    iroh::SecretKey::from_bytes(&key.to_bytes())
}

/// iroh's endpoint id for an instance public key.
pub fn endpoint_id(key: &PublicKey) -> Result<iroh::EndpointId, crate::NodeError> {
    iroh::PublicKey::from_bytes(key.as_bytes()).map_err(|_| crate::NodeError::BadKey(key.to_hex()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_key_two_views() {
        let key = SecretKey::from_bytes(&[42; 32]);
        let iroh_key = iroh_secret_key(&key);
        assert_eq!(iroh_key.public().as_bytes(), key.public().as_bytes());
        let id = endpoint_id(&key.public()).expect("valid key");
        // iroh's text form of the endpoint id is what protocol calls the hex form.
        assert_eq!(id.to_string(), key.public().to_hex());
        assert_eq!(PublicKey::parse(&id.to_string()), Ok(key.public()));
        // A signature made by iroh's key verifies with protocol's verifier, and back.
        let sig = iroh_key.sign(b"msg");
        assert!(
            key.public()
                .verify(b"msg", &protocol::Signature(sig.to_bytes()))
        );
    }
}
