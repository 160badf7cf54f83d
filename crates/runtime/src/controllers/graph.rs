//! The Graph controller: counts its Nodes by phase and derives the Graph's phase.

use std::sync::Arc;

use domain::kinds::work::{GraphPhase, GraphStatus, NodeCounts, NodePhase, NodeStatus};
use domain::resource::ConditionStatus;
use domain::{ObjectKey, Resource};
use storage::{Direction, TraverseQuery};

use crate::context::{Context, status};
use crate::controller::{Next, Reconciler};
use crate::error::Result;

pub(crate) struct Graphs {
    pub ctx: Arc<Context>,
}

/// Whether a Node was declined and its work re-planned into other Nodes.
pub(crate) fn replanned(s: &NodeStatus) -> bool {
    s.conditions.iter().any(|c| c.type_ == "Replanned" && c.status == ConditionStatus::True)
}

/// Whether a declined Node's work is being re-planned right now.
fn replanning(s: &NodeStatus) -> bool {
    s.conditions.iter().any(|c| c.type_ == "Replanned" && c.status == ConditionStatus::Unknown)
}

#[async_trait::async_trait]
impl Reconciler for Graphs {
    fn kind(&self) -> &'static str {
        "Graph"
    }

    async fn wakes(&self, changed: &Resource) -> Vec<ObjectKey> {
        let ns = changed.metadata.namespace.clone().unwrap_or_default();
        match changed.kind.as_str() {
            "Graph" => vec![changed.key()],
            "Node" => changed
                .spec
                .pointer("/graphRef/name")
                .and_then(|v| v.as_str())
                .map(|g| vec![ObjectKey::new("Graph", &ns, g)])
                .unwrap_or_default(),
            _ => vec![],
        }
    }

    async fn reconcile(&self, key: &ObjectKey) -> Result<Next> {
        if self.ctx.get(key).await?.is_none() {
            return Ok(Next::Done);
        }
        let query = TraverseQuery { direction: Direction::Incoming, edges: vec!["spec.graphRef".into()], max_depth: 1 };
        let hits = self.ctx.store().graph.traverse(key, &query).await?;
        let mut counts = NodeCounts::default();
        let mut unresolved_decline = false;
        for hit in hits.iter().filter(|h| h.resource.kind == "Node") {
            let s: NodeStatus = status(&hit.resource)?;
            counts.total += 1;
            match s.phase.unwrap_or(NodePhase::Pending) {
                NodePhase::Pending => counts.pending += 1,
                NodePhase::Waiting => counts.waiting += 1,
                NodePhase::Running => counts.running += 1,
                NodePhase::Succeeded => counts.succeeded += 1,
                NodePhase::Failed => counts.failed += 1,
                NodePhase::Blocked => counts.blocked += 1,
                NodePhase::Declined if replanning(&s) => counts.running += 1,
                NodePhase::Declined => {
                    counts.declined += 1;
                    unresolved_decline |= !replanned(&s);
                }
            }
        }
        let phase = if counts.total == 0 {
            GraphPhase::Pending
        } else if counts.pending + counts.waiting + counts.running > 0 {
            GraphPhase::Running
        } else if counts.failed > 0 || unresolved_decline {
            GraphPhase::Failed
        } else if counts.blocked > 0 {
            GraphPhase::Blocked
        } else {
            GraphPhase::Succeeded
        };
        self.ctx
            .patch_status::<GraphStatus, _>(key, |r, s| {
                s.phase = Some(phase);
                s.nodes = counts.clone();
                s.observed_generation = r.metadata.generation;
            })
            .await?;
        Ok(Next::Done)
    }
}
