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
use domain::json::shorten;
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
    let who = state.tokens.authenticate(&headers).await?;
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
    if method == Method::GET {
        Ok(())
    } else {
        Err(Error::MethodNotAllowed(format!("{method} is not allowed here"), "GET"))
    }
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
    let takes = matches!(
        (&method, p.name.is_some(), p.status),
        (&Method::GET, _, _)
            | (&Method::POST, false, false)
            | (&Method::PUT | &Method::PATCH, true, _)
            | (&Method::DELETE, true, false)
    );
    if !takes {
        return Err(not_allowed(&method, &p));
    }
    let dry_run = match query.get("dryRun").map(String::as_str) {
        None => false,
        Some("All") => true,
        Some(other) => {
            return Err(Error::BadRequest(format!(
                "dryRun `{}` is not supported: the only value is `All`",
                shorten(other, 64)
            )));
        }
    };
    if let Some(v) = query.get("fieldValidation")
        && !matches!(v.as_str(), "Strict" | "Warn" | "Ignore")
    {
        return Err(Error::BadRequest(format!(
            "fieldValidation `{}` is not one of Strict, Warn, Ignore (r5e always validates strictly)",
            shorten(v, 64)
        )));
    }
    if method != Method::GET && method != Method::DELETE && !body.is_empty() {
        body_type(headers, &method)?;
    }
    if matches!(method, Method::POST | Method::PUT | Method::PATCH | Method::DELETE) {
        state.write_limit.take(&who.actor()).map_err(|wait| {
            Error::TooManyRequests(
                format!("{} is writing faster than its limit; retry in {} ms", who.actor(), wait.as_millis().max(1)),
                wait,
            )
        })?;
    }
    let status_action = |status: bool| if status { Action::UpdateStatus } else { Action::Update };
    // Authorise what the request names before any stored object is read or any body applied.
    match (&method, p.name.as_deref(), p.status) {
        (&Method::GET, Some(name), _) => state.admission.authorize_request(who, Action::Get, &key(name)).await?,
        (&Method::PUT, Some(name), status) => {
            state.admission.authorize_request(who, status_action(status), &key(name)).await?
        }
        (&Method::PATCH, Some(name), status) => {
            // A patch is applied to the stored object and its errors may quote it: only a caller
            // who may read the object may patch it.
            state.admission.authorize_request(who, Action::Get, &key(name)).await?;
            state.admission.authorize_request(who, status_action(status), &key(name)).await?
        }
        (&Method::DELETE, Some(name), false) => {
            state.admission.authorize_request(who, Action::Delete, &key(name)).await?
        }
        _ => {}
    }
    if dry_run && method != Method::GET {
        return dry_run_request(state, who, &kind, &namespace, &method, &p, &body, headers).await;
    }
    match (method.clone(), p.name.as_deref(), p.status) {
        (Method::GET, None, false) => list(state, who, &kind, p.namespace.as_deref(), query, headers).await,
        (Method::POST, None, false) => {
            let object = object_from(&kind, &namespace, None, &body, headers)?;
            state.admission.authorize_request(who, Action::Create, &key(&name_of(&object))).await?;
            let created = state.admission.create(who, object).await?;
            Ok((StatusCode::CREATED, Json(created)).into_response())
        }
        (Method::GET, Some(name), _) => {
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
            let expected = delete_preconditions(state, &key(name), &body, headers).await?;
            let deleted = state.admission.delete(who, &key(name), expected).await?;
            if state.admission.may_read(who, &key(name)).await {
                Ok(Json(deleted).into_response())
            } else {
                // The caller may delete but not read: say it is done without showing the object.
                Ok(Json(json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                               "details": {"name": name, "kind": kind.plural}}))
                .into_response())
            }
        }
        _ => Err(not_allowed(&method, &p)),
    }
}

/// `405` naming the methods the path takes.
fn not_allowed(method: &Method, p: &ResourcePath) -> Error {
    let allow = match (p.name.is_some(), p.status) {
        (false, _) => "GET, POST",
        (true, false) => "GET, PUT, PATCH, DELETE",
        (true, true) => "GET, PUT, PATCH",
    };
    Error::MethodNotAllowed(format!("{method} is not allowed on this path: use {allow}"), allow)
}

/// `metadata.name` of a JSON object, or empty.
fn name_of(object: &Value) -> String {
    object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string()
}

/// The media type of a request body, which must be stated and be one this method accepts.
fn body_type(headers: &HeaderMap, method: &Method) -> Result<String, Error> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Err(Error::UnsupportedMediaType(
            "the request has a body but no Content-Type: send application/json".into(),
        ));
    };
    let media = value.to_str().unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let accepted: &[&str] = if method == Method::PATCH {
        &["application/merge-patch+json", "application/json-patch+json"]
    } else {
        &["application/json"]
    };
    if accepted.contains(&media.as_str()) {
        Ok(media)
    } else {
        Err(Error::UnsupportedMediaType(format!(
            "Content-Type `{}` is not accepted here: use {}",
            shorten(&media, 64),
            accepted.join(" or ")
        )))
    }
}

