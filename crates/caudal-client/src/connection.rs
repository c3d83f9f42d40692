//! One TCP connection to one broker: framing, correlation ids, pipelining, request timeouts and the
//! ApiVersions handshake.
//!
//! A writer task owns the socket's write half and a reader task its read half. Callers encode a
//! request, take an in-flight permit (the per-connection bound), and hand the frame to the writer
//! through a bounded channel. The writer records each response-bearing request in a queue *before*
//! writing it, in write order; Kafka answers in request order, so the reader pops the queue's head
//! for every response and checks that the correlation ids agree. Any disagreement, an oversized
//! frame, a timeout or a socket error closes the connection and fails everything outstanding on it.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use caudal_protocol::frame::frame_codec;
use caudal_protocol::kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use caudal_protocol::kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

use crate::error::{ClientError, KafkaError, check_code};
use crate::versions::{NegotiatedVersions, client_range};

/// Frames handed to the writer but not yet written; beyond this, senders wait.
const OUTGOING_QUEUE_MAX: usize = 1024;
/// At most this many frames (or this many bytes) go to the socket in one vectored write.
const WRITE_BATCH_FRAMES_MAX: usize = 64;
const WRITE_BATCH_BYTES_MAX: usize = 4 << 20;

/// How a connection behaves.
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    /// Sent in every request header (`client.id`).
    pub client_id: String,
    /// TCP connect plus the ApiVersions handshake must finish within this.
    pub connect_timeout: Duration,
    /// A response must arrive within this after its request was queued (`request.timeout.ms`).
    pub request_timeout: Duration,
    /// Requests awaiting a response per connection
    /// (`max.in.flight.requests.per.connection`).
    pub in_flight_requests_max: usize,
    /// Largest response frame accepted; a bigger one closes the connection.
    pub response_bytes_max: usize,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        Self {
            client_id: "caudal".to_owned(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            in_flight_requests_max: 5,
            response_bytes_max: 128 << 20,
        }
    }
}

/// A request waiting for its response, in write order.
struct Pending {
    correlation_id: i32,
    reply: oneshot::Sender<BytesMut>,
    _permit: OwnedSemaphorePermit,
}

enum Expect {
    Response(Pending),
    /// `acks=0` produce: no response; the permit is released once the frame is written.
    Nothing(OwnedSemaphorePermit),
}

struct Outgoing {
    head: Bytes,
    tail: Bytes,
    expect: Expect,
}

#[derive(Default)]
struct PendingQueue {
    queue: VecDeque<Pending>,
    /// Set when the connection failed: nothing more is queued, everything queued was dropped.
    closed: bool,
}

struct Shared {
    broker: String,
    cancel: CancellationToken,
    pending: Mutex<PendingQueue>,
    failure: Mutex<Option<String>>,
}

impl Shared {
    /// Records why the connection ended (the first reason wins), fails everything outstanding and
    /// stops both tasks.
    fn fail(&self, reason: String) {
        {
            let mut failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
            if failure.is_none() {
                tracing::debug!(broker = %self.broker, %reason, "connection closed");
                *failure = Some(reason);
            }
        }
        let dropped = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            pending.closed = true;
            std::mem::take(&mut pending.queue)
        };
        drop(dropped);
        self.cancel.cancel();
    }

    fn failure(&self) -> String {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_else(|| "connection closed".to_owned())
    }

    fn lost(&self) -> ClientError {
        ClientError::ConnectionLost {
            broker: self.broker.clone(),
            reason: self.failure(),
        }
    }
}

/// A request encoded once and sendable many times: everything after the correlation id. Each send
/// writes a fresh 12-byte prefix (size, API key, version, correlation id) and then these bytes.
#[derive(Debug, Clone)]
pub struct PreparedRequest {
    pub api_key: ApiKey,
    pub version: i16,
    tail: Bytes,
}

impl PreparedRequest {
    /// Bytes on the wire per send, size prefix included.
    pub fn frame_bytes(&self) -> usize {
        12 + self.tail.len()
    }
}

