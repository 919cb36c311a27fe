//! `sockets connect`: the netcat-like relay over TCP, UDP and Unix sockets.

mod common;

use common::{ServerProcess, describe, run_cli_with_input, start_echo_server};

#[test]
fn connect_relays_a_pipe_and_half_closes() {
    let server = start_echo_server(&[]);
    let input = b"hello\nworld\n\x00\xff binary too";
    let output = run_cli_with_input(&["connect", "127.0.0.1", &server.port()], Some(input));
    assert!(output.status.success(), "{}", describe(&["connect"], &output));
    assert_eq!(output.stdout, input);

    let udp = start_echo_server(&["--udp", "-q"]);
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
fn connect_over_a_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("echo.sock");
    let path_arg = path.to_str().unwrap();
    let _server = start_echo_server(&["--unix", path_arg]);
    let output = run_cli_with_input(&["connect", "--unix", path_arg], Some(b"through a unix socket\n"));
    assert!(output.status.success(), "{}", describe(&["connect", "--unix"], &output));
    assert_eq!(output.stdout, b"through a unix socket\n");
}

#[test]
fn connect_gives_up_on_a_server_that_stops_reading() {
    // A listener that accepts (the kernel does) and never reads: once both
    // socket buffers are full, every write waits. It used to wait forever.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let input = vec![0u8; 32 * 1024 * 1024];
    let started = std::time::Instant::now();
    let output = run_cli_with_input(&["connect", "-w", "1", "127.0.0.1", &port], Some(&input));
    let took = started.elapsed();
    assert_eq!(output.status.code(), Some(1), "{}", describe(&["connect"], &output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("timed out after 1s"), "{stderr}");
    assert!(took < std::time::Duration::from_secs(10), "took {took:?}");
    drop(listener);
}
