//! Flags every server shares, and the start-up steps that go with them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use sockets::server::{self, DEFAULT_MAX_CONNECTIONS, ServerConfig, Service};
use sockets::transport::listen::DEFAULT_BACKLOG;
use sockets::transport::unix::UnixSocketListener;
use sockets::transport::{self, DEFAULT_HOST, DEFAULT_PORT};

use super::{parse_seconds, print_line};

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Address to listen on: an IP address or name; "" for every IPv4
    /// interface, "::" for every interface (IPv4 too, where the OS allows).
    #[arg(default_value = DEFAULT_HOST)]
    pub host: String,
    /// Port to listen on; 0 picks a free one (printed on stdout).
    #[arg(default_value_t = DEFAULT_PORT)]
    pub port: u16,
    /// Listen on this Unix socket path instead of HOST PORT. A stale socket
    /// file is replaced; the file is removed on shutdown.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["host", "port"])]
    pub unix: Option<PathBuf>,
    /// Most connections served at once; further clients wait in the listen backlog.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// Close a connection that makes no progress for this long (0 = never).
    #[arg(long, value_name = "SECONDS", default_value = "60", value_parser = parse_seconds)]
    pub idle_timeout: Duration,
    /// On Ctrl-C/SIGTERM, wait this long for open connections to finish.
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = parse_seconds)]
    pub shutdown_timeout: Duration,
    /// Listen backlog: connections the kernel queues before we accept them.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_BACKLOG)]
    pub backlog: u32,
    /// Worker threads (default: one per CPU core).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
}

/// A bound stream listener of either kind.
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixSocketListener),
}

impl ServerArgs {
    /// The limits for [`server::run`].
    pub fn config(&self) -> ServerConfig {
        let idle_timeout = if self.idle_timeout.is_zero() {
            Duration::MAX
        } else {
            self.idle_timeout
        };
        ServerConfig {
            max_connections: self.max_connections,
            idle_timeout,
            shutdown_timeout: self.shutdown_timeout,
        }
    }

    /// Binds the stream listener, announces it, and arranges for
    /// Ctrl-C/SIGTERM to cancel the returned token.
    pub async fn listen(&self) -> Result<(Listener, CancellationToken)> {
        raise_open_file_limit();
        let listener = match &self.unix {
            Some(path) => Listener::Unix(UnixSocketListener::bind(path)?),
            None => Listener::Tcp(transport::bind_tcp(&self.host, self.port, self.backlog).await?),
        };
        let shown = match &listener {
            Listener::Tcp(tcp) => {
                transport::canonical(tcp.local_addr().context("reading the bound address")?).to_string()
            }
            Listener::Unix(unix) => format!("unix:{}", unix.path().display()),
        };
        Ok((listener, announce(&shown)?))
    }

    /// Serves `service` on `listener` until shutdown completes.
    pub async fn serve<S: Service>(&self, listener: Listener, service: S, shutdown: CancellationToken) {
        let service = Arc::new(service);
        match listener {
            Listener::Tcp(tcp) => server::run(tcp, self.config(), service, shutdown).await,
            Listener::Unix(unix) => server::run(unix, self.config(), service, shutdown).await,
        }
        info!("Server stopped");
    }
}

/// Logs and prints (as stdout's first line) where the server listens, and
/// installs the signal handler whose token stops it.
pub fn announce(shown: &str) -> Result<CancellationToken> {
    info!("Listening on {shown}");
    print_line(shown)?;
    let shutdown = CancellationToken::new();
    server::cancel_on_signal(shutdown.clone());
    Ok(shutdown)
}

fn raise_open_file_limit() {
    match transport::raise_open_file_limit() {
        Ok(limit) => debug!("open file limit: {limit}"),
        Err(error) => warn!("could not raise the open file limit: {error}"),
    }
}
