//! `caudal topic`: create, list, describe, delete topics, add partitions, change topic configs
//! while the topic is live (`kafka-configs.sh`), delete records below an offset
//! (`kafka-delete-records.sh`), and move partitions' replicas to other brokers
//! (`kafka-reassign-partitions.sh`).
//!
//! The config pieces that `caudal broker` shares live here too: the change flags
//! ([`ConfigChangeArgs`]), applying them ([`alter_configs`]) and the config table
//! ([`render_configs`]).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use caudal_client::admin::{
    AlterConfigOp, ConfigChanges, ConfigEntry, ConfigResource, DeleteRecordsBefore, NewTopic,
};
use caudal_client::{Client, ClientError, OffsetSpec, TopicInfo};
use caudal_model::{Offset, PartitionIndex};
use caudal_protocol::ErrorCode;
use clap::{ArgGroup, Args, Subcommand};

use crate::common::{ConnectArgs, parse_key_value, run};

const EXAMPLES: &str = "\
Examples:
  caudal topic create orders --partitions 6 --config retention.ms=86400000
  caudal topic list
  caudal topic describe orders
  caudal topic describe orders --configs --all
  caudal topic alter-config orders --set retention.ms=3600000 --delete segment.ms
  caudal topic trim orders --before 1000 --partition 0
  caudal topic add-partitions orders --partitions 12
  caudal topic reassign orders --partition 0 --replicas 2,3
  caudal topic reassign --list
  caudal topic delete orders
  caudal topic list -b broker1:9092,broker2:9092";

/// Topic admin: create, list, describe, delete, add partitions, alter configs, trim, reassign.
#[derive(Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct TopicArgs {
    #[command(subcommand)]
    command: TopicCommand,
}

#[derive(Subcommand, Debug)]
enum TopicCommand {
    /// Create a topic.
    #[command(after_help = "\
Examples:
  caudal topic create orders
  caudal topic create orders --partitions 6 --replication-factor 3
  caudal topic create logs --config cleanup.policy=compact --config segment.bytes=104857600
  caudal topic create orders --partitions 6 --validate-only

Without --partitions / --replication-factor the broker's num.partitions and
default.replication.factor apply.")]
    Create(CreateArgs),
    /// List topics with their partition counts and replication factors.
    #[command(after_help = "\
Examples:
  caudal topic list
  caudal topic list --exclude-internal")]
    List(ListArgs),
    /// Show a topic's id, partitions (leader, replicas, ISR, offsets) and configs.
    #[command(after_help = "\
Examples:
  caudal topic describe orders
  caudal topic describe orders --all
  caudal topic describe orders --configs
  caudal topic describe orders --configs --all

With --configs only the configs are shown, each with its source, read-only flag and
synonym chain (what it falls back to, most specific first), as kafka-configs.sh --describe
prints them. Without --all only the topic's own values (DYNAMIC_TOPIC_CONFIG) are listed.")]
    Describe(DescribeArgs),
    /// Change a topic's configs while it is live (IncrementalAlterConfigs).
    #[command(after_help = "\
Examples:
  caudal topic alter-config orders --set retention.ms=3600000 --set segment.bytes=104857600
  caudal topic alter-config orders --delete retention.ms
  caudal topic alter-config orders --add-config 'retention.ms=3600000,cleanup.policy=[compact,delete]'
  caudal topic alter-config orders --append cleanup.policy=compact
  caudal topic alter-config orders --subtract cleanup.policy=delete
  caudal topic alter-config orders --set retention.ms=-1 --validate-only

--delete removes the topic's own value, so the config falls back to the broker's (see
`caudal topic describe TOPIC --configs --all`); deleting a config the topic does not set is an
error, as in kafka-configs.sh. --append and --subtract apply to list configs
(cleanup.policy, leader/follower.replication.throttled.replicas).")]
    AlterConfig(AlterConfigArgs),
    /// Delete the records below an offset (DeleteRecords), moving the log start offset up.
    #[command(after_help = "\
Examples:
  caudal topic trim orders --before 1000
  caudal topic trim orders --before 1000 --partition 0 --partition 2
  caudal topic trim orders --before latest

Every record below --before is deleted from the given partitions (all of them without
--partition); `latest` (or -1) is each partition's high watermark, which empties it for
consumers. An offset beyond a partition's high watermark is OFFSET_OUT_OF_RANGE for that
partition. Consumers positioned below the new log start offset get OFFSET_OUT_OF_RANGE and
reset by their auto.offset.reset.")]
    Trim(TrimArgs),
    /// Delete a topic.
    #[command(after_help = "\
Examples:
  caudal topic delete orders
  caudal topic delete orders --if-exists")]
    Delete(DeleteArgs),
    /// Grow a topic to more partitions (Kafka never shrinks one).
    #[command(after_help = "\
Examples:
  caudal topic add-partitions orders --partitions 12")]
    AddPartitions(AddPartitionsArgs),
    /// Move partitions' replicas to other brokers, cancel a move, or list the moves in
    /// progress (AlterPartitionReassignments / ListPartitionReassignments).
    #[command(after_help = "\
Examples:
  caudal topic reassign orders --partition 0 --replicas 2,3
  caudal topic reassign orders --partition 0 --partition 1 --replicas 3,1,2
  caudal topic reassign orders --partition 0 --cancel
  caudal topic reassign --list
  caudal topic reassign --list orders

--replicas is the partition's new replica list, in order: its first broker is the preferred
leader. The new replicas copy the partition from its leader; once all of them are in the ISR
the reassignment completes, the replicas left out stop hosting the partition and, if the
leader was one of them, leadership moves to a new replica. The replication factor may change.
While a move is in progress `--list` shows the partition's replicas (old and new together)
and the ones being added and removed; `--cancel` goes back to the original replicas.
Run `caudal cluster rebalance-leaders` afterwards to hand leadership to the preferred
replicas.")]
    Reassign(ReassignArgs),
}

