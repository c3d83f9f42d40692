//! The allocation guard turns a frame that claims billions of array elements into an ordinary
//! decode error instead of a process abort.

use bytes::Bytes;
use caudal_protocol::alloc_guard::GuardedAllocator;
use caudal_protocol::request::{RequestDecodeError, decode_request};

#[global_allocator]
static ALLOCATOR: GuardedAllocator = GuardedAllocator;

fn frame(api_key: i16, api_version: i16, body: &[u8]) -> Bytes {
    let mut frame = Vec::new();
    frame.extend_from_slice(&api_key.to_be_bytes());
    frame.extend_from_slice(&api_version.to_be_bytes());
    frame.extend_from_slice(&7i32.to_be_bytes());
    frame.extend_from_slice(&(-1i16).to_be_bytes()); // null client id
    frame.extend_from_slice(body);
    Bytes::from(frame)
}

#[test]
fn huge_array_count_is_a_decode_error() {
    // Metadata v1: topics array claiming i32::MAX entries, then nothing.
    let result = decode_request(frame(3, 1, &i32::MAX.to_be_bytes()));
    assert!(
        matches!(result, Err(RequestDecodeError::Malformed { .. })),
        "{result:?}"
    );
}

#[test]
fn huge_compact_array_count_is_a_decode_error() {
    // Produce v9 (flexible header: client id then an empty tagged-field section): null
    // transactional id, acks, timeout, then a compact topic array claiming u32::MAX - 1 entries.
    let mut body = vec![0u8];
    body.push(0);
    body.extend_from_slice(&1i16.to_be_bytes());
    body.extend_from_slice(&1000i32.to_be_bytes());
    body.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
    let result = decode_request(frame(0, 9, &body));
    assert!(
        matches!(result, Err(RequestDecodeError::Malformed { .. })),
        "{result:?}"
    );
}

#[test]
fn ordinary_allocations_still_work_through_the_guard() {
    let mut values: Vec<u64> = (0..100_000).collect();
    values.extend(0..100_000);
    assert_eq!(values.len(), 200_000);
    assert_eq!(values.iter().sum::<u64>(), 2 * (99_999 * 100_000 / 2));
}
