//! The OpenAPI v3 documents: `/openapi/v3` lists one per group version, and each describes every
//! path of that group version with its parameters, request bodies and responses, and every kind
//! with its full schema (descriptions included), so that kubectl, client generators and fuzzers
//! can reach the whole API from it.
//!
//! What kubectl reads here: the `x-kubernetes-group-version-kind` of each operation, a PATCH that
//! declares `fieldValidation` (so it leaves validation to the server, which checks every field
//! against the kind's schema), and PATCH bodies without strategic merge patch (so `kubectl apply`
//! sends JSON merge patches).

use serde_json::{Map, Value, json};

use super::ServedKind;
use super::openapi_meta::meta_schemas;
use super::openapi_schema::convert;

/// The Kubernetes meta types the document uses, under the names Kubernetes gives them.
pub(super) const META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1";

/// `#/components/schemas/{name}`.
pub(super) fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// The `/openapi/v3` index: one document per group version.
pub fn index(group_versions: &[(String, String)]) -> Value {
    let paths: Map<String, Value> = group_versions
        .iter()
        .map(|(g, v)| (format!("apis/{g}/{v}"), json!({"serverRelativeURL": format!("/openapi/v3/apis/{g}/{v}")})))
        .collect();
    json!({ "paths": paths })
}

/// The document of one group version: `kinds` are the kinds it serves, each with the JSON Schema
/// of a whole resource (draft 2020-12 for built-in kinds, the CRD's OpenAPI schema for custom ones).
pub fn document(group: &str, version: &str, kinds: &[(ServedKind, Value)]) -> Value {
    let mut schemas = meta_schemas();
    let mut paths = Map::new();
    for (kind, schema) in kinds {
        add_kind_schemas(&mut schemas, kind, schema);
        add_paths(&mut paths, kind);
    }
    json!({
        "openapi": "3.0.0",
        "info": {
            "title": "r5e",
            "version": format!("{group}/{version}"),
            "description": format!(
                "The kinds of `{group}/{version}` and their paths. Every write goes through admission \
                 (schema, references, policy, identity); every error is a Kubernetes `Status`."
            ),
        },
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

/// The schema name prefix of a group version: the group reversed, then the version
/// (`ai.r5e.v1alpha1`), as Kubernetes names its own.
fn prefix(group: &str, version: &str) -> String {
    let reversed: Vec<&str> = group.split('.').rev().collect();
    format!("{}.{version}", reversed.join("."))
}

/// The OpenAPI name of a kind (`ai.r5e.v1alpha1.Task`).
pub fn schema_name(k: &ServedKind) -> String {
    format!("{}.{}", prefix(&k.group, &k.version), k.kind)
}

fn gvk(k: &ServedKind, kind: &str) -> Value {
    json!({"group": k.group, "version": k.version, "kind": kind})
}

/// The kind's schema, its List, and the definitions its schema uses.
fn add_kind_schemas(schemas: &mut Map<String, Value>, k: &ServedKind, schema: &Value) {
    let group_prefix = prefix(&k.group, &k.version);
    let reference = |r: &str| -> Option<String> {
        // A CRD's schema has nothing to point at (Kubernetes refuses `$ref` in them).
        let name = r.strip_prefix("#/$defs/").filter(|_| !k.custom)?;
        Some(match name {
            // The envelope types every kind shares.
            "ObjectMeta" | "OwnerReference" => format!("#/components/schemas/{META}.{name}"),
            _ => format!("#/components/schemas/{group_prefix}.{name}"),
        })
    };
    if let Some(defs) = schema.get("$defs").and_then(Value::as_object) {
        for (name, def) in defs {
            if matches!(name.as_str(), "ObjectMeta" | "OwnerReference") {
                continue;
            }
            schemas.entry(format!("{group_prefix}.{name}")).or_insert_with(|| convert(def, &reference));
        }
    }
    let mut out = convert(schema, &reference);
    envelope(&mut out, k);
    schemas.insert(schema_name(k), out);
    schemas.insert(format!("{}List", schema_name(k)), list_schema(k));
}

/// The fields every resource has, described; `apiVersion` and `kind` are optional in requests
/// (they default to those of the path).
fn envelope(schema: &mut Value, k: &ServedKind) {
    let api_version = k.api_version();
    let Some(map) = schema.as_object_mut() else { return };
    map.entry("type").or_insert(json!("object"));
    if !map.contains_key("description") {
        map.insert("description".into(), json!(format!("A {} resource.", k.kind)));
    }
    let properties = map.entry("properties").or_insert_with(|| json!({}));
    if let Some(properties) = properties.as_object_mut() {
        properties.insert(
            "apiVersion".into(),
            json!({"type": "string", "enum": [api_version],
                   "description": format!("`{api_version}`; may be left out of a request, which then takes it from its path.")}),
        );
        properties.insert(
            "kind".into(),
            json!({"type": "string", "enum": [k.kind],
                   "description": format!("`{}`; may be left out of a request, which then takes it from its path.", k.kind)}),
        );
        properties.insert(
            "metadata".into(),
            json!({"allOf": [schema_ref(&format!("{META}.ObjectMeta"))],
                   "description": "Identity and bookkeeping: name, namespace, labels, owners, finalizers."}),
        );
        for (field, description) in [
            ("spec", "What the user wants."),
            ("status", "What the system observes; written only through the `/status` subresource."),
        ] {
            if let Some(p) = properties.get_mut(field).and_then(Value::as_object_mut) {
                p.entry("description").or_insert(json!(description));
                if let Some(target) = p.remove("$ref") {
                    p.insert("allOf".into(), json!([{"$ref": target}]));
                }
            }
        }
    }
    if let Some(required) = map.get_mut("required").and_then(Value::as_array_mut) {
        required.retain(|r| r != "apiVersion" && r != "kind");
    }
    map.insert("x-kubernetes-group-version-kind".into(), json!([gvk(k, &k.kind)]));
}

fn list_schema(k: &ServedKind) -> Value {
    let list = format!("{}List", k.kind);
    json!({
        "type": "object",
        "description": format!("A page of {} resources, ordered by namespace and name.", k.kind),
        "required": ["apiVersion", "kind", "metadata", "items"],
        "properties": {
            "apiVersion": {"type": "string", "enum": [k.api_version()], "description": "The group version of the items."},
            "kind": {"type": "string", "enum": [list], "description": "The kind of the list."},
            "metadata": {"allOf": [schema_ref(&format!("{META}.ListMeta"))],
                         "description": "The list's resourceVersion (watch from it) and continue token."},
            "items": {"type": "array", "items": schema_ref(&schema_name(k)), "description": "The resources."},
        },
        "x-kubernetes-group-version-kind": [gvk(k, &list)],
    })
}

/// Adds the paths of one kind: the collection, the object and its status, and for a namespaced
/// kind also the list across namespaces.
fn add_paths(paths: &mut Map<String, Value>, k: &ServedKind) {
    let base = format!("/apis/{}/{}", k.group, k.version);
    let (collection, scoped, mut params) = if k.namespaced {
        (format!("{base}/namespaces/{{namespace}}/{}", k.plural), "Namespaced", vec![namespace_param()])
    } else {
        (format!("{base}/{}", k.plural), "", vec![])
    };
    let op = Operation { k, scoped };
    paths.insert(collection.clone(), json!({"parameters": params.clone(), "get": op.list(""), "post": op.create()}));
    params.insert(0, name_param(k));
    paths.insert(
        format!("{collection}/{{name}}"),
        json!({"parameters": params.clone(), "get": op.read(""), "put": op.replace(""),
               "patch": op.patch(""), "delete": op.delete()}),
    );
    paths.insert(
        format!("{collection}/{{name}}/status"),
        json!({"parameters": params, "get": op.read("Status"), "put": op.replace("Status"),
               "patch": op.patch("Status")}),
    );
    if k.namespaced {
        let all = Operation { k, scoped: "" };
        paths.insert(format!("{base}/{}", k.plural), json!({"parameters": [], "get": all.list("ForAllNamespaces")}));
    }
}

/// The operations on one kind's paths.
struct Operation<'a> {
    k: &'a ServedKind,
    /// `Namespaced` in operation ids of namespaced paths.
    scoped: &'a str,
}

impl Operation<'_> {
    /// An operation id in Kubernetes' style: `patchR5eAiV1alpha1NamespacedTaskStatus`.
    fn id(&self, verb: &str, suffix: &str) -> String {
        let camel: String = format!("{}.{}", self.k.group, self.k.version)
            .split(['.', '-'])
            .map(|w| {
                let mut c = w.chars();
                c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
            })
            .collect();
        format!("{verb}{camel}{}{}{suffix}", self.scoped, self.k.kind)
    }

    fn base(&self, verb: &str, action: &str, suffix: &str, summary: String, params: Vec<Value>) -> Map<String, Value> {
        let mut op = Map::new();
        op.insert("operationId".into(), json!(self.id(verb, suffix)));
        op.insert("summary".into(), json!(summary));
        op.insert("tags".into(), json!([self.k.plural]));
        op.insert("x-kubernetes-action".into(), json!(action));
        op.insert("x-kubernetes-group-version-kind".into(), gvk(self.k, &self.k.kind));
        op.insert("parameters".into(), Value::Array(params));
        op
    }

    fn list(&self, suffix: &str) -> Value {
        let where_ = if suffix.is_empty() && self.k.namespaced { " in a namespace" } else { "" };
        let mut op =
            self.base("list", "list", suffix, format!("List or watch {}{where_}", self.k.plural), list_params());
        let list = schema_name(self.k) + "List";
        let mut responses = errors(&[400, 401, 403, 404, 410, 429, 503]);
        responses.insert(
            "200".into(),
            json!({"description": "The list; with `watch=true`, a stream of watch events, one JSON object per line.",
            "content": {
                "application/json": {"schema": schema_ref(&list)},
                "application/json;stream=watch": {"schema": schema_ref(&format!("{META}.WatchEvent"))},
            }}),
        );
        op.insert("responses".into(), Value::Object(responses));
        Value::Object(op)
    }

    fn create(&self) -> Value {
        let summary = format!(
            "Create a {}; `apiVersion`, `kind` and the namespace may be left out and are taken from the path",
            self.k.kind
        );
        let mut op = self.base("create", "post", "", summary, write_params());
        op.insert("requestBody".into(), self.object_body());
        let mut responses = self.responses("201", "Created (or, with `dryRun=All`, what would be).");
        responses["201"]["links"] = self.links();
        op.insert("responses".into(), responses);
        Value::Object(op)
    }

    /// What can be done next with a created object: the operations on its path, with the name
    /// (and namespace) taken from the answer.
    fn links(&self) -> Value {
        let mut parameters = json!({"name": "$response.body#/metadata/name"});
        if self.k.namespaced {
            parameters["namespace"] = json!("$response.body#/metadata/namespace");
        }
        let links: Map<String, Value> = [
            ("read", ""),
            ("replace", ""),
            ("patch", ""),
            ("delete", ""),
            ("read", "Status"),
            ("replace", "Status"),
            ("patch", "Status"),
        ]
        .into_iter()
        .map(|(verb, suffix)| {
            let id = self.id(verb, suffix);
            (id.clone(), json!({"operationId": id, "parameters": parameters}))
        })
        .collect();
        Value::Object(links)
    }

    fn read(&self, suffix: &str) -> Value {
        let what = if suffix.is_empty() { "" } else { " (the status subresource shows the whole object)" };
        let mut op = self.base("read", "get", suffix, format!("Read a {}{what}", self.k.kind), vec![]);
        let mut responses = errors(&[400, 401, 403, 404, 429, 503]);
        responses.insert("200".into(), self.object_response("The resource."));
        op.insert("responses".into(), Value::Object(responses));
        Value::Object(op)
    }

    fn replace(&self, suffix: &str) -> Value {
        let summary = if suffix.is_empty() {
            format!("Replace a {}'s metadata and spec (its status is left alone)", self.k.kind)
        } else {
            format!("Replace a {}'s status (nothing else changes)", self.k.kind)
        };
        let mut op = self.base("replace", "put", suffix, summary, write_params());
        op.insert("requestBody".into(), self.object_body());
        op.insert("responses".into(), self.responses("200", "Replaced."));
        Value::Object(op)
    }

    fn patch(&self, suffix: &str) -> Value {
        let summary = format!(
            "Patch a {}{} with a JSON merge patch (RFC 7386) or a JSON patch (RFC 6902)",
            self.k.kind,
            if suffix.is_empty() { "" } else { "'s status" }
        );
        let mut op = self.base("patch", "patch", suffix, summary, write_params());
        op.insert(
            "requestBody".into(),
            json!({"required": true, "content": {
                "application/merge-patch+json": {"schema": schema_ref(&format!("{META}.Patch"))},
                "application/json-patch+json": {"schema": schema_ref(&format!("{META}.JSONPatch"))},
            }}),
        );
        op.insert("responses".into(), self.responses("200", "Patched."));
        Value::Object(op)
    }

    fn delete(&self) -> Value {
        let summary =
            format!("Delete a {}; with finalizers it is only marked, and removed when the last one is", self.k.kind);
        let mut op = self.base("delete", "delete", "", summary, vec![dry_run_param()]);
        op.insert(
            "requestBody".into(),
            json!({"required": false, "content": {
                "application/json": {"schema": schema_ref(&format!("{META}.DeleteOptions"))}}}),
        );
        op.insert(
            "responses".into(),
            self.responses("200", "Deleted, or marked for deletion: the object's last state."),
        );
        Value::Object(op)
    }

    fn object_body(&self) -> Value {
        json!({"required": true, "content": {"application/json": {"schema": schema_ref(&schema_name(self.k))}}})
    }

    fn object_response(&self, description: &str) -> Value {
        json!({"description": description, "content": {"application/json": {"schema": schema_ref(&schema_name(self.k))}}})
    }

    /// The answers of a write: `ok` with the object, or a `Status`.
    fn responses(&self, ok: &str, description: &str) -> Value {
        let mut responses = errors(&[400, 401, 403, 404, 409, 413, 415, 422, 429, 503]);
        responses.insert(ok.into(), self.object_response(description));
        Value::Object(responses)
    }
}

/// `Status` answers for `codes`.
fn errors(codes: &[u16]) -> Map<String, Value> {
    codes
        .iter()
        .map(|code| {
            let description = match code {
                400 => "Malformed body, selector or parameter, or a body that disagrees with its path.",
                401 => "No token, an unknown one or a revoked one.",
                403 => "Refused by policy, by the identity gate, or for widening authority.",
                404 => "No such kind or object.",
                409 => "The name is taken, or the resourceVersion is stale.",
                410 => "The watch starts too far back: list again and watch from the list's resourceVersion.",
                413 => "The body is over 3 MiB.",
                415 => "Not JSON, or a patch type the server does not take.",
                422 => "Invalid: one `details.causes` entry per field.",
                429 => "Too many requests: retry later.",
                503 => "The store cannot be reached.",
                _ => "An error.",
            };
            (
                code.to_string(),
                json!({"description": description,
                       "content": {"application/json": {"schema": schema_ref(&format!("{META}.Status"))}}}),
            )
        })
        .collect()
}

fn namespace_param() -> Value {
    json!({"name": "namespace", "in": "path", "required": true,
           "description": "The namespace (a DNS-1123 label).",
           "schema": {"type": "string", "minLength": 1, "maxLength": 63, "pattern": DNS_LABEL}})
}

fn name_param(k: &ServedKind) -> Value {
    json!({"name": "name", "in": "path", "required": true,
           "description": format!("The name of the {} (a DNS-1123 subdomain).", k.kind),
           "schema": {"type": "string", "minLength": 1, "maxLength": 253, "pattern": DNS_SUBDOMAIN}})
}

pub(super) const DNS_LABEL: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
pub(super) const DNS_SUBDOMAIN: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

fn query(name: &str, schema: Value, description: &str) -> Value {
    json!({"name": name, "in": "query", "required": false, "description": description, "schema": schema})
}

fn dry_run_param() -> Value {
    query(
        "dryRun",
        json!({"type": "string", "enum": ["All"]}),
        "`All`: run every admission stage and write nothing, not even a decision.",
    )
}

fn write_params() -> Vec<Value> {
    vec![
        dry_run_param(),
        query(
            "fieldValidation",
            json!({"type": "string", "enum": ["Ignore", "Warn", "Strict"]}),
            "Accepted for compatibility: the server always checks every field against the kind's schema and \
             refuses unknown ones, so clients need not validate.",
        ),
    ]
}

fn list_params() -> Vec<Value> {
    vec![
        query(
            "labelSelector",
            json!({"type": "string"}),
            "Kubernetes label selector syntax: `a=b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`; a comma means and.",
        ),
        query(
            "fieldSelector",
            json!({"type": "string"}),
            "`metadata.name` or `metadata.namespace` with `=`, `==` or `!=`; a comma means and.",
        ),
        query(
            "limit",
            json!({"type": "integer", "minimum": 0}),
            "At most this many items per page (0: no limit); `metadata.continue` fetches the next page.",
        ),
        query(
            "continue",
            json!({"type": "string", "minLength": 1}),
            "The `metadata.continue` token of the previous page.",
        ),
        query(
            "resourceVersion",
            json!({"type": "string"}),
            "With `watch`: send every change after this event (absent or `0`: the current objects first).",
        ),
        query(
            "timeoutSeconds",
            json!({"type": "integer", "minimum": 0}),
            "With `watch`: end the stream after this many seconds.",
        ),
        query(
            "allowWatchBookmarks",
            json!({"type": "boolean"}),
            "With `watch`: send a `BOOKMARK` event with the last resourceVersion every few seconds.",
        ),
        query("watch", json!({"type": "boolean"}), "Stream changes as watch events instead of listing."),
    ]
}
