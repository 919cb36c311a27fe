//! `echo-server` and `echo-client` over TCP and IPv6, through the real
//! binary: byte-exact echoes of any size, backpressure, idle timeout,
//! shutdown, and clear failures.

mod common;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::{ServerProcess, connect, describe, run_cli, run_fails, run_ok, start_echo_server, step};

#[test]
fn echo_client_gets_its_message_back() {
    let server = start_echo_server(&[]);
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
    let server = start_echo_server(&["-q"]);
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
        std::io::Write::write_all(&mut file, &block).unwrap();
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
            std::io::Write::write_all(&mut stream, &buf[..n].to_ascii_uppercase()).unwrap();
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
        "invalid value 'http' for '<PORT>': 'http' is not a port number from 0 to 65535",
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

#[tokio::test]
async fn echo_backpressure_bounds_server_memory() {
    let server = start_echo_server(&["-q"]);
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
    let mut server = start_echo_server(&["--idle-timeout", "0.3"]);
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

/// Pipes the echo server holds: `pipe:[...]` among its descriptors.
fn pipes_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("pipe:"))
        .count()
}

/// Sends 4 MiB without reading at first (so the server is mid-echo),
/// counts the server's pipes, then reads the echo and checks it.
fn pipes_while_echoing(server: &ServerProcess) -> usize {
    use std::io::{Read, Write};
    let mut client = std::net::TcpStream::connect(server.addr()).unwrap();
    client.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let payload: Vec<u8> = (0..4u32 << 20).map(|i| (i * 7 + i / 251) as u8).collect();
    let mut writer = client.try_clone().unwrap();
    let sent = payload.clone();
    let sender = std::thread::spawn(move || writer.write_all(&sent).unwrap());
    // The socket buffers fill (or everything is echoed into them); either
    // way the connection is open and mid-transfer: we have not closed.
    std::thread::sleep(Duration::from_millis(300));
    let pipes = pipes_of(server.pid());
    let mut echoed = vec![0u8; payload.len()];
    client.read_exact(&mut echoed).unwrap();
    sender.join().unwrap();
    assert!(echoed == payload, "the echo differs");
    client.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(client.read(&mut [0u8; 16]).unwrap(), 0, "nothing more than the echo");
    pipes
}

#[test]
fn a_bulk_echo_on_a_plain_socket_is_spliced_through_a_pipe() {
    // The runtime has pipes of its own (signal handling): count ours on top.
    let plain = start_echo_server(&["-q"]);
    let at_rest = pipes_of(plain.pid());
    assert_eq!(
        pipes_while_echoing(&plain),
        at_rest + 2,
        "a bulk echo moves through one pipe (two descriptors)"
    );
    // With the bytes wanted in the log, they are read into memory instead.
    let logged = start_echo_server(&["-v"]);
    let at_rest = pipes_of(logged.pid());
    assert_eq!(
        pipes_while_echoing(&logged),
        at_rest,
        "-v echoes by copy, to log the bytes"
    );
}

/// Pipes open in process `pid` now (splice's, two descriptors each).
fn open_pipes(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|entries| {
            entries
                .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
                .filter(|target| target.to_string_lossy().starts_with("pipe:"))
                .count()
        })
        .unwrap_or(0)
}

/// A splice pipe's two descriptors count against --max-connections: with
/// no room under the limit, a bulk echo goes by copy (no pipe is ever
/// open) and still arrives whole; with room, it goes through a pipe.
#[test]
fn splice_pipes_count_against_the_connection_limit() {
    use std::io::{Read, Write};
    let block: Vec<u8> = (0..65_536u32).map(|i| (i % 251) as u8).collect();
    // The connection takes one; the pipe needs two more.
    for (limit, spliced) in [("2", false), ("3", true)] {
        let server = ServerProcess::start(&[
            "echo-server",
            "-q",
            "127.0.0.1",
            "0",
            "--threads",
            "1",
            "--max-connections",
            limit,
        ]);
        let before = open_pipes(server.pid());
        let mut stream = std::net::TcpStream::connect(server.addr()).unwrap();
        stream.set_read_timeout(Some(common::STEP)).unwrap();
        let mut writer = stream.try_clone().unwrap();
        let sent = block.clone();
        // Blocks a little apart: long enough a bulk transfer to look at.
        let sending = std::thread::spawn(move || {
            for _ in 0..100 {
                writer.write_all(&sent).unwrap();
                std::thread::sleep(Duration::from_millis(2));
            }
            writer.shutdown(std::net::Shutdown::Write).unwrap();
        });
        let mut echoed = Vec::new();
        let mut chunk = vec![0u8; 65_536];
        let mut saw_pipe = false;
        loop {
            saw_pipe |= open_pipes(server.pid()) > before;
            let n = stream.read(&mut chunk).unwrap();
            if n == 0 {
                break;
            }
            echoed.extend_from_slice(&chunk[..n]);
        }
        sending.join().unwrap();
        assert_eq!(echoed.len(), 100 * block.len(), "--max-connections {limit}");
        assert!(
            echoed.chunks(block.len()).all(|got| got == block),
            "--max-connections {limit}: the echo differs"
        );
        assert_eq!(
            saw_pipe, spliced,
            "--max-connections {limit}: a pipe was open: {saw_pipe}"
        );
    }
}
