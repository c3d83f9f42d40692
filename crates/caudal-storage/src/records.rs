//! Looking inside record batches, in the two places the log must: refusing keyless records on
//! compacted topics, and the log cleaner (which reads keys and rewrites batches).
//!
//! Everything here parses bytes from producers or from disk: every length and count is checked
//! against the bytes that remain before it is used, decompression stops at
//! [`DECOMPRESSED_BATCH_BYTES_MAX`], arithmetic on stored values is checked, and nothing panics.
//!
//! Record layout inside a v2 batch (after decompression), Kafka's `DefaultRecord`:
//!
//! ```text
//! length: varint | attributes: i8 | timestamp delta: varlong | offset delta: varint
//! | key length: varint (-1 = null) | key | value length: varint (-1 = null) | value
//! | header count: varint | headers: (key length varint, key, value length varint, value)*
//! ```
//!
//! Rewriting keeps the batch's base offset, last offset delta (so the producer's last sequence
//! survives, as Kafka's `overrideLastOffset`), producer id, epoch, base sequence, partition leader
//! epoch, attributes and compression codec. Surviving records are copied byte for byte unless the
//! batch gains a delete horizon (KIP-534: attribute bit 6 set, base timestamp = the horizon), in
//! which case their timestamp deltas are re-encoded against the new base timestamp.

use std::borrow::Cow;
use std::io::{Read, Write};
use std::ops::Range;

use caudal_model::batch::{CompressionCodec, HEADER_BYTES, build_batch, stamp_offset_and_epoch};
use caudal_model::{RecordBatchHeader, TimestampMs};

/// The most bytes a batch's records may decompress to before the storage layer gives up on
/// looking inside it (64 MiB: 64 times Kafka's default `max.message.bytes`).
pub(crate) const DECOMPRESSED_BATCH_BYTES_MAX: usize = 64 << 20;
/// Attribute bit of a batch whose base timestamp is its delete horizon (KIP-534).
pub(crate) const ATTRIBUTE_DELETE_HORIZON: i16 = 0x40;
const ATTRIBUTE_COMPRESSION_MASK: i16 = 0x07;
const ATTRIBUTE_TIMESTAMP_TYPE: i16 = 0x08;
/// The smallest encoded record: seven one-byte fields.
const RECORD_BYTES_MIN: usize = 7;
/// Java's `SnappyOutputStream` (xerial framing) — what Kafka's own clients write.
const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_BYTES: usize = 16;
const XERIAL_BLOCK_BYTES: usize = 32 * 1024;
/// Kafka's default compression levels.
const GZIP_LEVEL: u32 = 6;
const ZSTD_LEVEL: i32 = 3;

/// One record inside a decompressed records buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RecordRef {
    /// The whole record, its length prefix included.
    pub whole: Range<usize>,
    pub attributes: i8,
    pub timestamp_delta: i64,
    pub offset_delta: i32,
    /// The key bytes; `None` for a null key.
    pub key: Option<Range<usize>>,
    /// The value bytes; `None` for a tombstone (null value).
    pub value: Option<Range<usize>>,
    /// From the key length to the end of the record (key, value and headers).
    pub tail: Range<usize>,
}

/// A batch's records, decompressed and parsed.
pub(crate) struct DecodedRecords<'a> {
    pub codec: CompressionCodec,
    pub data: Cow<'a, [u8]>,
    pub records: Vec<RecordRef>,
}

impl DecodedRecords<'_> {
    pub fn key(&self, record: &RecordRef) -> Option<&[u8]> {
        record.key.clone().map(|range| &self.data[range])
    }

    #[cfg(test)]
    pub fn value(&self, record: &RecordRef) -> Option<&[u8]> {
        record.value.clone().map(|range| &self.data[range])
    }
}

