//! [`JsonStr`]: a JSON value expected to be a string, read without copying
//! when it has no escapes, and described (not rejected) when it is not a
//! string, so the caller can say "key X must be a string, got 7".

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// A string value, or a description of the non-string value found instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonStr<'a> {
    Str(Cow<'a, str>),
    /// JSON text for scalars (`7`, `true`, `null`), `an array` or `an object` otherwise.
    NotStr(String),
}

impl<'de: 'a, 'a> Deserialize<'de> for JsonStr<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonStrVisitor(std::marker::PhantomData))
    }
}

struct JsonStrVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for JsonStrVisitor<'a> {
    type Value = JsonStr<'a>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(JsonStr::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(JsonStr::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(JsonStr::Str(Cow::Owned(v)))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(JsonStr::NotStr(v.to_string()))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(JsonStr::NotStr(v.to_string()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(JsonStr::NotStr(v.to_string()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(JsonStr::NotStr(
            serde_json::Number::from_f64(v).map_or_else(|| v.to_string(), |n| n.to_string()),
        ))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(JsonStr::NotStr("null".into()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(JsonStr::NotStr("an array".into()))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(JsonStr::NotStr("an object".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_borrow_unless_escaped_and_others_are_described() {
        let cases = [
            (r#""plain""#, JsonStr::Str(Cow::Borrowed("plain"))),
            (r#""a\"b""#, JsonStr::Str(Cow::Owned("a\"b".into()))),
            ("7", JsonStr::NotStr("7".into())),
            ("-1.5", JsonStr::NotStr("-1.5".into())),
            ("null", JsonStr::NotStr("null".into())),
            ("[1, [2]]", JsonStr::NotStr("an array".into())),
            (r#"{"a": {}}"#, JsonStr::NotStr("an object".into())),
        ];
        for (json, expected) in cases {
            let value: JsonStr<'_> = serde_json::from_str(json).unwrap();
            assert_eq!(value, expected, "{json}");
            if let JsonStr::Str(Cow::Borrowed(_)) = expected {
                assert!(matches!(value, JsonStr::Str(Cow::Borrowed(_))), "{json} was copied");
            }
        }
    }
}
