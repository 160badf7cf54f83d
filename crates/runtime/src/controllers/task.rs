//! The Task controller: the produce -> review -> (re)produce loop, derived every time from the
//! sessions that exist (level-triggered), never from memory.
//!
//! - No producing session yet, or the last one failed with attempts left (after a backoff whose
//!   timer is kept in `status.nextRetryAt`): pick an Agent and start a producing session with
//!   authority narrowed to what both the Task and the Agent allow.
//! - The last producing session succeeded: each output Artifact gets a reviewing session of an
//!   independent Agent (`domain::review`); none available -> Blocked `NoIndependentReviewer`.
//!   All approved -> the Artifacts are marked Approved (admission checks the binding) and the
//!   Task Succeeded. A rejection -> a new producing session with the output and the review as
//!   inputs, up to `review.maxRounds`, then Failed.
//! - The last producing session declined: Declined with its reason; `NeedsSplitting` starts an
//!   orchestrating session that may create new Nodes.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use domain::kinds::agents::{AgentRole, AgentSpec, HarnessSpec};
use domain::kinds::artifact::{
    ArtifactInput, ArtifactSpec, ArtifactStatus, ArtifactType, ReviewRecord, ReviewState, Verdict,
};
use domain::kinds::governance::GuidelineSpec;
use domain::kinds::task::{
    AgentSessionSpec, AgentSessionStatus, DeclineReason, ReviewTarget, SessionPhase, SessionRole, TaskPhase, TaskSpec,
    TaskStatus,
};
use domain::kinds::work::{GraphSpec, NodeSpec, WorkflowSpec};
use domain::resource::{ConditionStatus, ObjectRef};
use domain::review::{Party, independence};
use domain::selector::LabelSelector;
use domain::{Authority, Digest, ObjectKey, Resource};

use super::set_condition;
use crate::context::{Context, child_name, labels, local_ref, new_resource, owned_by, spec, status};
use crate::controller::{Next, Reconciler};
use crate::error::Result;
use crate::session::model_of;

pub(crate) struct Tasks {
    pub ctx: Arc<Context>,
}

/// A session with its spec and status.
struct Session {
    resource: Resource,
    spec: AgentSessionSpec,
    status: AgentSessionStatus,
}

impl Session {
    fn phase(&self) -> Option<SessionPhase> {
        self.status.phase
    }
    fn name(&self) -> &str {
        &self.resource.metadata.name
    }
    fn party(&self) -> Party<'_> {
        Party {
            session_uid: self.resource.metadata.uid.as_deref().unwrap_or_default(),
            lineage: &self.spec.lineage,
            agent: &self.spec.agent_ref.name,
            model: self.spec.model.as_ref(),
        }
    }
}

fn in_flight(phase: Option<SessionPhase>) -> bool {
    matches!(phase, None | Some(SessionPhase::Pending | SessionPhase::Running | SessionPhase::Reflecting))
}

/// Why the Task may not start one more session, having `existing`: its `sessions` budget (every
/// attempt, review and re-plan counts) is spent.
fn sessions_spent(t: &TaskSpec, existing: usize) -> Option<String> {
    crate::budgets::over(&t.authority, crate::budgets::SESSIONS, existing as u64, 1)
        .map(|reason| format!("the Task reached its budget: {reason}"))
}

/// How long to wait before attempt `n + 1` after `n` failed attempts.
fn backoff(failed: u32) -> Duration {
    Duration::from_millis(250u64 << failed.min(8)).min(Duration::from_secs(60))
}

