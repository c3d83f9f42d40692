//! Metadata (key 3): brokers, cluster id, controller, and topics with their partitions, served
//! from the metadata image. Unknown topics are auto-created when `auto.create.topics.enable` is on
//! and the request allows it, as Kafka does (only Metadata creates topics; Produce does not).

use std::sync::Arc;

use caudal_controller::decisions::{NewTopic, TopicDefaults, validate_topic_name};
use caudal_metadata::{MetadataImage, TopicImage};
use caudal_model::TopicPartition;
use caudal_protocol::api::ApiVersionRange;
use caudal_protocol::{ApiKey, ErrorCode, ResponseKind};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::{AUTHORIZED_OPERATIONS_OMITTED, encode, text};
use crate::broker::Broker;
use crate::connection::Outcome;
use crate::errors::metadata_error_code;

pub const VERSIONS: ApiVersionRange = ApiVersionRange::new(ApiKey::Metadata, 0, 13);

pub async fn handle(
    broker: Arc<Broker>,
    request: MetadataRequest,
    version: i16,
    correlation_id: i32,
) -> Outcome {
    // v0: an empty list means all topics; v1+: null means all topics.
    let requested: Option<Vec<(Option<String>, Uuid)>> = match request.topics {
        None => None,
        Some(topics) if topics.is_empty() && version == 0 => None,
        Some(topics) => Some(
            topics
                .into_iter()
                .map(|topic| (topic.name.map(|name| name.0.to_string()), topic.topic_id))
                .collect(),
        ),
    };
    let allow_auto_create = version < 4 || request.allow_auto_topic_creation;
    let mut image = broker.image();
    let mut created_errors = Vec::new();
    if let Some(requested) = &requested
        && broker.config.auto_create_topics
        && allow_auto_create
    {
        let missing: Vec<String> = requested
            .iter()
            .filter_map(|(name, _)| name.clone())
            .filter(|name| image.topic(name).is_none())
            .collect();
        for name in missing {
            if validate_topic_name(&name).is_err() {
                continue;
            }
            if name == crate::groups::OFFSETS_TOPIC {
                // Created with its own settings, as FindCoordinator would.
                if let Err(error) = broker.ensure_offsets_topic().await {
                    tracing::warn!(%error, "creating the consumer offsets topic failed");
                    created_errors.push((name, metadata_error_code(&error)));
                }
                continue;
            }
            let topic = NewTopic {
                name: name.clone(),
                num_partitions: -1,
                replication_factor: -1,
                ..NewTopic::default()
            };
            let defaults = TopicDefaults {
                num_partitions: broker.config.num_partitions,
                replication_factor: broker.config.default_replication_factor,
            };
            match broker.create_topic(topic, defaults, false).await {
                Ok(created) => tracing::info!(
                    topic = %name, partitions = created.num_partitions, "auto-created topic"
                ),
                Err(error) => {
                    tracing::warn!(topic = %name, %error, "auto-creating topic failed");
                    created_errors.push((name, metadata_error_code(&error)));
                }
            }
        }
        image = broker.image();
    }

    let topics = match requested {
        None => image
            .topics()
            .map(|topic| topic_response(&broker, &image, topic))
            .collect(),
        Some(requested) => requested
            .into_iter()
            .map(|(name, topic_id)| match name {
                Some(name) => match image.topic(&name) {
                    Some(topic) => topic_response(&broker, &image, topic),
                    None => {
                        let error = if validate_topic_name(&name).is_err() {
                            ErrorCode::InvalidTopicException
                        } else {
                            created_errors
                                .iter()
                                .find(|(created, _)| *created == name)
                                .map_or(ErrorCode::UnknownTopicOrPartition, |(_, error)| *error)
                        };
                        error_topic(Some(name), Uuid::nil(), error)
                    }
                },
                None => match image.topic_by_id(&topic_id) {
                    Some(topic) => topic_response(&broker, &image, topic),
                    None => error_topic(None, topic_id, ErrorCode::UnknownTopicId),
                },
            })
            .collect(),
    };

    let brokers = image
        .brokers
        .values()
        .map(|registration| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(registration.node_id.0))
                .with_host(text(registration.host.clone()))
                .with_port(registration.port as i32)
                .with_rack(registration.rack.clone().map(text))
        })
        .collect();
    let response = MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(image.cluster_id.clone().map(text))
        .with_controller_id(BrokerId(broker.config.node_id.0))
        .with_topics(topics)
        .with_cluster_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED);
    encode(
        correlation_id,
        ApiKey::Metadata,
        version,
        ResponseKind::Metadata(response),
    )
}

fn error_topic(name: Option<String>, topic_id: Uuid, error: ErrorCode) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_error_code(error.code())
        .with_name(name.map(|name| TopicName(StrBytes::from_string(name))))
        .with_topic_id(topic_id)
        .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}

fn topic_response(
    broker: &Broker,
    image: &MetadataImage,
    topic: &TopicImage,
) -> MetadataResponseTopic {
    let brokers = &image.brokers;
    let own_id = broker.config.node_id;
    let partitions = topic
        .partitions
        .iter()
        .map(|(index, registration)| {
            // A replica is offline when its broker is not registered, or (for this broker) when
            // its log could not be hosted.
            let own_log_offline =
                broker.is_offline(&TopicPartition::new(topic.name.clone(), *index));
            let replica_offline = |replica: &caudal_model::NodeId| {
                !brokers.contains_key(replica) || (*replica == own_id && own_log_offline)
            };
            let leader_alive = !replica_offline(&registration.leader);
            let offline: Vec<BrokerId> = registration
                .replicas
                .iter()
                .filter(|replica| replica_offline(replica))
                .map(|replica| BrokerId(replica.0))
                .collect();
            let error = if leader_alive {
                0
            } else {
                ErrorCode::LeaderNotAvailable.code()
            };
            MetadataResponsePartition::default()
                .with_error_code(error)
                .with_partition_index(index.0)
                .with_leader_id(BrokerId(if leader_alive {
                    registration.leader.0
                } else {
                    -1
                }))
                .with_leader_epoch(registration.leader_epoch.0)
                .with_replica_nodes(
                    registration
                        .replicas
                        .iter()
                        .map(|r| BrokerId(r.0))
                        .collect(),
                )
                .with_isr_nodes(registration.isr.iter().map(|r| BrokerId(r.0)).collect())
                .with_offline_replicas(offline)
        })
        .collect();
    MetadataResponseTopic::default()
        .with_error_code(0)
        .with_name(Some(TopicName(StrBytes::from_string(topic.name.clone()))))
        .with_topic_id(topic.topic_id)
        .with_is_internal(matches!(
            topic.name.as_str(),
            "__consumer_offsets" | "__transaction_state"
        ))
        .with_partitions(partitions)
        .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}
