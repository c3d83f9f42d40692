//! The leader-epoch cache: for each leader epoch, the first offset written in it (Kafka's
//! `LeaderEpochFileCache`), persisted as `leader-epoch-checkpoint`:
//!
//! ```text
//! 0            <- version
//! 2            <- entry count
//! 0 0          <- epoch start-offset
//! 3 1200
//! ```
//!
//! Invariant: epochs strictly increase and start offsets never decrease along the entries.

use std::path::Path;

use caudal_model::{LeaderEpoch, Offset};

use crate::error::StorageError;

/// File name of the leader-epoch checkpoint inside a partition directory.
pub(crate) const LEADER_EPOCH_CHECKPOINT_FILE: &str = "leader-epoch-checkpoint";
const LEADER_EPOCH_CHECKPOINT_VERSION: u32 = 0;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct EpochEntry {
    pub epoch: LeaderEpoch,
    pub start_offset: Offset,
}

/// The in-memory cache; `dirty` is set when it differs from the file.
#[derive(Clone, Debug, Default)]
pub(crate) struct LeaderEpochCache {
    entries: Vec<EpochEntry>,
    dirty: bool,
}

impl LeaderEpochCache {
    pub fn from_entries(entries: Vec<EpochEntry>) -> Self {
        let cache = Self {
            entries,
            dirty: false,
        };
        debug_assert!(cache.is_monotonic());
        cache
    }

    fn is_monotonic(&self) -> bool {
        self.entries.windows(2).all(|pair| {
            pair[0].epoch < pair[1].epoch && pair[0].start_offset <= pair[1].start_offset
        })
    }

    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    pub fn mark_clean(&mut self) {
        self.dirty = false;
    }

    pub fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    pub fn latest_epoch(&self) -> Option<LeaderEpoch> {
        self.entries.last().map(|entry| entry.epoch)
    }

    /// Records that `epoch` starts at `start_offset` (Kafka's `assign`): a no-op for the latest
    /// epoch unless the start moves earlier; otherwise entries that would break monotonicity
    /// (epoch ≥ `epoch` or start ≥ `start_offset`) are removed first. Returns whether it changed.
    pub fn assign(&mut self, epoch: LeaderEpoch, start_offset: Offset) -> bool {
        debug_assert!(epoch.0 >= 0 && start_offset.0 >= 0);
        if let Some(latest) = self.entries.last()
            && latest.epoch == epoch
            && start_offset >= latest.start_offset
        {
            return false;
        }
        while let Some(last) = self.entries.last() {
            if last.epoch >= epoch || last.start_offset >= start_offset {
                self.entries.pop();
            } else {
                break;
            }
        }
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        self.dirty = true;
        debug_assert!(self.is_monotonic());
        true
    }

    /// Removes entries starting at or after `end_offset` (after the log was truncated there).
    pub fn truncate_from_end(&mut self, end_offset: Offset) -> bool {
        let keep = self
            .entries
            .partition_point(|entry| entry.start_offset < end_offset);
        let changed = keep < self.entries.len();
        self.entries.truncate(keep);
        self.dirty |= changed;
        changed
    }

    /// After the log start offset moved up to `start_offset` (Kafka's `truncateFromStart`):
    /// entries starting at or below it are removed, and the last of them is kept with its start
    /// moved to `start_offset`, so the epoch in force there stays known. Returns whether it
    /// changed.
    pub fn truncate_from_start(&mut self, start_offset: Offset) -> bool {
        let below = self
            .entries
            .partition_point(|entry| entry.start_offset <= start_offset);
        let Some(last_below) = below.checked_sub(1).map(|index| self.entries[index]) else {
            return false;
        };
        if below == 1 && last_below.start_offset == start_offset {
            return false;
        }
        self.entries.drain(..below);
        self.entries.insert(
            0,
            EpochEntry {
                epoch: last_below.epoch,
                start_offset,
            },
        );
        self.dirty = true;
        debug_assert!(self.is_monotonic());
        true
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        if !self.entries.is_empty() {
            self.entries.clear();
            self.dirty = true;
        }
    }

