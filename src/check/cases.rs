//! The catalogue of cases (documented in `docs/CHECKS.md`, which a test
//! keeps in step with this list).

use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio_util::either::Either;

use super::{Case, CaseFuture, Checker, Observed, Profile, SKIPPED, describe, encode, result_text};
use crate::app::{CLIENT_BINARY_TYPE, client_request};
use crate::protocol::Message;
use crate::transport::ClientStream;

const BOTH: &[Profile] = &[Profile::Guide, Profile::Robust];
const ROBUST: &[Profile] = &[Profile::Robust];

/// Every case, in the order they run.
pub static CATALOGUE: &[Case] = &[
    Case {
        name: "search-hit",
        profiles: BOTH,
        required: true,
        sent: "search \"morpheus\"",
        expected: "result \"Follow the white rabbit. 🐰\", byte-exact",
        run: search_hit,
    },
    Case {
        name: "search-miss",
        profiles: BOTH,
        required: true,
        sent: "search \"nobody\"",
        expected: "result \"No match for 'nobody'.\", byte-exact",
        run: search_miss,
    },
    Case {
        name: "search-emoji",
        profiles: BOTH,
        required: true,
        sent: "search \"🐶\"",
        expected: "result \"🐾 Playing ball! 🏐\", byte-exact",
        run: search_emoji,
    },
    Case {
        name: "search-unicode",
        profiles: BOTH,
        required: true,
        sent: "search \"café ☕ naïve 日本\"",
        expected: "the miss answer quoting the value, byte-exact",
        run: search_unicode,
    },
    Case {
        name: "search-empty-value",
        profiles: BOTH,
        required: true,
        sent: "search \"\"",
        expected: "result \"No match for ''.\"",
        run: search_empty_value,
    },
    Case {
        name: "binary",
        profiles: BOTH,
        required: true,
        sent: "binary request \"the quick brown fox\"",
        expected: "binary \"First 10 bytes of request: the quick \"",
        run: binary,
    },
    Case {
        name: "binary-short",
        profiles: BOTH,
        required: true,
        sent: "binary request of 3 bytes",
        expected: "binary \"First 10 bytes of request: abc\"",
        run: binary_short,
    },
    Case {
        name: "byte-by-byte",
        profiles: BOTH,
        required: true,
        sent: "search \"morpheus\", one byte per segment",
        expected: "the same answer as in one piece",
        run: byte_by_byte,
    },
    Case {
        name: "split-header",
        profiles: BOTH,
        required: true,
        sent: "search \"ring\" cut inside the length, the header, and between header and content",
        expected: "the same answer as in one piece",
        run: split_header,
    },
    Case {
        name: "large-content",
        profiles: BOTH,
        required: true,
        sent: "binary request of 512 KiB",
        expected: "its first 10 bytes",
        run: large_content,
    },
    Case {
        name: "concurrent-clients",
        profiles: BOTH,
        required: true,
        sent: "32 clients at once, each a search of its own",
        expected: "each client its own answer",
        run: concurrent_clients,
    },
    Case {
        name: "pipelined",
        profiles: ROBUST,
        required: true,
        sent: "3 requests in one segment",
        expected: "3 answers, in order",
        run: pipelined,
    },
    Case {
        name: "keep-alive",
        profiles: ROBUST,
        required: true,
        sent: "a request, then after its answer another on the same connection",
        expected: "both answered",
        run: keep_alive,
    },
    Case {
        name: "half-close",
        profiles: ROBUST,
        required: true,
        sent: "2 requests, then our side shut down (FIN)",
        expected: "both answered, then the server closes",
        run: half_close,
    },
    Case {
        name: "header-not-json",
        profiles: ROBUST,
        required: true,
        sent: "a header that is not JSON",
        expected: "an Error: result, then close",
        run: header_not_json,
    },
    Case {
        name: "header-not-object",
        profiles: ROBUST,
        required: true,
        sent: "a header that is a JSON array",
        expected: "an Error: result, then close",
        run: header_not_object,
    },
    Case {
        name: "header-missing-key",
        profiles: ROBUST,
        required: true,
        sent: "a header without \"byteorder\"",
        expected: "an Error: result naming byteorder, then close",
        run: header_missing_key,
    },
    Case {
        name: "header-bad-value",
        profiles: ROBUST,
        required: true,
        sent: "content-length -1",
        expected: "an Error: result naming content-length, then close",
        run: header_bad_value,
    },
    Case {
        name: "header-bad-byteorder",
        profiles: ROBUST,
        required: true,
        sent: "byteorder \"middle\"",
        expected: "an Error: result naming byteorder, then close",
        run: header_bad_byteorder,
    },
    Case {
        name: "content-too-large",
        profiles: ROBUST,
        required: true,
        sent: "a header announcing 2^40 bytes of content, and no content",
        expected: "an Error: result at once, then close",
        run: content_too_large,
    },
    Case {
        name: "content-not-decodable",
        profiles: ROBUST,
        required: true,
        sent: "text/json, utf-8, with the byte 0xff in it",
        expected: "an Error: result, then close",
        run: content_not_decodable,
    },
    Case {
        name: "unsupported-encoding",
        profiles: ROBUST,
        required: true,
        sent: "text/json content in \"utf-16\"",
        expected: "an Error: result, then close",
        run: unsupported_encoding,
    },
    Case {
        name: "truncated",
        profiles: ROBUST,
        required: true,
        sent: "half a message, then FIN",
        expected: "an Error: result, then close",
        run: truncated,
    },
    Case {
        name: "empty-content",
        profiles: ROBUST,
        required: true,
        sent: "text/json with content-length 0",
        expected: "an Error: result; the connection stays usable",
        run: empty_content,
    },
    Case {
        name: "content-not-json",
        profiles: ROBUST,
        required: true,
        sent: "text/json content \"hello\"",
        expected: "an Error: result; the connection stays usable",
        run: content_not_json,
    },
    Case {
        name: "content-not-object",
        profiles: ROBUST,
        required: true,
        sent: "text/json content [1, 2]",
        expected: "an Error: result; the connection stays usable",
        run: content_not_object,
    },
    Case {
        name: "no-action",
        profiles: ROBUST,
        required: true,
        sent: "{\"value\": \"morpheus\"}",
        expected: "an Error: result; the connection stays usable",
        run: no_action,
    },
    Case {
        name: "action-not-string",
        profiles: ROBUST,
        required: true,
        sent: "{\"action\": 7, \"value\": \"x\"}",
        expected: "an Error: result; the connection stays usable",
        run: action_not_string,
    },
    Case {
        name: "invalid-action",
        profiles: ROBUST,
        required: true,
        sent: "{\"action\": \"delete\", \"value\": \"x\"}",
        expected: "result \"Error: invalid action 'delete'.\"; the connection stays usable",
        run: invalid_action,
    },
    Case {
        name: "no-value",
        profiles: ROBUST,
        required: true,
        sent: "{\"action\": \"search\"}",
        expected: "an Error: result; the connection stays usable",
        run: no_value,
    },
    Case {
        name: "value-not-string",
        profiles: ROBUST,
        required: true,
        sent: "{\"action\": \"search\", \"value\": 42}",
        expected: "an Error: result; the connection stays usable",
        run: value_not_string,
    },
    Case {
        name: "stalled-client",
        profiles: ROBUST,
        required: true,
        sent: "one client sends half a request and stops; another sends a whole one",
        expected: "the other client answered at once",
        run: stalled_client,
    },
    Case {
        name: "reset-client",
        profiles: ROBUST,
        required: true,
        sent: "one client sends half a request and resets; another sends a whole one",
        expected: "the other client answered, the server still up",
        run: reset_client,
    },
    Case {
        name: "idle-timeout",
        profiles: ROBUST,
        required: false,
        sent: "a connection that sends nothing (with --idle-timeout SECONDS)",
        expected: "closed by the server within SECONDS (+2 s)",
        run: idle_timeout,
    },
];

