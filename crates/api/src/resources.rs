//! Resource handlers: list, create, get, update, patch and delete, on objects and on their status
//! subresource. Reads are decided by policy; writes go through admission; nothing else touches
//! storage.

use std::collections::HashMap;

use admission::{Identity, Operation};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use domain::{ObjectKey, Resource, Selector};
use policy::Action;
use serde_json::{Value, json};
use storage::ListQuery;

use crate::discovery::{self, ServedKind};
use crate::path::{self, ResourcePath, Target};
use crate::{AppState, Error, patch, table, watch};

/// How often a PATCH is retried when the object changes under it.
const PATCH_RETRIES: usize = 5;

/// `ANY /apis/{*rest}`.
pub async fn dispatch(
    State(state): State<AppState>,
    method: Method,
    Path(rest): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Error> {
    let who = state.tokens.authenticate(&headers)?;
    match path::parse(&rest)? {
        Target::Group { group } => {
            only_get(&method)?;
            discovery::group(&state, &group).await.map(IntoResponse::into_response)
        }
        Target::GroupVersion { group, version } => {
            only_get(&method)?;
            discovery::resources(&state, &group, &version).await.map(IntoResponse::into_response)
        }
        Target::Resource(p) => resource(&state, &who, method, p, &query, &headers, body).await,
    }
}

fn only_get(method: &Method) -> Result<(), Error> {
    if method == Method::GET { Ok(()) } else { Err(Error::MethodNotAllowed(format!("{method} is not allowed here"))) }
}

async fn resource(
    state: &AppState,
    who: &Identity,
    method: Method,
    p: ResourcePath,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, Error> {
    let kind = discovery::resolve(state, &p.group, &p.version, &p.plural).await?;
    if !kind.namespaced && p.namespace.is_some() {
        return Err(Error::NotFound(format!("{} is cluster-scoped: address it without /namespaces/", kind.kind)));
    }
    if kind.namespaced && p.namespace.is_none() && p.name.is_some() {
        return Err(Error::NotFound(format!(
            "{} lives in a namespace: address it under /namespaces/{{ns}}/",
            kind.kind
        )));
    }
    let namespace = p.namespace.clone().unwrap_or_default();
    let key = |name: &str| ObjectKey::new(&kind.kind, &namespace, name);
    if query.get("dryRun").is_some_and(|d| d == "All") && method != Method::GET {
        return dry_run(state, who, &kind, &namespace, &method, &p, &body, headers).await;
    }
    match (method.clone(), p.name.as_deref(), p.status) {
        (Method::GET, None, false) => list(state, who, &kind, p.namespace.as_deref(), query, headers).await,
        (Method::POST, None, false) => {
            let object = object_from(&kind, &namespace, None, &body, headers)?;
            let created = state.admission.create(who, object).await?;
            Ok((StatusCode::CREATED, Json(created)).into_response())
        }
        (Method::GET, Some(name), _) => {
            state.admission.authorize_read(who, Action::Get, &key(name)).await?;
            let object = state.admission.store().graph.get(&key(name)).await?;
            if table::wanted(headers) {
                let rv = object.metadata.resource_version.clone().unwrap_or_default();
                return Ok(Json(table::table(&kind, &[object.to_value()], &rv, chrono::Utc::now())).into_response());
            }
            Ok(Json(object).into_response())
        }
        (Method::PUT, Some(name), status) => {
            let object = object_from(&kind, &namespace, Some(name), &body, headers)?;
            let written = if status {
                state.admission.update_status(who, object).await?
            } else {
                state.admission.update(who, object).await?
            };
            Ok(Json(written).into_response())
        }
        (Method::PATCH, Some(name), status) => patch_object(state, who, &key(name), status, &body, headers).await,
        (Method::DELETE, Some(name), false) => {
            let expected = delete_precondition(&body)?;
            Ok(Json(state.admission.delete(who, &key(name), expected).await?).into_response())
        }
        _ => Err(Error::MethodNotAllowed(format!("{method} is not allowed on this path"))),
    }
}

/// The JSON body as a resource of `kind`: `apiVersion`, `kind` and the namespace filled in from
/// the path when absent and refused when they disagree with it.
fn object_from(
    kind: &ServedKind,
    namespace: &str,
    name: Option<&str>,
    body: &Bytes,
    headers: &HeaderMap,
) -> Result<Value, Error> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/json");
    if !content_type.starts_with("application/json") {
        return Err(Error::UnsupportedMediaType(format!("send the object as application/json, not {content_type}")));
    }
    let mut object: Value =
        serde_json::from_slice(body).map_err(|e| Error::BadRequest(format!("the body is not valid JSON: {e}")))?;
    let Some(map) = object.as_object_mut() else {
        return Err(Error::BadRequest("the body must be a JSON object".into()));
    };
    for (field, want) in [("apiVersion", kind.api_version()), ("kind", kind.kind.clone())] {
        match map.get(field).and_then(Value::as_str) {
            None => {
                map.insert(field.into(), json!(want));
            }
            Some(got) if got == want => {}
            Some(got) => {
                return Err(Error::BadRequest(format!(
                    "{field} `{got}` does not match the path, which serves `{want}`"
                )));
            }
        }
    }
    let meta = map.entry("metadata").or_insert_with(|| json!({}));
    let Some(meta) = meta.as_object_mut() else { return Err(Error::BadRequest("metadata must be an object".into())) };
    if kind.namespaced {
        match meta.get("namespace").and_then(Value::as_str) {
            None => {
                meta.insert("namespace".into(), json!(namespace));
            }
            Some(ns) if ns == namespace => {}
            Some(ns) => {
                return Err(Error::BadRequest(format!(
                    "the namespace of the object (`{ns}`) does not match the namespace of the request (`{namespace}`)"
                )));
            }
        }
    }
    if let Some(name) = name {
        match meta.get("name").and_then(Value::as_str) {
            None => {
                meta.insert("name".into(), json!(name));
            }
            Some(n) if n == name => {}
            Some(n) => {
                return Err(Error::BadRequest(format!(
                    "the name of the object (`{n}`) does not match the path (`{name}`)"
                )));
            }
        }
    }
    Ok(object)
}

async fn list(
    state: &AppState,
    who: &Identity,
    kind: &ServedKind,
    namespace: Option<&str>,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<Response, Error> {
    let watching = query.get("watch").is_some_and(|w| w == "true" || w == "1");
    let action_key = ObjectKey::new(&kind.kind, namespace.unwrap_or_default(), "");
    let action = if watching { Action::Watch } else { Action::List };
    state.admission.authorize_read(who, action, &action_key).await?;
    let selector: Selector = query
        .get("labelSelector")
        .map(|s| s.parse().map_err(|e: domain::selector::ParseError| Error::BadRequest(e.to_string())))
        .transpose()?
        .unwrap_or_default();
    if watching {
        let (after, bookmarks, timeout) = watch::params(query)?;
        let w = watch::Watch {
            kind: kind.clone(),
            namespace: namespace.map(str::to_string),
            selector,
            after,
            bookmarks: bookmarks.then_some(state.bookmark_interval),
            timeout,
            table: table::wanted(headers),
        };
        return watch::serve(state, w, state.watch_window).await;
    }
    let fields = FieldSelector::parse(query.get("fieldSelector").map(String::as_str).unwrap_or(""))?;
    let limit = query
        .get("limit")
        .map(|l| l.parse::<usize>().map_err(|_| Error::BadRequest(format!("limit `{l}` is not a number"))))
        .transpose()?
        .filter(|l| *l > 0);
    let list_query = ListQuery {
        kind: Some(kind.kind.clone()),
        namespace: namespace.map(str::to_string),
        selector,
        limit,
        ..Default::default()
    };
    let page = state.admission.store().graph.list(list_query, query.get("continue").map(String::as_str)).await?;
    let items: Vec<Resource> = page.items.into_iter().filter(|r| fields.matches(r)).collect();
    if table::wanted(headers) {
        let objects: Vec<Value> = items.iter().map(Resource::to_value).collect();
        let mut t = table::table(kind, &objects, &page.resource_version.to_string(), chrono::Utc::now());
        if let Some(token) = &page.continue_token {
            t["metadata"]["continue"] = json!(token);
        }
        return Ok(Json(t).into_response());
    }
    let mut metadata = json!({"resourceVersion": page.resource_version.to_string()});
    if let Some(token) = page.continue_token {
        metadata["continue"] = json!(token);
    }
    Ok(Json(json!({"apiVersion": kind.api_version(), "kind": format!("{}List", kind.kind), "metadata": metadata, "items": items}))
        .into_response())
}

/// `fieldSelector` on `metadata.name` and `metadata.namespace` (`=`, `==`, `!=`, comma = and).
struct FieldSelector(Vec<(String, bool, String)>);

impl FieldSelector {
    fn parse(text: &str) -> Result<FieldSelector, Error> {
        let mut out = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (field, equal, value) = if let Some((f, v)) = part.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                (f, true, v)
            } else {
                return Err(Error::BadRequest(format!(
                    "field selector `{part}` must be `field=value` or `field!=value`"
                )));
            };
            if !matches!(field.trim(), "metadata.name" | "metadata.namespace") {
                return Err(Error::BadRequest(format!(
                    "field `{field}` is not supported in a field selector: use metadata.name or metadata.namespace"
                )));
            }
            out.push((field.trim().to_string(), equal, value.trim().to_string()));
        }
        Ok(FieldSelector(out))
    }

    fn matches(&self, r: &Resource) -> bool {
        self.0.iter().all(|(field, equal, value)| {
            let actual = match field.as_str() {
                "metadata.name" => r.metadata.name.as_str(),
                _ => r.metadata.namespace.as_deref().unwrap_or(""),
            };
            (actual == value) == *equal
        })
    }
}

