//! The registry of built-in kinds: for each, its names, scope, JSON Schema, reference edges and
//! printer columns. The typed spec and status structs live in one module per group of kinds.
//!
//! Storage and the API handle resources untyped ([`Resource`]); this registry is what tells them
//! how a kind is spelled in URLs, whether it lives in a namespace, how to validate it
//! ([`crate::schema::validate`]) and which other resources it points at.

pub mod agents;
pub mod artifact;
pub mod crd;
pub mod extra;
pub mod governance;
pub mod task;
pub mod work;

use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde_json::{Value, json};

use crate::resource::{self, GROUP, ObjectKey, ObjectMeta, Reference, Resource, VERSION};

pub use crd::{CustomKind, crd_kind_info};

/// Everything the control plane needs to know about one kind.
#[derive(Debug)]
pub struct KindInfo {
    /// The API group: `r5e.ai`, or `apiextensions.k8s.io` for CustomResourceDefinition.
    pub group: &'static str,
    /// The API version within the group: `v1alpha1`, or `v1` for CustomResourceDefinition.
    pub version: &'static str,
    /// The kind, in PascalCase (`Task`).
    pub kind: &'static str,
    /// The lower-case plural used in URLs (`tasks`).
    pub plural: &'static str,
    /// The lower-case singular (`task`).
    pub singular: &'static str,
    /// Abbreviations accepted by `get` and friends.
    pub short_names: &'static [&'static str],
    /// True if resources of this kind live in a namespace.
    pub namespaced: bool,
    /// The JSON Schema (draft 2020-12) of a whole resource of this kind.
    pub schema: fn() -> Value,
    /// The typed edges from a resource of this kind: its owner references and the by-name
    /// references in its spec. Reads the untyped spec and never panics.
    pub references: fn(&Resource) -> Vec<Reference>,
    /// The columns shown when listing resources of this kind as a table.
    pub printer_columns: &'static [PrinterColumn],
}

impl KindInfo {
    /// `group/version`, e.g. `r5e.ai/v1alpha1`.
    pub fn api_version(&self) -> String {
        format!("{}/{}", self.group, self.version)
    }

    /// True if `name` names this kind: its kind, plural, singular or a short name, ignoring case.
    pub fn is_named(&self, name: &str) -> bool {
        [self.kind, self.plural, self.singular].iter().chain(self.short_names).any(|n| n.eq_ignore_ascii_case(name))
    }
}

/// One column of a table listing, as in a CRD's `additionalPrinterColumns`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrinterColumn {
    /// The column header.
    pub name: &'static str,
    /// A simple JSONPath into the resource, e.g. `.status.phase`.
    pub json_path: &'static str,
    /// `string`, `integer`, `number`, `boolean` or `date`.
    pub type_: &'static str,
}

/// The age column every kind has.
pub(crate) const AGE: PrinterColumn =
    PrinterColumn { name: "Age", json_path: ".metadata.creationTimestamp", type_: "date" };

/// A `string` column.
pub(crate) const fn string_column(name: &'static str, json_path: &'static str) -> PrinterColumn {
    PrinterColumn { name, json_path, type_: "string" }
}

/// A `boolean` column.
pub(crate) const fn boolean_column(name: &'static str, json_path: &'static str) -> PrinterColumn {
    PrinterColumn { name, json_path, type_: "boolean" }
}

/// An `integer` column.
pub(crate) const fn integer_column(name: &'static str, json_path: &'static str) -> PrinterColumn {
    PrinterColumn { name, json_path, type_: "integer" }
}

/// How many built-in kinds there are.
pub(crate) const BUILTIN_COUNT: usize = 15;

static BUILTIN: [KindInfo; BUILTIN_COUNT] = [
    work::GRAPH,
    work::NODE,
    task::TASK,
    agents::AGENT,
    agents::HARNESS,
    agents::TOOL,
    task::AGENT_SESSION,
    work::WORKFLOW,
    artifact::ARTIFACT,
    governance::CAPABILITY,
    governance::GUIDELINE,
    governance::POLICY,
    extra::GAN_RUN,
    extra::WEBHOOK_SUBSCRIPTION,
    crd::CUSTOM_RESOURCE_DEFINITION,
];

/// The 15 built-in kinds.
pub fn builtin() -> &'static [KindInfo] {
    &BUILTIN
}

/// The built-in kind named `name` (its kind, plural, singular or a short name, ignoring case).
pub fn find(name: &str) -> Option<&'static KindInfo> {
    BUILTIN.iter().find(|k| k.is_named(name))
}

