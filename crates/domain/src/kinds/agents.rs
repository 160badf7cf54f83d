//! The kinds that describe who does the work and with what: Agent (a worker with a role and a
//! model identity), Harness (how an agent is run: a subprocess or a built-in model loop) and
//! Tool (something an agent may call, behind a capability).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{AGE, Edges, KindInfo, integer_column, owners_only, r5e_schema, string_column};
use crate::resource::{Condition, GROUP, ObjectRef, Reference, Resource, VERSION};

/// The identity of a model, compared to keep reviewers independent of producers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ModelIdentity {
    /// Who serves the model (`openai`, `anthropic`, `scripted`, or any other name).
    pub provider: String,
    /// The model's name at that provider.
    pub name: String,
    /// The model's version, when the provider distinguishes versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// Ready or not: the phase of kinds that are configuration rather than work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ReadyPhase {
    /// Usable.
    Ready,
    /// Not usable; the message says why.
    NotReady,
}

// ---------------------------------------------------------------------------------------------
// Agent

/// A worker: a role, a harness to run it, a model identity and the most it may be granted.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentSpec {
    /// What the agent is good at.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// What the agent is for.
    #[serde(default)]
    pub role: AgentRole,
    /// The Harness that runs the agent.
    pub harness_ref: ObjectRef,
    /// The model behind the agent; reviewers must differ from producers in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelIdentity>,
    /// Capability patterns the agent may be granted at most, whatever a Task delegates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
    /// How many sessions the agent may run at once.
    #[serde(default = "default_max_sessions")]
    pub max_concurrent_sessions: u32,
}

fn default_max_sessions() -> u32 {
    1
}

/// What an Agent is for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum AgentRole {
    /// Does Tasks (the default).
    #[default]
    Task,
    /// Reviews other agents' Artifacts.
    Reviewer,
    /// Plans and splits work.
    Orchestrator,
}

/// What the system observes of an Agent.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentStatus {
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Observed conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Whether the agent can take sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<ReadyPhase>,
    /// Sessions running now.
    #[serde(default)]
    pub active_sessions: u32,
    /// Human-readable detail on the phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

fn agent_references(r: &Resource) -> Vec<Reference> {
    Edges::new(r).object("harnessRef", "Harness").done()
}

/// The Agent kind.
pub const AGENT: KindInfo = KindInfo {
    group: GROUP,
    version: VERSION,
    kind: "Agent",
    plural: "agents",
    singular: "agent",
    short_names: &["ag"],
    namespaced: true,
    schema: || r5e_schema::<AgentSpec, AgentStatus>("Agent", "A worker that runs sessions."),
    references: agent_references,
    printer_columns: &[
        string_column("Role", ".spec.role"),
        string_column("Harness", ".spec.harnessRef.name"),
        string_column("Model", ".spec.model.name"),
        string_column("Phase", ".status.phase"),
        integer_column("Active", ".status.activeSessions"),
        AGE,
    ],
};

// ---------------------------------------------------------------------------------------------
// Harness

/// How an agent is run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(transform = require_matching_section)]
pub struct HarnessSpec {
    /// `command` runs a subprocess; `model` runs the built-in model loop.
    #[serde(rename = "type")]
    pub type_: HarnessType,
    /// The subprocess, for `type: command`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<CommandHarness>,
    /// The model loop, for `type: model`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelHarness>,
    /// The version of the harness protocol spoken on stdio.
    #[serde(default = "default_protocol")]
    pub protocol_version: String,
    /// How a `command` harness is confined: `landlock` (the default) or `none`, which runs it
    /// with the server's access to the filesystem and network. Policy sees this field, so an
    /// operator can forbid unconfined harnesses. Where the kernel cannot confine, a session of a
    /// Harness that did not choose `none` fails with the reason.
    #[serde(default, skip_serializing_if = "SandboxMode::is_default")]
    pub sandbox: SandboxMode,
}

