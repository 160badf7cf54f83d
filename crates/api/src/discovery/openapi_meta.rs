//! The meta types every OpenAPI document shares, under the names Kubernetes gives them
//! (`io.k8s.apimachinery.pkg.apis.meta.v1.*`): the envelope every resource carries (`ObjectMeta`,
//! `OwnerReference`, from the domain's own schema), lists, `Status`, `DeleteOptions`, the two patch
//! bodies and watch events.

use serde_json::{Map, Value, json};

use super::openapi::{DNS_LABEL, DNS_SUBDOMAIN, META, schema_ref};
use super::openapi_schema::convert;

/// What a label value may be.
const LABEL_VALUE: &str = "^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$";

/// The domain's `ObjectMeta` and `OwnerReference` (every kind's schema carries them), with the
/// name, namespace and label rules the server enforces on them written out as patterns.
fn envelope_definitions() -> Vec<(&'static str, Value)> {
    let schema = domain::kinds::builtin().first().map(|k| (k.schema)()).unwrap_or_default();
    ["ObjectMeta", "OwnerReference"]
        .into_iter()
        .map(|name| {
            let def = schema.pointer(&format!("/$defs/{name}")).cloned().unwrap_or_else(|| json!({"type": "object"}));
            let mut def = convert(&def, &envelope_reference);
            if name == "ObjectMeta"
                && let Some(def) = def.as_object_mut()
            {
                // A replace takes the name from its path; a create without one is refused (422).
                def.remove("required");
                let Some(properties) = def.get_mut("properties").and_then(Value::as_object_mut) else {
                    return (name, Value::Object(def.clone()));
                };
                let rules = [
                    (
                        "name",
                        json!({"minLength": 1, "maxLength": 253, "pattern": DNS_SUBDOMAIN,
                               "description": "Unique within the kind and namespace; a DNS-1123 subdomain. Never \
                                               changes. Required on create; a replace takes it from its path."}),
                    ),
                    ("namespace", json!({"maxLength": 63, "pattern": DNS_LABEL})),
                ];
                for (field, rule) in rules {
                    if let (Some(p), Some(rule)) =
                        (properties.get_mut(field).and_then(Value::as_object_mut), rule.as_object())
                    {
                        p.extend(rule.clone());
                    }
                }
                if let Some(values) = properties
                    .get_mut("labels")
                    .and_then(|l| l.get_mut("additionalProperties"))
                    .and_then(Value::as_object_mut)
                {
                    values.insert("maxLength".into(), json!(63));
                    values.insert("pattern".into(), json!(LABEL_VALUE));
                }
            }
            (name, def)
        })
        .collect()
}

/// Where a `$ref` of the envelope points: the shared meta types.
fn envelope_reference(r: &str) -> Option<String> {
    r.strip_prefix("#/$defs/").map(|name| format!("#/components/schemas/{META}.{name}"))
}

