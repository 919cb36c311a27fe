//! Command-line interface: clap types and one `run` per subcommand. Only this
//! module (and `main.rs`) knows about argument parsing, signals and exit codes.

mod app_client;
mod app_server;
mod args;
mod bench;
mod broker;
mod cert;
mod check;
mod connect;
mod echo_client;
mod echo_server;
mod fan_out;
pub mod logging;
mod multiconn_client;
mod proxy;
mod resolve;
mod server_args;
pub use server_args::remember_passed_sockets;
mod signals;
mod target;

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{ArgAction, CommandFactory, Parser, Subcommand};
use sockets::escape::Terminal;

/// Client/server socket programs from the classic socket-programming guide,
/// built for real use: echo, multi-connection and application tiers.
#[derive(Debug, Parser)]
#[command(name = "sockets", version, propagate_version = true)]
pub struct Cli {
    /// More log output on stderr: -v for debug, -vv for trace with the bytes
    /// of requests and responses (RUST_LOG, when set, wins).
    #[arg(short, long, action = ArgAction::Count, global = true, help_heading = "Global options")]
    pub verbose: u8,
    /// Less log output on stderr: -q for warnings and errors, -qq for errors only.
    #[arg(
        short,
        long,
        action = ArgAction::Count,
        global = true,
        conflicts_with = "verbose",
        help_heading = "Global options"
    )]
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
    #[command(after_long_help = server_args::PRODUCTION_HELP)]
    AppServer(app_server::AppServerArgs),
    /// A publish/subscribe broker over the application protocol: subscribe,
    /// unsubscribe and publish actions (and search and binary requests, as
    /// app-server answers them).
    ///
    /// Prints the address it listens on as the first line of stdout. A
    /// subscriber that falls too far behind (--subscriber-limit) is
    /// disconnected; nobody else waits for it. See docs/PROTOCOL.md §9.
    #[command(after_long_help = server_args::PRODUCTION_HELP)]
    Broker(broker::BrokerArgs),
    /// Send one application request and print the response, as the guide's client does.
    ///
    /// ACTION `search` sends a JSON search request for VALUE; any other action
    /// sends a binary request whose content is ACTION and VALUE joined.
    /// Exits 0 for an answer, 1 for an `Error: ...` result or any failure.
    #[command(
        override_usage = "sockets app-client [OPTIONS] <HOST> <PORT> <ACTION> <VALUE>\n       \
                                sockets app-client [OPTIONS] --unix <PATH> <ACTION> <VALUE>"
    )]
    AppClient(app_client::AppClientArgs),
    /// Echo every byte back to its sender, for any number of clients at once.
    ///
    /// Streams over TCP or a Unix socket (--unix), or datagrams (--udp) over
    /// UDP or a Unix datagram socket. Prints the address it listens on as the
    /// first line of stdout.
    #[command(after_long_help = server_args::PRODUCTION_HELP)]
    EchoServer(echo_server::EchoServerArgs),
    /// Send a message to an echo server and check that the same bytes come back.
    ///
    /// Prints `Received b'...'` as the guide's client does; exits 0 only if
    /// the echo matched.
    #[command(override_usage = "sockets echo-client [OPTIONS] <HOST> <PORT> [MESSAGE]\n       \
                                sockets echo-client [OPTIONS] --unix <PATH> [MESSAGE]")]
    EchoClient(echo_client::EchoClientArgs),
    /// The guide's multi-connection server: an echo server for many clients.
    #[command(after_long_help = server_args::PRODUCTION_HELP)]
    MulticonnServer(echo_server::EchoServerArgs),
    /// Open NUM_CONNECTIONS connections at once; each sends the guide's two
    /// messages and reads every byte back.
    ///
    /// Prints each connection's progress as the guide does, then a summary;
    /// exits non-zero if any connection failed or got back different bytes.
    #[command(
        override_usage = "sockets multiconn-client [OPTIONS] <HOST> <PORT> <NUM_CONNECTIONS>\n       \
                                sockets multiconn-client [OPTIONS] --unix <PATH> <NUM_CONNECTIONS>"
    )]
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
    /// What the server sends is written as it comes, unescaped, as netcat does.
    #[command(override_usage = "sockets connect [OPTIONS] <HOST> <PORT>\n       \
                                sockets connect [OPTIONS] --unix <PATH>")]
    Connect(connect::ConnectArgs),
    /// Load generator: drive a server with many connections and report
    /// throughput, latency percentiles and errors by kind.
    ///
    /// The report goes to stdout (text, or JSON with --json); exits 1 if any
    /// request failed or got a wrong answer. Ctrl-C ends the run early and
    /// still prints the report.
    Bench(bench::BenchArgs),
    /// Check a server of the application protocol (ours, the guide's,
    /// anyone's) against a catalogue of cases, and print a table of verdicts.
    ///
    /// Exits 0 only if every required case of the profile passes. Cases
    /// are listed with --list and described in docs/CHECKS.md.
    #[command(override_usage = "sockets check [OPTIONS] <HOST> <PORT>\n       \
                                sockets check [OPTIONS] --unix <PATH>")]
    Check(check::CheckArgs),
    /// Relay clients to a server and show the traffic: each message of the
    /// protocol decoded both ways (or a hex dump of any protocol with --raw).
    ///
    /// Prints the address it listens on first, then a block per message:
    /// time, connection, direction, header, content (JSON pretty-printed,
    /// binary as a hex dump), with every control character escaped.
    /// --record keeps the messages for `sockets replay`; --pcap writes them
    /// for Wireshark (contrib/wireshark/ has a dissector). Ctrl-C stops it.
    Proxy(proxy::ProxyArgs),
    /// Send the client side of a recording (`sockets proxy --record`) to a
    /// server and report every response that differs from the recorded one.
    ///
    /// Exits 0 when every response is as recorded.
    Replay(proxy::ReplayArgs),
    /// Make a TLS certificate and key for development and tests:
    /// self-signed, a CA, or signed by a CA made earlier.
    ///
    /// NAMEs are DNS names or IP addresses, which clients verify.
    Cert(cert::CertArgs),
}

