//! CustomResourceDefinition in the `apiextensions.k8s.io/v1` shape, so existing CRD manifests
//! apply unchanged, and [`crd_kind_info`], which turns one into the description of the kind it
//! defines so that kind can be served and validated like a built-in.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{AGE, KindInfo, owners_only, resource_schema, string_column};
use crate::resource::{Condition, GROUP as R5E_GROUP, Resource};
use crate::schema::{self, FieldError};

/// The API group of CustomResourceDefinition.
pub const GROUP: &str = "apiextensions.k8s.io";
/// The API version of CustomResourceDefinition within its group.
pub const VERSION: &str = "v1";

/// The definition of a custom kind. Fields this type does not name (such as a version's
/// `deprecationWarning` or `selectableFields`) are accepted, as real manifests carry them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomResourceDefinitionSpec {
    /// The API group of the defined kind (e.g. `stable.example.com`).
    pub group: String,
    /// The names of the defined kind.
    pub names: CustomResourceDefinitionNames,
    /// `Namespaced` or `Cluster`.
    pub scope: ResourceScope,
    /// The versions of the kind; exactly one has `storage: true`.
    #[schemars(length(min = 1))]
    pub versions: Vec<CustomResourceDefinitionVersion>,
    /// How versions are converted; accepted and kept, not acted on (one version is served).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversion: Option<Value>,
    /// Deprecated in Kubernetes; accepted and kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preserve_unknown_fields: Option<bool>,
}

/// The names of a custom kind.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomResourceDefinitionNames {
    /// The PascalCase kind (e.g. `CronTab`).
    pub kind: String,
    /// The lower-case plural used in URLs (e.g. `crontabs`).
    pub plural: String,
    /// The lower-case singular; defaults to the lower-cased kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub singular: Option<String>,
    /// Abbreviations (e.g. `ct`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub short_names: Vec<String>,
    /// The kind of a list (e.g. `CronTabList`); defaults to the kind followed by `List`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list_kind: Option<String>,
    /// Groupings such as `all`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<String>,
}

/// Whether a custom kind lives in namespaces.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ResourceScope {
    /// Each resource lives in a namespace.
    #[default]
    Namespaced,
    /// Resources live outside namespaces.
    Cluster,
}

/// One version of a custom kind.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomResourceDefinitionVersion {
    /// The version name (e.g. `v1`).
    pub name: String,
    /// Whether this version is served by the API.
    pub served: bool,
    /// Whether resources are stored in this version; exactly one version has this set.
    pub storage: bool,
    /// Whether this version is deprecated.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deprecated: bool,
    /// The schema resources of this version are validated against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<CustomResourceValidation>,
    /// Extra columns for table listings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub additional_printer_columns: Vec<CustomResourceColumnDefinition>,
    /// Which subresources (`status`, `scale`) are enabled; accepted and kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subresources: Option<Value>,
}

/// A version's schema.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CustomResourceValidation {
    /// An OpenAPI v3 schema of the whole resource.
    #[serde(rename = "openAPIV3Schema", default)]
    pub open_api_v3_schema: Map<String, Value>,
}

/// One extra column for table listings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomResourceColumnDefinition {
    /// The column header.
    pub name: String,
    /// `string`, `integer`, `number`, `boolean` or `date`.
    #[serde(rename = "type")]
    pub type_: String,
    /// A simple JSONPath into the resource (e.g. `.spec.cronSpec`).
    pub json_path: String,
    /// An optional format hint (e.g. `date-time`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// What the column shows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// 0 for the default view; higher values only in the wide view.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
}

/// What the system observes of a CustomResourceDefinition.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomResourceDefinitionStatus {
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Observed conditions (`NamesAccepted`, `Established`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The names actually being served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_names: Option<CustomResourceDefinitionNames>,
    /// Every version resources have ever been stored in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stored_versions: Vec<String>,
}

