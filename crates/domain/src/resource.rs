//! The Kubernetes-style envelope every r5e resource shares: `apiVersion`, `kind`, `metadata`,
//! `spec`, `status`, and the small types that appear inside it (owner references, conditions,
//! object keys).

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The API group every built-in kind belongs to.
pub const GROUP: &str = "r5e.ai";
/// The version of the built-in kinds.
pub const VERSION: &str = "v1alpha1";
/// `GROUP/VERSION`, the `apiVersion` of every built-in resource.
pub const API_VERSION: &str = "r5e.ai/v1alpha1";

/// A resource as it is stored and served: the envelope with an untyped `spec` and `status`.
///
/// Storage and the API deal in this type so that custom kinds work like built-ins; the typed
/// structs in [`crate::kinds`] give each built-in kind its schema and typed access.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resource {
    /// `group/version`, e.g. `r5e.ai/v1alpha1`.
    pub api_version: String,
    /// The kind, e.g. `Task`.
    pub kind: String,
    /// Identity and bookkeeping.
    pub metadata: ObjectMeta,
    /// What the user wants. `null` when absent.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub spec: Value,
    /// What the system observes. Written only through the status subresource.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub status: Value,
}

impl Resource {
    /// A new built-in resource with the given kind, namespace, name and spec.
    pub fn new(kind: &str, namespace: Option<&str>, name: &str, spec: Value) -> Self {
        Resource {
            api_version: API_VERSION.to_string(),
            kind: kind.to_string(),
            metadata: ObjectMeta {
                name: name.to_string(),
                namespace: namespace.map(str::to_string),
                ..ObjectMeta::default()
            },
            spec,
            status: Value::Null,
        }
    }

    /// The key that names this resource in storage.
    pub fn key(&self) -> ObjectKey {
        ObjectKey {
            kind: self.kind.clone(),
            namespace: self.metadata.namespace.clone().unwrap_or_default(),
            name: self.metadata.name.clone(),
        }
    }

    /// `metadata.resourceVersion` as a number, if it is set and numeric.
    pub fn resource_version(&self) -> Option<u64> {
        self.metadata.resource_version.as_deref()?.parse().ok()
    }

    /// This resource as a JSON value.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("a resource always serialises")
    }
}

/// Standard object metadata, as in Kubernetes `ObjectMeta`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    /// Unique within the kind and namespace; a DNS-1123 subdomain. Never changes.
    pub name: String,
    /// The namespace (a DNS-1123 label); absent for cluster-scoped kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Assigned by the server on create (UUIDv7). Never changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// The sequence number of the event that recorded the last write, as a decimal string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// Incremented by the server each time `spec` changes; starts at 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// When the resource was created (RFC 3339, UTC). Set by the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<String>,
    /// When deletion was requested while finalizers were pending (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_timestamp: Option<String>,
    /// Identifying key/value pairs, matched by label selectors.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Non-identifying key/value pairs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// The resources this one belongs to (same namespace); used for traversal and garbage collection.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owner_references: Vec<OwnerReference>,
    /// Names of the cleanups that must finish before the resource is removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finalizers: Vec<String>,
}

/// A reference from a resource to its owner, as in Kubernetes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OwnerReference {
    /// The owner's `apiVersion`.
    pub api_version: String,
    /// The owner's kind.
    pub kind: String,
    /// The owner's name (same namespace as the owned resource).
    pub name: String,
    /// The owner's uid.
    pub uid: String,
    /// True if the owner is the managing controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<bool>,
    /// True if the owner cannot be deleted before this resource is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_owner_deletion: Option<bool>,
}

/// One observed condition of a resource, as in Kubernetes `metav1.Condition`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// CamelCase name of the condition, e.g. `Ready`, `Reviewed`, `Blocked`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: ConditionStatus,
    /// CamelCase machine-readable reason for the last transition.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Human-readable detail.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// When the status last changed (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    /// The `metadata.generation` this condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// The three values of a condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// Not yet known.
    Unknown,
}

/// A reference by name to another resource, used in specs (`graphRef`, `taskRef`, ...).
///
/// The namespace defaults to the referring resource's namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    /// The referenced resource's name.
    pub name: String,
    /// The referenced resource's namespace, when it differs from the referrer's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// The storage identity of a resource: kind, namespace (empty for cluster-scoped) and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ObjectKey {
    /// The kind, e.g. `Task`.
    pub kind: String,
    /// The namespace, or the empty string for a cluster-scoped kind.
    pub namespace: String,
    /// The name.
    pub name: String,
}

impl ObjectKey {
    /// A key from its parts.
    pub fn new(kind: &str, namespace: &str, name: &str) -> Self {
        ObjectKey { kind: kind.into(), namespace: namespace.into(), name: name.into() }
    }
}

impl fmt::Display for ObjectKey {
    /// `Kind/namespace/name`, or `Kind/name` when cluster-scoped. This is the audit `subject`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{}/{}", self.kind, self.name)
        } else {
            write!(f, "{}/{}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// A typed edge from one resource to another, found in its metadata or spec.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Reference {
    /// The edge's type: `owner` for owner references, otherwise the spec field path
    /// (e.g. `spec.graphRef`, `spec.dependsOn`).
    pub edge: String,
    /// The target.
    pub target: ObjectKey,
}

/// The edge type of owner references.
pub const OWNER_EDGE: &str = "owner";

/// The owner-reference edges of a resource (owners live in the same namespace).
pub fn owner_references(resource: &Resource) -> Vec<Reference> {
    let namespace = resource.metadata.namespace.clone().unwrap_or_default();
    resource
        .metadata
        .owner_references
        .iter()
        .map(|o| Reference { edge: OWNER_EDGE.to_string(), target: ObjectKey::new(&o.kind, &namespace, &o.name) })
        .collect()
}
