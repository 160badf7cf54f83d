//! The authority algebra: what a Graph, Node, Task or AgentSession may do, and the one rule that
//! governs delegation: a child's authority is a subset of its parent's.
//!
//! An [`Authority`] has four parts, each ordered so that "narrower" is well defined:
//! - `capabilities`: a set of capability patterns (`fs.read`, `tool.web-search`, `fs.*`, `*`);
//! - `scope`: a set of resource patterns the holder may touch, each `system:path`. The `r5e`
//!   system names the control plane's own objects in the holder's namespace (`r5e:Node/part-*`,
//!   see [`object_scope`]); any other system names what a Tool touches outside r5e
//!   (`repo:acme/web/*`, see [`tool_scope`]);
//! - `budgets`: named upper limits (`tokens`, `tool_calls`, `wall_seconds`, `cost_micros`);
//! - `expiresAt`: an instant after which nothing is allowed.
//!
//! A pattern ending in `*` covers every string that starts with what precedes the `*`; any other
//! pattern covers only itself. An absent budget means "unlimited" and an absent expiry means
//! "never", so a child may add a budget or an expiry its parent lacks but never drop one.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Delegated authority. The empty value allows nothing (but is unlimited in budget and time).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Authority {
    /// Capability patterns the holder may exercise.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub capabilities: BTreeSet<String>,
    /// Resource patterns the holder may touch.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub scope: BTreeSet<String>,
    /// Upper limits by name; an absent name is unlimited.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub budgets: BTreeMap<String, u64>,
    /// After this instant the authority allows nothing; absent means it does not expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

/// One way in which a requested authority exceeds the authority it was derived from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Widening {
    /// A capability the parent does not cover.
    Capability(String),
    /// A scope entry the parent does not cover.
    Scope(String),
    /// A budget above the parent's limit.
    Budget { name: String, requested: u64, limit: u64 },
    /// A budget the parent limits but the child leaves unlimited.
    UnlimitedBudget(String),
    /// An expiry after the parent's.
    Expiry { requested: DateTime<Utc>, limit: DateTime<Utc> },
    /// No expiry while the parent expires.
    NoExpiry(DateTime<Utc>),
}

impl fmt::Display for Widening {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Widening::Capability(c) => write!(f, "capability `{c}` is not held by the parent"),
            Widening::Scope(s) => write!(f, "scope `{s}` is outside the parent's scope"),
            Widening::Budget { name, requested, limit } => {
                write!(f, "budget `{name}` of {requested} exceeds the parent's {limit}")
            }
            Widening::UnlimitedBudget(name) => {
                write!(f, "budget `{name}` is unlimited but the parent limits it")
            }
            Widening::Expiry { requested, limit } => {
                write!(f, "expiry {} is later than the parent's {}", requested.to_rfc3339(), limit.to_rfc3339())
            }
            Widening::NoExpiry(limit) => {
                write!(f, "no expiry is set but the parent expires at {}", limit.to_rfc3339())
            }
        }
    }
}

/// True if `pattern` covers `item`: equal, or `pattern` ends in `*` and `item` starts with the
/// part before it. A pattern covers another pattern the same way (`fs.*` covers `fs.read.*`).
pub fn covers(pattern: &str, item: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => item.starts_with(prefix),
        None => pattern == item,
    }
}

/// The scope entry naming the control-plane object `kind/name` in the holder's own namespace
/// (`r5e:Node/part-1`); a list or watch of a kind is `r5e:Node/`, which only a pattern covering
/// every name of the kind (`r5e:Node/*`) covers.
pub fn object_scope(kind: &str, name: &str) -> String {
    format!("r5e:{kind}/{name}")
}

/// The scope entry a Tool call touches: the Tool's `system` and the path the call names
/// (`repo:acme/web/README.md`). The path must be relative and plain (no empty, `.` or `..`
/// segment, no `*`, at most 1,024 bytes), so `repo:acme/web/*` cannot be escaped with `..`.
pub fn tool_scope(system: &str, path: &str) -> Result<String, String> {
    if path.is_empty() || path.len() > 1024 {
        return Err(format!("the path must be 1 to 1024 bytes long, not {}", path.len()));
    }
    if path.contains('*') || path.contains('\\') || path.chars().any(char::is_control) {
        return Err(format!("the path `{}` holds `*`, `\\` or a control character", path.escape_default()));
    }
    if path.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
        return Err(format!("the path `{path}` is not plain: no leading `/`, empty, `.` or `..` segment"));
    }
    Ok(format!("{system}:{path}"))
}

fn covered_by_any(set: &BTreeSet<String>, item: &str) -> bool {
    set.iter().any(|p| covers(p, item))
}

