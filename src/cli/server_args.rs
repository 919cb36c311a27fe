//! Flags every server shares, and the start-up steps that go with them.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use sockets::server::budget::{DEFAULT_MAX_BUFFERED_BYTES, InputBudget};
use sockets::server::stage::{DEFAULT_HANDSHAKE_TIMEOUT, Stage};
use sockets::server::{
    self, ConnectionHandler, ConnectionLimits, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_SHUTDOWN_TIMEOUT,
    MAX_MAX_CONNECTIONS, ServerConfig,
};
use sockets::transport::listen::DEFAULT_BACKLOG;
use sockets::transport::tls::ServerTls;
use sockets::transport::unix::SocketFileOptions;
use sockets::transport::{self, DEFAULT_HOST, DEFAULT_PORT, ListenAddr, Listener};

use super::args::{Limit, TlsVersion, parse_limit, parse_mode, parse_port, whole};
use super::print_line;
use super::signals::cancel_on_signal;

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Address to listen on: an IP address or name; "" for every IPv4
    /// interface, "::" for every interface (IPv4 too, where the OS allows).
    #[arg(value_name = "HOST", default_value = DEFAULT_HOST)]
    pub host: String,
    /// Port to listen on; 0 picks a free one (printed on stdout).
    #[arg(value_name = "PORT", default_value_t = DEFAULT_PORT, value_parser = parse_port)]
    pub port: u16,
    /// Listen on this Unix socket path instead of HOST PORT. A stale socket
    /// file is replaced, a live one refused; the file is removed on shutdown
    /// if it is still ours.
    #[arg(short = 'U', long, value_name = "PATH", conflicts_with_all = ["host", "port"])]
    pub unix: Option<PathBuf>,
    /// With --unix: the socket file's permissions, in octal (e.g. 660), set
    /// before any client can connect.
    #[arg(long, value_name = "OCTAL", requires = "unix", conflicts_with_all = ["host", "port"], value_parser = parse_mode)]
    pub unix_mode: Option<u32>,
    /// Most connections served at once (1 to 10000000); further clients wait
    /// in the listen backlog.
    #[arg(
        long,
        value_name = "N",
        default_value_t = DEFAULT_MAX_CONNECTIONS as u64,
        value_parser = whole(1, MAX_MAX_CONNECTIONS as u64)
    )]
    pub max_connections: u64,
    /// Close a connection that sends nothing for this long (between
    /// requests, on app-server), or takes none of our output for this long
    /// (0 = never).
    #[arg(long, value_name = "SECONDS", default_value_t = Limit::of(DEFAULT_IDLE_TIMEOUT), value_parser = parse_limit, allow_negative_numbers = true)]
    pub idle_timeout: Limit,
    /// On Ctrl-C/SIGTERM, how long open connections get to finish (0 = as long as they need).
    #[arg(long, value_name = "SECONDS", default_value_t = Limit::of(DEFAULT_SHUTDOWN_TIMEOUT), value_parser = parse_limit, allow_negative_numbers = true)]
    pub shutdown_timeout: Limit,
    /// Listen backlog (1 to 65535): connections the kernel queues before we
    /// accept them (capped by net.core.somaxconn).
    #[arg(
        long,
        value_name = "N",
        default_value_t = u64::from(DEFAULT_BACKLOG),
        value_parser = whole(1, 65535)
    )]
    pub backlog: u64,
    /// Runtime worker threads, 1 to 1024 (default: one per CPU core).
    #[arg(long, value_name = "N", value_parser = whole(1, 1024))]
    pub threads: Option<u64>,
    #[command(flatten, next_help_heading = "TLS")]
    pub tls: ServerTlsArgs,
}

/// A server's TLS flags: with --tls-cert and --tls-key, every connection
/// (TCP or Unix) is TLS.
#[derive(Debug, Args)]
pub struct ServerTlsArgs {
    /// Serve TLS with this certificate chain (PEM, leaf first); with --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require every client to present a certificate signed by this CA
    /// (PEM): mutual TLS. The client's subject is logged.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// The oldest TLS version to accept.
    #[arg(long, value_enum, value_name = "VERSION", default_value = "1.2")]
    pub tls_min_version: TlsVersion,
    /// A client must complete its TLS handshake within this long (0 = no limit).
    #[arg(long, value_name = "SECONDS", default_value_t = Limit::of(DEFAULT_HANDSHAKE_TIMEOUT), value_parser = parse_limit, allow_negative_numbers = true)]
    pub tls_handshake_timeout: Limit,
}

