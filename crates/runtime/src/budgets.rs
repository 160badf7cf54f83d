//! The budgets a session's authority may set, where each is spent, and the one check made
//! before every spend. A spend that would pass a budget is refused and ends the session
//! `Failed`, naming the budget; what it produced until then is kept.
//!
//! | budget | spent by | checked in |
//! |---|---|---|
//! | `tool_calls` | each allowed tool call | [`crate::tools::call`] |
//! | `tokens` | model tokens (input and output) | [`crate::harness::model`] |
//! | `cost_micros` | model calls at the `model` Harness's `price` | [`crate::harness::model`] (a session with this budget starts only where its cost can be counted: a `model` harness with a price) |
//! | `artifact_bytes` | bytes of output, verdict, decline and reflection artifacts | [`crate::session`] |
//! | `nodes` | Nodes an orchestrating session creates | [`crate::session`] |
//! | `sessions` | sessions a Task starts (attempts, reviews, re-plans) | [`crate::controllers::task`] (the Task fails) |
//! | `wall_seconds` | the session's wall-clock time | [`crate::session`] (its deadline) |
//! | `cpu_seconds`, `memory_bytes`, `processes`, `file_bytes` | a confined harness's resources | [`crate::sandbox`] (kernel limits) |

use domain::Authority;

pub use crate::tools::TOOL_CALLS;

/// Bytes of the artifacts a session produces (not its transcript).
pub const ARTIFACT_BYTES: &str = "artifact_bytes";
/// Nodes a session creates.
pub const NODES: &str = "nodes";
/// Sessions a Task starts: every attempt, review and re-plan.
pub const SESSIONS: &str = "sessions";
/// A session's wall-clock seconds.
pub const WALL_SECONDS: &str = "wall_seconds";
/// Model tokens.
pub const TOKENS: &str = "tokens";
/// What model calls cost, in millionths of the currency unit.
pub const COST_MICROS: &str = "cost_micros";

/// Why spending `amount` more of budget `name`, after `spent`, is refused; `None` when it fits
/// (or the budget is unlimited).
pub fn over(authority: &Authority, name: &str, spent: u64, amount: u64) -> Option<String> {
    let limit = authority.budgets.get(name)?;
    authority
        .charge(name, spent, amount)
        .err()
        .map(|_| format!("budget `{name}` of {limit} is spent ({spent} used, {amount} more asked)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spend_that_passes_the_limit_is_refused_and_named() {
        let a = Authority { budgets: [(NODES.to_string(), 2)].into_iter().collect(), ..Default::default() };
        assert_eq!(over(&a, NODES, 1, 1), None);
        assert_eq!(over(&a, NODES, 2, 1).unwrap(), "budget `nodes` of 2 is spent (2 used, 1 more asked)");
        assert_eq!(over(&a, TOOL_CALLS, 1_000_000, 1), None, "an absent budget is unlimited");
        assert!(over(&a, NODES, u64::MAX, 1).is_some());
    }
}
