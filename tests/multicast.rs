//! UDP to many responders: echo servers on hosts of their own (network
//! namespaces on one bridge, made and removed by `tests/netns/multicast.sh`)
//! join a multicast group or answer a broadcast, and the clients list every
//! responder. Needs root (CI runs as root) and iproute2.

mod common;

use std::process::Command;

#[test]
fn clients_hear_every_responder_to_a_multicast_group_or_a_broadcast() {
    assert!(
        common::is_root(),
        "network namespaces need root: run the tests as root, as CI does"
    );
    let output = Command::new("bash")
        .arg(common::repo_path("tests/netns/multicast.sh"))
        .arg(common::binary())
        .output()
        .expect("running tests/netns/multicast.sh");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("PASS: multicast and broadcast"),
        "tests/netns/multicast.sh failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    for check in [
        "multicast: three answers, from s1 (two servers sharing the port) and s2",
        "broadcast answers from 10.232.0.2 and 10.232.0.3",
        "without --broadcast the system refuses, and the error says what to add",
        "IPv6 answers from fd32::2 and fd32::3",
        "connect lists the responders on stderr",
        "--multicast-loop false: the client's own host does not hear it",
    ] {
        assert!(stdout.contains(&format!("ok {check}")), "no {check:?} in:\n{stdout}");
    }
}
