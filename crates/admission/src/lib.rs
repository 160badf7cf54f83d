//! Admission: every create, update and delete, by a person or an agent, passes four stages in
//! order before anything is written, and fails closed:
//!
//! 1. **schema**: the resource is well formed for its kind (built-in or defined by a
//!    CustomResourceDefinition), including kind-specific rules (a Policy's Cedar parses, an
//!    Artifact's spec never changes);
//! 2. **refs**: every resource it references exists, and any authority it carries is a subset of
//!    the authority of what it derives from (Graph -> Node -> Task -> AgentSession);
//! 3. **policy**: the Cedar policy set in force permits the actor's action on it;
//! 4. **identity**: the actor may act at all: service accounts and sessions stay in their
//!    namespace, and a session never authorises itself (it cannot write sessions, policies,
//!    capabilities or kinds, nor grant more than it holds).
//!
//! Every decision, allow or deny, is an `admission.decision` event naming the actor, the verdict,
//! the stage and reason, and the digest of the policy set. An allowed write commits in the same
//! transaction as its decision; a refused one leaves nothing but its decision. There is no other
//! way to write through this crate, and the HTTP API and in-process callers use the same one.

mod gates;
mod identity;
mod policies;
mod stages;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use domain::chain::EventDraft;
use domain::schema::FieldError;
use domain::{Digest, ObjectKey, Resource};
use policy::PrincipalKind;
use serde_json::{Value, json};
use storage::Store;

pub use gates::REFLECTED;
pub use identity::Identity;
pub use stages::PLANNED_BY;

/// The stage that refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The request itself could not be carried out (a JSON patch whose `test` failed, or that
    /// does not apply), before any resource was formed.
    Request,
    /// Schema validation.
    Schema,
    /// Reference preflight and authority narrowing.
    Refs,
    /// Cedar policy.
    Policy,
    /// The identity gate.
    Identity,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Request => "request",
            Stage::Schema => "schema",
            Stage::Refs => "refs",
            Stage::Policy => "policy",
            Stage::Identity => "identity",
        })
    }
}

/// A write admission decides on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Create a resource.
    Create,
    /// Replace its metadata and spec.
    Update,
    /// Replace its status.
    UpdateStatus,
    /// Delete it.
    Delete,
}

impl Operation {
    fn action(self) -> policy::Action {
        match self {
            Operation::Create => policy::Action::Create,
            Operation::Update => policy::Action::Update,
            Operation::UpdateStatus => policy::Action::UpdateStatus,
            Operation::Delete => policy::Action::Delete,
        }
    }
}

/// Why a request was not carried out.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The resource is not valid (schema or references): fix it and send it again.
    #[error("{stage} stage refused it: {}", list(.errors))]
    Invalid {
        /// Which stage.
        stage: Stage,
        /// Each problem, by field.
        errors: Vec<FieldError>,
    },
    /// The actor may not do this (authority, policy or identity).
    #[error("{stage} stage refused it: {reason}")]
    Forbidden {
        /// Which stage.
        stage: Stage,
        /// Why, naming the policy or the authority that was exceeded.
        reason: String,
    },
    /// Storage failed or refused (not found, conflict, unavailable).
    #[error(transparent)]
    Storage(#[from] storage::Error),
}

fn list(errors: &[FieldError]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// What admission decided about one request, without writing it (for explain and dry runs).
#[derive(Debug, Clone, PartialEq)]
pub struct Review {
    /// Allowed, or the error that would be returned.
    pub outcome: Result<(), Error>,
    /// The policies that decided the policy stage, if it was reached.
    pub policies: Vec<String>,
    /// The digest of the policy set in force.
    pub policy_set: Digest,
}

/// Checks the credential an identity presents (a session's token) against each request: the
/// one path by which a session's authority is decided, whether it asks on its harness's stdio
/// or over the API.
pub trait Credentials: Send + Sync + std::fmt::Debug {
    /// Whether `credential` allows `action` on `target` (using `capability` and touching
    /// `touches` outside r5e, for a tool call).
    fn check(
        &self,
        credential: &str,
        action: &str,
        target: &ObjectKey,
        capability: Option<&str>,
        touches: Option<&str>,
    ) -> Result<Checked, String>;
    /// Whether `credential` is still live, given its session as stored (`None` if it is gone).
    fn live(&self, credential: &str, session: Option<&Resource>) -> Result<(), String>;
}

/// What a credential that allowed a request says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// The session the credential belongs to.
    pub session: ObjectKey,
    /// The request is a read the credential grants outright (its own objects, its inputs).
    pub reads_outright: bool,
}

