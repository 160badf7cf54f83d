//! The OpenAPI v3 documents: every kind (built in or from a CRD) has a full schema with
//! descriptions, every path declares its parameters, bodies and answers, what kubectl relies on is
//! there, and what the server answers matches what the document says.

mod common;

use std::collections::BTreeSet;

use axum::http::StatusCode;
use common::{ADMIN, Api, api, crontab_crd};
use serde_json::{Map, Value, json};

const GRAPHS: &str = "/apis/r5e.ai/v1alpha1/namespaces/w/graphs";
const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// Every group version's document, from the index.
async fn documents(a: &Api) -> Vec<(String, Value)> {
    let index = a.get("/openapi/v3").await;
    let mut out = Vec::new();
    for (name, entry) in index["paths"].as_object().unwrap() {
        let url = entry["serverRelativeURL"].as_str().unwrap();
        out.push((name.clone(), a.get(url).await));
    }
    out
}

/// The kinds `/apis/{group}/{version}` lists (without subresources).
async fn discovered_kinds(a: &Api, group_version: &str) -> Vec<(String, bool)> {
    let list = a.get(&format!("/{group_version}")).await;
    list["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| !r["name"].as_str().unwrap().contains('/'))
        .map(|r| (r["kind"].as_str().unwrap().to_string(), r["namespaced"].as_bool().unwrap()))
        .collect()
}

fn resolve<'a>(doc: &'a Value, reference: &str) -> &'a Value {
    let name = reference.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("odd $ref {reference}"));
    doc["components"]["schemas"].get(name).unwrap_or_else(|| panic!("$ref {reference} points nowhere"))
}

/// Every `$ref` in `v` points at a schema of the document.
fn check_refs(doc: &Value, v: &Value) {
    match v {
        Value::Object(m) => {
            if let Some(r) = m.get("$ref") {
                resolve(doc, r.as_str().unwrap());
            }
            m.values().for_each(|x| check_refs(doc, x));
        }
        Value::Array(items) => items.iter().for_each(|x| check_refs(doc, x)),
        _ => {}
    }
}

/// True if `schema` (or the schema it points at) has a description.
fn described(doc: &Value, schema: &Value) -> bool {
    if schema.get("description").and_then(Value::as_str).is_some_and(|d| !d.is_empty()) {
        return true;
    }
    let target = schema.get("$ref").or_else(|| schema.pointer("/allOf/0/$ref"));
    target.and_then(Value::as_str).is_some_and(|r| described(doc, resolve(doc, r)))
}

/// Every property of `schema`, at any depth, is described; returns the undescribed ones.
fn undescribed(doc: &Value, schema: &Value, path: &str, out: &mut Vec<String>) {
    match schema {
        Value::Object(m) => {
            if let Some(Value::Object(properties)) = m.get("properties") {
                for (name, p) in properties {
                    if !described(doc, p) {
                        out.push(format!("{path}.{name}"));
                    }
                    undescribed(doc, p, &format!("{path}.{name}"), out);
                }
            }
            for (k, v) in m.iter().filter(|(k, _)| *k != "properties") {
                undescribed(doc, v, &format!("{path}/{k}"), out);
            }
        }
        Value::Array(items) => items.iter().for_each(|x| undescribed(doc, x, path, out)),
        _ => {}
    }
}

fn schema_name(group: &str, version: &str, kind: &str) -> String {
    let reversed: Vec<&str> = group.split('.').rev().collect();
    format!("{}.{version}.{kind}", reversed.join("."))
}

