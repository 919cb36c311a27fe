//! `sockets broker` with real clients: publish/subscribe semantics, the
//! chat mode of `connect`, subscribers that fall behind, and many at once.

mod common;

use std::time::Duration;

use bytes::BytesMut;
use sockets::broker::command::{publish_request, subscribe_request};
use sockets::protocol::Message;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use common::{STEP, ServerProcess, connect, encode, read_message, send, step};

fn broker(extra: &[&str]) -> ServerProcess {
    let mut args = vec!["broker", "127.0.0.1", "0"];
    args.extend_from_slice(extra);
    ServerProcess::start(&args)
}

fn json(message: &Message) -> serde_json::Value {
    serde_json::from_slice(&message.content).expect("JSON content")
}

/// A connection subscribed to `channel`, with its read buffer.
async fn subscriber(server: &ServerProcess, channel: &str) -> (TcpStream, BytesMut) {
    let mut stream = connect(server.addr()).await;
    send(&mut stream, &encode(&subscribe_request(channel))).await;
    let mut buf = BytesMut::new();
    let reply = read_message(&mut stream, &mut buf).await.expect("a reply");
    assert_eq!(json(&reply)["result"], format!("Subscribed to '{channel}'."));
    (stream, buf)
}

async fn publish(stream: &mut TcpStream, buf: &mut BytesMut, channel: &str, message: &str) -> u64 {
    send(stream, &encode(&publish_request(channel, message))).await;
    let reply = read_message(stream, buf).await.expect("a reply");
    json(&reply)["result"].as_u64().expect("a count of receivers")
}

