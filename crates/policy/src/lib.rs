//! Policy: Cedar policies, held in `Policy` resources and evaluated in-process.
//!
//! A [`PolicySet`] is built from the Cedar text of every enabled `Policy` resource plus one
//! built-in rule, `permit(principal in r5e::Group::"admins", action, resource);`, so that with no
//! Policy at all only administrators may act, and any `forbid` a team writes binds
//! administrators too. [`PolicySet::evaluate`] answers a request with a [`Decision`] that names
//! the policies that decided it and the digest of the whole set.
//!
//! **A Policy governs only its own namespace.** The statements of a Policy in namespace `a` take
//! part only in decisions about targets in `a`; the statements of Policies in
//! [`CLUSTER_NAMESPACE`] (which only administrators may write) take part in every decision,
//! including those about cluster-scoped kinds and lists across all namespaces.
//!
//! The entity model (documented in `docs/api.md`):
//! - principals `r5e::User::"alice"`, `r5e::ServiceAccount::"ns/name"`, `r5e::Session::"ns/name"`,
//!   members of `r5e::Group::"<group>"`;
//! - actions `r5e::Action::"create" | "update" | "update_status" | "delete" | "get" | "list" |
//!   "watch" | "call_tool"`;
//! - resources `r5e::<Kind>::"<namespace>/<name>"` with attributes `kind`, `namespace`, `name`,
//!   `labels` (a record), `spec` (the spec as a record) and, for resources that belong to a
//!   Graph, `graph` (the Graph entity, with its own `labels` and `spec`).

mod entities;

pub mod grants;

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;

use cedar_policy::{Authorizer, Decision as CedarDecision, Effect, PolicyId};
use domain::Digest;

pub use entities::{Action, Principal, PrincipalKind, Target};
pub use grants::{Grant, grants};

/// The namespace whose Policies apply everywhere. Only administrators may write in it.
pub const CLUSTER_NAMESPACE: &str = "r5e-system";

/// The group whose members the built-in rule permits.
pub const ADMINS_GROUP: &str = "admins";

/// The id of the built-in rule that lets administrators act.
pub const ADMINS_RULE: &str = "r5e:admins";
const ADMINS_TEXT: &str = r#"permit(principal in r5e::Group::"admins", action, resource);"#;

/// Why policy text cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The Cedar text does not parse (or uses templates, which r5e does not link).
    #[error("policy {source_name} is not valid Cedar: {message}")]
    Invalid {
        /// The Policy resource it came from (`namespace/name`).
        source_name: String,
        /// The parser's message.
        message: String,
    },
}

/// The policies in force: every enabled Policy resource plus the built-in administrators rule,
/// grouped by the namespace they govern.
#[derive(Debug, Clone)]
pub struct PolicySet {
    /// The built-in rule and the cluster-wide Policies: what decides outside any team namespace.
    global: cedar_policy::PolicySet,
    /// For each namespace with Policies of its own: `global` plus those.
    scoped: HashMap<String, cedar_policy::PolicySet>,
    digest: Digest,
    sources: usize,
}

/// The outcome of evaluating one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request is allowed.
    pub allowed: bool,
    /// The policies that decided it: the permits that allowed it, or the forbids that denied it
    /// (empty when nothing permitted it).
    pub determining: Vec<String>,
    /// Policies that could not be evaluated for this request (they are skipped, as Cedar does).
    pub errors: Vec<String>,
    /// Denied, but a `permit` that applies to this request could not be evaluated (it reads an
    /// attribute the target lacks): a decision on what a request names alone, before the object
    /// is known, cannot rule the request out.
    pub conditional: bool,
    /// The digest of the policy set in force.
    pub policy_set: Digest,
}

impl Decision {
    /// A sentence that says why.
    pub fn explanation(&self) -> String {
        match (self.allowed, self.determining.is_empty()) {
            (true, _) => format!("permitted by {}", self.determining.join(", ")),
            (false, false) => format!("forbidden by {}", self.determining.join(", ")),
            (false, true) => {
                "no policy permits it (nothing is allowed unless a policy permits it; with no Policy resources only members of group `admins` may act)".into()
            }
        }
    }
}

/// Check one Policy resource's Cedar text without building a set (for admission of Policies).
pub fn check(source_name: &str, cedar: &str) -> Result<usize, Error> {
    parse_source(source_name, cedar).map(|p| p.len())
}

