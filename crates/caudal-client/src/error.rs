//! The client's one error type, with Kafka error codes carried by name.

use std::time::Duration;

use caudal_protocol::ErrorCode;
use caudal_protocol::kafka_protocol::messages::ApiKey;

/// Kafka's name for an error code, as the broker logs and Kafka's tools print it
/// (`NOT_LEADER_OR_FOLLOWER`). Codes this codec does not know read as `UNKNOWN_ERROR_CODE_<n>`.
pub fn error_name(code: ErrorCode) -> String {
    match code {
        ErrorCode::Unknown(raw) => format!("UNKNOWN_ERROR_CODE_{raw}"),
        known => {
            // The codec names its variants in CamelCase after Kafka's SCREAMING_SNAKE names.
            let camel = format!("{known:?}");
            let mut name = String::with_capacity(camel.len() + 8);
            for (index, character) in camel.chars().enumerate() {
                if character.is_ascii_uppercase() && index > 0 {
                    name.push('_');
                }
                name.push(character.to_ascii_uppercase());
            }
            name
        }
    }
}

/// A Kafka error code from a response, with what it was about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaError {
    pub code: ErrorCode,
    /// What the error is about: `topic "orders"`, `orders-3`, `InitProducerId`.
    pub context: String,
    /// The broker's error message, when the API carries one.
    pub message: Option<String>,
}

impl KafkaError {
    pub fn new(code: ErrorCode, context: impl Into<String>) -> Self {
        Self {
            code,
            context: context.into(),
            message: None,
        }
    }

    pub fn with_message(mut self, message: Option<String>) -> Self {
        self.message = message.filter(|message| !message.is_empty());
        self
    }

    /// Kafka's name for the code.
    pub fn name(&self) -> String {
        error_name(self.code)
    }

    pub fn is_retriable(&self) -> bool {
        self.code.is_retriable()
    }
}

impl std::fmt::Display for KafkaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.name(),
            self.code.code(),
            self.context
        )?;
        if let Some(message) = &self.message {
            write!(f, ": {message}")?;
        }
        Ok(())
    }
}

/// Everything that can go wrong talking to a Kafka cluster.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The broker answered with a Kafka error code.
    #[error("{0}")]
    Kafka(KafkaError),
    /// No bootstrap server could be reached.
    #[error("could not connect to any bootstrap server ({servers}): {last_error}")]
    NoBootstrapServer { servers: String, last_error: String },
    /// Connecting to a broker failed or took longer than the connect timeout.
    #[error("cannot connect to {broker}: {reason}")]
    Connect { broker: String, reason: String },
    /// The connection to a broker failed while a request was outstanding.
    #[error("connection to {broker} lost: {reason}")]
    ConnectionLost { broker: String, reason: String },
    /// No response arrived within the request timeout; the connection has been closed.
    #[error("{api_key:?} request to {broker} timed out after {} ms", timeout.as_millis())]
    Timeout {
        broker: String,
        api_key: ApiKey,
        timeout: Duration,
    },
    /// The broker does not serve any version of an API that this client can speak.
    #[error(
        "{broker} does not support {api_key:?} in a version this client speaks \
         (broker {broker_min}..={broker_max}, client {client_min}..={client_max})"
    )]
    UnsupportedVersion {
        broker: String,
        api_key: ApiKey,
        broker_min: i16,
        broker_max: i16,
        client_min: i16,
        client_max: i16,
    },
    /// The broker does not advertise an API at all.
    #[error("{broker} does not serve {api_key:?}")]
    UnsupportedApi { broker: String, api_key: ApiKey },
    /// A response that does not follow the protocol (wrong correlation id, undecodable body).
    #[error("protocol error from {broker}: {reason}")]
    Protocol { broker: String, reason: String },
    /// Encoding a request failed (a value does not fit the negotiated version).
    #[error("cannot encode {api_key:?} v{version}: {reason}")]
    Encode {
        api_key: ApiKey,
        version: i16,
        reason: String,
    },
    /// Record batches in a fetch response could not be decoded.
    #[error("corrupt record batch in {topic}-{partition} at offset {offset}: {reason}")]
    CorruptRecords {
        topic: String,
        partition: i32,
        offset: i64,
        reason: String,
    },
    /// Metadata has no such topic or partition, or no leader for it, after the bounded retries.
    #[error("no leader for {topic}-{partition} after {attempts} metadata refreshes")]
    NoLeader {
        topic: String,
        partition: i32,
        attempts: u32,
    },
    /// A produced record was not acknowledged within the delivery timeout.
    #[error(
        "{records} record(s) for {topic}-{partition} not acknowledged within {} ms{}",
        timeout.as_millis(),
        last_error.as_ref().map(|error| format!(" (last error: {error})")).unwrap_or_default()
    )]
    DeliveryTimeout {
        topic: String,
        partition: i32,
        records: usize,
        timeout: Duration,
        last_error: Option<String>,
    },
    /// A caller-supplied value is invalid.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The producer or consumer has been closed.
    #[error("{0} is closed")]
    Closed(&'static str),
}

