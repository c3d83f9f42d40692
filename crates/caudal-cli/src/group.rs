//! `caudal group`: list, describe (members, committed offsets, lag), delete consumer groups and
//! move (seek) an inactive group's committed offsets — Kafka's `kafka-consumer-groups.sh`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::bail;
use caudal_client::groups::{
    CONSUMER_PROTOCOL_TYPE, CommittedOffset, GroupDescription, GroupMember, TopicPartition,
};
use caudal_client::{Client, ClientError, KafkaError, OffsetSpec};
use caudal_model::{Offset, PartitionIndex};
use caudal_protocol::ErrorCode;
use clap::{ArgGroup, Args, Subcommand};

use crate::common::{ConnectArgs, run};
use crate::topic::render_table;

const EXAMPLES: &str = "\
Examples:
  caudal group list
  caudal group list --state Stable,Empty
  caudal group describe my-app
  caudal group seek my-app --to earliest
  caudal group seek my-app --to 1000 --topic orders
  caudal group seek my-app --to @2026-01-01T00:00:00Z --dry-run
  caudal group delete my-app old-app";

/// The group states Kafka reports (classic and KIP-848 consumer groups).
const GROUP_STATES: &[&str] = &[
    "Empty",
    "Stable",
    "PreparingRebalance",
    "CompletingRebalance",
    "Dead",
    "Assigning",
    "Reconciling",
];

/// Consumer groups: list, describe (members, offsets, lag), delete, seek (reset offsets).
#[derive(Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct GroupArgs {
    #[command(subcommand)]
    command: GroupCommand,
}

#[derive(Subcommand, Debug)]
enum GroupCommand {
    /// List every group on every broker, with its state and protocol type.
    #[command(after_help = "\
Examples:
  caudal group list
  caudal group list --state Empty
  caudal group list --state Stable,PreparingRebalance")]
    List(ListArgs),
    /// Show a group's state, members and assignments, and per partition the committed offset,
    /// log end offset and lag.
    #[command(after_help = "\
Examples:
  caudal group describe my-app
  caudal group describe my-app other-app

LAG is LOG-END-OFFSET minus CURRENT-OFFSET (the committed offset); \"-\" where the group has
committed nothing. Partitions with a commit but no owner are listed too.")]
    Describe(DescribeArgs),
    /// Delete groups; Kafka refuses groups with active members (NON_EMPTY_GROUP).
    #[command(after_help = "\
Examples:
  caudal group delete my-app
  caudal group delete my-app old-app")]
    Delete(DeleteArgs),
    /// Move an inactive group's committed offsets (Kafka: --reset-offsets --execute).
    #[command(after_help = "\
Examples:
  caudal group seek my-app --to earliest
  caudal group seek my-app --to latest --topic orders
  caudal group seek my-app --to 1000 --topic orders:0,1
  caudal group seek my-app --to @1767225600000
  caudal group seek my-app --to @2026-01-01T00:00:00Z --dry-run
  caudal group seek my-app --to-datetime 2026-01-01T09:00:00.000+01:00

Where to (--to):
  earliest          the log start offset of each partition
  latest            the log end offset of each partition
  N                 offset N, clamped to the partition's log start / log end offset
  @TIMESTAMP_MS     the first record at or after this time (ms since the epoch);
                    the log end offset where no record is that recent
  @DATETIME         the same for an ISO-8601 time with a zone: 2026-01-01T00:00:00Z,
                    2026-01-01T09:30:00.250+01:00

Without --topic, every partition the group has committed offsets for is moved; --topic T
selects every partition of T, --topic T:0,2 only those. The group must have no active
members (state Empty), as Kafka requires. --dry-run prints the plan without committing.")]
    Seek(SeekArgs),
}

#[derive(Args, Debug)]
struct ListArgs {
    /// Only groups in these states (comma-separated or repeated): Empty, Stable,
    /// PreparingRebalance, CompletingRebalance, Dead, … Needs ListGroups v4 on the brokers.
    #[arg(long = "state", value_name = "STATE[,STATE...]", value_delimiter = ',', value_parser = parse_state)]
    states: Vec<String>,
    #[command(flatten)]
    connect: ConnectArgs,
}

#[derive(Args, Debug)]
struct DescribeArgs {
    /// Group id(s).
    #[arg(required = true, value_name = "GROUP")]
    groups: Vec<String>,
    #[command(flatten)]
    connect: ConnectArgs,
}

#[derive(Args, Debug)]
struct DeleteArgs {
    /// Group id(s).
    #[arg(required = true, value_name = "GROUP")]
    groups: Vec<String>,
    #[command(flatten)]
    connect: ConnectArgs,
}

#[derive(Args, Debug)]
#[command(group(
    ArgGroup::new("target")
        .required(true)
        .args(["to", "to_earliest", "to_latest", "to_offset", "to_datetime"])
))]
struct SeekArgs {
    /// Group id.
    group: String,
    /// Where to move: earliest, latest, an offset N, @TIMESTAMP_MS or @DATETIME.
    #[arg(long, value_name = "WHERE", value_parser = parse_target)]
    to: Option<SeekTarget>,
    /// Same as --to earliest (Kafka's flag).
    #[arg(long)]
    to_earliest: bool,
    /// Same as --to latest (Kafka's flag).
    #[arg(long)]
    to_latest: bool,
    /// Same as --to N (Kafka's flag).
    #[arg(long, value_name = "OFFSET", value_parser = parse_offset)]
    to_offset: Option<i64>,
    /// Same as --to @DATETIME (Kafka's flag; the zone is required).
    #[arg(long, value_name = "DATETIME", value_parser = parse_datetime)]
    to_datetime: Option<i64>,
    /// A topic, or a topic and some of its partitions (T:0,1,2); repeatable. Default: every
    /// partition with a committed offset.
    #[arg(long = "topic", value_name = "TOPIC[:P,...]", value_parser = parse_topic_selection)]
    topics: Vec<TopicSelection>,
    /// Every partition with a committed offset (the default; Kafka's flag).
    #[arg(long, conflicts_with = "topics")]
    all_topics: bool,
    /// Print the new offsets without committing them.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    connect: ConnectArgs,
}

