//! The `__consumer_offsets` record formats, byte-compatible with Apache Kafka.
//!
//! Every record key starts with an `int16` key version that names the record type:
//! - 0 and 1: [`OffsetCommitKey`] (group, topic, partition), value [`OffsetCommitValue`] v0–v4;
//! - 2: [`GroupMetadataKey`] (group), value [`GroupMetadataValue`] v0–v4.
//!
//! Values start with their own `int16` version. Versions 0–3 use Kafka's classic encoding
//! (`int16`-length strings, `int32`-length bytes and arrays); version 4 is the first "flexible"
//! version (unsigned-varint compact lengths and tagged fields, which are skipped). A null value is a
//! tombstone: the key's state is deleted (and compaction eventually drops the key).
//!
//! We write what current Kafka writes: key versions 1 and 2, `OffsetCommitValue` v3 (v1 when an
//! explicit expire timestamp is present) and `GroupMetadataValue` v3, so `kafka-consumer-groups.sh`
//! and other tooling that reads `__consumer_offsets` understands our records.
//!
//! Decoding never panics on any input: every length is checked against the bytes that remain before
//! anything is allocated.

use bytes::{BufMut, Bytes, BytesMut};
use caudal_model::{LeaderEpoch, Offset, PartitionIndex, TimestampMs};

use crate::GenerationId;

/// Key version of an offset commit as written by Kafka 0.8.2–0.9 (same layout as v1).
pub const OFFSET_COMMIT_KEY_VERSION_0: i16 = 0;
/// Key version of an offset commit.
pub const OFFSET_COMMIT_KEY_VERSION: i16 = 1;
/// Key version of a group's metadata.
pub const GROUP_METADATA_KEY_VERSION: i16 = 2;

/// Why bytes read from `__consumer_offsets` are not a record we understand.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The key's version names a record type this coordinator does not know (for example the
    /// KIP-848 consumer-group records). The loader skips such records.
    #[error("unknown __consumer_offsets record key version {version}")]
    UnknownKeyVersion { version: i16 },
    /// The value's version is outside the versions this record type has.
    #[error("unsupported {record} value version {version}")]
    UnsupportedValueVersion { record: &'static str, version: i16 },
    /// The bytes end before the field does.
    #[error("{record} truncated while reading {field}")]
    Truncated {
        record: &'static str,
        field: &'static str,
    },
    /// A length prefix is negative where null is not allowed, or larger than the bytes left.
    #[error("{record} has an invalid length {length} for {field}")]
    InvalidLength {
        record: &'static str,
        field: &'static str,
        length: i64,
    },
    /// A string field is not UTF-8.
    #[error("{record} has a non-UTF-8 string in {field}")]
    InvalidUtf8 {
        record: &'static str,
        field: &'static str,
    },
    /// A field that may not be null is null.
    #[error("{record} has a null {field}")]
    UnexpectedNull {
        record: &'static str,
        field: &'static str,
    },
}

/// The key of a committed offset.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OffsetCommitKey {
    pub group: String,
    pub topic: String,
    pub partition: PartitionIndex,
}

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommitValue {
    pub offset: Offset,
    /// The leader epoch of the last consumed record (v3+); [`LeaderEpoch::UNKNOWN`] when absent.
    pub leader_epoch: LeaderEpoch,
    /// The client's opaque metadata string (never null in the record; null commits store "").
    pub metadata: String,
    pub commit_timestamp: TimestampMs,
    /// An explicit expiry time (OffsetCommit v2–v4 `retention_time_ms`); only value v1 stores it.
    pub expire_timestamp: Option<TimestampMs>,
}

/// The key of a group's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GroupMetadataKey {
    pub group: String,
}

/// A group's membership and assignment as of its last completed rebalance (or its emptying).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMetadataValue {
    pub protocol_type: String,
    pub generation: GenerationId,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    /// When the group entered its current state (v2+).
    pub current_state_timestamp: Option<TimestampMs>,
    pub members: Vec<MemberMetadata>,
}

/// One member in a [`GroupMetadataValue`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberMetadata {
    pub member_id: String,
    /// `group.instance.id` of a static member (v3+).
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// v1+; readers of v0 use the session timeout, as Kafka does.
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    /// The member's metadata for the group's selected protocol, opaque to the coordinator.
    pub subscription: Bytes,
    /// The member's assignment from the leader, opaque to the coordinator.
    pub assignment: Bytes,
}

