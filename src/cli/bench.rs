//! `sockets bench app` and `sockets bench echo`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use sockets::app::{CLIENT_BINARY_TYPE, SEARCH, SearchTable, client_request, respond, result_message};
use sockets::bench::app::{AppBench, Mode};
use sockets::bench::broker::{BrokerBench, Flavor};
use sockets::bench::cpu::{CpuTime, ServerCpu};
use sockets::bench::echo::EchoBench;
use sockets::bench::report::{ErrorTable, HandshakeReport, LatencySummary, Report};
use sockets::bench::{self, Counters, Limit, Timeline, plot};
use sockets::protocol::{DEFAULT_MAX_CONTENT_LEN, Message};

use super::args::{content_length, parse_positive_seconds, parse_rate, whole};
use super::target::TargetArgs;
use super::{UsageError, print_line};

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub target: BenchTarget,
}

#[derive(Debug, Subcommand)]
pub enum BenchTarget {
    /// Load an application server: requests/s, latency percentiles, every
    /// response checked against the answer the protocol requires.
    #[command(override_usage = "sockets bench app [OPTIONS] <HOST> <PORT>\n       \
                                sockets bench app [OPTIONS] --unix <PATH>")]
    App(BenchAppArgs),
    /// Bulk echo throughput: MB/s echoed, every byte checked.
    #[command(override_usage = "sockets bench echo [OPTIONS] <HOST> <PORT>\n       \
                                sockets bench echo [OPTIONS] --unix <PATH>")]
    Echo(BenchEchoArgs),
    /// Publish/subscribe fan-out: messages delivered per second and
    /// delivery latency (publish sent → message received) for N
    /// subscribers of `sockets broker`, or of redis-server with --redis.
    #[command(override_usage = "sockets bench broker [OPTIONS] <HOST> <PORT>\n       \
                                sockets bench broker [OPTIONS] --unix <PATH>")]
    Broker(BenchBrokerArgs),
}

#[derive(Debug, Args)]
pub struct BenchBrokerArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Subscribers, each on a connection of its own (1 to 100000).
    #[arg(short, long, value_name = "N", default_value_t = 100, value_parser = whole(1, 100_000))]
    pub subscribers: u64,
    /// Messages to publish (1 to 1000000000).
    #[arg(short = 'n', long, value_name = "N", default_value_t = 10_000, value_parser = whole(1, 1_000_000_000))]
    pub messages: u64,
    /// Bytes per message (16 to 1048576).
    #[arg(long, value_name = "BYTES", default_value_t = 64, value_parser = whole(16, 1 << 20))]
    pub message_size: u64,
    /// Publishes in flight (sent, not yet answered), at most (1 to 100000).
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = whole(1, 100_000))]
    pub window: u64,
    /// The channel.
    #[arg(long, value_name = "NAME", default_value = "bench")]
    pub channel: String,
    /// The server is redis-server: speak its protocol (SUBSCRIBE, PUBLISH).
    #[arg(long)]
    pub redis: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Load-generator threads (1 to 256).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = whole(1, 256))]
    pub threads: u64,
}

impl BenchTarget {
    pub fn threads(&self) -> usize {
        match self {
            BenchTarget::App(args) => args.common.threads as usize,
            BenchTarget::Echo(args) => args.common.threads as usize,
            BenchTarget::Broker(args) => args.threads as usize,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            BenchTarget::App(_) => "app",
            BenchTarget::Broker(_) => "broker",
            BenchTarget::Echo(_) => "echo",
        }
    }
}

/// Flags both benchmarks share.
#[derive(Debug, Args)]
pub struct BenchCommon {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Run for this long, unless a count is given (more than 0, at most a year).
    #[arg(short, long, value_name = "SECONDS", default_value = "10", value_parser = parse_positive_seconds, allow_negative_numbers = true)]
    pub duration: Duration,
    /// Print the report as JSON on stdout instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also draw the latency distribution and the rate over time to this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Load-generator threads (1 to 256); the server shares the machine, so the default is 1.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = whole(1, 256))]
    pub threads: u64,
    /// The server's process id (on this machine): report its CPU time over
    /// the run and per unit of work (a request, a connection of one
    /// request, or a megabyte echoed), read from /proc/PID/stat.
    #[arg(long, value_name = "PID", value_parser = clap::value_parser!(u32).range(1..))]
    pub server_pid: Option<u32>,
}