#[tokio::test]
async fn every_kind_has_a_described_schema_and_a_list() {
    let a = api().await;
    assert_eq!(
        a.admin("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", Some(&crontab_crd())).await.status,
        StatusCode::CREATED
    );
    let docs = documents(&a).await;
    let names: Vec<&str> = docs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["apis/apiextensions.k8s.io/v1", "apis/r5e.ai/v1alpha1", "apis/stable.example.com/v1"]);
    let mut kinds_seen = 0;
    for (name, doc) in &docs {
        assert_eq!(doc["openapi"], "3.0.0");
        check_refs(doc, doc);
        let (group, version) = name.strip_prefix("apis/").unwrap().rsplit_once('/').unwrap();
        for (kind, _) in discovered_kinds(&a, name).await {
            kinds_seen += 1;
            let custom = group == "stable.example.com";
            let schema_name = schema_name(group, version, &kind);
            let schema = &doc["components"]["schemas"][&schema_name];
            assert_eq!(
                schema["x-kubernetes-group-version-kind"],
                json!([{"group": group, "version": version, "kind": kind}]),
                "{schema_name}"
            );
            assert!(described(doc, schema), "{schema_name} has no description");
            for field in ["apiVersion", "kind", "metadata", "spec"] {
                let p = &schema["properties"][field];
                assert!(p.is_object(), "{schema_name}.{field} is missing");
                assert!(described(doc, p), "{schema_name}.{field} has no description");
            }
            // Built-in kinds describe every field at every depth; a CRD's fields carry what its
            // author wrote.
            if !custom {
                let mut missing = Vec::new();
                undescribed(doc, schema, &schema_name, &mut missing);
                assert!(missing.is_empty(), "fields without a description: {missing:?}");
            }
            let list = &doc["components"]["schemas"][format!("{schema_name}List")];
            assert_eq!(list["properties"]["items"]["items"]["$ref"], format!("#/components/schemas/{schema_name}"));
            assert_eq!(list["properties"]["kind"]["enum"], json!([format!("{kind}List")]));
        }
        // Every definition of a built-in kind's schema says what it is.
        if !name.contains("example.com") {
            let mut missing = Vec::new();
            for (def, schema) in doc["components"]["schemas"].as_object().unwrap() {
                undescribed(doc, schema, def, &mut missing);
            }
            assert!(missing.is_empty(), "fields without a description: {missing:?}");
        }
    }
    assert_eq!(kinds_seen, 16, "15 built-in kinds and one custom one");

    let r5e = &docs[1].1;
    let phase = &r5e["components"]["schemas"]["ai.r5e.v1alpha1.TaskPhase"];
    assert_eq!(phase["type"], "string");
    assert!(phase["enum"].as_array().unwrap().contains(&json!("Succeeded")), "{phase}");
    assert!(phase["description"].as_str().unwrap().contains("`Succeeded`:"), "{phase}");

    let tab = &docs[2].1["components"]["schemas"]["com.example.stable.v1.CronTab"];
    assert_eq!(tab["properties"]["spec"]["required"], json!(["cronSpec"]));
    assert_eq!(tab["properties"]["spec"]["properties"]["cronSpec"]["description"], "When, in cron syntax.");
    assert_eq!(
        tab["properties"]["metadata"]["allOf"][0]["$ref"],
        "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    );
}

/// The `{parameters}` of a path template.
fn template_params(path: &str) -> BTreeSet<String> {
    path.split('/').filter_map(|s| s.strip_prefix('{')?.strip_suffix('}')).map(str::to_string).collect()
}

fn param_names(params: &Value, location: &str) -> BTreeSet<String> {
    params
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["in"] == location)
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn every_path_declares_its_parameters_bodies_and_answers() {
    let a = api().await;
    a.admin("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", Some(&crontab_crd())).await;
    let list_params: BTreeSet<String> = [
        "labelSelector",
        "fieldSelector",
        "limit",
        "continue",
        "resourceVersion",
        "timeoutSeconds",
        "allowWatchBookmarks",
        "watch",
    ]
    .map(String::from)
    .into();
    for (name, doc) in documents(&a).await {
        let mut ids = BTreeSet::new();
        let kinds = discovered_kinds(&a, &name).await;
        // Each kind has its collection, object and status paths (and a namespaced kind a list
        // across namespaces).
        let expected_paths: usize = kinds.iter().map(|(_, namespaced)| if *namespaced { 4 } else { 3 }).sum();
        assert_eq!(doc["paths"].as_object().unwrap().len(), expected_paths, "{name}");
        for (path, item) in doc["paths"].as_object().unwrap() {
            let declared = param_names(&item["parameters"], "path");
            assert_eq!(declared, template_params(path), "{path}");
            for p in item["parameters"].as_array().unwrap() {
                assert_eq!(
                    (p["required"].as_bool(), p["schema"]["type"].as_str()),
                    (Some(true), Some("string")),
                    "{p}"
                );
                assert!(p["description"].is_string(), "{p}");
            }
            for method in METHODS {
                let Some(op) = item.get(method) else { continue };
                let where_ = format!("{method} {path}");
                assert!(ids.insert(op["operationId"].as_str().unwrap().to_string()), "{where_}: duplicate operationId");
                assert!(op["x-kubernetes-group-version-kind"]["kind"].is_string(), "{where_}");
                let query = param_names(&op["parameters"], "query");
                assert!(param_names(&op["parameters"], "path").is_empty(), "{where_}: path parameters on the path");
                for p in op["parameters"].as_array().unwrap() {
                    assert!(p["schema"]["type"].is_string() && p["description"].is_string(), "{where_}: {p}");
                }
                let action = op["x-kubernetes-action"].as_str().unwrap();
                match action {
                    "list" => assert_eq!(query, list_params, "{where_}"),
                    "post" | "put" | "patch" => {
                        // kubectl leaves validation to a server whose writes declare fieldValidation.
                        assert_eq!(query, ["dryRun".to_string(), "fieldValidation".to_string()].into(), "{where_}")
                    }
                    "delete" => assert_eq!(query, ["dryRun".to_string()].into(), "{where_}"),
                    _ => assert!(query.is_empty(), "{where_}"),
                }
                let body = &op["requestBody"]["content"];
                match method {
                    "post" | "put" => {
                        assert_eq!(op["requestBody"]["required"], true, "{where_}");
                        let r = body["application/json"]["schema"]["$ref"].as_str().unwrap();
                        assert!(resolve(&doc, r)["x-kubernetes-group-version-kind"].is_array(), "{where_}");
                    }
                    "patch" => {
                        let types: BTreeSet<&str> = body.as_object().unwrap().keys().map(String::as_str).collect();
                        // No strategic merge patch: kubectl apply then sends JSON merge patches.
                        assert_eq!(types, ["application/json-patch+json", "application/merge-patch+json"].into());
                    }
                    "delete" => assert!(body["application/json"]["schema"]["$ref"].is_string(), "{where_}"),
                    _ => assert!(op.get("requestBody").is_none(), "{where_}"),
                }
                let responses = op["responses"].as_object().unwrap();
                let ok = if method == "post" { "201" } else { "200" };
                let ok_schema = responses[ok]["content"]["application/json"]["schema"]["$ref"].as_str().unwrap();
                let ok_kind = &resolve(&doc, ok_schema)["x-kubernetes-group-version-kind"][0]["kind"];
                let kind = op["x-kubernetes-group-version-kind"]["kind"].as_str().unwrap();
                let want = if action == "list" { format!("{kind}List") } else { kind.to_string() };
                assert_eq!(ok_kind.as_str(), Some(want.as_str()), "{where_}");
                let mut codes = vec!["400", "401", "403", "404", "429"];
                if matches!(method, "post" | "put" | "patch") {
                    codes.extend(["409", "413", "415", "422"]);
                }
                for code in codes {
                    assert_eq!(
                        responses.get(code).map(|r| &r["content"]["application/json"]["schema"]["$ref"]),
                        Some(&json!("#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Status")),
                        "{where_} {code}"
                    );
                }
            }
        }
    }
}

