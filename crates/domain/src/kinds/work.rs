//! The kinds that declare work: Graph (the root container), Node (one unit of work in a Graph)
//! and Workflow (the steps a Node's work goes through, with their review policy).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{AGE, Edges, KindInfo, integer_column, r5e_schema, string_column};
use crate::authority::Authority;
use crate::digest::Digest;
use crate::resource::{Condition, GROUP, ObjectRef, Reference, Resource, VERSION};
use crate::selector::LabelSelector;

// ---------------------------------------------------------------------------------------------
// Graph

/// What a team wants done, and the rules it must be done under.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GraphSpec {
    /// What this body of work is for.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The root authority of all work inside the Graph; every Node, Task and AgentSession in it
    /// holds a subset of this.
    pub authority: Authority,
    /// Policies that apply to work in this Graph, in addition to those that apply everywhere.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policy_refs: Vec<ObjectRef>,
    /// Guidelines given to every agent working in this Graph.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub guideline_refs: Vec<ObjectRef>,
    /// At most this many Nodes run at once; absent means no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallel_nodes: Option<u32>,
}

/// What the system observes of a Graph.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GraphStatus {
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Observed conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Where the Graph as a whole stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<GraphPhase>,
    /// How many of its Nodes are in each phase.
    #[serde(default)]
    pub nodes: NodeCounts,
}

/// The phases of a Graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum GraphPhase {
    /// No Node has started.
    Pending,
    /// Some Node is not yet finished.
    Running,
    /// Every Node succeeded.
    Succeeded,
    /// Some Node failed or declined and nothing else can run.
    Failed,
    /// Some Node is blocked (for instance, no independent reviewer is available).
    Blocked,
}

/// Counts of a Graph's Nodes by phase.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeCounts {
    /// All Nodes of the Graph.
    #[serde(default)]
    pub total: u32,
    /// Nodes not yet started.
    #[serde(default)]
    pub pending: u32,
    /// Nodes waiting for the Nodes they depend on.
    #[serde(default)]
    pub waiting: u32,
    /// Nodes at work.
    #[serde(default)]
    pub running: u32,
    /// Nodes whose work was done and approved.
    #[serde(default)]
    pub succeeded: u32,
    /// Nodes that failed.
    #[serde(default)]
    pub failed: u32,
    /// Nodes that cannot proceed.
    #[serde(default)]
    pub blocked: u32,
    /// Nodes whose work was declined.
    #[serde(default)]
    pub declined: u32,
}

fn graph_references(r: &Resource) -> Vec<Reference> {
    Edges::new(r).objects("policyRefs", "Policy").objects("guidelineRefs", "Guideline").done()
}

/// The Graph kind.
pub const GRAPH: KindInfo = KindInfo {
    group: GROUP,
    version: VERSION,
    kind: "Graph",
    plural: "graphs",
    singular: "graph",
    short_names: &["gr"],
    namespaced: true,
    schema: || {
        r5e_schema::<GraphSpec, GraphStatus>(
            "Graph",
            "A body of work: the root container of Nodes, holding the root authority.",
        )
    },
    references: graph_references,
    printer_columns: &[
        string_column("Phase", ".status.phase"),
        integer_column("Nodes", ".status.nodes.total"),
        integer_column("Succeeded", ".status.nodes.succeeded"),
        AGE,
    ],
};

// ---------------------------------------------------------------------------------------------
// Node

/// One unit of work in a Graph.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeSpec {
    /// The Graph this Node belongs to.
    pub graph_ref: ObjectRef,
    /// What this Node is about.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// What sort of thing the Node stands for.
    #[serde(default)]
    pub node_type: NodeType,
    /// Names of Nodes in the same Graph that must succeed before this one starts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// The Workflow whose steps this Node's work goes through; absent means one step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_ref: Option<ObjectRef>,
    /// Free-form inputs handed to the agents working on this Node.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub inputs: Map<String, Value>,
    /// The authority of work on this Node, narrowed from the Graph's; absent means the Graph's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<Authority>,
}

/// What sort of thing a Node stands for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum NodeType {
    /// A problem to be understood or solved.
    Problem,
    /// A thing in the domain (a service, a document, a dataset).
    Entity,
    /// A piece of work to be done (the default).
    #[default]
    WorkItem,
    /// A part of a code base.
    CodeStructure,
    /// Something learnt, to be kept and reused.
    Knowledge,
}

