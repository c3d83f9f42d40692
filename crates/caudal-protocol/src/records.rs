//! Decoding record batches from untrusted bytes: what a fetch returns to a client, or a stored
//! batch the broker must look inside (ListOffsets by timestamp).
//!
//! The codec's own decoder trusts counts from the wire when it allocates (a header count of two
//! billion reserves memory for two billion headers), decompresses without a limit, and adds
//! timestamp deltas unchecked. Here every count is checked against the bytes that remain before
//! anything is allocated, decompression stops at a caller-given size, and arithmetic on wire
//! values is checked. Duplicate header keys are kept, as Kafka keeps them.

use std::io::Read;

use bytes::{Buf, Bytes};
use caudal_model::batch::{CompressionCodec, HEADER_BYTES, LOG_OVERHEAD_BYTES, MAGIC_V2};
use caudal_model::{LeaderEpoch, Offset, PartitionIndex, RecordBatchHeader, TimestampMs};

/// The smallest encoded record: seven one-byte fields (length, attributes, timestamp delta, offset
/// delta, key length, value length, header count).
pub const RECORD_BYTES_MIN: usize = 7;
/// The smallest encoded header: key length and value length.
const HEADER_BYTES_MIN: usize = 2;

/// A batch that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("batch at offset {base_offset}: {reason}")]
pub struct RecordsError {
    pub base_offset: i64,
    pub reason: String,
}

/// How a record's timestamp was set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampKind {
    Create,
    LogAppend,
}

/// A record as a consumer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    pub partition: PartitionIndex,
    pub offset: Offset,
    pub timestamp: TimestampMs,
    pub timestamp_kind: TimestampKind,
    pub leader_epoch: LeaderEpoch,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// What one partition's fetched bytes decoded to.
#[derive(Debug, Clone, Default)]
pub struct DecodedRecords {
    pub records: Vec<ConsumerRecord>,
    /// The offset after the last whole batch (records before the fetch offset and control
    /// batches included); `None` if no whole batch was present.
    pub next_offset: Option<Offset>,
}

/// Decodes the whole batches in `records` (a trailing partial batch, which fetch size limits
/// produce, is ignored), dropping control batches and records before `from`.
pub fn decode_batches(
    partition: PartitionIndex,
    mut records: Bytes,
    from: Offset,
    decompressed_bytes_max: usize,
) -> Result<DecodedRecords, RecordsError> {
    let mut decoded = DecodedRecords::default();
    while records.len() >= LOG_OVERHEAD_BYTES {
        let corrupt = |base_offset: i64, reason: String| RecordsError {
            base_offset,
            reason,
        };
        let base_offset = i64::from_be_bytes(records[0..8].try_into().unwrap_or_default());
        let size = RecordBatchHeader::peek_size(&records)
            .map_err(|error| corrupt(base_offset, error.to_string()))?;
        if records.len() < size {
            break;
        }
        let batch = records.split_to(size);
        if batch.len() > 16 && batch[16] as i8 != MAGIC_V2 {
            return Err(corrupt(
                base_offset,
                format!("message format v{} is not supported", batch[16] as i8),
            ));
        }
        let header = RecordBatchHeader::parse_and_validate(&batch)
            .map_err(|error| corrupt(base_offset, error.to_string()))?;
        let next = header.next_offset();
        decoded.next_offset = Some(decoded.next_offset.map_or(next, |known| known.max(next)));
        if header.is_control() || header.last_offset() < from {
            continue;
        }
        let payload = batch.slice(HEADER_BYTES..);
        let codec = header
            .compression()
            .map_err(|error| corrupt(base_offset, error.to_string()))?;
        let payload = decompress(codec, &payload, decompressed_bytes_max)
            .map_err(|reason| corrupt(base_offset, reason))?;
        decode_records(&header, partition, payload, from, &mut decoded.records)
            .map_err(|reason| corrupt(base_offset, reason))?;
    }
    Ok(decoded)
}

