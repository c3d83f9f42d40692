//! A zero-copy view of Kafka's v2 record batch header.
//!
//! Layout (big-endian), 61 bytes:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | base offset |
//! | 8 | 4 | batch length (bytes after this field) |
//! | 12 | 4 | partition leader epoch |
//! | 16 | 1 | magic (2) |
//! | 17 | 4 | CRC-32C of everything from the attributes to the end |
//! | 21 | 2 | attributes |
//! | 23 | 4 | last offset delta |
//! | 27 | 8 | base timestamp |
//! | 35 | 8 | max timestamp |
//! | 43 | 8 | producer id |
//! | 51 | 2 | producer epoch |
//! | 53 | 4 | base sequence |
//! | 57 | 4 | record count |
//!
//! The CRC does not cover the base offset, the length or the partition leader epoch, so the broker
//! stamps those in place without recomputing it. Only the records' count is checked against the last
//! offset delta; records themselves are never decoded here.

use crate::types::{LeaderEpoch, Offset, ProducerEpoch, ProducerId, Sequence, TimestampMs};

/// Size of the v2 batch header.
pub const HEADER_BYTES: usize = 61;
/// Size of the base offset and batch length fields that precede the length-counted part.
pub const LOG_OVERHEAD_BYTES: usize = 12;
/// The smallest legal value of the batch length field (a header with no records).
pub const BATCH_LENGTH_MIN: i32 = (HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32;
/// The only record batch format Caudal stores.
pub const MAGIC_V2: i8 = 2;

const OFFSET_BASE_OFFSET: usize = 0;
const OFFSET_LENGTH: usize = 8;
const OFFSET_LEADER_EPOCH: usize = 12;
const OFFSET_MAGIC: usize = 16;
const OFFSET_CRC: usize = 17;
const OFFSET_ATTRIBUTES: usize = 21;
const OFFSET_LAST_OFFSET_DELTA: usize = 23;
const OFFSET_BASE_TIMESTAMP: usize = 27;
const OFFSET_MAX_TIMESTAMP: usize = 35;
const OFFSET_PRODUCER_ID: usize = 43;
const OFFSET_PRODUCER_EPOCH: usize = 51;
const OFFSET_BASE_SEQUENCE: usize = 53;
const OFFSET_RECORD_COUNT: usize = 57;

const ATTRIBUTE_COMPRESSION_MASK: i16 = 0x07;
const ATTRIBUTE_TIMESTAMP_TYPE: i16 = 0x08;
const ATTRIBUTE_TRANSACTIONAL: i16 = 0x10;
const ATTRIBUTE_CONTROL: i16 = 0x20;

/// Why a byte range is not a valid v2 batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("batch truncated: {available} bytes available, {needed} needed")]
    Truncated { available: usize, needed: usize },
    #[error("batch length {length} is invalid")]
    InvalidLength { length: i32 },
    #[error("unsupported record batch magic {magic}")]
    UnsupportedMagic { magic: i8 },
    #[error("CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("record count {record_count} does not match last offset delta {last_offset_delta}")]
    RecordCountMismatch {
        record_count: i32,
        last_offset_delta: i32,
    },
    #[error("unknown compression codec {codec}")]
    UnknownCompression { codec: i16 },
}

/// The compression codec named in a batch's attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompressionCodec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl CompressionCodec {
    fn from_attributes(attributes: i16) -> Result<Self, BatchError> {
        match attributes & ATTRIBUTE_COMPRESSION_MASK {
            0 => Ok(Self::None),
            1 => Ok(Self::Gzip),
            2 => Ok(Self::Snappy),
            3 => Ok(Self::Lz4),
            4 => Ok(Self::Zstd),
            codec => Err(BatchError::UnknownCompression { codec }),
        }
    }
}

/// The parsed header fields of one v2 batch. Parsing copies 61 bytes; the records stay in the
/// caller's buffer untouched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordBatchHeader {
    pub base_offset: Offset,
    pub batch_length: i32,
    pub partition_leader_epoch: LeaderEpoch,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: TimestampMs,
    pub max_timestamp: TimestampMs,
    pub producer_id: ProducerId,
    pub producer_epoch: ProducerEpoch,
    pub base_sequence: Sequence,
    pub record_count: i32,
}

#[inline]
fn read_i64(buf: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(buf[at..at + 8].try_into().expect("8-byte slice"))
}
#[inline]
fn read_i32(buf: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(buf[at..at + 4].try_into().expect("4-byte slice"))
}
#[inline]
fn read_i16(buf: &[u8], at: usize) -> i16 {
    i16::from_be_bytes(buf[at..at + 2].try_into().expect("2-byte slice"))
}

