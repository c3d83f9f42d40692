//! The replicated state machine: committed entries folded into a [`MetadataImage`], each new image
//! published on a `watch` channel; snapshots of the image written atomically to `snapshot.json`.
//!
//! A snapshot holds the image as the shortest list of records that rebuilds it (the cluster id,
//! each broker with its fencing state, each topic and its partitions with any reassignment, each dynamic config, the producer-id high-water
//! mark), the count of records the image had applied, and the Raft position it covers.

use std::collections::BTreeSet;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use caudal_metadata::{ConfigResource, MetadataImage, MetadataRecord};
use caudal_model::{NodeId, ProducerId};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership,
};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::log_store::{LogStoreError, read_json, write_atomically};
use super::{AppliedEntry, TypeConfig};

/// The current snapshot inside the metadata directory.
pub const SNAPSHOT_FILE: &str = "snapshot.json";

/// The snapshot format, on disk and on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotBody {
    pub meta: SnapshotMeta<u64, BasicNode>,
    /// `MetadataImage::last_applied` of the image (records applied since the cluster formed).
    pub image_last_applied: u64,
    /// Records that rebuild the image from an empty one.
    pub records: Vec<MetadataRecord>,
}

/// The image as the records that rebuild it. `config_resources` names every resource that may
/// hold dynamic configs (the image cannot list them itself).
pub fn image_records(
    image: &MetadataImage,
    config_resources: &BTreeSet<ConfigResource>,
) -> Vec<MetadataRecord> {
    let mut records = Vec::new();
    if let Some(cluster_id) = &image.cluster_id {
        records.push(MetadataRecord::Cluster {
            cluster_id: cluster_id.clone(),
        });
    }
    for broker in image.brokers.values() {
        records.push(MetadataRecord::RegisterBroker {
            node_id: broker.node_id,
            host: broker.host.clone(),
            port: broker.port,
            rack: broker.rack.clone(),
        });
        // Registration leaves a broker fenced and not shutting down; anything else is recorded.
        if !broker.fenced || broker.in_controlled_shutdown {
            records.push(MetadataRecord::BrokerState {
                node_id: broker.node_id,
                fenced: broker.fenced,
                in_controlled_shutdown: broker.in_controlled_shutdown,
            });
        }
    }
    for topic in image.topics() {
        records.push(MetadataRecord::Topic {
            name: topic.name.clone(),
            topic_id: topic.topic_id,
        });
        for (partition, registration) in &topic.partitions {
            records.push(MetadataRecord::Partition {
                topic_id: topic.topic_id,
                partition: *partition,
                replicas: registration.replicas.clone(),
                isr: registration.isr.clone(),
                leader: registration.leader,
                leader_epoch: registration.leader_epoch,
                partition_epoch: registration.partition_epoch,
            });
            if registration.is_reassigning() {
                records.push(MetadataRecord::PartitionReassignment {
                    topic_id: topic.topic_id,
                    partition: *partition,
                    adding_replicas: registration.adding_replicas.clone(),
                    removing_replicas: registration.removing_replicas.clone(),
                });
            }
        }
    }
    for resource in config_resources {
        for (name, value) in image.configs(resource).into_iter().flatten() {
            records.push(MetadataRecord::Config {
                resource: resource.clone(),
                name: name.clone(),
                value: Some(value.clone()),
            });
        }
    }
    if image.next_producer_id != ProducerId::default() {
        records.push(MetadataRecord::ProducerIds {
            // The image keeps only the high-water mark, not which broker took the last block.
            node_id: NodeId(-1),
            next_producer_id: image.next_producer_id,
        });
    }
    records
}

struct Inner {
    last_applied: Option<LogId<u64>>,
    membership: StoredMembership<u64, BasicNode>,
    image: Arc<MetadataImage>,
    config_resources: BTreeSet<ConfigResource>,
    /// The current snapshot: its metadata and serialized body.
    snapshot: Option<(SnapshotMeta<u64, BasicNode>, Vec<u8>)>,
    snapshots_built: u64,
}

/// The state machine; cloning shares it (the clone is the snapshot builder).
#[derive(Clone)]
pub struct StateMachineStore {
    dir: PathBuf,
    inner: Arc<Mutex<Inner>>,
    image: Arc<watch::Sender<Arc<MetadataImage>>>,
}

