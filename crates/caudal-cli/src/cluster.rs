//! `caudal cluster info`: the brokers, the active controller, and the partitions that are
//! under-replicated (fewer in-sync replicas than replicas) or offline (no leader), from one
//! Metadata request for every topic.

use std::process::ExitCode;

use caudal_client::cluster::ClusterMetadata;
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
}

#[derive(Args, Debug)]
struct InfoArgs {
    #[command(flatten)]
    connect: ConnectArgs,
}

pub fn run_cluster(args: ClusterArgs) -> ExitCode {
    match args.command {
        ClusterCommand::Info(args) => run(info(args)),
    }
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
}
