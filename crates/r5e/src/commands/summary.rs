//! The summary `r5e run` prints at the end: each Graph and its Nodes, then the sessions,
//! artifacts, reviews, reflections, declines and tool calls of that work, read back from the
//! store and the audit log, and the verified chain.

use std::collections::{BTreeMap, BTreeSet};

use admission::Admission;
use anyhow::Result;
use domain::kinds::artifact::{ArtifactSpec, ArtifactStatus, ArtifactType, ReviewState, Verdict};
use domain::kinds::task::{AgentSessionSpec, AgentSessionStatus, SessionPhase};
use domain::kinds::work::{GraphPhase, GraphStatus, NodeSpec, NodeStatus};
use domain::{ObjectKey, Resource};
use storage::EventQuery;

use crate::output::table;

/// How the run ended.
#[derive(Debug)]
pub struct Outcome {
    graphs_succeeded: bool,
}

impl Outcome {
    /// Whether every Graph succeeded (the chain was verified, or printing would have failed).
    pub fn succeeded(&self) -> bool {
        self.graphs_succeeded
    }
}

fn typed<T: serde::de::DeserializeOwned + Default>(v: &serde_json::Value) -> T {
    serde_json::from_value(v.clone()).unwrap_or_default()
}

async fn list(admission: &Admission, kind: &str, ns: &str) -> Result<Vec<Resource>> {
    Ok(admission.store().graph.query_by_labels(&Default::default(), Some(kind), Some(ns)).await?)
}

pub async fn print(admission: &Admission, graphs: &[ObjectKey], start_seq: u64) -> Result<Outcome> {
    let mut all_succeeded = true;
    let mut tasks = BTreeSet::new();
    let namespaces: BTreeSet<String> = graphs.iter().map(|g| g.namespace.clone()).collect();
    println!();
    for g in graphs {
        let graph = admission.store().graph.get(g).await?;
        let gs: GraphStatus = typed(&graph.status);
        all_succeeded &= gs.phase == Some(GraphPhase::Succeeded);
        println!(
            "graph {}: {} ({} of {} nodes succeeded)",
            g.name,
            gs.phase.map(|p| format!("{p:?}")).unwrap_or_else(|| "Pending".into()),
            gs.nodes.succeeded,
            gs.nodes.total
        );
        let mut t = table(&["node", "phase", "step", "message"]);
        for n in list(admission, "Node", &g.namespace).await? {
            let spec: NodeSpec = typed(&n.spec);
            if spec.graph_ref.name != g.name {
                continue;
            }
            let s: NodeStatus = typed(&n.status);
            t.add_row(vec![
                n.metadata.name.clone(),
                s.phase.map(|p| format!("{p:?}")).unwrap_or_default(),
                s.current_step.unwrap_or_default(),
                s.message.unwrap_or_default(),
            ]);
        }
        println!("{t}\n");
        for task in admission
            .store()
            .graph
            .query_by_labels(&format!("r5e.ai/graph={}", g.name).parse()?, Some("Task"), Some(&g.namespace))
            .await?
        {
            tasks.insert((g.namespace.clone(), task.metadata.name));
        }
    }
    let in_scope = |r: &Resource| {
        let ns = r.metadata.namespace.clone().unwrap_or_default();
        r.metadata.labels.get("r5e.ai/task").is_some_and(|t| tasks.contains(&(ns, t.clone())))
    };
    let mut roles: BTreeMap<String, usize> = BTreeMap::new();
    let mut phases: BTreeMap<String, usize> = BTreeMap::new();
    let (mut reflected, mut unreflected, mut declines) = (0, Vec::new(), 0);
    let mut session_names = BTreeSet::new();
    let mut artifacts: BTreeMap<&'static str, usize> = BTreeMap::new();
    let (mut approved, mut rejected, mut approvals, mut rejections) = (0, 0, 0, 0);
    for ns in &namespaces {
        for s in list(admission, "AgentSession", ns).await?.iter().filter(|r| in_scope(r)) {
            let spec: AgentSessionSpec = typed(&s.spec);
            let st: AgentSessionStatus = typed(&s.status);
            session_names.insert(format!("session:{}/{}", ns, s.metadata.name));
            *roles.entry(format!("{:?}", spec.role).to_lowercase()).or_default() += 1;
            *phases.entry(st.phase.map(|p| format!("{p:?}")).unwrap_or_else(|| "Pending".into())).or_default() += 1;
            if st.reflection_ref.is_some() {
                reflected += 1;
            } else if matches!(st.phase, Some(SessionPhase::Failed | SessionPhase::Degraded)) {
                unreflected.push(format!("{}: {}", s.metadata.name, st.failure.unwrap_or_default()));
            }
            declines += usize::from(st.decline.is_some());
        }
        for a in list(admission, "Artifact", ns).await?.iter().filter(|r| in_scope(r)) {
            let spec: ArtifactSpec = serde_json::from_value(a.spec.clone())?;
            let st: ArtifactStatus = typed(&a.status);
            let kind = match spec.artifact_type {
                ArtifactType::Output => "outputs",
                ArtifactType::Review => "reviews",
                ArtifactType::Reflection => "reflections",
                ArtifactType::Decline => "declines",
                ArtifactType::Transcript => "transcripts",
            };
            *artifacts.entry(kind).or_default() += 1;
            match (spec.artifact_type, st.review, spec.verdict) {
                (ArtifactType::Output, Some(ReviewState::Approved), _) => approved += 1,
                (ArtifactType::Output, Some(ReviewState::Rejected), _) => rejected += 1,
                (ArtifactType::Review, _, Some(Verdict::Approve)) => approvals += 1,
                (ArtifactType::Review, _, Some(Verdict::Reject)) => rejections += 1,
                _ => {}
            }
        }
    }
    let calls = admission
        .store()
        .events
        .query(&EventQuery { from_seq: Some(start_seq + 1), types: vec!["tool.call".into()], ..Default::default() })
        .await?;
    let calls: Vec<_> = calls.iter().filter(|e| session_names.contains(&e.actor)).collect();
    let allowed = calls.iter().filter(|e| e.data.get("allowed").and_then(|v| v.as_bool()) == Some(true)).count();
    let count = |m: &BTreeMap<String, usize>| m.iter().map(|(k, v)| format!("{v} {k}")).collect::<Vec<_>>().join(", ");
    let sessions: usize = roles.values().sum();
    println!("sessions:    {sessions} ({}): {}", count(&roles), count(&phases).to_lowercase());
    let arts = artifacts.iter().map(|(k, v)| format!("{v} {k}")).collect::<Vec<_>>().join(", ");
    println!("artifacts:   {}", if arts.is_empty() { "none".to_string() } else { arts });
    println!(
        "reviews:     {approvals} approving, {rejections} rejecting; outputs {approved} approved, {rejected} rejected"
    );
    println!("reflections: {reflected} given, {} missing", unreflected.len());
    for u in &unreflected {
        println!("             - {u}");
    }
    println!("declines:    {declines}");
    println!("tool calls:  {allowed} allowed, {} refused", calls.len() - allowed);
    let head = admission.store().events.verify_chain().await?;
    println!("audit chain verified: {} events, head {}", head.seq, head.hash);
    Ok(Outcome { graphs_succeeded: all_succeeded })
}
