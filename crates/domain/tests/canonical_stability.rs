//! Canonical JSON over the whole range of JSON numbers and strings, which the unit properties
//! beside `canonical.rs` and `canonical_form.rs` sample only in part (small integers, floats
//! near zero): canonicalising twice changes nothing, and the one-pass check accepts exactly the
//! text that canonicalising would produce, for any number spelling.

use proptest::prelude::*;
use r5e_domain::canonical::to_vec;
use r5e_domain::canonical_form::object_members;
use serde_json::{Value, json};

/// Numbers everywhere in their range: past 2^53, the extremes of i64 and u64, subnormal and
/// huge doubles, and the exponents where ECMAScript switches notation.
fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        (-400i32..400, 1u64..1_000_000).prop_map(|(e, m)| json!(m as f64 * 10f64.powi(e))),
        prop::sample::select(vec![
            json!(9_007_199_254_740_992u64),
            json!(9_007_199_254_740_993u64),
            json!(u64::MAX),
            json!(i64::MIN),
            json!(1e21),
            json!(1e-7),
            json!(5e-324),
            json!(-0.0),
        ]),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        "\\PC{0,8}".prop_map(Value::String),
        "[\u{0}-\u{1f}\u{7f}\u{2028}\u{fb33}\u{1f600}\"\\\\/]{0,6}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map("\\PC{0,4}", inner, 0..5).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// "Parse, canonicalise, compare": what the one-pass check must agree with.
fn canonical(text: &str) -> bool {
    serde_json::from_str::<Value>(text)
        .ok()
        .filter(Value::is_object)
        .and_then(|v| to_vec(&v).ok())
        .is_some_and(|c| c == text.as_bytes())
}

/// A number as someone might write it: signs, leading zeros, fractions, exponents.
fn number_text() -> impl Strategy<Value = String> {
    "-?(0|[1-9][0-9]{0,24}|0[0-9]{1,3})(\\.[0-9]{1,20})?([eE][+-]?[0-9]{1,3})?"
}

/// `PROPTEST_CASES`, or 512.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(512)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// Canonical bytes canonicalise to themselves, whatever the numbers and strings in them.
    #[test]
    fn canonicalising_twice_changes_nothing(v in json_value()) {
        let once = to_vec(&v).unwrap();
        let reparsed: Value = serde_json::from_slice(&once).unwrap();
        prop_assert_eq!(to_vec(&reparsed).unwrap(), once);
    }

    /// The one-pass check accepts canonical bytes, and agrees with "parse, canonicalise, compare"
    /// on the ordinary and the pretty rendering of the same object.
    #[test]
    fn the_one_pass_check_agrees_on_any_object(v in prop::collection::btree_map("\\PC{0,4}", json_value(), 0..5)) {
        let object = Value::Object(v.into_iter().collect());
        let text = String::from_utf8(to_vec(&object).unwrap()).unwrap();
        prop_assert!(object_members(&text).is_ok(), "{}", text);
        for other in [serde_json::to_string(&object).unwrap(), serde_json::to_string_pretty(&object).unwrap()] {
            prop_assert_eq!(object_members(&other).is_ok(), canonical(&other), "{}", other);
        }
    }

    /// Any spelling of a number: the check accepts it exactly when it is the canonical one.
    #[test]
    fn the_one_pass_check_agrees_on_any_number(token in number_text()) {
        let text = format!("{{\"a\":{token},\"b\":[{token}]}}");
        prop_assert_eq!(object_members(&text).is_ok(), canonical(&text), "{}", text);
    }
}