#[async_trait::async_trait]
impl Reconciler for Tasks {
    fn kind(&self) -> &'static str {
        "Task"
    }

    fn workers(&self) -> usize {
        16
    }

    async fn wakes(&self, changed: &Resource) -> Vec<ObjectKey> {
        let ns = changed.metadata.namespace.clone().unwrap_or_default();
        match changed.kind.as_str() {
            "Task" => vec![changed.key()],
            "AgentSession" => changed
                .spec
                .pointer("/taskRef/name")
                .and_then(|v| v.as_str())
                .map(|t| vec![ObjectKey::new("Task", &ns, t)])
                .unwrap_or_default(),
            // A new or changed Agent may unblock Tasks that found none eligible.
            "Agent" => match self.ctx.list("Task", &ns, &[]).await {
                Ok(tasks) => tasks
                    .into_iter()
                    .filter(|t| {
                        let s: TaskStatus = status(t).unwrap_or_default();
                        matches!(s.phase, None | Some(TaskPhase::Pending | TaskPhase::Blocked))
                    })
                    .map(|t| t.key())
                    .collect(),
                Err(_) => vec![],
            },
            _ => vec![],
        }
    }

    async fn reconcile(&self, key: &ObjectKey) -> Result<Next> {
        let Some(task) = self.ctx.get(key).await? else { return Ok(Next::Done) };
        let current: TaskStatus = status(&task)?;
        if matches!(current.phase, Some(TaskPhase::Succeeded | TaskPhase::Failed)) {
            return Ok(Next::Done);
        }
        let t: TaskSpec = spec(&task)?;
        let mut sessions = Vec::new();
        for r in self.ctx.list("AgentSession", &key.namespace, &[(labels::TASK, &key.name)]).await? {
            sessions.push(Session { spec: spec(&r)?, status: status(&r)?, resource: r });
        }
        sessions.sort_by_key(|s| (s.spec.attempt, s.resource.metadata.name.clone()));
        let producers: Vec<&Session> = sessions.iter().filter(|s| s.spec.role == SessionRole::Producer).collect();
        let Some(last) = producers.last().copied() else {
            return self.produce(&task, &t, 1, t.inputs.clone(), 0, &sessions).await;
        };
        // An attempt cut off by a crash (Degraded) counts as a failed one: the retry policy
        // decides what follows, as for any failure.
        let failed = producers
            .iter()
            .filter(|p| matches!(p.phase(), Some(SessionPhase::Failed | SessionPhase::Degraded)))
            .count() as u32;
        let rejected = producers.iter().filter(|p| p.phase() == Some(SessionPhase::Succeeded)).count() as u32;
        match last.phase() {
            p if in_flight(p) => {
                let m = format!("attempt {} by agent {}", last.spec.attempt, last.spec.agent_ref.name);
                self.set(key, TaskPhase::Running, None, Some(m), &sessions, |_| {}).await
            }
            Some(phase @ (SessionPhase::Failed | SessionPhase::Degraded)) => {
                let why = last.status.failure.clone().unwrap_or_default();
                if failed >= t.max_attempts.max(1) && phase == SessionPhase::Degraded {
                    // The agent did not fail: its process died. With no attempt left, a person
                    // decides (they may raise maxAttempts, which wakes the Task).
                    let m = format!(
                        "session {} was cut off by a crash ({why}) and the Task has no attempt left ({failed} of {}); raise spec.maxAttempts to try again",
                        last.name(),
                        t.max_attempts.max(1)
                    );
                    return self
                        .set(key, TaskPhase::Blocked, Some("SessionDegraded"), Some(m), &sessions, |_| {})
                        .await;
                }
                if failed >= t.max_attempts.max(1) {
                    let m = format!("{failed} attempt(s) failed; the last: {why}");
                    return self
                        .set(key, TaskPhase::Failed, Some("AttemptsExhausted"), Some(m), &sessions, |_| {})
                        .await;
                }
                let finished = last.status.finished_at.unwrap_or_else(Utc::now);
                let due = finished + chrono::Duration::from_std(backoff(failed)).unwrap_or_default();
                let now = Utc::now();
                if now < due {
                    let m = format!("attempt {} failed ({why}); retrying at {}", last.spec.attempt, due.to_rfc3339());
                    self.set(key, TaskPhase::Pending, Some("Retrying"), Some(m), &sessions, |s| {
                        s.next_retry_at = Some(due)
                    })
                    .await?;
                    return Ok(Next::After((due - now).to_std().unwrap_or_default()));
                }
                self.produce(&task, &t, last.spec.attempt + 1, last.spec.inputs.clone(), rejected, &sessions).await
            }
            Some(SessionPhase::Declined) => self.declined(&task, last, &sessions).await,
            Some(SessionPhase::Succeeded) => self.review(&task, &t, last, &sessions, rejected).await,
            _ => Ok(Next::Done),
        }
    }
}

