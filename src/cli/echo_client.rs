//! `sockets echo-client`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use sockets::client::echo::{echo_datagram, echo_stream};
use sockets::python_repr::BytesRepr;
use sockets::transport::connect::connect_datagram;

use super::args::whole;
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
    #[arg(short = 'u', long, visible_alias = "datagram", conflicts_with_all = ["tls", "tls_ca", "tls_server_name", "tls_cert", "insecure", "send_proxy"])]
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
