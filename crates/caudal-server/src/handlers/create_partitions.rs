//! CreatePartitions (key 37): grow a topic, validate-only included.

use std::sync::Arc;

use caudal_controller::command::Command;
use caudal_model::NodeId;
use caudal_protocol::api::ApiVersionRange;
use caudal_protocol::{ApiKey, ResponseKind};
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::{encode, text};
use crate::broker::Broker;
use crate::connection::Outcome;
use crate::errors::metadata_error_code;

pub const VERSIONS: ApiVersionRange = ApiVersionRange::new(ApiKey::CreatePartitions, 0, 3);

pub async fn handle(
    broker: Arc<Broker>,
    request: CreatePartitionsRequest,
    version: i16,
    correlation_id: i32,
) -> Outcome {
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let count = topic.count;
        let assignments: Option<Vec<Vec<NodeId>>> = topic.assignments.map(|assignments| {
            assignments
                .iter()
                .map(|assignment| {
                    assignment
                        .broker_ids
                        .iter()
                        .map(|id| NodeId(id.0))
                        .collect()
                })
                .collect()
        });
        let outcome = broker
            .submit(Command::CreatePartitions {
                topic: name.clone(),
                count,
                assignments,
                validate_only: request.validate_only,
            })
            .await;
        let result = CreatePartitionsTopicResult::default().with_name(topic.name);
        results.push(match outcome {
            Ok(_) => {
                if !request.validate_only {
                    tracing::info!(topic = %name, partitions = count, "added partitions");
                }
                result.with_error_code(0)
            }
            Err(error) => result
                .with_error_code(metadata_error_code(&error).code())
                .with_error_message(Some(text(error.to_string()))),
        });
    }
    let response = CreatePartitionsResponse::default().with_results(results);
    encode(
        correlation_id,
        ApiKey::CreatePartitions,
        version,
        ResponseKind::CreatePartitions(response),
    )
}