/// The admission pipeline over a store.
#[derive(Debug)]
pub struct Admission {
    store: Store,
    policies: policies::Cache,
    credentials: Option<Arc<dyn Credentials>>,
    /// One lock per session creating Nodes: its `nodes` budget is counted and the Node written
    /// under it, so that creates racing in this process cannot all pass the count.
    planning: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Admission {
    /// Admission over `store`.
    pub fn new(store: Store) -> Admission {
        Admission { store, policies: policies::Cache::default(), credentials: None, planning: Default::default() }
    }

    /// Check the credentials identities present with `credentials`. Without it, an identity
    /// that presents one is refused.
    pub fn with_credentials(mut self, credentials: Arc<dyn Credentials>) -> Admission {
        self.credentials = Some(credentials);
        self
    }

    /// Whether the credential `who` presents (if any) allows `action` on `target` and is still
    /// live; `Ok(true)` when it grants the read outright. Not recorded: callers record refusals.
    async fn check_credential(
        &self,
        who: &Identity,
        action: &str,
        target: &ObjectKey,
        capability: Option<&str>,
        touches: Option<&str>,
    ) -> Result<bool, Error> {
        let Some(credential) = who.credential.as_deref() else { return Ok(false) };
        let forbid = |reason: String| Error::Forbidden { stage: Stage::Identity, reason };
        let Some(checker) = &self.credentials else {
            return Err(forbid(format!("{} presents a token this server cannot check", who.actor())));
        };
        let checked = checker
            .check(credential, action, target, capability, touches)
            .map_err(|e| forbid(format!("the token of {} does not allow this: {e}", who.actor())))?;
        if who.principal.kind != PrincipalKind::Session
            || who.principal.id != format!("{}/{}", checked.session.namespace, checked.session.name)
        {
            return Err(forbid(format!("the token belongs to {}, not to {}", checked.session, who.actor())));
        }
        let session = match self.store.graph.get(&checked.session).await {
            Ok(s) => Some(s),
            Err(storage::Error::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        checker
            .live(credential, session.as_ref())
            .map_err(|e| forbid(format!("the token of {} no longer acts: {e}", who.actor())))?;
        Ok(checked.reads_outright)
    }

    /// Whether the credential `who` presents (if any) is still live: what ends a watch opened
    /// with a session's token once the session is over.
    pub async fn credential_live(&self, who: &Identity) -> bool {
        let Some(home) = who.namespace() else { return true };
        let own = ObjectKey::new("AgentSession", home, who.principal.id.split_once('/').map_or("", |(_, n)| n));
        self.check_credential(who, policy::Action::Get.as_str(), &own, None, None).await.is_ok()
    }

    async fn record_refusal(&self, who: &Identity, action: &str, target: &ObjectKey, error: Error) -> Error {
        let set = self.policies.current(&self.store).await;
        let record = decision_record(who, action, target, Err(&error), &[], set.digest());
        match self.store.events.append(record).await {
            Ok(_) => error,
            Err(e) => e.into(),
        }
    }

    /// The store, for reads.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Create `object` (a whole resource as JSON).
    pub async fn create(&self, who: &Identity, object: Value) -> Result<Resource, Error> {
        self.write(who, Operation::Create, object, None).await
    }

    /// Replace `object`'s metadata and spec (conditional if it carries a resourceVersion).
    pub async fn update(&self, who: &Identity, object: Value) -> Result<Resource, Error> {
        self.write(who, Operation::Update, object, None).await
    }

    /// Replace `object`'s status.
    pub async fn update_status(&self, who: &Identity, object: Value) -> Result<Resource, Error> {
        self.write(who, Operation::UpdateStatus, object, None).await
    }

    /// Delete the resource at `key` (conditional on `expected` if given).
    pub async fn delete(&self, who: &Identity, key: &ObjectKey, expected: Option<u64>) -> Result<Resource, Error> {
        let current = self.store.graph.get(key).await?;
        self.write(who, Operation::Delete, current.to_value(), expected).await
    }

    /// Decide a request on what it names (the action, kind, namespace and name of `target`; an
    /// empty name for `list` and `watch`) by the identity gate and policy, before anything stored
    /// is read or anything sent is applied. Reads (`get`, `list`, `watch`) must be permitted
    /// outright; a write passes when a permit that applies depends on the object, because its
    /// admission decides it again on the object. A refusal is recorded as a decision, and so is a
    /// break-glass; an ordinary allowed request is not (reads are too frequent to log, and an
    /// allowed write is recorded when it is admitted).
    pub async fn authorize_request(
        &self,
        who: &Identity,
        action: policy::Action,
        target: &ObjectKey,
    ) -> Result<(), Error> {
        match self.check_credential(who, action.as_str(), target, None, None).await {
            Ok(true) if action == policy::Action::Get => return Ok(()),
            Ok(_) => {}
            Err(e) => return Err(self.record_refusal(who, action.as_str(), target, e).await),
        }
        let set = self.policies.current(&self.store).await;
        match stages::authorize_request(&set, who, action, target) {
            Ok(allowed) => {
                if allowed.break_glass.is_some() {
                    let mut record =
                        decision_record(who, action.as_str(), target, Ok(()), &allowed.policies, set.digest());
                    record.data["break_glass"] = json!({"overridden": allowed.break_glass});
                    self.store.events.append(record).await?;
                }
                Ok(())
            }
            Err((error, policies)) => {
                let record = decision_record(who, action.as_str(), target, Err(&error), &policies, set.digest());
                self.store.events.append(record).await?;
                Err(error)
            }
        }
    }

    /// Record a change to people's credentials, issuing or revoking bearer tokens (`event`), as a
    /// write by `who`: decided on `action` (`create` to issue, `delete` to revoke) over `target`
    /// (`Token/<name>`, in the service account's namespace for its tokens) by the identity gate
    /// and policy, and appended with its decision in one transaction. A refusal is recorded too.
    /// Only a permit that decides on the target alone counts (there is no object to decide on),
    /// and a token may carry only groups its issuer belongs to, unless the issuer is an
    /// administrator.
    pub async fn change_credentials(
        &self,
        who: &Identity,
        action: policy::Action,
        target: &ObjectKey,
        groups: &[String],
        event: EventDraft,
    ) -> Result<(), Error> {
        let set = self.policies.current(&self.store).await;
        let forbid = |stage, reason: String| Error::Forbidden { stage, reason };
        let outcome = match stages::authorize_request(&set, who, action, target) {
            Err(refusal) => Err(refusal),
            Ok(a) if a.policies.is_empty() => Err((
                forbid(Stage::Policy, "no policy permits this on the target alone (a token has no object)".into()),
                a.policies,
            )),
            Ok(a) => {
                let foreign: Vec<&str> =
                    groups.iter().filter(|g| !who.principal.groups.contains(g)).map(String::as_str).collect();
                if !stages::is_admin(who) && !foreign.is_empty() {
                    let reason =
                        format!("{} may not issue a token in groups it is not in: {}", who.actor(), foreign.join(", "));
                    Err((forbid(Stage::Identity, reason), a.policies))
                } else {
                    Ok(a.policies)
                }
            }
        };
        match outcome {
            Ok(policies) => {
                let decision = decision_record(who, action.as_str(), target, Ok(()), &policies, set.digest());
                self.store.events.append_all(vec![decision, event]).await?;
                Ok(())
            }
            Err((error, policies)) => {
                let record = decision_record(who, action.as_str(), target, Err(&error), &policies, set.digest());
                self.store.events.append(record).await?;
                Err(error)
            }
        }
    }

    /// Whether `who` may read the resource at `key`, decided as [`Admission::authorize_request`]
    /// decides a `get`, without recording anything (to choose what a response may show).
    pub async fn may_read(&self, who: &Identity, key: &ObjectKey) -> bool {
        self.check_request(who, policy::Action::Get, key).await.is_ok()
    }

    /// The digest of the policy set in force.
    pub async fn policy_set(&self) -> Digest {
        self.policies.current(&self.store).await.digest()
    }

    /// [`Admission::authorize_request`] without recording anything: what it would decide (for
    /// explaining a decision).
    pub async fn check_request(&self, who: &Identity, action: policy::Action, key: &ObjectKey) -> Result<(), Error> {
        if self.check_credential(who, action.as_str(), key, None, None).await? && action == policy::Action::Get {
            return Ok(());
        }
        let set = self.policies.current(&self.store).await;
        stages::authorize_request(&set, who, action, key).map(|_| ()).map_err(|(e, _)| e)
    }

    /// Record that a request by `who` to `action` `target` was refused with `error` before
    /// admission could see a resource (a JSON patch whose `test` failed, say), and return it.
    pub async fn refuse(&self, who: &Identity, action: policy::Action, target: &ObjectKey, error: Error) -> Error {
        self.record_refusal(who, action.as_str(), target, error).await
    }

    /// Policy and identity for `action` (such as calling a Tool) on an existing resource; the
    /// decision, allow or deny, is recorded on the chain like every other.
    pub async fn authorize(
        &self,
        who: &Identity,
        action: policy::Action,
        target: &Resource,
        touches: Option<&str>,
    ) -> Result<(), Error> {
        // A Tool is called with the capability it names.
        let capability = target.spec.get("capability").and_then(Value::as_str).filter(|_| target.kind == "Tool");
        if let Err(e) = self.check_credential(who, action.as_str(), &target.key(), capability, touches).await {
            return Err(self.record_refusal(who, action.as_str(), &target.key(), e).await);
        }
        let set = self.policies.current(&self.store).await;
        let outcome = stages::authorize_on(&set, who, action, target);
        let (result, policies) = match &outcome {
            Ok(p) => (Ok(()), p.clone()),
            Err((e, p)) => (Err(e), p.clone()),
        };
        let record = decision_record(who, action.as_str(), &target.key(), result, &policies, set.digest());
        self.store.events.append(record).await?;
        outcome.map(|_| ()).map_err(|(e, _)| e)
    }

    /// Run every stage for a request and say what would happen, writing nothing.
    pub async fn review(&self, who: &Identity, operation: Operation, object: Value) -> Review {
        let set = self.policies.current(&self.store).await;
        if let Err(e) = self.check_credential(who, operation.action().as_str(), &key_of(&object), None, None).await {
            return Review { outcome: Err(e), policies: Vec::new(), policy_set: set.digest() };
        }
        let (outcome, policies) = match stages::run(&self.store, &set, who, operation, &object).await {
            Ok(admitted) => (Ok(()), admitted.policies),
            Err((e, policies)) => (Err(e), policies),
        };
        Review { outcome, policies, policy_set: set.digest() }
    }

    async fn write(
        &self,
        who: &Identity,
        op: Operation,
        object: Value,
        expected: Option<u64>,
    ) -> Result<Resource, Error> {
        let key = key_of(&object);
        if let Err(e) = self.check_credential(who, op.action().as_str(), &key, None, None).await {
            return Err(self.record_refusal(who, op.action().as_str(), &key, e).await);
        }
        // A session's Node creates, one at a time: the count of its `nodes` budget and the write.
        let planning = (who.principal.kind == PrincipalKind::Session && op == Operation::Create && key.kind == "Node")
            .then(|| {
                let mut locks = self.planning.lock().expect("planning lock");
                locks.retain(|_, l| Arc::strong_count(l) > 1);
                locks.entry(who.principal.id.clone()).or_default().clone()
            });
        let _planning = match &planning {
            Some(lock) => Some(lock.lock().await),
            None => None,
        };
        let set = self.policies.current(&self.store).await;
        match stages::run(&self.store, &set, who, op, &object).await {
            Err((error, policies)) => {
                let record = decision_record(who, op.action().as_str(), &key, Err(&error), &policies, set.digest());
                self.store.events.append(record).await?;
                Err(error)
            }
            Ok(admitted) => {
                let mut record =
                    decision_record(who, op.action().as_str(), &key, Ok(()), &admitted.policies, set.digest());
                if admitted.break_glass.is_some() {
                    record.data["break_glass"] = json!({"overridden": admitted.break_glass});
                }
                let graph = self.store.graph.recording(record);
                let actor = who.actor();
                let resource = admitted.resource;
                let written = match op {
                    Operation::Create => graph.create(resource, &actor).await?,
                    Operation::Update => graph.update(resource, &actor).await?,
                    Operation::UpdateStatus => graph.update_status(resource, &actor).await?,
                    Operation::Delete => graph.delete(&resource.key(), expected, &actor).await?,
                };
                if written.kind == "Policy" {
                    self.policies.invalidate().await;
                }
                // The write removed the resource: a delete without finalizers left, or an update that
                // took away the last finalizer of a resource being deleted.
                let m = &written.metadata;
                let removed = match op {
                    Operation::Delete => m.finalizers.is_empty(),
                    Operation::Update => m.deletion_timestamp.is_some() && m.finalizers.is_empty(),
                    _ => false,
                };
                if removed {
                    self.collect_dependents(&written).await;
                }
                Ok(written)
            }
        }
    }

    /// Owner-reference garbage collection: once `owner` is gone, delete every resource whose
    /// owner references name its uid (and, through their own deletion, theirs). The deletions go
    /// through admission as the garbage collector, an administrator, so they are on the record
    /// and any policy that forbids them still holds; a refusal leaves the dependent in place.
    fn collect_dependents<'a>(
        &'a self,
        owner: &'a Resource,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            let Some(uid) = owner.metadata.uid.as_deref() else { return };
            let query = storage::TraverseQuery {
                direction: storage::Direction::Incoming,
                edges: vec![domain::resource::OWNER_EDGE.to_string()],
                max_depth: 1,
            };
            let dependents = match self.store.graph.traverse(&owner.key(), &query).await {
                Ok(hits) => hits,
                Err(e) => {
                    tracing::warn!(owner = %owner.key(), error = %e, "cannot find dependents to collect");
                    return;
                }
            };
            let collector = Identity::user(GARBAGE_COLLECTOR, &["admins"]);
            for hit in dependents {
                let owned = hit.resource.metadata.owner_references.iter().any(|o| o.uid == uid);
                if !owned || hit.resource.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                let key = hit.resource.key();
                if let Err(e) = self.delete(&collector, &key, None).await {
                    tracing::warn!(dependent = %key, error = %e, "garbage collection left a dependent in place");
                }
            }
        })
    }
}

