//! The metadata log: one append-only file of framed [`MetadataRecord`]s.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use caudal_metadata::{MetadataRecord, RecordDecodeError, decode_record, encode_record};

/// Name of the metadata log file inside its directory.
pub const METADATA_LOG_FILE: &str = "metadata.log";

/// Why the metadata log could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum MetadataLogError {
    #[error("metadata log I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What replay found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplayReport {
    pub records: usize,
    pub truncated_bytes: u64,
}

/// An open metadata log, positioned for appends.
pub struct MetadataLog {
    path: PathBuf,
    file: File,
}

impl MetadataLog {
    /// Opens (creating) the log in `dir`, returning every valid record in order. A torn or
    /// corrupt tail is truncated away and reported.
    pub fn open(dir: &Path) -> Result<(Self, Vec<MetadataRecord>, ReplayReport), MetadataLogError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| MetadataLogError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let path = dir.join(METADATA_LOG_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io(&path))?;
        let mut contents = Vec::new();
        file.read_to_end(&mut contents).map_err(io(&path))?;
        let mut records = Vec::new();
        let mut position = 0;
        while position < contents.len() {
            match decode_record(&contents[position..]) {
                Ok((record, size)) => {
                    records.push(record);
                    position += size;
                }
                Err(error) => {
                    let truncated = (contents.len() - position) as u64;
                    match error {
                        RecordDecodeError::Incomplete { .. } => tracing::warn!(
                            path = %path.display(), valid_bytes = position, truncated_bytes = truncated,
                            "metadata log ends in a torn record; truncating it"
                        ),
                        _ => tracing::error!(
                            path = %path.display(), valid_bytes = position, truncated_bytes = truncated,
                            %error, "metadata log is corrupt; truncating at the first bad record"
                        ),
                    }
                    file.set_len(position as u64).map_err(io(&path))?;
                    file.sync_all().map_err(io(&path))?;
                    let report = ReplayReport {
                        records: records.len(),
                        truncated_bytes: truncated,
                    };
                    return Ok((Self { path, file }, records, report));
                }
            }
        }
        if contents.is_empty()
            && let Ok(directory) = File::open(dir)
        {
            // Make the new file's directory entry durable.
            directory.sync_all().map_err(io(dir))?;
        }
        let report = ReplayReport {
            records: records.len(),
            truncated_bytes: 0,
        };
        Ok((Self { path, file }, records, report))
    }

    /// Appends records and fsyncs them before returning.
    pub fn append(&mut self, records: &[MetadataRecord]) -> Result<(), MetadataLogError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        for record in records {
            buf.extend_from_slice(&encode_record(record));
        }
        let path = self.path.clone();
        let io = move |source| MetadataLogError::Io { path, source };
        self.file.write_all(&buf).map_err(io.clone())?;
        self.file.sync_data().map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn topic(name: &str) -> MetadataRecord {
        MetadataRecord::Topic {
            name: name.into(),
            topic_id: Uuid::new_v4(),
        }
    }

    #[test]
    fn appends_replay_and_a_torn_tail_is_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, records, _) = MetadataLog::open(dir.path()).unwrap();
        assert!(records.is_empty());
        let written = vec![topic("a"), topic("b")];
        log.append(&written).unwrap();
        drop(log);
        let (_, records, report) = MetadataLog::open(dir.path()).unwrap();
        assert_eq!(records, written);
        assert_eq!(report.truncated_bytes, 0);

        let path = dir.path().join(METADATA_LOG_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&encode_record(&topic("c"))[..10]);
        std::fs::write(&path, &bytes).unwrap();
        let (mut log, records, report) = MetadataLog::open(dir.path()).unwrap();
        assert_eq!(records, written);
        assert_eq!(report.truncated_bytes, 10);
        log.append(&[topic("d")]).unwrap();
        drop(log);
        let (_, records, _) = MetadataLog::open(dir.path()).unwrap();
        assert_eq!(records.len(), 3);
    }
}