/// Decompresses and parses the records of `batch` (a whole batch whose header is `header`).
pub(crate) fn decode_batch<'a>(
    batch: &'a [u8],
    header: &RecordBatchHeader,
) -> Result<DecodedRecords<'a>, String> {
    let codec = header.compression().map_err(|error| error.to_string())?;
    let payload = batch
        .get(HEADER_BYTES..header.size_bytes())
        .ok_or_else(|| "the batch is shorter than its header says".to_owned())?;
    let data = decompress(codec, payload, DECOMPRESSED_BATCH_BYTES_MAX)?;
    let records = parse_records(&data, header.record_count, header.last_offset_delta)?;
    Ok(DecodedRecords {
        codec,
        data,
        records,
    })
}

/// True when some record of the (non-control) batch has a null key. Used to refuse keyless
/// records on compacted topics.
pub(crate) fn has_keyless_record(batch: &[u8], header: &RecordBatchHeader) -> Result<bool, String> {
    if header.is_control() {
        return Ok(false);
    }
    let decoded = decode_batch(batch, header)?;
    Ok(decoded.records.iter().any(|record| record.key.is_none()))
}

/// Decompresses `payload` with `codec`, refusing output larger than `limit` bytes.
pub(crate) fn decompress(
    codec: CompressionCodec,
    payload: &[u8],
    limit: usize,
) -> Result<Cow<'_, [u8]>, String> {
    let read_bounded = |reader: &mut dyn Read| -> Result<Cow<'_, [u8]>, String> {
        let mut out = Vec::new();
        reader
            .take(limit as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|error| format!("decompression failed: {error}"))?;
        if out.len() > limit {
            return Err(format!("records decompress to more than {limit} bytes"));
        }
        Ok(Cow::Owned(out))
    };
    match codec {
        CompressionCodec::None => {
            if payload.len() > limit {
                return Err(format!("records are larger than {limit} bytes"));
            }
            Ok(Cow::Borrowed(payload))
        }
        CompressionCodec::Gzip => read_bounded(&mut flate2::read::GzDecoder::new(payload)),
        CompressionCodec::Lz4 => {
            let mut decoder = lz4::Decoder::new(payload)
                .map_err(|error| format!("lz4 decompression failed: {error}"))?;
            read_bounded(&mut decoder)
        }
        CompressionCodec::Zstd => {
            let mut decoder = zstd::stream::read::Decoder::new(payload)
                .map_err(|error| format!("zstd decompression failed: {error}"))?;
            read_bounded(&mut decoder)
        }
        CompressionCodec::Snappy => decompress_snappy(payload, limit).map(Cow::Owned),
    }
}

/// Snappy in xerial's framing (Java clients: a 16-byte header, then blocks each prefixed by a
/// big-endian length) or raw (other clients).
fn decompress_snappy(payload: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    let mut blocks: Vec<&[u8]> = Vec::new();
    if payload.starts_with(XERIAL_MAGIC) && payload.len() >= XERIAL_HEADER_BYTES {
        let mut rest = &payload[XERIAL_HEADER_BYTES..];
        while !rest.is_empty() {
            let Some((length, after)) = rest.split_first_chunk::<4>() else {
                return Err("truncated snappy block length".to_owned());
            };
            let length = u32::from_be_bytes(*length) as usize;
            if after.len() < length {
                return Err("truncated snappy block".to_owned());
            }
            blocks.push(&after[..length]);
            rest = &after[length..];
        }
    } else {
        blocks.push(payload);
    }
    let mut out = Vec::new();
    let mut decoder = snap::raw::Decoder::new();
    for block in blocks {
        let length = snap::raw::decompress_len(block)
            .map_err(|error| format!("snappy decompression failed: {error}"))?;
        if out.len() + length > limit {
            return Err(format!("records decompress to more than {limit} bytes"));
        }
        let start = out.len();
        out.resize(start + length, 0);
        decoder
            .decompress(block, &mut out[start..])
            .map_err(|error| format!("snappy decompression failed: {error}"))?;
    }
    Ok(out)
}

