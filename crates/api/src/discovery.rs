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
        })
        .collect();
    let crds = state
        .admission
        .store()
        .graph
        .query_by_labels(&Default::default(), Some("CustomResourceDefinition"), None)
        .await?;
    out.extend(crds.iter().filter_map(|c| crd_kind_info(c).ok()).map(|c| ServedKind {
        group: c.group,
        version: c.version,
        kind: c.kind,
        plural: c.plural,
        singular: c.singular,
        short_names: c.short_names,
        namespaced: c.namespaced,
        custom: true,
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

/// `GET /api`: the core group, which r5e does not populate.
pub async fn core_versions() -> Json<Value> {
    Json(json!({"kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}]}))
}

/// `GET /api/v1`.
pub async fn core_resources() -> Json<Value> {
    Json(json!({"kind": "APIResourceList", "groupVersion": "v1", "resources": []}))
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
