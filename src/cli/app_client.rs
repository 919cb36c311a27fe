//! `sockets app-client`.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use tracing::debug;

use sockets::app::{Reply, client_request};
use sockets::client;
use sockets::escape::Terminal;
use sockets::protocol::DEFAULT_MAX_CONTENT_LEN;
use sockets::python_repr::BytesRepr;

use super::args::content_length;
use super::target::TargetArgs;
use super::{UsageError, print_line};

#[derive(Debug, Args)]
pub struct AppClientArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// `search`, or anything else for a binary request.
    #[arg(value_name = "ACTION")]
    pub action: Option<String>,
    /// The search query, or the rest of the binary request's content.
    #[arg(value_name = "VALUE")]
    pub value: Option<String>,
    /// Largest response content accepted (0 to 1073741824).
    #[arg(
        long,
        value_name = "BYTES",
        default_value_t = DEFAULT_MAX_CONTENT_LEN as u64,
        value_parser = content_length()
    )]
    pub max_content_length: u64,
}

pub async fn run(args: AppClientArgs) -> Result<ExitCode> {
    let (endpoint, rest) = args.target.split([args.action, args.value], 2)?;
    let missing = ["<ACTION>", "<VALUE>"][rest.len().min(2)..].join(" ");
    let [action, value] = <[String; 2]>::try_from(rest)
        .map_err(|_| UsageError(format!("the following required arguments were not provided: {missing}")))?;
    debug!("Starting connection to {endpoint}");
    let timeout = args.target.timeout();
    let stream = args.target.connector(endpoint.clone())?.connect().await?;
    let request = client_request(&action, &value);
    let response = client::exchange(stream, &request, args.max_content_length as usize, timeout)
        .await
        .with_context(|| format!("requesting {action} {value:?} from {endpoint}"))?;
    let reply = Reply::from_message(&response).context("reading the response")?;
    match &reply {
        Reply::Binary(content) => print_line(&format!("Got response: {}", BytesRepr(content)))?,
        // A hostile server's escape sequences are shown, not obeyed.
        Reply::Result(result) => print_line(&format!("Got result: {}", Terminal(result)))?,
    }
    // The guide's line is printed either way; scripts can tell from the status.
    Ok(if reply.is_error() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
