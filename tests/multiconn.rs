//! `multiconn-server` and `multiconn-client`: many connections at once.

mod common;

use common::{ServerProcess, run_ok};

#[test]
fn a_hundred_multiconn_connections_all_echo() {
    let server = ServerProcess::start(&["multiconn-server", "127.0.0.1", "0", "-q"]);
    let out = run_ok(&["multiconn-client", "127.0.0.1", &server.port(), "100"]);
    for id in 1..=100 {
        assert!(
            out.contains(&format!("Starting connection {id} to 127.0.0.1 port ")),
            "connection {id} missing:\n{out}"
        );
        assert!(
            out.contains(&format!("Sending b'Message 2 from client.' to connection {id}\n")),
            "{out}"
        );
        assert!(out.contains(&format!("Closing connection {id}\n")), "{out}");
    }
    let summary = out.lines().last().unwrap();
    assert!(summary.starts_with("100 connection(s) to 127.0.0.1 port "), "{summary}");
    assert!(
        summary.contains(": 100 succeeded, 0 failed; 4400 bytes echoed in "),
        "{summary}"
    );
}