/// Counts the records at or after `from` in the whole batches of `records` without decoding them,
/// and returns the offset after the last whole batch. For throughput measurement: compacted
/// batches with gaps count by offset range.
pub fn count_records(records: &[u8], from: Offset) -> Result<(u64, Option<Offset>), String> {
    let mut position = 0;
    let mut count = 0u64;
    let mut next_offset = None;
    while records.len() - position >= LOG_OVERHEAD_BYTES {
        let rest = &records[position..];
        let size = RecordBatchHeader::peek_size(rest).map_err(|error| error.to_string())?;
        if rest.len() < size {
            break;
        }
        let header = RecordBatchHeader::parse(rest).map_err(|error| error.to_string())?;
        position += size;
        next_offset = Some(header.next_offset());
        if header.is_control() || header.last_offset() < from {
            continue;
        }
        if header.base_offset >= from {
            count += header.record_count.max(0) as u64;
        } else {
            count += (header.last_offset().0 - from.0 + 1).max(0) as u64;
        }
    }
    Ok((count, next_offset))
}

fn decompress(codec: CompressionCodec, payload: &Bytes, limit: usize) -> Result<Bytes, String> {
    let read_bounded = |reader: &mut dyn Read| -> Result<Bytes, String> {
        let mut out = Vec::new();
        reader
            .take(limit as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|error| format!("decompression failed: {error}"))?;
        if out.len() > limit {
            return Err(format!("decompresses to more than {limit} bytes"));
        }
        Ok(Bytes::from(out))
    };
    match codec {
        CompressionCodec::None => Ok(payload.clone()),
        CompressionCodec::Gzip => read_bounded(&mut flate2::read::GzDecoder::new(&payload[..])),
        CompressionCodec::Lz4 => {
            let mut decoder = lz4::Decoder::new(&payload[..])
                .map_err(|error| format!("lz4 decompression failed: {error}"))?;
            read_bounded(&mut decoder)
        }
        CompressionCodec::Zstd => {
            let mut decoder = zstd::stream::read::Decoder::new(&payload[..])
                .map_err(|error| format!("zstd decompression failed: {error}"))?;
            read_bounded(&mut decoder)
        }
        CompressionCodec::Snappy => decompress_snappy(payload, limit),
    }
}

/// Kafka's Java clients write snappy in xerial's framing (a 16-byte magic header, then blocks each
/// prefixed by a big-endian length); others write raw snappy. Both are accepted.
fn decompress_snappy(payload: &Bytes, limit: usize) -> Result<Bytes, String> {
    const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
    const XERIAL_HEADER_BYTES: usize = 16;
    let mut blocks: Vec<&[u8]> = Vec::new();
    if payload.starts_with(XERIAL_MAGIC) && payload.len() >= XERIAL_HEADER_BYTES {
        let mut rest = &payload[XERIAL_HEADER_BYTES..];
        while !rest.is_empty() {
            if rest.len() < 4 {
                return Err("truncated snappy block length".to_owned());
            }
            let length = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            rest = &rest[4..];
            if rest.len() < length {
                return Err("truncated snappy block".to_owned());
            }
            blocks.push(&rest[..length]);
            rest = &rest[length..];
        }
    } else {
        blocks.push(&payload[..]);
    }
    let mut out = Vec::new();
    let mut decoder = snap::raw::Decoder::new();
    for block in blocks {
        let length = snap::raw::decompress_len(block)
            .map_err(|error| format!("snappy decompression failed: {error}"))?;
        if out.len() + length > limit {
            return Err(format!("decompresses to more than {limit} bytes"));
        }
        let start = out.len();
        out.resize(start + length, 0);
        decoder
            .decompress(block, &mut out[start..])
            .map_err(|error| format!("snappy decompression failed: {error}"))?;
    }
    Ok(Bytes::from(out))
}

