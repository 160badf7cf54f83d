//! The Graph Storage contract: `create`, `get`, `update`, `list`, `traverse`, `query_by_labels`,
//! plus `update_status` and `delete`. The handle owns the Kubernetes metadata rules (uid,
//! generation, immutable fields, status only through its own write, finalizers) so that every
//! backend behaves the same; backends only read rows and commit entries.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{SecondsFormat, Utc};
use domain::chain::EventDraft;
use domain::{ObjectKey, Resource, Selector};
use serde_json::json;

use crate::sequencer::Sequencer;
use crate::write::{Entry, Mutation, Precondition};
use crate::{Error, Result};

/// Largest page a list returns, whatever limit is asked for.
pub const MAX_PAGE: usize = 5000;
/// How often an unconditional update retries after losing a race.
const UPDATE_RETRIES: usize = 16;

/// The read side of a graph backend (writes go through [`crate::LogBackend::commit`]).
///
/// Contract: reads see only committed data; `list` returns its items and the chain head as of
/// one consistent snapshot, ordered by (kind, namespace, name) and starting strictly after
/// `query.after`; `traverse` follows edges as stored at write time (owner references and spec
/// references, by name), returns each reachable resource once at its smallest depth (never the
/// start itself), and stops at `max_depth`.
#[async_trait]
pub trait GraphBackend: Send + Sync + 'static {
    /// The resource with this key, if any.
    async fn get(&self, key: &ObjectKey) -> Result<Option<Resource>>;
    /// One page of resources matching `query`, and the chain head seq of the same snapshot.
    async fn list(&self, query: &ListQuery) -> Result<(Vec<Resource>, u64)>;
    /// Resources reachable from `start` (see the trait docs).
    async fn traverse(&self, start: &ObjectKey, query: &TraverseQuery) -> Result<Vec<Hit>>;
}

/// What to list. Unset fields do not filter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListQuery {
    /// Only this kind.
    pub kind: Option<String>,
    /// Only this namespace.
    pub namespace: Option<String>,
    /// Only resources whose labels match.
    pub selector: Selector,
    /// Start strictly after this key (keyset pagination).
    pub after: Option<ObjectKey>,
    /// At most this many (capped at [`MAX_PAGE`]).
    pub limit: Option<usize>,
}

/// One page of a list.
#[derive(Clone, Debug, PartialEq)]
pub struct Page {
    /// The resources, ordered by (kind, namespace, name).
    pub items: Vec<Resource>,
    /// Pass this back as `continue` for the next page; `None` on the last page.
    pub continue_token: Option<String>,
    /// The chain head when the page was read: watch from here to see every later change.
    pub resource_version: u64,
}

/// Which way to follow edges.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Direction {
    /// From a resource to what it references (a Task to its Node, an object to its owner).
    #[default]
    Outgoing,
    /// From a resource to what references it (a Graph to its Nodes).
    Incoming,
    /// Both ways.
    Both,
}

/// How to traverse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraverseQuery {
    /// Which way.
    pub direction: Direction,
    /// Only these edge types (`owner`, `spec.graphRef`, ...); empty means all.
    pub edges: Vec<String>,
    /// How many hops at most (at least 1).
    pub max_depth: u32,
}

impl Default for TraverseQuery {
    fn default() -> Self {
        TraverseQuery { direction: Direction::Outgoing, edges: Vec::new(), max_depth: 1 }
    }
}

/// A resource reached by a traversal.
#[derive(Clone, Debug, PartialEq)]
pub struct Hit {
    /// The resource.
    pub resource: Resource,
    /// Hops from the start (1 = adjacent).
    pub depth: u32,
}

/// The Graph Storage handle.
#[derive(Clone)]
pub struct Graph {
    backend: Arc<dyn GraphBackend>,
    sequencer: Sequencer,
    /// An event to commit in the same transaction as, and just before, the next write.
    record: Option<EventDraft>,
}

impl std::fmt::Debug for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Graph").finish_non_exhaustive()
    }
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn draft(type_: &str, actor: &str, key: &ObjectKey) -> EventDraft {
    EventDraft { type_: type_.into(), actor: actor.into(), subject: key.to_string(), data: json!({}) }
}

impl Graph {
    pub(crate) fn new(backend: Arc<dyn GraphBackend>, sequencer: Sequencer) -> Self {
        Graph { backend, sequencer, record: None }
    }

    /// A handle whose next write commits `event` first, in the same transaction (used by
    /// admission to record its decision with the write it allowed). The event is committed even
    /// if the write then fails its precondition, and only once, however often the write retries.
    pub fn recording(&self, event: EventDraft) -> Graph {
        Graph { record: Some(event), ..self.clone() }
    }

    /// Commit `entry`, preceded by the recorded event if it has not been committed yet.
    async fn commit(&self, record: &mut Option<EventDraft>, entry: Entry) -> Result<Result<crate::Committed>> {
        let mut entries: Vec<Entry> = record.take().map(|draft| Entry { draft, mutation: None }).into_iter().collect();
        entries.push(entry);
        Ok(self.sequencer.commit(entries).await?.pop().expect("one result per entry"))
    }