/// Rebuilds an image from [`image_records`]: folded into an empty image, then stamped with the
/// count of records the original had applied. Snapshots and observers both rebuild this way, so
/// they hold the same image as the controller that sent the records.
pub fn rebuild_image(records: &[MetadataRecord], image_last_applied: u64) -> MetadataImage {
    let mut image = records
        .iter()
        .fold(MetadataImage::default(), |image, record| {
            image.apply(record)
        });
    image.last_applied = image_last_applied;
    image
}

/// The resources that `records` set dynamic configs on.
pub fn config_resources(records: &[MetadataRecord]) -> BTreeSet<ConfigResource> {
    records
        .iter()
        .filter_map(|record| match record {
            MetadataRecord::Config { resource, .. } => Some(resource.clone()),
            _ => None,
        })
        .collect()
}

fn restore(body: &SnapshotBody) -> (MetadataImage, BTreeSet<ConfigResource>) {
    (
        rebuild_image(&body.records, body.image_last_applied),
        config_resources(&body.records),
    )
}

impl StateMachineStore {
    /// Opens the state machine in `dir`, starting from the snapshot there if there is one.
    pub fn open(dir: &Path) -> Result<Self, LogStoreError> {
        std::fs::create_dir_all(dir).map_err(|source| LogStoreError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(SNAPSHOT_FILE);
        let mut inner = Inner {
            last_applied: None,
            membership: StoredMembership::default(),
            image: Arc::new(MetadataImage::default()),
            config_resources: BTreeSet::new(),
            snapshot: None,
            snapshots_built: 0,
        };
        if let Some(body) = read_json::<SnapshotBody>(&path)? {
            let (image, resources) = restore(&body);
            let bytes = serde_json::to_vec(&body).map_err(|error| LogStoreError::Corrupt {
                path: path.clone(),
                reason: error.to_string(),
            })?;
            inner.last_applied = body.meta.last_log_id;
            inner.membership = body.meta.last_membership.clone();
            inner.image = Arc::new(image);
            inner.config_resources = resources;
            inner.snapshot = Some((body.meta, bytes));
        }
        let (sender, _) = watch::channel(inner.image.clone());
        Ok(Self {
            dir: dir.to_path_buf(),
            inner: Arc::new(Mutex::new(inner)),
            image: Arc::new(sender),
        })
    }

    /// The latest applied image.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.image.borrow().clone()
    }