fn search(value: &str) -> Message {
    client_request("search", value)
}

/// A message with `header` as its JSON header text and `content` after it.
fn raw(header: &str, content: &[u8]) -> Vec<u8> {
    let mut bytes = u16::try_from(header.len())
        .expect("a short header")
        .to_be_bytes()
        .to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(content);
    bytes
}

/// A header with the four keys, `content-length` set to `length`.
fn header(content_type: &str, encoding: &str, length: &str) -> String {
    format!(
        r#"{{"byteorder": "little", "content-type": "{content_type}", "content-encoding": "{encoding}", "content-length": {length}}}"#
    )
}

/// A `text/json`, `utf-8` message carrying `json` as it is written.
fn json_request(json: &str) -> Vec<u8> {
    raw(&header("text/json", "utf-8", &json.len().to_string()), json.as_bytes())
}

/// One request on a new connection, sent cut at `cuts`, and its answer
/// compared with the one the protocol requires.
async fn exchange(checker: &Checker, request: &Message, cuts: &[usize]) -> Observed {
    let expected = checker.expected_response(request);
    let attempt = async {
        let mut stream = checker.connect().await?;
        checker.send_in_pieces(&mut stream, &encode(request), cuts).await?;
        let got = checker.read_message(&mut stream, &mut BytesMut::new()).await?;
        checker.compare(&got, &expected)?;
        Ok::<_, String>(describe(&got))
    };
    match attempt.await {
        Ok(got) => Observed::pass(got),
        Err(why) => Observed::fail(why),
    }
}

