//! Running one AgentSession: gather what the agent is given (task, inputs, guidelines by the
//! digests recorded on the session, tools, authority), start its harness, answer its calls,
//! turn everything it produces into Artifacts, insist on a reflection, and record the outcome.
//! Any harness fault (garbage, a crash, a hang, a flood) fails the session with a reason that
//! lands on the audit chain with the status write.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use admission::{Identity, REFLECTED};
use base64::Engine;
use chrono::Utc;
use domain::kinds::agents::{
    AgentSpec, CommandHarness, HarnessSpec, HarnessType, ModelProvider, SandboxMode, ToolSpec,
};
use domain::kinds::artifact::{ArtifactInput, ArtifactSpec, ArtifactType, Provenance};
use domain::kinds::task::{
    AgentSessionSpec, AgentSessionStatus, Decline, SessionCredential, SessionPhase, SessionRole, TaskSpec,
};
use domain::kinds::work::{GraphSpec, NodeSpec, WorkflowSpec};
use domain::resource::{Condition, ConditionStatus, ObjectRef};
use domain::{Digest, ObjectKey, Resource};
use serde_json::{Value, json};

use crate::budgets;
use crate::context::{Context, SandboxConfig, labels, local_ref, new_resource, spec, status};
use crate::harness::command::{Subprocess, resolve};
use crate::harness::model::{DEFAULT_MAX_TURNS, Journal, ModelLoop, Spending};
use crate::harness::providers::{Anthropic, ChatReply, OpenAi, Provider, Scripted};
use crate::harness::{Fault, Harness};
use crate::protocol::{self, AgentMessage, Document, Envelope, HostMessage, Outcome, SessionInfo, TaskInfo};
use crate::sandbox::{self, Limits, Plan};
use crate::tools::{self, Caller, TOOL_CALLS};

/// Wall-clock limit of a session when neither the Harness nor the step sets one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a harness asked for its reflection has to give it.
const REFLECT_WAIT: Duration = Duration::from_secs(30);

/// Everything loaded to run a session.
struct Loaded {
    session: Resource,
    spec: AgentSessionSpec,
    task_spec: TaskSpec,
    harness: HarnessSpec,
    envelope: Envelope,
    timeout: Duration,
    /// What set `timeout`, for the failure it causes.
    timeout_reason: String,
    /// The Tools the Workflow step names, when it names any: only these may be called.
    step_tools: Option<Vec<String>>,
    /// The work chain from the Graph down to the session, for its token.
    chain: Vec<tokens::Level>,
    /// What the session may read outright (kind, name): its own objects and its inputs.
    reads: Vec<(String, String)>,
    /// Another process ran it before and died: what was recorded is replayed, not redone.
    resumed: bool,
}

/// What the harness produced, as it went.
#[derive(Default)]
struct Record {
    artifacts: Vec<ObjectRef>,
    outputs: u32,
    reflection: Option<ObjectRef>,
    decline: Option<Decline>,
    verdict: Option<ObjectRef>,
    nodes: Vec<String>,
    outcome: Option<(Outcome, String)>,
    fault: Option<String>,
    tool_calls: u64,
    /// Bytes of the artifacts produced so far (the transcript aside).
    artifact_bytes: u64,
    transcript: Vec<u8>,
    /// For a resumed command session, the outputs recorded before (the name the harness gave,
    /// the digest): sending one again records nothing new.
    restored: Vec<(String, Digest)>,
}

impl Record {
    fn note(&mut self, direction: &str, message: &Value) {
        let line = json!({"at": Utc::now().to_rfc3339(), "dir": direction, "message": message});
        self.transcript.extend_from_slice(line.to_string().as_bytes());
        self.transcript.push(b'\n');
    }
}

/// Run the session at `key`, whose lease this process holds, to its end.
pub async fn run(ctx: Arc<Context>, key: ObjectKey) {
    // A process that loses the lease (another took it over after it could not renew) stops at
    // once: dropping the run ends its harness, and it writes nothing more for the session.
    tokio::select! {
        outcome = run_inner(&ctx, &key) => {
            if let Err(e) = outcome {
                tracing::error!(session = %key, error = %e, "session could not be recorded");
                let reason = format!("the session could not be run: {e}");
                let _ = end(&ctx, &key, Record { fault: Some(reason), ..Default::default() }, SessionPhase::Failed).await;
            }
        }
        why = renew_lease(ctx.clone(), key.clone()) => {
            tracing::warn!(session = %key, "stopped running the session: {why}");
        }
    }
    ctx.running.lock().expect("running lock").remove(&key);
}

