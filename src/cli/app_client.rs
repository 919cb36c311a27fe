//! `sockets app-client`.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::Value;
use tracing::debug;

use sockets::client;
use sockets::handlers::app::client_request;
use sockets::protocol::DEFAULT_MAX_CONTENT_LEN;
use sockets::python_repr::BytesRepr;
use sockets::transport;

use super::target::TargetArgs;
use super::{UsageError, parse_seconds, print_line};

#[derive(Debug, Args)]
pub struct AppClientArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// `search`, or anything else for a binary request.
    pub action: Option<String>,
    /// The search query, or the rest of the binary request's content.
    pub value: Option<String>,
    /// Give up on connecting, and on the response, after this long.
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = parse_seconds)]
    pub timeout: Duration,
    /// Largest response content accepted.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_CONTENT_LEN)]
    pub max_content_length: usize,
}

pub async fn run(args: AppClientArgs) -> Result<ExitCode> {
    let (endpoint, rest) = args.target.split([args.action, args.value], 2)?;
    let [action, value] =
        <[String; 2]>::try_from(rest).map_err(|_| UsageError("ACTION and VALUE are required".into()))?;
    debug!("Starting connection to {endpoint}");
    let stream = transport::connect_stream(&endpoint, args.timeout).await?;
    let request = client_request(&action, &value);
    let response = client::exchange(stream, &request, args.max_content_length, args.timeout)
        .await
        .with_context(|| format!("requesting {action} {value:?} from {endpoint}"))?;
    if !response.is_json() {
        print_line(&format!("Got response: {}", BytesRepr(&response.content)))?;
        return Ok(ExitCode::SUCCESS);
    }
    let text = response.text().context("decoding the response")?;
    let answer: Value =
        serde_json::from_str(&text).with_context(|| format!("the response is not valid JSON: {text}"))?;
    match answer.get("result") {
        Some(Value::String(result)) => print_line(&format!("Got result: {result}"))?,
        Some(other) => print_line(&format!("Got result: {other}"))?,
        None => bail!("the response has no \"result\": {text}"),
    }
    Ok(ExitCode::SUCCESS)
}