fn search_hit(checker: &Checker) -> CaseFuture<'_> {
    Box::pin(async move { exchange(checker, &search("morpheus"), &[]).await })
}

fn search_miss(checker: &Checker) -> CaseFuture<'_> {
    Box::pin(async move { exchange(checker, &search("nobody"), &[]).await })
}

fn search_emoji(checker: &Checker) -> CaseFuture<'_> {
    Box::pin(async move { exchange(checker, &search("🐶"), &[]).await })
}

fn search_unicode(checker: &Checker) -> CaseFuture<'_> {
    Box::pin(async move { exchange(checker, &search("café ☕ naïve 日本"), &[]).await })
}

fn search_empty_value(checker: &Checker) -> CaseFuture<'_> {
    Box::pin(async move { exchange(checker, &search(""), &[]).await })
}

fn binary(checker: &Checker) -> CaseFuture<'_> {
    Box::pin(async move {
        let request = Message::binary(CLIENT_BINARY_TYPE, &b"the quick brown fox"[..]);
        exchange(checker, &request, &[]).await
    })
}

fn binary_short(checker: &Checker) -> CaseFuture<'_> {
    Box::pin(async move {
        let request = Message::binary(CLIENT_BINARY_TYPE, &b"abc"[..]);
        exchange(checker, &request, &[]).await
    })
}

fn byte_by_byte(checker: &Checker) -> CaseFuture<'_> {
    Box::pin(async move {
        let request = search("morpheus");
        let cuts: Vec<usize> = (1..encode(&request).len()).collect();
        exchange(checker, &request, &cuts).await
    })
}

fn split_header(checker: &Checker) -> CaseFuture<'_> {
    Box::pin(async move {
        let request = search("ring");
        let header_end = 2 + usize::from(u16::from_be_bytes(encode(&request)[..2].try_into().expect("2 bytes")));
        exchange(
            checker,
            &request,
            &[1, 2, 20, header_end - 1, header_end, header_end + 3],
        )
        .await
    })
}

fn large_content(checker: &Checker) -> CaseFuture<'_> {
    Box::pin(async move {
        let content: Vec<u8> = (0..512 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
        exchange(checker, &Message::binary(CLIENT_BINARY_TYPE, content), &[]).await
    })
}

fn concurrent_clients(checker: &Checker) -> CaseFuture<'_> {
    Box::pin(async move {
        let clients = (0..32).map(|i| async move { exchange(checker, &search(&format!("client {i}")), &[]).await });
        let results = futures_util::future::join_all(clients).await;
        let failed: Vec<String> = results
            .iter()
            .enumerate()
            .filter(|(_, observed)| !observed.ok)
            .map(|(i, observed)| format!("client {i}: {}", observed.happened))
            .collect();
        match failed.first() {
            None => Observed::pass("all 32 answered, each with its own value"),
            Some(first) => Observed::fail(format!("{} of 32 failed; {first}", failed.len())),
        }
    })
}