impl Authority {
    /// Every way in which `self` exceeds `parent`; empty when `self` is a subset of `parent`.
    pub fn widenings_over(&self, parent: &Authority) -> Vec<Widening> {
        let mut out = Vec::new();
        for c in &self.capabilities {
            if !covered_by_any(&parent.capabilities, c) {
                out.push(Widening::Capability(c.clone()));
            }
        }
        for s in &self.scope {
            if !covered_by_any(&parent.scope, s) {
                out.push(Widening::Scope(s.clone()));
            }
        }
        for (name, &limit) in &parent.budgets {
            match self.budgets.get(name) {
                None => out.push(Widening::UnlimitedBudget(name.clone())),
                Some(&requested) if requested > limit => {
                    out.push(Widening::Budget { name: name.clone(), requested, limit })
                }
                Some(_) => {}
            }
        }
        match (self.expires_at, parent.expires_at) {
            (None, Some(limit)) => out.push(Widening::NoExpiry(limit)),
            (Some(requested), Some(limit)) if requested > limit => out.push(Widening::Expiry { requested, limit }),
            _ => {}
        }
        out
    }

    /// True if `self` allows nothing that `parent` does not.
    pub fn is_subset_of(&self, parent: &Authority) -> bool {
        self.widenings_over(parent).is_empty()
    }

    /// Derive a child authority: `request` itself when it is a subset of `self`, otherwise every
    /// way in which it would widen. There is no other way to derive authority.
    pub fn narrow(&self, request: &Authority) -> Result<Authority, Vec<Widening>> {
        let widenings = request.widenings_over(self);
        if widenings.is_empty() { Ok(request.clone()) } else { Err(widenings) }
    }

