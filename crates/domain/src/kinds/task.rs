//! The kinds that carry out work: Task (one step of one Node, with its delegated authority) and
//! AgentSession (one attempt by one agent at a Task, or at reviewing its output).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::agents::ModelIdentity;
use super::artifact::ArtifactInput;
use super::work::ReviewPolicy;
use super::{AGE, Edges, KindInfo, integer_column, r5e_schema, string_column};
use crate::authority::Authority;
use crate::digest::Digest;
use crate::resource::{Condition, GROUP, ObjectRef, Reference, Resource, VERSION};
use crate::selector::LabelSelector;

// ---------------------------------------------------------------------------------------------
// Task

/// One step of one Node, to be done by an agent under delegated authority.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TaskSpec {
    /// The Node this Task does a step of.
    pub node_ref: ObjectRef,
    /// The Graph of that Node.
    pub graph_ref: ObjectRef,
    /// The name of the Workflow step this Task carries out; `work` when the Node has no Workflow.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub step: String,
    /// What the agent is asked to do.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub instructions: String,
    /// Which Agents may take the Task (matched against Agent labels); empty matches every Agent.
    #[serde(default)]
    pub agent_selector: LabelSelector,
    /// The authority delegated to the Task, a subset of its Node's.
    pub authority: Authority,
    /// Artifacts given to the agent as input (for instance, the previous step's output).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<ArtifactInput>,
    /// How many sessions may be tried before the Task fails.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// How the Task's output is reviewed.
    #[serde(default)]
    pub review: ReviewPolicy,
}

fn default_max_attempts() -> u32 {
    3
}

/// What the system observes of a Task.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskStatus {
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Observed conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Where the Task stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<TaskPhase>,
    /// Producing sessions started so far.
    #[serde(default)]
    pub attempts: u32,
    /// The Agent working on the current attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_ref: Option<ObjectRef>,
    /// Every AgentSession of this Task (producers and reviewers), oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub session_refs: Vec<ObjectRef>,
    /// The Artifacts produced for this Task, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifact_refs: Vec<ObjectRef>,
    /// The current produce-review round, from 1.
    #[serde(default)]
    pub review_round: u32,
    /// CamelCase machine-readable reason for the phase (e.g. `NoIndependentReviewer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human-readable detail on the phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the next attempt may start (RFC 3339); the retry timer survives restarts here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_retry_at: Option<DateTime<Utc>>,
}

/// The phases of a Task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum TaskPhase {
    /// Waiting for an Agent.
    Pending,
    /// A producing session is at work.
    Running,
    /// The output is being reviewed.
    Reviewing,
    /// The output was approved.
    Succeeded,
    /// Every attempt or review round was used up.
    Failed,
    /// The agent declined the Task.
    Declined,
    /// The Task cannot proceed (for instance, no independent reviewer); the reason says why.
    Blocked,
}

fn task_references(r: &Resource) -> Vec<Reference> {
    Edges::new(r).object("nodeRef", "Node").object("graphRef", "Graph").done()
}

/// The Task kind.
pub const TASK: KindInfo = KindInfo {
    group: GROUP,
    version: VERSION,
    kind: "Task",
    plural: "tasks",
    singular: "task",
    short_names: &["tk"],
    namespaced: true,
    schema: || {
        r5e_schema::<TaskSpec, TaskStatus>(
            "Task",
            "One step of one Node, done by an agent under delegated authority and reviewed.",
        )
    },
    references: task_references,
    printer_columns: &[
        string_column("Phase", ".status.phase"),
        string_column("Node", ".spec.nodeRef.name"),
        string_column("Step", ".spec.step"),
        string_column("Agent", ".status.agentRef.name"),
        integer_column("Attempts", ".status.attempts"),
        AGE,
    ],
};

// ---------------------------------------------------------------------------------------------
// AgentSession

/// One run of one agent: producing a Task's output, reviewing it, or orchestrating.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentSessionSpec {
    /// The Task this session works for.
    pub task_ref: ObjectRef,
    /// The Agent that runs the session.
    pub agent_ref: ObjectRef,
    /// What the session does.
    #[serde(default)]
    pub role: SessionRole,
    /// The session that started this one, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_session_ref: Option<ObjectRef>,
    /// The uids of this session's ancestor sessions, root first; used to keep reviewers
    /// independent of producers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lineage: Vec<String>,
    /// The authority the session acts with, a subset of its Task's (or parent session's).
    pub authority: Authority,
    /// The model the session runs on; filled from the Agent when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelIdentity>,
    /// For a reviewing session: the Artifact under review.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review_of: Option<ReviewTarget>,
    /// Digests of the Guidelines' content given to the agent, for provenance.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub guideline_digests: Vec<Digest>,
    /// Which attempt at the Task this is, from 1.
    #[serde(default = "default_attempt")]
    pub attempt: u32,
    /// Artifacts given to the agent: the Task's inputs, and on a later attempt the rejected
    /// output with the review that rejected it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<ArtifactInput>,
}

