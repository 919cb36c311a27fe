//! Several app-server instances behind a real HAProxy, each on a host of
//! its own: network namespaces joined by veth pairs, made and removed by
//! `tests/netns/haproxy.sh` (which says what it shows, check by check).
//! Needs root (CI runs as root), iproute2, haproxy and curl.

mod common;

use std::process::Command;

#[test]
fn haproxy_spreads_clients_over_three_servers_and_routes_around_a_stopping_one() {
    assert!(
        common::is_root(),
        "network namespaces need root: run the tests as root, as CI does"
    );
    let output = Command::new("bash")
        .arg(common::repo_path("tests/netns/haproxy.sh"))
        .arg(common::binary())
        .output()
        .expect("running tests/netns/haproxy.sh");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("PASS: HAProxy"),
        "tests/netns/haproxy.sh failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    // Each check is on its own line; the ones that matter most, named.
    for check in [
        "150 requests through HAProxy, all answered correctly",
        "logged the client host 10.231.0.2 for each",
        "server 2 stopped gracefully (exit status 0)",
        "no error, none unanswered",
        "HAProxy marks server 2 up",
    ] {
        assert!(stdout.contains(check), "no {check:?} in:\n{stdout}");
    }
}
