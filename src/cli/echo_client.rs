//! `sockets echo-client`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use sockets::client::echo::{echo_datagram, echo_stream};
use sockets::python_repr::BytesRepr;
use sockets::transport::connect::connect_datagram;

use super::args::{parse_positive_seconds, whole};
use super::fan_out::FanOutArgs;
use super::print_line;
use super::target::TargetArgs;

/// Payloads up to this size are printed as the guide prints them; larger ones are summarized.
const PRINT_LIMIT: usize = 4096;

#[derive(Debug, Args)]
pub struct EchoClientArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// What to send [default: "Hello, world"].
    #[arg(value_name = "MESSAGE")]
    pub message: Option<String>,
    /// Send one datagram (UDP, or Unix datagram with --unix) instead of a stream.
    #[arg(short = 'u', long, visible_alias = "datagram", conflicts_with_all = ["tls", "tls_ca", "tls_server_name", "tls_cert", "insecure", "send_proxy", "keepalive"])]
    pub udp: bool,
    /// Send the contents of FILE (`-` for standard input) instead of MESSAGE.
    #[arg(long, value_name = "FILE", conflicts_with = "message")]
    pub input: Option<PathBuf>,
    /// With --udp: how many times to send (1 to 1000) before giving up;
    /// each attempt waits --timeout for the reply.
    #[arg(long, value_name = "N", requires = "udp", default_value_t = 3,
          value_parser = whole(1, 1000))]
    pub attempts: u64,
    /// With --udp: largest reply accepted (1 to 16777216); a bigger one is reported as truncated.
    #[arg(long, value_name = "BYTES", requires = "udp", default_value_t = 65536,
          value_parser = whole(1, 1 << 24))]
    pub buffer_size: u64,
    /// With --udp to many responders (--broadcast, or a multicast group):
    /// how long to collect their answers.
    #[arg(long, value_name = "SECONDS", requires = "udp", default_value = "1", value_parser = parse_positive_seconds, allow_negative_numbers = true)]
    pub linger: std::time::Duration,
    #[command(flatten, next_help_heading = "Many responders (UDP)")]
    pub fan_out: FanOutArgs,
}

pub async fn run(args: EchoClientArgs) -> Result<ExitCode> {
    let (endpoint, rest) = args.target.split([args.message.clone()], 1)?;
    let payload = match (&args.input, rest.first()) {
        (Some(path), _) if path.as_os_str() == "-" => {
            let mut bytes = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut tokio::io::stdin(), &mut bytes)
                .await
                .context("reading standard input")?;
            bytes
        }
        (Some(path), _) => std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
        (None, Some(message)) => message.clone().into_bytes(),
        (None, None) => b"Hello, world".to_vec(),
    };
    let timeout = args.target.timeout();
    if args.udp
        && let Some((target, fan_out)) = args.fan_out.target(&endpoint).await?
    {
        return ask_many(target, &fan_out, &payload, args.linger, args.buffer_size as usize).await;
    }
    let received = if args.udp {
        let socket = connect_datagram(&endpoint, timeout).await?;
        echo_datagram(
            &socket,
            &payload,
            timeout,
            args.attempts as u32,
            args.buffer_size as usize,
        )
        .await
    } else {
        let stream = args.target.connector(endpoint.clone())?.connect().await?;
        echo_stream(stream, &payload, timeout).await
    };
    let received = received.with_context(|| format!("echo from {endpoint}"))?;
    if received.len() <= PRINT_LIMIT {
        print_line(&format!("Received {}", BytesRepr(&received)))?;
    } else {
        print_line(&format!("Received {} bytes", received.len()))?;
    }
    if received != payload {
        let at = received
            .iter()
            .zip(&payload)
            .position(|(a, b)| a != b)
            .unwrap_or(received.len().min(payload.len()));
        super::say(&format!(
            "error: the echo differs from what was sent ({} bytes sent, {} received, first difference at byte {at})",
            payload.len(),
            received.len()
        ));
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Sends once to a group or broadcast address, and lists every responder
/// with what it sent back. Exits 0 when at least one answered and every
/// answer is the message sent.
async fn ask_many(
    target: std::net::SocketAddr,
    fan_out: &sockets::transport::multicast::FanOut,
    payload: &[u8],
    linger: std::time::Duration,
    buffer_size: usize,
) -> Result<ExitCode> {
    use sockets::transport::multicast::{ask_all, open_sender};
    let socket = open_sender(target, fan_out).with_context(|| format!("opening a socket to {target}"))?;
    let responses = ask_all(&socket, target, payload, linger, buffer_size, 100_000)
        .await
        .with_context(|| match (fan_out.broadcast, target.ip().is_multicast()) {
            (false, false) => format!("sending to {target} (add --broadcast for a broadcast address)"),
            _ => format!("sending to {target}"),
        })?;
    let mut all_echoed = true;
    for (responder, replies) in &responses {
        for reply in replies {
            let shown = if reply.len() <= PRINT_LIMIT {
                BytesRepr(reply).to_string()
            } else {
                format!("{} bytes", reply.len())
            };
            print_line(&format!("Received {shown} from {responder}"))?;
            all_echoed &= reply == payload;
        }
    }
    let answers: usize = responses.values().map(Vec::len).sum();
    print_line(&format!(
        "{answers} answer(s) from {} responder(s) to {target} within {}",
        responses.len(),
        sockets::display_duration(linger)
    ))?;
    if responses.is_empty() {
        super::say(&format!("error: nobody answered {target}"));
        return Ok(ExitCode::FAILURE);
    }
    if !all_echoed {
        super::say("error: an answer differs from what was sent");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