impl BenchCommon {
    /// The server's CPU time now, when --server-pid was given.
    fn server_cpu_now(&self) -> Result<Option<CpuTime>> {
        self.server_pid
            .map(|pid| CpuTime::of(pid).with_context(|| format!("--server-pid {pid}: cannot read its CPU time")))
            .transpose()
    }

    /// The server's CPU since `before`, spread over `units`.
    fn server_cpu_since(&self, before: Option<CpuTime>, units: f64, unit: &'static str) -> Result<Option<ServerCpu>> {
        let (Some(pid), Some(before)) = (self.server_pid, before) else {
            return Ok(None);
        };
        let used = CpuTime::of(pid)
            .with_context(|| format!("--server-pid {pid}: the server went away during the run"))?
            .since(before);
        if used.total().is_zero() && units >= 1000.0 {
            warn!(
                "--server-pid {pid} used no CPU while it served the run: is it the server itself, not a wrapper (sudo, sh -c, timeout)?"
            );
        }
        Ok(ServerCpu::of(pid, used, units, unit))
    }
}

#[derive(Debug, Args)]
pub struct BenchAppArgs {
    #[command(flatten)]
    pub common: BenchCommon,
    /// Persistent connections, or (with --mode oneshot) concurrent workers
    /// that each connect per request; 1 to 100000.
    #[arg(short, long, value_name = "C", default_value_t = 8, value_parser = whole(1, 100_000))]
    pub connections: u64,
    /// oneshot: a new connection per request (the guide's way); persistent: long-lived connections.
    #[arg(long, value_enum, default_value_t = ModeArg::Persistent)]
    pub mode: ModeArg,
    /// Requests in flight per persistent connection (1 to 10000).
    #[arg(short = 'P', long, value_name = "P", default_value_t = 1, value_parser = whole(1, 10_000))]
    pub pipeline: u64,
    /// Stop after this many requests in all, instead of after --duration.
    #[arg(short = 'n', long, value_name = "N", value_parser = whole(1, 1 << 50))]
    pub requests: Option<u64>,
    /// Send at this constant total rate (0.001 to 100000000 requests/s);
    /// latency is reported both from when each request was due
    /// (coordinated-omission correction) and from when it was sent.
    #[arg(long, value_name = "R", value_parser = parse_rate, allow_negative_numbers = true)]
    pub rate: Option<f64>,
    /// The request: `search:VALUE` or `binary:TEXT`.
    #[arg(long, value_name = "KIND:VALUE", default_value = "search:morpheus", value_parser = parse_request)]
    pub request: Message,
    /// The answer a search must get [default: from the server's built-in table].
    #[arg(long, value_name = "TEXT", conflicts_with = "data")]
    pub expect: Option<String>,
    /// The search table the server was started with (its --data FILE), to know the right answers.
    #[arg(long, value_name = "FILE")]
    pub data: Option<PathBuf>,
    /// Largest response content accepted (0 to 1073741824).
    #[arg(
        long,
        value_name = "BYTES",
        default_value_t = DEFAULT_MAX_CONTENT_LEN as u64,
        value_parser = content_length()
    )]
    pub max_content_length: u64,
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
    /// Connections, each writing blocks and reading the echo at once (1 to 100000).
    #[arg(short, long, value_name = "C", default_value_t = 8, value_parser = whole(1, 100_000))]
    pub connections: u64,
    /// Bytes per write (1 to 16777216).
    #[arg(long, value_name = "BYTES", default_value_t = 65536, value_parser = whole(1, 1 << 24))]
    pub block_size: u64,
    /// Stop after echoing this many bytes in all, instead of after --duration.
    #[arg(long, value_name = "BYTES", value_parser = whole(1, 1 << 50))]
    pub bytes: Option<u64>,
}

