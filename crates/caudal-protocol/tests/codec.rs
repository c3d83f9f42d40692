//! Golden frames: the first APIs every client speaks (ApiVersions, Metadata, Produce, Fetch) at
//! every version the codec knows, encoded and decoded back unchanged, in both directions; and a
//! few frames assembled byte by byte from the protocol specification, pinning the size prefix,
//! the header versions (ApiVersions responses always use header v0) and compact encodings.

use bytes::Bytes;
use caudal_protocol::kafka_protocol::messages::{
    self as m, ApiKey, RequestHeader, RequestKind, ResponseKind,
};
use caudal_protocol::kafka_protocol::protocol::StrBytes;
use caudal_protocol::request::decode_request;
use caudal_protocol::response::{decode_response, encode_request, encode_response};

mod common;

fn header(api_key: ApiKey, version: i16, correlation_id: i32) -> RequestHeader {
    RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("c")))
}

#[test]
fn requests_round_trip_at_every_version() {
    let mut covered = Vec::new();
    for (api_key, version, body) in common::representative_requests() {
        let correlation_id = 1000 + i32::from(version);
        let frame = encode_request(&header(api_key, version, correlation_id), &body)
            .unwrap_or_else(|error| panic!("{api_key:?} v{version}: {error}"));
        let size = i32::from_be_bytes(frame[..4].try_into().unwrap());
        assert_eq!(
            size as usize,
            frame.len() - 4,
            "{api_key:?} v{version}: size prefix"
        );
        let decoded = decode_request(frame.slice(4..))
            .unwrap_or_else(|error| panic!("{api_key:?} v{version}: {error}"));
        assert_eq!(decoded.api_key, api_key);
        assert_eq!(decoded.version(), version);
        assert_eq!(decoded.correlation_id(), correlation_id);
        assert_eq!(decoded.header.client_id.as_deref(), Some("c"));
        assert_eq!(decoded.body, body, "{api_key:?} v{version}");
        covered.push((api_key, version));
    }
    // The ranges clients actually use, at least.
    for (api_key, low, high) in [
        (ApiKey::ApiVersions, 0, 4),
        (ApiKey::Metadata, 0, 12),
        (ApiKey::Produce, 3, 11),
        (ApiKey::Fetch, 4, 17),
    ] {
        for version in low..=high {
            assert!(
                covered.contains(&(api_key, version)),
                "{api_key:?} v{version} not covered"
            );
        }
    }
}

#[test]
fn responses_round_trip_at_every_version() {
    for (api_key, version, body) in common::representative_responses() {
        let frame = encode_response(77, api_key, version, &body)
            .unwrap_or_else(|error| panic!("{api_key:?} v{version}: {error}"));
        let size = i32::from_be_bytes(frame[..4].try_into().unwrap());
        assert_eq!(
            size as usize,
            frame.len() - 4,
            "{api_key:?} v{version}: size prefix"
        );
        let (response_header, decoded) = decode_response(api_key, version, frame.slice(4..))
            .unwrap_or_else(|error| panic!("{api_key:?} v{version}: {error}"));
        assert_eq!(response_header.correlation_id, 77);
        assert_eq!(decoded, body, "{api_key:?} v{version}");
    }
}

#[test]
fn representative_messages_differ_from_defaults() {
    // A round trip of default values proves little: each representative body must carry data.
    for (api_key, version, body) in common::representative_requests() {
        let empty = match &body {
            RequestKind::ApiVersions(_) if version < 3 => continue,
            RequestKind::ApiVersions(request) => request == &m::ApiVersionsRequest::default(),
            RequestKind::Metadata(request) => request == &m::MetadataRequest::default(),
            RequestKind::Produce(request) => request == &m::ProduceRequest::default(),
            RequestKind::Fetch(request) => request == &m::FetchRequest::default(),
            other => panic!("unexpected {other:?}"),
        };
        assert!(!empty, "{api_key:?} v{version} is a default body");
    }
    for (api_key, version, body) in common::representative_responses() {
        let empty = match &body {
            ResponseKind::ApiVersions(response) => response == &m::ApiVersionsResponse::default(),
            ResponseKind::Metadata(response) => response == &m::MetadataResponse::default(),
            ResponseKind::Produce(response) => response == &m::ProduceResponse::default(),
            ResponseKind::Fetch(response) => response == &m::FetchResponse::default(),
            other => panic!("unexpected {other:?}"),
        };
        assert!(!empty, "{api_key:?} v{version} is a default body");
    }
}