    async fn commit_one(&self, entry: Entry) -> Result<Resource> {
        let key = entry.mutation.as_ref().map(Mutation::key);
        let committed = self.commit(&mut self.record.clone(), entry).await??;
        committed.object.ok_or_else(|| Error::NotFound(key.map(|k| k.to_string()).unwrap_or_default()))
    }

    /// Store a new resource. The server sets uid, creationTimestamp, generation 1 and
    /// resourceVersion, and drops any status (status is written only by
    /// [`Graph::update_status`]); a client-supplied resourceVersion or deletionTimestamp is
    /// refused.
    /// Fails with [`Error::AlreadyExists`] if the key is taken.
    pub async fn create(&self, mut object: Resource, actor: &str) -> Result<Resource> {
        let m = &mut object.metadata;
        if m.resource_version.is_some() {
            return Err(Error::Invalid("metadata.resourceVersion must not be set on create".into()));
        }
        if m.deletion_timestamp.is_some() {
            return Err(Error::Invalid("metadata.deletionTimestamp must not be set on create".into()));
        }
        if m.name.is_empty() {
            return Err(Error::Invalid("metadata.name is required".into()));
        }
        m.uid = Some(uuid::Uuid::now_v7().to_string());
        m.creation_timestamp = Some(now());
        m.generation = Some(1);
        object.status = serde_json::Value::Null;
        let key = object.key();
        self.commit_one(Entry {
            draft: draft("resource.created", actor, &key),
            mutation: Some(Mutation::Put { object, precondition: Precondition::Absent }),
        })
        .await
    }

    /// The resource with this key, or [`Error::NotFound`].
    pub async fn get(&self, key: &ObjectKey) -> Result<Resource> {
        self.backend.get(key).await?.ok_or_else(|| Error::NotFound(key.to_string()))
    }

    /// Replace a resource's metadata and spec; its status is kept as stored (use
    /// [`Graph::update_status`]). If `object` carries a resourceVersion it must be current, else
    /// [`Error::Conflict`]; without one the update applies to whatever is current. `generation`
    /// goes up by one when the spec changes. Removing the last finalizer of a resource that is
    /// being deleted removes it.
    pub async fn update(&self, object: Resource, actor: &str) -> Result<Resource> {
        self.write(object, actor, false).await
    }

    /// Replace a resource's status only; metadata and spec are kept as stored.
    pub async fn update_status(&self, object: Resource, actor: &str) -> Result<Resource> {
        self.write(object, actor, true).await
    }