    /// The greatest authority this algebra can express that is a subset of both `self` and
    /// `other` (sound: never wider than either).
    pub fn intersect(&self, other: &Authority) -> Authority {
        let meet = |a: &BTreeSet<String>, b: &BTreeSet<String>| -> BTreeSet<String> {
            a.iter()
                .filter(|x| covered_by_any(b, x))
                .chain(b.iter().filter(|y| covered_by_any(a, y)))
                .cloned()
                .collect()
        };
        let mut budgets = self.budgets.clone();
        for (name, &limit) in &other.budgets {
            budgets.entry(name.clone()).and_modify(|v| *v = (*v).min(limit)).or_insert(limit);
        }
        let expires_at = match (self.expires_at, other.expires_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Authority {
            capabilities: meet(&self.capabilities, &other.capabilities),
            scope: meet(&self.scope, &other.scope),
            budgets,
            expires_at,
        }
    }

    /// True if this authority allows exercising `capability` at `now`.
    pub fn allows_capability(&self, capability: &str, now: DateTime<Utc>) -> bool {
        !self.is_expired(now) && covered_by_any(&self.capabilities, capability)
    }

    /// True if this authority allows touching `target` at `now`.
    pub fn allows_scope(&self, target: &str, now: DateTime<Utc>) -> bool {
        !self.is_expired(now) && covered_by_any(&self.scope, target)
    }

    /// True once `now` is at or past the expiry.
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|e| now >= e)
    }

    /// Charge `amount` against budget `name`, given what was already `spent`. Errors when the
    /// total would exceed the limit; an unlimited budget always succeeds.
    pub fn charge(&self, name: &str, spent: u64, amount: u64) -> Result<u64, Widening> {
        let total = spent.saturating_add(amount);
        match self.budgets.get(name) {
            Some(&limit) if total > limit => Err(Widening::Budget { name: name.to_string(), requested: total, limit }),
            _ => Ok(total),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn auth(caps: &[&str], scope: &[&str], budgets: &[(&str, u64)], exp: Option<i64>) -> Authority {
        Authority {
            capabilities: caps.iter().map(|s| s.to_string()).collect(),
            scope: scope.iter().map(|s| s.to_string()).collect(),
            budgets: budgets.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            expires_at: exp.map(|s| Utc.timestamp_opt(s, 0).unwrap()),
        }
    }

    #[test]
    fn wildcards_cover_prefixes_only() {
        assert!(covers("fs.*", "fs.read"));
        assert!(covers("fs.*", "fs.*"));
        assert!(covers("*", "anything"));
        assert!(!covers("fs.read", "fs.write"));
        assert!(!covers("fs.read", "fs.*"));
        assert!(!covers("fs.*", "f"));
    }

    #[test]
    fn scope_names_objects_and_plain_tool_paths() {
        let a = auth(&[], &["r5e:Node/part-*", "repo:notes/*"], &[], None);
        let now = Utc.timestamp_opt(0, 0).unwrap();
        assert!(a.allows_scope(&object_scope("Node", "part-1"), now));
        assert!(!a.allows_scope(&object_scope("Node", "other"), now));
        // A list of Nodes would show every name: only `r5e:Node/*` covers it.
        assert!(!a.allows_scope(&object_scope("Node", ""), now));
        assert!(auth(&[], &["r5e:Node/*"], &[], None).allows_scope(&object_scope("Node", ""), now));
        assert!(a.allows_scope(&tool_scope("repo", "notes/2.4.md").unwrap(), now));
        assert!(!a.allows_scope(&tool_scope("repo", "secrets/key").unwrap(), now));
        for escape in ["notes/../secrets/key", "/notes/x", "notes//x", "notes/./x", "notes/*", "", "notes\\x"] {
            assert!(tool_scope("repo", escape).is_err(), "{escape}");
        }
        assert!(tool_scope("repo", &"a".repeat(1025)).is_err());
    }
    #[test]
    fn each_kind_of_widening_is_named() {
        let parent = auth(&["fs.*"], &["repo:a/*"], &[("tokens", 100)], Some(1000));
        let child = auth(&["deploy"], &["repo:b"], &[("tokens", 101)], Some(2000));
        let w = parent.narrow(&child).unwrap_err();
        let text: Vec<String> = w.iter().map(|w| w.to_string()).collect();
        assert_eq!(w.len(), 4, "{text:?}");
        assert!(text[0].contains("`deploy`"));
        assert!(text[1].contains("`repo:b`"));
        assert!(text[2].contains("101 exceeds the parent's 100"));
        assert!(text[3].contains("later than the parent's"));

        let dropped = auth(&["fs.read"], &[], &[], None);
        let w = parent.narrow(&dropped).unwrap_err();
        assert_eq!(w, vec![Widening::UnlimitedBudget("tokens".into()), Widening::NoExpiry(parent.expires_at.unwrap())]);
    }

    #[test]
    fn a_true_subset_is_granted_unchanged() {
        let parent = auth(&["fs.*", "tool.search"], &["repo:a/*"], &[("tokens", 100)], Some(1000));
        let child = auth(&["fs.read"], &["repo:a/docs"], &[("tokens", 10), ("tool_calls", 3)], Some(999));
        assert_eq!(parent.narrow(&child), Ok(child.clone()));
    }

    #[test]
    fn expiry_and_budgets_are_enforced() {
        let a = auth(&["x"], &[], &[("tool_calls", 2)], Some(100));
        assert!(a.allows_capability("x", Utc.timestamp_opt(99, 0).unwrap()));
        assert!(!a.allows_capability("x", Utc.timestamp_opt(100, 0).unwrap()));
        assert_eq!(a.charge("tool_calls", 1, 1), Ok(2));
        assert!(a.charge("tool_calls", 2, 1).is_err());
        assert_eq!(a.charge("tokens", 5, 5), Ok(10));
    }

    fn pattern() -> impl Strategy<Value = String> {
        prop::sample::select(vec!["*", "a", "a.*", "a.b", "a.b.*", "a.c", "b", "b.*", "b.a"]).prop_map(str::to_string)
    }

    fn authority() -> impl Strategy<Value = Authority> {
        (
            prop::collection::btree_set(pattern(), 0..4),
            prop::collection::btree_set(pattern(), 0..4),
            prop::collection::btree_map(
                prop::sample::select(vec!["tokens", "tool_calls", "cost"]).prop_map(str::to_string),
                0u64..100,
                0..3,
            ),
            prop::option::of(0i64..100),
        )
            .prop_map(|(capabilities, scope, budgets, exp)| Authority {
                capabilities,
                scope,
                budgets,
                expires_at: exp.map(|s| Utc.timestamp_opt(s, 0).unwrap()),
            })
    }

    fn probes() -> Vec<&'static str> {
        vec!["a", "a.b", "a.b.c", "a.c", "a.x", "b", "b.a", "c", "a.*", "b.*", "*"]
    }

    /// Everything `child` allows, `parent` allows too (checked on concrete probes).
    fn allows_nothing_more(child: &Authority, parent: &Authority) -> bool {
        let t = |s| Utc.timestamp_opt(s, 0).unwrap();
        probes().into_iter().all(|p| {
            [0, 50, 99].into_iter().all(|s| {
                (!child.allows_capability(p, t(s)) || parent.allows_capability(p, t(s)))
                    && (!child.allows_scope(p, t(s)) || parent.allows_scope(p, t(s)))
            })
        }) && parent.budgets.iter().all(|(k, l)| child.budgets.get(k).is_some_and(|c| c <= l))
    }

    proptest! {
        /// No sequence of derivations ever widens authority: whatever `narrow` grants along a
        /// chain is a subset of the root, and allows nothing the root does not.
        #[test]
        fn no_derivation_sequence_widens(root in authority(), requests in prop::collection::vec(authority(), 1..6)) {
            let mut current = root.clone();
            for request in &requests {
                match current.narrow(request) {
                    Ok(granted) => {
                        prop_assert!(granted.is_subset_of(&current));
                        prop_assert!(granted.is_subset_of(&root));
                        prop_assert!(allows_nothing_more(&granted, &root));
                        current = granted;
                    }
                    Err(w) => prop_assert!(!w.is_empty()),
                }
            }
        }

        #[test]
        fn intersection_is_below_both(a in authority(), b in authority()) {
            let m = a.intersect(&b);
            prop_assert!(m.is_subset_of(&a), "{:?}", m.widenings_over(&a));
            prop_assert!(m.is_subset_of(&b), "{:?}", m.widenings_over(&b));
        }

        #[test]
        fn subset_is_reflexive_and_transitive(a in authority(), b in authority(), c in authority()) {
            prop_assert!(a.is_subset_of(&a));
            if a.is_subset_of(&b) && b.is_subset_of(&c) {
                prop_assert!(a.is_subset_of(&c));
            }
        }
    }
}
