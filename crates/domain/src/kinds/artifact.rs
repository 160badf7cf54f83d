//! Artifact: the immutable record of something an agent produced (output, review verdict,
//! reflection, decline, transcript), naming its bytes in the CAS by digest and its lineage.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::agents::ModelIdentity;
use super::{AGE, Edges, KindInfo, r5e_schema, string_column};
use crate::digest::Digest;
use crate::resource::{Condition, GROUP, ObjectRef, Reference, Resource, VERSION};

/// An Artifact given to an agent as input, by name and digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ArtifactInput {
    /// The name the agent knows the input by (e.g. `design`).
    pub name: String,
    /// The input's content digest.
    pub digest: Digest,
}

/// What an agent produced. The spec never changes once created.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ArtifactSpec {
    /// The content digest: the bytes are in the CAS under this name.
    pub digest: Digest,
    /// The content's length in bytes.
    pub size: u64,
    /// The content's media type.
    #[serde(default = "default_media_type")]
    pub media_type: String,
    /// What the Artifact is.
    #[serde(default)]
    pub artifact_type: ArtifactType,
    /// Who produced it.
    pub produced_by: Provenance,
    /// The inputs it was produced from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<ArtifactInput>,
    /// For a review verdict: the digest of the Artifact reviewed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review_of: Option<Digest>,
    /// For a review verdict: the verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// The Task it was produced for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_ref: Option<ObjectRef>,
}

fn default_media_type() -> String {
    "application/octet-stream".to_string()
}

/// What an Artifact is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ArtifactType {
    /// The output of a Task (the default).
    #[default]
    Output,
    /// A review verdict on another Artifact.
    Review,
    /// A session's reflection: what went well, what did not, what could be better.
    Reflection,
    /// A session's structured refusal.
    Decline,
    /// The record of a session's conversation and tool calls.
    Transcript,
}

/// The lineage of an Artifact.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Provenance {
    /// The AgentSession that produced it.
    pub session: ObjectRef,
    /// The Agent that ran that session.
    pub agent: ObjectRef,
    /// The model that session ran on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelIdentity>,
    /// The uids of the producing session's ancestors, root first, then its own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lineage: Vec<String>,
}

/// A reviewer's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Verdict {
    /// The Artifact may advance.
    Approve,
    /// It may not; the review says why.
    Reject,
}

/// What the system observes of an Artifact.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactStatus {
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Observed conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Where its review stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<ReviewState>,
    /// The verdicts given on it, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reviews: Vec<ReviewRecord>,
}

/// Where an Artifact's review stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ReviewState {
    /// Not yet reviewed by an independent session.
    Pending,
    /// Approved by an independent session.
    Approved,
    /// Rejected by an independent session.
    Rejected,
}

/// One verdict on an Artifact.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReviewRecord {
    /// The review Artifact that holds the verdict and its reasons.
    pub artifact_ref: ObjectRef,
    /// The reviewing AgentSession.
    pub session: ObjectRef,
    /// The verdict.
    pub verdict: Verdict,
    /// The digest of the Artifact reviewed; the verdict is bound to it.
    pub digest: Digest,
}

fn artifact_references(r: &Resource) -> Vec<Reference> {
    Edges::new(r)
        .object("producedBy.session", "AgentSession")
        .object("producedBy.agent", "Agent")
        .object("taskRef", "Task")
        .done()
}

/// The Artifact kind.
pub const ARTIFACT: KindInfo = KindInfo {
    group: GROUP,
    version: VERSION,
    kind: "Artifact",
    plural: "artifacts",
    singular: "artifact",
    short_names: &["art"],
    namespaced: true,
    schema: || {
        r5e_schema::<ArtifactSpec, ArtifactStatus>(
            "Artifact",
            "An immutable, content-addressed record of something an agent produced.",
        )
    },
    references: artifact_references,
    printer_columns: &[
        string_column("Type", ".spec.artifactType"),
        string_column("Digest", ".spec.digest"),
        string_column("Review", ".status.review"),
        AGE,
    ],
};