/// Compresses `data` with `codec` the way Kafka's Java producer does (gzip level 6, xerial-framed
/// snappy, LZ4 frames with independent 64 KiB blocks and no checksums, zstd level 3), so every
/// client can read a rewritten batch.
pub(crate) fn compress(codec: CompressionCodec, data: &[u8]) -> Result<Vec<u8>, String> {
    let failed = |error: std::io::Error| format!("compression failed: {error}");
    match codec {
        CompressionCodec::None => Ok(data.to_vec()),
        CompressionCodec::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(
                Vec::with_capacity(data.len() / 2),
                flate2::Compression::new(GZIP_LEVEL),
            );
            encoder.write_all(data).map_err(failed)?;
            encoder.finish().map_err(failed)
        }
        CompressionCodec::Snappy => {
            let mut out = Vec::with_capacity(XERIAL_HEADER_BYTES + data.len() / 2);
            out.extend_from_slice(XERIAL_MAGIC);
            out.extend_from_slice(&1i32.to_be_bytes());
            out.extend_from_slice(&1i32.to_be_bytes());
            let mut encoder = snap::raw::Encoder::new();
            for block in data.chunks(XERIAL_BLOCK_BYTES) {
                let compressed = encoder
                    .compress_vec(block)
                    .map_err(|error| format!("snappy compression failed: {error}"))?;
                out.extend_from_slice(&(compressed.len() as u32).to_be_bytes());
                out.extend_from_slice(&compressed);
            }
            Ok(out)
        }
        CompressionCodec::Lz4 => {
            let mut encoder = lz4::EncoderBuilder::new()
                .block_size(lz4::BlockSize::Max64KB)
                .block_mode(lz4::BlockMode::Independent)
                .block_checksum(lz4::liblz4::BlockChecksum::NoBlockChecksum)
                .checksum(lz4::ContentChecksum::NoChecksum)
                .build(Vec::with_capacity(data.len() / 2))
                .map_err(failed)?;
            encoder.write_all(data).map_err(failed)?;
            let (out, result) = encoder.finish();
            result.map_err(failed)?;
            Ok(out)
        }
        CompressionCodec::Zstd => zstd::stream::encode_all(data, ZSTD_LEVEL).map_err(failed),
    }
}