fn parse_source(source_name: &str, cedar: &str) -> Result<Vec<cedar_policy::Policy>, Error> {
    let invalid = |message: String| Error::Invalid { source_name: source_name.to_string(), message };
    let parsed = cedar_policy::PolicySet::from_str(cedar).map_err(|e| invalid(e.to_string()))?;
    if parsed.templates().next().is_some() {
        return Err(invalid("templates (policies with ?principal or ?resource) are not supported".into()));
    }
    // Ids are "policy0", "policy1", ... in source order; name them after the resource.
    let mut policies: Vec<&cedar_policy::Policy> = parsed.policies().collect();
    policies.sort_by_key(|p| p.id().to_string().trim_start_matches("policy").parse::<usize>().unwrap_or(usize::MAX));
    Ok(policies.into_iter().enumerate().map(|(i, p)| p.new_id(PolicyId::new(format!("{source_name}#{i}")))).collect())
}

impl PolicySet {
    /// The set with only the built-in administrators rule (no Policy resources).
    pub fn admins_only() -> PolicySet {
        PolicySet::from_sources(&BTreeMap::new()).expect("the built-in rule parses")
    }

    /// Build the set from Policy resources' Cedar text, keyed by `namespace/name`.
    pub fn from_sources(sources: &BTreeMap<String, String>) -> Result<PolicySet, Error> {
        let mut global = cedar_policy::PolicySet::new();
        let admins = cedar_policy::Policy::parse(Some(PolicyId::new(ADMINS_RULE)), ADMINS_TEXT)
            .expect("the built-in rule parses");
        global.add(admins).expect("the built-in rule has a unique id");
        let mut digest_input = vec![(ADMINS_RULE.to_string(), ADMINS_TEXT.to_string())];
        let mut by_namespace: BTreeMap<&str, Vec<cedar_policy::Policy>> = BTreeMap::new();
        for (name, text) in sources {
            let namespace = name.split_once('/').map_or("", |(ns, _)| ns);
            let parsed = parse_source(name, text)?;
            if namespace == CLUSTER_NAMESPACE {
                for policy in parsed {
                    global
                        .add(policy)
                        .map_err(|e| Error::Invalid { source_name: name.clone(), message: e.to_string() })?;
                }
            } else {
                by_namespace.entry(namespace).or_default().extend(parsed);
            }
            digest_input.push((name.clone(), text.clone()));
        }
        let mut scoped = HashMap::new();
        for (namespace, policies) in by_namespace {
            let mut set = global.clone();
            for policy in policies {
                let source_name = policy.id().to_string();
                set.add(policy).map_err(|e| Error::Invalid { source_name, message: e.to_string() })?;
            }
            scoped.insert(namespace.to_string(), set);
        }
        let digest = domain::canonical::digest(&digest_input).expect("strings canonicalise");
        Ok(PolicySet { global, scoped, digest, sources: sources.len() })
    }

    /// The digest of the set: SHA-256 over the canonical JSON of every `[source, text]` pair,
    /// sorted by source, the built-in rule first.
    pub fn digest(&self) -> Digest {
        self.digest
    }

    /// How many Policy resources contributed.
    pub fn sources(&self) -> usize {
        self.sources
    }

    /// Decide whether `principal` may perform `action` on `target`.
    pub fn evaluate(&self, principal: &Principal, action: Action, target: &Target) -> Decision {
        let deny = |error: String| Decision {
            allowed: false,
            determining: Vec::new(),
            errors: vec![error],
            conditional: false,
            policy_set: self.digest,
        };
        let (request, entities) = match entities::request(principal, action, target) {
            Ok(r) => r,
            Err(e) => return deny(e),
        };
        let set = self.scoped.get(&target.namespace).unwrap_or(&self.global);
        let response = Authorizer::new().is_authorized(&request, set, &entities);
        let mut determining: Vec<String> = response.diagnostics().reason().map(ToString::to_string).collect();
        determining.sort();
        let allowed = response.decision() == CedarDecision::Allow;
        let permit_failed = response.diagnostics().errors().any(|e| {
            let cedar_policy::AuthorizationError::PolicyEvaluationError(e) = e;
            set.policy(e.policy_id()).is_some_and(|p| p.effect() == Effect::Permit)
        });
        let errors = response.diagnostics().errors().map(ToString::to_string).collect();
        let conditional = !allowed && determining.is_empty() && permit_failed;
        Decision { allowed, determining, errors, conditional, policy_set: self.digest }
    }
}

#[cfg(test)]
mod tests;
