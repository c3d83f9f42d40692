//! Bytes claimed to be v2 record batches, as a producer sends them or a segment file holds them:
//! parsing, validating and walking them must return values or errors, never panic, and every
//! accessor of a header that validated must be total.
#![no_main]

use caudal_model::batch::{BatchIter, RecordBatchHeader};
use libfuzzer_sys::fuzz_target;

fn exercise(header: &RecordBatchHeader) {
    let _ = header.size_bytes();
    let _ = header.last_offset();
    let _ = header.next_offset();
    let _ = header.last_sequence();
    let _ = header.compression();
    let _ = header.is_log_append_time();
    let _ = header.is_transactional();
    let _ = header.is_control();
    let _ = header.has_producer_id();
    let _ = header.validate_producer_counts();
}

fuzz_target!(|data: &[u8]| {
    let _ = RecordBatchHeader::peek_size(data);
    if let Ok(header) = RecordBatchHeader::parse(data) {
        let _ = header.validate(data);
    }
    if let Ok(header) = RecordBatchHeader::parse_and_validate(data) {
        assert!(header.size_bytes() <= data.len());
        exercise(&header);
    }
    let mut batches = BatchIter::new(data);
    let mut end = 0;
    for batch in batches.by_ref() {
        match batch {
            Ok((range, header)) => {
                assert_eq!(range.start, end);
                assert!(range.end <= data.len());
                end = range.end;
                exercise(&header);
            }
            Err(_) => break,
        }
    }
    assert_eq!(batches.position(), end);
});
