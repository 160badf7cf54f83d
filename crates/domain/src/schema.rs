//! Validation of a resource against its kind: the kind's JSON Schema plus the metadata rules
//! (names, namespaces, labels) every resource follows, with each problem reported as a dotted
//! field path (`spec.steps[0].name`) and a message that says what is wrong.

use std::fmt;
use std::sync::OnceLock;

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::{ValidationError, Validator};
use serde::Serialize;
use serde_json::Value;

use crate::json::shorten;
use crate::kinds::{self, KindInfo};
use crate::names;

/// One problem with one field of a resource.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct FieldError {
    /// The field, as a dotted path with list indexes in brackets (`spec.steps[0].name`); empty
    /// for the resource as a whole.
    pub path: String,
    /// What is wrong, in lower case.
    pub message: String,
}

/// The longest path or message a [`FieldError`] keeps, in characters: errors quote what a client
/// sent, and must not echo a large value back to it or into the audit log.
pub const MAX_ERROR_TEXT: usize = 256;

impl FieldError {
    /// An error at `path`, each part cut to [`MAX_ERROR_TEXT`] characters.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        let (path, message) = (path.into(), message.into());
        FieldError { path: shorten(&path, MAX_ERROR_TEXT), message: shorten(&message, MAX_ERROR_TEXT) }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() { f.write_str(&self.message) } else { write!(f, "{}: {}", self.path, self.message) }
    }
}

/// Validates `resource` (a whole resource as JSON) as a resource of the built-in kind `info`:
/// its JSON Schema, then its name, namespace (required for namespaced kinds, forbidden for
/// cluster-scoped ones), label keys and values and annotation keys.
///
/// The compiled schema of each built-in kind is cached for the life of the process.
pub fn validate(info: &KindInfo, resource: &Value) -> Result<(), Vec<FieldError>> {
    let mut errors = schema_errors(info, resource);
    errors.extend(check_metadata(resource, info.namespaced));
    finish(errors)
}

/// Validates `resource` against `schema` alone (a JSON Schema; used for custom kinds, whose
/// [`kinds::CustomKind::validate`] adds the metadata rules). A schema that does not compile is
/// reported as an error at the empty path.
pub fn validate_with_schema(schema: &Value, resource: &Value) -> Result<(), Vec<FieldError>> {
    match compile(schema) {
        Ok(validator) => finish(errors_of(&validator, resource)),
        Err(e) => Err(vec![FieldError::new("", format!("the schema is not valid: {e}"))]),
    }
}

/// Compiles a JSON Schema the way every schema is compiled here: formats (`date-time`, `uri`,
/// ...) are asserted, not merely annotations, and unknown formats are ignored.
pub fn compile(schema: &Value) -> Result<Validator, String> {
    let mut schema = schema.clone();
    bound_integer_formats(&mut schema);
    jsonschema::options().should_validate_formats(true).build(&schema).map_err(|e| e.to_string())
}

/// JSON Schema treats `format: uint32` (what the Rust types' schemas say) as a note; make the
/// range it names a rule, so that a value the type cannot hold is refused at admission rather
/// than stored.
fn bound_integer_formats(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            let range = match map.get("format").and_then(Value::as_str) {
                Some("uint8") => Some((0i64, i64::from(u8::MAX))),
                Some("uint16") => Some((0, i64::from(u16::MAX))),
                Some("uint32") => Some((0, i64::from(u32::MAX))),
                Some("int32") => Some((i64::from(i32::MIN), i64::from(i32::MAX))),
                _ => None,
            };
            if let Some((min, max)) = range {
                map.entry("minimum").or_insert(Value::from(min));
                map.entry("maximum").or_insert(Value::from(max));
            }
            map.values_mut().for_each(bound_integer_formats);
        }
        Value::Array(items) => items.iter_mut().for_each(bound_integer_formats),
        _ => {}
    }
}