    /// A receiver that sees every image published after this call.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.image.subscribe()
    }

    /// The latest applied image as the records that rebuild it, with its `last_applied`
    /// (consistent: both read under the state machine's lock).
    pub fn image_as_records(&self) -> (u64, Vec<MetadataRecord>) {
        let inner = self.inner.lock();
        (
            inner.image.last_applied,
            image_records(&inner.image, &inner.config_resources),
        )
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<u64>> {
        let mut inner = self.inner.lock();
        inner.snapshots_built += 1;
        let snapshot_id = match inner.last_applied {
            Some(log_id) => format!(
                "{}-{}-{}",
                log_id.leader_id.term, log_id.index, inner.snapshots_built
            ),
            None => format!("none-{}", inner.snapshots_built),
        };
        let meta = SnapshotMeta {
            last_log_id: inner.last_applied,
            last_membership: inner.membership.clone(),
            snapshot_id,
        };
        let body = SnapshotBody {
            meta: meta.clone(),
            image_last_applied: inner.image.last_applied,
            records: image_records(&inner.image, &inner.config_resources),
        };
        let bytes = serde_json::to_vec(&body)
            .map_err(std::io::Error::other)
            .and_then(|bytes| write_atomically(&self.dir, SNAPSHOT_FILE, &bytes).map(|()| bytes))
            .map_err(|error| StorageIOError::write_snapshot(Some(meta.signature()), &error))?;
        inner.snapshot = Some((meta.clone(), bytes.clone()));
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, BasicNode>), StorageError<u64>> {
        let inner = self.inner.lock();
        Ok((inner.last_applied, inner.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<AppliedEntry>, StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut inner = self.inner.lock();
        let mut image = (*inner.image).clone();
        let mut changed = false;
        let mut responses = Vec::new();
        for entry in entries {
            inner.last_applied = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(batch) => {
                    for record in &batch.records {
                        if let MetadataRecord::Config { resource, .. } = record {
                            inner.config_resources.insert(resource.clone());
                        }
                        image = image.apply(record);
                    }
                    changed |= !batch.records.is_empty();
                }
                EntryPayload::Membership(membership) => {
                    inner.membership = StoredMembership::new(Some(entry.log_id), membership);
                }
            }
            responses.push(AppliedEntry {
                index: entry.log_id.index,
                image_last_applied: image.last_applied,
            });
        }
        if changed {
            let image = Arc::new(image);
            inner.image = image.clone();
            self.image.send_replace(image);
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<u64>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<u64>> {
        let mut body: SnapshotBody = serde_json::from_slice(snapshot.get_ref())
            .map_err(|error| StorageIOError::read_snapshot(Some(meta.signature()), &error))?;
        body.meta = meta.clone();
        let (image, resources) = restore(&body);
        let bytes = serde_json::to_vec(&body)
            .map_err(std::io::Error::other)
            .and_then(|bytes| write_atomically(&self.dir, SNAPSHOT_FILE, &bytes).map(|()| bytes))
            .map_err(|error| StorageIOError::write_snapshot(Some(meta.signature()), &error))?;
        let mut inner = self.inner.lock();
        inner.last_applied = meta.last_log_id;
        inner.membership = meta.last_membership.clone();
        inner.config_resources = resources;
        inner.snapshot = Some((meta.clone(), bytes));
        let image = Arc::new(image);
        inner.image = image.clone();
        self.image.send_replace(image);
        tracing::info!(snapshot = %meta.snapshot_id, "installed a metadata snapshot from the leader");
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<u64>> {
        let inner = self.inner.lock();
        Ok(inner.snapshot.as_ref().map(|(meta, bytes)| Snapshot {
            meta: meta.clone(),
            snapshot: Box::new(Cursor::new(bytes.clone())),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use caudal_model::{LeaderEpoch, PartitionIndex};
    use uuid::Uuid;

    #[test]
    fn snapshot_records_keep_fencing_and_reassignments() {
        let topic_id = Uuid::from_u128(5);
        let mut records = Vec::new();
        for node in 1..=3 {
            records.push(MetadataRecord::RegisterBroker {
                node_id: NodeId(node),
                host: "h".into(),
                port: 9000 + node as u16,
                rack: None,
            });
        }
        records.extend([
            // 1 stays fenced (never heard from), 2 is unfenced, 3 is shutting down.
            MetadataRecord::BrokerState {
                node_id: NodeId(2),
                fenced: false,
                in_controlled_shutdown: false,
            },
            MetadataRecord::BrokerState {
                node_id: NodeId(3),
                fenced: false,
                in_controlled_shutdown: true,
            },
            MetadataRecord::Topic {
                name: "t".into(),
                topic_id,
            },
            MetadataRecord::Partition {
                topic_id,
                partition: PartitionIndex(0),
                replicas: vec![NodeId(2), NodeId(3)],
                isr: vec![NodeId(2)],
                leader: NodeId(2),
                leader_epoch: LeaderEpoch(1),
                partition_epoch: 2,
            },
            MetadataRecord::PartitionReassignment {
                topic_id,
                partition: PartitionIndex(0),
                adding_replicas: vec![NodeId(3)],
                removing_replicas: vec![],
            },
        ]);
        let image = records
            .iter()
            .fold(MetadataImage::default(), |image, record| {
                image.apply(record)
            });
        let snapshot = image_records(&image, &BTreeSet::new());
        let restored = snapshot
            .iter()
            .fold(MetadataImage::default(), |image, record| {
                image.apply(record)
            });
        assert_eq!(restored.brokers, image.brokers);
        assert_eq!(
            restored.topic("t").unwrap().partitions,
            image.topic("t").unwrap().partitions
        );
        assert_eq!(image_records(&restored, &BTreeSet::new()), snapshot);
        assert!(restored.brokers[&NodeId(1)].fenced);
        assert!(restored.brokers[&NodeId(3)].in_controlled_shutdown);
    }
}
