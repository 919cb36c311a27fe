//! What the servers count, and `GET /metrics` in the Prometheus text format.
//!
//! Counting must cost next to nothing on the request path (the target is
//! under 5 % of pipelined throughput), so nothing here is shared between
//! threads while counting: each thread adds to a block of counters of its
//! own (an atomic that only one thread writes stays in that core's cache),
//! and a scrape sums the blocks. The connection driver counts requests and
//! bytes in batches, once per write of responses, not once per request.
//!
//! Nothing is counted unless metrics are served ([`enable`]).
//!
//! The encoding is prometheus-client's, fed by a [`Collector`] that does
//! the summing. The HTTP side is the least a scraper needs: one request per
//! connection, `GET /metrics`, bounded in size and time.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::CloseReason;
use super::budget::InputBudget;

/// Why connections close, as a closed set of labels.
pub const CLOSE_KINDS: [&str; 12] = [
    "client_closed",
    "response_sent",
    "idle_timeout",
    "request_timeout",
    "write_stalled",
    "bad_frame",
    "limit",
    "shutdown",
    "reset",
    "tls_handshake_failed",
    "proxy_header_bad",
    "denied",
];

impl CloseReason {
    /// This reason's label in [`CLOSE_KINDS`].
    pub fn kind(&self) -> &'static str {
        CLOSE_KINDS[self.kind_index()]
    }

    fn kind_index(&self) -> usize {
        match self {
            CloseReason::PeerClosed => 0,
            CloseReason::ResponseSent => 1,
            CloseReason::IdleTimeout(_) => 2,
            CloseReason::RequestTimeout(_) => 3,
            CloseReason::WriteStalled(_) => 4,
            CloseReason::BadFrame(_) => 5,
            CloseReason::OverBudget(_) | CloseReason::OutputLimit(_) => 6,
            CloseReason::Shutdown | CloseReason::Draining => 7,
            CloseReason::Io(_) => 8,
            CloseReason::TlsHandshake(_) => 9,
            CloseReason::ProxyHeader(_) => 10,
            CloseReason::Denied => 11,
        }
    }
}

/// Most request labels (action, outcome) a server may name.
pub const MAX_REQUEST_LABELS: usize = 32;
/// Bucket bounds of the request latency histogram, in seconds.
const LATENCY_BUCKETS: [f64; 16] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
    0.5, 1.0,
];

/// Every counter: as one thread's atomics ([`Block`]) or as the sums a
/// scrape reports ([`Totals`]). Aligned apart so two threads' blocks never
/// share a cache line.
#[repr(align(128))]
#[derive(Debug, Default)]
struct Counts<C> {
    accepted: C,
    accept_errors: C,
    closed: [C; CLOSE_KINDS.len()],
    balancer_closed: C,
    requests: [C; MAX_REQUEST_LABELS],
    latency: [C; LATENCY_BUCKETS.len() + 1],
    latency_sum_ns: C,
    bytes_in: C,
    bytes_out: C,
    tls: [C; 3],
}

/// One thread's counters, written by that thread only.
type Block = Counts<AtomicU64>;
/// The sums of every thread's counters.
type Totals = Counts<u64>;

fn bump(counter: &AtomicU64, by: u64) {
    // Only this thread writes its block: a load and a store are enough, and
    // cheaper than a locked read-modify-write.
    counter.store(counter.load(Ordering::Relaxed).wrapping_add(by), Ordering::Relaxed);
}

/// Every thread's block, for the scrape.
fn blocks() -> &'static Mutex<Vec<Arc<Block>>> {
    static BLOCKS: OnceLock<Mutex<Vec<Arc<Block>>>> = OnceLock::new();
    BLOCKS.get_or_init(|| Mutex::new(Vec::new()))
}

thread_local! {
    static BLOCK: Arc<Block> = {
        let block = Arc::new(Block::default());
        blocks().lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(Arc::clone(&block));
        block
    };
}

