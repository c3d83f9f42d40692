//! `caudal server`: run a broker.

use std::path::PathBuf;
use std::process::ExitCode;

use caudal_server::{BrokerConfig, ConfigLayer};

use crate::common::{build_runtime, init_logging};
use clap::Args;

const EXAMPLES: &str = "\
Examples:
  caudal server
      One node: data in ./caudal-data, Kafka listener 127.0.0.1:9092.
  caudal server --data-dir /var/lib/caudal --listen 0.0.0.0:9092 --advertise broker1.example:9092
  caudal server --config server.properties --set log.segment.bytes=104857600
  caudal server --node-id 1 --data-dir data-1 --listen 127.0.0.1:9092 \
      --controller-listen 127.0.0.1:9093 \
      --controller-voters 1@127.0.0.1:9093,2@127.0.0.1:9193,3@127.0.0.1:9293
      One node of three (start the other two likewise, or use `caudal dev cluster`).
  CAUDAL_AUTO_CREATE_TOPICS_ENABLE=false caudal server

Configuration, lowest precedence first: Kafka's defaults, --config (TOML, or a Kafka
server.properties file), CAUDAL_* environment variables (CAUDAL_LOG_SEGMENT_BYTES sets
log.segment.bytes), then flags. Names are Kafka's broker config names. Logging: RUST_LOG
(e.g. RUST_LOG=debug); the default is info.";

/// Run a broker.
#[derive(Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct ServerArgs {
    /// Data directory (Kafka: log.dirs).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Kafka listener address (Kafka: listeners).
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<String>,
    /// Address clients are told to connect to (Kafka: advertised.listeners).
    #[arg(long, value_name = "HOST:PORT")]
    advertise: Option<String>,
    /// This node's id (Kafka: node.id).
    #[arg(long, value_name = "N")]
    node_id: Option<i32>,
    /// The controller listener of this node (Kafka: a CONTROLLER entry in listeners).
    #[arg(long, value_name = "HOST:PORT")]
    controller_listen: Option<String>,
    /// Every controller of the cluster (Kafka: controller.quorum.voters).
    #[arg(long, value_name = "ID@HOST:PORT,...")]
    controller_voters: Option<String>,
    /// broker, controller, or broker,controller (the default; Kafka: process.roles).
    #[arg(long, value_name = "ROLES")]
    roles: Option<String>,
    /// Config file: TOML (*.toml) or Kafka server.properties.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Any broker config by its Kafka name; repeatable.
    #[arg(long = "set", value_name = "NAME=VALUE")]
    sets: Vec<String>,
}

fn load_config(args: &ServerArgs) -> Result<BrokerConfig, String> {
    let mut layers = Vec::new();
    if let Some(path) = &args.config {
        layers.push(ConfigLayer::from_file(path).map_err(|error| error.to_string())?);
    }
    layers.push(ConfigLayer::from_env(std::env::vars()));
    let mut flags = Vec::new();
    for set in &args.sets {
        let (name, value) = set
            .split_once('=')
            .ok_or_else(|| format!("--set {set}: expected NAME=VALUE"))?;
        flags.push((name.trim().to_string(), value.trim().to_string()));
    }
    if let Some(dir) = &args.data_dir {
        flags.push(("log.dirs".into(), dir.display().to_string()));
    }
    if args.listen.is_some() || args.controller_listen.is_some() {
        let listen = args
            .listen
            .clone()
            .unwrap_or_else(|| "127.0.0.1:9092".into());
        let mut listeners = format!("PLAINTEXT://{listen}");
        if let Some(controller) = &args.controller_listen {
            listeners.push_str(&format!(",CONTROLLER://{controller}"));
        }
        flags.push(("listeners".into(), listeners));
    }
    if let Some(voters) = &args.controller_voters {
        flags.push(("controller.quorum.voters".into(), voters.clone()));
    }
    if let Some(roles) = &args.roles {
        flags.push(("process.roles".into(), roles.clone()));
    }
    if let Some(advertise) = &args.advertise {
        flags.push((
            "advertised.listeners".into(),
            format!("PLAINTEXT://{advertise}"),
        ));
    }
    if let Some(node_id) = args.node_id {
        flags.push(("node.id".into(), node_id.to_string()));
    }
    layers.push(ConfigLayer {
        origin: "command line".into(),
        values: flags,
    });
    BrokerConfig::from_layers(&layers).map_err(|error| error.to_string())
}

pub fn run(args: ServerArgs) -> ExitCode {
    init_logging("info");
    let config = match load_config(&args) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    let runtime = match build_runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    runtime.block_on(async move {
        if config
            .cluster
            .as_ref()
            .is_some_and(|cluster| !cluster.broker)
        {
            return run_controller_only(config).await;
        }
        let handle = match caudal_server::start(config).await {
            Ok(handle) => handle,
            Err(error) => {
                tracing::error!(%error, "broker failed to start");
                eprintln!("error: {error}");
                return ExitCode::FAILURE;
            }
        };
        wait_for_signal().await;
        tracing::info!("shutting down");
        match handle.shutdown().await {
            Ok(()) => {
                tracing::info!("shut down cleanly");
                ExitCode::SUCCESS
            }
            Err(error) => {
                tracing::error!(%error, "shutdown did not complete cleanly");
                ExitCode::FAILURE
            }
        }
    })
}

/// `process.roles=controller`: a member of the metadata quorum that serves no Kafka clients.
async fn run_controller_only(config: caudal_server::BrokerConfig) -> ExitCode {
    let quorum = match caudal_server::broker::start_quorum(&config).await {
        Ok(quorum) => quorum,
        Err(error) => {
            tracing::error!(%error, "controller failed to start");
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(node_id = %config.node_id, "controller running (no broker role)");
    wait_for_signal().await;
    tracing::info!("shutting down");
    quorum.shutdown().await;
    ExitCode::SUCCESS
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(stream) => stream,
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the broker");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
