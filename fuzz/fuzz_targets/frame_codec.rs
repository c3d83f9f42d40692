//! A byte stream from a socket, arriving in arbitrary pieces: the frame codec must yield whole
//! frames no larger than its limit, wait for partial ones, and fail on oversized or negative sizes,
//! never panic or allocate for a size it has not accepted.
#![no_main]

use bytes::BytesMut;
use caudal_protocol::frame::frame_codec;
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

const FRAME_BYTES_MAX: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the size of the pieces the stream arrives in.
    let Some((&piece, stream)) = data.split_first() else {
        return;
    };
    let piece = usize::from(piece).max(1);
    let mut codec = frame_codec(FRAME_BYTES_MAX);
    let mut buffer = BytesMut::new();
    let mut consumed = 0;
    for chunk in stream.chunks(piece) {
        buffer.extend_from_slice(chunk);
        loop {
            match codec.decode(&mut buffer) {
                Ok(Some(frame)) => {
                    assert!(frame.len() <= FRAME_BYTES_MAX);
                    assert_eq!(
                        &stream[consumed + 4..consumed + 4 + frame.len()],
                        &frame[..]
                    );
                    consumed += 4 + frame.len();
                }
                Ok(None) => break,
                // The connection is closed on a bad size; nothing more is read from it.
                Err(_) => return,
            }
        }
    }
    let _ = codec.decode_eof(&mut buffer);
});