async fn run_inner(ctx: &Arc<Context>, key: &ObjectKey) -> crate::Result<()> {
    let mut record = Record::default();
    let loaded = match load(ctx, key).await {
        Ok(l) => l,
        Err(reason) => {
            record.fault = Some(reason);
            return end(ctx, key, record, SessionPhase::Failed).await;
        }
    };
    let mut identity = Identity::session(&key.namespace, &key.name, loaded.spec.authority.clone());
    let token = match mint(ctx, key, &loaded).await {
        Ok(t) => t,
        Err(reason) => {
            record.fault = Some(reason);
            return end(ctx, key, record, SessionPhase::Failed).await;
        }
    };
    if let Some(t) = &token {
        identity = identity.with_credential(t);
    }
    let journal = match loaded.harness.type_ {
        HarnessType::Model => match StoredJournal::open(ctx, &loaded, identity.actor()).await {
            Ok(j) => Some(Box::new(j) as Box<dyn Journal>),
            // A resumed session whose record cannot be trusted is not run on from it: it is
            // Degraded with the reason, and its Task's retry policy decides.
            Err(reason) if loaded.resumed => {
                record.fault = Some(format!("the session cannot be resumed: {reason}"));
                return end(ctx, key, record, SessionPhase::Degraded).await;
            }
            Err(reason) => {
                record.fault = Some(reason);
                return end(ctx, key, record, SessionPhase::Failed).await;
            }
        },
        HarnessType::Command => None,
    };
    let mut harness = match start_harness(ctx, &loaded, token.as_deref(), journal) {
        Ok(h) => h,
        Err(fault) => {
            record.fault = Some(fault.to_string());
            return end(ctx, key, record, SessionPhase::Failed).await;
        }
    };
    // A resumed session's time counts from its first start, not from each resumption.
    let spent = match loaded.resumed {
        true => status::<AgentSessionStatus>(&loaded.session)
            .ok()
            .and_then(|s| s.started_at)
            .and_then(|t| (Utc::now() - t).to_std().ok())
            .unwrap_or_default(),
        false => Duration::ZERO,
    };
    let deadline = tokio::time::Instant::now() + loaded.timeout.saturating_sub(spent);
    let mut envelope = loaded.envelope.clone();
    if loaded.resumed && loaded.harness.type_ == HarnessType::Command {
        match restore(ctx, &loaded, &mut record).await {
            Ok(resume) => envelope.resume = Some(resume),
            Err(reason) => {
                record.fault = Some(format!("the session cannot be resumed: {reason}"));
                drop(harness.finish().await);
                return end(ctx, key, record, SessionPhase::Degraded).await;
            }
        }
    }
    let asks_resume = envelope.resume.is_some();
    let first = HostMessage::Session(Box::new(envelope));
    record.note("in", &serde_json::to_value(&first).unwrap_or_default());
    let sent = harness.send(&first).await;
    if asks_resume && sent.is_ok() {
        // The first line must be the harness's answer; anything else is a refusal.
        let refused = match tokio::time::timeout_at(deadline, harness.next()).await {
            Ok(Ok(Some(AgentMessage::Resume { accept: true, .. }))) => None,
            Ok(Ok(Some(AgentMessage::Resume { accept: false, reason }))) => Some(format!(
                "the harness refused to resume it: {}",
                reason.unwrap_or_else(|| "no reason given".into())
            )),
            Ok(Ok(Some(other))) => {
                Some(format!("the harness answered the resumed envelope with `{}`, not `resume`", other.type_name()))
            }
            Ok(Ok(None)) => Some("the harness ended without answering the resumed envelope".into()),
            Ok(Err(fault)) => Some(format!("the harness did not answer the resumed envelope: {fault}")),
            Err(_) => Some("the harness did not answer the resumed envelope in time".into()),
        };
        record.note("out", &json!({"type": "resume", "accept": refused.is_none()}));
        if let Some(reason) = refused {
            record.fault = Some(format!("the session cannot be resumed: {reason}"));
            let ended = harness.finish().await;
            record.note("note", &json!({"harness": ended}));
            let usage = harness.usage();
            return end_with(ctx, key, record, SessionPhase::Degraded, Some(&loaded), usage).await;
        }
    }
    let alive = match sent {
        Ok(()) => converse(ctx, &loaded, &identity, harness.as_mut(), &mut record, deadline).await,
        Err(f) => {
            record.fault = Some(f.to_string());
            false
        }
    };
    if alive && record.fault.is_none() && record.reflection.is_none() && record.outcome.is_some() {
        let ask = HostMessage::Reflect { reason: "the session ended without a reflection".into() };
        record.note("in", &serde_json::to_value(&ask).unwrap_or_default());
        ctx.patch_status::<AgentSessionStatus, _>(key, |_, s| s.phase = Some(SessionPhase::Reflecting)).await?;
        if harness.send(&ask).await.is_ok() {
            let wait = (tokio::time::Instant::now() + REFLECT_WAIT).min(deadline);
            converse(ctx, &loaded, &identity, harness.as_mut(), &mut record, wait).await;
        }
    }
    let ended = harness.finish().await;
    record.note("note", &json!({"harness": ended}));
    for (name, amount) in harness.usage() {
        record.note("note", &json!({"usage": {name: amount}}));
    }
    if record.fault.is_none() && record.outcome.is_none() {
        record.fault = Some(format!("the harness stopped before saying done: it {ended}"));
    }
    let phase = decide(&loaded, &mut record);
    let usage = harness.usage();
    end_with(ctx, key, record, phase, Some(&loaded), usage).await
}

/// Exchange messages until `done`, the end of output, a fault or `deadline`. Returns whether the
/// harness may still be listening.
async fn converse(
    ctx: &Context,
    loaded: &Loaded,
    identity: &Identity,
    harness: &mut dyn Harness,
    record: &mut Record,
    deadline: tokio::time::Instant,
) -> bool {
    let asked_to_reflect = record.outcome.is_some();
    loop {
        let message = match tokio::time::timeout_at(deadline, harness.next()).await {
            Err(_) if asked_to_reflect => return false,
            Err(_) => {
                record.fault = Some(format!(
                    "the harness did not finish within {} s ({})",
                    loaded.timeout.as_secs(),
                    loaded.timeout_reason
                ));
                return false;
            }
            Ok(Err(fault)) => {
                record.fault = Some(fault.to_string());
                return false;
            }
            Ok(Ok(None)) => return false,
            Ok(Ok(Some(m))) => m,
        };
        record.note("out", &serde_json::to_value(&message).unwrap_or_default());
        if asked_to_reflect && !matches!(message, AgentMessage::Reflection { .. } | AgentMessage::Log { .. }) {
            // After `done`, only the reflection counts; calls are answered, not carried out.
            let late = "the session has said done: only its reflection is accepted now".to_string();
            let reply = match message {
                AgentMessage::Done { .. } => return true,
                AgentMessage::ToolCall { id, .. } => {
                    HostMessage::ToolResult { id, ok: false, result: None, error: Some(late) }
                }
                AgentMessage::CreateNode { id, .. } => {
                    HostMessage::NodeResult { id, ok: false, name: None, error: Some(late) }
                }
                _ => continue,
            };
            record.note("in", &serde_json::to_value(&reply).unwrap_or_default());
            if harness.send(&reply).await.is_err() {
                return false;
            }
            continue;
        }
        match handle(ctx, loaded, identity, record, message).await {
            Ok(Some(reply)) => {
                record.note("in", &serde_json::to_value(&reply).unwrap_or_default());
                if let Err(f) = harness.send(&reply).await {
                    record.fault = Some(f.to_string());
                    return false;
                }
            }
            Ok(None) => {}
            Err(reason) => {
                record.fault = Some(reason);
                return false;
            }
        }
        if asked_to_reflect && record.reflection.is_some() {
            return true;
        }
        if record.outcome.is_some() && !asked_to_reflect {
            return true;
        }
    }
}

