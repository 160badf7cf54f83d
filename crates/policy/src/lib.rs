//! Policy: Cedar policies, held in `Policy` resources and evaluated in-process.
//!
//! A [`PolicySet`] is built from the Cedar text of every enabled `Policy` resource plus one
//! built-in rule, `permit(principal in r5e::Group::"admins", action, resource);`, so that with no
//! Policy at all only administrators may act, and any `forbid` a team writes binds
//! administrators too. [`PolicySet::evaluate`] answers a request with a [`Decision`] that names
//! the policies that decided it and the digest of the whole set.
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

use std::collections::BTreeMap;
use std::str::FromStr;

use cedar_policy::{Authorizer, Decision as CedarDecision, PolicyId};
use domain::Digest;

pub use entities::{Action, Principal, PrincipalKind, Target};

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

/// The policies in force: every enabled Policy resource plus the built-in administrators rule.
#[derive(Debug, Clone)]
pub struct PolicySet {
    set: cedar_policy::PolicySet,
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
        let mut set = cedar_policy::PolicySet::new();
        let admins = cedar_policy::Policy::parse(Some(PolicyId::new(ADMINS_RULE)), ADMINS_TEXT)
            .expect("the built-in rule parses");
        set.add(admins).expect("the built-in rule has a unique id");
        let mut digest_input = vec![(ADMINS_RULE.to_string(), ADMINS_TEXT.to_string())];
        for (name, text) in sources {
            for policy in parse_source(name, text)? {
                set.add(policy).map_err(|e| Error::Invalid { source_name: name.clone(), message: e.to_string() })?;
            }
            digest_input.push((name.clone(), text.clone()));
        }
        let digest = domain::canonical::digest(&digest_input).expect("strings canonicalise");
        Ok(PolicySet { set, digest, sources: sources.len() })
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
            policy_set: self.digest,
        };
        let (request, entities) = match entities::request(principal, action, target) {
            Ok(r) => r,
            Err(e) => return deny(e),
        };
        let response = Authorizer::new().is_authorized(&request, &self.set, &entities);
        let mut determining: Vec<String> = response.diagnostics().reason().map(ToString::to_string).collect();
        determining.sort();
        let errors = response.diagnostics().errors().map(ToString::to_string).collect();
        Decision { allowed: response.decision() == CedarDecision::Allow, determining, errors, policy_set: self.digest }
    }
}

#[cfg(test)]
mod tests;
