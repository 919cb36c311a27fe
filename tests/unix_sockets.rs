//! Unix stream sockets: who owns a socket file, and what is left behind.

mod common;

use common::{ServerProcess, run_fails, run_ok, start_echo_server};

#[test]
fn unix_stream_sockets_replace_stale_files_refuse_live_ones_and_clean_up() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("echo.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap()); // stale, as a crashed server leaves it
    let path_arg = path.to_str().unwrap();
    let mut server = start_echo_server(&["--unix", path_arg]);
    assert_eq!(server.listening, format!("unix:{path_arg}"));
    server.wait_for_log("Removed stale socket file");
    assert_eq!(
        run_ok(&["echo-client", "--unix", path_arg, "over unix"]),
        "Received b'over unix'\n"
    );
    assert!(run_ok(&["multiconn-client", "--unix", path_arg, "5"]).contains("5 succeeded, 0 failed"));
    run_fails(
        &["echo-server", "--unix", path_arg],
        1,
        "another server is already listening on unix:",
    );
    server.terminate();
    assert!(server.wait_exit().success());
    assert!(!path.exists(), "the socket file is removed on shutdown");
}

#[test]
fn app_tier_over_unix_sockets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.sock");
    let path_arg = path.to_str().unwrap();
    let _server = ServerProcess::start(&["app-server", "--unix", path_arg]);
    let out = run_ok(&["app-client", "--unix", path_arg, "search", "ring"]);
    assert_eq!(out, "Got result: In the caves beneath the Misty Mountains. 💍\n");
}

/// Issue 7, item 3a: a socket file whose socket refuses us with anything
/// but "connection refused" (here: permission denied, a live server of
/// another user) is not stale: the server refuses to start and never
/// unlinks it.
#[test]
fn issue_7_a_socket_file_that_refuses_us_is_left_alone() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.path().join("theirs.sock");
    let live = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let mut command = std::process::Command::new(common::binary());
    command.args(["echo-server", "--unix", path.to_str().unwrap()]);
    if common::is_root() {
        // Root may connect anywhere: run our server as another user, and
        // keep the socket to its owner.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).unwrap();
        command.uid(65534).gid(65534);
    } else {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).unwrap();
    }
    let output = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot tell whether a server owns unix:") && stderr.contains("Permission denied"),
        "{stderr}"
    );
    assert!(path.exists(), "the other server's socket file was removed");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::os::unix::net::UnixStream::connect(&path).expect("the other server still listens");
    drop(live);
}

/// Issue 7, item 3b: on shutdown the socket file is removed only if it is
/// still the one the server bound: a file someone put in its place, or
/// another server's socket, is left alone.
#[test]
fn issue_7_shutdown_removes_the_socket_file_only_if_it_is_still_ours() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.sock");
    let path_arg = path.to_str().unwrap();

    let mut server = start_echo_server(&["--unix", path_arg]);
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, "someone else's file").unwrap();
    server.terminate();
    assert!(server.wait_exit().success());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "someone else's file");
    server.wait_for_log("it is no longer the socket this server bound");
    std::fs::remove_file(&path).unwrap();

    let mut first = start_echo_server(&["--unix", path_arg]);
    std::fs::remove_file(&path).unwrap();
    let _second = start_echo_server(&["--unix", path_arg]);
    first.terminate();
    assert!(first.wait_exit().success());
    assert_eq!(
        run_ok(&["echo-client", "--unix", path_arg, "second"]),
        "Received b'second'\n",
        "the second server's socket survived the first one's shutdown"
    );
}

/// Issue 7, item 3c: `--unix-mode` gives the socket file its permissions
/// before any client can connect (bound under a temporary name, then renamed).
#[test]
fn issue_7_unix_mode_sets_the_permissions_before_clients_can_connect() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for (mode, expected) in [("600", 0o600), ("666", 0o666)] {
        let path = dir.path().join(format!("mode-{mode}.sock"));
        let path_arg = path.to_str().unwrap();
        let server = start_echo_server(&["--unix", path_arg, "--unix-mode", mode]);
        let actual = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(actual, expected, "--unix-mode {mode}");
        assert_eq!(run_ok(&["echo-client", "--unix", path_arg, "ok"]), "Received b'ok'\n");
        if common::is_root() && expected == 0o600 {
            use std::os::unix::process::CommandExt;
            let output = std::process::Command::new(common::binary())
                .args(["echo-client", "--unix", path_arg, "intruder"])
                .uid(65534)
                .gid(65534)
                .output()
                .unwrap();
            assert_eq!(output.status.code(), Some(1), "another user connected to a 600 socket");
        }
        drop(server);
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .filter(|name| name.to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary names left behind: {leftovers:?}");
    run_fails(&["echo-server", "--unix-mode", "600"], 2, "--unix <PATH>");
}

/// Issue 7, item 4: a Unix client chooses its own socket's path, so the
/// path is peer-supplied text in our log lines, and is escaped.
#[test]
fn issue_7_a_client_socket_path_cannot_forge_log_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.sock");
    let server = ServerProcess::start(&["app-server", "--unix", path.to_str().unwrap()]);
    let forged = dir
        .path()
        .join("x\n2026-01-01T00:00:00Z  INFO Accepted connection from 6.6.6.6:66");
    let client = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None).unwrap();
    client.bind(&socket2::SockAddr::unix(&forged).unwrap()).unwrap();
    client.connect(&socket2::SockAddr::unix(&path).unwrap()).unwrap();
    server.wait_for_log("\\n2026-01-01T00:00:00Z  INFO Accepted connection from 6.6.6.6:66");
    assert!(
        !server.stderr().lines().any(|line| line.starts_with("2026-01-01")),
        "a forged line reached the log:\n{}",
        server.stderr()
    );
}
