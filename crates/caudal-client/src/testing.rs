//! A scriptable fake broker for unit tests: real sockets and real frames, answers from a closure.

use std::sync::atomic::{AtomicI16, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

use caudal_protocol::api::{ApiVersionRange, api_versions_response};
use caudal_protocol::frame::frame_codec;
use caudal_protocol::kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use caudal_protocol::kafka_protocol::messages::{ApiKey, BrokerId, MetadataResponse, ResponseKind};
use caudal_protocol::kafka_protocol::protocol::StrBytes;
use caudal_protocol::request::{DecodedRequest, decode_request};
use caudal_protocol::response::encode_response;
use caudal_protocol::{ErrorCode, RequestKind};
use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio_util::codec::FramedRead;

type Handler = dyn Fn(&DecodedRequest) -> Option<ResponseKind> + Send + Sync;

/// The APIs a fake advertises unless told otherwise.
pub const DEFAULT_APIS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 0, 11),
    (ApiKey::Fetch, 0, 12),
    (ApiKey::ListOffsets, 0, 8),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::CreateTopics, 0, 7),
    (ApiKey::DeleteTopics, 0, 6),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DescribeConfigs, 0, 4),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DeleteRecords, 0, 2),
];

#[derive(Default)]
struct Log {
    api_versions_seen: Vec<i16>,
    requests: Vec<DecodedRequest>,
}

struct Shared {
    api_versions_max: AtomicI16,
    correlation_offset: AtomicI32,
    apis: Mutex<Vec<(ApiKey, i16, i16)>>,
    log: Mutex<Log>,
}

/// A node as a fake's Metadata answers name it.
#[derive(Debug, Clone)]
pub struct FakeNode {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
}

pub struct FakeBroker {
    address: String,
    listener: Mutex<Option<TcpListener>>,
    shared: Arc<Shared>,
}

impl FakeBroker {
    pub async fn bind() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("local address").to_string();
        Self {
            address,
            listener: Mutex::new(Some(listener)),
            shared: Arc::new(Shared {
                api_versions_max: AtomicI16::new(4),
                correlation_offset: AtomicI32::new(0),
                apis: Mutex::new(DEFAULT_APIS.to_vec()),
                log: Mutex::new(Log::default()),
            }),
        }
    }

    pub async fn start(
        handler: impl Fn(&DecodedRequest) -> Option<ResponseKind> + Send + Sync + 'static,
    ) -> Self {
        let broker = Self::bind().await;
        broker.serve(handler);
        broker
    }

    pub fn address(&self) -> String {
        self.address.clone()
    }

    pub fn node(&self, node_id: i32) -> FakeNode {
        let (host, port) = self.address.rsplit_once(':').expect("host:port");
        FakeNode {
            node_id,
            host: host.to_owned(),
            port: port.parse().expect("port"),
        }
    }

    pub fn set_api_versions_max(&self, max: i16) {
        self.shared.api_versions_max.store(max, Ordering::SeqCst);
    }

    pub fn set_correlation_offset(&self, offset: i32) {
        self.shared
            .correlation_offset
            .store(offset, Ordering::SeqCst);
    }

    pub fn set_apis(&self, apis: &[(ApiKey, i16, i16)]) {
        *self.shared.apis.lock().unwrap() = apis.to_vec();
    }

    pub fn api_versions_seen(&self) -> Vec<i16> {
        self.shared.log.lock().unwrap().api_versions_seen.clone()
    }

    pub fn requests_of(&self, api_key: ApiKey) -> usize {
        self.shared
            .log
            .lock()
            .unwrap()
            .requests
            .iter()
            .filter(|request| request.api_key == api_key)
            .count()
    }

    pub fn requests(&self) -> Vec<DecodedRequest> {
        self.shared.log.lock().unwrap().requests.clone()
    }

    pub fn serve(
        &self,
        handler: impl Fn(&DecodedRequest) -> Option<ResponseKind> + Send + Sync + 'static,
    ) {
        let listener = self
            .listener
            .lock()
            .unwrap()
            .take()
            .expect("serve called once");
        let handler: Arc<Handler> = Arc::new(handler);
        let shared = self.shared.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (read_half, mut write_half) = stream.into_split();
                let handler = handler.clone();
                let shared = shared.clone();
                tokio::spawn(async move {
                    let mut frames = FramedRead::new(read_half, frame_codec(64 << 20));
                    while let Some(Ok(frame)) = frames.next().await {
                        let Ok(request) = decode_request(frame.freeze()) else {
                            return;
                        };
                        let Some(response) = answer(&shared, handler.as_ref(), &request) else {
                            continue;
                        };
                        if write_half.write_all(&response).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
    }
}

fn answer(shared: &Shared, handler: &Handler, request: &DecodedRequest) -> Option<bytes::Bytes> {
    let correlation_id =
        request.correlation_id() + shared.correlation_offset.load(Ordering::SeqCst);
    shared.log.lock().unwrap().requests.push(request.clone());
    if let RequestKind::ApiVersions(_) = request.body {
        shared
            .log
            .lock()
            .unwrap()
            .api_versions_seen
            .push(request.version());
        let max = shared.api_versions_max.load(Ordering::SeqCst);
        let mut table: Vec<ApiVersionRange> = shared
            .apis
            .lock()
            .unwrap()
            .iter()
            .map(|&(key, min, max)| ApiVersionRange::new(key, min, max))
            .collect();
        table.push(ApiVersionRange::new(ApiKey::ApiVersions, 0, max));
        let (error, version) = if request.version() > max {
            (Some(ErrorCode::UnsupportedVersion), 0)
        } else {
            (None, request.version())
        };
        let body = ResponseKind::ApiVersions(api_versions_response(&table, error));
        return encode_response(correlation_id, ApiKey::ApiVersions, version, &body).ok();
    }
    let body = handler(request)?;
    encode_response(correlation_id, request.api_key, request.version(), &body).ok()
}

/// A Metadata response naming `nodes` and, per topic, `(partition, leader)` pairs (leader `-1`:
/// none). Every partition's replicas and ISR are its leader.
pub fn metadata_response(nodes: &[FakeNode], topics: &[(&str, &[(i32, i32)])]) -> MetadataResponse {
    MetadataResponse::default()
        .with_controller_id(BrokerId(nodes.first().map_or(-1, |node| node.node_id)))
        .with_brokers(
            nodes
                .iter()
                .map(|node| {
                    MetadataResponseBroker::default()
                        .with_node_id(BrokerId(node.node_id))
                        .with_host(StrBytes::from_string(node.host.clone()))
                        .with_port(node.port)
                })
                .collect(),
        )
        .with_topics(
            topics
                .iter()
                .map(|(name, partitions)| {
                    MetadataResponseTopic::default()
                        .with_name(Some(StrBytes::from_string((*name).to_owned()).into()))
                        .with_partitions(
                            partitions
                                .iter()
                                .map(|&(index, leader)| {
                                    MetadataResponsePartition::default()
                                        .with_partition_index(index)
                                        .with_leader_id(BrokerId(leader))
                                        .with_error_code(if leader < 0 { 5 } else { 0 })
                                        .with_replica_nodes(vec![BrokerId(leader.max(0))])
                                        .with_isr_nodes(vec![BrokerId(leader.max(0))])
                                })
                                .collect(),
                        )
                })
                .collect(),
        )
}
