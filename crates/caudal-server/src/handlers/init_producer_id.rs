//! InitProducerId (key 22): hands an idempotent producer a new producer id with epoch 0. Ids come
//! from blocks the controller allocates durably, so they are never reused across restarts.
//! Transactional ids need the transaction coordinator, which this broker does not have yet.

use std::sync::Arc;

use caudal_protocol::api::ApiVersionRange;
use caudal_protocol::{ApiKey, ErrorCode, ResponseKind};
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::encode;
use crate::broker::Broker;
use crate::connection::Outcome;
use crate::errors::metadata_error_code;

pub const VERSIONS: ApiVersionRange = ApiVersionRange::new(ApiKey::InitProducerId, 0, 5);

pub async fn handle(
    broker: Arc<Broker>,
    request: InitProducerIdRequest,
    version: i16,
    correlation_id: i32,
) -> Outcome {
    let response = if request.transactional_id.is_some() {
        tracing::info!("refusing a transactional producer: transactions are not supported yet");
        failed(ErrorCode::TransactionalIdAuthorizationFailed)
    } else {
        match broker.next_producer_id().await {
            Ok(producer_id) => InitProducerIdResponse::default()
                .with_error_code(0)
                .with_producer_id(ProducerId(producer_id.0))
                .with_producer_epoch(0),
            Err(error) => {
                tracing::error!(%error, "allocating producer ids failed");
                failed(metadata_error_code(&error))
            }
        }
    };
    encode(
        correlation_id,
        ApiKey::InitProducerId,
        version,
        ResponseKind::InitProducerId(response),
    )
}

fn failed(error: ErrorCode) -> InitProducerIdResponse {
    InitProducerIdResponse::default()
        .with_error_code(error.code())
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1)
}
