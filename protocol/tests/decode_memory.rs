//! Issue 11, item 2: decoding cannot amplify. What a frame decodes to stays within a small
//! multiple of the frame's size, whatever the frame declares. Its own test binary: the
//! counting allocator is process-wide.

use std::alloc::System;

use cap::Cap;
use protocol::wire::{BATCH_RECORDS_MAX, Cursor, MAX_FRAME_LEN, Message};

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

/// Bytes still allocated after decoding `frame` (the decoded message kept alive), and the
/// decode's outcome.
fn retained_by_decode(frame: &[u8]) -> (usize, bool) {
    let before = ALLOCATOR.allocated();
    let decoded = Message::decode(frame);
    let after = ALLOCATOR.allocated();
    let ok = decoded.is_ok();
    drop(decoded);
    (after.saturating_sub(before), ok)
}

/// Postcard for a `Batch` of `n` empty records: variant 3, the count as a varint, one zero
/// byte per record, then the cursor and `done`.
fn batch_of_empty_records(n: usize) -> Vec<u8> {
    let mut frame = vec![3u8];
    let mut v = n as u64;
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            frame.push(byte);
            break;
        }
        frame.push(byte | 0x80);
    }
    frame.extend(std::iter::repeat_n(0u8, n));
    frame.extend([0u8; 16]); // epoch
    frame.push(0); // seq
    frame.push(0); // done
    frame
}

#[test]
fn a_frame_of_empty_records_decodes_to_at_most_a_small_multiple_of_its_size() {
    // The attack: nearly 8 MiB of empty records, ~24 bytes of Vec each once decoded.
    let frame = batch_of_empty_records(MAX_FRAME_LEN - 64);
    assert!(frame.len() <= MAX_FRAME_LEN);
    let (retained, ok) = retained_by_decode(&frame);
    eprintln!(
        "{} byte frame of empty records: decoded {ok}, {retained} bytes retained",
        frame.len()
    );
    assert!(!ok, "more records than a batch may hold are refused");
    assert!(
        retained < 2 * frame.len(),
        "a refused frame keeps nothing: {retained} bytes"
    );

    // The largest batch a sender may send decodes within a small multiple of its size.
    let full = Message::Batch {
        records: vec![vec![7u8; MAX_FRAME_LEN / BATCH_RECORDS_MAX - 16]; BATCH_RECORDS_MAX],
        next: Cursor::default(),
        done: true,
    }
    .encode()
    .expect("encodes");
    let (retained, ok) = retained_by_decode(&full);
    assert!(ok);
    assert!(
        retained < 2 * full.len(),
        "{retained} bytes retained for a {} byte frame",
        full.len()
    );

    // And the worst case within the bound: a full batch of empty records.
    let empty = batch_of_empty_records(BATCH_RECORDS_MAX);
    let (retained, ok) = retained_by_decode(&empty);
    assert!(ok);
    assert!(
        retained <= 64 * 1024,
        "{retained} bytes retained for {BATCH_RECORDS_MAX} empty records"
    );
}
