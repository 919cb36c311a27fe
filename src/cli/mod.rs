//! Command-line interface: clap types and one `run` per subcommand. Only this
//! module (and `main.rs`) knows about argument parsing and exit codes.

mod app_client;
mod app_server;
mod bench;
mod connect;
mod echo_client;
mod echo_server;
pub mod logging;
mod multiconn_client;
mod resolve;
mod server_args;
mod target;

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{ArgAction, Parser, Subcommand};

/// Client/server socket programs from the classic socket-programming guide,
/// built for real use: echo, multi-connection and application tiers.
#[derive(Debug, Parser)]
#[command(name = "sockets", version, propagate_version = true)]
pub struct Cli {
    /// More log output on stderr: -v for debug, -vv for trace (RUST_LOG, when set, wins).
    #[arg(short, long, action = ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Less log output on stderr: -q for warnings and errors, -qq for errors only.
    #[arg(short, long, action = ArgAction::Count, global = true, conflicts_with = "verbose")]
    pub quiet: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the guide's application protocol: search requests and binary requests.
    ///
    /// Prints the address it listens on as the first line of stdout; logs go
    /// to stderr. Ctrl-C or SIGTERM stops accepting, answers every request
    /// already received, and exits 0.
    AppServer(app_server::AppServerArgs),
    /// Send one application request and print the response, as the guide's client does.
    ///
    /// ACTION `search` sends a JSON search request for VALUE; any other action
    /// sends a binary request whose content is ACTION and VALUE joined.
    AppClient(app_client::AppClientArgs),
    /// Echo every byte back to its sender, for any number of clients at once.
    ///
    /// Streams over TCP or a Unix socket (--unix), or datagrams (--udp) over
    /// UDP or a Unix datagram socket. Prints the address it listens on as the
    /// first line of stdout.
    EchoServer(echo_server::EchoServerArgs),
    /// Send a message to an echo server and check that the same bytes come back.
    ///
    /// Prints `Received b'...'` as the guide's client does; exits 0 only if
    /// the echo matched.
    EchoClient(echo_client::EchoClientArgs),
    /// The guide's multi-connection server: an echo server for many clients.
    MulticonnServer(echo_server::EchoServerArgs),
    /// Open NUM_CONNECTIONS connections at once; each sends the guide's two
    /// messages and reads every byte back.
    ///
    /// Prints each connection's progress as the guide does, then a summary;
    /// exits non-zero if any connection failed or got back different bytes.
    MulticonnClient(multiconn_client::MulticonnClientArgs),
    /// Look up a name as getaddrinfo sees it (or an address's name with --reverse).
    ///
    /// One line per result: family, socket type, protocol, canonical name, address.
    Resolve(resolve::ResolveArgs),
    /// Interactive client, like netcat: standard input to the socket, the socket
    /// to standard output.
    ///
    /// When input ends, the sending side is shut down and output continues
    /// until the server closes. Works in pipes: `printf 'hi' | sockets connect HOST PORT`.
    Connect(connect::ConnectArgs),
    /// Load generator: drive a server with many connections and report
    /// throughput, latency percentiles and errors by kind.
    ///
    /// The report goes to stdout (text, or JSON with --json); exits 1 if any
    /// request failed or got a wrong answer.
    Bench(bench::BenchArgs),
}

impl Command {
    /// Worker threads the subcommand wants; `None` means one per core.
    fn worker_threads(&self) -> Option<usize> {
        match self {
            Command::AppServer(args) => args.server.threads,
            Command::EchoServer(args) | Command::MulticonnServer(args) => args.server.threads,
            Command::AppClient(_) | Command::Resolve(_) | Command::Connect(_) => Some(1),
            Command::EchoClient(_) | Command::MulticonnClient(_) => None,
            Command::Bench(args) => Some(args.target.threads()),
        }
    }
}

/// Runs the parsed command line on a Tokio runtime sized for it.
pub fn run(cli: Cli) -> Result<ExitCode> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = cli.command.worker_threads() {
        builder.worker_threads(threads.max(1));
    }
    let runtime = builder.enable_all().build().context("starting the async runtime")?;
    let result = runtime.block_on(async move {
        match cli.command {
            Command::AppServer(args) => app_server::run(args).await,
            Command::AppClient(args) => app_client::run(args).await,
            Command::EchoServer(args) | Command::MulticonnServer(args) => echo_server::run(args).await,
            Command::EchoClient(args) => echo_client::run(args).await,
            Command::MulticonnClient(args) => multiconn_client::run(args).await,
            Command::Resolve(args) => resolve::run(args).await,
            Command::Connect(args) => connect::run(args).await,
            Command::Bench(args) => bench::run(args).await,
        }
    });
    // Don't wait for a blocking read of standard input that will never finish.
    runtime.shutdown_background();
    result
}

/// A command line that parses but does not make sense; exits with status 2 like clap's own errors.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (see --help)", self.0)
    }
}

impl std::error::Error for UsageError {}

/// Parses a duration given in seconds, with decimals allowed (`60`, `0.5`).
fn parse_seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("{text:?} is not a non-negative number of seconds"))
}

/// Writes one line to stdout, reporting (rather than panicking on) a closed pipe.
fn print_line(line: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .context("writing to stdout")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_parse_with_decimals_and_reject_nonsense() {
        assert_eq!(parse_seconds("60"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_seconds("0.25"), Ok(Duration::from_millis(250)));
        assert!(parse_seconds("-1").unwrap_err().contains("non-negative"));
        assert!(parse_seconds("soon").unwrap_err().contains("not a number"));
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