    /// Kafka's `endOffsetFor`: for the latest epoch, the log end offset; for an older epoch, that
    /// epoch (or the closest known one below it) and the start offset of the next known epoch; for
    /// an epoch before every known one, the requested epoch and the first known start offset.
    /// `None` is Kafka's (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET).
    pub fn end_offset_for(
        &self,
        epoch: LeaderEpoch,
        log_end_offset: Offset,
    ) -> Option<(LeaderEpoch, Offset)> {
        if epoch.0 < 0 {
            return None;
        }
        if self.latest_epoch() == Some(epoch) {
            return Some((epoch, log_end_offset));
        }
        let higher = self.entries.partition_point(|entry| entry.epoch <= epoch);
        let higher_entry = self.entries.get(higher)?;
        match higher.checked_sub(1) {
            None => Some((epoch, higher_entry.start_offset)),
            Some(floor) => Some((self.entries[floor].epoch, higher_entry.start_offset)),
        }
    }

    pub fn encode(&self) -> String {
        let mut text = format!(
            "{LEADER_EPOCH_CHECKPOINT_VERSION}\n{}\n",
            self.entries.len()
        );
        for entry in &self.entries {
            text.push_str(&format!("{} {}\n", entry.epoch, entry.start_offset));
        }
        text
    }

