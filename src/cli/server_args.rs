//! Flags every server shares, and the start-up steps that go with them.

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{Context, Result};
use clap::Args;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use sockets::server::access::{AccessList, AddressRange};
use sockets::server::budget::{DEFAULT_MAX_BUFFERED_BYTES, InputBudget};
use sockets::server::stage::{DEFAULT_HANDSHAKE_TIMEOUT, ProxyPolicy, Stage};
use sockets::server::{
    self, ConnectionHandler, ConnectionLimits, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_SHUTDOWN_TIMEOUT,
    MAX_MAX_CONNECTIONS, ServerConfig,
};
use sockets::transport::activation::{self, ActivationError};
use sockets::transport::listen::DEFAULT_BACKLOG;
use sockets::transport::tls::ServerTls;
use sockets::transport::unix::SocketFileOptions;
use sockets::transport::{self, DEFAULT_HOST, DEFAULT_PORT, ListenAddr, ListenOptions, Listener, bind_tcp};
use tokio::net::TcpListener;

use super::args::{Limit, TlsVersion, parse_limit, parse_mode, parse_port, whole};
use super::print_line;
use super::signals::{Drain, cancel_on_signal, catch_hangup, reload_on_hangup};
use tokio::signal::unix::Signal;

/// The end of `--help` for every stream server.
pub const PRODUCTION_HELP: &str = "\
Running in production:
  Behind HAProxy:  --proxy-protocol --proxy-from 10.0.1.5  (HAProxy: send-proxy-v2; health checks
                   with check-send-proxy are served as its own connections). Logs, metrics and
                   --allow/--deny then see each client's address, not the balancer's.
                   --drain-delay 5: on SIGTERM, fail its health checks for 5 s before closing.
  Several instances on one port:  --reuse-port in each; SIGTERM one and the others take over.
  Metrics:         --metrics 127.0.0.1:9464, then GET /metrics (Prometheus text, or OpenMetrics).
  Who may connect: --allow 10.0.0.0/8 --deny 10.0.66.0/24 (deny wins).
  Reload:          SIGHUP re-reads --data and the TLS certificate; a broken file keeps the old one.
  systemd:         started with socket activation (LISTEN_FDS), serves the sockets it is given.
  Examples: contrib/haproxy/haproxy.cfg, contrib/systemd/; the README's \"Running in production\".";

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Address to listen on: an IP address or name; "" for every IPv4
    /// interface, "::" for every interface (IPv4 too, where the OS allows).
    #[arg(value_name = "HOST", default_value = DEFAULT_HOST)]
    pub host: String,
    /// Port to listen on; 0 picks a free one (printed on stdout).
    #[arg(value_name = "PORT", default_value_t = DEFAULT_PORT, value_parser = parse_port)]
    pub port: u16,
    /// Listen on this Unix socket path instead of HOST PORT. A stale socket
    /// file is replaced, a live one refused; the file is removed on shutdown
    /// if it is still ours.
    #[arg(short = 'U', long, value_name = "PATH", conflicts_with_all = ["host", "port"])]
    pub unix: Option<PathBuf>,
    /// With --unix: the socket file's permissions, in octal (e.g. 660), set
    /// before any client can connect.
    #[arg(long, value_name = "OCTAL", requires = "unix", conflicts_with_all = ["host", "port"], value_parser = parse_mode)]
    pub unix_mode: Option<u32>,
    /// Most connections served at once (1 to 10000000); further clients wait
    /// (one per listening thread accepted but unread, the rest in the listen
    /// backlog).
    #[arg(
        long,
        value_name = "N",
        default_value_t = DEFAULT_MAX_CONNECTIONS as u64,
        value_parser = whole(1, MAX_MAX_CONNECTIONS as u64)
    )]
    pub max_connections: u64,
    /// Close a connection that sends nothing for this long (between
    /// requests, on app-server), or takes none of our output for this long
    /// (0 = never).
    #[arg(long, value_name = "SECONDS", default_value_t = Limit::of(DEFAULT_IDLE_TIMEOUT), value_parser = parse_limit, allow_negative_numbers = true)]
    pub idle_timeout: Limit,
    /// On Ctrl-C/SIGTERM, how long open connections get to finish (0 = as long as they need).
    #[arg(long, value_name = "SECONDS", default_value_t = Limit::of(DEFAULT_SHUTDOWN_TIMEOUT), value_parser = parse_limit, allow_negative_numbers = true)]
    pub shutdown_timeout: Limit,
    /// Listen backlog (1 to 65535): connections the kernel queues before we
    /// accept them (capped by net.core.somaxconn).
    #[arg(
        long,
        value_name = "N",
        default_value_t = u64::from(DEFAULT_BACKLOG),
        value_parser = whole(1, 65535)
    )]
    pub backlog: u64,
    /// TCP keepalive (1 to 32767): after this long with nothing received,
    /// probe the client every SECONDS and close the connection after 3
    /// unanswered probes, so that a client whose host vanished is noticed
    /// even with --idle-timeout 0 (default: off). Covers quiet connections;
    /// unacknowledged output is bounded by --idle-timeout instead.
    #[arg(long, value_name = "SECONDS", value_parser = whole(1, 32767))]
    pub keepalive: Option<u64>,
    /// Threads serving connections, 1 to 1024 (default: one per CPU core).
    /// Each has a runtime of its own and serves every connection it accepts
    /// to the end (share-nothing); limits, metrics and shutdown stay server-wide.
    /// With more than one on TCP, each has a listener of its own on the port;
    /// where they cover every CPU (Linux 6.1+, no --reuse-port), each runs on
    /// one CPU and takes the connections that arrive on that CPU.
    #[arg(long, value_name = "N", value_parser = whole(1, 1024))]
    pub threads: Option<u64>,
    #[command(flatten, next_help_heading = "TLS")]
    pub tls: ServerTlsArgs,
    #[command(flatten, next_help_heading = "Deployment")]
    pub deployment: DeploymentArgs,
}

