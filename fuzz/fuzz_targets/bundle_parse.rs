//! Untrusted bundle metadata: manifest, `bundle.sig` and public key files never panic, and a
//! parsed manifest writes back to text that parses to the same manifest.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::bundle::{BundleSignature, Manifest, parse_public_key_file, verify_bundle};

fuzz_target!(|data: &[u8]| {
    if let Ok(manifest) = Manifest::parse(data) {
        assert_eq!(Manifest::parse(manifest.to_text().as_bytes()).as_ref(), Ok(&manifest));
    }
    if let Ok(signature) = BundleSignature::parse(data) {
        assert_eq!(BundleSignature::parse(signature.to_text().as_bytes()).as_ref(), Ok(&signature));
    }
    let _ = parse_public_key_file(data);
    let _ = verify_bundle(data, data);
});
