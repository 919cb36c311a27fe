//! `sockets app-server`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use arc_swap::ArcSwap;
use clap::Args;
use tracing::{info, warn};

use sockets::app::serve::AppHandler;
use sockets::app::{REQUEST_LABELS, SearchTable};
use sockets::protocol::DEFAULT_MAX_CONTENT_LEN;
use sockets::server::budget::DEFAULT_MAX_BUFFERED_BYTES;
use sockets::server::{DEFAULT_REQUEST_TIMEOUT, metrics};

use super::args::{Limit, content_length, parse_limit, whole};
use super::server_args::{Reload, Reloader, ServerArgs};

#[derive(Debug, Args)]
pub struct AppServerArgs {
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
    // Last: its TLS and deployment headings would otherwise take the flags above.
    #[command(flatten)]
    pub server: ServerArgs,
}

pub async fn run(args: AppServerArgs) -> Result<ExitCode> {
    let table = match &args.data {
        Some(path) => load_table(path)?,
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
    let listening = args.server.listen(&config).await?;
    let handler = AppHandler {
        table: Arc::new(ArcSwap::from_pointee(table)),
        max_content_len: args.max_content_length as usize,
        one_shot: args.one_shot,
    };
    let mut reloaders: Vec<Reloader> = args.server.tls_reloader(&config.stage).into_iter().collect();
    if let Some(path) = args.data.clone() {
        let slot = Arc::clone(&handler.table);
        reloaders.push(Box::new(move || match load_table(&path) {
            Ok(table) => slot.store(Arc::new(table)),
            Err(error) => warn!("Kept the search table in use: {error:#}"),
        }));
    }
    let reload = Reload {
        reloaders,
        reloadable: "--data and --tls-cert",
    };
    metrics::set_request_labels(&REQUEST_LABELS);
    args.server.serve(listening, config, handler, reload).await?;
    Ok(ExitCode::SUCCESS)
}

/// Reads a search table, saying how big it is and how long it took.
fn load_table(path: &Path) -> Result<SearchTable> {
    let started = Instant::now();
    let table = SearchTable::load(path)?;
    info!(
        "Loaded {} search entries from {} in {:.2?}",
        table.len(),
        path.display(),
        started.elapsed()
    );
    Ok(table)
}
