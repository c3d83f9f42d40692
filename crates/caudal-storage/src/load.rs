//! Loading one partition directory at startup: tidy leftovers, open segments, trust or recover
//! them, rebuild the leader-epoch cache and producer state, and report what happened.
//!
//! After a clean shutdown every segment is trusted: index files are adopted (validated) and only
//! the active segment's tail after its last index entry is scanned. After an unclean shutdown,
//! segments below the one holding the recovery point are trusted and every later one is recovered:
//! each batch is validated (whole, CRC, magic, counts, increasing offsets), indexes are rebuilt,
//! the segment is truncated at the first bad byte and every later segment is deleted.

use std::path::Path;
use std::sync::Arc;

use caudal_model::{Offset, TimestampMs, TopicPartition};
use uuid::Uuid;

use crate::config::LogConfig;
use crate::epoch::{LEADER_EPOCH_CHECKPOINT_FILE, LeaderEpochCache};
use crate::error::{StorageError, io_error};
use crate::files::{
    PARTITION_METADATA_FILE, TMP_SUFFIX, decode_partition_metadata, read_if_exists,
    remove_file_if_exists, sync_dir,
};
use crate::log::{
    LogContext, LogParts, PartitionLog, rebuild_producer_state, replay_segments,
    write_epoch_checkpoint,
};
use crate::segment::{
    BatchAt, CLEANED_SUFFIX, ChunkReader, Corruption, DELETED_SUFFIX, INDEX_SUFFIX, LOG_SUFFIX,
    SWAP_SUFFIX, Segment, TIME_INDEX_SUFFIX, parse_segment_file_name, segment_file_name,
};

/// What loading one log found and did. Every log gets one; `clean_shutdown` logs normally report
/// nothing else.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveryReport {
    pub topic_partition: TopicPartition,
    /// The data directory had the clean-shutdown marker.
    pub clean_shutdown: bool,
    /// Where recovery started from (the checkpointed recovery point); `None` after a clean
    /// shutdown.
    pub recovery_point: Option<Offset>,
    /// Segments whose batches were validated one by one and whose indexes were rebuilt.
    pub segments_recovered: usize,
    /// Batches validated during recovery.
    pub batches_validated: u64,
    /// Segments whose index files were missing, invalid or inconsistent and were rebuilt.
    pub indexes_rebuilt: usize,
    /// The first invalid byte found, if any: segment base offset, position and why.
    pub corruption: Option<CorruptionSite>,
    /// Bytes removed: the invalid tail of the corrupt segment plus every later segment.
    pub bytes_truncated: u64,
    /// Later segments deleted because an earlier one was truncated.
    pub segments_deleted: usize,
    /// Valid-looking batches in those deleted segments (bytes after the first bad byte in the
    /// corrupt segment itself cannot be counted as batches).
    pub batches_dropped: u64,
    /// Leftover files and directories removed (`*.deleted`, `*.cleaned`, incomplete `*.swap`,
    /// `*.tmp`, orphan indexes).
    pub leftovers_removed: usize,
    /// Cleaned segments (`<base>.log.swap`) an interrupted compaction left, swapped in.
    pub swaps_completed: usize,
    /// The leader-epoch checkpoint was missing or corrupt and was rebuilt from the batches.
    pub leader_epochs_rebuilt: bool,
    /// The producer snapshot producer state was loaded from, if any.
    pub producer_snapshot: Option<Offset>,
    /// Batches replayed into producer state after that snapshot.
    pub producer_batches_replayed: u64,
    pub log_start_offset: Offset,
    pub log_end_offset: Offset,
}

/// Where recovery found the first invalid byte.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorruptionSite {
    pub segment_base_offset: Offset,
    pub position: u64,
    pub reason: String,
}

pub(crate) struct LoadParams<'a> {
    pub dir: &'a Path,
    pub topic_partition: TopicPartition,
    pub clean_shutdown: bool,
    pub recovery_point: Option<Offset>,
    pub log_start_offset: Option<Offset>,
    pub cleaner_checkpoint: Option<Offset>,
    pub now: TimestampMs,
    pub context: LogContext,
}