/// How a `command` harness is confined.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SandboxMode {
    /// Landlock: read-write only in its workspace, read-only on the system and the base
    /// directory, TCP only to the API and the ports it declares; resource limits from budgets.
    #[default]
    Landlock,
    /// Not confined (an explicit choice, visible to policy).
    None,
}

impl SandboxMode {
    fn is_default(&self) -> bool {
        *self == SandboxMode::Landlock
    }
}

/// The version of the harness protocol this release speaks.
pub const HARNESS_PROTOCOL: &str = "r5e.harness/v1";

fn default_protocol() -> String {
    HARNESS_PROTOCOL.to_string()
}

/// Adds "`type: command` requires `command`" and likewise for `model` to the schema.
fn require_matching_section(schema: &mut schemars::Schema) {
    let rule = |t: &str| {
        serde_json::json!({
            "if": { "properties": { "type": { "const": t } }, "required": ["type"] },
            "then": { "required": [t] }
        })
    };
    schema.insert("allOf".into(), Value::Array(vec![rule("command"), rule("model")]));
}

/// The two ways of running an agent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum HarnessType {
    /// Any program speaking the harness protocol (JSON lines on stdin and stdout).
    #[default]
    Command,
    /// The built-in tool-calling loop against a model provider.
    Model,
}

/// A subprocess harness.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CommandHarness {
    /// The program to run (a path, or a name looked up in `PATH`).
    pub program: String,
    /// Its arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Environment variables set for it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// The directory it runs in, relative to the runtime's base directory; absent means that directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// Wall-clock limit per session, in seconds (at most a week).
    #[schemars(range(min = 1, max = 604800))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
    /// Output beyond this many bytes is refused and the session fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_bytes: Option<u64>,
    /// More paths the confined harness may read (relative to the base directory unless
    /// absolute), such as an interpreter installed outside the system directories. The data
    /// directory stays hidden even under one of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub read_paths: Vec<String>,
    /// TCP ports the confined harness may connect to, beyond the API's (a model gateway's, say).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connect_ports: Vec<u16>,
    /// Secrets of the server handed to the harness as environment variables: each names where
    /// the value is (an environment variable or a file of the server), never the value. Policy
    /// sees the names; the session records which it was given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SecretRef>,
    /// The program can take up a session whose process died: it is started again with a
    /// `resume` member in its envelope (what was recorded so far) and must answer `resume`
    /// first, accepting or refusing. Without it, such a session is Degraded instead.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resume: bool,
}

/// A secret of the server, by reference.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretRef {
    /// The environment variable the harness gets it in.
    pub name: String,
    /// The server's environment variable that holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_env: Option<String>,
    /// The server's file that holds it (never one in the data directory or the work dir).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_file: Option<String>,
}

/// A built-in model loop.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ModelHarness {
    /// The provider's API dialect.
    pub provider: ModelProvider,
    /// The API base URL; absent means the provider's public endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The model to call.
    pub model: String,
    /// The environment variable of the server that holds the API key (never the key itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// At most this many model turns per session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_turns: Option<u32>,
    /// For the `scripted` provider: the replies to give, in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<Value>,
    /// What the model costs, so that the `cost_micros` budget can be charged; a session whose
    /// authority sets that budget does not start on a Harness without a price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<ModelPrice>,
}

/// The price of a model, in millionths of the currency unit (the unit of the `cost_micros`
/// budget) per million tokens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ModelPrice {
    /// Per million input tokens.
    pub input_per_million_tokens: u64,
    /// Per million output tokens.
    pub output_per_million_tokens: u64,
}

impl ModelPrice {
    /// The cost of a call that used `input` and `output` tokens, rounded up.
    pub fn cost(&self, input: u64, output: u64) -> u64 {
        let micros = (u128::from(input) * u128::from(self.input_per_million_tokens))
            .saturating_add(u128::from(output) * u128::from(self.output_per_million_tokens));
        u64::try_from(micros.div_ceil(1_000_000)).unwrap_or(u64::MAX)
    }

