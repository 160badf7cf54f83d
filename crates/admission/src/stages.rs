//! The four stages, in order. Each returns the first reason to refuse; none writes anything.

use std::collections::HashMap;

use domain::authority::Widening;
use domain::kinds::{self, crd_kind_info};
use domain::schema::{self, FieldError};
use domain::{Authority, ObjectKey, Resource};
use policy::{PrincipalKind, Target};
use serde_json::Value;
use storage::Store;

use crate::policies::Built;
use crate::{Error, Identity, Operation, Stage};

/// A request that passed every stage.
pub(crate) struct Admitted {
    pub resource: Resource,
    pub policies: Vec<String>,
    /// Set when an administrator wrote a Policy that the policies in force forbid: the forbids
    /// it overrode (see [`break_glass`]).
    pub break_glass: Option<Vec<String>>,
}

/// The name a decision gives when an administrator's break-glass allowed it.
pub(crate) const BREAK_GLASS: &str = "r5e:break-glass";

/// Whether `who` is an administrator.
pub(crate) fn is_admin(who: &Identity) -> bool {
    who.principal.kind == PrincipalKind::User && who.principal.groups.iter().any(|g| g == policy::ADMINS_GROUP)
}

/// Break-glass: an administrator may always read and write Policies, whatever they forbid, so a
/// Policy can never lock the administrators out of the policies themselves. A decision it
/// allowed names the forbids it overrode and is recorded like every other.
fn break_glass(who: &Identity, kind: &str, decision: &policy::Decision) -> Option<Vec<String>> {
    (!decision.allowed && kind == "Policy" && is_admin(who)).then(|| decision.determining.clone())
}

/// A refusal, with the policies that decided it (if the policy stage was reached).
type Refusal = (Error, Vec<String>);

/// The resources one request reads, each read from the store once however many stages need it.
pub(crate) struct Reads<'a> {
    store: &'a Store,
    seen: HashMap<ObjectKey, Option<Resource>>,
}