#[derive(Args, Debug)]
struct CreateArgs {
    /// Topic name.
    name: String,
    /// Number of partitions (default: the broker's num.partitions).
    #[arg(long, value_name = "N")]
    partitions: Option<i32>,
    /// Replicas per partition (default: the broker's default.replication.factor).
    #[arg(long, value_name = "N")]
    replication_factor: Option<i16>,
    /// A topic config by its Kafka name; repeatable.
    #[arg(long = "config", value_name = "NAME=VALUE", value_parser = parse_key_value)]
    configs: Vec<(String, String)>,
    /// Ask the broker to check the request without creating anything.
    #[arg(long)]
    validate_only: bool,
    /// Succeed if the topic already exists.
    #[arg(long)]
    if_not_exists: bool,
    #[command(flatten)]
    connect: ConnectArgs,
}

#[derive(Args, Debug)]
struct ListArgs {
    /// Leave out internal topics such as __consumer_offsets.
    #[arg(long)]
    exclude_internal: bool,
    #[command(flatten)]
    connect: ConnectArgs,
}

#[derive(Args, Debug)]
struct DescribeArgs {
    /// Topic name.
    name: String,
    /// Show only the configs, with their read-only flags and synonym chains.
    #[arg(long)]
    configs: bool,
    /// List every config with its source, not only the topic's own values.
    #[arg(long = "all", visible_alias = "all-configs")]
    all_configs: bool,
    #[command(flatten)]
    connect: ConnectArgs,
}

/// Config changes, in Kafka's names: what `kafka-configs.sh --alter` takes, plus IncrementalAlterConfigs'
/// APPEND and SUBTRACT. They are sent as one request: deletions, then sets, appends, subtracts.
#[derive(Args, Debug)]
#[command(group(
    ArgGroup::new("changes")
        .required(true)
        .multiple(true)
        .args(["set", "add_config", "delete", "append", "subtract"])
))]
pub struct ConfigChangeArgs {
    /// Set a config; the value is taken as is (commas included). Repeatable.
    #[arg(long, value_name = "NAME=VALUE", value_parser = parse_key_value)]
    set: Vec<(String, String)>,
    /// Set configs in kafka-configs.sh syntax: 'k1=v1,k2=[v1,v2]' (square brackets group values
    /// that contain commas). Repeatable.
    #[arg(long, value_name = "K=V[,K=V...]", value_parser = parse_add_config)]
    add_config: Vec<Vec<(String, String)>>,
    /// Remove configs set on the resource, so they fall back to their defaults. Repeatable;
    /// comma-separated names are accepted.
    #[arg(
        long,
        visible_alias = "delete-config",
        value_name = "NAME",
        value_delimiter = ','
    )]
    delete: Vec<String>,
    /// Add comma-separated items to a list config. Repeatable.
    #[arg(long, value_name = "NAME=ITEMS", value_parser = parse_key_value)]
    append: Vec<(String, String)>,
    /// Remove comma-separated items from a list config. Repeatable.
    #[arg(long, value_name = "NAME=ITEMS", value_parser = parse_key_value)]
    subtract: Vec<(String, String)>,
    /// Ask the broker to check the changes without applying them.
    #[arg(long)]
    validate_only: bool,
}

impl ConfigChangeArgs {
    /// The operations in request order: deletions, sets, appends, subtracts.
    fn changes(&self) -> ConfigChanges {
        let mut changes: ConfigChanges = Vec::new();
        for name in &self.delete {
            changes.push((name.trim().to_owned(), AlterConfigOp::Delete));
        }
        for (name, value) in self.set.iter().chain(self.add_config.iter().flatten()) {
            changes.push((name.clone(), AlterConfigOp::Set(value.clone())));
        }
        for (name, items) in &self.append {
            changes.push((name.clone(), AlterConfigOp::Append(items.clone())));
        }
        for (name, items) in &self.subtract {
            changes.push((name.clone(), AlterConfigOp::Subtract(items.clone())));
        }
        changes
    }
}

