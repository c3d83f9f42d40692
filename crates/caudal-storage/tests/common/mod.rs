//! Helpers shared by the integration tests: temporary directories, batch builders, shortcuts.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use caudal_model::batch::build_batch;
use caudal_model::{
    LeaderEpoch, Offset, ProducerEpoch, ProducerId, RecordBatchHeader, Sequence, TimestampMs,
    TopicPartition,
};
use caudal_storage::{LogConfig, LogManager, PartitionLog};
use uuid::Uuid;

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "caudal-storage-{label}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub const TOPIC_ID: Uuid = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);

pub fn tp() -> TopicPartition {
    TopicPartition::new("orders", 0)
}

pub fn now(ms: i64) -> TimestampMs {
    TimestampMs(ms)
}

pub fn epoch(value: i32) -> LeaderEpoch {
    LeaderEpoch(value)
}

/// Record bytes of a given length; the log never decodes records, so any bytes do.
pub fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| seed.wrapping_add(i as u8)).collect()
}

/// A plain (non-idempotent) batch of `records` records with max timestamp `max_ts`.
pub fn batch(records: i32, max_ts: i64, payload_len: usize) -> Vec<u8> {
    build_batch(
        Offset(0),
        0,
        records - 1,
        TimestampMs(max_ts - 1),
        TimestampMs(max_ts),
        ProducerId::NONE,
        ProducerEpoch::NONE,
        Sequence::NONE,
        records,
        &payload(payload_len, records as u8),
    )
}

/// An idempotent producer's batch.
pub fn producer_batch(
    pid: i64,
    producer_epoch: i16,
    first_seq: i32,
    records: i32,
    max_ts: i64,
) -> Vec<u8> {
    sequenced_batch(0, pid, producer_epoch, first_seq, records, max_ts)
}

/// A transactional producer's batch.
pub fn transactional_batch(
    pid: i64,
    producer_epoch: i16,
    first_seq: i32,
    records: i32,
    max_ts: i64,
) -> Vec<u8> {
    sequenced_batch(0x10, pid, producer_epoch, first_seq, records, max_ts)
}

fn sequenced_batch(
    attributes: i16,
    pid: i64,
    producer_epoch: i16,
    first_seq: i32,
    records: i32,
    max_ts: i64,
) -> Vec<u8> {
    build_batch(
        Offset(0),
        attributes,
        records - 1,
        TimestampMs(max_ts),
        TimestampMs(max_ts),
        ProducerId(pid),
        ProducerEpoch(producer_epoch),
        Sequence(first_seq),
        records,
        &payload(20, first_seq as u8),
    )
}

/// A control batch (transaction marker) with one record.
pub fn control_batch(pid: i64, producer_epoch: i16, max_ts: i64) -> Vec<u8> {
    build_batch(
        Offset(0),
        0x30,
        0,
        TimestampMs(max_ts),
        TimestampMs(max_ts),
        ProducerId(pid),
        ProducerEpoch(producer_epoch),
        Sequence::NONE,
        1,
        &payload(12, 0),
    )
}

pub fn open(dir: &Path) -> LogManager {
    LogManager::open(dir, now(0)).unwrap()
}

pub fn create(manager: &LogManager, config: LogConfig) -> Arc<PartitionLog> {
    manager.create_log(&tp(), TOPIC_ID, config, now(0)).unwrap()
}

/// Parses the concatenated batches of a read.
pub fn headers(bytes: &[u8]) -> Vec<RecordBatchHeader> {
    caudal_model::batch::BatchIter::new(bytes)
        .map(|item| item.expect("reads return whole valid batches").1)
        .collect()
}

/// Reads the whole log from its start.
pub fn read_all(log: &PartitionLog) -> Vec<u8> {
    let mut out = Vec::new();
    let mut next = log.log_start_offset();
    loop {
        let read = log.read(next, 1 << 20, Offset(i64::MAX), true).unwrap();
        if read.records.is_empty() {
            return out;
        }
        let batches = headers(&read.records);
        next = batches.last().unwrap().next_offset();
        out.extend_from_slice(&read.records);
    }
}

/// The segment files of the test partition, sorted.
pub fn segment_files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("orders-0"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.to_str().unwrap().ends_with(suffix))
        .collect();
    files.sort();
    files
}

/// SplitMix64: small, seedable, good enough for choosing operations and damage.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }
    pub fn range(&mut self, low: i64, high_inclusive: i64) -> i64 {
        low + self.below((high_inclusive - low + 1) as u64) as i64
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A record's key and value (`None` = null), as a test writes it.
pub type KeyValue = (Option<Vec<u8>>, Option<Vec<u8>>);

/// A record read back from the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadRecord {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
}

fn put_unsigned_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_varint(out: &mut Vec<u8>, value: i64) {
    put_unsigned_varint(out, ((value << 1) ^ (value >> 63)) as u64);
}

fn put_nullable(out: &mut Vec<u8>, bytes: &Option<Vec<u8>>) {
    match bytes {
        None => put_varint(out, -1),
        Some(bytes) => {
            put_varint(out, bytes.len() as i64);
            out.extend_from_slice(bytes);
        }
    }
}

/// Kafka's codec ids in the batch attributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    None = 0,
    Gzip = 1,
    Snappy = 2,
    Lz4 = 3,
    Zstd = 4,
}

pub const CODECS: [Codec; 5] = [
    Codec::None,
    Codec::Gzip,
    Codec::Snappy,
    Codec::Lz4,
    Codec::Zstd,
];

