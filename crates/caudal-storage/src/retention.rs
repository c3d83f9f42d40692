//! Retention (Kafka's `UnifiedLog.deleteOldSegments`), DeleteRecords (advancing the log start
//! offset) and the delayed removal of deleted segments' files.
//!
//! Deleting a segment is Kafka's two steps. Under the append lock: the log start offset moves
//! up first (so a reader racing with the deletion gets OffsetOutOfRange rather than a later
//! batch), the segments leave the list readers see, and their files are renamed `.deleted`.
//! Then the directory is fsynced and the log-start-offset checkpoint rewritten (durably). The
//! `.deleted` files are removed by [`PartitionLog::delete_pending_files`] once
//! `file.delete.delay.ms` has passed, or at the next startup. Readers that picked a segment
//! before it left the list keep reading it through their open handle.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use caudal_model::{Offset, TimestampMs};

use crate::CrashPoint;
use crate::error::StorageError;
use crate::files::{remove_file_if_exists, sync_dir};
use crate::log::{AppendState, PartitionLog, PendingDeletion, RollReason};
use crate::segment::{DELETED_SUFFIX, Segment};

/// Why retention deleted a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeletionReason {
    /// Every offset of the segment is below the log start offset (DeleteRecords, or a log start
    /// offset that moved for another reason). Applies whatever the cleanup policy.
    LogStartOffset,
    /// `retention.bytes`: the log is at least that big without the segment.
    RetentionBytes,
    /// `retention.ms`: the segment's largest timestamp is older than that.
    RetentionMs,
}

/// One segment retention deleted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeletedSegment {
    pub base_offset: Offset,
    pub size_bytes: u64,
    pub reason: DeletionReason,
}

/// What [`PartitionLog::delete_old_segments`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetentionOutcome {
    /// Segments deleted, oldest first.
    pub deleted: Vec<DeletedSegment>,
    /// The log start offset afterwards.
    pub log_start_offset: Offset,
    /// A cleaning pass was running on the log, so nothing was checked; try again next round.
    pub skipped_busy: bool,
}

impl RetentionOutcome {
    pub fn bytes_deleted(&self) -> u64 {
        self.deleted.iter().map(|segment| segment.size_bytes).sum()
    }
}

/// Which segments a pass may delete, oldest first, as Kafka's `deletableSegments`: stop at the
/// first segment that is not entirely below `upper_bound` (the high watermark) or fails
/// `predicate`, and never count an empty active segment.
fn deletable_segments(
    segments: &[Arc<Segment>],
    log_end_offset: Offset,
    upper_bound: Offset,
    mut predicate: impl FnMut(&Segment, Option<&Segment>) -> Result<bool, StorageError>,
) -> Result<usize, StorageError> {
    let mut deletable = 0;
    for (index, segment) in segments.iter().enumerate() {
        let next = segments.get(index + 1).map(|next| &**next);
        let end = next.map_or(log_end_offset, |next| next.base_offset);
        let last_and_empty = next.is_none() && segment.size() == 0;
        if last_and_empty || upper_bound < end || !predicate(segment, next)? {
            break;
        }
        deletable += 1;
    }
    Ok(deletable)
}