/// Parses kafka-configs.sh's `--add-config` value: `k1=v1,k2=[a,b]`. Commas outside square
/// brackets separate entries; brackets are dropped from values; names and values are trimmed.
pub fn parse_add_config(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut entries = Vec::new();
    let mut depth = 0usize;
    let mut current = String::new();
    let mut pieces = Vec::new();
    for character in text.chars() {
        match character {
            '[' => {
                depth += 1;
                current.push(character);
            }
            ']' => {
                depth = depth.saturating_sub(1);
                current.push(character);
            }
            ',' if depth == 0 => pieces.push(std::mem::take(&mut current)),
            _ => current.push(character),
        }
    }
    pieces.push(current);
    for piece in pieces {
        let Some((name, value)) = piece.split_once('=') else {
            return Err(format!(
                "expected \"key=val\" or \"key=[val1,val2]\" entries, got {piece:?}"
            ));
        };
        let name = name.trim();
        if name.is_empty() {
            return Err(format!("missing config name in {piece:?}"));
        }
        let value: String = value.chars().filter(|c| *c != '[' && *c != ']').collect();
        entries.push((name.to_owned(), value.trim().to_owned()));
    }
    Ok(entries)
}

#[derive(Args, Debug)]
struct AlterConfigArgs {
    /// Topic name.
    name: String,
    #[command(flatten)]
    changes: ConfigChangeArgs,
    #[command(flatten)]
    connect: ConnectArgs,
}

#[derive(Args, Debug)]
struct TrimArgs {
    /// Topic name.
    name: String,
    /// Delete every record below this offset: a number, or `latest` (-1) for the high watermark.
    #[arg(long, value_name = "OFFSET|latest", value_parser = parse_before)]
    before: DeleteRecordsBefore,
    /// Only these partitions (default: all). Repeatable.
    #[arg(long = "partition", value_name = "N")]
    partitions: Vec<i32>,
    #[command(flatten)]
    connect: ConnectArgs,
}

/// Parses `--before`: an offset, or `latest` / `end` / `-1` for the high watermark.
fn parse_before(text: &str) -> Result<DeleteRecordsBefore, String> {
    match text {
        "latest" | "end" | "high-watermark" | "-1" => Ok(DeleteRecordsBefore::HighWatermark),
        _ => match text.parse::<i64>() {
            Ok(offset) if offset >= 0 => Ok(DeleteRecordsBefore::Offset(Offset(offset))),
            _ => Err(format!(
                "expected an offset (0 or more) or `latest`, got {text:?}"
            )),
        },
    }
}

#[derive(Args, Debug)]
struct DeleteArgs {
    /// Topic name.
    name: String,
    /// Succeed if the topic does not exist.
    #[arg(long)]
    if_exists: bool,
    #[command(flatten)]
    connect: ConnectArgs,
}

#[derive(Args, Debug)]
struct AddPartitionsArgs {
    /// Topic name.
    name: String,
    /// The new total number of partitions.
    #[arg(long, value_name = "N")]
    partitions: i32,
    /// Ask the broker to check the request without changing anything.
    #[arg(long)]
    validate_only: bool,
    #[command(flatten)]
    connect: ConnectArgs,
}

#[derive(Args, Debug)]
#[command(group(
    ArgGroup::new("action")
        .required(true)
        .args(["replicas", "cancel", "list"])
))]
struct ReassignArgs {
    /// Topic name (optional with --list: every topic).
    topic: Option<String>,
    /// The partition to move; repeatable. Required with --replicas and --cancel.
    #[arg(long = "partition", value_name = "N")]
    partitions: Vec<i32>,
    /// The new replicas, comma-separated broker ids; the first is the preferred leader.
    #[arg(long, value_name = "ID,ID...", value_delimiter = ',')]
    replicas: Vec<i32>,
    /// Cancel the reassignment in progress, back to the original replicas.
    #[arg(long)]
    cancel: bool,
    /// List the reassignments in progress (of TOPIC, or of every topic).
    #[arg(long, conflicts_with = "partitions")]
    list: bool,
    #[command(flatten)]
    connect: ConnectArgs,
}

pub fn main(args: TopicArgs) -> ExitCode {
    run(async move {
        match args.command {
            TopicCommand::Create(args) => create(args).await,
            TopicCommand::List(args) => list(args).await,
            TopicCommand::Describe(args) => describe(args).await,
            TopicCommand::Delete(args) => delete(args).await,
            TopicCommand::AddPartitions(args) => add_partitions(args).await,
            TopicCommand::AlterConfig(args) => {
                let client = args.connect.connect().await?;
                alter_configs(&client, &ConfigResource::Topic(args.name), &args.changes).await
            }
            TopicCommand::Trim(args) => trim(args).await,
            TopicCommand::Reassign(args) => reassign(args).await,
        }
    })
}