/// The whole-resource schema of a built-in kind with spec `S` and status `T`.
///
/// `apiVersion` and `kind` are constants; `metadata` must carry a name; `spec` is required when
/// its schema has required fields; `status` is optional. Unknown top-level fields are refused.
pub(crate) fn resource_schema<S: JsonSchema, T: JsonSchema>(
    group: &str,
    version: &str,
    kind: &str,
    description: &str,
) -> Value {
    let mut generator = SchemaSettings::draft2020_12().into_generator();
    let metadata = generator.subschema_for::<ObjectMeta>();
    let spec = generator.subschema_for::<S>();
    let status = generator.subschema_for::<T>();
    let definitions = generator.take_definitions(true);

    let spec_has_required_fields = spec
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/$defs/"))
        .and_then(|name| definitions.get(name))
        .or(Some(spec.as_value()))
        .and_then(|s| s.get("required"))
        .and_then(Value::as_array)
        .is_some_and(|r| !r.is_empty());
    let mut required = vec!["apiVersion", "kind", "metadata"];
    if spec_has_required_fields {
        required.push("spec");
    }

    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": kind,
        "description": description,
        "type": "object",
        "required": required,
        "properties": {
            "apiVersion": { "const": format!("{group}/{version}") },
            "kind": { "const": kind },
            "metadata": metadata,
            "spec": spec,
            "status": status,
        },
        "additionalProperties": false,
        "$defs": definitions,
    })
}

/// Schema of a kind in the `r5e.ai/v1alpha1` group.
pub(crate) fn r5e_schema<S: JsonSchema, T: JsonSchema>(kind: &str, description: &str) -> Value {
    resource_schema::<S, T>(GROUP, VERSION, kind, description)
}

/// Collects the reference edges of one resource from its untyped spec.
///
/// Every reader tolerates a spec of the wrong shape: what cannot be read is skipped.
pub(crate) struct Edges<'a> {
    resource: &'a Resource,
    out: Vec<Reference>,
}

impl<'a> Edges<'a> {
    /// Starts with the resource's owner references.
    pub(crate) fn new(resource: &'a Resource) -> Self {
        Edges { resource, out: resource::owner_references(resource) }
    }

    fn spec_at(&self, path: &str) -> Option<&'a Value> {
        path.split('.').try_fold(&self.resource.spec, |v, field| v.get(field))
    }

    fn push_ref(&mut self, edge: &str, kind: &str, value: &Value) {
        let Some(name) = value.get("name").and_then(Value::as_str) else { return };
        let namespace = value.get("namespace").and_then(Value::as_str);
        self.push_name(edge, kind, name, namespace);
    }

    fn push_name(&mut self, edge: &str, kind: &str, name: &str, namespace: Option<&str>) {
        if name.is_empty() {
            return;
        }
        let own = self.resource.metadata.namespace.as_deref().unwrap_or_default();
        let namespace = namespace.filter(|ns| !ns.is_empty()).unwrap_or(own);
        self.out.push(Reference { edge: format!("spec.{edge}"), target: ObjectKey::new(kind, namespace, name) });
    }

    /// An object reference (`{name, namespace?}`) at the dotted spec path `path`.
    pub(crate) fn object(mut self, path: &str, kind: &str) -> Self {
        if let Some(v) = self.spec_at(path) {
            self.push_ref(path, kind, v);
        }
        self
    }

    /// A list of object references at `path`.
    pub(crate) fn objects(mut self, path: &str, kind: &str) -> Self {
        if let Some(items) = self.spec_at(path).and_then(Value::as_array) {
            for item in items {
                self.push_ref(path, kind, item);
            }
        }
        self
    }

    /// A list of plain names at `path`, all in the referrer's namespace.
    pub(crate) fn names(mut self, path: &str, kind: &str) -> Self {
        if let Some(items) = self.spec_at(path).and_then(Value::as_array) {
            for name in items.iter().filter_map(Value::as_str) {
                self.push_name(path, kind, name, None);
            }
        }
        self
    }

    /// A list of object references at `field` inside each element of the list at `list`; the
    /// edge is `spec.<list>.<field>`.
    pub(crate) fn objects_in_each(mut self, list: &str, field: &str, kind: &str) -> Self {
        let edge = format!("{list}.{field}");
        if let Some(items) = self.spec_at(list).and_then(Value::as_array) {
            for refs in items.iter().filter_map(|i| i.get(field)).filter_map(Value::as_array) {
                for r in refs {
                    self.push_ref(&edge, kind, r);
                }
            }
        }
        self
    }

    /// The edges collected.
    pub(crate) fn done(self) -> Vec<Reference> {
        self.out
    }
}

/// The references of a kind whose spec refers to nothing: its owner references only.
pub(crate) fn owners_only(resource: &Resource) -> Vec<Reference> {
    resource::owner_references(resource)
}

#[cfg(test)]
pub(crate) mod tests;
