//! Faults loopback cannot show, on hosts made of network namespaces (a
//! client, a router, a server; `tests/netns/faults.sh` builds them, says
//! what each check shows, and removes them): Happy Eyeballs past a
//! black-holed IPv6 route, peers that vanish mid-request, mid-echo and
//! while idle (TCP keepalive), a 576-byte MTU and an MTU that changes
//! mid-transfer, and kill -9 of a server under load. Needs root (CI runs
//! as root), iproute2 and python3.

mod common;

#[test]
fn faults_across_real_hosts_are_survived_and_reported() {
    let stdout = common::run_netns_script("faults.sh", "faults across network namespaces");
    common::assert_checks_passed(
        &stdout,
        &[
            "half-broken name: answered over IPv4",
            "the client says which address did not answer",
            "all-broken name: each address and its failure listed",
            "half a request freed at the 2 s request deadline",
            "an idle client freed by keepalive",
            "without keepalive (and no idle timeout) the vanished client is still held",
            "client cut mid-echo fails",
            "connect --keepalive exits non-zero",
            "MTU 576 on the path: 4 MiB echoed byte-exact",
            "MTU changed four times mid-transfer: 32 MiB echoed byte-exact",
            "persistent: the clients recovered",
            "oneshot: the clients recovered",
        ],
    );
}
