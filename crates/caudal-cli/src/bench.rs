//! `caudal bench produce|consume`: load generators that report throughput, latency percentiles and
//! the broker's CPU time.
//!
//! The producer benchmark never encodes records on the send path: it builds one record batch per
//! record count once, wraps it into a produce request per (partition, record count) once, and sends
//! those bytes again and again with fresh correlation ids (the broker assigns offsets). Once a
//! second it re-stamps the batches' base and max timestamps (and their CRC-32C) so records carry
//! current times. Each broker gets one connection with up to `--inflight` requests outstanding;
//! responses are awaited in order by a separate task, which also records latencies.

use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use caudal_client::admin::NewTopic;
use caudal_client::client::PartitionBatch;
use caudal_client::connection::{PendingResponse, PreparedRequest};
use caudal_client::consumer::{ConsumerConfig, OffsetReset};
use caudal_client::records::{
    Compression, RecordData, compression_name, encode_batch, parse_compression,
};
use caudal_client::{
    Acks, Client, ClientError, Connection, Consumer, KafkaError, StartOffset, TopicInfo,
};
use caudal_model::{NodeId, PartitionIndex};
use caudal_protocol::ErrorCode;
use caudal_protocol::kafka_protocol::messages::{MetadataRequest, ProduceResponse};
use clap::{Args, Subcommand};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::common::{ConnectArgs, now_ms, run};

const EXAMPLES: &str = "\
Examples:
  caudal bench produce --records 1000000 --record-size 100 --acks 1
  caudal bench produce --records 1000000 --acks all --partitions 6 --inflight 10
  caudal bench produce --records 5000000 --batch-bytes 262144 --compression lz4 \\
      --broker-pid $(pgrep -f 'caudal server')
  caudal bench consume --topic caudal-bench --records 1000000 --json";

/// Load generators: produce or consume throughput, latency, broker CPU.
#[derive(Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// Produce records as fast as possible (or at --throughput) and report throughput and latency.
    #[command(after_help = "\
Examples:
  caudal bench produce --records 1000000 --record-size 100 --acks 1
  caudal bench produce --records 2000000 --acks all --inflight 16 --json
  caudal bench produce --records 100000 --throughput 20000 --linger-ms 10
  caudal bench produce --records 1000000 --broker-pid 12345

The topic is created with --partitions if it does not exist. Records are --record-size
bytes of random letters (distinct per record) without a key, spread round-robin over
the partitions, one batch per request. Latency runs from handing a batch to the
connection (including any wait for an in-flight slot; with --throughput, from the
batch's first record) to its acknowledgement. MB/s counts record values, in MiB as
Kafka's perf tools do. With --broker-pid, the broker's CPU time during the run is read
from /proc/PID/stat; the benchmark's own CPU time is always reported.")]
    Produce(ProduceBenchArgs),
    /// Consume records from the earliest offsets and report throughput.
    #[command(after_help = "\
Examples:
  caudal bench consume --topic caudal-bench --records 1000000
  caudal bench consume --topic caudal-bench --records 1000000 --broker-pid 12345 --json

Records are counted from batch headers, not decoded: this measures the broker's fetch
path. MB/s counts fetched batch bytes (MiB).")]
    Consume(ConsumeBenchArgs),
}

