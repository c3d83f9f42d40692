//! [`Producer`]: batching records per partition and sending them to partition leaders.
//!
//! One task (the accumulator) owns all producer state. [`Producer::send`] hands it a record;
//! it picks the partition (explicit, murmur2 of the key, or a sticky partition for keyless
//! records), appends to that partition's open batch, and closes the batch when it reaches
//! `batch_bytes`, when `linger` has passed, or on flush. Closed batches wait in a per-partition
//! queue; at most `in_flight_requests_max` per partition are in flight. Batches for partitions led
//! by the same broker travel in one produce request, handed to a per-broker sender task that
//! queues requests on that broker's connection in order — the order idempotence depends on.
//!
//! Retriable errors send a batch back to the front of its queue (same bytes, same sequence)
//! after a backoff and a metadata refresh, until `delivery_timeout` has passed since the batch was
//! created. With idempotence, a non-retriable error fails the producer: later sequences on that
//! partition could no longer be accepted.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use caudal_model::{
    NodeId, Offset, PartitionIndex, ProducerEpoch, ProducerId, Sequence, TimestampMs,
};
use caudal_protocol::ErrorCode;
use caudal_protocol::kafka_protocol::messages::ProduceResponse;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::client::{Acks, Client, PartitionBatch, ProduceAck};
use crate::error::ClientError;
use crate::partitioner::partition_for_key;
use crate::records::{Compression, ProducerFields, RecordData, encode_batch};

/// How a [`Producer`] behaves; names follow Kafka's producer configs.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// `acks`.
    pub acks: Acks,
    /// `compression.type`.
    pub compression: Compression,
    /// `linger.ms`: how long an open batch waits for more records.
    pub linger: Duration,
    /// `batch.size`: an open batch is closed once it holds this many bytes.
    pub batch_bytes: usize,
    /// `enable.idempotence`: InitProducerId, then sequence numbers per partition.
    pub idempotent: bool,
    /// Sent as the produce request's `timeout_ms`: how long the broker may wait for replication.
    pub request_timeout: Duration,
    /// `delivery.timeout.ms`: a record fails if not acknowledged this long after `send`.
    pub delivery_timeout: Duration,
    /// `buffer.memory`: `send` waits while this many bytes of records are unacknowledged.
    pub buffer_bytes_max: usize,
    /// Let the broker auto-create unknown topics (if `auto.create.topics.enable`).
    pub allow_auto_topic_creation: bool,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        Self {
            acks: Acks::All,
            compression: Compression::None,
            linger: Duration::from_millis(5),
            batch_bytes: 16_384,
            idempotent: false,
            request_timeout: Duration::from_secs(30),
            delivery_timeout: Duration::from_secs(120),
            buffer_bytes_max: 32 << 20,
            allow_auto_topic_creation: true,
        }
    }
}

/// A record to produce.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerRecord {
    pub topic: String,
    /// `None`: the partitioner decides.
    pub partition: Option<i32>,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
    /// Creation time in ms since the epoch; `None` means now.
    pub timestamp: Option<i64>,
}

impl ProducerRecord {
    pub fn new(topic: impl Into<String>, value: impl Into<Bytes>) -> Self {
        Self {
            topic: topic.into(),
            value: Some(value.into()),
            ..Self::default()
        }
    }

    pub fn with_key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    pub fn with_partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    pub fn with_header(mut self, key: impl Into<String>, value: Option<Bytes>) -> Self {
        self.headers.push((key.into(), value));
        self
    }

    pub fn with_timestamp(mut self, timestamp: i64) -> Self {
        self.timestamp = Some(timestamp);
        self
    }
}

/// Where an acknowledged record landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    pub topic: String,
    pub partition: PartitionIndex,
    /// `None` for `acks=0`, and for a retried idempotent batch the broker had already written
    /// (`DUPLICATE_SEQUENCE_NUMBER`).
    pub offset: Option<Offset>,
    /// The broker's append time for `LogAppendTime` topics, else the record's creation time.
    pub timestamp: TimestampMs,
}

/// Resolves when the record is acknowledged or has failed.
pub struct DeliveryFuture {
    receiver: oneshot::Receiver<Result<RecordMetadata, ClientError>>,
}

impl DeliveryFuture {
    pub async fn wait(self) -> Result<RecordMetadata, ClientError> {
        self.receiver
            .await
            .unwrap_or(Err(ClientError::Closed("producer")))
    }
}

