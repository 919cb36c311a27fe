//! `sockets bench` against real servers: counts, checks and error kinds.

mod common;

use std::io::{Read, Write};

use serde_json::Value;

use common::{ServerProcess, describe, run_cli};

fn bench_json(args: &[&str]) -> (Value, std::process::Output) {
    let mut all = vec!["bench"];
    all.extend_from_slice(args);
    all.push("--json");
    let output = run_cli(&all);
    let json = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {}", describe(&all, &output)));
    (json, output)
}

#[test]
fn persistent_pipelined_run_counts_every_request() {
    let server = ServerProcess::start(&["app-server", "127.0.0.1", "0", "-q"]);
    let (json, output) = bench_json(&["app", "127.0.0.1", &server.port(), "-c", "4", "-P", "8", "-n", "2000"]);
    assert!(output.status.success(), "{json}");
    assert_eq!(json["requests"], 2000);
    assert_eq!(json["errors"]["total"], 0);
    assert_eq!(
        json["load"],
        "persistent, 4 connections, pipeline 8, as fast as possible"
    );
    let latency = &json["latency_us"];
    assert!(latency["min"].as_f64().unwrap() <= latency["p50"].as_f64().unwrap());
    assert!(latency["p99"].as_f64().unwrap() <= latency["max"].as_f64().unwrap());
}

#[test]
fn oneshot_run_against_the_guide_style_python_server() {
    let python = common::PythonGuideServer::start();
    let port = python.port.to_string();
    let (json, output) = bench_json(&[
        "app",
        "127.0.0.1",
        &port,
        "--mode",
        "oneshot",
        "-c",
        "4",
        "-n",
        "100",
        "--request",
        "binary:hello",
    ]);
    drop(python);
    assert!(output.status.success(), "{json}");
    assert_eq!(json["requests"], 100);
    assert_eq!(json["errors"]["total"], 0);
}

#[test]
fn rate_limited_run_keeps_to_the_rate() {
    let server = ServerProcess::start(&["app-server", "127.0.0.1", "0", "-q"]);
    let (json, output) = bench_json(&[
        "app",
        "127.0.0.1",
        &server.port(),
        "-c",
        "2",
        "--rate",
        "200",
        "-d",
        "1",
    ]);
    assert!(output.status.success(), "{json}");
    let requests = json["requests"].as_u64().unwrap();
    assert!(
        (150..=230).contains(&requests),
        "200 requests/s for 1 s gave {requests}"
    );
}

#[test]
fn wrong_answers_are_counted_and_fail_the_run() {
    // Answers the probe correctly, then every later request with another answer.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    std::thread::spawn(move || {
        let answers = ["Follow the white rabbit. 🐰", "Follow the black rabbit."];
        for (i, stream) in listener.incoming().take(2).enumerate() {
            let mut stream = stream.unwrap();
            let response = common::encode(&sockets::app::result_message(answers[i]));
            let request_len = common::encode(&sockets::app::client_request("search", "morpheus")).len();
            let mut buf = vec![0u8; request_len];
            while stream.read_exact(&mut buf).is_ok() {
                if stream.write_all(&response).is_err() {
                    break;
                }
            }
        }
    });
    let (json, output) = bench_json(&["app", "127.0.0.1", &port, "-c", "1", "-n", "5"]);
    assert_eq!(output.status.code(), Some(1), "{json}");
    assert_eq!(json["errors"]["wrong answer"], 5);
    assert_eq!(json["requests"], 0);
}

#[test]
fn a_dead_server_is_a_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    common::run_fails(
        &["bench", "app", "127.0.0.1", &port, "-n", "1"],
        1,
        "the probe request to 127.0.0.1 port",
    );
}

#[test]
fn echo_run_verifies_every_byte_and_plots() {
    let server = ServerProcess::start(&["echo-server", "127.0.0.1", "0", "-q"]);
    let dir = tempfile::tempdir().unwrap();
    let plot = dir.path().join("echo.svg");
    let (json, output) = bench_json(&[
        "echo",
        "127.0.0.1",
        &server.port(),
        "-c",
        "2",
        "--bytes",
        "8000000",
        "--block-size",
        "10000",
        "--plot",
        plot.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{json}");
    assert_eq!(json["bytes"], 8_000_000);
    assert_eq!(json["errors"]["total"], 0);
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.contains("MB/s over time"));
}

#[test]
fn text_report_names_every_figure() {
    let server = ServerProcess::start(&["app-server", "127.0.0.1", "0", "-q"]);
    let output = run_cli(&["bench", "app", "127.0.0.1", &server.port(), "-n", "50", "-c", "2"]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", describe(&["bench"], &output));
    for field in [
        "target      127.0.0.1 port",
        "completed   50 requests in",
        "throughput  ",
        "latency     min ",
        "errors      none",
    ] {
        assert!(text.contains(field), "missing {field:?} in\n{text}");
    }
}

#[test]
fn bench_runs_over_unix_sockets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.sock");
    let path_arg = path.to_str().unwrap();
    let _server = ServerProcess::start(&["app-server", "--unix", path_arg, "-q"]);
    let (json, output) = bench_json(&["app", "--unix", path_arg, "-c", "3", "-P", "4", "-n", "300"]);
    assert!(output.status.success(), "{json}");
    assert_eq!(json["requests"], 300);
    assert_eq!(json["target"], format!("unix:{path_arg}"));
}