/// What the system observes of a Node.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Observed conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Where the Node stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<NodePhase>,
    /// The Workflow step now being worked on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_step: Option<String>,
    /// The Tasks created for this Node, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub task_refs: Vec<ObjectRef>,
    /// Digests of the approved Artifacts this Node produced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<Digest>,
    /// Human-readable detail on the phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The phases of a Node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum NodePhase {
    /// Not yet considered.
    Pending,
    /// Waiting for the Nodes it depends on.
    Waiting,
    /// Its Tasks are at work.
    Running,
    /// Every step's output was produced and approved.
    Succeeded,
    /// A step failed for good.
    Failed,
    /// A step cannot proceed; the message says why.
    Blocked,
    /// An agent declined the work; the orchestrator may re-plan.
    Declined,
}

fn node_references(r: &Resource) -> Vec<Reference> {
    Edges::new(r).object("graphRef", "Graph").names("dependsOn", "Node").object("workflowRef", "Workflow").done()
}

/// The Node kind.
pub const NODE: KindInfo = KindInfo {
    group: GROUP,
    version: VERSION,
    kind: "Node",
    plural: "nodes",
    singular: "node",
    short_names: &["nd"],
    namespaced: true,
    schema: || r5e_schema::<NodeSpec, NodeStatus>("Node", "One unit of work in a Graph."),
    references: node_references,
    printer_columns: &[
        string_column("Graph", ".spec.graphRef.name"),
        string_column("Type", ".spec.nodeType"),
        string_column("Phase", ".status.phase"),
        string_column("Step", ".status.currentStep"),
        AGE,
    ],
};

// ---------------------------------------------------------------------------------------------
// Workflow

/// The steps a Node's work goes through.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkflowSpec {
    /// What this Workflow is for.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The steps, run in order; at least one.
    #[schemars(length(min = 1))]
    pub steps: Vec<WorkflowStep>,
    /// Guidelines given to every agent working on a step of this Workflow.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub guideline_refs: Vec<ObjectRef>,
}

/// One step of a Workflow; each step of each Node becomes a Task.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkflowStep {
    /// The step's name, unique within the Workflow.
    pub name: String,
    /// What the agent is asked to do.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub instructions: String,
    /// Which Agents may do this step (matched against Agent labels); empty matches every Agent.
    #[serde(default)]
    pub agent_selector: LabelSelector,
    /// How the step's output is reviewed.
    #[serde(default)]
    pub review: ReviewPolicy,
    /// Tools the agent may call during this step (subject to its authority).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_refs: Vec<ObjectRef>,
    /// The step's time limit per attempt, in seconds (at most a week); absent means the harness's limit.
    #[schemars(range(min = 1, max = 604800))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
}

/// How the output of a step or Task is reviewed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReviewPolicy {
    /// Whether review is required. Setting this to false is itself subject to policy.
    #[serde(default = "default_true")]
    pub required: bool,
    /// Which Agents may review (matched against Agent labels); the reviewer must in any case
    /// differ from the producer in model, provider and session lineage.
    #[serde(default)]
    pub reviewer_selector: LabelSelector,
    /// How many produce-review rounds are tried before the Task fails.
    #[serde(default = "default_max_rounds")]
    pub max_rounds: u32,
}

impl Default for ReviewPolicy {
    fn default() -> Self {
        ReviewPolicy { required: true, reviewer_selector: LabelSelector::default(), max_rounds: default_max_rounds() }
    }
}

fn default_true() -> bool {
    true
}

fn default_max_rounds() -> u32 {
    2
}

/// What the system observes of a Workflow.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowStatus {
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Observed conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

fn workflow_references(r: &Resource) -> Vec<Reference> {
    Edges::new(r).objects_in_each("steps", "toolRefs", "Tool").objects("guidelineRefs", "Guideline").done()
}

/// The Workflow kind.
pub const WORKFLOW: KindInfo = KindInfo {
    group: GROUP,
    version: VERSION,
    kind: "Workflow",
    plural: "workflows",
    singular: "workflow",
    short_names: &["wf"],
    namespaced: true,
    schema: || {
        r5e_schema::<WorkflowSpec, WorkflowStatus>(
            "Workflow",
            "The ordered steps a Node's work goes through, and how each step is reviewed.",
        )
    },
    references: workflow_references,
    printer_columns: &[AGE],
};
