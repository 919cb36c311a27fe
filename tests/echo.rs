//! The echo and multi-connection tiers on every transport, through the real
//! binary: TCP, UDP, Unix stream and datagram sockets, IPv6.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::{ServerProcess, connect, describe, run_cli, run_cli_with_input, run_fails, run_ok, step};

fn echo_server(extra: &[&str]) -> ServerProcess {
    let mut args = vec!["echo-server"];
    if !extra.contains(&"--unix") {
        args.extend(["127.0.0.1", "0"]);
    }
    args.extend_from_slice(extra);
    ServerProcess::start(&args)
}

#[test]
fn echo_client_gets_its_message_back() {
    let server = echo_server(&[]);
    let port = server.port();
    assert_eq!(
        run_ok(&["echo-client", "127.0.0.1", &port]),
        "Received b'Hello, world'\n"
    );
    assert_eq!(run_ok(&["echo-client", "127.0.0.1", &port, ""]), "Received b''\n");
    assert_eq!(run_ok(&["echo-client", "127.0.0.1", &port, "x"]), "Received b'x'\n");
    assert_eq!(
        run_ok(&["echo-client", "localhost", &port, "it's 😃"]),
        "Received b\"it's \\xf0\\x9f\\x98\\x83\"\n"
    );
}

#[test]
fn sixty_four_mebibytes_come_back_intact() {
    let server = echo_server(&["-q"]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("payload.bin");
    let mut file = std::fs::File::create(&path).unwrap();
    let mut state = 0x2545_f491_u32;
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..64 {
        for byte in block.iter_mut() {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            *byte = state as u8;
        }
        file.write_all(&block).unwrap();
    }
    drop(file);
    let out = run_ok(&[
        "echo-client",
        "127.0.0.1",
        &server.port(),
        "--input",
        path.to_str().unwrap(),
    ]);
    assert_eq!(out, "Received 67108864 bytes\n");
}

#[test]
fn a_wrong_echo_fails_the_client() {
    // A server that answers with other bytes.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(2) {
            let mut stream = stream.unwrap();
            let mut buf = [0u8; 64];
            let n = std::io::Read::read(&mut stream, &mut buf).unwrap();
            stream.write_all(&buf[..n].to_ascii_uppercase()).unwrap();
        }
    });
    let stderr = run_fails(
        &["echo-client", "127.0.0.1", &port, "abc"],
        1,
        "the echo differs from what was sent",
    );
    assert!(stderr.contains("first difference at byte 0"), "{stderr}");
    run_fails(&["multiconn-client", "127.0.0.1", &port, "1"], 1, "");
}

#[test]
fn refused_and_usage_errors_are_clear() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    run_fails(
        &["echo-client", "localhost", &closed],
        1,
        &format!("127.0.0.1:{closed}: Connection refused"),
    );
    run_fails(
        &["echo-client", "127.0.0.1"],
        2,
        "required arguments were not provided: <PORT>",
    );
    run_fails(
        &["echo-client", "127.0.0.1", "http"],
        2,
        "invalid value 'http' for '<PORT>': 'http' is not a port number (0 to 65535)",
    );
    run_fails(
        &["multiconn-client", "127.0.0.1", "1", "0"],
        2,
        "invalid value '0' for '<NUM_CONNECTIONS>': not a whole number from 1 to 100000",
    );
    run_fails(
        &["echo-client", "nosuch.invalid", "1"],
        1,
        "cannot resolve \"nosuch.invalid\"",
    );
}

#[test]
fn a_hundred_multiconn_connections_all_echo() {
    let server = ServerProcess::start(&["multiconn-server", "127.0.0.1", "0", "-q"]);
    let out = run_ok(&["multiconn-client", "127.0.0.1", &server.port(), "100"]);
    for id in 1..=100 {
        assert!(
            out.contains(&format!("Starting connection {id} to 127.0.0.1 port ")),
            "connection {id} missing:\n{out}"
        );
        assert!(
            out.contains(&format!("Sending b'Message 2 from client.' to connection {id}\n")),
            "{out}"
        );
        assert!(out.contains(&format!("Closing connection {id}\n")), "{out}");
    }
    let summary = out.lines().last().unwrap();
    assert!(summary.starts_with("100 connection(s) to 127.0.0.1 port "), "{summary}");
    assert!(
        summary.contains(": 100 succeeded, 0 failed; 4400 bytes echoed in "),
        "{summary}"
    );
}

