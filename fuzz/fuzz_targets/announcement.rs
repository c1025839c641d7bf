//! Untrusted announcements (`Announcement::decode`, the form a hub's directory stores):
//! decoding never panics; whatever decodes re-encodes to bytes that decode to the same value;
//! its signing bytes are canonical (they parse back to it); `verify` and `check` never panic
//! and agree with each other at several clocks; a verified announcement is fresh only within
//! the limits and stops verifying when its content changes.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use protocol::hub::Announcement;

fuzz_target!(|data: &[u8]| {
    let Ok(announcement) = Announcement::decode(data) else {
        return;
    };
    let encoded = announcement
        .encode()
        .expect("a decoded announcement re-encodes");
    assert!(
        encoded.len() <= data.len(),
        "re-encoding grew an announcement"
    );
    assert_eq!(Announcement::decode(&encoded).as_ref(), Ok(&announcement));
    common::receive_announcement(&announcement);
});