/// One record of `__consumer_offsets`. `None` values are tombstones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    OffsetCommit {
        key: OffsetCommitKey,
        value: Option<OffsetCommitValue>,
    },
    GroupMetadata {
        key: GroupMetadataKey,
        value: Option<GroupMetadataValue>,
    },
}

impl Record {
    /// The group this record belongs to (its partition of `__consumer_offsets` follows from it).
    pub fn group(&self) -> &str {
        match self {
            Record::OffsetCommit { key, .. } => &key.group,
            Record::GroupMetadata { key, .. } => &key.group,
        }
    }

    /// The record's key bytes.
    pub fn encode_key(&self) -> Bytes {
        let mut buf = BytesMut::new();
        match self {
            Record::OffsetCommit { key, .. } => {
                buf.put_i16(OFFSET_COMMIT_KEY_VERSION);
                put_string(&mut buf, &key.group);
                put_string(&mut buf, &key.topic);
                buf.put_i32(key.partition.value());
            }
            Record::GroupMetadata { key, .. } => {
                buf.put_i16(GROUP_METADATA_KEY_VERSION);
                put_string(&mut buf, &key.group);
            }
        }
        buf.freeze()
    }

    /// The record's value bytes; `None` for a tombstone.
    pub fn encode_value(&self) -> Option<Bytes> {
        match self {
            Record::OffsetCommit { value, .. } => value.as_ref().map(encode_offset_commit_value),
            Record::GroupMetadata { value, .. } => value.as_ref().map(encode_group_metadata_value),
        }
    }

    /// Parses a record from its key and value bytes (`None` value = tombstone).
    pub fn decode(key: &[u8], value: Option<&[u8]>) -> Result<Record, RecordError> {
        let mut reader = Reader::new(key, "record key");
        let version = reader.i16("key version")?;
        match version {
            OFFSET_COMMIT_KEY_VERSION_0 | OFFSET_COMMIT_KEY_VERSION => {
                reader.record = "OffsetCommitKey";
                let key = OffsetCommitKey {
                    group: reader.string("group")?,
                    topic: reader.string("topic")?,
                    partition: PartitionIndex(reader.i32("partition")?),
                };
                let value = value.map(decode_offset_commit_value).transpose()?;
                Ok(Record::OffsetCommit { key, value })
            }
            GROUP_METADATA_KEY_VERSION => {
                reader.record = "GroupMetadataKey";
                let key = GroupMetadataKey {
                    group: reader.string("group")?,
                };
                let value = value.map(decode_group_metadata_value).transpose()?;
                Ok(Record::GroupMetadata { key, value })
            }
            version => Err(RecordError::UnknownKeyVersion { version }),
        }
    }
}

/// Encodes an offset commit value in the version Kafka writes for it: v1 when an expire timestamp
/// is present, v3 otherwise.
pub fn encode_offset_commit_value(value: &OffsetCommitValue) -> Bytes {
    let version = if value.expire_timestamp.is_some() {
        1
    } else {
        3
    };
    encode_offset_commit_value_version(value, version)
}

/// Encodes an offset commit value in `version` (0–4). Fields the version lacks are dropped.
pub fn encode_offset_commit_value_version(value: &OffsetCommitValue, version: i16) -> Bytes {
    debug_assert!((0..=4).contains(&version));
    let flexible = version >= 4;
    let mut buf = BytesMut::new();
    buf.put_i16(version);
    buf.put_i64(value.offset.value());
    if version >= 3 {
        buf.put_i32(value.leader_epoch.value());
    }
    put_string_version(&mut buf, &value.metadata, flexible);
    buf.put_i64(value.commit_timestamp.value());
    if version == 1 {
        buf.put_i64(value.expire_timestamp.unwrap_or(TimestampMs::NONE).value());
    }
    if flexible {
        put_unsigned_varint(&mut buf, 0);
    }
    buf.freeze()
}

