//! Checking that bytes are already in RFC 8785 canonical form, in one pass and without building
//! values: no whitespace, object keys in strictly increasing UTF-16 order, strings escaped exactly
//! as canonical JSON escapes them, numbers in their shortest ECMAScript form. This is what lets
//! `verify_chain` run near the speed of hashing. It agrees with "parse, canonicalise, compare"
//! (see the differential property test below).

use std::cmp::Ordering;
use std::ops::Range;

/// Deepest nesting accepted (as deep as the JSON parser accepts).
const MAX_DEPTH: usize = 128;

/// One member of the top-level object: its raw key (between the quotes) and its value's span.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member<'a> {
    /// The key as written, without quotes (escapes left in place).
    pub key: &'a str,
    /// The whole member, `"key":value`, as a byte range of the input.
    pub span: Range<usize>,
    /// The value, as a byte range of the input.
    pub value: Range<usize>,
}

/// Why bytes are not canonical JSON (the byte offset where it was noticed, and what).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotCanonical {
    /// Byte offset.
    pub at: usize,
    /// What is wrong.
    pub what: &'static str,
}

/// If `text` is one JSON object in canonical form, its members in order.
pub fn object_members(text: &str) -> Result<Vec<Member<'_>>, NotCanonical> {
    let mut s = Scanner { b: text.as_bytes(), text, i: 0 };
    if s.peek() != Some(b'{') {
        return Err(s.err("not a JSON object"));
    }
    let members = s.object(0, true)?;
    if s.i != s.b.len() {
        return Err(s.err("trailing bytes after the object"));
    }
    Ok(members)
}

struct Scanner<'a> {
    b: &'a [u8],
    text: &'a str,
    i: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn err(&self, what: &'static str) -> NotCanonical {
        NotCanonical { at: self.i, what }
    }

    fn expect(&mut self, c: u8, what: &'static str) -> Result<(), NotCanonical> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.err(what))
        }
    }

    fn value(&mut self, depth: usize) -> Result<(), NotCanonical> {
        match self.peek() {
            Some(b'{') => self.object(depth + 1, false).map(|_| ()),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => self.string().map(|_| ()),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(self.err("expected a value (whitespace is not canonical)")),
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), NotCanonical> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(self.err("not a JSON literal"))
        }
    }

    /// An object; its members are returned only when `collect` (the top level).
    fn object(&mut self, depth: usize, collect: bool) -> Result<Vec<Member<'a>>, NotCanonical> {
        if depth > MAX_DEPTH {
            return Err(self.err("nested too deeply"));
        }
        self.expect(b'{', "expected `{`")?;
        let mut members = Vec::new();
        let mut previous: Option<&str> = None;
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(members);
        }
        loop {
            let start = self.i;
            let key = self.string()?;
            if let Some(p) = previous
                && key_order(p, key) != Ordering::Less
            {
                return Err(NotCanonical { at: start, what: "object keys are not in strictly increasing order" });
            }
            previous = Some(key);
            self.expect(b':', "expected `:` (whitespace is not canonical)")?;
            let value_start = self.i;
            self.value(depth)?;
            if collect {
                members.push(Member { key, span: start..self.i, value: value_start..self.i });
            }
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(members);
                }
                _ => return Err(self.err("expected `,` or `}` (whitespace is not canonical)")),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<(), NotCanonical> {
        if depth > MAX_DEPTH {
            return Err(self.err("nested too deeply"));
        }
        self.expect(b'[', "expected `[`")?;
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(());
        }
        loop {
            self.value(depth)?;
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return Err(self.err("expected `,` or `]` (whitespace is not canonical)")),
            }
        }
    }

    /// A string with only the escapes canonical JSON uses; returns its raw contents.
    fn string(&mut self) -> Result<&'a str, NotCanonical> {
        self.expect(b'"', "expected a string")?;
        let start = self.i;
        loop {
            match self.peek() {
                None => return Err(self.err("unterminated string")),
                Some(b'"') => {
                    let raw = &self.text[start..self.i];
                    self.i += 1;
                    return Ok(raw);
                }
                Some(0..=0x1f) => return Err(self.err("unescaped control character in a string")),
                Some(b'\\') => {
                    self.i += 1;
                    match self.peek() {
                        Some(b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't') => self.i += 1,
                        Some(b'u') => {
                            // Only control characters without a short form are written as \u00xx.
                            let hex = self.b.get(self.i + 1..self.i + 5).ok_or_else(|| self.err("short \\u escape"))?;
                            let lower_hex = |c: &u8| c.is_ascii_digit() || (b'a'..=b'f').contains(c);
                            let code = std::str::from_utf8(hex).ok().and_then(|h| u32::from_str_radix(h, 16).ok());
                            match code {
                                Some(c)
                                    if hex.iter().all(lower_hex)
                                        && c < 0x20
                                        && !matches!(c, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d) =>
                                {
                                    self.i += 5
                                }
                                _ => return Err(self.err("a \\u escape canonical JSON does not use")),
                            }
                        }
                        _ => return Err(self.err("an escape canonical JSON does not use")),
                    }
                }
                Some(_) => self.i += 1,
            }
        }
    }

    /// A number in the shape ECMAScript prints it. Short integers are checked here; anything else
    /// is compared with the canonical form of its value.
    fn number(&mut self) -> Result<(), NotCanonical> {
        let start = self.i;
        while matches!(self.peek(), Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')) {
            self.i += 1;
        }
        let token = &self.text[start..self.i];
        let digits = token.strip_prefix('-').unwrap_or(token);
        let short_integer = !digits.is_empty()
            && digits.len() <= 15
            && digits.bytes().all(|c| c.is_ascii_digit())
            && (digits == "0" || !digits.starts_with('0'))
            && token != "-0";
        if short_integer {
            return Ok(());
        }
        let canonical = serde_json::from_str::<serde_json::Number>(token)
            .ok()
            .and_then(|n| crate::canonical::to_vec(&n).ok())
            .is_some_and(|c| c == token.as_bytes());
        if canonical { Ok(()) } else { Err(NotCanonical { at: start, what: "a number not in canonical form" }) }
    }
}

