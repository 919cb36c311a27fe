//! TLS through the real binary, against real TLS peers: `openssl s_client`
//! and `socat` (OpenSSL) and `gnutls-serv` (GnuTLS) on one side, our servers
//! and clients on the other. Certificates are made by `sockets cert`.
//! Every behaviour of the plain server (pipelining, half-close, timeouts,
//! shutdown, hostile input) is checked again over TLS.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use sockets::app::client_request;
use sockets::protocol::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use common::{STEP, ServerProcess, encode, result_of, run_cli, run_fails, run_ok, step, vector, vectors};

/// Certificates for one test: a self-signed server certificate, a CA, and
/// client certificates signed by it or by another CA.
struct Certs {
    dir: tempfile::TempDir,
}

impl Certs {
    fn new() -> Certs {
        let certs = Certs {
            dir: tempfile::tempdir().unwrap(),
        };
        certs.make(&["localhost", "127.0.0.1", "::1"], "server", &[]);
        certs.make(&["test CA"], "ca", &["--ca"]);
        certs.make(&["other CA"], "other-ca", &["--ca"]);
        let (ca, ca_key) = (certs.pem("ca"), certs.key("ca"));
        certs.make(
            &["client-one"],
            "client",
            &["--issuer-cert", &ca, "--issuer-key", &ca_key],
        );
        let (other, other_key) = (certs.pem("other-ca"), certs.key("other-ca"));
        certs.make(
            &["stranger"],
            "stranger",
            &["--issuer-cert", &other, "--issuer-key", &other_key],
        );
        certs
    }

    fn make(&self, names: &[&str], name: &str, extra: &[&str]) {
        let (cert, key) = (self.pem(name), self.key(name));
        let mut args = vec!["cert"];
        args.extend_from_slice(names);
        args.extend(["--cert", &cert, "--key", &key]);
        args.extend_from_slice(extra);
        run_ok(&args);
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    fn pem(&self, name: &str) -> String {
        self.path(&format!("{name}.pem")).to_str().unwrap().to_owned()
    }

    fn key(&self, name: &str) -> String {
        self.path(&format!("{name}.key")).to_str().unwrap().to_owned()
    }

    /// Flags that make a server speak TLS with the server certificate.
    fn server_flags(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.pem("server"),
            "--tls-key".into(),
            self.key("server"),
        ]
    }
}

fn app_server(certs: &Certs, extra: &[&str]) -> ServerProcess {
    let flags = certs.server_flags();
    let mut args = vec!["app-server", "127.0.0.1", "0"];
    args.extend(flags.iter().map(String::as_str));
    args.extend_from_slice(extra);
    ServerProcess::start(&args)
}

/// A TLS client (rustls) that trusts `ca`, for tests that drive the wire by hand.
async fn tls_connect(addr: std::net::SocketAddr, ca: &Path) -> TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = common::connect(addr).await;
    step(
        "a TLS handshake",
        connector.connect(ServerName::try_from("localhost").unwrap(), tcp),
    )
    .await
    .expect("the TLS handshake")
}

async fn read_message(stream: &mut TlsStream<TcpStream>, buf: &mut BytesMut) -> Option<Message> {
    use tokio_util::codec::Decoder;
    let mut codec = sockets::protocol::MessageCodec::new();
    step("reading a message over TLS", async {
        loop {
            if let Some(message) = codec.decode(buf).expect("a valid message") {
                return Some(message);
            }
            match stream.read_buf(buf).await {
                Ok(0) => return None,
                Ok(_) => {}
                // A server that closes without close_notify after its last answer.
                Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return None,
                Err(error) => panic!("reading over TLS: {error}"),
            }
        }
    })
    .await
}

