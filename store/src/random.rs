//! The system's random source (epochs, key material, salts).

use std::path::PathBuf;

use crate::error::{Result, StoreError};

pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| StoreError::Io {
        path: PathBuf::from("<system random source>"),
        source: std::io::Error::other(e.to_string()),
    })?;
    Ok(buf)
}
