//! `sockets connect`: an interactive client, like netcat.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use tracing::debug;

use sockets::client::relay::{relay_datagrams, relay_stream};
use sockets::transport::connect::connect_udp;
use sockets::transport::unix::BoundUnixDatagram;
use sockets::transport::{Endpoint, connect_stream};

use super::parse_seconds;
use super::target::TargetArgs;

#[derive(Debug, Args)]
pub struct ConnectArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Datagrams instead of a stream: each chunk of input is sent as one
    /// datagram (UDP, or Unix datagram with --unix).
    #[arg(long, visible_alias = "datagram")]
    pub udp: bool,
    /// Limit for connecting.
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = parse_seconds)]
    pub timeout: Duration,
    /// With --udp: after input ends, wait this long for further replies.
    #[arg(long, value_name = "SECONDS", default_value = "1", value_parser = parse_seconds)]
    pub linger: Duration,
}

pub async fn run(args: ConnectArgs) -> Result<ExitCode> {
    let (endpoint, _) = args.target.split([], 0)?;
    let (stdin, stdout) = (tokio::io::stdin(), tokio::io::stdout());
    let (sent, received) = if args.udp {
        match &endpoint {
            Endpoint::Inet { host, port } => {
                let socket = connect_udp(host, *port, args.timeout).await?;
                relay_datagrams(&socket, stdin, stdout, args.linger).await
            }
            Endpoint::Unix(path) => {
                let bound = BoundUnixDatagram::connect_from_temp(path)?;
                relay_datagrams(&bound.socket, stdin, stdout, args.linger).await
            }
        }
    } else {
        let stream = connect_stream(&endpoint, args.timeout).await?;
        relay_stream(stream, stdin, stdout).await
    }
    .with_context(|| format!("relaying to {endpoint}"))?;
    debug!("sent {sent}, received {received}");
    Ok(ExitCode::SUCCESS)
}