impl Command {
    /// Worker threads the subcommand wants; `None` means one per core.
    fn worker_threads(&self) -> Option<usize> {
        match self {
            // Connections are served on cores of their own (server::run_on_cores);
            // this runtime has signals, metrics and reloads to see to.
            Command::AppServer(_) | Command::Broker(_) => Some(1),
            Command::EchoServer(_) | Command::MulticonnServer(_) => Some(1),
            Command::AppClient(_) | Command::Resolve(_) | Command::Connect(_) => Some(1),
            Command::EchoClient(_) | Command::MulticonnClient(_) => None,
            Command::Bench(args) => Some(args.target.threads()),
            Command::Cert(_) | Command::Check(_) | Command::Replay(_) => Some(1),
            Command::Proxy(_) => None,
        }
    }

    /// The subcommand's names, for usage errors (`["bench", "app"]`).
    pub fn path(&self) -> Vec<&'static str> {
        match self {
            Command::AppServer(_) => vec!["app-server"],
            Command::Broker(_) => vec!["broker"],
            Command::AppClient(_) => vec!["app-client"],
            Command::EchoServer(_) => vec!["echo-server"],
            Command::EchoClient(_) => vec!["echo-client"],
            Command::MulticonnServer(_) => vec!["multiconn-server"],
            Command::MulticonnClient(_) => vec!["multiconn-client"],
            Command::Resolve(_) => vec!["resolve"],
            Command::Connect(_) => vec!["connect"],
            Command::Bench(args) => vec!["bench", args.target.name()],
            Command::Cert(_) => vec!["cert"],
            Command::Check(_) => vec!["check"],
            Command::Proxy(_) => vec!["proxy"],
            Command::Replay(_) => vec!["replay"],
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
            Command::Broker(args) => broker::run(args).await,
            Command::AppClient(args) => app_client::run(args).await,
            Command::EchoServer(args) | Command::MulticonnServer(args) => echo_server::run(args).await,
            Command::EchoClient(args) => echo_client::run(args).await,
            Command::MulticonnClient(args) => multiconn_client::run(args).await,
            Command::Resolve(args) => resolve::run(args).await,
            Command::Connect(args) => connect::run(args).await,
            Command::Bench(args) => bench::run(args).await,
            Command::Cert(args) => cert::run(args).await,
            Command::Check(args) => check::run(args).await,
            Command::Proxy(args) => proxy::run(args).await,
            Command::Replay(args) => proxy::replay_run(args).await,
        }
    });
    // Don't wait for a blocking read of standard input that will never finish.
    runtime.shutdown_background();
    result
}

