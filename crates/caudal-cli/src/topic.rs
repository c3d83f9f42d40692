//! `caudal topic`: create, list, describe, delete topics and add partitions.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use caudal_client::admin::{ConfigResource, NewTopic};
use caudal_client::{Client, ClientError, OffsetSpec, TopicInfo};
use caudal_model::PartitionIndex;
use caudal_protocol::ErrorCode;
use clap::{Args, Subcommand};

use crate::common::{ConnectArgs, parse_key_value, run};

const EXAMPLES: &str = "\
Examples:
  caudal topic create orders --partitions 6 --config retention.ms=86400000
  caudal topic list
  caudal topic describe orders
  caudal topic add-partitions orders --partitions 12
  caudal topic delete orders
  caudal topic list -b broker1:9092,broker2:9092";

/// Topic admin: create, list, describe, delete, add partitions.
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
  caudal topic describe orders --all-configs")]
    Describe(DescribeArgs),
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
    /// List every config with its source, not only the topic's overrides.
    #[arg(long)]
    all_configs: bool,
    #[command(flatten)]
    connect: ConnectArgs,
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

pub fn main(args: TopicArgs) -> ExitCode {
    run(async move {
        match args.command {
            TopicCommand::Create(args) => create(args).await,
            TopicCommand::List(args) => list(args).await,
            TopicCommand::Describe(args) => describe(args).await,
            TopicCommand::Delete(args) => delete(args).await,
            TopicCommand::AddPartitions(args) => add_partitions(args).await,
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
}