impl PartitionLog {
    /// Retention, Kafka's `deleteOldSegments`: deletes, oldest first, the segments that lie
    /// wholly below the log start offset (always), then — when `cleanup.policy` includes
    /// `delete` — those that `retention.bytes` and then `retention.ms` (a segment's largest
    /// timestamp, or its file's modification time without timestamps, older than
    /// `now - retention.ms`) let go. A segment is only deleted when all of it is below
    /// `upper_bound` (the high watermark). Deleting every segment first rolls a new empty active
    /// segment at the log end offset, as Kafka does. The log start offset moves up to the new
    /// first segment and is checkpointed durably. The files are renamed `.deleted` and removed by
    /// [`Self::delete_pending_files`] `file.delete.delay.ms` later.
    ///
    /// Never waits for a cleaning pass: if one holds the log, returns at once with
    /// `skipped_busy`.
    pub fn delete_old_segments(
        &self,
        now: TimestampMs,
        upper_bound: Offset,
    ) -> Result<RetentionOutcome, StorageError> {
        self.check_open()?;
        let Some(_maintenance) = self.maintenance.try_lock() else {
            return Ok(RetentionOutcome {
                deleted: Vec::new(),
                log_start_offset: self.log_start_offset(),
                skipped_busy: true,
            });
        };
        self.check_open()?;
        let config = self.config();
        let mut deleted = Vec::new();
        let mut reasons = vec![DeletionReason::LogStartOffset];
        if config.cleanup_policy.delete() {
            reasons.push(DeletionReason::RetentionBytes);
            reasons.push(DeletionReason::RetentionMs);
        }
        for reason in reasons {
            let result = self.delete_segments_for(reason, now, upper_bound, &mut deleted);
            self.note_fatal(result)?;
        }
        Ok(RetentionOutcome {
            deleted,
            log_start_offset: self.log_start_offset(),
            skipped_busy: false,
        })
    }

    fn delete_segments_for(
        &self,
        reason: DeletionReason,
        now: TimestampMs,
        upper_bound: Offset,
        deleted: &mut Vec<DeletedSegment>,
    ) -> Result<(), StorageError> {
        let config = self.config();
        let mut state = self.append.lock();
        self.check_open()?;
        let log_start_offset = self.log_start_offset();
        let log_end_offset = self.log_end_offset();
        let count = match reason {
            DeletionReason::LogStartOffset => {
                deletable_segments(&state.segments, log_end_offset, upper_bound, |_, next| {
                    Ok(next.is_some_and(|next| next.base_offset <= log_start_offset))
                })?
            }
            DeletionReason::RetentionBytes => {
                let size: u64 = state.segments.iter().map(|segment| segment.size()).sum();
                let Ok(retention_bytes) = u64::try_from(config.retention_bytes) else {
                    return Ok(());
                };
                if size < retention_bytes {
                    return Ok(());
                }
                let mut excess = size - retention_bytes;
                deletable_segments(
                    &state.segments,
                    log_end_offset,
                    upper_bound,
                    |segment, _| {
                        if segment.size() <= excess {
                            excess -= segment.size();
                            Ok(true)
                        } else {
                            Ok(false)
                        }
                    },
                )?
            }
            DeletionReason::RetentionMs => {
                if config.retention_ms < 0 {
                    return Ok(());
                }
                deletable_segments(
                    &state.segments,
                    log_end_offset,
                    upper_bound,
                    |segment, _| {
                        Ok(now.0.saturating_sub(segment.largest_timestamp()?.0)
                            > config.retention_ms)
                    },
                )?
            }
        };
        if count == 0 {
            return Ok(());
        }
        let removed = self.remove_oldest_segments(&mut state, count, now)?;
        let delay = config.file_delete_delay_ms.max(0);
        let mut paths = Vec::with_capacity(removed.len() * 3);
        for segment in &removed {
            paths.extend(segment.rename_files("", DELETED_SUFFIX)?);
            deleted.push(DeletedSegment {
                base_offset: segment.base_offset,
                size_bytes: segment.size(),
                reason,
            });
        }
        self.pending_deletions.lock().push(PendingDeletion {
            due: TimestampMs(now.0.saturating_add(delay)),
            paths,
        });
        self.crash_if(CrashPoint::RetentionRenamed)?;
        drop(state);
        sync_dir(&self.dir)?;
        self.write_dir_checkpoints()?;
        tracing::info!(
            topic_partition = %self.topic_partition,
            segments = removed.len(),
            ?reason,
            log_start_offset = self.log_start_offset().0,
            "deleted old segments"
        );
        Ok(())
    }

