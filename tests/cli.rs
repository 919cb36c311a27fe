//! The command line as a whole, through the real binary: every number has a
//! range, every mistake reads the same way in every subcommand, every cause
//! is said once, and help says what each command really does.

mod common;

use common::{describe, run_cli, run_fails, run_ok};

/// Every subcommand that takes a port, with a port of 70000 in its place.
const PORT_OUT_OF_RANGE: [&[&str]; 10] = [
    &["app-server", "127.0.0.1", "70000"],
    &["echo-server", "127.0.0.1", "70000"],
    &["multiconn-server", "127.0.0.1", "70000"],
    &["app-client", "127.0.0.1", "70000", "search", "x"],
    &["echo-client", "127.0.0.1", "70000"],
    &["multiconn-client", "127.0.0.1", "70000", "1"],
    &["connect", "127.0.0.1", "70000"],
    &["bench", "app", "127.0.0.1", "70000"],
    &["bench", "echo", "127.0.0.1", "70000"],
    &["resolve", "localhost", "70000"],
];

/// Issue 7, item 18: a bad port says the same thing, the same way, in
/// every subcommand (clap's format, exit status 2, with the usage).
#[test]
fn issue_7_a_bad_port_reads_the_same_everywhere() {
    for args in PORT_OUT_OF_RANGE {
        let stderr = run_fails(args, 2, "'70000' is not a port number from 0 to 65535");
        assert!(
            stderr.starts_with("error: invalid value '70000' for '"),
            "{args:?}: {stderr}"
        );
        assert!(
            stderr.ends_with("\n\nFor more information, try '--help'.\n"),
            "{args:?}: {stderr}"
        );
    }
}