async fn patch_object(
    state: &AppState,
    who: &Identity,
    key: &ObjectKey,
    status: bool,
    body: &Bytes,
    headers: &HeaderMap,
) -> Result<Response, Error> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let patch_body: Value =
        serde_json::from_slice(body).map_err(|e| Error::BadRequest(format!("the patch is not valid JSON: {e}")))?;
    let pinned = patch_body.pointer("/metadata/resourceVersion").is_some();
    for _ in 0..PATCH_RETRIES {
        let current = state.admission.store().graph.get(key).await?.to_value();
        let patched = match content_type.split(';').next().unwrap_or("") {
            "application/merge-patch+json" => {
                let mut doc = current;
                patch::merge(&mut doc, &patch_body);
                doc
            }
            "application/json-patch+json" => patch::json_patch(&current, &patch_body).map_err(Error::BadRequest)?,
            other => {
                return Err(Error::UnsupportedMediaType(format!(
                    "patch type `{other}` is not supported: use application/merge-patch+json or application/json-patch+json"
                )));
            }
        };
        let outcome = if status {
            state.admission.update_status(who, patched).await
        } else {
            state.admission.update(who, patched).await
        };
        match outcome {
            // Patched against a version that changed meanwhile: patch the new one.
            Err(admission::Error::Storage(storage::Error::Conflict(_))) if !pinned => continue,
            other => return Ok(Json(other?).into_response()),
        }
    }
    Err(storage::Error::Conflict(format!("{key} is changing too fast to patch; retry")).into())
}

