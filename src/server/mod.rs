//! What every server shares, whatever its protocol.
//!
//! ```text
//! listen (transport: TCP | Unix)
//!   → accept loop (here: accept, count against the limit, spawn)
//!   → in the spawned task:
//!       stage ([`stage::Stage`]: TLS handshake → peer identity)
//!       → connection handler: a framed protocol drives a
//!         [`driver::Driver`] (buffers, deadlines, backpressure, input
//!         budget); echo copies bytes
//! ```
//!
//! The accept loop only accepts, counts and spawns, so nothing a client does
//! can stall it. It knows no protocol: a [`ConnectionHandler`] serves each
//! connection and says why it ended ([`CloseReason`]).
//!
//! Shutdown, when the token is cancelled:
//! 1. stop accepting and close the listening socket, so the kernel refuses
//!    new clients;
//! 2. each connection sees the same token, reads what has already arrived,
//!    answers it, and closes;
//! 3. the server waits for them up to [`ServerConfig::shutdown_timeout`], then
//!    returns whatever is left, so a stuck client cannot hold the process.

pub mod access;
pub mod budget;
pub mod driver;
pub mod log_limit;
pub mod metrics;
mod placement;
pub mod stage;
mod thread_buffers;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::Either;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::display_duration;
use crate::escape::Escaped;
use crate::limited;
use crate::transport::listen::PortableListener;
use crate::transport::splice::Splice;
use crate::transport::{Acceptor, PeerAddr};
use budget::{BudgetShare, Evicted, InputBudget};
use log_limit::{CONNECTION_LINES, PEER_WARNINGS};
use stage::{PeerIdentity, Stage};

/// Default cap on concurrently open connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Largest `--max-connections` accepted: far past what one process's file
/// descriptors allow, and far below what the semaphore can count.
pub const MAX_MAX_CONNECTIONS: usize = 10_000_000;
/// Default time a connection may wait between requests.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default time a request that has begun has to arrive whole.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time open connections get to finish after shutdown is requested.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after `accept` fails for lack of file descriptors or memory: long
/// enough not to spin, short enough to resume quickly when a connection closes.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How often a shortage of descriptors is said again while it lasts.
const SHORTAGE_REMINDER: Duration = Duration::from_secs(10);

/// Per-connection deadlines; `None` means no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Longest wait for the first byte of the next request, and for a client
    /// to take any of our output.
    pub idle_timeout: Option<Duration>,
    /// Longest time a request that has begun may take to arrive whole.
    pub request_timeout: Option<Duration>,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            request_timeout: Some(DEFAULT_REQUEST_TIMEOUT),
        }
    }
}

/// Limits shared by every server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub max_connections: usize,
    pub limits: ConnectionLimits,
    /// How long open connections get to finish after shutdown; `None`: as long as they need.
    pub shutdown_timeout: Option<Duration>,
    /// Server-wide budget for buffered input.
    pub input_budget: Arc<InputBudget>,
    /// What each connection goes through before its protocol (TLS).
    pub stage: Stage,
    /// The port is shared with other processes (`--reuse-port`): its
    /// cores are not pinned to CPUs, since a member of the group that
    /// marks a listener for every CPU would take every connection from
    /// one that marks none.
    pub shares_port: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            limits: ConnectionLimits::default(),
            shutdown_timeout: Some(DEFAULT_SHUTDOWN_TIMEOUT),
            input_budget: InputBudget::new(budget::DEFAULT_MAX_BUFFERED_BYTES),
            stage: Stage::default(),
            shares_port: false,
        }
    }
}

/// One accepted connection, as a [`ConnectionHandler`] receives it.
#[derive(Debug)]
pub struct Connection<S> {
    pub stream: S,
    pub peer: PeerAddr,
    /// Cancelled when the server shuts down: finish what was received, then close.
    pub shutdown: CancellationToken,
    pub limits: ConnectionLimits,
    /// This connection's share of the server-wide input budget.
    pub budget: BudgetShare,
    /// The connection limit, for descriptors the connection opens beyond
    /// its socket (see [`Descriptors`]).
    pub descriptors: Descriptors,
    /// The stream is TLS: closing must send `close_notify` even after the
    /// client closed first (strict TLS clients call an end without it a
    /// truncation).
    pub tls: bool,
}

