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
use super::fan_out::FanOutArgs;
use super::target::TargetArgs;

#[derive(Debug, Args)]
pub struct ConnectArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Datagrams instead of a stream: each chunk of input is sent as one
    /// datagram (UDP, or Unix datagram with --unix).
    #[arg(short = 'u', long, visible_alias = "datagram", conflicts_with_all = ["tls", "tls_ca", "tls_server_name", "tls_cert", "insecure", "send_proxy", "keepalive"])]
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
    #[command(flatten, next_help_heading = "Many responders (UDP)")]
    pub fan_out: FanOutArgs,
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
    if args.udp
        && let Some((target, fan_out)) = args.fan_out.target(&endpoint).await?
    {
        return relay_many(target, &fan_out, args.linger, stdin, stdout).await;
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

/// Sends each chunk of input as a datagram to a group or broadcast address;
/// writes every reply to the output, and says on stderr who answered.
async fn relay_many(
    target: std::net::SocketAddr,
    fan_out: &sockets::transport::multicast::FanOut,
    linger: Duration,
    mut input: impl tokio::io::AsyncRead + Unpin,
    mut output: impl tokio::io::AsyncWrite + Unpin,
) -> Result<ExitCode> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = sockets::transport::multicast::open_sender(target, fan_out)
        .with_context(|| format!("opening a socket to {target}"))?;
    let (mut chunk, mut reply) = (vec![0u8; 65_507], vec![0u8; 65_536]);
    let mut responders = std::collections::BTreeMap::new();
    let mut until: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            read = input.read(&mut chunk), if until.is_none() => match read.context("reading standard input")? {
                0 => until = Some(tokio::time::Instant::now() + linger),
                n => {
                    socket.send_to(&chunk[..n], target).await.with_context(|| format!("sending to {target}"))?;
                }
            },
            received = socket.recv_from(&mut reply) => match received {
                Ok((n, from)) => {
                    *responders.entry(sockets::transport::canonical(from)).or_insert(0u64) += 1;
                    output.write_all(&reply[..n]).await?;
                    output.flush().await?;
                }
                Err(error) if error.kind() == std::io::ErrorKind::ConnectionRefused => {}
                Err(error) => return Err(error).context("receiving"),
            },
            () = sockets::deadline::sleep_until(until) => break,
        }
    }
    let listed: Vec<String> = responders.iter().map(|(addr, n)| format!("{addr} ({n})")).collect();
    super::say(&format!(
        "{} responder(s) to {target}: {}",
        responders.len(),
        listed.join(", ")
    ));
    Ok(ExitCode::SUCCESS)
}