/// A server's TLS flags: with --tls-cert and --tls-key, every connection
/// (TCP or Unix) is TLS.
#[derive(Debug, Args)]
pub struct ServerTlsArgs {
    /// Serve TLS with this certificate chain (PEM, leaf first); with --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require every client to present a certificate signed by this CA
    /// (PEM): mutual TLS. The client's subject is logged.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// The oldest TLS version to accept.
    #[arg(long, value_enum, value_name = "VERSION", default_value = "1.2")]
    pub tls_min_version: TlsVersion,
}

impl ServerTlsArgs {
    /// The TLS settings, when a certificate is given.
    pub fn settings(&self) -> Option<ServerTls> {
        let (cert, key) = (self.tls_cert.as_ref()?, self.tls_key.as_ref()?);
        Some(ServerTls {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: self.tls_client_ca.clone(),
            min_version: self.tls_min_version.into(),
        })
    }
}

/// Flags for running behind a balancer, watched and access-controlled.
#[derive(Debug, Args)]
pub struct DeploymentArgs {
    /// Every connection must begin with a PROXY protocol header (v1 or v2,
    /// as HAProxy's send-proxy/send-proxy-v2 send it); the client it names
    /// is the peer in logs, metrics and --allow/--deny. A connection without
    /// one is closed.
    #[arg(long)]
    pub proxy_protocol: bool,
    /// Accept PROXY headers only from this address or range (repeatable;
    /// e.g. the balancer's 10.0.0.5 or 10.0.0.0/24). Without it any source
    /// may claim any client address. (On a Unix socket, the file's
    /// permissions decide who may connect.)
    #[arg(long, value_name = "CIDR", requires = "proxy_protocol", conflicts_with = "unix")]
    pub proxy_from: Vec<AddressRange>,
    /// Accept clients only from this address or range (repeatable); the
    /// balancer's own connections (health checks) are not clients.
    #[arg(long, value_name = "CIDR", conflicts_with = "unix")]
    pub allow: Vec<AddressRange>,
    /// Refuse clients from this address or range (repeatable; wins over --allow).
    #[arg(long, value_name = "CIDR", conflicts_with = "unix")]
    pub deny: Vec<AddressRange>,
    /// Serve Prometheus metrics at http://HOST:PORT/metrics (port 0 picks
    /// one; the URL is printed on stdout after the listening address, as
    /// `metrics: URL`).
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics: Option<String>,
    /// Share the port with other processes (SO_REUSEPORT): the kernel
    /// spreads new connections among them; one can stop gracefully while
    /// the others serve; threads are then not pinned to CPUs. Without it, a
    /// port another program listens on is refused (a process of the same
    /// user that passes --reuse-port can still join a server's port).
    #[arg(long, conflicts_with = "unix")]
    pub reuse_port: bool,
    /// A client must send its PROXY header and finish its TLS handshake
    /// within this long (0 = no limit).
    #[arg(
        long,
        visible_alias = "tls-handshake-timeout",
        value_name = "SECONDS",
        default_value_t = Limit::of(DEFAULT_HANDSHAKE_TIMEOUT),
        value_parser = parse_limit,
        allow_negative_numbers = true
    )]
    pub handshake_timeout: Limit,
    /// On SIGTERM, keep serving for this long before closing the listeners,
    /// failing the balancer's health checks (PROXY LOCAL connections) so it
    /// stops sending clients first; a little more than the balancer's
    /// fall × inter (0 = close at once).
    #[arg(long, value_name = "SECONDS", default_value = "0", value_parser = parse_limit, allow_negative_numbers = true, requires = "proxy_protocol")]
    pub drain_delay: Limit,
}

