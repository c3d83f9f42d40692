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

#[derive(Debug, Clone)]
enum Op {
    Append(usize),
    Truncate(u64),
    Purge(u64),
    Reopen,
    Tear(usize),
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    prop_oneof![
        3 => (1usize..4).prop_map(Op::Append),
        1 => (0u64..16).prop_map(Op::Truncate),
        1 => (0u64..16).prop_map(Op::Purge),
        1 => Just(Op::Reopen),
        1 => (1usize..40).prop_map(Op::Tear),
    ]
}

/// The log against a model (the ids it must hold, the purge point) under random appends,
/// truncations, purges, reopens and torn tails.
fn run_against_model(ops: Vec<Op>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = LogStore::open(dir.path()).unwrap();
        let mut model: Vec<LogId<u64>> = Vec::new();
        let mut purged: Option<LogId<u64>> = None;
        for (step, op) in ops.into_iter().enumerate() {
            let term = step as u64 + 1;
            let next = model
                .last()
                .or(purged.as_ref())
                .map_or(0, |last| last.index + 1);
            match op {
                Op::Append(count) => {
                    let entries: Vec<_> = (0..count as u64)
                        .map(|offset| entry(term, next + offset, vec![topic("m")]))
                        .collect();
                    model.extend(entries.iter().map(|entry| entry.log_id));
                    log.append_entries(entries).unwrap();
                }
                Op::Truncate(index) => {
                    if let Some(position) = model.iter().position(|id| id.index == index) {
                        log.truncate(model[position]).await.unwrap();
                        model.truncate(position);
                    }
                }
                Op::Purge(index) => {
                    if let Some(position) = model.iter().position(|id| id.index == index) {
                        purged = Some(model[position]);
                        log.purge(model[position]).await.unwrap();
                        model.drain(..=position);
                    }
                }
                Op::Reopen => {
                    drop(log);
                    log = LogStore::open(dir.path()).unwrap().0;
                }
                Op::Tear(bytes) => {
                    drop(log);
                    let path = dir.path().join(RAFT_LOG_FILE);
                    let mut contents = std::fs::read(&path).unwrap();
                    contents.truncate(contents.len().saturating_sub(bytes));
                    std::fs::write(&path, &contents).unwrap();
                    let (reopened, report) = LogStore::open(dir.path()).unwrap();
                    log = reopened;
                    // Whole frames survive: the model keeps exactly that prefix.
                    assert!(report.entries <= model.len());
                    model.truncate(report.entries);
                }
            }
            let state = log.get_log_state().await.unwrap();
            assert_eq!(state.last_purged_log_id, purged);
            assert_eq!(state.last_log_id, model.last().copied().or(purged));
            let held: Vec<_> = log
                .try_get_log_entries(..)
                .await
                .unwrap()
                .iter()
                .map(|entry| entry.log_id)
                .collect();
            assert_eq!(held, model);
        }
        // And the final state is what a fresh open finds.
        drop(log);
        let (mut reopened, _) = LogStore::open(dir.path()).unwrap();
        let held: Vec<_> = reopened
            .try_get_log_entries(..)
            .await
            .unwrap()
            .iter()
            .map(|entry| entry.log_id)
            .collect();
        assert_eq!(held, model);
    });
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    #[test]
    fn the_log_matches_a_model_under_random_operations(ops in proptest::collection::vec(op(), 1..40)) {
        run_against_model(ops);
    }
}
