//! Reading JSON from the outside strictly: an object that names a key twice is refused (parsers
//! disagree on which one wins, so a reviewer and the server could read different documents), and
//! so is an integer that the audit log's canonical form (RFC 8785, numbers as IEEE doubles) could
//! not record exactly.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// The largest integer magnitude a double holds exactly: 2^53.
pub const MAX_EXACT_INTEGER: u64 = 1 << 53;

/// Parse `bytes` as one JSON value, refusing duplicate keys. The error says where.
pub fn parse_strict(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = Strict.deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// The path (`spec.budget`, `items[2]`) of the first number in `v` beyond ±2^53, if any: an
/// integer there cannot be told from its neighbours once written as a double, and a JSON number
/// that large (`18446744073709551616`) is read as a double already.
pub fn inexact_integer(v: &Value) -> Option<String> {
    fn walk(v: &Value, path: &mut String) -> bool {
        match v {
            Value::Number(n) => {
                let big = n
                    .as_u64()
                    .map(|u| u > MAX_EXACT_INTEGER)
                    .or_else(|| n.as_i64().map(|i| i.unsigned_abs() > MAX_EXACT_INTEGER))
                    .or_else(|| n.as_f64().map(|f| f.abs() > MAX_EXACT_INTEGER as f64));
                big.unwrap_or(false)
            }
            Value::Array(items) => items.iter().enumerate().any(|(i, item)| {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                let found = walk(item, path);
                if !found {
                    path.truncate(len);
                }
                found
            }),
            Value::Object(map) => map.iter().any(|(k, item)| {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                let found = walk(item, path);
                if !found {
                    path.truncate(len);
                }
                found
            }),
            _ => false,
        }
    }
    let mut path = String::new();
    walk(v, &mut path).then_some(path)
}

/// Builds a `Value`, refusing duplicate keys.
struct Strict;

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v).map(Value::Number).ok_or_else(|| E::custom("a number must be finite"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Strict)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format_args!(
                    "the key `{}` appears twice in one object",
                    shorten(&key, 64)
                )));
            }
            let value = map.next_value_seed(Strict)?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

/// At most `max` characters of `text` (then `...`): how an error or a record quotes what a client
/// sent, so that it never echoes a large value back or into the audit log.
pub fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        assert_eq!(
            parse_strict(br#"{"a": [1, {"b": 2}], "c": null}"#).unwrap(),
            json!({"a": [1, {"b": 2}], "c": null})
        );
        let e = parse_strict(br#"{"kind": "Graph", "kind": "Policy"}"#).unwrap_err();
        assert!(e.to_string().contains("`kind` appears twice"), "{e}");
        assert!(parse_strict(br#"{"spec": {"x": {"y": 1, "y": 2}}}"#).is_err());
        assert!(parse_strict(br#"{"a": 1} trailing"#).is_err());
    }

    #[test]
    fn integers_beyond_two_to_the_53_are_found() {
        assert_eq!(inexact_integer(&json!({"spec": {"n": 9007199254740992u64}})), None);
        assert_eq!(inexact_integer(&json!({"spec": {"n": -9007199254740992i64}})), None);
        assert_eq!(inexact_integer(&json!({"spec": {"n": 9007199254740993u64}})).as_deref(), Some("spec.n"));
        assert_eq!(inexact_integer(&json!({"a": [1, {"b": u64::MAX}]})).as_deref(), Some("a[1].b"));
        assert_eq!(inexact_integer(&json!({"a": 1.5})), None);
        assert_eq!(inexact_integer(&json!({"a": 1.5e300})).as_deref(), Some("a"));
        let two_to_the_64: Value = serde_json::from_str("{\"a\": 18446744073709551616}").unwrap();
        assert_eq!(inexact_integer(&two_to_the_64).as_deref(), Some("a"));
    }

    proptest::proptest! {
        #[test]
        fn strict_parsing_agrees_with_serde_json_on_documents_without_duplicates(
            keys in proptest::collection::btree_map("[a-z]{1,4}", proptest::num::i64::ANY, 0..8)
        ) {
            let doc = serde_json::to_vec(&keys).unwrap();
            proptest::prop_assert_eq!(parse_strict(&doc).unwrap(), serde_json::from_slice::<Value>(&doc).unwrap());
        }
    }
}