impl RecordBatchHeader {
    /// Reads the base offset and batch length only: the 12 bytes every batch format shares. Used to
    /// step over batches while scanning a segment.
    pub fn peek_size(buf: &[u8]) -> Result<usize, BatchError> {
        if buf.len() < LOG_OVERHEAD_BYTES {
            return Err(BatchError::Truncated {
                available: buf.len(),
                needed: LOG_OVERHEAD_BYTES,
            });
        }
        let length = read_i32(buf, OFFSET_LENGTH);
        if length < BATCH_LENGTH_MIN {
            return Err(BatchError::InvalidLength { length });
        }
        Ok(LOG_OVERHEAD_BYTES + length as usize)
    }

    /// Parses the header at the start of `buf`. Checks that the header is complete, the length is
    /// sane and the magic is 2; does not check the CRC or that the whole batch is present (see
    /// [`RecordBatchHeader::validate`]).
    pub fn parse(buf: &[u8]) -> Result<Self, BatchError> {
        if buf.len() < HEADER_BYTES {
            return Err(BatchError::Truncated {
                available: buf.len(),
                needed: HEADER_BYTES,
            });
        }
        let magic = buf[OFFSET_MAGIC] as i8;
        if magic != MAGIC_V2 {
            return Err(BatchError::UnsupportedMagic { magic });
        }
        let batch_length = read_i32(buf, OFFSET_LENGTH);
        if batch_length < BATCH_LENGTH_MIN {
            return Err(BatchError::InvalidLength {
                length: batch_length,
            });
        }
        Ok(Self {
            base_offset: Offset(read_i64(buf, OFFSET_BASE_OFFSET)),
            batch_length,
            partition_leader_epoch: LeaderEpoch(read_i32(buf, OFFSET_LEADER_EPOCH)),
            magic,
            crc: u32::from_be_bytes(buf[OFFSET_CRC..OFFSET_CRC + 4].try_into().expect("4 bytes")),
            attributes: read_i16(buf, OFFSET_ATTRIBUTES),
            last_offset_delta: read_i32(buf, OFFSET_LAST_OFFSET_DELTA),
            base_timestamp: TimestampMs(read_i64(buf, OFFSET_BASE_TIMESTAMP)),
            max_timestamp: TimestampMs(read_i64(buf, OFFSET_MAX_TIMESTAMP)),
            producer_id: ProducerId(read_i64(buf, OFFSET_PRODUCER_ID)),
            producer_epoch: ProducerEpoch(read_i16(buf, OFFSET_PRODUCER_EPOCH)),
            base_sequence: crate::types::Sequence(read_i32(buf, OFFSET_BASE_SEQUENCE)),
            record_count: read_i32(buf, OFFSET_RECORD_COUNT),
        })
    }

    /// Parses the header and checks the whole batch: that `buf` holds all of it, the CRC-32C, and
    /// that the record count agrees with the last offset delta.
    pub fn parse_and_validate(buf: &[u8]) -> Result<Self, BatchError> {
        let header = Self::parse(buf)?;
        header.validate(buf)?;
        Ok(header)
    }

    /// Checks the batch whose header this is, which starts at `buf[0]`.
    pub fn validate(&self, buf: &[u8]) -> Result<(), BatchError> {
        let size = self.size_bytes();
        if buf.len() < size {
            return Err(BatchError::Truncated {
                available: buf.len(),
                needed: size,
            });
        }
        let computed = crc32c::crc32c(&buf[OFFSET_ATTRIBUTES..size]);
        if computed != self.crc {
            return Err(BatchError::CrcMismatch {
                stored: self.crc,
                computed,
            });
        }
        if self.record_count < 0 || self.last_offset_delta < 0 {
            return Err(BatchError::RecordCountMismatch {
                record_count: self.record_count,
                last_offset_delta: self.last_offset_delta,
            });
        }
        CompressionCodec::from_attributes(self.attributes)?;
        Ok(())
    }

    /// Checks what a producer's batch must also satisfy: at least one record, and exactly
    /// `last_offset_delta + 1` of them (offsets inside a fresh batch are dense).
    pub fn validate_producer_counts(&self) -> Result<(), BatchError> {
        if self.record_count < 1 || self.record_count as i64 != self.last_offset_delta as i64 + 1 {
            return Err(BatchError::RecordCountMismatch {
                record_count: self.record_count,
                last_offset_delta: self.last_offset_delta,
            });
        }
        Ok(())
    }

    /// Whole size of the batch on the wire and on disk.
    #[inline]
    pub fn size_bytes(&self) -> usize {
        LOG_OVERHEAD_BYTES + self.batch_length as usize
    }

    /// The offset of the last record in the batch.
    #[inline]
    pub fn last_offset(&self) -> Offset {
        Offset(self.base_offset.0 + self.last_offset_delta as i64)
    }

    /// The offset after the batch.
    #[inline]
    pub fn next_offset(&self) -> Offset {
        self.last_offset().next()
    }

