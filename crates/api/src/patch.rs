//! PATCH bodies: JSON merge patch (RFC 7386) and JSON patch (RFC 6902), applied to the current
//! object before it goes through admission like any other update.
//!
//! A JSON patch is bounded twice: at most [`MAX_OPERATIONS`] operations, and at most `max_bytes`
//! of JSON written into the document in all (the document's own size plus every value an `add`,
//! `replace` or `copy` puts in), so that a short patch cannot grow a document without end.

use domain::json::shorten;
use serde_json::{Map, Value};

/// The most operations one JSON patch may have.
pub const MAX_OPERATIONS: usize = 1000;

/// Why a patch was not applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatchError {
    /// The patch is malformed, does not apply, or a `test` failed.
    Invalid(String),
    /// The patch is over a limit.
    TooLarge(String),
}

impl From<String> for PatchError {
    fn from(s: String) -> Self {
        PatchError::Invalid(s)
    }
}

impl From<&str> for PatchError {
    fn from(s: &str) -> Self {
        PatchError::Invalid(s.to_string())
    }
}

fn json_len(v: &Value) -> usize {
    serde_json::to_vec(v).map_or(usize::MAX, |b| b.len())
}

/// Apply an RFC 7386 merge patch: objects merge key by key, `null` removes, anything else
/// replaces.
pub fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (target, Value::Object(p)) => {
            let mut fresh = Value::Object(Map::new());
            merge(&mut fresh, &Value::Object(p.clone()));
            *target = fresh;
        }
        (target, patch) => *target = patch.clone(),
    }
}

/// Apply an RFC 6902 patch (`add`, `remove`, `replace`, `move`, `copy`, `test`), all or nothing,
/// writing at most `max_bytes` of JSON into the document in all.
pub fn json_patch(target: &Value, ops: &Value, max_bytes: usize) -> Result<Value, PatchError> {
    let ops = ops.as_array().ok_or("a JSON patch is an array of operations")?;
    if ops.len() > MAX_OPERATIONS {
        return Err(PatchError::TooLarge(format!(
            "a JSON patch may have at most {MAX_OPERATIONS} operations (this one has {})",
            ops.len()
        )));
    }
    let mut doc = target.clone();
    let mut written = json_len(&doc);
    let mut grow = |i: usize, v: &Value| -> Result<(), PatchError> {
        written = written.saturating_add(json_len(v));
        if written > max_bytes {
            return Err(PatchError::TooLarge(format!(
                "operation {i} would make the patch write more than {max_bytes} bytes into the object"
            )));
        }
        Ok(())
    };
    for (i, op) in ops.iter().enumerate() {
        let field = |name: &str| op.get(name).and_then(Value::as_str).ok_or(format!("operation {i} has no `{name}`"));
        let path = field("path")?;
        let value = || op.get("value").cloned().ok_or(format!("operation {i} has no `value`"));
        match field("op")? {
            "add" => {
                let v = value()?;
                grow(i, &v)?;
                add(&mut doc, path, v)?
            }
            "remove" => {
                remove(&mut doc, path)?;
            }
            "replace" => {
                let v = value()?;
                grow(i, &v)?;
                remove(&mut doc, path)?;
                add(&mut doc, path, v)?;
            }
            "move" => {
                let v = remove(&mut doc, field("from")?)?;
                add(&mut doc, path, v)?;
            }
            "copy" => {
                let from = doc.pointer(field("from")?).ok_or(format!("operation {i}: `from` does not exist"))?;
                grow(i, from)?;
                let v = from.clone();
                add(&mut doc, path, v)?;
            }
            "test" => {
                if doc.pointer(path) != Some(&value()?) {
                    return Err(format!("operation {i}: test failed at `{}`", shorten(path, 64)).into());
                }
            }
            other => return Err(format!("operation {i}: unknown op `{}`", shorten(other, 64)).into()),
        }
    }
    Ok(doc)
}

fn split(path: &str) -> Result<(String, String), String> {
    let (parent, last) = path.rsplit_once('/').ok_or(format!("`{path}` is not a JSON pointer"))?;
    Ok((parent.to_string(), last.replace("~1", "/").replace("~0", "~")))
}