/// The server-wide connection limit seen as what it also is, a budget of
/// file descriptors: each connection's socket holds one permit, and a
/// connection that opens more descriptors (a splice pipe holds two) takes
/// a permit for each, or does without them. So splicing never takes the
/// descriptors that accepting the limit's connections needs.
#[derive(Debug, Clone)]
pub struct Descriptors(Arc<Semaphore>);

impl Descriptors {
    /// Room for `count` more descriptors under the limit, if there is
    /// some now; given back when the permit is dropped.
    pub fn try_take(&self, count: u32) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.0).try_acquire_many_owned(count).ok()
    }
}

/// What a server does with each connection: serves it until it ends, and
/// says why it ended. (Not a tower `Service`, which maps one request to one
/// response: this owns the whole connection.)
pub trait ConnectionHandler: Send + Sync + 'static {
    /// Serves one connection to its end.
    fn handle<S>(&self, connection: Connection<S>) -> impl Future<Output = CloseReason> + Send
    where
        S: AsyncRead + AsyncWrite + Splice + Unpin + Send + 'static;
}

/// Why a connection was closed: the `Closing connection` log line's reason.
#[derive(Debug)]
pub enum CloseReason {
    /// The client closed its side and every request was answered.
    PeerClosed,
    /// One-shot mode: the one response was sent.
    ResponseSent,
    /// No first byte of a request within the idle timeout.
    IdleTimeout(Duration),
    /// A request that had begun did not arrive whole in time.
    RequestTimeout(Duration),
    /// The client did not read its responses within the idle timeout.
    WriteStalled(Duration),
    /// The client sent bytes that are not a valid message; it was told why.
    BadFrame(String),
    /// The server-wide input budget ran out and this connection held the most.
    OverBudget(Evicted),
    /// The server is shutting down and the connection had nothing pending.
    Shutdown,
    /// The TLS handshake failed or took too long.
    TlsHandshake(String),
    /// `--proxy-protocol`: the PROXY header was missing, malformed, late,
    /// or from a source not trusted to send one.
    ProxyHeader(String),
    /// `--allow`/`--deny` refused the peer.
    Denied,
    /// The server is draining: a balancer's health check is failed on purpose.
    Draining,
    /// A subscriber fell too far behind the messages published to it.
    OutputLimit(String),
    /// The connection failed (reset, broken pipe, ...).
    Io(std::io::Error),
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::PeerClosed => f.write_str("client closed the connection"),
            CloseReason::ResponseSent => f.write_str("response sent"),
            CloseReason::IdleTimeout(after) => write!(f, "idle for {}", display_duration(*after)),
            CloseReason::RequestTimeout(after) => {
                write!(f, "request not completed within {}", display_duration(*after))
            }
            CloseReason::WriteStalled(after) => {
                write!(f, "client read nothing for {}", display_duration(*after))
            }
            // The description quotes what the client sent.
            CloseReason::BadFrame(error) => write!(f, "bad message: {}", Escaped::str(error)),
            CloseReason::OverBudget(evicted) => write!(
                f,
                "input budget of {} bytes exhausted; this connection held {} bytes",
                evicted.limit, evicted.held
            ),
            CloseReason::Shutdown => f.write_str("server shutting down"),
            // The explanation may quote the client (a certificate's names).
            CloseReason::TlsHandshake(why) => write!(f, "TLS handshake failed: {}", Escaped::str(why)),
            CloseReason::ProxyHeader(why) => write!(f, "PROXY header refused: {}", Escaped::str(why)),
            CloseReason::Denied => f.write_str("denied by --allow/--deny"),
            CloseReason::Draining => f.write_str("draining: the balancer's health check fails until the server stops"),
            CloseReason::OutputLimit(why) => write!(f, "subscriber output limit: {why}"),
            CloseReason::Io(error) => write!(f, "connection error: {error}"),
        }
    }
}

/// What every accept loop of one server shares.
struct Shared<H> {
    handler: Arc<H>,
    stage: Stage,
    config: ServerConfig,
    permits: Arc<Semaphore>,
    tracker: TaskTracker,
    /// Cancelled once every listener is closed: connections then answer
    /// what they received and close. Later than the server's own shutdown
    /// token, so a client whose connection closes cannot reconnect to a
    /// listener of ours that is about to close.
    connections_stop: CancellationToken,
}

