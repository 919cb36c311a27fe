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
        &format!("error: cannot connect to 127.0.0.1 port {port}: Connection refused"),
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
            &["app-client", "127.0.0.1", "80"][..],
            "required arguments were not provided: <ACTION> <VALUE>",
        ),
        (
            &["app-client", "127.0.0.1", "80", "search"][..],
            "required arguments were not provided: <VALUE>\n",
        ),
        (
            &["app-client", "--unix", "/x", "search"][..],
            "required arguments were not provided: <VALUE>\n",
        ),
    ] {
        let stderr = common::run_fails(args, 2, expected);
        assert!(stderr.contains(usage), "{stderr}");
    }
}

/// A fake server that answers one request with `{"result": result}`.
fn answering(result: &str) -> u16 {
    let response = common::encode(&sockets::app::result_message(result));
    fake_server(move |mut stream| {
        read_request(&mut stream);
        stream.write_all(&response).unwrap();
    })
}

/// Issue 7, item 15: an `Error: ...` result prints the guide's line and
/// exits 1, so scripts can tell; `No match` is an answer and exits 0.
#[test]
fn issue_7_an_error_result_exits_1_with_the_guides_line() {
    let (args, output) = client(answering("Error: invalid action 'find'."), "search", "x", &[]);
    assert_eq!(output.status.code(), Some(1), "{}", describe_args(&args, &output));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "Got result: Error: invalid action 'find'.\n"
    );
    let (args, output) = client(answering("No match for 'x'."), "search", "x", &[]);
    assert_eq!(output.status.code(), Some(0), "{}", describe_args(&args, &output));
    let help = String::from_utf8_lossy(&run_cli(&["app-client", "--help"]).stdout).into_owned();
    assert!(help.contains("1 for an `Error: ...` result"), "{help}");
}

/// Issue 7, item 4: a hostile server's control characters and escape
/// sequences are shown on the user's terminal, not obeyed.
#[test]
fn issue_7_a_hostile_servers_escape_sequences_are_shown_not_obeyed() {
    let port = answering("ok\u{1b}[2J\u{1b}]0;owned\u{7}\r\nGot result: fake\u{202e}");
    let (args, output) = client(port, "search", "x", &[]);
    assert!(output.status.success(), "{}", describe_args(&args, &output));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "Got result: ok\\x1b[2J\\x1b]0;owned\\x07\\r\\nGot result: fake\\u{202e}\n"
    );
}

/// Issue 7, item 16: `-vv` on a client shows the request and response bytes.
#[test]
fn issue_7_trace_shows_the_bytes_on_the_wire() {
    let server = ServerProcess::start(&["app-server", "127.0.0.1", "0", "-q"]);
    let output = run_cli(&["app-client", "127.0.0.1", &server.port(), "search", "ring", "-vv"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains(r#"Sending request: b'\x00g{"byteorder": "little", "content-type": "text/json""#),
        "{stderr}"
    );
    assert!(
        stderr.contains(r#"Received response: b'text/json' b'{"result": "In the caves beneath the Misty Mountains. \xf0\x9f\x92\x8d"}'"#),
        "{stderr}"
    );
    let echo = common::start_echo_server(&["-q"]);
    let output = run_cli(&["echo-client", "127.0.0.1", &echo.port(), "bytes!", "-vv"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("Sending b'bytes!'") && stderr.contains("Received b'bytes!'"),
        "{stderr}"
    );
}

fn describe_args(args: &[String], output: &std::process::Output) -> String {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    describe(&refs, output)
}
