//! `sockets echo-server` and `sockets multiconn-server` (the same server:
//! the guide's multi-connection server is an echo server for many clients).

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use tracing::info;

use sockets::services::echo::{EchoService, serve_datagrams};
use sockets::transport;
use sockets::transport::listen::bind_udp;
use sockets::transport::unix::BoundUnixDatagram;

use super::server_args::{ServerArgs, announce};

#[derive(Debug, Args)]
pub struct EchoServerArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Echo datagrams instead of streams: UDP, or Unix datagrams with --unix.
    /// Each datagram goes back whole to its sender.
    #[arg(long, visible_alias = "datagram")]
    pub udp: bool,
}

pub async fn run(args: EchoServerArgs) -> Result<ExitCode> {
    if !args.udp {
        let (listener, shutdown) = args.server.listen().await?;
        args.server.serve(listener, EchoService, shutdown).await;
        return Ok(ExitCode::SUCCESS);
    }
    match &args.server.unix {
        Some(path) => {
            let bound = BoundUnixDatagram::bind(path)?;
            let shutdown = announce(&format!("unix:{}", bound.path().display()))?;
            serve_datagrams(&bound.socket, shutdown).await;
        }
        None => {
            let socket = bind_udp(&args.server.host, args.server.port).await?;
            let addr = transport::canonical(socket.local_addr().context("reading the bound address")?);
            let shutdown = announce(&addr.to_string())?;
            serve_datagrams(&socket, shutdown).await;
        }
    }
    info!("Server stopped");
    Ok(ExitCode::SUCCESS)
}
