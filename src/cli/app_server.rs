//! `sockets app-server`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use clap::Args;
use tracing::info;

use sockets::handlers::app::SearchTable;
use sockets::protocol::DEFAULT_MAX_CONTENT_LEN;
use sockets::services::app::AppService;

use super::server_args::ServerArgs;

#[derive(Debug, Args)]
pub struct AppServerArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Search table: a JSON object of query to answer (default: the guide's three entries).
    #[arg(long, value_name = "FILE")]
    pub data: Option<PathBuf>,
    /// Largest content-length accepted; bigger requests get an error response.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_CONTENT_LEN)]
    pub max_content_length: usize,
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
    let (listener, shutdown) = args.server.listen().await?;
    let service = AppService {
        table: Arc::new(table),
        max_content_len: args.max_content_length,
        one_shot: args.one_shot,
    };
    args.server.serve(listener, service, shutdown).await;
    Ok(ExitCode::SUCCESS)
}