    /// The most output tokens that `left` can pay for (unbounded when output is free).
    pub fn output_for(&self, left: u64) -> u64 {
        if self.output_per_million_tokens == 0 {
            return u64::MAX;
        }
        u64::try_from(u128::from(left) * 1_000_000 / u128::from(self.output_per_million_tokens)).unwrap_or(u64::MAX)
    }
}

/// The model API dialects of the built-in loop.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ModelProvider {
    /// OpenAI-compatible chat completions.
    #[default]
    Openai,
    /// Anthropic messages.
    Anthropic,
    /// A deterministic script, for tests and offline examples.
    Scripted,
}

/// What the system observes of a Harness.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HarnessStatus {
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Observed conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Whether the harness can run sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<ReadyPhase>,
    /// Human-readable detail on the phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The Harness kind.
pub const HARNESS: KindInfo = KindInfo {
    group: GROUP,
    version: VERSION,
    kind: "Harness",
    plural: "harnesses",
    singular: "harness",
    short_names: &["hn"],
    namespaced: true,
    schema: || {
        r5e_schema::<HarnessSpec, HarnessStatus>(
            "Harness",
            "How an agent is run: a subprocess or the built-in model loop.",
        )
    },
    references: owners_only,
    printer_columns: &[string_column("Type", ".spec.type"), string_column("Phase", ".status.phase"), AGE],
};

// ---------------------------------------------------------------------------------------------
// Tool

/// Something an agent may call during a session, if its authority holds the capability.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ToolSpec {
    /// What the tool does, as shown to the model.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// A JSON Schema of the tool's arguments; every call is validated against it.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub input_schema: Map<String, Value>,
    /// The capability a session's authority must hold to call the tool.
    pub capability: String,
    /// The program that carries out a call; a Tool without one cannot be called.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<ToolCommand>,
    /// What a call touches outside r5e, when it touches something: the calling session's
    /// `scope` must cover it, or the call is refused before the program runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<ToolTarget>,
}

/// The outside resource a Tool call touches: `system:path`, where the path is the value of one
/// of the call's arguments (e.g. `system: repo`, `argument: path` makes a call with
/// `{"path": "notes/2.4.md"}` touch `repo:notes/2.4.md`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ToolTarget {
    /// The system the paths belong to (`repo`, `bucket`; not `r5e`, which names r5e's own objects).
    #[schemars(regex(pattern = r"^[a-z][a-z0-9.-]{0,62}$"))]
    pub system: String,
    /// The argument (a string) that holds the path.
    #[schemars(length(min = 1, max = 253))]
    pub argument: String,
}

impl ToolTarget {
    /// The scope entry a call with `args` touches, or why the call names none that can be checked.
    pub fn of(&self, args: &serde_json::Value) -> Result<String, String> {
        if self.system == "r5e" {
            return Err("the system `r5e` names r5e's own objects, which no Tool touches".into());
        }
        let Some(path) = args.get(&self.argument).and_then(serde_json::Value::as_str) else {
            return Err(format!("the call must name what it touches in the string argument `{}`", self.argument));
        };
        crate::authority::tool_scope(&self.system, path)
            .map_err(|e| format!("argument `{}` does not name a path in `{}`: {e}", self.argument, self.system))
    }
}

/// The program behind a Tool: it gets the call's arguments as JSON on stdin and answers on stdout.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ToolCommand {
    /// The program to run.
    pub program: String,
    /// Its arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Wall-clock limit per call, in seconds (at most a week).
    #[schemars(range(min = 1, max = 604800))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
}

/// What the system observes of a Tool.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ToolStatus {
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Observed conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// The Tool kind.
pub const TOOL: KindInfo = KindInfo {
    group: GROUP,
    version: VERSION,
    kind: "Tool",
    plural: "tools",
    singular: "tool",
    short_names: &["tl"],
    namespaced: true,
    schema: || r5e_schema::<ToolSpec, ToolStatus>("Tool", "Something an agent may call."),
    references: owners_only,
    printer_columns: &[string_column("Capability", ".spec.capability"), AGE],
};
