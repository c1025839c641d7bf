//! The provenance of imported bundles, keyed by manifest digest (a bundle is applied once).

use serde::{Deserialize, Serialize};

use super::*;
use crate::error::Result;

/// Where an imported bundle came from and what it did; keyed by its manifest digest, so the
/// same bundle is never applied twice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    /// SHA-256 (hex) of the manifest bytes.
    pub manifest_digest: String,
    /// The signer's public key (base64) and key id.
    pub signer: String,
    pub signer_key_id: String,
    /// `Signed-At` as the bundle states it.
    pub signed_at: String,
    pub imported_at_ms: u64,
    /// The directory it was imported from, as given.
    pub dir: String,
    pub files: u64,
    pub report: ApplyReport,
}

impl Store {
    /// The provenance of an imported bundle, by manifest digest (hex).
    pub fn imported_bundle(&self, manifest_digest: &str) -> Result<Option<Provenance>> {
        let tx = self.read_tx()?;
        let table = tx.open_table(BUNDLES).map_err(|e| self.err(e))?;
        let value = table.get(manifest_digest).map_err(|e| self.err(e))?;
        value
            .map(|v| {
                serde_json::from_slice(v.value())
                    .map_err(|e| self.corrupt(format!("bundle entry: {e}")))
            })
            .transpose()
    }

    /// Imported bundles, most recent first.
    pub fn imported_bundles(&self) -> Result<Vec<Provenance>> {
        let tx = self.read_tx()?;
        let table = tx.open_table(BUNDLES).map_err(|e| self.err(e))?;
        let mut out: Vec<Provenance> = Vec::new();
        for item in table.range::<&str>(..).map_err(|e| self.err(e))? {
            let (_, v) = item.map_err(|e| self.err(e))?;
            out.push(
                serde_json::from_slice(v.value())
                    .map_err(|e| self.corrupt(format!("bundle entry: {e}")))?,
            );
        }
        out.sort_by_key(|p| std::cmp::Reverse(p.imported_at_ms));
        Ok(out)
    }
}
