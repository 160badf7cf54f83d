//! Discovery: what kubectl and client libraries read to learn which kinds exist and how to reach
//! them, built from the kind registry and the stored CustomResourceDefinitions.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use domain::kinds::{self, CustomKind, KindInfo, crd_kind_info};
use serde_json::{Value, json};

use crate::{AppState, Error};

mod openapi;
mod openapi_meta;
mod openapi_schema;

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
    let mut out: Vec<ServedKind> = kinds::builtin().iter().map(builtin_kind).collect();
    out.extend(custom_kinds(state).await?.iter().map(custom_kind));
    Ok(out)
}

/// The kinds the stored CustomResourceDefinitions define (those that define one well).
async fn custom_kinds(state: &AppState) -> Result<Vec<CustomKind>, Error> {
    let crds = state
        .admission
        .store()
        .graph
        .query_by_labels(&Default::default(), Some("CustomResourceDefinition"), None)
        .await?;
    Ok(crds.iter().filter_map(|c| crd_kind_info(c).ok()).collect())
}

fn builtin_kind(k: &KindInfo) -> ServedKind {
    ServedKind {
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
    }
}

fn custom_kind(c: &CustomKind) -> ServedKind {
    ServedKind {
        group: c.group.clone(),
        version: c.version.clone(),
        kind: c.kind.clone(),
        plural: c.plural.clone(),
        singular: c.singular.clone(),
        short_names: c.short_names.clone(),
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
    let group_versions: Vec<(String, String)> = groups_of(&kinds)
        .into_iter()
        .flat_map(|(g, versions)| versions.into_iter().map(move |v| (g.clone(), v)))
        .collect();
    Ok(Json(openapi::index(&group_versions)))
}

/// `GET /openapi/v3/apis/{group}/{version}`: every path of the group version with its parameters,
/// bodies and answers, and every kind with its full schema.
pub async fn openapi_group_version(state: &AppState, group: &str, version: &str) -> Result<Json<Value>, Error> {
    let mut kinds: Vec<(ServedKind, Value)> = kinds::builtin()
        .iter()
        .filter(|k| k.group == group && k.version == version)
        .map(|k| (builtin_kind(k), (k.schema)()))
        .collect();
    kinds.extend(
        custom_kinds(state)
            .await?
            .into_iter()
            .filter(|c| c.group == group && c.version == version)
            .map(|c| (custom_kind(&c), c.schema)),
    );
    if kinds.is_empty() {
        return Err(Error::NotFound(format!("no API group version `{group}/{version}`")));
    }
    Ok(Json(openapi::document(group, version, &kinds)))
}
