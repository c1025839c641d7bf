//! The conflict log: two different contents under the same version.

use serde::{Deserialize, Serialize};

use super::*;
use crate::error::Result;

/// One entry of the conflict log: two different contents under the same version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conflict {
    pub origin: String,
    pub entity: String,
    pub id: String,
    pub version: String,
    pub winner_hash: String,
    pub loser_hash: String,
    pub source: String,
    pub at_ms: u64,
}

impl Store {
    /// The conflict log, ordered by record key, version and loser hash.
    pub fn conflicts(&self) -> Result<Vec<Conflict>> {
        let tx = self.read_tx()?;
        let table = tx.open_table(CONFLICTS).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for item in table.range::<&[u8]>(..).map_err(|e| self.err(e))? {
            let (_, v) = item.map_err(|e| self.err(e))?;
            out.push(
                serde_json::from_slice(v.value())
                    .map_err(|e| self.corrupt(format!("conflict entry: {e}")))?,
            );
        }
        Ok(out)
    }
}