/// A response that will arrive on a connection; await it with [`PendingResponse::wait`].
pub struct PendingResponse {
    api_key: ApiKey,
    version: i16,
    receiver: oneshot::Receiver<BytesMut>,
    deadline: Instant,
    shared: Arc<Shared>,
    timeout: Duration,
}

impl PendingResponse {
    /// Waits for the raw response: the frame after the size prefix (header included).
    pub async fn wait_raw(self) -> Result<Bytes, ClientError> {
        match tokio::time::timeout_at(self.deadline, self.receiver).await {
            Ok(Ok(frame)) => Ok(frame.freeze()),
            Ok(Err(_)) => Err(self.shared.lost()),
            Err(_) => {
                // Kafka's clients close a connection whose request timed out: what arrives next on
                // it could no longer be trusted to belong to anyone.
                self.shared.fail(format!(
                    "{:?} request timed out after {} ms",
                    self.api_key,
                    self.timeout.as_millis()
                ));
                Err(ClientError::Timeout {
                    broker: self.shared.broker.clone(),
                    api_key: self.api_key,
                    timeout: self.timeout,
                })
            }
        }
    }

    /// Waits for the response and decodes it as `T`.
    pub async fn wait<T: Decodable>(self) -> Result<T, ClientError> {
        let (api_key, version, shared) = (self.api_key, self.version, self.shared.clone());
        let frame = self.wait_raw().await?;
        decode_response_body(api_key, version, frame).map_err(|reason| {
            let error = ClientError::Protocol {
                broker: shared.broker.clone(),
                reason,
            };
            shared.fail(error.to_string());
            error
        })
    }
}

fn decode_response_body<T: Decodable>(
    api_key: ApiKey,
    version: i16,
    mut frame: Bytes,
) -> Result<T, String> {
    ResponseHeader::decode(&mut frame, api_key.response_header_version(version))
        .map_err(|error| format!("bad {api_key:?} v{version} response header: {error}"))?;
    T::decode(&mut frame, version)
        .map_err(|error| format!("bad {api_key:?} v{version} response: {error}"))
}