#[derive(Args, Debug)]
struct ProduceBenchArgs {
    /// Topic to produce to (created if missing).
    #[arg(long, value_name = "NAME", default_value = "caudal-bench")]
    topic: String,
    /// Number of records to send.
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    records: u64,
    /// Size of each record's value in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 100)]
    record_size: usize,
    /// Partitions of the topic when it has to be created.
    #[arg(long, value_name = "P", default_value_t = 1)]
    partitions: i32,
    /// Replication factor when the topic has to be created (default: the broker's).
    #[arg(long, value_name = "N")]
    replication_factor: Option<i16>,
    /// 0, 1 or all.
    #[arg(long, value_name = "0|1|all", default_value = "all", value_parser = parse_acks)]
    acks: Acks,
    /// With --throughput: how long a batch waits for more records (Kafka: linger.ms).
    #[arg(long, value_name = "MS", default_value_t = 5)]
    linger_ms: u64,
    /// Batch size in bytes, uncompressed (Kafka: batch.size).
    #[arg(long, value_name = "BYTES", default_value_t = 16_384)]
    batch_bytes: usize,
    /// none, gzip, snappy, lz4 or zstd.
    #[arg(long, value_name = "CODEC", default_value = "none")]
    compression: String,
    /// Requests in flight per broker connection.
    #[arg(long, value_name = "K", default_value_t = 5)]
    inflight: usize,
    /// Target records per second across all partitions (default: as fast as possible).
    #[arg(long, value_name = "RECORDS_PER_SEC")]
    throughput: Option<u64>,
    /// Report the CPU time this process (the broker) used during the run.
    #[arg(long, value_name = "PID")]
    broker_pid: Option<u32>,
    /// Print the result as one JSON line.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    connect: ConnectArgs,
}

#[derive(Args, Debug)]
struct ConsumeBenchArgs {
    /// Topic to read.
    #[arg(long, value_name = "NAME", default_value = "caudal-bench")]
    topic: String,
    /// Stop after this many records.
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    records: u64,
    /// Stop when no record arrived for this long.
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    timeout_ms: u64,
    /// Kafka: fetch.max.bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 50 << 20)]
    fetch_max_bytes: i32,
    /// Kafka: max.partition.fetch.bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20)]
    partition_fetch_max_bytes: i32,
    /// Kafka: fetch.max.wait.ms.
    #[arg(long, value_name = "MS", default_value_t = 500)]
    fetch_max_wait_ms: u64,
    /// Report the CPU time this process (the broker) used during the run.
    #[arg(long, value_name = "PID")]
    broker_pid: Option<u32>,
    /// Print the result as one JSON line.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    connect: ConnectArgs,
}

fn parse_acks(text: &str) -> Result<Acks, String> {
    text.parse::<Acks>().map_err(|error| error.to_string())
}

fn acks_name(acks: Acks) -> &'static str {
    match acks {
        Acks::None => "0",
        Acks::Leader => "1",
        Acks::All => "all",
    }
}

pub fn main(args: BenchArgs) -> ExitCode {
    match args.command {
        BenchCommand::Produce(args) => run(bench_produce(args)),
        BenchCommand::Consume(args) => run(bench_consume(args)),
    }
}

// ---------------------------------------------------------------------------------------------
// Broker CPU time

/// CPU seconds (user + system) the process has used so far, from `/proc/PID/stat`.
fn process_cpu_seconds(pid: u32, ticks_per_second: f64) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("cannot read /proc/{pid}/stat"))?;
    parse_cpu_seconds(&stat, ticks_per_second)
        .with_context(|| format!("cannot parse /proc/{pid}/stat"))
}

fn parse_cpu_seconds(stat: &str, ticks_per_second: f64) -> Option<f64> {
    // `pid (comm) state ...`: comm may hold spaces and parentheses, so split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 (utime) and 15 (stime) of stat(5), counted from `state` (field 3) here.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / ticks_per_second)
}

/// The kernel's clock tick rate for /proc times (`getconf CLK_TCK`; 100 on Linux in practice).
fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .and_then(|text| text.trim().parse::<f64>().ok())
        .filter(|ticks| *ticks > 0.0)
        .unwrap_or(100.0)
}

struct CpuProbe {
    pid: u32,
    ticks: f64,
    start: f64,
}

impl CpuProbe {
    fn start(pid: Option<u32>) -> anyhow::Result<Option<Self>> {
        let Some(pid) = pid else { return Ok(None) };
        let ticks = clock_ticks_per_second();
        let start = process_cpu_seconds(pid, ticks)?;
        Ok(Some(Self { pid, ticks, start }))
    }

    fn used(&self) -> anyhow::Result<f64> {
        Ok(process_cpu_seconds(self.pid, self.ticks)? - self.start)
    }
}

