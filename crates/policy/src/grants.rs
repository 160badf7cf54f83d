//! What a Policy's text grants, read from the scope of its `permit` statements: which actions on
//! which kinds (and names). Admission uses it to refuse a Policy that grants more than its writer
//! holds, so nobody authorises themselves through policy.
//!
//! The reading is structural and errs on the wide side: a statement's `when` and `unless`
//! conditions only narrow what it permits, so they are ignored; an unconstrained action or
//! resource stands for every action or every kind.

use cedar_policy::{ActionConstraint, Effect, EntityUid, ResourceConstraint};

use crate::{Action, Error, parse_source};

/// One thing a `permit` statement can allow: `actions` (every action when `None`) on resources of
/// `kind` (every kind when `None`), named `name` when the statement names one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The statement it comes from (`namespace/name#index`).
    pub statement: String,
    /// The actions it may permit; `None` for any.
    pub actions: Option<Vec<Action>>,
    /// The kind it may permit them on; `None` for any.
    pub kind: Option<String>,
    /// The one resource name (`namespace/name`) it is limited to, if any.
    pub name: Option<String>,
}

/// Every action there is, in the order policies list them.
pub const ALL_ACTIONS: [Action; 8] = [
    Action::Create,
    Action::Update,
    Action::UpdateStatus,
    Action::Delete,
    Action::Get,
    Action::List,
    Action::Watch,
    Action::CallTool,
];

/// What the `permit` statements of one Policy's Cedar text grant (`forbid`s grant nothing).
pub fn grants(source_name: &str, cedar: &str) -> Result<Vec<Grant>, Error> {
    let mut out = Vec::new();
    for policy in parse_source(source_name, cedar)? {
        if policy.effect() != Effect::Permit {
            continue;
        }
        let actions = match policy.action_constraint() {
            ActionConstraint::Any => None,
            ActionConstraint::Eq(uid) => Some(action_of(&uid).into_iter().collect()),
            ActionConstraint::In(uids) => Some(uids.iter().filter_map(action_of).collect()),
        };
        let (kind, name) = match policy.resource_constraint() {
            ResourceConstraint::Any => (None, None),
            ResourceConstraint::Is(t) | ResourceConstraint::IsIn(t, _) => (Some(kind_of(&t.to_string())), None),
            // Resources have no parents in r5e's entity model: `in` one is being that one.
            ResourceConstraint::Eq(uid) | ResourceConstraint::In(uid) => {
                (Some(kind_of(&uid.type_name().to_string())), Some(uid.id().unescaped().to_string()))
            }
        };
        out.push(Grant { statement: policy.id().to_string(), actions, kind, name });
    }
    Ok(out)
}

/// `r5e::Action::"create"` as [`Action::Create`]; other ids grant nothing.
fn action_of(uid: &EntityUid) -> Option<Action> {
    let id = uid.id().unescaped();
    ALL_ACTIONS.into_iter().find(|a| a.as_str() == id)
}

/// `r5e::Task` as `Task`.
fn kind_of(type_name: &str) -> String {
    type_name.strip_prefix("r5e::").unwrap_or(type_name).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_become_grants_and_forbids_grant_nothing() {
        let g = grants(
            "a/p",
            r#"permit(principal, action, resource);
               permit(principal, action == r5e::Action::"get", resource is r5e::Task) when { resource.labels has "x" };
               permit(principal, action in [r5e::Action::"create", r5e::Action::"delete"], resource == r5e::Graph::"a/g");
               forbid(principal, action, resource);"#,
        )
        .unwrap();
        assert_eq!(g.len(), 3);
        assert_eq!((g[0].actions.as_ref(), g[0].kind.as_ref()), (None, None));
        assert_eq!(g[1].actions, Some(vec![Action::Get]));
        assert_eq!(g[1].kind.as_deref(), Some("Task"));
        assert_eq!(g[2].actions, Some(vec![Action::Create, Action::Delete]));
        assert_eq!((g[2].kind.as_deref(), g[2].name.as_deref()), (Some("Graph"), Some("a/g")));
        assert_eq!(g[2].statement, "a/p#2");
    }
}