impl ServerArgs {
    /// The keepalive idle time asked for.
    pub fn keepalive(&self) -> Option<std::time::Duration> {
        self.keepalive.map(std::time::Duration::from_secs)
    }

    /// Worker threads asked for; `None` for one per core.
    pub fn threads(&self) -> Option<usize> {
        self.threads.map(|n| n as usize)
    }

    /// The limits and stage for [`server::run`], with the input budget given.
    ///
    /// # Errors
    /// When the TLS files cannot be used.
    pub fn config(&self, request_timeout: Limit, max_buffered_bytes: usize) -> Result<ServerConfig> {
        Ok(ServerConfig {
            max_connections: self.max_connections as usize,
            limits: ConnectionLimits {
                idle_timeout: self.idle_timeout.0,
                request_timeout: request_timeout.0,
            },
            shutdown_timeout: self.shutdown_timeout.0,
            input_budget: InputBudget::new(max_buffered_bytes),
            stage: self.stage()?,
            shares_port: self.deployment.reuse_port,
        })
    }

    /// The stage connections go through: PROXY header, allow/deny, TLS.
    fn stage(&self) -> Result<Stage> {
        let deployment = &self.deployment;
        let proxy = deployment.proxy_protocol.then(|| {
            if deployment.proxy_from.is_empty() {
                warn!("--proxy-protocol without --proxy-from: any client can claim any address; name the balancer");
            }
            ProxyPolicy {
                trusted: deployment.proxy_from.clone(),
            }
        });
        let tls = self.tls.settings().map(|tls| tls.acceptor()).transpose()?;
        Ok(Stage {
            proxy,
            access: AccessList {
                allow: deployment.allow.clone(),
                deny: deployment.deny.clone(),
            },
            handshake_timeout: deployment.handshake_timeout.0,
            ..Stage::with_tls(tls)
        })
    }

    /// [`ServerArgs::config`] for servers without requests (echo).
    ///
    /// # Errors
    /// As [`ServerArgs::config`].
    pub fn stream_config(&self) -> Result<ServerConfig> {
        self.config(Limit(None), DEFAULT_MAX_BUFFERED_BYTES)
    }

    /// The options for a Unix socket file.
    pub fn socket_file(&self) -> SocketFileOptions {
        SocketFileOptions { mode: self.unix_mode }
    }