impl ClientError {
    /// The Kafka error code, if the broker sent one.
    pub fn kafka_code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Kafka(error) => Some(error.code),
            _ => None,
        }
    }

    /// Whether retrying (after a metadata refresh) may succeed: retriable Kafka codes and lost or
    /// timed-out connections.
    pub fn is_retriable(&self) -> bool {
        match self {
            ClientError::Kafka(error) => error.is_retriable(),
            ClientError::ConnectionLost { .. }
            | ClientError::Timeout { .. }
            | ClientError::Connect { .. }
            | ClientError::NoLeader { .. } => true,
            ClientError::NoBootstrapServer { .. }
            | ClientError::UnsupportedVersion { .. }
            | ClientError::UnsupportedApi { .. }
            | ClientError::Protocol { .. }
            | ClientError::Encode { .. }
            | ClientError::CorruptRecords { .. }
            | ClientError::DeliveryTimeout { .. }
            | ClientError::InvalidArgument(_)
            | ClientError::Closed(_) => false,
        }
    }

    /// Whether the error means the cached leader is stale and metadata should be refreshed.
    pub fn needs_metadata_refresh(&self) -> bool {
        match self {
            ClientError::Kafka(error) => matches!(
                error.code,
                ErrorCode::NotLeaderOrFollower
                    | ErrorCode::UnknownTopicOrPartition
                    | ErrorCode::LeaderNotAvailable
                    | ErrorCode::FencedLeaderEpoch
                    | ErrorCode::UnknownLeaderEpoch
                    | ErrorCode::UnknownTopicId
                    | ErrorCode::InconsistentTopicId
                    | ErrorCode::KafkaStorageError
                    | ErrorCode::NotController
            ),
            ClientError::ConnectionLost { .. }
            | ClientError::Connect { .. }
            | ClientError::Timeout { .. }
            | ClientError::NoLeader { .. } => true,
            _ => false,
        }
    }
}

impl From<KafkaError> for ClientError {
    fn from(error: KafkaError) -> Self {
        ClientError::Kafka(error)
    }
}

/// `Ok(())` for error code 0, else the Kafka error about `context`.
pub(crate) fn check_code(
    code: i16,
    context: impl FnOnce() -> String,
    message: Option<&caudal_protocol::kafka_protocol::protocol::StrBytes>,
) -> Result<(), ClientError> {
    match ErrorCode::try_from_code(code) {
        None => Ok(()),
        Some(code) => Err(ClientError::Kafka(
            KafkaError::new(code, context()).with_message(message.map(|m| m.to_string())),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_errors_as_kafka_does() {
        assert_eq!(
            error_name(ErrorCode::NotLeaderOrFollower),
            "NOT_LEADER_OR_FOLLOWER"
        );
        assert_eq!(
            error_name(ErrorCode::InvalidTopicException),
            "INVALID_TOPIC_EXCEPTION"
        );
        assert_eq!(
            error_name(ErrorCode::TopicAlreadyExists),
            "TOPIC_ALREADY_EXISTS"
        );
        assert_eq!(
            error_name(ErrorCode::Unknown(4242)),
            "UNKNOWN_ERROR_CODE_4242"
        );
    }

    #[test]
    fn displays_name_code_context_and_message() {
        let error = ClientError::from(
            KafkaError::new(ErrorCode::TopicAlreadyExists, "topic \"orders\"")
                .with_message(Some("Topic 'orders' already exists.".into())),
        );
        assert_eq!(
            error.to_string(),
            "TOPIC_ALREADY_EXISTS (36): topic \"orders\": Topic 'orders' already exists."
        );
        assert_eq!(error.kafka_code(), Some(ErrorCode::TopicAlreadyExists));
        assert!(!error.is_retriable());
    }

    #[test]
    fn leader_errors_ask_for_a_metadata_refresh() {
        let stale = ClientError::from(KafkaError::new(ErrorCode::NotLeaderOrFollower, "t-0"));
        assert!(stale.needs_metadata_refresh());
        assert!(stale.is_retriable());
        let fatal = ClientError::from(KafkaError::new(ErrorCode::MessageTooLarge, "t-0"));
        assert!(!fatal.needs_metadata_refresh());
        assert!(!fatal.is_retriable());
        assert!(check_code(0, unreachable_context, None).is_ok());
    }

    fn unreachable_context() -> String {
        String::from("never built for code 0")
    }
}