/// How long a connection that has received nothing yet may wait for its
/// first bytes once shutdown has begun: its client was told it is
/// connected (the connection may even have been taken from the accept
/// queue during shutdown) and its request is on the way.
pub const DRAIN_GRACE: Duration = Duration::from_secs(1);

/// Accepts connections on every listener and serves each on its own task
/// until `shutdown` is cancelled, then drains as described in the module
/// docs. Several listeners (one port shared with `SO_REUSEPORT`, or sockets
/// passed by a service manager) each get an accept loop; the connection
/// limit, input budget and shutdown are the server's, shared by all.
pub async fn run<A, H>(acceptors: Vec<A>, config: ServerConfig, handler: Arc<H>, shutdown: CancellationToken)
where
    A: Acceptor,
    H: ConnectionHandler,
{
    let shared = Shared::new(config, handler);
    let mut loops = tokio::task::JoinSet::new();
    for acceptor in acceptors {
        loops.spawn(accept_loop(acceptor, Arc::clone(&shared), shutdown.clone()));
    }
    while loops.join_next().await.is_some() {}
    drain(&shared).await;
}

/// As [`run`], share-nothing: `cores` threads, each with a single-threaded
/// runtime of its own that accepts on its own listeners and serves every
/// connection it accepts to the end, on that thread. No connection moves
/// between threads and no task is stolen, which is what a multi-threaded
/// runtime spends its time on when every connection is short (wake-ups
/// across threads, parking). With as many listeners as cores on one port
/// (the default for TCP: one `SO_REUSEPORT` group), each core gets its
/// own, and where the kernel allows, runs on one CPU and takes the
/// connections that arrive on that CPU (the `placement` module);
/// otherwise (a Unix socket, sockets passed by a service manager) every
/// core accepts from a duplicate of each, and all cores are woken for each
/// new connection. The connection limit, the input budget, metrics, logs
/// and shutdown stay server-wide, and the calling runtime only waits for
/// the end.
pub async fn run_on_cores<H>(
    listeners: Vec<PortableListener>,
    cores: usize,
    config: ServerConfig,
    handler: Arc<H>,
    shutdown: CancellationToken,
) -> std::io::Result<()>
where
    H: ConnectionHandler,
{
    let shared = Shared::new(config, handler);
    let cores = cores.max(1);
    let (assignments, own_listeners) = assign_to_cores(listeners, cores)?;
    // With a listener per core, each core stays on one CPU and takes the
    // connections that arrive there, where that can work (see `placement`).
    let cpus = if own_listeners && !shared.config.shares_port {
        placement::cpus_for(cores)
    } else {
        Vec::new()
    };
    // Cancelled when the server is done with every connection (or gives up
    // on them): each core's runtime then ends, dropping what is left.
    let finished = CancellationToken::new();
    let mut accepting = Vec::new();
    let mut threads = Vec::new();
    for (core, mine) in assignments.into_iter().enumerate() {
        let (stopped_accepting, accepting_done) = tokio::sync::oneshot::channel::<usize>();
        let (shared, shutdown, finished) = (Arc::clone(&shared), shutdown.clone(), finished.clone());
        let cpu = (!cpus.is_empty()).then(|| cpus[core % cpus.len()]);
        if let Some(cpu) = cpu {
            for listener in &mine {
                if let Err(error) = placement::steer(listener, cpu) {
                    debug!("core {core}: its listener takes connections from any CPU ({error})");
                }
            }
        }
        let spawned = std::thread::Builder::new().name(format!("core-{core}")).spawn(move || {
            if let Some(cpu) = cpu
                && let Err(error) = placement::pin_this_thread(cpu)
            {
                debug!("core {core} runs on any CPU: cannot pin it to CPU {cpu} ({error})");
            }
            serve_core(mine, shared, shutdown, finished, stopped_accepting);
        });
        match spawned {
            Ok(thread) => {
                threads.push(thread);
                accepting.push(accepting_done);
            }
            Err(error) => warn!("cannot start core {core}: {error}; serving on the others"),
        }
    }
    // Each core says how many listeners it served once it stops accepting;
    // one that could not start says nothing. A core stuck in a task that
    // blocks its thread would never say it: once shutdown has begun, it is
    // given the shutdown timeout, like the connections.
    let all_stopped = async move {
        let mut served = 0;
        for done in accepting {
            served += done.await.unwrap_or(0);
        }
        served
    };
    let give_up = async {
        shutdown.cancelled().await;
        match shared.config.shutdown_timeout {
            Some(limit) => tokio::time::sleep(limit).await,
            None => std::future::pending().await,
        }
    };
    let served = tokio::select! {
        served = all_stopped => Some(served),
        () = give_up => {
            warn!("a core did not stop accepting within the shutdown timeout; stopping without it");
            None
        }
    };
    drain(&shared).await;
    finished.cancel();
    if served.is_some() {
        for thread in threads {
            if !matches!(tokio::task::spawn_blocking(move || thread.join()).await, Ok(Ok(()))) {
                tracing::error!("a core's thread panicked; its connections were dropped");
            }
        }
    }
    if served == Some(0) {
        return Err(std::io::Error::other("no core could take a listening socket"));
    }
    Ok(())
}

