//! The unit of durable writing: an [`Entry`] is one event, optionally with the graph mutation it
//! records. Backends commit entries in batches; [`prepare`] is the one place that turns an entry
//! into sealed bytes and a stored object, so chain linking is written once for every backend.

use std::collections::HashMap;

use chrono::Utc;
use domain::chain::{self, ChainHead, Event, EventDraft, SealedEvent};
use domain::{ObjectKey, Reference, Resource};
use serde_json::json;

use crate::{Error, Result};

/// What must hold of the stored resource for a mutation to apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precondition {
    /// No resource with this key exists (create).
    Absent,
    /// The resource exists and its resourceVersion is exactly this (compare-and-set).
    Version(u64),
}

/// A change to the graph.
#[derive(Clone, Debug, PartialEq)]
pub enum Mutation {
    /// Store `object` under its key, replacing what is there.
    Put {
        /// The object; its resourceVersion is set to the event's seq.
        object: Resource,
        /// Checked against the stored resource first.
        precondition: Precondition,
    },
    /// Remove the resource; `last` is its final state, recorded in the event.
    Remove {
        /// The final state.
        last: Resource,
        /// Checked against the stored resource first.
        precondition: Precondition,
    },
}

impl Mutation {
    /// The key the mutation applies to.
    pub fn key(&self) -> ObjectKey {
        match self {
            Mutation::Put { object, .. } => object.key(),
            Mutation::Remove { last, .. } => last.key(),
        }
    }

    /// The precondition to check.
    pub fn precondition(&self) -> Precondition {
        match self {
            Mutation::Put { precondition, .. } | Mutation::Remove { precondition, .. } => *precondition,
        }
    }
}

/// One event to append, with the graph mutation it records (if any).
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// The event. For a mutation, `data.object` is set to the stored object by [`prepare`].
    pub draft: EventDraft,
    /// The graph change committed atomically with the event.
    pub mutation: Option<Mutation>,
}

/// The outcome of one committed entry.
#[derive(Clone, Debug, PartialEq)]
pub struct Committed {
    /// The event as sealed on the chain.
    pub event: Event,
    /// For a mutation, the object as the event records it: stored (`Put`) or final (`Remove`),
    /// with resourceVersion = the event's seq.
    pub object: Option<Resource>,
}

/// What a backend writes for one entry, computed by [`prepare`].
#[derive(Clone, Debug)]
pub struct Prepared {
    /// The sealed event: write `sealed.bytes` at `sealed.event.seq`.
    pub sealed: SealedEvent,
    /// The graph change to write with it.
    pub write: Option<Write>,
}

impl Prepared {
    /// What `commit` returns for this entry once written.
    pub fn committed(&self) -> Committed {
        let object = self.write.as_ref().map(|w| match w {
            Write::Put { object, .. } | Write::Remove { object } => object.clone(),
        });
        Committed { event: self.sealed.event.clone(), object }
    }
}

/// A graph change ready to write.
#[derive(Clone, Debug)]
pub enum Write {
    /// Store `object` (resourceVersion already set) with its edges, replacing the row for its key.
    Put {
        /// The object to store.
        object: Resource,
        /// Its typed edges, to store for traversal.
        references: Vec<Reference>,
    },
    /// Delete the row for `object`'s key (and its labels and edges).
    Remove {
        /// The final state, as recorded in the event.
        object: Resource,
    },
}

/// Check `precondition` against the stored resourceVersion of `key` (`None`: absent).
pub fn check_precondition(key: &ObjectKey, precondition: Precondition, stored: Option<u64>) -> Result<()> {
    match (precondition, stored) {
        (Precondition::Absent, None) => Ok(()),
        (Precondition::Absent, Some(_)) => Err(Error::AlreadyExists(key.to_string())),
        (Precondition::Version(_), None) => Err(Error::NotFound(key.to_string())),
        (Precondition::Version(want), Some(have)) if want == have => Ok(()),
        (Precondition::Version(want), Some(have)) => Err(Error::Conflict(format!(
            "{key} was modified: resourceVersion is {have}, not {want}; read it again and retry"
        ))),
    }
}