/// Counters for a producer's lifetime.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProducerStats {
    pub records_acknowledged: u64,
    pub records_failed: u64,
    pub batches_sent: u64,
    /// Encoded batch bytes sent (retries included).
    pub batch_bytes_sent: u64,
    pub requests_sent: u64,
    pub retries: u64,
}

type Reply = oneshot::Sender<Result<RecordMetadata, ClientError>>;

enum Command {
    Send(Box<ProducerRecord>, Reply),
    Flush(oneshot::Sender<Result<(), ClientError>>),
    Stats(oneshot::Sender<ProducerStats>),
}

/// A Kafka producer. `send` is cheap (it queues); `flush` waits for everything sent so far.
pub struct Producer {
    commands: mpsc::Sender<Command>,
    task: JoinHandle<ProducerStats>,
}

impl Producer {
    /// Starts a producer; with idempotence, first obtains a producer id.
    pub async fn new(client: Client, config: ProducerConfig) -> Result<Self, ClientError> {
        if config.batch_bytes == 0 {
            return Err(ClientError::InvalidArgument(
                "batch size must be at least 1 byte".to_owned(),
            ));
        }
        if config.idempotent && config.acks != Acks::All {
            // Kafka's rule: idempotence needs acks=all.
            return Err(ClientError::InvalidArgument(
                "idempotence requires acks=all".to_owned(),
            ));
        }
        let producer_id = if config.idempotent {
            Some(client.init_producer_id().await?)
        } else {
            None
        };
        let (commands, receiver) = mpsc::channel(1024);
        let (events_sender, events) = mpsc::unbounded_channel();
        let in_flight_max = client.config().connection.in_flight_requests_max.max(1);
        let accumulator = Accumulator {
            client,
            config,
            producer_id,
            in_flight_max,
            partition_counts: HashMap::new(),
            sticky: HashMap::new(),
            sticky_next: seed(),
            open: HashMap::new(),
            queues: HashMap::new(),
            buffered_bytes: 0,
            next_batch_id: 0,
            node_senders: HashMap::new(),
            events_sender,
            flush_waiters: Vec::new(),
            refreshing: HashMap::new(),
            failed: None,
            stats: ProducerStats::default(),
        };
        let task = tokio::spawn(accumulator.run(receiver, events));
        Ok(Self { commands, task })
    }

    /// Queues a record. Waits only while the buffer is full (`buffer_bytes_max`).
    pub async fn send(&self, record: ProducerRecord) -> Result<DeliveryFuture, ClientError> {
        let (reply, receiver) = oneshot::channel();
        self.commands
            .send(Command::Send(Box::new(record), reply))
            .await
            .map_err(|_| ClientError::Closed("producer"))?;
        Ok(DeliveryFuture { receiver })
    }

    /// Sends every open batch now and waits until all records sent so far are acknowledged or
    /// failed. Returns the first failure since the previous flush, if any.
    pub async fn flush(&self) -> Result<(), ClientError> {
        let (reply, receiver) = oneshot::channel();
        self.commands
            .send(Command::Flush(reply))
            .await
            .map_err(|_| ClientError::Closed("producer"))?;
        receiver
            .await
            .unwrap_or(Err(ClientError::Closed("producer")))
    }

    pub async fn stats(&self) -> Result<ProducerStats, ClientError> {
        let (reply, receiver) = oneshot::channel();
        self.commands
            .send(Command::Stats(reply))
            .await
            .map_err(|_| ClientError::Closed("producer"))?;
        receiver.await.map_err(|_| ClientError::Closed("producer"))
    }

    /// Flushes, stops the producer and returns its counters.
    pub async fn close(self) -> Result<ProducerStats, ClientError> {
        let flushed = self.flush().await;
        drop(self.commands);
        let stats = self
            .task
            .await
            .map_err(|_| ClientError::Closed("producer"))?;
        flushed.map(|()| stats)
    }
}

fn seed() -> usize {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.subsec_nanos() as usize)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

type PartitionKey = (String, i32);

struct OpenBatch {
    records: Vec<RecordData>,
    replies: Vec<Reply>,
    bytes: usize,
    created: Instant,
}

struct ReadyBatch {
    id: u64,
    topic: String,
    partition: i32,
    records: Vec<RecordData>,
    replies: Vec<Reply>,
    bytes: usize,
    created: Instant,
    /// Encoded on first dispatch (when an idempotent batch gets its sequence); kept for retries.
    encoded: Option<Bytes>,
    attempts: u32,
    last_error: Option<String>,
}

#[derive(Default)]
struct PartitionQueue {
    ready: VecDeque<ReadyBatch>,
    in_flight: usize,
    next_sequence: i32,
    blocked_until: Option<Instant>,
}