impl Reads<'_> {
    /// The resource at `key`, or `None` if there is none.
    pub(crate) async fn get(&mut self, key: &ObjectKey) -> Result<Option<Resource>, Error> {
        if let Some(r) = self.seen.get(key) {
            return Ok(r.clone());
        }
        let r = match self.store.graph.get(key).await {
            Ok(r) => Some(r),
            Err(storage::Error::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        self.seen.insert(key.clone(), r.clone());
        Ok(r)
    }
}

/// Run schema -> refs -> policy -> identity.
pub(crate) async fn run(
    store: &Store,
    set: &Built,
    who: &Identity,
    op: Operation,
    object: &Value,
) -> Result<Admitted, Refusal> {
    if let Some(reason) = &set.broken {
        return Err((Error::Forbidden { stage: Stage::Policy, reason: reason.clone() }, Vec::new()));
    }
    let resource = schema_stage(store, op, object).await.map_err(|e| (e, Vec::new()))?;
    let mut reads = Reads { store, seen: HashMap::new() };
    if matches!(op, Operation::Create | Operation::Update) {
        foreign_references(set, who, &resource).map_err(|e| (e, Vec::new()))?;
        refs_stage(&mut reads, &resource).await.map_err(|e| (e, Vec::new()))?;
    }
    crate::gates::check(&mut reads, op, &resource).await.map_err(|e| (e, Vec::new()))?;
    let target = target(&mut reads, &resource).await.map_err(|e| (e, Vec::new()))?;
    let decision = set.set.evaluate(&who.principal, op.action(), &target);
    let glass = break_glass(who, &resource.kind, &decision);
    if !decision.allowed && glass.is_none() {
        return Err((Error::Forbidden { stage: Stage::Policy, reason: decision.explanation() }, decision.determining));
    }
    let policies = if glass.is_some() { vec![BREAK_GLASS.to_string()] } else { decision.determining };
    if resource.kind == "Policy" && matches!(op, Operation::Create | Operation::Update) && !is_admin(who) {
        holds_what_it_grants(store, set, who, &resource).await.map_err(|e| (e, policies.clone()))?;
    }
    identity_stage(who, op, &resource).map_err(|e| (e, policies.clone()))?;
    planned_nodes(store, who, op, &resource).await.map_err(|e| (e, policies.clone()))?;
    Ok(Admitted { resource, policies, break_glass: glass })
}

/// The label naming the session that planned a Node.
pub const PLANNED_BY: &str = "r5e.ai/planned-by";

/// A Node a session creates (by the harness protocol or by the API) names the session in its
/// `r5e.ai/planned-by` label, and counts against the session's `nodes` budget: the Nodes already
/// carrying its name are counted here, so both ways in spend the same budget.
async fn planned_nodes(store: &Store, who: &Identity, op: Operation, resource: &Resource) -> Result<(), Error> {
    if who.principal.kind != PrincipalKind::Session || op != Operation::Create || resource.kind != "Node" {
        return Ok(());
    }
    let forbid = |reason: String| Err(Error::Forbidden { stage: Stage::Identity, reason });
    let name = who.principal.id.split_once('/').map_or(who.principal.id.as_str(), |(_, n)| n);
    if resource.metadata.labels.get(PLANNED_BY).map(String::as_str) != Some(name) {
        return forbid(format!("a Node that {} creates must carry the label {PLANNED_BY}={name}", who.actor()));
    }
    let Some(limit) = who.authority.as_ref().and_then(|a| a.budgets.get("nodes")) else { return Ok(()) };
    let selector: domain::Selector = format!("{PLANNED_BY}={name}").parse().map_err(|e| Error::Forbidden {
        stage: Stage::Identity,
        reason: format!("the session's name cannot select its Nodes: {e}"),
    })?;
    let planned = store.graph.query_by_labels(&selector, Some("Node"), resource.metadata.namespace.as_deref()).await?;
    if planned.len() as u64 >= *limit {
        return forbid(format!(
            "{} reached its budget: budget `nodes` of {limit} is spent ({} used, 1 more asked)",
            who.actor(),
            planned.len()
        ));
    }
    Ok(())
}

/// A Policy written by someone other than an administrator may grant only what its writer holds:
/// for every action and kind one of its `permit`s could allow, the writer must be permitted that
/// action on that kind in the Policy's namespace by the policies in force (decided on what a
/// request names, as reads are). Nobody authorises themselves through policy.
async fn holds_what_it_grants(store: &Store, set: &Built, who: &Identity, policy: &Resource) -> Result<(), Error> {
    let namespace = policy.metadata.namespace.clone().unwrap_or_default();
    let source = format!("{namespace}/{}", policy.metadata.name);
    let cedar = policy.spec.get("cedar").and_then(Value::as_str).unwrap_or_default();
    let grants = policy::grants(&source, cedar).map_err(|e| invalid(Stage::Schema, "spec.cedar", e.to_string()))?;
    let mut all_kinds: Vec<String> = kinds::builtin().iter().map(|k| k.kind.to_string()).collect();
    if grants.iter().any(|g| g.kind.is_none()) {
        all_kinds.extend(custom_kinds(store).await?.into_iter().map(|c| c.kind));
    }
    for grant in grants {
        let actions = grant.actions.clone().unwrap_or_else(|| policy::grants::ALL_ACTIONS.to_vec());
        let kinds = grant.kind.clone().map_or_else(|| all_kinds.clone(), |k| vec![k]);
        let name = grant.name.as_deref().and_then(|n| n.split_once('/')).map_or("", |(_, n)| n).to_string();
        for kind in &kinds {
            for action in &actions {
                let target = Target {
                    kind: kind.clone(),
                    namespace: namespace.clone(),
                    name: name.clone(),
                    labels: Default::default(),
                    spec: Value::Null,
                    graph: None,
                };
                if !set.set.evaluate(&who.principal, *action, &target).allowed {
                    return Err(Error::Forbidden {
                        stage: Stage::Policy,
                        reason: format!(
                            "{} may not grant `{}` on {kind} in namespace `{namespace}` ({}): a Policy may grant only what its writer holds",
                            who.actor(),
                            action.as_str(),
                            grant.statement
                        ),
                    });
                }
            }
        }
    }
    Ok(())
}

fn invalid(stage: Stage, path: &str, message: impl Into<String>) -> Error {
    Error::Invalid { stage, errors: vec![FieldError::new(path, message)] }
}

/// Stage 1: the resource is well formed for its kind.
async fn schema_stage(store: &Store, op: Operation, object: &Value) -> Result<Resource, Error> {
    let parse = |v: &Value| -> Result<Resource, Error> {
        serde_json::from_value(v.clone()).map_err(|e| invalid(Stage::Schema, "", format!("not a resource: {e}")))
    };
    if op == Operation::Delete {
        return parse(object);
    }
    if let Some(path) = domain::json::inexact_integer(object) {
        return Err(invalid(
            Stage::Schema,
            &path,
            "is a number beyond 2^53, which the audit log's canonical JSON cannot record exactly: send it as a string",
        ));
    }
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or_default();
    let api_version = object.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
    match kinds::find(kind).filter(|k| k.kind == kind) {
        Some(info) => {
            if api_version != info.api_version() {
                return Err(invalid(Stage::Schema, "apiVersion", format!("{kind} needs `{}`", info.api_version())));
            }
            schema::validate(info, object).map_err(|errors| Error::Invalid { stage: Stage::Schema, errors })?;
        }
        None => {
            let custom =
                custom_kinds(store).await?.into_iter().find(|c| c.kind == kind && c.api_version() == api_version);
            let Some(custom) = custom else {
                let known: Vec<&str> = kinds::builtin().iter().map(|k| k.kind).collect();
                return Err(invalid(
                    Stage::Schema,
                    "kind",
                    format!(
                        "unknown kind `{kind}` in `{api_version}`: the built-in kinds are {}, and no CustomResourceDefinition defines it",
                        known.join(", ")
                    ),
                ));
            };
            custom.validate(object).map_err(|errors| Error::Invalid { stage: Stage::Schema, errors })?;
        }
    }
    let resource = parse(object)?;
    match resource.kind.as_str() {
        "Policy" => {
            let source =
                format!("{}/{}", resource.metadata.namespace.as_deref().unwrap_or_default(), resource.metadata.name);
            let cedar = resource.spec.get("cedar").and_then(Value::as_str).unwrap_or_default();
            policy::check(&source, cedar).map_err(|e| invalid(Stage::Schema, "spec.cedar", e.to_string()))?;
        }
        "CustomResourceDefinition" => {
            crd_kind_info(&resource).map_err(|e| invalid(Stage::Schema, "spec", e))?;
        }
        _ => {}
    }
    if op == Operation::Update && resource.kind == "Artifact" {
        let current = store.graph.get(&resource.key()).await?;
        if current.spec != resource.spec {
            return Err(invalid(
                Stage::Schema,
                "spec",
                "an Artifact's spec never changes: store the new content as a new Artifact",
            ));
        }
    }
    Ok(resource)
}

async fn custom_kinds(store: &Store) -> Result<Vec<kinds::CustomKind>, Error> {
    let crds = store.graph.query_by_labels(&Default::default(), Some("CustomResourceDefinition"), None).await?;
    Ok(crds.iter().filter_map(|c| crd_kind_info(c).ok()).collect())
}

/// Edges that say what a resource applies to rather than what it depends on: they are kept for
/// traversal but need not exist yet (a Guideline may name a Workflow that names it back).
const APPLIES_TO_EDGES: &[&str] = &["spec.appliesTo.workflows", "spec.tools"];

/// A reference into another namespace is followed only for an actor who may read its target
/// there: otherwise the refs stage would tell whether a hidden object exists, and authority
/// narrowing what authority it holds. The answer is the same whether or not it exists.
fn foreign_references(set: &Built, who: &Identity, resource: &Resource) -> Result<(), Error> {
    let namespace = resource.metadata.namespace.clone().unwrap_or_default();
    for r in storage::references(resource) {
        if r.target.namespace == namespace || authorize_request(set, who, policy::Action::Get, &r.target).is_ok() {
            continue;
        }
        return Err(Error::Forbidden {
            stage: Stage::Refs,
            reason: format!(
                "{} refers to {}, in another namespace, which {} may not read",
                r.edge,
                r.target,
                who.actor()
            ),
        });
    }
    Ok(())
}

/// Stage 2: every referenced resource exists, owners match their uid, and authority only narrows.
async fn refs_stage(reads: &mut Reads<'_>, resource: &Resource) -> Result<(), Error> {
    let mut errors = Vec::new();
    let namespace = resource.metadata.namespace.clone().unwrap_or_default();
    for (i, owner) in resource.metadata.owner_references.iter().enumerate() {
        let key = ObjectKey::new(&owner.kind, &namespace, &owner.name);
        match reads.get(&key).await? {
            Some(o) if o.metadata.uid.as_deref() == Some(owner.uid.as_str()) => {}
            Some(_) => errors.push(FieldError::new(
                format!("metadata.ownerReferences[{i}].uid"),
                format!("{key} exists with another uid"),
            )),
            None => {
                errors.push(FieldError::new(format!("metadata.ownerReferences[{i}]"), format!("{key} does not exist")))
            }
        }
    }
    let must_exist = |edge: &str| edge != domain::resource::OWNER_EDGE && !APPLIES_TO_EDGES.contains(&edge);
    for r in storage::references(resource).into_iter().filter(|r| must_exist(&r.edge)) {
        if reads.get(&r.target).await?.is_none() {
            errors.push(FieldError::new(&r.edge, format!("{} does not exist", r.target)));
        }
    }
    if !errors.is_empty() {
        return Err(Error::Invalid { stage: Stage::Refs, errors });
    }
    for (parent, parent_authority) in parent_authorities(reads, resource).await? {
        let Some(own) = authority_of(resource)? else { continue };
        let widenings = own.widenings_over(&parent_authority);
        if !widenings.is_empty() {
            return Err(Error::Forbidden {
                stage: Stage::Refs,
                reason: format!("spec.authority exceeds the authority of {parent}: {}", describe(&widenings)),
            });
        }
    }
    Ok(())
}

fn describe(widenings: &[Widening]) -> String {
    widenings.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// `spec.authority`, if the resource has one.
fn authority_of(resource: &Resource) -> Result<Option<Authority>, Error> {
    match resource.spec.get("authority") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => serde_json::from_value(v.clone())
            .map(Some)
            .map_err(|e| invalid(Stage::Refs, "spec.authority", format!("not an authority: {e}"))),
    }
}

/// The authorities `resource` derives from: a Node from its Graph, a Task from its Node (or,
/// when the Node inherits, its Graph), a session from its Task and its parent session.
async fn parent_authorities(reads: &mut Reads<'_>, resource: &Resource) -> Result<Vec<(ObjectKey, Authority)>, Error> {
    let namespace = resource.metadata.namespace.clone().unwrap_or_default();
    let reference = |field: &str, kind: &str| -> Option<ObjectKey> {
        let r = resource.spec.get(field)?;
        let name = r.get("name")?.as_str()?;
        let ns = r.get("namespace").and_then(Value::as_str).unwrap_or(&namespace);
        Some(ObjectKey::new(kind, ns, name))
    };
    let mut chain: Vec<Vec<ObjectKey>> = Vec::new();
    match resource.kind.as_str() {
        "Node" => chain.push(reference("graphRef", "Graph").into_iter().collect()),
        // The first of these that states an authority is the parent.
        "Task" => chain.push(reference("nodeRef", "Node").into_iter().chain(reference("graphRef", "Graph")).collect()),
        "AgentSession" => {
            chain.push(reference("taskRef", "Task").into_iter().collect());
            chain.push(reference("parentSessionRef", "AgentSession").into_iter().collect());
        }
        _ => {}
    }
    let mut out = Vec::new();
    for candidates in chain {
        for key in candidates {
            // The refs stage has checked that every parent exists.
            let Some(parent) = reads.get(&key).await? else { continue };
            if let Some(a) = authority_of(&parent)? {
                out.push((key, a));
                break;
            }
        }
    }
    Ok(out)
}

/// The policy target for a resource, with its Graph when it names one.
async fn target(reads: &mut Reads<'_>, resource: &Resource) -> Result<Target, Error> {
    let graph = match resource.spec.get("graphRef").and_then(|r| r.get("name")).and_then(Value::as_str) {
        Some(name) if resource.kind != "Graph" => {
            let ns = resource.metadata.namespace.clone().unwrap_or_default();
            reads.get(&ObjectKey::new("Graph", &ns, name)).await?.map(|g| Box::new(plain_target(&g)))
        }
        _ => None,
    };
    Ok(Target { graph, ..plain_target(resource) })
}

fn plain_target(r: &Resource) -> Target {
    Target {
        kind: r.kind.clone(),
        namespace: r.metadata.namespace.clone().unwrap_or_default(),
        name: r.metadata.name.clone(),
        labels: r.metadata.labels.clone(),
        spec: r.spec.clone(),
        graph: None,
    }
}

/// What a decision on the request alone allowed.
pub(crate) struct Allowed {
    /// The policies that decided it (none when it was left for the object to decide).
    pub policies: Vec<String>,
    /// The forbids an administrator's break-glass overrode, if it was used.
    pub break_glass: Option<Vec<String>>,
}

/// Identity and policy for a request, decided on what it names (action, kind, namespace, name)
/// before any stored object is read: a read (`get`, `list`, `watch`; a collection when the name
/// is empty) must be permitted outright; a write may also pass when a permit that applies needs
/// the object's attributes, since admission decides it again on the object.
pub(crate) fn authorize_request(
    set: &Built,
    who: &Identity,
    action: policy::Action,
    key: &ObjectKey,
) -> Result<Allowed, Refusal> {
    if let Some(reason) = &set.broken {
        return Err((Error::Forbidden { stage: Stage::Policy, reason: reason.clone() }, Vec::new()));
    }
    if let Some(home) = who.namespace()
        && key.namespace != home
    {
        let reason = format!("{} may act only in namespace `{home}`", who.actor());
        return Err((Error::Forbidden { stage: Stage::Identity, reason }, Vec::new()));
    }
    let writes = !matches!(action, policy::Action::Get | policy::Action::List | policy::Action::Watch);
    if writes && key.namespace == policy::CLUSTER_NAMESPACE && !is_admin(who) {
        return Err((Error::Forbidden { stage: Stage::Identity, reason: cluster_namespace_reason(who) }, Vec::new()));
    }
    let target = Target {
        kind: key.kind.clone(),
        namespace: key.namespace.clone(),
        name: key.name.clone(),
        labels: Default::default(),
        spec: Value::Null,
        graph: None,
    };
    let decision = set.set.evaluate(&who.principal, action, &target);
    if decision.allowed || (writes && decision.conditional) {
        return Ok(Allowed { policies: decision.determining, break_glass: None });
    }
    match break_glass(who, &key.kind, &decision) {
        Some(overridden) => Ok(Allowed { policies: vec![BREAK_GLASS.to_string()], break_glass: Some(overridden) }),
        None => Err((Error::Forbidden { stage: Stage::Policy, reason: decision.explanation() }, decision.determining)),
    }
}

fn cluster_namespace_reason(who: &Identity) -> String {
    format!(
        "{} may not write in namespace `{}`: its Policies apply everywhere, so only members of group `{}` write there",
        who.actor(),
        policy::CLUSTER_NAMESPACE,
        policy::ADMINS_GROUP
    )
}

/// Policy and the identity gate for `action` on an existing resource that is not a write (a
/// session calling a Tool).
pub(crate) fn authorize_on(
    set: &Built,
    who: &Identity,
    action: policy::Action,
    resource: &Resource,
) -> Result<Vec<String>, Refusal> {
    if let Some(reason) = &set.broken {
        return Err((Error::Forbidden { stage: Stage::Policy, reason: reason.clone() }, Vec::new()));
    }
    let decision = set.set.evaluate(&who.principal, action, &plain_target(resource));
    if !decision.allowed {
        return Err((Error::Forbidden { stage: Stage::Policy, reason: decision.explanation() }, decision.determining));
    }
    if let Some(home) = who.namespace()
        && resource.metadata.namespace.as_deref().unwrap_or_default() != home
    {
        let reason = format!("{} may act only in namespace `{home}`", who.actor());
        return Err((Error::Forbidden { stage: Stage::Identity, reason }, decision.determining));
    }
    Ok(decision.determining)
}

/// Kinds a session may never write: writing them would let it authorise itself.
const SELF_AUTHORISING: &[&str] = &["AgentSession", "Policy", "Capability", "CustomResourceDefinition"];

/// Stage 4: the actor may act here at all, and never authorises itself.
fn identity_stage(who: &Identity, op: Operation, resource: &Resource) -> Result<(), Error> {
    let forbid = |reason: String| Err(Error::Forbidden { stage: Stage::Identity, reason });
    let actor = who.actor();
    if resource.metadata.namespace.as_deref() == Some(policy::CLUSTER_NAMESPACE) && !is_admin(who) {
        return forbid(cluster_namespace_reason(who));
    }
    if let Some(home) = who.namespace() {
        let ns = resource.metadata.namespace.as_deref().unwrap_or_default();
        if ns != home {
            return forbid(format!("{actor} may act only in namespace `{home}`, not on {}", resource.key()));
        }
    }
    if who.principal.kind == PrincipalKind::Session {
        if SELF_AUTHORISING.contains(&resource.kind.as_str()) {
            return forbid(format!("{actor} may not write a {}: a session never authorises itself", resource.kind));
        }
        // A session writes only what its scope covers (its token says the same, level by level;
        // this holds for a session that acts without one too).
        let touched = domain::authority::object_scope(&resource.kind, &resource.metadata.name);
        if let Some(held) = &who.authority
            && !held.allows_scope(&touched, chrono::Utc::now())
        {
            return forbid(format!("{actor} may not write {}: `{touched}` is outside its scope", resource.key()));
        }
        let states_authority = authority_of(resource)?.is_some();
        if matches!(op, Operation::Create)
            && matches!(resource.kind.as_str(), "Graph" | "Node" | "Task")
            && !states_authority
        {
            return forbid(format!(
                "{actor} must state spec.authority on a {} it creates: it may delegate only what it holds",
                resource.kind
            ));
        }
        if matches!(op, Operation::Create | Operation::Update)
            && let (Some(granted), Some(held)) = (authority_of(resource)?, &who.authority)
        {
            let widenings = granted.widenings_over(held);
            if !widenings.is_empty() {
                return forbid(format!("{actor} may not grant more than it holds: {}", describe(&widenings)));
            }
        }
    }
    Ok(())
}
