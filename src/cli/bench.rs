//! `sockets bench app` and `sockets bench echo`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use sockets::bench::app::{AppBench, Mode};
use sockets::bench::echo::EchoBench;
use sockets::bench::report::{ErrorTable, LatencySummary, Report};
use sockets::bench::{self, Counters, Limit, Timeline, plot};
use sockets::handlers::app::{CLIENT_BINARY_TYPE, client_request};
use sockets::protocol::Message;

use super::target::TargetArgs;
use super::{parse_seconds, print_line};

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub target: BenchTarget,
}

#[derive(Debug, Subcommand)]
pub enum BenchTarget {
    /// Load an application server: requests/s, latency percentiles, every response checked.
    App(BenchAppArgs),
    /// Bulk echo throughput: MB/s echoed, every byte checked.
    Echo(BenchEchoArgs),
}

impl BenchTarget {
    pub fn threads(&self) -> usize {
        match self {
            BenchTarget::App(args) => args.common.threads,
            BenchTarget::Echo(args) => args.common.threads,
        }
    }
}

/// Flags both benchmarks share.
#[derive(Debug, Args)]
pub struct BenchCommon {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Connections (persistent and echo) or concurrent workers (oneshot).
    #[arg(short, long, value_name = "C", default_value_t = 8)]
    pub connections: usize,
    /// Run for this long (unless a count is given).
    #[arg(short, long, value_name = "SECONDS", default_value = "10", value_parser = parse_seconds)]
    pub duration: Duration,
    /// Limit for connecting and for each wait on the server.
    #[arg(long, value_name = "SECONDS", default_value = "5", value_parser = parse_seconds)]
    pub timeout: Duration,
    /// Print the report as JSON on stdout instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also draw the latency distribution and the rate over time to this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Load-generator threads; the server shares the machine, so the default is 1.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub threads: usize,
}