/// Act on one message; `Err` is a protocol violation that ends the session.
async fn handle(
    ctx: &Context,
    loaded: &Loaded,
    identity: &Identity,
    record: &mut Record,
    message: AgentMessage,
) -> Result<Option<HostMessage>, String> {
    let role = loaded.spec.role;
    let key = loaded.session.key();
    match message {
        AgentMessage::Resume { .. } => {
            Err("`resume` is sent once, as the first line, and only when the envelope carries `resume`".into())
        }
        AgentMessage::ToolCall { id, tool, arguments } => {
            let caller = Caller {
                identity,
                session: &key,
                authority: &loaded.spec.authority,
                step_tools: loaded.step_tools.as_deref(),
                resumed: loaded.resumed,
                session_uid: loaded.session.metadata.uid.as_deref().unwrap_or_default(),
            };
            let (reply, budget_spent) = tools::call(ctx, &caller, &mut record.tool_calls, &id, &tool, &arguments).await;
            match budget_spent {
                Some(reason) => Err(format!("the session reached its budget: {reason}")),
                None => Ok(Some(reply)),
            }
        }
        AgentMessage::Artifact { name, media_type, content, content_base64 } => {
            if role == SessionRole::Reviewer {
                return Err("a reviewing session gives a verdict, not output artifacts".into());
            }
            let bytes = match (content, content_base64) {
                (Some(text), None) => text.into_bytes(),
                (None, Some(b64)) => base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|e| format!("artifact `{name}`: contentBase64 is not base64: {e}"))?,
                _ => return Err(format!("artifact `{name}` needs exactly one of content and contentBase64")),
            };
            // Recorded before the session's process died, and kept: nothing new to record.
            let digest = Digest::of(&bytes);
            if let Some(at) = record.restored.iter().position(|(n, d)| *n == name && *d == digest) {
                record.restored.remove(at);
                return Ok(None);
            }
            spend_artifact_bytes(loaded, record, bytes.len())?;
            record.outputs += 1;
            let suffix = format!("out-{}", record.outputs);
            let inputs = loaded.spec.inputs.clone();
            let r = store_artifact(
                ctx,
                loaded,
                &suffix,
                bytes,
                &media_type,
                ArtifactType::Output,
                inputs,
                Some(&name),
                |_| {},
            )
            .await?;
            record.artifacts.push(r);
            Ok(None)
        }
        AgentMessage::Verdict { verdict, comments } => {
            let Some(target) = loaded.spec.review_of.clone().filter(|_| role == SessionRole::Reviewer) else {
                return Err("only a reviewing session may give a verdict".into());
            };
            if record.verdict.is_some() {
                return Err("a reviewing session gives one verdict".into());
            }
            let body = json!({"verdict": verdict, "comments": comments, "artifact": target.artifact_ref.name, "digest": target.digest});
            spend_artifact_bytes(loaded, record, body.to_string().len())?;
            let inputs = vec![ArtifactInput { name: target.artifact_ref.name.clone(), digest: target.digest }];
            let r = store_artifact(
                ctx,
                loaded,
                "verdict",
                body.to_string().into_bytes(),
                "application/json",
                ArtifactType::Review,
                inputs,
                None,
                |s| {
                    s.review_of = Some(target.digest);
                    s.verdict = Some(verdict);
                },
            )
            .await?;
            record.artifacts.push(r.clone());
            record.verdict = Some(r);
            Ok(None)
        }
        AgentMessage::Decline { reason, message } => {
            if record.decline.is_some() {
                return Err("a session declines once".into());
            }
            let body = json!({"reason": reason, "message": message});
            spend_artifact_bytes(loaded, record, body.to_string().len())?;
            let r = store_artifact(
                ctx,
                loaded,
                "decline",
                body.to_string().into_bytes(),
                "application/json",
                ArtifactType::Decline,
                vec![],
                None,
                |_| {},
            )
            .await?;
            record.artifacts.push(r);
            record.decline = Some(Decline { reason, message });
            Ok(None)
        }
        AgentMessage::CreateNode { id, name, node } => {
            if role != SessionRole::Orchestrator {
                return Err(
                    "only an orchestrating session may create Nodes: a task agent declines with NeedsSplitting instead"
                        .into(),
                );
            }
            if let Some(reason) = budgets::over(&loaded.spec.authority, budgets::NODES, record.nodes.len() as u64, 1) {
                return Err(format!("the session reached its budget: {reason}"));
            }
            Ok(Some(create_node(ctx, loaded, identity, record, id, name, node).await))
        }
        AgentMessage::Reflection { went_well, went_badly, could_improve } => {
            if record.reflection.is_some() {
                return Err("a session reflects once".into());
            }
            let body = json!({"wentWell": went_well, "wentBadly": went_badly, "couldImprove": could_improve});
            spend_artifact_bytes(loaded, record, body.to_string().len())?;
            let r = store_artifact(
                ctx,
                loaded,
                "reflection",
                body.to_string().into_bytes(),
                "application/json",
                ArtifactType::Reflection,
                vec![],
                None,
                |_| {},
            )
            .await?;
            record.artifacts.push(r.clone());
            record.reflection = Some(r);
            Ok(None)
        }
        AgentMessage::Log { .. } => Ok(None),
        AgentMessage::Done { outcome, message } => {
            record.outcome = Some((outcome, message));
            Ok(None)
        }
    }
}

/// For a command session taken up again: put what it recorded before back in `record` (its
/// Artifacts, its allowed tool calls, the bytes it spent) and tell the harness, in the envelope's
/// `resume`. The record is what the chain and the CAS hold for this incarnation (uid), nothing
/// the dead process kept in memory.
async fn restore(ctx: &Context, loaded: &Loaded, record: &mut Record) -> Result<protocol::Resume, String> {
    let session = &loaded.session;
    let key = session.key();
    let uid = session.metadata.uid.clone().unwrap_or_default();
    let mut resume = protocol::Resume {
        resumed: status::<AgentSessionStatus>(session).map(|s| s.resumed).unwrap_or_default(),
        ..Default::default()
    };
    let mut artifacts = ctx
        .list("Artifact", &key.namespace, &[(labels::SESSION, &key.name)])
        .await
        .map_err(|e| format!("cannot list its Artifacts: {e}"))?;
    // Only this incarnation's: a session of the same name that was deleted and made again left
    // its own.
    let created = session.metadata.creation_timestamp.clone().unwrap_or_default();
    artifacts.retain(|a| a.metadata.creation_timestamp.clone().unwrap_or_default() >= created);
    artifacts.sort_by_key(|a| a.resource_version());
    for a in &artifacts {
        let spec: ArtifactSpec = spec(a).map_err(|e| format!("{}: {e}", a.key()))?;
        let r = local_ref(&a.metadata.name);
        let given = a.metadata.annotations.get("r5e.ai/artifact-name").cloned();
        record.artifact_bytes += spec.size;
        match spec.artifact_type {
            ArtifactType::Output => {
                record.outputs += 1;
                record.artifacts.push(r);
                record.restored.push((given.clone().unwrap_or_default(), spec.digest));
            }
            ArtifactType::Review => {
                record.artifacts.push(r.clone());
                record.verdict = Some(r);
            }
            ArtifactType::Reflection => {
                record.artifacts.push(r.clone());
                record.reflection = Some(r);
            }
            ArtifactType::Decline => {
                let bytes = ctx.cas.resolve(&spec.digest).await.map_err(|e| format!("{}: {e}", a.key()))?;
                let body: Decline = serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", a.key()))?;
                record.artifacts.push(r);
                record.decline = Some(body);
            }
            // Transcripts are written at the end; nothing else belongs to a session.
            _ => continue,
        }
        let type_ = serde_json::to_value(spec.artifact_type).ok().and_then(|v| v.as_str().map(String::from));
        resume.artifacts.push(protocol::ResumedArtifact {
            type_: type_.unwrap_or_default(),
            name: given,
            artifact: a.metadata.name.clone(),
            digest: spec.digest.to_string(),
        });
    }
    let query = storage::EventQuery { types: vec!["tool.call".into()], ..Default::default() };
    let calls = ctx.store().events.query(&query).await.map_err(|e| format!("cannot read its tool calls: {e}"))?;
    for e in calls.iter().filter(|e| e.data["session"] == key.to_string() && e.data["sessionUid"] == uid.as_str()) {
        let ok = e.data["allowed"] == true;
        record.tool_calls += u64::from(ok);
        resume.tool_calls.push(protocol::ResumedCall {
            id: e.data["callId"].as_str().unwrap_or_default().to_string(),
            tool: e.subject.rsplit('/').next().unwrap_or_default().to_string(),
            ok,
        });
    }
    Ok(resume)
}

/// Count `len` more artifact bytes against the session's `artifact_bytes` budget; `Err` ends the
/// session (the artifact is not stored).
fn spend_artifact_bytes(loaded: &Loaded, record: &mut Record, len: usize) -> Result<(), String> {
    let len = len as u64;
    if let Some(reason) = budgets::over(&loaded.spec.authority, budgets::ARTIFACT_BYTES, record.artifact_bytes, len) {
        return Err(format!("the session reached its budget: {reason}"));
    }
    record.artifact_bytes += len;
    Ok(())
}

