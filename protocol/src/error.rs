//! Errors of the protocol crate: each variant names what was wrong.

/// Why a key, record or value could not be parsed, validated or verified.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    #[error("not a public key: {input:?} (expected base64, 64 hex digits or an iroh endpoint id)")]
    BadKey { input: String },
    #[error("not a valid Ed25519 public key: {input:?}")]
    InvalidKeyPoint { input: String },
    #[error("unknown scope {0:?} (expected private, trusted or public)")]
    BadScope(String),
    #[error("unknown entity {0:?} (expected user, request, comment, invite or vouch)")]
    UnknownEntity(String),
    #[error("not a version: {0:?} (expected <milliseconds>-<counter>)")]
    BadVersion(String),
    #[error("{entity} {id}: missing required field {field}")]
    MissingField {
        entity: String,
        id: String,
        field: &'static str,
    },
    #[error("{entity} {id}: field {field} has invalid value {value:?}: {reason}")]
    BadField {
        entity: String,
        id: String,
        field: String,
        value: String,
        reason: &'static str,
    },
    #[error("record id must not be empty")]
    EmptyId,
    #[error("record is not signed")]
    Unsigned,
    #[error("bad signature on {entity} {id} from {origin}")]
    BadSignature {
        origin: String,
        entity: String,
        id: String,
    },
    #[error("malformed record bytes: {0}")]
    Malformed(&'static str),
    #[error("record too large: {len} bytes (limit {max})")]
    TooLarge { len: usize, max: usize },
    #[error("not a record reference: {0:?} (expected <origin>/<id> or a bare id)")]
    BadReference(String),
}
