//! What the client subcommands share: connection flags, the runtime, and one-line error reporting.

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use caudal_client::{Client, ClientConfig, ConnectionConfig};
use clap::Args;

/// How to reach the cluster.
#[derive(Args, Debug, Clone)]
pub struct ConnectArgs {
    /// Broker(s) to bootstrap from, tried in turn.
    #[arg(
        short = 'b',
        long = "bootstrap-server",
        value_name = "HOST:PORT[,...]",
        default_value = "127.0.0.1:9092",
        env = "CAUDAL_BOOTSTRAP_SERVER"
    )]
    pub bootstrap_server: String,
    /// How long to wait for each response (Kafka: request.timeout.ms).
    #[arg(long, value_name = "MS", default_value_t = 30_000)]
    pub request_timeout_ms: u64,
    /// Client id sent with every request (Kafka: client.id).
    #[arg(long, value_name = "ID", default_value = "caudal-cli")]
    pub client_id: String,
}

impl ConnectArgs {
    pub fn client_config(&self) -> ClientConfig {
        ClientConfig {
            connection: ConnectionConfig {
                client_id: self.client_id.clone(),
                request_timeout: Duration::from_millis(self.request_timeout_ms.max(1)),
                ..ConnectionConfig::default()
            },
            ..ClientConfig::default()
        }
    }

    pub async fn connect(&self) -> anyhow::Result<Client> {
        self.connect_with(self.client_config()).await
    }

    pub async fn connect_with(&self, config: ClientConfig) -> anyhow::Result<Client> {
        Ok(Client::connect(std::slice::from_ref(&self.bootstrap_server), config).await?)
    }
}

/// Runs a client subcommand on a fresh runtime. An error is printed as one line on stderr,
/// `error: ...` (with the Kafka error name when the broker sent one), and the exit code is 1.
pub fn run<F>(command: F) -> ExitCode
where
    F: Future<Output = anyhow::Result<()>>,
{
    init_logging("warn");
    let runtime = match build_runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let result = runtime.block_on(command);
    // Don't wait for connection tasks still parked on sockets.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", one_line(&format!("{error:#}")));
            ExitCode::FAILURE
        }
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A multi-threaded runtime; a failure to build one is reported as one line.
pub fn build_runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| {
            eprintln!("error: cannot start the runtime: {error}");
            ExitCode::FAILURE
        })
}

/// Logs to stderr at `default_level` unless `RUST_LOG` says otherwise.
pub fn init_logging(default_level: &str) {
    // Raft's own progress (votes, replication rounds) is logged at info by openraft: too much
    // for an operator's log; it stays available with RUST_LOG=openraft=info.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("{default_level},openraft=warn"))
    });
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Parses `NAME=VALUE`.
pub fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("expected NAME=VALUE, got {text:?}")),
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_print_on_one_line() {
        assert_eq!(one_line("a\n  b\tc"), "a b c");
        assert_eq!(
            parse_key_value("retention.ms=1000").unwrap(),
            ("retention.ms".to_owned(), "1000".to_owned())
        );
        assert_eq!(parse_key_value("a=").unwrap().1, "");
        assert!(parse_key_value("=1").is_err());
        assert!(parse_key_value("novalue").is_err());
    }
}