fn default_attempt() -> u32 {
    1
}

/// What an AgentSession does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SessionRole {
    /// Produces the Task's output (the default).
    #[default]
    Producer,
    /// Reviews an Artifact produced by another session.
    Reviewer,
    /// Plans and re-plans work (for instance, splitting a declined Task).
    Orchestrator,
}

/// The Artifact a reviewing session reviews.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReviewTarget {
    /// The Artifact resource.
    pub artifact_ref: ObjectRef,
    /// Its content digest; the verdict is bound to exactly these bytes.
    pub digest: Digest,
}

/// What the system observes of an AgentSession.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentSessionStatus {
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Observed conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Where the session stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<SessionPhase>,
    /// The process that runs the session; another may adopt it once the lease expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<Lease>,
    /// When the session started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// When the session reached a terminal phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// The Artifacts the session produced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifact_refs: Vec<ObjectRef>,
    /// The session's reflection Artifact; required before a terminal phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reflection_ref: Option<ObjectRef>,
    /// Why the agent declined, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decline: Option<Decline>,
    /// Why the session failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// Budget spent so far, by budget name (`tokens`, `tool_calls`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub usage: BTreeMap<String, u64>,
    /// Digest of the session's transcript Artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transcript_digest: Option<Digest>,
    /// The credential the session holds while it runs (never the token itself): its token acts
    /// only while the session is Running or Reflecting and this names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<SessionCredential>,
    /// The names of the secrets its harness was given (never their values).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    /// How often the session was resumed by another process after the one running it died
    /// (a `model` harness replays its recorded turns, so nothing already answered is asked again).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub resumed: u32,
}

/// A session's token, as its status records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionCredential {
    /// The revocation id of the token's first block (hex).
    pub revocation_id: String,
    /// When it was minted.
    pub issued_at: DateTime<Utc>,
    /// When it stops acting, whatever else happens.
    pub expires_at: DateTime<Utc>,
}

/// The phases of an AgentSession.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SessionPhase {
    /// Created, not yet started.
    Pending,
    /// The agent is at work.
    Running,
    /// The agent is writing its reflection.
    Reflecting,
    /// Done, with output and reflection.
    Succeeded,
    /// Done without usable output, with a reflection.
    Failed,
    /// The agent declined, with a reason and a reflection.
    Declined,
    /// The session could not be restored with confidence after a crash and was not re-run.
    Degraded,
}

/// A time-limited claim on running a session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Lease {
    /// The identity of the process holding the lease.
    pub holder: String,
    /// When the holder took the lease.
    pub acquired_at: DateTime<Utc>,
    /// When the holder last renewed it.
    pub renewed_at: DateTime<Utc>,
    /// When it lapses unless renewed.
    pub expires_at: DateTime<Utc>,
    /// The holder's process, as `<boot id>/<pid namespace>/<pid>/<start time>`: a process on the
    /// same machine and in the same pid namespace that finds it gone need not wait for the expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<String>,
}

/// A structured refusal to do the work.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Decline {
    /// Why.
    pub reason: DeclineReason,
    /// In the agent's words.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// The reasons an agent may decline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DeclineReason {
    /// The work cannot be done.
    Impossible,
    /// Doing it would be unsafe.
    Unsafe,
    /// It is not what this agent or Task is for.
    OutOfScope,
    /// It is too large for one Task and must be split.
    NeedsSplitting,
    /// The session's authority does not allow it.
    InsufficientAuthority,
}

fn session_references(r: &Resource) -> Vec<Reference> {
    Edges::new(r)
        .object("taskRef", "Task")
        .object("agentRef", "Agent")
        .object("parentSessionRef", "AgentSession")
        .object("reviewOf.artifactRef", "Artifact")
        .done()
}

/// The AgentSession kind.
pub const AGENT_SESSION: KindInfo = KindInfo {
    group: GROUP,
    version: VERSION,
    kind: "AgentSession",
    plural: "agentsessions",
    singular: "agentsession",
    short_names: &["as", "session", "sessions"],
    namespaced: true,
    schema: || {
        r5e_schema::<AgentSessionSpec, AgentSessionStatus>(
            "AgentSession",
            "One run of one agent under exactly the authority it was delegated.",
        )
    },
    references: session_references,
    printer_columns: &[
        string_column("Phase", ".status.phase"),
        string_column("Role", ".spec.role"),
        string_column("Task", ".spec.taskRef.name"),
        string_column("Agent", ".spec.agentRef.name"),
        string_column("Model", ".spec.model.name"),
        AGE,
    ],
};

fn is_zero(n: &u32) -> bool {
    *n == 0
}
