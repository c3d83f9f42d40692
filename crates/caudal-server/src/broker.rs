//! The broker: owns its metadata service, the log manager and the hosted partitions, and runs the
//! listener and background tasks.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::metadata::{MetadataError, MetadataService};
use caudal_controller::command::{Command, CommandReply};
use caudal_controller::decisions::{CreatedTopic, NewTopic, TopicDefaults};
use caudal_controller::quorum::brokers::BrokerHeartbeatReply;
use caudal_controller::quorum::{Observer, Quorum, QuorumConfig, QuorumTuning};
use caudal_controller::{Controller, ControllerError};
use caudal_metadata::config::{BrokerLayers, ResolvedConfig, resolve_topic_configs};
use caudal_metadata::{ConfigResource, MetadataImage};
use caudal_model::{ProducerId, TimestampMs, TopicPartition};
use caudal_storage::{LogManager, StorageError};
use parking_lot::{Mutex, RwLock};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::BrokerConfig;
use crate::groups::GroupCoordinator;
use crate::partition::{Partition, settings_from_configs};

/// Name of the metadata log directory inside the data directory. It has no `-<partition>` suffix,
/// so it can never be mistaken for a partition directory.
pub const METADATA_DIR: &str = "__cluster_metadata";
/// The file that ties a data directory to one node of one cluster.
pub const META_PROPERTIES: &str = "meta.properties";
/// How often recovery points are checkpointed (Kafka's `log.flush.offset.checkpoint.interval.ms`).
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(60);

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("data directory {path}: {source}")]
    DataDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    MetaProperties(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Controller(#[from] ControllerError),
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error("cluster: {0}")]
    Cluster(String),
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> TimestampMs {
    let elapsed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    TimestampMs(elapsed.as_millis() as i64)
}

/// A block of producer ids this broker hands out: `[next, end)`.
struct ProducerIdBlock {
    next: i64,
    end: i64,
}

/// Shared broker state; handlers get an `Arc<Broker>`.
pub struct Broker {
    pub config: BrokerConfig,
    /// Where the metadata image comes from and metadata writes go.
    pub metadata: MetadataService,
    pub logs: LogManager,
    partitions: RwLock<HashMap<TopicPartition, Arc<Partition>>>,
    /// Partitions this node should host whose logs could not be opened or created.
    offline: RwLock<HashSet<TopicPartition>>,
    reconcile_lock: Mutex<()>,
    producer_ids: Mutex<ProducerIdBlock>,
    pub shutdown: CancellationToken,
    pub connections: Arc<Semaphore>,
    /// The group coordinators of the `__consumer_offsets` partitions this node leads.
    pub groups: GroupCoordinator,
    /// Every task the broker runs (connections, coordinators, maintenance): shutdown waits for
    /// them before closing the logs.
    pub tasks: TaskTracker,
    /// Set once the broker asks the controller to move its leaderships away before it stops
    /// (controlled shutdown): every heartbeat from then on says so.
    shutting_down: std::sync::atomic::AtomicBool,
    /// `last_applied` of the image the last reconcile applied (`u64::MAX`: none yet).
    reconciled: std::sync::atomic::AtomicU64,
}

impl Broker {
    /// Opens the data directory, loads and recovers logs. Without a metadata service the broker
    /// runs its own single-node controller on `<data>/__cluster_metadata` (replayed, and this node
    /// registered); a given service must already have this node registered.
    pub fn open(
        config: BrokerConfig,
        metadata: Option<MetadataService>,
    ) -> Result<Arc<Self>, StartError> {
        let data_dir = &config.data_dir;
        std::fs::create_dir_all(data_dir).map_err(|source| StartError::DataDir {
            path: data_dir.display().to_string(),
            source,
        })?;
        let metadata = match metadata {
            Some(metadata) => metadata,
            None => MetadataService::Local(Arc::new(Controller::open(
                &data_dir.join(METADATA_DIR),
                &config.registration(),
            )?)),
        };
        check_meta_properties(&config, &metadata.image())?;
        let logs = LogManager::open(data_dir, now_ms())?;
        for report in logs.recovery_report() {
            tracing::info!(?report, "log recovery");
        }
        let connections_max = config.connections_max.min(Semaphore::MAX_PERMITS);
        let config_groups = config.groups.clone();
        let node_id = config.node_id;
        let acks_all_fsync = config.acks_all_fsync;
        let broker = Arc::new(Self {
            config,
            metadata,
            logs,
            partitions: RwLock::new(HashMap::new()),
            offline: RwLock::new(HashSet::new()),
            reconcile_lock: Mutex::new(()),
            producer_ids: Mutex::new(ProducerIdBlock { next: 0, end: 0 }),
            shutdown: CancellationToken::new(),
            connections: Arc::new(Semaphore::new(connections_max)),
            groups: GroupCoordinator::new(node_id, config_groups, acks_all_fsync),
            tasks: TaskTracker::new(),
            shutting_down: std::sync::atomic::AtomicBool::new(false),
            reconciled: std::sync::atomic::AtomicU64::new(u64::MAX),
        });
        let failures = broker.reconcile();
        if !failures.is_empty() {
            tracing::error!(
                partitions = failures.len(),
                "some partitions could not be hosted and are offline"
            );
        }
        Ok(broker)
    }

    pub fn image(&self) -> Arc<MetadataImage> {
        self.metadata.image()
    }

    pub fn partition(&self, topic_partition: &TopicPartition) -> Option<Arc<Partition>> {
        self.partitions.read().get(topic_partition).cloned()
    }

    pub fn partitions(&self) -> Vec<Arc<Partition>> {
        self.partitions.read().values().cloned().collect()
    }

    /// A topic's effective configs (its own, then the broker's synonyms, then defaults).
    pub fn topic_configs(&self, image: &MetadataImage, topic: &str) -> Vec<ResolvedConfig> {
        resolve_topic_configs(
            image.configs(&ConfigResource::Topic(topic.to_string())),
            self.broker_layers(image),
        )
    }

    /// This broker's config layers: its dynamic configs and the dynamic cluster defaults from the
    /// metadata image, then the static values it started with.
    pub fn broker_layers<'a>(&'a self, image: &'a MetadataImage) -> BrokerLayers<'a> {
        BrokerLayers {
            dynamic_broker: image.configs(&ConfigResource::Broker(self.config.node_id)),
            dynamic_default: image.configs(&ConfigResource::BrokerDefault),
            static_broker: &self.config.values,
        }
    }

    /// Makes the hosted partitions match the metadata image: opens or creates logs for partitions
    /// this node replicates, applies config changes, and deletes logs of removed topics. Called at
    /// startup and for every new image (the writer of an image and the metadata follower both
    /// ask; an image already applied, with nothing offline to retry, is not gone through again).
    /// A partition whose log cannot be opened or created is reported and marked offline (its
    /// requests get KAFKA_STORAGE_ERROR); the rest are still hosted.
    pub fn reconcile(&self) -> Vec<(TopicPartition, StorageError)> {
        let _guard = self.reconcile_lock.lock();
        let image = self.image();
        if self.reconciled.load(std::sync::atomic::Ordering::Acquire) == image.last_applied
            && self.offline.read().is_empty()
        {
            return Vec::new();
        }
        let now = now_ms();
        let node_id = self.config.node_id;
        let mut wanted = HashMap::new();
        let mut offline = HashSet::new();
        let mut failures = Vec::new();
        let replicas = crate::replication::ReplicaContext::from_broker(self);
        for topic in image.topics() {
            let resolved = self.topic_configs(&image, &topic.name);
            let (log_config, settings) = settings_from_configs(&resolved);
            for (index, registration) in &topic.partitions {
                if !registration.replicas.contains(&node_id) {
                    continue;
                }
                let topic_partition = TopicPartition::new(topic.name.clone(), *index);
                let existing = self.partitions.read().get(&topic_partition).cloned();
                let partition = match existing {
                    Some(partition) if partition.topic_id == topic.topic_id => {
                        if partition.settings() != settings || partition.log.config() != log_config
                        {
                            partition.update_settings(log_config, settings.clone());
                        }
                        partition
                    }
                    _ => match self.host_log(&topic_partition, topic.topic_id, log_config, now) {
                        Ok(log) => Arc::new(Partition::new(
                            log,
                            registration.leader_epoch,
                            settings.clone(),
                            now,
                        )),
                        Err(error) => {
                            tracing::error!(partition = %topic_partition, %error, "cannot host partition; it is offline");
                            offline.insert(topic_partition.clone());
                            failures.push((topic_partition, error));
                            continue;
                        }
                    },
                };
                partition.apply_registration(registration, &image, &replicas, now);
                wanted.insert(topic_partition, partition);
            }
        }
        let removed: Vec<TopicPartition> = self
            .partitions
            .read()
            .keys()
            .filter(|key| !wanted.contains_key(*key) && !offline.contains(*key))
            .cloned()
            .collect();
        self.groups
            .reconcile(&image, node_id, &wanted, &self.tasks, &self.shutdown);
        let previous = std::mem::replace(&mut *self.partitions.write(), wanted);
        *self.offline.write() = offline;
        for topic_partition in removed {
            if let Some(partition) = previous.get(&topic_partition) {
                partition.stop_replication();
            }
            tracing::info!(partition = %topic_partition, "deleting log of removed partition");
            if let Err(error) = self.logs.delete_log(&topic_partition) {
                tracing::error!(partition = %topic_partition, %error, "deleting the log failed");
                failures.push((topic_partition, error));
            }
        }
        for log in self.logs.logs() {
            let topic_partition = log.topic_partition();
            if self.partitions.read().get(topic_partition).is_none()
                && !self.offline.read().contains(topic_partition)
            {
                tracing::warn!(
                    partition = %topic_partition, topic_id = %log.topic_id(),
                    "log on disk belongs to no known topic; leaving it untouched"
                );
            }
        }
        self.reconciled
            .store(image.last_applied, std::sync::atomic::Ordering::Release);
        failures
    }

    /// The log for a partition this node must host: the loaded one if it belongs to this topic
    /// id, else a new one (replacing the log of an earlier topic with the same name).
    fn host_log(
        &self,
        topic_partition: &TopicPartition,
        topic_id: uuid::Uuid,
        log_config: caudal_storage::LogConfig,
        now: TimestampMs,
    ) -> Result<Arc<caudal_storage::PartitionLog>, StorageError> {
        match self.logs.get(topic_partition) {
            Some(log) if log.topic_id() == topic_id => {
                log.update_config(log_config);
                Ok(log)
            }
            Some(stale) => {
                tracing::warn!(
                    partition = %topic_partition, stale_topic_id = %stale.topic_id(), %topic_id,
                    "deleting the log of an earlier topic with the same name"
                );
                self.logs.delete_log(topic_partition)?;
                self.logs
                    .create_log(topic_partition, topic_id, log_config, now)
            }
            None => self
                .logs
                .create_log(topic_partition, topic_id, log_config, now),
        }
    }

    /// True when this node should host the partition but its log is offline.
    pub fn is_offline(&self, topic_partition: &TopicPartition) -> bool {
        self.offline.read().contains(topic_partition)
    }

    /// A partition this node leads, or the error a client's request for it gets:
    /// NOT_LEADER_OR_FOLLOWER when this node only holds a replica, KAFKA_STORAGE_ERROR when it
    /// should be hosted but its log is offline, UNKNOWN_TOPIC_OR_PARTITION otherwise.
    pub fn partition_or_error(
        &self,
        topic_partition: &TopicPartition,
    ) -> Result<Arc<Partition>, caudal_protocol::ErrorCode> {
        match self.partition(topic_partition) {
            Some(partition) if partition.is_leader() => Ok(partition),
            Some(_) => Err(caudal_protocol::ErrorCode::NotLeaderOrFollower),
            None if self.is_offline(topic_partition) => {
                Err(caudal_protocol::ErrorCode::KafkaStorageError)
            }
            None => Err(caudal_protocol::ErrorCode::UnknownTopicOrPartition),
        }
    }

    /// Runs one metadata command on the active controller, then reconciles hosted partitions
    /// with the new image (so a created topic's partitions are hosted here before the response).
    pub async fn submit(self: &Arc<Self>, command: Command) -> Result<CommandReply, MetadataError> {
        let reply = self.metadata.submit(command).await;
        if reply.is_ok() {
            self.reconcile_in_background().await;
        }
        reply
    }

    /// CreateTopics for one topic (decided only, with `validate_only`).
    pub async fn create_topic(
        self: &Arc<Self>,
        topic: NewTopic,
        defaults: TopicDefaults,
        validate_only: bool,
    ) -> Result<CreatedTopic, MetadataError> {
        match self
            .submit(Command::CreateTopic {
                topic,
                defaults,
                validate_only,
            })
            .await?
        {
            CommandReply::TopicCreated(created) => Ok(created),
            other => Err(unexpected_reply(other)),
        }
    }

    /// Reconciles on a blocking thread (it opens and creates logs) and waits for it. Failures are
    /// logged and the partitions marked offline by reconcile itself.
    pub async fn reconcile_in_background(self: &Arc<Self>) {
        let broker = self.clone();
        if let Err(join_error) = tokio::task::spawn_blocking(move || broker.reconcile()).await {
            std::panic::resume_unwind(join_error.into_panic());
        }
    }

    /// Creates `__consumer_offsets` if it does not exist yet (Kafka does this on the first
    /// FindCoordinator for a group): `offsets.topic.num.partitions` partitions, compacted, with
    /// `offsets.topic.replication.factor` capped at the registered brokers.
    pub async fn ensure_offsets_topic(self: &Arc<Self>) -> Result<(), MetadataError> {
        if self.image().topic(crate::groups::OFFSETS_TOPIC).is_some() {
            return Ok(());
        }
        let settings = self.config.groups.clone();
        let configured = settings.offsets_topic_replication_factor;
        let image = self.image();
        // The cluster's size: its registered brokers, and at least its voters (brokers that are
        // still starting count, so an early request does not make a smaller topic). Placement
        // then needs that many active brokers and is refused until they are.
        let voters = self.config.cluster.as_ref().map_or(0, |c| c.voters.len());
        let brokers = image.brokers.len().max(voters).clamp(1, i16::MAX as usize) as i16;
        let replication_factor = configured.min(brokers);
        let topic = NewTopic {
            name: crate::groups::OFFSETS_TOPIC.to_string(),
            num_partitions: settings.offsets_topic_partitions,
            replication_factor,
            assignments: Default::default(),
            configs: [
                ("cleanup.policy", "compact".to_string()),
                ("compression.type", "producer".to_string()),
                (
                    "segment.bytes",
                    settings.offsets_topic_segment_bytes.to_string(),
                ),
            ]
            .into_iter()
            .map(|(name, value)| (name.to_string(), value))
            .collect(),
        };
        let defaults = TopicDefaults {
            num_partitions: settings.offsets_topic_partitions,
            replication_factor,
        };
        let created = self.create_topic(topic, defaults, false).await;
        match created {
            Ok(created) => {
                tracing::info!(
                    partitions = created.num_partitions,
                    replication_factor = created.replication_factor,
                    "created the consumer offsets topic"
                );
                if created.replication_factor < configured {
                    tracing::warn!(
                        configured,
                        replication_factor = created.replication_factor,
                        "offsets.topic.replication.factor is capped at the registered brokers"
                    );
                }
                Ok(())
            }
            Err(MetadataError::Rejected(ControllerError::TopicAlreadyExists { .. })) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Hands out the next producer id, taking a new block from the controller when needed.
    pub async fn next_producer_id(self: &Arc<Self>) -> Result<ProducerId, MetadataError> {
        {
            let mut block = self.producer_ids.lock();
            if block.next < block.end {
                block.next += 1;
                return Ok(ProducerId(block.next - 1));
            }
        }
        let node_id = self.config.node_id;
        let (start, count) = match self
            .submit(Command::AllocateProducerIds { node_id })
            .await?
        {
            CommandReply::ProducerIds {
                first_producer_id,
                count,
            } => (first_producer_id, count),
            other => return Err(unexpected_reply(other)),
        };
        let mut block = self.producer_ids.lock();
        if block.next >= block.end {
            block.next = start.0;
            block.end = start.0 + count;
        }
        block.next += 1;
        Ok(ProducerId(block.next - 1))
    }

    /// Flushes and checkpoints everything and writes the clean-shutdown marker.
    pub fn close(&self) -> Result<(), StorageError> {
        self.logs.shutdown()
    }
}

/// A reply of another kind than the command's: a controller bug, reported as a timeout-like
/// failure rather than trusted.
pub fn unexpected_reply(reply: CommandReply) -> MetadataError {
    tracing::error!(
        ?reply,
        "the controller answered with a reply of another kind"
    );
    MetadataError::Unavailable(format!("unexpected controller reply {reply:?}"))
}

fn check_meta_properties(config: &BrokerConfig, image: &MetadataImage) -> Result<(), StartError> {
    let path = config.data_dir.join(META_PROPERTIES);
    let cluster_id = image.cluster_id.clone().unwrap_or_default();
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let value = |key: &str| {
                text.lines()
                    .filter_map(|line| line.split_once('='))
                    .find(|(name, _)| name.trim() == key)
                    .map(|(_, value)| value.trim().to_string())
            };
            if let Some(node_id) = value("node.id")
                && node_id != config.node_id.to_string()
            {
                return Err(StartError::MetaProperties(format!(
                    "{} belongs to node.id {node_id}, but this broker is node.id {}",
                    path.display(),
                    config.node_id
                )));
            }
            if let Some(stored) = value("cluster.id")
                && stored != cluster_id
            {
                return Err(StartError::MetaProperties(format!(
                    "{} belongs to cluster {stored}, but the metadata log says {cluster_id}",
                    path.display()
                )));
            }
            Ok(())
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let contents = format!(
                "#\n# Written by caudal; ties this directory to one node of one cluster.\nversion=1\nnode.id={}\ncluster.id={cluster_id}\n",
                config.node_id
            );
            let io = |source| StartError::DataDir {
                path: path.display().to_string(),
                source,
            };
            let temporary = path.with_extension("properties.tmp");
            std::fs::write(&temporary, contents).map_err(io)?;
            std::fs::File::open(&temporary)
                .and_then(|file| file.sync_all())
                .map_err(io)?;
            std::fs::rename(&temporary, &path).map_err(io)?;
            Ok(())
        }
        Err(source) => Err(StartError::DataDir {
            path: path.display().to_string(),
            source,
        }),
    }
}

/// A running broker: its address and a way to stop it.
pub struct BrokerHandle {
    pub broker: Arc<Broker>,
    pub local_addr: SocketAddr,
}

impl BrokerHandle {
    /// Stops accepting, closes connections, waits for tasks, and closes the logs cleanly.
    pub async fn shutdown(self) -> Result<(), StorageError> {
        if self.broker.metadata.is_clustered() && self.broker.config.controlled_shutdown {
            controlled_shutdown(&self.broker).await;
        }
        self.broker.shutdown.cancel();
        self.broker.tasks.close();
        if tokio::time::timeout(Duration::from_secs(10), self.broker.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("connections did not finish within 10 s; closing logs anyway");
        }
        let broker = self.broker.clone();
        let closed = match tokio::task::spawn_blocking(move || broker.close()).await {
            Ok(result) => result,
            Err(join_error) => std::panic::resume_unwind(join_error.into_panic()),
        };
        self.broker.metadata.shutdown().await;
        closed
    }
}

impl Drop for BrokerHandle {
    /// A handle dropped without `shutdown` (a panicking test, an aborted start) still stops the
    /// broker's tasks and threads, so nothing waits on them forever.
    fn drop(&mut self) {
        self.broker.shutdown.cancel();
    }
}

/// How long a stopping broker waits for the controller to move its leaderships away.
const CONTROLLED_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// Kafka's controlled shutdown: heartbeat with "want to shut down safely" until the controller
/// answers that this broker leads nothing any more (or no other replica could take over), so
/// clients move to the new leaders before this one stops answering. Bounded.
async fn controlled_shutdown(broker: &Arc<Broker>) {
    broker
        .shutting_down
        .store(true, std::sync::atomic::Ordering::SeqCst);
    tracing::info!("controlled shutdown: moving leaderships away");
    let deadline = tokio::time::Instant::now() + CONTROLLED_SHUTDOWN_TIMEOUT;
    loop {
        match heartbeat(broker).await {
            Ok(reply) if reply.should_shut_down => {
                tracing::info!("controlled shutdown: the controller moved every leadership away");
                return;
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "controlled shutdown heartbeat failed"),
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(
                "controlled shutdown did not complete within {CONTROLLED_SHUTDOWN_TIMEOUT:?}; stopping anyway"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One BrokerHeartbeat to the active controller.
async fn heartbeat(broker: &Arc<Broker>) -> Result<BrokerHeartbeatReply, MetadataError> {
    let command = Command::BrokerHeartbeat {
        node_id: broker.config.node_id,
        want_shutdown_safely: broker
            .shutting_down
            .load(std::sync::atomic::Ordering::SeqCst),
    };
    match broker.metadata.submit(command).await? {
        CommandReply::BrokerHeartbeat(reply) => Ok(reply),
        other => Err(unexpected_reply(other)),
    }
}

/// Heartbeats every `broker.heartbeat.interval.ms`, so the controller keeps this broker's lease
/// (a broker whose lease lapses is fenced and loses its leaderships).
async fn heartbeat_loop(broker: Arc<Broker>) {
    let interval = Duration::from_millis(broker.config.broker_heartbeat_interval_ms as u64);
    let mut fenced = false;
    loop {
        tokio::select! {
            _ = broker.shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        match heartbeat(&broker).await {
            Ok(reply) => {
                if reply.is_fenced != fenced {
                    fenced = reply.is_fenced;
                    tracing::info!(fenced, "the controller changed this broker's fencing");
                }
            }
            Err(error) => tracing::warn!(%error, "broker heartbeat failed"),
        }
    }
}

/// Starts this node's member of the metadata quorum (its controller listener, the Raft log in
/// `<data>/__cluster_metadata`) and waits until the quorum has formed: a majority of the voters
/// is up and the cluster has an id. Waits as long as it takes, saying so every 10 s.
pub async fn start_quorum(config: &BrokerConfig) -> Result<Arc<Quorum>, StartError> {
    let cluster = config.cluster.as_ref().ok_or_else(|| {
        StartError::Cluster("no controller.quorum.voters: this is a single node".into())
    })?;
    let listen = cluster.controller_listen.ok_or_else(|| {
        StartError::Cluster(format!(
            "node {} is not a controller: process.roles lacks controller",
            config.node_id
        ))
    })?;
    std::fs::create_dir_all(&config.data_dir).map_err(|source| StartError::DataDir {
        path: config.data_dir.display().to_string(),
        source,
    })?;
    let tuning = QuorumTuning {
        broker_session_timeout: Duration::from_millis(config.broker_session_timeout_ms as u64),
        ..QuorumTuning::default()
    };
    let quorum = Quorum::start(QuorumConfig {
        node_id: config.node_id,
        dir: config.data_dir.join(METADATA_DIR),
        listen,
        voters: cluster.voters.clone(),
        tuning,
    })
    .await
    .map_err(|error| StartError::Cluster(error.to_string()))?;
    tracing::info!(
        controller_address = %listen, voters = cluster.voters.len(),
        "controller started; waiting for the metadata quorum"
    );
    wait_for_cluster_id(quorum.subscribe(), || quorum.leader()).await?;
    Ok(Arc::new(quorum))
}

/// Starts following the metadata quorum as a broker without the controller role (a Raft
/// observer: no vote, no Raft log) and waits until the first image with a cluster id arrives
/// from a controller. Waits as long as it takes, saying so every 10 s.
pub async fn start_observer(config: &BrokerConfig) -> Result<Arc<Observer>, StartError> {
    let cluster = config.cluster.as_ref().ok_or_else(|| {
        StartError::Cluster("no controller.quorum.voters: this is a single node".into())
    })?;
    let observer = Observer::start(cluster.voters.clone());
    tracing::info!(
        voters = cluster.voters.len(),
        "broker without the controller role; waiting for the metadata quorum's image"
    );
    wait_for_cluster_id(observer.subscribe(), || observer.leader()).await?;
    Ok(Arc::new(observer))
}

/// Waits until an image with a cluster id is published on `images`, logging every 10 s.
async fn wait_for_cluster_id(
    mut images: tokio::sync::watch::Receiver<Arc<MetadataImage>>,
    leader: impl Fn() -> Option<caudal_model::NodeId>,
) -> Result<(), StartError> {
    let mut waited = 0u64;
    while images.borrow_and_update().cluster_id.is_none() {
        match tokio::time::timeout(Duration::from_secs(10), images.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => {
                return Err(StartError::Cluster("the metadata quorum stopped".into()));
            }
            Err(_) => {
                waited += 10;
                tracing::info!(
                    waited_s = waited, leader = ?leader(),
                    "still waiting for the metadata quorum (a majority of the voters must run)"
                );
            }
        }
    }
    Ok(())
}

/// Registers this broker with the active controller, retrying until it answers.
async fn register_until_done(
    metadata: &MetadataService,
    config: &BrokerConfig,
) -> Result<(), StartError> {
    let mut attempts = 0u32;
    loop {
        match metadata.register(config.registration()).await {
            Ok(()) => return Ok(()),
            Err(MetadataError::Rejected(error)) => return Err(StartError::Controller(error)),
            Err(MetadataError::Unavailable(reason)) => {
                attempts += 1;
                if attempts % 10 == 1 {
                    tracing::warn!(%reason, "broker registration not answered yet; retrying");
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// Opens the broker on its own single-node controller and starts serving on its listener.
pub async fn start(config: BrokerConfig) -> Result<BrokerHandle, StartError> {
    start_with(config, None).await
}

/// Opens the broker and starts serving on its listener. With `metadata`, the broker registers
/// itself there and follows its images (several brokers of one process may share one service);
/// without, it runs its own single-node controller.
pub async fn start_with(
    mut config: BrokerConfig,
    metadata: Option<MetadataService>,
) -> Result<BrokerHandle, StartError> {
    let listen = config.listen;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| StartError::Listen {
            address: listen,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| StartError::Listen {
        address: listen,
        source,
    })?;
    if config.advertised_port == 0 {
        // Listening on an ephemeral port: the port others must dial is the one the OS picked.
        config.advertised_port = local_addr.port();
    }
    let metadata = match (metadata, &config.cluster) {
        (Some(metadata), _) => Some(metadata),
        (None, Some(cluster)) if !cluster.broker => {
            return Err(StartError::Cluster(
                "this node has only the controller role: run it with start_quorum".into(),
            ));
        }
        (None, Some(cluster)) if cluster.controller_listen.is_none() => {
            Some(MetadataService::Observer(start_observer(&config).await?))
        }
        (None, Some(_)) => Some(MetadataService::Quorum(start_quorum(&config).await?)),
        (None, None) => None,
    };
    let clustered = metadata.is_some();
    if let Some(metadata) = &metadata {
        register_until_done(metadata, &config).await?;
    }
    let broker = tokio::task::spawn_blocking(move || Broker::open(config, metadata))
        .await
        .unwrap_or_else(|join_error| std::panic::resume_unwind(join_error.into_panic()))?;
    let tasks = broker.tasks.clone();
    tasks.spawn(accept_loop(broker.clone(), listener, tasks.clone()));
    tasks.spawn(maintenance_loop(broker.clone()));
    tasks.spawn(follow_metadata(broker.clone()));
    tasks.spawn(crate::replication::replication_loop(broker.clone()));
    if clustered {
        // The first heartbeat unfences this broker; later ones keep its lease.
        if let Err(error) = heartbeat(&broker).await {
            tracing::warn!(%error, "first broker heartbeat failed; retrying in the background");
        }
        tasks.spawn(heartbeat_loop(broker.clone()));
    }
    tasks.spawn(crate::lifecycle::retention_loop(broker.clone()));
    crate::lifecycle::start_cleaners(&broker);
    tracing::info!(
        address = %local_addr, node_id = %broker.config.node_id,
        data_dir = %broker.config.data_dir.display(),
        cluster_id = broker.image().cluster_id.as_deref().unwrap_or(""),
        "broker listening"
    );
    Ok(BrokerHandle { broker, local_addr })
}

/// Reconciles hosted partitions with every new metadata image, whoever wrote it.
async fn follow_metadata(broker: Arc<Broker>) {
    let mut images = broker.metadata.subscribe();
    loop {
        tokio::select! {
            _ = broker.shutdown.cancelled() => return,
            changed = images.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
        images.borrow_and_update();
        broker.reconcile_in_background().await;
    }
}

async fn accept_loop(broker: Arc<Broker>, listener: TcpListener, tasks: TaskTracker) {
    loop {
        let permit = tokio::select! {
            _ = broker.shutdown.cancelled() => return,
            permit = broker.connections.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
        };
        let accepted = tokio::select! {
            _ = broker.shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                let broker = broker.clone();
                tasks.spawn(async move {
                    crate::connection::serve(broker, stream, peer).await;
                    drop(permit);
                });
            }
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn maintenance_loop(broker: Arc<Broker>) {
    let mut flush_tick = tokio::time::interval(Duration::from_secs(1));
    let mut checkpoint_tick = tokio::time::interval(CHECKPOINT_INTERVAL);
    checkpoint_tick.tick().await;
    loop {
        tokio::select! {
            _ = broker.shutdown.cancelled() => return,
            _ = flush_tick.tick() => {
                let now = now_ms();
                for partition in broker.partitions() {
                    partition.maybe_flush_for_time(now);
                }
            }
            _ = checkpoint_tick.tick() => {
                let broker = broker.clone();
                let result = tokio::task::spawn_blocking(move || broker.logs.checkpoint()).await;
                if let Ok(Err(error)) = result {
                    tracing::error!(%error, "checkpointing recovery points failed");
                }
            }
        }
    }
}