impl Tasks {
    /// Write the Task's status: phase, reason, message, sessions and whatever `more` sets.
    async fn set(
        &self,
        key: &ObjectKey,
        phase: TaskPhase,
        reason: Option<&str>,
        message: Option<String>,
        sessions: &[Session],
        more: impl Fn(&mut TaskStatus),
    ) -> Result<Next> {
        let refs: Vec<ObjectRef> = sessions.iter().map(|s| local_ref(s.name())).collect();
        let producers = sessions.iter().filter(|s| s.spec.role == SessionRole::Producer);
        let attempts = producers.clone().count() as u32;
        let agent = producers.clone().next_back().map(|s| s.spec.agent_ref.clone());
        self.ctx
            .patch_status::<TaskStatus, _>(key, |r, s| {
                s.phase = Some(phase);
                s.reason = reason.map(str::to_string);
                s.message = message.clone();
                s.session_refs = refs.clone();
                s.attempts = attempts;
                if agent.is_some() {
                    s.agent_ref = agent.clone();
                }
                if phase != TaskPhase::Pending {
                    s.next_retry_at = None;
                }
                s.observed_generation = r.metadata.generation;
                more(s);
            })
            .await?;
        Ok(Next::Done)
    }

    /// Start producing attempt `attempt`.
    async fn produce(
        &self,
        task: &Resource,
        t: &TaskSpec,
        attempt: u32,
        inputs: Vec<ArtifactInput>,
        rejected: u32,
        sessions: &[Session],
    ) -> Result<Next> {
        let key = task.key();
        let ns = key.namespace.as_str();
        let mut candidates = Vec::new();
        for a in self.ctx.list("Agent", ns, &[]).await? {
            let s: AgentSpec = spec(&a)?;
            if s.role == AgentRole::Task && matches(&t.agent_selector, &a) {
                candidates.push((a, s));
            }
        }
        if candidates.is_empty() {
            let m = "no Agent with role Task matches the step's agentSelector".to_string();
            return self.set(&key, TaskPhase::Blocked, Some("NoEligibleAgent"), Some(m), sessions, |_| {}).await;
        }
        let Some((agent, agent_spec)) = self.with_capacity(ns, candidates).await? else {
            self.set(
                &key,
                TaskPhase::Pending,
                Some("AgentsBusy"),
                Some("every eligible Agent is busy".into()),
                &[],
                |_| {},
            )
            .await?;
            return Ok(Next::After(Duration::from_millis(500)));
        };
        if let Some(m) = sessions_spent(t, sessions.len()) {
            return self.set(&key, TaskPhase::Failed, Some("BudgetSpent"), Some(m), sessions, |_| {}).await;
        }
        let name = child_name(&key.name, &format!("a{attempt}"));
        let authority = narrowed(&t.authority, &agent_spec);
        let session = AgentSessionSpec {
            task_ref: local_ref(&key.name),
            agent_ref: local_ref(&agent.metadata.name),
            role: SessionRole::Producer,
            parent_session_ref: None,
            lineage: vec![],
            authority,
            model: self.model(ns, &agent_spec).await?,
            review_of: None,
            guideline_digests: self.guidelines(task, t, &agent).await?,
            attempt,
            inputs,
        };
        self.create_session(task, &name, &session).await?;
        let key2 = key.clone();
        let m = format!("attempt {attempt} by agent {}", agent.metadata.name);
        self.ctx
            .patch_status::<TaskStatus, _>(&key2, |_, s| {
                s.phase = Some(TaskPhase::Running);
                s.reason = None;
                s.message = Some(m.clone());
                s.agent_ref = Some(local_ref(&agent.metadata.name));
                s.attempts = attempt;
                s.review_round = rejected + 1;
                s.next_retry_at = None;
                if !s.session_refs.iter().any(|r| r.name == name) {
                    s.session_refs.push(local_ref(&name));
                }
            })
            .await?;
        Ok(Next::Done)
    }

    async fn create_session(&self, task: &Resource, name: &str, s: &AgentSessionSpec) -> Result<Resource> {
        let role = format!("{:?}", s.role);
        let mut r = new_resource(
            "AgentSession",
            &task.key().namespace,
            name,
            &[(labels::TASK, &task.metadata.name), (labels::AGENT, &s.agent_ref.name), ("r5e.ai/role", &role)],
            s,
        );
        r.metadata.owner_references.push(owned_by(task));
        self.ctx.create(r).await
    }