fn parse_request(text: &str) -> Result<Message, String> {
    match text.split_once(':') {
        Some((SEARCH, value)) => Ok(client_request(SEARCH, value)),
        Some(("binary", content)) => Ok(Message::binary(CLIENT_BINARY_TYPE, content.as_bytes().to_vec())),
        _ => Err(format!("'{text}' is not search:VALUE or binary:TEXT")),
    }
}

pub async fn run(args: BenchArgs) -> Result<ExitCode> {
    let stop = CancellationToken::new();
    stop_on_interrupt(stop.clone());
    let report = match args.target {
        BenchTarget::App(args) => run_app(args, stop).await?,
        BenchTarget::Echo(args) => run_echo(args, stop).await?,
        BenchTarget::Broker(args) => return run_broker(args, stop).await,
    };
    Ok(if report.error_total() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn run_broker(args: BenchBrokerArgs, stop: CancellationToken) -> Result<ExitCode> {
    let (endpoint, _) = args.target.split([], 0)?;
    let config = BrokerBench {
        connector: args.target.connector(endpoint)?,
        flavor: if args.redis { Flavor::Redis } else { Flavor::Ours },
        subscribers: args.subscribers as usize,
        messages: args.messages,
        message_size: args.message_size as usize,
        window: args.window as usize,
        channel: args.channel,
    };
    let report = bench::broker::run(config, stop).await?;
    if args.json {
        print_line(&serde_json::to_string_pretty(&report)?)?;
    } else {
        print_line(report.to_string().trim_end())?;
    }
    Ok(if report.lost == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The first Ctrl-C ends the run early (the report still prints); the second exits.
fn stop_on_interrupt(stop: CancellationToken) {
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            super::say("interrupted: finishing the report (Ctrl-C again to quit at once)");
            stop.cancel();
        }
        if tokio::signal::ctrl_c().await.is_ok() {
            std::process::exit(130);
        }
    });
}

/// The response the protocol requires for `request`.
fn expected_response(args: &BenchAppArgs) -> Result<Message> {
    if let Some(answer) = &args.expect {
        if !args.request.is_json() {
            return Err(UsageError(
                "--expect applies to search requests only (binary requests follow the first-10-bytes rule)".into(),
            )
            .into());
        }
        return Ok(result_message(answer));
    }
    let table = match &args.data {
        Some(path) => SearchTable::load(path)?,
        None => SearchTable::builtin(),
    };
    Ok(respond(&table, &args.request).0)
}

async fn run_app(args: BenchAppArgs, stop: CancellationToken) -> Result<Report> {
    let common = &args.common;
    let (endpoint, _) = common.target.split([], 0)?;
    let mode = match args.mode {
        ModeArg::Oneshot => Mode::Oneshot,
        ModeArg::Persistent => Mode::Persistent,
    };
    if mode == Mode::Oneshot && args.pipeline != 1 {
        return Err(UsageError(
            "--pipeline applies to --mode persistent only (a oneshot connection carries one request)".into(),
        )
        .into());
    }
    check_plot_path(common)?;
    let limit = args.requests.map_or(Limit::Duration(common.duration), Limit::Count);
    let mut load = match mode {
        Mode::Oneshot => format!("oneshot, {} workers", args.connections),
        Mode::Persistent => format!(
            "persistent, {} connections, pipeline {}",
            args.connections, args.pipeline
        ),
    };
    load.push_str(&match args.rate {
        Some(rate) => format!(", {rate} requests/s"),
        None => ", as fast as possible".to_string(),
    });
    let connector = common.target.connector(endpoint.clone())?;
    let is_tls = connector.is_tls();
    let config = AppBench {
        connector,
        mode,
        connections: args.connections as usize,
        pipeline: args.pipeline as usize,
        limit,
        rate: args.rate,
        expected: expected_response(&args)?,
        request: args.request,
        max_content_len: args.max_content_length as usize,
    };
    let counters = Arc::new(Counters::default());
    let cpu_before = common.server_cpu_now()?;
    let started = std::time::Instant::now();
    let progress = progress_bar();
    let (outcome, timeline) = run_sampled(
        counters.clone(),
        started,
        &progress,
        "requests",
        bench::app::run(config, counters, stop),
    )
    .await;
    let outcome = outcome?;
    if let Some(wrong) = &outcome.first_wrong {
        warn!("wrong answer: {wrong}");
    }
    let seconds = outcome.elapsed.as_secs_f64();
    let unit = if mode == Mode::Oneshot { "connection" } else { "request" };
    let server_cpu = common.server_cpu_since(cpu_before, (outcome.completed + outcome.probe_requests) as f64, unit)?;
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
        latency_uncorrected_us: outcome.latency_uncorrected.as_ref().and_then(LatencySummary::of),
        unanswered: Some(outcome.unanswered),
        retried: Some(outcome.retried),
        probe_requests: Some(outcome.probe_requests),
        errors: ErrorTable(outcome.errors),
        interrupted: outcome.interrupted,
        tls_handshakes: is_tls.then(|| HandshakeReport {
            full: outcome.handshakes.full,
            resumed: outcome.handshakes.resumed,
            per_second: (outcome.handshakes.full + outcome.handshakes.resumed) as f64 / seconds,
        }),
        server_cpu,
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

async fn run_echo(args: BenchEchoArgs, stop: CancellationToken) -> Result<Report> {
    let common = &args.common;
    let (endpoint, _) = common.target.split([], 0)?;
    check_plot_path(common)?;
    let config = EchoBench {
        connector: common.target.connector(endpoint.clone())?,
        connections: args.connections as usize,
        block_size: args.block_size as usize,
        limit: args.bytes.map_or(Limit::Duration(common.duration), Limit::Count),
    };
    let counters = Arc::new(Counters::default());
    let cpu_before = common.server_cpu_now()?;
    let started = std::time::Instant::now();
    let progress = progress_bar();
    let (outcome, timeline) = run_sampled(counters.clone(), started, &progress, "bytes", async {
        Ok::<_, std::convert::Infallible>(bench::echo::run(config, counters, stop).await)
    })
    .await;
    let outcome = outcome?;
    let seconds = outcome.elapsed.as_secs_f64();
    let server_cpu = common.server_cpu_since(cpu_before, outcome.echoed as f64 / 1e6, "MB")?;
    let report = Report {
        bench: "echo",
        target: endpoint.to_string(),
        load: format!("{} connections, {}-byte blocks", args.connections, args.block_size),
        elapsed_seconds: seconds,
        requests: None,
        requests_per_second: None,
        bytes: outcome.echoed,
        megabytes_per_second: outcome.echoed as f64 / seconds / 1e6,
        latency_us: None,
        latency_uncorrected_us: None,
        unanswered: None,
        retried: None,
        probe_requests: None,
        errors: ErrorTable(outcome.errors),
        interrupted: outcome.interrupted,
        tls_handshakes: None,
        server_cpu,
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

/// Checks, before a run, that the plot can be written where asked: a run's
/// measurements must not be lost to a typo in a path.
fn check_plot_path(common: &BenchCommon) -> Result<()> {
    if let Some(path) = &common.plot {
        std::fs::File::create(path).with_context(|| format!("cannot write the plot to {}", path.display()))?;
    }
    Ok(())
}

/// Prints the report, then draws the plot.
fn finish(
    common: &BenchCommon,
    report: &Report,
    latency: Option<&hdrhistogram::Histogram<u64>>,
    rates: &[f64],
    label: &str,
) -> Result<()> {
    if common.json {
        print_line(&serde_json::to_string_pretty(report)?)?;
    } else {
        print_line(&report.to_string())?;
    }
    if let Some(path) = &common.plot {
        let title = format!("{} bench: {} ({})", report.bench, report.target, report.load);
        plot::draw(path, &title, latency, &report.timeline, rates, label)?;
    }
    Ok(())
}