/// A connection to one broker, after the ApiVersions handshake. Cheap to share behind an `Arc`;
/// every method takes `&self`, so many tasks can pipeline requests on it.
pub struct Connection {
    shared: Arc<Shared>,
    client_id: StrBytes,
    outgoing: mpsc::Sender<Outgoing>,
    in_flight: Arc<Semaphore>,
    correlation: AtomicI32,
    request_timeout: Duration,
    versions: NegotiatedVersions,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.shared.cancel.cancel();
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("broker", &self.shared.broker)
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl Connection {
    /// Connects to `address` (`host:port`) and negotiates API versions.
    pub async fn connect(address: &str, config: &ConnectionConfig) -> Result<Self, ClientError> {
        let connect_error = |reason: String| ClientError::Connect {
            broker: address.to_owned(),
            reason,
        };
        let stream = tokio::time::timeout(config.connect_timeout, TcpStream::connect(address))
            .await
            .map_err(|_| {
                connect_error(format!(
                    "timed out after {} ms",
                    config.connect_timeout.as_millis()
                ))
            })?
            .map_err(|error| connect_error(error.to_string()))?;
        stream
            .set_nodelay(true)
            .map_err(|error| connect_error(error.to_string()))?;
        let mut connection = Self::start(address, stream, config);
        let versions = tokio::time::timeout(config.connect_timeout, connection.handshake())
            .await
            .map_err(|_| connect_error("ApiVersions handshake timed out".to_owned()))??;
        connection.versions = versions;
        Ok(connection)
    }

    fn start(address: &str, stream: TcpStream, config: &ConnectionConfig) -> Self {
        let (read_half, write_half) = stream.into_split();
        let shared = Arc::new(Shared {
            broker: address.to_owned(),
            cancel: CancellationToken::new(),
            pending: Mutex::new(PendingQueue::default()),
            failure: Mutex::new(None),
        });
        let (outgoing, receiver) = mpsc::channel(OUTGOING_QUEUE_MAX);
        tokio::spawn(write_loop(write_half, receiver, shared.clone()));
        let frames = FramedRead::new(read_half, frame_codec(config.response_bytes_max));
        tokio::spawn(read_loop(frames, shared.clone()));
        Self {
            shared,
            client_id: StrBytes::from_string(config.client_id.clone()),
            outgoing,
            in_flight: Arc::new(Semaphore::new(config.in_flight_requests_max.max(1))),
            correlation: AtomicI32::new(0),
            request_timeout: config.request_timeout,
            versions: NegotiatedVersions::default(),
        }
    }

    /// ApiVersions at our highest version; a broker that does not serve it answers in v0 with its
    /// ranges (KIP-511), and we retry at the highest version both sides speak.
    async fn handshake(&self) -> Result<NegotiatedVersions, ClientError> {
        let (_, client_max) = client_range(ApiKey::ApiVersions).unwrap_or((0, 0));
        let mut version = client_max;
        for _ in 0..2 {
            let mut request = ApiVersionsRequest::default();
            // The software name and version exist from v3 (KIP-511).
            if version >= 3 {
                request = request
                    .with_client_software_name(StrBytes::from_static_str("caudal-client"))
                    .with_client_software_version(StrBytes::from_static_str(env!(
                        "CARGO_PKG_VERSION"
                    )));
            }
            let frame = self
                .enqueue_request(&request, version, true)
                .await?
                .wait_raw()
                .await?;
            let response = decode_response_body::<ApiVersionsResponse>(
                ApiKey::ApiVersions,
                version,
                frame.clone(),
            );
            let unsupported = caudal_protocol::ErrorCode::UnsupportedVersion.code();
            match response {
                Ok(response) if response.error_code == 0 => {
                    return Ok(NegotiatedVersions::from_response(&response));
                }
                Ok(response) if response.error_code != unsupported => {
                    check_code(response.error_code, || "ApiVersions".to_owned(), None)?;
                }
                _ => {}
            }
            // Either UNSUPPORTED_VERSION or a body we could not read at `version`: read it as v0.
            let fallback =
                decode_response_body::<ApiVersionsResponse>(ApiKey::ApiVersions, 0, frame)
                    .map_err(|reason| ClientError::Protocol {
                        broker: self.shared.broker.clone(),
                        reason,
                    })?;
            let broker_max = fallback
                .api_keys
                .iter()
                .find(|api| api.api_key == ApiKey::ApiVersions as i16)
                .map(|api| api.max_version);
            match broker_max {
                Some(broker_max) if broker_max < version => version = broker_max.max(0),
                _ => {
                    return Err(ClientError::Kafka(KafkaError::new(
                        caudal_protocol::ErrorCode::try_from_code(fallback.error_code)
                            .unwrap_or(caudal_protocol::ErrorCode::UnsupportedVersion),
                        format!("ApiVersions v{version}"),
                    )));
                }
            }
        }
        Err(ClientError::Protocol {
            broker: self.shared.broker.clone(),
            reason: "ApiVersions negotiation did not converge".to_owned(),
        })
    }

    /// `host:port` of the broker.
    pub fn broker(&self) -> &str {
        &self.shared.broker
    }

    pub fn is_closed(&self) -> bool {
        self.shared.cancel.is_cancelled()
    }

    /// Closes the connection; outstanding requests fail with `ConnectionLost`.
    pub fn close(&self) {
        self.shared.fail("closed by the client".to_owned());
    }

    /// The negotiated version of `api_key`, or why there is none.
    pub fn version(&self, api_key: ApiKey) -> Result<i16, ClientError> {
        self.versions.version(api_key, &self.shared.broker)
    }

    /// The table negotiated with this broker.
    pub fn versions(&self) -> &NegotiatedVersions {
        &self.versions
    }

    /// Sends `body` at the negotiated version and waits for its response.
    pub async fn request<R: Request>(&self, body: &R) -> Result<R::Response, ClientError> {
        let version = self.version(api_key_of::<R>()?)?;
        self.request_at(body, version).await
    }

    /// Sends `body` at `version` and waits for its response.
    pub async fn request_at<R: Request>(
        &self,
        body: &R,
        version: i16,
    ) -> Result<R::Response, ClientError> {
        self.enqueue_request(body, version, true)
            .await?
            .wait()
            .await
    }

    /// Queues `body` at `version` and returns once it is handed to the writer (after taking an
    /// in-flight permit). With `expects_response` false (an `acks=0` produce) there is nothing to
    /// wait for and the returned value resolves as lost; callers just drop it.
    pub async fn enqueue_request<R: Request>(
        &self,
        body: &R,
        version: i16,
        expects_response: bool,
    ) -> Result<PendingResponse, ClientError> {
        let prepared = self.prepare(body, version)?;
        self.enqueue_prepared(&prepared, expects_response).await
    }

    /// Encodes `body` once for repeated sending with [`Connection::enqueue_prepared`].
    pub fn prepare<R: Request>(
        &self,
        body: &R,
        version: i16,
    ) -> Result<PreparedRequest, ClientError> {
        let api_key = api_key_of::<R>()?;
        let encode_error = |error: anyhow::Error| ClientError::Encode {
            api_key,
            version,
            reason: error.to_string(),
        };
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(0)
            .with_client_id(Some(self.client_id.clone()));
        let header_version = api_key.request_header_version(version);
        let size = header
            .compute_size(header_version)
            .and_then(|header_size| Ok(header_size + body.compute_size(version)?))
            .map_err(encode_error)?;
        let mut buf = BytesMut::with_capacity(size);
        header
            .encode(&mut buf, header_version)
            .map_err(encode_error)?;
        body.encode(&mut buf, version).map_err(encode_error)?;
        if buf.len() < 8 {
            return Err(ClientError::Encode {
                api_key,
                version,
                reason: "request header shorter than 8 bytes".to_owned(),
            });
        }
        // Everything after API key, version and correlation id.
        let tail = buf.freeze().slice(8..);
        Ok(PreparedRequest {
            api_key,
            version,
            tail,
        })
    }

    /// Sends a prepared request with a fresh correlation id.
    pub async fn enqueue_prepared(
        &self,
        prepared: &PreparedRequest,
        expects_response: bool,
    ) -> Result<PendingResponse, ClientError> {
        if self.is_closed() {
            return Err(self.shared.lost());
        }
        let permit = self
            .in_flight
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| self.shared.lost())?;
        let correlation_id = self.correlation.fetch_add(1, Ordering::Relaxed) & i32::MAX;
        let size = i32::try_from(8 + prepared.tail.len()).map_err(|_| ClientError::Encode {
            api_key: prepared.api_key,
            version: prepared.version,
            reason: "request larger than 2 GiB".to_owned(),
        })?;
        let mut head = BytesMut::with_capacity(12);
        head.put_i32(size);
        head.put_i16(prepared.api_key as i16);
        head.put_i16(prepared.version);
        head.put_i32(correlation_id);
        let (reply, receiver) = oneshot::channel();
        let expect = if expects_response {
            Expect::Response(Pending {
                correlation_id,
                reply,
                _permit: permit,
            })
        } else {
            Expect::Nothing(permit)
        };
        let outgoing = Outgoing {
            head: head.freeze(),
            tail: prepared.tail.clone(),
            expect,
        };
        self.outgoing
            .send(outgoing)
            .await
            .map_err(|_| self.shared.lost())?;
        Ok(PendingResponse {
            api_key: prepared.api_key,
            version: prepared.version,
            receiver,
            deadline: Instant::now() + self.request_timeout,
            shared: self.shared.clone(),
            timeout: self.request_timeout,
        })
    }
}