fn compress(codec: Codec, data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    match codec {
        Codec::None => data.to_vec(),
        Codec::Gzip => {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(data).unwrap();
            encoder.finish().unwrap()
        }
        // Raw snappy, as non-Java clients write it.
        Codec::Snappy => snap::raw::Encoder::new().compress_vec(data).unwrap(),
        Codec::Lz4 => {
            let mut encoder = lz4::EncoderBuilder::new()
                .block_mode(lz4::BlockMode::Independent)
                .build(Vec::new())
                .unwrap();
            encoder.write_all(data).unwrap();
            let (out, result) = encoder.finish();
            result.unwrap();
            out
        }
        Codec::Zstd => zstd::stream::encode_all(data, 1).unwrap(),
    }
}

fn decompress(codec: i16, data: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    match codec {
        0 => out.extend_from_slice(data),
        1 => {
            flate2::read::GzDecoder::new(data)
                .read_to_end(&mut out)
                .unwrap();
        }
        2 => {
            const XERIAL: &[u8] = b"\x82SNAPPY\x00";
            if data.starts_with(XERIAL) {
                let mut rest = &data[16..];
                while !rest.is_empty() {
                    let length = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
                    out.extend(
                        snap::raw::Decoder::new()
                            .decompress_vec(&rest[4..4 + length])
                            .unwrap(),
                    );
                    rest = &rest[4 + length..];
                }
            } else {
                out = snap::raw::Decoder::new().decompress_vec(data).unwrap();
            }
        }
        3 => {
            lz4::Decoder::new(data)
                .unwrap()
                .read_to_end(&mut out)
                .unwrap();
        }
        4 => out = zstd::stream::decode_all(data).unwrap(),
        other => panic!("unknown codec {other}"),
    }
    out
}

/// A batch of keyed records (offset deltas 0.., timestamps `base_ts + index`), compressed with
/// `codec`, from producer `producer` = (id, epoch, first sequence) if given.
pub fn keyed_batch_with(
    records: &[KeyValue],
    base_ts: i64,
    codec: Codec,
    producer: Option<(i64, i16, i32)>,
) -> Vec<u8> {
    let mut body = Vec::new();
    for (index, (key, value)) in records.iter().enumerate() {
        let mut record = vec![0u8];
        put_varint(&mut record, index as i64);
        put_varint(&mut record, index as i64);
        put_nullable(&mut record, key);
        put_nullable(&mut record, value);
        put_varint(&mut record, 0);
        put_varint(&mut body, record.len() as i64);
        body.extend_from_slice(&record);
    }
    let (pid, producer_epoch, sequence) = producer.unwrap_or((-1, -1, -1));
    build_batch(
        Offset(0),
        codec as i16,
        records.len() as i32 - 1,
        TimestampMs(base_ts),
        TimestampMs(base_ts + records.len() as i64 - 1),
        ProducerId(pid),
        ProducerEpoch(producer_epoch),
        Sequence(sequence),
        records.len() as i32,
        &compress(codec, &body),
    )
}

/// An uncompressed, non-idempotent batch of keyed records.
pub fn keyed_batch(records: &[KeyValue], base_ts: i64) -> Vec<u8> {
    keyed_batch_with(records, base_ts, Codec::None, None)
}

/// `(Some(key), Some(value))` from strings.
pub fn kv(key: &str, value: &str) -> KeyValue {
    (
        Some(key.as_bytes().to_vec()),
        Some(value.as_bytes().to_vec()),
    )
}

/// A tombstone for `key`.
pub fn tombstone(key: &str) -> KeyValue {
    (Some(key.as_bytes().to_vec()), None)
}

fn get_varint(data: &[u8], at: &mut usize) -> i64 {
    let mut raw = 0u64;
    let mut shift = 0;
    loop {
        let byte = data[*at];
        *at += 1;
        raw |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    ((raw >> 1) as i64) ^ -((raw & 1) as i64)
}

fn get_nullable(data: &[u8], at: &mut usize) -> Option<Vec<u8>> {
    let length = get_varint(data, at);
    if length < 0 {
        return None;
    }
    let bytes = data[*at..*at + length as usize].to_vec();
    *at += length as usize;
    Some(bytes)
}

/// Decodes every record of the data batches in `bytes` (control batches skipped), as a consumer
/// would: offset = base offset + delta, timestamp = base timestamp + delta.
pub fn decode_records(bytes: &[u8]) -> Vec<ReadRecord> {
    let mut out = Vec::new();
    for item in caudal_model::batch::BatchIter::new(bytes) {
        let (range, header) = item.expect("whole valid batches");
        if header.is_control() {
            continue;
        }
        let payload = decompress(
            header.attributes & 0x07,
            &bytes[range.start + 61..range.end],
        );
        let mut at = 0;
        for _ in 0..header.record_count {
            let length = get_varint(&payload, &mut at) as usize;
            let end = at + length;
            at += 1; // attributes
            let timestamp_delta = get_varint(&payload, &mut at);
            let offset_delta = get_varint(&payload, &mut at);
            let key = get_nullable(&payload, &mut at);
            let value = get_nullable(&payload, &mut at);
            let timestamp = if header.is_log_append_time() {
                header.max_timestamp.0
            } else {
                header.base_timestamp.0 + timestamp_delta
            };
            out.push(ReadRecord {
                offset: header.base_offset.0 + offset_delta,
                timestamp,
                key,
                value,
            });
            at = end;
        }
        assert_eq!(at, payload.len(), "records fill the batch");
    }
    out
}

/// Every record of the log, in offset order.
pub fn read_records(log: &PartitionLog) -> Vec<ReadRecord> {
    decode_records(&read_all(log))
}