    /// The Agent among `candidates` with the fewest running sessions, if any has room.
    async fn with_capacity(
        &self,
        ns: &str,
        candidates: Vec<(Resource, AgentSpec)>,
    ) -> Result<Option<(Resource, AgentSpec)>> {
        let mut best: Option<(u32, Resource, AgentSpec)> = None;
        for (a, s) in candidates {
            let active = self
                .ctx
                .list("AgentSession", ns, &[(labels::AGENT, &a.metadata.name)])
                .await?
                .iter()
                .filter(|r| in_flight(status::<AgentSessionStatus>(r).ok().and_then(|s| s.phase)))
                .count() as u32;
            if active < s.max_concurrent_sessions.max(1) && best.as_ref().is_none_or(|(n, _, _)| active < *n) {
                best = Some((active, a, s));
            }
        }
        Ok(best.map(|(_, a, s)| (a, s)))
    }

    async fn model(&self, ns: &str, agent: &AgentSpec) -> Result<Option<domain::kinds::agents::ModelIdentity>> {
        let hk = ObjectKey::new("Harness", ns, &agent.harness_ref.name);
        let harness: Option<HarnessSpec> = match self.ctx.get(&hk).await? {
            Some(h) => Some(spec(&h)?),
            None => None,
        };
        Ok(harness.and_then(|h| model_of(agent, &h)).or_else(|| agent.model.clone()))
    }

    /// The digests of the Guidelines that apply (the Graph's, the Workflow's, and those whose
    /// `appliesTo` names the Agent or the Workflow), each stored in the CAS.
    async fn guidelines(&self, task: &Resource, t: &TaskSpec, agent: &Resource) -> Result<Vec<Digest>> {
        let ns = task.key().namespace;
        let mut names = BTreeSet::new();
        if let Some(g) = self.ctx.get(&ObjectKey::new("Graph", &ns, &t.graph_ref.name)).await? {
            names.extend(spec::<GraphSpec>(&g)?.guideline_refs.into_iter().map(|r| r.name));
        }
        let mut workflow = None;
        if let Some(n) = self.ctx.get(&ObjectKey::new("Node", &ns, &t.node_ref.name)).await?
            && let Some(w) = spec::<NodeSpec>(&n)?.workflow_ref
        {
            if let Some(wf) = self.ctx.get(&ObjectKey::new("Workflow", &ns, &w.name)).await? {
                names.extend(spec::<WorkflowSpec>(&wf)?.guideline_refs.into_iter().map(|r| r.name));
            }
            workflow = Some(w.name);
        }
        let mut out = Vec::new();
        for g in self.ctx.list("Guideline", &ns, &[]).await? {
            let gs: GuidelineSpec = spec(&g)?;
            let by_agent = gs.applies_to.agent_selector.as_ref().is_some_and(|sel| matches(sel, agent));
            let by_workflow = workflow.as_ref().is_some_and(|w| gs.applies_to.workflows.contains(w));
            if names.contains(&g.metadata.name) || by_agent || by_workflow {
                out.push(self.ctx.cas.store(gs.content.into_bytes()).await?);
            }
        }
        Ok(out)
    }

