//! Discovery: what kubectl and client libraries read to learn which kinds exist and how to reach
//! them, built from the kind registry and the stored CustomResourceDefinitions.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use domain::kinds::{self, crd_kind_info};
use serde_json::{Value, json};

use crate::{AppState, Error};

/// A kind the API serves: built in, or defined by a CustomResourceDefinition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedKind {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub short_names: Vec<String>,
    pub namespaced: bool,
    /// Defined by a CustomResourceDefinition.
    pub custom: bool,
    /// The columns of `kubectl get` (besides Name).
    pub columns: Vec<Column>,
}

/// One printer column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    /// `string`, `integer`, `number`, `boolean` or `date`.
    pub type_: String,
    /// A simple JSONPath (`.status.phase`).
    pub json_path: String,
}

impl ServedKind {
    pub fn api_version(&self) -> String {
        format!("{}/{}", self.group, self.version)
    }
}

/// Every kind served now.
pub async fn served(state: &AppState) -> Result<Vec<ServedKind>, Error> {
    let mut out: Vec<ServedKind> = kinds::builtin()
        .iter()
        .map(|k| ServedKind {
            group: k.group.into(),
            version: k.version.into(),
            kind: k.kind.into(),
            plural: k.plural.into(),
            singular: k.singular.into(),
            short_names: k.short_names.iter().map(|s| s.to_string()).collect(),
            namespaced: k.namespaced,
            custom: false,
            columns: k
                .printer_columns
                .iter()
                .map(|c| Column { name: c.name.into(), type_: c.type_.into(), json_path: c.json_path.into() })
                .collect(),
        })
        .collect();
    let crds = state
        .admission
        .store()
        .graph
        .query_by_labels(&Default::default(), Some("CustomResourceDefinition"), None)
        .await?;
    out.extend(crds.iter().filter_map(|c| crd_kind_info(c).ok()).map(|c| {
        ServedKind {
            group: c.group,
            version: c.version,
            kind: c.kind,
            plural: c.plural,
            singular: c.singular,
            short_names: c.short_names,
            namespaced: c.namespaced,
            custom: true,
            columns: c
                .printer_columns
                .iter()
                .map(|p| Column { name: p.name.clone(), type_: p.type_.clone(), json_path: p.json_path.clone() })
                .chain(std::iter::once(Column {
                    name: "Age".into(),
                    type_: "date".into(),
                    json_path: ".metadata.creationTimestamp".into(),
                }))
                .collect(),
        }
    }));
    Ok(out)
}

/// The kind served at `group/version/plural`.
pub async fn resolve(state: &AppState, group: &str, version: &str, plural: &str) -> Result<ServedKind, Error> {
    served(state)
        .await?
        .into_iter()
        .find(|k| k.group == group && k.version == version && k.plural == plural)
        .ok_or_else(|| {
            Error::NotFound(format!(
                "the server could not find the requested resource: {group}/{version} has no `{plural}`"
            ))
        })
}

/// `GET /version`.
pub async fn version() -> Json<Value> {
    Json(json!({
        "major": "1",
        "minor": "30",
        "gitVersion": format!("v1.30.0+r5e-{}", env!("CARGO_PKG_VERSION")),
        "platform": format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
    }))
}

/// `GET /api`: the legacy core group, which r5e does not serve (no versions).
pub async fn core_versions() -> Json<Value> {
    Json(json!({"kind": "APIVersions", "versions": [],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}]}))
}

fn group_json(group: &str, versions: &[String]) -> Value {
    let versions: Vec<Value> =
        versions.iter().map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v})).collect();
    json!({"name": group, "versions": versions, "preferredVersion": versions[0]})
}

fn groups_of(kinds: &[ServedKind]) -> BTreeMap<String, Vec<String>> {
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for k in kinds {
        let versions = groups.entry(k.group.clone()).or_default();
        if !versions.contains(&k.version) {
            versions.push(k.version.clone());
        }
    }
    groups
}

/// `GET /apis`.
pub async fn groups(State(state): State<AppState>) -> Result<Json<Value>, Error> {
    let kinds = served(&state).await?;
    let groups: Vec<Value> = groups_of(&kinds).iter().map(|(g, v)| group_json(g, v)).collect();
    Ok(Json(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})))
}

