//! `sockets connect`: an interactive client, like netcat.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use tracing::debug;

use sockets::client::relay::{relay_datagrams, relay_stream};
use sockets::transport::connect::connect_datagram;

use super::args::parse_positive_seconds;
use super::target::TargetArgs;

#[derive(Debug, Args)]
pub struct ConnectArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Datagrams instead of a stream: each chunk of input is sent as one
    /// datagram (UDP, or Unix datagram with --unix).
    #[arg(short = 'u', long, visible_alias = "datagram", conflicts_with_all = ["tls", "tls_ca", "tls_server_name", "tls_cert", "insecure", "send_proxy"])]
    pub udp: bool,
    /// With --udp: after input ends, wait this long for further replies.
    #[arg(long, value_name = "SECONDS", requires = "udp", default_value = "1", value_parser = parse_positive_seconds, allow_negative_numbers = true)]
    pub linger: Duration,
}

pub async fn run(args: ConnectArgs) -> Result<ExitCode> {
    let (endpoint, _) = args.target.split([], 0)?;
    let (stdin, stdout) = (tokio::io::stdin(), tokio::io::stdout());
    let timeout = args.target.timeout();
    let (sent, received) = if args.udp {
        let socket = connect_datagram(&endpoint, timeout).await?;
        relay_datagrams(&socket, stdin, stdout, args.linger).await
    } else {
        let stream = args.target.connector(endpoint.clone())?.connect().await?;
        relay_stream(stream, stdin, stdout, timeout).await
    }
    .with_context(|| format!("relaying to {endpoint}"))?;
    debug!("sent {sent}, received {received}");
    Ok(ExitCode::SUCCESS)
}