impl SeekArgs {
    fn target(&self) -> anyhow::Result<SeekTarget> {
        let chosen = [
            self.to,
            self.to_earliest.then_some(SeekTarget::Earliest),
            self.to_latest.then_some(SeekTarget::Latest),
            self.to_offset.map(SeekTarget::Offset),
            self.to_datetime.map(SeekTarget::Timestamp),
        ];
        match chosen.into_iter().flatten().collect::<Vec<_>>().as_slice() {
            [one] => Ok(*one),
            _ => bail!(
                "give exactly one of --to, --to-earliest, --to-latest, --to-offset, --to-datetime"
            ),
        }
    }
}

/// Where `seek` moves a group's offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SeekTarget {
    Earliest,
    Latest,
    Offset(i64),
    /// Milliseconds since the epoch.
    Timestamp(i64),
}

/// A `--topic` argument: a topic, optionally with some of its partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TopicSelection {
    topic: String,
    partitions: Option<Vec<i32>>,
}

fn parse_state(text: &str) -> Result<String, String> {
    let wanted: String = text
        .chars()
        .filter(|c| !matches!(c, '_' | '-'))
        .collect::<String>()
        .to_ascii_lowercase();
    GROUP_STATES
        .iter()
        .find(|state| state.to_ascii_lowercase() == wanted)
        .map(|state| (*state).to_owned())
        .ok_or_else(|| {
            format!(
                "unknown group state {text:?}; valid states: {}",
                GROUP_STATES.join(", ")
            )
        })
}

fn parse_offset(text: &str) -> Result<i64, String> {
    match text.parse::<i64>() {
        Ok(offset) if offset >= 0 => Ok(offset),
        _ => Err(format!("expected an offset (0 or more), got {text:?}")),
    }
}

fn parse_target(text: &str) -> Result<SeekTarget, String> {
    match text {
        "earliest" | "beginning" => Ok(SeekTarget::Earliest),
        "latest" | "end" => Ok(SeekTarget::Latest),
        _ => {
            if let Some(time) = text.strip_prefix('@') {
                if !time.is_empty() && time.bytes().all(|b| b.is_ascii_digit()) {
                    return time
                        .parse()
                        .map(SeekTarget::Timestamp)
                        .map_err(|_| format!("timestamp {time:?} is out of range"));
                }
                return parse_datetime(time).map(SeekTarget::Timestamp);
            }
            if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
                return parse_offset(text).map(SeekTarget::Offset);
            }
            Err(format!(
                "expected earliest, latest, an offset N, @TIMESTAMP_MS or @DATETIME \
                 (2026-01-01T00:00:00Z), got {text:?}"
            ))
        }
    }
}

fn parse_topic_selection(text: &str) -> Result<TopicSelection, String> {
    let (topic, partitions) = match text.split_once(':') {
        None => (text, None),
        Some((topic, list)) => {
            let partitions = list
                .split(',')
                .map(|p| {
                    p.trim()
                        .parse::<i32>()
                        .ok()
                        .filter(|p| *p >= 0)
                        .ok_or_else(|| format!("invalid partition {p:?} in {text:?}"))
                })
                .collect::<Result<Vec<i32>, String>>()?;
            (topic, Some(partitions))
        }
    };
    if topic.is_empty() {
        return Err(format!("expected TOPIC or TOPIC:P,P,..., got {text:?}"));
    }
    Ok(TopicSelection {
        topic: topic.to_owned(),
        partitions,
    })
}