fn progress_bar(total: u64, unit: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr_with_hz(4));
    // `wide_bar` fills what the terminal has left, so the line never wraps.
    let template = format!(
        "{{elapsed_precise}} [{{wide_bar}}] {{human_pos}}/{{human_len}} {unit} eta {{eta}}"
    );
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

// ---------------------------------------------------------------------------------------------
// Produce

/// Record values: `distinct` independent runs of random capital letters (Kafka's perf test uses
/// capital letters too). Distinct values keep compression ratios honest: a batch of one value
/// repeated would compress far better than real data.
#[derive(Clone)]
struct Values {
    pool: Bytes,
    size: usize,
    distinct: usize,
}

impl Values {
    fn new(size: usize, distinct: usize) -> Self {
        let distinct = distinct.max(1);
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let pool: Vec<u8> = (0..size * distinct)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                b'A' + (state % 26) as u8
            })
            .collect();
        Self {
            pool: pool.into(),
            size,
            distinct,
        }
    }

    fn value(&self, index: usize) -> Bytes {
        let start = (index % self.distinct) * self.size;
        self.pool.slice(start..start + self.size)
    }
}

fn batch_of(
    values: &Values,
    count: usize,
    compression: Compression,
    timestamp: i64,
) -> Result<Bytes, ClientError> {
    let records: Vec<RecordData> = (0..count)
        .map(|index| RecordData {
            value: Some(values.value(index)),
            timestamp,
            ..RecordData::default()
        })
        .collect();
    encode_batch(&records, compression, None)
}

/// How many records of `record_size` bytes fit in `batch_bytes` of uncompressed batch (at least
/// one). The encoded size does not depend on the values' contents.
fn records_per_batch(record_size: usize, batch_bytes: usize) -> Result<usize, ClientError> {
    let values = Values::new(record_size, 1);
    let size = |count| batch_of(&values, count, Compression::None, 0).map(|batch| batch.len());
    let one = size(1)?;
    let many = size(128)?;
    let per_record = ((many - one) / 127).max(1);
    let overhead = one.saturating_sub(per_record);
    let mut count = (batch_bytes.saturating_sub(overhead) / per_record).max(1);
    while count > 1 && size(count)? > batch_bytes {
        count = (count * 15 / 16).max(1).min(count - 1);
    }
    while size(count + 1)? <= batch_bytes {
        count += 1;
    }
    Ok(count)
}