/// A command line that parses but does not make sense (a bad positional
/// that clap could not check); reported like clap's own errors, exit 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Reports a usage error the way clap reports its own, with the
/// subcommand's usage, and exits with status 2.
pub fn exit_with_usage_error(path: &[&str], error: &UsageError) -> ! {
    let mut command = Cli::command();
    command.build();
    let mut sub = &mut command;
    for name in path {
        sub = sub.find_subcommand_mut(name).expect("the path names a subcommand");
    }
    sub.error(clap::error::ErrorKind::ValueValidation, &error.0).exit()
}

/// Writes one line to stderr, escaping control characters (an error may
/// quote a peer) and ignoring a stderr that cannot be written: `eprintln!`
/// panics then, and a server whose log pipe broke must keep serving, and a
/// client must still exit with its status.
pub fn say(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{}", Terminal(line));
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
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Every flag of every subcommand parses into its field (a value parser
    /// whose type differs from its field's fails here, not at a user's prompt).
    #[test]
    fn every_flag_parses() {
        let lines: [&[&str]; 10] = [
            &[
                "app-server",
                "127.0.0.1",
                "0",
                "--max-connections",
                "5",
                "--idle-timeout",
                "1.5",
                "--request-timeout",
                "0",
                "--shutdown-timeout",
                "2",
                "--backlog",
                "10",
                "--threads",
                "1",
                "--max-content-length",
                "100",
                "--max-buffered-bytes",
                "5000",
                "--one-shot",
                "--data",
                "t.json",
                "--tls-cert",
                "c",
                "--tls-key",
                "k",
                "--tls-client-ca",
                "ca",
                "--tls-min-version",
                "1.3",
                "--tls-handshake-timeout",
                "3",
            ],
            &[
                "echo-server",
                "-U",
                "/s",
                "--unix-mode",
                "600",
                "-u",
                "--peer-rate",
                "5",
            ],
            &["multiconn-server", "::1", "9"],
            &[
                "app-client",
                "h",
                "1",
                "search",
                "x",
                "-w",
                "2",
                "--max-content-length",
                "9",
                "--tls-ca",
                "c",
                "--tls-server-name",
                "n",
                "--tls-cert",
                "c",
                "--tls-key",
                "k",
                "--tls-min-version",
                "1.2",
                "--tls-no-resume",
            ],
            &[
                "echo-client",
                "h",
                "1",
                "-u",
                "--attempts",
                "2",
                "--buffer-size",
                "10",
                "-w",
                "0",
            ],
            &[
                "multiconn-client",
                "h",
                "1",
                "3",
                "--message",
                "m",
                "--summary",
                "--insecure",
            ],
            &["connect", "-U", "/s", "-u", "--linger", "0.5"],
            &[
                "bench",
                "app",
                "h",
                "1",
                "-c",
                "2",
                "-P",
                "3",
                "-n",
                "4",
                "--rate",
                "10",
                "-d",
                "1",
                "--json",
                "--threads",
                "2",
                "--request",
                "binary:x",
                "--expect",
                "y",
                "--max-content-length",
                "10",
            ],
            &[
                "bench",
                "echo",
                "h",
                "1",
                "-c",
                "2",
                "--block-size",
                "10",
                "--bytes",
                "100",
                "--tls",
            ],
            &[
                "cert", "a", "b", "--cert", "c", "--key", "k", "--days", "2", "--ca", "--force",
            ],
        ];
        for line in lines {
            let argv = std::iter::once("sockets").chain(line.iter().copied());
            if let Err(error) = Cli::try_parse_from(argv) {
                panic!("{line:?}: {error}");
            }
        }
    }
}