/// Whether anything counts: off until a metrics listener is set up, so a
/// server that exposes no metrics pays one predictable branch per count.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Turns counting on (a server serving `/metrics` calls it at start).
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Whether metrics are counting.
pub fn is_enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

fn with_block(count: impl FnOnce(&Block)) {
    if ENABLED.load(Ordering::Relaxed) {
        BLOCK.with(|block| count(block));
    }
}

/// A connection was accepted.
pub fn accepted() {
    with_block(|b| bump(&b.accepted, 1));
}

/// A connection of the balancer's own (a health check) ended, however.
pub fn balancer_connection_closed() {
    with_block(|b| bump(&b.balancer_closed, 1));
}

/// `accept` failed (descriptors or memory ran out).
pub fn accept_error() {
    with_block(|b| bump(&b.accept_errors, 1));
}

/// A connection closed for `reason`.
pub fn closed(reason: &CloseReason) {
    with_block(|b| bump(&b.closed[reason.kind_index()], 1));
}

/// A TLS handshake ended: `Some(resumed)` for a success, `None` for a failure.
pub fn tls_handshake(result: Option<bool>) {
    let index = match result {
        Some(false) => 0,
        Some(true) => 1,
        None => 2,
    };
    with_block(|b| bump(&b.tls[index], 1));
}

/// Bytes moved on a connection.
pub fn bytes(received: u64, sent: u64) {
    with_block(|b| {
        bump(&b.bytes_in, received);
        bump(&b.bytes_out, sent);
    });
}

/// Requests answered: each with its label (an index into the table given
/// to [`set_request_labels`]) and how long it took.
pub fn requests(answered: impl IntoIterator<Item = (usize, Duration)>) {
    with_block(|b| {
        for (label, took) in answered {
            bump(&b.requests[label.min(MAX_REQUEST_LABELS - 1)], 1);
            let seconds = took.as_secs_f64();
            let bucket = LATENCY_BUCKETS
                .iter()
                .position(|bound| seconds <= *bound)
                .unwrap_or(LATENCY_BUCKETS.len());
            bump(&b.latency[bucket], 1);
            bump(&b.latency_sum_ns, u64::try_from(took.as_nanos()).unwrap_or(u64::MAX));
        }
    });
}

/// The (action, outcome) label pairs requests are counted under, by index.
static REQUEST_LABELS: OnceLock<&'static [(&'static str, &'static str)]> = OnceLock::new();
/// The input budget whose use is reported.
static BUDGET: OnceLock<Arc<InputBudget>> = OnceLock::new();

/// Names the request labels (set once, by the protocol being served).
pub fn set_request_labels(labels: &'static [(&'static str, &'static str)]) {
    let _ = REQUEST_LABELS.set(labels);
}

/// Reports `budget`'s use and limit.
pub fn watch_budget(budget: &Arc<InputBudget>) {
    let _ = BUDGET.set(Arc::clone(budget));
}

fn totals() -> Totals {
    let mut totals = Totals::default();
    for block in blocks()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
    {
        totals.add(block);
    }
    totals
}

impl Totals {
    fn add(&mut self, block: &Block) {
        fn sum<const N: usize>(sums: &mut [u64; N], counters: &[AtomicU64; N]) {
            for (sum, counter) in sums.iter_mut().zip(counters) {
                *sum += counter.load(Ordering::Relaxed);
            }
        }
        let one = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        self.accepted += one(&block.accepted);
        self.accept_errors += one(&block.accept_errors);
        self.balancer_closed += one(&block.balancer_closed);
        self.latency_sum_ns += one(&block.latency_sum_ns);
        self.bytes_in += one(&block.bytes_in);
        self.bytes_out += one(&block.bytes_out);
        sum(&mut self.closed, &block.closed);
        sum(&mut self.requests, &block.requests);
        sum(&mut self.latency, &block.latency);
        sum(&mut self.tls, &block.tls);
    }
}