/// The metadata rules every resource follows, whatever its kind. Only fields that are present
/// and of the right type are checked; their absence or type is the schema's to report.
pub fn check_metadata(resource: &Value, namespaced: bool) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let Some(meta) = resource.get("metadata").and_then(Value::as_object) else { return errors };
    if let Some(name) = meta.get("name").and_then(Value::as_str)
        && let Err(e) = names::check_name(name)
    {
        errors.push(FieldError::new("metadata.name", e));
    }
    match (namespaced, meta.get("namespace").filter(|v| !v.is_null())) {
        (true, None) => errors
            .push(FieldError::new("metadata.namespace", "is required: resources of this kind live in a namespace")),
        (true, Some(Value::String(ns))) if ns.is_empty() => {
            errors.push(FieldError::new("metadata.namespace", "must not be empty"))
        }
        (true, Some(Value::String(ns))) => {
            if let Err(e) = names::check_namespace(ns) {
                errors.push(FieldError::new("metadata.namespace", e));
            }
        }
        (false, Some(_)) => errors
            .push(FieldError::new("metadata.namespace", "must not be set: resources of this kind are cluster-scoped")),
        _ => {}
    }
    if let Some(labels) = meta.get("labels").and_then(Value::as_object) {
        for (key, value) in labels {
            let path = format!("metadata.labels.{key}");
            if let Err(e) = names::check_label_key(key) {
                errors.push(FieldError::new(&path, e));
            }
            if let Some(Err(e)) = value.as_str().map(names::check_label_value) {
                errors.push(FieldError::new(&path, e));
            }
        }
    }
    if let Some(annotations) = meta.get("annotations").and_then(Value::as_object) {
        for key in annotations.keys() {
            if let Err(e) = names::check_label_key(key) {
                errors.push(FieldError::new(
                    format!("metadata.annotations.{key}"),
                    e.replace("label key", "annotation key"),
                ));
            }
        }
    }
    errors
}

/// The most errors one report lists; past that, one more says how many were left out.
pub const MAX_ERRORS: usize = 32;

fn finish(mut errors: Vec<FieldError>) -> Result<(), Vec<FieldError>> {
    // Sorted by path, so that the same input always gets the same report.
    errors.sort();
    errors.dedup();
    if errors.len() > MAX_ERRORS {
        let more = errors.len() - MAX_ERRORS;
        errors.truncate(MAX_ERRORS);
        errors.push(FieldError::new("", format!("and {more} more errors")));
    }
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}

/// The schema errors of `resource` as a resource of `info`. The compiled schema of each
/// registry entry is cached; any other `KindInfo` is compiled on each call.
fn schema_errors(info: &KindInfo, resource: &Value) -> Vec<FieldError> {
    static CACHE: [OnceLock<Result<Validator, String>>; kinds::BUILTIN_COUNT] =
        [const { OnceLock::new() }; kinds::BUILTIN_COUNT];
    let compile =
        || compile(&(info.schema)()).map_err(|e| format!("the schema of {} does not compile: {e}", info.kind));
    let cached;
    let fresh;
    let validator = match kinds::builtin().iter().position(|k| std::ptr::eq(k, info)) {
        Some(i) => {
            cached = CACHE[i].get_or_init(compile);
            cached.as_ref()
        }
        None => {
            fresh = compile();
            fresh.as_ref()
        }
    };
    match validator {
        Ok(validator) => errors_of(validator, resource),
        Err(e) => vec![FieldError::new("", e.clone())],
    }
}

fn errors_of(validator: &Validator, instance: &Value) -> Vec<FieldError> {
    let mut out = Vec::new();
    for error in validator.iter_errors(instance) {
        convert(&error, instance, &mut out);
    }
    out
}

