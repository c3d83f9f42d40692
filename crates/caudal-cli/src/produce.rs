//! `caudal produce TOPIC`: the console producer — one record per line of stdin.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use caudal_client::producer::{DeliveryFuture, ProducerStats};
use caudal_client::records::parse_compression;
use caudal_client::{Acks, ClientError, Producer, ProducerConfig, ProducerRecord};
use clap::Args;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::sync::mpsc;

use crate::common::{ConnectArgs, parse_key_value, run};

const EXAMPLES: &str = "\
Examples:
  echo 'hello' | caudal produce orders
  printf 'k1:v1\\nk2:v2\\n' | caudal produce orders --key-separator :
  caudal produce orders --header source=cli --header trace-id=42 < events.txt
  seq 1000000 | caudal produce numbers --acks 1 --compression lz4 --linger-ms 20
  caudal produce orders --partition 3 --idempotent

Each line of stdin (without its line ending) becomes one record's value. With
--key-separator, the text before the first separator is the key (a line without the
separator is an error, as in Kafka's console producer). Keyed records go to the
partition Kafka's default partitioner picks (murmur2 of the key), so they land where a
Java or librdkafka producer would put them. A summary goes to stderr at the end.";

/// Produce records from stdin, one per line.
#[derive(Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct ProduceArgs {
    /// Topic to produce to.
    topic: String,
    /// Split each line into key and value at the first SEP.
    #[arg(long, value_name = "SEP")]
    key_separator: Option<String>,
    /// A header added to every record; repeatable.
    #[arg(long = "header", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    headers: Vec<(String, String)>,
    /// Send every record to this partition instead of letting the partitioner choose.
    #[arg(long, value_name = "N")]
    partition: Option<i32>,
    /// How many acknowledgements the leader waits for: 0, 1 or all.
    #[arg(long, value_name = "0|1|all", default_value = "all", value_parser = parse_acks)]
    acks: Acks,
    /// Batch compression (Kafka: compression.type).
    #[arg(long, value_name = "none|gzip|snappy|lz4|zstd", default_value = "none")]
    compression: String,
    /// Use an idempotent producer: retries never duplicate or reorder (needs --acks all).
    #[arg(long)]
    idempotent: bool,
    /// How long a batch waits for more records (Kafka: linger.ms).
    #[arg(long, value_name = "MS", default_value_t = 5)]
    linger_ms: u64,
    /// Close a batch at this many bytes (Kafka: batch.size).
    #[arg(long, value_name = "BYTES", default_value_t = 16_384)]
    batch_bytes: usize,
    /// Give up on a record not acknowledged within this (Kafka: delivery.timeout.ms).
    #[arg(long, value_name = "MS", default_value_t = 120_000)]
    delivery_timeout_ms: u64,
    /// Longest line accepted, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 1_048_576)]
    line_bytes_max: usize,
    #[command(flatten)]
    connect: ConnectArgs,
}

fn parse_acks(text: &str) -> Result<Acks, String> {
    text.parse::<Acks>().map_err(|error| error.to_string())
}

pub fn main(args: ProduceArgs) -> ExitCode {
    run(produce(args))
}

/// Turns one input line (line ending removed) into a record.
fn line_to_record(
    args: &ProduceArgs,
    headers: &[(String, Option<Bytes>)],
    line: &[u8],
    line_number: u64,
) -> anyhow::Result<ProducerRecord> {
    let mut record = ProducerRecord {
        topic: args.topic.clone(),
        partition: args.partition,
        headers: headers.to_vec(),
        ..ProducerRecord::default()
    };
    match &args.key_separator {
        None => record.value = Some(Bytes::copy_from_slice(line)),
        Some(separator) => {
            let separator = separator.as_bytes();
            let at = line
                .windows(separator.len().max(1))
                .position(|window| window == separator)
                .with_context(|| {
                    format!(
                        "no key separator {:?} on line {line_number}",
                        args.key_separator.as_deref().unwrap_or_default()
                    )
                })?;
            record.key = Some(Bytes::copy_from_slice(&line[..at]));
            record.value = Some(Bytes::copy_from_slice(&line[at + separator.len()..]));
        }
    }
    Ok(record)
}