/// Sets a batch's base and max timestamps and recomputes its CRC-32C (which covers bytes 21..).
fn restamp(batch: &mut [u8], timestamp: i64) {
    batch[27..35].copy_from_slice(&timestamp.to_be_bytes());
    batch[35..43].copy_from_slice(&timestamp.to_be_bytes());
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// What every sender shares: the batch templates by record count.
struct Plan {
    topic: String,
    acks: Acks,
    compression: Compression,
    values: Values,
    records_per_batch: usize,
    timeout: Duration,
    /// Records per second per node, with the linger time, when throttled.
    throttle: Option<(f64, Duration)>,
}

/// Batches by record count, re-stamped at most once a second.
struct Templates {
    batches: HashMap<usize, (Bytes, i64)>,
    requests: HashMap<(PartitionIndex, usize), (PreparedRequest, i64)>,
}

impl Templates {
    fn new() -> Self {
        Self {
            batches: HashMap::new(),
            requests: HashMap::new(),
        }
    }

    fn request(
        &mut self,
        plan: &Plan,
        client: &Client,
        connection: &Connection,
        partition: PartitionIndex,
        count: usize,
    ) -> anyhow::Result<&PreparedRequest> {
        let second = now_ms() / 1000;
        let fresh = self
            .requests
            .get(&(partition, count))
            .is_some_and(|(_, stamped)| *stamped == second);
        if !fresh {
            let batch = match self.batches.get(&count) {
                Some((batch, stamped)) if *stamped == second => batch.clone(),
                Some((batch, _)) => {
                    let mut bytes = batch.to_vec();
                    restamp(&mut bytes, now_ms());
                    let bytes = Bytes::from(bytes);
                    self.batches.insert(count, (bytes.clone(), second));
                    bytes
                }
                None => {
                    let bytes = batch_of(&plan.values, count, plan.compression, now_ms())?;
                    self.batches.insert(count, (bytes.clone(), second));
                    bytes
                }
            };
            let (request, routing) = client.produce_request(
                connection,
                plan.acks,
                plan.timeout,
                &[PartitionBatch {
                    topic: plan.topic.clone(),
                    partition,
                    records: batch,
                }],
            )?;
            let prepared = connection.prepare(&request, routing.version)?;
            self.requests.insert((partition, count), (prepared, second));
        }
        Ok(&self.requests[&(partition, count)].0)
    }
}

struct InFlight {
    pending: PendingResponse,
    started: Instant,
    records: u64,
}

#[derive(Default)]
struct NodeResult {
    records: u64,
    requests: u64,
    latency_us: Option<Histogram<u64>>,
}

async fn ensure_topic(
    client: &Client,
    topic: &str,
    partitions: i32,
    replication_factor: Option<i16>,
    timeout: Duration,
) -> anyhow::Result<TopicInfo> {
    match client.topic(topic).await {
        Ok(info) => {
            if info.partitions.len() as i32 != partitions {
                eprintln!(
                    "note: topic {topic:?} exists with {} partition(s); using them all",
                    info.partitions.len()
                );
            }
        }
        Err(error) if error.kafka_code() == Some(ErrorCode::UnknownTopicOrPartition) => {
            let new = NewTopic::new(topic)
                .with_partitions(partitions)
                .with_replication_factor(replication_factor.unwrap_or(-1));
            match client.create_topic(new, false, timeout).await {
                Ok(_) => {}
                // Someone else created it meanwhile.
                Err(error) if error.kafka_code() == Some(ErrorCode::TopicAlreadyExists) => {}
                Err(error) => return Err(error.into()),
            }
        }
        Err(error) => return Err(error.into()),
    }
    Ok(client.topic_with_leaders(topic, false).await?)
}

#[derive(Serialize)]
struct Latency {
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
    mean: f64,
}

#[derive(Serialize)]
struct ProduceReport {
    bench: &'static str,
    topic: String,
    records: u64,
    record_size: usize,
    partitions: usize,
    acks: &'static str,
    compression: &'static str,
    batch_bytes: usize,
    records_per_batch: usize,
    linger_ms: u64,
    inflight: usize,
    throughput_limit: Option<u64>,
    requests: u64,
    seconds: f64,
    records_per_second: f64,
    mb_per_second: f64,
    latency_ms: Option<Latency>,
    broker_cpu_seconds: Option<f64>,
    broker_cpu_seconds_per_million_records: Option<f64>,
    client_cpu_seconds: Option<f64>,
}

async fn bench_produce(args: ProduceBenchArgs) -> anyhow::Result<()> {
    if args.records == 0 {
        bail!("--records must be at least 1");
    }
    if args.partitions < 1 {
        bail!("--partitions must be at least 1");
    }
    if args.inflight < 1 {
        bail!("--inflight must be at least 1");
    }
    if args.throughput == Some(0) {
        bail!("--throughput must be at least 1 record per second");
    }
    let compression = parse_compression(&args.compression)?;
    let mut config = args.connect.client_config();
    config.connection.in_flight_requests_max = args.inflight;
    let client = args.connect.connect_with(config).await?;
    let timeout = Duration::from_millis(args.connect.request_timeout_ms);
    let topic = ensure_topic(
        &client,
        &args.topic,
        args.partitions,
        args.replication_factor,
        timeout,
    )
    .await?;

    let per_batch = records_per_batch(args.record_size, args.batch_bytes.max(1))?;
    let values = Values::new(args.record_size, per_batch);
    let mut by_node: BTreeMap<NodeId, Vec<PartitionIndex>> = BTreeMap::new();
    for partition in &topic.partitions {
        let leader = partition
            .leader
            .with_context(|| format!("{}-{} has no leader", topic.name, partition.partition))?;
        by_node.entry(leader).or_default().push(partition.partition);
    }
    let partition_count = topic.partitions.len().max(1);
    let mut connections = Vec::new();
    for (node_id, partitions) in &by_node {
        connections.push((client.connection(*node_id).await?, partitions.clone()));
    }
    let throttle = args.throughput.map(|total| {
        (
            total as f64 / partition_count as f64,
            Duration::from_millis(args.linger_ms),
        )
    });
    let plan = Arc::new(Plan {
        topic: topic.name.clone(),
        acks: args.acks,
        compression,
        values,
        records_per_batch: per_batch,
        timeout,
        throttle,
    });

    let progress = progress_bar(args.records, "records");
    let remaining = Arc::new(AtomicU64::new(args.records));
    let cpu = CpuProbe::start(args.broker_pid)?;
    let own_cpu = CpuProbe::start(Some(std::process::id())).ok().flatten();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (connection, partitions) in connections {
        tasks.push(tokio::spawn(node_produce(
            client.clone(),
            connection,
            partitions,
            plan.clone(),
            remaining.clone(),
            progress.clone(),
            started,
        )));
    }
    let mut total = NodeResult::default();
    let mut first_error = None;
    for task in tasks {
        match task.await.context("benchmark task failed")? {
            Ok(result) => {
                total.records += result.records;
                total.requests += result.requests;
                if let Some(histogram) = result.latency_us {
                    match &mut total.latency_us {
                        Some(sum) => sum.add(&histogram).context("merging latencies")?,
                        None => total.latency_us = Some(histogram),
                    }
                }
            }
            Err(error) => {
                first_error.get_or_insert(error);
            }
        }
    }
    let elapsed = started.elapsed();
    progress.finish_and_clear();
    if let Some(error) = first_error {
        return Err(error);
    }
    let cpu_seconds = cpu.as_ref().map(CpuProbe::used).transpose()?;
    let client_cpu_seconds = own_cpu.as_ref().and_then(|probe| probe.used().ok());
    let seconds = elapsed.as_secs_f64().max(1e-9);
    let ms = |micros: u64| micros as f64 / 1000.0;
    let report = ProduceReport {
        bench: "produce",
        topic: topic.name.clone(),
        records: total.records,
        record_size: args.record_size,
        partitions: partition_count,
        acks: acks_name(args.acks),
        compression: compression_name(compression),
        batch_bytes: args.batch_bytes,
        records_per_batch: per_batch,
        linger_ms: args.linger_ms,
        inflight: args.inflight,
        throughput_limit: args.throughput,
        requests: total.requests,
        seconds,
        records_per_second: total.records as f64 / seconds,
        mb_per_second: (total.records as f64 * args.record_size as f64) / seconds / 1_048_576.0,
        latency_ms: total.latency_us.as_ref().map(|histogram| Latency {
            p50: ms(histogram.value_at_quantile(0.50)),
            p99: ms(histogram.value_at_quantile(0.99)),
            p999: ms(histogram.value_at_quantile(0.999)),
            max: ms(histogram.max()),
            mean: histogram.mean() / 1000.0,
        }),
        broker_cpu_seconds: cpu_seconds,
        broker_cpu_seconds_per_million_records: cpu_seconds
            .map(|cpu| cpu / (total.records as f64 / 1e6).max(1e-9)),
        client_cpu_seconds,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_produce_report(&report);
    }
    Ok(())
}

fn print_produce_report(report: &ProduceReport) {
    println!(
        "{} records sent in {:.2} s: {:.0} records/s, {:.2} MB/s",
        report.records, report.seconds, report.records_per_second, report.mb_per_second
    );
    println!(
        "  {}-byte records, {} partition(s), acks={}, compression {}, batch {} B ({} records), \
         {} in flight{}, {} requests",
        report.record_size,
        report.partitions,
        report.acks,
        report.compression,
        report.batch_bytes,
        report.records_per_batch,
        report.inflight,
        report
            .throughput_limit
            .map(|limit| format!(
                ", throttled to {limit} records/s, linger {} ms",
                report.linger_ms
            ))
            .unwrap_or_default(),
        report.requests,
    );
    match &report.latency_ms {
        Some(latency) => println!(
            "  latency ms: p50 {:.2}, p99 {:.2}, p99.9 {:.2}, max {:.2}, mean {:.2}",
            latency.p50, latency.p99, latency.p999, latency.max, latency.mean
        ),
        None => println!("  latency: not measured with acks=0"),
    }
    if let (Some(cpu), Some(per_million)) = (
        report.broker_cpu_seconds,
        report.broker_cpu_seconds_per_million_records,
    ) {
        println!("  broker CPU: {cpu:.2} s ({per_million:.3} s per million records)");
    }
    if let Some(cpu) = report.client_cpu_seconds {
        println!("  client CPU: {cpu:.2} s");
    }
}

/// Claims up to `want` of the remaining records.
fn claim(remaining: &AtomicU64, want: u64) -> u64 {
    let mut current = remaining.load(Ordering::Relaxed);
    loop {
        if current == 0 {
            return 0;
        }
        let take = current.min(want);
        match remaining.compare_exchange_weak(
            current,
            current - take,
            Ordering::Relaxed,
            Ordering::Relaxed,
        ) {
            Ok(_) => return take,
            Err(actual) => current = actual,
        }
    }
}

async fn node_produce(
    client: Client,
    connection: Arc<Connection>,
    partitions: Vec<PartitionIndex>,
    plan: Arc<Plan>,
    remaining: Arc<AtomicU64>,
    progress: ProgressBar,
    started: Instant,
) -> anyhow::Result<NodeResult> {
    let expects_response = plan.acks != Acks::None;
    let (acks_sender, acks_receiver) = mpsc::channel::<InFlight>(4096);
    let acker = tokio::spawn(await_acks(acks_receiver, progress.clone()));
    let mut templates = Templates::new();
    let mut requests = 0u64;
    let mut unacknowledged_records = 0u64;
    let mut generated = 0u64;
    let mut next = 0usize;
    let send_result: anyhow::Result<()> = async {
        loop {
            let want = plan.records_per_batch as u64;
            // Throttled: records "arrive" at the node's rate; a batch goes when full or when its
            // first record has lingered long enough.
            let (count, batch_started) = match plan.throttle {
                None => (claim(&remaining, want), None),
                Some((per_partition_rate, linger)) => {
                    let rate = per_partition_rate * partitions.len() as f64;
                    let first_arrival = started + Duration::from_secs_f64(generated as f64 / rate);
                    let full_at =
                        started + Duration::from_secs_f64((generated + want) as f64 / rate);
                    let close_at = full_at.min(first_arrival + linger);
                    tokio::time::sleep_until(close_at.into()).await;
                    let arrived = ((close_at - started).as_secs_f64() * rate) as u64;
                    let count = arrived.saturating_sub(generated).clamp(1, want);
                    let count = claim(&remaining, count);
                    generated += count;
                    (count, Some(first_arrival))
                }
            };
            if count == 0 {
                break;
            }
            let partition = partitions[next % partitions.len()];
            next += 1;
            let prepared = templates
                .request(&plan, &client, &connection, partition, count as usize)?
                .clone();
            let handed = Instant::now();
            let pending = connection
                .enqueue_prepared(&prepared, expects_response)
                .await?;
            requests += 1;
            if !expects_response {
                progress.inc(count);
                unacknowledged_records += count;
                continue;
            }
            let in_flight = InFlight {
                pending,
                started: batch_started.unwrap_or(handed),
                records: count,
            };
            if acks_sender.send(in_flight).await.is_err() {
                // The acknowledgement task stopped on an error; it reports it.
                break;
            }
        }
        Ok(())
    }
    .await;
    drop(acks_sender);
    let acked = acker.await.context("acknowledgement task failed")?;
    send_result?;
    let mut result = acked?;
    result.requests = requests;
    if !expects_response {
        // acks=0 produces get no response; a response to a later request on the same connection
        // shows the broker has read (and, in arrival order, appended) everything before it.
        connection
            .request(&MetadataRequest::default().with_topics(Some(Vec::new())))
            .await?;
        result.records = unacknowledged_records;
    }
    Ok(result)
}

async fn await_acks(
    mut receiver: mpsc::Receiver<InFlight>,
    progress: ProgressBar,
) -> anyhow::Result<NodeResult> {
    // Microseconds, from 1 µs to an hour; anything longer is clamped to an hour.
    let mut histogram =
        Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).context("latency histogram")?;
    let mut records = 0;
    while let Some(in_flight) = receiver.recv().await {
        let response: ProduceResponse = in_flight.pending.wait().await?;
        let latency = in_flight.started.elapsed();
        for topic in &response.responses {
            for partition in &topic.partition_responses {
                if let Some(code) = ErrorCode::try_from_code(partition.error_code) {
                    return Err(ClientError::from(
                        KafkaError::new(code, format!("Produce to partition {}", partition.index))
                            .with_message(partition.error_message.as_ref().map(|m| m.to_string())),
                    )
                    .into());
                }
            }
        }
        histogram.saturating_record_n(
            u64::try_from(latency.as_micros())
                .unwrap_or(u64::MAX)
                .max(1),
            in_flight.records,
        );
        records += in_flight.records;
        progress.inc(in_flight.records);
    }
    Ok(NodeResult {
        records,
        requests: 0,
        latency_us: (records > 0).then_some(histogram),
    })
}