fn api_key_of<R: Request>() -> Result<ApiKey, ClientError> {
    ApiKey::try_from(R::KEY).map_err(|()| {
        ClientError::InvalidArgument(format!("API key {} is unknown to the codec", R::KEY))
    })
}

async fn write_loop(
    mut writer: OwnedWriteHalf,
    mut receiver: mpsc::Receiver<Outgoing>,
    shared: Arc<Shared>,
) {
    let mut batch: Vec<Outgoing> = Vec::with_capacity(WRITE_BATCH_FRAMES_MAX);
    let mut parts: Vec<Bytes> = Vec::with_capacity(2 * WRITE_BATCH_FRAMES_MAX);
    loop {
        let first = tokio::select! {
            _ = shared.cancel.cancelled() => break,
            next = receiver.recv() => match next {
                Some(outgoing) => outgoing,
                None => break,
            },
        };
        let mut bytes = first.head.len() + first.tail.len();
        batch.push(first);
        while batch.len() < WRITE_BATCH_FRAMES_MAX && bytes < WRITE_BATCH_BYTES_MAX {
            match receiver.try_recv() {
                Ok(outgoing) => {
                    bytes += outgoing.head.len() + outgoing.tail.len();
                    batch.push(outgoing);
                }
                Err(_) => break,
            }
        }
        {
            let mut pending = shared.pending.lock().unwrap_or_else(|e| e.into_inner());
            if pending.closed {
                break;
            }
            for outgoing in &mut batch {
                parts.push(std::mem::take(&mut outgoing.head));
                if !outgoing.tail.is_empty() {
                    parts.push(std::mem::take(&mut outgoing.tail));
                }
            }
            for outgoing in batch.drain(..) {
                match outgoing.expect {
                    Expect::Response(entry) => pending.queue.push_back(entry),
                    // An `acks=0` request's permit goes once its frame is on its way.
                    Expect::Nothing(permit) => drop(permit),
                }
            }
        }
        let result = tokio::select! {
            _ = shared.cancel.cancelled() => break,
            result = write_all_parts(&mut writer, &mut parts) => result,
        };
        parts.clear();
        if let Err(error) = result {
            shared.fail(format!("write failed: {error}"));
            break;
        }
    }
    let _ = writer.shutdown().await;
}