/// Seal `entry` as the event after `head` and compute what to store. Backends call this inside
/// their write transaction after checking the precondition, then advance their head.
pub fn prepare(head: &ChainHead, entry: Entry) -> Result<Prepared> {
    let seq = head.seq + 1;
    let mut draft = entry.draft;
    let write = match entry.mutation {
        None => None,
        Some(Mutation::Put { mut object, .. }) => {
            object.metadata.resource_version = Some(seq.to_string());
            set_object(&mut draft, &object);
            let references = references(&object);
            Some(Write::Put { object, references })
        }
        Some(Mutation::Remove { last: mut object, .. }) => {
            object.metadata.resource_version = Some(seq.to_string());
            set_object(&mut draft, &object);
            Some(Write::Remove { object })
        }
    };
    let sealed = chain::seal(head, draft, Utc::now()).map_err(|e| Error::Invalid(e.to_string()))?;
    Ok(Prepared { sealed, write })
}

fn set_object(draft: &mut EventDraft, object: &Resource) {
    if !draft.data.is_object() {
        draft.data = json!({});
    }
    draft.data["object"] = object.to_value();
}

/// Every typed edge out of `object`: owner references, plus the spec references of built-in kinds.
pub fn references(object: &Resource) -> Vec<Reference> {
    match domain::kinds::find(&object.kind).filter(|k| k.kind == object.kind) {
        Some(info) => (info.references)(object),
        None => domain::resource::owner_references(object),
    }
}

/// The outcome of planning a batch: what to write, in order, and what to answer each entry.
#[derive(Debug)]
pub struct Plan {
    /// One result per entry of the batch, in order.
    pub results: Vec<Result<Committed>>,
    /// The entries that passed their preconditions, sealed, in seq order: write these.
    pub prepared: Vec<Prepared>,
    /// The head after the last prepared entry.
    pub head: ChainHead,
}

/// Plan a batch inside a backend's write transaction: check each entry's precondition against
/// `versions` (the stored resourceVersion of every key the batch mutates, `None` if absent, as
/// read under the write lock), seal the ones that pass onto the chain after `head`, and track
/// the versions the batch itself changes so that later entries see earlier ones.
pub fn plan(mut head: ChainHead, batch: Vec<Entry>, mut versions: HashMap<ObjectKey, Option<u64>>) -> Plan {
    let mut results = Vec::with_capacity(batch.len());
    let mut prepared = Vec::with_capacity(batch.len());
    for entry in batch {
        let key = entry.mutation.as_ref().map(Mutation::key);
        if let (Some(m), Some(key)) = (&entry.mutation, &key) {
            let stored = versions.get(key).copied().flatten();
            if let Err(e) = check_precondition(key, m.precondition(), stored) {
                results.push(Err(e));
                continue;
            }
        }
        match prepare(&head, entry) {
            Ok(p) => {
                let event = &p.sealed.event;
                head = ChainHead { seq: event.seq, hash: event.hash };
                if let Some(key) = key {
                    let now = match &p.write {
                        Some(Write::Put { .. }) => Some(event.seq),
                        _ => None,
                    };
                    versions.insert(key, now);
                }
                results.push(Ok(p.committed()));
                prepared.push(p);
            }
            Err(e) => results.push(Err(e)),
        }
    }
    Plan { results, prepared, head }
}

/// The keys a batch mutates (the keys [`plan`] needs versions for).
pub fn mutated_keys(batch: &[Entry]) -> Vec<ObjectKey> {
    let mut keys: Vec<ObjectKey> = batch.iter().filter_map(|e| e.mutation.as_ref().map(Mutation::key)).collect();
    keys.sort();
    keys.dedup();
    keys
}