    /// Where to listen: the one place HOST PORT and --unix are read.
    pub fn listen_addr(&self) -> ListenAddr {
        match &self.unix {
            Some(path) => ListenAddr::Unix {
                path: path.clone(),
                options: self.socket_file(),
            },
            None => ListenAddr::Tcp {
                host: self.host.clone(),
                port: self.port,
            },
        }
    }

    /// Binds the stream listeners (or takes those a service manager
    /// passed), binds the metrics listener, announces both, and arranges
    /// for Ctrl-C/SIGTERM to cancel the returned token.
    pub async fn listen(&self, config: &ServerConfig) -> Result<Listening> {
        raise_open_file_limit();
        let listeners = match passed_listeners()? {
            Some(listeners) => {
                info!(
                    "Serving {} socket(s) passed by the service manager (HOST, PORT and --unix are not used)",
                    listeners.len()
                );
                if let Some(idle) = self.keepalive() {
                    for listener in &listeners {
                        if let Listener::Tcp(tcp) = listener {
                            socket2::SockRef::from(tcp)
                                .set_tcp_keepalive(&transport::keepalive(idle))
                                .context("setting --keepalive on a passed socket")?;
                        }
                    }
                }
                listeners
            }
            None => {
                let options = ListenOptions {
                    backlog: self.backlog as u32,
                    reuse_port: self.deployment.reuse_port,
                    keepalive: self.keepalive(),
                };
                let count = self.threads().unwrap_or_else(num_cpus);
                Listener::bind_per_core(&self.listen_addr(), options, count).await?
            }
        };
        let metrics = match &self.deployment.metrics {
            Some(addr) => Some(bind_metrics(addr).await?),
            None => None,
        };
        if !self.deployment.allow.is_empty() {
            for listener in &listeners {
                if let Listener::Unix(unix) = listener {
                    warn!(
                        "--allow admits only the addresses it lists: clients of unix:{} have none and are refused",
                        unix.path().display()
                    );
                }
            }
        }
        let mut shown = Vec::new();
        for listener in &listeners {
            let address = listener.shown().context("reading the bound address")?;
            if !shown.contains(&address) {
                shown.push(address);
            }
        }
        if let Some((_, url)) = &metrics {
            shown.push(format!("metrics: {url}"));
        }
        let drain = self.deployment.drain_delay.0.map(|delay| Drain {
            delay,
            started: config.stage.draining.clone(),
        });
        let (shutdown, hangup) = announce(&shown, drain);
        let metrics_stop = CancellationToken::new();
        if let Some((listener, _)) = metrics {
            server::metrics::enable();
            tokio::spawn(server::metrics::serve(listener, metrics_stop.clone()));
        }
        Ok(Listening {
            listeners,
            shutdown,
            hangup,
            metrics_stop,
        })
    }

    /// Serves `handler` on the listeners with `config` until shutdown
    /// completes, running `reload` on each SIGHUP (`reloadable` names what
    /// it reloads, for the log when it is empty).
    pub async fn serve<H: ConnectionHandler>(
        &self,
        listening: Listening,
        config: ServerConfig,
        handler: H,
        reload: Reload,
    ) -> Result<()> {
        reload_on_hangup(listening.hangup, reload.reloaders, reload.reloadable);
        server::metrics::watch_budget(&config.input_budget);
        let cores = self.threads().unwrap_or_else(num_cpus);
        let served = async {
            let listeners = listening
                .listeners
                .into_iter()
                .map(Listener::into_portable)
                .collect::<std::io::Result<Vec<_>>>()?;
            server::run_on_cores(listeners, cores, config, Arc::new(handler), listening.shutdown).await
        }
        .await;
        listening.metrics_stop.cancel();
        served.context("cannot serve on the cores")?;
        info!("Server stopped");
        Ok(())
    }

