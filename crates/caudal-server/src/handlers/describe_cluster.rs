//! DescribeCluster (key 60): the cluster id, the active controller and the registered brokers,
//! from the metadata image. Brokers answer for broker endpoints only (v1 `endpoint_type` 1);
//! asking a broker for controller endpoints is UNSUPPORTED_ENDPOINT_TYPE, as in Kafka.

use std::sync::Arc;

use caudal_protocol::api::ApiVersionRange;
use caudal_protocol::{ApiKey, ErrorCode, ResponseKind};
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::{AUTHORIZED_OPERATIONS_OMITTED, encode, text};
use crate::broker::Broker;
use crate::connection::Outcome;

pub const VERSIONS: ApiVersionRange = ApiVersionRange::new(ApiKey::DescribeCluster, 0, 2);

/// Without an authorizer every cluster operation is allowed: CREATE (5), ALTER (7), DESCRIBE (8),
/// CLUSTER_ACTION (9), DESCRIBE_CONFIGS (10), ALTER_CONFIGS (11), IDEMPOTENT_WRITE (12).
const CLUSTER_OPERATIONS_ALL: i32 =
    (1 << 5) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 10) | (1 << 11) | (1 << 12);
/// `endpoint_type` values.
const ENDPOINT_BROKERS: i8 = 1;

pub fn handle(
    broker: &Arc<Broker>,
    request: &DescribeClusterRequest,
    version: i16,
    correlation_id: i32,
) -> Outcome {
    let response = if version >= 1 && request.endpoint_type != ENDPOINT_BROKERS {
        DescribeClusterResponse::default()
            .with_error_code(ErrorCode::UnsupportedEndpointType.code())
            .with_error_message(Some(text(
                "The broker does not answer for controller endpoints.",
            )))
            .with_endpoint_type(request.endpoint_type)
            .with_controller_id(BrokerId(-1))
            .with_cluster_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
    } else {
        let image = broker.image();
        // Fenced brokers only when asked for (KIP-1073's include_fenced_brokers, v2).
        let brokers = image
            .brokers
            .values()
            .filter(|registered| request.include_fenced_brokers || !registered.fenced)
            .map(|registered| {
                DescribeClusterBroker::default()
                    .with_broker_id(BrokerId(registered.node_id.0))
                    .with_host(text(registered.host.clone()))
                    .with_port(i32::from(registered.port))
                    .with_rack(registered.rack.clone().map(text))
                    .with_is_fenced(registered.fenced)
            })
            .collect();
        DescribeClusterResponse::default()
            .with_error_code(0)
            .with_endpoint_type(ENDPOINT_BROKERS)
            .with_cluster_id(text(image.cluster_id.clone().unwrap_or_default()))
            .with_controller_id(BrokerId(
                broker
                    .metadata
                    .active_controller(broker.config.node_id)
                    .map_or(-1, |node| node.0),
            ))
            .with_brokers(brokers)
            .with_cluster_authorized_operations(if request.include_cluster_authorized_operations {
                CLUSTER_OPERATIONS_ALL
            } else {
                AUTHORIZED_OPERATIONS_OMITTED
            })
    };
    encode(
        correlation_id,
        ApiKey::DescribeCluster,
        version,
        ResponseKind::DescribeCluster(response),
    )
}