/// The CustomResourceDefinition kind (cluster-scoped).
pub const CUSTOM_RESOURCE_DEFINITION: KindInfo = KindInfo {
    group: GROUP,
    version: VERSION,
    kind: "CustomResourceDefinition",
    plural: "customresourcedefinitions",
    singular: "customresourcedefinition",
    short_names: &["crd", "crds"],
    namespaced: false,
    schema: || {
        resource_schema::<CustomResourceDefinitionSpec, CustomResourceDefinitionStatus>(
            GROUP,
            VERSION,
            "CustomResourceDefinition",
            "Defines a custom kind, served and validated like a built-in.",
        )
    },
    references: owners_only,
    printer_columns: &[string_column("Group", ".spec.group"), string_column("Kind", ".spec.names.kind"), AGE],
};

/// The kind a CustomResourceDefinition defines, ready to be served.
#[derive(Clone, Debug, PartialEq)]
pub struct CustomKind {
    /// Its API group.
    pub group: String,
    /// The version it is stored and served in.
    pub version: String,
    /// Its kind.
    pub kind: String,
    /// Its plural, used in URLs.
    pub plural: String,
    /// Its singular.
    pub singular: String,
    /// Its short names.
    pub short_names: Vec<String>,
    /// True if it lives in namespaces.
    pub namespaced: bool,
    /// The OpenAPI v3 schema of a whole resource, as written in the CRD.
    pub schema: Value,
    /// The version's extra printer columns.
    pub printer_columns: Vec<CustomResourceColumnDefinition>,
}

impl CustomKind {
    /// `group/version`.
    pub fn api_version(&self) -> String {
        format!("{}/{}", self.group, self.version)
    }

    /// True if `name` is its kind, plural, singular or a short name, ignoring case.
    pub fn is_named(&self, name: &str) -> bool {
        [&self.kind, &self.plural, &self.singular]
            .into_iter()
            .chain(&self.short_names)
            .any(|n| n.eq_ignore_ascii_case(name))
    }

    /// Validates a resource of this kind: `apiVersion` and `kind`, the metadata rules every
    /// resource follows, and the CRD's schema (with OpenAPI `nullable` honoured).
    pub fn validate(&self, resource: &Value) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        let api_version = self.api_version();
        for (field, expected) in [("apiVersion", api_version.as_str()), ("kind", &self.kind)] {
            if resource.get(field).and_then(Value::as_str) != Some(expected) {
                errors.push(FieldError::new(field, format!("must be `{expected}`")));
            }
        }
        errors.extend(schema::check_metadata(resource, self.namespaced));
        if let Err(e) = schema::validate_with_schema(&openapi_to_json_schema(&self.schema), resource) {
            errors.extend(e);
        }
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }
}