fn refs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// Runs `openssl s_client` (or another program) with `input`, returning stdout.
fn run_program(program: &str, args: &[&str], input: &[u8]) -> std::process::Output {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program} must be installed (.ci/run installs it): {e}"));
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).unwrap();
    // Keep stdin open a moment so the answer arrives before s_client sees EOF.
    std::thread::sleep(Duration::from_millis(500));
    drop(stdin);
    let deadline = Instant::now() + STEP;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return child.wait_with_output().unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn openssl_s_client_gets_the_exact_response_bytes_with_tls_1_2_and_1_3() {
    let certs = Certs::new();
    let server = app_server(&certs, &[]);
    let vectors = vectors();
    let request = vector(&vectors, "search-morpheus.request");
    let response = vector(&vectors, "search-morpheus.response");
    let connect = server.addr().to_string();
    for version in ["-tls1_2", "-tls1_3"] {
        let output = run_program(
            "openssl",
            &[
                "s_client",
                "-quiet",
                "-connect",
                &connect,
                "-CAfile",
                &certs.pem("server"),
                version,
            ],
            &request.wire,
        );
        if cfg!(target_endian = "little") {
            assert_eq!(
                output.stdout,
                response.wire,
                "openssl s_client {version}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
    server.wait_for_log("(TLSv1_2, ");
    server.wait_for_log("(TLSv1_3, ");
}

#[test]
fn tls_min_version_1_3_refuses_a_1_2_only_client() {
    let certs = Certs::new();
    let server = app_server(&certs, &["--tls-min-version", "1.3"]);
    let vectors = vectors();
    let request = vector(&vectors, "search-ring.request");
    let connect = server.addr().to_string();
    let old = run_program(
        "openssl",
        &[
            "s_client",
            "-quiet",
            "-connect",
            &connect,
            "-CAfile",
            &certs.pem("server"),
            "-tls1_2",
        ],
        &request.wire,
    );
    assert!(old.stdout.is_empty(), "a TLS 1.2 client was answered");
    server.wait_for_log("TLS handshake failed: the client and we have no TLS version or cipher in common");
    let new = run_program(
        "openssl",
        &[
            "s_client",
            "-quiet",
            "-connect",
            &connect,
            "-CAfile",
            &certs.pem("server"),
            "-tls1_3",
        ],
        &request.wire,
    );
    assert!(!new.stdout.is_empty(), "a TLS 1.3 client was refused");
}

/// Runs a program (a real TLS peer) in the background; killed when dropped.
fn spawn_peer(program: &str, args: &[&str]) -> Killed {
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{program} must be installed (.ci/run installs it): {e}"));
    Killed(child)
}

/// `socat OPENSSL-LISTEN` on a free port, running `command` for each
/// connection (`fork`: the readiness probe takes a connection of its own).
fn socat_tls(certs: &Certs, command: &str) -> (Killed, u16) {
    let port = free_port();
    let listen = format!(
        "OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,cert={},key={},verify=0",
        certs.pem("server"),
        certs.key("server")
    );
    let socat = spawn_peer("socat", &[&listen, command]);
    wait_for_port(port);
    (socat, port)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + STEP;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn our_clients_against_socat_and_gnutls_echo_servers() {
    let certs = Certs::new();
    let (_socat, port) = socat_tls(&certs, "EXEC:cat");
    let port = port.to_string();
    let ca = certs.pem("server");
    assert_eq!(
        run_ok(&["echo-client", "127.0.0.1", &port, "over openssl", "--tls-ca", &ca]),
        "Received b'over openssl'\n"
    );
    let out = run_ok(&[
        "multiconn-client",
        "localhost",
        &port,
        "5",
        "--tls-ca",
        &ca,
        "--summary",
    ]);
    assert!(out.contains("5 succeeded, 0 failed"), "{out}");

    let gnutls_port = free_port();
    let _gnutls = spawn_peer(
        "gnutls-serv",
        &[
            "--echo",
            "--port",
            &gnutls_port.to_string(),
            "--x509certfile",
            &certs.pem("server"),
            "--x509keyfile",
            &certs.key("server"),
        ],
    );
    wait_for_port(gnutls_port);
    // gnutls-serv echoes whole lines.
    assert_eq!(
        run_ok(&[
            "echo-client",
            "127.0.0.1",
            &gnutls_port.to_string(),
            "over gnutls\n",
            "--tls-ca",
            &ca
        ]),
        "Received b'over gnutls\\n'\n"
    );
}

#[test]
fn app_client_against_an_openssl_server_gets_the_guide_line() {
    let certs = Certs::new();
    let vectors = vectors();
    let request = vector(&vectors, "search-morpheus.request");
    let response = vector(&vectors, "search-morpheus.response");
    let dir = tempfile::tempdir().unwrap();
    let answer = dir.path().join("answer.bin");
    std::fs::write(&answer, &response.wire).unwrap();
    let command = format!(
        "SYSTEM:head -c {} >/dev/null; cat {}",
        request.wire.len(),
        answer.display()
    );
    let (_socat, port) = socat_tls(&certs, &command);
    assert_eq!(
        run_ok(&[
            "app-client",
            "127.0.0.1",
            &port.to_string(),
            "search",
            "morpheus",
            "--tls-ca",
            &certs.pem("server")
        ]),
        "Got result: Follow the white rabbit. 🐰\n"
    );
}

#[test]
fn verification_failures_say_why_and_insecure_warns() {
    let certs = Certs::new();
    let server = app_server(&certs, &[]);
    let port = server.port();
    let base = ["app-client", "127.0.0.1", &port, "search", "ring"];
    let with = |extra: &[&str]| -> Vec<String> { base.iter().chain(extra).map(|s| s.to_string()).collect() };
    let run_fails_with = |extra: &[&str], expected: &str| {
        let args = with(extra);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        run_fails(&refs, 1, expected)
    };
    // Trusted only by the system's roots: not ours.
    run_fails_with(
        &["--tls"],
        "the server's certificate is not signed by an authority we trust",
    );
    // Trusting another CA.
    run_fails_with(
        &["--tls-ca", &certs.pem("ca")],
        "the server's certificate is not signed by an authority we trust",
    );
    run_fails_with(
        &["--tls-ca", &certs.pem("server"), "--tls-server-name", "example.com"],
        "the server's certificate is for localhost, 127.0.0.1, ::1, not example.com (name mismatch)",
    );
    // No TLS at all against a TLS server.
    run_fails_with(&[], "the server answered with TLS: connect with --tls");
    let output = run_cli(&with(&["--insecure"]).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "Got result: In the caves beneath the Misty Mountains. 💍\n"
    );
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .starts_with("warning: --insecure: the server's certificate is not verified")
    );
    // An IP address is verified against the certificate's IP addresses.
    assert_eq!(
        run_ok(
            &with(&["--tls-ca", &certs.pem("server")])
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
        ),
        "Got result: In the caves beneath the Misty Mountains. 💍\n"
    );
}

#[test]
fn an_expired_certificate_is_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (cert_path, key_path) = (dir.path().join("old.pem"), dir.path().join("old.key"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let (cert_path, key_path) = (cert_path.to_str().unwrap(), key_path.to_str().unwrap());
    let server = ServerProcess::start(&[
        "app-server",
        "127.0.0.1",
        "0",
        "--tls-cert",
        cert_path,
        "--tls-key",
        key_path,
    ]);
    run_fails(
        &[
            "app-client",
            "127.0.0.1",
            &server.port(),
            "search",
            "x",
            "--tls-ca",
            cert_path,
        ],
        1,
        "the server's certificate has expired (it was valid until 2021-01-01)",
    );
}

#[test]
fn mutual_tls_serves_certified_clients_and_refuses_others() {
    let certs = Certs::new();
    let server = app_server(&certs, &["--tls-client-ca", &certs.pem("ca")]);
    let port = server.port();
    let ca = certs.pem("server");
    let base = ["app-client", "127.0.0.1", &port, "search", "morpheus", "--tls-ca", &ca];
    let args = |extra: &[&str]| -> Vec<String> { base.iter().chain(extra).map(|s| s.to_string()).collect() };
    // Without a certificate: refused, and the client says why.
    let bare = args(&[]);
    run_fails(
        &refs(&bare),
        1,
        "the server requires a client certificate (give one with --tls-cert and --tls-key)",
    );
    server.wait_for_log("TLS handshake failed: the client presented no certificate");
    // With one from another CA: refused.
    let stranger = args(&[
        "--tls-cert",
        &certs.pem("stranger"),
        "--tls-key",
        &certs.key("stranger"),
    ]);
    run_fails(&refs(&stranger), 1, "the server does not accept our certificate");
    server.wait_for_log("the client's certificate is not signed by a CA in --tls-client-ca");
    // With one the CA signed: served, and its subject is logged.
    let client = args(&["--tls-cert", &certs.pem("client"), "--tls-key", &certs.key("client")]);
    assert_eq!(run_ok(&refs(&client)), "Got result: Follow the white rabbit. 🐰\n");
    server.wait_for_log("client certificate CN=client-one)");
}

#[tokio::test]
async fn every_vector_is_answered_byte_exact_over_tls() {
    let certs = Certs::new();
    let server = app_server(&certs, &[]);
    let vectors = vectors();
    for request in vectors.iter().filter(|v| v.name.ends_with(".request")) {
        let expected = common::response_vector(&vectors, request);
        let mut stream = tls_connect(server.addr(), &certs.path("server.pem")).await;
        stream.write_all(&request.wire).await.unwrap();
        stream.shutdown().await.unwrap();
        let mut got = Vec::new();
        let _ = step("reading to EOF", stream.read_to_end(&mut got)).await;
        if cfg!(target_endian = "little") {
            assert_eq!(got, expected.wire, "response to {}", request.name);
        }
    }
}

#[tokio::test]
async fn pipelining_and_half_close_hold_over_tls() {
    let certs = Certs::new();
    let server = app_server(&certs, &[]);
    let mut stream = tls_connect(server.addr(), &certs.path("server.pem")).await;
    let queries: Vec<String> = (0..200).map(|i| format!("q{i}")).collect();
    let wire: Vec<u8> = queries
        .iter()
        .flat_map(|q| encode(&client_request("search", q)))
        .collect();
    stream.write_all(&wire).await.unwrap();
    stream.shutdown().await.unwrap(); // close_notify: half-close over TLS
    let mut buf = BytesMut::new();
    for query in &queries {
        let response = read_message(&mut stream, &mut buf)
            .await
            .expect("an answer per request");
        assert_eq!(result_of(&response), format!("No match for '{query}'."));
    }
    assert!(
        read_message(&mut stream, &mut buf).await.is_none(),
        "EOF after the last answer"
    );
    server.wait_for_log("(client closed the connection)");
}

#[tokio::test]
async fn framing_errors_and_timeouts_hold_over_tls() {
    let certs = Certs::new();
    let server = app_server(&certs, &["--idle-timeout", "0.5", "--request-timeout", "0.5"]);
    let ca = certs.path("server.pem");
    // A framing error is explained, then the connection closes.
    let mut bad = tls_connect(server.addr(), &ca).await;
    bad.write_all(b"\x00\x05hello").await.unwrap();
    let mut buf = BytesMut::new();
    let told = read_message(&mut bad, &mut buf).await.expect("an error response");
    assert!(
        result_of(&told).starts_with("Error: JSON header is not valid UTF-8 JSON"),
        "{told:?}"
    );
    assert!(read_message(&mut bad, &mut buf).await.is_none());
    // A request begun and never finished is refused at the request timeout.
    let mut slow = tls_connect(server.addr(), &ca).await;
    slow.write_all(&encode(&client_request("search", "ring"))[..10])
        .await
        .unwrap();
    let told = read_message(&mut slow, &mut BytesMut::new())
        .await
        .expect("an error response");
    assert_eq!(result_of(&told), "Error: request not completed within 500ms.");
    // An idle connection is closed at the idle timeout.
    let mut idle = tls_connect(server.addr(), &ca).await;
    assert!(read_message(&mut idle, &mut BytesMut::new()).await.is_none());
    server.wait_for_log("(idle for 500ms)");
}

#[tokio::test]
async fn graceful_shutdown_holds_over_tls() {
    let certs = Certs::new();
    let mut server = app_server(&certs, &[]);
    let ca = certs.path("server.pem");
    let mut busy = tls_connect(server.addr(), &ca).await;
    let wire = encode(&client_request("search", "morpheus"));
    busy.write_all(&wire[..30]).await.unwrap();
    busy.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.terminate();
    server.wait_for_log("shutting down gracefully");
    busy.write_all(&wire[30..]).await.unwrap();
    let response = read_message(&mut busy, &mut BytesMut::new()).await.expect("answered");
    assert_eq!(result_of(&response), "Follow the white rabbit. 🐰");
    assert!(server.wait_exit().success());
}

/// A client that never sends its ClientHello costs one task until the
/// handshake deadline; one that sends garbage is closed at once; neither
/// delays anyone else.
#[tokio::test]
async fn silent_and_garbage_handshakes_disturb_nobody() {
    let certs = Certs::new();
    let server = app_server(&certs, &["--tls-handshake-timeout", "1"]);
    let mut silent: Vec<TcpStream> = Vec::new();
    for _ in 0..50 {
        silent.push(common::connect(server.addr()).await);
    }
    let mut garbage = common::connect(server.addr()).await;
    garbage.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = step("garbage is closed", garbage.read_to_end(&mut rest)).await;
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "garbage was not refused at once"
    );
    server.wait_for_log("TLS handshake failed: the client does not speak TLS");
    // Someone else is served at once while 50 handshakes hang.
    let started = Instant::now();
    let mut client = tls_connect(server.addr(), &certs.path("server.pem")).await;
    client
        .write_all(&encode(&client_request("search", "ring")))
        .await
        .unwrap();
    let response = read_message(&mut client, &mut BytesMut::new()).await.unwrap();
    assert_eq!(result_of(&response), "In the caves beneath the Misty Mountains. 💍");
    assert!(started.elapsed() < Duration::from_millis(500));
    // The silent ones are closed at the deadline.
    let mut first = silent.remove(0);
    let mut rest = Vec::new();
    let _ = step("silent handshake closed", first.read_to_end(&mut rest)).await;
    server.wait_for_log("TLS handshake failed: not completed within 1s");
}

#[test]
fn tls_over_a_unix_socket() {
    let certs = Certs::new();
    let path = certs.path("app.sock");
    let flags = certs.server_flags();
    let mut args = vec!["app-server", "--unix", path.to_str().unwrap()];
    args.extend(flags.iter().map(String::as_str));
    let _server = ServerProcess::start(&args);
    assert_eq!(
        run_ok(&[
            "app-client",
            "--unix",
            path.to_str().unwrap(),
            "search",
            "ring",
            "--tls-ca",
            &certs.pem("server")
        ]),
        "Got result: In the caves beneath the Misty Mountains. 💍\n"
    );
}

#[test]
fn bench_over_tls_counts_handshakes_and_resumptions() {
    let certs = Certs::new();
    let server = app_server(&certs, &["-q"]);
    let port = server.port();
    let ca = certs.pem("server");
    let bench = |extra: &[&str]| -> serde_json::Value {
        let mut args = vec![
            "bench",
            "app",
            "127.0.0.1",
            &port,
            "--mode",
            "oneshot",
            "-n",
            "40",
            "-c",
            "2",
            "--tls-ca",
            &ca,
            "--json",
        ];
        args.extend_from_slice(extra);
        let output = run_cli(&args);
        assert!(output.status.success(), "{}", common::describe(&args, &output));
        serde_json::from_slice(&output.stdout).unwrap()
    };
    let resumed = bench(&[]);
    assert_eq!(resumed["requests"], 40);
    assert!(resumed["tls_handshakes"]["resumed"].as_u64().unwrap() > 30, "{resumed}");
    let full = bench(&["--tls-no-resume"]);
    assert_eq!(full["tls_handshakes"]["resumed"], 0, "{full}");
    assert!(full["tls_handshakes"]["full"].as_u64().unwrap() >= 40, "{full}");
    let persistent = run_ok(&[
        "bench",
        "app",
        "127.0.0.1",
        &port,
        "-n",
        "2000",
        "-P",
        "8",
        "--tls-ca",
        &ca,
    ]);
    assert!(persistent.contains("completed   2000 requests"), "{persistent}");
}

#[test]
fn echo_server_and_multiconn_over_tls() {
    let certs = Certs::new();
    let flags = certs.server_flags();
    let mut args = vec!["echo-server", "127.0.0.1", "0", "-q"];
    args.extend(flags.iter().map(String::as_str));
    let server = ServerProcess::start(&args);
    let ca = certs.pem("server");
    assert_eq!(
        run_ok(&["echo-client", "127.0.0.1", &server.port(), "secret", "--tls-ca", &ca]),
        "Received b'secret'\n"
    );
    let out = run_ok(&[
        "multiconn-client",
        "127.0.0.1",
        &server.port(),
        "20",
        "--tls-ca",
        &ca,
        "--summary",
    ]);
    assert!(out.contains("20 succeeded, 0 failed"), "{out}");
    // connect, the netcat-like relay, over TLS: a pipe in, the echo out.
    let output = common::run_cli_with_input(
        &["connect", "127.0.0.1", &server.port(), "--tls-ca", &ca],
        Some(b"piped through TLS\n"),
    );
    assert!(output.status.success(), "{}", common::describe(&["connect"], &output));
    assert_eq!(output.stdout, b"piped through TLS\n");
    run_fails(
        &[
            "echo-server",
            "--udp",
            "--tls-cert",
            &ca,
            "--tls-key",
            &certs.key("server"),
        ],
        2,
        "cannot be used with",
    );
}

#[test]
fn cert_refuses_to_overwrite_without_force() {
    let certs = Certs::new();
    let (cert, key) = (certs.pem("server"), certs.key("server"));
    run_fails(
        &["cert", "localhost", "--cert", &cert, "--key", &key],
        1,
        "exists (remove it, or pass --force)",
    );
    run_ok(&["cert", "localhost", "--cert", &cert, "--key", &key, "--force"]);
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the key is readable by its owner only");
}