async fn create_node(
    ctx: &Context,
    loaded: &Loaded,
    identity: &Identity,
    record: &mut Record,
    id: String,
    name: String,
    node: Value,
) -> HostMessage {
    let mut spec = match node {
        Value::Object(m) => m,
        _ => {
            return HostMessage::NodeResult {
                id,
                ok: false,
                name: None,
                error: Some("`node` must be an object".into()),
            };
        }
    };
    spec.insert("graphRef".into(), json!(loaded.task_spec.graph_ref));
    let graph = loaded.task_spec.graph_ref.name.clone();
    let session = loaded.session.metadata.name.clone();
    let mut object = Resource::new("Node", Some(&loaded.session.key().namespace), &name, Value::Object(spec));
    object.metadata.labels.insert(labels::GRAPH.into(), graph);
    object.metadata.labels.insert(admission::PLANNED_BY.into(), session);
    match ctx.admission.create(identity, object.to_value()).await {
        Ok(created) => {
            record.nodes.push(created.metadata.name.clone());
            HostMessage::NodeResult { id, ok: true, name: Some(created.metadata.name), error: None }
        }
        Err(e) => HostMessage::NodeResult { id, ok: false, name: None, error: Some(e.to_string()) },
    }
}

/// Store `bytes` in the CAS and record them as an Artifact of this session.
#[allow(clippy::too_many_arguments)]
async fn store_artifact(
    ctx: &Context,
    loaded: &Loaded,
    suffix: &str,
    bytes: Vec<u8>,
    media_type: &str,
    artifact_type: ArtifactType,
    inputs: Vec<ArtifactInput>,
    given_name: Option<&str>,
    adjust: impl FnOnce(&mut ArtifactSpec),
) -> Result<ObjectRef, String> {
    let size = bytes.len() as u64;
    let digest = ctx.cas.store(bytes).await.map_err(|e| format!("cannot store an artifact: {e}"))?;
    let session = &loaded.session;
    let mut spec = ArtifactSpec {
        digest,
        size,
        media_type: media_type.to_string(),
        artifact_type,
        produced_by: Provenance {
            session: local_ref(&session.metadata.name),
            agent: loaded.spec.agent_ref.clone(),
            model: loaded.spec.model.clone(),
            lineage: loaded.spec.lineage.clone(),
        },
        inputs,
        review_of: None,
        verdict: None,
        task_ref: Some(loaded.spec.task_ref.clone()),
    };
    adjust(&mut spec);
    let name = format!("{}-{suffix}", session.metadata.name);
    let resource = new_resource(
        "Artifact",
        &session.key().namespace,
        &name,
        &[(labels::TASK, &loaded.spec.task_ref.name), (labels::SESSION, &session.metadata.name)],
        &spec,
    );
    let mut resource = resource;
    if let Some(given) = given_name {
        resource.metadata.annotations.insert("r5e.ai/artifact-name".into(), given.to_string());
    }
    let stored = ctx.create(resource).await.map_err(|e| format!("cannot record artifact {name}: {e}"))?;
    if stored.spec != serde_json::to_value(&spec).unwrap_or_default() {
        return Err(format!("artifact {name} already exists with other content"));
    }
    Ok(local_ref(&name))
}

/// The condition a session gets when processes its harness left running after its r5e process
/// died were found and ended by a later one.
pub const PROCESSES_ENDED: &str = "LeftoverProcessesEnded";

/// Note on each session's status the processes that [`crate::sandbox::clean_strays`] ended for
/// it (a condition naming them), so that `r5e describe` shows what was cleaned up. A session not
/// found (deleted since) is skipped; a write that fails is logged, never fatal.
pub async fn record_strays(ctx: &Context, strays: &[crate::sandbox::Stray]) {
    if strays.is_empty() {
        return;
    }
    let mut token: Option<String> = None;
    loop {
        let query = storage::ListQuery { kind: Some("AgentSession".into()), ..Default::default() };
        let Ok(page) = ctx.store().graph.list(query, token.as_deref()).await else { return };
        for session in &page.items {
            let Some(stray) = strays.iter().find(|s| session.metadata.uid.as_deref() == Some(s.session_uid.as_str()))
            else {
                continue;
            };
            let pids: Vec<String> = stray.processes.iter().map(ToString::to_string).collect();
            let message = format!(
                "ended {} process(es) its harness left running after the r5e process that ran it died (pids {})",
                pids.len(),
                pids.join(", ")
            );
            let written = ctx
                .patch_status::<AgentSessionStatus, _>(&session.key(), |_, st| {
                    crate::controllers::set_condition(
                        &mut st.conditions,
                        PROCESSES_ENDED,
                        ConditionStatus::True,
                        "EndedAtStart",
                        &message,
                    );
                })
                .await;
            if let Err(e) = written {
                tracing::warn!(session = %session.key(), error = %e, "cannot record the processes ended for it");
            }
        }
        match page.continue_token {
            Some(t) => token = Some(t),
            None => return,
        }
    }
}

/// The event that records a model's reply to one turn of a session, before the reply is used.
pub const MODEL_REPLY: &str = "model.reply";

/// A session's journal of model replies: each reply in the CAS, and a `model.reply` event naming
/// the session, the turn and the digest, written before the reply is used. The idempotency key is
/// (session, turn): a resumed session takes the first reply recorded for each turn.
#[derive(Debug)]
struct StoredJournal {
    ctx: Arc<Context>,
    session: ObjectKey,
    /// The session's uid: a name is reused by a later incarnation, whose journal is its own.
    uid: String,
    actor: String,
    replies: BTreeMap<u32, ChatReply>,
}

impl StoredJournal {
    /// The journal of the session, with the replies this incarnation already recorded when it is
    /// being resumed (none for a session that starts).
    async fn open(ctx: &Arc<Context>, loaded: &Loaded, actor: String) -> Result<StoredJournal, String> {
        let session = loaded.session.key();
        let uid = loaded.session.metadata.uid.clone().unwrap_or_default();
        let mut journal =
            StoredJournal { ctx: ctx.clone(), session: session.clone(), uid, actor, replies: BTreeMap::new() };
        if !loaded.resumed {
            return Ok(journal);
        }
        let query = storage::EventQuery {
            types: vec![MODEL_REPLY.into()],
            subject: Some(session.to_string()),
            ..Default::default()
        };
        let events = ctx.store().events.query(&query).await.map_err(|e| format!("cannot read the journal: {e}"))?;
        for e in events.into_iter().filter(|e| e.data["uid"] == journal.uid.as_str()) {
            let step = e.data["step"].as_u64().and_then(|s| u32::try_from(s).ok());
            let digest: Option<Digest> = e.data["digest"].as_str().and_then(|d| d.parse().ok());
            let (Some(step), Some(digest)) = (step, digest) else {
                return Err(format!("the journal's event {} names no turn or digest", e.seq));
            };
            if journal.replies.contains_key(&step) {
                continue;
            }
            // A recorded reply that cannot be read back is not trusted: the session does not resume.
            let bytes = ctx.cas.resolve(&digest).await.map_err(|e| format!("turn {step} of the journal: {e}"))?;
            let reply = serde_json::from_slice(&bytes).map_err(|e| format!("turn {step} of the journal: {e}"))?;
            journal.replies.insert(step, reply);
        }
        Ok(journal)
    }
}