/// Rewrites the OpenAPI v3 `nullable: true` beside a `type` into a JSON Schema type list, at
/// every depth, so that `null` is accepted where the CRD allows it.
pub fn openapi_to_json_schema(schema: &Value) -> Value {
    match schema {
        Value::Object(map) => {
            let mut out: Map<String, Value> = map.iter().map(|(k, v)| (k.clone(), openapi_to_json_schema(v))).collect();
            if map.get("nullable") == Some(&Value::Bool(true))
                && let Some(Value::String(t)) = map.get("type")
            {
                out.insert("type".into(), Value::Array(vec![Value::String(t.clone()), "null".into()]));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(openapi_to_json_schema).collect()),
        other => other.clone(),
    }
}

/// The kind a CustomResourceDefinition defines.
///
/// Checks what Kubernetes checks before accepting a CRD: the resource is named
/// `<plural>.<group>`, the names are well formed, exactly one version is the storage version,
/// some version is served, and the chosen version has a schema that compiles. The group
/// `r5e.ai` is reserved for the built-in kinds. The version chosen is the storage version when it
/// is served, otherwise the first served version.
pub fn crd_kind_info(crd: &Resource) -> Result<CustomKind, String> {
    if crd.kind != CUSTOM_RESOURCE_DEFINITION.kind {
        return Err(format!("kind: expected CustomResourceDefinition, got `{}`", crd.kind));
    }
    let spec: CustomResourceDefinitionSpec =
        serde_json::from_value(crd.spec.clone()).map_err(|e| format!("spec: {e}"))?;
    let names = &spec.names;

    if spec.group.is_empty() || !spec.group.contains('.') {
        return Err(format!("spec.group: `{}` must be a domain name such as `example.com`", spec.group));
    }
    crate::names::check_name(&spec.group).map_err(|e| format!("spec.group: {e}"))?;
    if spec.group == R5E_GROUP || spec.group == GROUP {
        return Err(format!("spec.group: `{}` is reserved for built-in kinds", spec.group));
    }
    let expected_name = format!("{}.{}", names.plural, spec.group);
    if crd.metadata.name != expected_name {
        return Err(format!("metadata.name: must be `{expected_name}` (the plural, a dot, the group)"));
    }
    crate::names::check_namespace(&names.plural).map_err(|e| format!("spec.names.plural: {e}"))?;
    if !names.kind.starts_with(|c: char| c.is_ascii_uppercase())
        || !names.kind.chars().all(|c| c.is_ascii_alphanumeric())
    {
        return Err(format!("spec.names.kind: `{}` must be PascalCase letters and digits", names.kind));
    }
    let singular = names.singular.clone().unwrap_or_else(|| names.kind.to_ascii_lowercase());
    crate::names::check_namespace(&singular).map_err(|e| format!("spec.names.singular: {e}"))?;
    for (i, short) in names.short_names.iter().enumerate() {
        crate::names::check_namespace(short).map_err(|e| format!("spec.names.shortNames[{i}]: {e}"))?;
    }

    let storage: Vec<usize> = spec.versions.iter().enumerate().filter(|(_, v)| v.storage).map(|(i, _)| i).collect();
    if storage.len() != 1 {
        return Err(format!("spec.versions: exactly one version must have `storage: true` (found {})", storage.len()));
    }
    let chosen = if spec.versions[storage[0]].served {
        storage[0]
    } else {
        spec.versions
            .iter()
            .position(|v| v.served)
            .ok_or("spec.versions: at least one version must have `served: true`")?
    };
    let version = &spec.versions[chosen];
    let schema = version
        .schema
        .as_ref()
        .map(|s| Value::Object(s.open_api_v3_schema.clone()))
        .filter(|s| s.as_object().is_some_and(|m| !m.is_empty()))
        .ok_or_else(|| format!("spec.versions[{chosen}].schema.openAPIV3Schema: is required"))?;
    schema::compile(&openapi_to_json_schema(&schema))
        .map_err(|e| format!("spec.versions[{chosen}].schema.openAPIV3Schema: not a valid schema: {e}"))?;

    Ok(CustomKind {
        group: spec.group.clone(),
        version: version.name.clone(),
        kind: names.kind.clone(),
        plural: names.plural.clone(),
        singular,
        short_names: names.short_names.clone(),
        namespaced: spec.scope == ResourceScope::Namespaced,
        schema,
        printer_columns: version.additional_printer_columns.clone(),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::kinds::tests::crontab_crd;
    use crate::kinds::{builtin, find};

    fn crd(value: Value) -> Resource {
        serde_json::from_value(value).unwrap()
    }

    fn crontab(spec: Value) -> Value {
        json!({
            "apiVersion": "stable.example.com/v1", "kind": "CronTab",
            "metadata": { "name": "nightly", "namespace": "team-a" },
            "spec": spec
        })
    }

    #[test]
    fn a_real_world_crd_validates_and_defines_its_kind() {
        let manifest = crontab_crd();
        let info = find("crd").unwrap();
        assert_eq!(schema::validate(info, &manifest), Ok(()));

        let kind = crd_kind_info(&crd(manifest)).unwrap();
        assert_eq!(kind.api_version(), "stable.example.com/v1", "the storage version");
        assert_eq!(
            (kind.kind.as_str(), kind.plural.as_str(), kind.singular.as_str()),
            ("CronTab", "crontabs", "crontab")
        );
        assert_eq!(kind.short_names, ["ct"]);
        assert!(kind.namespaced);
        assert!(kind.is_named("CT") && kind.is_named("crontabs") && !kind.is_named("cron"));
        assert_eq!(kind.schema["properties"]["spec"]["required"], json!(["cronSpec"]));
        assert_eq!(kind.printer_columns.len(), 3);
        assert!(builtin().iter().all(|b| !b.is_named(&kind.kind)));
    }

    #[test]
    fn resources_of_a_custom_kind_are_validated_against_its_schema() {
        let kind = crd_kind_info(&crd(crontab_crd())).unwrap();
        let good = crontab(json!({ "cronSpec": "*/5 * * * *", "image": "cron:1", "replicas": 2, "note": null }));
        assert_eq!(kind.validate(&good), Ok(()));
        assert_eq!(schema::validate_with_schema(&kind.schema, &crontab(json!({ "cronSpec": "0 3 * * *" }))), Ok(()));

        let bad = crontab(json!({ "cronSpec": "every night", "replicas": "two" }));
        let errors = schema::validate_with_schema(&kind.schema, &bad).unwrap_err();
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["spec.cronSpec", "spec.replicas"], "{errors:?}");
        assert_eq!(errors[1].message, "must be an integer (is a string)");

        let errors = kind.validate(&crontab(json!({ "replicas": 11 }))).unwrap_err();
        assert!(errors.iter().any(|e| e.path == "spec.cronSpec" && e.message == "is required"), "{errors:?}");
        assert!(
            errors.iter().any(|e| e.path == "spec.replicas" && e.message == "must be at most 10 (is 11)"),
            "{errors:?}"
        );

        let mut wrong = crontab(json!({ "cronSpec": "* * * * *" }));
        wrong["apiVersion"] = json!("stable.example.com/v1beta1");
        wrong["metadata"] = json!({ "name": "Nightly" });
        let errors = kind.validate(&wrong).unwrap_err();
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["apiVersion", "metadata.name", "metadata.namespace"], "{errors:?}");
    }

    #[test]
    fn a_crd_that_kubernetes_would_refuse_is_refused() {
        let refused = |edit: &dyn Fn(&mut Value), expect: &str| {
            let mut m = crontab_crd();
            edit(&mut m);
            let err = crd_kind_info(&crd(m)).unwrap_err();
            assert!(err.contains(expect), "{err}");
        };
        refused(&|m| m["metadata"]["name"] = json!("crontabs"), "must be `crontabs.stable.example.com`");
        refused(&|m| m["spec"]["versions"][0]["storage"] = json!(true), "exactly one version");
        refused(
            &|m| {
                m["spec"]["versions"][0]["served"] = json!(false);
                m["spec"]["versions"][1]["served"] = json!(false);
            },
            "served",
        );
        refused(&|m| m["spec"]["versions"][1]["schema"] = json!(null), "openAPIV3Schema: is required");
        refused(&|m| m["spec"]["versions"][1]["schema"]["openAPIV3Schema"]["type"] = json!(12), "not a valid schema");
        refused(&|m| m["spec"]["names"]["kind"] = json!("cron-tab"), "PascalCase");
        refused(
            &|m| {
                m["spec"]["group"] = json!("r5e.ai");
                m["metadata"]["name"] = json!("crontabs.r5e.ai");
            },
            "reserved",
        );
        refused(&|m| m["spec"]["scope"] = json!("Global"), "spec:");
    }

    #[test]
    fn the_served_version_is_chosen_when_storage_is_not_served() {
        let mut m = crontab_crd();
        m["spec"]["versions"][1]["served"] = json!(false);
        m["spec"]["scope"] = json!("Cluster");
        m["spec"]["names"]["singular"] = json!(null);
        let kind = crd_kind_info(&crd(m)).unwrap();
        assert_eq!(kind.version, "v1beta1");
        assert!(!kind.namespaced);
        assert_eq!(kind.singular, "crontab", "defaults to the lower-cased kind");
    }

    #[test]
    fn nullable_becomes_a_type_list_at_every_depth() {
        let s = json!({ "properties": { "a": { "type": "string", "nullable": true },
                                        "b": { "items": { "type": "object", "nullable": true } },
                                        "nullable": { "type": "boolean" } } });
        let j = openapi_to_json_schema(&s);
        assert_eq!(j["properties"]["a"]["type"], json!(["string", "null"]));
        assert_eq!(j["properties"]["b"]["items"]["type"], json!(["object", "null"]));
        assert_eq!(j["properties"]["nullable"]["type"], json!("boolean"));
    }
}
