//! Decoding request frames.

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind};
use kafka_protocol::protocol::Decodable;

/// The first eight bytes of every request, readable whatever the header version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestPrefix {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
}

/// A request decoded into its header and body.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedRequest {
    pub api_key: ApiKey,
    pub header: RequestHeader,
    pub body: RequestKind,
}

impl DecodedRequest {
    pub fn version(&self) -> i16 {
        self.header.request_api_version
    }

    pub fn correlation_id(&self) -> i32 {
        self.header.correlation_id
    }
}

/// Why a frame could not be decoded. Every variant past `TooShort` carries what is needed to
/// answer the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestDecodeError {
    #[error("frame of {length} bytes is too short for a request header")]
    TooShort { length: usize },
    #[error("unknown API key {}", prefix.api_key)]
    UnknownApiKey { prefix: RequestPrefix },
    #[error("{api_key:?} v{} is outside the versions this codec knows", prefix.api_version)]
    UnknownVersion {
        api_key: ApiKey,
        prefix: RequestPrefix,
    },
    #[error("malformed {api_key:?} v{} request: {reason}", prefix.api_version)]
    Malformed {
        api_key: ApiKey,
        prefix: RequestPrefix,
        reason: String,
    },
}

/// Reads the API key, version and correlation id at the start of a frame.
pub fn peek_prefix(frame: &[u8]) -> Result<RequestPrefix, RequestDecodeError> {
    if frame.len() < 8 {
        return Err(RequestDecodeError::TooShort {
            length: frame.len(),
        });
    }
    Ok(RequestPrefix {
        api_key: i16::from_be_bytes([frame[0], frame[1]]),
        api_version: i16::from_be_bytes([frame[2], frame[3]]),
        correlation_id: i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]),
    })
}

/// Decodes a whole request frame (without its size prefix).
pub fn decode_request(mut frame: Bytes) -> Result<DecodedRequest, RequestDecodeError> {
    let prefix = peek_prefix(&frame)?;
    let api_key = ApiKey::try_from(prefix.api_key)
        .map_err(|()| RequestDecodeError::UnknownApiKey { prefix })?;
    let known = api_key.valid_versions();
    if prefix.api_version < known.min || prefix.api_version > known.max {
        return Err(RequestDecodeError::UnknownVersion { api_key, prefix });
    }
    let malformed = |error: anyhow::Error| RequestDecodeError::Malformed {
        api_key,
        prefix,
        reason: error.to_string(),
    };
    let header_version = api_key.request_header_version(prefix.api_version);
    let header = RequestHeader::decode(&mut frame, header_version).map_err(malformed)?;
    let body = RequestKind::decode(api_key, &mut frame, prefix.api_version).map_err(malformed)?;
    Ok(DecodedRequest {
        api_key,
        header,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::response::encode_request;
    use kafka_protocol::messages::{MetadataRequest, RequestHeader};
    use kafka_protocol::protocol::StrBytes;
    use proptest::prelude::*;

    #[test]
    fn round_trips_a_request() {
        let mut header = RequestHeader::default();
        header.request_api_key = ApiKey::Metadata as i16;
        header.request_api_version = 12;
        header.correlation_id = 42;
        header.client_id = Some(StrBytes::from_static_str("test"));
        let body = RequestKind::Metadata(MetadataRequest::default());
        let frame = encode_request(&header, &body).unwrap();
        let decoded = decode_request(frame.slice(4..)).unwrap();
        assert_eq!(decoded.api_key, ApiKey::Metadata);
        assert_eq!(decoded.correlation_id(), 42);
        assert_eq!(decoded.body, body);
    }

    #[test]
    fn reports_unknown_keys_and_versions_with_the_correlation_id() {
        let frame = Bytes::from_static(&[0x7f, 0x00, 0, 1, 0, 0, 0, 9]);
        assert!(matches!(
            decode_request(frame),
            Err(RequestDecodeError::UnknownApiKey { prefix }) if prefix.correlation_id == 9
        ));
        let frame = Bytes::from_static(&[0, 3, 0x7f, 0, 0, 0, 0, 5]);
        assert!(matches!(
            decode_request(frame),
            Err(RequestDecodeError::UnknownVersion {
                api_key: ApiKey::Metadata,
                ..
            })
        ));
        assert!(matches!(
            decode_request(Bytes::from_static(&[0, 3])),
            Err(RequestDecodeError::TooShort { length: 2 })
        ));
    }

    #[test]
    fn truncated_body_is_malformed() {
        // Metadata v1 with a topics array of two entries and no bytes for them.
        let frame = Bytes::from_static(&[0, 3, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 2]);
        assert!(matches!(
            decode_request(frame),
            Err(RequestDecodeError::Malformed { .. })
        ));
    }

    proptest! {
        // Array counts are kept small here: the codec pre-allocates from the count on the wire,
        // which the binary's allocation guard covers (see docs/decisions).
        #[test]
        fn decoding_random_bodies_never_panics(
            api_key in 0i16..=80,
            api_version in 0i16..=20,
            body in proptest::collection::vec(0u8..=3, 0..128),
        ) {
            let mut frame = Vec::new();
            frame.extend_from_slice(&api_key.to_be_bytes());
            frame.extend_from_slice(&api_version.to_be_bytes());
            frame.extend_from_slice(&1i32.to_be_bytes());
            frame.extend_from_slice(&body);
            let _ = decode_request(Bytes::from(frame));
        }
    }
}
