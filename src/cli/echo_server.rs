//! `sockets echo-server` and `sockets multiconn-server` (the same server:
//! the guide's multi-connection server is an echo server for many clients).

use std::process::ExitCode;

use std::net::SocketAddr;

use anyhow::{Context, Result};
use clap::Args;
use tracing::info;

use sockets::echo::EchoHandler;
use sockets::echo::datagram::{self, DEFAULT_PEER_RATE, DatagramConfig};
use sockets::transport::listen::bind_udp;
use sockets::transport::multicast::{Interface, join_group};
use sockets::transport::unix::BoundUnixDatagram;
use sockets::transport::{self, ListenAddr};

use super::UsageError;
use super::args::whole;
use super::server_args::{Reload, ServerArgs, announce, passed_sockets_given};
use super::signals::reload_on_hangup;

#[derive(Debug, Args)]
pub struct EchoServerArgs {
    /// Echo datagrams instead of streams: UDP, or Unix datagrams with --unix.
    /// Each datagram goes back whole to its sender. Datagrams from this
    /// server's own port or from ports below 1024 are dropped (echo loops).
    #[arg(
        short = 'u',
        long,
        visible_alias = "datagram",
        conflicts_with_all = [
            "max_connections", "idle_timeout", "shutdown_timeout", "backlog", "tls_cert", "proxy_protocol",
            "allow", "deny", "metrics", "reuse_port", "threads", "keepalive"
        ]
    )]
    pub udp: bool,
    /// With --udp: datagrams echoed per second to one sender; more are
    /// dropped, which also ends an echo loop with another server (0 = no limit).
    #[arg(
        long,
        value_name = "N",
        requires = "udp",
        default_value_t = u64::from(DEFAULT_PEER_RATE),
        allow_negative_numbers = true,
        value_parser = whole(0, 10_000_000)
    )]
    pub peer_rate: u64,
    /// With --udp: join this multicast group (IPv4 224.0.0.0/4 or IPv6
    /// ff00::/8) and echo what is sent to it. The server then listens on
    /// PORT on every interface (HOST is not used), sharing the port with
    /// other members on this host, and answers from its own address.
    #[arg(long, value_name = "GROUP", requires = "udp", conflicts_with = "unix")]
    pub multicast: Option<std::net::IpAddr>,
    /// With --multicast: the interface to join on, an IPv4 address or a
    /// name (eth0) [default: the route to the group].
    #[arg(long, value_name = "IFACE", requires = "multicast")]
    pub interface: Option<Interface>,
    // Last: its TLS and deployment headings would otherwise take the flags above.
    #[command(flatten)]
    pub server: ServerArgs,
}

pub async fn run(args: EchoServerArgs) -> Result<ExitCode> {
    if !args.udp {
        let config = args.server.stream_config()?;
        let listening = args.server.listen(&config).await?;
        let reload = Reload {
            reloaders: args.server.tls_reloader(&config.stage).into_iter().collect(),
            reloadable: "--tls-cert",
        };
        args.server.serve(listening, config, EchoHandler, reload).await?;
        return Ok(ExitCode::SUCCESS);
    }
    if passed_sockets_given() {
        return Err(UsageError(
            "--udp serves datagrams, and the service manager passed sockets that this server takes as stream listeners; run it without socket activation".into(),
        )
        .into());
    }
    let config = DatagramConfig {
        peer_rate: (args.peer_rate > 0).then_some(args.peer_rate as u32),
    };
    match args.server.listen_addr() {
        ListenAddr::Unix { path, options } => {
            let bound = BoundUnixDatagram::bind(&path, options)?;
            let (shutdown, hangup) = announce(&[format!("unix:{}", bound.path().display())], None);
            // Nothing to reload, but SIGHUP must not end the server.
            reload_on_hangup(hangup, Vec::new(), "nothing for --udp");
            datagram::serve(&bound.socket, config, shutdown).await?;
        }
        ListenAddr::Tcp { port, .. } if args.multicast.is_some() => {
            let group = args.multicast.expect("checked");
            let socket = join_group(group, port, args.interface.as_ref().unwrap_or(&Interface::Default))?;
            let bound = socket.local_addr().context("reading the bound address")?;
            let (shutdown, hangup) = announce(&[SocketAddr::new(group, bound.port()).to_string()], None);
            reload_on_hangup(hangup, Vec::new(), "nothing for --udp");
            datagram::serve(&socket, config, shutdown).await?;
        }
        ListenAddr::Tcp { host, port } => {
            let socket = bind_udp(&host, port).await?;
            let addr = transport::canonical(socket.local_addr().context("reading the bound address")?);
            let (shutdown, hangup) = announce(&[addr.to_string()], None);
            reload_on_hangup(hangup, Vec::new(), "nothing for --udp");
            datagram::serve(&socket, config, shutdown).await?;
        }
    }
    info!("Server stopped");
    Ok(ExitCode::SUCCESS)
}
