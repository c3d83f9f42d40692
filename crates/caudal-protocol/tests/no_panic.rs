//! Request decoding never panics on bytes from the network.
//!
//! Every API key and version the codec knows gets random bodies. The `kafka-protocol` 0.18 codec
//! reserves `Vec::with_capacity(count)` from an array count before decoding any element, so the
//! bytes are drawn where every count the codec can read stays plausible (the broker binary guards
//! the process against the rest; see `docs/protocol.md`):
//!
//! - non-flexible versions read `i32` counts: bytes are `0x00`, `0x01` or `0xff`, so any four bytes
//!   read as a positive count are below 2^25 (and `0xff` still makes `-1` lengths and null arrays);
//! - flexible versions read unsigned-varint counts: bytes below `0x80` end a varint at once, so a
//!   count is at most 126.
//!
//! Valid frames truncated at every byte exercise the structured paths as deep as they go.
//! The runs are deterministic; `PROPTEST_CASES` sets the number of bodies per API version.

use bytes::Bytes;
use caudal_protocol::kafka_protocol::messages::{ApiKey, RequestHeader};
use caudal_protocol::kafka_protocol::protocol::StrBytes;
use caudal_protocol::request::{RequestDecodeError, decode_request};
use caudal_protocol::response::encode_request;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

mod common;

/// Bodies for a non-flexible request: every big-endian `i32` read from them is below 2^25.
fn fixed_width_bodies() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop_oneof![6 => Just(0x00u8), 3 => Just(0x01), 2 => Just(0xff)],
        0..96,
    )
}

/// Bodies for a flexible request: every unsigned varint read from them is one byte.
fn flexible_bodies() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop_oneof![6 => Just(0x00u8), 4 => 1u8..=4, 1 => 5u8..0x80],
        0..96,
    )
}

fn frame(api_key: i16, api_version: i16, correlation_id: i32, body: &[u8]) -> Bytes {
    let mut frame = Vec::with_capacity(8 + body.len());
    frame.extend_from_slice(&api_key.to_be_bytes());
    frame.extend_from_slice(&api_version.to_be_bytes());
    frame.extend_from_slice(&correlation_id.to_be_bytes());
    frame.extend_from_slice(body);
    Bytes::from(frame)
}

/// Decodes `frame`; an error must name the API, version and correlation id the frame started with.
fn decode_checked(frame: Bytes) -> Result<(), TestCaseError> {
    let expected = caudal_protocol::request::peek_prefix(&frame).ok();
    match decode_request(frame) {
        Ok(decoded) => {
            let expected = expected.expect("a decoded frame has a prefix");
            prop_assert_eq!(decoded.api_key as i16, expected.api_key);
            prop_assert_eq!(decoded.version(), expected.api_version);
            prop_assert_eq!(decoded.correlation_id(), expected.correlation_id);
        }
        Err(RequestDecodeError::TooShort { length }) => prop_assert!(length < 8),
        Err(
            RequestDecodeError::UnknownApiKey { prefix }
            | RequestDecodeError::UnknownVersion { prefix, .. }
            | RequestDecodeError::Malformed { prefix, .. },
        ) => prop_assert_eq!(Some(prefix), expected),
    }
    Ok(())
}

#[test]
fn random_bodies_for_every_api_version_never_panic() {
    // 64 bodies per API version (about 40,000 in all) unless PROPTEST_CASES asks for more.
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(64);
    let config = Config {
        cases,
        ..Config::default()
    };
    let mut seeds = TestRunner::deterministic();
    for api_key in ApiKey::iter() {
        let versions = api_key.valid_versions();
        for version in versions.min..=versions.max {
            let mut runner = TestRunner::new_with_rng(config.clone(), seeds.new_rng());
            let flexible = api_key.request_header_version(version) >= 2;
            let bodies = if flexible {
                flexible_bodies().boxed()
            } else {
                fixed_width_bodies().boxed()
            };
            let result = runner.run(&(bodies, any::<i32>()), |(body, correlation_id)| {
                decode_checked(frame(api_key as i16, version, correlation_id, &body))
            });
            if let Err(failure) = result {
                panic!("{api_key:?} v{version}: {failure}");
            }
        }
    }
}

proptest! {
    #[test]
    fn unknown_keys_and_versions_are_reported_not_decoded(
        api_key in any::<i16>(),
        api_version in any::<i16>(),
        correlation_id in any::<i32>(),
        body in fixed_width_bodies(),
    ) {
        let known = ApiKey::try_from(api_key).ok();
        let in_range = known.is_some_and(|key| {
            let versions = key.valid_versions();
            (versions.min..=versions.max).contains(&api_version)
        });
        let result = decode_request(frame(api_key, api_version, correlation_id, &body));
        match known {
            None => prop_assert!(
                matches!(result, Err(RequestDecodeError::UnknownApiKey { .. })),
                "{:?}",
                result
            ),
            Some(_) if !in_range => prop_assert!(
                matches!(result, Err(RequestDecodeError::UnknownVersion { .. })),
                "{:?}",
                result
            ),
            Some(_) => {}
        }
    }

    #[test]
    fn short_frames_are_too_short(bytes in proptest::collection::vec(any::<u8>(), 0..8)) {
        prop_assert_eq!(
            decode_request(Bytes::from(bytes.clone())),
            Err(RequestDecodeError::TooShort { length: bytes.len() })
        );
    }
}

#[test]
fn every_truncation_of_a_valid_frame_is_an_error() {
    let mut frames = 0;
    for (api_key, version, body) in common::representative_requests() {
        let header = RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(version)
            .with_correlation_id(1234)
            .with_client_id(Some(StrBytes::from_static_str("no-panic")));
        let frame = encode_request(&header, &body)
            .unwrap_or_else(|error| panic!("{api_key:?} v{version}: {error}"))
            .slice(4..);
        assert!(
            decode_request(frame.clone()).is_ok(),
            "{api_key:?} v{version}"
        );
        for length in 0..frame.len() {
            let result = decode_request(frame.slice(..length));
            assert!(
                result.is_err(),
                "{api_key:?} v{version}: {length} of {} bytes decoded",
                frame.len()
            );
        }
        frames += 1;
    }
    assert!(frames > 40, "only {frames} representative frames");
}
