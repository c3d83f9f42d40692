//! A request frame (without its size prefix) straight from the network: decoding must return a
//! value or an error, never panic; and any request that decodes must get an error response that
//! encodes at its version, since that is how the broker answers requests it rejects.
//!
//! Built plainly, this target stops at the codec's known pre-allocation from wire counts (an
//! out-of-memory report); with `--features huge-alloc-guard` it runs as the broker does.
#![no_main]

#[cfg(feature = "huge-alloc-guard")]
#[global_allocator]
static ALLOCATOR: caudal_protocol::alloc_guard::GuardedAllocator =
    caudal_protocol::alloc_guard::GuardedAllocator;

use bytes::Bytes;
use caudal_protocol::ErrorCode;
use caudal_protocol::error_response::error_response;
use caudal_protocol::request::decode_request;
use caudal_protocol::response::encode_response;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(request) = decode_request(Bytes::copy_from_slice(data)) else {
        return;
    };
    let version = request.version();
    let response = error_response(&request.body, version, ErrorCode::UnsupportedVersion)
        .expect("every decoded request has an error response");
    if let Err(error) = encode_response(
        request.correlation_id(),
        request.api_key,
        version,
        &response,
    ) {
        panic!(
            "{:?} v{version} error response does not encode: {error}",
            request.api_key
        );
    }
});
