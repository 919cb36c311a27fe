//! Datagram echo through the real binary: UDP and Unix datagram sockets,
//! retries, truncation, and the defences of an echo server (loops, stalls).

mod common;

use std::time::{Duration, Instant};

use common::{run_fails, run_ok, start_echo_server};

#[test]
fn udp_echo_serves_many_peers() {
    let server = start_echo_server(&["--udp", "-q"]);
    let addr = server.addr();
    assert_eq!(
        run_ok(&["echo-client", "--udp", "127.0.0.1", &server.port(), "datagram"]),
        "Received b'datagram'\n"
    );
    let peers: Vec<std::net::UdpSocket> = (0..50)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    for (i, peer) in peers.iter().enumerate() {
        peer.send_to(format!("peer {i}").as_bytes(), addr).unwrap();
    }
    for (i, peer) in peers.iter().enumerate() {
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = peer.recv_from(&mut buf).unwrap();
        assert_eq!(from, addr);
        assert_eq!(&buf[..n], format!("peer {i}").as_bytes());
    }
}

#[test]
fn sighup_does_not_stop_a_datagram_server() {
    let server = start_echo_server(&["--udp"]);
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(server.pid() as libc::pid_t, libc::SIGHUP) };
    server.wait_for_log("Received SIGHUP; nothing to reload");
    assert_eq!(
        run_ok(&["echo-client", "--udp", "127.0.0.1", &server.port(), "still here"]),
        "Received b'still here'\n"
    );
}

#[test]
fn udp_client_retries_a_silent_peer_then_gives_up() {
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port().to_string();
    let started = Instant::now();
    run_fails(
        &[
            "echo-client",
            "--udp",
            "127.0.0.1",
            &port,
            "anyone?",
            "--timeout",
            "0.2",
            "--attempts",
            "3",
        ],
        1,
        "no reply after 3 attempt(s) of 200ms each",
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    // All three attempts reached the peer.
    silent.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut buf = [0u8; 16];
    for attempt in 1..=3 {
        let n = silent
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("attempt {attempt} never arrived: {e}"));
        assert_eq!(&buf[..n], b"anyone?");
    }
}

#[test]
fn udp_client_reports_truncation() {
    let server = start_echo_server(&["--udp", "-q"]);
    run_fails(
        &[
            "echo-client",
            "--udp",
            "127.0.0.1",
            &server.port(),
            &"x".repeat(2000),
            "--buffer-size",
            "100",
        ],
        1,
        "the reply of 2000 bytes was truncated to the 100-byte buffer",
    );
}

#[test]
fn unix_datagram_echo() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dgram.sock");
    let path_arg = path.to_str().unwrap();
    let _server = start_echo_server(&["--udp", "--unix", path_arg]);
    assert_eq!(
        run_ok(&["echo-client", "--udp", "--unix", path_arg, "unix datagram"]),
        "Received b'unix datagram'\n"
    );
}

/// Issue 7, item 1: datagrams no client sends are dropped, not echoed: from
/// the server's own port (here another "host", 127.0.0.2, on the same port:
/// a twin echo server) and from privileged ports (services such as echo).
#[test]
fn issue_7_udp_datagrams_from_loop_prone_sources_are_dropped() {
    let server = start_echo_server(&["--udp"]);
    let addr = server.addr();
    let mut buf = [0u8; 64];
    let twin = std::net::UdpSocket::bind(("127.0.0.2", addr.port())).unwrap();
    twin.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    twin.send_to(b"loop?", addr).unwrap();
    assert!(twin.recv(&mut buf).is_err(), "echoed a datagram from its own port");
    server.wait_for_log("comes from this server's own port (an echo loop)");
    match std::net::UdpSocket::bind("127.0.0.1:7") {
        Ok(service) => {
            service.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
            service.send_to(b"chargen?", addr).unwrap();
            assert!(service.recv(&mut buf).is_err(), "echoed a datagram from port 7");
            server.wait_for_log("comes from privileged port 7");
        }
        Err(error) => eprintln!("SKIPPED the privileged-port case (binding port 7 needs root): {error}"),
    }
    // An ordinary client is still answered.
    assert_eq!(
        run_ok(&["echo-client", "-u", "127.0.0.1", &server.port(), "fine"]),
        "Received b'fine'\n"
    );
}

