//! `caudal`: the one binary. `caudal server` runs a broker; the other subcommands are Kafka tools
//! (topic admin and topic configs, broker configs, consumer-group admin, console producer and
//! consumer, benchmarks) built on `caudal-client`.

mod alloc_guard;
mod bench;
mod broker;
mod cluster;
mod common;
mod consume;
mod dev;
mod group;
mod produce;
mod server;
mod topic;

use clap::{Parser, Subcommand};

#[global_allocator]
static ALLOCATOR: alloc_guard::GuardedAllocator = alloc_guard::GuardedAllocator;

/// Caudal: an event streaming platform that speaks the Apache Kafka protocol.
#[derive(Parser, Debug)]
#[command(name = "caudal", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a broker (single node by default: data in ./caudal-data, Kafka listener 127.0.0.1:9092).
    Server(server::ServerArgs),
    /// Topic admin: create, list, describe, delete, add partitions, alter configs, trim.
    Topic(topic::TopicArgs),
    /// Broker configs: describe, and change them while running (one broker or every broker).
    Broker(broker::BrokerArgs),
    /// Consumer groups: list, describe (members, offsets, lag), delete, seek (reset offsets).
    Group(group::GroupArgs),
    /// The cluster: brokers, the active controller, under-replicated and offline partitions.
    Cluster(cluster::ClusterArgs),
    /// Produce records from stdin, one per line (console producer).
    Produce(produce::ProduceArgs),
    /// Print records of a topic (console consumer).
    Consume(consume::ConsumeArgs),
    /// Load generators: produce / consume throughput, latency percentiles, broker CPU.
    Bench(bench::BenchArgs),
    /// Development helpers: `caudal dev cluster --nodes 3` runs a local cluster.
    Dev(dev::DevArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Server(args) => server::run(args),
        Command::Topic(args) => topic::main(args),
        Command::Broker(args) => broker::main(args),
        Command::Group(args) => group::main(args),
        Command::Cluster(args) => cluster::run_cluster(args),
        Command::Produce(args) => produce::main(args),
        Command::Consume(args) => consume::main(args),
        Command::Bench(args) => bench::main(args),
        Command::Dev(args) => dev::main(args),
    }
}
