//! `sockets bench` against real servers: counts, checks and error kinds.

mod common;

use std::io::{Read, Write};

use common::{ServerProcess, bench_json, describe, run_cli};

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

/// Issue 7, item 10: the expected answer comes from the protocol, not from
/// the server: an echo server (which answers every request with itself)
/// fails with wrong answers, and the first one is described.
#[test]
fn issue_7_bench_against_an_echo_server_reports_wrong_answers() {
    let echo = common::start_echo_server(&["-q"]);
    let (json, output) = bench_json(&["app", "127.0.0.1", &echo.port(), "-c", "2", "-n", "20"]);
    assert_eq!(output.status.code(), Some(1), "{json}");
    assert_eq!(json["errors"]["wrong answer"], 20);
    assert_eq!(json["requests"], 0);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(r#"wrong answer: expected result "Follow the white rabbit. 🐰", got"#),
        "{stderr}"
    );
}

/// Issue 7, item 10: a custom table is known through `--data` or `--expect`.
#[test]
fn issue_7_bench_knows_custom_answers_from_data_or_expect() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("table.json");
    std::fs::write(&table, r#"{"neo": "the one"}"#).unwrap();
    let server = ServerProcess::start(&["app-server", "127.0.0.1", "0", "-q", "--data", table.to_str().unwrap()]);
    let port = server.port();
    let base = ["app", "127.0.0.1", &port, "-n", "10", "--request", "search:neo"];
    let (json, output) = bench_json(&base);
    assert_eq!(output.status.code(), Some(1), "the built-in table has no 'neo': {json}");
    assert_eq!(json["errors"]["wrong answer"], 10);
    for extra in [["--data", table.to_str().unwrap()], ["--expect", "the one"]] {
        let args: Vec<&str> = base.iter().copied().chain(extra).collect();
        let (json, output) = bench_json(&args);
        assert!(output.status.success(), "{extra:?}: {json}");
        assert_eq!(json["requests"], 10);
    }
    // Binary requests follow the first-10-bytes rule whatever the table.
    let (json, output) = bench_json(&[
        "app",
        "127.0.0.1",
        &port,
        "-n",
        "10",
        "--request",
        "binary:0123456789abc",
    ]);
    assert!(output.status.success(), "{json}");
}

/// Issue 7, item 10: persistent load on a server that answers one request
/// per connection (the guide's) says so and suggests oneshot.
#[test]
fn issue_7_persistent_bench_against_a_one_request_server_suggests_oneshot() {
    let python = common::PythonGuideServer::start();
    let started = std::time::Instant::now();
    common::run_fails(
        &["bench", "app", "127.0.0.1", &python.port.to_string(), "-d", "5"],
        1,
        "answered one request and closed the connection: it serves one request per connection (as the guide's server does); use --mode oneshot",
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(4), "it told at once");
}