    /// Review the outputs of `last`, the latest producing session, which succeeded.
    async fn review(
        &self,
        task: &Resource,
        t: &TaskSpec,
        last: &Session,
        sessions: &[Session],
        rejected_rounds: u32,
    ) -> Result<Next> {
        let key = task.key();
        let ns = key.namespace.as_str();
        let mut outputs = Vec::new();
        for r in &last.status.artifact_refs {
            let Some(a) = self.ctx.get(&ObjectKey::new("Artifact", ns, &r.name)).await? else { continue };
            let s: ArtifactSpec = spec(&a)?;
            if s.artifact_type == ArtifactType::Output {
                outputs.push((a, s));
            }
        }
        if outputs.is_empty() {
            let m = format!("session {} succeeded without an output Artifact to review", last.name());
            return self.set(&key, TaskPhase::Blocked, Some("NoOutput"), Some(m), sessions, |_| {}).await;
        }
        let mut pending = false;
        let mut approved = Vec::new();
        let mut rejections = Vec::new();
        let mut created = 0;
        for (i, (artifact, a)) in outputs.iter().enumerate() {
            let base = child_name(last.name(), &format!("review-{}", i + 1));
            // A review cut off by a crash is given to a new reviewing session, as often as the
            // Task allows attempts; the latest of them decides.
            let tries = t.max_attempts.max(1);
            let latest = (1..=tries)
                .filter_map(|n| sessions.iter().find(|s| s.name() == review_name(&base, n)).map(|s| (n, s)))
                .next_back();
            let (name, current) = match latest {
                Some((n, r)) if r.phase() == Some(SessionPhase::Degraded) && n < tries => {
                    (review_name(&base, n + 1), None)
                }
                Some((n, r)) => (review_name(&base, n), Some(r)),
                None => (base.clone(), None),
            };
            match current {
                None => match pick_reviewer(&self.ctx, ns, &t.review.reviewer_selector, &last.party()).await? {
                    Err(why) => {
                        let m = format!("no independent reviewer for {}: {why}", artifact.metadata.name);
                        return self
                            .set(&key, TaskPhase::Blocked, Some("NoIndependentReviewer"), Some(m), sessions, |_| {})
                            .await;
                    }
                    Ok((agent, agent_spec, model)) => {
                        if let Some(m) = sessions_spent(t, sessions.len() + created) {
                            return self
                                .set(&key, TaskPhase::Failed, Some("BudgetSpent"), Some(m), sessions, |_| {})
                                .await;
                        }
                        created += 1;
                        let s = AgentSessionSpec {
                            task_ref: local_ref(&key.name),
                            agent_ref: local_ref(&agent.metadata.name),
                            role: SessionRole::Reviewer,
                            parent_session_ref: None,
                            lineage: vec![],
                            authority: narrowed(&t.authority, &agent_spec),
                            model: Some(model),
                            review_of: Some(ReviewTarget {
                                artifact_ref: local_ref(&artifact.metadata.name),
                                digest: a.digest,
                            }),
                            guideline_digests: self.guidelines(task, t, &agent).await?,
                            attempt: last.spec.attempt,
                            inputs: last.spec.inputs.clone(),
                        };
                        self.create_session(task, &name, &s).await?;
                        pending = true;
                    }
                },
                Some(r) if in_flight(r.phase()) => pending = true,
                Some(r) if r.phase() == Some(SessionPhase::Succeeded) => match self.verdict_of(ns, r).await? {
                    Some((verdict_ref, Verdict::Approve)) => approved.push((artifact, a, r, verdict_ref)),
                    Some((verdict_ref, Verdict::Reject)) => rejections.push((artifact, a, r, verdict_ref)),
                    None => {
                        let m = format!("reviewing session {} gave no verdict", r.name());
                        return self
                            .set(&key, TaskPhase::Blocked, Some("ReviewFailed"), Some(m), sessions, |_| {})
                            .await;
                    }
                },
                Some(r) => {
                    let m = format!(
                        "reviewing session {} ended {:?}: {}",
                        r.name(),
                        r.phase(),
                        r.status.failure.clone().unwrap_or_default()
                    );
                    return self.set(&key, TaskPhase::Blocked, Some("ReviewFailed"), Some(m), sessions, |_| {}).await;
                }
            }
        }
        if pending {
            let m = format!("{} output(s) under independent review", outputs.len());
            return self.set(&key, TaskPhase::Reviewing, None, Some(m), sessions, |_| {}).await;
        }
        for (artifact, a, r, verdict_ref) in approved.iter().chain(rejections.iter()) {
            let state = if rejections.iter().any(|x| x.0.metadata.name == artifact.metadata.name) {
                ReviewState::Rejected
            } else {
                ReviewState::Approved
            };
            let verdict = if state == ReviewState::Approved { Verdict::Approve } else { Verdict::Reject };
            let record = ReviewRecord {
                artifact_ref: verdict_ref.clone(),
                session: local_ref(r.name()),
                verdict,
                digest: a.digest,
            };
            let marked = self
                .ctx
                .patch_status::<ArtifactStatus, _>(&artifact.key(), |_, s| {
                    s.review = Some(state);
                    if !s.reviews.contains(&record) {
                        s.reviews.push(record.clone());
                    }
                })
                .await;
            // Admission holds the approval to its rules; if it refuses, nothing advances.
            if let Err(crate::Error::Admission(e @ admission::Error::Forbidden { .. })) = marked {
                let m = format!("{} could not be marked {state:?}: {e}", artifact.metadata.name);
                return self.set(&key, TaskPhase::Blocked, Some("ApprovalRefused"), Some(m), sessions, |_| {}).await;
            }
            marked?;
        }
        let outputs_refs: Vec<ObjectRef> = outputs.iter().map(|(a, _)| local_ref(&a.metadata.name)).collect();
        if rejections.is_empty() {
            let m = format!("{} output(s) approved by independent review", outputs.len());
            return self
                .set(&key, TaskPhase::Succeeded, Some("Approved"), Some(m), sessions, |s| {
                    s.artifact_refs = outputs_refs.clone();
                })
                .await;
        }
        if rejected_rounds >= t.review.max_rounds.max(1) {
            let m = format!("the output was rejected in {rejected_rounds} review round(s)");
            return self.set(&key, TaskPhase::Failed, Some("ReviewRejected"), Some(m), sessions, |_| {}).await;
        }
        // Back to the producer, with what was rejected and why.
        let mut inputs = t.inputs.clone();
        for (artifact, a, _, verdict_ref) in &rejections {
            inputs.push(ArtifactInput { name: format!("rejected:{}", artifact.metadata.name), digest: a.digest });
            let vk = ObjectKey::new("Artifact", ns, &verdict_ref.name);
            if let Some(v) = self.ctx.get(&vk).await? {
                inputs.push(ArtifactInput {
                    name: format!("review:{}", v.metadata.name),
                    digest: spec::<ArtifactSpec>(&v)?.digest,
                });
            }
        }
        self.produce(task, t, last.spec.attempt + 1, inputs, rejected_rounds, sessions).await
    }

