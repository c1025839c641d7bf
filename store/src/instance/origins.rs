//! Naming origins: the instances whose records the store holds, by key, key id or `local`.

use protocol::PublicKey;

use super::{Instance, InstanceError};
use crate::ListFilter;

impl Instance {
    /// The origins of the store's records (deleted ones included), each once.
    pub fn record_origins(&self) -> Result<Vec<PublicKey>, InstanceError> {
        let mut keys: Vec<PublicKey> = self
            .store
            .list(&ListFilter {
                include_deleted: true,
                ..Default::default()
            })?
            .into_iter()
            .map(|r| r.origin)
            .collect();
        keys.dedup();
        Ok(keys)
    }

    /// An origin named by `local`, a key in any textual form, or a key id known to the store
    /// (of a record's origin, or of this instance).
    pub fn resolve_origin(&self, text: &str) -> Result<PublicKey, InstanceError> {
        if text == "local" {
            return Ok(self.public());
        }
        if let Ok(key) = PublicKey::parse(text) {
            return Ok(key);
        }
        let wanted = text.trim().to_ascii_lowercase();
        if is_key_id(&wanted) {
            let mut found: Vec<PublicKey> = self
                .record_origins()?
                .into_iter()
                .chain([self.public()])
                .filter(|k| k.key_id() == wanted)
                .collect();
            found.dedup();
            if let [key] = found[..] {
                return Ok(key);
            }
            return Err(InstanceError::UnknownKeyId { key_id: wanted });
        }
        Err(InstanceError::NotAnOrigin {
            text: text.to_string(),
        })
    }
}

/// Whether `text` (lowercase) has the form of a key id (16 hex digits).
pub(crate) fn is_key_id(text: &str) -> bool {
    text.len() == protocol::keys::KEY_ID_LEN && text.bytes().all(|b| b.is_ascii_hexdigit())
}