#[tokio::test]
async fn echo_backpressure_bounds_server_memory() {
    let server = echo_server(&["-q"]);
    let baseline = server.rss_bytes();
    let mut hog = connect(server.addr()).await;
    let block = vec![b'z'; 1 << 20];
    let mut written = 0usize;
    for _ in 0..64 {
        match tokio::time::timeout(Duration::from_millis(500), hog.write_all(&block)).await {
            Ok(result) => {
                result.unwrap();
                written += block.len();
            }
            Err(_) => break,
        }
    }
    assert!(
        written < 64 << 20,
        "the server kept reading from a client that reads nothing"
    );
    let grown = server.rss_bytes().saturating_sub(baseline);
    assert!(grown < 8 << 20, "server RSS grew by {grown} bytes");
    // Another client is unaffected.
    let mut other = connect(server.addr()).await;
    other.write_all(b"still here").await.unwrap();
    let mut buf = [0u8; 10];
    step("echo to another client", other.read_exact(&mut buf))
        .await
        .unwrap();
    assert_eq!(&buf, b"still here");
}

#[tokio::test]
async fn echo_server_shares_idle_timeout_and_graceful_shutdown() {
    let mut server = echo_server(&["--idle-timeout", "0.3"]);
    let mut idle = connect(server.addr()).await;
    let mut rest = Vec::new();
    step("idle close", idle.read_to_end(&mut rest)).await.unwrap();
    server.wait_for_log("(idle for 300ms)");

    let mut open = connect(server.addr()).await;
    open.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    step("echo", open.read_exact(&mut buf)).await.unwrap();
    server.terminate();
    let mut rest = Vec::new();
    step("shutdown close", open.read_to_end(&mut rest)).await.unwrap();
    assert!(server.wait_exit().success());
    server.wait_for_log("(server shutting down)");
}

#[test]
fn udp_echo_serves_many_peers() {
    let server = echo_server(&["--udp", "-q"]);
    let addr = server.addr();
    assert_eq!(
        run_ok(&["echo-client", "--udp", "127.0.0.1", &server.port(), "datagram"]),
        "Received b'datagram'\n"
    );
    let peers: Vec<std::net::UdpSocket> = (0..50)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    for (i, peer) in peers.iter().enumerate() {
        peer.send_to(format!("peer {i}").as_bytes(), addr).unwrap();
    }
    for (i, peer) in peers.iter().enumerate() {
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = peer.recv_from(&mut buf).unwrap();
        assert_eq!(from, addr);
        assert_eq!(&buf[..n], format!("peer {i}").as_bytes());
    }
}

#[test]
fn udp_client_retries_a_silent_peer_then_gives_up() {
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port().to_string();
    let started = Instant::now();
    run_fails(
        &[
            "echo-client",
            "--udp",
            "127.0.0.1",
            &port,
            "anyone?",
            "--timeout",
            "0.2",
            "--attempts",
            "3",
        ],
        1,
        "no reply after 3 attempt(s) of 200ms each",
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    // All three attempts reached the peer.
    silent.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut buf = [0u8; 16];
    for attempt in 1..=3 {
        let n = silent
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("attempt {attempt} never arrived: {e}"));
        assert_eq!(&buf[..n], b"anyone?");
    }
}

#[test]
fn udp_client_reports_truncation() {
    let server = echo_server(&["--udp", "-q"]);
    run_fails(
        &[
            "echo-client",
            "--udp",
            "127.0.0.1",
            &server.port(),
            &"x".repeat(2000),
            "--buffer-size",
            "100",
        ],
        1,
        "the reply of 2000 bytes was truncated to the 100-byte buffer",
    );
}

#[test]
fn unix_stream_sockets_replace_stale_files_refuse_live_ones_and_clean_up() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("echo.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap()); // stale, as a crashed server leaves it
    let path_arg = path.to_str().unwrap();
    let mut server = echo_server(&["--unix", path_arg]);
    assert_eq!(server.listening, format!("unix:{path_arg}"));
    server.wait_for_log("Removed stale socket file");
    assert_eq!(
        run_ok(&["echo-client", "--unix", path_arg, "over unix"]),
        "Received b'over unix'\n"
    );
    assert!(run_ok(&["multiconn-client", "--unix", path_arg, "5"]).contains("5 succeeded, 0 failed"));
    run_fails(
        &["echo-server", "--unix", path_arg],
        1,
        "another server is already listening on unix:",
    );
    server.terminate();
    assert!(server.wait_exit().success());
    assert!(!path.exists(), "the socket file is removed on shutdown");
}

#[test]
fn unix_datagram_echo() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dgram.sock");
    let path_arg = path.to_str().unwrap();
    let _server = echo_server(&["--udp", "--unix", path_arg]);
    assert_eq!(
        run_ok(&["echo-client", "--udp", "--unix", path_arg, "unix datagram"]),
        "Received b'unix datagram'\n"
    );
}

#[test]
fn app_tier_over_unix_sockets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.sock");
    let path_arg = path.to_str().unwrap();
    let _server = ServerProcess::start(&["app-server", "--unix", path_arg]);
    let out = run_ok(&["app-client", "--unix", path_arg, "search", "ring"]);
    assert_eq!(out, "Got result: In the caves beneath the Misty Mountains. 💍\n");
}