/// One core's thread: a single-threaded runtime that registers its
/// listeners, accepts and serves until shutdown, says when it stopped
/// accepting, and keeps serving its connections until `finished`.
fn serve_core<H: ConnectionHandler>(
    listeners: Vec<PortableListener>,
    shared: Arc<Shared<H>>,
    shutdown: CancellationToken,
    finished: CancellationToken,
    stopped_accepting: tokio::sync::oneshot::Sender<usize>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            warn!("cannot start a core's runtime: {error}");
            return;
        }
    };
    runtime.block_on(async move {
        let mut loops = tokio::task::JoinSet::new();
        let mut taken = 0;
        for listener in listeners {
            match listener.into_listener() {
                Ok(listener) => {
                    loops.spawn(accept_loop(listener, Arc::clone(&shared), shutdown.clone()));
                    taken += 1;
                }
                Err(error) => warn!("a core cannot take its listening socket: {error}"),
            }
        }
        while loops.join_next().await.is_some() {}
        let _ = stopped_accepting.send(taken);
        finished.cancelled().await;
    });
}

/// Gives each core listeners of its own when they are copies of one port
/// (`SO_REUSEPORT`) and there are enough of them (round robin); otherwise
/// (different addresses, or fewer copies than cores) every core gets a
/// duplicate of every listener, so that every address is served by all.
/// Also says whether each core got listeners of its own.
fn assign_to_cores(
    listeners: Vec<PortableListener>,
    cores: usize,
) -> std::io::Result<(Vec<Vec<PortableListener>>, bool)> {
    let mut assignments: Vec<Vec<PortableListener>> = (0..cores).map(|_| Vec::new()).collect();
    let first = listeners.first().and_then(PortableListener::local_address);
    let one_port = listeners.iter().all(|listener| listener.local_address() == first);
    let own_listeners = one_port && listeners.len() >= cores;
    if own_listeners {
        for (n, listener) in listeners.into_iter().enumerate() {
            assignments[n % cores].push(listener);
        }
    } else {
        for listener in listeners {
            for core in assignments.iter_mut().skip(1) {
                core.push(listener.try_clone()?);
            }
            assignments[0].push(listener);
        }
    }
    Ok((assignments, own_listeners))
}

impl<H> Shared<H> {
    fn new(config: ServerConfig, handler: Arc<H>) -> Arc<Shared<H>> {
        log_limit::start_reporter();
        Arc::new(Shared {
            handler,
            stage: config.stage.clone(),
            permits: Arc::new(Semaphore::new(config.max_connections.clamp(1, MAX_MAX_CONNECTIONS))),
            tracker: TaskTracker::new(),
            connections_stop: CancellationToken::new(),
            config,
        })
    }
}

/// After every accept loop has ended: tells the connections to finish and
/// waits for them, up to the shutdown timeout.
async fn drain<H>(shared: &Shared<H>) {
    // Every listener is closed: new clients are refused (or, with
    // SO_REUSEPORT, go to the other servers on the port).
    shared.connections_stop.cancel();
    let tracker = &shared.tracker;
    tracker.close();
    info!(
        "Stopped accepting; waiting for {} open connection(s) to finish",
        tracker.len()
    );
    let finished = match shared.config.shutdown_timeout {
        Some(limit) => tokio::time::timeout(limit, tracker.wait()).await.is_ok(),
        None => {
            tracker.wait().await;
            true
        }
    };
    if !finished {
        warn!(
            "{} connection(s) still open after {}; closing them",
            tracker.len(),
            display_duration(shared.config.shutdown_timeout.unwrap_or_default())
        );
    }
}

