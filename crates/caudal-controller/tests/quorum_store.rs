//! The quorum's log store and state machine: openraft's storage test suite, durability across
//! reopen, torn/corrupt tails, and snapshots restored at startup.

use std::path::Path;

use caudal_controller::quorum::log_store::{LogStore, RAFT_LOG_FILE};
use caudal_controller::quorum::state_machine::StateMachineStore;
use caudal_controller::quorum::{MetadataBatch, TypeConfig};
use caudal_metadata::{ConfigResource, MetadataRecord};
use caudal_model::{NodeId, ProducerId};
use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{
    CommittedLeaderId, Entry, EntryPayload, LogId, RaftLogReader, RaftSnapshotBuilder,
    StorageError, Vote,
};
use uuid::Uuid;

struct DiskStores;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for DiskStores {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError<u64>> {
        let dir = tempfile::tempdir().expect("temporary directory");
        let (log, _) = LogStore::open(dir.path()).expect("log store opens");
        let state_machine = StateMachineStore::open(dir.path()).expect("state machine opens");
        Ok((dir, log, state_machine))
    }
}

#[test]
fn openraft_storage_suite() {
    Suite::test_all(DiskStores).unwrap();
}

fn log_id(term: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn entry(term: u64, index: u64, records: Vec<MetadataRecord>) -> Entry<TypeConfig> {
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Normal(MetadataBatch { records }),
    }
}

fn topic(name: &str) -> MetadataRecord {
    MetadataRecord::Topic {
        name: name.into(),
        topic_id: Uuid::new_v4(),
    }
}

/// Appends durably and checks the reader sees the new entries.
async fn append(log: &mut LogStore, entries: Vec<Entry<TypeConfig>>) {
    let mut reader = log.get_log_reader().await;
    let before = reader.try_get_log_entries(..).await.unwrap().len();
    let count = entries.len();
    log.append_entries(entries).unwrap();
    assert_eq!(
        reader.try_get_log_entries(..).await.unwrap().len(),
        before + count
    );
}

async fn entries_in(dir: &Path) -> Vec<u64> {
    let (mut log, _) = LogStore::open(dir).unwrap();
    log.try_get_log_entries(..)
        .await
        .unwrap()
        .iter()
        .map(|entry| entry.log_id.index)
        .collect()
}

#[tokio::test]
async fn entries_vote_and_purge_survive_reopen_and_a_torn_tail_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, report) = LogStore::open(dir.path()).unwrap();
    assert_eq!(report.entries, 0);
    assert!(log.is_pristine());
    let entries = (1..=5).map(|index| entry(1, index, vec![topic(&format!("t{index}"))]));
    append(&mut log, entries.collect()).await;
    log.save_vote(&Vote::new_committed(1, 1)).await.unwrap();
    drop(log);

    assert_eq!(entries_in(dir.path()).await, [1, 2, 3, 4, 5]);
    let (mut log, _) = LogStore::open(dir.path()).unwrap();
    assert!(!log.is_pristine());
    assert_eq!(
        log.read_vote().await.unwrap(),
        Some(Vote::new_committed(1, 1))
    );
    log.truncate(log_id(1, 4)).await.unwrap();
    log.purge(log_id(1, 1)).await.unwrap();
    append(&mut log, vec![entry(2, 4, vec![topic("x")])]).await;
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 1)));
    assert_eq!(state.last_log_id, Some(log_id(2, 4)));
    drop(log);
    assert_eq!(entries_in(dir.path()).await, [2, 3, 4]);

    // A torn last frame is truncated on open; appends continue after it.
    let path = dir.path().join(RAFT_LOG_FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    let whole = bytes.len();
    bytes.truncate(whole - 5);
    std::fs::write(&path, &bytes).unwrap();
    let (mut log, report) = LogStore::open(dir.path()).unwrap();
    assert_eq!(report.entries, 2);
    assert!(report.truncated_bytes > 0);
    append(&mut log, vec![entry(2, 4, vec![topic("y")])]).await;
    drop(log);
    assert_eq!(entries_in(dir.path()).await, [2, 3, 4]);

    // A flipped byte inside the middle frame: everything from it on is cut, no panic.
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    std::fs::write(&path, &bytes).unwrap();
    let (_, report) = LogStore::open(dir.path()).unwrap();
    assert!(report.entries < 3);
    assert!(report.truncated_bytes > 0);

    // Garbage in the vote file is an error, not a panic.
    std::fs::write(dir.path().join("raft-vote.json"), b"{not json").unwrap();
    assert!(LogStore::open(dir.path()).is_err());
}

#[tokio::test]
async fn a_snapshot_restores_the_image_at_startup() {
    let dir = tempfile::tempdir().unwrap();
    let mut state_machine = StateMachineStore::open(dir.path()).unwrap();
    let mut updates = state_machine.subscribe();
    let config = MetadataRecord::Config {
        resource: ConfigResource::Broker(NodeId(7)),
        name: "log.retention.ms".into(),
        value: Some("1000".into()),
    };
    let records = vec![
        MetadataRecord::Cluster {
            cluster_id: "abc".into(),
        },
        topic("a"),
        config.clone(),
        MetadataRecord::ProducerIds {
            node_id: NodeId(1),
            next_producer_id: ProducerId(2000),
        },
    ];
    let applied = state_machine
        .apply(vec![
            entry(1, 1, records),
            Entry {
                log_id: log_id(1, 2),
                payload: EntryPayload::Blank,
            },
        ])
        .await
        .unwrap();
    assert_eq!(applied.len(), 2);
    assert_eq!(applied[1].image_last_applied, 4);
    assert!(updates.has_changed().unwrap());
    let _ = updates.borrow_and_update();
    let snapshot = state_machine
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    assert_eq!(snapshot.meta.last_log_id, Some(log_id(1, 2)));
    drop(state_machine);

    let mut reopened = StateMachineStore::open(dir.path()).unwrap();
    let image = reopened.image();
    assert_eq!(image.last_applied, 4);
    assert_eq!(image.cluster_id.as_deref(), Some("abc"));
    assert!(image.topic("a").is_some());
    assert_eq!(image.next_producer_id, ProducerId(2000));
    assert_eq!(
        image.configs(&ConfigResource::Broker(NodeId(7))).unwrap()["log.retention.ms"],
        "1000"
    );
    let (last, _) = reopened.applied_state().await.unwrap();
    assert_eq!(last, Some(log_id(1, 2)));

    // A damaged snapshot file is an error at startup, not a panic.
    std::fs::write(dir.path().join("snapshot.json"), b"[1,2").unwrap();
    assert!(StateMachineStore::open(dir.path()).is_err());
}
