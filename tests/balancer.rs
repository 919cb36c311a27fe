//! Several app-server instances behind a real HAProxy, each on a host of
//! its own: network namespaces joined by veth pairs, made and removed by
//! `tests/netns/haproxy.sh` (which says what it shows, check by check).
//! Needs root (CI runs as root), iproute2, haproxy and curl.

mod common;

#[test]
fn haproxy_spreads_clients_over_three_servers_and_routes_around_a_stopping_one() {
    let stdout = common::run_netns_script("haproxy.sh", "HAProxy");
    // Each check is on its own line; the ones that matter most, named.
    common::assert_checks_passed(
        &stdout,
        &[
            "150 requests through HAProxy, all answered correctly",
            "logged the client host 10.231.0.2 for each",
            "server 2 stopped gracefully (exit status 0)",
            "no error, none unanswered",
            "HAProxy marks server 2 up",
        ],
    );
}