/// Sums the threads' blocks on each scrape.
#[derive(Debug)]
struct Counters;

impl Collector for Counters {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let t = totals();
        let counter = |encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64| {
            encoder
                .encode_descriptor(name, help, None, MetricType::Counter)?
                .encode_counter::<NoLabelSet, _, u64>(&value, None)
        };
        let gauge = |encoder: &mut DescriptorEncoder, name: &str, help: &str, value: i64| {
            encoder
                .encode_descriptor(name, help, None, MetricType::Gauge)?
                .encode_gauge(&value)
        };
        counter(
            &mut encoder,
            "sockets_connections_accepted",
            "Connections accepted.",
            t.accepted,
        )?;
        let closed: u64 = t.closed.iter().sum::<u64>() + t.balancer_closed;
        gauge(
            &mut encoder,
            "sockets_connections_open",
            "Connections open now.",
            i64::try_from(t.accepted.saturating_sub(closed)).unwrap_or(i64::MAX),
        )?;
        {
            let mut family = encoder.encode_descriptor(
                "sockets_connections_closed",
                "Connections closed, by reason.",
                None,
                MetricType::Counter,
            )?;
            for (kind, value) in CLOSE_KINDS.iter().zip(t.closed) {
                family
                    .encode_family(&[("reason", *kind)])?
                    .encode_counter::<NoLabelSet, _, u64>(&value, None)?;
            }
        }
        counter(
            &mut encoder,
            "sockets_balancer_connections",
            "Connections of the balancer's own (PROXY LOCAL or UNKNOWN: health checks), counted here and not by close reason.",
            t.balancer_closed,
        )?;
        counter(
            &mut encoder,
            "sockets_accept_errors",
            "Accepts that failed for lack of descriptors or memory.",
            t.accept_errors,
        )?;
        if let Some(labels) = REQUEST_LABELS.get() {
            let mut family = encoder.encode_descriptor(
                "sockets_requests",
                "Requests answered, by action and outcome.",
                None,
                MetricType::Counter,
            )?;
            for ((action, outcome), value) in labels.iter().zip(t.requests) {
                family
                    .encode_family(&[("action", *action), ("outcome", *outcome)])?
                    .encode_counter::<NoLabelSet, _, u64>(&value, None)?;
            }
        }
        // Only servers with requests (not echo) have request latencies.
        if REQUEST_LABELS.get().is_some() {
            // Per-bucket counts, +Inf last: the encoder makes them cumulative.
            let buckets: Vec<(f64, u64)> = LATENCY_BUCKETS
                .iter()
                .chain([f64::INFINITY].iter())
                .copied()
                .zip(t.latency)
                .collect();
            let count = t.latency.iter().sum();
            encoder
                .encode_descriptor(
                    "sockets_request_duration_seconds",
                    "From a request's last byte read to its response written.",
                    None,
                    MetricType::Histogram,
                )?
                .encode_histogram::<NoLabelSet>(t.latency_sum_ns as f64 / 1e9, count, &buckets, None)?;
        }
        counter(
            &mut encoder,
            "sockets_received_bytes",
            "Bytes received from clients.",
            t.bytes_in,
        )?;
        counter(
            &mut encoder,
            "sockets_sent_bytes",
            "Bytes sent to clients.",
            t.bytes_out,
        )?;
        {
            let mut family = encoder.encode_descriptor(
                "sockets_tls_handshakes",
                "TLS handshakes, by result.",
                None,
                MetricType::Counter,
            )?;
            for (result, value) in ["full", "resumed", "failed"].iter().zip(t.tls) {
                family
                    .encode_family(&[("result", *result)])?
                    .encode_counter::<NoLabelSet, _, u64>(&value, None)?;
            }
        }
        if let Some(budget) = BUDGET.get() {
            gauge(
                &mut encoder,
                "sockets_buffered_input_bytes",
                "Memory held for unfinished requests, server-wide.",
                i64::try_from(budget.used()).unwrap_or(i64::MAX),
            )?;
            gauge(
                &mut encoder,
                "sockets_buffered_input_limit_bytes",
                "The limit on memory for unfinished requests (--max-buffered-bytes).",
                i64::try_from(budget.max()).unwrap_or(i64::MAX),
            )?;
        }
        Ok(())
    }
}