fn decode_offset_commit_value(bytes: &[u8]) -> Result<OffsetCommitValue, RecordError> {
    let mut reader = Reader::new(bytes, "OffsetCommitValue");
    let version = reader.i16("version")?;
    if !(0..=4).contains(&version) {
        return Err(RecordError::UnsupportedValueVersion {
            record: "OffsetCommitValue",
            version,
        });
    }
    reader.flexible = version >= 4;
    let offset = Offset(reader.i64("offset")?);
    let leader_epoch = if version >= 3 {
        LeaderEpoch(reader.i32("leaderEpoch")?)
    } else {
        LeaderEpoch::UNKNOWN
    };
    let metadata = reader.string("metadata")?;
    let commit_timestamp = TimestampMs(reader.i64("commitTimestamp")?);
    let expire_timestamp = if version == 1 {
        Some(TimestampMs(reader.i64("expireTimestamp")?)).filter(|t| *t != TimestampMs::NONE)
    } else {
        None
    };
    reader.tagged_fields()?;
    Ok(OffsetCommitValue {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp,
        expire_timestamp,
    })
}

/// Encodes a group metadata value in v3, the version Kafka writes.
pub fn encode_group_metadata_value(value: &GroupMetadataValue) -> Bytes {
    encode_group_metadata_value_version(value, 3)
}

/// Encodes a group metadata value in `version` (0–4). Fields the version lacks are dropped.
pub fn encode_group_metadata_value_version(value: &GroupMetadataValue, version: i16) -> Bytes {
    debug_assert!((0..=4).contains(&version));
    let flexible = version >= 4;
    let mut buf = BytesMut::new();
    buf.put_i16(version);
    put_string_version(&mut buf, &value.protocol_type, flexible);
    buf.put_i32(value.generation.value());
    put_nullable_string_version(&mut buf, value.protocol.as_deref(), flexible);
    put_nullable_string_version(&mut buf, value.leader.as_deref(), flexible);
    if version >= 2 {
        buf.put_i64(
            value
                .current_state_timestamp
                .unwrap_or(TimestampMs::NONE)
                .value(),
        );
    }
    put_array_length(&mut buf, value.members.len(), flexible);
    for member in &value.members {
        put_string_version(&mut buf, &member.member_id, flexible);
        if version >= 3 {
            put_nullable_string_version(&mut buf, member.group_instance_id.as_deref(), flexible);
        }
        put_string_version(&mut buf, &member.client_id, flexible);
        put_string_version(&mut buf, &member.client_host, flexible);
        if version >= 1 {
            buf.put_i32(member.rebalance_timeout_ms);
        }
        buf.put_i32(member.session_timeout_ms);
        put_bytes_version(&mut buf, &member.subscription, flexible);
        put_bytes_version(&mut buf, &member.assignment, flexible);
        if flexible {
            put_unsigned_varint(&mut buf, 0);
        }
    }
    if flexible {
        put_unsigned_varint(&mut buf, 0);
    }
    buf.freeze()
}

fn decode_group_metadata_value(bytes: &[u8]) -> Result<GroupMetadataValue, RecordError> {
    let mut reader = Reader::new(bytes, "GroupMetadataValue");
    let version = reader.i16("version")?;
    if !(0..=4).contains(&version) {
        return Err(RecordError::UnsupportedValueVersion {
            record: "GroupMetadataValue",
            version,
        });
    }
    reader.flexible = version >= 4;
    let protocol_type = reader.string("protocolType")?;
    let generation = GenerationId(reader.i32("generation")?);
    let protocol = reader.nullable_string("protocol")?;
    let leader = reader.nullable_string("leader")?;
    let current_state_timestamp = if version >= 2 {
        Some(TimestampMs(reader.i64("currentStateTimestamp")?)).filter(|t| *t != TimestampMs::NONE)
    } else {
        None
    };
    // Each member takes at least 18 bytes, which bounds the count before allocating.
    let count = reader.array_length("members", 18)?;
    let mut members = Vec::with_capacity(count);
    for _ in 0..count {
        let member_id = reader.string("memberId")?;
        let group_instance_id = if version >= 3 {
            reader.nullable_string("groupInstanceId")?
        } else {
            None
        };
        let client_id = reader.string("clientId")?;
        let client_host = reader.string("clientHost")?;
        let rebalance_timeout = if version >= 1 {
            Some(reader.i32("rebalanceTimeout")?)
        } else {
            None
        };
        let session_timeout_ms = reader.i32("sessionTimeout")?;
        let subscription = reader.bytes("subscription")?;
        let assignment = reader.bytes("assignment")?;
        reader.tagged_fields()?;
        members.push(MemberMetadata {
            member_id,
            group_instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms: rebalance_timeout.unwrap_or(session_timeout_ms),
            session_timeout_ms,
            subscription,
            assignment,
        });
    }
    reader.tagged_fields()?;
    Ok(GroupMetadataValue {
        protocol_type,
        generation,
        protocol,
        leader,
        current_state_timestamp,
        members,
    })
}

