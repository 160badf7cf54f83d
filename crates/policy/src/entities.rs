//! The entity model: principals, actions and targets, turned into a Cedar request and the
//! entities it needs.

use std::collections::BTreeMap;
use std::str::FromStr;

use cedar_policy::{Context, Entities, EntityId, EntityTypeName, EntityUid, Request};
use serde_json::{Map, Value, json};

/// What kind of actor a principal is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalKind {
    /// A person.
    User,
    /// A program acting in a namespace.
    ServiceAccount,
    /// An agent session acting under delegated authority.
    Session,
}

impl PrincipalKind {
    fn type_name(self) -> &'static str {
        match self {
            PrincipalKind::User => "r5e::User",
            PrincipalKind::ServiceAccount => "r5e::ServiceAccount",
            PrincipalKind::Session => "r5e::Session",
        }
    }
}

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// What kind of actor.
    pub kind: PrincipalKind,
    /// Its id: a user name, or `namespace/name` for service accounts and sessions.
    pub id: String,
    /// The groups it belongs to (`admins`, `team-a`, ...).
    pub groups: Vec<String>,
}

/// What is being done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Create a resource.
    Create,
    /// Change a resource's metadata or spec.
    Update,
    /// Change a resource's status.
    UpdateStatus,
    /// Delete a resource.
    Delete,
    /// Read one resource.
    Get,
    /// List resources.
    List,
    /// Watch resources.
    Watch,
    /// Call a Tool.
    CallTool,
}

impl Action {
    /// The action's id in policies, e.g. `create`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::UpdateStatus => "update_status",
            Action::Delete => "delete",
            Action::Get => "get",
            Action::List => "list",
            Action::Watch => "watch",
            Action::CallTool => "call_tool",
        }
    }
}

/// What it is done to: a resource (or, for `list` and `watch`, a kind in a namespace, with an
/// empty name).
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// The kind, e.g. `Task`.
    pub kind: String,
    /// The namespace (empty for cluster-scoped kinds).
    pub namespace: String,
    /// The name (empty for a collection).
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its spec (JSON; turned into a Cedar record).
    pub spec: Value,
    /// The Graph it belongs to, if any, exposed as `resource.graph`.
    pub graph: Option<Box<Target>>,
}

impl Target {
    fn uid(&self) -> Result<EntityUid, String> {
        uid(&format!("r5e::{}", self.kind), &self.id())
    }

    fn id(&self) -> String {
        if self.namespace.is_empty() { self.name.clone() } else { format!("{}/{}", self.namespace, self.name) }
    }

    fn entity_json(&self) -> Value {
        let mut attrs = Map::new();
        attrs.insert("kind".into(), json!(self.kind));
        attrs.insert("namespace".into(), json!(self.namespace));
        attrs.insert("name".into(), json!(self.name));
        attrs.insert("labels".into(), json!(self.labels));
        attrs.insert("spec".into(), to_cedar(&self.spec).unwrap_or_else(|| json!({})));
        if let Some(g) = &self.graph {
            attrs.insert("graph".into(), json!({"__entity": {"type": format!("r5e::{}", g.kind), "id": g.id()}}));
        }
        json!({"uid": {"type": format!("r5e::{}", self.kind), "id": self.id()}, "attrs": attrs, "parents": []})
    }
}

fn uid(type_name: &str, id: &str) -> Result<EntityUid, String> {
    let t = EntityTypeName::from_str(type_name).map_err(|e| format!("`{type_name}` is not a Cedar type name: {e}"))?;
    Ok(EntityUid::from_type_name_and_id(t, EntityId::new(id)))
}

/// A JSON value as a Cedar attribute value: nulls are dropped, numbers that are not 64-bit
/// integers become strings, arrays become sets, objects become records, and keys Cedar would read
/// as escapes (`__entity`, `__extn`) are dropped.
fn to_cedar(v: &Value) -> Option<Value> {
    match v {
        Value::Null => None,
        Value::Bool(_) | Value::String(_) => Some(v.clone()),
        Value::Number(n) => Some(match n.as_i64() {
            Some(i) => json!(i),
            None => json!(n.to_string()),
        }),
        Value::Array(items) => Some(Value::Array(items.iter().filter_map(to_cedar).collect())),
        Value::Object(map) => Some(Value::Object(
            map.iter()
                .filter(|(k, _)| *k != "__entity" && *k != "__extn")
                .filter_map(|(k, v)| Some((k.clone(), to_cedar(v)?)))
                .collect(),
        )),
    }
}

/// The Cedar request and entities for one decision.
pub(crate) fn request(principal: &Principal, action: Action, target: &Target) -> Result<(Request, Entities), String> {
    let principal_uid = uid(principal.kind.type_name(), &principal.id)?;
    let action_uid = uid("r5e::Action", action.as_str())?;
    let resource_uid = target.uid()?;
    let (namespace, name) = principal.id.split_once('/').unwrap_or(("", &principal.id));
    let mut entities = vec![json!({
        "uid": {"type": principal.kind.type_name(), "id": principal.id},
        "attrs": {"name": name, "namespace": namespace},
        "parents": principal.groups.iter().map(|g| json!({"type": "r5e::Group", "id": g})).collect::<Vec<_>>(),
    })];
    for g in &principal.groups {
        entities.push(json!({"uid": {"type": "r5e::Group", "id": g}, "attrs": {}, "parents": []}));
    }
    entities.push(target.entity_json());
    if let Some(g) = &target.graph {
        entities.push(g.entity_json());
    }
    let entities = Entities::from_json_value(Value::Array(entities), None).map_err(|e| format!("entities: {e}"))?;
    let context =
        Context::from_json_value(json!({"operation": action.as_str()}), None).map_err(|e| format!("context: {e}"))?;
    let request =
        Request::new(principal_uid, action_uid, resource_uid, context, None).map_err(|e| format!("request: {e}"))?;
    Ok((request, entities))
}
