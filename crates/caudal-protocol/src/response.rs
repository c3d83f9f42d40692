//! Encoding responses (broker side) and requests / decoding responses (client side).

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};

/// Why a message could not be encoded or a response decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("cannot encode {api_key:?} v{version}: {reason}")]
    Encode {
        api_key: ApiKey,
        version: i16,
        reason: String,
    },
    #[error("cannot decode {api_key:?} v{version} response: {reason}")]
    Decode {
        api_key: ApiKey,
        version: i16,
        reason: String,
    },
    #[error("unknown API key {api_key} in request header")]
    UnknownApiKey { api_key: i16 },
}

/// Encodes a response with its size prefix and the header version `api_key` and `version` call for.
pub fn encode_response(
    correlation_id: i32,
    api_key: ApiKey,
    version: i16,
    body: &ResponseKind,
) -> Result<Bytes, CodecError> {
    let encode_error = |error: anyhow::Error| CodecError::Encode {
        api_key,
        version,
        reason: error.to_string(),
    };
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_version = api_key.response_header_version(version);
    let size = header
        .compute_size(header_version)
        .and_then(|header_size| Ok(header_size + body_size(body, version)?))
        .map_err(encode_error)?;
    let mut buf = BytesMut::with_capacity(4 + size);
    buf.put_i32(size as i32);
    header
        .encode(&mut buf, header_version)
        .map_err(encode_error)?;
    body.encode(&mut buf, version).map_err(encode_error)?;
    debug_assert_eq!(buf.len(), 4 + size);
    Ok(buf.freeze())
}

fn body_size(body: &ResponseKind, version: i16) -> anyhow::Result<usize> {
    // `ResponseKind` has no size method of its own; encoding into a counting sink would cost a
    // copy, so dispatch to the message's `compute_size`.
    macro_rules! sizes {
        ($($kind:ident),* $(,)?) => {
            match body {
                $(ResponseKind::$kind(message) => message.compute_size(version),)*
                #[allow(unreachable_patterns)]
                _ => {
                    let mut scratch = BytesMut::new();
                    body.encode(&mut scratch, version)?;
                    Ok(scratch.len())
                }
            }
        };
    }
    sizes!(Produce, Fetch, Metadata, ListOffsets, ApiVersions)
}

/// Encodes a request with its size prefix (client side).
pub fn encode_request(header: &RequestHeader, body: &RequestKind) -> Result<Bytes, CodecError> {
    let api_key =
        ApiKey::try_from(header.request_api_key).map_err(|()| CodecError::UnknownApiKey {
            api_key: header.request_api_key,
        })?;
    let version = header.request_api_version;
    let encode_error = |error: anyhow::Error| CodecError::Encode {
        api_key,
        version,
        reason: error.to_string(),
    };
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0);
    header
        .encode(&mut buf, api_key.request_header_version(version))
        .map_err(encode_error)?;
    body.encode(&mut buf, version).map_err(encode_error)?;
    let size = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf.freeze())
}

/// Decodes a response frame (without its size prefix) for a request of `api_key` at `version`.
pub fn decode_response(
    api_key: ApiKey,
    version: i16,
    mut frame: Bytes,
) -> Result<(ResponseHeader, ResponseKind), CodecError> {
    let decode_error = |error: anyhow::Error| CodecError::Decode {
        api_key,
        version,
        reason: error.to_string(),
    };
    let header = ResponseHeader::decode(&mut frame, api_key.response_header_version(version))
        .map_err(decode_error)?;
    let body = ResponseKind::decode(api_key, &mut frame, version).map_err(decode_error)?;
    Ok((header, body))
}
