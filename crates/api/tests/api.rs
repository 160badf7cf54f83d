//! The API through its router (no socket): discovery, CRUD, lists, status, patch, errors.

use std::sync::Arc;

use admission::Admission;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use domain::Digest;
use http_body_util::BodyExt;
use r5e_api::{AppState, TokenRecord, Tokens, router};
use serde_json::{Value, json};
use storage::Store;
use storage_sqlite::SqliteBackend;
use tower::ServiceExt;

const ADMIN: &str = "admin-token-0123456789";
const ALICE: &str = "alice-token-0123456789";
const REVOKED: &str = "revoked-token-012345678";

struct Api {
    _dir: tempfile::TempDir,
    app: axum::Router,
}

async fn api() -> Api {
    let dir = tempfile::tempdir().unwrap();
    let backend = SqliteBackend::open(&dir.path().join("r5e.db")).await.unwrap();
    let store = Store::open(Arc::new(backend)).await.unwrap();
    let record = |token: &str, name: &str, groups: &[&str], revoked: bool| TokenRecord {
        hash: Digest::of(token.as_bytes()),
        kind: "user".into(),
        name: name.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        revoked,
        expires_at: None,
    };
    let tokens = Tokens::new(vec![
        record(ADMIN, "root", &["admins"], false),
        record(ALICE, "alice", &["team-a"], false),
        record(REVOKED, "mallory", &["admins"], true),
    ]);
    let state = AppState {
        admission: Arc::new(Admission::new(store)),
        tokens,
        watch_window: 50,
        bookmark_interval: std::time::Duration::from_millis(200),
        metrics: Default::default(),
        write_limit: r5e_api::RateLimit::unlimited(),
    };
    Api { _dir: dir, app: router(state) }
}

impl Api {
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        content_type: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if body.is_some() {
            req = req.header("content-type", content_type);
        }
        let body = body.map(|b| Body::from(serde_json::to_vec(&b).unwrap())).unwrap_or_else(Body::empty);
        let res = self.app.clone().oneshot(req.body(body).unwrap()).await.unwrap();
        let status = res.status();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let value =
            serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        (status, value)
    }

    async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call(method, path, Some(ADMIN), "application/json", body).await
    }
}

const GRAPHS: &str = "/apis/r5e.ai/v1alpha1/namespaces/w/graphs";

fn graph(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "r5e.ai/v1alpha1", "kind": "Graph", "metadata": {"name": name, "labels": labels},
           "spec": {"description": "d", "authority": {"capabilities": ["fs.read"]}}})
}