/// Issue 7, item 8: numbers that used to panic or do nonsense are refused
/// by the parser with their range, exit status 2.
#[test]
fn issue_7_numeric_flags_are_range_checked() {
    let cases: [&[&str]; 16] = [
        &["app-server", "--max-connections", "18446744073709551615"],
        &["app-server", "--max-connections", "0"],
        &["app-server", "--backlog", "0"],
        &["app-server", "--threads", "0"],
        &["app-server", "--idle-timeout", "-1"],
        &["app-server", "--request-timeout", "1e19"],
        &["app-server", "--max-content-length", "99999999999999"],
        &["app-server", "--max-buffered-bytes", "1"],
        &["echo-server", "-u", "--peer-rate", "-1"],
        &["bench", "app", "127.0.0.1", "1", "--rate", "1e-300"],
        &["bench", "app", "127.0.0.1", "1", "-d", "1e19"],
        &["bench", "app", "127.0.0.1", "1", "-d", "0"],
        &["bench", "app", "127.0.0.1", "1", "-P", "18446744073709551615"],
        &["bench", "app", "127.0.0.1", "1", "-c", "0"],
        &["bench", "echo", "127.0.0.1", "1", "--block-size", "0"],
        &["echo-client", "127.0.0.1", "1", "-u", "--attempts", "0"],
    ];
    for args in cases {
        let output = run_cli(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{}", describe(args, &output));
        assert!(
            stderr.starts_with("error: invalid value "),
            "{}",
            describe(args, &output)
        );
        assert!(!stderr.contains("panicked"), "{}", describe(args, &output));
    }
}

/// Issue 7, item 18: flags that do not apply in a mode are refused, not ignored.
#[test]
fn issue_7_flags_that_do_not_apply_are_refused() {
    let cases: [(&[&str], &str); 6] = [
        (
            &["echo-server", "--udp", "--max-connections", "5"],
            "cannot be used with",
        ),
        (&["echo-server", "--udp", "--backlog", "5"], "cannot be used with"),
        (&["echo-server", "--peer-rate", "5"], "--udp"),
        (&["echo-client", "127.0.0.1", "1", "--attempts", "2"], "--udp"),
        (&["connect", "127.0.0.1", "1", "--linger", "1"], "--udp"),
        (&["app-server", "--unix-mode", "600"], "--unix <PATH>"),
    ];
    for (args, expected) in cases {
        run_fails(args, 2, expected);
    }
}

/// Issue 7, item 18: every client's `--timeout` is the same flag (`-w`, as
/// in nc), with the same default and meaning; usage lines show HOST and
/// PORT as required; global options are shown apart.
#[test]
fn issue_7_help_is_consistent_across_clients() {
    let clients: [&[&str]; 6] = [
        &["app-client"],
        &["echo-client"],
        &["multiconn-client"],
        &["connect"],
        &["bench", "app"],
        &["bench", "echo"],
    ];
    for client in clients {
        let mut args = client.to_vec();
        args.push("--help");
        let help = run_ok(&args);
        assert!(help.contains("-w, --timeout <SECONDS>"), "{args:?}:\n{help}");
        assert!(
            help.contains("Limit on each wait for the server: connecting, and each wait for a reply or for more of one (0 = no limit)"),
            "{args:?}:\n{help}"
        );
        assert!(help.contains("[default: 10]"), "{args:?}:\n{help}");
        assert!(help.contains("-U, --unix <PATH>"), "{args:?}:\n{help}");
        assert!(
            help.contains(" <HOST> <PORT>"),
            "{args:?}: usage shows HOST PORT as required:\n{help}"
        );
        assert!(help.contains("Global options:\n  -v, --verbose"), "{args:?}:\n{help}");
    }
    let echo = run_ok(&["bench", "echo", "--help"]);
    assert!(!echo.contains("oneshot"), "bench echo describes app options:\n{echo}");
    for server in ["app-server", "echo-server", "multiconn-server"] {
        let help = run_ok(&[server, "--help"]);
        assert!(
            help.contains("--idle-timeout <SECONDS>") && help.contains("(0 = never)"),
            "{help}"
        );
    }
}

/// Every cause after `error:` appears once.
fn assert_causes_once(stderr: &str) {
    let line = stderr.lines().next().unwrap_or_default();
    let parts: Vec<&str> = line.trim_start_matches("error: ").split(": ").collect();
    for (i, part) in parts.iter().enumerate() {
        assert!(!parts[i + 1..].contains(part), "{part:?} is said twice in: {line}");
    }
}

/// Issue 7, item 13: every cause is printed once.
#[test]
fn issue_7_every_cause_is_printed_once() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.json");
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "[1]").unwrap();
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = held.local_addr().unwrap().port().to_string();
    let no_dir = dir.path().join("no/such/dir/app.sock");
    let cases: [(&[&str], &str); 6] = [
        (
            &["app-server", "127.0.0.1", "0", "--data", missing.to_str().unwrap()],
            "cannot read search table",
        ),
        (
            &["app-server", "127.0.0.1", "0", "--data", bad.to_str().unwrap()],
            "is not a JSON object of string to string",
        ),
        (&["app-server", "127.0.0.1", &busy], "Address already in use"),
        (
            &["echo-client", "nosuch.invalid", "1"],
            "cannot resolve \"nosuch.invalid\"",
        ),
        (&["resolve", "nosuch.invalid"], "cannot resolve \"nosuch.invalid\""),
        (
            &["echo-server", "--unix", no_dir.to_str().unwrap()],
            "No such file or directory",
        ),
    ];
    for (args, expected) in cases {
        let stderr = run_fails(args, 1, expected);
        assert_causes_once(&stderr);
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    }
    let stderr = run_fails(
        &["app-server", "127.0.0.1", "0", "--data", missing.to_str().unwrap()],
        1,
        "",
    );
    assert_eq!(
        stderr.trim(),
        format!(
            "error: cannot read search table {}: No such file or directory (os error 2)",
            missing.display()
        )
    );
}

/// Issue 7, item 16: an invalid RUST_LOG is reported, not silently ignored.
#[test]
fn issue_7_an_invalid_rust_log_is_reported() {
    let output = std::process::Command::new(common::binary())
        .args(["resolve", "127.0.0.1"])
        .env("RUST_LOG", "sockets=loud")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.starts_with("warning: ignoring RUST_LOG=\"sockets=loud\""),
        "{stderr}"
    );
}
