//! Untrusted sealed records (a `Batch` element, a store value): `Record::from_sealed_bytes`
//! never panics; what decodes is canonical (it re-encodes to the very same bytes) and its
//! signing bytes decode back to it; signature, clock and entity checks, scope decisions and
//! trust readings never panic; a valid record exports to `.sync.txt` and reads back equal.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(record) = common::receive_record(data, true) else {
        return;
    };
    common::receive_records(std::slice::from_ref(&record));
});
