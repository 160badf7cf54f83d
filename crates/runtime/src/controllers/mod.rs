//! The controllers of the work chain, one per kind: a Graph's Nodes run in dependency order
//! (`graph.rs`, `node.rs`), each Node's Workflow steps become Tasks, each Task gets producing
//! and reviewing sessions (`task.rs`), and each session is leased and run (`session.rs`).
//! Status rolls up the chain: session -> Task -> Node -> Graph.

mod graph;
mod node;
mod session;
mod task;

use std::sync::Arc;

use chrono::Utc;
use domain::resource::{Condition, ConditionStatus};

use crate::context::Context;
use crate::controller::Reconciler;

pub use task::pick_reviewer;

/// Every controller of the chain over `ctx`.
pub fn all(ctx: &Arc<Context>) -> Vec<Arc<dyn Reconciler>> {
    vec![
        Arc::new(graph::Graphs { ctx: ctx.clone() }),
        Arc::new(node::Nodes { ctx: ctx.clone() }),
        Arc::new(task::Tasks { ctx: ctx.clone() }),
        Arc::new(session::Sessions { ctx: ctx.clone() }),
    ]
}

/// Set condition `type_` in `conditions`, keeping its transition time if its status is unchanged.
pub(crate) fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: ConditionStatus,
    reason: &str,
    message: &str,
) {
    let previous = conditions.iter().position(|c| c.type_ == type_);
    let since = match previous {
        Some(i) if conditions[i].status == status => conditions[i].last_transition_time.clone(),
        _ => Some(Utc::now().to_rfc3339()),
    };
    let c = Condition {
        type_: type_.into(),
        status,
        reason: reason.into(),
        message: message.into(),
        last_transition_time: since,
        observed_generation: None,
    };
    match previous {
        Some(i) => conditions[i] = c,
        None => conditions.push(c),
    }
}
