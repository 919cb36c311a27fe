//! `sockets echo-client`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use sockets::client::echo::{echo_datagram, echo_stream};
use sockets::python_repr::BytesRepr;
use sockets::transport::connect::connect_udp;
use sockets::transport::unix::BoundUnixDatagram;
use sockets::transport::{Endpoint, connect_stream};

use super::target::TargetArgs;
use super::{parse_seconds, print_line};

/// Payloads up to this size are printed as the guide prints them; larger ones are summarized.
const PRINT_LIMIT: usize = 4096;

#[derive(Debug, Args)]
pub struct EchoClientArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// What to send [default: "Hello, world"].
    pub message: Option<String>,
    /// Send one datagram (UDP, or Unix datagram with --unix) instead of a stream.
    #[arg(long, visible_alias = "datagram")]
    pub udp: bool,
    /// Send the contents of FILE (`-` for standard input) instead of MESSAGE.
    #[arg(long, value_name = "FILE", conflicts_with = "message")]
    pub input: Option<PathBuf>,
    /// Give up after this long without progress (per attempt with --udp).
    #[arg(long, value_name = "SECONDS", default_value = "5", value_parser = parse_seconds)]
    pub timeout: Duration,
    /// With --udp: how many times to send before giving up (datagrams can be lost).
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub attempts: u32,
    /// With --udp: largest reply accepted; a bigger one is reported as truncated.
    #[arg(long, value_name = "BYTES", default_value_t = 65536)]
    pub buffer_size: usize,
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
    let received = if args.udp {
        match &endpoint {
            Endpoint::Inet { host, port } => {
                let socket = connect_udp(host, *port, args.timeout).await?;
                echo_datagram(&socket, &payload, args.timeout, args.attempts, args.buffer_size).await
            }
            Endpoint::Unix(path) => {
                let bound = BoundUnixDatagram::connect_from_temp(path)?;
                echo_datagram(&bound.socket, &payload, args.timeout, args.attempts, args.buffer_size).await
            }
        }
    } else {
        let stream = connect_stream(&endpoint, args.timeout).await?;
        echo_stream(stream, &payload, args.timeout).await
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
        eprintln!(
            "error: the echo differs from what was sent ({} bytes sent, {} received, first difference at byte {at})",
            payload.len(),
            received.len()
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
