//! Servers as they run in production: behind a balancer that sends a PROXY
//! header, scraped by Prometheus, restricted by address, reloaded with
//! SIGHUP, sharing a port with SO_REUSEPORT, started by a service manager.
//! The real binary on loopback, driven by our clients, curl and promtool.
//! (HAProxy across network namespaces is in `balancer.rs`.)

mod common;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use sockets::app::client_request;
use sockets::transport::proxy::{ProxyVersion, encode_header};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use common::{
    STEP, ServerProcess, encode, read_message, result_of, run_cli, search, send, start_app_server as app_server, step,
};

/// Connects to `to` from the local address `from` (any 127/8 address is local).
async fn connect_from(from: IpAddr, to: SocketAddr) -> TcpStream {
    let socket = if from.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    step("connecting", socket.connect(to)).await.expect("connecting")
}

/// Sends `bytes`, ends the sending side, and returns everything the server
/// sent before closing. A refused connection may end with a reset (it was
/// closed with our request unread): that reads as what arrived before it.
async fn exchange(mut stream: TcpStream, bytes: &[u8]) -> Vec<u8> {
    send(&mut stream, bytes).await;
    let _ = stream.shutdown().await;
    let mut received = Vec::new();
    let read = step("reading to the end", stream.read_to_end(&mut received)).await;
    if let Err(error) = read {
        assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset, "reading: {error}");
    }
    received
}

/// The one search answer in `response`, or `None` for a connection closed unanswered.
fn answer_in(response: &[u8]) -> Option<String> {
    let mut buf = BytesMut::from(response);
    let message = sockets::protocol::MessageCodec::new();
    let mut codec = message;
    tokio_util::codec::Decoder::decode(&mut codec, &mut buf)
        .expect("a well-formed response")
        .map(|message| result_of(&message))
}

