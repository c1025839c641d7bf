//! The wb protocol crate: records, canonical signing bytes, keys, scopes, entity rules and the
//! hybrid logical clock. It does no I/O and knows nothing of tokio, iroh or redb.
//!
//! Layout: [`keys`] (public/secret keys, textual forms), [`scope`] (privacy scopes),
//! [`entity`] (entities, required fields, references, validation), [`version`] (HLC versions),
//! [`record`] (the signed record, canonical and sealed bytes), [`contact`] (contact-data
//! detection for the scope warning), [`sync_txt`] (the `.sync.txt` file codec and record
//! mapping), [`bundle`] (manifest, `bundle.sig`, public key files), [`peers`] (the
//! `wb_peers.txt` format), [`revocation`] (revocation records and whose apply here), [`succession`] (a replaced key's succession records and whose registry entries they move), [`time`] (ISO 8601 text of Unix milliseconds), [`text`] (peer-supplied text made safe), [`wire`] (the
//! `wb-sync/1` messages), [`hub`] (the hub's `wb-hub/1` messages and signed announcements), [`trust`] (the invite/vouch
//! graph) and [`trust_picture`] (that graph as DOT or Mermaid text).

pub mod bundle;
pub mod contact;
pub mod entity;
mod error;
pub mod hub;
pub mod keys;
pub mod peers;
pub mod record;
pub mod revocation;
pub mod scope;
pub mod succession;
pub mod sync_txt;
pub mod text;
pub mod time;
pub mod trust;
pub mod trust_picture;
pub mod version;
pub mod wire;

pub use entity::{Entity, Reference, validate};
pub use error::ProtocolError;
pub use keys::{PublicKey, SecretKey, Signature};
pub use record::{Record, RecordKey};
pub use scope::{
    Audience, Scope, is_withdrawal, may_accept, may_receive, may_receive_withdrawal,
    sent_on_behalf_of,
};
pub use sync_txt::{CodecError, SyncFile};
pub use version::Version;

#[cfg(test)]
mod tests;
