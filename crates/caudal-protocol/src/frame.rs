//! Size-prefixed framing: every Kafka request and response is a big-endian `i32` length followed by
//! that many bytes.

use tokio_util::codec::LengthDelimitedCodec;

/// Kafka's default `socket.request.max.bytes`.
pub const REQUEST_BYTES_MAX_DEFAULT: usize = 104_857_600;

/// A codec for Kafka frames. A length above `frame_bytes_max` (or negative, which reads as above)
/// fails the stream with `InvalidData` before anything is allocated; the caller closes that
/// connection. Decoded frames exclude the length prefix; encoded ones get it prepended.
pub fn frame_codec(frame_bytes_max: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .big_endian()
        .length_field_length(4)
        .max_frame_length(frame_bytes_max)
        .new_codec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{BufMut, BytesMut};
    use tokio_util::codec::Decoder;

    #[test]
    fn decodes_whole_frames_and_waits_for_partial_ones() {
        let mut codec = frame_codec(1024);
        let mut buf = BytesMut::new();
        buf.put_i32(3);
        buf.put_slice(b"ab");
        assert!(codec.decode(&mut buf).unwrap().is_none());
        buf.put_slice(b"c");
        assert_eq!(&codec.decode(&mut buf).unwrap().unwrap()[..], b"abc");
    }

    #[test]
    fn rejects_oversized_and_negative_lengths_without_allocating() {
        let mut codec = frame_codec(1024);
        let mut buf = BytesMut::new();
        buf.put_i32(1025);
        assert!(codec.decode(&mut buf).is_err());
        let mut codec = frame_codec(1024);
        let mut buf = BytesMut::new();
        buf.put_i32(-1);
        assert!(codec.decode(&mut buf).is_err());
    }
}
