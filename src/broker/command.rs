//! The pub/sub requests and what the broker sends (docs/PROTOCOL.md §9).
//!
//! ```text
//! {"action": "subscribe", "value": "news"}            → {"result": "Subscribed to 'news'."}
//! {"action": "unsubscribe", "value": "news"}          → {"result": "Unsubscribed from 'news'."}
//! {"action": "publish", "channel": "news", "value": "hi"} → {"result": 2}   (subscribers reached)
//! to each subscriber of "news":                          {"channel": "news", "message": "hi"}
//! ```

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::protocol::Message;

/// The actions the broker adds to the guide's.
pub const SUBSCRIBE: &str = "subscribe";
pub const UNSUBSCRIBE: &str = "unsubscribe";
pub const PUBLISH: &str = "publish";
/// The longest channel name accepted, in bytes.
pub const MAX_CHANNEL: usize = 256;

/// A pub/sub request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command<'a> {
    Subscribe {
        channel: Cow<'a, str>,
    },
    Unsubscribe {
        channel: Cow<'a, str>,
    },
    Publish {
        channel: Cow<'a, str>,
        message: Cow<'a, str>,
    },
}

/// A pub/sub request that is wrong; answered, and the connection stays open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("Error: {0} request has no string \"value\".")]
    NoValue(&'static str),
    #[error("Error: publish request has no string \"channel\".")]
    NoChannel,
    #[error("Error: a channel name is at most {MAX_CHANNEL} bytes.")]
    ChannelTooLong,
}

impl CommandError {
    pub fn to_message(&self) -> Message {
        crate::app::result_message(&self.to_string())
    }
}

#[derive(Deserialize)]
struct Incoming<'a> {
    #[serde(borrow)]
    action: Option<Cow<'a, str>>,
    #[serde(default)]
    value: Option<serde_json::Value>,
    #[serde(borrow, default)]
    channel: Option<Cow<'a, str>>,
}

/// A publish request's content.
#[derive(Debug, Serialize)]
pub struct PublishRequest<'a> {
    pub action: &'a str,
    pub channel: &'a str,
    pub value: &'a str,
}

/// A subscribe or unsubscribe request's content.
#[derive(Debug, Serialize)]
pub struct ChannelRequest<'a> {
    pub action: &'a str,
    pub value: &'a str,
}

/// What a subscriber receives for each published message.
#[derive(Debug, Serialize, Deserialize)]
pub struct Push<'a> {
    #[serde(borrow)]
    pub channel: &'a str,
    #[serde(borrow)]
    pub message: &'a str,
}

/// The answer to a publish: how many subscribers it reached.
#[derive(Debug, Serialize)]
pub struct Receivers {
    pub result: u64,
}

impl<'a> Command<'a> {
    /// The pub/sub request in `message`; `None` when it is not one (it
    /// goes to the application then, which answers or rejects it).
    pub fn parse(message: &'a Message) -> Option<Result<Command<'a>, CommandError>> {
        if !message.is_json() {
            return None;
        }
        let text = std::str::from_utf8(&message.content).ok()?;
        // Cheap test first: search requests (the common case) pass by.
        if !(text.contains(SUBSCRIBE) || text.contains(PUBLISH)) {
            return None;
        }
        let incoming: Incoming<'a> = serde_json::from_str(text).ok()?;
        let action = incoming.action?;
        let value = match incoming.value {
            Some(serde_json::Value::String(value)) => Some(value),
            _ => None,
        };
        let check = |channel: String| {
            if channel.len() > MAX_CHANNEL {
                Err(CommandError::ChannelTooLong)
            } else {
                Ok(Cow::Owned(channel))
            }
        };
        Some(match action.as_ref() {
            SUBSCRIBE => value
                .ok_or(CommandError::NoValue(SUBSCRIBE))
                .and_then(check)
                .map(|channel| Command::Subscribe { channel }),
            UNSUBSCRIBE => value
                .ok_or(CommandError::NoValue(UNSUBSCRIBE))
                .and_then(check)
                .map(|channel| Command::Unsubscribe { channel }),
            PUBLISH => match (incoming.channel, value) {
                (None, _) => Err(CommandError::NoChannel),
                (_, None) => Err(CommandError::NoValue(PUBLISH)),
                (Some(channel), Some(value)) => check(channel.into_owned()).map(|channel| Command::Publish {
                    channel,
                    message: Cow::Owned(value),
                }),
            },
            _ => return None,
        })
    }
}

/// The request a client sends to subscribe to `channel`.
pub fn subscribe_request(channel: &str) -> Message {
    Message::json(&ChannelRequest {
        action: SUBSCRIBE,
        value: channel,
    })
}

impl Command<'_> {
    /// The request a client sends to leave `channel`.
    pub fn unsubscribe_request(channel: &str) -> Message {
        Message::json(&ChannelRequest {
            action: UNSUBSCRIBE,
            value: channel,
        })
    }
}

/// The request a client sends to publish `message` on `channel`.
pub fn publish_request(channel: &str, message: &str) -> Message {
    Message::json(&PublishRequest {
        action: PUBLISH,
        channel,
        value: message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::client_request;

    #[test]
    fn pub_sub_requests_parse_and_others_pass_by() {
        let subscribe = subscribe_request("news");
        assert_eq!(
            Command::parse(&subscribe),
            Some(Ok(Command::Subscribe {
                channel: Cow::Borrowed("news")
            }))
        );
        let publish = publish_request("news", "hi \"there\" 🐶");
        assert_eq!(
            Command::parse(&publish),
            Some(Ok(Command::Publish {
                channel: Cow::Borrowed("news"),
                message: Cow::Borrowed("hi \"there\" 🐶"),
            }))
        );
        assert_eq!(Command::parse(&client_request("search", "publish")), None);
        assert_eq!(Command::parse(&client_request("upload", "subscribe")), None);
        let no_channel = Message::json(&serde_json::json!({"action": "publish", "value": "x"}));
        assert_eq!(Command::parse(&no_channel), Some(Err(CommandError::NoChannel)));
        let long = subscribe_request(&"c".repeat(300));
        assert_eq!(Command::parse(&long), Some(Err(CommandError::ChannelTooLong)));
        let number = Message::json(&serde_json::json!({"action": "subscribe", "value": 7}));
        assert_eq!(
            Command::parse(&number).unwrap().unwrap_err().to_string(),
            "Error: subscribe request has no string \"value\"."
        );
    }
}