/// `GET /apis/{group}`.
pub async fn group(state: &AppState, group: &str) -> Result<Json<Value>, Error> {
    let kinds = served(state).await?;
    let groups = groups_of(&kinds);
    let versions = groups.get(group).ok_or_else(|| Error::NotFound(format!("no API group `{group}`")))?;
    let mut body = group_json(group, versions);
    body["kind"] = json!("APIGroup");
    body["apiVersion"] = json!("v1");
    Ok(Json(body))
}

/// `GET /apis/{group}/{version}`: each kind, and its status subresource.
pub async fn resources(state: &AppState, group: &str, version: &str) -> Result<Json<Value>, Error> {
    let kinds: Vec<ServedKind> =
        served(state).await?.into_iter().filter(|k| k.group == group && k.version == version).collect();
    if kinds.is_empty() {
        return Err(Error::NotFound(format!("no API group version `{group}/{version}`")));
    }
    let mut resources = Vec::new();
    for k in &kinds {
        resources.push(json!({
            "name": k.plural, "singularName": k.singular, "namespaced": k.namespaced, "kind": k.kind,
            "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
            "shortNames": k.short_names,
        }));
        resources.push(json!({
            "name": format!("{}/status", k.plural), "singularName": "", "namespaced": k.namespaced, "kind": k.kind,
            "verbs": ["get", "patch", "update"],
        }));
    }
    Ok(Json(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": format!("{group}/{version}"), "resources": resources}),
    ))
}

/// `GET /openapi/v3`: one document per group version.
pub async fn openapi_index(state: &AppState) -> Result<Json<Value>, Error> {
    let kinds = served(state).await?;
    let paths: serde_json::Map<String, Value> = groups_of(&kinds)
        .iter()
        .flat_map(|(g, versions)| versions.iter().map(move |v| (g, v)))
        .map(|(g, v)| (format!("apis/{g}/{v}"), json!({"serverRelativeURL": format!("/openapi/v3/apis/{g}/{v}")})))
        .collect();
    Ok(Json(json!({ "paths": paths })))
}

/// `GET /openapi/v3/apis/{group}/{version}`: each kind as an open object tagged with its
/// group, version and kind, and its paths with the operations they take. The paths say that the
/// server validates fields itself (`fieldValidation`), so clients leave validation to it: admission
/// checks every field against the full JSON Schema, with errors that name them.
pub async fn openapi_group_version(state: &AppState, group: &str, version: &str) -> Result<Json<Value>, Error> {
    let kinds: Vec<ServedKind> =
        served(state).await?.into_iter().filter(|k| k.group == group && k.version == version).collect();
    if kinds.is_empty() {
        return Err(Error::NotFound(format!("no API group version `{group}/{version}`")));
    }
    let mut schemas = serde_json::Map::new();
    let mut paths = serde_json::Map::new();
    for k in &kinds {
        let gvk = json!({"group": k.group, "version": k.version, "kind": k.kind});
        schemas.insert(
            schema_name(k),
            json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true, "x-kubernetes-group-version-kind": [gvk]}),
        );
        let base = if k.namespaced {
            format!("/apis/{group}/{version}/namespaces/{{namespace}}/{}", k.plural)
        } else {
            format!("/apis/{group}/{version}/{}", k.plural)
        };
        let operation = |verb: &str| {
            json!({
                "operationId": format!("{verb}{}", k.kind),
                "x-kubernetes-action": verb,
                "x-kubernetes-group-version-kind": gvk,
                "parameters": [
                    {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
                    {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}}
                ],
                "responses": {"200": {"description": "OK"}},
            })
        };
        paths.insert(base.clone(), json!({"post": operation("post"), "get": operation("list")}));
        paths.insert(format!("{base}/{{name}}"), json!({"get": operation("get"), "put": operation("put"), "patch": operation("patch"), "delete": operation("delete")}));
    }
    Ok(Json(json!({
        "openapi": "3.0.0",
        "info": {"title": "r5e", "version": format!("{group}/{version}")},
        "paths": paths,
        "components": {"schemas": schemas},
    })))
}

/// The OpenAPI name of a kind: reversed group, version, kind (`ai.r5e.v1alpha1.Task`).
fn schema_name(k: &ServedKind) -> String {
    let reversed: Vec<&str> = k.group.split('.').rev().collect();
    format!("{}.{}.{}", reversed.join("."), k.version, k.kind)
}