    async fn write(&self, incoming: Resource, actor: &str, status_only: bool) -> Result<Resource> {
        let key = incoming.key();
        let expected = match &incoming.metadata.resource_version {
            None => None,
            Some(rv) => Some(rv.parse::<u64>().map_err(|_| {
                Error::Invalid(format!("metadata.resourceVersion `{rv}` is not a resourceVersion this server issued"))
            })?),
        };
        let mut record = self.record.clone();
        for _ in 0..UPDATE_RETRIES {
            let current = self.get(&key).await?;
            let current_rv = current.resource_version().unwrap_or_default();
            // The backend checks the caller's version (or the one just read) atomically.
            let version = Precondition::Version(expected.unwrap_or(current_rv));
            let next = merge(&current, incoming.clone(), status_only)?;
            if next == current {
                crate::write::check_precondition(&key, version, Some(current_rv))?;
                return Ok(current);
            }
            let finished = next.metadata.deletion_timestamp.is_some() && next.metadata.finalizers.is_empty();
            let entry = if finished {
                Entry {
                    draft: draft("resource.deleted", actor, &key),
                    mutation: Some(Mutation::Remove { last: next.clone(), precondition: version }),
                }
            } else {
                Entry {
                    draft: draft("resource.updated", actor, &key),
                    mutation: Some(Mutation::Put { object: next, precondition: version }),
                }
            };
            match self.commit(&mut record, entry).await? {
                Ok(c) => return Ok(c.object.expect("a mutation returns its object")),
                // Lost a race with another writer: an unconditional update reads again.
                Err(Error::Conflict(_)) if expected.is_none() => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::Conflict(format!("{key} is changing too fast to update; retry")))
    }

    /// Delete a resource. With finalizers pending, only `deletionTimestamp` is set (the resource
    /// goes when the last finalizer is removed); otherwise it is removed. `expected` is an
    /// optional resourceVersion precondition. Returns the resource's final state.
    pub async fn delete(&self, key: &ObjectKey, expected: Option<u64>, actor: &str) -> Result<Resource> {
        let mut record = self.record.clone();
        for _ in 0..UPDATE_RETRIES {
            let current = self.get(key).await?;
            let rv = current.resource_version().unwrap_or_default();
            let version = Precondition::Version(expected.unwrap_or(rv));
            let entry = if current.metadata.finalizers.is_empty() {
                Entry {
                    draft: draft("resource.deleted", actor, key),
                    mutation: Some(Mutation::Remove { last: current.clone(), precondition: version }),
                }
            } else if current.metadata.deletion_timestamp.is_some() {
                crate::write::check_precondition(key, version, Some(rv))?;
                return Ok(current);
            } else {
                let mut marked = current.clone();
                marked.metadata.deletion_timestamp = Some(now());
                Entry {
                    draft: draft("resource.updated", actor, key),
                    mutation: Some(Mutation::Put { object: marked, precondition: version }),
                }
            };
            match self.commit(&mut record, entry).await? {
                Ok(c) => return Ok(c.object.expect("a mutation returns its object")),
                Err(Error::Conflict(_)) if expected.is_none() => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::Conflict(format!("{key} is changing too fast to delete; retry")))
    }

    /// One page of resources. `continue_token` is the token from the previous page.
    pub async fn list(&self, mut query: ListQuery, continue_token: Option<&str>) -> Result<Page> {
        if let Some(token) = continue_token {
            query.after = Some(decode_token(token)?);
        }
        let limit = query.limit.unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE);
        query.limit = Some(limit + 1);
        let (mut items, resource_version) = self.backend.list(&query).await?;
        let continue_token = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|last| encode_token(&last.key()))
        } else {
            None
        };
        Ok(Page { items, continue_token, resource_version })
    }

    /// Every resource (of `kind`, in `namespace`, when given) whose labels match `selector`.
    pub async fn query_by_labels(
        &self,
        selector: &Selector,
        kind: Option<&str>,
        namespace: Option<&str>,
    ) -> Result<Vec<Resource>> {
        let mut query = ListQuery {
            kind: kind.map(str::to_string),
            namespace: namespace.map(str::to_string),
            selector: selector.clone(),
            ..ListQuery::default()
        };
        let mut out = Vec::new();
        loop {
            let page = self.list(query.clone(), None).await?;
            out.extend(page.items);
            match page.continue_token {
                Some(t) => query.after = Some(decode_token(&t)?),
                None => return Ok(out),
            }
        }
    }

    /// Resources reachable from `start` along typed edges, each once at its smallest depth.
    pub async fn traverse(&self, start: &ObjectKey, query: &TraverseQuery) -> Result<Vec<Hit>> {
        if query.max_depth == 0 {
            return Err(Error::Invalid("traverse depth must be at least 1".into()));
        }
        self.backend.traverse(start, query).await
    }
}

/// Apply the metadata rules to an incoming write against the stored resource.
fn merge(current: &Resource, incoming: Resource, status_only: bool) -> Result<Resource> {
    let cm = &current.metadata;
    let im = &incoming.metadata;
    if let Some(uid) = &im.uid
        && Some(uid) != cm.uid.as_ref()
    {
        return Err(Error::Invalid(format!("metadata.uid is immutable (stored {})", cm.uid.as_deref().unwrap_or(""))));
    }
    if incoming.api_version != current.api_version {
        return Err(Error::Invalid(format!("apiVersion is immutable (stored {})", current.api_version)));
    }
    let mut next = current.clone();
    if status_only {
        next.status = incoming.status;
        return Ok(next);
    }
    next.metadata.labels = incoming.metadata.labels;
    next.metadata.annotations = incoming.metadata.annotations;
    next.metadata.owner_references = incoming.metadata.owner_references;
    next.metadata.finalizers = incoming.metadata.finalizers;
    if cm.deletion_timestamp.is_some() && next.metadata.finalizers.iter().any(|f| !cm.finalizers.contains(f)) {
        return Err(Error::Invalid("finalizers cannot be added to a resource that is being deleted".into()));
    }
    if incoming.spec != current.spec {
        next.spec = incoming.spec;
        next.metadata.generation = Some(cm.generation.unwrap_or(0) + 1);
    }
    Ok(next)
}

/// Read the body of a stored resource row whose key columns are `key`. It must parse, and it
/// must hold the resource with that very key: a row whose key was changed outside r5e would
/// otherwise hide a resource from reads by kind or namespace, or show it twice. Either failure
/// is [`Error::Corrupt`]. Backends read every row through this.
pub fn parse_row(key: &ObjectKey, body: &str) -> Result<Resource> {
    let resource: Resource = serde_json::from_str(body)
        .map_err(|e| Error::Corrupt(format!("the stored resource {key} cannot be parsed: {e}")))?;
    if resource.key() != *key {
        return Err(Error::Corrupt(format!(
            "the stored row of {key} holds {}: the row was changed outside r5e",
            resource.key()
        )));
    }
    Ok(resource)
}

fn encode_token(key: &ObjectKey) -> String {
    hex::encode(serde_json::to_vec(key).expect("keys serialise"))
}

fn decode_token(token: &str) -> Result<ObjectKey> {
    hex::decode(token).ok().and_then(|b| serde_json::from_slice(&b).ok()).ok_or_else(|| {
        Error::Invalid(format!("continue token `{token}` is not valid: start the list again without it"))
    })
}
