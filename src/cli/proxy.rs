//! `sockets proxy` and `sockets replay`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use tokio::sync::mpsc;
use tracing::info;

use sockets::protocol::DEFAULT_MAX_CONTENT_LEN;
use sockets::proxy::observe::{Observer, View};
use sockets::proxy::pcap::PcapWriter;
use sockets::proxy::record::{self, Recorder};
use sockets::proxy::replay::{ReplayConfig, replay};
use sockets::proxy::{EVENT_QUEUE, ProxyHandler};
use sockets::server::stage::Stage;
use sockets::server::{self, ServerConfig};
use sockets::transport::tls::ClientTls;
use sockets::transport::unix::SocketFileOptions;
use sockets::transport::{Connector, Endpoint, ListenAddr, ListenOptions, Listener};

use super::args::{Limit, TlsVersion, content_length, parse_limit};
use super::print_line;
use super::server_args::{ServerTlsArgs, announce};
use super::target::TargetArgs;

#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// Where to listen: HOST:PORT ([::1]:PORT for IPv6; port 0 picks one,
    /// printed as stdout's first line) or unix:PATH.
    #[arg(value_name = "LISTEN")]
    pub listen: String,
    /// The server to relay to: HOST:PORT or unix:PATH.
    #[arg(value_name = "TARGET")]
    pub target: String,
    /// Show every chunk as a hex dump, whatever the protocol, instead of
    /// decoding messages.
    #[arg(long, conflicts_with = "no_decode")]
    pub raw: bool,
    /// Do not look at the bytes: show only connections opening and closing.
    /// Between plain sockets the kernel then moves the bytes (splice),
    /// never copied through this process.
    #[arg(long)]
    pub no_decode: bool,
    /// Record every message with its direction and time, for `sockets replay`.
    #[arg(long, value_name = "FILE", conflicts_with = "raw")]
    pub record: Option<PathBuf>,
    /// Write the traffic as a pcap file for Wireshark or tshark.
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<PathBuf>,
    /// Largest message decoded (0 to 1073741824); a larger one is shown raw.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_CONTENT_LEN as u64, value_parser = content_length())]
    pub max_content_length: u64,
    /// Limit on connecting to the target (0 = no limit).
    #[arg(short = 'w', long, value_name = "SECONDS", default_value = "10", value_parser = parse_limit, allow_negative_numbers = true)]
    pub timeout: Limit,
    #[command(flatten, next_help_heading = "TLS towards clients")]
    pub tls: ServerTlsArgs,
    #[command(flatten, next_help_heading = "TLS towards the target")]
    pub target_tls: TargetTlsArgs,
}

/// TLS towards the proxy's target.
#[derive(Debug, Args)]
pub struct TargetTlsArgs {
    /// Speak TLS to the target, verifying it against the system's roots.
    #[arg(long)]
    pub target_tls: bool,
    /// Trust this CA or self-signed certificate (PEM) for the target; implies --target-tls.
    #[arg(long, value_name = "FILE")]
    pub target_tls_ca: Option<PathBuf>,
    /// The name to verify the target as [default: its host, localhost for unix:].
    #[arg(long, value_name = "NAME")]
    pub target_tls_server_name: Option<String>,
    /// Do not verify the target's certificate (tests only; warns).
    #[arg(long)]
    pub target_insecure: bool,
}

impl TargetTlsArgs {
    fn settings(&self) -> Option<ClientTls> {
        let wanted = self.target_tls
            || self.target_tls_ca.is_some()
            || self.target_tls_server_name.is_some()
            || self.target_insecure;
        wanted.then(|| ClientTls {
            ca: self.target_tls_ca.clone(),
            server_name: self.target_tls_server_name.clone(),
            identity: None,
            insecure: self.target_insecure,
            min_version: TlsVersion::Tls12.into(),
            resume: true,
        })
    }
}

/// `HOST:PORT`, `[V6]:PORT` or `unix:PATH`, as (host, port) or a path.
fn split_address(text: &str, what: &str) -> Result<Result<(String, u16), PathBuf>> {
    if let Some(path) = text.strip_prefix("unix:") {
        return Ok(Err(PathBuf::from(path)));
    }
    let (host, port) = text
        .rsplit_once(':')
        .with_context(|| format!("{what} {text:?}: expected HOST:PORT, [::1]:PORT or unix:PATH"))?;
    let port = super::args::parse_port(port).map_err(|why| anyhow::anyhow!("{what} {text:?}: {why}"))?;
    Ok(Ok((sockets::transport::strip_brackets(host).to_owned(), port)))
}