fn read_unsigned_varint(buf: &mut Bytes, bytes_max: usize) -> Result<u64, String> {
    let mut value = 0u64;
    for index in 0..bytes_max {
        if !buf.has_remaining() {
            return Err("truncated varint".to_owned());
        }
        let byte = buf.get_u8();
        value |= u64::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("varint too long".to_owned())
}

fn read_varint(buf: &mut Bytes) -> Result<i32, String> {
    let raw = read_unsigned_varint(buf, 5)?;
    let raw = u32::try_from(raw).map_err(|_| "varint overflows 32 bits".to_owned())?;
    Ok(((raw >> 1) as i32) ^ -((raw & 1) as i32))
}

fn read_varlong(buf: &mut Bytes) -> Result<i64, String> {
    let raw = read_unsigned_varint(buf, 10)?;
    Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
}

/// A varint length, then that many bytes; `-1` is null.
fn read_nullable_bytes(buf: &mut Bytes, what: &str) -> Result<Option<Bytes>, String> {
    let length = read_varint(buf)?;
    match length {
        -1 => Ok(None),
        length if length < -1 => Err(format!("negative {what} length {length}")),
        length if length as usize > buf.remaining() => Err(format!(
            "{what} of {length} bytes with {} bytes left",
            buf.remaining()
        )),
        length => Ok(Some(buf.split_to(length as usize))),
    }
}

fn decode_records(
    header: &RecordBatchHeader,
    partition: PartitionIndex,
    mut payload: Bytes,
    from: Offset,
    out: &mut Vec<ConsumerRecord>,
) -> Result<(), String> {
    let count = usize::try_from(header.record_count).map_err(|_| "negative record count")?;
    if count > payload.len() / RECORD_BYTES_MIN {
        return Err(format!(
            "{count} records cannot fit in {} bytes",
            payload.len()
        ));
    }
    let log_append_time = header.is_log_append_time();
    out.reserve(count);
    for _ in 0..count {
        let length = read_varint(&mut payload)?;
        if length < 0 || length as usize > payload.len() {
            return Err(format!(
                "record of {length} bytes with {} bytes left",
                payload.len()
            ));
        }
        let mut record = payload.split_to(length as usize);
        if !record.has_remaining() {
            return Err("empty record".to_owned());
        }
        let _attributes = record.get_i8();
        let timestamp_delta = read_varlong(&mut record)?;
        let offset_delta = read_varint(&mut record)?;
        let key = read_nullable_bytes(&mut record, "key")?;
        let value = read_nullable_bytes(&mut record, "value")?;
        let header_count = read_varint(&mut record)?;
        if header_count < 0 || header_count as usize > record.remaining() / HEADER_BYTES_MIN {
            return Err(format!("implausible header count {header_count}"));
        }
        let mut headers = Vec::with_capacity(header_count as usize);
        for _ in 0..header_count {
            let key = read_nullable_bytes(&mut record, "header key")?
                .ok_or_else(|| "null header key".to_owned())?;
            let value = read_nullable_bytes(&mut record, "header value")?;
            headers.push((String::from_utf8_lossy(&key).into_owned(), value));
        }
        let offset = header
            .base_offset
            .0
            .checked_add(i64::from(offset_delta))
            .ok_or("offset overflows")?;
        if offset < from.0 {
            continue;
        }
        let timestamp = if log_append_time {
            header.max_timestamp.0
        } else {
            header
                .base_timestamp
                .0
                .checked_add(timestamp_delta)
                .ok_or("timestamp overflows")?
        };
        out.push(ConsumerRecord {
            partition,
            offset: Offset(offset),
            timestamp: TimestampMs(timestamp),
            timestamp_kind: if log_append_time {
                TimestampKind::LogAppend
            } else {
                TimestampKind::Create
            },
            leader_epoch: header.partition_leader_epoch,
            key,
            value,
            headers,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn zstd_bomb(decompressed_bytes: usize) -> Bytes {
        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 19).unwrap();
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..decompressed_bytes / zeros.len() {
            encoder.write_all(&zeros).unwrap();
        }
        let payload = encoder.finish().unwrap();
        let batch = caudal_model::batch::build_batch(
            Offset(0),
            4, // zstd
            0,
            TimestampMs(0),
            TimestampMs(0),
            caudal_model::ProducerId::NONE,
            caudal_model::ProducerEpoch::NONE,
            caudal_model::Sequence::NONE,
            1,
            &payload,
        );
        Bytes::from(batch)
    }

    #[test]
    fn decompression_stops_at_the_limit() {
        let bomb = zstd_bomb(64 << 20);
        assert!(bomb.len() < 64 << 10, "{} bytes", bomb.len());
        let error = decode_batches(PartitionIndex(0), bomb, Offset(0), 1 << 20).unwrap_err();
        assert!(error.reason.contains("more than"), "{error}");
    }
}
