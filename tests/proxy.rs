//! `sockets proxy` and `sockets replay` between real clients and servers:
//! decoded and raw views, hostile bytes escaped, records replayed, pcaps
//! read by tshark with our dissector, TLS and Unix sockets on either side,
//! and the plain relay (splice).

mod common;

use std::process::Command;

use common::{ServerProcess, run_cli, run_ok, start_app_server, start_echo_server};

fn proxy(listen: &str, target: &str, extra: &[&str]) -> ServerProcess {
    let mut args = vec!["proxy", listen, target];
    args.extend_from_slice(extra);
    ServerProcess::start(&args)
}

#[test]
fn messages_are_shown_decoded_and_hostile_bytes_escaped() {
    let server = start_app_server(&["-q"]);
    let relay = proxy("127.0.0.1:0", &server.listening, &[]);
    let port = relay.port();
    let out = run_ok(&["app-client", "127.0.0.1", &port, "search", "morpheus"]);
    assert_eq!(out, "Got result: Follow the white rabbit. 🐰\n");
    // A value and a binary content that would drive a terminal.
    run_ok(&["app-client", "127.0.0.1", &port, "search", "\u{1b}[2Jwiped"]);
    run_ok(&["app-client", "127.0.0.1", &port, "upload", "\u{7}\u{1b}]0;title\u{7}"]);
    let shown = relay.wait_for_stdout("#3 closed");
    assert!(shown.contains("request 1, 146 bytes"), "{shown}");
    assert!(shown.contains(r#"    header   {"byteorder": "little", "content-type": "text/json", "content-encoding": "utf-8", "content-length": 41}"#), "{shown}");
    assert!(shown.contains(r#"               "value": "morpheus""#), "{shown}");
    assert!(shown.contains(r#""result": "Follow the white rabbit. 🐰""#), "{shown}");
    assert!(shown.contains("after the request"), "{shown}");
    assert!(shown.contains("binary/custom-client-binary-type"), "{shown}");
    assert!(
        shown.contains("0000:   75 70 6c 6f 61 64 07 1b"),
        "the binary request's dump: {shown}"
    );
    assert!(shown.contains(r"\u001b[2Jwiped"), "the search value, escaped: {shown}");
    for control in ['\u{1b}', '\u{7}'] {
        assert!(
            !shown.contains(control),
            "a raw control character reached stdout: {shown:?}"
        );
    }
}

#[test]
fn raw_mode_dumps_any_protocol() {
    let server = start_echo_server(&["-q"]);
    let relay = proxy("127.0.0.1:0", &server.listening, &["--raw"]);
    let output = common::run_cli_with_input(
        &["connect", "127.0.0.1", &relay.port()],
        Some(b"GET / HTTP/1.0\r\n\r\n"),
    );
    assert_eq!(output.stdout, b"GET / HTTP/1.0\r\n\r\n");
    let shown = relay.wait_for_stdout("#1 closed");
    assert!(shown.contains("→"), "{shown}");
    assert!(
        shown.contains("18 bytes\n    0000:   47 45 54 20 2f 20 48 54  54 50 2f 31 2e 30 0d 0a   GET / HTTP/1.0.."),
        "{shown}"
    );
    assert!(shown.contains("←"), "{shown}");
}

#[test]
fn a_recording_replays_and_differences_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("session.jsonl");
    let record = record.to_str().unwrap();
    let server = start_app_server(&["-q"]);
    let relay = proxy("127.0.0.1:0", &server.listening, &["--record", record]);
    let port = relay.port();
    run_ok(&["app-client", "127.0.0.1", &port, "search", "morpheus"]);
    run_ok(&["app-client", "127.0.0.1", &port, "search", "🐶"]);
    let args = ["bench", "app", "127.0.0.1", &port, "-n", "20", "-P", "4", "-c", "2"];
    let bench = run_cli(&args);
    assert!(bench.status.success(), "{}", common::describe(&args, &bench));
    relay.wait_for_stdout("#5 closed");
    let lines = std::fs::read_to_string(record).unwrap();
    assert!(lines.lines().next().unwrap().contains(r#""event":"open""#), "{lines}");
    // The same server answers the same.
    let same = run_ok(&["replay", record, "127.0.0.1", &server.port()]);
    assert!(
        same.ends_with(": 24 requests sent; 24 of 24 responses as recorded\n"),
        "{same}"
    );
    // A server with other answers: every difference named, exit 1.
    let data = dir.path().join("other.json");
    std::fs::write(&data, r#"{"morpheus": "Take the red pill."}"#).unwrap();
    let other = start_app_server(&["-q", "--data", data.to_str().unwrap()]);
    let args = ["replay", record, "127.0.0.1", &other.port()];
    let output = run_cli(&args);
    assert_eq!(output.status.code(), Some(1), "{}", common::describe(&args, &output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("differs: connection 1, response 1: expected result \"Follow the white rabbit. 🐰\", got result \"Take the red pill.\""),
        "{stdout}"
    );
    assert!(stdout.contains("0 of 24 responses as recorded"), "{stdout}");
}

#[test]
fn a_pcap_of_proxied_traffic_is_read_by_tshark_with_our_dissector() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("traffic.pcap");
    let pcap = pcap.to_str().unwrap();
    let server = start_app_server(&["-q"]);
    let relay = proxy("127.0.0.1:0", &server.listening, &["--pcap", pcap, "--no-decode"]);
    let port = relay.port();
    run_ok(&["app-client", "127.0.0.1", &port, "search", "morpheus"]);
    run_ok(&["app-client", "127.0.0.1", &port, "search", "🐶"]);
    relay.wait_for_stdout("#2 closed");
    let dissector = common::repo_path("contrib/wireshark/sockets.lua");
    let output = Command::new("tshark")
        .arg("-X")
        .arg(format!("lua_script:{}", dissector.display()))
        .args([
            "-r",
            pcap,
            "-Y",
            "sockets",
            "-T",
            "fields",
            "-e",
            "sockets.action",
            "-e",
            "sockets.value",
            "-e",
            "sockets.result",
        ])
        .output()
        .expect("running tshark (apt-get install tshark)");
    let fields = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(fields.contains("search\tmorpheus\t"), "{fields}");
    assert!(fields.contains("\t\tFollow the white rabbit. 🐰"), "{fields}");
    assert!(fields.contains("search\t🐶\t"), "{fields}");
    // The TCP conversation is whole: tshark sees no missing segment.
    let analysis = Command::new("tshark")
        .args(["-r", pcap, "-Y", "tcp.analysis.flags && !tcp.analysis.window_update"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&analysis.stdout).trim().is_empty(),
        "{}",
        String::from_utf8_lossy(&analysis.stdout)
    );
}

#[test]
fn the_shipped_dissector_passes_its_checks() {
    let output = Command::new("bash")
        .arg(common::repo_path("tests/wireshark/check_dissector.sh"))
        .output()
        .expect("running tests/wireshark/check_dissector.sh");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("PASSED"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn tls_and_unix_sockets_on_either_side() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    run_ok(&[
        "cert",
        "localhost",
        "--cert",
        &file("cert.pem"),
        "--key",
        &file("key.pem"),
    ]);
    // TLS server behind a proxy that speaks TLS to its clients too.
    let server = start_app_server(&["-q", "--tls-cert", &file("cert.pem"), "--tls-key", &file("key.pem")]);
    let relay = proxy(
        "127.0.0.1:0",
        &server.listening,
        &[
            "--tls-cert",
            &file("cert.pem"),
            "--tls-key",
            &file("key.pem"),
            "--target-tls-ca",
            &file("cert.pem"),
            "--target-tls-server-name",
            "localhost",
        ],
    );
    let out = run_ok(&[
        "app-client",
        "127.0.0.1",
        &relay.port(),
        "search",
        "ring",
        "--tls-ca",
        &file("cert.pem"),
        "--tls-server-name",
        "localhost",
    ]);
    assert_eq!(out, "Got result: In the caves beneath the Misty Mountains. 💍\n");
    // Decoded in the clear between the two TLS sessions; the target named
    // by its address under TLS too.
    let shown = relay.wait_for_stdout(r#""value": "ring""#);
    assert!(shown.contains(&format!(" → {}\n", server.listening)), "{shown}");

    // Unix socket in, Unix socket out.
    let backend = file("backend.sock");
    let front = file("front.sock");
    let _backend = ServerProcess::start(&["app-server", "--unix", &backend, "-q"]);
    let unix_relay = proxy(&format!("unix:{front}"), &format!("unix:{backend}"), &[]);
    let out = run_ok(&["app-client", "--unix", &front, "search", "morpheus"]);
    assert_eq!(out, "Got result: Follow the white rabbit. 🐰\n");
    unix_relay.wait_for_stdout("#1 closed");
}

#[test]
fn the_plain_relay_moves_every_byte_and_passes_half_closes() {
    let server = start_echo_server(&["-q"]);
    let relay = proxy("127.0.0.1:0", &server.listening, &["--no-decode"]);
    let (report, bench) = common::bench_json(&["echo", "127.0.0.1", &relay.port(), "-c", "2", "--bytes", "33554432"]);
    assert!(bench.status.success(), "{}", common::describe(&["bench"], &bench));
    assert_eq!(report["bytes"], 33_554_432);
    // connect half-closes after its input; the echo comes back whole.
    let output = common::run_cli_with_input(&["connect", "127.0.0.1", &relay.port()], Some(b"through the kernel"));
    assert_eq!(output.stdout, b"through the kernel");
    let shown = relay.wait_for_stdout("#3 closed (0 requests in 18 bytes, 0 responses in 18 bytes)");
    assert!(!shown.contains("header"), "--no-decode decoded: {shown}");
}

/// With the process's descriptor table full, the plain relay cannot make
/// its pipes: it says so and copies instead, and every byte still arrives
/// (the connection limit counts connections, not every descriptor).
#[test]
fn the_plain_relay_copies_when_no_pipe_can_be_made() {
    let server = start_echo_server(&["-q"]);
    let relay = proxy("127.0.0.1:0", &server.listening, &["--no-decode"]);
    // Room for the client's connection and the one to the target, no more.
    leave_room_for_descriptors(relay.pid(), 2);
    let client = ["connect", "127.0.0.1", &relay.port()];
    let output = common::run_cli_with_input(&client, Some(b"copied, not spliced"));
    assert_eq!(
        output.stdout,
        b"copied, not spliced",
        "{}\nproxy's stderr:\n{}",
        common::describe(&client, &output),
        relay.stderr()
    );
    relay.wait_for_stdout("#1 closed (0 requests in 19 bytes, 0 responses in 19 bytes)");
    let stderr = relay.stderr();
    assert!(
        stderr.contains("No pipes for splice") && stderr.contains("relaying #1 by copy"),
        "{stderr}"
    );
}

/// Lowers `pid`'s soft descriptor limit so that exactly `room` more
/// descriptors can be opened (each takes the lowest free number, and none
/// may reach the limit).
fn leave_room_for_descriptors(pid: u32, room: usize) {
    let open: Vec<u64> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    let free_below = |limit: u64| limit as usize - open.iter().filter(|&&fd| fd < limit).count();
    let mut limit = 0;
    while free_below(limit) < room {
        limit += 1;
    }
    let mut current = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    let pid = libc::pid_t::try_from(pid).unwrap();
    // SAFETY: prlimit reads and writes only the two structs passed.
    unsafe {
        assert_eq!(
            libc::prlimit(pid, libc::RLIMIT_NOFILE, std::ptr::null(), &mut current),
            0
        );
        let lowered = libc::rlimit {
            rlim_cur: limit,
            rlim_max: current.rlim_max,
        };
        assert_eq!(
            libc::prlimit(pid, libc::RLIMIT_NOFILE, &lowered, std::ptr::null_mut()),
            0,
            "prlimit: {}",
            std::io::Error::last_os_error()
        );
    }
}

#[test]
fn bad_addresses_are_clear_errors() {
    common::run_fails(
        &["proxy", "nowhere", "127.0.0.1:1"],
        1,
        "expected HOST:PORT, [::1]:PORT or unix:PATH",
    );
    common::run_fails(&["proxy", "127.0.0.1:0", "127.0.0.1:99999"], 1, "99999");
    common::run_fails(
        &["proxy", "127.0.0.1:0", "127.0.0.1:1", "--raw", "--record", "x"],
        2,
        "cannot be used with",
    );
}