    /// What SIGHUP reloads here: the TLS certificate and key, swapped into
    /// `stage` for new handshakes. `None` without TLS.
    pub fn tls_reloader(&self, stage: &Stage) -> Option<Reloader> {
        let settings = self.tls.settings()?;
        let slot = Arc::clone(&stage.tls);
        Some(Box::new(move || {
            let previous = slot.load_full();
            match settings.acceptor_after(previous.as_deref()) {
                Ok(acceptor) => {
                    slot.store(Some(Arc::new(acceptor)));
                    info!("Reloaded the TLS certificate {}", settings.cert.display());
                }
                Err(error) => warn!("Kept the TLS certificate in use: {:#}", anyhow::Error::from(error)),
            }
        }))
    }
}

/// Bound listeners, announced, with the token that stops them.
pub struct Listening {
    pub listeners: Vec<Listener>,
    pub shutdown: CancellationToken,
    /// SIGHUP, caught since before the announcement.
    pub hangup: Signal,
    metrics_stop: CancellationToken,
}

/// Something SIGHUP re-reads.
pub type Reloader = Box<dyn Fn() + Send + Sync>;

/// What a server reloads on SIGHUP.
pub struct Reload {
    pub reloaders: Vec<Reloader>,
    /// The flags whose files are reloaded, for the log: `--data and --tls-cert`.
    pub reloadable: &'static str,
}

/// Sockets a service manager passed (see [`remember_passed_sockets`]).
static PASSED: Mutex<Option<Result<Vec<OwnedFd>, ActivationError>>> = Mutex::new(None);

/// Takes the sockets a service manager passed, before any thread starts
/// (it clears their environment variables); servers use them later.
pub fn remember_passed_sockets() {
    let passed = activation::take_passed_fds();
    *PASSED.lock().unwrap_or_else(PoisonError::into_inner) = Some(passed);
}

/// Whether a service manager passed sockets.
pub fn passed_sockets_given() -> bool {
    matches!(&*PASSED.lock().unwrap_or_else(PoisonError::into_inner), Some(Ok(fds)) if !fds.is_empty())
}

/// The passed sockets as listeners; `None` when none were passed.
fn passed_listeners() -> Result<Option<Vec<Listener>>> {
    let passed = PASSED.lock().unwrap_or_else(PoisonError::into_inner).take();
    let fds = match passed {
        None => return Ok(None),
        Some(fds) => fds.context("socket activation")?,
    };
    if fds.is_empty() {
        return Ok(None);
    }
    let listeners = fds
        .into_iter()
        .map(activation::listener_from_fd)
        .collect::<Result<Vec<_>, _>>()
        .context("socket activation")?;
    Ok(Some(listeners))
}

/// Binds the metrics listener; returns it with the URL it serves.
async fn bind_metrics(addr: &str) -> Result<(TcpListener, String)> {
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| anyhow::anyhow!("--metrics {addr:?}: expected HOST:PORT, like 127.0.0.1:9464 or [::1]:9464"))?;
    let port = parse_port(port).map_err(|why| anyhow::anyhow!("--metrics {addr:?}: {why}"))?;
    let listener = bind_tcp(host, port, ListenOptions::default())
        .await
        .context("--metrics")?;
    let bound = transport::canonical(listener.local_addr().context("reading the metrics address")?);
    Ok((listener, format!("http://{bound}/metrics")))
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// Logs and prints (one per line, the listening address first) where the
/// server listens, and installs the signal handler whose token stops it.
///
/// A closed stdout (`sockets app-server | true`) does not stop the server:
/// the address is a courtesy to scripts, the server's job is to serve. The
/// failure is logged, and the address is in the log line too.
pub fn announce(shown: &[String], drain: Option<Drain>) -> (CancellationToken, Signal) {
    // Signals first: whoever reads the address may send SIGTERM (or SIGHUP) at once.
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone(), drain);
    let hangup = catch_hangup();
    if let Err(error) = print_line(&shown.join("\n")) {
        warn!("Could not print the address on stdout ({error:#}); serving anyway");
    }
    info!("Listening on {}", shown.join(", "));
    (shutdown, hangup)
}

fn raise_open_file_limit() {
    match transport::raise_open_file_limit() {
        Ok(limit) => debug!("open file limit: {limit}"),
        Err(error) => warn!("could not raise the open file limit: {error}"),
    }
}
