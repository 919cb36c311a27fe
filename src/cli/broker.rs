//! `sockets broker`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use arc_swap::ArcSwap;
use clap::Args;

use sockets::app::SearchTable;
use sockets::app::serve::AppHandler;
use sockets::broker::{BROKER_LABELS, Broker, BrokerHandler, OutputLimits};
use sockets::protocol::DEFAULT_MAX_CONTENT_LEN;
use sockets::server::budget::DEFAULT_MAX_BUFFERED_BYTES;
use sockets::server::{DEFAULT_REQUEST_TIMEOUT, metrics};

use super::UsageError;
use super::args::{Limit, content_length, parse_limit, parse_seconds, parse_size};
use super::server_args::{Reload, ServerArgs};

#[derive(Debug, Args)]
pub struct BrokerArgs {
    /// Search table for search requests (default: the guide's three entries).
    #[arg(long, value_name = "FILE")]
    pub data: Option<PathBuf>,
    /// Largest content-length accepted (0 to 1073741824).
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_CONTENT_LEN as u64, value_parser = content_length())]
    pub max_content_length: u64,
    /// A request that has begun must arrive whole within this long (0 = never).
    #[arg(long, value_name = "SECONDS", default_value_t = Limit::of(DEFAULT_REQUEST_TIMEOUT), value_parser = parse_limit, allow_negative_numbers = true)]
    pub request_timeout: Limit,
    /// How far behind a subscriber may fall, as Redis's
    /// client-output-buffer-limit pubsub: disconnected past HARD bytes
    /// queued, or past SOFT bytes for longer than SECONDS (0 turns a limit
    /// off; sizes take k, m, g). Default: 32m 8m 60.
    #[arg(long, num_args = 3, value_names = ["HARD", "SOFT", "SECONDS"])]
    pub subscriber_limit: Vec<String>,
    // Last: its TLS and deployment headings would otherwise take the flags above.
    #[command(flatten)]
    pub server: ServerArgs,
}

impl BrokerArgs {
    fn limits(&self) -> Result<OutputLimits, UsageError> {
        let [hard, soft, seconds] = self.subscriber_limit.as_slice() else {
            return Ok(OutputLimits::default());
        };
        let size = |text: &str| parse_size(text).map_err(|why| UsageError(format!("--subscriber-limit: {why}")));
        let soft_for = parse_seconds(seconds).map_err(|why| UsageError(format!("--subscriber-limit: {why}")))?;
        Ok(OutputLimits {
            hard: size(hard)?,
            soft: size(soft)?,
            soft_for,
        })
    }
}

pub async fn run(args: BrokerArgs) -> Result<ExitCode> {
    let limits = args.limits()?;
    let table = match &args.data {
        Some(path) => SearchTable::load(path)?,
        None => SearchTable::builtin(),
    };
    let config = args.server.config(args.request_timeout, DEFAULT_MAX_BUFFERED_BYTES)?;
    let listening = args.server.listen(&config).await?;
    let handler = BrokerHandler {
        broker: Arc::new(Broker::new(limits)),
        app: AppHandler {
            table: Arc::new(ArcSwap::from_pointee(table)),
            max_content_len: args.max_content_length as usize,
            one_shot: false,
        },
    };
    let reload = Reload {
        reloaders: args.server.tls_reloader(&config.stage).into_iter().collect(),
        reloadable: "--tls-cert",
    };
    metrics::set_request_labels(&BROKER_LABELS);
    args.server.serve(listening, config, handler, reload).await?;
    Ok(ExitCode::SUCCESS)
}
