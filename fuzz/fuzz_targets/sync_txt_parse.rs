//! Untrusted `.sync.txt` bytes: the parser and the record mapping never panic, whatever parses
//! writes back to itself, and any valid record read from it survives a write/read round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::sync_txt::{
    RecordFileOptions, file_to_record, parse, parse_bytes, read_record, write, write_record,
};
use protocol::{SecretKey, validate};

fuzz_target!(|data: &[u8]| {
    let default_origin = SecretKey::from_bytes(&[7; 32]).public();
    let Ok(file) = parse_bytes(data) else {
        return;
    };
    assert_eq!(parse(&write(&file)).as_ref(), Ok(&file));
    let Ok(parsed) = file_to_record(&file, &default_origin) else {
        return;
    };
    for record in std::iter::once(&parsed.record).chain(&parsed.comments) {
        if validate(record).is_err() {
            continue;
        }
        let options = RecordFileOptions {
            instance: parsed.instance.as_deref(),
            comments: &parsed.comments,
        };
        let text = write_record(record, &options).expect("a valid record is writable");
        let back = read_record(text.as_bytes(), &default_origin).expect("what we write reads back");
        assert_eq!(&back.record, record);
    }
});
