//! `?watch=true`: a tail of the event log, as Kubernetes watch events (`ADDED`, `MODIFIED`,
//! `DELETED`, `BOOKMARK`), one JSON object per line. A watch resumes by resourceVersion, which is
//! an event's seq, so it never misses or repeats a change.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use domain::Selector;
use domain::chain::Event;
use futures::{Stream, StreamExt};
use serde_json::{Value, json};

use crate::discovery::ServedKind;
use crate::{AppState, Error};

/// What a watch selects.
pub struct Watch {
    pub kind: ServedKind,
    pub namespace: Option<String>,
    pub selector: Selector,
    /// Resume after this resourceVersion; `None` sends the current objects first.
    pub after: Option<u64>,
    /// Send a `BOOKMARK` this often, if set.
    pub bookmarks: Option<Duration>,
    pub timeout: Option<Duration>,
    /// Send each object as a one-row Table (what `kubectl get --watch` asks for).
    pub table: bool,
    /// The request's headers, whose token must stay valid for the watch to go on.
    pub headers: axum::http::HeaderMap,
}

/// How often an open watch checks that its token still authenticates.
pub const TOKEN_CHECK: Duration = Duration::from_secs(1);

/// The watch event for a log event, if it is a change to a resource the watch selects.
fn watch_event(w: &Watch, prefix: &str, e: &Event) -> Option<Value> {
    let type_ = match e.type_.as_str() {
        "resource.created" => "ADDED",
        "resource.updated" => "MODIFIED",
        "resource.deleted" => "DELETED",
        _ => return None,
    };
    if !e.subject.starts_with(prefix) {
        return None;
    }
    let object = e.data.get("object")?;
    if object.get("apiVersion").and_then(Value::as_str) != Some(&w.kind.api_version()) {
        return None;
    }
    let labels =
        object.pointer("/metadata/labels").and_then(|l| serde_json::from_value(l.clone()).ok()).unwrap_or_default();
    w.selector.matches(&labels).then(|| json!({"type": type_, "object": shown(w, object)}))
}

/// The object as the watch sends it: itself, or a one-row Table.
fn shown(w: &Watch, object: &Value) -> Value {
    if !w.table {
        return object.clone();
    }
    let rv = object.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or_default();
    crate::table::table(&w.kind, std::slice::from_ref(object), rv, chrono::Utc::now())
}

fn line(v: &Value) -> Bytes {
    let mut b = serde_json::to_vec(v).expect("values serialise");
    b.push(b'\n');
    Bytes::from(b)
}

/// Serve a watch. `window` is how far back (in events) a watch may start; older ones get `410
/// Gone` and should list again.
pub async fn serve(state: &AppState, w: Watch, window: u64) -> Result<Response, Error> {
    let store = state.admission.store();
    let head = store.events.head().await?.seq;
    let prefix = match &w.namespace {
        Some(ns) => format!("{}/{ns}/", w.kind.kind),
        None => format!("{}/", w.kind.kind),
    };
    let mut initial: Vec<Bytes> = Vec::new();
    let after = match w.after {
        Some(rv) if head.saturating_sub(rv) > window => {
            return Ok(gone(rv, head, window));
        }
        Some(rv) => rv,
        None => {
            // Start with the current state, then everything after the snapshot it came from.
            let query = storage::ListQuery {
                kind: Some(w.kind.kind.clone()),
                namespace: w.namespace.clone(),
                selector: w.selector.clone(),
                ..Default::default()
            };
            let mut token: Option<String> = None;
            let mut snapshot = None;
            loop {
                let page = store.graph.list(query.clone(), token.as_deref()).await?;
                snapshot.get_or_insert(page.resource_version);
                initial.extend(
                    page.items.iter().map(|r| line(&json!({"type": "ADDED", "object": shown(&w, &r.to_value())}))),
                );
                match page.continue_token {
                    Some(t) => token = Some(t),
                    None => break,
                }
            }
            snapshot.unwrap_or(head)
        }
    };
    let kind = w.kind.clone();
    let bookmarks = w.bookmarks;
    let timeout = w.timeout;
    let (tokens, headers, admission) = (state.tokens.clone(), w.headers.clone(), state.admission.clone());
    let token_gone = async move { tokens.until_invalid(headers, TOKEN_CHECK, admission).await };
    let changes = store.events.stream(after).filter_map(move |e| {
        let out = match e {
            Ok(e) => watch_event(&w, &prefix, &e).map(|v| (e.seq, Some(line(&v)))).or(Some((e.seq, None))),
            Err(_) => None,
        };
        async move { out }
    });
    let body = futures::stream::iter(initial.into_iter().map(Ok::<_, Infallible>))
        .chain(tail(changes, kind, bookmarks, after))
        .take_until(Box::pin(token_gone));
    let body: std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, Infallible>> + Send>> = match timeout {
        Some(t) => Box::pin(body.take_until(tokio::time::sleep(t))),
        None => Box::pin(body),
    };
    Ok(([(header::CONTENT_TYPE, "application/json")], Body::from_stream(body)).into_response())
}