/// Whether this machine can bind IPv6 loopback; the tests that need it say so when it cannot.
fn have_ipv6() -> bool {
    let ok = std::net::TcpListener::bind("[::1]:0").is_ok();
    if !ok {
        eprintln!("SKIPPED: this machine has no IPv6 loopback (::1)");
    }
    ok
}

#[test]
fn ipv6_loopback_and_dual_stack() {
    if !have_ipv6() {
        return;
    }
    let server = ServerProcess::start(&["echo-server", "::1", "0"]);
    assert!(server.listening.starts_with("[::1]:"), "{}", server.listening);
    assert_eq!(
        run_ok(&["echo-client", "::1", &server.port(), "six"]),
        "Received b'six'\n"
    );
    assert_eq!(
        run_ok(&["echo-client", "[::1]", &server.port(), "brackets"]),
        "Received b'brackets'\n"
    );

    let dual = ServerProcess::start(&["echo-server", "::", "0"]);
    assert_eq!(run_ok(&["echo-client", "::1", &dual.port(), "v6"]), "Received b'v6'\n");
    let v4 = run_cli(&["echo-client", "127.0.0.1", &dual.port(), "v4"]);
    if v4.status.success() {
        assert_eq!(String::from_utf8_lossy(&v4.stdout), "Received b'v4'\n");
        dual.wait_for_log("Accepted connection from 127.0.0.1:");
    } else {
        eprintln!(
            "SKIPPED: this OS does not accept IPv4 on an IPv6 socket\n{}",
            describe(&["echo-client"], &v4)
        );
    }
}

#[test]
fn connect_relays_a_pipe_and_half_closes() {
    let server = echo_server(&[]);
    let input = b"hello\nworld\n\x00\xff binary too";
    let output = run_cli_with_input(&["connect", "127.0.0.1", &server.port()], Some(input));
    assert!(output.status.success(), "{}", describe(&["connect"], &output));
    assert_eq!(output.stdout, input);

    let udp = echo_server(&["--udp", "-q"]);
    let output = run_cli_with_input(
        &["connect", "--udp", "127.0.0.1", &udp.port(), "--linger", "0.3"],
        Some(b"one datagram"),
    );
    assert!(output.status.success(), "{}", describe(&["connect", "--udp"], &output));
    assert_eq!(output.stdout, b"one datagram");
}

#[test]
fn connect_to_the_app_server_speaks_raw_bytes() {
    let server = ServerProcess::start(&["app-server", "127.0.0.1", "0"]);
    let vectors = common::vectors();
    let request = common::vector(&vectors, "search-morpheus.request");
    let response = common::vector(&vectors, "search-morpheus.response");
    let output = run_cli_with_input(&["connect", "127.0.0.1", &server.port()], Some(&request.wire));
    assert!(output.status.success(), "{}", describe(&["connect"], &output));
    if cfg!(target_endian = "little") {
        assert_eq!(output.stdout, response.wire);
    }
}

#[test]
fn resolve_shows_what_getaddrinfo_returns() {
    let out = run_ok(&["resolve", "localhost", "80"]);
    let stream = out
        .lines()
        .find(|l| l.contains("SOCK_STREAM"))
        .unwrap_or_else(|| panic!("no stream entry:\n{out}"));
    assert!(
        stream.contains("IPPROTO_TCP") && (stream.ends_with("127.0.0.1:80") || stream.ends_with("[::1]:80")),
        "{out}"
    );
    assert!(
        out.lines().next().unwrap().contains("'localhost'"),
        "the canonical name comes first:\n{out}"
    );
    let only_v4 = run_ok(&["resolve", "127.0.0.1", "--type", "dgram"]);
    assert_eq!(
        only_v4.split_whitespace().collect::<Vec<_>>(),
        ["AF_INET", "SOCK_DGRAM", "IPPROTO_UDP", "'127.0.0.1'", "127.0.0.1:0"]
    );
    assert_eq!(run_ok(&["resolve", "--reverse", "127.0.0.1"]), "localhost\n");
    run_fails(
        &["resolve", "nosuch.invalid"],
        1,
        "error: cannot resolve \"nosuch.invalid\": ",
    );
    run_fails(
        &["resolve", "--reverse", "not-an-ip"],
        2,
        "--reverse needs an IP address",
    );
}

#[test]
fn connect_over_a_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("echo.sock");
    let path_arg = path.to_str().unwrap();
    let _server = echo_server(&["--unix", path_arg]);
    let output = run_cli_with_input(&["connect", "--unix", path_arg], Some(b"through a unix socket\n"));
    assert!(output.status.success(), "{}", describe(&["connect", "--unix"], &output));
    assert_eq!(output.stdout, b"through a unix socket\n");
}
