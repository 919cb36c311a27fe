//! The real `sockets app-client` binary: the guide's output on success, one
//! clear line and a non-zero exit on every kind of failure.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use common::{ServerProcess, describe, run_cli};

fn client(port: u16, action: &str, value: &str, extra: &[&str]) -> (Vec<String>, std::process::Output) {
    let mut args: Vec<String> = ["app-client", "127.0.0.1", &port.to_string(), action, value]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = run_cli(&refs);
    (args, output)
}

fn assert_fails_with(port: u16, extra: &[&str], expected: &str) {
    let port = port.to_string();
    let mut args = vec!["app-client", "127.0.0.1", &port, "search", "morpheus"];
    args.extend_from_slice(extra);
    common::run_fails(&args, 1, expected);
}

/// A fake server that accepts one connection and does `behave` with it.
fn fake_server(behave: impl FnOnce(std::net::TcpStream) + Send + 'static) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        if let Ok((stream, _)) = listener.accept() {
            stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            behave(stream);
        }
    });
    port
}

/// Reads (and ignores) the request so that closing does not reset the connection.
fn read_request(stream: &mut std::net::TcpStream) {
    let mut buf = [0u8; 1024];
    let _ = stream.read(&mut buf);
}

#[test]
fn prints_the_guides_lines() {
    let server = ServerProcess::start(&["app-server", "127.0.0.1", "0"]);
    let port = server.addr().port();
    let cases = [
        ("search", "morpheus", "Got result: Follow the white rabbit. 🐰\n"),
        ("search", "🐶", "Got result: 🐾 Playing ball! 🏐\n"),
        ("search", "needle", "Got result: No match for 'needle'.\n"),
        (
            "binary",
            "😃",
            "Got response: b'First 10 bytes of request: binary\\xf0\\x9f\\x98\\x83'\n",
        ),
        ("it's", "", "Got response: b\"First 10 bytes of request: it's\"\n"),
    ];
    for (action, value, expected) in cases {
        let (args, output) = client(port, action, value, &[]);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        assert!(output.status.success(), "{}", describe(&refs, &output));
        assert_eq!(
            String::from_utf8_lossy(&output.stdout),
            expected,
            "{}",
            describe(&refs, &output)
        );
    }
}

#[test]
fn connection_refused_is_one_clear_line() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port(); // closed again at once
    assert_fails_with(
        port,
        &[],
        &format!("error: cannot connect to 127.0.0.1 port {port}: 127.0.0.1:{port}: Connection refused"),
    );
}

#[test]
fn a_silent_server_times_out() {
    let port = fake_server(|mut stream| {
        read_request(&mut stream);
        std::thread::sleep(Duration::from_secs(3));
    });
    assert_fails_with(port, &["--timeout", "0.3"], "the server sent nothing for 300ms");
}

#[test]
fn a_malformed_response_is_reported() {
    let port = fake_server(|mut stream| {
        read_request(&mut stream);
        stream.write_all(b"\x00\x05hello").unwrap();
    });
    assert_fails_with(
        port,
        &[],
        "reading the response failed: JSON header is not valid UTF-8 JSON",
    );
}

#[test]
fn a_truncated_response_is_reported() {
    let port = fake_server(|mut stream| {
        read_request(&mut stream);
        let header = br#"{"byteorder": "little", "content-type": "text/json", "content-encoding": "utf-8", "content-length": 40}"#;
        stream.write_all(&(header.len() as u16).to_be_bytes()).unwrap();
        stream.write_all(header).unwrap();
        stream.write_all(br#"{"result": "#).unwrap();
    });
    assert_fails_with(
        port,
        &[],
        "reading the response failed: stream ended in the middle of a message",
    );
}

#[test]
fn a_server_that_closes_without_answering_is_reported() {
    let port = fake_server(|mut stream| read_request(&mut stream));
    assert_fails_with(port, &[], "the server closed the connection without responding");
}

#[test]
fn a_response_without_result_is_reported() {
    let port = fake_server(|mut stream| {
        read_request(&mut stream);
        let content = br#"{"answer": 1}"#;
        let header = format!(
            r#"{{"byteorder": "little", "content-type": "text/json", "content-encoding": "utf-8", "content-length": {}}}"#,
            content.len()
        );
        stream.write_all(&(header.len() as u16).to_be_bytes()).unwrap();
        stream.write_all(header.as_bytes()).unwrap();
        stream.write_all(content).unwrap();
    });
    assert_fails_with(port, &[], "the response has no \"result\"");
}

#[test]
fn missing_arguments_are_a_usage_error() {
    let usage = "Usage: sockets app-client [OPTIONS] <HOST> <PORT> <ACTION> <VALUE>";
    for (args, expected) in [
        (
            &["app-client", "127.0.0.1"][..],
            "required arguments were not provided: <PORT>",
        ),
        (
            &["app-client", "127.0.0.1", "80", "search"][..],
            "required arguments were not provided: <ACTION> <VALUE>",
        ),
        (
            &["app-client", "--unix", "/x", "search"][..],
            "required arguments were not provided: <ACTION> <VALUE>",
        ),
    ] {
        let stderr = common::run_fails(args, 2, expected);
        assert!(stderr.contains(usage), "{stderr}");
    }
}