/// `preconditions.resourceVersion` from an optional DeleteOptions body.
fn delete_precondition(body: &Bytes) -> Result<Option<u64>, Error> {
    if body.is_empty() {
        return Ok(None);
    }
    let options: Value =
        serde_json::from_slice(body).map_err(|e| Error::BadRequest(format!("DeleteOptions is not valid JSON: {e}")))?;
    match options.pointer("/preconditions/resourceVersion").and_then(Value::as_str) {
        None => Ok(None),
        Some(rv) => rv.parse().map(Some).map_err(|_| Error::BadRequest(format!("resourceVersion `{rv}` is not valid"))),
    }
}

/// `?dryRun=All`: every admission stage, nothing written and nothing recorded. Allowed requests
/// answer with the object as sent and an `X-R5e-Admission` header saying which policies allowed
/// it; refused ones with the error they would get.
#[allow(clippy::too_many_arguments)]
async fn dry_run(
    state: &AppState,
    who: &Identity,
    kind: &ServedKind,
    namespace: &str,
    method: &Method,
    p: &ResourcePath,
    body: &Bytes,
    headers: &HeaderMap,
) -> Result<Response, Error> {
    let (operation, object) = match (method.clone(), p.name.as_deref(), p.status) {
        (Method::POST, None, false) => (Operation::Create, object_from(kind, namespace, None, body, headers)?),
        (Method::PUT, Some(name), false) => {
            (Operation::Update, object_from(kind, namespace, Some(name), body, headers)?)
        }
        (Method::PUT, Some(name), true) => {
            (Operation::UpdateStatus, object_from(kind, namespace, Some(name), body, headers)?)
        }
        (Method::DELETE, Some(name), false) => {
            let key = ObjectKey::new(&kind.kind, namespace, name);
            (Operation::Delete, state.admission.store().graph.get(&key).await?.to_value())
        }
        _ => return Err(Error::MethodNotAllowed(format!("{method} cannot be dry-run on this path"))),
    };
    let review = state.admission.review(who, operation, object.clone()).await;
    review.outcome?;
    let code = if operation == Operation::Create { StatusCode::CREATED } else { StatusCode::OK };
    let verdict = format!("allowed by {}; policy set {}", review.policies.join(", "), review.policy_set);
    Ok((code, [("x-r5e-admission", verdict)], Json(object)).into_response())
}