/// Compare two raw (escaped) keys by the UTF-16 code units of their decoded text.
fn key_order(a: &str, b: &str) -> Ordering {
    if a.is_ascii() && b.is_ascii() && !a.contains('\\') && !b.contains('\\') {
        return a.cmp(b);
    }
    let decode = |raw: &str| -> Vec<u16> {
        let text: String = serde_json::from_str(&format!("\"{raw}\"")).unwrap_or_default();
        text.encode_utf16().collect()
    };
    decode(a).cmp(&decode(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    fn reference(text: &str) -> bool {
        serde_json::from_str::<Value>(text)
            .ok()
            .filter(Value::is_object)
            .and_then(|v| crate::canonical::to_vec(&v).ok())
            .is_some_and(|c| c == text.as_bytes())
    }

    #[test]
    fn accepts_canonical_and_names_what_is_not() {
        let ok = r#"{"a":[1,-2,0.5,1e+30,true,null,{}],"b":"\u001f\n\"\\","c":{"":0,"x":"é😀"}}"#;
        assert!(reference(ok));
        let members = object_members(ok).unwrap();
        assert_eq!(members.iter().map(|m| m.key).collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(&ok[members[1].value.clone()], r#""\u001f\n\"\\""#);
        for (bad, what) in [
            (r#"{"b":1,"a":2}"#, "increasing order"),
            (r#"{"a":1,"a":2}"#, "increasing order"),
            (r#"{"a": 1}"#, "whitespace"),
            (r#"{"a":"\u0041"}"#, "\\u escape"),
            (r#"{"a":"\u001F"}"#, "\\u escape"),
            (r#"{"a":"\/"}"#, "escape"),
            (r#"{"a":1.0}"#, "number"),
            (r#"{"a":-0}"#, "number"),
            (r#"{"a":01}"#, "number"),
            (r#"{"a":1E3}"#, "number"),
            ("[1]", "not a JSON object"),
            (r#"{"a":1}x"#, "trailing"),
            (r#"{"a":tru}"#, "literal"),
        ] {
            let e = object_members(bad).unwrap_err();
            assert!(e.what.contains(what), "{bad}: {e:?}");
            assert!(!reference(bad), "{bad}");
        }
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(200), "]".repeat(200));
        assert!(object_members(&deep).is_err());
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|i| json!(i)),
            (-1e6f64..1e6).prop_map(|f| json!(f)),
            "[a-z\u{1}\u{1f}\u{7f}\u{e9}\u{fb33}\u{1f600}\"\\\\/]{0,5}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-zA-Z\u{e9}\u{fb33}\u{1f600}\\n]{0,3}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// The scanner agrees with "parse, canonicalise, compare" on canonical text and on every
        /// one-byte edit of it.
        #[test]
        fn agrees_with_the_reference(v in prop::collection::btree_map("[a-z]{1,3}", json_value(), 0..5), pick in any::<prop::sample::Index>(), byte in prop::sample::select(b" ,:{}[]\"\\0123456789.eE-+nu".to_vec())) {
            let object = Value::Object(v.into_iter().collect());
            let text = String::from_utf8(crate::canonical::to_vec(&object).unwrap()).unwrap();
            prop_assert!(object_members(&text).is_ok(), "{}", text);
            let mut bytes = text.clone().into_bytes();
            let i = pick.index(bytes.len());
            bytes.insert(i, byte);
            if let Ok(edited) = String::from_utf8(bytes) {
                prop_assert_eq!(object_members(&edited).is_ok(), reference(&edited), "{}", edited);
            }
        }
    }
}