#[derive(Debug, Args)]
pub struct BenchAppArgs {
    #[command(flatten)]
    pub common: BenchCommon,
    /// oneshot: a new connection per request (the guide's way); persistent: long-lived connections.
    #[arg(long, value_enum, default_value_t = ModeArg::Persistent)]
    pub mode: ModeArg,
    /// Requests in flight per persistent connection.
    #[arg(short = 'P', long, value_name = "P", default_value_t = 1)]
    pub pipeline: usize,
    /// Stop after this many requests in all, instead of after --duration.
    #[arg(short = 'n', long, value_name = "N")]
    pub requests: Option<u64>,
    /// Send at this constant total rate (requests/s), measuring latency from
    /// each request's scheduled time (coordinated-omission correction).
    #[arg(long, value_name = "R")]
    pub rate: Option<f64>,
    /// The request: `search:VALUE` or `binary:TEXT`.
    #[arg(long, value_name = "KIND:VALUE", default_value = "search:morpheus", value_parser = parse_request)]
    pub request: Message,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ModeArg {
    Oneshot,
    Persistent,
}

#[derive(Debug, Args)]
pub struct BenchEchoArgs {
    #[command(flatten)]
    pub common: BenchCommon,
    /// Bytes per write.
    #[arg(long, value_name = "BYTES", default_value_t = 65536)]
    pub block_size: usize,
    /// Stop after echoing this many bytes in all, instead of after --duration.
    #[arg(long, value_name = "BYTES")]
    pub bytes: Option<u64>,
}

fn parse_request(text: &str) -> Result<Message, String> {
    match text.split_once(':') {
        Some(("search", value)) => Ok(client_request("search", value)),
        Some(("binary", content)) => Ok(Message::binary(CLIENT_BINARY_TYPE, content.as_bytes().to_vec())),
        _ => Err(format!("{text:?} is not search:VALUE or binary:TEXT")),
    }
}

pub async fn run(args: BenchArgs) -> Result<ExitCode> {
    let report = match args.target {
        BenchTarget::App(args) => run_app(args).await?,
        BenchTarget::Echo(args) => run_echo(args).await?,
    };
    Ok(if report.error_total() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn run_app(args: BenchAppArgs) -> Result<Report> {
    let common = &args.common;
    let (endpoint, _) = common.target.split([], 0)?;
    let mode = match args.mode {
        ModeArg::Oneshot => Mode::Oneshot,
        ModeArg::Persistent => Mode::Persistent,
    };
    let limit = args.requests.map_or(Limit::Duration(common.duration), Limit::Count);
    let mut load = match mode {
        Mode::Oneshot => format!("oneshot, {} workers", common.connections),
        Mode::Persistent => format!(
            "persistent, {} connections, pipeline {}",
            common.connections, args.pipeline
        ),
    };
    load.push_str(&match args.rate {
        Some(rate) => format!(", {rate} requests/s"),
        None => ", as fast as possible".to_string(),
    });
    let config = AppBench {
        endpoint: endpoint.clone(),
        mode,
        connections: common.connections,
        pipeline: args.pipeline,
        limit,
        rate: args.rate,
        request: args.request,
        timeout: common.timeout,
    };
    let counters = Arc::new(Counters::default());
    let started = std::time::Instant::now();
    let progress = progress_bar();
    let (outcome, timeline) = run_sampled(
        counters.clone(),
        started,
        &progress,
        "requests",
        bench::app::run(config, counters),
    )
    .await;
    let outcome = outcome?;
    let seconds = outcome.elapsed.as_secs_f64();
    let report = Report {
        bench: "app",
        target: endpoint.to_string(),
        load,
        elapsed_seconds: seconds,
        requests: Some(outcome.completed),
        requests_per_second: Some(outcome.completed as f64 / seconds),
        bytes: outcome.bytes,
        megabytes_per_second: outcome.bytes as f64 / seconds / 1e6,
        latency_us: LatencySummary::of(&outcome.latency),
        errors: ErrorTable(outcome.errors),
        timeline,
    };
    finish(
        common,
        &report,
        Some(&outcome.latency),
        &report.timeline.per_second,
        "requests/s",
    )?;
    Ok(report)
}

async fn run_echo(args: BenchEchoArgs) -> Result<Report> {
    let common = &args.common;
    let (endpoint, _) = common.target.split([], 0)?;
    let config = EchoBench {
        endpoint: endpoint.clone(),
        connections: common.connections,
        block_size: args.block_size,
        limit: args.bytes.map_or(Limit::Duration(common.duration), Limit::Count),
        timeout: common.timeout,
    };
    let counters = Arc::new(Counters::default());
    let started = std::time::Instant::now();
    let progress = progress_bar();
    let (outcome, timeline) = run_sampled(counters.clone(), started, &progress, "bytes", async {
        Ok::<_, std::convert::Infallible>(bench::echo::run(config, counters).await)
    })
    .await;
    let outcome = outcome?;
    let seconds = outcome.elapsed.as_secs_f64();
    let report = Report {
        bench: "echo",
        target: endpoint.to_string(),
        load: format!("{} connections, {}-byte blocks", common.connections, args.block_size),
        elapsed_seconds: seconds,
        requests: None,
        requests_per_second: None,
        bytes: outcome.echoed,
        megabytes_per_second: outcome.echoed as f64 / seconds / 1e6,
        latency_us: None,
        errors: ErrorTable(outcome.errors),
        timeline,
    };
    let mb_per_second: Vec<f64> = report.timeline.bytes_per_second.iter().map(|b| b / 1e6).collect();
    finish(common, &report, None, &mb_per_second, "MB/s")?;
    Ok(report)
}

/// Runs `work` while sampling the counters for the timeline and the progress line.
async fn run_sampled<T>(
    counters: Arc<Counters>,
    started: std::time::Instant,
    progress: &ProgressBar,
    unit: &str,
    work: impl Future<Output = T>,
) -> (T, Timeline) {
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let sampler = bench::sample(
        counters,
        started,
        async { done_rx.await.unwrap_or(()) },
        |elapsed, completed, errors, bytes| {
            let seconds = elapsed.as_secs_f64().max(1e-9);
            let count = if unit == "bytes" { bytes } else { completed };
            progress.set_message(format!(
                "{count} {unit}, {:.0} {unit}/s, {errors} errors",
                count as f64 / seconds
            ));
        },
    );
    let work = async {
        let result = work.await;
        let _ = done_tx.send(());
        result
    };
    let (result, timeline) = tokio::join!(work, sampler);
    progress.finish_and_clear();
    (result, timeline)
}

/// A live progress line on a terminal's stderr; hidden when stderr is not a terminal.
fn progress_bar() -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}").expect("valid template"));
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Prints the report and draws the plot.
fn finish(
    common: &BenchCommon,
    report: &Report,
    latency: Option<&hdrhistogram::Histogram<u64>>,
    rates: &[f64],
    label: &str,
) -> Result<()> {
    if let Some(path) = &common.plot {
        let title = format!("{} bench: {} ({})", report.bench, report.target, report.load);
        plot::draw(path, &title, latency, &report.timeline, rates, label)?;
    }
    if common.json {
        print_line(&serde_json::to_string_pretty(report)?)?;
    } else {
        print_line(&report.to_string())?;
    }
    Ok(())
}
