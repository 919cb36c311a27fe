//! `sockets multiconn-client`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use clap::Args;

use sockets::client::multiconn::{self, GUIDE_MESSAGES};

use super::target::TargetArgs;
use super::{UsageError, print_line};

/// Most connections one run opens.
const MAX_CONNECTIONS: usize = 100_000;

#[derive(Debug, Args)]
pub struct MulticonnClientArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// How many connections to open at once (1 to 100000).
    #[arg(value_name = "NUM_CONNECTIONS")]
    pub num_connections: Option<String>,
    /// A message each connection sends (repeat for several) [default: the guide's two].
    #[arg(long, value_name = "TEXT")]
    pub message: Vec<String>,
    /// Print only the summary and failures, not every connection's progress.
    #[arg(long)]
    pub summary: bool,
}

pub async fn run(args: MulticonnClientArgs) -> Result<ExitCode> {
    let (endpoint, rest) = args.target.split([args.num_connections.clone()], 1)?;
    let count_text = rest
        .first()
        .ok_or_else(|| UsageError("the following required arguments were not provided: <NUM_CONNECTIONS>".into()))?;
    let count: usize = count_text
        .parse()
        .ok()
        .filter(|n| (1..=MAX_CONNECTIONS).contains(n))
        .ok_or_else(|| {
            UsageError(format!(
                "invalid value '{count_text}' for '<NUM_CONNECTIONS>': not a whole number from 1 to {MAX_CONNECTIONS}"
            ))
        })?;
    let messages: Vec<Vec<u8>> = if args.message.is_empty() {
        GUIDE_MESSAGES.iter().map(|m| m.to_vec()).collect()
    } else {
        args.message.iter().map(|m| m.clone().into_bytes()).collect()
    };
    let say: Arc<dyn Fn(String) + Send + Sync> = if args.summary {
        Arc::new(|_| {})
    } else {
        Arc::new(|line| {
            let _ = print_line(&line);
        })
    };
    let started = Instant::now();
    let connector = args.target.connector(endpoint.clone())?;
    let outcomes = multiconn::run(&connector, count, &messages, say).await;
    let elapsed = started.elapsed();
    let mut echoed = 0;
    let mut failed = 0;
    for outcome in &outcomes {
        match &outcome.result {
            Ok(bytes) => echoed += bytes,
            Err(error) => {
                failed += 1;
                print_line(&format!("Connection {} failed: {error}", outcome.id))?;
            }
        }
    }
    print_line(&format!(
        "{count} connection(s) to {endpoint}: {} succeeded, {failed} failed; {echoed} bytes echoed in {elapsed:.2?}",
        count - failed
    ))?;
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
