//! `caudal cluster info`: the brokers, the active controller, and the partitions that are
//! under-replicated (fewer in-sync replicas than replicas) or offline (no leader), from one
//! Metadata request for every topic.
//!
//! `caudal cluster rebalance-leaders`: a preferred (or unclean) leader election
//! (`kafka-leader-election.sh`), with what happened to each partition.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use caudal_client::admin::{ElectionType, PartitionOutcome};
use caudal_client::cluster::ClusterMetadata;
use caudal_protocol::ErrorCode;
use clap::{Args, Subcommand};

use crate::common::{ConnectArgs, run};
use crate::topic::render_table;

/// The cluster: brokers, controller, partition health.
#[derive(Args, Debug)]
pub struct ClusterArgs {
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(Subcommand, Debug)]
enum ClusterCommand {
    /// Show the cluster id, the brokers, the active controller and unhealthy partitions.
    Info(InfoArgs),
    /// Move each partition's leadership back to its preferred (first) replica.
    #[command(after_help = "\
Examples:
  caudal cluster rebalance-leaders
  caudal cluster rebalance-leaders --topic orders
  caudal cluster rebalance-leaders --topic orders --unclean

After a broker restarts, the partitions it led are led by other replicas; a preferred leader
election hands each back to its first replica when that replica is in the ISR. Each partition
is reported as `elected`, `not needed` (it already has its preferred leader) or with the
error that stopped it (PREFERRED_LEADER_NOT_AVAILABLE: the first replica is not in the ISR or
its broker is down). --unclean instead elects a leader for partitions that have none, from
outside the ISR if no in-sync replica is alive: records the new leader lacks are lost.")]
    RebalanceLeaders(RebalanceLeadersArgs),
}

#[derive(Args, Debug)]
struct RebalanceLeadersArgs {
    /// Only the partitions of this topic (default: every topic).
    #[arg(long, value_name = "TOPIC")]
    topic: Option<String>,
    /// Unclean election: elect leaders for leaderless partitions, from outside the ISR if
    /// need be (data loss).
    #[arg(long)]
    unclean: bool,
    #[command(flatten)]
    connect: ConnectArgs,
}

#[derive(Args, Debug)]
struct InfoArgs {
    #[command(flatten)]
    connect: ConnectArgs,
}

pub fn run_cluster(args: ClusterArgs) -> ExitCode {
    match args.command {
        ClusterCommand::Info(args) => run(info(args)),
        ClusterCommand::RebalanceLeaders(args) => run(rebalance_leaders(args)),
    }
}

async fn rebalance_leaders(args: RebalanceLeadersArgs) -> anyhow::Result<()> {
    let client = args.connect.connect().await?;
    // Every partition is named, so that each gets a result (with a null list the broker
    // leaves out the ones that needed no election, as Kafka does).
    let partitions: Vec<(String, caudal_model::PartitionIndex)> = match &args.topic {
        Some(name) => {
            let topic = client.topic(name).await?;
            topic
                .partitions
                .iter()
                .map(|p| (name.clone(), p.partition))
                .collect()
        }
        None => client
            .metadata(None)
            .await?
            .topics
            .values()
            .flat_map(|topic| {
                topic
                    .partitions
                    .iter()
                    .map(|p| (topic.name.clone(), p.partition))
            })
            .collect(),
    };
    if partitions.is_empty() {
        println!("No partitions.");
        return Ok(());
    }
    let election_type = if args.unclean {
        ElectionType::Unclean
    } else {
        ElectionType::Preferred
    };
    let outcomes = client
        .elect_leaders(
            election_type,
            Some(&partitions),
            Duration::from_millis(args.connect.request_timeout_ms),
        )
        .await?;
    let (text, failed) = render_elections(&outcomes);
    print!("{text}");
    if failed > 0 {
        bail!("{failed} of {} partition(s) failed", outcomes.len());
    }
    Ok(())
}

/// The per-partition report of a leader election, and how many partitions failed.
fn render_elections(outcomes: &[PartitionOutcome]) -> (String, usize) {
    let mut rows = vec![vec![
        "TOPIC".to_string(),
        "PARTITION".to_string(),
        "RESULT".to_string(),
    ]];
    let (mut elected, mut not_needed, mut failed) = (0, 0, 0);
    for (topic, partition, outcome) in outcomes {
        let result = match outcome {
            Ok(()) => {
                elected += 1;
                "elected".to_string()
            }
            Err(error) if error.code == ErrorCode::ElectionNotNeeded => {
                not_needed += 1;
                "not needed".to_string()
            }
            Err(error) => {
                failed += 1;
                let mut text = caudal_client::error_name(error.code);
                if let Some(message) = &error.message {
                    text.push_str(": ");
                    text.push_str(message);
                }
                text
            }
        };
        rows.push(vec![topic.clone(), partition.to_string(), result]);
    }
    let mut out = render_table(&rows);
    out.push_str(&format!(
        "\n{elected} elected, {not_needed} not needed, {failed} failed.\n"
    ));
    (out, failed)
}

async fn info(args: InfoArgs) -> anyhow::Result<()> {
    let client = args.connect.connect().await?;
    let metadata = client.metadata(None).await?;
    print!("{}", render_info(&metadata));
    Ok(())
}

