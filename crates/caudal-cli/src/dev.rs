//! `caudal dev cluster`: a local multi-node cluster for development — N `caudal server`
//! processes on 127.0.0.1, each a broker and a controller of one quorum, with their data and logs
//! under one directory. Ctrl-C (or SIGTERM) stops them all cleanly.

use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use clap::{Args, Subcommand};
use tokio::process::{Child, Command};

use crate::common::build_runtime;

/// Development helpers.
#[derive(Args, Debug)]
pub struct DevArgs {
    #[command(subcommand)]
    command: DevCommand,
}

#[derive(Subcommand, Debug)]
enum DevCommand {
    /// Run a local cluster: node N listens for clients on BASE_PORT+N-1 and for the quorum on
    /// BASE_PORT+100+N-1; data in DIR/node-N, output in DIR/node-N.log.
    Cluster(ClusterArgs),
}

#[derive(Args, Debug)]
struct ClusterArgs {
    /// How many nodes (each a broker and a controller).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=9))]
    nodes: u16,
    /// Where the nodes keep their data and logs.
    #[arg(long, value_name = "DIR", default_value = "./caudal-dev")]
    data_dir: PathBuf,
    /// The first node's client port.
    #[arg(long, value_name = "PORT", default_value_t = 9092)]
    base_port: u16,
    /// A broker config for every node, by its Kafka name; repeatable.
    #[arg(long = "set", value_name = "NAME=VALUE")]
    sets: Vec<String>,
}

pub fn main(args: DevArgs) -> ExitCode {
    match args.command {
        DevCommand::Cluster(args) => cluster(args),
    }
}

/// One node's addresses.
struct Node {
    id: u16,
    client_port: u16,
    controller_port: u16,
}

fn cluster(args: ClusterArgs) -> ExitCode {
    if args.base_port.checked_add(100 + args.nodes).is_none() {
        eprintln!(
            "error: --base-port {} leaves no room for the ports",
            args.base_port
        );
        return ExitCode::from(2);
    }
    let nodes: Vec<Node> = (1..=args.nodes)
        .map(|id| Node {
            id,
            client_port: args.base_port + id - 1,
            controller_port: args.base_port + 100 + id - 1,
        })
        .collect();
    let voters = nodes
        .iter()
        .map(|node| format!("{}@127.0.0.1:{}", node.id, node.controller_port))
        .collect::<Vec<_>>()
        .join(",");
    let executable = match std::env::current_exe() {
        Ok(path) => path,
        Err(error) => {
            eprintln!("error: cannot find the caudal executable: {error}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(error) = std::fs::create_dir_all(&args.data_dir) {
        eprintln!("error: {}: {error}", args.data_dir.display());
        return ExitCode::FAILURE;
    }
    let runtime = match build_runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    runtime.block_on(async move {
        let mut children: Vec<(u16, Child)> = Vec::new();
        for node in &nodes {
            let log_path = args.data_dir.join(format!("node-{}.log", node.id));
            let log = match std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
            {
                Ok(file) => file,
                Err(error) => {
                    eprintln!("error: {}: {error}", log_path.display());
                    stop_all(&mut children).await;
                    return ExitCode::FAILURE;
                }
            };
            let stderr = match log.try_clone() {
                Ok(file) => file,
                Err(error) => {
                    eprintln!("error: {}: {error}", log_path.display());
                    stop_all(&mut children).await;
                    return ExitCode::FAILURE;
                }
            };
            let mut command = Command::new(&executable);
            command
                .arg("server")
                .arg("--node-id")
                .arg(node.id.to_string())
                .arg("--data-dir")
                .arg(args.data_dir.join(format!("node-{}", node.id)))
                .arg("--listen")
                .arg(format!("127.0.0.1:{}", node.client_port))
                .arg("--controller-listen")
                .arg(format!("127.0.0.1:{}", node.controller_port))
                .arg("--controller-voters")
                .arg(&voters);
            for set in &args.sets {
                command.arg("--set").arg(set);
            }
            command
                .env("NO_COLOR", "1")
                .stdin(Stdio::null())
                .stdout(Stdio::from(log))
                .stderr(Stdio::from(stderr))
                .kill_on_drop(true);
            match command.spawn() {
                Ok(child) => children.push((node.id, child)),
                Err(error) => {
                    eprintln!("error: starting node {}: {error}", node.id);
                    stop_all(&mut children).await;
                    return ExitCode::FAILURE;
                }
            }
            println!(
                "node {}: clients 127.0.0.1:{}, controller 127.0.0.1:{}, data {}, log {}",
                node.id,
                node.client_port,
                node.controller_port,
                args.data_dir.join(format!("node-{}", node.id)).display(),
                log_path.display()
            );
        }
        let bootstrap = nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.client_port))
            .collect::<Vec<_>>()
            .join(",");
        println!("bootstrap servers: {bootstrap}");
        println!("Ctrl-C stops the cluster.");
        wait_for_stop(&mut children).await;
        println!("stopping the cluster");
        stop_all(&mut children).await;
        ExitCode::SUCCESS
    })
}

/// Waits for Ctrl-C or SIGTERM; reports nodes that exit on their own meanwhile.
async fn wait_for_stop(children: &mut [(u16, Child)]) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).ok();
    let mut reported = vec![false; children.len()];
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return,
            _ = async {
                match terminate.as_mut() {
                    Some(stream) => { stream.recv().await; }
                    None => std::future::pending::<()>().await,
                }
            } => return,
            _ = tick.tick() => {
                for (index, (id, child)) in children.iter_mut().enumerate() {
                    if !reported[index]
                        && let Ok(Some(status)) = child.try_wait()
                    {
                        eprintln!("node {id} exited ({status}); see its log");
                        reported[index] = true;
                    }
                }
            }
        }
    }
}

/// SIGTERM to every node (a clean shutdown), then SIGKILL to any still running after 30 s.
async fn stop_all(children: &mut [(u16, Child)]) {
    for (_, child) in children.iter() {
        if let Some(pid) = child
            .id()
            .and_then(|pid| rustix::process::Pid::from_raw(pid as i32))
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
    }
    for (id, child) in children.iter_mut() {
        match tokio::time::timeout(Duration::from_secs(30), child.wait()).await {
            Ok(_) => {}
            Err(_) => {
                eprintln!("node {id} did not stop within 30 s; killing it");
                let _ = child.kill().await;
            }
        }
    }
}