/// The metrics in the OpenMetrics format (what Prometheus asks for).
pub fn render() -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Counters));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("writing to a String cannot fail");
    text
}

/// The metrics in the classic Prometheus text format (0.0.4), for scrapers
/// and tools that do not ask for OpenMetrics (`promtool check metrics`,
/// curl). The two differ, for what we expose, in one thing: a counter's
/// `# HELP` and `# TYPE` name its samples' `_total` name; and the classic
/// format has no `# EOF`.
pub fn render_classic() -> String {
    let open_metrics = render();
    let lines: Vec<&str> = open_metrics.lines().collect();
    let mut text = String::with_capacity(open_metrics.len() + 256);
    for (i, line) in lines.iter().enumerate() {
        if *line == "# EOF" {
            continue;
        }
        // prometheus-client writes `# HELP name` then `# TYPE name kind`.
        let family = line.strip_prefix("# HELP ").or_else(|| line.strip_prefix("# TYPE "));
        let is_counter = |name: &str| {
            lines[i..]
                .iter()
                .take(2)
                .any(|l| l.strip_prefix("# TYPE ").and_then(|rest| rest.strip_prefix(name)) == Some(" counter"))
        };
        match family.and_then(|rest| rest.split_once(' ')) {
            Some((name, rest)) if is_counter(name) => {
                let _ = writeln!(text, "{}{name}_total {rest}", &line[..7]);
            }
            _ => {
                text.push_str(line);
                text.push('\n');
            }
        }
    }
    text
}

/// The longest request head read from a scraper.
const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// How long a scraper has to send its request.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `GET /metrics` on `listener` until `shutdown` is cancelled.
pub async fn serve(listener: TcpListener, shutdown: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => return,
        };
        match accepted {
            Ok((stream, _)) => {
                tokio::spawn(async move {
                    if let Err(error) = tokio::time::timeout(SCRAPE_TIMEOUT, answer(stream)).await {
                        debug!("metrics request: {error}");
                    }
                });
            }
            Err(error) => debug!("metrics accept failed: {error}"),
        }
    }
}

/// Answers one HTTP request on `stream`, then closes it.
async fn answer(mut stream: TcpStream) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > MAX_REQUEST_HEAD {
            return respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                "request too large\n",
            )
            .await;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut words = line.split(|&b| b == b' ');
    let (method, target, version) = (
        words.next().unwrap_or_default(),
        words.next().unwrap_or_default(),
        words.next().unwrap_or_default(),
    );
    if !version.starts_with(b"HTTP/") || method.is_empty() || !method.iter().all(u8::is_ascii_uppercase) {
        return respond(&mut stream, "400 Bad Request", "text/plain", "not an HTTP request\n").await;
    }
    // A query string (`?name[]=...`, as Prometheus sends for federation) changes nothing.
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    match (method, path) {
        (b"GET", b"/metrics") if wants_open_metrics(&head) => {
            respond(
                &mut stream,
                "200 OK",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                &render(),
            )
            .await
        }
        (b"GET", b"/metrics") => {
            respond(
                &mut stream,
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                &render_classic(),
            )
            .await
        }
        (b"GET", _) => respond(&mut stream, "404 Not Found", "text/plain", "metrics are at /metrics\n").await,
        _ => {
            respond(
                &mut stream,
                "405 Method Not Allowed",
                "text/plain",
                "only GET /metrics\n",
            )
            .await
        }
    }
}