/// The report `caudal cluster info` prints.
fn render_info(metadata: &ClusterMetadata) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "Cluster id:  {}\n",
        metadata.cluster_id.as_deref().unwrap_or("-")
    ));
    out.push_str(&format!(
        "Controller:  {}\n",
        metadata
            .controller_id
            .map_or_else(|| "-".to_string(), |id| id.0.to_string())
    ));
    out.push_str(&format!("Brokers:     {}\n\n", metadata.brokers.len()));
    let mut rows = vec![vec![
        "BROKER".to_string(),
        "ADDRESS".to_string(),
        "RACK".to_string(),
        "LEADS".to_string(),
        "REPLICAS".to_string(),
    ]];
    for broker in metadata.brokers.values() {
        let partitions = metadata.topics.values().flat_map(|t| &t.partitions);
        let leads = partitions
            .clone()
            .filter(|p| p.leader == Some(broker.node_id))
            .count();
        let replicas = partitions
            .filter(|p| p.replicas.contains(&broker.node_id))
            .count();
        rows.push(vec![
            broker.node_id.0.to_string(),
            broker.address(),
            broker.rack.clone().unwrap_or_else(|| "-".to_string()),
            leads.to_string(),
            replicas.to_string(),
        ]);
    }
    out.push_str(&render_table(&rows));
    let mut unhealthy = vec![vec![
        "TOPIC".to_string(),
        "PARTITION".to_string(),
        "LEADER".to_string(),
        "REPLICAS".to_string(),
        "ISR".to_string(),
        "STATE".to_string(),
    ]];
    let ids = |nodes: &[caudal_model::NodeId]| {
        nodes
            .iter()
            .map(|node| node.0.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    for topic in metadata.topics.values() {
        for partition in &topic.partitions {
            let state = if partition.leader.is_none() {
                "offline"
            } else if partition.isr.len() < partition.replicas.len() {
                "under-replicated"
            } else {
                continue;
            };
            unhealthy.push(vec![
                topic.name.clone(),
                partition.partition.0.to_string(),
                partition
                    .leader
                    .map_or_else(|| "-".to_string(), |id| id.0.to_string()),
                ids(&partition.replicas),
                ids(&partition.isr),
                state.to_string(),
            ]);
        }
    }
    let partitions: usize = metadata.topics.values().map(|t| t.partitions.len()).sum();
    if unhealthy.len() == 1 {
        out.push_str(&format!(
            "\nAll {partitions} partition(s) of {} topic(s) are fully replicated and online.\n",
            metadata.topics.len()
        ));
    } else {
        out.push_str(&format!(
            "\n{} of {partitions} partition(s) need attention:\n",
            unhealthy.len() - 1
        ));
        out.push_str(&render_table(&unhealthy));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use caudal_client::cluster::{BrokerInfo, PartitionInfo, TopicInfo};
    use caudal_model::{LeaderEpoch, NodeId, PartitionIndex};

    use super::*;

    fn partition(index: i32, leader: Option<i32>, replicas: &[i32], isr: &[i32]) -> PartitionInfo {
        PartitionInfo {
            partition: PartitionIndex(index),
            leader: leader.map(NodeId),
            leader_epoch: LeaderEpoch(0),
            replicas: replicas.iter().copied().map(NodeId).collect(),
            isr: isr.iter().copied().map(NodeId).collect(),
            offline_replicas: Vec::new(),
            error: None,
        }
    }

    #[test]
    fn lists_brokers_and_only_unhealthy_partitions() {
        let brokers: BTreeMap<NodeId, BrokerInfo> = [1, 2]
            .into_iter()
            .map(|id| {
                (
                    NodeId(id),
                    BrokerInfo {
                        node_id: NodeId(id),
                        host: "127.0.0.1".into(),
                        port: 9090 + id,
                        rack: None,
                    },
                )
            })
            .collect();
        let topic = TopicInfo {
            name: "orders".into(),
            topic_id: None,
            is_internal: false,
            partitions: vec![
                partition(0, Some(1), &[1, 2], &[1, 2]),
                partition(1, Some(2), &[2, 1], &[2]),
                partition(2, None, &[1, 2], &[]),
            ],
            error: None,
        };
        let metadata = ClusterMetadata {
            cluster_id: Some("abc".into()),
            controller_id: Some(NodeId(1)),
            brokers,
            topics: [("orders".to_string(), topic)].into_iter().collect(),
        };
        let text = render_info(&metadata);
        assert!(text.contains("Cluster id:  abc"), "{text}");
        assert!(text.contains("Controller:  1"), "{text}");
        assert!(text.contains("127.0.0.1:9091"), "{text}");
        assert!(
            text.contains("2 of 3 partition(s) need attention"),
            "{text}"
        );
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("orders") && l.contains("under-replicated")),
            "{text}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("orders") && l.contains("offline")),
            "{text}"
        );
        assert!(!lines.iter().any(|l| l.starts_with("orders  0")), "{text}");
    }

    #[test]
    fn reports_each_partitions_election() {
        use caudal_client::KafkaError;
        let outcomes = vec![
            ("orders".to_string(), PartitionIndex(0), Ok(())),
            (
                "orders".to_string(),
                PartitionIndex(1),
                Err(KafkaError::new(ErrorCode::ElectionNotNeeded, "orders-1")),
            ),
            (
                "orders".to_string(),
                PartitionIndex(2),
                Err(KafkaError::new(
                    ErrorCode::PreferredLeaderNotAvailable,
                    "orders-2",
                )),
            ),
        ];
        let (text, failed) = render_elections(&outcomes);
        assert_eq!(failed, 1);
        let rows: Vec<Vec<&str>> = text
            .lines()
            .skip(1)
            .take(3)
            .map(|l| {
                l.split("  ")
                    .filter(|c| !c.is_empty())
                    .map(str::trim)
                    .collect()
            })
            .collect();
        assert_eq!(rows[0], ["orders", "0", "elected"], "{text}");
        assert_eq!(rows[1], ["orders", "1", "not needed"], "{text}");
        assert_eq!(
            rows[2],
            ["orders", "2", "PREFERRED_LEADER_NOT_AVAILABLE"],
            "{text}"
        );
        assert!(
            text.contains("1 elected, 1 not needed, 1 failed."),
            "{text}"
        );
    }
}
