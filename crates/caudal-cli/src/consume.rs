//! `caudal consume TOPIC`: the console consumer — one formatted line per record on stdout.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::bail;
use caudal_client::consumer::{ConsumerConfig, OffsetReset, TopicRecord};
use caudal_client::{Consumer, StartOffset};
use clap::Args;

use crate::common::{ConnectArgs, run};

const EXAMPLES: &str = "\
Examples:
  caudal consume orders --from-beginning
  caudal consume orders --offset latest
  caudal consume orders --partition 2 --offset 1000 --max-messages 10
  caudal consume orders --offset -100 --exit-at-end            # the last 100 of each partition
  caudal consume orders --offset @1700000000000                # from a timestamp (ms)
  caudal consume orders --from-beginning --format '%p/%o %k=%v (%T) [%h]'
  caudal consume orders --from-beginning --timeout-ms 5000     # exit after 5 s without records

--format placeholders (as in kcat):
  %v or %s  value         %S  value length (-1 for null)
  %k        key           %K  key length (-1 for null)
  %t        topic         %p  partition        %o  offset
  %T        timestamp (ms since the epoch)
  %h        headers as k=v,k=v                  %%  a literal %
  \\n \\t \\r \\\\ escapes. A null key or value prints as nothing.
Each record prints as the format followed by --delimiter (default a newline).
Without --partition every partition of the topic is read.";

/// Consume records and print them to stdout.
#[derive(Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct ConsumeArgs {
    /// Topic to read.
    topic: String,
    /// Start at the earliest offset (same as --offset earliest).
    #[arg(long, conflicts_with = "offset")]
    from_beginning: bool,
    /// Where to start: earliest, latest, an offset N, -N (N before the end), or @TIMESTAMP_MS.
    #[arg(long, value_name = "WHERE", allow_hyphen_values = true, value_parser = parse_start)]
    offset: Option<StartOffset>,
    /// Read only this partition (repeatable).
    #[arg(long = "partition", value_name = "N")]
    partitions: Vec<i32>,
    /// Exit after this many records.
    #[arg(long, value_name = "N")]
    max_messages: Option<u64>,
    /// Exit after this long without a new record.
    #[arg(long, value_name = "MS")]
    timeout_ms: Option<u64>,
    /// Exit once every partition has been read up to its high watermark.
    #[arg(short = 'e', long)]
    exit_at_end: bool,
    /// Output format per record (see placeholders below).
    #[arg(long, value_name = "FORMAT")]
    format: Option<String>,
    /// Print the key before the value, separated by a tab (ignored with --format).
    #[arg(long)]
    print_key: bool,
    /// Printed after each record.
    #[arg(long, value_name = "TEXT", default_value = "\\n")]
    delimiter: String,
    /// What to do when the position falls outside the log: earliest, latest or none (fail).
    #[arg(long, value_name = "POLICY", default_value = "earliest", value_parser = parse_reset)]
    offset_reset: OffsetReset,
    /// Longest a fetch waits at the broker for data (Kafka: fetch.max.wait.ms).
    #[arg(long, value_name = "MS", default_value_t = 500)]
    fetch_max_wait_ms: u64,
    #[command(flatten)]
    connect: ConnectArgs,
}

fn parse_start(text: &str) -> Result<StartOffset, String> {
    match text {
        "earliest" | "beginning" => Ok(StartOffset::Earliest),
        "latest" | "end" => Ok(StartOffset::Latest),
        _ => {
            if let Some(timestamp) = text.strip_prefix('@') {
                return timestamp
                    .parse()
                    .map(StartOffset::Timestamp)
                    .map_err(|_| format!("bad timestamp {timestamp:?}"));
            }
            let number: i64 = text.parse().map_err(|_| {
                format!("expected earliest, latest, N, -N or @TIMESTAMP_MS, got {text:?}")
            })?;
            Ok(if number < 0 {
                StartOffset::FromEnd(-number)
            } else {
                StartOffset::Offset(number)
            })
        }
    }
}

