//! The kinds' JSON Schemas (draft 2020-12, as admission validates with them) rewritten in the
//! dialect of OpenAPI 3.0, which is what kubectl, client generators and fuzzers read: `const`
//! becomes a one-value `enum`, a `null` alternative becomes `nullable`, a `$ref` with siblings
//! goes under `allOf`, and keywords OpenAPI 3.0 does not have (`if`/`then`, `$defs`, ...) are
//! left out. What is left out only loosens the document: the server still checks everything.

use serde_json::{Map, Value, json};

/// Rewrites `schema` into OpenAPI 3.0. `reference` maps a `$ref` as written (`#/$defs/Spec`) to
/// the reference the document uses, or `None` to drop it (the schema then accepts anything there).
pub fn convert(schema: &Value, reference: &dyn Fn(&str) -> Option<String>) -> Value {
    match schema {
        Value::Object(map) => convert_object(map, reference),
        // A boolean schema: `true` accepts anything, `false` nothing.
        Value::Bool(true) => json!({}),
        Value::Bool(false) => json!({"not": {}}),
        _ => json!({}),
    }
}

fn convert_object(map: &Map<String, Value>, reference: &dyn Fn(&str) -> Option<String>) -> Value {
    let mut out = Map::new();
    let mut nullable = false;
    for (key, value) in map {
        match key.as_str() {
            "type" => match value {
                Value::Array(types) => {
                    let named: Vec<&Value> = types.iter().filter(|t| t.as_str() != Some("null")).collect();
                    nullable |= named.len() < types.len();
                    // Several types at once cannot be said in OpenAPI 3.0: leave the type open.
                    if let [only] = named.as_slice() {
                        out.insert("type".into(), (*only).clone());
                    }
                }
                Value::String(t) if t == "null" => nullable = true,
                other => {
                    out.insert("type".into(), other.clone());
                }
            },
            "const" => {
                out.insert("enum".into(), json!([value]));
            }
            "properties" => {
                let properties: Map<String, Value> = value
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(name, s)| (name.clone(), convert(s, reference)))
                    .collect();
                out.insert("properties".into(), Value::Object(properties));
            }
            "items" if value.is_array() => {}
            "items" | "not" => {
                out.insert(key.clone(), convert(value, reference));
            }
            "additionalProperties" => {
                let converted = if value.is_boolean() { value.clone() } else { convert(value, reference) };
                out.insert(key.clone(), converted);
            }
            "allOf" | "anyOf" | "oneOf" => {
                let branches: Vec<&Value> = value.as_array().into_iter().flatten().collect();
                let is_null = |b: &&Value| b.get("type").and_then(Value::as_str) == Some("null");
                nullable |= key != "allOf" && branches.iter().any(is_null);
                let kept: Vec<Value> = branches
                    .into_iter()
                    .filter(|b| key == "allOf" || !is_null(b))
                    .map(|b| convert(b, reference))
                    .collect();
                // `if`/`then` leave empty branches behind; they say nothing.
                let kept: Vec<Value> =
                    kept.into_iter().filter(|b| b.as_object().is_some_and(|m| !m.is_empty())).collect();
                if !kept.is_empty() {
                    out.insert(key.clone(), Value::Array(kept));
                }
            }
            "exclusiveMinimum" | "exclusiveMaximum" if value.is_number() => {
                let bound = if key == "exclusiveMinimum" { "minimum" } else { "maximum" };
                out.insert(bound.into(), value.clone());
                out.insert(key.clone(), json!(true));
            }
            "$ref" => {
                if let Some(target) = value.as_str().and_then(reference) {
                    out.insert("$ref".into(), json!(target));
                }
            }
            // Not in OpenAPI 3.0 (or only annotations it spells differently).
            "$schema"
            | "$defs"
            | "definitions"
            | "$id"
            | "$anchor"
            | "$comment"
            | "examples"
            | "if"
            | "then"
            | "else"
            | "dependentRequired"
            | "dependentSchemas"
            | "unevaluatedProperties"
            | "unevaluatedItems"
            | "prefixItems"
            | "contains"
            | "minContains"
            | "maxContains"
            | "propertyNames"
            | "patternProperties"
            | "contentEncoding"
            | "contentMediaType" => {}
            _ => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    if nullable {
        out.insert("nullable".into(), json!(true));
    }
    integer_bounds(&mut out);
    let out = single_alternative(out);
    let out = enum_of_constants(out);
    ref_with_siblings(out)
}

/// The range an integer `format` stands for (a Rust `u32` field is `format: uint32`), written
/// out as `minimum` and `maximum`, which OpenAPI tools read where they may not know the format.
fn integer_bounds(out: &mut Map<String, Value>) {
    let (min, max): (i128, i128) = match out.get("format").and_then(Value::as_str) {
        Some("int8") => (i8::MIN.into(), i8::MAX.into()),
        Some("int16") => (i16::MIN.into(), i16::MAX.into()),
        Some("int32") => (i32::MIN.into(), i32::MAX.into()),
        Some("int64") => (i64::MIN.into(), i64::MAX.into()),
        Some("uint8") => (0, u8::MAX.into()),
        Some("uint16") => (0, u16::MAX.into()),
        Some("uint32") => (0, u32::MAX.into()),
        Some("uint64") | Some("uint") => (0, u64::MAX.into()),
        _ => return,
    };
    let number = |n: i128| -> Value {
        i64::try_from(n).map(Value::from).unwrap_or_else(|_| Value::from(u64::try_from(n).unwrap_or(u64::MAX)))
    };
    out.entry("minimum").or_insert_with(|| number(min));
    out.entry("maximum").or_insert_with(|| number(max));
}

/// `anyOf`/`oneOf` left with one alternative (once `null` is gone) is that alternative.
fn single_alternative(mut out: Map<String, Value>) -> Map<String, Value> {
    for key in ["anyOf", "oneOf"] {
        let Some(Value::Array(branches)) = out.get(key) else { continue };
        let [only] = branches.as_slice() else { continue };
        let only = only.clone();
        out.remove(key);
        match only {
            Value::Object(m) if m.contains_key("$ref") => {
                out.insert("allOf".into(), json!([m]));
            }
            Value::Object(m) => {
                for (k, v) in m {
                    out.entry(k).or_insert(v);
                }
            }
            _ => {}
        }
    }
    out
}

/// One alternative of a `oneOf` that is a single constant.
struct Constant {
    value: Value,
    description: Option<String>,
    type_: Option<Value>,
}

impl Constant {
    fn of(branch: &Value) -> Option<Constant> {
        let [value] = branch.get("enum")?.as_array()?.as_slice() else { return None };
        Some(Constant {
            value: value.clone(),
            description: branch.get("description").and_then(Value::as_str).map(str::to_string),
            type_: branch.get("type").cloned(),
        })
    }
}

/// `oneOf` whose every alternative is one constant (how a Rust enum of unit variants comes out)
/// is an `enum`; what each value means moves into the description.
fn enum_of_constants(mut out: Map<String, Value>) -> Map<String, Value> {
    for key in ["oneOf", "anyOf"] {
        let Some(Value::Array(branches)) = out.get(key) else { continue };
        let Some(constants) = branches.iter().map(Constant::of).collect::<Option<Vec<_>>>() else { continue };
        let types: Vec<&Value> = constants.iter().filter_map(|c| c.type_.as_ref()).collect();
        if let Some(first) = types.first()
            && types.iter().all(|t| t == first)
        {
            out.insert("type".into(), (*first).clone());
        }
        let explained: Vec<String> = constants
            .iter()
            .filter_map(|c| {
                let shown = c.value.as_str().map(str::to_string).unwrap_or_else(|| c.value.to_string());
                c.description.as_ref().map(|d| format!(" - `{shown}`: {d}"))
            })
            .collect();
        if !explained.is_empty() {
            let mut description = out.get("description").and_then(Value::as_str).unwrap_or_default().to_string();
            if !description.is_empty() {
                description.push_str("\n\n");
            }
            description.push_str("Possible values:\n");
            description.push_str(&explained.join("\n"));
            out.insert("description".into(), json!(description));
        }
        out.insert("enum".into(), Value::Array(constants.into_iter().map(|c| c.value).collect()));
        out.remove(key);
    }
    out
}

/// In OpenAPI 3.0 a `$ref` hides its siblings, so a reference that carries a description (or
/// `nullable`) is written `allOf: [{$ref}]` beside them, as Kubernetes writes its own.
fn ref_with_siblings(mut out: Map<String, Value>) -> Value {
    if out.len() > 1
        && let Some(target) = out.remove("$ref")
    {
        let mut all = vec![json!({"$ref": target})];
        if let Some(Value::Array(more)) = out.remove("allOf") {
            all.extend(more);
        }
        out.insert("allOf".into(), Value::Array(all));
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(r: &str) -> Option<String> {
        r.strip_prefix("#/$defs/").map(|n| format!("#/components/schemas/x.{n}"))
    }

    #[test]
    fn rewrites_what_openapi_3_0_spells_differently() {
        let schema = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {
                "kind": {"const": "Task"},
                "count": {"type": ["integer", "null"], "format": "uint32", "minimum": 0, "description": "n"},
                "phase": {"anyOf": [{"$ref": "#/$defs/Phase"}, {"type": "null"}], "description": "where"},
                "spec": {"$ref": "#/$defs/Spec", "description": "what"},
                "plain": {"$ref": "#/$defs/Spec"},
                "outside": {"$ref": "https://example.com/x.json"},
                "ratio": {"type": "number", "exclusiveMinimum": 0}
            },
            "allOf": [{"if": {"properties": {"type": {"const": "a"}}}, "then": {"required": ["a"]}}],
            "$defs": {"Phase": {}}
        });
        let out = convert(&schema, &local);
        assert_eq!(
            out,
            json!({
                "type": "object",
                "properties": {
                    "kind": {"enum": ["Task"]},
                    "count": {"type": "integer", "format": "uint32", "minimum": 0, "maximum": 4294967295u32,
                              "description": "n", "nullable": true},
                    "phase": {"allOf": [{"$ref": "#/components/schemas/x.Phase"}], "description": "where", "nullable": true},
                    "spec": {"allOf": [{"$ref": "#/components/schemas/x.Spec"}], "description": "what"},
                    "plain": {"$ref": "#/components/schemas/x.Spec"},
                    "outside": {},
                    "ratio": {"type": "number", "minimum": 0, "exclusiveMinimum": true}
                }
            })
        );
    }

    #[test]
    fn unit_enums_become_enums_that_explain_their_values() {
        let schema = json!({"description": "A phase.", "oneOf": [
            {"type": "string", "const": "Pending", "description": "Not started."},
            {"type": "string", "const": "Done", "description": "Finished."}
        ]});
        assert_eq!(
            convert(&schema, &local),
            json!({"type": "string", "enum": ["Pending", "Done"],
                   "description": "A phase.\n\nPossible values:\n - `Pending`: Not started.\n - `Done`: Finished."})
        );
    }
}