    /// The sequence of the last record in the batch.
    #[inline]
    pub fn last_sequence(&self) -> Sequence {
        if self.base_sequence == Sequence::NONE {
            Sequence::NONE
        } else {
            self.base_sequence.wrapping_add(self.last_offset_delta)
        }
    }

    pub fn compression(&self) -> Result<CompressionCodec, BatchError> {
        CompressionCodec::from_attributes(self.attributes)
    }

    /// True when the batch's timestamps are `LogAppendTime` (set by the broker).
    #[inline]
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & ATTRIBUTE_TIMESTAMP_TYPE != 0
    }

    #[inline]
    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTRIBUTE_TRANSACTIONAL != 0
    }

    #[inline]
    pub fn is_control(&self) -> bool {
        self.attributes & ATTRIBUTE_CONTROL != 0
    }

    /// True when the batch carries a producer id (idempotent or transactional producer).
    #[inline]
    pub fn has_producer_id(&self) -> bool {
        self.producer_id.0 >= 0
    }
}

/// Writes the base offset and partition leader epoch into the batch at `buf[0]` — the fields the
/// CRC does not cover, so no CRC work is needed.
pub fn stamp_offset_and_epoch(buf: &mut [u8], base_offset: Offset, leader_epoch: LeaderEpoch) {
    debug_assert!(buf.len() >= HEADER_BYTES);
    buf[OFFSET_BASE_OFFSET..OFFSET_BASE_OFFSET + 8].copy_from_slice(&base_offset.0.to_be_bytes());
    buf[OFFSET_LEADER_EPOCH..OFFSET_LEADER_EPOCH + 4]
        .copy_from_slice(&leader_epoch.0.to_be_bytes());
}

/// Marks the batch at `buf[0]` as `LogAppendTime` with `max_timestamp = append_time` and
/// recomputes its CRC, as Kafka does for topics with `message.timestamp.type=LogAppendTime`.
/// `buf` must hold the whole, already validated batch.
pub fn set_log_append_time(buf: &mut [u8], append_time: TimestampMs) {
    debug_assert!(buf.len() >= HEADER_BYTES);
    let attributes = read_i16(buf, OFFSET_ATTRIBUTES) | ATTRIBUTE_TIMESTAMP_TYPE;
    buf[OFFSET_ATTRIBUTES..OFFSET_ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    buf[OFFSET_MAX_TIMESTAMP..OFFSET_MAX_TIMESTAMP + 8]
        .copy_from_slice(&append_time.0.to_be_bytes());
    let crc = crc32c::crc32c(&buf[OFFSET_ATTRIBUTES..]);
    buf[OFFSET_CRC..OFFSET_CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Iterates over the batches concatenated in a buffer, yielding each batch's byte range and
/// validated header. Stops with an error at the first batch that is not whole and valid.
pub struct BatchIter<'a> {
    buf: &'a [u8],
    position: usize,
    failed: bool,
}

impl<'a> BatchIter<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self {
            buf,
            position: 0,
            failed: false,
        }
    }

    /// Bytes consumed by the batches yielded so far.
    pub fn position(&self) -> usize {
        self.position
    }
}

impl Iterator for BatchIter<'_> {
    type Item = Result<(std::ops::Range<usize>, RecordBatchHeader), BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.position >= self.buf.len() {
            return None;
        }
        let rest = &self.buf[self.position..];
        match RecordBatchHeader::parse_and_validate(rest) {
            Ok(header) => {
                let start = self.position;
                self.position += header.size_bytes();
                Some(Ok((start..self.position, header)))
            }
            Err(error) => {
                self.failed = true;
                Some(Err(error))
            }
        }
    }
}