/// Sends `requests` (in one segment when `together`), then reads their
/// answers in order on the same connection; returns the stream after.
async fn answers_in_order(
    checker: &Checker,
    stream: &mut ClientStream,
    buf: &mut BytesMut,
    requests: &[Message],
) -> Result<(), String> {
    let wire: Vec<u8> = requests.iter().flat_map(encode).collect();
    checker.send(stream, &wire).await?;
    for (i, request) in requests.iter().enumerate() {
        let got = checker
            .read_message(stream, buf)
            .await
            .map_err(|why| format!("answer {} of {}: {why}", i + 1, requests.len()))?;
        checker
            .compare(&got, &checker.expected_response(request))
            .map_err(|why| format!("answer {} of {}: {why}", i + 1, requests.len()))?;
    }
    Ok(())
}

fn pipelined(checker: &Checker) -> CaseFuture<'_> {
    Box::pin(async move {
        let requests = [search("morpheus"), search("ring"), search("🐶")];
        let attempt = async {
            let mut stream = checker.connect().await?;
            answers_in_order(checker, &mut stream, &mut BytesMut::new(), &requests).await
        };
        match attempt.await {
            Ok(()) => Observed::pass("3 answers, in order"),
            Err(why) => Observed::fail(why),
        }
    })
}

fn keep_alive(checker: &Checker) -> CaseFuture<'_> {
    Box::pin(async move {
        let attempt = async {
            let mut stream = checker.connect().await?;
            let mut buf = BytesMut::new();
            answers_in_order(checker, &mut stream, &mut buf, &[search("morpheus")]).await?;
            answers_in_order(checker, &mut stream, &mut buf, &[search("ring")])
                .await
                .map_err(|why| format!("second request: {why}"))
        };
        match attempt.await {
            Ok(()) => Observed::pass("both answered on one connection"),
            Err(why) => Observed::fail(why),
        }
    })
}

fn half_close(checker: &Checker) -> CaseFuture<'_> {
    Box::pin(async move {
        let requests = [search("morpheus"), search("ring")];
        let attempt = async {
            let mut stream = checker.connect().await?;
            let wire: Vec<u8> = requests.iter().flat_map(encode).collect();
            checker.send(&mut stream, &wire).await?;
            stream
                .shutdown()
                .await
                .map_err(|e| format!("shutting down our side: {e}"))?;
            let mut buf = BytesMut::new();
            for (i, request) in requests.iter().enumerate() {
                let got = checker
                    .read_message(&mut stream, &mut buf)
                    .await
                    .map_err(|why| format!("answer {} of 2: {why}", i + 1))?;
                checker.compare(&got, &checker.expected_response(request))?;
            }
            checker.expect_close(&mut stream, &mut buf).await
        };
        match attempt.await {
            Ok(()) => Observed::pass("both answered, then closed"),
            Err(why) => Observed::fail(why),
        }
    })
}

/// Sends `wire` (then FIN when `then_fin`) and expects one `Error:` result
/// mentioning `mentions` (when given), then a close.
async fn framing_error(checker: &Checker, wire: &[u8], then_fin: bool, mentions: Option<&str>) -> Observed {
    let attempt = async {
        let mut stream = checker.connect().await?;
        checker.send(&mut stream, wire).await?;
        if then_fin {
            stream
                .shutdown()
                .await
                .map_err(|e| format!("shutting down our side: {e}"))?;
        }
        let mut buf = BytesMut::new();
        let got = checker.read_message(&mut stream, &mut buf).await?;
        let text = result_text(&got).ok_or_else(|| format!("expected an Error: result, got {}", describe(&got)))?;
        if !text.starts_with("Error: ") || mentions.is_some_and(|word| !text.contains(word)) {
            return Err(format!(
                "expected an Error: result{}, got {}",
                mention(mentions),
                describe(&got)
            ));
        }
        checker
            .expect_close(&mut stream, &mut buf)
            .await
            .map_err(|why| format!("answered {}, but then {why}", describe(&got)))?;
        Ok(describe(&got))
    };
    match attempt.await {
        Ok(got) => Observed::pass(format!("{got}, then closed")),
        Err(why) => Observed::fail(why),
    }
}

fn mention(word: Option<&str>) -> String {
    word.map(|w| format!(" naming {w}")).unwrap_or_default()
}

fn header_not_json(checker: &Checker) -> CaseFuture<'_> {
    Box::pin(async move { framing_error(checker, &raw("this is not json", b""), false, None).await })
}