/// One listener's loop: accept, count against the limit, spawn. On
/// shutdown, takes what is already in the kernel's queue (those clients
/// were told they are connected) and closes the listener.
async fn accept_loop<A: Acceptor, H: ConnectionHandler>(
    mut acceptor: A,
    shared: Arc<Shared<H>>,
    shutdown: CancellationToken,
) {
    let mut at_limit = false;
    // When accept last said it was out of descriptors: said once per
    // shortage, then again only every SHORTAGE_REMINDER while it lasts.
    let mut shortage_told: Option<tokio::time::Instant> = None;
    // A client accepted past the limit when shutdown came.
    let mut waiting = None;
    loop {
        let accepted = tokio::select! {
            accepted = acceptor.accept() => accepted,
            () = shutdown.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                if shortage_told.take().is_some() {
                    info!("Accepting again: the shortage is over");
                }
                accepted
            }
            Err(error) if is_resource_exhaustion(&error) => {
                metrics::accept_error();
                if shortage_told.is_none_or(|told| told.elapsed() >= SHORTAGE_REMINDER) {
                    limited!(
                        PEER_WARNINGS,
                        ERROR,
                        "accept failed: {error}; pausing accepts for {} at a time until it passes",
                        display_duration(ACCEPT_BACKOFF)
                    );
                    shortage_told = Some(tokio::time::Instant::now());
                }
                tokio::select! {
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                    () = shutdown.cancelled() => break,
                }
            }
            Err(error) => {
                // Typically ECONNABORTED: that client gave up before we got to it.
                debug!("accept failed: {error}");
                continue;
            }
        };
        // The permit is taken once a client is here, not while waiting for
        // one: with a listener per core, a permit held by an idle core
        // would be out of reach of the core its clients arrive on. Past the
        // limit, this client waits here unread (one per accept loop) and
        // the others in the kernel's listen backlog, until a connection
        // closes.
        let permit = match shared.permits.clone().try_acquire_owned() {
            Ok(permit) => {
                at_limit = false;
                permit
            }
            Err(_) => {
                if !at_limit {
                    warn!(
                        "Connection limit of {} reached; new clients wait until a connection closes",
                        shared.config.max_connections
                    );
                    at_limit = true;
                }
                tokio::select! {
                    permit = shared.permits.clone().acquire_owned() => permit.expect("semaphore is never closed"),
                    () = shutdown.cancelled() => {
                        // First in line for the drain below.
                        waiting = Some((stream, peer));
                        break;
                    }
                }
            }
        };
        serve(&shared, stream, peer, permit);
    }
    let mut drained = 0usize;
    if let Some((stream, peer)) = waiting
        && let Ok(permit) = shared.permits.clone().try_acquire_owned()
    {
        serve(&shared, stream, peer, permit);
        drained += 1;
    }
    while let Ok(permit) = shared.permits.clone().try_acquire_owned() {
        match acceptor.accept().now_or_never() {
            Some(Ok((stream, peer))) => {
                serve(&shared, stream, peer, permit);
                drained += 1;
            }
            Some(Err(error)) if !is_resource_exhaustion(&error) => {}
            _ => break,
        }
    }
    if drained > 0 {
        debug!("took {drained} connection(s) from the accept queue while stopping");
    }
}

/// Spawns the task that takes one accepted connection through the stage
/// and its handler.
fn serve<S, H>(shared: &Arc<Shared<H>>, stream: S, peer: PeerAddr, permit: OwnedSemaphorePermit)
where
    S: AsyncRead + AsyncWrite + Splice + Unpin + Send + 'static,
    H: ConnectionHandler,
{
    metrics::accepted();
    shared
        .tracker
        .spawn(connection_task(Arc::clone(shared), stream, peer, permit));
}

