//! Records (§5): the signed unit of sync, its canonical signing bytes and its sealed form.
//!
//! Canonical bytes (format version 1), all integers big-endian, strings as u32 length + UTF-8:
//! `DOMAIN`, format version (u8), origin (32 bytes), entity, id, version ms (u64), version
//! counter (u32), scope (u8: 0 private, 1 trusted, 2 public), deleted (u8: 0/1), field count
//! (u32) then each name and value, body. The sealed form (store values, wire) appends a flag
//! byte (0 unsigned, 1 signed) and the 64-byte signature when signed.

use sha2::{Digest, Sha256};

use crate::{Entity, ProtocolError, PublicKey, Scope, SecretKey, Signature, Version};

/// Domain-separation prefix of record signatures.
pub const RECORD_SIGNING_DOMAIN: &[u8] = b"whiteballoon/wb/record\0";
/// Version of the canonical encoding; part of the signed bytes.
pub const RECORD_FORMAT_VERSION: u8 = 1;
/// Hard limit on the canonical encoding of one record, checked before allocating.
pub const MAX_RECORD_LEN: usize = 1024 * 1024;

/// A record's global key: `(origin, entity, id)`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordKey {
    pub origin: PublicKey,
    pub entity: Entity,
    pub id: String,
}

/// One version of one record, as its origin signed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub origin: PublicKey,
    pub entity: Entity,
    pub id: String,
    pub version: Version,
    pub scope: Scope,
    pub deleted: bool,
    /// Ordered `Name: value` fields, as in the `.sync.txt` headers.
    pub fields: Vec<(String, String)>,
    pub body: String,
    /// The origin's signature over [`Record::signing_bytes`]; `None` only for records taken
    /// from an app-written bundle, which are attested by the bundle's signature instead.
    pub signature: Option<Signature>,
}

impl Record {
    pub fn key(&self) -> RecordKey {
        RecordKey {
            origin: self.origin,
            entity: self.entity.clone(),
            id: self.id.clone(),
        }
    }

    /// The value of a field, if present.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The request a live comment is on (its `Request` reference, resolved against the
    /// comment's origin); `None` for anything else, and for a reference that does not parse.
    pub fn commented_request(&self) -> Option<RecordKey> {
        if self.deleted || self.entity != Entity::Comment {
            return None;
        }
        let reference = crate::Reference::parse(self.field("Request")?).ok()?;
        Some(RecordKey {
            origin: reference.origin.unwrap_or(self.origin),
            entity: Entity::Request,
            id: reference.id,
        })
    }

    /// True for a live request whose status is `draft`: never exported or synced (§6).
    pub fn is_draft(&self) -> bool {
        !self.deleted && self.entity == Entity::Request && self.field("Status") == Some("draft")
    }

    /// The scope that decides who may receive this record: a draft is private whatever its
    /// scope says.
    pub fn effective_scope(&self) -> Scope {
        if self.is_draft() {
            Scope::Private
        } else {
            self.scope
        }
    }

    /// True when both carry the same content apart from version and signature: what a local
    /// edit compares to decide whether a new version is needed.
    pub fn same_content(&self, other: &Record) -> bool {
        self.scope == other.scope
            && self.deleted == other.deleted
            && self.fields == other.fields
            && self.body == other.body
    }