    /// Parses the checkpoint file, rejecting anything malformed or non-monotonic.
    pub fn decode(path: &Path, bytes: &[u8]) -> Result<Vec<EpochEntry>, StorageError> {
        let corrupt = |reason: String| StorageError::CorruptFile {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::str::from_utf8(bytes).map_err(|_| corrupt("not UTF-8".into()))?;
        let mut lines = text.lines();
        let version = lines.next().unwrap_or_default();
        if version.trim() != LEADER_EPOCH_CHECKPOINT_VERSION.to_string() {
            return Err(corrupt(format!("unknown version {version:?}")));
        }
        let count: usize = lines
            .next()
            .and_then(|line| line.trim().parse().ok())
            .ok_or_else(|| corrupt("missing or invalid entry count".into()))?;
        let mut entries: Vec<EpochEntry> = Vec::new();
        for _ in 0..count {
            let line = lines
                .next()
                .ok_or_else(|| corrupt("fewer entries than the count says".into()))?;
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [epoch, start] = fields[..] else {
                return Err(corrupt(format!("malformed entry {line:?}")));
            };
            let (Ok(epoch), Ok(start)) = (epoch.parse::<i32>(), start.parse::<i64>()) else {
                return Err(corrupt(format!("malformed entry {line:?}")));
            };
            let entry = EpochEntry {
                epoch: LeaderEpoch(epoch),
                start_offset: Offset(start),
            };
            if epoch < 0 || start < 0 {
                return Err(corrupt(format!("negative entry {line:?}")));
            }
            if let Some(previous) = entries.last()
                && (previous.epoch >= entry.epoch || previous.start_offset > entry.start_offset)
            {
                return Err(corrupt(format!("entry {line:?} is not monotonic")));
            }
            entries.push(entry);
        }
        if lines.any(|line| !line.trim().is_empty()) {
            return Err(corrupt("more entries than the count says".into()));
        }
        Ok(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: &[(i32, i64)]) -> LeaderEpochCache {
        LeaderEpochCache::from_entries(
            entries
                .iter()
                .map(|&(epoch, start)| EpochEntry {
                    epoch: LeaderEpoch(epoch),
                    start_offset: Offset(start),
                })
                .collect(),
        )
    }

    fn pairs(cache: &LeaderEpochCache) -> Vec<(i32, i64)> {
        cache
            .entries()
            .iter()
            .map(|entry| (entry.epoch.0, entry.start_offset.0))
            .collect()
    }

    #[test]
    fn truncating_from_start_keeps_the_epoch_in_force() {
        let mut epochs = cache(&[(1, 0), (3, 100), (5, 200)]);
        assert!(!epochs.truncate_from_start(Offset(0)));
        assert!(epochs.truncate_from_start(Offset(150)));
        assert_eq!(pairs(&epochs), vec![(3, 150), (5, 200)]);
        assert!(epochs.is_dirty());
        assert!(epochs.truncate_from_start(Offset(200)));
        assert_eq!(pairs(&epochs), vec![(5, 200)]);
        assert!(!epochs.truncate_from_start(Offset(200)));
        assert!(epochs.truncate_from_start(Offset(900)));
        assert_eq!(pairs(&epochs), vec![(5, 900)]);
        let mut empty = LeaderEpochCache::default();
        assert!(!empty.truncate_from_start(Offset(10)));
        let mut later = cache(&[(2, 50)]);
        assert!(!later.truncate_from_start(Offset(10)));
        assert_eq!(pairs(&later), vec![(2, 50)]);
    }

    #[test]
    fn assign_keeps_entries_monotonic() {
        let mut epochs = LeaderEpochCache::default();
        assert!(epochs.assign(LeaderEpoch(1), Offset(0)));
        assert!(!epochs.assign(LeaderEpoch(1), Offset(5)));
        assert!(epochs.assign(LeaderEpoch(3), Offset(10)));
        assert!(epochs.assign(LeaderEpoch(4), Offset(10)));
        assert_eq!(pairs(&epochs), vec![(1, 0), (4, 10)]);
        // A lower epoch removes every entry with a higher or equal epoch.
        assert!(epochs.assign(LeaderEpoch(2), Offset(20)));
        assert_eq!(pairs(&epochs), vec![(1, 0), (2, 20)]);
        // The same epoch starting earlier moves its start.
        assert!(epochs.assign(LeaderEpoch(2), Offset(15)));
        assert_eq!(pairs(&epochs), vec![(1, 0), (2, 15)]);
    }

    #[test]
    fn end_offset_for_follows_kafka() {
        let epochs = cache(&[(1, 0), (3, 100), (5, 200)]);
        let leo = Offset(250);
        assert_eq!(
            epochs.end_offset_for(LeaderEpoch(5), leo),
            Some((LeaderEpoch(5), leo))
        );
        assert_eq!(
            epochs.end_offset_for(LeaderEpoch(3), leo),
            Some((LeaderEpoch(3), Offset(200)))
        );
        // An unknown epoch between known ones answers with the one below it.
        assert_eq!(
            epochs.end_offset_for(LeaderEpoch(4), leo),
            Some((LeaderEpoch(3), Offset(200)))
        );
        assert_eq!(
            epochs.end_offset_for(LeaderEpoch(1), leo),
            Some((LeaderEpoch(1), Offset(100)))
        );
        // Below every known epoch: the requested epoch and the first start offset.
        assert_eq!(
            epochs.end_offset_for(LeaderEpoch(0), leo),
            Some((LeaderEpoch(0), Offset(0)))
        );
        assert_eq!(epochs.end_offset_for(LeaderEpoch(9), leo), None);
        assert_eq!(epochs.end_offset_for(LeaderEpoch(-1), leo), None);
        assert_eq!(
            LeaderEpochCache::default().end_offset_for(LeaderEpoch(0), leo),
            None
        );
    }

    #[test]
    fn truncate_from_end_removes_later_epochs() {
        let mut epochs = cache(&[(1, 0), (3, 100), (5, 200)]);
        assert!(epochs.truncate_from_end(Offset(150)));
        assert_eq!(pairs(&epochs), vec![(1, 0), (3, 100)]);
        assert!(!epochs.truncate_from_end(Offset(150)));
        assert!(epochs.truncate_from_end(Offset(100)));
        assert_eq!(pairs(&epochs), vec![(1, 0)]);
    }

    #[test]
    fn checkpoint_round_trips_and_rejects_garbage() {
        let epochs = cache(&[(1, 0), (3, 100)]);
        let decoded = LeaderEpochCache::decode(Path::new("x"), epochs.encode().as_bytes()).unwrap();
        assert_eq!(decoded, epochs.entries());
        for bad in [
            &b""[..],
            b"0\n",
            b"0\n1\n",
            b"0\n1\n1\n",
            b"0\n2\n3 0\n1 5\n",
            b"0\n2\n1 10\n3 5\n",
            b"0\n1\n-1 0\n",
            b"\xff",
            b"7\n0\n",
        ] {
            assert!(
                LeaderEpochCache::decode(Path::new("x"), bad).is_err(),
                "{bad:?}"
            );
        }
    }
}
