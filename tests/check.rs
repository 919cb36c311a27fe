//! `sockets check` against real servers: ours in both profiles, the
//! guide-style Python server, an echo server, over TCP and a Unix socket.

mod common;

use common::{PythonGuideServer, ServerProcess, run_cli, start_app_server, start_echo_server};

/// Runs `sockets check` with `args`; returns its exit code and JSON report.
fn check(args: &[&str]) -> (Option<i32>, serde_json::Value) {
    let mut full = vec!["check"];
    full.extend_from_slice(args);
    full.extend(["--json", "-w", "3"]);
    let output = run_cli(&full);
    let report = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("no JSON report: {}", common::describe(&full, &output)));
    (output.status.code(), report)
}

fn verdict<'a>(report: &'a serde_json::Value, case: &str) -> &'a serde_json::Value {
    report["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["case"] == case)
        .unwrap_or_else(|| panic!("no case {case} in {report:#}"))
}

fn failed(report: &serde_json::Value) -> Vec<String> {
    report["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["verdict"] == "fail")
        .map(|c| format!("{}: {}", c["case"], c["happened"]))
        .collect()
}

#[test]
fn our_server_passes_both_profiles() {
    let server = start_app_server(&["-q"]);
    let port = server.port();
    let (code, robust) = check(&["127.0.0.1", &port]);
    assert_eq!(code, Some(0), "{:?}", failed(&robust));
    assert_eq!(robust["summary"]["failed"], 0);
    assert_eq!(robust["summary"]["passed"], 33, "{robust:#}");
    assert_eq!(verdict(&robust, "idle-timeout")["verdict"], "skip");
    assert!(
        verdict(&robust, "header-missing-key")["happened"]
            .as_str()
            .unwrap()
            .contains("lacks required key \"byteorder\""),
        "{robust:#}"
    );
    let (code, guide) = check(&["127.0.0.1", &port, "--profile", "guide"]);
    assert_eq!(code, Some(0), "{:?}", failed(&guide));
    assert_eq!(guide["summary"]["passed"], 11);

    let one_shot = start_app_server(&["-q", "--one-shot"]);
    let (code, guide) = check(&["127.0.0.1", &one_shot.port(), "--profile", "guide"]);
    assert_eq!(code, Some(0), "--one-shot in the guide profile: {:?}", failed(&guide));
}

#[test]
fn the_guide_server_passes_its_profile_and_its_faults_are_reported() {
    let server = PythonGuideServer::start().discard_output();
    let port = server.port.to_string();
    let (code, guide) = check(&["127.0.0.1", &port, "--profile", "guide"]);
    assert_eq!(code, Some(0), "{:?}", failed(&guide));
    let (code, robust) = check(&["127.0.0.1", &port]);
    assert_eq!(code, Some(1), "the guide's server is not robust: {robust:#}");
    // Its known faults, each reported with what happened.
    let empty = verdict(&robust, "empty-content");
    assert_eq!(empty["verdict"], "fail");
    assert!(
        empty["happened"]
            .as_str()
            .unwrap()
            .contains("closed the connection without answering"),
        "{empty:#}"
    );
    assert_eq!(verdict(&robust, "pipelined")["verdict"], "fail");
    assert_eq!(
        verdict(&robust, "no-value")["happened"],
        "expected an Error: result, got result \"No match for 'None'.\""
    );
    // What it does right is still credited.
    assert_eq!(verdict(&robust, "search-hit")["verdict"], "pass");
    assert_eq!(verdict(&robust, "stalled-client")["verdict"], "pass");
}

#[test]
fn an_echo_server_fails_with_the_reason() {
    let server = start_echo_server(&["-q"]);
    let (code, report) = check(&[
        "127.0.0.1",
        &server.port(),
        "--profile",
        "guide",
        "--case",
        "search-hit",
    ]);
    assert_eq!(code, Some(1));
    let hit = verdict(&report, "search-hit");
    assert_eq!(hit["verdict"], "fail");
    assert!(
        hit["happened"]
            .as_str()
            .unwrap()
            .starts_with("expected result \"Follow the white rabbit. 🐰\", got "),
        "{hit:#}"
    );
}

#[test]
fn idle_timeout_cpu_and_unix_sockets() {
    let server = start_app_server(&["-q", "--idle-timeout", "1"]);
    let pid = server.pid().to_string();
    let (code, report) = check(&[
        "127.0.0.1",
        &server.port(),
        "--idle-timeout",
        "1",
        "--pid",
        &pid,
        "--case",
        "idle-timeout",
        "--case",
        "large-content",
    ]);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(verdict(&report, "idle-timeout")["verdict"], "pass");
    assert!(
        verdict(&report, "large-content")["server_cpu_ms"].is_number(),
        "{report:#}"
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.sock");
    let path = path.to_str().unwrap();
    let _unix = ServerProcess::start(&["app-server", "--unix", path, "-q"]);
    let (code, report) = check(&["--unix", path, "--case", "pipelined", "--case", "half-close"]);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["summary"]["passed"], 2);
}

#[test]
fn an_unknown_case_is_a_usage_error_and_list_names_them() {
    common::run_fails(
        &["check", "127.0.0.1", "1", "--case", "nope"],
        2,
        "no case named \"nope\"",
    );
    // A case of the robust profile asked for with the guide's runs nothing: said, not passed.
    common::run_fails(
        &["check", "127.0.0.1", "1", "--profile", "guide", "--case", "pipelined"],
        2,
        "case \"pipelined\" is not in the guide profile",
    );
    common::run_fails(
        &["check", "127.0.0.1", "1", "--pid", "0"],
        2,
        "invalid value '0' for '--pid <PID>'",
    );
    let listed = common::run_ok(&["check", "--list", "--profile", "guide"]);
    assert_eq!(listed.lines().count(), 11, "{listed}");
    assert!(listed.starts_with("search-hit "), "{listed}");
}