async fn produce(args: ProduceArgs) -> anyhow::Result<()> {
    if args.key_separator.as_deref() == Some("") {
        bail!("--key-separator must not be empty");
    }
    let compression = parse_compression(&args.compression)?;
    let client = args.connect.connect().await?;
    let config = ProducerConfig {
        acks: args.acks,
        compression,
        linger: Duration::from_millis(args.linger_ms),
        batch_bytes: args.batch_bytes.max(1),
        idempotent: args.idempotent,
        request_timeout: Duration::from_millis(args.connect.request_timeout_ms),
        delivery_timeout: Duration::from_millis(args.delivery_timeout_ms),
        ..ProducerConfig::default()
    };
    // Fail fast (before reading stdin) on a topic that does not exist and won't be auto-created.
    client.topic_with_leaders(&args.topic, true).await?;
    let producer = Producer::new(client, config).await?;
    let headers: Vec<(String, Option<Bytes>)> = args
        .headers
        .iter()
        .map(|(key, value)| (key.clone(), Some(Bytes::from(value.clone()))))
        .collect();

    // Deliveries are awaited in order by a separate task, so reading stdin never waits on acks.
    let (deliveries, receiver) = mpsc::channel::<DeliveryFuture>(65_536);
    let checker = tokio::spawn(check_deliveries(receiver));

    let started = Instant::now();
    let mut input = BufReader::with_capacity(1 << 16, tokio::io::stdin());
    let mut line = Vec::new();
    let mut line_number = 0u64;
    let mut read_error = None;
    // Ctrl-C stops reading; what was read is still flushed, as Kafka's console producer does.
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        line.clear();
        let mut limited = (&mut input).take(args.line_bytes_max as u64 + 2);
        let read = tokio::select! {
            _ = &mut interrupted => break,
            read = limited.read_until(b'\n', &mut line) => read.context("cannot read stdin")?,
        };
        if read == 0 {
            break;
        }
        line_number += 1;
        if line.last() == Some(&b'\n') {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
        } else if line.len() > args.line_bytes_max {
            read_error = Some(anyhow::anyhow!(
                "line {line_number} is longer than {} bytes (--line-bytes-max)",
                args.line_bytes_max
            ));
            break;
        }
        let record = match line_to_record(&args, &headers, &line, line_number) {
            Ok(record) => record,
            Err(error) => {
                read_error = Some(error);
                break;
            }
        };
        let delivery = producer.send(record).await?;
        if deliveries.send(delivery).await.is_err() {
            // The checker stopped at a failure; it reports it below.
            break;
        }
    }
    let flushed = producer.flush().await;
    drop(deliveries);
    let outcome = checker.await.context("delivery checker failed")?;
    let stats = producer
        .close()
        .await
        .unwrap_or_else(|_| ProducerStats::default());
    let elapsed = started.elapsed();
    eprintln!(
        "produced {} record(s) to {:?} in {:.2} s ({} request(s), {} batch(es), {} bytes{}){}",
        stats.records_acknowledged,
        args.topic,
        elapsed.as_secs_f64(),
        stats.requests_sent,
        stats.batches_sent,
        stats.batch_bytes_sent,
        if stats.retries > 0 {
            format!(", {} retries", stats.retries)
        } else {
            String::new()
        },
        if stats.records_failed > 0 {
            format!("; {} record(s) failed", stats.records_failed)
        } else {
            String::new()
        },
    );
    if let Some(error) = read_error {
        return Err(error);
    }
    if let Some(error) = outcome.first_error {
        return Err(error.into());
    }
    flushed?;
    Ok(())
}

struct Outcome {
    first_error: Option<ClientError>,
}

async fn check_deliveries(mut receiver: mpsc::Receiver<DeliveryFuture>) -> Outcome {
    while let Some(delivery) = receiver.recv().await {
        if let Err(error) = delivery.wait().await {
            return Outcome {
                first_error: Some(error),
            };
        }
    }
    Outcome { first_error: None }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Harness {
        #[command(flatten)]
        args: ProduceArgs,
    }

    fn args(extra: &[&str]) -> ProduceArgs {
        let mut argv = vec!["produce", "orders"];
        argv.extend_from_slice(extra);
        Harness::parse_from(argv).args
    }

    #[test]
    fn splits_key_and_value_at_the_first_separator() {
        let args = args(&["--key-separator", "::", "--header", "a=1"]);
        let headers = vec![("a".to_owned(), Some(Bytes::from_static(b"1")))];
        let record = line_to_record(&args, &headers, b"k::v::w", 1).unwrap();
        assert_eq!(record.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(record.value.as_deref(), Some(&b"v::w"[..]));
        assert_eq!(record.headers, headers);
        let error = line_to_record(&args, &headers, b"no separator", 7).unwrap_err();
        assert!(error.to_string().contains("line 7"), "{error}");
    }

    #[test]
    fn parses_flags() {
        let args = args(&["--acks", "1", "--partition", "2", "--compression", "zstd"]);
        assert_eq!(args.acks, Acks::Leader);
        assert_eq!(args.partition, Some(2));
        let record = line_to_record(&args, &[], b"plain", 1).unwrap();
        assert_eq!(record.key, None);
        assert_eq!(record.partition, Some(2));
        assert!(Harness::try_parse_from(["produce", "t", "--acks", "2"]).is_err());
    }
}