/// The user name of the garbage collector in the audit log (`user:system:garbage-collector`).
pub const GARBAGE_COLLECTOR: &str = "system:garbage-collector";

/// The key named by a resource's JSON, as well as it can be read (for the decision event of a
/// request too malformed to parse).
fn key_of(object: &Value) -> ObjectKey {
    let s = |p: &str| object.pointer(p).and_then(Value::as_str).unwrap_or_default().to_string();
    ObjectKey { kind: s("/kind"), namespace: s("/metadata/namespace"), name: s("/metadata/name") }
}

/// The `admission.decision` event for a request.
fn decision_record(
    who: &Identity,
    operation: &str,
    key: &ObjectKey,
    outcome: Result<(), &Error>,
    policies: &[String],
    policy_set: Digest,
) -> EventDraft {
    let (verdict, stage, reason) = match outcome {
        Ok(()) => ("allow", Value::Null, None),
        Err(e @ (Error::Invalid { stage, .. } | Error::Forbidden { stage, .. })) => {
            ("deny", json!(stage.to_string()), Some(e.to_string()))
        }
        Err(e) => ("deny", Value::Null, Some(e.to_string())),
    };
    let mut data = json!({
        "verdict": verdict,
        "operation": operation,
        "stage": stage,
        "reason": Value::Null,
        "policies": policies,
        "policy_set": policy_set.to_string(),
    });
    if let Some(reason) = reason {
        // A refusal may quote what was sent; the log keeps a bounded prefix and the digest of
        // the whole reason, so that nobody can grow the append-only log by sending big values.
        if reason.len() > MAX_RECORDED_REASON {
            let mut end = MAX_RECORDED_REASON;
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            data["reason"] = json!(format!("{}...", &reason[..end]));
            data["reason_digest"] = json!(Digest::of(reason.as_bytes()).to_string());
            data["reason_bytes"] = json!(reason.len());
        } else {
            data["reason"] = json!(reason);
        }
    }
    EventDraft { type_: "admission.decision".into(), actor: who.actor(), subject: bounded_subject(key), data }
}

/// The longest refusal reason a decision records whole (bytes); longer ones are cut there.
pub const MAX_RECORDED_REASON: usize = 1024;

/// The subject of a decision: the key, cut to a bounded length (a malformed request can name
/// anything).
fn bounded_subject(key: &ObjectKey) -> String {
    domain::json::shorten(&key.to_string(), MAX_RECORDED_REASON)
}
