//! The harness protocol, `r5e.harness/v1`: the JSON objects r5e and a harness exchange, one per
//! line, on the harness's stdin and stdout. docs/harness-protocol.md describes every message.

use domain::Authority;
use domain::kinds::agents::ModelIdentity;
use domain::kinds::artifact::Verdict;
use domain::kinds::task::{DeclineReason, SessionRole};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use domain::kinds::agents::HARNESS_PROTOCOL as VERSION;

/// What r5e sends a harness.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum HostMessage {
    /// The first message: everything the session needs to know.
    Session(Box<Envelope>),
    /// The answer to a `tool_call`.
    ToolResult {
        /// The call's id.
        id: String,
        /// Whether the call was allowed and succeeded.
        ok: bool,
        /// The tool's output, when `ok`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        result: Option<Value>,
        /// Why the call was refused or failed, when not `ok`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// The answer to a `create_node`.
    NodeResult {
        /// The request's id.
        id: String,
        /// Whether admission allowed the Node.
        ok: bool,
        /// The Node's name, when created.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// Why admission refused it, when not `ok`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// The session said `done` without a reflection: this asks for one, once.
    Reflect {
        /// Why it is asked.
        reason: String,
    },
}

/// The session envelope: the task, its inputs, the guidelines, the tools and the authority.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    /// The protocol version, `r5e.harness/v1`.
    pub protocol: String,
    /// Who is running.
    pub session: SessionInfo,
    /// What to do.
    pub task: TaskInfo,
    /// The Node's `spec.inputs`: parameters of the work.
    #[serde(default)]
    pub parameters: Map<String, Value>,
    /// Artifacts given as input (the previous step's output, a review to address, ...).
    #[serde(default)]
    pub inputs: Vec<Document>,
    /// Guidelines that apply, each with the digest recorded on the session.
    #[serde(default)]
    pub guidelines: Vec<Guideline>,
    /// Tools the session may call.
    #[serde(default)]
    pub tools: Vec<ToolInfo>,
    /// Exactly the authority the session holds.
    pub authority: Authority,
    /// For a reviewer: the Artifact to review.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<Document>,
    /// A directory the harness may use as scratch space.
    pub workspace: String,
    /// For a session taken up again after its process died: what was recorded before. The
    /// harness must answer `resume` first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<Resume>,
}

/// What a resumed session had done, as the chain and the CAS recorded it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resume {
    /// How many times the session has been taken up again, this one included.
    pub resumed: u32,
    /// The Artifacts it recorded (outputs, verdict, decline, reflection): each stays recorded and
    /// counts for the session; sending one again records nothing new.
    pub artifacts: Vec<ResumedArtifact>,
    /// The tool calls that ran to an answer. A call made again with the same `id` and arguments
    /// gets the recorded answer; one that was running when the process died is refused.
    pub tool_calls: Vec<ResumedCall>,
}

/// An Artifact a resumed session had recorded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResumedArtifact {
    /// `Output`, `Review`, `Decline` or `Reflection`.
    #[serde(rename = "type")]
    pub type_: String,
    /// The name the harness gave it (outputs only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The Artifact resource.
    pub artifact: String,
    /// `sha256:...` of its bytes.
    pub digest: String,
}

/// A tool call a resumed session had made.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResumedCall {
    /// The harness's id for it.
    pub id: String,
    /// The Tool.
    pub tool: String,
    /// Whether it was allowed.
    pub ok: bool,
}

/// The session, as the harness sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionInfo {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its uid.
    pub uid: String,
    /// Producer, Reviewer or Orchestrator.
    pub role: SessionRole,
    /// Which attempt at the Task, from 1.
    pub attempt: u32,
    /// The Agent's name.
    pub agent: String,
    /// The model identity the session is recorded under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelIdentity>,
}

/// The Task, as the harness sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskInfo {
    /// The Task's name.
    pub name: String,
    /// Its Graph.
    pub graph: String,
    /// Its Node.
    pub node: String,
    /// The Node's description.
    #[serde(default)]
    pub description: String,
    /// The Workflow step.
    #[serde(default)]
    pub step: String,
    /// What to do.
    #[serde(default)]
    pub instructions: String,
}

/// Content given to the harness, with its digest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Document {
    /// A name for it (`draft`, `review`, an Artifact's name).
    pub name: String,
    /// `sha256:...` of the bytes.
    pub digest: String,
    /// Its media type.
    pub media_type: String,
    /// The content when it is UTF-8 text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// The content, base64, when it is not UTF-8 text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_base64: Option<String>,
}

/// A Guideline given to the session.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Guideline {
    /// The Guideline's name.
    pub name: String,
    /// `sha256:...` of its content, as recorded on the session.
    pub digest: String,
    /// The text.
    pub content: String,
}

/// A Tool the session may call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolInfo {
    /// The Tool's name.
    pub name: String,
    /// What it does.
    #[serde(default)]
    pub description: String,
    /// A JSON Schema of its arguments.
    #[serde(default)]
    pub input_schema: Value,
}