// ---------------------------------------------------------------------------------------------
// Primitive encoding.

fn put_string(buf: &mut BytesMut, value: &str) {
    put_string_version(buf, value, false);
}

fn put_string_version(buf: &mut BytesMut, value: &str, flexible: bool) {
    put_nullable_string_version(buf, Some(value), flexible);
}

fn put_nullable_string_version(buf: &mut BytesMut, value: Option<&str>, flexible: bool) {
    match (value, flexible) {
        (None, false) => buf.put_i16(-1),
        (None, true) => put_unsigned_varint(buf, 0),
        (Some(value), false) => {
            // Kafka strings are at most i16::MAX bytes; the coordinator's inputs are bounded
            // below that (group ids, topics and metadata are checked before they get here).
            let length = i16::try_from(value.len()).unwrap_or(i16::MAX);
            buf.put_i16(length);
            buf.put_slice(&value.as_bytes()[..length as usize]);
        }
        (Some(value), true) => {
            put_unsigned_varint(buf, value.len() as u64 + 1);
            buf.put_slice(value.as_bytes());
        }
    }
}

fn put_bytes_version(buf: &mut BytesMut, value: &[u8], flexible: bool) {
    if flexible {
        put_unsigned_varint(buf, value.len() as u64 + 1);
    } else {
        buf.put_i32(i32::try_from(value.len()).unwrap_or(i32::MAX));
    }
    buf.put_slice(value);
}

fn put_array_length(buf: &mut BytesMut, length: usize, flexible: bool) {
    if flexible {
        put_unsigned_varint(buf, length as u64 + 1);
    } else {
        buf.put_i32(i32::try_from(length).unwrap_or(i32::MAX));
    }
}

fn put_unsigned_varint(buf: &mut BytesMut, mut value: u64) {
    while value >= 0x80 {
        buf.put_u8((value as u8) | 0x80);
        value >>= 7;
    }
    buf.put_u8(value as u8);
}

// ---------------------------------------------------------------------------------------------
// Primitive decoding.

