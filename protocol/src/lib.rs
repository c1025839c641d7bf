//! The wb protocol crate: records, canonical signing bytes, keys, scopes, entity rules and the
//! hybrid logical clock. It does no I/O and knows nothing of tokio, iroh or redb.
//!
//! Layout: [`keys`] (public/secret keys, textual forms), [`scope`] (privacy scopes),
//! [`entity`] (entities, required fields, references, validation), [`version`] (HLC versions),
//! [`record`] (the signed record, canonical and sealed bytes), [`contact`] (contact-data
//! detection for the scope warning).

pub mod contact;
pub mod entity;
mod error;
pub mod keys;
pub mod record;
pub mod scope;
pub mod version;

pub use entity::{Entity, Reference, validate};
pub use error::ProtocolError;
pub use keys::{PublicKey, SecretKey, Signature};
pub use record::{Record, RecordKey};
pub use scope::Scope;
pub use version::Version;

#[cfg(test)]
mod tests;