/// `sockets app-client` with `extra` flags; its stdout, or `None` if it failed.
fn app_client(addr: SocketAddr, value: &str, extra: &[&str]) -> Option<String> {
    let port = addr.port().to_string();
    let host = addr.ip().to_string();
    let mut args = vec!["app-client", host.as_str(), port.as_str(), "search", value];
    args.extend_from_slice(extra);
    let output = run_cli(&args);
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

#[tokio::test]
async fn our_clients_send_both_proxy_versions_and_the_server_serves_them() {
    let server = app_server(&["--proxy-protocol", "--proxy-from", "127.0.0.1"]);
    for version in ["v1", "v2"] {
        let got = app_client(server.addr(), "morpheus", &["--send-proxy", version]);
        assert!(
            got.as_deref()
                .is_some_and(|out| out.contains("Follow the white rabbit")),
            "--send-proxy {version}: {got:?}; server log:\n{}",
            server.stderr()
        );
        server.wait_for_log(&format!(", PROXY {version})"));
    }
    let (report, bench) = common::bench_json(&["app", "127.0.0.1", &server.port(), "-n", "200", "--send-proxy", "v2"]);
    assert!(bench.status.success(), "{}", common::describe(&["bench"], &bench));
    assert_eq!(report["requests"], 200);
}

#[tokio::test]
async fn the_client_named_in_the_header_is_the_peer() {
    let server = app_server(&["--proxy-protocol", "--proxy-from", "127.0.0.0/8", "-v"]);
    let mut request = b"PROXY TCP4 203.0.113.9 127.0.0.1 4242 65432\r\n".to_vec();
    request.extend(search("morpheus"));
    let response = exchange(common::connect(server.addr()).await, &request).await;
    assert_eq!(answer_in(&response).as_deref(), Some("Follow the white rabbit. 🐰"));
    server.wait_for_log("Accepted connection from 203.0.113.9:4242 (via 127.0.0.1:");

    // A v2 header with TLVs, one of them holding a NUL: shown whole at debug level.
    let client: SocketAddr = "[2001:db8::7]:5555".parse().unwrap();
    let destination: SocketAddr = "[2001:db8::1]:65432".parse().unwrap();
    let mut header = ppp::v2::Builder::with_addresses(
        ppp::v2::Version::Two | ppp::v2::Command::Proxy,
        ppp::v2::Protocol::Stream,
        (client, destination),
    )
    .write_tlv(0x01, b"h2")
    .unwrap()
    .write_tlv(0xe0, b"tenant\0seven")
    .unwrap()
    .build()
    .unwrap();
    header.extend(search("ring"));
    let response = exchange(common::connect(server.addr()).await, &header).await;
    assert_eq!(
        answer_in(&response).as_deref(),
        Some("In the caves beneath the Misty Mountains. 💍")
    );
    server.wait_for_log("Accepted connection from [2001:db8::7]:5555 (via 127.0.0.1:");
    server.wait_for_log("type 0x01 (ALPN), 2 bytes: h2");
    server.wait_for_log("type 0xe0 (custom), 12 bytes: tenant\\0seven");
}

#[tokio::test]
async fn a_connection_without_a_header_or_from_an_untrusted_source_is_refused() {
    let server = app_server(&["--proxy-protocol", "--proxy-from", "127.0.0.2"]);
    // From the trusted address, no header: refused, with the reason logged.
    let plain = exchange(
        connect_from("127.0.0.2".parse().unwrap(), server.addr()).await,
        &search("x"),
    )
    .await;
    assert!(
        plain.is_empty(),
        "a connection without a header was answered: {plain:?}"
    );
    server.wait_for_log("PROXY header refused: ");
    // From elsewhere, with a good header: refused before reading it.
    let mut request = encode_header(
        ProxyVersion::V1,
        Some(("192.0.2.1:1000".parse().unwrap(), "127.0.0.1:1".parse().unwrap())),
    );
    request.extend(search("morpheus"));
    let untrusted = exchange(
        connect_from("127.0.0.1".parse().unwrap(), server.addr()).await,
        &request,
    )
    .await;
    assert!(untrusted.is_empty(), "an untrusted header was believed: {untrusted:?}");
    server.wait_for_log("PROXY header refused: 127.0.0.1:");
    server.wait_for_log("is not in --proxy-from");
    // The trusted balancer with a header is served.
    let trusted = exchange(
        connect_from("127.0.0.2".parse().unwrap(), server.addr()).await,
        &request,
    )
    .await;
    assert_eq!(answer_in(&trusted).as_deref(), Some("Follow the white rabbit. 🐰"));
}

#[tokio::test]
async fn v2_local_over_a_unix_socket_is_served_as_a_direct_connection() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.sock");
    let path = path.to_str().unwrap();
    // -v: the balancer's own connections are logged at debug level.
    let server = ServerProcess::start(&["app-server", "--unix", path, "--proxy-protocol", "-v"]);
    for version in ["v1", "v2"] {
        let output = run_cli(&[
            "app-client",
            "--unix",
            path,
            "search",
            "morpheus",
            "--send-proxy",
            version,
        ]);
        assert!(
            String::from_utf8_lossy(&output.stdout).contains("Follow the white rabbit"),
            "--send-proxy {version} over unix: {}\nserver log:\n{}",
            common::describe(&["app-client"], &output),
            server.stderr()
        );
    }
    // v1 UNKNOWN and v2 LOCAL: served as the balancer's own connections.
    server.wait_for_log("(PROXY v1, the balancer's own connection)");
    server.wait_for_log("(PROXY v2, the balancer's own connection)");
}

#[tokio::test]
async fn curl_sends_a_v1_header_that_the_echo_server_strips() {
    let server = common::start_echo_server(&["--proxy-protocol", "--idle-timeout", "1"]);
    let url = format!("http://{}/hello", server.addr());
    let output = Command::new("curl")
        .args(["--silent", "--http0.9", "--haproxy-protocol", "--max-time", "5", &url])
        .output()
        .expect("running curl (apt-get install curl)");
    let echoed = String::from_utf8_lossy(&output.stdout);
    // curl's request comes back without the header that preceded it.
    assert!(
        echoed.starts_with("GET /hello HTTP/1.1\r\n"),
        "curl got back {echoed:?}"
    );
    assert!(!echoed.contains("PROXY"), "the header was echoed: {echoed:?}");
    server.wait_for_log(", PROXY v1)");
}

