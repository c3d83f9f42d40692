//! File-system helpers and the small text files the storage layer keeps: offset checkpoints
//! (recovery points, log start offsets), `partition.metadata`, and the atomic-replace protocol
//! every checkpoint uses (write `<name>.tmp` → fsync → rename → fsync the directory).
//!
//! Parsers never panic: a file that does not parse is reported as [`StorageError::CorruptFile`]
//! and the caller decides (usually: warn and treat it as absent).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use caudal_model::{Offset, PartitionIndex, TopicPartition};
use uuid::Uuid;

use crate::error::{StorageError, io_error};

/// Suffix of a file being written before it atomically replaces its target.
pub(crate) const TMP_SUFFIX: &str = ".tmp";
/// `partition.metadata`: format version and topic id.
pub(crate) const PARTITION_METADATA_FILE: &str = "partition.metadata";
/// Version written into the offset checkpoint files (Kafka's is 0 too).
const OFFSET_CHECKPOINT_VERSION: u32 = 0;
/// Version written into `partition.metadata`.
const PARTITION_METADATA_VERSION: u32 = 0;
/// Kafka's limit on topic name length.
const TOPIC_NAME_BYTES_MAX: usize = 249;

/// fsyncs a directory so that entries created, renamed or removed in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|file| file.sync_all())
        .map_err(io_error(dir))
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(TMP_SUFFIX);
    PathBuf::from(name)
}

/// Replaces `path` with `contents`: write `path.tmp`, fsync it, rename over `path`, fsync the
/// directory. With `durable == false` the two fsyncs are skipped (the rename is still atomic, so
/// a reader sees the old or the new file, never a mix).
pub(crate) fn write_atomic(
    path: &Path,
    contents: &[u8],
    durable: bool,
) -> Result<(), StorageError> {
    let tmp = tmp_path(path);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(io_error(&tmp))?;
    file.write_all(contents).map_err(io_error(&tmp))?;
    if durable {
        file.sync_all().map_err(io_error(&tmp))?;
    }
    drop(file);
    fs::rename(&tmp, path).map_err(io_error(path))?;
    if durable && let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Reads a whole file, or `None` if it does not exist.
pub(crate) fn read_if_exists(path: &Path) -> Result<Option<Vec<u8>>, StorageError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(io_error(path)(error)),
    }
}

/// Removes a file; a file that is already gone is fine.
pub(crate) fn remove_file_if_exists(path: &Path) -> Result<(), StorageError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(io_error(path)(error)),
    }
}

