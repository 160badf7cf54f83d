//! The Node controller: waits for the Nodes it depends on, then walks its Workflow's steps,
//! creating one Task per step with the previous step's approved output as input, and mirrors
//! the current Task's phase. A Node without a Workflow has one step, `work`, whose
//! instructions are the Node's description.

use std::sync::Arc;

use domain::kinds::artifact::ArtifactInput;
use domain::kinds::task::{TaskPhase, TaskSpec, TaskStatus};
use domain::kinds::work::{GraphSpec, NodePhase, NodeSpec, NodeStatus, WorkflowSpec, WorkflowStep};
use domain::resource::Condition;
use domain::{ObjectKey, Resource};
use storage::{Direction, TraverseQuery};

use super::graph::replanned;
use super::set_condition;
use crate::context::{Context, child_name, labels, local_ref, new_resource, owned_by, spec, status};
use crate::controller::{Next, Reconciler};
use crate::error::{Error, Result};

pub(crate) struct Nodes {
    pub ctx: Arc<Context>,
}

#[async_trait::async_trait]
impl Reconciler for Nodes {
    fn kind(&self) -> &'static str {
        "Node"
    }

    fn workers(&self) -> usize {
        8
    }

    async fn wakes(&self, changed: &Resource) -> Vec<ObjectKey> {
        let ns = changed.metadata.namespace.clone().unwrap_or_default();
        match changed.kind.as_str() {
            "Node" => {
                let mut keys = vec![changed.key()];
                // Dependents care only once this Node has settled one way or another.
                let phase = changed.status.get("phase").and_then(|p| p.as_str()).unwrap_or("Pending");
                if matches!(phase, "Pending" | "Waiting" | "Running") {
                    return keys;
                }
                let query = TraverseQuery {
                    direction: Direction::Incoming,
                    edges: vec!["spec.dependsOn".into()],
                    max_depth: 1,
                };
                if let Ok(hits) = self.ctx.store().graph.traverse(&changed.key(), &query).await {
                    keys.extend(hits.into_iter().map(|h| h.resource.key()));
                }
                keys
            }
            "Task" => changed
                .spec
                .pointer("/nodeRef/name")
                .and_then(|v| v.as_str())
                .map(|n| vec![ObjectKey::new("Node", &ns, n)])
                .unwrap_or_default(),
            _ => vec![],
        }
    }

    async fn reconcile(&self, key: &ObjectKey) -> Result<Next> {
        let Some(node) = self.ctx.get(key).await? else { return Ok(Next::Done) };
        let current: NodeStatus = status(&node)?;
        if matches!(current.phase, Some(NodePhase::Succeeded | NodePhase::Failed)) {
            return Ok(Next::Done);
        }
        let spec: NodeSpec = spec(&node)?;
        let ns = key.namespace.as_str();
        // Dependencies first.
        let mut waiting_on = Vec::new();
        for dep in &spec.depends_on {
            let dep_key = ObjectKey::new("Node", ns, dep);
            let Some(d) = self.ctx.get(&dep_key).await? else {
                return self
                    .set(key, NodePhase::Blocked, None, &format!("dependency {dep} does not exist"), vec![])
                    .await;
            };
            let ds: NodeStatus = status(&d)?;
            match ds.phase {
                Some(NodePhase::Succeeded) => {}
                Some(p @ (NodePhase::Failed | NodePhase::Blocked | NodePhase::Declined)) => {
                    let why =
                        if replanned(&ds) { "was declined and re-planned".to_string() } else { format!("is {p:?}") };
                    return self.set(key, NodePhase::Blocked, None, &format!("dependency {dep} {why}"), vec![]).await;
                }
                _ => waiting_on.push(dep.clone()),
            }
        }
        if !waiting_on.is_empty() {
            let message = format!("waiting for {}", waiting_on.join(", "));
            return self.set(key, NodePhase::Waiting, None, &message, vec![]).await;
        }
        let authority = match &spec.authority {
            Some(a) => a.clone(),
            None => {
                let graph_key = ObjectKey::new("Graph", ns, &spec.graph_ref.name);
                let graph = self.ctx.get(&graph_key).await?;
                crate::context::spec::<GraphSpec>(
                    &graph.ok_or_else(|| Error::Invalid(format!("{graph_key} is gone")))?,
                )?
                .authority
            }
        };
        let steps = match &spec.workflow_ref {
            Some(w) => {
                let wk = ObjectKey::new("Workflow", ns, &w.name);
                let wf = self.ctx.get(&wk).await?.ok_or_else(|| Error::Invalid(format!("{wk} is gone")))?;
                crate::context::spec::<WorkflowSpec>(&wf)?.steps
            }
            None => {
                vec![WorkflowStep { name: "work".into(), instructions: spec.description.clone(), ..Default::default() }]
            }
        };
        // The first step starts from the approved outputs of the Nodes this one depends on.
        let mut inputs: Vec<ArtifactInput> = Vec::new();
        for dep in &spec.depends_on {
            if let Some(d) = self.ctx.get(&ObjectKey::new("Node", ns, dep)).await? {
                let ds: NodeStatus = status(&d)?;
                inputs.extend(ds.outputs.iter().map(|digest| ArtifactInput { name: dep.clone(), digest: *digest }));
            }
        }
        let mut task_refs = Vec::new();
        for step in &steps {
            let name = child_name(&key.name, &step.name);
            task_refs.push(local_ref(&name));
            let task_key = ObjectKey::new("Task", ns, &name);
            let task = match self.ctx.get(&task_key).await? {
                Some(t) => t,
                None => {
                    let t = TaskSpec {
                        node_ref: local_ref(&key.name),
                        graph_ref: spec.graph_ref.clone(),
                        step: step.name.clone(),
                        instructions: if step.instructions.is_empty() {
                            spec.description.clone()
                        } else {
                            step.instructions.clone()
                        },
                        agent_selector: step.agent_selector.clone(),
                        authority: authority.clone(),
                        inputs: inputs.clone(),
                        review: step.review.clone(),
                        max_attempts: 3,
                    };
                    let mut r = new_resource(
                        "Task",
                        ns,
                        &name,
                        &[(labels::GRAPH, &spec.graph_ref.name), (labels::NODE, &key.name)],
                        &t,
                    );
                    r.metadata.owner_references.push(owned_by(&node));
                    self.ctx.create(r).await?;
                    return self.set(key, NodePhase::Running, Some(&step.name), "", task_refs).await;
                }
            };
            let ts: TaskStatus = status(&task)?;
            match ts.phase {
                Some(TaskPhase::Succeeded) => {
                    inputs = approved_outputs(&self.ctx, ns, &ts).await?;
                }
                Some(TaskPhase::Failed) => {
                    let m = format!("task {name} failed: {}", ts.message.unwrap_or_default());
                    return self.set(key, NodePhase::Failed, Some(&step.name), &m, task_refs).await;
                }
                Some(TaskPhase::Blocked) => {
                    let m = format!("task {name} is blocked: {}", ts.message.unwrap_or_default());
                    return self.set(key, NodePhase::Blocked, Some(&step.name), &m, task_refs).await;
                }
                Some(TaskPhase::Declined) => {
                    let m = format!("task {name} was declined: {}", ts.message.clone().unwrap_or_default());
                    let replan = ts.conditions.iter().find(|c| c.type_ == "Replanned").cloned();
                    return self.declined(key, &step.name, &m, task_refs, replan).await;
                }
                _ => return self.set(key, NodePhase::Running, Some(&step.name), "", task_refs).await,
            }
        }
        let outputs: Vec<_> = inputs.iter().map(|i| i.digest).collect();
        self.ctx
            .patch_status::<NodeStatus, _>(key, |r, s| {
                s.phase = Some(NodePhase::Succeeded);
                s.current_step = None;
                s.task_refs = task_refs.clone();
                s.outputs = outputs.clone();
                s.message = None;
                s.observed_generation = r.metadata.generation;
            })
            .await?;
        Ok(Next::Done)
    }
}

