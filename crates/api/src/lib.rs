//! The HTTP API: Kubernetes-style discovery and resources, every write through admission, every
//! error a `Status`. One router serves built-in kinds and kinds defined by
//! CustomResourceDefinitions alike.
//!
//! Paths (all under `/apis`, parsed in [`path`]):
//! - `/apis`, `/apis/{group}`, `/apis/{group}/{version}`: discovery;
//! - `/apis/{group}/{version}/namespaces/{ns}/{plural}[/{name}[/status]]`: namespaced resources;
//! - `/apis/{group}/{version}/{plural}[/{name}[/status]]`: cluster-scoped resources, and lists of
//!   a namespaced kind across all namespaces.

mod auth;
mod discovery;
mod error;
mod limits;
mod metrics;
mod patch;
mod path;
mod resources;
mod table;
mod watch;

use std::sync::Arc;

use admission::Admission;
use axum::Router;
use axum::routing::get;

pub use auth::{TOKEN_ISSUED, TOKEN_REVOKED, TokenRecord, Tokens, read_token_file};
pub use error::Error;
pub use limits::{DEFAULT_WRITES_PER_SECOND, RateLimit};
pub use metrics::Metrics;

/// Largest request body accepted, and largest object a patch may make (a resource is small;
/// artifacts' bytes go to the CAS).
pub const MAX_BODY: usize = 3 << 20;

/// What every handler shares.
#[derive(Clone, Debug)]
pub struct AppState {
    /// Every write goes through here.
    pub admission: Arc<Admission>,
    /// The bearer tokens accepted.
    pub tokens: Tokens,
    /// How far back (in events) a watch may start; older ones get `410 Gone` and list again.
    pub watch_window: u64,
    /// How often a watch that asked for bookmarks gets one.
    pub bookmark_interval: std::time::Duration,
    /// Request counters for `/metrics`.
    pub metrics: Metrics,
    /// Writes per second per identity.
    pub write_limit: RateLimit,
}

/// The default watch window: a hundred thousand events.
pub const DEFAULT_WATCH_WINDOW: u64 = 100_000;

/// The whole API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/version", get(discovery::version))
        .route("/api", get(discovery::core_versions))
        .route("/apis", get(groups))
        .route("/openapi/v3", get(openapi_index))
        .route("/openapi/v3/apis/{group}/{version}", get(openapi_group_version))
        .route("/apis/{*rest}", axum::routing::any(resources::dispatch))
        .route("/metrics", get(metrics::render))
        .route("/r5e/v1/explain", axum::routing::post(resources::explain))
        .route("/r5e/v1/events", get(resources::events))
        .fallback(|| async { Error::NotFound("no such path: see /apis for what this server serves".into()) })
        .method_not_allowed_fallback(|| async {
            Error::MethodNotAllowed("this path takes only GET (and POST for /r5e/v1/explain)".into(), "GET, POST")
        })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(MAX_BODY))
        .layer(axum::middleware::from_fn(limits::status_for_too_large))
        .layer(axum::middleware::from_fn_with_state(state.clone(), metrics::count))
        .with_state(state)
}

/// `GET /apis`, for authenticated callers.
async fn groups(
    state: axum::extract::State<AppState>,
    headers: axum::http::HeaderMap,
) -> Result<axum::Json<serde_json::Value>, Error> {
    state.tokens.authenticate(&headers).await?;
    discovery::groups(state).await
}

/// `GET /openapi/v3`.
async fn openapi_index(
    state: axum::extract::State<AppState>,
    headers: axum::http::HeaderMap,
) -> Result<axum::Json<serde_json::Value>, Error> {
    state.tokens.authenticate(&headers).await?;
    discovery::openapi_index(&state).await
}

/// `GET /openapi/v3/apis/{group}/{version}`.
async fn openapi_group_version(
    state: axum::extract::State<AppState>,
    axum::extract::Path((group, version)): axum::extract::Path<(String, String)>,
    headers: axum::http::HeaderMap,
) -> Result<axum::Json<serde_json::Value>, Error> {
    state.tokens.authenticate(&headers).await?;
    discovery::openapi_group_version(&state, &group, &version).await
}

/// Ready when the store answers and can write: after a failed commit (a full disk), `503` with
/// a `Status` saying so, until a write or the store's own probe (at most one a second, whoever
/// asks) succeeds again.
async fn readyz(axum::extract::State(state): axum::extract::State<AppState>) -> Result<&'static str, Error> {
    let events = &state.admission.store().events;
    events.head().await?;
    events.check_writable().await?;
    Ok("ok")
}