// ---------------------------------------------------------------------------------------------
// Consume

#[derive(Serialize)]
struct ConsumeReport {
    bench: &'static str,
    topic: String,
    records: u64,
    bytes: u64,
    partitions: usize,
    seconds: f64,
    records_per_second: f64,
    mb_per_second: f64,
    broker_cpu_seconds: Option<f64>,
    broker_cpu_seconds_per_million_records: Option<f64>,
    client_cpu_seconds: Option<f64>,
}

async fn bench_consume(args: ConsumeBenchArgs) -> anyhow::Result<()> {
    if args.records == 0 {
        bail!("--records must be at least 1");
    }
    let client = args.connect.connect().await?;
    let mut consumer = Consumer::new(
        client,
        ConsumerConfig {
            max_wait: Duration::from_millis(args.fetch_max_wait_ms),
            fetch_bytes_max: args.fetch_max_bytes,
            partition_fetch_bytes_max: args.partition_fetch_max_bytes,
            offset_reset: OffsetReset::Earliest,
            ..ConsumerConfig::default()
        },
    );
    let assigned = consumer
        .assign(&args.topic, None, StartOffset::Earliest)
        .await?;
    let progress = progress_bar(args.records, "records");
    let cpu = CpuProbe::start(args.broker_pid)?;
    let own_cpu = CpuProbe::start(Some(std::process::id())).ok().flatten();
    let started = Instant::now();
    let mut records = 0u64;
    let mut bytes = 0u64;
    let mut last_progress = Instant::now();
    let idle = Duration::from_millis(args.timeout_ms);
    while records < args.records {
        let round = consumer.poll_counts().await?;
        if round.records > 0 {
            last_progress = Instant::now();
        } else if last_progress.elapsed() >= idle {
            break;
        }
        records += round.records;
        bytes += round.bytes;
        progress.inc(round.records);
    }
    let elapsed = started.elapsed();
    progress.finish_and_clear();
    let cpu_seconds = cpu.as_ref().map(CpuProbe::used).transpose()?;
    let client_cpu_seconds = own_cpu.as_ref().and_then(|probe| probe.used().ok());
    if records == 0 {
        bail!(
            "no records read from {:?} within {} ms",
            args.topic,
            args.timeout_ms
        );
    }
    if records < args.records {
        eprintln!(
            "warning: only {records} of {} records arrived before {} ms passed without one",
            args.records, args.timeout_ms
        );
    }
    let seconds = elapsed.as_secs_f64().max(1e-9);
    let report = ConsumeReport {
        bench: "consume",
        topic: args.topic.clone(),
        records,
        bytes,
        partitions: assigned.len(),
        seconds,
        records_per_second: records as f64 / seconds,
        mb_per_second: bytes as f64 / seconds / 1_048_576.0,
        broker_cpu_seconds: cpu_seconds,
        broker_cpu_seconds_per_million_records: cpu_seconds
            .map(|cpu| cpu / (records as f64 / 1e6).max(1e-9)),
        client_cpu_seconds,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "{} records ({} bytes of batches) read in {:.2} s: {:.0} records/s, {:.2} MB/s, {} partition(s)",
            report.records,
            report.bytes,
            report.seconds,
            report.records_per_second,
            report.mb_per_second,
            report.partitions
        );
        if let (Some(cpu), Some(per_million)) = (
            report.broker_cpu_seconds,
            report.broker_cpu_seconds_per_million_records,
        ) {
            println!("  broker CPU: {cpu:.2} s ({per_million:.3} s per million records)");
        }
        if let Some(cpu) = report.client_cpu_seconds {
            println!("  client CPU: {cpu:.2} s");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use caudal_model::RecordBatchHeader;

    #[test]
    fn reads_cpu_time_from_proc_stat() {
        let stat = "4242 (caudal (x) y) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 8 0 100 0";
        assert_eq!(parse_cpu_seconds(stat, 100.0), Some(3.0));
        assert_eq!(parse_cpu_seconds("garbage", 100.0), None);
        let own = process_cpu_seconds(std::process::id(), clock_ticks_per_second()).unwrap();
        assert!(own >= 0.0);
    }

    #[test]
    fn batches_fit_the_batch_size() {
        let value = Values::new(100, 3);
        assert!(value.pool.iter().all(u8::is_ascii_uppercase));
        assert_ne!(value.value(0), value.value(1));
        assert_eq!(value.value(0), value.value(3));
        for batch_bytes in [1, 200, 16_384, 65_536] {
            let count = records_per_batch(100, batch_bytes).unwrap();
            let size = batch_of(&value, count, Compression::None, 0).unwrap().len();
            assert!(
                count == 1 || size <= batch_bytes,
                "{batch_bytes}: {count} -> {size}"
            );
            let bigger = batch_of(&value, count + 1, Compression::None, 0)
                .unwrap()
                .len();
            assert!(
                bigger > batch_bytes,
                "{batch_bytes}: {count} is not the most"
            );
        }
    }

    #[test]
    fn restamping_keeps_the_batch_valid() {
        for compression in [Compression::None, Compression::Lz4] {
            let mut batch = batch_of(&Values::new(10, 5), 5, compression, 1_000)
                .unwrap()
                .to_vec();
            restamp(&mut batch, 2_000);
            let header = RecordBatchHeader::parse_and_validate(&batch).unwrap();
            assert_eq!(header.base_timestamp.0, 2_000);
            assert_eq!(header.max_timestamp.0, 2_000);
            let decoded = caudal_client::records::decode_batches(
                "t",
                PartitionIndex(0),
                batch.into(),
                caudal_model::Offset(0),
                1 << 20,
            )
            .unwrap();
            assert!(decoded.records.iter().all(|r| r.timestamp.0 == 2_000));
        }
    }

    #[test]
    fn claims_never_overshoot() {
        let remaining = AtomicU64::new(10);
        assert_eq!(claim(&remaining, 4), 4);
        assert_eq!(claim(&remaining, 4), 4);
        assert_eq!(claim(&remaining, 4), 2);
        assert_eq!(claim(&remaining, 4), 0);
    }
}