    /// Canonical bytes covered by the signature: every field except the signature.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + self.body.len());
        out.extend_from_slice(RECORD_SIGNING_DOMAIN);
        out.push(RECORD_FORMAT_VERSION);
        out.extend_from_slice(self.origin.as_bytes());
        put_str(&mut out, self.entity.as_str());
        put_str(&mut out, &self.id);
        out.extend_from_slice(&self.version.ms.to_be_bytes());
        out.extend_from_slice(&self.version.counter.to_be_bytes());
        out.push(self.scope.to_byte());
        out.push(u8::from(self.deleted));
        put_len(&mut out, self.fields.len());
        for (name, value) in &self.fields {
            put_str(&mut out, name);
            put_str(&mut out, value);
        }
        put_str(&mut out, &self.body);
        out
    }

    /// SHA-256 of the signing bytes; the conflict tie-breaker (§5).
    pub fn content_hash(&self) -> [u8; 32] {
        Sha256::digest(self.signing_bytes()).into()
    }

    /// Signs with the origin's key. Fails if the key is not the record's origin.
    pub fn sign(&mut self, key: &SecretKey) -> Result<(), ProtocolError> {
        if key.public() != self.origin {
            return Err(ProtocolError::BadSignature {
                origin: self.origin.to_base64(),
                entity: self.entity.to_string(),
                id: self.id.clone(),
            });
        }
        self.signature = Some(key.sign(&self.signing_bytes()));
        Ok(())
    }

    /// Verifies the signature against the record's own origin.
    pub fn verify(&self) -> Result<(), ProtocolError> {
        let Some(sig) = &self.signature else {
            return Err(ProtocolError::Unsigned);
        };
        if self.origin.verify(&self.signing_bytes(), sig) {
            Ok(())
        } else {
            Err(ProtocolError::BadSignature {
                origin: self.origin.to_base64(),
                entity: self.entity.to_string(),
                id: self.id.clone(),
            })
        }
    }

    /// Decodes canonical signing bytes (the inverse of [`Record::signing_bytes`]).
    pub fn from_signing_bytes(
        bytes: &[u8],
        signature: Option<Signature>,
    ) -> Result<Record, ProtocolError> {
        let mut r = Reader::new(bytes)?;
        let mut record = r.record_body()?;
        r.finish()?;
        record.signature = signature;
        Ok(record)
    }

    /// The sealed form: signing bytes, then the signature flag and signature.
    pub fn to_sealed_bytes(&self) -> Vec<u8> {
        let mut out = self.signing_bytes();
        match &self.signature {
            Some(sig) => {
                out.push(1);
                out.extend_from_slice(&sig.0);
            }
            None => out.push(0),
        }
        out
    }

    /// Decodes the sealed form. Does not verify the signature.
    pub fn from_sealed_bytes(bytes: &[u8]) -> Result<Record, ProtocolError> {
        let mut r = Reader::new(bytes)?;
        let mut record = r.record_body()?;
        record.signature = match r.u8()? {
            0 => None,
            1 => {
                let sig: [u8; 64] = r
                    .take(64)?
                    .try_into()
                    .map_err(|_| ProtocolError::Malformed("signature"))?;
                Some(Signature(sig))
            }
            _ => return Err(ProtocolError::Malformed("signature flag")),
        };
        r.finish()?;
        Ok(record)
    }
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    // Records are bounded by MAX_RECORD_LEN, far below u32::MAX.
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_len(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Result<Self, ProtocolError> {
        if bytes.len() > MAX_RECORD_LEN + 65 {
            return Err(ProtocolError::TooLarge {
                len: bytes.len(),
                max: MAX_RECORD_LEN,
            });
        }
        Ok(Self { rest: bytes })
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtocolError> {
        if n > self.rest.len() {
            return Err(ProtocolError::Malformed("truncated"));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, ProtocolError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, ProtocolError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, ProtocolError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    fn string(&mut self) -> Result<String, ProtocolError> {
        let len = self.u32()? as usize;
        // Checked against what is there before allocating.
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| ProtocolError::Malformed("invalid UTF-8"))
    }

    fn record_body(&mut self) -> Result<Record, ProtocolError> {
        if self.take(RECORD_SIGNING_DOMAIN.len())? != RECORD_SIGNING_DOMAIN {
            return Err(ProtocolError::Malformed("not a wb record"));
        }
        if self.u8()? != RECORD_FORMAT_VERSION {
            return Err(ProtocolError::Malformed(
                "unsupported record format version",
            ));
        }
        let origin_bytes: [u8; 32] = self
            .take(32)?
            .try_into()
            .map_err(|_| ProtocolError::Malformed("origin"))?;
        let origin = PublicKey::from_bytes(origin_bytes)?;
        let entity = Entity::from_name(&self.string()?);
        let id = self.string()?;
        let version = Version::new(self.u64()?, self.u32()?);
        let scope = Scope::from_byte(self.u8()?).ok_or(ProtocolError::Malformed("scope"))?;
        let deleted = match self.u8()? {
            0 => false,
            1 => true,
            _ => return Err(ProtocolError::Malformed("deleted flag")),
        };
        let count = self.u32()? as usize;
        // Each field takes at least 8 bytes: refuse counts the input cannot hold.
        if count > self.rest.len() / 8 {
            return Err(ProtocolError::Malformed("field count"));
        }
        let mut fields = Vec::with_capacity(count);
        for _ in 0..count {
            let name = self.string()?;
            let value = self.string()?;
            fields.push((name, value));
        }
        let body = self.string()?;
        Ok(Record {
            origin,
            entity,
            id,
            version,
            scope,
            deleted,
            fields,
            body,
            signature: None,
        })
    }

    fn finish(&self) -> Result<(), ProtocolError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(ProtocolError::Malformed("trailing bytes"))
        }
    }
}