/// `POST /r5e/v1/explain`: what admission would decide for `{"operation": "create" | "update" |
/// "update_status" | "delete", "object": {...}}` by the caller, and why. Writes nothing.
pub async fn explain(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, Error> {
    let who = state.tokens.authenticate(&headers)?;
    let request: Value =
        serde_json::from_slice(&body).map_err(|e| Error::BadRequest(format!("the body is not valid JSON: {e}")))?;
    let operation = match request.get("operation").and_then(Value::as_str).unwrap_or("create") {
        "create" => Operation::Create,
        "update" => Operation::Update,
        "update_status" => Operation::UpdateStatus,
        "delete" => Operation::Delete,
        other => {
            return Err(Error::BadRequest(format!("operation `{other}`: use create, update, update_status or delete")));
        }
    };
    let object = request.get("object").cloned().ok_or_else(|| Error::BadRequest("`object` is required".into()))?;
    let review = state.admission.review(&who, operation, object).await;
    let (allowed, stage, reason) = match &review.outcome {
        Ok(()) => (true, Value::Null, json!(format!("allowed by {}", review.policies.join(", ")))),
        Err(admission::Error::Invalid { stage, .. } | admission::Error::Forbidden { stage, .. }) => {
            (false, json!(stage.to_string()), json!(review.outcome.as_ref().unwrap_err().to_string()))
        }
        Err(e) => return Err(Error::Admission(e.clone())),
    };
    Ok(Json(json!({
        "actor": who.actor(), "allowed": allowed, "stage": stage, "reason": reason,
        "policies": review.policies, "policySet": review.policy_set.to_string(),
    }))
    .into_response())
}

/// `GET /r5e/v1/events?from=&to=&type=&subject=&limit=`: stored events as JSON Lines, each line
/// the event's canonical bytes exactly (what `r5e audit export` writes). Reading the log is the
/// action `get` on `r5e::AuditLog::"events"`.
pub async fn events(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, Error> {
    let who = state.tokens.authenticate(&headers)?;
    state.admission.authorize_read(&who, Action::Get, &ObjectKey::new("AuditLog", "", "events")).await?;
    let number = |name: &str| -> Result<Option<u64>, Error> {
        query
            .get(name)
            .map(|v| v.parse().map_err(|_| Error::BadRequest(format!("{name} `{v}` is not a number"))))
            .transpose()
    };
    let limit = number("limit")?.unwrap_or(10_000).min(100_000) as usize;
    let q = storage::EventQuery {
        from_seq: number("from")?,
        to_seq: number("to")?,
        types: query.get("type").map(|t| t.split(',').map(str::to_string).collect()).unwrap_or_default(),
        subject: query.get("subject").cloned(),
        limit: Some(limit),
    };
    let mut body = Vec::new();
    for e in state.admission.store().events.query_raw(&q).await? {
        body.extend_from_slice(&e.bytes);
        body.push(b'\n');
    }
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}