fn corrupt(path: &Path, reason: impl Into<String>) -> StorageError {
    StorageError::CorruptFile {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Kafka's rule for topic names: 1..=249 of `[a-zA-Z0-9._-]`, and not `.` or `..`. Names that
/// pass can be used verbatim as directory names and as whitespace-separated checkpoint fields.
pub(crate) fn validate_topic_partition(tp: &TopicPartition) -> Result<(), StorageError> {
    let invalid = |reason| StorageError::InvalidTopicPartition {
        topic_partition: tp.clone(),
        reason,
    };
    let topic = tp.topic.as_str();
    if topic.is_empty() || topic.len() > TOPIC_NAME_BYTES_MAX {
        return Err(invalid("topic name must be 1 to 249 characters"));
    }
    if topic == "." || topic == ".." {
        return Err(invalid("topic name cannot be '.' or '..'"));
    }
    if !topic
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'))
    {
        return Err(invalid("topic name may only contain [a-zA-Z0-9._-]"));
    }
    if tp.partition.value() < 0 {
        return Err(invalid("partition index is negative"));
    }
    Ok(())
}

/// The directory name of a partition log: `<topic>-<partition>`.
pub(crate) fn partition_dir_name(tp: &TopicPartition) -> String {
    format!("{}-{}", tp.topic, tp.partition)
}

/// Parses a partition directory name; `None` for anything else (including `*-delete` dirs).
pub(crate) fn parse_partition_dir_name(name: &str) -> Option<TopicPartition> {
    let (topic, partition) = name.rsplit_once('-')?;
    if partition.is_empty() || !partition.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let partition: i32 = partition.parse().ok()?;
    let tp = TopicPartition::new(topic, PartitionIndex(partition));
    validate_topic_partition(&tp).ok()?;
    Some(tp)
}

/// Encodes an offset checkpoint (`recovery-point-offset-checkpoint`,
/// `log-start-offset-checkpoint`), Kafka's text format:
///
/// ```text
/// 0                 <- version
/// 2                 <- entry count
/// orders 0 1234     <- topic partition offset
/// orders 1 17
/// ```
pub(crate) fn encode_offset_checkpoint(entries: &BTreeMap<TopicPartition, Offset>) -> String {
    let mut text = format!("{OFFSET_CHECKPOINT_VERSION}\n{}\n", entries.len());
    for (tp, offset) in entries {
        text.push_str(&format!("{} {} {}\n", tp.topic, tp.partition, offset));
    }
    text
}

/// Parses an offset checkpoint; see [`encode_offset_checkpoint`].
pub(crate) fn decode_offset_checkpoint(
    path: &Path,
    bytes: &[u8],
) -> Result<BTreeMap<TopicPartition, Offset>, StorageError> {
    let text = std::str::from_utf8(bytes).map_err(|_| corrupt(path, "not UTF-8"))?;
    let mut lines = text.lines();
    let version = lines.next().ok_or_else(|| corrupt(path, "empty file"))?;
    if version.trim() != OFFSET_CHECKPOINT_VERSION.to_string() {
        return Err(corrupt(path, format!("unknown version {version:?}")));
    }
    let count: usize = lines
        .next()
        .and_then(|line| line.trim().parse().ok())
        .ok_or_else(|| corrupt(path, "missing or invalid entry count"))?;
    let mut entries = BTreeMap::new();
    for line_number in 0..count {
        let line = lines.next().ok_or_else(|| {
            corrupt(
                path,
                format!("expected {count} entries, found {line_number}"),
            )
        })?;
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [topic, partition, offset] = fields[..] else {
            return Err(corrupt(path, format!("malformed entry {line:?}")));
        };
        let partition: i32 = partition
            .parse()
            .map_err(|_| corrupt(path, format!("malformed partition in {line:?}")))?;
        let offset: i64 = offset
            .parse()
            .map_err(|_| corrupt(path, format!("malformed offset in {line:?}")))?;
        let tp = TopicPartition::new(topic, PartitionIndex(partition));
        if validate_topic_partition(&tp).is_err()
            || !(0..=crate::segment::BASE_OFFSET_MAX).contains(&offset)
        {
            return Err(corrupt(path, format!("invalid entry {line:?}")));
        }
        entries.insert(tp, Offset(offset));
    }
    if lines.any(|line| !line.trim().is_empty()) {
        return Err(corrupt(path, "more entries than the count says"));
    }
    Ok(entries)
}

/// Reads an offset checkpoint. A missing file is an empty map; a file that does not parse is
/// `Err(CorruptFile)`; an I/O error is `Err(Io)`.
pub(crate) fn read_offset_checkpoint(
    path: &Path,
) -> Result<BTreeMap<TopicPartition, Offset>, StorageError> {
    match read_if_exists(path)? {
        None => Ok(BTreeMap::new()),
        Some(bytes) => decode_offset_checkpoint(path, &bytes),
    }
}

/// Encodes `partition.metadata` (Kafka's format, with the topic id as a hyphenated UUID).
pub(crate) fn encode_partition_metadata(topic_id: Uuid) -> String {
    format!("version: {PARTITION_METADATA_VERSION}\ntopic_id: {topic_id}\n")
}

/// Parses `partition.metadata`.
pub(crate) fn decode_partition_metadata(path: &Path, bytes: &[u8]) -> Result<Uuid, StorageError> {
    let text = std::str::from_utf8(bytes).map_err(|_| corrupt(path, "not UTF-8"))?;
    let mut version = None;
    let mut topic_id = None;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            if line.trim().is_empty() {
                continue;
            }
            return Err(corrupt(path, format!("malformed line {line:?}")));
        };
        match key.trim() {
            "version" => version = Some(value.trim().to_owned()),
            "topic_id" => {
                topic_id = Some(
                    Uuid::parse_str(value.trim())
                        .map_err(|_| corrupt(path, format!("invalid topic id {value:?}")))?,
                );
            }
            _ => return Err(corrupt(path, format!("unknown key {key:?}"))),
        }
    }
    if version.as_deref() != Some(&PARTITION_METADATA_VERSION.to_string()) {
        return Err(corrupt(path, format!("unknown version {version:?}")));
    }
    topic_id.ok_or_else(|| corrupt(path, "missing topic_id"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_checkpoint_round_trips() {
        let mut entries = BTreeMap::new();
        entries.insert(TopicPartition::new("orders", 0), Offset(1234));
        entries.insert(TopicPartition::new("a-b.c_d", 17), Offset(0));
        let text = encode_offset_checkpoint(&entries);
        let decoded = decode_offset_checkpoint(Path::new("x"), text.as_bytes()).unwrap();
        assert_eq!(decoded, entries);
    }

    #[test]
    fn offset_checkpoint_rejects_garbage_without_panicking() {
        let cases: [&[u8]; 9] = [
            b"",
            b"\xff\xfe",
            b"1\n0\n",
            b"0\n",
            b"0\nx\n",
            b"0\n2\norders 0 1\n",
            b"0\n1\norders 0\n",
            b"0\n1\norders 0 -5\n",
            b"0\n1\norders 0 1\nextra 0 2\n",
        ];
        for case in cases {
            assert!(
                matches!(
                    decode_offset_checkpoint(Path::new("x"), case),
                    Err(StorageError::CorruptFile { .. })
                ),
                "{case:?}"
            );
        }
    }

    #[test]
    fn partition_metadata_round_trips_and_rejects_garbage() {
        let id = Uuid::from_u128(0x1234_5678_9abc_def0_1234_5678_9abc_def0);
        let text = encode_partition_metadata(id);
        assert_eq!(
            decode_partition_metadata(Path::new("x"), text.as_bytes()).unwrap(),
            id
        );
        for case in [
            &b"version: 0\n"[..],
            b"topic_id: nope\nversion: 0\n",
            b"garbage",
            b"\x00",
        ] {
            assert!(decode_partition_metadata(Path::new("x"), case).is_err());
        }
    }

    #[test]
    fn partition_dir_names_round_trip() {
        let tp = TopicPartition::new("my-topic", 12);
        assert_eq!(partition_dir_name(&tp), "my-topic-12");
        assert_eq!(parse_partition_dir_name("my-topic-12"), Some(tp));
        assert_eq!(parse_partition_dir_name("my-topic"), None);
        assert_eq!(parse_partition_dir_name("my-topic-"), None);
        assert_eq!(parse_partition_dir_name("t-0.abc-delete"), None);
        assert_eq!(parse_partition_dir_name("-3"), None);
        assert_eq!(parse_partition_dir_name("bad/name-3"), None);
    }

    #[test]
    fn topic_names_follow_kafkas_rules() {
        assert!(validate_topic_partition(&TopicPartition::new("ok.name_1-x", 0)).is_ok());
        for bad in ["", ".", "..", "a b", "a/b", "ü"] {
            assert!(
                validate_topic_partition(&TopicPartition::new(bad, 0)).is_err(),
                "{bad}"
            );
        }
        assert!(validate_topic_partition(&TopicPartition::new("x".repeat(250), 0)).is_err());
        assert!(validate_topic_partition(&TopicPartition::new("t", -1)).is_err());
    }
}