async fn write_all_parts(writer: &mut OwnedWriteHalf, parts: &mut [Bytes]) -> std::io::Result<()> {
    let mut index = 0;
    while index < parts.len() {
        let written = {
            let slices: Vec<IoSlice<'_>> = parts[index..]
                .iter()
                .take(WRITE_BATCH_FRAMES_MAX * 2)
                .map(|part| IoSlice::new(part))
                .collect();
            writer.write_vectored(&slices).await?
        };
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        let mut remaining = written;
        while remaining > 0 && index < parts.len() {
            let length = parts[index].len();
            if remaining >= length {
                remaining -= length;
                index += 1;
            } else {
                parts[index].advance(remaining);
                remaining = 0;
            }
        }
    }
    Ok(())
}

async fn read_loop(
    mut frames: FramedRead<tokio::net::tcp::OwnedReadHalf, tokio_util::codec::LengthDelimitedCodec>,
    shared: Arc<Shared>,
) {
    loop {
        let frame = tokio::select! {
            _ = shared.cancel.cancelled() => return,
            frame = frames.next() => frame,
        };
        let frame = match frame {
            None => {
                shared.fail("closed by the broker".to_owned());
                return;
            }
            Some(Err(error)) => {
                shared.fail(format!("read failed: {error}"));
                return;
            }
            Some(Ok(frame)) => frame,
        };
        if frame.len() < 4 {
            shared.fail(format!("response frame of {} bytes", frame.len()));
            return;
        }
        let correlation_id = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
        let entry = shared
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .queue
            .pop_front();
        match entry {
            Some(entry) if entry.correlation_id == correlation_id => {
                // The caller may have given up (timeout); then nobody wants the frame.
                let _ = entry.reply.send(frame);
            }
            Some(entry) => {
                shared.fail(format!(
                    "response correlation id {correlation_id}, expected {}",
                    entry.correlation_id
                ));
                return;
            }
            None => {
                shared.fail(format!(
                    "response correlation id {correlation_id} with no request outstanding"
                ));
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeBroker;
    use caudal_protocol::kafka_protocol::messages::{
        MetadataRequest, MetadataResponse, ResponseKind,
    };

    #[tokio::test]
    async fn negotiates_versions_on_connect() {
        let broker = FakeBroker::start(|_| None).await;
        let connection = Connection::connect(&broker.address(), &ConnectionConfig::default())
            .await
            .unwrap();
        assert_eq!(connection.version(ApiKey::Metadata).unwrap(), 12);
        assert_eq!(connection.version(ApiKey::Produce).unwrap(), 11);
        assert!(matches!(
            connection.version(ApiKey::InitProducerId),
            Err(ClientError::UnsupportedApi { .. })
        ));
    }

    #[tokio::test]
    async fn falls_back_when_the_broker_answers_api_versions_in_v0() {
        let broker = FakeBroker::start(|_| None).await;
        broker.set_api_versions_max(2);
        let connection = Connection::connect(&broker.address(), &ConnectionConfig::default())
            .await
            .unwrap();
        assert_eq!(broker.api_versions_seen(), vec![4, 2]);
        assert_eq!(connection.version(ApiKey::Fetch).unwrap(), 12);
    }

    #[tokio::test]
    async fn pipelines_requests_and_matches_responses_in_order() {
        let broker = FakeBroker::start(|request| match &request.body {
            caudal_protocol::RequestKind::Metadata(_) => Some(ResponseKind::Metadata(
                MetadataResponse::default().with_throttle_time_ms(request.correlation_id()),
            )),
            _ => None,
        })
        .await;
        let config = ConnectionConfig {
            in_flight_requests_max: 8,
            ..ConnectionConfig::default()
        };
        let connection = Arc::new(
            Connection::connect(&broker.address(), &config)
                .await
                .unwrap(),
        );
        let mut waits = Vec::new();
        for _ in 0..20 {
            let pending = connection
                .enqueue_request(&MetadataRequest::default(), 12, true)
                .await
                .unwrap();
            waits.push(tokio::spawn(pending.wait::<MetadataResponse>()));
        }
        let mut seen = Vec::new();
        for wait in waits {
            seen.push(wait.await.unwrap().unwrap().throttle_time_ms);
        }
        // Each response carries its request's correlation id; they arrive in request order.
        let mut sorted = seen.clone();
        sorted.sort();
        assert_eq!(seen, sorted);
        assert_eq!(seen.len(), 20);
    }

    #[tokio::test]
    async fn times_out_and_closes_the_connection() {
        // The fake answers nothing but ApiVersions.
        let broker = FakeBroker::start(|_| None).await;
        let config = ConnectionConfig {
            request_timeout: Duration::from_millis(200),
            ..ConnectionConfig::default()
        };
        let connection = Connection::connect(&broker.address(), &config)
            .await
            .unwrap();
        let error = connection
            .request(&MetadataRequest::default())
            .await
            .unwrap_err();
        assert!(matches!(error, ClientError::Timeout { .. }), "{error}");
        assert!(connection.is_closed());
        assert!(matches!(
            connection.request(&MetadataRequest::default()).await,
            Err(ClientError::ConnectionLost { .. })
        ));
    }

    #[tokio::test]
    async fn a_wrong_correlation_id_closes_the_connection() {
        let broker = FakeBroker::start(|_| None).await;
        broker.set_correlation_offset(7);
        let config = ConnectionConfig::default();
        let error = Connection::connect(&broker.address(), &config)
            .await
            .unwrap_err();
        assert!(error.to_string().contains("correlation id"), "{error}");
    }

    #[tokio::test]
    async fn connect_failure_names_the_broker() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        drop(listener);
        let error = Connection::connect(&address, &ConnectionConfig::default())
            .await
            .unwrap_err();
        assert!(matches!(error, ClientError::Connect { .. }));
        assert!(error.to_string().contains(&address));
    }
}