#[async_trait::async_trait]
impl Journal for StoredJournal {
    fn recorded(&self, step: u32) -> Option<ChatReply> {
        self.replies.get(&step).cloned()
    }

    async fn record(&self, step: u32, reply: &ChatReply) -> Result<(), String> {
        let bytes = serde_json::to_vec(reply).map_err(|e| e.to_string())?;
        let digest = self.ctx.cas.store(bytes).await.map_err(|e| e.to_string())?;
        let event = domain::chain::EventDraft {
            type_: MODEL_REPLY.into(),
            actor: self.actor.clone(),
            subject: self.session.to_string(),
            data: json!({
                "uid": self.uid,
                "step": step,
                "digest": digest.to_string(),
                "usage": {"inputTokens": reply.usage.input_tokens, "outputTokens": reply.usage.output_tokens},
            }),
        };
        self.ctx.store().events.append(event).await.map(|_| ()).map_err(|e| e.to_string())
    }
}

/// The phase the session ends in, given what it did; fills in the failure reason.
fn decide(loaded: &Loaded, record: &mut Record) -> SessionPhase {
    if record.fault.is_some() {
        return SessionPhase::Failed;
    }
    let phase = match (&record.decline, &record.outcome) {
        (Some(_), _) => SessionPhase::Declined,
        (None, Some((Outcome::Failed, message))) => {
            record.fault = Some(format!("the agent reported failure: {message}"));
            SessionPhase::Failed
        }
        (None, Some((Outcome::Succeeded, _))) => match loaded.spec.role {
            SessionRole::Producer if record.outputs == 0 => {
                record.fault = Some("the session succeeded without producing an artifact".into());
                SessionPhase::Failed
            }
            SessionRole::Reviewer if record.verdict.is_none() => {
                record.fault = Some("the reviewing session finished without a verdict".into());
                SessionPhase::Failed
            }
            SessionRole::Orchestrator if record.nodes.is_empty() => {
                record.fault = Some("the orchestrating session created no Node".into());
                SessionPhase::Failed
            }
            _ => SessionPhase::Succeeded,
        },
        (None, None) => SessionPhase::Failed,
    };
    if record.reflection.is_none() && phase != SessionPhase::Failed {
        record.fault = Some(format!("the session would have ended {phase:?} but gave no reflection, even when asked"));
        return SessionPhase::Failed;
    }
    phase
}

async fn end(ctx: &Context, key: &ObjectKey, record: Record, phase: SessionPhase) -> crate::Result<()> {
    end_with(ctx, key, record, phase, None, BTreeMap::new()).await
}

/// Store the transcript and write the final status.
async fn end_with(
    ctx: &Context,
    key: &ObjectKey,
    mut record: Record,
    phase: SessionPhase,
    loaded: Option<&Loaded>,
    mut usage: BTreeMap<String, u64>,
) -> crate::Result<()> {
    let mut transcript_digest = None;
    if let Some(loaded) = loaded {
        let bytes = std::mem::take(&mut record.transcript);
        let digest = Digest::of(&bytes);
        match store_artifact(
            ctx,
            loaded,
            "transcript",
            bytes,
            "application/x-ndjson",
            ArtifactType::Transcript,
            vec![],
            None,
            |_| {},
        )
        .await
        {
            Ok(r) => {
                transcript_digest = Some(digest);
                record.artifacts.push(r);
            }
            Err(e) => tracing::warn!(session = %key, error = %e, "the transcript could not be stored"),
        }
    }
    if record.tool_calls > 0 {
        usage.insert(TOOL_CALLS.into(), record.tool_calls);
    }
    if record.artifact_bytes > 0 {
        usage.insert(budgets::ARTIFACT_BYTES.into(), record.artifact_bytes);
    }
    if !record.nodes.is_empty() {
        usage.insert(budgets::NODES.into(), record.nodes.len() as u64);
    }
    let now = Utc::now();
    let reflected = match (&record.reflection, &record.fault) {
        (Some(_), _) => condition(ConditionStatus::True, "Reflected", "the session gave its reflection"),
        (None, Some(f)) => condition(ConditionStatus::False, "ReflectionMissing", f),
        (None, None) => condition(ConditionStatus::False, "ReflectionMissing", "no reflection was given"),
    };
    let holder = ctx.config.holder.clone();
    ctx.patch_status::<AgentSessionStatus, _>(key, |_, s| {
        // A process that lost the session to another writes nothing over the other's work.
        if s.lease.as_ref().is_some_and(|l| l.holder != holder) {
            return;
        }
        s.phase = Some(phase);
        s.finished_at = Some(now);
        s.lease = None;
        for r in &record.artifacts {
            if !s.artifact_refs.contains(r) {
                s.artifact_refs.push(r.clone());
            }
        }
        s.reflection_ref = record.reflection.clone();
        s.decline = record.decline.clone();
        s.failure = record.fault.clone();
        s.usage = usage.clone();
        s.transcript_digest = transcript_digest;
        s.conditions.retain(|c| c.type_ != REFLECTED);
        s.conditions.push(reflected.clone());
    })
    .await?;
    Ok(())
}

fn condition(status: ConditionStatus, reason: &str, message: &str) -> Condition {
    Condition {
        type_: REFLECTED.into(),
        status,
        reason: reason.into(),
        message: message.into(),
        last_transition_time: Some(Utc::now().to_rfc3339()),
        observed_generation: None,
    }
}