/// The base offset of a segment file (`.log`, `.index` or `.timeindex`) named with `suffix`
/// after its usual name.
fn segment_file_base(name: &str, suffix: &str) -> Option<Offset> {
    let name = name.strip_suffix(suffix)?;
    [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX]
        .iter()
        .find_map(|kind| parse_segment_file_name(name, kind))
}

/// The offset after the last valid batch of the segment file at `path` based at `base`.
fn next_offset_of(path: &Path, base: Offset) -> Result<Offset, StorageError> {
    let file = std::fs::File::open(path).map_err(io_error(path))?;
    let size = file.metadata().map_err(io_error(path))?.len();
    let mut reader = ChunkReader::new(&file, path, base, size, 64 * 1024);
    let mut position = 0u64;
    let mut next = base;
    while let BatchAt::Batch(header) = reader.batch_at(position, true)? {
        if header.base_offset < next {
            break;
        }
        next = header.next_offset();
        position += header.size_bytes() as u64;
    }
    Ok(next)
}

/// Tidies what an interrupted retention or compaction left (Kafka's
/// `removeTempFilesAndCollectSwapFiles` and swap completion): removes `.deleted` and `.tmp`
/// files; removes `.cleaned` files and any `.swap` file based at or above the lowest `.cleaned`
/// one (its rename was not finished); completes every remaining `<base>.log.swap` — the live
/// segments based in `[base, the swap's next offset)` are deleted, the directory fsynced, then
/// the swap renamed into place; its index files are dropped so loading rebuilds them.
fn tidy_leftovers(
    dir: &Path,
    tp: &TopicPartition,
    report: &mut RecoveryReport,
) -> Result<(), StorageError> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_error(dir))? {
        let entry = entry.map_err(io_error(dir))?;
        if let Some(name) = entry.file_name().to_str() {
            names.push(name.to_owned());
        }
    }
    let cleaned_min = names
        .iter()
        .filter_map(|name| segment_file_base(name, CLEANED_SUFFIX))
        .min();
    let mut swaps = Vec::new();
    let mut changed = false;
    for name in &names {
        let path = dir.join(name);
        if name.ends_with(DELETED_SUFFIX) || name.ends_with(TMP_SUFFIX) {
            remove_file_if_exists(&path)?;
            report.leftovers_removed += 1;
            changed = true;
        } else if name.ends_with(CLEANED_SUFFIX) {
            tracing::warn!(topic_partition = %tp, file = %name, "removing a file of an unfinished compaction");
            remove_file_if_exists(&path)?;
            report.leftovers_removed += 1;
            changed = true;
        } else if name.ends_with(SWAP_SUFFIX) {
            let base = segment_file_base(name, SWAP_SUFFIX);
            let log_swap = name
                .strip_suffix(SWAP_SUFFIX)
                .and_then(|log| parse_segment_file_name(log, LOG_SUFFIX));
            match (base, log_swap) {
                (Some(base), Some(_)) if cleaned_min.is_none_or(|min| base < min) => {
                    swaps.push(base);
                }
                _ => {
                    // An index swap file (its index is rebuilt), an incomplete swap, or junk.
                    remove_file_if_exists(&path)?;
                    report.leftovers_removed += 1;
                    changed = true;
                }
            }
        }
    }
    if changed {
        sync_dir(dir)?;
    }
    swaps.sort();
    for base in swaps {
        let swap_path = dir.join(format!(
            "{}{SWAP_SUFFIX}",
            segment_file_name(base, LOG_SUFFIX)
        ));
        let next = next_offset_of(&swap_path, base)?;
        for name in &names {
            let Some(live) = parse_segment_file_name(name, LOG_SUFFIX) else {
                continue;
            };
            if live >= base && live < next.max(Offset(base.0 + 1)) {
                for suffix in [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
                    remove_file_if_exists(&dir.join(segment_file_name(live, suffix)))?;
                }
            }
        }
        for suffix in [INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
            remove_file_if_exists(&dir.join(segment_file_name(base, suffix)))?;
        }
        sync_dir(dir)?;
        let live_path = dir.join(segment_file_name(base, LOG_SUFFIX));
        std::fs::rename(&swap_path, &live_path).map_err(io_error(&swap_path))?;
        sync_dir(dir)?;
        tracing::warn!(topic_partition = %tp, segment = base.0, next_offset = next.0, "completed the swap of a cleaned segment left by an interrupted compaction");
        report.swaps_completed += 1;
    }
    Ok(())
}