/// What a harness sends r5e.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AgentMessage {
    /// The answer to an envelope carrying `resume`: the first line of a resumed session, and
    /// only there.
    Resume {
        /// Whether it takes the session up from what was recorded.
        accept: bool,
        /// Why not, when it refuses.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Call a Tool; r5e answers with `tool_result`.
    ToolCall {
        /// An id the harness chooses, echoed in the result.
        id: String,
        /// The Tool's name.
        tool: String,
        /// Its arguments, checked against the Tool's input schema.
        #[serde(default)]
        arguments: Value,
    },
    /// Output of the work, stored in the CAS and recorded as an Artifact.
    Artifact {
        /// Its name (`notes.md`).
        name: String,
        /// Its media type.
        #[serde(default = "text_plain", rename = "mediaType")]
        media_type: String,
        /// UTF-8 content.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content: Option<String>,
        /// Binary content, base64.
        #[serde(default, skip_serializing_if = "Option::is_none", rename = "contentBase64")]
        content_base64: Option<String>,
    },
    /// A reviewer's verdict on the Artifact under review.
    Verdict {
        /// `Approve` or `Reject`.
        verdict: Verdict,
        /// What was checked, and what must change.
        #[serde(default)]
        comments: String,
    },
    /// Refuse the work, with a structured reason.
    Decline {
        /// `Impossible`, `Unsafe`, `OutOfScope`, `NeedsSplitting` or `InsufficientAuthority`.
        reason: DeclineReason,
        /// In the agent's words.
        #[serde(default)]
        message: String,
    },
    /// An orchestrator's new Node, created through admission under the session's authority.
    CreateNode {
        /// An id the harness chooses, echoed in `node_result`.
        id: String,
        /// The Node's name.
        name: String,
        /// The Node's spec (its Graph is the session's).
        node: Value,
    },
    /// The session's reflection: required before it may end.
    Reflection {
        /// What went well.
        #[serde(rename = "wentWell")]
        went_well: String,
        /// What did not.
        #[serde(rename = "wentBadly")]
        went_badly: String,
        /// What the system could do better.
        #[serde(rename = "couldImprove")]
        could_improve: String,
    },
    /// A line for the transcript.
    Log {
        /// The text.
        message: String,
    },
    /// The harness has finished.
    Done {
        /// `Succeeded` or `Failed`.
        outcome: Outcome,
        /// A summary.
        #[serde(default)]
        message: String,
    },
}

fn text_plain() -> String {
    "text/plain".to_string()
}

/// How a harness says its work ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// The work is done.
    Succeeded,
    /// The work could not be done.
    Failed,
}

impl AgentMessage {
    /// The message's `type`, for errors and the transcript.
    pub fn type_name(&self) -> &'static str {
        match self {
            AgentMessage::Resume { .. } => "resume",
            AgentMessage::ToolCall { .. } => "tool_call",
            AgentMessage::Artifact { .. } => "artifact",
            AgentMessage::Verdict { .. } => "verdict",
            AgentMessage::Decline { .. } => "decline",
            AgentMessage::CreateNode { .. } => "create_node",
            AgentMessage::Reflection { .. } => "reflection",
            AgentMessage::Log { .. } => "log",
            AgentMessage::Done { .. } => "done",
        }
    }

    /// Parse one line a harness printed.
    pub fn parse(line: &str) -> Result<AgentMessage, String> {
        serde_json::from_str(line).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn messages_read_as_documented() {
        let call = AgentMessage::parse(r#"{"type":"tool_call","id":"1","tool":"wc","arguments":{"text":"a b"}}"#);
        assert_eq!(
            call.unwrap(),
            AgentMessage::ToolCall { id: "1".into(), tool: "wc".into(), arguments: json!({"text": "a b"}) }
        );
        let decline = AgentMessage::parse(r#"{"type":"decline","reason":"NeedsSplitting","message":"too big"}"#);
        assert!(matches!(decline, Ok(AgentMessage::Decline { reason: DeclineReason::NeedsSplitting, .. })));
        let artifact = AgentMessage::parse(r#"{"type":"artifact","name":"a","content":"x"}"#).unwrap();
        assert!(matches!(artifact, AgentMessage::Artifact { ref media_type, .. } if media_type == "text/plain"));
    }

    #[test]
    fn garbage_is_refused_with_a_reason() {
        for bad in [
            "hello",
            r#"{"type":"teleport"}"#,
            r#"{"type":"done","outcome":"Maybe"}"#,
            r#"{"type":"tool_call","id":"1","tool":"x","sneaky":true}"#,
            r#"{"type":"decline","reason":"Bored"}"#,
        ] {
            assert!(AgentMessage::parse(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn host_messages_carry_their_type() {
        let m = HostMessage::Reflect { reason: "no reflection was given".into() };
        assert_eq!(serde_json::to_value(&m).unwrap()["type"], "reflect");
        let r = HostMessage::ToolResult { id: "1".into(), ok: false, result: None, error: Some("denied".into()) };
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!({"type":"tool_result","id":"1","ok":false,"error":"denied"})
        );
    }
}
