//! The little of Redis's protocol (RESP2) that `bench broker --redis`
//! needs to measure redis-server's PUBLISH/SUBSCRIBE next to our broker:
//! commands as arrays of bulk strings, and replies read incrementally.

use bytes::{Buf, BytesMut};

/// A reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Value>),
}

/// A command: `*N` then each argument as a bulk string.
pub fn command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The largest bulk string accepted: bounded memory whatever the server sends.
const MAX_BULK: usize = 64 * 1024 * 1024;

/// Takes one whole reply off the front of `buf`; `Ok(None)` until one is there.
///
/// # Errors
/// Bytes that are not RESP.
pub fn take(buf: &mut BytesMut) -> Result<Option<Value>, String> {
    match parse(buf, 0)? {
        Some((value, used)) => {
            buf.advance(used);
            Ok(Some(value))
        }
        None => Ok(None),
    }
}

/// The value starting at `at`, and where it ends.
fn parse(buf: &[u8], at: usize) -> Result<Option<(Value, usize)>, String> {
    let Some(line_end) = buf[at.min(buf.len())..]
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|p| at + p)
    else {
        return Ok(None);
    };
    let line = std::str::from_utf8(&buf[at + 1..line_end]).map_err(|_| "a RESP line is not UTF-8".to_owned())?;
    let next = line_end + 2;
    let number = || line.parse::<i64>().map_err(|_| format!("not a RESP number: {line:?}"));
    match buf[at] {
        b'+' => Ok(Some((Value::Simple(line.to_owned()), next))),
        b'-' => Ok(Some((Value::Error(line.to_owned()), next))),
        b':' => Ok(Some((Value::Integer(number()?), next))),
        b'$' => {
            let len = number()?;
            if len < 0 {
                return Ok(Some((Value::Bulk(None), next)));
            }
            let len = usize::try_from(len).map_err(|_| "a bulk length out of range".to_owned())?;
            if len > MAX_BULK {
                return Err(format!("a bulk string of {len} bytes"));
            }
            if buf.len() < next + len + 2 {
                return Ok(None);
            }
            Ok(Some((
                Value::Bulk(Some(buf[next..next + len].to_vec())),
                next + len + 2,
            )))
        }
        b'*' => {
            let count = number()?;
            let mut items = Vec::new();
            let mut end = next;
            for _ in 0..count.max(0) {
                match parse(buf, end)? {
                    Some((item, after)) => {
                        items.push(item);
                        end = after;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((Value::Array(items), end)))
        }
        other => Err(format!("not RESP: a reply begins with {other:#04x}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_read_whole_whatever_the_cuts() {
        let wire = b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$5\r\nhello\r\n:2\r\n";
        let expected = vec![
            Value::Array(vec![
                Value::Bulk(Some(b"message".to_vec())),
                Value::Bulk(Some(b"news".to_vec())),
                Value::Bulk(Some(b"hello".to_vec())),
            ]),
            Value::Integer(2),
        ];
        for cut in 0..wire.len() {
            let mut buf = BytesMut::from(&wire[..cut]);
            let mut got = Vec::new();
            while let Some(value) = take(&mut buf).unwrap() {
                got.push(value);
            }
            buf.extend_from_slice(&wire[cut..]);
            while let Some(value) = take(&mut buf).unwrap() {
                got.push(value);
            }
            assert_eq!(got, expected, "cut at {cut}");
            assert!(buf.is_empty());
        }
        assert!(take(&mut BytesMut::from(&b"?x\r\n"[..])).is_err());
        assert_eq!(
            command(&[b"PUBLISH", b"c", b"m"]),
            b"*3\r\n$7\r\nPUBLISH\r\n$1\r\nc\r\n$1\r\nm\r\n"
        );
    }
}
