//! `sockets resolve`: what getaddrinfo and getnameinfo say.

mod common;

use common::{run_fails, run_ok};

#[test]
fn resolve_shows_what_getaddrinfo_returns() {
    let out = run_ok(&["resolve", "localhost", "80"]);
    let stream = out
        .lines()
        .find(|l| l.contains("SOCK_STREAM"))
        .unwrap_or_else(|| panic!("no stream entry:\n{out}"));
    assert!(
        stream.contains("IPPROTO_TCP") && (stream.ends_with("127.0.0.1:80") || stream.ends_with("[::1]:80")),
        "{out}"
    );
    assert!(
        out.lines().next().unwrap().contains("'localhost'"),
        "the canonical name comes first:\n{out}"
    );
    let only_v4 = run_ok(&["resolve", "127.0.0.1", "--type", "dgram"]);
    assert_eq!(
        only_v4.split_whitespace().collect::<Vec<_>>(),
        ["AF_INET", "SOCK_DGRAM", "IPPROTO_UDP", "'127.0.0.1'", "127.0.0.1:0"]
    );
    assert_eq!(run_ok(&["resolve", "--reverse", "127.0.0.1"]), "localhost\n");
    run_fails(
        &["resolve", "nosuch.invalid"],
        1,
        "error: cannot resolve \"nosuch.invalid\": ",
    );
    run_fails(
        &["resolve", "--reverse", "not-an-ip"],
        2,
        "--reverse needs an IP address",
    );
}

/// Issue 7, item 16: an address with no name comes back in numeric form, as
/// Python's `socket.getnameinfo` gives it, instead of failing.
#[test]
fn issue_7_reverse_lookup_falls_back_to_the_numeric_address() {
    let python = std::process::Command::new("python3")
        .args(["-c", "import socket; print(socket.getnameinfo(('::1', 0), 0)[0])"])
        .output()
        .expect("python3 is installed");
    let expected = String::from_utf8_lossy(&python.stdout).into_owned();
    assert_eq!(
        run_ok(&["resolve", "--reverse", "::1"]),
        expected,
        "the same answer as Python"
    );
    assert_eq!(run_ok(&["resolve", "--reverse", "[::1]"]), expected);
    // TEST-NET-1 (192.0.2.0/24) is for documentation: never named.
    assert_eq!(run_ok(&["resolve", "--reverse", "192.0.2.7"]), "192.0.2.7\n");
}
