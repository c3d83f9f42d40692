//! DeleteTopics (key 20), by name (all versions) and by topic id (v6+).

use std::sync::Arc;

use caudal_controller::command::{Command, CommandReply};
use caudal_controller::decisions::TopicRef;
use caudal_protocol::api::ApiVersionRange;
use caudal_protocol::{ApiKey, ResponseKind};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::{encode, text};
use crate::broker::Broker;
use crate::connection::Outcome;
use crate::errors::metadata_error_code;

pub const VERSIONS: ApiVersionRange = ApiVersionRange::new(ApiKey::DeleteTopics, 1, 6);

pub async fn handle(
    broker: Arc<Broker>,
    request: DeleteTopicsRequest,
    version: i16,
    correlation_id: i32,
) -> Outcome {
    let targets: Vec<TopicRef> = if version >= 6 {
        request
            .topics
            .into_iter()
            .map(|topic| match topic.name {
                Some(name) => TopicRef::Name(name.0.to_string()),
                None => TopicRef::Id(topic.topic_id),
            })
            .collect()
    } else {
        request
            .topic_names
            .into_iter()
            .map(|name| TopicRef::Name(name.0.to_string()))
            .collect()
    };
    let enabled = broker.config.delete_topic_enable;
    let mut results = Vec::with_capacity(targets.len());
    for target in targets {
        let (name, topic_id) = match &target {
            TopicRef::Name(name) => (Some(name.clone()), uuid::Uuid::nil()),
            TopicRef::Id(topic_id) => (None, *topic_id),
        };
        let result = DeletableTopicResult::default()
            .with_name(name.map(|name| TopicName(StrBytes::from_string(name))))
            .with_topic_id(topic_id);
        let outcome = broker
            .submit(Command::DeleteTopic {
                topic: target,
                deletion_enabled: enabled,
            })
            .await
            .and_then(|reply| match reply {
                CommandReply::TopicDeleted { name, topic_id } => Ok((name, topic_id)),
                other => Err(crate::broker::unexpected_reply(other)),
            });
        results.push(match outcome {
            Ok((name, topic_id)) => {
                tracing::info!(topic = %name, %topic_id, "deleted topic");
                result
                    .with_name(Some(TopicName(StrBytes::from_string(name))))
                    .with_topic_id(topic_id)
                    .with_error_code(0)
            }
            Err(error) => result
                .with_error_code(metadata_error_code(&error).code())
                .with_error_message(Some(text(error.to_string()))),
        });
    }
    let response = DeleteTopicsResponse::default().with_responses(results);
    encode(
        correlation_id,
        ApiKey::DeleteTopics,
        version,
        ResponseKind::DeleteTopics(response),
    )
}