fn admin_timeout(connect: &ConnectArgs) -> Duration {
    Duration::from_millis(connect.request_timeout_ms)
}

async fn create(args: CreateArgs) -> anyhow::Result<()> {
    let client = args.connect.connect().await?;
    let mut topic = NewTopic::new(&args.name)
        .with_partitions(args.partitions.unwrap_or(-1))
        .with_replication_factor(args.replication_factor.unwrap_or(-1));
    topic.configs = args.configs;
    match client
        .create_topic(topic, args.validate_only, admin_timeout(&args.connect))
        .await
    {
        Ok(created) => {
            let mut line = format!(
                "{} topic {:?}",
                if args.validate_only {
                    "validated"
                } else {
                    "created"
                },
                created.name
            );
            if let Some(partitions) = created.partitions {
                let _ = write!(line, " with {partitions} partition(s)");
            }
            if let Some(replication_factor) = created.replication_factor {
                let _ = write!(line, ", replication factor {replication_factor}");
            }
            if let Some(topic_id) = created.topic_id {
                let _ = write!(line, " (topic id {topic_id})");
            }
            println!("{line}");
            Ok(())
        }
        Err(error)
            if args.if_not_exists && error.kafka_code() == Some(ErrorCode::TopicAlreadyExists) =>
        {
            println!("topic {:?} already exists", args.name);
            Ok(())
        }
        Err(error) => Err(error.into()),
    }
}

async fn list(args: ListArgs) -> anyhow::Result<()> {
    let client = args.connect.connect().await?;
    let metadata = client.metadata(None).await?;
    let mut table = vec![vec![
        "NAME".to_owned(),
        "PARTITIONS".to_owned(),
        "REPLICAS".to_owned(),
    ]];
    for topic in metadata.topics.values() {
        if args.exclude_internal && topic.is_internal {
            continue;
        }
        let mut name = topic.name.clone();
        if topic.is_internal {
            name.push_str(" (internal)");
        }
        table.push(vec![
            name,
            topic.partitions.len().to_string(),
            topic.replication_factor().to_string(),
        ]);
    }
    print!("{}", render_table(&table));
    Ok(())
}

async fn describe(args: DescribeArgs) -> anyhow::Result<()> {
    let client = args.connect.connect().await?;
    if args.configs {
        let resource = ConfigResource::Topic(args.name.clone());
        let configs = client.describe_configs(&resource, None).await?;
        print!("{}", render_configs(&resource, &configs, args.all_configs));
        return Ok(());
    }
    let topic = client.topic(&args.name).await?;
    let offsets = partition_offsets(&client, &topic).await;
    let configs = client
        .describe_configs(&ConfigResource::Topic(args.name.clone()), None)
        .await;
    print!(
        "{}",
        render_description(&topic, offsets.as_ref().ok(), &configs, args.all_configs)
    );
    if let Err(error) = &offsets {
        eprintln!("warning: cannot list offsets: {error}");
    }
    if let Err(error) = &configs {
        eprintln!("warning: cannot describe configs: {error}");
    }
    Ok(())
}

type Offsets = Vec<(PartitionIndex, Option<i64>, Option<i64>)>;

async fn partition_offsets(client: &Client, topic: &TopicInfo) -> Result<Offsets, ClientError> {
    let partitions: Vec<PartitionIndex> = topic.partitions.iter().map(|p| p.partition).collect();
    let spec = |spec| partitions.iter().map(|&p| (p, spec)).collect::<Vec<_>>();
    let earliest = client
        .list_offsets(&topic.name, &spec(OffsetSpec::Earliest))
        .await?;
    let latest = client
        .list_offsets(&topic.name, &spec(OffsetSpec::Latest))
        .await?;
    Ok(partitions
        .iter()
        .map(|p| {
            (
                *p,
                earliest.get(p).and_then(|l| l.offset).map(|o| o.0),
                latest.get(p).and_then(|l| l.offset).map(|o| o.0),
            )
        })
        .collect())
}

fn node_list(nodes: &[caudal_model::NodeId]) -> String {
    let ids: Vec<String> = nodes.iter().map(|node| node.to_string()).collect();
    format!("[{}]", ids.join(","))
}

