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