    /// What an orchestrator is given: the declined session's inputs and its decline.
    async fn decline_inputs(&self, ns: &str, declined: &Session) -> Result<Vec<ArtifactInput>> {
        let mut inputs = declined.spec.inputs.clone();
        for r in &declined.status.artifact_refs {
            let Some(a) = self.ctx.get(&ObjectKey::new("Artifact", ns, &r.name)).await? else { continue };
            let s: ArtifactSpec = spec(&a)?;
            if s.artifact_type == ArtifactType::Decline {
                inputs.push(ArtifactInput { name: format!("decline:{}", r.name), digest: s.digest });
            }
        }
        Ok(inputs)
    }

    /// The verdict Artifact of a finished reviewing session.
    async fn verdict_of(&self, ns: &str, session: &Session) -> Result<Option<(ObjectRef, Verdict)>> {
        for r in &session.status.artifact_refs {
            let Some(a) = self.ctx.get(&ObjectKey::new("Artifact", ns, &r.name)).await? else { continue };
            let s: ArtifactSpec = spec(&a)?;
            if s.artifact_type == ArtifactType::Review
                && let Some(v) = s.verdict
            {
                return Ok(Some((r.clone(), v)));
            }
        }
        Ok(None)
    }

    /// The last producing session declined.
    async fn declined(&self, task: &Resource, last: &Session, sessions: &[Session]) -> Result<Next> {
        let key = task.key();
        let ns = key.namespace.as_str();
        let decline = last.status.decline.clone();
        let reason = decline.as_ref().map(|d| format!("{:?}", d.reason)).unwrap_or_else(|| "Declined".into());
        let said = decline.as_ref().map(|d| d.message.clone()).unwrap_or_default();
        if decline.as_ref().map(|d| d.reason) != Some(DeclineReason::NeedsSplitting) {
            let m = format!("{} declined ({reason}): {said}", last.name());
            return self.set(&key, TaskPhase::Declined, Some(&reason), Some(m), sessions, |_| {}).await;
        }
        let name = child_name(last.name(), "replan");
        let replan = |status: ConditionStatus, why: &str, m: String| {
            let why = why.to_string();
            move |s: &mut TaskStatus| set_condition(&mut s.conditions, "Replanned", status, &why, &m)
        };
        match sessions.iter().find(|s| s.name() == name) {
            None => {
                let mut orchestrators = Vec::new();
                for a in self.ctx.list("Agent", ns, &[]).await? {
                    let s: AgentSpec = spec(&a)?;
                    if s.role == AgentRole::Orchestrator {
                        orchestrators.push((a, s));
                    }
                }
                let Some((agent, agent_spec)) = orchestrators.into_iter().next() else {
                    let m =
                        format!("{} needs the work split, but there is no Agent with role Orchestrator", last.name());
                    let c = replan(ConditionStatus::False, "NoOrchestrator", m.clone());
                    return self.set(&key, TaskPhase::Declined, Some("NeedsSplitting"), Some(m), sessions, c).await;
                };
                let t: TaskSpec = spec(task)?;
                if let Some(m) = sessions_spent(&t, sessions.len()) {
                    return self.set(&key, TaskPhase::Failed, Some("BudgetSpent"), Some(m), sessions, |_| {}).await;
                }
                let mut lineage = last.spec.lineage.clone();
                lineage.push(last.resource.metadata.uid.clone().unwrap_or_default());
                let s = AgentSessionSpec {
                    task_ref: local_ref(&key.name),
                    agent_ref: local_ref(&agent.metadata.name),
                    role: SessionRole::Orchestrator,
                    parent_session_ref: Some(local_ref(last.name())),
                    lineage,
                    authority: narrowed(&last.spec.authority, &agent_spec),
                    model: self.model(ns, &agent_spec).await?,
                    review_of: None,
                    guideline_digests: self.guidelines(task, &t, &agent).await?,
                    attempt: last.spec.attempt,
                    inputs: self.decline_inputs(ns, last).await?,
                };
                self.create_session(task, &name, &s).await?;
                let m = format!("{} needs the work split: re-planning in session {name}", last.name());
                let c = replan(ConditionStatus::Unknown, "Replanning", m.clone());
                self.set(&key, TaskPhase::Declined, Some("NeedsSplitting"), Some(m), sessions, c).await
            }
            Some(o) if in_flight(o.phase()) => Ok(Next::Done),
            Some(o) if o.phase() == Some(SessionPhase::Succeeded) => {
                let nodes: Vec<String> = self
                    .ctx
                    .list("Node", ns, &[(admission::PLANNED_BY, o.name())])
                    .await?
                    .into_iter()
                    .map(|n| n.metadata.name)
                    .collect();
                let m = format!("split by {} into {}", o.name(), nodes.join(", "));
                let c = replan(ConditionStatus::True, "Replanned", m.clone());
                self.set(&key, TaskPhase::Declined, Some("Replanned"), Some(m), sessions, c).await
            }
            Some(o) => {
                let m = format!(
                    "re-planning session {} ended {:?}: {}",
                    o.name(),
                    o.phase(),
                    o.status.failure.clone().unwrap_or_default()
                );
                let c = replan(ConditionStatus::False, "ReplanFailed", m.clone());
                self.set(&key, TaskPhase::Declined, Some("NeedsSplitting"), Some(m), sessions, c).await
            }
        }
    }
}