/// Whether the request's `Accept` header names OpenMetrics (Prometheus
/// sends it first in its list).
fn wants_open_metrics(head: &[u8]) -> bool {
    const OPEN_METRICS: &[u8] = b"application/openmetrics-text";
    head.split(|&b| b == b'\n')
        .filter(|line| line.len() > 7 && line[..7].eq_ignore_ascii_case(b"accept:"))
        .any(|line| {
            line.windows(OPEN_METRICS.len())
                .any(|w| w.eq_ignore_ascii_case(OPEN_METRICS))
        })
}

async fn respond(stream: &mut TcpStream, status: &str, content_type: &str, body: &str) -> std::io::Result<()> {
    let mut response = String::with_capacity(body.len() + 128);
    let _ = write!(
        response,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The counters are the process's: tests that compare them take turns.
    static SERIAL: Mutex<()> = Mutex::new(());

    #[test]
    fn counts_from_every_thread_are_summed() {
        let _turn = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        enable();
        set_request_labels(&[("search", "hit"), ("search", "miss")]);
        let before = totals();
        let threads: Vec<_> = (0..3)
            .map(|_| {
                std::thread::spawn(|| {
                    accepted();
                    requests([(1, Duration::from_micros(30))]);
                    bytes(10, 20);
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let after = totals();
        assert_eq!(after.accepted - before.accepted, 3);
        assert_eq!(after.requests[1] - before.requests[1], 3);
        assert_eq!(after.bytes_out - before.bytes_out, 60);
        let text = render();
        assert!(text.contains("# TYPE sockets_requests counter"), "{text}");
        assert!(
            text.contains("sockets_requests_total{action=\"search\",outcome=\"miss\"} "),
            "{text}"
        );
        assert!(
            text.contains("sockets_request_duration_seconds_bucket{le=\"0.00005\"} "),
            "{text}"
        );
        assert!(
            text.contains("sockets_connections_closed_total{reason=\"tls_handshake_failed\"} "),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
        let classic = render_classic();
        assert!(classic.contains("# TYPE sockets_requests_total counter\n"), "{classic}");
        assert!(
            classic.contains("# HELP sockets_requests_total Requests answered"),
            "{classic}"
        );
        assert!(classic.contains("# TYPE sockets_connections_open gauge\n"), "{classic}");
        assert!(
            classic.contains("# TYPE sockets_request_duration_seconds histogram\n"),
            "{classic}"
        );
        assert!(!classic.contains("# EOF"), "{classic}");
    }

    /// The value of the sample `name` on `page`.
    fn sample(page: &str, name: &str) -> u64 {
        page.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {page}"))
    }

    #[test]
    fn histogram_buckets_are_cumulative_once_and_end_at_the_count() {
        let _turn = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        enable();
        let before = render();
        requests([
            (0, Duration::from_micros(5)),
            (0, Duration::from_micros(700)),
            (0, Duration::from_secs(5)),
        ]);
        let after = render();
        let moved = |name: &str| sample(&after, name) - sample(&before, name);
        let name = "sockets_request_duration_seconds";
        assert_eq!(moved(&format!("{name}_bucket{{le=\"0.00001\"}}")), 1);
        assert_eq!(moved(&format!("{name}_bucket{{le=\"0.0005\"}}")), 1);
        assert_eq!(moved(&format!("{name}_bucket{{le=\"0.001\"}}")), 2);
        assert_eq!(moved(&format!("{name}_bucket{{le=\"1.0\"}}")), 2);
        assert_eq!(moved(&format!("{name}_bucket{{le=\"+Inf\"}}")), 3);
        assert_eq!(moved(&format!("{name}_count")), 3);
        assert_eq!(
            sample(&after, &format!("{name}_bucket{{le=\"+Inf\"}}")),
            sample(&after, &format!("{name}_count"))
        );
    }

    #[test]
    fn open_metrics_is_served_to_those_who_ask() {
        assert!(wants_open_metrics(
            b"GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\n\r\n"
        ));
        assert!(!wants_open_metrics(b"GET /metrics HTTP/1.1\r\nAccept: */*\r\n\r\n"));
    }
}