/// A fake server that answers every request it reads with `respond(stream)`.
fn fake_server(respond: impl Fn(&mut std::net::TcpStream) -> std::io::Result<()> + Send + Sync + 'static) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let respond = std::sync::Arc::new(respond);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let respond = respond.clone();
            std::thread::spawn(move || {
                let request_len = common::encode(&sockets::app::client_request("search", "morpheus")).len();
                let mut buf = vec![0u8; request_len];
                while stream.read_exact(&mut buf).is_ok() {
                    if respond(&mut stream).is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

/// Issue 7, item 11: a server that trickles a never-ending response does
/// not hold the run past its duration (plus one timeout).
#[test]
fn issue_7_bench_ends_on_time_against_a_trickling_server() {
    let good = common::encode(&sockets::app::result_message("Follow the white rabbit. 🐰"));
    let first = std::sync::atomic::AtomicBool::new(true);
    let port = fake_server(move |stream| {
        if first.swap(false, std::sync::atomic::Ordering::Relaxed) {
            // Answer the probe's two requests properly.
            stream.write_all(&good)?;
            return stream.write_all(&good);
        }
        // Then a header announcing 1000 bytes, and a byte every 100 ms, forever.
        stream.write_all(&good[..good.len() - 20])?;
        loop {
            std::thread::sleep(std::time::Duration::from_millis(100));
            stream.write_all(b"x")?;
        }
    });
    let started = std::time::Instant::now();
    let (json, output) = bench_json(&["app", "127.0.0.1", &port, "-c", "1", "-d", "1", "--timeout", "1"]);
    let elapsed = started.elapsed();
    assert!(elapsed < std::time::Duration::from_secs(4), "the run took {elapsed:?}");
    assert_eq!(output.status.code(), Some(1), "{json}");
    assert_eq!(json["errors"]["timeout"], 1, "{json}");
    assert_eq!(json["unanswered"], 1, "{json}");
}

/// Issue 7, item 11: the load generator's decoder has a content limit: a
/// response announcing a gigabyte is a bad frame, not a gigabyte of memory.
#[test]
fn issue_7_bench_refuses_an_oversized_response() {
    let header = r#"{"byteorder": "little", "content-type": "text/json", "content-encoding": "utf-8", "content-length": 1073741824}"#;
    let mut huge = (header.len() as u16).to_be_bytes().to_vec();
    huge.extend_from_slice(header.as_bytes());
    let port = fake_server(move |stream| {
        stream.write_all(&huge)?;
        stream.write_all(&vec![b' '; 1 << 20])
    });
    let output = run_cli(&["bench", "app", "127.0.0.1", &port, "-n", "5"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("malformed response: content-length 1073741824 is above the limit of 1048576 bytes"),
        "{stderr}"
    );
}

/// Issue 7, item 11: the probe before the run is bounded too: a server
/// that trickles its first answer a byte at a time holds the bench for one
/// timeout, not forever.
#[test]
fn issue_7_the_probe_is_bounded_against_a_trickling_server() {
    let good = common::encode(&sockets::app::result_message("Follow the white rabbit. 🐰"));
    let port = fake_server(move |stream| {
        for byte in &good {
            std::thread::sleep(std::time::Duration::from_millis(200));
            stream.write_all(&[*byte])?;
        }
        Ok(())
    });
    let started = std::time::Instant::now();
    common::run_fails(
        &["bench", "app", "127.0.0.1", &port, "-d", "1", "-w", "1"],
        1,
        "failed: no whole response within 1s",
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

/// Mistakes that would waste a run are refused before it: a plot path
/// that cannot be written, options of another mode.
#[test]
fn bench_refuses_what_would_waste_a_run() {
    let server = ServerProcess::start(&["app-server", "127.0.0.1", "0", "-q"]);
    let port = server.port();
    let started = std::time::Instant::now();
    common::run_fails(
        &[
            "bench",
            "app",
            "127.0.0.1",
            &port,
            "-d",
            "5",
            "--plot",
            "/no/such/dir/x.svg",
        ],
        1,
        "cannot write the plot to /no/such/dir/x.svg: No such file or directory",
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(2), "it ran first");
    common::run_fails(
        &["bench", "app", "127.0.0.1", &port, "--mode", "oneshot", "-P", "4"],
        2,
        "--pipeline applies to --mode persistent only",
    );
    common::run_fails(
        &[
            "bench",
            "app",
            "127.0.0.1",
            &port,
            "--request",
            "binary:x",
            "--expect",
            "y",
        ],
        2,
        "--expect applies to search requests only",
    );
}

/// Issue 7, item 11: Ctrl-C ends the run early and still prints the report.
#[test]
fn issue_7_bench_interrupted_prints_what_it_measured() {
    let server = ServerProcess::start(&["app-server", "127.0.0.1", "0", "-q"]);
    let child = std::process::Command::new(common::binary())
        .args([
            "bench",
            "app",
            "127.0.0.1",
            &server.port(),
            "-d",
            "60",
            "--json",
            "-c",
            "2",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let started = std::time::Instant::now();
    let output = child.wait_with_output().unwrap();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "the report came late"
    );
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {output:?}"));
    assert!(output.status.success(), "{json}");
    assert_eq!(json["interrupted"], true);
    assert!(json["requests"].as_u64().unwrap() > 100, "{json}");
    assert!(json["elapsed_seconds"].as_f64().unwrap() < 10.0, "{json}");
}

/// Issue 7, item 12: on an idle server, `--rate` latency is not charged for
/// the load generator's own timer: a request sent late because our timer
/// woke late counts from when it was sent, so both figures agree.
#[test]
fn issue_7_rate_latency_is_not_charged_for_our_own_timer() {
    let server = ServerProcess::start(&["app-server", "127.0.0.1", "0", "-q"]);
    let (json, output) = bench_json(&[
        "app",
        "127.0.0.1",
        &server.port(),
        "-c",
        "1",
        "--rate",
        "100",
        "-d",
        "1",
    ]);
    assert!(output.status.success(), "{json}");
    let corrected = json["latency_us"]["p50"].as_f64().unwrap();
    let uncorrected = json["latency_uncorrected_us"]["p50"].as_f64().unwrap();
    assert!(
        (corrected - uncorrected).abs() < 50.0,
        "p50 {corrected} µs corrected vs {uncorrected} µs uncorrected on an idle server"
    );
    assert!(
        corrected < 900.0,
        "p50 {corrected} µs: the timer's lateness was charged"
    );
}

/// Issue 7, item 12: when the server is what delays requests, they are
/// charged from when they were due (coordinated omission), and the
/// uncorrected figure is reported beside it.
#[test]
fn issue_7_rate_latency_charges_the_servers_delay() {
    let good = common::encode(&sockets::app::result_message("Follow the white rabbit. 🐰"));
    let port = fake_server(move |stream| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        stream.write_all(&good)
    });
    let (json, output) = bench_json(&["app", "127.0.0.1", &port, "-c", "1", "--rate", "20", "-d", "1.5"]);
    assert!(output.status.success(), "{json}");
    let corrected = json["latency_us"]["max"].as_f64().unwrap();
    let uncorrected = json["latency_uncorrected_us"]["max"].as_f64().unwrap();
    assert!((90_000.0..200_000.0).contains(&uncorrected), "{json}");
    assert!(
        corrected > 2.0 * uncorrected,
        "requests queued behind a slow server were not charged their wait: {json}"
    );
}

#[test]
fn server_pid_reports_the_servers_cpu_per_unit_of_work() {
    let server = ServerProcess::start(&["app-server", "-q", "127.0.0.1", "0"]);
    let pid = server.pid().to_string();
    let port = server.port();
    for (mode, unit) in [("persistent", "request"), ("oneshot", "connection")] {
        let (json, output) = bench_json(&[
            "app",
            "127.0.0.1",
            &port,
            "--mode",
            mode,
            "-n",
            "3000",
            "--server-pid",
            &pid,
        ]);
        assert!(output.status.success(), "{}", describe(&["bench", mode], &output));
        let cpu = &json["server_cpu"];
        assert_eq!(cpu["pid"], server.pid(), "{json}");
        assert_eq!(cpu["unit"], unit, "{json}");
        let per_unit = cpu["per_unit_us"].as_f64().unwrap();
        let total = cpu["user_seconds"].as_f64().unwrap() + cpu["system_seconds"].as_f64().unwrap();
        // The per-unit figure is the total over what was served: the run and its probe.
        let served = 3000.0 + json["probe_requests"].as_f64().unwrap();
        assert!((per_unit - total * 1e6 / served).abs() < 1e-6, "{json}");
        // And the total is this server's: no more than it has used in all (one tick's slack).
        let used = server.cpu_time().as_secs_f64();
        assert!(
            total <= used + 0.01,
            "bench says {total} s, the server used {used} s: {json}"
        );
    }
    let echo = ServerProcess::start(&["echo-server", "-q", "127.0.0.1", "0"]);
    let (json, output) = bench_json(&[
        "echo",
        "127.0.0.1",
        &echo.port(),
        "--bytes",
        "500000000",
        "--server-pid",
        &echo.pid().to_string(),
    ]);
    assert!(output.status.success(), "{}", describe(&["bench", "echo"], &output));
    assert_eq!(json["server_cpu"]["unit"], "MB", "{json}");
    // Echoing 500 MB costs the server measurable CPU (at least one 10 ms
    // clock tick). Splicing takes about 0.25 ms a MB, and on loopback
    // much of the kernel's work is charged to the sender: 50 MB (0.04 s
    // here) sometimes stayed under one tick.
    assert!(json["server_cpu"]["per_unit_us"].as_f64().unwrap() > 0.0, "{json}");

    let output = run_cli(&[
        "bench",
        "app",
        "127.0.0.1",
        &port,
        "-n",
        "10",
        "--server-pid",
        "4194304",
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&["bench"], &output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--server-pid 4194304: cannot read its CPU time"),
        "{stderr}"
    );
}

/// The minimal server every BENCHMARKS.md figure is compared with
/// (`examples/minimal_server.rs`, built by `cargo test`) must be a fair
/// floor: it answers bench's load correctly in each of its modes.
#[test]
fn the_minimal_reference_server_answers_correctly() {
    let program = floor_server("minimal_server");
    assert_answers_bench_app(&program);
    let echo = ServerProcess::start_command(&program, &["echo"]);
    let (json, output) = bench_json(&["echo", "127.0.0.1", &echo.port(), "--bytes", "4000000"]);
    assert!(output.status.success(), "{}", describe(&["bench", "echo"], &output));
    assert!(json["bytes"].as_u64().unwrap() >= 4_000_000, "{json}");

    // With a thread count, each thread is a runtime of its own accepting
    // from the one listener (the floor for ours with its default threads).
    let two = ServerProcess::start_command(&program, &["app-oneshot", "0", "2"]);
    assert_eq!(threads_of(two.pid()), 2, "app-oneshot 0 2 runs two threads");
    let load = [
        "app",
        "127.0.0.1",
        &two.port(),
        "--mode",
        "oneshot",
        "-c",
        "8",
        "-n",
        "800",
    ];
    let (json, output) = bench_json(&load);
    assert!(output.status.success(), "{}", describe(&load, &output));
    assert_eq!(
        (json["requests"].as_u64(), json["errors"]["total"].as_u64()),
        (Some(800), Some(0)),
        "{json}"
    );
    let cores = ServerProcess::start_command(&program, &["app", "0", "cores"]);
    let expected = std::thread::available_parallelism().unwrap().get();
    assert_eq!(threads_of(cores.pid()), expected, "app 0 cores runs a thread per core");
    // No thread, not a number, an argument too many: refused at once.
    for wrong in [&["app", "0", "0"][..], &["app", "0", "x"], &["app", "0", "1", "2"]] {
        let child = std::process::Command::new(&program)
            .args(wrong)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let refused = common::wait_output(child, &format!("minimal_server {wrong:?}"));
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert_eq!(refused.status.code(), Some(2), "{wrong:?}: {stderr}");
        assert!(stderr.contains("usage: minimal_server"), "{wrong:?}: {stderr}");
    }
}

/// How many threads process `pid` runs.
fn threads_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().count()
}

/// An example built beside the binary by `cargo test`.
fn floor_server(name: &str) -> String {
    let program = std::path::Path::new(common::binary())
        .parent()
        .unwrap()
        .join("examples")
        .join(name);
    program.to_str().unwrap().to_owned()
}

/// A floor server answers bench's persistent and oneshot loads, every
/// answer counted right.
fn assert_answers_bench_app(program: &str) {
    let app = ServerProcess::start_command(program, &["app"]);
    let (json, output) = bench_json(&["app", "127.0.0.1", &app.port(), "-c", "4", "-P", "8", "-n", "4000"]);
    assert!(output.status.success(), "{}", describe(&["bench", "app"], &output));
    assert_eq!(
        (json["requests"].as_u64(), json["errors"]["total"].as_u64()),
        (Some(4000), Some(0))
    );
    let oneshot = ServerProcess::start_command(program, &["app-oneshot"]);
    let (json, output) = bench_json(&["app", "127.0.0.1", &oneshot.port(), "--mode", "oneshot", "-n", "500"]);
    assert!(output.status.success(), "{}", describe(&["bench", "oneshot"], &output));
    assert_eq!(
        (json["requests"].as_u64(), json["errors"]["total"].as_u64()),
        (Some(500), Some(0))
    );
}

/// The io_uring floor (`examples/uring_floor.rs`, built by
/// `cargo test`) is compared with `minimal_server`, so it must be as honest
/// a floor: it answers bench's load correctly in both its modes. Skipped
/// where the kernel refuses io_uring (too old, or disabled by sysctl or a
/// seccomp filter).
#[cfg(target_os = "linux")]
#[test]
fn the_io_uring_floor_server_answers_correctly() {
    if let Err(err) = io_uring::IoUring::new(8) {
        eprintln!("SKIPPED: io_uring is not available here ({err})");
        return;
    }
    assert_answers_bench_app(&floor_server("uring_floor"));
}