fn parse_reset(text: &str) -> Result<OffsetReset, String> {
    match text {
        "earliest" => Ok(OffsetReset::Earliest),
        "latest" => Ok(OffsetReset::Latest),
        "none" => Ok(OffsetReset::None),
        other => Err(format!("expected earliest, latest or none, got {other:?}")),
    }
}

/// One piece of a parsed `--format`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(Vec<u8>),
    Value,
    ValueLength,
    Key,
    KeyLength,
    Topic,
    Partition,
    Offset,
    Timestamp,
    Headers,
}

/// Parses escapes (`\n \t \r \\`) only.
fn unescape(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(character) = chars.next() {
        if character != '\\' {
            let mut buf = [0; 4];
            out.extend_from_slice(character.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        match chars.next() {
            Some('n') => out.push(b'\n'),
            Some('t') => out.push(b'\t'),
            Some('r') => out.push(b'\r'),
            Some('\\') => out.push(b'\\'),
            Some(other) => {
                out.push(b'\\');
                let mut buf = [0; 4];
                out.extend_from_slice(other.encode_utf8(&mut buf).as_bytes());
            }
            None => out.push(b'\\'),
        }
    }
    out
}

fn parse_format(format: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut chars = format.chars();
    while let Some(character) = chars.next() {
        if character != '%' {
            text.push(character);
            continue;
        }
        let piece = match chars.next() {
            Some('%') => {
                text.push('%');
                continue;
            }
            Some('v' | 's') => Piece::Value,
            Some('S') => Piece::ValueLength,
            Some('k') => Piece::Key,
            Some('K') => Piece::KeyLength,
            Some('t') => Piece::Topic,
            Some('p') => Piece::Partition,
            Some('o') => Piece::Offset,
            Some('T') => Piece::Timestamp,
            Some('h') => Piece::Headers,
            Some(other) => return Err(format!("unknown placeholder %{other} in --format")),
            None => return Err("--format ends with a lone %".to_owned()),
        };
        if !text.is_empty() {
            pieces.push(Piece::Text(unescape(&std::mem::take(&mut text))));
        }
        pieces.push(piece);
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(unescape(&text)));
    }
    Ok(pieces)
}

fn render(pieces: &[Piece], record: &TopicRecord, out: &mut Vec<u8>) {
    let length = |bytes: &Option<bytes::Bytes>| bytes.as_ref().map_or(-1, |b| b.len() as i64);
    let inner = &record.record;
    for piece in pieces {
        match piece {
            Piece::Text(text) => out.extend_from_slice(text),
            Piece::Value => out.extend_from_slice(inner.value.as_deref().unwrap_or_default()),
            Piece::ValueLength => {
                out.extend_from_slice(length(&inner.value).to_string().as_bytes())
            }
            Piece::Key => out.extend_from_slice(inner.key.as_deref().unwrap_or_default()),
            Piece::KeyLength => out.extend_from_slice(length(&inner.key).to_string().as_bytes()),
            Piece::Topic => out.extend_from_slice(record.topic.as_bytes()),
            Piece::Partition => out.extend_from_slice(inner.partition.to_string().as_bytes()),
            Piece::Offset => out.extend_from_slice(inner.offset.to_string().as_bytes()),
            Piece::Timestamp => out.extend_from_slice(inner.timestamp.to_string().as_bytes()),
            Piece::Headers => {
                for (index, (key, value)) in inner.headers.iter().enumerate() {
                    if index > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(key.as_bytes());
                    out.push(b'=');
                    out.extend_from_slice(value.as_deref().unwrap_or_default());
                }
            }
        }
    }
}

pub fn main(args: ConsumeArgs) -> ExitCode {
    run(consume(args))
}

async fn consume(args: ConsumeArgs) -> anyhow::Result<()> {
    let format = match (&args.format, args.print_key) {
        (Some(format), _) => format.clone(),
        (None, true) => "%k\t%v".to_owned(),
        (None, false) => "%v".to_owned(),
    };
    let pieces = parse_format(&format).map_err(anyhow::Error::msg)?;
    let delimiter = unescape(&args.delimiter);
    let start = if args.from_beginning {
        StartOffset::Earliest
    } else {
        args.offset.unwrap_or(StartOffset::Latest)
    };
    let client = args.connect.connect().await?;
    let mut consumer = Consumer::new(
        client,
        ConsumerConfig {
            max_wait: Duration::from_millis(args.fetch_max_wait_ms),
            offset_reset: args.offset_reset,
            ..ConsumerConfig::default()
        },
    );
    let partitions = (!args.partitions.is_empty()).then_some(args.partitions.as_slice());
    consumer.assign(&args.topic, partitions, start).await?;

    let stdout = std::io::stdout();
    let mut buffer = Vec::with_capacity(1 << 16);
    let mut consumed = 0u64;
    let mut last_record = Instant::now();
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        if args.max_messages.is_some_and(|max| consumed >= max) {
            break;
        }
        if args.exit_at_end && consumer.caught_up() {
            break;
        }
        if let Some(timeout) = args.timeout_ms
            && last_record.elapsed() >= Duration::from_millis(timeout)
        {
            break;
        }
        let records = tokio::select! {
            _ = &mut interrupted => break,
            records = consumer.poll() => records?,
        };
        if !records.is_empty() {
            last_record = Instant::now();
        }
        buffer.clear();
        for record in &records {
            if args.max_messages.is_some_and(|max| consumed >= max) {
                break;
            }
            render(&pieces, record, &mut buffer);
            buffer.extend_from_slice(&delimiter);
            consumed += 1;
        }
        let mut out = stdout.lock();
        let written = out.write_all(&buffer).and_then(|()| out.flush());
        match written {
            Ok(()) => {}
            // A closed pipe (`| head`) is a normal way to stop reading.
            Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => break,
            Err(error) => bail!("cannot write to stdout: {error}"),
        }
    }
    eprintln!("consumed {consumed} record(s) from {:?}", args.topic);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use caudal_client::ConsumerRecord;
    use caudal_client::records::TimestampKind;
    use caudal_model::{LeaderEpoch, Offset, PartitionIndex, TimestampMs};

    fn record() -> TopicRecord {
        TopicRecord {
            topic: "orders".into(),
            record: ConsumerRecord {
                partition: PartitionIndex(2),
                offset: Offset(41),
                timestamp: TimestampMs(1_700_000_000_123),
                timestamp_kind: TimestampKind::Create,
                leader_epoch: LeaderEpoch(0),
                key: None,
                value: Some(Bytes::from_static(b"hello")),
                headers: vec![
                    ("a".into(), Some(Bytes::from_static(b"1"))),
                    ("b".into(), None),
                ],
            },
        }
    }

    fn rendered(format: &str) -> String {
        let mut out = Vec::new();
        render(&parse_format(format).unwrap(), &record(), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn renders_kcat_placeholders() {
        assert_eq!(rendered("%v"), "hello");
        assert_eq!(
            rendered("%t/%p/%o %k|%K|%S %T"),
            "orders/2/41 |-1|5 1700000000123"
        );
        assert_eq!(rendered("[%h]\\t100%%\\n"), "[a=1,b=]\t100%\n");
        assert_eq!(rendered("%s"), "hello");
        assert!(parse_format("%x").is_err());
        assert!(parse_format("50%").is_err());
    }

    #[test]
    fn parses_start_positions() {
        assert_eq!(parse_start("earliest").unwrap(), StartOffset::Earliest);
        assert_eq!(parse_start("end").unwrap(), StartOffset::Latest);
        assert_eq!(parse_start("42").unwrap(), StartOffset::Offset(42));
        assert_eq!(parse_start("-10").unwrap(), StartOffset::FromEnd(10));
        assert_eq!(parse_start("@1700").unwrap(), StartOffset::Timestamp(1700));
        assert!(parse_start("soon").is_err());
        assert_eq!(parse_reset("none").unwrap(), OffsetReset::None);
    }
}
