//! Property tests of the codec: round trips, arbitrary segmentation, and
//! arbitrary bytes (which must produce a message, "need more", or an error,
//! never a panic).

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use sockets::protocol::{ByteOrder, Message, MessageCodec};
use tokio_util::codec::{Decoder, Encoder};

fn arb_message() -> impl Strategy<Value = Message> {
    let byteorder = prop_oneof![Just(ByteOrder::Little), Just(ByteOrder::Big)];
    let json = (byteorder.clone(), any::<String>()).prop_map(|(byteorder, text)| Message {
        byteorder,
        content_type: "text/json".into(),
        content_encoding: "utf-8".into(),
        content: Bytes::from(text.into_bytes()),
    });
    let binary = (
        byteorder,
        "[a-z/\\-]{0,40}|\\PC{0,20}",
        "binary|[a-z0-9\"\\\\]{0,12}",
        proptest::collection::vec(any::<u8>(), 0..2048),
    )
        .prop_filter("text/json needs decodable text", |(_, content_type, _, _)| {
            content_type != "text/json"
        })
        .prop_map(|(byteorder, content_type, content_encoding, content)| Message {
            byteorder,
            content_type: content_type.into(),
            content_encoding: content_encoding.into(),
            content: Bytes::from(content),
        });
    prop_oneof![json, binary]
}

fn encode_all(messages: &[Message]) -> Vec<u8> {
    let mut out = BytesMut::new();
    let mut codec = MessageCodec::new();
    for message in messages {
        codec.encode(message, &mut out).unwrap();
    }
    out.to_vec()
}

proptest! {
    #[test]
    fn decode_inverts_encode(message in arb_message()) {
        let mut buf = BytesMut::from(&encode_all(std::slice::from_ref(&message))[..]);
        let decoded = MessageCodec::new().decode(&mut buf).unwrap();
        prop_assert_eq!(decoded, Some(message));
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn any_segmentation_decodes_the_same(
        messages in proptest::collection::vec(arb_message(), 1..6),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let wire = encode_all(&messages);
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(wire.len() + 1)).collect();
        points.push(0);
        points.push(wire.len());
        points.sort_unstable();
        let mut codec = MessageCodec::new();
        let mut buf = BytesMut::new();
        let mut decoded = Vec::new();
        for pair in points.windows(2) {
            buf.extend_from_slice(&wire[pair[0]..pair[1]]);
            while let Some(message) = codec.decode(&mut buf).unwrap() {
                decoded.push(message);
            }
        }
        prop_assert_eq!(codec.decode_eof(&mut buf).unwrap(), None);
        prop_assert_eq!(decoded, messages);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096), limit in 0usize..5000) {
        let mut codec = MessageCodec::new().with_max_content_len(limit);
        let mut buf = BytesMut::from(&bytes[..]);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(message)) => prop_assert!(message.content.len() <= limit),
                Ok(None) => {
                    let _ = codec.decode_eof(&mut buf);
                    break;
                }
                Err(_) => break,
            }
        }
    }

    #[test]
    fn plausible_headers_with_arbitrary_values_never_panic(
        content_type in "\\PC{0,12}",
        length in prop_oneof![any::<i64>().prop_map(|n| n.to_string()), "[0-9.eE+-]{1,30}", Just("null".to_string())],
        tail in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let header = format!(
            r#"{{"byteorder": "little", "content-type": {}, "content-encoding": "utf-8", "content-length": {length}}}"#,
            serde_json::to_string(&content_type).unwrap()
        );
        let mut wire = (header.len() as u16).to_be_bytes().to_vec();
        wire.extend_from_slice(header.as_bytes());
        wire.extend_from_slice(&tail);
        let mut buf = BytesMut::from(&wire[..]);
        let _ = MessageCodec::new().with_max_content_len(100).decode(&mut buf);
    }
}