    /// Takes the `count` oldest segments out of the log (rolling first if that is all of them)
    /// and moves the log start offset up to the new first segment.
    fn remove_oldest_segments(
        &self,
        state: &mut AppendState,
        mut count: usize,
        now: TimestampMs,
    ) -> Result<Vec<Arc<Segment>>, StorageError> {
        if count == state.segments.len() {
            self.roll_locked(state, self.log_end_offset(), now, RollReason::Retention)?;
            if state.segments.len() == count {
                // The active segment could not be rolled (it is empty): keep it.
                count -= 1;
            }
        }
        let removed: Vec<Arc<Segment>> = state.segments.drain(..count).collect();
        let first_base = state.segments[0].base_offset;
        self.advance_log_start_offset(first_base);
        self.publish_segments(state);
        state
            .unsynced_rolled
            .retain(|segment| !removed.iter().any(|gone| Arc::ptr_eq(gone, segment)));
        Ok(removed)
    }

    /// Moves the log start offset up to `offset` (never down), with what follows it in Kafka's
    /// `updateLogStartOffset`: the recovery point is at least the log start offset, and the
    /// leader-epoch cache forgets epochs that ended before it (written by the next flush).
    /// Called under the append lock.
    fn advance_log_start_offset(&self, offset: Offset) -> bool {
        let previous = self.log_start_offset.fetch_max(offset.0, Ordering::AcqRel);
        if previous >= offset.0 {
            return false;
        }
        self.recovery_point.fetch_max(offset.0, Ordering::AcqRel);
        self.epochs.lock().truncate_from_start(offset);
        true
    }

    /// DeleteRecords (Kafka's `deleteRecordsOnLeader`): moves the log start offset up to
    /// `offset` — `Offset(-1)` means `upper_bound` (the high watermark) — and checkpoints it
    /// durably before returning. Reads below it then get OffsetOutOfRange, and retention deletes
    /// the segments wholly below it at its next run. An offset above `upper_bound` (or the log
    /// end offset) or negative is OffsetOutOfRange; one at or below the current log start offset
    /// changes nothing. Returns the log start offset (DeleteRecords' low watermark).
    pub fn delete_records_before(
        &self,
        offset: Offset,
        upper_bound: Offset,
    ) -> Result<Offset, StorageError> {
        self.check_open()?;
        let target = if offset.0 == -1 { upper_bound } else { offset };
        let state = self.append.lock();
        self.check_open()?;
        if target.0 < 0 || target > upper_bound.min(self.log_end_offset()) {
            return Err(self.out_of_range(target));
        }
        let moved = self.advance_log_start_offset(target);
        drop(state);
        if moved {
            let written = self.write_dir_checkpoints();
            self.note_fatal(written)?;
            tracing::info!(
                topic_partition = %self.topic_partition,
                log_start_offset = target.0,
                "deleted records: log start offset advanced"
            );
        }
        Ok(self.log_start_offset())
    }

    /// Removes the files of deleted segments whose `file.delete.delay.ms` has passed by `now`.
    /// Returns how many files were removed. The server calls it periodically (the
    /// `LogManager`-wide [`crate::LogManager::delete_pending_files`] does every log).
    pub fn delete_pending_files(&self, now: TimestampMs) -> Result<usize, StorageError> {
        let due: Vec<PendingDeletion> = {
            let mut pending = self.pending_deletions.lock();
            let (due, waiting) = std::mem::take(&mut *pending)
                .into_iter()
                .partition(|deletion| deletion.due <= now);
            *pending = waiting;
            due
        };
        let mut removed = 0;
        for deletion in due {
            for path in &deletion.paths {
                let result = remove_file_if_exists(path);
                self.note_fatal(result)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Files of deleted segments still waiting for `file.delete.delay.ms`.
    pub fn pending_file_deletions(&self) -> usize {
        self.pending_deletions
            .lock()
            .iter()
            .map(|deletion| deletion.paths.len())
            .sum()
    }
}
