//! Seeded mutation of every file the storage layer reads back (segments, indexes, snapshots,
//! checkpoints, metadata): opening and using the data directory must never panic. Prints its
//! seeds; rerun one with `CAUDAL_STORAGE_SEED=<seed>`.

mod common;

use std::path::{Path, PathBuf};

use caudal_model::{Offset, TimestampMs};
use caudal_storage::{LogConfig, LogManager};
use common::*;

fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(all_files(&path));
        } else {
            files.push(path);
        }
    }
    files.sort();
    files
}

fn mutate(rng: &mut Rng, path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    match rng.below(4) {
        0 if !bytes.is_empty() => {
            for _ in 0..1 + rng.below(8) {
                let at = rng.below(bytes.len() as u64) as usize;
                bytes[at] = rng.next() as u8;
            }
        }
        1 => bytes.truncate(rng.below(bytes.len() as u64 + 1) as usize),
        2 => bytes.extend((0..rng.below(200)).map(|_| rng.next() as u8)),
        _ => {
            let len = rng.below(300) as usize;
            bytes = (0..len).map(|_| rng.next() as u8).collect();
        }
    }
    std::fs::write(path, bytes).unwrap();
}

/// Exercises a loaded log without unwrapping anything that depends on disk contents.
fn exercise(manager: &LogManager) {
    for log in manager.logs() {
        let mut next = log.log_start_offset();
        for _ in 0..1000 {
            match log.read(next, 4096, Offset(i64::MAX), true) {
                Ok(read) if !read.records.is_empty() => {
                    let last = caudal_model::batch::BatchIter::new(&read.records)
                        .filter_map(Result::ok)
                        .last();
                    match last {
                        Some((_, header)) => next = header.next_offset(),
                        None => break,
                    }
                }
                _ => break,
            }
        }
        let _ = log.find_batch_by_timestamp(TimestampMs(1050));
        let _ = log.batch_with_max_timestamp();
        let _ = log.end_offset_for_epoch(caudal_model::LeaderEpoch(1));
        let leader_epoch = log.latest_epoch().unwrap_or(caudal_model::LeaderEpoch(0));
        let _ = log.append_as_leader(&producer_batch(3, 0, 9, 1, 7), leader_epoch, now(0));
        let _ = log.append_as_leader(&batch(2, 2000, 10), leader_epoch, now(0));
        let _ = log.truncate_to(Offset(log.log_end_offset().0 / 2));
        let _ = log.flush();
    }
}

fn run(seed: u64) {
    println!("garbage_files seed {seed}");
    let mut rng = Rng(seed);
    let dir = TempDir::new(&format!("garbage-{seed}"));
    {
        let manager = open(dir.path());
        let log = create(
            &manager,
            LogConfig {
                segment_bytes: 700,
                index_interval_bytes: 100,
                ..LogConfig::default()
            },
        );
        for i in 0..25 {
            let bytes = if i % 2 == 0 {
                producer_batch(3, 0, i / 2, 1, 1000 + i as i64)
            } else {
                batch(1 + i % 3, 1000 + i as i64 * 7, 20)
            };
            log.append_as_leader(&bytes, epoch(i / 8), now(0)).unwrap();
        }
        if rng.below(2) == 0 {
            manager.shutdown().unwrap();
        } else {
            log.flush().unwrap();
            manager.checkpoint().unwrap();
        }
    }
    let files = all_files(dir.path());
    for _ in 0..1 + rng.below(4) {
        let path = &files[rng.below(files.len() as u64) as usize];
        mutate(&mut rng, path);
    }
    // Corrupt data is recovered from, so opening succeeds; nothing may panic. After using it and
    // crashing, it opens again, and a clean restart after that loses nothing unless it reports
    // corruption (damage in a trusted segment is only found once that segment is scanned).
    let manager = LogManager::open(dir.path(), now(0)).unwrap();
    exercise(&manager);
    drop(manager);
    let manager = LogManager::open(dir.path(), now(0)).unwrap();
    exercise(&manager);
    let ends: Vec<Offset> = manager
        .logs()
        .iter()
        .map(|log| log.log_end_offset())
        .collect();
    if manager.shutdown().is_ok() {
        let manager = LogManager::open(dir.path(), now(0)).unwrap();
        let again: Vec<Offset> = manager
            .logs()
            .iter()
            .map(|log| log.log_end_offset())
            .collect();
        if manager
            .recovery_report()
            .iter()
            .all(|report| report.corruption.is_none())
        {
            assert_eq!(ends, again);
        }
    }
}

#[test]
fn mutated_files_never_cause_a_panic() {
    if let Some(seed) = std::env::var("CAUDAL_STORAGE_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
    {
        run(seed);
        return;
    }
    for seed in 0..30 {
        run(seed * 7919 + 1);
    }
}