/// A draft 2020-12 schema that checks a value against the document's schema `name`
/// (`nullable` turned into an alternative `null`).
fn json_schema(doc: &Value, name: &str) -> Value {
    fn nullable(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut out: Map<String, Value> = m.iter().map(|(k, v)| (k.clone(), nullable(v))).collect();
                if out.remove("nullable") == Some(Value::Bool(true)) {
                    return json!({"anyOf": [Value::Object(out), {"type": "null"}]});
                }
                Value::Object(out)
            }
            Value::Array(items) => Value::Array(items.iter().map(nullable).collect()),
            other => other.clone(),
        }
    }
    json!({"$ref": format!("#/components/schemas/{name}"), "components": nullable(&doc["components"])})
}

fn conforms(doc: &Value, name: &str, value: &Value) {
    if let Err(errors) = domain::schema::validate_with_schema(&json_schema(doc, name), value) {
        panic!("{value} is not a {name}: {errors:?}");
    }
}

/// The schema the document gives for `method path` answering `code`.
fn answer_schema(doc: &Value, path: &str, method: &str, code: &str) -> String {
    let r = &doc["paths"][path][method]["responses"][code]["content"]["application/json"]["schema"]["$ref"];
    r.as_str()
        .unwrap_or_else(|| panic!("{method} {path} declares no {code}"))
        .trim_start_matches("#/components/schemas/")
        .into()
}

