//! DescribeLogDirs (key 35): the data directory with the size of each hosted partition's log and,
//! from v4, the directory's total and usable bytes.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use caudal_protocol::api::ApiVersionRange;
use caudal_protocol::{ApiKey, ResponseKind};
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};

use super::{encode, text};
use crate::broker::Broker;
use crate::connection::Outcome;

pub const VERSIONS: ApiVersionRange = ApiVersionRange::new(ApiKey::DescribeLogDirs, 1, 4);

pub fn handle(
    broker: &Arc<Broker>,
    request: &DescribeLogDirsRequest,
    version: i16,
    correlation_id: i32,
) -> Outcome {
    // Requested partitions by topic; `None` asks for every partition.
    let wanted: Option<BTreeMap<String, Vec<i32>>> = request.topics.as_ref().map(|topics| {
        topics
            .iter()
            .map(|topic| (topic.topic.0.to_string(), topic.partitions.clone()))
            .collect()
    });
    let mut sizes: BTreeMap<String, Vec<(i32, i64)>> = BTreeMap::new();
    for partition in broker.partitions() {
        let topic = &partition.topic_partition.topic;
        let index = partition.topic_partition.partition.0;
        let included = match &wanted {
            None => true,
            Some(wanted) => wanted
                .get(topic.as_str())
                .is_some_and(|partitions| partitions.contains(&index)),
        };
        if included {
            let size = i64::try_from(partition.log.size_bytes()).unwrap_or(i64::MAX);
            sizes
                .entry(topic.to_string())
                .or_default()
                .push((index, size));
        }
    }
    let topics = sizes
        .into_iter()
        .map(|(name, mut partitions)| {
            partitions.sort_unstable();
            DescribeLogDirsTopic::default()
                .with_name(TopicName(text(name)))
                .with_partitions(
                    partitions
                        .into_iter()
                        .map(|(index, size)| {
                            DescribeLogDirsPartition::default()
                                .with_partition_index(index)
                                .with_partition_size(size)
                                .with_offset_lag(0)
                                .with_is_future_key(false)
                        })
                        .collect(),
                )
        })
        .collect();
    let dir = &broker.config.data_dir;
    let shown = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.clone());
    let (total_bytes, usable_bytes) = if version >= 4 {
        disk_space(dir).unwrap_or((-1, -1))
    } else {
        (-1, -1)
    };
    let result = DescribeLogDirsResult::default()
        .with_error_code(0)
        .with_log_dir(text(shown.display().to_string()))
        .with_topics(topics)
        .with_total_bytes(total_bytes)
        .with_usable_bytes(usable_bytes);
    encode(
        correlation_id,
        ApiKey::DescribeLogDirs,
        version,
        ResponseKind::DescribeLogDirs(
            DescribeLogDirsResponse::default()
                .with_error_code(0)
                .with_results(vec![result]),
        ),
    )
}

/// The file system's total and available bytes for `path`.
fn disk_space(path: &Path) -> Option<(i64, i64)> {
    let stats = rustix::fs::statvfs(path).ok()?;
    let block = u128::from(stats.f_frsize);
    let bytes = |blocks: u64| (u128::from(blocks) * block).min(i64::MAX as u128) as i64;
    Some((bytes(stats.f_blocks), bytes(stats.f_bavail)))
}
