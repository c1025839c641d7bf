//! Untrusted `wb-sync/1` frames: `Message::decode` never panics; whatever decodes re-encodes
//! (no longer than the frame: postcard's encoding is the shortest) to bytes that decode to the
//! same message; and what a node does next with each kind (the `Hello` checks, the peer's
//! `Error` text, every sealed record of a `Batch` and the batch's trust graph) never panics.
//! Signatures are not verified here (the cost of an execution would be mostly Ed25519): the
//! `record_sealed` target verifies the same sealed bytes.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use protocol::wire::{Message, PROTOCOL_MAJOR, SCHEMA_VERSIONS};

fuzz_target!(|data: &[u8]| {
    let Ok(message) = Message::decode(data) else {
        return;
    };
    let encoded = message.encode().expect("a decoded message re-encodes");
    assert!(encoded.len() <= data.len(), "re-encoding grew a frame");
    assert_eq!(Message::decode(&encoded).as_ref(), Ok(&message));
    assert_eq!(
        message.encode().as_ref(),
        Ok(&encoded),
        "encoding is not deterministic"
    );
    let _ = message.kind();
    match &message {
        Message::Hello {
            major,
            schema_versions,
            capabilities,
            ..
        } => {
            let _ = *major == PROTOCOL_MAJOR;
            let _ = schema_versions.iter().any(|v| SCHEMA_VERSIONS.contains(v));
            for c in capabilities {
                common::show_peer_text(c);
            }
        }
        Message::Error { message, .. } => common::show_peer_text(message),
        Message::Batch { records, .. } => {
            let received: Vec<_> = records
                .iter()
                .filter_map(|bytes| common::receive_record(bytes, false))
                .collect();
            common::receive_records(&received);
        }
        Message::Pull { .. } | Message::Offer | Message::Bye => {}
    }
});
