//! Faults loopback cannot show, on hosts made of network namespaces (a
//! client, a router, a server; `tests/netns/faults.sh` builds them, says
//! what each check shows, and removes them): Happy Eyeballs past a
//! black-holed IPv6 route, peers that vanish mid-request, mid-echo and
//! while idle (TCP keepalive), a 576-byte MTU and an MTU that changes
//! mid-transfer, and kill -9 of a server under load. Needs root (CI runs
//! as root), iproute2 and python3.

mod common;

use std::process::Command;

#[test]
fn faults_across_real_hosts_are_survived_and_reported() {
    assert!(
        common::is_root(),
        "network namespaces need root: run the tests as root, as CI does"
    );
    let output = Command::new("bash")
        .arg(common::repo_path("tests/netns/faults.sh"))
        .arg(common::binary())
        .output()
        .expect("running tests/netns/faults.sh");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("PASS: faults across network namespaces"),
        "tests/netns/faults.sh failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    for check in [
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
    ] {
        assert!(stdout.contains(&format!("ok {check}")), "no {check:?} in:\n{stdout}");
    }
}