/// Turns one schema error into field errors, naming the offending field rather than its parent
/// where the error is about a field (unknown or missing).
fn convert(error: &ValidationError<'_>, root: &Value, out: &mut Vec<FieldError>) {
    let pointer = error.instance_path().as_str();
    let path = dotted(pointer, root);
    let here = root.pointer(pointer).unwrap_or(&Value::Null);
    let here_text = quote(here);
    match error.kind() {
        ValidationErrorKind::AdditionalProperties { unexpected }
        | ValidationErrorKind::UnevaluatedProperties { unexpected } => {
            for field in unexpected {
                out.push(FieldError::new(join(&path, field), "unknown field"));
            }
        }
        ValidationErrorKind::Required { property } => {
            let field = property.as_str().map_or_else(|| property.to_string(), str::to_string);
            out.push(FieldError::new(join(&path, &field), "is required"));
        }
        ValidationErrorKind::Type { kind } => {
            out.push(FieldError::new(path, format!("must be {} (is {})", types_text(kind), type_of(here))));
        }
        ValidationErrorKind::Constant { expected_value } => {
            out.push(FieldError::new(path, format!("must be {expected_value} (is {here_text})")));
        }
        ValidationErrorKind::Enum { options } => {
            out.push(FieldError::new(path, format!("must be one of {} (is {here_text})", list(options))));
        }
        ValidationErrorKind::Pattern { pattern } => {
            out.push(FieldError::new(path, format!("must match the pattern `{pattern}` (is {here_text})")));
        }
        ValidationErrorKind::Format { format } => {
            out.push(FieldError::new(path, format!("must be a valid {format} (is {here_text})")));
        }
        ValidationErrorKind::Minimum { limit } => {
            out.push(FieldError::new(path, format!("must be at least {limit} (is {here_text})")));
        }
        ValidationErrorKind::Maximum { limit } => {
            out.push(FieldError::new(path, format!("must be at most {limit} (is {here_text})")));
        }
        ValidationErrorKind::MinItems { limit } => {
            out.push(FieldError::new(path, format!("must have at least {limit} item{}", plural(*limit))));
        }
        ValidationErrorKind::MaxItems { limit } => {
            out.push(FieldError::new(path, format!("must have at most {limit} item{}", plural(*limit))));
        }
        ValidationErrorKind::MinLength { limit } => {
            out.push(FieldError::new(path, format!("must be at least {limit} character{} long", plural(*limit))));
        }
        ValidationErrorKind::MaxLength { limit } => {
            out.push(FieldError::new(path, format!("must be at most {limit} character{} long", plural(*limit))));
        }
        ValidationErrorKind::AnyOf { context } | ValidationErrorKind::OneOfNotValid { context } => {
            alternatives(context, pointer, &path, here, root, out);
        }
        _ => out.push(FieldError::new(path, lower_first(&error.to_string()))),
    }
}

/// Reports the failure of `anyOf`/`oneOf` by the alternative that came closest, or as a list
/// of the accepted values or types when every alternative failed right at this field.
fn alternatives(
    context: &[Vec<ValidationError<'static>>],
    pointer: &str,
    path: &str,
    here: &Value,
    root: &Value,
    out: &mut Vec<FieldError>,
) {
    let at_here = |e: &ValidationError<'_>| e.instance_path().as_str() == pointer;
    let shallow = |e: &ValidationError<'_>| {
        at_here(e)
            && matches!(
                e.kind(),
                ValidationErrorKind::Type { .. }
                    | ValidationErrorKind::Constant { .. }
                    | ValidationErrorKind::Enum { .. }
            )
    };
    if context.iter().all(|branch| branch.iter().all(shallow)) {
        let mut accepted = Vec::new();
        let mut types = Vec::new();
        for e in context.iter().flatten() {
            match e.kind() {
                ValidationErrorKind::Constant { expected_value } => accepted.push(expected_value.to_string()),
                ValidationErrorKind::Enum { options } => {
                    accepted.extend(options.as_array().into_iter().flatten().map(Value::to_string))
                }
                ValidationErrorKind::Type { kind } => types.push(types_text(kind)),
                _ => {}
            }
        }
        let message = if accepted.is_empty() {
            types.dedup();
            format!("must be {} (is {})", types.join(" or "), type_of(here))
        } else {
            accepted.dedup();
            format!("must be one of {} (is {})", accepted.join(", "), quote(here))
        };
        out.push(FieldError::new(path, message));
        return;
    }
    // The alternative whose errors reach deepest into the value is the one the author meant.
    let depth = |branch: &Vec<ValidationError<'static>>| {
        let deepest = branch.iter().map(|e| e.instance_path().as_str().matches('/').count()).max();
        (deepest.unwrap_or(0), usize::MAX - branch.len())
    };
    let closest = context.iter().filter(|branch| !branch.iter().all(shallow)).max_by_key(|branch| depth(branch));
    for e in closest.into_iter().flatten() {
        convert(e, root, out);
    }
}

/// A JSON pointer as a dotted path: object members joined by `.`, array indexes as `[i]`.
fn dotted(pointer: &str, root: &Value) -> String {
    let mut path = String::new();
    let mut current = Some(root);
    for raw in pointer.split('/').skip(1) {
        let segment = raw.replace("~1", "/").replace("~0", "~");
        match current {
            Some(Value::Array(items)) if segment.parse::<usize>().is_ok() => {
                let index: usize = segment.parse().unwrap_or_default();
                path.push_str(&format!("[{index}]"));
                current = items.get(index);
            }
            _ => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(&segment);
                current = current.and_then(|v| v.get(&segment));
            }
        }
    }
    path
}