/// Loads (and if needed recovers) the log in `params.dir`.
pub(crate) fn load_log(
    params: LoadParams<'_>,
) -> Result<(Arc<PartitionLog>, RecoveryReport), StorageError> {
    let dir = params.dir;
    let tp = params.topic_partition;
    let config = LogConfig::default();
    let mut report = RecoveryReport {
        topic_partition: tp.clone(),
        clean_shutdown: params.clean_shutdown,
        recovery_point: None,
        segments_recovered: 0,
        batches_validated: 0,
        indexes_rebuilt: 0,
        corruption: None,
        bytes_truncated: 0,
        segments_deleted: 0,
        batches_dropped: 0,
        leftovers_removed: 0,
        swaps_completed: 0,
        leader_epochs_rebuilt: false,
        producer_snapshot: None,
        producer_batches_replayed: 0,
        log_start_offset: Offset(0),
        log_end_offset: Offset(0),
    };

    let metadata_path = dir.join(PARTITION_METADATA_FILE);
    let topic_id = match read_if_exists(&metadata_path)? {
        Some(bytes) => match decode_partition_metadata(&metadata_path, &bytes) {
            Ok(topic_id) => topic_id,
            Err(error) => {
                tracing::warn!(topic_partition = %tp, %error, "unreadable partition.metadata; topic id unknown until create_log");
                Uuid::nil()
            }
        },
        None => {
            tracing::warn!(topic_partition = %tp, "missing partition.metadata; topic id unknown until create_log");
            Uuid::nil()
        }
    };

    // Tidy leftovers and find the segments.
    tidy_leftovers(dir, &tp, &mut report)?;
    let mut bases = Vec::new();
    let mut index_files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_error(dir))? {
        let entry = entry.map_err(io_error(dir))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if let Some(base) = parse_segment_file_name(&name, LOG_SUFFIX) {
            bases.push(base);
        } else if let Some(base) = parse_segment_file_name(&name, INDEX_SUFFIX)
            .or_else(|| parse_segment_file_name(&name, TIME_INDEX_SUFFIX))
        {
            index_files.push((base, entry.path()));
        }
    }
    bases.sort();
    for (base, path) in index_files {
        if bases.binary_search(&base).is_err() {
            remove_file_if_exists(&path)?;
            report.leftovers_removed += 1;
        }
    }
    if bases.is_empty() {
        let base = params.log_start_offset.unwrap_or(Offset(0));
        Segment::create(dir, base, params.now)?;
        bases.push(base);
    }

    // The leader-epoch cache as checkpointed.
    let epoch_path = dir.join(LEADER_EPOCH_CHECKPOINT_FILE);
    let (mut epochs, epochs_trusted) = match read_if_exists(&epoch_path)? {
        Some(bytes) => match LeaderEpochCache::decode(&epoch_path, &bytes) {
            Ok(entries) => (LeaderEpochCache::from_entries(entries), true),
            Err(error) => {
                tracing::warn!(topic_partition = %tp, %error, "unreadable leader-epoch checkpoint; rebuilding it");
                (LeaderEpochCache::default(), false)
            }
        },
        None => (LeaderEpochCache::default(), false),
    };

    let recover_from = if params.clean_shutdown {
        None
    } else {
        let recovery_point = params.recovery_point.unwrap_or(Offset(0));
        report.recovery_point = Some(recovery_point);
        Some(
            bases
                .partition_point(|base| *base <= recovery_point)
                .saturating_sub(1),
        )
    };

    let mut segments: Vec<Arc<Segment>> = Vec::with_capacity(bases.len());
    let mut log_end_offset = Offset(0);
    let mut next_offset_min = Offset(0);
    let mut unclean_region_started = false;
    let mut stop_at: Option<usize> = None;
    for (position, base) in bases.iter().copied().enumerate() {
        let segment = Segment::open(dir, base, params.now)?;
        let trusted = recover_from.is_none_or(|first| position < first);
        if trusted {
            let loaded = match segment.read_index_files()? {
                Ok(files) => {
                    let offset_limit = bases.get(position + 1).copied();
                    segment.load_with_index(
                        files,
                        params.now,
                        offset_limit,
                        config.index_interval_bytes,
                    )?
                }
                Err(reason) => Err(reason),
            };
            match loaded {
                Ok(next_offset) => {
                    if let Some(next_offset) = next_offset {
                        log_end_offset = next_offset;
                    }
                    next_offset_min = Offset(0);
                    segments.push(Arc::new(segment));
                    continue;
                }
                Err(reason) => {
                    tracing::warn!(topic_partition = %tp, segment = base.0, %reason, "rebuilding segment indexes");
                    report.indexes_rebuilt += 1;
                }
            }
        } else if !unclean_region_started {
            // Entries for the recovered region are re-derived from its batches.
            unclean_region_started = true;
            epochs.truncate_from_end(base);
        }
        let recovery = segment.recover(
            config.index_interval_bytes,
            next_offset_min,
            params.now,
            |header| {
                let epoch = header.partition_leader_epoch;
                if epoch.0 >= 0 && epochs.latest_epoch().is_none_or(|latest| epoch > latest) {
                    epochs.assign(epoch, header.base_offset);
                }
            },
        )?;
        report.segments_recovered += 1;
        report.batches_validated += recovery.batches;
        log_end_offset = recovery.next_offset;
        next_offset_min = recovery.next_offset;
        segments.push(Arc::new(segment));
        if let Some(Corruption {
            position: at,
            reason,
        }) = recovery.corruption
        {
            report.bytes_truncated += recovery.bytes_truncated;
            report.corruption = Some(CorruptionSite {
                segment_base_offset: base,
                position: at,
                reason,
            });
            stop_at = Some(position);
            break;
        }
    }

    if let Some(stopped) = stop_at {
        for base in bases[stopped + 1..].iter().copied() {
            let segment = Segment::open(dir, base, params.now)?;
            drop_segment(
                &segment,
                &mut report,
                config.index_interval_bytes,
                params.now,
            )?;
        }
        warn_truncated(&tp, &report, log_end_offset);
    }
    // An inactive segment's max timestamp is the last entry of its time index.
    for segment in &segments[..segments.len() - 1] {
        segment.append_final_time_entry()?;
    }

    // Rebuilding the leader-epoch cache (if its file was lost) and producer state reads trusted
    // segments that were never scanned. If one turns out to be corrupt, recover it (truncating it
    // and dropping later segments, or just rebuilding a misleading index) and try again.
    let mut recovered_again = Vec::new();
    let (producers, (snapshot, replayed)) = loop {
        let first_base = segments[0].base_offset;
        let rebuilt = (|| {
            if !epochs_trusted && log_end_offset > first_base {
                let mut rebuilt = LeaderEpochCache::default();
                replay_segments(&segments, first_base, log_end_offset, |header| {
                    let epoch = header.partition_leader_epoch;
                    if epoch.0 >= 0 && rebuilt.latest_epoch().is_none_or(|latest| epoch > latest) {
                        rebuilt.assign(epoch, header.base_offset);
                    }
                })?;
                epochs = rebuilt;
                epochs.mark_dirty();
                report.leader_epochs_rebuilt = true;
            }
            rebuild_producer_state(dir, &segments, log_end_offset)
        })();
        let (path, reason) = match rebuilt {
            Ok(result) => break result,
            Err(StorageError::CorruptFile { path, reason }) => (path, reason),
            Err(error) => return Err(error),
        };
        let failed = segments.iter().position(|segment| segment.log_path == path);
        let Some(failed) = failed.filter(|failed| !recovered_again.contains(failed)) else {
            return Err(StorageError::CorruptFile { path, reason });
        };
        tracing::warn!(topic_partition = %tp, segment = segments[failed].base_offset.0, %reason, "a trusted segment is corrupt; recovering it");
        recovered_again.push(failed);
        let segment = Arc::clone(&segments[failed]);
        let recovery =
            segment.recover(config.index_interval_bytes, Offset(0), params.now, |_| {})?;
        report.segments_recovered += 1;
        report.indexes_rebuilt += 1;
        report.batches_validated += recovery.batches;
        if let Some(Corruption { position, reason }) = recovery.corruption {
            report.bytes_truncated += recovery.bytes_truncated;
            report.corruption = Some(CorruptionSite {
                segment_base_offset: segment.base_offset,
                position,
                reason,
            });
            for later in segments.drain(failed + 1..) {
                drop_segment(&later, &mut report, config.index_interval_bytes, params.now)?;
            }
            log_end_offset = recovery.next_offset;
            warn_truncated(&tp, &report, log_end_offset);
        } else if failed + 1 < segments.len() {
            segment.append_final_time_entry()?;
        }
    };
    report.producer_snapshot = snapshot;
    report.producer_batches_replayed = replayed;
    epochs.truncate_from_end(log_end_offset);
    if epochs.is_dirty() || !epochs_trusted {
        write_epoch_checkpoint(dir, &mut epochs)?;
    }
    let first_base = segments[0].base_offset;

    let log_start_offset = params
        .log_start_offset
        .unwrap_or(first_base)
        .max(first_base)
        .min(log_end_offset);
    let recovery_point = if params.clean_shutdown {
        log_end_offset
    } else {
        params
            .recovery_point
            .unwrap_or(Offset(0))
            .min(log_end_offset)
    };
    report.log_start_offset = log_start_offset;
    report.log_end_offset = log_end_offset;
    if !params.clean_shutdown {
        tracing::info!(
            topic_partition = %tp,
            recovery_point = recovery_point.0,
            segments_recovered = report.segments_recovered,
            batches_validated = report.batches_validated,
            bytes_truncated = report.bytes_truncated,
            log_end_offset = log_end_offset.0,
            "recovered log after an unclean shutdown"
        );
    }

    let log = PartitionLog::new(LogParts {
        topic_partition: tp,
        topic_id,
        dir: dir.to_path_buf(),
        config,
        segments,
        producers,
        epochs,
        log_start_offset,
        log_end_offset,
        recovery_point,
        cleaner_checkpoint: params.cleaner_checkpoint,
        context: params.context,
    });
    Ok((log, report))
}

/// Deletes a segment that follows a truncation point, counting its bytes and valid batches.
fn drop_segment(
    segment: &Segment,
    report: &mut RecoveryReport,
    index_interval_bytes: u32,
    now: TimestampMs,
) -> Result<(), StorageError> {
    report.bytes_truncated += segment.size();
    let mut dropped = 0u64;
    if segment
        .recover(index_interval_bytes, Offset(0), now, |_| dropped += 1)
        .is_ok()
    {
        report.batches_dropped += dropped;
    }
    segment.delete_files()?;
    report.segments_deleted += 1;
    Ok(())
}

fn warn_truncated(tp: &TopicPartition, report: &RecoveryReport, log_end_offset: Offset) {
    let site = report.corruption.as_ref();
    tracing::warn!(
        topic_partition = %tp,
        segment = site.map(|site| site.segment_base_offset.0),
        position = site.map(|site| site.position),
        reason = site.map(|site| site.reason.as_str()),
        bytes_truncated = report.bytes_truncated,
        segments_deleted = report.segments_deleted,
        batches_dropped = report.batches_dropped,
        log_end_offset = log_end_offset.0,
        "recovery truncated the log at the first invalid batch"
    );
}