/// One connection's task, from the stage to the close line. Everything it
/// holds while its connection is idle is in every idle connection's memory:
/// it uses what it captures in place (an `async fn` would copy its
/// arguments; and what it captures stays in its memory even once moved
/// out, so the peer's address is overwritten with the client's, not kept
/// beside it), and keeps across the handler's await only that address
/// and one flag, not the whole identity.
#[allow(clippy::manual_async_fn, reason = "an async fn would store its arguments twice")]
fn connection_task<S, H>(
    shared: Arc<Shared<H>>,
    stream: S,
    mut peer: PeerAddr,
    permit: OwnedSemaphorePermit,
) -> impl Future<Output = ()> + Send + 'static
where
    S: AsyncRead + AsyncWrite + Splice + Unpin + Send + 'static,
    H: ConnectionHandler,
{
    async move {
        let prepared = shared.stage.prepare(stream, peer.clone()).await;
        let (served, balancers_own) = admit(&shared, prepared, &mut peer);
        let reason = served.await;
        if balancers_own {
            // Health checks come every few seconds and balancers end them
            // with a reset: counted apart, logged only at debug level.
            metrics::balancer_connection_closed();
            limited!(
                CONNECTION_LINES,
                DEBUG,
                "Closing the balancer's connection {peer} ({reason})"
            );
        } else {
            metrics::closed(&reason);
            limited!(CONNECTION_LINES, INFO, "Closing connection to {peer} ({reason})");
        }
        drop(permit);
    }
}