/// A value as an error message quotes it: at most 64 characters of its JSON, so that an error
/// never echoes a large value back (or into the audit log).
fn quote(v: &Value) -> String {
    shorten(&v.to_string(), 64)
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() { field.to_string() } else { format!("{path}.{field}") }
}

fn types_text(kind: &TypeKind) -> String {
    match kind {
        TypeKind::Single(t) => a_type(&t.to_string()),
        TypeKind::Multiple(set) => {
            // `null` reads best last: "an integer or null".
            let (nulls, others): (Vec<_>, Vec<_>) = set.iter().map(|t| t.to_string()).partition(|t| t == "null");
            others.iter().chain(&nulls).map(|t| a_type(t)).collect::<Vec<_>>().join(" or ")
        }
    }
}

fn a_type(name: &str) -> String {
    match name {
        "null" => "null".into(),
        "array" | "object" | "integer" => format!("an {name}"),
        other => format!("a {other}"),
    }
}

fn type_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn list(options: &Value) -> String {
    match options.as_array() {
        Some(items) => items.iter().map(Value::to_string).collect::<Vec<_>>().join(", "),
        None => options.to_string(),
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn lower_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::kinds::find;
    use crate::kinds::tests::manifest;

    /// The errors of validating `m` as its kind; every message must be lower case.
    fn errors(m: &Value) -> Vec<FieldError> {
        let info = find(m["kind"].as_str().unwrap()).unwrap();
        let errors = validate(info, m).expect_err("should be refused");
        for e in &errors {
            assert!(!e.message.starts_with(|c: char| c.is_uppercase()), "{e}");
        }
        errors
    }

    fn paths(errors: &[FieldError]) -> Vec<&str> {
        errors.iter().map(|e| e.path.as_str()).collect()
    }

    fn one(m: &Value) -> FieldError {
        let mut e = errors(m);
        assert_eq!(e.len(), 1, "{e:?}");
        e.remove(0)
    }

    #[test]
    fn a_typo_in_a_spec_field_is_named() {
        let mut m = manifest("Task");
        m["spec"]["instructons"] = json!("typo");
        assert_eq!(one(&m), FieldError::new("spec.instructons", "unknown field"));

        let mut m = manifest("Workflow");
        m["spec"]["steps"][1]["reveiw"] = json!({});
        m["spec"]["steps"][0]["review"] = json!({ "maxRound": 1 });
        assert_eq!(paths(&errors(&m)), ["spec.steps[0].review.maxRound", "spec.steps[1].reveiw"]);

        let mut m = manifest("Graph");
        m["spc"] = json!({});
        assert_eq!(one(&m), FieldError::new("spc", "unknown field"));
    }

    #[test]
    fn a_missing_required_field_is_named() {
        let mut m = manifest("Node");
        m["spec"].as_object_mut().unwrap().remove("graphRef");
        assert_eq!(one(&m), FieldError::new("spec.graphRef", "is required"));

        let mut m = manifest("Task");
        m.as_object_mut().unwrap().remove("spec");
        assert_eq!(one(&m), FieldError::new("spec", "is required"));

        let mut m = manifest("Node");
        m["spec"]["workflowRef"] = json!({ "nam": "write-and-review" });
        assert_eq!(one(&m), FieldError::new("spec.workflowRef.name", "is required"));

        let mut m = manifest("Harness");
        m["spec"]["type"] = json!("command");
        assert_eq!(one(&m), FieldError::new("spec.command", "is required"));

        let mut m = manifest("Graph");
        m["metadata"].as_object_mut().unwrap().remove("name");
        assert_eq!(one(&m), FieldError::new("metadata.name", "is required"));
    }

    #[test]
    fn a_wrong_type_or_value_is_named_by_its_path() {
        let mut m = manifest("Graph");
        m["spec"]["maxParallelNodes"] = json!("four");
        assert_eq!(one(&m), FieldError::new("spec.maxParallelNodes", "must be an integer or null (is a string)"));

        let mut m = manifest("Node");
        m["spec"]["dependsOn"] = json!(["collect-changes", 7]);
        assert_eq!(one(&m), FieldError::new("spec.dependsOn[1]", "must be a string (is an integer)"));

        let mut m = manifest("Node");
        m["spec"]["workflowRef"] = json!(3);
        assert_eq!(one(&m).message, "must be an object or null (is an integer)");

        let mut m = manifest("Harness");
        m["spec"]["type"] = json!("docker");
        assert_eq!(one(&m), FieldError::new("spec.type", r#"must be one of "command", "model" (is "docker")"#));

        let mut m = manifest("Task");
        m["status"]["phase"] = json!("Done");
        let e = one(&m);
        assert_eq!(e.path, "status.phase");
        assert!(e.message.starts_with(r#"must be one of "Pending", "Running""#), "{e}");

        let mut m = manifest("Artifact");
        m["spec"]["digest"] = json!("sha256:abc");
        m["spec"]["inputs"][0]["digest"] = json!("md5:x");
        let e = errors(&m);
        assert_eq!(paths(&e), ["spec.digest", "spec.inputs[0].digest"]);
        assert!(e[0].message.starts_with("must match the pattern"), "{}", e[0]);

        let mut m = manifest("Workflow");
        m["spec"]["steps"] = json!([]);
        assert_eq!(one(&m), FieldError::new("spec.steps", "must have at least 1 item"));

        let mut m = manifest("Graph");
        m["spec"]["authority"]["expiresAt"] = json!("next tuesday");
        assert_eq!(
            one(&m),
            FieldError::new("spec.authority.expiresAt", r#"must be a valid date-time (is "next tuesday")"#)
        );

        let mut m = manifest("Graph");
        m["apiVersion"] = json!("r5e.ai/v1");
        assert_eq!(one(&m), FieldError::new("apiVersion", r#"must be "r5e.ai/v1alpha1" (is "r5e.ai/v1")"#));

        let mut m = manifest("Graph");
        m["spec"]["authority"]["budgets"]["tokens"] = json!(-1);
        assert_eq!(one(&m), FieldError::new("spec.authority.budgets.tokens", "must be at least 0 (is -1)"));
    }

    #[test]
    fn a_bad_name_namespace_or_label_is_refused() {
        let mut m = manifest("Agent");
        m["metadata"]["name"] = json!("Writer_1");
        assert_eq!(one(&m).path, "metadata.name");

        let mut m = manifest("Agent");
        m["metadata"]["labels"] = json!({ "bad key": "x", "ok": "-bad-value", "r5e.ai/role": "writer" });
        let e = errors(&m);
        assert_eq!(paths(&e), ["metadata.labels.bad key", "metadata.labels.ok"]);
        assert!(e[1].message.contains("label value"), "{}", e[1]);

        let mut m = manifest("Agent");
        m["metadata"]["annotations"] = json!({ "UPPER.example.com/x": "y" });
        assert!(one(&m).message.starts_with("annotation key prefix"));

        let mut m = manifest("Agent");
        m["metadata"].as_object_mut().unwrap().remove("namespace");
        assert_eq!(one(&m).path, "metadata.namespace");

        let mut m = manifest("Agent");
        m["metadata"]["namespace"] = json!("Team.A");
        assert_eq!(one(&m).path, "metadata.namespace");

        let mut m = manifest("CustomResourceDefinition");
        m["metadata"]["namespace"] = json!("team-a");
        assert_eq!(one(&m).message, "must not be set: resources of this kind are cluster-scoped");
    }

    #[test]
    fn a_kind_outside_the_registry_and_a_broken_schema_still_answer() {
        let copy = KindInfo { ..crate::kinds::work::GRAPH };
        let mut m = manifest("Graph");
        assert_eq!(validate(&copy, &m), Ok(()));
        m["spec"]["nope"] = json!(1);
        assert_eq!(validate(&copy, &m).unwrap_err()[0].path, "spec.nope");

        let broken = KindInfo { schema: || json!({ "type": 5 }), ..crate::kinds::work::GRAPH };
        let e = validate(&broken, &m).unwrap_err();
        assert!(e[0].message.contains("does not compile"), "{}", e[0]);
        let e = validate_with_schema(&json!({ "minimum": "x" }), &json!(1)).unwrap_err();
        assert_eq!(e[0].path, "");
    }

    #[test]
    fn paths_distinguish_array_indexes_from_numeric_keys() {
        let schema = json!({ "properties": { "m": { "additionalProperties": { "type": "string" } },
                                             "a": { "items": { "type": "string" } } } });
        let e = validate_with_schema(&schema, &json!({ "m": { "0": 1 }, "a": [1] })).unwrap_err();
        assert_eq!(paths(&e), ["a[0]", "m.0"]);
        assert_eq!(e[0].to_string(), "a[0]: must be a string (is an integer)");
    }
}
