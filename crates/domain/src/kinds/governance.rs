//! The kinds that state the rules: Capability (a named permission and its risk), Guideline
//! (text every matching agent is given) and Policy (Cedar rules evaluated at admission).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{AGE, Edges, KindInfo, boolean_column, owners_only, r5e_schema, string_column};
use crate::digest::Digest;
use crate::resource::{Condition, GROUP, Reference, Resource, VERSION};
use crate::selector::LabelSelector;

// ---------------------------------------------------------------------------------------------
// Capability

/// A named permission: what holding it means, how risky it is, and which Tools it opens.
///
/// The resource's name is the capability's name (`fs.read`, `deploy.staging`); authority
/// patterns such as `fs.*` cover it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CapabilitySpec {
    /// What the capability allows.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// How much harm misuse could do.
    #[serde(default)]
    pub risk: Risk,
    /// Names of the Tools this capability opens (in the same namespace).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<String>,
    /// Whether each use needs a person's approval.
    #[serde(default)]
    pub requires_approval: bool,
}

/// How much harm misuse of a capability could do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Risk {
    /// Little (reading public data).
    Low,
    /// Some (writing in a sandbox; the default).
    #[default]
    Medium,
    /// Much (deploying, spending money, touching production).
    High,
}

/// What the system observes of a Capability.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CapabilityStatus {
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Observed conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

fn capability_references(r: &Resource) -> Vec<Reference> {
    Edges::new(r).names("tools", "Tool").done()
}

/// The Capability kind.
pub const CAPABILITY: KindInfo = KindInfo {
    group: GROUP,
    version: VERSION,
    kind: "Capability",
    plural: "capabilities",
    singular: "capability",
    short_names: &["cap"],
    namespaced: true,
    schema: || {
        r5e_schema::<CapabilitySpec, CapabilityStatus>(
            "Capability",
            "A named permission, its risk, and the Tools it opens.",
        )
    },
    references: capability_references,
    printer_columns: &[string_column("Risk", ".spec.risk"), AGE],
};

// ---------------------------------------------------------------------------------------------
// Guideline

/// Text given to every agent it applies to, recorded by digest in each session.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GuidelineSpec {
    /// What the guideline is about.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The text given to agents.
    pub content: String,
    /// Whom it applies to, beyond the Graphs and Workflows that name it.
    #[serde(default)]
    pub applies_to: AppliesTo,
}

/// Whom a Guideline applies to. Empty means only where a Graph or Workflow names it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AppliesTo {
    /// Agents whose labels match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_selector: Option<LabelSelector>,
    /// Names of Workflows whose every step it applies to (same namespace).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workflows: Vec<String>,
}

/// What the system observes of a Guideline.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GuidelineStatus {
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Observed conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// SHA-256 of `spec.content` (its UTF-8 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
}

fn guideline_references(r: &Resource) -> Vec<Reference> {
    Edges::new(r).names("appliesTo.workflows", "Workflow").done()
}

/// The Guideline kind.
pub const GUIDELINE: KindInfo = KindInfo {
    group: GROUP,
    version: VERSION,
    kind: "Guideline",
    plural: "guidelines",
    singular: "guideline",
    short_names: &["gl"],
    namespaced: true,
    schema: || r5e_schema::<GuidelineSpec, GuidelineStatus>("Guideline", "Text given to every agent it applies to."),
    references: guideline_references,
    printer_columns: &[string_column("Digest", ".status.digest"), AGE],
};

// ---------------------------------------------------------------------------------------------
// Policy

/// Cedar rules evaluated at admission for every write, by people and agents alike.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicySpec {
    /// What the policy is for.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The Cedar policy text.
    pub cedar: String,
    /// Whether the policy takes part in decisions.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
}

impl Default for PolicySpec {
    fn default() -> Self {
        PolicySpec { description: String::new(), cedar: String::new(), enabled: true }
    }
}

fn default_enabled() -> bool {
    true
}

/// What the system observes of a Policy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyStatus {
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Observed conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// SHA-256 of `spec.cedar` (its UTF-8 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
    /// Whether the Cedar text parsed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid: Option<bool>,
    /// Why the Cedar text did not parse, when it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The Policy kind.
pub const POLICY: KindInfo = KindInfo {
    group: GROUP,
    version: VERSION,
    kind: "Policy",
    plural: "policies",
    singular: "policy",
    short_names: &["pol"],
    namespaced: true,
    schema: || r5e_schema::<PolicySpec, PolicyStatus>("Policy", "Cedar rules evaluated at admission for every write."),
    references: owners_only,
    printer_columns: &[boolean_column("Enabled", ".spec.enabled"), boolean_column("Valid", ".status.valid"), AGE],
};