/// Parse a request body strictly: valid JSON, no key twice in one object.
fn parse_body(body: &Bytes, what: &str) -> Result<Value, Error> {
    domain::json::parse_strict(body).map_err(|e| Error::BadRequest(format!("{what} is not valid JSON: {e}")))
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
    body_type(headers, &Method::POST)?;
    let mut object = parse_body(body, "the body")?;
    let Some(map) = object.as_object_mut() else {
        return Err(Error::BadRequest("the body must be a JSON object".into()));
    };
    for (field, want) in [("apiVersion", kind.api_version()), ("kind", kind.kind.clone())] {
        if map.get(field).is_some_and(|v| !v.is_string()) {
            return Err(Error::BadRequest(format!("{field} must be a string")));
        }
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
        if meta.get("namespace").is_some_and(|v| !v.is_string()) {
            return Err(Error::BadRequest("metadata.namespace must be a string".into()));
        }
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
        if meta.get("name").is_some_and(|v| !v.is_string()) {
            return Err(Error::BadRequest("metadata.name must be a string".into()));
        }
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
    let watching = match query.get("watch").map(String::as_str) {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") => true,
        Some(other) => {
            return Err(Error::BadRequest(format!(
                "watch `{}` is not a boolean: use true or false",
                shorten(other, 64)
            )));
        }
    };
    let action_key = ObjectKey::new(&kind.kind, namespace.unwrap_or_default(), "");
    let action = if watching { Action::Watch } else { Action::List };
    state.admission.authorize_request(who, action, &action_key).await?;
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
            headers: headers.clone(),
        };
        return watch::serve(state, w, state.watch_window).await;
    }
    // A list ignores the watch parameters, but not malformed ones.
    watch::params(query)?;
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