/// The meta types every document shares.
pub fn meta_schemas() -> Map<String, Value> {
    let m = |name: &str| schema_ref(&format!("{META}.{name}"));
    let string = |description: &str| json!({"type": "string", "description": description});
    let mut schemas = Map::new();
    for (name, def) in envelope_definitions() {
        schemas.insert(format!("{META}.{name}"), def);
    }
    schemas.insert(
        format!("{META}.ListMeta"),
        json!({
            "type": "object",
            "description": "What a list carries besides its items.",
            "properties": {
                "resourceVersion": string("The seq of the last event when the list was read: a watch from it sees every later change."),
                "continue": string("Pass as `continue` to get the next page; absent on the last page."),
            },
        }),
    );
    schemas.insert(
        format!("{META}.Status"),
        json!({
            "type": "object",
            "description": "What every error is: a code, a reason and a message that says what to do.",
            "required": ["kind", "apiVersion", "status", "message", "reason", "code"],
            "properties": {
                "kind": {"type": "string", "enum": ["Status"], "description": "`Status`."},
                "apiVersion": {"type": "string", "enum": ["v1"], "description": "`v1`."},
                "metadata": {"allOf": [m("ListMeta")], "description": "Empty."},
                "status": {"type": "string", "enum": ["Failure"], "description": "`Failure`."},
                "message": string("What went wrong and what to do about it."),
                "reason": string("A CamelCase word for the error (`NotFound`, `Conflict`, `Invalid`, ...)."),
                "code": {"type": "integer", "format": "int32", "description": "The HTTP status code."},
                "details": {"allOf": [m("StatusDetails")], "description": "More about the error, when there is more."},
            },
        }),
    );
    schemas.insert(
        format!("{META}.StatusDetails"),
        json!({
            "type": "object",
            "description": "More about an error.",
            "properties": {
                "causes": {"type": "array", "items": m("StatusCause"), "description": "One entry per invalid field."},
                "name": string("The object concerned."),
                "kind": string("Its kind."),
                "retryAfterSeconds": {"type": "integer", "format": "int32",
                                      "description": "Retry after this many seconds."},
            },
        }),
    );
    schemas.insert(
        format!("{META}.StatusCause"),
        json!({
            "type": "object",
            "description": "One cause of an error.",
            "properties": {
                "reason": string("`FieldValueInvalid`."),
                "field": string("The field, as a dotted path (`spec.steps[0].name`)."),
                "message": string("What is wrong with it."),
            },
        }),
    );
    schemas.insert(
        format!("{META}.DeleteOptions"),
        json!({
            "type": "object",
            "description": "Options of a delete; only `preconditions` is acted on.",
            "properties": {
                "apiVersion": {"description": "Ignored (`v1` in Kubernetes)."},
                "kind": {"description": "Ignored (`DeleteOptions` in Kubernetes)."},
                "preconditions": {
                    "type": "object",
                    "description": "Delete only if the object is still this one, at this version.",
                    "properties": {
                        "resourceVersion": {"type": "string", "pattern": "^[0-9]+$", "nullable": true,
                                            "description": "The resourceVersion the object must have (409 otherwise); a number is accepted too."},
                        "uid": {"type": "string", "nullable": true,
                                "description": "The uid the object must have (409 otherwise)."},
                    },
                },
                "propagationPolicy": {"description": "Ignored: owned resources are always deleted after their owner."},
                "gracePeriodSeconds": {"description": "Ignored."},
                "orphanDependents": {"description": "Ignored."},
                "dryRun": {"description": "Ignored: use the `dryRun` query parameter."},
            },
        }),
    );
    schemas.insert(
        format!("{META}.Patch"),
        json!({
            "type": "object",
            "description": "A JSON merge patch (RFC 7386): objects merge key by key, `null` removes a key, anything else replaces. A patch that does not pin `metadata.resourceVersion` is applied again if the object changes meanwhile.",
        }),
    );
    schemas.insert(
        format!("{META}.JSONPatch"),
        json!({
            "type": "array",
            "description": "A JSON patch (RFC 6902): operations applied in order, all or nothing.",
            "items": {
                "type": "object",
                "required": ["op", "path"],
                "properties": {
                    "op": {"type": "string", "enum": ["add", "remove", "replace", "move", "copy", "test"],
                           "description": "The operation."},
                    "path": string("A JSON pointer (RFC 6901) to the target (`/metadata/labels/team`)."),
                    "from": string("For `move` and `copy`: a JSON pointer to the source."),
                    "value": {"description": "For `add`, `replace` and `test`: the value."},
                },
            },
        }),
    );
    schemas.insert(
        format!("{META}.WatchEvent"),
        json!({
            "type": "object",
            "description": "One line of a watch.",
            "required": ["type", "object"],
            "properties": {
                "type": {"type": "string", "enum": ["ADDED", "MODIFIED", "DELETED", "BOOKMARK"],
                         "description": "What happened; a `BOOKMARK` only carries the last resourceVersion seen."},
                "object": {"type": "object", "description": "The object as it is after the change (as it was, for `DELETED`)."},
            },
        }),
    );
    schemas
}