fn add(doc: &mut Value, path: &str, value: Value) -> Result<(), String> {
    if path.is_empty() {
        *doc = value;
        return Ok(());
    }
    let (parent, key) = split(path)?;
    match doc.pointer_mut(&parent).ok_or(format!("`{parent}` does not exist"))? {
        Value::Object(m) => {
            m.insert(key, value);
            Ok(())
        }
        Value::Array(a) if key == "-" => {
            a.push(value);
            Ok(())
        }
        Value::Array(a) => {
            let i: usize = key.parse().map_err(|_| format!("`{key}` is not an array index"))?;
            if i > a.len() {
                return Err(format!("index {i} is past the end of `{parent}`"));
            }
            a.insert(i, value);
            Ok(())
        }
        _ => Err(format!("`{parent}` is not an object or array")),
    }
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, key) = split(path)?;
    match doc.pointer_mut(&parent).ok_or(format!("`{parent}` does not exist"))? {
        Value::Object(m) => m.remove(&key).ok_or(format!("`{path}` does not exist")),
        Value::Array(a) => {
            let i: usize = key.parse().map_err(|_| format!("`{key}` is not an array index"))?;
            if i >= a.len() {
                return Err(format!("`{path}` does not exist"));
            }
            Ok(a.remove(i))
        }
        _ => Err(format!("`{parent}` is not an object or array")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc7386() {
        let mut doc = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge(&mut doc, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(doc, json!({"a": "z", "c": {"d": "e"}}));
        let mut doc = json!({"metadata": {"labels": {"x": "1"}}});
        merge(&mut doc, &json!({"metadata": {"labels": {"y": "2"}}}));
        assert_eq!(doc, json!({"metadata": {"labels": {"x": "1", "y": "2"}}}));
        let mut doc = json!({"a": [1, 2]});
        merge(&mut doc, &json!({"a": [3]}));
        assert_eq!(doc, json!({"a": [3]}));
    }

    #[test]
    fn json_patch_follows_rfc6902() {
        let doc = json!({"metadata": {"labels": {"a/b": "1"}}, "spec": {"list": [1, 2]}});
        let out = json_patch(
            &doc,
            &json!([
                {"op": "add", "path": "/metadata/labels/team", "value": "docs"},
                {"op": "remove", "path": "/metadata/labels/a~1b"},
                {"op": "replace", "path": "/spec/list/0", "value": 9},
                {"op": "add", "path": "/spec/list/-", "value": 3},
                {"op": "copy", "from": "/spec/list", "path": "/spec/copy"},
                {"op": "test", "path": "/spec/copy/2", "value": 3}
            ]),
            1 << 20,
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"metadata": {"labels": {"team": "docs"}}, "spec": {"list": [9, 2, 3], "copy": [9, 2, 3]}})
        );
        assert!(matches!(json_patch(&doc, &json!([{"op": "test", "path": "/spec/list/0", "value": 5}]), 1 << 20),
                     Err(PatchError::Invalid(m)) if m.contains("test failed")));
        assert!(json_patch(&doc, &json!([{"op": "remove", "path": "/nope/x"}]), 1 << 20).is_err());
        assert!(json_patch(&doc, &json!({"op": "add"}), 1 << 20).is_err());
    }

    #[test]
    fn a_doubling_patch_stops_at_the_byte_limit() {
        let doc = json!({"spec": {"content": "x".repeat(1000)}});
        let ops: Vec<Value> =
            (0..30).map(|i| json!({"op": "copy", "from": "/spec", "path": format!("/spec/a{i}")})).collect();
        match json_patch(&doc, &Value::Array(ops), 1 << 20) {
            Err(PatchError::TooLarge(m)) => assert!(m.contains("operation 10"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn operations_are_counted_at_and_just_past_the_limit() {
        let doc = json!({"a": 1});
        let test = json!({"op": "test", "path": "/a", "value": 1});
        assert!(json_patch(&doc, &Value::Array(vec![test.clone(); MAX_OPERATIONS]), 1 << 20).is_ok());
        assert!(matches!(
            json_patch(&doc, &Value::Array(vec![test; MAX_OPERATIONS + 1]), 1 << 20),
            Err(PatchError::TooLarge(_))
        ));
    }
}
