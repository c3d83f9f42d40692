//! ElectLeaders (key 43): preferred (0) or unclean (1) leader election, decided by the controller
//! (`kafka-leader-election.sh`, `Admin.electLeaders`).
//!
//! As Kafka's controller: a named partition always gets a result (ELECTION_NOT_NEEDED when it
//! already has the leader asked for, PREFERRED_LEADER_NOT_AVAILABLE when the first replica is
//! not in the ISR or not an active broker, ELIGIBLE_LEADERS_NOT_AVAILABLE when an unclean
//! election finds no active replica, UNKNOWN_TOPIC_OR_PARTITION); a null topic list elects
//! over every partition and reports all but those that needed no election. An unknown election
//! type is INVALID_REQUEST for the whole request. v0 has no election type (preferred) and no
//! top-level error code.

use std::sync::Arc;

use caudal_controller::command::{Command, CommandReply};
use caudal_controller::replication::{ElectionResult, ElectionType, PartitionError, PartitionRef};
use caudal_model::PartitionIndex;
use caudal_protocol::api::ApiVersionRange;
use caudal_protocol::error_response::error_response;
use caudal_protocol::{ApiKey, ErrorCode, RequestKind, ResponseKind};
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse, TopicName};

use super::submit_expecting;
use super::{encode, text};
use crate::broker::Broker;
use crate::connection::Outcome;

pub const VERSIONS: ApiVersionRange = ApiVersionRange::new(ApiKey::ElectLeaders, 0, 2);

pub async fn handle(
    broker: Arc<Broker>,
    request: ElectLeadersRequest,
    version: i16,
    correlation_id: i32,
) -> Outcome {
    let election_type = match request.election_type {
        0 => ElectionType::Preferred,
        1 => ElectionType::Unclean,
        _ => return refuse(request, version, correlation_id, ErrorCode::InvalidRequest),
    };
    // A null list means every partition. The controller is asked about each one by name so
    // that refusals come back too (Kafka reports them); the ones that needed no election, or
    // disappeared meanwhile, are left out as Kafka leaves them out.
    let (targets, report_all) = match &request.topic_partitions {
        Some(topics) => (
            topics
                .iter()
                .flat_map(|topic| {
                    topic.partitions.iter().map(|partition| PartitionRef {
                        topic: topic.topic.0.to_string(),
                        partition: PartitionIndex(*partition),
                    })
                })
                .collect::<Vec<_>>(),
            true,
        ),
        None => (every_partition(&broker), false),
    };
    let results = if targets.is_empty() {
        Vec::new()
    } else {
        let command = Command::ElectLeaders {
            election_type,
            partitions: Some(targets.clone()),
        };
        match submit_expecting(&broker, command, "leader election", |reply| match reply {
            CommandReply::ElectLeaders(results) => Ok(results),
            other => Err(other),
        })
        .await
        {
            Ok(results) => results,
            Err(code) => return refuse(request, version, correlation_id, code),
        }
    };
    for result in &results {
        if let Ok(leader) = result.result {
            tracing::info!(
                topic = %result.partition.topic, partition = result.partition.partition.0,
                leader = leader.0, ?election_type, "leader elected"
            );
        }
    }
    let topics = if report_all {
        answer_named(&request, &targets, results)
    } else {
        answer_all(results)
    };
    let response = ElectLeadersResponse::default()
        .with_error_code(0)
        .with_replica_election_results(topics);
    encode(
        correlation_id,
        ApiKey::ElectLeaders,
        version,
        ResponseKind::ElectLeaders(response),
    )
}

/// Every partition of every topic in this broker's image, in topic and partition order.
fn every_partition(broker: &Broker) -> Vec<PartitionRef> {
    let image = broker.image();
    image
        .topics()
        .flat_map(|topic| {
            topic.partitions.keys().map(|partition| PartitionRef {
                topic: topic.name.clone(),
                partition: *partition,
            })
        })
        .collect()
}

/// One partition's result as the wire carries it. Kafka sends a message only with
/// UNKNOWN_TOPIC_OR_PARTITION; the election errors go with their code alone.
fn partition_result(
    partition: i32,
    result: &Result<caudal_model::NodeId, PartitionError>,
) -> PartitionResult {
    let answer = PartitionResult::default().with_partition_id(partition);
    match result {
        Ok(_) => answer.with_error_code(0).with_error_message(None),
        Err(error @ PartitionError::UnknownTopicOrPartition) => answer
            .with_error_code(error.code())
            .with_error_message(Some(text(error.to_string()))),
        Err(error) => answer
            .with_error_code(error.code())
            .with_error_message(None),
    }
}