fn render_description(
    topic: &TopicInfo,
    offsets: Option<&Offsets>,
    configs: &Result<Vec<caudal_client::admin::ConfigEntry>, ClientError>,
    all_configs: bool,
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Topic:              {}", topic.name);
    let _ = writeln!(
        out,
        "Topic id:           {}",
        topic
            .topic_id
            .map_or_else(|| "(not reported)".to_owned(), |id| id.to_string())
    );
    let _ = writeln!(out, "Partitions:         {}", topic.partitions.len());
    let _ = writeln!(out, "Replication factor: {}", topic.replication_factor());
    if topic.is_internal {
        let _ = writeln!(out, "Internal:           yes");
    }
    let _ = writeln!(out);
    let mut table = vec![
        [
            "PARTITION",
            "LEADER",
            "EPOCH",
            "REPLICAS",
            "ISR",
            "LOG-START-OFFSET",
            "HIGH-WATERMARK",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    for partition in &topic.partitions {
        let offsets = offsets.and_then(|offsets| {
            offsets
                .iter()
                .find(|(index, _, _)| *index == partition.partition)
        });
        let show = |value: Option<i64>| value.map_or_else(|| "-".to_owned(), |v| v.to_string());
        let mut leader = partition
            .leader
            .map_or_else(|| "none".to_owned(), |leader| leader.to_string());
        if let Some(error) = partition.error {
            let _ = write!(leader, " ({})", caudal_client::error_name(error));
        }
        table.push(vec![
            partition.partition.to_string(),
            leader,
            partition.leader_epoch.to_string(),
            node_list(&partition.replicas),
            node_list(&partition.isr),
            show(offsets.and_then(|o| o.1)),
            show(offsets.and_then(|o| o.2)),
        ]);
    }
    out.push_str(&render_table(&table));
    if let Ok(configs) = configs {
        let shown: Vec<_> = configs
            .iter()
            .filter(|entry| all_configs || entry.is_override())
            .collect();
        let _ = writeln!(out);
        if shown.is_empty() {
            let _ = writeln!(
                out,
                "Configs: no overrides (--all-configs lists every value)"
            );
        } else {
            let mut table = vec![["CONFIG", "VALUE", "SOURCE"].map(str::to_owned).to_vec()];
            for entry in shown {
                let value = if entry.is_sensitive {
                    "(sensitive)".to_owned()
                } else {
                    entry.value.clone().unwrap_or_else(|| "(null)".to_owned())
                };
                table.push(vec![
                    entry.name.clone(),
                    value,
                    entry.source.name().to_owned(),
                ]);
            }
            out.push_str(&render_table(&table));
        }
    }
    out
}

async fn delete(args: DeleteArgs) -> anyhow::Result<()> {
    let client = args.connect.connect().await?;
    match client
        .delete_topic(&args.name, admin_timeout(&args.connect))
        .await
    {
        Ok(()) => {
            println!("deleted topic {:?}", args.name);
            Ok(())
        }
        Err(error)
            if args.if_exists && error.kafka_code() == Some(ErrorCode::UnknownTopicOrPartition) =>
        {
            println!("topic {:?} does not exist", args.name);
            Ok(())
        }
        Err(error) => Err(error.into()),
    }
}

async fn add_partitions(args: AddPartitionsArgs) -> anyhow::Result<()> {
    let client = args.connect.connect().await?;
    client
        .create_partitions(
            &args.name,
            args.partitions,
            args.validate_only,
            admin_timeout(&args.connect),
        )
        .await
        .with_context(|| {
            format!(
                "cannot grow {:?} to {} partitions",
                args.name, args.partitions
            )
        })?;
    println!(
        "{} topic {:?} to {} partitions",
        if args.validate_only {
            "validated growing"
        } else {
            "grew"
        },
        args.name,
        args.partitions
    );
    Ok(())
}

/// Applies `args` to `resource` and says what happened. Like kafka-configs.sh, a `--delete` of a
/// config the resource does not set is refused before anything is sent ("Invalid config(s)").
/// A refusal by the broker comes back as its error code and message.
pub async fn alter_configs(
    client: &Client,
    resource: &ConfigResource,
    args: &ConfigChangeArgs,
) -> anyhow::Result<()> {
    let changes = args.changes();
    if !args.delete.is_empty() {
        let current = client
            .describe_configs(resource, None)
            .await
            .with_context(|| format!("cannot read the configs of {resource}"))?;
        let unset = unset_deletions(resource, &current, &changes);
        if !unset.is_empty() {
            bail!(
                "Invalid config(s): {} ({resource} does not set {})",
                unset.join(","),
                if unset.len() == 1 { "it" } else { "them" }
            );
        }
    }
    client
        .alter_config(resource, changes, args.validate_only)
        .await?;
    if args.validate_only {
        println!("validated config changes of {resource} (nothing changed)");
    } else {
        println!("updated configs of {resource}");
    }
    Ok(())
}

/// The names `changes` deletes that `resource` has no value of its own for.
fn unset_deletions(
    resource: &ConfigResource,
    current: &[ConfigEntry],
    changes: &ConfigChanges,
) -> Vec<String> {
    let source = resource.dynamic_source();
    changes
        .iter()
        .filter(|(_, op)| *op == AlterConfigOp::Delete)
        .map(|(name, _)| name)
        .filter(|name| {
            !current
                .iter()
                .any(|entry| &entry.name == *name && entry.value_at(source).is_some())
        })
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// The config table of `resource`: with `all`, every config as the broker resolves it; without,
/// only the values set on the resource itself (its dynamic source), as kafka-configs.sh
/// --describe lists them. Each row: name, value, source, read-only flag and the synonym chain
/// (`SOURCE:name=value`, most specific first).
pub fn render_configs(resource: &ConfigResource, configs: &[ConfigEntry], all: bool) -> String {
    let own = resource.dynamic_source();
    let mut rows: Vec<(String, Option<String>, &str, &ConfigEntry)> = Vec::new();
    for entry in configs {
        if all {
            rows.push((
                entry.name.clone(),
                entry.value.clone(),
                entry.source.name(),
                entry,
            ));
        } else if let Some(value) = entry.value_at(own) {
            rows.push((
                entry.name.clone(),
                value.map(str::to_owned),
                own.name(),
                entry,
            ));
        }
    }
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    if rows.is_empty() {
        return if all {
            format!("{resource} reports no configs\n")
        } else {
            format!("no configs set on {resource} (--all lists every config with its source)\n")
        };
    }
    let mut table = vec![
        ["CONFIG", "VALUE", "SOURCE", "READ-ONLY", "SYNONYMS"]
            .map(str::to_owned)
            .to_vec(),
    ];
    for (name, value, source, entry) in rows {
        let show = |value: Option<&str>| {
            if entry.is_sensitive {
                "(sensitive)".to_owned()
            } else {
                value.map_or_else(|| "(null)".to_owned(), str::to_owned)
            }
        };
        let synonyms: Vec<String> = entry
            .synonyms
            .iter()
            .map(|synonym| {
                format!(
                    "{}:{}={}",
                    synonym.source.name(),
                    synonym.name,
                    show(synonym.value.as_deref())
                )
            })
            .collect();
        table.push(vec![
            name,
            show(value.as_deref()),
            source.to_owned(),
            if entry.read_only { "yes" } else { "no" }.to_owned(),
            synonyms.join(", "),
        ]);
    }
    render_table(&table)
}

async fn trim(args: TrimArgs) -> anyhow::Result<()> {
    let client = args.connect.connect().await?;
    let topic = client.topic(&args.name).await?;
    let partitions: Vec<PartitionIndex> = if args.partitions.is_empty() {
        topic.partitions.iter().map(|p| p.partition).collect()
    } else {
        let chosen: BTreeSet<i32> = args.partitions.iter().copied().collect();
        for &partition in &chosen {
            if topic.partition(PartitionIndex(partition)).is_none() {
                bail!(
                    "topic {:?} has no partition {partition} (it has {})",
                    args.name,
                    topic.partitions.len()
                );
            }
        }
        chosen.into_iter().map(PartitionIndex).collect()
    };
    let requests: Vec<(PartitionIndex, DeleteRecordsBefore)> = partitions
        .iter()
        .map(|&partition| (partition, args.before))
        .collect();
    let results = client
        .delete_records(&args.name, &requests, admin_timeout(&args.connect))
        .await?;
    let failed = results.values().filter(|result| result.is_err()).count();
    let mut header = vec!["PARTITION".to_owned(), "LOG-START-OFFSET".to_owned()];
    if failed > 0 {
        header.push("ERROR".to_owned());
    }
    let mut table = vec![header];
    for (partition, result) in &results {
        table.push(match result {
            Ok(low_watermark) => vec![partition.to_string(), low_watermark.to_string()],
            Err(error) => vec![partition.to_string(), "-".to_owned(), error.to_string()],
        });
    }
    print!("{}", render_table(&table));
    if failed > 0 {
        bail!(
            "{failed} of {} partition(s) of {:?} not trimmed",
            results.len(),
            args.name
        );
    }
    Ok(())
}

async fn reassign(args: ReassignArgs) -> anyhow::Result<()> {
    let client = args.connect.connect().await?;
    let timeout = admin_timeout(&args.connect);
    if args.list {
        let wanted: Option<Vec<(String, PartitionIndex)>> = match &args.topic {
            None => None,
            Some(name) => {
                let topic = client.topic(name).await?;
                Some(
                    topic
                        .partitions
                        .iter()
                        .map(|p| (name.clone(), p.partition))
                        .collect(),
                )
            }
        };
        let listed = client
            .list_partition_reassignments(wanted.as_deref(), timeout)
            .await?;
        print!("{}", render_reassignments(&listed));
        return Ok(());
    }
    let Some(name) = args.topic else {
        bail!("name the topic whose partitions to reassign (or use --list)");
    };
    if args.partitions.is_empty() {
        bail!("name the partitions to reassign with --partition N");
    }
    let partitions: BTreeSet<i32> = args.partitions.iter().copied().collect();
    let target: Option<Vec<caudal_model::NodeId>> = if args.cancel {
        None
    } else {
        Some(
            args.replicas
                .iter()
                .copied()
                .map(caudal_model::NodeId)
                .collect(),
        )
    };
    let requests: Vec<_> = partitions
        .iter()
        .map(|&partition| (name.clone(), PartitionIndex(partition), target.clone()))
        .collect();
    let results = client
        .alter_partition_reassignments(&requests, timeout)
        .await?;
    let mut failed = 0;
    for (topic, partition, result) in &results {
        match (result, &target) {
            (Ok(()), Some(target)) => {
                println!("{topic}-{partition}: reassigning to {}", node_list(target));
            }
            (Ok(()), None) => println!("{topic}-{partition}: reassignment cancelled"),
            (Err(error), _) => {
                // The error names the partition.
                failed += 1;
                println!("{error}");
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} partition(s) not reassigned", results.len());
    }
    Ok(())
}

/// The reassignments in progress, as `caudal topic reassign --list` prints them.
fn render_reassignments(listed: &[caudal_client::admin::PartitionReassignment]) -> String {
    if listed.is_empty() {
        return "No partition reassignment is in progress.\n".to_owned();
    }
    let mut table = vec![
        ["TOPIC", "PARTITION", "REPLICAS", "ADDING", "REMOVING"]
            .map(str::to_owned)
            .to_vec(),
    ];
    for reassignment in listed {
        table.push(vec![
            reassignment.topic.clone(),
            reassignment.partition.to_string(),
            node_list(&reassignment.replicas),
            node_list(&reassignment.adding_replicas),
            node_list(&reassignment.removing_replicas),
        ]);
    }
    render_table(&table)
}

/// Left-aligned columns separated by two spaces.
pub fn render_table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|column| {
            rows.iter()
                .filter_map(|row| row.get(column))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (column, cell) in row.iter().enumerate() {
            if column + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}  ", width = widths[column]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use caudal_client::PartitionInfo;
    use caudal_client::admin::{ConfigEntry, ConfigSource};
    use caudal_model::{LeaderEpoch, NodeId};

    #[test]
    fn tables_align_columns() {
        let rows = vec![
            vec!["NAME".to_owned(), "PARTITIONS".to_owned()],
            vec!["orders".to_owned(), "3".to_owned()],
        ];
        assert_eq!(render_table(&rows), "NAME    PARTITIONS\norders  3\n");
    }

    #[test]
    fn describes_partitions_offsets_and_overrides() {
        let topic = TopicInfo {
            name: "orders".into(),
            topic_id: None,
            is_internal: false,
            partitions: vec![PartitionInfo {
                partition: PartitionIndex(0),
                leader: Some(NodeId(1)),
                leader_epoch: LeaderEpoch(4),
                replicas: vec![NodeId(1), NodeId(2)],
                isr: vec![NodeId(1)],
                offline_replicas: vec![],
                error: None,
            }],
            error: None,
        };
        let offsets = vec![(PartitionIndex(0), Some(5), Some(42))];
        let configs = Ok(vec![
            ConfigEntry {
                name: "retention.ms".into(),
                value: Some("1000".into()),
                source: ConfigSource::DynamicTopicConfig,
                read_only: false,
                is_sensitive: false,
                synonyms: vec![],
            },
            ConfigEntry {
                name: "segment.bytes".into(),
                value: Some("1073741824".into()),
                source: ConfigSource::DefaultConfig,
                read_only: false,
                is_sensitive: false,
                synonyms: vec![],
            },
        ]);
        let text = render_description(&topic, Some(&offsets), &configs, false);
        assert!(
            text.contains("Topic id:           (not reported)"),
            "{text}"
        );
        assert!(
            text.contains("0          1       4      [1,2]     [1]  5"),
            "{text}"
        );
        assert!(text.contains("42"));
        assert!(
            text.contains("retention.ms  1000   DYNAMIC_TOPIC_CONFIG"),
            "{text}"
        );
        assert!(!text.contains("segment.bytes"));
        let all = render_description(&topic, None, &configs, true);
        assert!(all.contains("segment.bytes"));
    }

    fn entry(name: &str, value: &str, source: ConfigSource) -> ConfigEntry {
        ConfigEntry {
            name: name.into(),
            value: Some(value.into()),
            source,
            read_only: false,
            is_sensitive: false,
            synonyms: vec![caudal_client::admin::ConfigSynonym {
                name: name.into(),
                value: Some(value.into()),
                source,
            }],
        }
    }

    #[test]
    fn parses_kafka_configs_add_config_syntax() {
        assert_eq!(
            parse_add_config("retention.ms=1000, cleanup.policy=[compact,delete],a=").unwrap(),
            [
                ("retention.ms".to_owned(), "1000".to_owned()),
                ("cleanup.policy".to_owned(), "compact,delete".to_owned()),
                ("a".to_owned(), String::new()),
            ]
        );
        assert!(parse_add_config("retention.ms").is_err());
        assert!(parse_add_config("=1").is_err());
        assert!(parse_add_config("a=1,").is_err());
    }

    #[test]
    fn parses_trim_targets() {
        assert_eq!(
            parse_before("latest").unwrap(),
            DeleteRecordsBefore::HighWatermark
        );
        assert_eq!(
            parse_before("-1").unwrap(),
            DeleteRecordsBefore::HighWatermark
        );
        assert_eq!(
            parse_before("42").unwrap(),
            DeleteRecordsBefore::Offset(Offset(42))
        );
        assert!(parse_before("-2").is_err());
        assert!(parse_before("soon").is_err());
    }

    #[test]
    fn changes_go_in_kafka_order() {
        let args = ConfigChangeArgs {
            set: vec![("retention.ms".into(), "1".into())],
            add_config: vec![vec![("segment.ms".into(), "2".into())]],
            delete: vec!["flush.ms".into()],
            append: vec![("cleanup.policy".into(), "compact".into())],
            subtract: vec![("cleanup.policy".into(), "delete".into())],
            validate_only: false,
        };
        assert_eq!(
            args.changes(),
            vec![
                ("flush.ms".to_owned(), AlterConfigOp::Delete),
                ("retention.ms".to_owned(), AlterConfigOp::Set("1".into())),
                ("segment.ms".to_owned(), AlterConfigOp::Set("2".into())),
                (
                    "cleanup.policy".to_owned(),
                    AlterConfigOp::Append("compact".into())
                ),
                (
                    "cleanup.policy".to_owned(),
                    AlterConfigOp::Subtract("delete".into())
                ),
            ]
        );
    }

    #[test]
    fn config_tables_show_the_resources_own_values_unless_all() {
        let topic = ConfigResource::Topic("orders".into());
        let configs = vec![
            entry("segment.bytes", "1073741824", ConfigSource::DefaultConfig),
            entry("retention.ms", "1000", ConfigSource::DynamicTopicConfig),
        ];
        let own = render_configs(&topic, &configs, false);
        assert_eq!(
            own,
            "CONFIG        VALUE  SOURCE                READ-ONLY  SYNONYMS\n\
             retention.ms  1000   DYNAMIC_TOPIC_CONFIG  no         DYNAMIC_TOPIC_CONFIG:retention.ms=1000\n"
        );
        let all = render_configs(&topic, &configs, true);
        assert!(all.contains("segment.bytes"), "{all}");
        // Sorted by name.
        assert!(
            all.find("retention.ms") < all.find("segment.bytes"),
            "{all}"
        );
        assert!(
            render_configs(&topic, &configs[..1], false).starts_with("no configs set on topic")
        );

        // A default shadowed by this broker's value is still the default's own value.
        let mut shadowed = entry(
            "log.retention.ms",
            "7000",
            ConfigSource::DynamicBrokerConfig,
        );
        shadowed.synonyms.push(caudal_client::admin::ConfigSynonym {
            name: "log.retention.ms".into(),
            value: Some("5000".into()),
            source: ConfigSource::DynamicDefaultBrokerConfig,
        });
        let default = render_configs(
            &ConfigResource::BrokerDefault,
            std::slice::from_ref(&shadowed),
            false,
        );
        assert!(
            default.contains("log.retention.ms  5000   DYNAMIC_DEFAULT_BROKER_CONFIG"),
            "{default}"
        );
        let changes = vec![
            ("log.retention.ms".to_owned(), AlterConfigOp::Delete),
            ("log.segment.bytes".to_owned(), AlterConfigOp::Delete),
        ];
        assert_eq!(
            unset_deletions(
                &ConfigResource::BrokerDefault,
                std::slice::from_ref(&shadowed),
                &changes
            ),
            ["log.segment.bytes"]
        );
        assert_eq!(
            unset_deletions(
                &ConfigResource::Broker(NodeId(2)),
                std::slice::from_ref(&shadowed),
                &changes
            ),
            ["log.segment.bytes"]
        );
    }

    #[test]
    fn lists_reassignments_with_adding_and_removing_replicas() {
        use caudal_client::admin::PartitionReassignment;
        use caudal_model::NodeId;
        assert_eq!(
            render_reassignments(&[]),
            "No partition reassignment is in progress.\n"
        );
        let text = render_reassignments(&[PartitionReassignment {
            topic: "orders".into(),
            partition: PartitionIndex(3),
            replicas: vec![NodeId(2), NodeId(3), NodeId(1)],
            adding_replicas: vec![NodeId(3)],
            removing_replicas: vec![NodeId(1)],
        }]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("TOPIC"), "{text}");
        let row: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(row, ["orders", "3", "[2,3,1]", "[3]", "[1]"], "{text}");
    }
}