/// Issue 7, item 1: one spoofed datagram "from" another echo server starts
/// the classic loop (CVE-1999-0103). The per-sender allowance drops one
/// datagram of it, which ends it: both servers go quiet.
#[test]
fn issue_7_an_echo_loop_between_two_servers_dies_out() {
    let a = start_echo_server(&["--udp"]);
    let b = start_echo_server(&["--udp"]);
    let (std::net::SocketAddr::V4(a_addr), std::net::SocketAddr::V4(b_addr)) = (a.addr(), b.addr()) else {
        panic!("IPv4 servers")
    };
    if let Err(error) = common::send_spoofed_udp(b_addr, a_addr, b"ping-pong") {
        assert!(!common::is_root(), "root could not send a raw datagram: {error}");
        eprintln!("SKIPPED: forging a datagram needs a raw socket (root): {error}");
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(a.stderr() + &b.stderr()).contains("over its --peer-rate allowance") {
        assert!(
            Instant::now() < deadline,
            "the loop was never broken:\n{}\n{}",
            a.stderr(),
            b.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let before = a.cpu_time() + b.cpu_time();
    std::thread::sleep(Duration::from_secs(1));
    let spent = a.cpu_time() + b.cpu_time() - before;
    assert!(
        spent < Duration::from_millis(150),
        "the servers spent {spent:?} of CPU in a second after the loop should have ended"
    );
}

/// Issue 7, item 2: a Unix datagram client that never reads its replies
/// fills its queue; replies to it are dropped (and counted), and everyone
/// else is still answered at once.
#[test]
fn issue_7_a_unix_datagram_client_that_never_reads_stalls_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dgram.sock");
    let path_arg = path.to_str().unwrap();
    let server = start_echo_server(&["--udp", "--unix", path_arg, "--peer-rate", "0"]);
    let hog = std::os::unix::net::UnixDatagram::bind(dir.path().join("hog.sock")).unwrap();
    hog.connect(&path).unwrap();
    hog.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    // Replies pile up unread until the server's send buffer is full.
    let sender = std::thread::spawn(move || {
        for _ in 0..2000 {
            if hog.send(&[b'h'; 200]).is_err() {
                break;
            }
        }
        hog // kept open, never read
    });
    server.wait_for_log("the sender has not read the replies it was sent");
    let started = Instant::now();
    assert_eq!(
        run_ok(&[
            "echo-client",
            "-u",
            "-U",
            path_arg,
            "still answered",
            "-w",
            "3",
            "--attempts",
            "1"
        ]),
        "Received b'still answered'\n"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    drop(sender.join().unwrap());
}

/// A Unix datagram client bound to an abstract name (Linux) is answered
/// like one bound to a path.
#[test]
fn an_abstract_unix_datagram_client_is_answered() {
    use std::os::linux::net::SocketAddrExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dgram.sock");
    let server = start_echo_server(&["--udp", "--unix", path.to_str().unwrap()]);
    let name = format!("sockets-test-{}", std::process::id());
    let address = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let client = std::os::unix::net::UnixDatagram::bind_addr(&address).unwrap();
    client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    client.send_to(b"abstract", &path).unwrap();
    let mut buf = [0u8; 64];
    let n = client.recv(&mut buf).expect("an answer");
    assert_eq!(&buf[..n], b"abstract");
    server.wait_for_log(&format!("Echoed 8 bytes to unix:@{name}"));
}

/// Issue 7, item 14: a second UDP server on a port in use is refused, as for TCP.
#[test]
fn issue_7_a_second_udp_server_on_a_used_port_is_refused() {
    let first = start_echo_server(&["--udp"]);
    run_fails(
        &["echo-server", "--udp", "127.0.0.1", &first.port()],
        1,
        &format!("cannot listen on 127.0.0.1:{}: Address already in use", first.port()),
    );
    // The first still has its traffic.
    assert_eq!(
        run_ok(&["echo-client", "-u", "127.0.0.1", &first.port(), "mine"]),
        "Received b'mine'\n"
    );
}