/// Request frames written out field by field from the protocol guide.
#[test]
fn request_frames_match_the_specification() {
    let cases: [(ApiKey, i16, RequestKind, &[u8]); 3] = [
        (
            ApiKey::ApiVersions,
            0,
            common::api_versions_request(0),
            &[
                0, 0, 0, 11, // size
                0, 18, 0, 0, 0, 0, 0, 1, // api key, version, correlation id
                0, 1, b'c', // header v1: client id (int16 length)
            ],
        ),
        (
            ApiKey::ApiVersions,
            3,
            RequestKind::ApiVersions(
                m::ApiVersionsRequest::default()
                    .with_client_software_name(StrBytes::from_static_str("kc"))
                    .with_client_software_version(StrBytes::from_static_str("1")),
            ),
            &[
                0, 0, 0, 18, // size
                0, 18, 0, 3, 0, 0, 0, 1, // api key, version, correlation id
                0, 1, b'c', 0, // header v2: client id, no tagged fields
                3, b'k', b'c', 2, b'1', 0, // compact strings (length + 1), no tagged fields
            ],
        ),
        (
            ApiKey::Metadata,
            1,
            RequestKind::Metadata(m::MetadataRequest::default().with_topics(Some(vec![
                m::metadata_request::MetadataRequestTopic::default()
                    .with_name(Some(common::topic("t"))),
            ]))),
            &[
                0, 0, 0, 18, // size
                0, 3, 0, 1, 0, 0, 0, 1, // api key, version, correlation id
                0, 1, b'c', // header v1: client id
                0, 0, 0, 1, 0, 1, b't', // one topic: int32 count, int16-length name
            ],
        ),
    ];
    for (api_key, version, body, expected) in cases {
        let frame = encode_request(&header(api_key, version, 1), &body).unwrap();
        assert_eq!(&frame[..], expected, "{api_key:?} v{version}");
        let decoded = decode_request(Bytes::copy_from_slice(&expected[4..])).unwrap();
        assert_eq!(decoded.body, body, "{api_key:?} v{version}");
    }
}

/// Response frames written out field by field from the protocol guide.
#[test]
fn response_frames_match_the_specification() {
    use m::api_versions_response::ApiVersion;
    let api_versions =
        ResponseKind::ApiVersions(m::ApiVersionsResponse::default().with_api_keys(vec![
            ApiVersion::default()
                .with_api_key(18)
                .with_min_version(0)
                .with_max_version(4),
        ]));
    let cases: [(i16, &[u8]); 2] = [
        (
            0,
            &[
                0, 0, 0, 16, // size
                0, 0, 0, 9, // header v0: correlation id
                0, 0, // error code
                0, 0, 0, 1, 0, 18, 0, 0, 0, 4, // int32 count, one (key, min, max)
            ],
        ),
        (
            3,
            &[
                0, 0, 0, 19, // size
                0, 0, 0, 9, // header v0 even for flexible ApiVersions: correlation id only
                0, 0, // error code
                2, 0, 18, 0, 0, 0, 4, 0, // compact count (1 + 1), one entry, no tagged fields
                0, 0, 0, 0, // throttle time
                0, // no tagged fields (features are tagged and left out)
            ],
        ),
    ];
    for (version, expected) in cases {
        let frame = encode_response(9, ApiKey::ApiVersions, version, &api_versions).unwrap();
        assert_eq!(&frame[..], expected, "ApiVersions v{version}");
        let (_, decoded) = decode_response(
            ApiKey::ApiVersions,
            version,
            Bytes::copy_from_slice(&expected[4..]),
        )
        .unwrap();
        assert_eq!(decoded, api_versions, "ApiVersions v{version}");
    }
}