impl ServerTlsArgs {
    /// The stage connections go through: TLS when a certificate is given.
    pub fn stage(&self) -> Result<Stage> {
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(
                ServerTls {
                    cert: cert.clone(),
                    key: key.clone(),
                    client_ca: self.tls_client_ca.clone(),
                    min_version: self.tls_min_version.into(),
                }
                .acceptor()?,
            ),
            _ => None,
        };
        Ok(Stage {
            tls,
            handshake_timeout: self.tls_handshake_timeout.0,
        })
    }
}

impl ServerArgs {
    /// Worker threads asked for; `None` for one per core.
    pub fn threads(&self) -> Option<usize> {
        self.threads.map(|n| n as usize)
    }

    /// The limits and stage for [`server::run`], with the input budget given.
    ///
    /// # Errors
    /// When the TLS files cannot be used.
    pub fn config(&self, request_timeout: Limit, max_buffered_bytes: usize) -> Result<ServerConfig> {
        Ok(ServerConfig {
            max_connections: self.max_connections as usize,
            limits: ConnectionLimits {
                idle_timeout: self.idle_timeout.0,
                request_timeout: request_timeout.0,
            },
            shutdown_timeout: self.shutdown_timeout.0,
            input_budget: InputBudget::new(max_buffered_bytes),
            stage: self.tls.stage()?,
        })
    }

    /// [`ServerArgs::config`] for servers without requests (echo).
    ///
    /// # Errors
    /// As [`ServerArgs::config`].
    pub fn stream_config(&self) -> Result<ServerConfig> {
        self.config(Limit(None), DEFAULT_MAX_BUFFERED_BYTES)
    }

    /// The options for a Unix socket file.
    pub fn socket_file(&self) -> SocketFileOptions {
        SocketFileOptions { mode: self.unix_mode }
    }

    /// Where to listen: the one place HOST PORT and --unix are read.
    pub fn listen_addr(&self) -> ListenAddr {
        match &self.unix {
            Some(path) => ListenAddr::Unix {
                path: path.clone(),
                options: self.socket_file(),
            },
            None => ListenAddr::Tcp {
                host: self.host.clone(),
                port: self.port,
            },
        }
    }

    /// Binds the stream listener, announces it, and arranges for
    /// Ctrl-C/SIGTERM to cancel the returned token.
    pub async fn listen(&self) -> Result<(Listener, CancellationToken)> {
        raise_open_file_limit();
        let listener = Listener::bind(&self.listen_addr(), self.backlog as u32).await?;
        let shown = listener.shown().context("reading the bound address")?;
        Ok((listener, announce(&shown)))
    }

    /// Serves `handler` on `listener` with `config` until shutdown completes.
    pub async fn serve<H: ConnectionHandler>(
        &self,
        listener: Listener,
        config: ServerConfig,
        handler: H,
        shutdown: CancellationToken,
    ) {
        server::run(listener, config, Arc::new(handler), shutdown).await;
        info!("Server stopped");
    }
}

/// Logs and prints (as stdout's first line) where the server listens, and
/// installs the signal handler whose token stops it.
///
/// A closed stdout (`sockets app-server | true`) does not stop the server:
/// the address is a courtesy to scripts, the server's job is to serve. The
/// failure is logged, and the address is in the log line too.
pub fn announce(shown: &str) -> CancellationToken {
    // Signals first: whoever reads the address may send SIGTERM at once.
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    if let Err(error) = print_line(shown) {
        warn!("Could not print the address on stdout ({error:#}); serving anyway");
    }
    info!("Listening on {shown}");
    shutdown
}

fn raise_open_file_limit() {
    match transport::raise_open_file_limit() {
        Ok(limit) => debug!("open file limit: {limit}"),
        Err(error) => warn!("could not raise the open file limit: {error}"),
    }
}