/// The approved output Artifacts of a succeeded Task, as inputs for the next step.
async fn approved_outputs(ctx: &Context, ns: &str, ts: &TaskStatus) -> Result<Vec<ArtifactInput>> {
    let mut out = Vec::new();
    for r in &ts.artifact_refs {
        let Some(a) = ctx.get(&ObjectKey::new("Artifact", ns, &r.name)).await? else { continue };
        let spec: domain::kinds::artifact::ArtifactSpec = crate::context::spec(&a)?;
        let st: domain::kinds::artifact::ArtifactStatus = status(&a)?;
        if st.review == Some(domain::kinds::artifact::ReviewState::Approved) {
            out.push(ArtifactInput { name: r.name.clone(), digest: spec.digest });
        }
    }
    Ok(out)
}

impl Nodes {
    async fn set(
        &self,
        key: &ObjectKey,
        phase: NodePhase,
        step: Option<&str>,
        message: &str,
        task_refs: Vec<domain::resource::ObjectRef>,
    ) -> Result<Next> {
        self.ctx
            .patch_status::<NodeStatus, _>(key, |r, s| {
                s.phase = Some(phase);
                if step.is_some() {
                    s.current_step = step.map(str::to_string);
                }
                if !task_refs.is_empty() {
                    s.task_refs = task_refs.clone();
                }
                s.message = (!message.is_empty()).then(|| message.to_string());
                s.observed_generation = r.metadata.generation;
            })
            .await?;
        Ok(Next::Done)
    }

    async fn declined(
        &self,
        key: &ObjectKey,
        step: &str,
        message: &str,
        task_refs: Vec<domain::resource::ObjectRef>,
        replan: Option<Condition>,
    ) -> Result<Next> {
        self.ctx
            .patch_status::<NodeStatus, _>(key, |r, s| {
                s.phase = Some(NodePhase::Declined);
                s.current_step = Some(step.to_string());
                s.task_refs = task_refs.clone();
                s.message = Some(message.to_string());
                s.observed_generation = r.metadata.generation;
                if let Some(c) = &replan {
                    set_condition(&mut s.conditions, "Replanned", c.status, &c.reason, &c.message);
                } else {
                    s.conditions.retain(|c| c.type_ != "Replanned");
                }
            })
            .await?;
        Ok(Next::Done)
    }
}
