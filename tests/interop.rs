//! Interoperability with programs written to the guide's design, in Python
//! (`tests/python/`): their client against our server, our client against
//! their server, comparing the bytes on the wire with the shared vectors.

mod common;

use std::process::{Command, Stdio};

use common::{ServerProcess, hex, repo_path, run_cli, vector, vectors};

/// (action, value, request vector, response vector, the line the guide's client prints)
const CASES: [(&str, &str, &str, &str, &str); 5] = [
    (
        "search",
        "morpheus",
        "search-morpheus.request",
        "search-morpheus.response",
        "Got result: Follow the white rabbit. 🐰",
    ),
    (
        "search",
        "ring",
        "search-ring.request",
        "search-ring.response",
        "Got result: In the caves beneath the Misty Mountains. 💍",
    ),
    (
        "search",
        "🐶",
        "search-dog.request",
        "search-dog.response",
        "Got result: 🐾 Playing ball! 🏐",
    ),
    (
        "search",
        "needle",
        "search-no-match.request",
        "search-no-match.response",
        "Got result: No match for 'needle'.",
    ),
    (
        "binary",
        "😃",
        "binary-smiley.request",
        "binary-smiley.response",
        "Got response: b'First 10 bytes of request: binary\\xf0\\x9f\\x98\\x83'",
    ),
];

fn python() -> Command {
    let mut command = Command::new("python3");
    command.current_dir(repo_path("tests/python")).stdin(Stdio::null());
    command
}

/// The hex after `prefix` on the line that starts with it.
fn hex_line<'a>(output: &'a str, prefix: &str) -> &'a str {
    output
        .lines()
        .find_map(|line| line.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} line in:\n{output}"))
        .trim()
}

#[test]
fn guide_client_against_our_server() {
    let server = ServerProcess::start(&["app-server", "127.0.0.1", "0"]);
    let vectors = vectors();
    for (action, value, _, response, line) in CASES {
        let output = python()
            .args([
                "guide_client.py",
                "127.0.0.1",
                &server.addr().port().to_string(),
                action,
                value,
            ])
            .output()
            .expect("python3 must be installed (.ci/run installs it)");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "guide client failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        if cfg!(target_endian = "little") {
            assert_eq!(
                hex(hex_line(&stdout, "response-hex ")),
                vector(&vectors, response).wire,
                "{action} {value}"
            );
        }
        assert!(
            stdout.lines().any(|l| l == line),
            "{action} {value}: expected {line:?} in\n{stdout}"
        );
    }
}

#[test]
fn our_client_against_guide_server() {
    let mut server = common::PythonGuideServer::start();
    let port = server.port.to_string();
    let vectors = vectors();
    for (action, value, request, _, line) in CASES {
        let args = ["app-client", "127.0.0.1", &port, action, value];
        let output = run_cli(&args);
        assert!(output.status.success(), "{}", common::describe(&args, &output));
        assert_eq!(
            String::from_utf8_lossy(&output.stdout).trim_end(),
            line,
            "{}",
            common::describe(&args, &output)
        );
        let received = server.read_line();
        if cfg!(target_endian = "little") {
            assert_eq!(
                hex(hex_line(&received, "request-hex ")),
                vector(&vectors, request).wire,
                "{action} {value}"
            );
        }
    }
}
