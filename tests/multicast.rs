//! UDP to many responders: echo servers on hosts of their own (network
//! namespaces on one bridge, made and removed by `tests/netns/multicast.sh`)
//! join a multicast group or answer a broadcast, and the clients list every
//! responder. Needs root (CI runs as root) and iproute2.

mod common;

#[test]
fn clients_hear_every_responder_to_a_multicast_group_or_a_broadcast() {
    let stdout = common::run_netns_script("multicast.sh", "multicast and broadcast");
    common::assert_checks_passed(
        &stdout,
        &[
            "multicast: three answers, from s1 (two servers sharing the port) and s2",
            "broadcast answers from 10.232.0.2 and 10.232.0.3",
            "without --broadcast the system refuses, and the error says what to add",
            "IPv6 answers from fd32::2 and fd32::3",
            "connect lists the responders on stderr",
            "--multicast-loop false: the client's own host does not hear it",
        ],
    );
}