#[tokio::test]
async fn health_and_version_are_open_and_everything_else_needs_a_token() {
    let a = api().await;
    assert_eq!(a.call("GET", "/healthz", None, "", None).await.0, StatusCode::OK);
    assert_eq!(a.call("GET", "/readyz", None, "", None).await.0, StatusCode::OK);
    let (s, v) = a.call("GET", "/version", None, "", None).await;
    assert_eq!((s, v["major"].as_str()), (StatusCode::OK, Some("1")));
    for path in ["/apis", "/apis/r5e.ai/v1alpha1", GRAPHS] {
        let (s, v) = a.call("GET", path, None, "", None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(
            (v["kind"].as_str(), v["reason"].as_str(), v["code"].as_u64()),
            (Some("Status"), Some("Unauthorized"), Some(401))
        );
    }
    let (s, v) = a.call("GET", GRAPHS, Some(REVOKED), "", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(v["message"].as_str().unwrap().contains("revoked"));
    assert_eq!(a.call("GET", GRAPHS, Some("made-up"), "", None).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn discovery_lists_every_kind_and_its_status() {
    let a = api().await;
    let (_, v) = a.admin("GET", "/apis", None).await;
    let groups: Vec<&str> = v["groups"].as_array().unwrap().iter().map(|g| g["name"].as_str().unwrap()).collect();
    assert_eq!(groups, ["apiextensions.k8s.io", "r5e.ai"]);
    let (_, v) = a.admin("GET", "/apis/r5e.ai/v1alpha1", None).await;
    let names: Vec<&str> = v["resources"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 28, "14 kinds and their status subresources: {names:?}");
    assert!(names.contains(&"tasks") && names.contains(&"tasks/status") && names.contains(&"agentsessions"));
    let task = v["resources"].as_array().unwrap().iter().find(|r| r["name"] == "tasks").unwrap();
    assert_eq!((task["kind"].as_str(), task["namespaced"].as_bool()), (Some("Task"), Some(true)));
    let (_, v) = a.admin("GET", "/apis/apiextensions.k8s.io/v1", None).await;
    assert_eq!(v["resources"][0]["namespaced"], false);
    assert_eq!(a.admin("GET", "/apis/nope.example.com/v1", None).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn create_get_update_and_the_errors_on_the_way() {
    let a = api().await;
    let (s, created) = a.admin("POST", GRAPHS, Some(graph("g", json!({"team": "docs"})))).await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    assert_eq!(created["metadata"]["namespace"], "w");
    let (s, got) = a.admin("GET", &format!("{GRAPHS}/g"), None).await;
    assert_eq!((s, &got), (StatusCode::OK, &created));
    let (s, v) = a.admin("POST", GRAPHS, Some(graph("g", json!({})))).await;
    assert_eq!((s, v["reason"].as_str()), (StatusCode::CONFLICT, Some("AlreadyExists")));

    let mut next = created.clone();
    next["spec"]["description"] = json!("v2");
    let (s, updated) = a.admin("PUT", &format!("{GRAPHS}/g"), Some(next.clone())).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(updated["metadata"]["generation"], 2);
    let (s, v) = a.admin("PUT", &format!("{GRAPHS}/g"), Some(next)).await;
    assert_eq!((s, v["reason"].as_str()), (StatusCode::CONFLICT, Some("Conflict")), "a stale resourceVersion");

    let mut bad = graph("bad", json!({}));
    bad["spec"]["colour"] = json!("red");
    let (s, v) = a.admin("POST", GRAPHS, Some(bad)).await;
    assert_eq!((s, v["reason"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("Invalid")));
    assert_eq!(v["details"]["causes"][0]["field"], "spec.colour");

    let mut elsewhere = graph("x", json!({}));
    elsewhere["metadata"]["namespace"] = json!("other");
    let (s, v) = a.admin("POST", GRAPHS, Some(elsewhere)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["message"].as_str().unwrap().contains("does not match the namespace of the request"));

    let (s, v) = a.call("POST", GRAPHS, Some(ALICE), "application/json", Some(graph("mine", json!({})))).await;
    assert_eq!((s, v["reason"].as_str()), (StatusCode::FORBIDDEN, Some("Forbidden")));
    assert!(v["message"].as_str().unwrap().contains("policy stage refused it"), "{v}");
    let (s, _) = a.call("GET", &format!("{GRAPHS}/g"), Some(ALICE), "", None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "reads are decided by policy too");

    assert_eq!(a.admin("GET", "/apis/r5e.ai/v1alpha1/namespaces/w/gadgets", None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(a.admin("GET", &format!("{GRAPHS}/missing"), None).await.0, StatusCode::NOT_FOUND);
    let (s, _) = a.call("POST", GRAPHS, Some(ADMIN), "application/yaml", Some(graph("y", json!({})))).await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let big = json!({"metadata": {"name": "big"}, "spec": {"description": "x".repeat(4 << 20)}});
    assert_eq!(a.admin("POST", GRAPHS, Some(big)).await.0, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn lists_select_and_paginate() {
    let a = api().await;
    for i in 0..5 {
        let team = if i % 2 == 0 { "docs" } else { "ops" };
        assert_eq!(
            a.admin("POST", GRAPHS, Some(graph(&format!("g{i}"), json!({"team": team})))).await.0,
            StatusCode::CREATED
        );
    }
    let (s, v) = a.admin("GET", &format!("{GRAPHS}?labelSelector=team%3Ddocs"), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["kind"], "GraphList");
    let names: Vec<&str> =
        v["items"].as_array().unwrap().iter().map(|i| i["metadata"]["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["g0", "g2", "g4"]);
    assert!(v["metadata"]["resourceVersion"].as_str().unwrap().parse::<u64>().unwrap() >= 10);

    let (_, page1) = a.admin("GET", &format!("{GRAPHS}?limit=2"), None).await;
    assert_eq!(page1["items"].as_array().unwrap().len(), 2);
    let token = page1["metadata"]["continue"].as_str().unwrap();
    let (_, page2) = a.admin("GET", &format!("{GRAPHS}?limit=2&continue={token}"), None).await;
    assert_eq!(page2["items"][0]["metadata"]["name"], "g2");

    let (s, v) = a.admin("GET", &format!("{GRAPHS}?labelSelector=team%20in%20(docs"), None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["message"].as_str().unwrap().contains("invalid label selector"));
    let (_, v) = a.admin("GET", &format!("{GRAPHS}?fieldSelector=metadata.name%3Dg3"), None).await;
    assert_eq!(v["items"].as_array().unwrap().len(), 1);
    let (s, _) = a.admin("GET", &format!("{GRAPHS}?fieldSelector=spec.description%3Dd"), None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (_, all) = a.admin("GET", "/apis/r5e.ai/v1alpha1/graphs", None).await;
    assert_eq!(all["items"].as_array().unwrap().len(), 5, "a list across namespaces");
}

#[tokio::test]
async fn status_has_its_own_path_and_patches_apply() {
    let a = api().await;
    let (_, created) = a.admin("POST", GRAPHS, Some(graph("g", json!({})))).await;
    let mut with_status = created.clone();
    with_status["status"] = json!({"phase": "Running"});
    let (_, v) = a.admin("PUT", &format!("{GRAPHS}/g"), Some(with_status.clone())).await;
    assert!(v.get("status").is_none(), "the main path ignores status");
    with_status["metadata"]["resourceVersion"] = v["metadata"]["resourceVersion"].clone();
    let (s, v) = a.admin("PUT", &format!("{GRAPHS}/g/status"), Some(with_status)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"]["phase"], "Running");

    let (s, v) = a
        .call(
            "PATCH",
            &format!("{GRAPHS}/g"),
            Some(ADMIN),
            "application/merge-patch+json",
            Some(json!({"metadata": {"labels": {"team": "docs"}}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["metadata"]["labels"]["team"], "docs");
    assert_eq!(v["status"]["phase"], "Running");
    let ops = json!([{"op": "replace", "path": "/spec/description", "value": "patched"}]);
    let (s, v) = a.call("PATCH", &format!("{GRAPHS}/g"), Some(ADMIN), "application/json-patch+json", Some(ops)).await;
    assert_eq!((s, v["spec"]["description"].as_str()), (StatusCode::OK, Some("patched")));
    let (s, v) = a
        .call(
            "PATCH",
            &format!("{GRAPHS}/g/status"),
            Some(ADMIN),
            "application/merge-patch+json",
            Some(json!({"status": {"phase": "Succeeded"}})),
        )
        .await;
    assert_eq!((s, v["status"]["phase"].as_str()), (StatusCode::OK, Some("Succeeded")));
    let (s, _) = a
        .call("PATCH", &format!("{GRAPHS}/g"), Some(ADMIN), "application/strategic-merge-patch+json", Some(json!({})))
        .await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let bad = json!([{"op": "test", "path": "/spec/description", "value": "other"}]);
    let (s, _) = a.call("PATCH", &format!("{GRAPHS}/g"), Some(ADMIN), "application/json-patch+json", Some(bad)).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn delete_with_preconditions_and_finalizers() {
    let a = api().await;
    let mut g = graph("g", json!({}));
    g["metadata"]["finalizers"] = json!(["r5e.ai/cleanup"]);
    let (_, created) = a.admin("POST", GRAPHS, Some(g)).await;
    let stale = json!({"preconditions": {"resourceVersion": "1"}});
    let (s, _) = a.admin("DELETE", &format!("{GRAPHS}/g"), Some(stale)).await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, v) = a.admin("DELETE", &format!("{GRAPHS}/g"), None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(v["metadata"]["deletionTimestamp"].is_string(), "{v}");
    let (_, v) = a
        .call(
            "PATCH",
            &format!("{GRAPHS}/g"),
            Some(ADMIN),
            "application/merge-patch+json",
            Some(json!({"metadata": {"finalizers": null}})),
        )
        .await;
    assert_eq!(v["metadata"]["name"], created["metadata"]["name"]);
    assert_eq!(a.admin("GET", &format!("{GRAPHS}/g"), None).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_custom_resource_definition_serves_its_kind() {
    let a = api().await;
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "crontabs.stable.example.com"},
        "spec": {"group": "stable.example.com", "scope": "Namespaced",
                 "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab", "shortNames": ["ct"]},
                 "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                     "type": "object", "properties": {"spec": {"type": "object", "required": ["cronSpec"],
                         "properties": {"cronSpec": {"type": "string"}}}}}}}]}
    });
    let (s, v) = a.admin("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", Some(crd)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (_, v) = a.admin("GET", "/apis", None).await;
    assert!(v["groups"].as_array().unwrap().iter().any(|g| g["name"] == "stable.example.com"));
    let (_, v) = a.admin("GET", "/apis/stable.example.com/v1", None).await;
    assert_eq!(v["resources"][0]["kind"], "CronTab");
    let tabs = "/apis/stable.example.com/v1/namespaces/w/crontabs";
    let (s, v) = a.admin("POST", tabs, Some(json!({"metadata": {"name": "nightly"}, "spec": {}}))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (s, v) =
        a.admin("POST", tabs, Some(json!({"metadata": {"name": "nightly"}, "spec": {"cronSpec": "0 3 * * *"}}))).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["apiVersion"], "stable.example.com/v1");
    let (_, v) = a.admin("GET", tabs, None).await;
    assert_eq!(v["kind"], "CronTabList");
}

/// Read watch lines from a streaming body until `n` arrived (with a deadline).
async fn lines(body: &mut Body, n: usize) -> Vec<Value> {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    while out.len() < n {
        let frame = tokio::time::timeout(std::time::Duration::from_secs(10), body.frame())
            .await
            .expect("a watch event within the deadline")
            .expect("the stream is open")
            .unwrap();
        buf.extend_from_slice(&frame.into_data().unwrap());
        while let Some(i) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=i).collect();
            out.push(serde_json::from_slice(&line).unwrap());
        }
    }
    out
}

async fn watch(a: &Api, query: &str) -> (StatusCode, Body) {
    let req = Request::builder()
        .uri(format!("{GRAPHS}?watch=true&{query}"))
        .header("authorization", format!("Bearer {ADMIN}"))
        .body(Body::empty())
        .unwrap();
    let res = a.app.clone().oneshot(req).await.unwrap();
    (res.status(), res.into_body())
}

#[tokio::test]
async fn watch_sends_the_state_then_every_change_in_order() {
    let a = api().await;
    let (_, g1) = a.admin("POST", GRAPHS, Some(graph("g1", json!({"team": "docs"})))).await;
    let (s, mut body) = watch(&a, "").await;
    assert_eq!(s, StatusCode::OK);
    let first = lines(&mut body, 1).await;
    assert_eq!(
        (first[0]["type"].as_str(), first[0]["object"]["metadata"]["name"].as_str()),
        (Some("ADDED"), Some("g1"))
    );
    a.admin("POST", GRAPHS, Some(graph("g2", json!({})))).await;
    a.call(
        "PATCH",
        &format!("{GRAPHS}/g1"),
        Some(ADMIN),
        "application/merge-patch+json",
        Some(json!({"spec": {"description": "v2"}})),
    )
    .await;
    a.admin("DELETE", &format!("{GRAPHS}/g2"), None).await;
    a.admin("POST", "/apis/r5e.ai/v1alpha1/namespaces/other/graphs", Some(graph("elsewhere", json!({})))).await;
    let seen = lines(&mut body, 3).await;
    let summary: Vec<(String, String)> = seen
        .iter()
        .map(|e| (e["type"].as_str().unwrap().into(), e["object"]["metadata"]["name"].as_str().unwrap().into()))
        .collect();
    assert_eq!(
        summary,
        [("ADDED".into(), "g2".into()), ("MODIFIED".into(), "g1".into()), ("DELETED".into(), "g2".into())]
    );

    // Resuming from a resourceVersion replays exactly what came after it, and selects by label.
    let rv = g1["metadata"]["resourceVersion"].as_str().unwrap();
    let (_, mut resumed) = watch(&a, &format!("resourceVersion={rv}&labelSelector=team%3Ddocs")).await;
    let seen = lines(&mut resumed, 1).await;
    assert_eq!(
        (seen[0]["type"].as_str(), seen[0]["object"]["spec"]["description"].as_str()),
        (Some("MODIFIED"), Some("v2"))
    );
}

#[tokio::test]
async fn watch_bookmarks_timeouts_and_the_window() {
    let a = api().await;
    let (_, mut body) = watch(&a, "resourceVersion=0&allowWatchBookmarks=true").await;
    let bookmark = lines(&mut body, 1).await;
    assert_eq!(bookmark[0]["type"], "BOOKMARK");
    assert_eq!(bookmark[0]["object"]["kind"], "Graph");

    let (_, body) = watch(&a, "timeoutSeconds=1").await;
    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), body.collect()).await;
    assert!(ended.is_ok(), "the watch ends at its timeout");

    for i in 0..30 {
        a.admin("POST", GRAPHS, Some(graph(&format!("g{i}"), json!({})))).await;
    }
    let req = Request::builder()
        .uri(format!("{GRAPHS}?watch=true&resourceVersion=1"))
        .header("authorization", format!("Bearer {ADMIN}"))
        .body(Body::empty())
        .unwrap();
    let res = a.app.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::GONE);
    let v: Value = serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(v["reason"], "Expired");
}

#[tokio::test]
async fn kubectl_get_gets_a_table_with_the_kinds_columns() {
    let a = api().await;
    a.admin("POST", GRAPHS, Some(graph("g", json!({})))).await;
    let (_, created) = a.admin("GET", &format!("{GRAPHS}/g"), None).await;
    let mut status = created.clone();
    status["status"] = json!({"phase": "Running", "nodes": {"total": 3}});
    a.admin("PUT", &format!("{GRAPHS}/g/status"), Some(status)).await;
    let req = Request::builder()
        .uri(GRAPHS)
        .header("authorization", format!("Bearer {ADMIN}"))
        .header("accept", "application/json;as=Table;v=v1;g=meta.k8s.io,application/json")
        .body(Body::empty())
        .unwrap();
    let res = a.app.clone().oneshot(req).await.unwrap();
    let v: Value = serde_json::from_slice(&res.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(v["kind"], "Table");
    let headers: Vec<&str> =
        v["columnDefinitions"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(headers, ["Name", "Phase", "Nodes", "Succeeded", "Age"]);
    let cells = &v["rows"][0]["cells"];
    assert_eq!((cells[0].as_str(), cells[1].as_str(), cells[2].as_i64()), (Some("g"), Some("Running"), Some(3)));
    assert!(cells[4].as_str().unwrap().ends_with('s'), "an age: {cells}");
    assert_eq!(v["rows"][0]["object"]["kind"], "PartialObjectMetadata");
}

#[tokio::test]
async fn dry_runs_and_explain_say_why_and_write_nothing() {
    let a = api().await;
    let (s, v) = a.admin("POST", &format!("{GRAPHS}?dryRun=All"), Some(graph("g", json!({})))).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(a.admin("GET", &format!("{GRAPHS}/g"), None).await.0, StatusCode::NOT_FOUND, "a dry run writes nothing");
    let (s, v) = a
        .call("POST", &format!("{GRAPHS}?dryRun=All"), Some(ALICE), "application/json", Some(graph("g", json!({}))))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");

    let ask = |object: Value| json!({"operation": "create", "object": object});
    let mut g = graph("g", json!({}));
    g["metadata"]["namespace"] = json!("w");
    let (s, v) = a.call("POST", "/r5e/v1/explain", Some(ALICE), "application/json", Some(ask(g.clone()))).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (v["allowed"].as_bool(), v["stage"].as_str(), v["actor"].as_str()),
        (Some(false), Some("policy"), Some("user:alice"))
    );
    assert!(v["reason"].as_str().unwrap().contains("only members of group `admins`"), "{v}");
    let (_, v) = a.call("POST", "/r5e/v1/explain", Some(ADMIN), "application/json", Some(ask(g))).await;
    assert_eq!((v["allowed"].as_bool(), v["policies"][0].as_str()), (Some(true), Some("r5e:admins")));
    assert!(v["policySet"].as_str().unwrap().starts_with("sha256:"));

    let (s, text) = a.admin("GET", "/metrics", None).await;
    assert_eq!(s, StatusCode::OK);
    let text = text.as_str().unwrap();
    assert!(text.contains("r5e_http_requests_total{code=\"403\"} 1"), "{text}");
    // Nothing was written; the one event is the record of alice's refused request.
    assert!(text.contains("r5e_event_log_head 1"), "{text}");
}
