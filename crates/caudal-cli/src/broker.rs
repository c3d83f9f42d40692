//! `caudal broker`: describe and change broker configs while the cluster runs — one broker's own
//! values or the default of every broker — as `kafka-configs.sh --entity-type brokers` does.

use std::process::ExitCode;

use caudal_client::admin::ConfigResource;
use caudal_model::NodeId;
use clap::{ArgGroup, Args, Subcommand};

use crate::common::{ConnectArgs, run};
use crate::topic::{ConfigChangeArgs, alter_configs, render_configs};

const EXAMPLES: &str = "\
Examples:
  caudal broker describe-config
  caudal broker describe-config --broker 1 --all
  caudal broker alter-config --default --set log.retention.ms=86400000
  caudal broker alter-config --broker 1 --delete log.retention.ms";

/// Broker configs: describe them, change them on one broker or on every broker.
#[derive(Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct BrokerArgs {
    #[command(subcommand)]
    command: BrokerCommand,
}

#[derive(Subcommand, Debug)]
enum BrokerCommand {
    /// Show broker configs with their sources, read-only flags and synonym chains.
    #[command(after_help = "\
Examples:
  caudal broker describe-config
  caudal broker describe-config --broker 1
  caudal broker describe-config --broker 1 --all
  caudal broker describe-config --default

Without --all only the values set while running are listed: a broker's own
(DYNAMIC_BROKER_CONFIG) or the default of every broker (DYNAMIC_DEFAULT_BROKER_CONFIG).
With neither --broker nor --default every broker is described, then the default.")]
    DescribeConfig(DescribeConfigArgs),
    /// Change broker configs while the cluster runs (IncrementalAlterConfigs).
    #[command(after_help = "\
Examples:
  caudal broker alter-config --default --set log.retention.ms=86400000
  caudal broker alter-config --broker 1 --set log.segment.bytes=104857600
  caudal broker alter-config --default --delete log.retention.ms
  caudal broker alter-config --broker 1 --set log.retention.ms=1000 --validate-only

A value set for one broker wins over the default of every broker, which wins over the
broker's startup settings. Settings that need a restart (node.id, log.dirs, listeners,
num.partitions, ...) are refused: \"Cannot update these configs dynamically\".")]
    AlterConfig(AlterConfigArgs),
}

/// Which broker configs: one broker's, or the default of every broker.
#[derive(Args, Debug)]
struct Target {
    /// One broker, by node id.
    #[arg(long, value_name = "ID")]
    broker: Option<i32>,
    /// The default of every broker (Kafka: --entity-default, --broker-defaults).
    #[arg(long, visible_alias = "broker-defaults", conflicts_with = "broker")]
    default: bool,
}

impl Target {
    fn resource(&self) -> Option<ConfigResource> {
        match (self.broker, self.default) {
            (Some(node_id), _) => Some(ConfigResource::Broker(NodeId(node_id))),
            (None, true) => Some(ConfigResource::BrokerDefault),
            (None, false) => None,
        }
    }
}

#[derive(Args, Debug)]
struct DescribeConfigArgs {
    #[command(flatten)]
    target: Target,
    /// List every config with its source, not only the values set while running.
    #[arg(long)]
    all: bool,
    #[command(flatten)]
    connect: ConnectArgs,
}

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("resource").required(true).args(["broker", "default"])))]
struct AlterConfigArgs {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    changes: ConfigChangeArgs,
    #[command(flatten)]
    connect: ConnectArgs,
}

pub fn main(args: BrokerArgs) -> ExitCode {
    run(async move {
        match args.command {
            BrokerCommand::DescribeConfig(args) => describe_config(args).await,
            BrokerCommand::AlterConfig(args) => {
                let client = args.connect.connect().await?;
                let Some(resource) = args.target.resource() else {
                    anyhow::bail!("name a broker with --broker ID, or --default");
                };
                alter_configs(&client, &resource, &args.changes).await
            }
        }
    })
}

async fn describe_config(args: DescribeConfigArgs) -> anyhow::Result<()> {
    let client = args.connect.connect().await?;
    let resources = match args.target.resource() {
        Some(resource) => vec![resource],
        None => {
            let metadata = client.metadata(Some(&[])).await?;
            metadata
                .brokers
                .keys()
                .map(|&node_id| ConfigResource::Broker(node_id))
                .chain([ConfigResource::BrokerDefault])
                .collect()
        }
    };
    let headings = resources.len() > 1;
    for (index, resource) in resources.iter().enumerate() {
        let configs = client.describe_configs(resource, None).await?;
        if headings {
            if index > 0 {
                println!();
            }
            println!("Configs of {resource}:");
        }
        print!("{}", render_configs(resource, &configs, args.all));
    }
    Ok(())
}