/// The changes, with a bookmark carrying the last seq seen at each interval when asked.
fn tail(
    changes: impl Stream<Item = (u64, Option<Bytes>)> + Send + 'static,
    kind: ServedKind,
    bookmarks: Option<Duration>,
    start: u64,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send {
    enum Tick {
        Change(u64, Option<Bytes>),
        Bookmark,
    }
    let changes = changes.map(|(seq, bytes)| Tick::Change(seq, bytes));
    let merged: std::pin::Pin<Box<dyn Stream<Item = Tick> + Send>> = match bookmarks {
        Some(every) => {
            let ticks = futures::stream::unfold((), move |()| async move {
                tokio::time::sleep(every).await;
                Some((Tick::Bookmark, ()))
            });
            Box::pin(futures::stream::select(changes, ticks))
        }
        None => Box::pin(changes),
    };
    merged
        .scan(start, move |last, tick| {
            let out = match tick {
                Tick::Change(seq, bytes) => {
                    *last = seq;
                    bytes
                }
                Tick::Bookmark => Some(line(&json!({"type": "BOOKMARK", "object": {
                    "apiVersion": kind.api_version(), "kind": kind.kind,
                    "metadata": {"resourceVersion": last.to_string()}}}))),
            };
            futures::future::ready(Some(out))
        })
        .filter_map(|b| futures::future::ready(b.map(Ok)))
}

/// `410 Gone` for a watch that starts too far back.
fn gone(rv: u64, head: u64, window: u64) -> Response {
    let message = format!(
        "too old resource version: {rv} (the log is at {head}, and watches may start at most {window} events back); list again and watch from its resourceVersion"
    );
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                      "message": message, "reason": "Expired", "code": 410});
    (StatusCode::GONE, axum::Json(body)).into_response()
}

/// The watch parameters of a list request: where to start, whether to send bookmarks, when to
/// stop.
pub fn params(query: &HashMap<String, String>) -> Result<(Option<u64>, bool, Option<Duration>), Error> {
    let after = match query.get("resourceVersion").map(String::as_str) {
        None | Some("") | Some("0") => None,
        Some(rv) => Some(rv.parse().map_err(|_| Error::BadRequest(format!("resourceVersion `{rv}` is not valid")))?),
    };
    let bookmarks = match query.get("allowWatchBookmarks").map(String::as_str) {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") => true,
        Some(v) => {
            return Err(Error::BadRequest(format!("allowWatchBookmarks `{v}` is not a boolean: use true or false")));
        }
    };
    let timeout = query
        .get("timeoutSeconds")
        .map(|t| {
            t.parse::<u64>()
                .map(Duration::from_secs)
                .map_err(|_| Error::BadRequest(format!("timeoutSeconds `{t}` is not a number")))
        })
        .transpose()?;
    Ok((after, bookmarks, timeout))
}