pub async fn run(args: ProxyArgs) -> Result<ExitCode> {
    let listen = match split_address(&args.listen, "LISTEN")? {
        Ok((host, port)) => ListenAddr::Tcp { host, port },
        Err(path) => ListenAddr::Unix {
            path,
            options: SocketFileOptions::default(),
        },
    };
    let target = match split_address(&args.target, "TARGET")? {
        Ok((host, port)) => Endpoint::Inet { host, port },
        Err(path) => Endpoint::Unix(path),
    };
    let mut connector = Connector::new(target, args.timeout.0);
    if let Some(tls) = args.target_tls.settings() {
        if tls.insecure {
            super::say("warning: --target-insecure: the target's certificate is not verified");
        }
        connector = connector.with_tls(&tls)?;
    }
    let view = match (args.raw, args.no_decode) {
        (true, _) => View::Raw,
        (_, true) => View::Quiet,
        _ => View::Decode,
    };
    let mut observer = Observer::new(view, Box::new(std::io::stdout()), args.max_content_length as usize);
    if let Some(path) = &args.record {
        observer.record = Some(Recorder::create(path).with_context(|| format!("--record {}", path.display()))?);
    }
    if let Some(path) = &args.pcap {
        observer.pcap = Some(PcapWriter::create(path).with_context(|| format!("--pcap {}", path.display()))?);
    }
    let watch_data = view != View::Quiet || args.record.is_some() || args.pcap.is_some();
    let tls = args.tls.settings().map(|tls| tls.acceptor()).transpose()?;
    let config = ServerConfig {
        stage: Stage::with_tls(tls),
        ..ServerConfig::default()
    };
    let listener = Listener::bind(&listen, ListenOptions::default()).await?;
    let shown = listener.shown().context("reading the bound address")?;
    let (events, receiver) = mpsc::channel(EVENT_QUEUE);
    let observed = std::thread::spawn(move || observer.run(receiver));
    let (shutdown, _hangup) = announce(&[shown], None);
    info!("Relaying to {}", connector.endpoint());
    let handler = ProxyHandler::new(connector, events, watch_data);
    server::run(vec![listener], config, Arc::new(handler), shutdown).await;
    // The last events are written out; connections abandoned at the
    // shutdown timeout may hold the channel open, so the wait is bounded.
    let joined = tokio::task::spawn_blocking(move || observed.join());
    let _ = tokio::time::timeout(Duration::from_secs(2), joined).await;
    info!("Proxy stopped");
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
#[command(
    override_usage = "sockets replay [OPTIONS] <FILE> <HOST> <PORT>\n       sockets replay [OPTIONS] <FILE> --unix <PATH>"
)]
pub struct ReplayArgs {
    /// A recording made with `sockets proxy --record FILE`.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    #[command(flatten)]
    pub target: TargetArgs,
    /// Keep the recording's timing instead of sending as fast as the server answers.
    #[arg(long)]
    pub realtime: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Largest response read (0 to 1073741824).
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_CONTENT_LEN as u64, value_parser = content_length())]
    pub max_content_length: u64,
}

pub async fn replay_run(args: ReplayArgs) -> Result<ExitCode> {
    let lines = record::read(&args.file).map_err(anyhow::Error::msg)?;
    let (endpoint, _) = args.target.split([], 0)?;
    let config = ReplayConfig {
        connector: args.target.connector(endpoint.clone())?,
        realtime: args.realtime,
        max_content_len: args.max_content_length as usize,
    };
    let report = replay(&lines, &config).await.map_err(anyhow::Error::msg)?;
    if args.json {
        print_line(&serde_json::to_string_pretty(&report)?)?;
    } else {
        for difference in &report.differences {
            print_line(&format!("differs: {}", sockets::escape::Terminal(difference)))?;
        }
        if report.more_differences > 0 {
            print_line(&format!("... and {} more differences", report.more_differences))?;
        }
        print_line(&format!(
            "replayed {} connection(s) to {endpoint}: {} requests sent; {} of {} responses as recorded",
            report.connections, report.requests, report.matched, report.responses
        ))?;
    }
    Ok(if report.all_matched() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