/// Milliseconds since the epoch of an ISO-8601 date and time with a zone:
/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM|±HHMM|±HH)`. The zone is required so that a time
/// never silently means different instants on different machines.
fn parse_datetime(text: &str) -> Result<i64, String> {
    let invalid = |why: &str| {
        format!(
            "{why} in {text:?}; expected a date and time with a zone, such as \
             2026-01-01T00:00:00Z or 2026-01-01T09:30:00.250+01:00"
        )
    };
    let (date, time) = text
        .split_once(['T', 't'])
        .ok_or_else(|| invalid("no 'T' between date and time"))?;
    let number = |part: &str, digits: usize, what: &str| -> Result<i64, String> {
        if part.len() == digits && part.bytes().all(|b| b.is_ascii_digit()) {
            part.parse().map_err(|_| invalid(what))
        } else {
            Err(invalid(what))
        }
    };
    let mut date_parts = date.split('-');
    let (Some(year), Some(month), Some(day), None) = (
        date_parts.next(),
        date_parts.next(),
        date_parts.next(),
        date_parts.next(),
    ) else {
        return Err(invalid("the date is not YYYY-MM-DD"));
    };
    let year = number(year, 4, "bad year")?;
    let month = number(month, 2, "bad month")?;
    let day = number(day, 2, "bad day")?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err(invalid("no such date"));
    }
    let zone_at = time
        .find(['Z', 'z', '+', '-'])
        .ok_or_else(|| invalid("no zone (add Z for UTC, or an offset such as +01:00)"))?;
    let (clock, zone) = time.split_at(zone_at);
    let (clock, fraction) = match clock.split_once('.') {
        Some((clock, fraction)) => (clock, Some(fraction)),
        None => (clock, None),
    };
    let mut clock_parts = clock.split(':');
    let (Some(hour), Some(minute), Some(second), None) = (
        clock_parts.next(),
        clock_parts.next(),
        clock_parts.next(),
        clock_parts.next(),
    ) else {
        return Err(invalid("the time is not HH:MM:SS"));
    };
    let hour = number(hour, 2, "bad hour")?;
    let minute = number(minute, 2, "bad minute")?;
    let second = number(second, 2, "bad second")?;
    if hour > 23 || minute > 59 || second > 59 {
        return Err(invalid("no such time"));
    }
    let millis = match fraction {
        None => 0,
        Some(fraction)
            if (1..=9).contains(&fraction.len())
                && fraction.bytes().all(|b| b.is_ascii_digit()) =>
        {
            // Milliseconds: the first three digits, padded.
            let padded = format!("{fraction:0<3}");
            padded[..3]
                .parse::<i64>()
                .map_err(|_| invalid("bad fraction"))?
        }
        Some(_) => return Err(invalid("bad fraction of a second")),
    };
    let zone_minutes = match zone {
        "Z" | "z" => 0,
        _ => {
            let sign = if zone.starts_with('-') { -1 } else { 1 };
            let digits = &zone[1..];
            let (hours, minutes) = match digits.len() {
                2 => (digits, "00"),
                4 => digits.split_at(2),
                5 if digits.as_bytes()[2] == b':' => (&digits[..2], &digits[3..]),
                _ => return Err(invalid("bad zone offset")),
            };
            let hours = number(hours, 2, "bad zone offset")?;
            let minutes = number(minutes, 2, "bad zone offset")?;
            if hours > 23 || minutes > 59 {
                return Err(invalid("bad zone offset"));
            }
            sign * (hours * 60 + minutes)
        }
    };
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second
        - zone_minutes * 60;
    Ok(seconds * 1_000 + millis)
}

fn is_leap_year(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar (year 0000 to 9999).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let days_before_year = |year: i64| {
        let y = year - 1;
        // Days in the years 1..=y, relative to the start of year 1.
        y * 365 + y.div_euclid(4) - y.div_euclid(100) + y.div_euclid(400)
    };
    let days_before_month: i64 = (1..month).map(|m| days_in_month(year, m)).sum();
    days_before_year(year) - days_before_year(1970) + days_before_month + day - 1
}

pub fn main(args: GroupArgs) -> ExitCode {
    run(async move {
        match args.command {
            GroupCommand::List(args) => list(args).await,
            GroupCommand::Describe(args) => describe(args).await,
            GroupCommand::Delete(args) => delete(args).await,
            GroupCommand::Seek(args) => seek(args).await,
        }
    })
}

fn dash(value: Option<impl ToString>) -> String {
    value.map_or_else(|| "-".to_owned(), |value| value.to_string())
}

fn non_empty(text: &str) -> String {
    if text.is_empty() {
        "-".to_owned()
    } else {
        text.to_owned()
    }
}

async fn list(args: ListArgs) -> anyhow::Result<()> {
    let client = args.connect.connect().await?;
    let listing = client.list_groups(&args.states).await?;
    let mut table = vec![
        ["GROUP", "STATE", "PROTOCOL-TYPE"]
            .map(str::to_owned)
            .to_vec(),
    ];
    for group in &listing.groups {
        table.push(vec![
            group.group_id.clone(),
            dash(group.state.as_deref().filter(|state| !state.is_empty())),
            non_empty(&group.protocol_type),
        ]);
    }
    print!("{}", render_table(&table));
    match listing.failures.as_slice() {
        [] => Ok(()),
        [(node_id, error)] => bail!("cannot list the groups of node {node_id}: {error}"),
        failures => {
            for (node_id, error) in failures {
                eprintln!("error: node {node_id}: {error}");
            }
            bail!("cannot list the groups of {} brokers", failures.len())
        }
    }
}

fn group_not_found(group: &str) -> ClientError {
    KafkaError::new(ErrorCode::GroupIdNotFound, format!("group {group:?}"))
        .with_message(Some("the group does not exist".to_owned()))
        .into()
}

async fn describe(args: DescribeArgs) -> anyhow::Result<()> {
    let client = args.connect.connect().await?;
    let mut missing = Vec::new();
    let mut printed = false;
    for group in &args.groups {
        let description = client.describe_group(group).await?;
        if !description.exists() {
            missing.push(group.clone());
            continue;
        }
        let committed = client.committed_offsets(group, None).await?;
        let mut partitions: BTreeSet<TopicPartition> = committed.keys().cloned().collect();
        for member in &description.members {
            partitions.extend(member.assigned_partitions().iter().cloned());
        }
        let (log_end, warnings) = log_end_offsets(&client, &partitions).await;
        if printed {
            println!();
        }
        printed = true;
        let rows = partition_rows(&description, &committed, &log_end);
        print!("{}", render_description(&description, &rows));
        for warning in warnings {
            eprintln!("warning: {warning}");
        }
    }
    match missing.as_slice() {
        [] => Ok(()),
        [group] => Err(group_not_found(group).into()),
        groups => bail!(
            "GROUP_ID_NOT_FOUND: {} groups do not exist: {}",
            groups.len(),
            groups.join(", ")
        ),
    }
}

/// The log end offset (ListOffsets latest: the high watermark) of each partition; partitions of
/// topics that no longer exist, or whose offsets cannot be listed, are left out with a warning.
async fn log_end_offsets(
    client: &Client,
    partitions: &BTreeSet<TopicPartition>,
) -> (BTreeMap<TopicPartition, i64>, Vec<String>) {
    let mut by_topic: BTreeMap<&str, Vec<PartitionIndex>> = BTreeMap::new();
    for partition in partitions {
        by_topic
            .entry(partition.topic.as_str())
            .or_default()
            .push(partition.partition);
    }
    let mut offsets = BTreeMap::new();
    let mut warnings = Vec::new();
    if by_topic.is_empty() {
        return (offsets, warnings);
    }
    let names: Vec<String> = by_topic.keys().map(|topic| (*topic).to_owned()).collect();
    let metadata = match client.metadata(Some(&names)).await {
        Ok(metadata) => metadata,
        Err(error) => {
            warnings.push(format!("cannot read topic metadata: {error}"));
            return (offsets, warnings);
        }
    };
    for (topic, partitions) in by_topic {
        let info = match metadata.topic(topic) {
            Some(info) if info.error.is_none() => info,
            Some(info) => {
                let name = info
                    .error
                    .map(caudal_client::error_name)
                    .unwrap_or_default();
                warnings.push(format!("topic {topic:?}: {name}; no log end offsets"));
                continue;
            }
            None => {
                warnings.push(format!("topic {topic:?} is not in the metadata"));
                continue;
            }
        };
        let (known, unknown): (Vec<PartitionIndex>, Vec<PartitionIndex>) = partitions
            .into_iter()
            .partition(|&partition| info.partition(partition).is_some());
        for partition in unknown {
            warnings.push(format!("{topic}-{partition} does not exist"));
        }
        if known.is_empty() {
            continue;
        }
        let specs: Vec<(PartitionIndex, OffsetSpec)> = known
            .iter()
            .map(|&partition| (partition, OffsetSpec::Latest))
            .collect();
        match client.list_offsets(topic, &specs).await {
            Ok(listed) => {
                for (partition, listed) in listed {
                    if let Some(offset) = listed.offset {
                        offsets.insert(
                            TopicPartition {
                                topic: topic.to_owned(),
                                partition,
                            },
                            offset.0,
                        );
                    }
                }
            }
            Err(error) => warnings.push(format!(
                "cannot list the log end offsets of {topic:?}: {error}"
            )),
        }
    }
    (offsets, warnings)
}

/// One line of `describe`'s partition table.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PartitionRow<'a> {
    partition: TopicPartition,
    committed: Option<i64>,
    log_end: Option<i64>,
    /// Log end offset minus committed offset, as Kafka computes it.
    lag: Option<i64>,
    owner: Option<&'a GroupMember>,
}

/// Every partition the group has committed offsets for or has assigned to a member, in topic
/// and partition order.
fn partition_rows<'a>(
    description: &'a GroupDescription,
    committed: &BTreeMap<TopicPartition, CommittedOffset>,
    log_end: &BTreeMap<TopicPartition, i64>,
) -> Vec<PartitionRow<'a>> {
    let mut partitions: BTreeSet<&TopicPartition> = committed.keys().collect();
    for member in &description.members {
        partitions.extend(member.assigned_partitions());
    }
    partitions
        .into_iter()
        .map(|partition| {
            let committed = committed.get(partition).map(|c| c.offset.0);
            let log_end = log_end.get(partition).copied();
            PartitionRow {
                partition: partition.clone(),
                committed,
                log_end,
                lag: committed
                    .zip(log_end)
                    .map(|(committed, end)| end.saturating_sub(committed)),
                owner: description.owner(partition),
            }
        })
        .collect()
}

/// `orders(0,1,2) audit(3)`.
fn assignment_text(member: &GroupMember) -> String {
    match &member.assigned {
        None if member.assignment.is_empty() => "-".to_owned(),
        None => format!("({} bytes)", member.assignment.len()),
        Some(Err(error)) => format!("(undecodable: {error})"),
        Some(Ok(partitions)) if partitions.is_empty() => "-".to_owned(),
        Some(Ok(partitions)) => {
            let mut by_topic: BTreeMap<&str, Vec<String>> = BTreeMap::new();
            for partition in partitions {
                by_topic
                    .entry(partition.topic.as_str())
                    .or_default()
                    .push(partition.partition.to_string());
            }
            by_topic
                .into_iter()
                .map(|(topic, partitions)| format!("{topic}({})", partitions.join(",")))
                .collect::<Vec<_>>()
                .join(" ")
        }
    }
}

fn render_description(description: &GroupDescription, rows: &[PartitionRow<'_>]) -> String {
    let mut out = String::new();
    let coordinator = &description.coordinator;
    let _ = writeln!(out, "Group:               {}", description.group_id);
    let _ = writeln!(
        out,
        "Coordinator:         {} ({})",
        coordinator.node_id,
        coordinator.address()
    );
    let state_note = match description.state.as_str() {
        "Empty" => " (no active members)",
        "PreparingRebalance" | "CompletingRebalance" | "Assigning" | "Reconciling" => {
            " (rebalancing)"
        }
        _ => "",
    };
    let _ = writeln!(
        out,
        "State:               {}{state_note}",
        description.state
    );
    let _ = writeln!(
        out,
        "Protocol type:       {}",
        non_empty(&description.protocol_type)
    );
    let _ = writeln!(
        out,
        "Assignment strategy: {}",
        non_empty(&description.protocol)
    );
    let _ = writeln!(out, "Members:             {}", description.members.len());
    if !description.members.is_empty() {
        let is_consumer = description.protocol_type == CONSUMER_PROTOCOL_TYPE;
        let _ = writeln!(out);
        let mut table = vec![
            [
                "MEMBER-ID",
                "INSTANCE-ID",
                "CLIENT-ID",
                "HOST",
                "#PARTITIONS",
                "ASSIGNMENT",
            ]
            .map(str::to_owned)
            .to_vec(),
        ];
        let mut members: Vec<&GroupMember> = description.members.iter().collect();
        members.sort_by(|a, b| a.member_id.cmp(&b.member_id));
        for member in members {
            table.push(vec![
                member.member_id.clone(),
                dash(member.group_instance_id.as_deref()),
                non_empty(&member.client_id),
                non_empty(&member.client_host),
                if is_consumer {
                    member.assigned_partitions().len().to_string()
                } else {
                    "-".to_owned()
                },
                assignment_text(member),
            ]);
        }
        out.push_str(&render_table(&table));
    }
    let _ = writeln!(out);
    if rows.is_empty() {
        let _ = writeln!(out, "No committed offsets and no assigned partitions.");
        return out;
    }
    let mut table = vec![
        [
            "TOPIC",
            "PARTITION",
            "CURRENT-OFFSET",
            "LOG-END-OFFSET",
            "LAG",
            "MEMBER-ID",
            "HOST",
            "CLIENT-ID",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    for row in rows {
        table.push(vec![
            row.partition.topic.clone(),
            row.partition.partition.to_string(),
            dash(row.committed),
            dash(row.log_end),
            dash(row.lag),
            dash(row.owner.map(|member| member.member_id.as_str())),
            dash(row.owner.map(|member| non_empty(&member.client_host))),
            dash(row.owner.map(|member| non_empty(&member.client_id))),
        ]);
    }
    out.push_str(&render_table(&table));
    let lags: Vec<i64> = rows.iter().filter_map(|row| row.lag).collect();
    if !lags.is_empty() {
        let total = lags.iter().fold(0i64, |sum, lag| sum.saturating_add(*lag));
        let _ = writeln!(out, "\nTotal lag: {total}");
    }
    out
}

/// Adds a short explanation to the group errors a user is most likely to meet.
fn explain(error: ClientError) -> ClientError {
    match error {
        ClientError::Kafka(error) if error.message.is_none() => {
            let message = match error.code {
                ErrorCode::NonEmptyGroup => {
                    Some("the group has active members; stop its consumers first")
                }
                ErrorCode::GroupIdNotFound => Some("the group does not exist"),
                _ => None,
            };
            ClientError::Kafka(error.with_message(message.map(str::to_owned)))
        }
        other => other,
    }
}

async fn delete(args: DeleteArgs) -> anyhow::Result<()> {
    let client = args.connect.connect().await?;
    let results = client.delete_groups(&args.groups).await;
    let total = results.len();
    let mut failures = Vec::new();
    for (group, result) in results {
        match result {
            Ok(()) => println!("deleted group {group:?}"),
            Err(error) => failures.push(explain(error)),
        }
    }
    match failures.len() {
        0 => Ok(()),
        1 if total == 1 => Err(failures.remove(0).into()),
        count => {
            for error in &failures {
                eprintln!("error: {error}");
            }
            bail!("{count} of {total} groups not deleted")
        }
    }
}

/// A partition's offsets that `seek` needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LogBounds {
    log_start: i64,
    log_end: i64,
    /// For a timestamp target: the first offset at or after it, `None` if no record is that
    /// recent.
    at_timestamp: Option<i64>,
}

/// One partition's move.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PlannedSeek {
    partition: TopicPartition,
    current: Option<i64>,
    new: i64,
    /// Why the new offset differs from what was asked.
    note: Option<String>,
}

/// Kafka's reset rules: earliest / latest as listed; an offset clamped to the log; a timestamp
/// past the last record falls back to the log end offset.
fn plan_seek(
    target: SeekTarget,
    partitions: &[TopicPartition],
    committed: &BTreeMap<TopicPartition, CommittedOffset>,
    bounds: &BTreeMap<TopicPartition, LogBounds>,
) -> Result<Vec<PlannedSeek>, String> {
    partitions
        .iter()
        .map(|partition| {
            let bounds = bounds
                .get(partition)
                .ok_or_else(|| format!("no log offsets for {partition}"))?;
            let (new, note) = match target {
                SeekTarget::Earliest => (bounds.log_start, None),
                SeekTarget::Latest => (bounds.log_end, None),
                SeekTarget::Offset(offset) if offset > bounds.log_end => (
                    bounds.log_end,
                    Some(format!(
                        "{partition}: offset {offset} is past the log end offset; using {}",
                        bounds.log_end
                    )),
                ),
                SeekTarget::Offset(offset) if offset < bounds.log_start => (
                    bounds.log_start,
                    Some(format!(
                        "{partition}: offset {offset} is before the log start offset; using {}",
                        bounds.log_start
                    )),
                ),
                SeekTarget::Offset(offset) => (offset, None),
                SeekTarget::Timestamp(_) => match bounds.at_timestamp {
                    Some(offset) => (offset, None),
                    None => (
                        bounds.log_end,
                        Some(format!(
                            "{partition}: no record at or after the timestamp; using the log end \
                             offset {}",
                            bounds.log_end
                        )),
                    ),
                },
            };
            Ok(PlannedSeek {
                partition: partition.clone(),
                current: committed.get(partition).map(|c| c.offset.0),
                new,
                note,
            })
        })
        .collect()
}

/// The partitions `seek` moves: those named by `--topic`, else every partition with a commit.
/// Every one must exist.
async fn select_partitions(
    client: &Client,
    group: &str,
    selections: &[TopicSelection],
    committed: &BTreeMap<TopicPartition, CommittedOffset>,
) -> anyhow::Result<Vec<TopicPartition>> {
    let mut chosen: BTreeSet<TopicPartition> = BTreeSet::new();
    if selections.is_empty() {
        if committed.is_empty() {
            bail!("group {group:?} has no committed offsets; choose partitions with --topic");
        }
        chosen.extend(committed.keys().cloned());
    }
    for selection in selections {
        let info = client.topic(&selection.topic).await?;
        match &selection.partitions {
            None => chosen.extend(
                info.partitions
                    .iter()
                    .map(|p| TopicPartition::new(&selection.topic, p.partition.0)),
            ),
            Some(partitions) => chosen.extend(
                partitions
                    .iter()
                    .map(|&p| TopicPartition::new(&selection.topic, p)),
            ),
        }
    }
    // Check everything against fresh metadata, including topics only known from commits.
    let topics: Vec<String> = chosen
        .iter()
        .map(|p| p.topic.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let metadata = client.metadata(Some(&topics)).await?;
    for partition in &chosen {
        match metadata.topic(&partition.topic) {
            Some(info) if info.error.is_none() => {
                if info.partition(partition.partition).is_none() {
                    bail!(
                        "{partition} does not exist: topic {:?} has {} partition(s)",
                        partition.topic,
                        info.partitions.len()
                    );
                }
            }
            found => {
                let code = found
                    .and_then(|info| info.error)
                    .unwrap_or(ErrorCode::UnknownTopicOrPartition);
                return Err(ClientError::from(
                    KafkaError::new(code, format!("topic {:?}", partition.topic)).with_message(
                        Some(format!(
                            "group {group:?} has offsets for it; choose other topics with --topic"
                        )),
                    ),
                )
                .into());
            }
        }
    }
    Ok(chosen.into_iter().collect())
}

/// ListOffsets earliest and latest (and at the timestamp, for a timestamp target) of each
/// partition, at the partition leaders.
async fn log_bounds(
    client: &Client,
    target: SeekTarget,
    partitions: &[TopicPartition],
) -> anyhow::Result<BTreeMap<TopicPartition, LogBounds>> {
    let mut by_topic: BTreeMap<&str, Vec<PartitionIndex>> = BTreeMap::new();
    for partition in partitions {
        by_topic
            .entry(partition.topic.as_str())
            .or_default()
            .push(partition.partition);
    }
    let mut bounds = BTreeMap::new();
    for (topic, partitions) in by_topic {
        let specs = |spec: OffsetSpec| -> Vec<(PartitionIndex, OffsetSpec)> {
            partitions.iter().map(|&p| (p, spec)).collect()
        };
        let log_start = client
            .list_offsets(topic, &specs(OffsetSpec::Earliest))
            .await?;
        let log_end = client
            .list_offsets(topic, &specs(OffsetSpec::Latest))
            .await?;
        let at_timestamp = match target {
            SeekTarget::Timestamp(timestamp) => Some(
                client
                    .list_offsets(topic, &specs(OffsetSpec::Timestamp(timestamp)))
                    .await?,
            ),
            _ => None,
        };
        for partition in partitions {
            let offset =
                |listed: &BTreeMap<PartitionIndex, caudal_client::client::ListedOffset>,
                 what: &str|
                 -> anyhow::Result<i64> {
                    match listed.get(&partition).and_then(|l| l.offset) {
                        Some(offset) => Ok(offset.0),
                        None => bail!("no {what} offset for {topic}-{partition}"),
                    }
                };
            bounds.insert(
                TopicPartition {
                    topic: topic.to_owned(),
                    partition,
                },
                LogBounds {
                    log_start: offset(&log_start, "log start")?,
                    log_end: offset(&log_end, "log end")?,
                    at_timestamp: at_timestamp
                        .as_ref()
                        .and_then(|listed| listed.get(&partition))
                        .and_then(|listed| listed.offset)
                        .map(|offset| offset.0),
                },
            );
        }
    }
    Ok(bounds)
}

fn render_plan(group: &str, plan: &[PlannedSeek]) -> String {
    let mut table = vec![
        [
            "GROUP",
            "TOPIC",
            "PARTITION",
            "CURRENT-OFFSET",
            "NEW-OFFSET",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    for seek in plan {
        table.push(vec![
            group.to_owned(),
            seek.partition.topic.clone(),
            seek.partition.partition.to_string(),
            dash(seek.current),
            seek.new.to_string(),
        ]);
    }
    render_table(&table)
}

async fn seek(args: SeekArgs) -> anyhow::Result<()> {
    let target = args.target()?;
    let group = &args.group;
    let client = args.connect.connect().await?;
    let description = client.describe_group(group).await?;
    if !description.is_inactive() {
        bail!(
            "Assignments can only be reset if the group {group:?} is inactive, but the current \
             state is {} ({} member(s)); stop its consumers first",
            description.state,
            description.members.len()
        );
    }
    let committed = client.committed_offsets(group, None).await?;
    let partitions = select_partitions(&client, group, &args.topics, &committed).await?;
    let bounds = log_bounds(&client, target, &partitions).await?;
    let plan = plan_seek(target, &partitions, &committed, &bounds).map_err(anyhow::Error::msg)?;
    print!("{}", render_plan(group, &plan));
    for note in plan.iter().filter_map(|seek| seek.note.as_ref()) {
        eprintln!("warning: {note}");
    }
    if args.dry_run {
        eprintln!("dry run: nothing committed (run without --dry-run to commit these offsets)");
        return Ok(());
    }
    let offsets: BTreeMap<TopicPartition, Offset> = plan
        .iter()
        .map(|seek| (seek.partition.clone(), Offset(seek.new)))
        .collect();
    let results = client.commit_offsets(group, &offsets).await?;
    let failures: Vec<KafkaError> = results.into_values().filter_map(Result::err).collect();
    match failures.len() {
        0 => {
            eprintln!("committed {} offset(s) for group {group:?}", offsets.len());
            Ok(())
        }
        count => {
            for error in &failures {
                eprintln!("error: {error}");
            }
            let hint = if failures.iter().any(|error| {
                matches!(
                    error.code,
                    ErrorCode::UnknownMemberId
                        | ErrorCode::IllegalGeneration
                        | ErrorCode::RebalanceInProgress
                )
            }) {
                " (a consumer joined the group meanwhile?)"
            } else {
                ""
            };
            bail!(
                "{count} of {} offset(s) not committed for group {group:?}{hint}",
                offsets.len()
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use caudal_client::groups::Coordinator;
    use caudal_model::NodeId;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(subcommand)]
        command: GroupCommand,
    }

    fn parse(args: &[&str]) -> Result<GroupCommand, clap::Error> {
        Cli::try_parse_from(std::iter::once("group").chain(args.iter().copied()))
            .map(|cli| cli.command)
    }

    fn seek_args(args: &[&str]) -> SeekArgs {
        match parse(args).unwrap() {
            GroupCommand::Seek(seek) => seek,
            other => panic!("not a seek: {other:?}"),
        }
    }

    #[test]
    fn parses_seek_targets() {
        assert_eq!(parse_target("earliest"), Ok(SeekTarget::Earliest));
        assert_eq!(parse_target("latest"), Ok(SeekTarget::Latest));
        assert_eq!(parse_target("42"), Ok(SeekTarget::Offset(42)));
        assert_eq!(
            parse_target("@1767225600000"),
            Ok(SeekTarget::Timestamp(1_767_225_600_000))
        );
        assert_eq!(
            parse_target("@2026-01-01T00:00:00Z"),
            Ok(SeekTarget::Timestamp(1_767_225_600_000))
        );
        for bad in ["-1", "", "@", "soon", "12x", "@2026-01-01T00:00:00", "1e3"] {
            assert!(parse_target(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn parses_datetimes_with_zones() {
        assert_eq!(parse_datetime("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_datetime("1969-12-31T23:59:59Z"), Ok(-1_000));
        assert_eq!(
            parse_datetime("2024-02-29T13:30:15.25+01:00"),
            Ok(1_709_209_815_250)
        );
        assert_eq!(
            parse_datetime("2024-02-29T13:30:15.250999+0100"),
            Ok(1_709_209_815_250)
        );
        assert_eq!(
            parse_datetime("2024-02-29T10:30:15.250-02"),
            Ok(1_709_209_815_250)
        );
        for bad in [
            "2023-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-01-01T24:00:00Z",
            "2026-01-01T00:00Z",
            "2026-01-01 00:00:00Z",
            "2026-1-01T00:00:00Z",
            "2026-01-01T00:00:00",
            "2026-01-01T00:00:00.Z",
            "2026-01-01T00:00:00+1",
        ] {
            let error = parse_datetime(bad).unwrap_err();
            assert!(error.contains("expected a date and time"), "{bad}: {error}");
        }
    }

    #[test]
    fn parses_seek_flags_and_kafka_aliases() {
        let args = seek_args(&["seek", "app", "--to", "earliest", "--topic", "orders:0,2"]);
        assert_eq!(args.target().unwrap(), SeekTarget::Earliest);
        assert_eq!(
            args.topics,
            vec![TopicSelection {
                topic: "orders".into(),
                partitions: Some(vec![0, 2])
            }]
        );
        assert!(!args.dry_run);
        let args = seek_args(&["seek", "app", "--to-offset", "7", "--dry-run"]);
        assert_eq!(args.target().unwrap(), SeekTarget::Offset(7));
        assert!(args.dry_run && args.topics.is_empty());
        let args = seek_args(&["seek", "app", "--to-datetime", "1970-01-01T00:00:01Z"]);
        assert_eq!(args.target().unwrap(), SeekTarget::Timestamp(1_000));
        assert_eq!(
            seek_args(&["seek", "app", "--to-latest"]).target().unwrap(),
            SeekTarget::Latest
        );
        // Exactly one target; --all-topics and --topic exclude each other.
        assert!(parse(&["seek", "app"]).is_err());
        assert!(parse(&["seek", "app", "--to", "earliest", "--to-latest"]).is_err());
        assert!(parse(&["seek", "app", "--to-latest", "--all-topics", "--topic", "t"]).is_err());
        assert!(parse(&["seek", "app", "--to-offset", "-3"]).is_err());
        assert!(parse(&["seek", "app", "--to-latest", "--topic", "t:1,x"]).is_err());
        assert!(parse(&["seek", "app", "--to-latest", "--topic", ":1"]).is_err());
    }

    #[test]
    fn parses_list_states_case_insensitively() {
        match parse(&[
            "list",
            "--state",
            "stable,PREPARING_REBALANCE",
            "--state",
            "Empty",
        ])
        .unwrap()
        {
            GroupCommand::List(list) => {
                assert_eq!(list.states, ["Stable", "PreparingRebalance", "Empty"]);
            }
            other => panic!("{other:?}"),
        }
        let error = parse(&["list", "--state", "Sleeping"])
            .unwrap_err()
            .to_string();
        assert!(error.contains("valid states"), "{error}");
        assert!(parse(&["describe"]).is_err());
        assert!(parse(&["delete"]).is_err());
    }

    fn committed(entries: &[(&str, i32, i64)]) -> BTreeMap<TopicPartition, CommittedOffset> {
        entries
            .iter()
            .map(|&(topic, partition, offset)| {
                (
                    TopicPartition::new(topic, partition),
                    CommittedOffset {
                        offset: Offset(offset),
                        leader_epoch: None,
                        metadata: None,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn plans_seeks_as_kafka_resets() {
        let partitions: Vec<TopicPartition> = (0..3).map(|p| TopicPartition::new("t", p)).collect();
        let bounds: BTreeMap<TopicPartition, LogBounds> =
            [(10, 20, Some(15)), (0, 5, None), (0, 0, None)]
                .into_iter()
                .enumerate()
                .map(|(p, (log_start, log_end, at_timestamp))| {
                    (
                        TopicPartition::new("t", p as i32),
                        LogBounds {
                            log_start,
                            log_end,
                            at_timestamp,
                        },
                    )
                })
                .collect();
        let current = committed(&[("t", 0, 12)]);
        let new = |target| -> Vec<i64> {
            plan_seek(target, &partitions, &current, &bounds)
                .unwrap()
                .iter()
                .map(|seek| seek.new)
                .collect()
        };
        assert_eq!(new(SeekTarget::Earliest), [10, 0, 0]);
        assert_eq!(new(SeekTarget::Latest), [20, 5, 0]);
        assert_eq!(new(SeekTarget::Offset(3)), [10, 3, 0]);
        assert_eq!(new(SeekTarget::Timestamp(99)), [15, 5, 0]);
        let plan = plan_seek(SeekTarget::Offset(3), &partitions, &current, &bounds).unwrap();
        assert_eq!(plan[0].current, Some(12));
        assert_eq!(plan[1].current, None);
        assert!(
            plan[0]
                .note
                .as_deref()
                .unwrap()
                .contains("before the log start")
        );
        assert!(plan[1].note.is_none());
        assert!(
            plan[2]
                .note
                .as_deref()
                .unwrap()
                .contains("past the log end")
        );
        let timestamp =
            plan_seek(SeekTarget::Timestamp(99), &partitions, &current, &bounds).unwrap();
        assert!(timestamp[0].note.is_none());
        assert!(timestamp[1].note.as_deref().unwrap().contains("no record"));
        let unknown = [TopicPartition::new("other", 0)];
        assert!(plan_seek(SeekTarget::Latest, &unknown, &current, &bounds).is_err());
        let text = render_plan("app", &plan);
        assert!(
            text.starts_with("GROUP  TOPIC  PARTITION  CURRENT-OFFSET  NEW-OFFSET\n"),
            "{text}"
        );
        assert!(
            text.contains("app    t      0          12              10\n"),
            "{text}"
        );
        assert!(
            text.contains("app    t      1          -               3\n"),
            "{text}"
        );
    }

    fn member(id: &str, assigned: Option<Result<Vec<TopicPartition>, String>>) -> GroupMember {
        GroupMember {
            member_id: id.to_owned(),
            group_instance_id: None,
            client_id: format!("client-{id}"),
            client_host: "/127.0.0.1".to_owned(),
            assignment: Bytes::from_static(b"raw"),
            assigned,
        }
    }

    fn description(members: Vec<GroupMember>) -> GroupDescription {
        GroupDescription {
            group_id: "app".to_owned(),
            coordinator: Coordinator {
                node_id: NodeId(1),
                host: "127.0.0.1".to_owned(),
                port: 9092,
            },
            state: "Stable".to_owned(),
            protocol_type: "consumer".to_owned(),
            protocol: "range".to_owned(),
            members,
        }
    }

    #[test]
    fn rows_join_commits_assignments_and_log_end_offsets() {
        let group = description(vec![
            member(
                "m1",
                Some(Ok(vec![
                    TopicPartition::new("orders", 0),
                    TopicPartition::new("orders", 1),
                ])),
            ),
            member("m2", Some(Err("truncated".to_owned()))),
        ]);
        // orders-1 is owned but never committed; audit-0 is committed but owned by nobody.
        let commits = committed(&[("orders", 0, 4), ("audit", 0, 9)]);
        let log_end: BTreeMap<TopicPartition, i64> = [
            (TopicPartition::new("orders", 0), 10),
            (TopicPartition::new("orders", 1), 3),
        ]
        .into_iter()
        .collect();
        let rows = partition_rows(&group, &commits, &log_end);
        // (partition, committed, log end, lag, owner)
        type Summary<'a> = (
            String,
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Option<&'a str>,
        );
        let summary: Vec<Summary<'_>> = rows
            .iter()
            .map(|row| {
                (
                    row.partition.to_string(),
                    row.committed,
                    row.log_end,
                    row.lag,
                    row.owner.map(|m| m.member_id.as_str()),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("audit-0".to_owned(), Some(9), None, None, None),
                (
                    "orders-0".to_owned(),
                    Some(4),
                    Some(10),
                    Some(6),
                    Some("m1")
                ),
                ("orders-1".to_owned(), None, Some(3), None, Some("m1")),
            ]
        );
        let text = render_description(&group, &rows);
        assert!(text.contains("State:               Stable\n"), "{text}");
        assert!(
            text.contains("Coordinator:         1 (127.0.0.1:9092)"),
            "{text}"
        );
        assert!(text.contains("orders(0,1)"), "{text}");
        assert!(text.contains("(undecodable: truncated)"), "{text}");
        assert!(
            text.lines()
                .any(|line| line.split_whitespace().collect::<Vec<_>>()
                    == [
                        "orders",
                        "0",
                        "4",
                        "10",
                        "6",
                        "m1",
                        "/127.0.0.1",
                        "client-m1"
                    ]),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|line| line.split_whitespace().collect::<Vec<_>>()
                    == ["audit", "0", "9", "-", "-", "-", "-", "-"]),
            "{text}"
        );
        assert!(text.ends_with("Total lag: 6\n"), "{text}");

        let mut empty = description(Vec::new());
        empty.state = "Empty".to_owned();
        let text = render_description(&empty, &[]);
        assert!(text.contains("Empty (no active members)"), "{text}");
        assert!(text.contains("No committed offsets"), "{text}");
    }

    #[test]
    fn explains_group_errors() {
        let busy = explain(KafkaError::new(ErrorCode::NonEmptyGroup, "group \"app\"").into());
        assert_eq!(
            busy.to_string(),
            "NON_EMPTY_GROUP (68): group \"app\": the group has active members; stop its \
             consumers first"
        );
        assert_eq!(
            group_not_found("x").to_string(),
            "GROUP_ID_NOT_FOUND (69): group \"x\": the group does not exist"
        );
    }
}
