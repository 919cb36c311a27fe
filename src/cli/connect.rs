//! `sockets connect`: an interactive client, like netcat.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use tracing::debug;

use sockets::client::chat::chat;
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
    /// Chat through a `sockets broker`: each line of input is published on
    /// --channel, and every message on the channel is printed.
    #[arg(long, conflicts_with = "udp")]
    pub chat: bool,
    /// With --chat: the channel.
    #[arg(long, value_name = "NAME", default_value = "chat", requires = "chat")]
    pub channel: String,
    /// With --chat: the name put before each of your lines [default: $USER, or "guest"].
    #[arg(long, value_name = "NAME", requires = "chat")]
    pub nick: Option<String>,
    /// With --udp: after input ends, wait this long for further replies.
    #[arg(long, value_name = "SECONDS", requires = "udp", default_value = "1", value_parser = parse_positive_seconds, allow_negative_numbers = true)]
    pub linger: Duration,
}

pub async fn run(args: ConnectArgs) -> Result<ExitCode> {
    let (endpoint, _) = args.target.split([], 0)?;
    let (stdin, stdout) = (tokio::io::stdin(), tokio::io::stdout());
    let timeout = args.target.timeout();
    if args.chat {
        let stream = args.target.connector(endpoint.clone())?.connect().await?;
        let nick = args
            .nick
            .clone()
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "guest".to_owned());
        let summary = chat(stream, &args.channel, &nick, stdin, stdout)
            .await
            .with_context(|| format!("chatting on {endpoint}"))?;
        debug!("sent {} lines, received {} messages", summary.sent, summary.received);
        return Ok(ExitCode::SUCCESS);
    }
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