fn header_not_object(checker: &Checker) -> CaseFuture<'_> {
    Box::pin(async move { framing_error(checker, &raw("[1, 2]", b""), false, None).await })
}

fn header_missing_key(checker: &Checker) -> CaseFuture<'_> {
    Box::pin(async move {
        let header = r#"{"content-type": "text/json", "content-encoding": "utf-8", "content-length": 2}"#;
        framing_error(checker, &raw(header, b"{}"), false, Some("byteorder")).await
    })
}

fn header_bad_value(checker: &Checker) -> CaseFuture<'_> {
    Box::pin(async move {
        framing_error(
            checker,
            &raw(&header("text/json", "utf-8", "-1"), b""),
            false,
            Some("content-length"),
        )
        .await
    })
}

fn header_bad_byteorder(checker: &Checker) -> CaseFuture<'_> {
    Box::pin(async move {
        let header =
            r#"{"byteorder": "middle", "content-type": "text/json", "content-encoding": "utf-8", "content-length": 2}"#;
        framing_error(checker, &raw(header, b"{}"), false, Some("byteorder")).await
    })
}

fn content_too_large(checker: &Checker) -> CaseFuture<'_> {
    Box::pin(async move {
        let wire = raw(
            &header("binary/custom-client-binary-type", "binary", "1099511627776"),
            b"",
        );
        framing_error(checker, &wire, false, Some("content-length")).await
    })
}

fn content_not_decodable(checker: &Checker) -> CaseFuture<'_> {
    Box::pin(async move {
        let content = b"{\"action\": \"search\", \"value\": \"\xff\"}";
        let wire = raw(&header("text/json", "utf-8", &content.len().to_string()), content);
        framing_error(checker, &wire, false, None).await
    })
}

fn unsupported_encoding(checker: &Checker) -> CaseFuture<'_> {
    Box::pin(async move {
        let content = b"{}";
        let wire = raw(&header("text/json", "utf-16", "2"), content);
        framing_error(checker, &wire, false, Some("utf-16")).await
    })
}

fn truncated(checker: &Checker) -> CaseFuture<'_> {
    Box::pin(async move {
        let whole = encode(&search("morpheus"));
        framing_error(checker, &whole[..whole.len() - 10], true, None).await
    })
}

/// Sends `wire`, expects an `Error:` result, then checks the connection
/// still answers a search.
async fn semantic_error(checker: &Checker, wire: &[u8], exactly: Option<&str>) -> Observed {
    let attempt = async {
        let mut stream = checker.connect().await?;
        checker.send(&mut stream, wire).await?;
        let mut buf = BytesMut::new();
        let got = checker.read_message(&mut stream, &mut buf).await?;
        let text = result_text(&got).ok_or_else(|| format!("expected an Error: result, got {}", describe(&got)))?;
        let right = match exactly {
            Some(exact) => text == exact,
            None => text.starts_with("Error: "),
        };
        if !right {
            return Err(format!(
                "expected {}, got {}",
                exactly.map_or_else(|| "an Error: result".to_owned(), |e| format!("result {e:?}")),
                describe(&got)
            ));
        }
        answers_in_order(checker, &mut stream, &mut buf, &[search("morpheus")])
            .await
            .map_err(|why| format!("answered {}, but a search after it: {why}", describe(&got)))?;
        Ok(describe(&got))
    };
    match attempt.await {
        Ok(got) => Observed::pass(format!("{got}; the next request was answered")),
        Err(why) => Observed::fail(why),
    }
}

fn empty_content(checker: &Checker) -> CaseFuture<'_> {
    Box::pin(async move { semantic_error(checker, &raw(&header("text/json", "utf-8", "0"), b""), None).await })
}

fn content_not_json(checker: &Checker) -> CaseFuture<'_> {
    Box::pin(async move { semantic_error(checker, &json_request("hello"), None).await })
}

fn content_not_object(checker: &Checker) -> CaseFuture<'_> {
    Box::pin(async move { semantic_error(checker, &json_request("[1, 2]"), None).await })
}