/// Builds a valid v2 batch around already-encoded record bytes. For tests and tools; the broker
/// never builds batches on its hot path.
#[allow(clippy::too_many_arguments)]
pub fn build_batch(
    base_offset: Offset,
    attributes: i16,
    last_offset_delta: i32,
    base_timestamp: TimestampMs,
    max_timestamp: TimestampMs,
    producer_id: ProducerId,
    producer_epoch: ProducerEpoch,
    base_sequence: Sequence,
    record_count: i32,
    records: &[u8],
) -> Vec<u8> {
    let mut buf = Vec::with_capacity(HEADER_BYTES + records.len());
    buf.extend_from_slice(&base_offset.0.to_be_bytes());
    buf.extend_from_slice(
        &((HEADER_BYTES - LOG_OVERHEAD_BYTES + records.len()) as i32).to_be_bytes(),
    );
    buf.extend_from_slice(&0i32.to_be_bytes());
    buf.push(MAGIC_V2 as u8);
    buf.extend_from_slice(&0u32.to_be_bytes());
    buf.extend_from_slice(&attributes.to_be_bytes());
    buf.extend_from_slice(&last_offset_delta.to_be_bytes());
    buf.extend_from_slice(&base_timestamp.0.to_be_bytes());
    buf.extend_from_slice(&max_timestamp.0.to_be_bytes());
    buf.extend_from_slice(&producer_id.0.to_be_bytes());
    buf.extend_from_slice(&producer_epoch.0.to_be_bytes());
    buf.extend_from_slice(&base_sequence.0.to_be_bytes());
    buf.extend_from_slice(&record_count.to_be_bytes());
    buf.extend_from_slice(records);
    let crc = crc32c::crc32c(&buf[OFFSET_ATTRIBUTES..]);
    buf[OFFSET_CRC..OFFSET_CRC + 4].copy_from_slice(&crc.to_be_bytes());
    buf
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample(records: i32) -> Vec<u8> {
        build_batch(
            Offset(0),
            0,
            records - 1,
            TimestampMs(1_000),
            TimestampMs(1_005),
            ProducerId(7),
            ProducerEpoch(1),
            Sequence(10),
            records,
            &[0xAB; 40],
        )
    }

    #[test]
    fn parses_and_validates_a_built_batch() {
        let buf = sample(3);
        let header = RecordBatchHeader::parse_and_validate(&buf).unwrap();
        assert_eq!(header.size_bytes(), buf.len());
        assert_eq!(header.record_count, 3);
        assert_eq!(header.last_offset(), Offset(2));
        assert_eq!(header.last_sequence(), Sequence(12));
        assert_eq!(header.producer_id, ProducerId(7));
        header.validate_producer_counts().unwrap();
    }

    #[test]
    fn stamping_keeps_the_crc_valid() {
        let mut buf = sample(2);
        stamp_offset_and_epoch(&mut buf, Offset(1234), LeaderEpoch(9));
        let header = RecordBatchHeader::parse_and_validate(&buf).unwrap();
        assert_eq!(header.base_offset, Offset(1234));
        assert_eq!(header.partition_leader_epoch, LeaderEpoch(9));
    }

    #[test]
    fn log_append_time_rewrites_crc() {
        let mut buf = sample(2);
        set_log_append_time(&mut buf, TimestampMs(99_999));
        let header = RecordBatchHeader::parse_and_validate(&buf).unwrap();
        assert!(header.is_log_append_time());
        assert_eq!(header.max_timestamp, TimestampMs(99_999));
    }

    #[test]
    fn detects_flipped_bytes_and_truncation() {
        let mut buf = sample(2);
        let last = buf.len() - 1;
        buf[last] ^= 0xFF;
        assert!(matches!(
            RecordBatchHeader::parse_and_validate(&buf),
            Err(BatchError::CrcMismatch { .. })
        ));
        let buf = sample(2);
        assert!(matches!(
            RecordBatchHeader::parse_and_validate(&buf[..buf.len() - 1]),
            Err(BatchError::Truncated { .. })
        ));
        assert!(matches!(
            RecordBatchHeader::parse(&buf[..30]),
            Err(BatchError::Truncated { .. })
        ));
    }

    #[test]
    fn rejects_old_magic_and_bad_counts() {
        let mut buf = sample(2);
        buf[16] = 1;
        assert_eq!(
            RecordBatchHeader::parse(&buf),
            Err(BatchError::UnsupportedMagic { magic: 1 })
        );
        let buf = build_batch(
            Offset(0),
            0,
            4,
            TimestampMs(0),
            TimestampMs(0),
            ProducerId::NONE,
            ProducerEpoch::NONE,
            Sequence::NONE,
            2,
            &[],
        );
        let header = RecordBatchHeader::parse_and_validate(&buf).unwrap();
        assert!(header.validate_producer_counts().is_err());
    }

    #[test]
    fn iterates_concatenated_batches_and_stops_at_a_torn_tail() {
        let mut buf = sample(1);
        buf.extend_from_slice(&sample(4));
        let whole = buf.len();
        buf.extend_from_slice(&sample(2)[..20]);
        let mut iter = BatchIter::new(&buf);
        assert!(iter.next().unwrap().is_ok());
        assert!(iter.next().unwrap().is_ok());
        assert_eq!(iter.position(), whole);
        assert!(iter.next().unwrap().is_err());
        assert!(iter.next().is_none());
    }

    proptest! {
        #[test]
        fn parsing_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = RecordBatchHeader::parse_and_validate(&bytes);
            let _ = RecordBatchHeader::peek_size(&bytes);
            for item in BatchIter::new(&bytes) { let _ = item; }
        }

        #[test]
        fn corrupting_any_covered_byte_is_detected(index in 21usize..101, flip in 1u8..=255) {
            let mut buf = sample(3);
            buf[index] ^= flip;
            prop_assert!(RecordBatchHeader::parse_and_validate(&buf).is_err());
        }
    }
}
