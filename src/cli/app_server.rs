//! `sockets app-server`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use clap::Args;
use tracing::{info, warn};

use sockets::app::SearchTable;
use sockets::app::serve::AppHandler;
use sockets::protocol::DEFAULT_MAX_CONTENT_LEN;
use sockets::server::DEFAULT_REQUEST_TIMEOUT;
use sockets::server::budget::DEFAULT_MAX_BUFFERED_BYTES;

use super::args::{Limit, content_length, parse_limit, whole};
use super::server_args::ServerArgs;

#[derive(Debug, Args)]
pub struct AppServerArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Search table: a JSON object of query to answer (default: the guide's three entries).
    #[arg(long, value_name = "FILE")]
    pub data: Option<PathBuf>,
    /// Largest content-length accepted (0 to 1073741824); bigger requests get
    /// an error response before any content is read.
    #[arg(
        long,
        value_name = "BYTES",
        default_value_t = DEFAULT_MAX_CONTENT_LEN as u64,
        value_parser = content_length()
    )]
    pub max_content_length: u64,
    /// A request that has begun must arrive whole within this long, or the
    /// client is told so and closed (0 = never; the idle timeout applies then).
    #[arg(long, value_name = "SECONDS", default_value_t = Limit::of(DEFAULT_REQUEST_TIMEOUT), value_parser = parse_limit, allow_negative_numbers = true)]
    pub request_timeout: Limit,
    /// Server-wide limit on bytes of unfinished requests held in memory
    /// (1024 to 1099511627776); when it is reached, the connections holding
    /// the most are told so and closed.
    #[arg(
        long,
        value_name = "BYTES",
        default_value_t = DEFAULT_MAX_BUFFERED_BYTES as u64,
        value_parser = whole(1024, 1 << 40)
    )]
    pub max_buffered_bytes: u64,
    /// Close each connection after its first response, as the guide's server does.
    #[arg(long)]
    pub one_shot: bool,
}

pub async fn run(args: AppServerArgs) -> Result<ExitCode> {
    let table = match &args.data {
        Some(path) => {
            let started = Instant::now();
            let table = SearchTable::load(path)?;
            info!(
                "Loaded {} search entries from {} in {:.2?}",
                table.len(),
                path.display(),
                started.elapsed()
            );
            table
        }
        None => SearchTable::builtin(),
    };
    if args.max_buffered_bytes < args.max_content_length {
        warn!(
            "--max-buffered-bytes {} is below --max-content-length {}: no request larger than the budget can ever complete",
            args.max_buffered_bytes, args.max_content_length
        );
    }
    // Everything that can fail is checked before the address is announced.
    let config = args
        .server
        .config(args.request_timeout, args.max_buffered_bytes as usize)?;
    let (listener, shutdown) = args.server.listen().await?;
    let handler = AppHandler {
        table: Arc::new(table),
        max_content_len: args.max_content_length as usize,
        one_shot: args.one_shot,
    };
    args.server.serve(listener, config, handler, shutdown).await;
    Ok(ExitCode::SUCCESS)
}