#[tokio::test]
async fn answers_match_the_documented_schemas() {
    let a = api().await;
    let doc = a.get("/openapi/v3/apis/r5e.ai/v1alpha1").await;
    let collection = "/apis/r5e.ai/v1alpha1/namespaces/{namespace}/graphs";
    let object = format!("{collection}/{{name}}");
    let graph = json!({"metadata": {"name": "g", "labels": {"team": "docs"}},
                       "spec": {"description": "d", "authority": {"capabilities": ["fs.read"]}}});
    conforms(&doc, "ai.r5e.v1alpha1.Graph", &graph);
    for wrong in [
        json!({"metadata": {"name": "Not A Name"}, "spec": graph["spec"]}),
        json!({"metadata": {"name": "g"}, "spec": {"description": "d"}}),
        json!({"kind": "Task", "metadata": {"name": "g"}, "spec": graph["spec"]}),
    ] {
        let checked = domain::schema::validate_with_schema(&json_schema(&doc, "ai.r5e.v1alpha1.Graph"), &wrong);
        assert!(checked.is_err(), "{wrong} passed as a Graph");
    }

    let created = a.admin("POST", GRAPHS, Some(&graph)).await;
    assert_eq!(created.status, StatusCode::CREATED);
    conforms(&doc, &answer_schema(&doc, collection, "post", "201"), &created.json());
    let list = a.get(GRAPHS).await;
    conforms(&doc, &answer_schema(&doc, collection, "get", "200"), &list);
    let all = a.get("/apis/r5e.ai/v1alpha1/graphs?limit=1").await;
    conforms(&doc, &answer_schema(&doc, "/apis/r5e.ai/v1alpha1/graphs", "get", "200"), &all);
    let mut with_status = created.json();
    with_status["status"] = json!({"phase": "Running"});
    let status = a.admin("PUT", &format!("{GRAPHS}/g/status"), Some(&with_status)).await;
    assert_eq!(status.status, StatusCode::OK);
    conforms(&doc, &answer_schema(&doc, &format!("{object}/status"), "put", "200"), &status.json());
    let patched = a
        .send(
            "PATCH",
            &format!("{GRAPHS}/g"),
            Some(ADMIN),
            Some("application/json-patch+json"),
            Some(br#"[{"op": "add", "path": "/metadata/labels/x", "value": "y"}]"#.to_vec()),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK);
    conforms(&doc, &answer_schema(&doc, &object, "patch", "200"), &patched.json());

    // Errors are Status objects of the documented shape.
    let errors = [
        (a.admin("GET", &format!("{GRAPHS}/missing"), None).await, "get", object.clone()),
        (a.admin("GET", &format!("{GRAPHS}?labelSelector=a%20in"), None).await, "get", collection.to_string()),
        (a.admin("POST", GRAPHS, Some(&graph)).await, "post", collection.to_string()),
        (
            a.admin("POST", GRAPHS, Some(&json!({"metadata": {"name": "h"}, "spec": {}}))).await,
            "post",
            collection.to_string(),
        ),
        (a.send("POST", GRAPHS, None, None, None).await, "post", collection.to_string()),
        (
            a.send("PATCH", &format!("{GRAPHS}/g"), Some(ADMIN), Some("text/plain"), Some(b"{}".to_vec())).await,
            "patch",
            object.clone(),
        ),
    ];
    let mut codes = Vec::new();
    for (answer, method, path) in errors {
        let code = answer.status.as_u16().to_string();
        conforms(&doc, &answer_schema(&doc, &path, method, &code), &answer.json());
        codes.push(code);
    }
    assert_eq!(codes, ["404", "400", "409", "422", "401", "415"]);
}

#[tokio::test]
async fn kubectl_finds_what_it_needs() {
    let a = api().await;
    let doc = a.get("/openapi/v3/apis/r5e.ai/v1alpha1").await;
    // kubectl looks for the PATCH of a kind by its group-version-kind, reads `fieldValidation` in
    // its parameters, and sends strategic merge patches only where its body lists them.
    let patches: Vec<&Value> = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .filter_map(|item| item.get("patch"))
        .filter(|op| {
            op["x-kubernetes-group-version-kind"] == json!({"group": "r5e.ai", "version": "v1alpha1", "kind": "Task"})
        })
        .collect();
    assert_eq!(patches.len(), 2, "the object and its status");
    for op in patches {
        assert!(
            op["parameters"].as_array().unwrap().iter().any(|p| p["name"] == "fieldValidation" && p["in"] == "query")
        );
        assert!(op["requestBody"]["content"].get("application/strategic-merge-patch+json").is_none());
    }
    assert_eq!(a.admin("GET", "/openapi/v3/apis/nope.example.com/v1", None).await.status, StatusCode::NOT_FOUND);
    assert_eq!(a.send("GET", "/openapi/v3", None, None, None).await.status, StatusCode::UNAUTHORIZED);
}

/// The documented shape of one path, kept in `tests/snapshots/`; `R5E_UPDATE_SNAPSHOTS=1`
/// rewrites it after a deliberate change.
#[tokio::test]
async fn the_graph_object_path_is_as_recorded() {
    let a = api().await;
    let doc = a.get("/openapi/v3/apis/r5e.ai/v1alpha1").await;
    let item = &doc["paths"]["/apis/r5e.ai/v1alpha1/namespaces/{namespace}/graphs/{name}"];
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots/openapi_graph_object_path.json");
    let text = serde_json::to_string_pretty(item).unwrap() + "\n";
    if std::env::var("R5E_UPDATE_SNAPSHOTS").as_deref() == Ok("1") {
        std::fs::write(&file, &text).unwrap();
    }
    let recorded = std::fs::read_to_string(&file).expect("the snapshot exists (R5E_UPDATE_SNAPSHOTS=1 writes it)");
    let recorded: Value = serde_json::from_str(&recorded).unwrap();
    assert_eq!(item, &recorded, "the path changed: review it, then R5E_UPDATE_SNAPSHOTS=1 to record it\n{text}");
}