/// Keep the lease alive while the session runs; returns (why) only once the lease is lost: held
/// by another process, or not renewed before it expired.
async fn renew_lease(ctx: Arc<Context>, key: ObjectKey) -> String {
    let every = ctx.config.lease_ttl / 3;
    let ttl = chrono::Duration::from_std(ctx.config.lease_ttl).unwrap_or_default();
    let mut renewed_at = Utc::now();
    loop {
        tokio::time::sleep(every).await;
        let now = Utc::now();
        let holder = ctx.config.holder.clone();
        let mut other = None;
        let renewed = ctx
            .patch_status::<AgentSessionStatus, _>(&key, |_, s| match s.lease.as_mut() {
                Some(lease) if lease.holder == holder => {
                    lease.renewed_at = now;
                    lease.expires_at = now + ttl;
                }
                Some(lease) => other = Some(lease.holder.clone()),
                None => {}
            })
            .await;
        match renewed {
            Ok(_) if other.is_some() => {
                return format!("its lease is now held by {}", other.unwrap_or_default());
            }
            Ok(_) => renewed_at = now,
            Err(e) => tracing::warn!(session = %key, error = %e, "lease renewal failed"),
        }
        if Utc::now() >= renewed_at + ttl {
            return "its lease expired before it could be renewed".into();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Loading

async fn load(ctx: &Context, key: &ObjectKey) -> Result<Loaded, String> {
    let ns = key.namespace.as_str();
    let get = |kind: &'static str, name: String| async move {
        let k = ObjectKey::new(kind, ns, &name);
        ctx.get(&k).await.map_err(|e| e.to_string())?.ok_or_else(|| format!("{k} does not exist"))
    };
    let session = get("AgentSession", key.name.clone()).await?;
    let s: AgentSessionSpec = spec(&session).map_err(|e| e.to_string())?;
    let task = get("Task", s.task_ref.name.clone()).await?;
    let task_spec: TaskSpec = spec(&task).map_err(|e| e.to_string())?;
    let agent = get("Agent", s.agent_ref.name.clone()).await?;
    let agent_spec: AgentSpec = spec(&agent).map_err(|e| e.to_string())?;
    let harness_res = get("Harness", agent_spec.harness_ref.name.clone()).await?;
    let harness: HarnessSpec = spec(&harness_res).map_err(|e| e.to_string())?;
    if harness.protocol_version != protocol::VERSION {
        return Err(format!(
            "{} speaks `{}`, but this runtime speaks `{}`",
            harness_res.key(),
            harness.protocol_version,
            protocol::VERSION
        ));
    }
    let node = get("Node", task_spec.node_ref.name.clone()).await?;
    let node_spec: NodeSpec = spec(&node).map_err(|e| e.to_string())?;
    let graph_spec: GraphSpec =
        spec(&get("Graph", task_spec.graph_ref.name.clone()).await?).map_err(|e| e.to_string())?;
    let level = |kind: &str, name: &str, authority: &domain::Authority| tokens::Level {
        name: format!("{kind}/{name}"),
        authority: authority.clone(),
    };
    let chain = vec![
        level("Graph", &task_spec.graph_ref.name, &graph_spec.authority),
        level("Node", &node.metadata.name, node_spec.authority.as_ref().unwrap_or(&graph_spec.authority)),
        level("Task", &task.metadata.name, &task_spec.authority),
        level("AgentSession", &key.name, &s.authority),
    ];
    let mut reads: Vec<(String, String)> = vec![
        ("AgentSession".into(), key.name.clone()),
        ("Task".into(), task.metadata.name.clone()),
        ("Node".into(), node.metadata.name.clone()),
        ("Graph".into(), task_spec.graph_ref.name.clone()),
    ];
    reads.extend(s.inputs.iter().map(|i| ("Artifact".to_string(), i.name.clone())));
    if let Some(target) = &s.review_of {
        reads.push(("Artifact".into(), target.artifact_ref.name.clone()));
    }
    let step = match &node_spec.workflow_ref {
        Some(w) => {
            let wf: WorkflowSpec = spec(&get("Workflow", w.name.clone()).await?).map_err(|e| e.to_string())?;
            wf.steps.into_iter().find(|st| st.name == task_spec.step)
        }
        None => None,
    };
    let mut inputs = Vec::new();
    for input in &s.inputs {
        inputs.push(document(ctx, &input.name, &input.digest, "text/plain").await?);
    }
    let review = match &s.review_of {
        Some(target) => {
            let artifact = get("Artifact", target.artifact_ref.name.clone()).await?;
            let a: ArtifactSpec = spec(&artifact).map_err(|e| e.to_string())?;
            if a.digest != target.digest {
                return Err(format!("{} holds {}, not the {} under review", artifact.key(), a.digest, target.digest));
            }
            Some(document(ctx, &artifact.metadata.name, &a.digest, &a.media_type).await?)
        }
        None => None,
    };
    let guidelines = guidelines(ctx, ns, &s.guideline_digests).await?;
    let now = Utc::now();
    let mut tools = Vec::new();
    let step_tools: Option<Vec<String>> = step
        .as_ref()
        .filter(|st| !st.tool_refs.is_empty())
        .map(|st| st.tool_refs.iter().map(|t| t.name.clone()).collect());
    let declared: Vec<Resource> = match step.as_ref().filter(|st| !st.tool_refs.is_empty()) {
        Some(st) => {
            let mut out = Vec::new();
            for t in &st.tool_refs {
                out.push(get("Tool", t.name.clone()).await?);
            }
            out
        }
        None => ctx.list("Tool", ns, &[]).await.map_err(|e| e.to_string())?,
    };
    for t in declared {
        let Ok(ts) = spec::<ToolSpec>(&t) else { continue };
        if s.authority.allows_capability(&ts.capability, now) {
            tools.push(protocol::ToolInfo {
                name: t.metadata.name.clone(),
                description: ts.description,
                input_schema: Value::Object(ts.input_schema),
            });
        }
    }
    let workspace = ctx.config.work_dir.join(ns).join(&key.name);
    std::fs::create_dir_all(&workspace).map_err(|e| format!("cannot create {}: {e}", workspace.display()))?;
    let timeout =
        [harness.command.as_ref().and_then(|c| c.timeout_seconds), step.as_ref().and_then(|st| st.timeout_seconds)]
            .into_iter()
            .flatten()
            .min()
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_TIMEOUT);
    // The session's `wall_seconds` budget shortens that.
    let (timeout, timeout_reason) = match s.authority.budgets.get(budgets::WALL_SECONDS) {
        Some(&w) if Duration::from_secs(w) <= timeout => {
            (Duration::from_secs(w), format!("its budget `wall_seconds` of {w}"))
        }
        _ => (timeout, "its time limit".to_string()),
    };
    let envelope = Envelope {
        protocol: protocol::VERSION.to_string(),
        session: SessionInfo {
            namespace: ns.to_string(),
            name: key.name.clone(),
            uid: session.metadata.uid.clone().unwrap_or_default(),
            role: s.role,
            attempt: s.attempt,
            agent: s.agent_ref.name.clone(),
            model: s.model.clone(),
        },
        task: TaskInfo {
            name: task.metadata.name.clone(),
            graph: task_spec.graph_ref.name.clone(),
            node: task_spec.node_ref.name.clone(),
            description: node_spec.description.clone(),
            step: task_spec.step.clone(),
            instructions: task_spec.instructions.clone(),
        },
        parameters: node_spec.inputs.clone(),
        inputs,
        guidelines,
        tools,
        authority: s.authority.clone(),
        review,
        workspace: workspace.display().to_string(),
        resume: None,
    };
    let resumed = status::<AgentSessionStatus>(&session).map(|st| st.resumed > 0).unwrap_or(false);
    Ok(Loaded {
        session,
        spec: s,
        task_spec,
        harness,
        envelope,
        timeout,
        timeout_reason,
        step_tools,
        chain,
        reads,
        resumed,
    })
}

async fn document(ctx: &Context, name: &str, digest: &Digest, media_type: &str) -> Result<Document, String> {
    let bytes = ctx.cas.resolve(digest).await.map_err(|e| format!("input `{name}` ({digest}) cannot be read: {e}"))?;
    let (content, content_base64) = match String::from_utf8(bytes) {
        Ok(text) => (Some(text), None),
        Err(e) => (None, Some(base64::engine::general_purpose::STANDARD.encode(e.into_bytes()))),
    };
    Ok(Document {
        name: name.into(),
        digest: digest.to_string(),
        media_type: media_type.into(),
        content,
        content_base64,
    })
}

/// The guidelines recorded on the session, by digest: exactly the bytes that were recorded.
async fn guidelines(ctx: &Context, ns: &str, digests: &[Digest]) -> Result<Vec<protocol::Guideline>, String> {
    let named: BTreeMap<Digest, String> = ctx
        .list("Guideline", ns, &[])
        .await
        .map_err(|e| e.to_string())?
        .iter()
        .filter_map(|g| Some((Digest::of(g.spec.get("content")?.as_str()?.as_bytes()), g.metadata.name.clone())))
        .collect();
    let mut out = Vec::new();
    for d in digests {
        let bytes = ctx.cas.resolve(d).await.map_err(|e| format!("guideline {d} cannot be read: {e}"))?;
        out.push(protocol::Guideline {
            name: named.get(d).cloned().unwrap_or_else(|| "guideline".into()),
            digest: d.to_string(),
            content: String::from_utf8_lossy(&bytes).into_owned(),
        });
    }
    Ok(out)
}

/// Mint the session's token and record it (by its revocation id) on the session's status, so that
/// it acts from now until the session ends, with the names of the secrets its harness is given.
/// `None` when this process gives sessions no tokens.
async fn mint(ctx: &Context, key: &ObjectKey, loaded: &Loaded) -> Result<Option<String>, String> {
    let secrets: Vec<String> =
        loaded.harness.command.iter().flat_map(|c| c.secrets.iter().map(|s| s.name.clone())).collect();
    let Some(credentials) = &ctx.config.credentials else {
        if !secrets.is_empty() {
            ctx.patch_status::<AgentSessionStatus, _>(key, |_, s| s.secrets = secrets.clone())
                .await
                .map_err(|e| format!("the session's secrets could not be recorded: {e}"))?;
        }
        return Ok(None);
    };
    let issued_at = Utc::now();
    let lasts = loaded.timeout + REFLECT_WAIT + Duration::from_secs(60);
    let expires_at = issued_at + chrono::Duration::from_std(lasts).unwrap_or_default();
    let grant = tokens::Grant {
        namespace: key.namespace.clone(),
        session: key.name.clone(),
        uid: loaded.session.metadata.uid.clone().unwrap_or_default(),
        chain: loaded.chain.clone(),
        reads: loaded.reads.clone(),
        creates: loaded.spec.role == SessionRole::Orchestrator,
        expires_at,
    };
    let minted = credentials.issuer.mint(&grant).map_err(|e| e.to_string())?;
    let credential = SessionCredential { revocation_id: minted.revocation_id.clone(), issued_at, expires_at };
    ctx.patch_status::<AgentSessionStatus, _>(key, |_, s| {
        s.credential = Some(credential.clone());
        s.secrets = secrets.clone();
    })
    .await
    .map_err(|e| format!("the session's token could not be recorded: {e}"))?;
    Ok(Some(minted.token))
}

fn start_harness(
    ctx: &Context,
    loaded: &Loaded,
    token: Option<&str>,
    journal: Option<Box<dyn Journal>>,
) -> Result<Box<dyn Harness>, Fault> {
    let h = &loaded.harness;
    match h.type_ {
        HarnessType::Command => {
            let cmd = h.command.as_ref().ok_or_else(|| Fault::Io("the Harness has no `command` section".into()))?;
            if loaded.spec.authority.budgets.contains_key(budgets::COST_MICROS) {
                return Err(Fault::Io(format!(
                    "the session's authority sets the budget `{}`, which a `command` harness cannot be held to: r5e does not see the model calls it makes",
                    budgets::COST_MICROS
                )));
            }
            let workspace = &loaded.envelope.workspace;
            let tmp = std::path::Path::new(workspace).join("tmp");
            std::fs::create_dir_all(&tmp).map_err(|e| Fault::Io(format!("cannot create {}: {e}", tmp.display())))?;
            let mut env = vec![
                ("R5E_SESSION".to_string(), loaded.session.metadata.name.clone()),
                ("R5E_NAMESPACE".to_string(), loaded.session.key().namespace.clone()),
                ("R5E_WORKSPACE".to_string(), workspace.clone()),
                ("R5E_PROTOCOL".to_string(), protocol::VERSION.to_string()),
                ("HOME".to_string(), workspace.clone()),
                ("TMPDIR".to_string(), tmp.display().to_string()),
            ];
            env.extend(secrets(ctx, cmd)?);
            if let Some(token) = token {
                env.push(("R5E_TOKEN".to_string(), token.to_string()));
            }
            if let Some(api) = ctx.config.credentials.as_ref().and_then(|c| c.api.as_ref()) {
                env.push(("R5E_API".to_string(), api.url.clone()));
                if let Some(ca) = &api.ca_pem {
                    env.push(("R5E_API_CA".to_string(), ca.clone()));
                }
            }
            let confined = match h.sandbox {
                SandboxMode::None => kept(ctx, loaded),
                SandboxMode::Landlock => Some(confinement(ctx, loaded, cmd)?),
            };
            let confined = confined.as_ref().map(|(launcher, plan)| (launcher.as_path(), plan.clone()));
            Ok(Box::new(Subprocess::launch(cmd, &ctx.config.base_dir, &env, confined)?))
        }
        HarnessType::Model => {
            let m = h.model.as_ref().ok_or_else(|| Fault::Io("the Harness has no `model` section".into()))?;
            let key = match &m.api_key_env {
                Some(var) => Some(std::env::var(var).map_err(|_| {
                    Fault::Provider(format!("environment variable `{var}` holding the API key is not set"))
                })?),
                None => None,
            };
            let provider: Box<dyn Provider> = match m.provider {
                ModelProvider::Openai => Box::new(OpenAi::new(ctx.http.clone(), m.endpoint.as_deref(), &m.model, key)),
                ModelProvider::Anthropic => {
                    Box::new(Anthropic::new(ctx.http.clone(), m.endpoint.as_deref(), &m.model, key))
                }
                ModelProvider::Scripted => Box::new(
                    Scripted::new(&m.model, m.script.as_ref().unwrap_or(&Value::Null))
                        .map_err(|e| Fault::Provider(e.to_string()))?,
                ),
            };
            let budgets = &loaded.spec.authority.budgets;
            let limits = Spending {
                tokens: budgets.get(budgets::TOKENS).copied(),
                cost_micros: budgets.get(budgets::COST_MICROS).copied(),
                price: m.price,
            };
            if limits.cost_micros.is_some() && limits.price.is_none() {
                return Err(Fault::Provider(format!(
                    "the session's authority sets the budget `{}` but its Harness names no `price`, so its cost cannot be counted",
                    budgets::COST_MICROS
                )));
            }
            let mut model_loop = ModelLoop::new(provider, m.max_turns.unwrap_or(DEFAULT_MAX_TURNS), limits);
            if let Some(journal) = journal {
                model_loop = model_loop.with_journal(journal);
            }
            Ok(Box::new(model_loop))
        }
    }
}

/// The values of the secrets a command Harness names, read from the server's environment or
/// files. A secret that is missing, names no source or two, or lies in a hidden path (the data
/// directory, the work dir) fails the session.
fn secrets(ctx: &Context, cmd: &CommandHarness) -> Result<Vec<(String, String)>, Fault> {
    let mut out = Vec::new();
    for s in &cmd.secrets {
        let fail = |why: String| Fault::Sandbox(format!("secret `{}`: {why}", s.name));
        let value = match (&s.from_env, &s.from_file) {
            (Some(var), None) => {
                std::env::var(var).map_err(|_| fail(format!("the server's environment variable `{var}` is not set")))?
            }
            (None, Some(file)) => {
                let path = resolve(&ctx.config.base_dir, file);
                let real = std::fs::canonicalize(&path).map_err(|e| fail(format!("{}: {e}", path.display())))?;
                if ctx.config.sandbox.hidden.iter().any(|h| real.starts_with(h)) {
                    return Err(fail(format!("{} is in a directory no harness may be given", real.display())));
                }
                let bytes = std::fs::read(&real).map_err(|e| fail(format!("{}: {e}", real.display())))?;
                String::from_utf8(bytes).map_err(|_| fail(format!("{} is not UTF-8", real.display())))?
            }
            _ => return Err(fail("name exactly one of fromEnv and fromFile".into())),
        };
        out.push((s.name.clone(), value));
    }
    Ok(out)
}

/// The launcher and plan that confine a session's command harness, or why it cannot be confined.
fn confinement(ctx: &Context, loaded: &Loaded, cmd: &CommandHarness) -> Result<(PathBuf, Plan), Fault> {
    let sandbox = &ctx.config.sandbox;
    let launcher = launcher(sandbox, sandbox::available_once())?;
    let base = &ctx.config.base_dir;
    let mut read: Vec<PathBuf> = sandbox::SYSTEM_PATHS.iter().map(PathBuf::from).collect();
    read.push(base.clone());
    read.extend(cmd.read_paths.iter().map(|p| resolve(base, p)));
    if cmd.program.contains('/') {
        read.push(resolve(base, &cmd.program));
    }
    let mut ports = sandbox.connect_ports.clone();
    ports.extend(&cmd.connect_ports);
    let plan = Plan {
        read_write: vec![PathBuf::from(&loaded.envelope.workspace)],
        read_only: sandbox::without_hidden(&read, &sandbox.hidden),
        devices: sandbox::DEVICES.iter().map(PathBuf::from).collect(),
        connect_ports: ports,
        ..kept_plan(ctx, loaded, Limits::from_budgets(&loaded.spec.authority.budgets), true)
    };
    Ok((launcher, plan))
}

/// What every harness the launcher starts gets: its limits, the session's cgroup, this process as
/// the keeper's parent; Landlock when `landlock`.
fn kept_plan(ctx: &Context, loaded: &Loaded, limits: Limits, landlock: bool) -> Plan {
    let uid = loaded.session.metadata.uid.as_deref().unwrap_or("session");
    Plan {
        limits,
        cgroup: ctx.config.sandbox.cgroups.then(|| sandbox::cgroup_name(uid)),
        parent: std::process::id() as i32,
        landlock,
        ..Default::default()
    }
}

/// How an unconfined harness (`sandbox: none`) is started where this process has a launcher:
/// through its keeper, without Landlock, so that its process tree still dies with the session
/// and with r5e and stays within the session's limits. Without a launcher, it is started directly.
fn kept(ctx: &Context, loaded: &Loaded) -> Option<(PathBuf, Plan)> {
    let plan = kept_plan(ctx, loaded, Limits::set_by(&loaded.spec.authority.budgets), false);
    Some((ctx.config.sandbox.launcher.clone()?, plan))
}

/// The launcher of confined harnesses, or (failing closed) why there is none: this process has
/// no launcher, or the kernel cannot confine (`available`).
fn launcher(sandbox: &SandboxConfig, available: &Result<(), String>) -> Result<PathBuf, Fault> {
    let opt_out = "a Harness that may run unconfined says `sandbox: none`";
    let Some(launcher) = sandbox.launcher.clone() else {
        return Err(Fault::Sandbox(format!("this r5e process has no launcher for confined harnesses ({opt_out})")));
    };
    available.clone().map_err(|e| Fault::Sandbox(format!("{e} ({opt_out})")))?;
    Ok(launcher)
}

/// The model identity a session of `agent` records. A `model` harness calling a real provider
/// decides it (whatever the Agent claims); a `scripted` one stands in for a model, so the
/// Agent's `model` names which (falling back to `scripted/<model>`); for a `command` harness r5e
/// cannot see the model, and the Agent's `model` is what is recorded.
pub fn model_of(agent: &AgentSpec, harness: &HarnessSpec) -> Option<domain::kinds::agents::ModelIdentity> {
    let own = || {
        let m = harness.model.as_ref()?;
        let provider = serde_json::to_value(m.provider).ok()?.as_str()?.to_string();
        Some(domain::kinds::agents::ModelIdentity { provider, name: m.model.clone(), version: None })
    };
    match (harness.type_, harness.model.as_ref().map(|m| m.provider)) {
        (HarnessType::Model, Some(ModelProvider::Openai | ModelProvider::Anthropic)) => own(),
        (HarnessType::Model, _) => agent.model.clone().or_else(own),
        (HarnessType::Command, _) => agent.model.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::kinds::agents::{ModelHarness, ModelIdentity};

    fn identity(provider: &str, name: &str) -> ModelIdentity {
        ModelIdentity { provider: provider.into(), name: name.into(), version: None }
    }

    #[test]
    fn a_harness_that_cannot_be_confined_is_not_started() {
        let none = SandboxConfig::default();
        let fault = launcher(&none, &Ok(())).unwrap_err();
        assert!(fault.to_string().contains("no launcher") && fault.to_string().contains("sandbox: none"), "{fault}");
        let with = SandboxConfig { launcher: Some("/usr/bin/r5e".into()), ..Default::default() };
        let fault = launcher(&with, &Err("Landlock is not available: ENOSYS".into())).unwrap_err();
        assert!(fault.to_string().contains("Landlock is not available"), "{fault}");
        assert!(matches!(fault, Fault::Sandbox(_)));
        assert_eq!(launcher(&with, &Ok(())).unwrap(), PathBuf::from("/usr/bin/r5e"));
    }

    #[test]
    fn a_real_provider_decides_the_model_identity_whatever_the_agent_claims() {
        let claims = AgentSpec { model: Some(identity("anthropic", "claude")), ..Default::default() };
        let harness = |provider| HarnessSpec {
            type_: HarnessType::Model,
            model: Some(ModelHarness { provider, model: "m1".into(), ..Default::default() }),
            ..Default::default()
        };
        assert_eq!(model_of(&claims, &harness(ModelProvider::Openai)), Some(identity("openai", "m1")));
        assert_eq!(model_of(&claims, &harness(ModelProvider::Scripted)), Some(identity("anthropic", "claude")));
        let silent = AgentSpec::default();
        assert_eq!(model_of(&silent, &harness(ModelProvider::Scripted)), Some(identity("scripted", "m1")));
        let command = HarnessSpec::default();
        assert_eq!(model_of(&silent, &command), None);
        assert_eq!(model_of(&claims, &command), Some(identity("anthropic", "claude")));
    }
}
