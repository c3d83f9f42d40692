//! Log lifecycle: the broker's schedule for what `caudal-storage` does on request — retention
//! (`delete_old_segments`), removal of `.deleted` files after `file.delete.delay.ms`, and the log
//! cleaner threads that compact `cleanup.policy=compact` topics (`__consumer_offsets` among them).
//!
//! Storage has no timers; this module owns them. Every call runs on a blocking thread and is
//! bounded by each partition's high watermark, so nothing a consumer may still be reading past
//! is deleted or compacted. Failures are logged and retried at the next tick; an I/O error has
//! already taken the log's directory offline inside storage.

use std::sync::Arc;
use std::time::Duration;

use caudal_storage::{CleanerConfig, LogCleaner};

use crate::broker::{Broker, now_ms};

/// How often pending `.deleted` files are checked between retention runs.
const PENDING_DELETION_CHECK: Duration = Duration::from_secs(5);
/// The longest a cleaner thread sleeps before it looks at the shutdown signal again.
const CLEANER_SLEEP_SLICE: Duration = Duration::from_millis(200);

/// Runs retention every `log.retention.check.interval.ms` and removes `.deleted` files once their
/// delay has passed, until shutdown.
pub async fn retention_loop(broker: Arc<Broker>) {
    let interval =
        Duration::from_millis(broker.config.lifecycle.retention_check_interval_ms as u64);
    let mut retention = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    retention.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pending = tokio::time::interval(PENDING_DELETION_CHECK);
    pending.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let run_retention = tokio::select! {
            _ = broker.shutdown.cancelled() => return,
            _ = retention.tick() => true,
            _ = pending.tick() => false,
        };
        let broker = broker.clone();
        let joined = tokio::task::spawn_blocking(move || {
            if run_retention {
                apply_retention(&broker);
            }
            delete_pending_files(&broker);
        })
        .await;
        if let Err(join_error) = joined {
            std::panic::resume_unwind(join_error.into_panic());
        }
    }
}

/// One retention pass over every hosted partition (blocking).
pub fn apply_retention(broker: &Broker) {
    let now = now_ms();
    for partition in broker.partitions() {
        match partition
            .log
            .delete_old_segments(now, partition.high_watermark())
        {
            Ok(outcome) if !outcome.deleted.is_empty() => tracing::info!(
                partition = %partition.topic_partition, segments = outcome.deleted.len(),
                bytes = outcome.bytes_deleted(), log_start_offset = outcome.log_start_offset.0,
                "deleted log segments under retention"
            ),
            Ok(_) => {}
            Err(error) => tracing::error!(
                partition = %partition.topic_partition, %error, "retention failed"
            ),
        }
    }
}

fn delete_pending_files(broker: &Broker) {
    match broker.logs.delete_pending_files(now_ms()) {
        Ok(0) => {}
        Ok(files) => tracing::debug!(files, "removed deleted segment files"),
        Err(error) => tracing::error!(%error, "removing deleted segment files failed"),
    }
}

/// Starts `log.cleaner.threads` cleaner threads (none with `log.cleaner.enable=false`), tracked
/// by the broker's tasks so that shutdown waits for them.
pub fn start_cleaners(broker: &Arc<Broker>) {
    let settings = &broker.config.lifecycle;
    let threads = settings.cleaner_threads;
    for index in 0..threads {
        let config = CleanerConfig {
            dedupe_buffer_bytes: settings.cleaner_dedupe_buffer_bytes / threads as u64,
            dedupe_buffer_load_factor: settings.cleaner_load_factor,
        };
        let broker = broker.clone();
        broker
            .tasks
            .clone()
            .spawn_blocking(move || run_cleaner(&broker, index, config));
    }
}

/// A cleaner thread: clean the filthiest log, again and again; sleep `log.cleaner.backoff.ms`
/// when none needs cleaning.
fn run_cleaner(broker: &Broker, index: usize, config: CleanerConfig) {
    let mut cleaner = LogCleaner::new(config);
    let backoff = Duration::from_millis(broker.config.lifecycle.cleaner_backoff_ms as u64);
    tracing::debug!(thread = index, "log cleaner started");
    while !broker.shutdown.is_cancelled() {
        let logs: Vec<_> = broker
            .partitions()
            .into_iter()
            .map(|partition| (partition.log.clone(), partition.high_watermark()))
            .collect();
        let cleaned = match cleaner.clean_filthiest(logs, now_ms()) {
            Ok(Some(report)) => {
                tracing::info!(
                    thread = index, partition = %report.topic_partition,
                    dirty_ratio = report.cleanable.dirty_ratio,
                    end_offset = report.outcome.end_offset.0,
                    segments = report.outcome.segments_cleaned,
                    bytes_read = report.outcome.bytes_read,
                    "cleaned log"
                );
                true
            }
            Ok(None) => false,
            Err(error) => {
                tracing::error!(thread = index, %error, "log cleaning failed");
                false
            }
        };
        if !cleaned {
            sleep_unless_shutdown(broker, backoff);
        }
    }
    tracing::debug!(thread = index, "log cleaner stopped");
}

fn sleep_unless_shutdown(broker: &Broker, duration: Duration) {
    let deadline = std::time::Instant::now() + duration;
    while !broker.shutdown.is_cancelled() {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(CLEANER_SLEEP_SLICE));
    }
}