/// Whether `resource`'s labels match `selector` (an invalid selector matches nothing).
fn matches(selector: &LabelSelector, resource: &Resource) -> bool {
    selector.to_selector().is_ok_and(|s| s.matches(&resource.metadata.labels))
}

/// `parent` narrowed to the capabilities `agent` may hold.
fn narrowed(parent: &Authority, agent: &AgentSpec) -> Authority {
    let cap = Authority { capabilities: agent.capabilities.iter().cloned().collect(), ..parent.clone() };
    parent.intersect(&cap)
}

/// The name of the `n`th reviewing session of an output whose first is `base`: `base` itself, then
/// `base-retry-2`, ... (a review is retried only when a crash cut it off).
fn review_name(base: &str, n: u32) -> String {
    if n <= 1 { base.to_string() } else { child_name(base, &format!("retry-{n}")) }
}

/// An Agent with role Reviewer matching `selector` that is independent of `producer`, or why
/// there is none.
pub async fn pick_reviewer(
    ctx: &Context,
    ns: &str,
    selector: &LabelSelector,
    producer: &Party<'_>,
) -> Result<std::result::Result<(Resource, AgentSpec, domain::kinds::agents::ModelIdentity), String>> {
    let mut refusals = Vec::new();
    for a in ctx.list("Agent", ns, &[]).await? {
        let s: AgentSpec = spec(&a)?;
        if s.role != AgentRole::Reviewer || !matches(selector, &a) {
            continue;
        }
        let hk = ObjectKey::new("Harness", ns, &s.harness_ref.name);
        let Some(h) = ctx.get(&hk).await? else {
            refusals.push(format!("{}: {hk} does not exist", a.metadata.name));
            continue;
        };
        let model = model_of(&s, &spec(&h)?);
        let candidate = Party { session_uid: "", lineage: &[], agent: &a.metadata.name, model: model.as_ref() };
        match (independence(producer, &candidate), model.clone()) {
            (Ok(()), Some(m)) => return Ok(Ok((a, s, m))),
            (Err(why), _) => refusals.push(format!("{}: {why}", a.metadata.name)),
            (Ok(()), None) => refusals.push(format!("{}: states no model identity", a.metadata.name)),
        }
    }
    if refusals.is_empty() {
        refusals.push("no Agent with role Reviewer matches the reviewerSelector".into());
    }
    Ok(Err(refusals.join("; ")))
}