enum Event {
    Produced {
        batches: Vec<ReadyBatch>,
        results: Vec<Result<ProduceAck, ClientError>>,
    },
    Refreshed {
        topic: String,
    },
}

struct NodeRequest {
    batches: Vec<ReadyBatch>,
}

struct Accumulator {
    client: Client,
    config: ProducerConfig,
    producer_id: Option<(ProducerId, ProducerEpoch)>,
    in_flight_max: usize,
    partition_counts: HashMap<String, i32>,
    sticky: HashMap<String, i32>,
    sticky_next: usize,
    open: HashMap<PartitionKey, OpenBatch>,
    queues: HashMap<PartitionKey, PartitionQueue>,
    buffered_bytes: usize,
    next_batch_id: u64,
    node_senders: HashMap<NodeId, mpsc::UnboundedSender<NodeRequest>>,
    events_sender: mpsc::UnboundedSender<Event>,
    flush_waiters: Vec<oneshot::Sender<Result<(), ClientError>>>,
    refreshing: HashMap<String, Instant>,
    /// Set on the first failure since the last flush (reported by `flush`), and permanently for
    /// an idempotent producer after a non-retriable error.
    failed: Option<ClientError>,
    stats: ProducerStats,
}

impl Accumulator {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut events: mpsc::UnboundedReceiver<Event>,
    ) -> ProducerStats {
        let mut closing = false;
        loop {
            let deadline = self.next_deadline();
            let accepting = !closing && self.buffered_bytes < self.config.buffer_bytes_max;
            tokio::select! {
                command = commands.recv(), if accepting => match command {
                    Some(command) => self.handle(command).await,
                    None => {
                        closing = true;
                        self.close_all_open();
                    }
                },
                Some(event) = events.recv() => self.on_event(event),
                _ = sleep_until(deadline) => {}
            }
            let now = Instant::now();
            self.close_lingered(now, closing);
            self.expire(now);
            self.dispatch(now);
            self.answer_flushes();
            if closing && self.is_idle() {
                return self.stats;
            }
        }
    }

    async fn handle(&mut self, command: Command) {
        match command {
            Command::Send(record, reply) => self.append(*record, reply).await,
            Command::Flush(reply) => {
                self.close_all_open();
                self.flush_waiters.push(reply);
            }
            Command::Stats(reply) => {
                let _ = reply.send(self.stats);
            }
        }
    }

    fn is_idle(&self) -> bool {
        self.open.is_empty()
            && self
                .queues
                .values()
                .all(|queue| queue.ready.is_empty() && queue.in_flight == 0)
    }

    fn answer_flushes(&mut self) {
        if !self.flush_waiters.is_empty() && self.open.is_empty() && self.is_idle() {
            let permanent = self.config.idempotent;
            let result = match &self.failed {
                Some(error) => Err(error.clone()),
                None => Ok(()),
            };
            if !permanent {
                self.failed = None;
            }
            for waiter in self.flush_waiters.drain(..) {
                let _ = waiter.send(result.clone());
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let lingering = self
            .open
            .values()
            .map(|batch| batch.created + self.config.linger);
        let blocked = self
            .queues
            .values()
            .filter(|queue| !queue.ready.is_empty())
            .filter_map(|queue| queue.blocked_until);
        let expiring = self
            .queues
            .values()
            .filter_map(|queue| queue.ready.front())
            .map(|batch| batch.created + self.config.delivery_timeout);
        lingering.chain(blocked).chain(expiring).min()
    }

    async fn partition_count(&mut self, topic: &str) -> Result<i32, ClientError> {
        if let Some(&count) = self.partition_counts.get(topic) {
            return Ok(count);
        }
        let info = self
            .client
            .topic_with_leaders(topic, self.config.allow_auto_topic_creation)
            .await?;
        let count = i32::try_from(info.partitions.len()).unwrap_or(i32::MAX);
        if count == 0 {
            return Err(ClientError::NoLeader {
                topic: topic.to_owned(),
                partition: 0,
                attempts: self.client.config().metadata_refreshes_max,
            });
        }
        self.partition_counts.insert(topic.to_owned(), count);
        Ok(count)
    }

    async fn append(&mut self, record: ProducerRecord, reply: Reply) {
        if let Some(error) = self.failed.as_ref().filter(|_| self.config.idempotent) {
            let _ = reply.send(Err(error.clone()));
            return;
        }
        let count = match self.partition_count(&record.topic).await {
            Ok(count) => count,
            Err(error) => {
                self.stats.records_failed += 1;
                self.failed.get_or_insert(error.clone());
                let _ = reply.send(Err(error));
                return;
            }
        };
        let partition = match (record.partition, &record.key) {
            (Some(partition), _) if (0..count).contains(&partition) => partition,
            (Some(partition), _) => {
                let error = ClientError::InvalidArgument(format!(
                    "partition {partition} is not in the range [0...{count}) of topic {:?}",
                    record.topic
                ));
                self.stats.records_failed += 1;
                self.failed.get_or_insert(error.clone());
                let _ = reply.send(Err(error));
                return;
            }
            (None, Some(key)) => partition_for_key(key, count),
            (None, None) => match self.sticky.get(&record.topic) {
                Some(&partition) if partition < count => partition,
                _ => {
                    let partition = (self.sticky_next % count as usize) as i32;
                    self.sticky_next = self.sticky_next.wrapping_add(1);
                    self.sticky.insert(record.topic.clone(), partition);
                    partition
                }
            },
        };
        let data = RecordData {
            key: record.key,
            value: record.value,
            headers: record.headers,
            timestamp: record.timestamp.unwrap_or_else(now_ms),
        };
        let bytes = data.estimated_bytes();
        self.buffered_bytes += bytes;
        let key = (record.topic, partition);
        let batch = self.open.entry(key.clone()).or_insert_with(|| OpenBatch {
            records: Vec::new(),
            replies: Vec::new(),
            bytes: 0,
            created: Instant::now(),
        });
        batch.records.push(data);
        batch.replies.push(reply);
        batch.bytes += bytes;
        if batch.bytes >= self.config.batch_bytes {
            self.close_batch(&key);
        }
    }

    fn close_batch(&mut self, key: &PartitionKey) {
        let Some(batch) = self.open.remove(key) else {
            return;
        };
        if self.sticky.get(&key.0) == Some(&key.1) {
            self.sticky.remove(&key.0);
        }
        let id = self.next_batch_id;
        self.next_batch_id += 1;
        self.queues
            .entry(key.clone())
            .or_default()
            .ready
            .push_back(ReadyBatch {
                id,
                topic: key.0.clone(),
                partition: key.1,
                records: batch.records,
                replies: batch.replies,
                bytes: batch.bytes,
                created: batch.created,
                encoded: None,
                attempts: 0,
                last_error: None,
            });
    }

    fn close_all_open(&mut self) {
        let keys: Vec<PartitionKey> = self.open.keys().cloned().collect();
        for key in keys {
            self.close_batch(&key);
        }
    }

    fn close_lingered(&mut self, now: Instant, closing: bool) {
        let linger = self.config.linger;
        let keys: Vec<PartitionKey> = self
            .open
            .iter()
            .filter(|(_, batch)| closing || batch.created + linger <= now)
            .map(|(key, _)| key.clone())
            .collect();
        for key in keys {
            self.close_batch(&key);
        }
    }

    /// Fails queued batches older than the delivery timeout.
    fn expire(&mut self, now: Instant) {
        let timeout = self.config.delivery_timeout;
        let mut expired = Vec::new();
        for queue in self.queues.values_mut() {
            // Only batches not yet in flight: an in-flight one is decided by its response.
            while queue
                .ready
                .front()
                .is_some_and(|batch| batch.created + timeout <= now)
            {
                if let Some(batch) = queue.ready.pop_front() {
                    expired.push(batch);
                }
            }
        }
        for batch in expired {
            let error = ClientError::DeliveryTimeout {
                topic: batch.topic.clone(),
                partition: batch.partition,
                records: batch.records.len(),
                timeout,
                last_error: batch.last_error.clone(),
            };
            self.fail_batch(batch, error);
        }
    }

    fn dispatch(&mut self, now: Instant) {
        let mut by_node: HashMap<NodeId, Vec<ReadyBatch>> = HashMap::new();
        let mut refresh = Vec::new();
        let keys: Vec<PartitionKey> = self
            .queues
            .iter()
            .filter(|(_, queue)| {
                !queue.ready.is_empty()
                    && queue.in_flight < self.in_flight_max
                    && queue.blocked_until.is_none_or(|until| until <= now)
            })
            .map(|(key, _)| key.clone())
            .collect();
        for key in keys {
            let Some(node_id) = self.client.cached_leader(&key.0, PartitionIndex(key.1)) else {
                refresh.push(key.0.clone());
                continue;
            };
            let producer_id = self.producer_id;
            let compression = self.config.compression;
            let Some(queue) = self.queues.get_mut(&key) else {
                continue;
            };
            queue.blocked_until = None;
            let Some(mut batch) = queue.ready.pop_front() else {
                continue;
            };
            if batch.encoded.is_none() {
                let fields = producer_id.map(|(producer_id, producer_epoch)| ProducerFields {
                    producer_id,
                    producer_epoch,
                    base_sequence: Sequence(queue.next_sequence),
                });
                match encode_batch(&batch.records, compression, fields) {
                    Ok(encoded) => {
                        if producer_id.is_some() {
                            queue.next_sequence = Sequence(queue.next_sequence)
                                .wrapping_add(batch.records.len() as i32)
                                .0;
                        }
                        batch.encoded = Some(encoded);
                    }
                    Err(error) => {
                        self.fail_batch(batch, error);
                        continue;
                    }
                }
            }
            queue.in_flight += 1;
            by_node.entry(node_id).or_default().push(batch);
        }
        for topic in refresh {
            self.refresh(topic);
        }
        for (node_id, batches) in by_node {
            self.stats.requests_sent += 1;
            self.stats.batches_sent += batches.len() as u64;
            self.stats.batch_bytes_sent += batches
                .iter()
                .map(|batch| batch.encoded.as_ref().map_or(0, Bytes::len) as u64)
                .sum::<u64>();
            let sender = self.node_sender(node_id);
            if let Err(mpsc::error::SendError(request)) = sender.send(NodeRequest { batches }) {
                // The node task is gone (it never exits while we hold its sender, but be safe).
                self.node_senders.remove(&node_id);
                let results = request
                    .batches
                    .iter()
                    .map(|_| Err(ClientError::Closed("broker sender")))
                    .collect();
                self.on_event(Event::Produced {
                    batches: request.batches,
                    results,
                });
            }
        }
    }

    /// Refreshes a topic's metadata in the background, at most once per backoff period.
    fn refresh(&mut self, topic: String) {
        let now = Instant::now();
        if self
            .refreshing
            .get(&topic)
            .is_some_and(|&started| now < started + self.client.config().retry_backoff)
        {
            return;
        }
        self.refreshing.insert(topic.clone(), now);
        // Hold the partition's queue until the refresh reports back.
        for (key, queue) in self.queues.iter_mut() {
            if key.0 == topic && queue.blocked_until.is_none() {
                queue.blocked_until = Some(now + Duration::from_secs(3600));
            }
        }
        let client = self.client.clone();
        let events = self.events_sender.clone();
        let backoff = client.config().retry_backoff;
        tokio::spawn(async move {
            tokio::time::sleep(backoff).await;
            let _ = client.topic(&topic).await;
            let _ = events.send(Event::Refreshed { topic });
        });
    }

    fn node_sender(&mut self, node_id: NodeId) -> mpsc::UnboundedSender<NodeRequest> {
        if let Some(sender) = self.node_senders.get(&node_id) {
            return sender.clone();
        }
        let (sender, receiver) = mpsc::unbounded_channel();
        tokio::spawn(node_loop(
            self.client.clone(),
            node_id,
            self.config.acks,
            self.config.request_timeout,
            receiver,
            self.events_sender.clone(),
        ));
        self.node_senders.insert(node_id, sender.clone());
        sender
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Refreshed { topic } => {
                self.refreshing.remove(&topic);
                if let Some(info) = self.client.cached_topic(&topic) {
                    let count = i32::try_from(info.partitions.len()).unwrap_or(i32::MAX);
                    if count > 0 {
                        self.partition_counts.insert(topic.clone(), count);
                    }
                }
                for (key, queue) in self.queues.iter_mut() {
                    if key.0 == topic {
                        queue.blocked_until = None;
                    }
                }
            }
            Event::Produced { batches, results } => {
                for (batch, result) in batches.into_iter().zip(results) {
                    let key = (batch.topic.clone(), batch.partition);
                    if let Some(queue) = self.queues.get_mut(&key) {
                        queue.in_flight = queue.in_flight.saturating_sub(1);
                    }
                    match result {
                        Ok(ack) => self.complete_batch(batch, Some(ack)),
                        Err(error)
                            if error.kafka_code() == Some(ErrorCode::DuplicateSequenceNumber) =>
                        {
                            self.complete_batch(batch, None)
                        }
                        Err(error) if self.should_retry(&batch, &error) => {
                            self.retry_batch(batch, error)
                        }
                        Err(error) => {
                            if self.config.idempotent {
                                self.failed = Some(error.clone());
                            }
                            self.fail_batch(batch, error)
                        }
                    }
                }
            }
        }
    }

    fn should_retry(&self, batch: &ReadyBatch, error: &ClientError) -> bool {
        // A lost connection or a timeout leaves it unknown whether the batch was appended;
        // like Kafka's producer we retry, and idempotence makes the retry safe.
        let retriable = error.is_retriable()
            || (self.config.idempotent
                && error.kafka_code() == Some(ErrorCode::OutOfOrderSequenceNumber));
        retriable && Instant::now() < batch.created + self.config.delivery_timeout
    }

    fn retry_batch(&mut self, mut batch: ReadyBatch, error: ClientError) {
        self.stats.retries += 1;
        batch.attempts += 1;
        batch.last_error = Some(error.to_string());
        tracing::debug!(topic = %batch.topic, partition = batch.partition, attempt = batch.attempts, %error, "retrying batch");
        let refresh = error.needs_metadata_refresh();
        let topic = batch.topic.clone();
        let backoff = self.client.config().retry_backoff;
        let queue = self
            .queues
            .entry((batch.topic.clone(), batch.partition))
            .or_default();
        // Keep the queue in creation order, so sequences go out in order again.
        let position = queue
            .ready
            .iter()
            .position(|queued| queued.id > batch.id)
            .unwrap_or(queue.ready.len());
        queue.ready.insert(position, batch);
        queue.blocked_until = Some(Instant::now() + backoff);
        if refresh {
            self.refresh(topic);
        }
    }

    fn complete_batch(&mut self, batch: ReadyBatch, ack: Option<ProduceAck>) {
        self.buffered_bytes = self.buffered_bytes.saturating_sub(batch.bytes);
        self.stats.records_acknowledged += batch.replies.len() as u64;
        let base = ack
            .map(|ack| ack.base_offset)
            .filter(|offset| offset.0 >= 0);
        let append_time = ack.and_then(|ack| ack.log_append_time);
        for (index, (reply, record)) in batch.replies.into_iter().zip(&batch.records).enumerate() {
            let _ = reply.send(Ok(RecordMetadata {
                topic: batch.topic.clone(),
                partition: PartitionIndex(batch.partition),
                offset: base.map(|base| Offset(base.0 + index as i64)),
                timestamp: append_time.unwrap_or(TimestampMs(record.timestamp)),
            }));
        }
    }

    fn fail_batch(&mut self, batch: ReadyBatch, error: ClientError) {
        tracing::debug!(topic = %batch.topic, partition = batch.partition, %error, "batch failed");
        self.buffered_bytes = self.buffered_bytes.saturating_sub(batch.bytes);
        self.stats.records_failed += batch.replies.len() as u64;
        self.failed.get_or_insert(error.clone());
        for reply in batch.replies {
            let _ = reply.send(Err(error.clone()));
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Sends one broker's produce requests in order on its connection, then waits for each response
/// in its own task so that several stay in flight.
async fn node_loop(
    client: Client,
    node_id: NodeId,
    acks: Acks,
    timeout: Duration,
    mut requests: mpsc::UnboundedReceiver<NodeRequest>,
    events: mpsc::UnboundedSender<Event>,
) {
    while let Some(NodeRequest { batches }) = requests.recv().await {
        let partition_batches: Vec<PartitionBatch> = batches
            .iter()
            .map(|batch| PartitionBatch {
                topic: batch.topic.clone(),
                partition: PartitionIndex(batch.partition),
                records: batch.encoded.clone().unwrap_or_default(),
            })
            .collect();
        let sent = match client.connection(node_id).await {
            Ok(connection) => {
                client
                    .send_produce(&connection, acks, timeout, &partition_batches)
                    .await
            }
            Err(error) => Err(error),
        };
        match sent {
            Err(error) => {
                let results = batches.iter().map(|_| Err(error.clone())).collect();
                let _ = events.send(Event::Produced { batches, results });
            }
            Ok(None) => {
                let results = batches
                    .iter()
                    .map(|_| {
                        Ok(ProduceAck {
                            base_offset: Offset(-1),
                            log_append_time: None,
                            log_start_offset: Offset(-1),
                        })
                    })
                    .collect();
                let _ = events.send(Event::Produced { batches, results });
            }
            Ok(Some((pending, routing))) => {
                let events = events.clone();
                tokio::spawn(async move {
                    let results = match pending.wait::<ProduceResponse>().await {
                        Ok(response) => routing.results(&response),
                        Err(error) => batches.iter().map(|_| Err(error.clone())).collect(),
                    };
                    let _ = events.send(Event::Produced { batches, results });
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::ClientConfig;
    use crate::records::decode_batches;
    use crate::testing::{FakeBroker, metadata_response};
    use caudal_protocol::RequestKind;
    use caudal_protocol::kafka_protocol::messages::produce_response::{
        PartitionProduceResponse, TopicProduceResponse,
    };
    use caudal_protocol::kafka_protocol::messages::{ApiKey, InitProducerIdResponse, ResponseKind};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

    /// A fake that leads partitions 0..4 of "t", appends every batch (assigning offsets per
    /// partition) and, for the first `fail_first` produce requests, answers NOT_LEADER_OR_FOLLOWER.
    async fn log_broker(fail_first: usize) -> FakeBroker {
        let broker = FakeBroker::bind().await;
        broker.set_apis(&[
            (ApiKey::Produce, 3, 11),
            (ApiKey::Metadata, 1, 12),
            (ApiKey::InitProducerId, 0, 4),
        ]);
        let me = broker.node(1);
        let offsets: Arc<[AtomicI64; 4]> = Arc::new(Default::default());
        let produced = Arc::new(AtomicUsize::new(0));
        broker.serve(move |request| match &request.body {
            RequestKind::Metadata(_) => Some(ResponseKind::Metadata(metadata_response(
                std::slice::from_ref(&me),
                &[("t", &[(0, 1), (1, 1), (2, 1), (3, 1)])],
            ))),
            RequestKind::InitProducerId(_) => Some(ResponseKind::InitProducerId(
                InitProducerIdResponse::default()
                    .with_producer_id(77.into())
                    .with_producer_epoch(0),
            )),
            RequestKind::Produce(produce) => {
                let failing = produced.fetch_add(1, Ordering::SeqCst) < fail_first;
                let topics = produce
                    .topic_data
                    .iter()
                    .map(|topic| {
                        TopicProduceResponse::default()
                            .with_name(topic.name.clone())
                            .with_partition_responses(
                                topic
                                    .partition_data
                                    .iter()
                                    .map(|data| {
                                        let answer = PartitionProduceResponse::default()
                                            .with_index(data.index);
                                        if failing {
                                            return answer.with_error_code(6);
                                        }
                                        let records = data.records.clone().unwrap_or_default();
                                        let count = decode_batches(
                                            "t",
                                            PartitionIndex(data.index),
                                            records,
                                            Offset(0),
                                            1 << 20,
                                        )
                                        .unwrap()
                                        .records
                                        .len()
                                            as i64;
                                        let base = offsets[data.index as usize]
                                            .fetch_add(count, Ordering::SeqCst);
                                        answer.with_base_offset(base)
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                (produce.acks != 0).then(|| {
                    ResponseKind::Produce(ProduceResponse::default().with_responses(topics))
                })
            }
            _ => None,
        });
        broker
    }

    fn client_config() -> ClientConfig {
        ClientConfig {
            retry_backoff: Duration::from_millis(5),
            ..ClientConfig::default()
        }
    }

    fn produced_batches(broker: &FakeBroker) -> Vec<(i32, Bytes)> {
        broker
            .requests()
            .into_iter()
            .filter_map(|request| match request.body {
                RequestKind::Produce(produce) => Some(produce),
                _ => None,
            })
            .flat_map(|produce| {
                produce.topic_data.into_iter().flat_map(|topic| {
                    topic
                        .partition_data
                        .into_iter()
                        .map(|data| (data.index, data.records.unwrap_or_default()))
                })
            })
            .collect()
    }

    #[tokio::test]
    async fn keyed_records_follow_the_default_partitioner_and_get_offsets() {
        let broker = log_broker(0).await;
        let client = Client::connect(&[broker.address()], client_config())
            .await
            .unwrap();
        let producer = Producer::new(client, ProducerConfig::default())
            .await
            .unwrap();
        let mut deliveries = Vec::new();
        for index in 0..20 {
            let record = ProducerRecord::new("t", format!("v{index}"))
                .with_key(format!("k{}", index % 5))
                .with_header("h", Some(Bytes::from_static(b"1")));
            deliveries.push(producer.send(record).await.unwrap());
        }
        producer.flush().await.unwrap();
        let mut per_partition: HashMap<i32, Vec<i64>> = HashMap::new();
        for (index, delivery) in deliveries.into_iter().enumerate() {
            let metadata = delivery.wait().await.unwrap();
            let key = format!("k{}", index % 5);
            assert_eq!(metadata.partition.0, partition_for_key(key.as_bytes(), 4));
            per_partition
                .entry(metadata.partition.0)
                .or_default()
                .push(metadata.offset.unwrap().0);
        }
        for offsets in per_partition.values() {
            let expected: Vec<i64> = (0..offsets.len() as i64).collect();
            assert_eq!(offsets, &expected);
        }
        let stats = producer.close().await.unwrap();
        assert_eq!(stats.records_acknowledged, 20);
    }

    #[tokio::test]
    async fn batches_by_size_and_linger() {
        let broker = log_broker(0).await;
        let client = Client::connect(&[broker.address()], client_config())
            .await
            .unwrap();
        let config = ProducerConfig {
            batch_bytes: 1_000,
            linger: Duration::from_secs(3600),
            ..ProducerConfig::default()
        };
        let producer = Producer::new(client, config).await.unwrap();
        // 100-byte values: a batch closes after about nine records, by size alone.
        let mut last = None;
        for _ in 0..30 {
            let record = ProducerRecord::new("t", vec![b'x'; 100]).with_partition(2);
            last = Some(producer.send(record).await.unwrap());
        }
        let _ = last;
        let deadline = Instant::now() + Duration::from_secs(5);
        while broker.requests_of(ApiKey::Produce) < 3 {
            assert!(
                Instant::now() < deadline,
                "size-closed batches were not sent"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        producer.flush().await.unwrap();
        let batches = produced_batches(&broker);
        let counts: Vec<usize> = batches
            .iter()
            .map(|(_, bytes)| {
                decode_batches("t", PartitionIndex(2), bytes.clone(), Offset(0), 1 << 20)
                    .unwrap()
                    .records
                    .len()
            })
            .collect();
        assert_eq!(counts.iter().sum::<usize>(), 30);
        assert!(counts.iter().all(|&count| count <= 9), "{counts:?}");
        assert!(batches.iter().all(|(partition, _)| *partition == 2));
    }

    #[tokio::test]
    async fn idempotent_batches_keep_their_sequence_across_retries() {
        let broker = log_broker(2).await;
        let client = Client::connect(&[broker.address()], client_config())
            .await
            .unwrap();
        let config = ProducerConfig {
            idempotent: true,
            linger: Duration::ZERO,
            ..ProducerConfig::default()
        };
        let producer = Producer::new(client, config).await.unwrap();
        let first = producer
            .send(ProducerRecord::new("t", "a").with_partition(0))
            .await
            .unwrap();
        let first = first.wait().await.unwrap();
        let second = producer
            .send(ProducerRecord::new("t", "b").with_partition(0))
            .await
            .unwrap()
            .wait()
            .await
            .unwrap();
        assert_eq!(first.offset, Some(Offset(0)));
        assert_eq!(second.offset, Some(Offset(1)));
        let stats = producer.close().await.unwrap();
        assert_eq!(stats.retries, 2);
        let sequences: Vec<(i64, i32)> = produced_batches(&broker)
            .iter()
            .map(|(_, bytes)| {
                let header = caudal_model::RecordBatchHeader::parse(bytes).unwrap();
                (header.producer_id.0, header.base_sequence.0)
            })
            .collect();
        // Two failed attempts and the success of the first batch all carry sequence 0.
        assert_eq!(sequences, vec![(77, 0), (77, 0), (77, 0), (77, 1)]);
    }

    #[tokio::test]
    async fn acks_zero_completes_without_offsets() {
        let broker = log_broker(0).await;
        let client = Client::connect(&[broker.address()], client_config())
            .await
            .unwrap();
        let config = ProducerConfig {
            acks: Acks::None,
            ..ProducerConfig::default()
        };
        let producer = Producer::new(client, config).await.unwrap();
        let delivery = producer.send(ProducerRecord::new("t", "x")).await.unwrap();
        producer.flush().await.unwrap();
        assert_eq!(delivery.wait().await.unwrap().offset, None);
    }

    #[tokio::test]
    async fn rejects_out_of_range_partitions() {
        let broker = log_broker(0).await;
        let client = Client::connect(&[broker.address()], client_config())
            .await
            .unwrap();
        let producer = Producer::new(client, ProducerConfig::default())
            .await
            .unwrap();
        let delivery = producer
            .send(ProducerRecord::new("t", "x").with_partition(9))
            .await
            .unwrap();
        let error = delivery.wait().await.unwrap_err();
        assert!(error.to_string().contains("not in the range"), "{error}");
        assert!(producer.flush().await.is_err());
        assert!(producer.flush().await.is_ok());
    }
}