/// PATCH: apply the patch to the stored object and send the result through admission as an
/// update. The caller was authorised to read and update the object before it was read here. A
/// patch that does not apply (a failed `test`, a missing path) is refused and recorded.
async fn patch_object(
    state: &AppState,
    who: &Identity,
    key: &ObjectKey,
    status: bool,
    body: &Bytes,
    headers: &HeaderMap,
) -> Result<Response, Error> {
    body_type(headers, &Method::PATCH)?;
    let pinned = parse_body(body, "the patch")?.pointer("/metadata/resourceVersion").is_some();
    let op = if status { Operation::UpdateStatus } else { Operation::Update };
    for _ in 0..PATCH_RETRIES {
        let current = state.admission.store().graph.get(key).await?.to_value();
        let patched = patched(state, who, key, op, current, body, headers).await?;
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

/// `current` with the PATCH body applied, bounded in size; a patch that does not apply is refused
/// and recorded.
async fn patched(
    state: &AppState,
    who: &Identity,
    key: &ObjectKey,
    op: Operation,
    current: Value,
    body: &Bytes,
    headers: &HeaderMap,
) -> Result<Value, Error> {
    let patch_type = body_type(headers, &Method::PATCH)?;
    let patch_body = parse_body(body, "the patch")?;
    let action = if op == Operation::UpdateStatus { Action::UpdateStatus } else { Action::Update };
    let patched = if patch_type == "application/merge-patch+json" {
        let mut doc = current;
        patch::merge(&mut doc, &patch_body);
        doc
    } else {
        match patch::json_patch(&current, &patch_body, crate::MAX_BODY) {
            Ok(doc) => doc,
            Err(patch::PatchError::TooLarge(m)) => return Err(Error::TooLarge(m)),
            Err(patch::PatchError::Invalid(m)) => {
                let refusal = admission::Error::Invalid {
                    stage: admission::Stage::Request,
                    errors: vec![domain::schema::FieldError::new("", format!("the patch does not apply: {m}"))],
                };
                return Err(state.admission.refuse(who, action, key, refusal).await.into());
            }
        }
    };
    let size = serde_json::to_vec(&patched).map_or(usize::MAX, |b| b.len());
    if size > crate::MAX_BODY {
        return Err(Error::TooLarge(format!(
            "the patched object would be {size} bytes, more than the {} a resource may have",
            crate::MAX_BODY
        )));
    }
    Ok(patched)
}

/// The preconditions of an optional DeleteOptions body: `preconditions.resourceVersion` (a string,
/// as Kubernetes sends it, or a number) and `preconditions.uid`. A uid precondition is turned
/// into a resourceVersion one, so that the object checked is the object deleted.
async fn delete_preconditions(
    state: &AppState,
    key: &ObjectKey,
    body: &Bytes,
    headers: &HeaderMap,
) -> Result<Option<u64>, Error> {
    if body.is_empty() {
        return Ok(None);
    }
    body_type(headers, &Method::DELETE)?;
    let options = parse_body(body, "DeleteOptions")?;
    if let Some(dry) = options.get("dryRun").and_then(Value::as_array)
        && !dry.is_empty()
    {
        return Err(Error::BadRequest("send a dry-run delete as `?dryRun=All`".into()));
    }
    let mut expected = match options.pointer("/preconditions/resourceVersion") {
        None | Some(Value::Null) => None,
        Some(Value::String(rv)) => Some(rv.parse::<u64>().map_err(|_| {
            Error::BadRequest(format!("preconditions.resourceVersion `{}` is not valid", shorten(rv, 64)))
        })?),
        Some(Value::Number(n)) => Some(n.as_u64().ok_or_else(|| {
            Error::BadRequest(format!("preconditions.resourceVersion {n} is not a valid resourceVersion"))
        })?),
        Some(_) => return Err(Error::BadRequest("preconditions.resourceVersion must be a string".into())),
    };
    match options.pointer("/preconditions/uid") {
        None | Some(Value::Null) => {}
        Some(Value::String(uid)) => {
            let current = state.admission.store().graph.get(key).await?;
            if current.metadata.uid.as_deref() != Some(uid.as_str()) {
                return Err(storage::Error::Conflict(format!(
                    "precondition failed: {key} has another uid than `{}`",
                    shorten(uid, 64)
                ))
                .into());
            }
            let rv = current.resource_version();
            if expected.is_some() && expected != rv {
                return Err(storage::Error::Conflict(format!(
                    "precondition failed: {key} is at another resourceVersion"
                ))
                .into());
            }
            expected = rv;
        }
        Some(_) => return Err(Error::BadRequest("preconditions.uid must be a string".into())),
    }
    Ok(expected)
}

/// `?dryRun=All`: every admission stage, nothing written and nothing recorded. Allowed requests
/// answer with the object as sent and an `X-R5e-Admission` header saying which policies allowed
/// it; refused ones with the error they would get. The request was authorised on what it names
/// before this runs.
#[allow(clippy::too_many_arguments)]
async fn dry_run_request(
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
        (Method::POST, None, false) => {
            let object = object_from(kind, namespace, None, body, headers)?;
            let key = ObjectKey::new(&kind.kind, namespace, &name_of(&object));
            state.admission.authorize_request(who, Action::Create, &key).await?;
            (Operation::Create, object)
        }
        (Method::PUT, Some(name), status) => {
            // Replacing needs an object to replace, as the real write does.
            state.admission.store().graph.get(&ObjectKey::new(&kind.kind, namespace, name)).await?;
            let op = if status { Operation::UpdateStatus } else { Operation::Update };
            (op, object_from(kind, namespace, Some(name), body, headers)?)
        }
        (Method::PATCH, Some(name), status) => {
            let key = ObjectKey::new(&kind.kind, namespace, name);
            let current = state.admission.store().graph.get(&key).await?.to_value();
            let op = if status { Operation::UpdateStatus } else { Operation::Update };
            (op, patched(state, who, &key, op, current, body, headers).await?)
        }
        (Method::DELETE, Some(name), false) => {
            let key = ObjectKey::new(&kind.kind, namespace, name);
            let expected = delete_preconditions(state, &key, body, headers).await?;
            let current = state.admission.store().graph.get(&key).await?;
            if expected.is_some() && expected != current.resource_version() {
                return Err(storage::Error::Conflict(format!(
                    "precondition failed: {key} is at another resourceVersion"
                ))
                .into());
            }
            (Operation::Delete, current.to_value())
        }
        _ => return Err(not_allowed(method, p)),
    };
    let review = state.admission.review(who, operation, object.clone()).await;
    review.outcome?;
    let code = if operation == Operation::Create { StatusCode::CREATED } else { StatusCode::OK };
    let verdict = format!("allowed by {}; policy set {}", review.policies.join(", "), review.policy_set);
    let shown = if operation == Operation::Delete && !state.admission.may_read(who, &key_of(&object)).await {
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"})
    } else {
        object
    };
    Ok((code, [("x-r5e-admission", verdict)], Json(shown)).into_response())
}

/// The key a resource's JSON names.
fn key_of(object: &Value) -> ObjectKey {
    let s = |p: &str| object.pointer(p).and_then(Value::as_str).unwrap_or_default().to_string();
    ObjectKey { kind: s("/kind"), namespace: s("/metadata/namespace"), name: s("/metadata/name") }
}

/// `POST /r5e/v1/explain`: what admission would decide for `{"operation": "create" | "update" |
/// "update_status" | "delete", "object": {...}}` by the caller, and why. Writes nothing.
pub async fn explain(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, Error> {
    let who = state.tokens.authenticate(&headers).await?;
    body_type(&headers, &Method::POST)?;
    let request = parse_body(&body, "the body")?;
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
    // Explain only what the caller may ask about: the same answer whether or not it exists.
    let action = match operation {
        Operation::Create => Action::Create,
        Operation::Update => Action::Update,
        Operation::UpdateStatus => Action::UpdateStatus,
        Operation::Delete => Action::Delete,
    };
    let review = match state.admission.check_request(&who, action, &key_of(&object)).await {
        Ok(()) => state.admission.review(&who, operation, object).await,
        Err(refusal) => admission::Review {
            outcome: Err(refusal),
            policies: Vec::new(),
            policy_set: state.admission.policy_set().await,
        },
    };
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
    let who = state.tokens.authenticate(&headers).await?;
    state.admission.authorize_request(&who, Action::Get, &ObjectKey::new("AuditLog", "", "events")).await?;
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
