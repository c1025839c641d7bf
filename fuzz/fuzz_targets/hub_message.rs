//! Untrusted `wb-hub/1` messages: `HubRequest::decode` (what a hub reads) and
//! `HubResponse::decode` (what a node reads) never panic; whatever decodes re-encodes within
//! the size limit to bytes that decode to the same value; and what each side does next (the
//! announcement checks, the hub's rejection text) never panics.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use protocol::hub::{HubRequest, HubResponse};

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = HubRequest::decode(data) {
        let encoded = request.encode().expect("a decoded hub request re-encodes");
        assert!(encoded.len() <= data.len(), "re-encoding grew a request");
        assert_eq!(HubRequest::decode(&encoded).as_ref(), Ok(&request));
        let _ = request.kind();
        match &request {
            HubRequest::Announce(a) => common::receive_announcement(a),
            HubRequest::Lookup { key } => {
                let _ = protocol::PublicKey::from_bytes(*key);
            }
            HubRequest::Info => {}
        }
    }
    if let Ok(response) = HubResponse::decode(data) {
        let encoded = response
            .encode()
            .expect("a decoded hub response re-encodes");
        assert!(encoded.len() <= data.len(), "re-encoding grew a response");
        assert_eq!(HubResponse::decode(&encoded).as_ref(), Ok(&response));
        match &response {
            HubResponse::Found(a) => common::receive_announcement(a),
            HubResponse::Rejected { reason, .. } => common::show_peer_text(reason),
            HubResponse::Info {
                relay_url: Some(url),
            } => common::show_peer_text(url),
            HubResponse::Info { relay_url: None }
            | HubResponse::Accepted
            | HubResponse::NotFound => {}
        }
    }
});