/// The metrics page, fetched with curl.
fn scrape(url: &str) -> String {
    let output = Command::new("curl")
        .args(["--silent", "--show-error", "--fail", "--max-time", "5", url])
        .output()
        .expect("running curl (apt-get install curl)");
    assert!(
        output.status.success(),
        "curl {url}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Every sample on a metrics page, by name with labels.
fn samples(page: &str) -> HashMap<String, f64> {
    page.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// How much each sample moved between two pages.
fn moved(before: &HashMap<String, f64>, after: &HashMap<String, f64>, name: &str) -> f64 {
    after
        .get(name)
        .copied()
        .unwrap_or_else(|| panic!("no {name} in {after:?}"))
        - before.get(name).copied().unwrap_or(0.0)
}

/// Scrapes until `name` has moved by `expected` (connections close a moment
/// after their last answer), or returns the last page.
fn scrape_until(url: &str, before: &HashMap<String, f64>, name: &str, expected: f64) -> HashMap<String, f64> {
    let deadline = Instant::now() + STEP;
    loop {
        let page = samples(&scrape(url));
        if moved(before, &page, name) >= expected || Instant::now() > deadline {
            return page;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn metrics_count_exactly_what_was_sent_and_pass_promtool() {
    let server = app_server(&["--metrics", "127.0.0.1:0"]);
    let url = server.metrics_url();
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with("/metrics"),
        "{url}"
    );
    let before = samples(&scrape(&url));
    let mut requests = Vec::new();
    requests.extend((0..5).map(|_| search("morpheus")));
    requests.extend((0..3).map(|_| search("nobody")));
    requests.extend((0..2).map(|_| encode(&client_request("upload", "ten bytes and more"))));
    let (mut sent, mut received) = (0, 0);
    for request in &requests {
        let response = exchange(common::connect(server.addr()).await, request).await;
        assert!(!response.is_empty(), "unanswered");
        sent += request.len();
        received += response.len();
    }
    let closed = "sockets_connections_closed_total{reason=\"client_closed\"}";
    let after = scrape_until(&url, &before, closed, 10.0);
    let delta = |name: &str| moved(&before, &after, name);
    assert_eq!(delta("sockets_requests_total{action=\"search\",outcome=\"hit\"}"), 5.0);
    assert_eq!(delta("sockets_requests_total{action=\"search\",outcome=\"miss\"}"), 3.0);
    assert_eq!(
        delta("sockets_requests_total{action=\"binary\",outcome=\"binary\"}"),
        2.0
    );
    assert_eq!(delta("sockets_request_duration_seconds_count"), 10.0);
    assert_eq!(delta("sockets_request_duration_seconds_bucket{le=\"+Inf\"}"), 10.0);
    assert_eq!(delta("sockets_connections_accepted_total"), 10.0);
    assert_eq!(delta(closed), 10.0);
    assert_eq!(delta("sockets_received_bytes_total"), sent as f64);
    assert_eq!(delta("sockets_sent_bytes_total"), received as f64);
    assert_eq!(after["sockets_connections_open"], 0.0);
    assert_eq!(after["sockets_buffered_input_bytes"], 0.0);
    assert!(after["sockets_buffered_input_limit_bytes"] > 0.0);

    // promtool, Prometheus's own checker, accepts the page.
    let page = scrape(&url);
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running promtool (apt-get install prometheus)");
    std::io::Write::write_all(&mut promtool.stdin.take().unwrap(), page.as_bytes()).unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool: {}{}\n{page}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    // Anything but GET /metrics is turned away.
    let other = Command::new("curl")
        .args(["--silent", "--output", "/dev/null", "--write-out", "%{http_code}"])
        .arg(url.replace("/metrics", "/"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&other.stdout), "404");
    let post = Command::new("curl")
        .args([
            "--silent",
            "--output",
            "/dev/null",
            "--write-out",
            "%{http_code}",
            "--data",
            "x",
            &url,
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&post.stdout), "405");
}

#[tokio::test]
async fn allow_and_deny_decide_on_the_real_peer() {
    assert!(
        std::net::TcpListener::bind("[::1]:0").is_ok(),
        "this test needs IPv6 on loopback (::1)"
    );
    let server = ServerProcess::start(&[
        "app-server",
        "::",
        "0",
        "--allow",
        "127.0.0.0/8",
        "--deny",
        "127.0.0.2",
        "--metrics",
        "127.0.0.1:0",
    ]);
    let port = server.addr().port();
    let url = server.metrics_url();
    let before = samples(&scrape(&url));
    let to = |ip: &str| SocketAddr::new(ip.parse().unwrap(), port);
    let allowed = exchange(
        connect_from("127.0.0.1".parse().unwrap(), to("127.0.0.1")).await,
        &search("morpheus"),
    )
    .await;
    assert_eq!(answer_in(&allowed).as_deref(), Some("Follow the white rabbit. 🐰"));
    let denied = exchange(
        connect_from("127.0.0.2".parse().unwrap(), to("127.0.0.1")).await,
        &search("morpheus"),
    )
    .await;
    assert!(denied.is_empty(), "127.0.0.2 is denied but was answered");
    let not_allowed = exchange(
        connect_from("::1".parse().unwrap(), to("::1")).await,
        &search("morpheus"),
    )
    .await;
    assert!(not_allowed.is_empty(), "::1 is not allowed but was answered");
    // The dual-stack socket saw ::ffff:127.0.0.2; it is logged (and matched) as IPv4.
    server.wait_for_log("Closing connection to 127.0.0.2:");
    server.wait_for_log("(denied by --allow/--deny)");
    let after = scrape_until(
        &url,
        &before,
        "sockets_connections_closed_total{reason=\"denied\"}",
        2.0,
    );
    assert_eq!(
        moved(&before, &after, "sockets_connections_closed_total{reason=\"denied\"}"),
        2.0
    );
}

#[tokio::test]
async fn deny_applies_to_the_client_a_proxy_header_names() {
    let server = app_server(&["--proxy-protocol", "--deny", "203.0.113.0/24"]);
    let request = |client: &str| {
        let mut bytes = format!("PROXY TCP4 {client} 127.0.0.1 1000 2000\r\n").into_bytes();
        bytes.extend(search("morpheus"));
        bytes
    };
    let denied = exchange(common::connect(server.addr()).await, &request("203.0.113.9")).await;
    assert!(denied.is_empty(), "a denied client behind the balancer was answered");
    server.wait_for_log("Closing connection to 203.0.113.9:1000 (denied by --allow/--deny)");
    let other = exchange(common::connect(server.addr()).await, &request("198.51.100.1")).await;
    assert_eq!(answer_in(&other).as_deref(), Some("Follow the white rabbit. 🐰"));
}

/// Sends SIGHUP to the server.
fn hang_up(server: &ServerProcess) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(server.pid() as libc::pid_t, libc::SIGHUP) };
}

#[tokio::test]
async fn sighup_swaps_in_a_new_table_and_keeps_the_old_one_when_the_new_is_broken() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("table.json");
    std::fs::write(&data, r#"{"answer": "one"}"#).unwrap();
    let server = app_server(&["--data", data.to_str().unwrap()]);
    // A connection open across the reload keeps working.
    let mut held = common::connect(server.addr()).await;
    let ask = |stream: TcpStream| async move { answer_in(&exchange(stream, &search("answer")).await) };
    assert_eq!(ask(common::connect(server.addr()).await).await.as_deref(), Some("one"));

    std::fs::write(&data, r#"{"answer": "two"}"#).unwrap();
    hang_up(&server);
    server.wait_for_log("Loaded 1 search entries");
    let deadline = Instant::now() + STEP;
    while ask(common::connect(server.addr()).await).await.as_deref() != Some("two") {
        assert!(
            Instant::now() < deadline,
            "the new table never answered; log:\n{}",
            server.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    std::fs::write(&data, r#"{"answer": "#).unwrap();
    hang_up(&server);
    server.wait_for_log("Kept the search table in use");
    assert_eq!(ask(common::connect(server.addr()).await).await.as_deref(), Some("two"));
    send(&mut held, &search("answer")).await;
    let message = step(
        "the held connection's answer",
        read_message(&mut held, &mut BytesMut::new()),
    )
    .await
    .expect("an answer on the connection held across reloads");
    assert_eq!(result_of(&message), "two");
}

#[tokio::test]
async fn sighup_swaps_in_a_new_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    for name in ["first", "second"] {
        common::run_ok(&[
            "cert",
            "localhost",
            "--cert",
            &file(&format!("{name}.pem")),
            "--key",
            &file(&format!("{name}.key")),
        ]);
    }
    std::fs::copy(file("first.pem"), file("live.pem")).unwrap();
    std::fs::copy(file("first.key"), file("live.key")).unwrap();
    let server = app_server(&["--tls-cert", &file("live.pem"), "--tls-key", &file("live.key")]);
    let trusting = |name: &str| {
        app_client(
            server.addr(),
            "morpheus",
            &[
                "--tls-ca",
                &file(&format!("{name}.pem")),
                "--tls-server-name",
                "localhost",
            ],
        )
    };
    assert!(trusting("first").is_some());
    assert!(
        trusting("second").is_none(),
        "a client trusting only the second certificate connected"
    );

    std::fs::copy(file("second.pem"), file("live.pem")).unwrap();
    std::fs::copy(file("second.key"), file("live.key")).unwrap();
    hang_up(&server);
    server.wait_for_log("Reloaded the TLS certificate");
    assert!(trusting("second").is_some(), "log:\n{}", server.stderr());
    assert!(trusting("first").is_none(), "the old certificate is still served");

    // A key that does not match its certificate keeps the one in use.
    std::fs::copy(file("first.key"), file("live.key")).unwrap();
    hang_up(&server);
    server.wait_for_log("Kept the TLS certificate in use");
    assert!(trusting("second").is_some());
}

/// By default each core gets a listener of its own on the one port, runs
/// on a CPU of its own (where the cores cover every CPU the process may
/// use, on Linux 6.1 or later), and the port stays this server's: a second
/// server on it is refused as a plain bind would be.
#[test]
fn by_default_each_core_has_its_own_listener_and_cpu_and_the_port_stays_exclusive() {
    let server = ServerProcess::start(&["app-server", "127.0.0.1", "0"]);
    let cores = std::thread::available_parallelism().unwrap().get();
    assert_eq!(listening_sockets(server.addr().port()), cores, "one listener per core");
    let allowed = allowed_cpu_list();
    let pins = cores > 1 && cores >= allowed.len() && kernel_at_least_6_1();
    let expected: Vec<(usize, String)> = (0..cores)
        .map(|core| {
            let cpus = if pins {
                allowed[core].to_string()
            } else {
                cpu_list_of_this_process()
            };
            (core, cpus)
        })
        .collect();
    // The cores start after the address is printed: wait for them.
    let deadline = Instant::now() + STEP;
    let mut seen = cores_and_their_cpus(server.pid());
    while seen != expected && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        seen = cores_and_their_cpus(server.pid());
    }
    assert_eq!(seen, expected, "the cores' CPUs; log:\n{}", server.stderr());
    assert!(app_client(server.addr(), "morpheus", &[]).is_some());
    common::run_fails(
        &["app-server", "127.0.0.1", &server.port()],
        1,
        "another program is using that port",
    );
}

/// A connection limit smaller than the number of cores still serves
/// clients one after another, on whichever core they arrive: no idle core
/// keeps the only permit.
#[tokio::test]
async fn a_limit_below_the_core_count_serves_every_client_in_turn() {
    let server = app_server(&["--threads", "4", "--max-connections", "1"]);
    for n in 0..12 {
        let mut stream = TcpStream::connect(server.addr()).await.unwrap();
        let mut buf = BytesMut::new();
        send(&mut stream, &search("morpheus")).await;
        let answer = step("an answer", read_message(&mut stream, &mut buf)).await;
        assert!(answer.is_some(), "client {n} got no answer; log:\n{}", server.stderr());
    }
}

/// Each `core-N` thread of `pid` with its `Cpus_allowed_list`, by N.
fn cores_and_their_cpus(pid: u32) -> Vec<(usize, String)> {
    let mut cores: Vec<(usize, String)> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|task| {
            let task = task.ok()?.path();
            let name = std::fs::read_to_string(task.join("comm")).ok()?;
            let core = name.trim().strip_prefix("core-")?.parse().ok()?;
            let status = std::fs::read_to_string(task.join("status")).ok()?;
            let cpus = status
                .lines()
                .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))?;
            Some((core, cpus.trim().to_owned()))
        })
        .collect();
    cores.sort();
    cores
}

fn kernel_at_least_6_1() -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut parts = release
        .trim()
        .split(['.', '-'])
        .map(|part| part.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (6, 1)
}

/// This test process's `Cpus_allowed_list`, as the kernel writes it.
fn cpu_list_of_this_process() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim()
        .to_owned()
}

/// Listening TCP sockets on 127.0.0.1:`port` (from /proc/net/tcp).
fn listening_sockets(port: u16) -> usize {
    let wanted = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap()
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.get(1) == Some(&wanted.as_str()) && fields.get(3) == Some(&"0A")
        })
        .count()
}

