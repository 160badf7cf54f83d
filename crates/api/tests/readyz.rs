//! `/readyz` tells the truth about writes: not ready while the store cannot write (a full disk),
//! ready again by itself once space is back, without any client write.

use std::sync::Arc;
use std::time::{Duration, Instant};

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
const GRAPHS: &str = "/apis/r5e.ai/v1alpha1/namespaces/w/graphs";

async fn call(app: &axum::Router, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(path).header("authorization", format!("Bearer {ADMIN}"));
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let body = body.map(|b| Body::from(serde_json::to_vec(&b).unwrap())).unwrap_or_else(Body::empty);
    let res = app.clone().oneshot(req.body(body).unwrap()).await.unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let value =
        serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, value)
}

fn graph(name: &str, description: &str) -> Value {
    json!({"apiVersion": "r5e.ai/v1alpha1", "kind": "Graph", "metadata": {"name": name},
           "spec": {"description": description, "authority": {"capabilities": ["fs.read"]}}})
}

#[tokio::test]
async fn readyz_is_503_while_the_disk_is_full_and_ready_again_once_space_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let backend = SqliteBackend::open(&dir.path().join("r5e.db")).await.unwrap();
    let store = Store::open(Arc::new(backend.clone())).await.unwrap();
    let tokens = Tokens::new(vec![TokenRecord {
        hash: Digest::of(ADMIN.as_bytes()),
        kind: "user".into(),
        name: "root".into(),
        groups: vec!["admins".into()],
        revoked: false,
        expires_at: None,
    }]);
    let state = AppState {
        admission: Arc::new(Admission::new(store)),
        tokens,
        watch_window: 50,
        bookmark_interval: Duration::from_millis(200),
        metrics: Default::default(),
        write_limit: r5e_api::RateLimit::unlimited(),
    };
    let app = router(state);
    assert_eq!(call(&app, "POST", GRAPHS, Some(graph("small", "d"))).await.0, StatusCode::CREATED);
    assert_eq!(call(&app, "GET", "/readyz", None).await.0, StatusCode::OK);

    // The disk fills: a cap below the file's size holds the file at the size it has now.
    backend.set_max_pages(Some(1)).await;
    let big = "x".repeat(1 << 20);
    let (code, body) = call(&app, "POST", GRAPHS, Some(graph("big", &big))).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    for _ in 0..2 {
        let (code, body) = call(&app, "GET", "/readyz", None).await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!((body["kind"].as_str(), body["reason"].as_str()), (Some("Status"), Some("ServiceUnavailable")));
        assert_eq!(body["code"], 503);
        let message = body["message"].as_str().unwrap();
        assert!(message.contains("writes are failing") && message.contains("full"), "{message}");
    }
    // Reads still work.
    assert_eq!(call(&app, "GET", &format!("{GRAPHS}/small"), None).await.0, StatusCode::OK);

    // Space comes back; no client writes, and readiness returns by itself.
    backend.set_max_pages(None).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, body) = call(&app, "GET", "/readyz", None).await;
        if code == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "not ready 10 s after space came back: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(call(&app, "POST", GRAPHS, Some(graph("big", &big))).await.0, StatusCode::CREATED);
    assert_eq!(call(&app, "GET", "/readyz", None).await.0, StatusCode::OK);
}
