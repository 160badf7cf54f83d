//! What the OpenAPI and fuzz tests share: the API over a fresh SQLite store, called through its
//! router without a socket, with an administrator's token and an unprivileged one.

#![allow(dead_code)]

use std::sync::Arc;

use admission::Admission;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use domain::Digest;
use http_body_util::BodyExt;
use r5e_api::{AppState, TokenRecord, Tokens, router};
use serde_json::Value;
use storage::Store;
use storage_sqlite::SqliteBackend;
use tower::ServiceExt;

pub const ADMIN: &str = "admin-token-0123456789";
pub const ALICE: &str = "alice-token-0123456789";

/// One answer of the API.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub bytes: Vec<u8>,
}

impl Answer {
    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or(Value::Null)
    }
}

/// The API over a fresh store.
pub struct Api {
    _dir: tempfile::TempDir,
    pub app: axum::Router,
    pub admission: Arc<Admission>,
}

pub async fn api() -> Api {
    let dir = tempfile::tempdir().unwrap();
    let backend = SqliteBackend::open(&dir.path().join("r5e.db")).await.unwrap();
    let store = Store::open(Arc::new(backend)).await.unwrap();
    let record = |token: &str, name: &str, groups: &[&str]| TokenRecord {
        hash: Digest::of(token.as_bytes()),
        kind: "user".into(),
        name: name.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        revoked: false,
        expires_at: None,
    };
    let tokens = Tokens::new(vec![record(ADMIN, "root", &["admins"]), record(ALICE, "alice", &["team-a"])]);
    let admission = Arc::new(Admission::new(store));
    let state = AppState {
        admission: admission.clone(),
        tokens,
        watch_window: 1000,
        bookmark_interval: std::time::Duration::from_millis(200),
        metrics: Default::default(),
        write_limit: r5e_api::RateLimit::unlimited(),
    };
    Api { _dir: dir, app: router(state), admission }
}

impl Api {
    /// Sends one request; `content_type` is sent only with a body.
    pub async fn send(
        &self,
        method: &str,
        uri: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Answer {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if let (Some(ct), Some(_)) = (content_type, &body) {
            req = req.header("content-type", ct);
        }
        let req = req.body(body.map(Body::from).unwrap_or_else(Body::empty)).unwrap();
        let res = self.app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.unwrap().to_bytes().to_vec();
        Answer { status, headers, bytes }
    }

    /// Sends `body` as JSON with the administrator's token.
    pub async fn admin(&self, method: &str, uri: &str, body: Option<&Value>) -> Answer {
        let body = body.map(|b| serde_json::to_vec(b).unwrap());
        self.send(method, uri, Some(ADMIN), Some("application/json"), body).await
    }

    /// GET as the administrator, as JSON.
    pub async fn get(&self, uri: &str) -> Value {
        let answer = self.admin("GET", uri, None).await;
        assert_eq!(answer.status, StatusCode::OK, "GET {uri}: {}", String::from_utf8_lossy(&answer.bytes));
        answer.json()
    }
}

/// A CustomResourceDefinition of `crontabs.stable.example.com`.
pub fn crontab_crd() -> Value {
    serde_json::json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "crontabs.stable.example.com"},
        "spec": {"group": "stable.example.com", "scope": "Namespaced",
                 "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab", "shortNames": ["ct"]},
                 "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                     "type": "object", "properties": {"spec": {"type": "object", "required": ["cronSpec"],
                         "properties": {"cronSpec": {"type": "string", "description": "When, in cron syntax."},
                                        "replicas": {"type": "integer", "nullable": true}}}}}}}]}
    })
}