/// Hands a prepared connection to the handler, or says why it was refused,
/// and whether it is the balancer's own; sets `peer` to the client's
/// address (behind a balancer, the one its PROXY header gave). Not inline
/// in the task: a value the task matches on or borrows stays in its memory
/// for the connection's whole life.
fn admit<'a, S, H>(
    shared: &'a Shared<H>,
    prepared: Result<(S, PeerIdentity), (CloseReason, PeerIdentity)>,
    peer: &mut PeerAddr,
) -> (impl Future<Output = CloseReason> + Send + 'a, bool)
where
    S: AsyncRead + AsyncWrite + Splice + Unpin + Send + 'static,
    H: ConnectionHandler,
{
    match prepared {
        Ok((stream, identity)) => {
            log_accepted(&identity);
            let balancers_own = identity.is_balancers_own();
            let connection = Connection {
                stream,
                tls: identity.tls.is_some(),
                peer: identity.addr.clone(),
                shutdown: shared.connections_stop.clone(),
                limits: shared.config.limits,
                budget: shared.config.input_budget.share(),
                descriptors: Descriptors(Arc::clone(&shared.permits)),
            };
            let served = Either::Left(shared.handler.handle(connection));
            *peer = identity.addr;
            (served, balancers_own)
        }
        Err((reason, identity)) => {
            let balancers_own = identity.is_balancers_own();
            *peer = identity.addr;
            (Either::Right(std::future::ready(reason)), balancers_own)
        }
    }
}

/// The "Accepted connection" line: the client, the balancer it came
/// through, the TLS session and client certificate when there are some.
fn log_accepted(identity: &PeerIdentity) {
    if !tracing::enabled!(tracing::Level::INFO) {
        return;
    }
    let mut details = Vec::new();
    match &identity.via {
        Some(hop) if hop.own => details.push(format!("PROXY v{}, the balancer's own connection", hop.version)),
        Some(hop) => details.push(format!("via {}, PROXY v{}", hop.balancer, hop.version)),
        None => {}
    }
    if let Some(session) = &identity.tls {
        details.push(session.to_string());
        if let Some(subject) = &session.client_subject {
            // A certificate's subject is text the client chose.
            details.push(format!("client certificate {}", Escaped::str(subject)));
        }
    }
    let peer = &identity.addr;
    if identity.is_balancers_own() {
        limited!(
            CONNECTION_LINES,
            DEBUG,
            "Accepted connection from {peer} ({})",
            details.join("; ")
        );
    } else if details.is_empty() {
        limited!(CONNECTION_LINES, INFO, "Accepted connection from {peer}");
    } else {
        limited!(
            CONNECTION_LINES,
            INFO,
            "Accepted connection from {peer} ({})",
            details.join("; ")
        );
    }
}

/// `accept` errors that mean "not now" for the whole process rather than
/// "that one client failed".
fn is_resource_exhaustion(error: &std::io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// How long a closing connection keeps reading (and discarding) what the
/// client still sends, so that our last response is not destroyed by a reset.
const LINGER: Duration = Duration::from_secs(1);
/// At most this much is read and discarded while lingering.
const LINGER_MAX_BYTES: usize = 256 * 1024;

/// Closes our side of `stream` without losing what we already wrote.
///
/// Closing a TCP socket that still has unread input makes the kernel send a
/// reset, and a reset can discard our final response before the client reads
/// it (this matters after a framing error, when the client is still sending).
/// So: send FIN, then read and drop input until the client closes too, for at
/// most `LINGER` and `LINGER_MAX_BYTES`. With `tls`, the FIN is preceded by
/// a `close_notify`, which a TLS peer expects whoever closes first.
pub async fn close_gracefully<S: AsyncRead + AsyncWrite + Splice + Unpin>(
    stream: &mut S,
    reason: &CloseReason,
    tls: bool,
) {
    if closes_cleanly_now(stream, reason, tls) {
        return;
    }
    // On the heap, and only here: the lingering's timers and buffer would
    // otherwise be part of every connection's task for its whole life
    // (about 1.4 KiB each), though few connections ever linger.
    Box::pin(linger(stream, reason)).await;
}

/// Whether dropping the socket now closes it without losing anything, so
/// no lingering is needed.
fn closes_cleanly_now<S: Splice>(stream: &S, reason: &CloseReason, tls: bool) -> bool {
    if tls {
        return false; // a TLS peer expects close_notify, whoever closes first
    }
    match reason {
        // The client closed first: its input is exhausted, so dropping the
        // socket cannot reset anything, and the FIN goes out with the close
        // (a plain socket needs no system call more).
        CloseReason::PeerClosed => true,
        // The one response of a one-shot connection went out and the client
        // has sent nothing more: a close now sends a FIN, not a reset (only
        // unread input makes one), so the client reads its response whole.
        // Waiting for its FIN first would cost a wake-up and two system
        // calls per connection; asking the kernel costs one. (Bytes that
        // arrive after the close still get a reset, as from any server that
        // has closed: a one-shot client sends one request.)
        CloseReason::ResponseSent => stream.socket().is_some_and(|socket| !socket.has_unread()),
        _ => false,
    }
}

/// Sends FIN (after close_notify, for TLS), then reads and drops what the
/// client still sends until it closes too, within [`LINGER`] and
/// [`LINGER_MAX_BYTES`].
async fn linger<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, reason: &CloseReason) {
    if matches!(reason, CloseReason::PeerClosed) {
        // TLS (plain sockets closed cleanly above): close_notify, nothing to drain.
        let _ = tokio::time::timeout(LINGER, stream.shutdown()).await;
        return;
    }
    if stream.shutdown().await.is_err() {
        return;
    }
    let drain = async {
        let mut scratch = vec![0u8; 4096];
        let mut drained = 0;
        while drained < LINGER_MAX_BYTES {
            match stream.read(&mut scratch).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::{TcpListener, TcpStream, UnixStream};
    use tokio_util::either::Either;

    /// What tokio adds to a task's future: its header, scheduler, id, the
    /// stage's tag and the trailer (tokio 1.4x), and the tracker's token.
    const TASK_OVERHEAD: usize = 32 + 8 + 8 + 8 + 48 + 8;

    /// An idle connection's memory is mostly its task, and tokio rounds a
    /// task up to 128 bytes. State needed rarely (a TLS handshake, a PROXY
    /// header's wait, lingering at close, a message header waiting for its
    /// content, the metrics' counts) is boxed, and nothing is kept twice,
    /// so that an application connection's task fits in 768 bytes (it was
    /// 4.4 KiB, then 1.7, then 1, then 896). The last step moved the
    /// driver's timer to the heap (its waits for input and output share
    /// one, 112 bytes): an idle connection holds what it did, and the
    /// gain is a smaller task to move and set up per connection.
    #[tokio::test]
    async fn an_application_connections_task_fits_in_768_bytes() {
        let handler = crate::app::serve::AppHandler {
            table: Arc::new(arc_swap::ArcSwap::from_pointee(crate::app::SearchTable::builtin())),
            max_content_len: 1 << 20,
            one_shot: false,
        };
        let shared = Shared::new(ServerConfig::default(), Arc::new(handler));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let stream = Either::<TcpStream, UnixStream>::Left(stream);
        let permit = Arc::clone(&shared.permits).try_acquire_owned().unwrap();
        let task = connection_task(shared, stream, PeerAddr::Unix(None), permit);
        let size = std::mem::size_of_val(&task);
        assert!(
            size + TASK_OVERHEAD <= 768,
            "the connection's future is {size} bytes: with tokio's {TASK_OVERHEAD}, over 768"
        );
    }
}