fn no_action(checker: &Checker) -> CaseFuture<'_> {
    Box::pin(async move { semantic_error(checker, &json_request(r#"{"value": "morpheus"}"#), None).await })
}

fn action_not_string(checker: &Checker) -> CaseFuture<'_> {
    Box::pin(async move { semantic_error(checker, &json_request(r#"{"action": 7, "value": "x"}"#), None).await })
}

fn invalid_action(checker: &Checker) -> CaseFuture<'_> {
    Box::pin(async move {
        let wire = json_request(r#"{"action": "delete", "value": "x"}"#);
        semantic_error(checker, &wire, Some("Error: invalid action 'delete'.")).await
    })
}

fn no_value(checker: &Checker) -> CaseFuture<'_> {
    Box::pin(async move { semantic_error(checker, &json_request(r#"{"action": "search"}"#), None).await })
}

fn value_not_string(checker: &Checker) -> CaseFuture<'_> {
    Box::pin(async move { semantic_error(checker, &json_request(r#"{"action": "search", "value": 42}"#), None).await })
}

/// A second client's exchange while a first one holds half a request;
/// `reset` resets the first connection before the second client starts.
async fn isolation(checker: &Checker, reset: bool) -> Observed {
    let attempt = async {
        let mut first = checker.connect().await?;
        let whole = encode(&search("morpheus"));
        checker.send(&mut first, &whole[..whole.len() / 2]).await?;
        // Held open and silent for the rest of the case, or reset now.
        let held = if reset {
            reset_connection(first);
            None
        } else {
            Some(first)
        };
        let started = Instant::now();
        let observed = exchange(checker, &search("ring"), &[]).await;
        drop(held);
        if !observed.ok {
            return Err(format!("the other client: {}", observed.happened));
        }
        Ok(started.elapsed())
    };
    match attempt.await {
        Ok(took) => Observed::pass(format!(
            "the other client answered in {:.1} ms",
            took.as_secs_f64() * 1e3
        )),
        Err(why) => Observed::fail(why),
    }
}

/// Closes `stream` with a reset where it can (TCP: SO_LINGER 0), else plainly.
fn reset_connection(stream: ClientStream) {
    if let Either::Left(Either::Left(tcp)) = &stream {
        let _ = socket2::SockRef::from(tcp).set_linger(Some(Duration::ZERO));
    }
    drop(stream);
}

fn stalled_client(checker: &Checker) -> CaseFuture<'_> {
    Box::pin(async move { isolation(checker, false).await })
}

fn reset_client(checker: &Checker) -> CaseFuture<'_> {
    Box::pin(async move { isolation(checker, true).await })
}

fn idle_timeout(checker: &Checker) -> CaseFuture<'_> {
    Box::pin(async move {
        let Some(limit) = checker.config.idle_timeout else {
            return Observed::pass(format!("{SKIPPED}give --idle-timeout SECONDS to run it"));
        };
        let attempt = async {
            let mut stream = checker.connect().await?;
            let started = Instant::now();
            let mut buf = BytesMut::new();
            let grace = limit + Duration::from_secs(2);
            match tokio::time::timeout(grace, tokio::io::AsyncReadExt::read_buf(&mut stream, &mut buf)).await {
                Ok(Ok(0) | Err(_)) => Ok(started.elapsed()),
                Ok(Ok(n)) => Err(format!("the server sent {n} bytes to a silent client")),
                Err(_) => Err(format!("still open after {}", crate::display_duration(grace))),
            }
        };
        match attempt.await {
            Ok(took) => Observed::pass(format!("closed after {:.1} s", took.as_secs_f64())),
            Err(why) => Observed::fail(why),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_case_is_documented_and_named_once() {
        let doc = include_str!("../../docs/CHECKS.md");
        for case in CATALOGUE {
            assert!(
                doc.contains(&format!("| `{}` |", case.name)),
                "docs/CHECKS.md lacks {}",
                case.name
            );
            assert_eq!(
                CATALOGUE.iter().filter(|c| c.name == case.name).count(),
                1,
                "{}",
                case.name
            );
        }
    }

    #[test]
    fn raw_messages_frame_their_header() {
        let wire = raw("{}", b"xy");
        assert_eq!(wire, b"\x00\x02{}xy");
        let request = json_request(r#"{"a": 1}"#);
        let length = usize::from(u16::from_be_bytes([request[0], request[1]]));
        assert!(
            std::str::from_utf8(&request[2..2 + length])
                .unwrap()
                .contains("\"content-length\": 8")
        );
    }
}