#[tokio::test]
async fn published_messages_reach_each_subscriber_and_the_count_is_returned() {
    let server = broker(&[]);
    let (mut alice, mut alice_buf) = subscriber(&server, "news").await;
    let (mut bob, mut bob_buf) = subscriber(&server, "news").await;
    let (mut other, mut other_buf) = subscriber(&server, "sport").await;
    let mut publisher = connect(server.addr()).await;
    let mut publisher_buf = BytesMut::new();
    assert_eq!(publish(&mut publisher, &mut publisher_buf, "news", "hello 🐶").await, 2);
    for (stream, buf) in [(&mut alice, &mut alice_buf), (&mut bob, &mut bob_buf)] {
        let push = json(&read_message(stream, buf).await.expect("a push"));
        assert_eq!(push, serde_json::json!({"channel": "news", "message": "hello 🐶"}));
    }
    // Bob leaves the channel; a search still works on his connection.
    send(
        &mut bob,
        &encode(&sockets::broker::command::Command::unsubscribe_request("news")),
    )
    .await;
    assert_eq!(
        json(&read_message(&mut bob, &mut bob_buf).await.unwrap())["result"],
        "Unsubscribed from 'news'."
    );
    send(&mut bob, &common::search("morpheus")).await;
    assert_eq!(
        common::result_of(&read_message(&mut bob, &mut bob_buf).await.unwrap()),
        "Follow the white rabbit. 🐰"
    );
    assert_eq!(publish(&mut publisher, &mut publisher_buf, "news", "second").await, 1);
    assert_eq!(
        json(&read_message(&mut alice, &mut alice_buf).await.unwrap())["message"],
        "second"
    );
    assert_eq!(
        publish(&mut publisher, &mut publisher_buf, "nobody-listens", "x").await,
        0
    );
    // Nothing else arrived anywhere.
    for (stream, buf) in [(&mut bob, &mut bob_buf), (&mut other, &mut other_buf)] {
        let mut byte = [0u8; 1];
        assert!(
            tokio::time::timeout(Duration::from_millis(200), stream.read(&mut byte))
                .await
                .is_err()
                && buf.is_empty(),
            "a subscriber got a message it did not subscribe to"
        );
    }
    // A subscriber leaving by closing is forgotten (once the broker has
    // seen the close: asked again until then, within a step).
    drop(alice);
    let deadline = std::time::Instant::now() + common::STEP;
    while publish(&mut publisher, &mut publisher_buf, "news", "anyone?").await != 0 {
        assert!(std::time::Instant::now() < deadline, "alice is still subscribed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn bad_pub_sub_requests_are_answered_and_the_connection_kept() {
    let server = broker(&[]);
    let mut stream = connect(server.addr()).await;
    let mut buf = BytesMut::new();
    let no_channel = Message::json(&serde_json::json!({"action": "publish", "value": "x"}));
    send(&mut stream, &encode(&no_channel)).await;
    assert_eq!(
        common::result_of(&read_message(&mut stream, &mut buf).await.unwrap()),
        "Error: publish request has no string \"channel\"."
    );
    assert_eq!(publish(&mut stream, &mut buf, "c", "still here").await, 0);
}

#[test]
fn chat_clients_hear_each_other_and_one_leaving_ends_nothing() {
    let server = broker(&["-q"]);
    let port = server.port();
    // A listener that stays for a while, and two talkers that come and go.
    let mut listener = chat_listener(&port, "carol");
    std::thread::sleep(Duration::from_millis(300));
    for (nick, line) in [("alice", "hello"), ("bob", "hi \u{1b}[31malice")] {
        let output = common::run_cli_with_input(
            &["connect", "--chat", "127.0.0.1", &port, "--nick", nick],
            Some(format!("{line}\n").as_bytes()),
        );
        assert!(
            output.status.success(),
            "{}",
            common::describe(&["connect", "--chat"], &output)
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    drop(listener.stdin.take()); // carol leaves
    let output = common::wait_output(listener, "carol's chat");
    let heard = String::from_utf8_lossy(&output.stdout);
    assert_eq!(heard, "alice: hello\nbob: hi \\x1b[31malice\n", "what carol heard");
    // The broker serves on: a new listener hears a new talker.
    let mut erin = chat_listener(&port, "erin");
    std::thread::sleep(Duration::from_millis(300));
    let output = common::run_cli_with_input(
        &["connect", "--chat", "127.0.0.1", &port, "--nick", "dave"],
        Some(b"still up\n"),
    );
    assert_eq!(output.stdout, b"", "a talker does not hear itself");
    std::thread::sleep(Duration::from_millis(300));
    drop(erin.stdin.take());
    assert_eq!(
        String::from_utf8_lossy(&common::wait_output(erin, "erin's chat").stdout),
        "dave: still up\n"
    );
}

/// `connect --chat` as `nick`, with its input open until the test drops it.
fn chat_listener(port: &str, nick: &str) -> std::process::Child {
    std::process::Command::new(common::binary())
        .args(["connect", "--chat", "127.0.0.1", port, "--nick", nick])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

#[tokio::test]
async fn a_subscriber_that_never_reads_is_cut_off_and_nobody_waits_for_it() {
    let server = broker(&["--subscriber-limit", "256k", "64k", "1"]);
    // The slow one: a small receive buffer, never read.
    let slow = {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut stream = step("connecting", socket.connect(server.addr())).await.unwrap();
        send(&mut stream, &encode(&subscribe_request("feed"))).await;
        stream
    };
    // Fast ones, each reading everything in a task of its own.
    let mut readers = Vec::new();
    for _ in 0..20 {
        let (mut stream, mut buf) = subscriber(&server, "feed").await;
        readers.push(tokio::spawn(async move {
            let mut got = 0;
            while got < 6000 {
                match tokio::time::timeout(STEP, read_message(&mut stream, &mut buf)).await {
                    Ok(Some(message)) if json(&message)["channel"] == "feed" => got += 1,
                    _ => break,
                }
            }
            got
        }));
    }
    let before = server.rss_bytes();
    let mut publisher = connect(server.addr()).await;
    let mut buf = BytesMut::new();
    let message = "x".repeat(1000);
    // 6 MB: more than the kernel buffers the slow one's socket.
    for _ in 0..6000 {
        publish(&mut publisher, &mut buf, "feed", &message).await;
    }
    for reader in readers {
        assert_eq!(
            step("a fast subscriber", reader).await.unwrap(),
            6000,
            "a fast subscriber missed messages"
        );
    }
    server.wait_for_log("(subscriber output limit: ");
    // The slow one cost at most its limit (and a little): memory is bounded.
    let grown = server.rss_bytes().saturating_sub(before);
    assert!(grown < 64 << 20, "the broker grew {grown} bytes");
    drop(slow);
}

#[test]
fn bench_broker_counts_every_delivery() {
    let server = broker(&["-q"]);
    let (report, output) = common::bench_json(&["broker", "127.0.0.1", &server.port(), "-s", "20", "-n", "500"]);
    assert!(
        output.status.success(),
        "{}",
        common::describe(&["bench", "broker"], &output)
    );
    assert_eq!(report["delivered"], 10_000);
    assert_eq!(report["lost"], 0);
    assert!(report["latency_us"]["p50"].as_f64().unwrap() > 0.0);
}

#[tokio::test]
async fn the_broker_vectors_play_byte_for_byte_on_one_connection() {
    let server = broker(&[]);
    let vectors = common::vectors_from("tests/vectors/broker.json");
    let mut stream = connect(server.addr()).await;
    let mut buf = BytesMut::new();
    let mut checked = 0;
    for vector in &vectors {
        if vector.name.ends_with(".request") {
            send(&mut stream, &vector.wire).await;
            continue;
        }
        // What follows a request arrives in order: pushes, then the answer.
        let got = read_message(&mut stream, &mut buf)
            .await
            .unwrap_or_else(|| panic!("no {}", vector.name));
        if cfg!(target_endian = "little") {
            assert_eq!(encode(&got), vector.wire, "{}", vector.name);
        } else {
            assert_eq!(got.content, vector.content, "{}", vector.name);
        }
        checked += 1;
    }
    assert_eq!(checked, 6);
}
