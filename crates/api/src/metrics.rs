//! `/metrics` in the Prometheus text format: requests by status code, and the event log's head
//! and group-commit counters.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::{AppState, Error};

/// Counters the server keeps.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    requests: Arc<Mutex<BTreeMap<u16, u64>>>,
}

/// Count every response by its status code.
pub async fn count(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    *state.metrics.requests.lock().expect("metrics lock").entry(response.status().as_u16()).or_default() += 1;
    response
}

/// `GET /metrics`.
pub async fn render(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Result<Response, Error> {
    state.tokens.authenticate(&headers).await?;
    let events = &state.admission.store().events;
    let head = events.head().await?.seq;
    let stats = events.stats();
    let mut out = String::new();
    out.push_str(
        "# HELP r5e_http_requests_total HTTP responses by status code.\n# TYPE r5e_http_requests_total counter\n",
    );
    for (code, n) in state.metrics.requests.lock().expect("metrics lock").iter() {
        out.push_str(&format!("r5e_http_requests_total{{code=\"{code}\"}} {n}\n"));
    }
    out.push_str(&format!(
        "# HELP r5e_event_log_head The seq of the last event.\n# TYPE r5e_event_log_head gauge\nr5e_event_log_head {head}\n\
         # HELP r5e_event_commits_total Transactions committed by this server's sequencer.\n# TYPE r5e_event_commits_total counter\nr5e_event_commits_total {}\n\
         # HELP r5e_events_committed_total Events committed by this server's sequencer.\n# TYPE r5e_events_committed_total counter\nr5e_events_committed_total {}\n",
        stats.batches, stats.entries
    ));
    Ok(([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response())
}