/// The answer to a request naming its partitions: one entry per requested topic, one result
/// per requested partition, in request order. The controller answers each named partition in
/// order; a missing answer (never expected) is UNKNOWN_SERVER_ERROR.
fn answer_named(
    request: &ElectLeadersRequest,
    targets: &[PartitionRef],
    results: Vec<ElectionResult>,
) -> Vec<ReplicaElectionResult> {
    let mut results = results.into_iter();
    let mut targets = targets.iter();
    request
        .topic_partitions
        .iter()
        .flatten()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|partition| {
                    let target = targets.next();
                    match results.next() {
                        Some(result) if Some(&result.partition) == target => {
                            partition_result(*partition, &result.result)
                        }
                        _ => PartitionResult::default()
                            .with_partition_id(*partition)
                            .with_error_code(ErrorCode::UnknownServerError.code())
                            .with_error_message(Some(text("the controller gave no result"))),
                    }
                })
                .collect();
            ReplicaElectionResult::default()
                .with_topic(topic.topic.clone())
                .with_partition_result(partitions)
        })
        .collect()
}

/// The answer to an election over every partition: only the partitions that got a leader or
/// a refusal other than ELECTION_NOT_NEEDED, grouped by topic; a topic without any is left out.
fn answer_all(results: Vec<ElectionResult>) -> Vec<ReplicaElectionResult> {
    let mut topics: Vec<ReplicaElectionResult> = Vec::new();
    for result in results {
        if matches!(
            result.result,
            Err(PartitionError::ElectionNotNeeded | PartitionError::UnknownTopicOrPartition)
        ) {
            continue;
        }
        let answer = partition_result(result.partition.partition.0, &result.result);
        match topics.last_mut() {
            Some(topic) if topic.topic.0.as_str() == result.partition.topic => {
                topic.partition_result.push(answer);
            }
            _ => topics.push(
                ReplicaElectionResult::default()
                    .with_topic(TopicName(text(result.partition.topic)))
                    .with_partition_result(vec![answer]),
            ),
        }
    }
    topics
}

/// The whole request refused with `code`: on every named partition, and at the top level from
/// v1.
fn refuse(
    request: ElectLeadersRequest,
    version: i16,
    correlation_id: i32,
    code: ErrorCode,
) -> Outcome {
    match error_response(&RequestKind::ElectLeaders(request), version, code) {
        Some(body) => encode(correlation_id, ApiKey::ElectLeaders, version, body),
        None => Err("ElectLeaders has no error response".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use caudal_model::NodeId;

    fn result(topic: &str, partition: i32, outcome: Result<i32, PartitionError>) -> ElectionResult {
        ElectionResult {
            partition: PartitionRef {
                topic: topic.into(),
                partition: PartitionIndex(partition),
            },
            result: outcome.map(NodeId),
        }
    }

    #[test]
    fn an_election_over_everything_leaves_out_what_needed_none() {
        let topics = answer_all(vec![
            result("a", 0, Err(PartitionError::ElectionNotNeeded)),
            result("a", 1, Ok(2)),
            result("a", 2, Err(PartitionError::PreferredLeaderNotAvailable)),
            result("b", 0, Err(PartitionError::ElectionNotNeeded)),
            result("c", 0, Err(PartitionError::UnknownTopicOrPartition)),
        ]);
        assert_eq!(topics.len(), 1);
        assert_eq!(topics[0].topic.0.as_str(), "a");
        let codes: Vec<(i32, i16)> = topics[0]
            .partition_result
            .iter()
            .map(|p| (p.partition_id, p.error_code))
            .collect();
        assert_eq!(codes, vec![(1, 0), (2, 80)]);
        assert_eq!(topics[0].partition_result[1].error_message, None);
    }

    #[test]
    fn named_partitions_each_get_their_result_in_request_order() {
        use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
        let request = ElectLeadersRequest::default().with_topic_partitions(Some(vec![
            TopicPartitions::default()
                .with_topic(TopicName(text("a")))
                .with_partitions(vec![1, 0]),
            TopicPartitions::default()
                .with_topic(TopicName(text("zz")))
                .with_partitions(vec![0]),
        ]));
        let targets = vec![
            result("a", 1, Ok(0)).partition,
            result("a", 0, Ok(0)).partition,
            result("zz", 0, Ok(0)).partition,
        ];
        let topics = answer_named(
            &request,
            &targets,
            vec![
                result("a", 1, Err(PartitionError::ElectionNotNeeded)),
                result("a", 0, Ok(3)),
                result("zz", 0, Err(PartitionError::UnknownTopicOrPartition)),
            ],
        );
        let codes: Vec<Vec<(i32, i16)>> = topics
            .iter()
            .map(|t| {
                t.partition_result
                    .iter()
                    .map(|p| (p.partition_id, p.error_code))
                    .collect()
            })
            .collect();
        assert_eq!(codes, vec![vec![(1, 84), (0, 0)], vec![(0, 3)]]);
        assert!(topics[1].partition_result[0].error_message.is_some());
    }
}