struct Reader<'a> {
    bytes: &'a [u8],
    record: &'static str,
    flexible: bool,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8], record: &'static str) -> Self {
        Reader {
            bytes,
            record,
            flexible: false,
        }
    }

    fn take(&mut self, count: usize, field: &'static str) -> Result<&'a [u8], RecordError> {
        if self.bytes.len() < count {
            return Err(RecordError::Truncated {
                record: self.record,
                field,
            });
        }
        let (head, tail) = self.bytes.split_at(count);
        self.bytes = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], RecordError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    fn i16(&mut self, field: &'static str) -> Result<i16, RecordError> {
        Ok(i16::from_be_bytes(self.array(field)?))
    }

    fn i32(&mut self, field: &'static str) -> Result<i32, RecordError> {
        Ok(i32::from_be_bytes(self.array(field)?))
    }

    fn i64(&mut self, field: &'static str) -> Result<i64, RecordError> {
        Ok(i64::from_be_bytes(self.array(field)?))
    }

    fn unsigned_varint(&mut self, field: &'static str) -> Result<u64, RecordError> {
        let mut value = 0u64;
        for shift in (0..35).step_by(7) {
            let byte = self.array::<1>(field)?[0];
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(RecordError::InvalidLength {
            record: self.record,
            field,
            length: -1,
        })
    }

    /// A length prefix: `None` for null. Checked against the bytes that remain.
    fn length(&mut self, field: &'static str, wide: bool) -> Result<Option<usize>, RecordError> {
        let length: i64 = if self.flexible {
            self.unsigned_varint(field)? as i64 - 1
        } else if wide {
            i64::from(self.i32(field)?)
        } else {
            i64::from(self.i16(field)?)
        };
        if length == -1 {
            return Ok(None);
        }
        if length < 0 || length as u64 > self.bytes.len() as u64 {
            return Err(RecordError::InvalidLength {
                record: self.record,
                field,
                length,
            });
        }
        Ok(Some(length as usize))
    }

    fn nullable_string(&mut self, field: &'static str) -> Result<Option<String>, RecordError> {
        let Some(length) = self.length(field, false)? else {
            return Ok(None);
        };
        let raw = self.take(length, field)?;
        let text = std::str::from_utf8(raw).map_err(|_| RecordError::InvalidUtf8 {
            record: self.record,
            field,
        })?;
        Ok(Some(text.to_owned()))
    }

    fn string(&mut self, field: &'static str) -> Result<String, RecordError> {
        self.nullable_string(field)?
            .ok_or(RecordError::UnexpectedNull {
                record: self.record,
                field,
            })
    }

    fn bytes(&mut self, field: &'static str) -> Result<Bytes, RecordError> {
        let Some(length) = self.length(field, true)? else {
            return Err(RecordError::UnexpectedNull {
                record: self.record,
                field,
            });
        };
        Ok(Bytes::copy_from_slice(self.take(length, field)?))
    }

    /// An array length, bounded by the bytes left divided by the smallest element size.
    fn array_length(
        &mut self,
        field: &'static str,
        element_min: usize,
    ) -> Result<usize, RecordError> {
        let Some(length) = self.length(field, true)? else {
            return Err(RecordError::UnexpectedNull {
                record: self.record,
                field,
            });
        };
        if length > self.bytes.len() / element_min.max(1) {
            return Err(RecordError::InvalidLength {
                record: self.record,
                field,
                length: length as i64,
            });
        }
        Ok(length)
    }

    /// Skips the tagged fields of a flexible struct; a no-op for classic versions.
    fn tagged_fields(&mut self) -> Result<(), RecordError> {
        if !self.flexible {
            return Ok(());
        }
        let count = self.unsigned_varint("tagged fields")?;
        for _ in 0..count {
            self.unsigned_varint("tag")?;
            let size = self.unsigned_varint("tag size")?;
            let size = usize::try_from(size).unwrap_or(usize::MAX);
            self.take(size, "tagged field")?;
        }
        Ok(())
    }
}

/// The topics in a `consumer` protocol subscription (`ConsumerProtocolSubscription` v0–v3), or
/// `None` when the bytes are not one. Used to decide which topics a group is subscribed to.
pub fn consumer_subscription_topics(bytes: &[u8]) -> Option<Vec<String>> {
    let mut reader = Reader::new(bytes, "ConsumerProtocolSubscription");
    let version = reader.i16("version").ok()?;
    if version < 0 {
        return None;
    }
    let count = reader.array_length("topics", 2).ok()?;
    let mut topics = Vec::with_capacity(count);
    for _ in 0..count {
        topics.push(reader.string("topic").ok()?);
    }
    Some(topics)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn offset_value(expire: Option<i64>) -> OffsetCommitValue {
        OffsetCommitValue {
            offset: Offset(42),
            leader_epoch: LeaderEpoch(7),
            metadata: "meta".into(),
            commit_timestamp: TimestampMs(1_000),
            expire_timestamp: expire.map(TimestampMs),
        }
    }

    fn group_value() -> GroupMetadataValue {
        GroupMetadataValue {
            protocol_type: "consumer".into(),
            generation: GenerationId(3),
            protocol: Some("range".into()),
            leader: Some("m1".into()),
            current_state_timestamp: Some(TimestampMs(5_000)),
            members: vec![MemberMetadata {
                member_id: "m1".into(),
                group_instance_id: Some("i1".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 30_000,
                session_timeout_ms: 10_000,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"assign"),
            }],
        }
    }

    #[test]
    fn offset_commit_key_bytes_match_kafka_layout() {
        let record = Record::OffsetCommit {
            key: OffsetCommitKey {
                group: "g".into(),
                topic: "t".into(),
                partition: PartitionIndex(2),
            },
            value: None,
        };
        assert_eq!(
            record.encode_key().as_ref(),
            &[0, 1, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 2]
        );
        assert_eq!(record.encode_value(), None);
    }

    #[test]
    fn offset_commit_value_v3_bytes_match_kafka_layout() {
        let bytes = encode_offset_commit_value(&offset_value(None));
        let mut expected = vec![0, 3];
        expected.extend_from_slice(&42i64.to_be_bytes());
        expected.extend_from_slice(&7i32.to_be_bytes());
        expected.extend_from_slice(&[0, 4]);
        expected.extend_from_slice(b"meta");
        expected.extend_from_slice(&1_000i64.to_be_bytes());
        assert_eq!(bytes.as_ref(), expected.as_slice());
    }

    #[test]
    fn group_metadata_value_v3_bytes_match_kafka_layout() {
        let bytes = encode_group_metadata_value(&group_value());
        let mut expected = vec![0, 3];
        expected.extend_from_slice(&[0, 8]);
        expected.extend_from_slice(b"consumer");
        expected.extend_from_slice(&3i32.to_be_bytes());
        expected.extend_from_slice(&[0, 5]);
        expected.extend_from_slice(b"range");
        expected.extend_from_slice(&[0, 2]);
        expected.extend_from_slice(b"m1");
        expected.extend_from_slice(&5_000i64.to_be_bytes());
        expected.extend_from_slice(&1i32.to_be_bytes());
        expected.extend_from_slice(&[0, 2]);
        expected.extend_from_slice(b"m1");
        expected.extend_from_slice(&[0, 2]);
        expected.extend_from_slice(b"i1");
        expected.extend_from_slice(&[0, 1]);
        expected.extend_from_slice(b"c");
        expected.extend_from_slice(&[0, 10]);
        expected.extend_from_slice(b"/127.0.0.1");
        expected.extend_from_slice(&30_000i32.to_be_bytes());
        expected.extend_from_slice(&10_000i32.to_be_bytes());
        expected.extend_from_slice(&3i32.to_be_bytes());
        expected.extend_from_slice(b"sub");
        expected.extend_from_slice(&6i32.to_be_bytes());
        expected.extend_from_slice(b"assign");
        assert_eq!(bytes.as_ref(), expected.as_slice());
        let key = Record::GroupMetadata {
            key: GroupMetadataKey { group: "g".into() },
            value: None,
        }
        .encode_key();
        assert_eq!(key.as_ref(), &[0, 2, 0, 1, b'g']);
    }

    #[test]
    fn offset_commit_value_with_expiry_is_v1() {
        let bytes = encode_offset_commit_value(&offset_value(Some(9_000)));
        assert_eq!(&bytes[..2], &[0, 1]);
        assert_eq!(
            decode_offset_commit_value(&bytes).unwrap(),
            OffsetCommitValue {
                leader_epoch: LeaderEpoch::UNKNOWN,
                ..offset_value(Some(9_000))
            }
        );
    }

    #[test]
    fn every_value_version_round_trips_its_fields() {
        for version in 0..=4 {
            let value = offset_value(if version == 1 { Some(77) } else { None });
            let decoded =
                decode_offset_commit_value(&encode_offset_commit_value_version(&value, version))
                    .unwrap();
            assert_eq!(decoded.offset, value.offset);
            assert_eq!(decoded.metadata, value.metadata);
            assert_eq!(decoded.commit_timestamp, value.commit_timestamp);
            assert_eq!(decoded.expire_timestamp, value.expire_timestamp);
            let epoch = if version >= 3 {
                value.leader_epoch
            } else {
                LeaderEpoch::UNKNOWN
            };
            assert_eq!(decoded.leader_epoch, epoch, "version {version}");

            let group = group_value();
            let decoded =
                decode_group_metadata_value(&encode_group_metadata_value_version(&group, version))
                    .unwrap();
            assert_eq!(decoded.generation, group.generation);
            assert_eq!(decoded.members[0].assignment, group.members[0].assignment);
            let instance = if version >= 3 {
                Some("i1".to_string())
            } else {
                None
            };
            assert_eq!(decoded.members[0].group_instance_id, instance);
            let timestamp = if version >= 2 {
                group.current_state_timestamp
            } else {
                None
            };
            assert_eq!(decoded.current_state_timestamp, timestamp);
            let rebalance = if version >= 1 { 30_000 } else { 10_000 };
            assert_eq!(decoded.members[0].rebalance_timeout_ms, rebalance);
        }
    }

    #[test]
    fn flexible_value_skips_unknown_tagged_fields() {
        let mut bytes = encode_offset_commit_value_version(&offset_value(None), 4).to_vec();
        // Replace the empty tag section with one tag (id 5, 2 bytes).
        bytes.pop();
        bytes.extend_from_slice(&[1, 5, 2, 0xaa, 0xbb]);
        let decoded = decode_offset_commit_value(&bytes).unwrap();
        assert_eq!(decoded.offset, Offset(42));
    }

    #[test]
    fn unknown_key_version_is_reported() {
        assert_eq!(
            Record::decode(&[0, 3, 0, 0], None),
            Err(RecordError::UnknownKeyVersion { version: 3 })
        );
    }

    #[test]
    fn consumer_subscription_topics_are_read() {
        let mut bytes = vec![0, 1, 0, 0, 0, 2, 0, 1, b'a', 0, 2, b'b', b'c'];
        bytes.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(
            consumer_subscription_topics(&bytes),
            Some(vec!["a".to_string(), "bc".to_string()])
        );
        assert_eq!(consumer_subscription_topics(&[0, 1, 0, 0, 0, 9]), None);
    }

    fn arb_string() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9._\\-é]{0,12}"
    }

    fn arb_record() -> impl Strategy<Value = Record> {
        let offset = (
            arb_string(),
            arb_string(),
            any::<i32>(),
            proptest::option::of((
                any::<i64>(),
                any::<i32>(),
                arb_string(),
                any::<i64>(),
                proptest::option::of(0i64..i64::MAX),
            )),
        )
            .prop_map(|(group, topic, partition, value)| Record::OffsetCommit {
                key: OffsetCommitKey {
                    group,
                    topic,
                    partition: PartitionIndex(partition),
                },
                value: value.map(|(offset, epoch, metadata, commit, expire)| {
                    OffsetCommitValue {
                        offset: Offset(offset),
                        // v1 (written with an expiry) has no leader epoch.
                        leader_epoch: if expire.is_some() {
                            LeaderEpoch::UNKNOWN
                        } else {
                            LeaderEpoch(epoch)
                        },
                        metadata,
                        commit_timestamp: TimestampMs(commit),
                        expire_timestamp: expire.map(TimestampMs),
                    }
                }),
            });
        let member = (
            arb_string(),
            proptest::option::of(arb_string()),
            arb_string(),
            arb_string(),
            any::<i32>(),
            any::<i32>(),
            proptest::collection::vec(any::<u8>(), 0..16),
            proptest::collection::vec(any::<u8>(), 0..16),
        )
            .prop_map(
                |(member_id, instance, client_id, client_host, rebalance, session, sub, assign)| {
                    MemberMetadata {
                        member_id,
                        group_instance_id: instance,
                        client_id,
                        client_host,
                        rebalance_timeout_ms: rebalance,
                        session_timeout_ms: session,
                        subscription: Bytes::from(sub),
                        assignment: Bytes::from(assign),
                    }
                },
            );
        let group = (
            arb_string(),
            proptest::option::of((
                arb_string(),
                any::<i32>(),
                proptest::option::of(arb_string()),
                proptest::option::of(arb_string()),
                proptest::option::of(0i64..i64::MAX),
                proptest::collection::vec(member, 0..4),
            )),
        )
            .prop_map(|(group, value)| Record::GroupMetadata {
                key: GroupMetadataKey { group },
                value: value.map(
                    |(protocol_type, generation, protocol, leader, ts, members)| {
                        GroupMetadataValue {
                            protocol_type,
                            generation: GenerationId(generation),
                            protocol,
                            leader,
                            current_state_timestamp: ts.map(TimestampMs),
                            members,
                        }
                    },
                ),
            });
        prop_oneof![offset, group]
    }

    proptest! {
        #[test]
        fn records_round_trip(record in arb_record()) {
            let key = record.encode_key();
            let value = record.encode_value();
            let decoded = Record::decode(&key, value.as_deref()).unwrap();
            prop_assert_eq!(decoded, record);
        }

        #[test]
        fn decode_never_panics(key in proptest::collection::vec(any::<u8>(), 0..64),
                               value in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..256))) {
            let _ = Record::decode(&key, value.as_deref());
            let _ = consumer_subscription_topics(value.as_deref().unwrap_or(&[]));
        }

        #[test]
        fn decode_never_panics_on_mangled_valid_records(record in arb_record(), cut in any::<usize>(),
                                                        flip in any::<usize>(), bit in 0u8..8) {
            let key = record.encode_key();
            let mut value = record.encode_value().map(|v| v.to_vec()).unwrap_or_default();
            if !value.is_empty() {
                let at = flip % value.len();
                value[at] ^= 1 << bit;
                value.truncate(cut % (value.len() + 1));
            }
            let _ = Record::decode(&key, Some(&value));
            let _ = Record::decode(&key[..cut % (key.len() + 1)], None);
        }
    }
}
