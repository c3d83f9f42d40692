//! Metadata records and their framing: `[length u32][crc32c u32][JSON body]`, big-endian. JSON keeps
//! the metadata log readable with ordinary tools; it is small and off the data path.

use caudal_model::{LeaderEpoch, NodeId, PartitionIndex, ProducerId};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What a config record applies to, as Kafka's `ConfigResource`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ConfigResource {
    Topic(String),
    Broker(NodeId),
    /// Cluster-wide broker defaults (Kafka's broker resource with an empty name).
    BrokerDefault,
}

/// One change to the cluster's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum MetadataRecord {
    /// The cluster id, written once when the cluster is formed.
    Cluster {
        cluster_id: String,
    },
    RegisterBroker {
        node_id: NodeId,
        host: String,
        port: u16,
        rack: Option<String>,
    },
    Topic {
        name: String,
        topic_id: Uuid,
    },
    Partition {
        topic_id: Uuid,
        partition: PartitionIndex,
        replicas: Vec<NodeId>,
        isr: Vec<NodeId>,
        leader: NodeId,
        leader_epoch: LeaderEpoch,
        partition_epoch: i32,
    },
    RemoveTopic {
        topic_id: Uuid,
    },
    /// Sets (`Some`) or removes (`None`) one dynamic config.
    Config {
        resource: ConfigResource,
        name: String,
        value: Option<String>,
    },
    /// A block of producer ids handed out: every id below `next_producer_id` is taken.
    ProducerIds {
        node_id: NodeId,
        next_producer_id: ProducerId,
    },
    /// A registered broker's fencing state (Kafka's `FenceBrokerRecord`/`UnfenceBrokerRecord`/
    /// `BrokerRegistrationChangeRecord`): a fenced broker may neither lead nor join an ISR; a
    /// broker in controlled shutdown is giving up its leaderships before it stops.
    BrokerState {
        node_id: NodeId,
        fenced: bool,
        in_controlled_shutdown: bool,
    },
    /// Sets (either list non-empty) or clears (both empty) the reassignment in progress of an
    /// existing partition (KIP-455): `adding_replicas` are joining its replica set,
    /// `removing_replicas` leave it once every adding replica is in the ISR. While reassigning,
    /// the partition's `replicas` are the union of the old and the target replicas.
    PartitionReassignment {
        topic_id: Uuid,
        partition: PartitionIndex,
        adding_replicas: Vec<NodeId>,
        removing_replicas: Vec<NodeId>,
    },
}

const FRAME_HEADER_BYTES: usize = 8;
/// No single record comes near this; a larger length read from disk is corruption.
pub const RECORD_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Why bytes are not a valid framed record.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordDecodeError {
    #[error("incomplete record: {available} bytes available, {needed} needed")]
    Incomplete { available: usize, needed: usize },
    #[error("record length {length} exceeds {RECORD_BYTES_MAX}")]
    TooLarge { length: usize },
    #[error("record CRC mismatch")]
    CrcMismatch,
    #[error("record body is not valid: {reason}")]
    Invalid { reason: String },
}

/// Frames a record for the metadata log.
pub fn encode_record(record: &MetadataRecord) -> Vec<u8> {
    let body = serde_json::to_vec(record).expect("metadata records always serialize");
    let mut buf = Vec::with_capacity(FRAME_HEADER_BYTES + body.len());
    buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
    buf.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
    buf.extend_from_slice(&body);
    buf
}

/// Decodes the framed record at the start of `buf`, returning it and its framed size.
pub fn decode_record(buf: &[u8]) -> Result<(MetadataRecord, usize), RecordDecodeError> {
    if buf.len() < FRAME_HEADER_BYTES {
        return Err(RecordDecodeError::Incomplete {
            available: buf.len(),
            needed: FRAME_HEADER_BYTES,
        });
    }
    let length = u32::from_be_bytes(buf[0..4].try_into().expect("4 bytes")) as usize;
    if length > RECORD_BYTES_MAX {
        return Err(RecordDecodeError::TooLarge { length });
    }
    let needed = FRAME_HEADER_BYTES + length;
    if buf.len() < needed {
        return Err(RecordDecodeError::Incomplete {
            available: buf.len(),
            needed,
        });
    }
    let crc = u32::from_be_bytes(buf[4..8].try_into().expect("4 bytes"));
    let body = &buf[FRAME_HEADER_BYTES..needed];
    if crc32c::crc32c(body) != crc {
        return Err(RecordDecodeError::CrcMismatch);
    }
    let record = serde_json::from_slice(body).map_err(|error| RecordDecodeError::Invalid {
        reason: error.to_string(),
    })?;
    Ok((record, needed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_records_round_trip_and_old_records_still_decode() {
        for record in [
            MetadataRecord::BrokerState {
                node_id: NodeId(2),
                fenced: false,
                in_controlled_shutdown: true,
            },
            MetadataRecord::PartitionReassignment {
                topic_id: Uuid::from_u128(3),
                partition: PartitionIndex(1),
                adding_replicas: vec![NodeId(4)],
                removing_replicas: vec![NodeId(1)],
            },
        ] {
            let (decoded, _) = decode_record(&encode_record(&record)).unwrap();
            assert_eq!(decoded, record);
        }
        // Bodies exactly as earlier versions wrote them.
        let old = br#"{"type":"RegisterBroker","node_id":1,"host":"h","port":9092,"rack":null}"#;
        let record: MetadataRecord = serde_json::from_slice(old).unwrap();
        assert!(matches!(record, MetadataRecord::RegisterBroker { .. }));
        let old = br#"{"type":"Partition","topic_id":"00000000-0000-0000-0000-000000000007","partition":0,"replicas":[1],"isr":[1],"leader":1,"leader_epoch":0,"partition_epoch":0}"#;
        let record: MetadataRecord = serde_json::from_slice(old).unwrap();
        assert!(matches!(record, MetadataRecord::Partition { .. }));
    }

    #[test]
    fn round_trips_and_detects_damage() {
        let record = MetadataRecord::Topic {
            name: "orders".into(),
            topic_id: Uuid::from_u128(7),
        };
        let mut buf = encode_record(&record);
        let (decoded, size) = decode_record(&buf).unwrap();
        assert_eq!(decoded, record);
        assert_eq!(size, buf.len());
        assert!(matches!(
            decode_record(&buf[..buf.len() - 1]),
            Err(RecordDecodeError::Incomplete { .. })
        ));
        let last = buf.len() - 2;
        buf[last] ^= 0x40;
        assert_eq!(decode_record(&buf), Err(RecordDecodeError::CrcMismatch));
        assert!(matches!(
            decode_record(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]),
            Err(RecordDecodeError::TooLarge { .. })
        ));
    }
}
