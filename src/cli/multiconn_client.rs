//! `sockets multiconn-client`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;

use sockets::client::multiconn::{self, GUIDE_MESSAGES};

use super::target::TargetArgs;
use super::{UsageError, parse_seconds, print_line};

#[derive(Debug, Args)]
pub struct MulticonnClientArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// How many connections to open at once.
    pub num_connections: Option<String>,
    /// A message each connection sends (repeat for several) [default: the guide's two].
    #[arg(long, value_name = "TEXT")]
    pub message: Vec<String>,
    /// Limit for each connection: connecting, and getting its whole echo back.
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = parse_seconds)]
    pub timeout: Duration,
    /// Print only the summary and failures, not every connection's progress.
    #[arg(long)]
    pub summary: bool,
}

pub async fn run(args: MulticonnClientArgs) -> Result<ExitCode> {
    let (endpoint, rest) = args.target.split([args.num_connections.clone()], 1)?;
    let count_text = rest
        .first()
        .ok_or_else(|| UsageError("NUM_CONNECTIONS is required".into()))?;
    let count: usize = count_text.parse().ok().filter(|&n| n > 0).ok_or_else(|| {
        UsageError(format!(
            "NUM_CONNECTIONS must be a positive whole number, got {count_text:?}"
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
    let outcomes = multiconn::run(&endpoint, count, &messages, args.timeout, say).await;
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
