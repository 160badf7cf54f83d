//! RFC 8785 (JSON Canonicalization Scheme) bytes, the only form r5e ever hashes.

use serde::Serialize;

use crate::digest::Digest;

/// The RFC 8785 canonical bytes of `value`.
///
/// Fails only for values JSON cannot express (non-finite floats, maps with non-string keys).
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    serde_jcs::to_vec(value)
}

/// The digest of the canonical bytes of `value`.
pub fn digest<T: Serialize + ?Sized>(value: &T) -> Result<Digest, serde_json::Error> {
    Ok(Digest::of(&to_vec(value)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    /// The example of RFC 8785 section 3.2.2, byte for byte.
    #[test]
    fn rfc8785_example() {
        let input = r#"{
          "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
          "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
          "literals": [null, true, false]
        }"#;
        let value: Value = serde_json::from_str(input).unwrap();
        let expected = "{\"literals\":[null,true,false],\"numbers\":[333333333.3333333,1e+30,4.5,0.002,1e-27],\"string\":\"\u{20ac}$\\u000f\\nA'B\\\"\\\\\\\\\\\"/\"}";
        assert_eq!(String::from_utf8(to_vec(&value).unwrap()).unwrap(), expected);
    }

    /// Keys sort by UTF-16 code units: U+1F600 (a surrogate pair) sorts before U+FB33.
    #[test]
    fn keys_sort_by_utf16_code_units() {
        let value = json!({"\u{fb33}": 1, "\u{1f600}": 2, "\r": 3, "1": 4, "\u{80}": 5, "\u{f6}": 6, "\u{20ac}": 7});
        let out = String::from_utf8(to_vec(&value).unwrap()).unwrap();
        let order: Vec<usize> = ["\\r", "\"1\"", "\u{80}", "\u{f6}", "\u{20ac}", "\u{1f600}", "\u{fb33}"]
            .iter()
            .map(|k| out.find(k).unwrap())
            .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{out}");
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i32>().prop_map(|i| json!(i)),
            "[a-z\u{e9}\u{1f600}\"\\\\ ]{0,6}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-z\u{1f600}]{0,3}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Canonical bytes are a fixed point: parsing and re-canonicalising changes nothing, so the
        /// hash does not depend on key order or whitespace in the input.
        #[test]
        fn canonical_form_is_a_fixed_point(v in json_value()) {
            let bytes = to_vec(&v).unwrap();
            let reparsed: Value = serde_json::from_slice(&bytes).unwrap();
            prop_assert_eq!(&reparsed, &v);
            prop_assert_eq!(to_vec(&reparsed).unwrap(), bytes.clone());
            let pretty = serde_json::to_string_pretty(&v).unwrap();
            let from_pretty: Value = serde_json::from_str(&pretty).unwrap();
            prop_assert_eq!(to_vec(&from_pretty).unwrap(), bytes);
        }
    }
}