fn read_unsigned_varint(data: &[u8], at: &mut usize, bytes_max: usize) -> Result<u64, String> {
    let mut value = 0u64;
    for index in 0..bytes_max {
        let Some(&byte) = data.get(*at) else {
            return Err("truncated varint".to_owned());
        };
        *at += 1;
        value |= u64::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("varint too long".to_owned())
}

fn read_varint(data: &[u8], at: &mut usize) -> Result<i32, String> {
    let raw = read_unsigned_varint(data, at, 5)?;
    let raw = u32::try_from(raw).map_err(|_| "varint overflows 32 bits".to_owned())?;
    Ok(((raw >> 1) as i32) ^ -((raw & 1) as i32))
}

fn read_varlong(data: &[u8], at: &mut usize) -> Result<i64, String> {
    let raw = read_unsigned_varint(data, at, 10)?;
    Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
}

fn write_unsigned_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn write_varint(out: &mut Vec<u8>, value: i32) {
    write_unsigned_varint(out, ((value << 1) ^ (value >> 31)) as u32 as u64);
}

fn write_varlong(out: &mut Vec<u8>, value: i64) {
    write_unsigned_varint(out, ((value << 1) ^ (value >> 63)) as u64);
}

/// Skips a varint-length-prefixed field; returns its range, `None` for length -1 (null).
fn skip_bytes_field(
    data: &[u8],
    at: &mut usize,
    what: &str,
) -> Result<Option<Range<usize>>, String> {
    let length = read_varint(data, at)?;
    match length {
        -1 => Ok(None),
        length if length < -1 => Err(format!("negative {what} length {length}")),
        length if length as usize > data.len() - *at => Err(format!(
            "{what} of {length} bytes with {} bytes left",
            data.len() - *at
        )),
        length => {
            let range = *at..*at + length as usize;
            *at = range.end;
            Ok(Some(range))
        }
    }
}

/// Parses `count` records that must fill `data` exactly, with offset deltas strictly increasing
/// within `[0, last_offset_delta]`.
pub(crate) fn parse_records(
    data: &[u8],
    count: i32,
    last_offset_delta: i32,
) -> Result<Vec<RecordRef>, String> {
    let count = usize::try_from(count).map_err(|_| format!("negative record count {count}"))?;
    if count > data.len() / RECORD_BYTES_MIN {
        return Err(format!(
            "{count} records cannot fit in {} bytes",
            data.len()
        ));
    }
    let mut records = Vec::with_capacity(count);
    let mut at = 0usize;
    let mut previous_delta: Option<i32> = None;
    for _ in 0..count {
        let start = at;
        let length = read_varint(data, &mut at)?;
        if length < 0 || length as usize > data.len() - at {
            return Err(format!(
                "record of {length} bytes with {} bytes left",
                data.len() - at
            ));
        }
        let end = at + length as usize;
        let body = &data[..end];
        let Some(&attributes) = body.get(at) else {
            return Err("empty record".to_owned());
        };
        at += 1;
        let timestamp_delta = read_varlong(body, &mut at)?;
        let offset_delta = read_varint(body, &mut at)?;
        if offset_delta < 0
            || offset_delta > last_offset_delta
            || previous_delta.is_some_and(|previous| offset_delta <= previous)
        {
            return Err(format!(
                "record offset delta {offset_delta} is out of order or outside the batch"
            ));
        }
        previous_delta = Some(offset_delta);
        let tail_start = at;
        let key = skip_bytes_field(body, &mut at, "key")?;
        let value = skip_bytes_field(body, &mut at, "value")?;
        let header_count = read_varint(body, &mut at)?;
        if header_count < 0 || header_count as usize > (end - at) / 2 {
            return Err(format!("implausible header count {header_count}"));
        }
        for _ in 0..header_count {
            if skip_bytes_field(body, &mut at, "header key")?.is_none() {
                return Err("null header key".to_owned());
            }
            skip_bytes_field(body, &mut at, "header value")?;
        }
        if at != end {
            return Err(format!(
                "record declares {length} bytes but holds {}",
                at - start
            ));
        }
        records.push(RecordRef {
            whole: start..end,
            attributes: attributes as i8,
            timestamp_delta,
            offset_delta,
            key,
            value,
            tail: tail_start..end,
        });
    }
    if at != data.len() {
        return Err(format!(
            "{} bytes follow the last of {count} records",
            data.len() - at
        ));
    }
    Ok(records)
}

/// The batch `header` describes, rewritten with only `retained` of its records (from `decoded`).
/// With `new_delete_horizon`, the batch is stamped with that delete horizon: attribute bit 6 set,
/// base timestamp = the horizon, every record's timestamp delta re-encoded against it. The max
/// timestamp becomes the largest retained record timestamp (`CreateTime`) or stays the append
/// time (`LogAppendTime`). `retained` must not be empty.
pub(crate) fn rebuild_batch(
    header: &RecordBatchHeader,
    decoded: &DecodedRecords<'_>,
    retained: &[&RecordRef],
    new_delete_horizon: Option<TimestampMs>,
) -> Result<Vec<u8>, String> {
    debug_assert!(!retained.is_empty());
    let record_timestamp = |record: &RecordRef| {
        header
            .base_timestamp
            .0
            .checked_add(record.timestamp_delta)
            .ok_or_else(|| "record timestamp overflows".to_owned())
    };
    let mut body = Vec::with_capacity(retained.iter().map(|record| record.whole.len()).sum());
    let mut max_timestamp = i64::MIN;
    let mut scratch = Vec::new();
    for record in retained {
        let timestamp = record_timestamp(record)?;
        max_timestamp = max_timestamp.max(timestamp);
        match new_delete_horizon {
            None => body.extend_from_slice(&decoded.data[record.whole.clone()]),
            Some(horizon) => {
                let delta = timestamp
                    .checked_sub(horizon.0)
                    .ok_or_else(|| "timestamp delta overflows".to_owned())?;
                scratch.clear();
                scratch.push(record.attributes as u8);
                write_varlong(&mut scratch, delta);
                write_varint(&mut scratch, record.offset_delta);
                scratch.extend_from_slice(&decoded.data[record.tail.clone()]);
                let length = i32::try_from(scratch.len())
                    .map_err(|_| "record too large to re-encode".to_owned())?;
                write_varint(&mut body, length);
                body.extend_from_slice(&scratch);
            }
        }
    }
    let (attributes, base_timestamp) = match new_delete_horizon {
        Some(horizon) => (header.attributes | ATTRIBUTE_DELETE_HORIZON, horizon),
        None => (header.attributes, header.base_timestamp),
    };
    let max_timestamp = if header.is_log_append_time() {
        header.max_timestamp
    } else {
        TimestampMs(max_timestamp)
    };
    let records = match decoded.codec {
        CompressionCodec::None => body,
        codec => compress(codec, &body)?,
    };
    let count = i32::try_from(retained.len()).map_err(|_| "too many records".to_owned())?;
    let mut batch = build_batch(
        header.base_offset,
        attributes,
        header.last_offset_delta,
        base_timestamp,
        max_timestamp,
        header.producer_id,
        header.producer_epoch,
        header.base_sequence,
        count,
        &records,
    );
    stamp_offset_and_epoch(
        &mut batch,
        header.base_offset,
        header.partition_leader_epoch,
    );
    Ok(batch)
}

/// Kafka's `writeEmptyHeader`: the batch's header with no records, kept so the producer's last
/// sequence and epoch (or the cleaning round's last offset) survive. Uncompressed, no delete
/// horizon, base and max timestamp both the batch's max timestamp.
pub(crate) fn empty_batch(header: &RecordBatchHeader) -> Vec<u8> {
    let attributes = header.attributes & !(ATTRIBUTE_COMPRESSION_MASK | ATTRIBUTE_DELETE_HORIZON);
    debug_assert_eq!(
        attributes & ATTRIBUTE_TIMESTAMP_TYPE,
        header.attributes & ATTRIBUTE_TIMESTAMP_TYPE
    );
    let mut batch = build_batch(
        header.base_offset,
        attributes,
        header.last_offset_delta,
        header.max_timestamp,
        header.max_timestamp,
        header.producer_id,
        header.producer_epoch,
        header.base_sequence,
        0,
        &[],
    );
    stamp_offset_and_epoch(
        &mut batch,
        header.base_offset,
        header.partition_leader_epoch,
    );
    batch
}

/// The batch's delete horizon, if the log cleaner stamped one (KIP-534).
pub(crate) fn delete_horizon(header: &RecordBatchHeader) -> Option<TimestampMs> {
    (header.attributes & ATTRIBUTE_DELETE_HORIZON != 0).then_some(header.base_timestamp)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use caudal_model::{LeaderEpoch, Offset, ProducerEpoch, ProducerId, Sequence};

    /// Encodes one record (offset delta, timestamp delta, key, value, one header).
    pub fn encode_record(
        offset_delta: i32,
        timestamp_delta: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
    ) -> Vec<u8> {
        let mut body = vec![0u8];
        write_varlong(&mut body, timestamp_delta);
        write_varint(&mut body, offset_delta);
        for field in [key, value] {
            match field {
                None => write_varint(&mut body, -1),
                Some(bytes) => {
                    write_varint(&mut body, bytes.len() as i32);
                    body.extend_from_slice(bytes);
                }
            }
        }
        write_varint(&mut body, 1);
        write_varint(&mut body, 1);
        body.push(b'h');
        write_varint(&mut body, 2);
        body.extend_from_slice(b"hv");
        let mut out = Vec::new();
        write_varint(&mut out, body.len() as i32);
        out.extend_from_slice(&body);
        out
    }

    /// A record's key and value, `None` for null.
    type KeyValue<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

    fn batch_of(codec: CompressionCodec, records: &[KeyValue<'_>]) -> Vec<u8> {
        let mut body = Vec::new();
        for (index, (key, value)) in records.iter().enumerate() {
            body.extend_from_slice(&encode_record(
                index as i32,
                index as i64 * 10,
                *key,
                *value,
            ));
        }
        let codec_bits = match codec {
            CompressionCodec::None => 0,
            CompressionCodec::Gzip => 1,
            CompressionCodec::Snappy => 2,
            CompressionCodec::Lz4 => 3,
            CompressionCodec::Zstd => 4,
        };
        let payload = compress(codec, &body).unwrap();
        let mut batch = build_batch(
            Offset(100),
            codec_bits,
            records.len() as i32 - 1,
            TimestampMs(1_000),
            TimestampMs(1_000 + (records.len() as i64 - 1) * 10),
            ProducerId(9),
            ProducerEpoch(2),
            Sequence(40),
            records.len() as i32,
            &payload,
        );
        stamp_offset_and_epoch(&mut batch, Offset(100), LeaderEpoch(3));
        batch
    }

    const CODECS: [CompressionCodec; 5] = [
        CompressionCodec::None,
        CompressionCodec::Gzip,
        CompressionCodec::Snappy,
        CompressionCodec::Lz4,
        CompressionCodec::Zstd,
    ];

    #[test]
    fn every_codec_round_trips_and_finds_keyless_records() {
        for codec in CODECS {
            let batch = batch_of(
                codec,
                &[
                    (Some(b"a"), Some(b"1")),
                    (Some(b"b"), None),
                    (None, Some(b"3")),
                ],
            );
            let header = RecordBatchHeader::parse_and_validate(&batch).unwrap();
            let decoded = decode_batch(&batch, &header).unwrap();
            assert_eq!(decoded.codec, codec);
            assert_eq!(decoded.records.len(), 3);
            assert_eq!(decoded.key(&decoded.records[0]), Some(&b"a"[..]));
            assert_eq!(decoded.value(&decoded.records[0]), Some(&b"1"[..]));
            assert_eq!(decoded.value(&decoded.records[1]), None);
            assert_eq!(decoded.key(&decoded.records[2]), None);
            assert!(has_keyless_record(&batch, &header).unwrap(), "{codec:?}");
            let keyed = batch_of(codec, &[(Some(b"a"), Some(b"1"))]);
            let keyed_header = RecordBatchHeader::parse_and_validate(&keyed).unwrap();
            assert!(!has_keyless_record(&keyed, &keyed_header).unwrap());
        }
    }

    #[test]
    fn rebuilt_batches_keep_offsets_producer_fields_and_codec() {
        for codec in CODECS {
            let batch = batch_of(
                codec,
                &[
                    (Some(b"a"), Some(b"1")),
                    (Some(b"b"), None),
                    (Some(b"c"), Some(b"3")),
                ],
            );
            let header = RecordBatchHeader::parse_and_validate(&batch).unwrap();
            let decoded = decode_batch(&batch, &header).unwrap();
            let retained = [&decoded.records[0], &decoded.records[1]];
            let rebuilt = rebuild_batch(&header, &decoded, &retained, None).unwrap();
            let new_header = RecordBatchHeader::parse_and_validate(&rebuilt).unwrap();
            assert_eq!(new_header.base_offset, Offset(100));
            assert_eq!(new_header.last_offset(), Offset(102));
            assert_eq!(new_header.record_count, 2);
            assert_eq!(new_header.partition_leader_epoch, LeaderEpoch(3));
            assert_eq!(new_header.producer_id, ProducerId(9));
            assert_eq!(new_header.base_sequence, Sequence(40));
            assert_eq!(new_header.last_sequence(), header.last_sequence());
            assert_eq!(new_header.compression().unwrap(), codec);
            assert_eq!(new_header.max_timestamp, TimestampMs(1_010));
            let again = decode_batch(&rebuilt, &new_header).unwrap();
            assert_eq!(again.records.len(), 2);
            assert_eq!(again.records[1].offset_delta, 1);
            assert_eq!(delete_horizon(&new_header), None);

            // Stamping a delete horizon keeps every record's timestamp.
            let stamped =
                rebuild_batch(&header, &decoded, &retained, Some(TimestampMs(50_000))).unwrap();
            let stamped_header = RecordBatchHeader::parse_and_validate(&stamped).unwrap();
            assert_eq!(delete_horizon(&stamped_header), Some(TimestampMs(50_000)));
            let again = decode_batch(&stamped, &stamped_header).unwrap();
            let timestamps: Vec<i64> = again
                .records
                .iter()
                .map(|record| stamped_header.base_timestamp.0 + record.timestamp_delta)
                .collect();
            assert_eq!(timestamps, vec![1_000, 1_010]);
            assert_eq!(again.key(&again.records[0]), Some(&b"a"[..]));
        }
    }

    #[test]
    fn empty_batches_keep_the_last_offset_and_sequence() {
        let batch = batch_of(
            CompressionCodec::Zstd,
            &[(Some(b"a"), Some(b"1")), (Some(b"b"), None)],
        );
        let header = RecordBatchHeader::parse_and_validate(&batch).unwrap();
        let empty = empty_batch(&header);
        let empty_header = RecordBatchHeader::parse_and_validate(&empty).unwrap();
        assert_eq!(empty_header.record_count, 0);
        assert_eq!(empty_header.last_offset(), header.last_offset());
        assert_eq!(empty_header.last_sequence(), header.last_sequence());
        assert_eq!(empty_header.compression().unwrap(), CompressionCodec::None);
        assert_eq!(empty_header.partition_leader_epoch, LeaderEpoch(3));
        assert!(
            decode_batch(&empty, &empty_header)
                .unwrap()
                .records
                .is_empty()
        );
    }

    #[test]
    fn malformed_records_are_errors_not_panics() {
        let good = encode_record(0, 0, Some(b"k"), Some(b"v"));
        assert!(parse_records(&good, 1, 0).is_ok());
        assert!(parse_records(&good, 2, 1).is_err());
        assert!(parse_records(&good, -1, 0).is_err());
        assert!(parse_records(&good, i32::MAX, 0).is_err());
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(parse_records(&trailing, 1, 0).is_err());
        // Offset delta beyond the batch's last offset delta.
        let beyond = encode_record(2, 0, Some(b"k"), Some(b"v"));
        assert!(parse_records(&beyond, 1, 2).is_ok());
        assert!(parse_records(&beyond, 1, 1).is_err());
        // Every truncation and every single-byte mutation parses or fails, never panics.
        for cut in 0..good.len() {
            let _ = parse_records(&good[..cut], 1, 0);
        }
        for index in 0..good.len() {
            for byte in [0x00, 0x7f, 0x80, 0xff] {
                let mut mutated = good.clone();
                mutated[index] = byte;
                let _ = parse_records(&mutated, 1, 0);
            }
        }
    }

    #[test]
    fn decompression_stops_at_the_limit() {
        let zeros = vec![0u8; 4 << 20];
        for codec in [
            CompressionCodec::Gzip,
            CompressionCodec::Snappy,
            CompressionCodec::Lz4,
            CompressionCodec::Zstd,
        ] {
            let compressed = compress(codec, &zeros).unwrap();
            assert!(
                decompress(codec, &compressed, 1 << 20).is_err(),
                "{codec:?}"
            );
            assert_eq!(
                decompress(codec, &compressed, 8 << 20).unwrap().len(),
                zeros.len()
            );
        }
        assert!(decompress(CompressionCodec::Gzip, b"not gzip", 100).is_err());
        assert!(
            decompress(
                CompressionCodec::Snappy,
                b"\x82SNAPPY\x00\0\0\0\x01\0\0\0\x01\xff",
                100
            )
            .is_err()
        );
    }
}