/// The CPUs this test process may run on, in order.
fn allowed_cpu_list() -> Vec<usize> {
    cpu_list_of_this_process()
        .split(',')
        .flat_map(|range| match range.split_once('-') {
            Some((from, to)) => (from.parse::<usize>().unwrap()..=to.parse().unwrap()).collect::<Vec<_>>(),
            None => vec![range.parse().unwrap()],
        })
        .collect()
}

#[tokio::test]
async fn two_processes_share_a_port_and_one_stops_under_load_without_a_single_error() {
    let first = app_server(&["--reuse-port", "--threads", "1"]);
    let port = first.port();
    let second = ServerProcess::start(&["app-server", "127.0.0.1", &port, "--reuse-port", "--threads", "1"]);
    assert_eq!(first.listening, second.listening);
    // Persistent connections that keep requests in flight the whole time.
    let bench = Command::new(common::binary())
        .args([
            "bench",
            "app",
            "127.0.0.1",
            &port,
            "-c",
            "16",
            "-P",
            "4",
            "-d",
            "4",
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    first.terminate();
    let mut first = first;
    assert!(first.wait_exit().success(), "log:\n{}", first.stderr());
    let output = bench.wait_with_output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("bench: {}", String::from_utf8_lossy(&output.stderr)));
    let errors: u64 = report["errors"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(errors, 0, "{report:#}\nfirst server:\n{}", first.stderr());
    assert_eq!(report["unanswered"], 0, "{report:#}");
    // Both took connections; the stopping one's clients moved to the other.
    assert!(first.stderr().contains("Accepted connection"), "{}", first.stderr());
    assert!(second.stderr().contains("Accepted connection"), "{}", second.stderr());
    // Its connections were closed with requests in flight (4 on each, all
    // the time): those were sent again, to the survivor.
    let retried = report["retried"].as_u64().unwrap();
    assert!(retried > 0 && retried <= 16 * 4, "{report:#}");
    // The survivor serves on.
    assert!(app_client(second.addr(), "morpheus", &[]).is_some());
}

/// Starts `sockets ARGS` as a service manager would: `listener` as
/// descriptor 3, `LISTEN_FDS=1` and `LISTEN_PID` its own pid (a shell sets
/// it to `$$` and execs, keeping the pid).
fn start_activated(listener: std::os::fd::OwnedFd, args: &[&str]) -> ServerProcess {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let mut command = Command::new("sh");
    command.args(["-c", "LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" \"$@\"", common::binary()]);
    command.args(args);
    let fd = listener.as_raw_fd();
    // SAFETY: only dup2, which is async-signal-safe, runs between fork and exec.
    unsafe {
        command.pre_exec(move || {
            if libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let server = ServerProcess::spawn(command);
    drop(listener);
    server
}

#[tokio::test]
async fn a_socket_passed_by_the_service_manager_is_served() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = start_activated(listener.into(), &["app-server"]);
    assert_eq!(server.listening, addr.to_string());
    server.wait_for_log("Serving 1 socket(s) passed by the service manager");
    assert!(app_client(addr, "morpheus", &[]).is_some(), "log:\n{}", server.stderr());
}

#[tokio::test]
async fn a_passed_unix_socket_is_served_and_its_file_left_to_the_manager() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("activated.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let mut server = start_activated(listener.into(), &["echo-server"]);
    assert_eq!(server.listening, format!("unix:{}", path.display()));
    let output = common::run_cli_with_input(&["connect", "--unix", path.to_str().unwrap()], Some(b"activated"));
    assert_eq!(output.stdout, b"activated", "{}", server.stderr());
    server.terminate();
    assert!(server.wait_exit().success());
    assert!(path.exists(), "the server removed a socket file it did not create");
}

#[test]
fn a_malformed_listen_fds_is_a_clear_error() {
    let output = Command::new(common::binary())
        .args(["app-server", "127.0.0.1", "0"])
        .env("LISTEN_FDS", "many")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("LISTEN_FDS=\"many\" is not a count of sockets"),
        "{stderr}"
    );
}

#[test]
fn the_shipped_haproxy_config_is_valid() {
    // Its certificate path made real, as an installation would.
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    common::run_ok(&[
        "cert",
        "localhost",
        "--cert",
        &file("app.crt"),
        "--key",
        &file("app.key"),
    ]);
    let bundle = std::fs::read_to_string(file("app.crt")).unwrap() + &std::fs::read_to_string(file("app.key")).unwrap();
    std::fs::write(file("app.pem"), bundle).unwrap();
    let config = std::fs::read_to_string(common::repo_path("contrib/haproxy/haproxy.cfg"))
        .unwrap()
        .replace("/etc/haproxy/certs/app.pem", &file("app.pem"));
    std::fs::write(file("haproxy.cfg"), config).unwrap();
    let output = Command::new("haproxy")
        .args(["-c", "-f", &file("haproxy.cfg")])
        .output()
        .expect("running haproxy (apt-get install haproxy)");
    assert!(
        output.status.success(),
        "haproxy -c: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn while_draining_health_checks_fail_and_clients_are_served() {
    let mut server = app_server(&["--proxy-protocol", "--drain-delay", "2", "-v"]);
    let check = || async {
        // HAProxy's health check with check-send-proxy: a v2 LOCAL header, then a request.
        let mut bytes = encode_header(ProxyVersion::V2, None);
        bytes.extend(search("health-check"));
        answer_in(&exchange(common::connect(server.addr()).await, &bytes).await)
    };
    let client = || async {
        let mut bytes = encode_header(
            ProxyVersion::V2,
            Some(("192.0.2.1:1000".parse().unwrap(), "127.0.0.1:1".parse().unwrap())),
        );
        bytes.extend(search("morpheus"));
        answer_in(&exchange(common::connect(server.addr()).await, &bytes).await)
    };
    assert_eq!(check().await.as_deref(), Some("No match for 'health-check'."));
    server.terminate();
    server.wait_for_log("draining for 2s");
    let started = Instant::now();
    assert_eq!(check().await, None, "a health check passed while draining");
    assert_eq!(client().await.as_deref(), Some("Follow the white rabbit. 🐰"));
    server.wait_for_log("(draining: the balancer's health check fails until the server stops)");
    assert!(server.wait_exit().success());
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "stopped before the drain delay"
    );
    server.wait_for_log("Drained for 2s; shutting down gracefully");
}

#[tokio::test]
async fn the_balancers_own_connections_pass_allow_and_are_counted_apart() {
    let server = app_server(&[
        "--proxy-protocol",
        "--proxy-from",
        "127.0.0.1",
        "--allow",
        "192.0.2.0/24",
        "--metrics",
        "127.0.0.1:0",
    ]);
    let url = server.metrics_url();
    let before = samples(&scrape(&url));
    let send = |header: Vec<u8>| async {
        let mut bytes = header;
        bytes.extend(search("morpheus"));
        answer_in(&exchange(common::connect(server.addr()).await, &bytes).await)
    };
    let to = "127.0.0.1:1".parse().unwrap();
    // A health check (v2 LOCAL) from the trusted balancer, outside --allow: served.
    assert!(send(encode_header(ProxyVersion::V2, None)).await.is_some());
    assert!(send(b"PROXY UNKNOWN\r\n".to_vec()).await.is_some());
    // Clients: inside --allow served, outside refused.
    let client = |from: &str| encode_header(ProxyVersion::V2, Some((from.parse().unwrap(), to)));
    assert!(send(client("192.0.2.1:1000")).await.is_some());
    assert!(send(client("198.51.100.1:1000")).await.is_none());
    // A client named by a Unix address has no address --allow could list.
    let unix_client = ppp::v2::Builder::with_addresses(
        ppp::v2::Version::Two | ppp::v2::Command::Proxy,
        ppp::v2::Protocol::Stream,
        ppp::v2::Addresses::Unix(ppp::v2::Unix::new([b'x'; 108], [b'y'; 108])),
    )
    .build()
    .unwrap();
    assert!(send(unix_client).await.is_none());
    let denied = "sockets_connections_closed_total{reason=\"denied\"}";
    let after = scrape_until(&url, &before, denied, 2.0);
    assert_eq!(moved(&before, &after, denied), 2.0);
    assert_eq!(moved(&before, &after, "sockets_balancer_connections_total"), 2.0);
    assert_eq!(
        moved(
            &before,
            &after,
            "sockets_connections_closed_total{reason=\"client_closed\"}"
        ),
        1.0,
        "only the one client served closes as a client"
    );
    // A query string is ignored; something that is not HTTP is a 400.
    assert!(scrape(&format!("{url}?name[]=x")).contains("sockets_balancer_connections_total"));
    let mut raw = common::connect(
        url.trim_start_matches("http://")
            .trim_end_matches("/metrics")
            .parse()
            .unwrap(),
    )
    .await;
    common::send(&mut raw, b"\x16\x03\x01 hello\r\n\r\n").await;
    let reply = common::read_to_end(&mut raw).await;
    assert!(
        reply.starts_with(b"HTTP/1.1 400 "),
        "{}",
        String::from_utf8_lossy(&reply)
    );
}

#[test]
fn deployment_flags_that_cannot_work_are_refused() {
    common::run_fails(
        &["app-server", "--unix", "/tmp/x.sock", "--allow", "10.0.0.0/8"],
        2,
        "cannot be used with",
    );
    common::run_fails(
        &[
            "app-server",
            "--unix",
            "/tmp/x.sock",
            "--proxy-protocol",
            "--proxy-from",
            "10.0.0.5",
        ],
        2,
        "cannot be used with",
    );
    common::run_fails(
        &["app-server", "--reuse-port", "--unix", "/tmp/x.sock"],
        2,
        "cannot be used with",
    );
    common::run_fails(&["app-server", "--drain-delay", "5"], 2, "--proxy-protocol");
    common::run_fails(&["app-server", "--allow", "ten"], 2, "'ten' is not an address range");
    common::run_fails(
        &["app-server", "127.0.0.1", "0", "--metrics", "127.0.0.1:99999"],
        1,
        "99999",
    );
    common::run_fails(
        &["app-server", "127.0.0.1", "0", "--metrics", "nonsense"],
        1,
        "expected HOST:PORT",
    );
}
