//! Whether stored resources are what the event log says they are: the pure half of the state
//! check (storage reads the rows and events and feeds them here).
//!
//! Every write to a resource is one `resource.created`, `resource.updated` or `resource.deleted`
//! event whose `data.object` is the whole resource as written (status included: a status write
//! is a `resource.updated` like any other), with `metadata.resourceVersion` set to the event's
//! `seq`. So the log vouches for a stored resource exactly when the last such event about its
//! key is not a deletion and its object equals the stored resource. Two checks follow from this:
//!
//! - [`check_written`]: a stored resource against the one event its resourceVersion names (a
//!   point read; cheap enough to run over every resource at startup);
//! - [`Replay`]: the whole log replayed into "which event last wrote each key" and every stored
//!   resource compared with that (catches rows that were removed, resurrected or rolled back
//!   too).
//!
//! Objects are compared as JSON values after reading both through [`Resource`], with numbers
//! equal when their values are (as RFC 8785 would write them), so `1.0` stored and `1` recorded
//! are the same; [`differences`] names the field paths that differ.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Number, Value};

use crate::chain::Event;
use crate::digest::Digest;
use crate::resource::{ObjectKey, Resource};

/// The type of the event that creates a resource.
pub const CREATED: &str = "resource.created";
/// The type of the event that changes a resource (metadata, spec or status).
pub const UPDATED: &str = "resource.updated";
/// The type of the event that removes a resource; its object is the final state.
pub const DELETED: &str = "resource.deleted";
/// Every event type that writes a resource.
pub const WRITE_TYPES: [&str; 3] = [CREATED, UPDATED, DELETED];

/// How many differing paths a [`Mismatch`] names in its message before it only counts them.
const PATHS_SHOWN: usize = 12;

/// One way in which stored state departs from the event log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mismatch {
    /// Stored, but not written by the log: no event leaves a resource with this key in place, or
    /// the event its resourceVersion names did not write it.
    Unwritten {
        /// The stored resource's key.
        key: ObjectKey,
        /// Its stored resourceVersion, if it has a readable one.
        resource_version: Option<u64>,
        /// What the log says instead.
        reason: String,
    },
    /// The log leaves the resource in place (event `seq` wrote it last), but nothing is stored.
    Missing {
        /// The key.
        key: ObjectKey,
        /// The event that last wrote it.
        seq: u64,
    },
    /// Stored, but not as event `seq` (the one that last wrote it) records it.
    Differs {
        /// The key.
        key: ObjectKey,
        /// The event it is compared with.
        seq: u64,
        /// The field paths that differ (`spec.cedar`, `metadata.labels.env`, `spec.steps[1]`).
        paths: Vec<String>,
    },
    /// Stored as the event its resourceVersion names wrote it, but a later event (`later`)
    /// changed or removed it since: the row was rolled back, or a removed one was put back.
    Stale {
        /// The key.
        key: ObjectKey,
        /// The stored resourceVersion.
        resource_version: u64,
        /// The first later event that wrote the key.
        later: u64,
    },
    /// Fewer resources are stored than the log leaves in place: `count` rows were removed. (A
    /// count is what a check without a replay of the log can know; the replay names them.)
    MissingRows {
        /// How many are missing.
        count: u64,
        /// The head at which the log was counted.
        head: u64,
    },
    /// A resource event that does not record a write the way r5e records them.
    Event {
        /// Its seq.
        seq: u64,
        /// What is wrong with it.
        reason: String,
    },
}

impl Mismatch {
    /// The resource it is about, if it is about one.
    pub fn key(&self) -> Option<&ObjectKey> {
        match self {
            Mismatch::Unwritten { key, .. }
            | Mismatch::Missing { key, .. }
            | Mismatch::Differs { key, .. }
            | Mismatch::Stale { key, .. } => Some(key),
            Mismatch::MissingRows { .. } | Mismatch::Event { .. } => None,
        }
    }
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::Unwritten { key, resource_version: Some(rv), reason } => {
                write!(f, "{key} is stored (resourceVersion {rv}) but the event log did not write it: {reason}")
            }
            Mismatch::Unwritten { key, resource_version: None, reason } => {
                write!(f, "{key} is stored without a valid resourceVersion, so no event wrote it: {reason}")
            }
            Mismatch::Missing { key, seq } => {
                write!(f, "{key} is missing: event {seq} wrote it and no later event removed it")
            }
            Mismatch::Differs { key, seq, paths } => {
                write!(f, "{key} differs from event {seq}, which wrote it last, at ")?;
                let shown: Vec<&str> = paths.iter().take(PATHS_SHOWN).map(String::as_str).collect();
                write!(f, "{}", shown.join(", "))?;
                if paths.len() > PATHS_SHOWN {
                    write!(f, " and {} more", paths.len() - PATHS_SHOWN)?;
                }
                Ok(())
            }
            Mismatch::Stale { key, resource_version, later } => write!(
                f,
                "{key} is stored as event {resource_version} wrote it, but event {later} changed or removed it since"
            ),
            Mismatch::MissingRows { count, head } => write!(
                f,
                "{count} resource(s) that the log leaves in place at seq {head} are not stored: their rows were \
                 removed outside r5e (the full state check, `verify --state`, names them)"
            ),
            Mismatch::Event { seq, reason } => write!(f, "event {seq} does not record a resource write: {reason}"),
        }
    }
}

/// The field paths at which `stored` differs from `recorded`, in a stable order: members are
/// joined with `.` (or written `["a.b/c"]` when they are not plain names), array items as `[i]`.
/// An array of a different length is one difference at its own path. Numbers are equal when
/// their values as doubles are, as in RFC 8785.
pub fn differences(recorded: &Value, stored: &Value) -> Vec<String> {
    let mut out = Vec::new();
    diff(recorded, stored, &mut String::new(), &mut out);
    out
}

fn diff(a: &Value, b: &Value, path: &mut String, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))).collect();
            keys.sort();
            for key in keys {
                let len = path.len();
                push_member(path, key);
                match (x.get(key), y.get(key)) {
                    (Some(a), Some(b)) => diff(a, b, path, out),
                    _ => out.push(path.clone()),
                }
                path.truncate(len);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (a, b)) in x.iter().zip(y).enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                diff(a, b, path, out);
                path.truncate(len);
            }
        }
        (Value::Number(x), Value::Number(y)) if same_number(x, y) => {}
        _ if a == b => {}
        _ => out.push(if path.is_empty() { "(the whole object)".to_string() } else { path.clone() }),
    }
}

fn push_member(path: &mut String, key: &str) {
    let plain = key.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain {
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(key);
    } else {
        path.push('[');
        path.push_str(&Value::String(key.to_string()).to_string());
        path.push(']');
    }
}

/// Whether two JSON numbers have the same value as RFC 8785 sees them: as IEEE 754 doubles. (The
/// chain records integers beyond 2^53 rounded to a double, so that is all it can vouch for.)
fn same_number(a: &Number, b: &Number) -> bool {
    a.as_f64() == b.as_f64()
}

/// Compare a stored resource with `recorded`, the `data.object` of event `seq` that (last) wrote
/// its key. `None` when they are the same resource.
pub fn compare(stored: &Resource, seq: u64, recorded: &Value) -> Option<Mismatch> {
    let key = stored.key();
    let stored = stored.to_value();
    // The usual case: the same value, numbers spelled alike (an event records the object as
    // `Resource::to_value` gave it).
    if stored == *recorded {
        return None;
    }
    let recorded = match serde_json::from_value::<Resource>(recorded.clone()) {
        Ok(r) => r.to_value(),
        Err(e) => return Some(Mismatch::Event { seq, reason: format!("its object is not a resource: {e}") }),
    };
    let paths = differences(&recorded, &stored);
    (!paths.is_empty()).then_some(Mismatch::Differs { key, seq, paths })
}

/// Check a stored resource against `event`, the event its resourceVersion names (`None` if the
/// log has no such event): it must be a create or update of this very key whose object equals
/// the stored resource. This does not see later events; a caller that can should also look for
/// a later write of the key (a [`Mismatch::Stale`]).
pub fn check_written(stored: &Resource, event: Option<&Event>) -> Option<Mismatch> {
    let key = stored.key();
    let Some(rv) = stored.resource_version() else {
        return Some(Mismatch::Unwritten {
            key,
            resource_version: None,
            reason: format!("`{}` is not a seq", stored.metadata.resource_version.as_deref().unwrap_or("")),
        });
    };
    let unwritten = |reason: String| Some(Mismatch::Unwritten { key: key.clone(), resource_version: Some(rv), reason });
    let Some(event) = event else {
        return unwritten(format!("the log has no event {rv}"));
    };
    if event.seq != rv {
        return unwritten(format!("the event read for it is event {}, not {rv}", event.seq));
    }
    if event.type_ != CREATED && event.type_ != UPDATED {
        return unwritten(format!("event {rv} is a `{}` about {}", event.type_, event.subject));
    }
    let Some(object) = event.data.get("object") else {
        return Some(Mismatch::Event { seq: rv, reason: "it has no `data.object`".into() });
    };
    let written = object_key(object);
    if written.as_ref() != Some(&key) || event.subject != key.to_string() {
        return unwritten(format!("event {rv} wrote {}", event.subject));
    }
    compare(stored, rv, object)
}

fn object_key(object: &Value) -> Option<ObjectKey> {
    let s = |p: &str| object.pointer(p).and_then(Value::as_str);
    Some(ObjectKey {
        kind: s("/kind")?.to_string(),
        namespace: s("/metadata/namespace").unwrap_or_default().to_string(),
        name: s("/metadata/name")?.to_string(),
    })
}

/// A resource write, read from an event's canonical bytes without building the object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    /// The event's seq (= the resourceVersion it gave the resource).
    pub seq: u64,
    /// The resource written.
    pub key: ObjectKey,
    /// `resource.deleted`: the key is gone after this event.
    pub removed: bool,
    /// The SHA-256 of the object's canonical bytes as the event records them.
    pub object: Digest,
}

#[derive(Deserialize)]
struct EventHead<'a> {
    seq: u64,
    #[serde(rename = "type", borrow)]
    type_: Cow<'a, str>,
    #[serde(borrow)]
    subject: Cow<'a, str>,
    #[serde(borrow)]
    data: &'a RawValue,
}

#[derive(Deserialize)]
struct DataHead<'a> {
    #[serde(borrow)]
    object: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ObjectHead<'a> {
    #[serde(borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    metadata: MetaHead<'a>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MetaHead<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow, default)]
    namespace: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    resource_version: Option<Cow<'a, str>>,
}

impl Write {
    /// Read the resource write recorded by the stored bytes of event `seq`, which must already have been
    /// verified as canonical (so that the object's bytes are its canonical form). `Ok(None)` for an
    /// event that writes no resource; an error for a resource event that does not record a write
    /// the way r5e does (its object missing, of another key than its subject, or with a
    /// resourceVersion other than its seq).
    pub fn parse(seq: u64, bytes: &[u8]) -> Result<Option<Write>, Mismatch> {
        let bad = |reason: String| Mismatch::Event { seq, reason };
        let head: EventHead = serde_json::from_slice(bytes).map_err(|e| bad(format!("it cannot be read: {e}")))?;
        if head.seq != seq {
            return Err(bad(format!("it is stored at seq {seq} but says seq {}", head.seq)));
        }
        if !WRITE_TYPES.contains(&head.type_.as_ref()) {
            return Ok(None);
        }
        let data: DataHead =
            serde_json::from_str(head.data.get()).map_err(|e| bad(format!("its data cannot be read: {e}")))?;
        let raw = data.object.ok_or_else(|| bad("it has no `data.object`".into()))?;
        let object: ObjectHead =
            serde_json::from_str(raw.get()).map_err(|e| bad(format!("its object is not a resource: {e}")))?;
        let key = ObjectKey {
            kind: object.kind.into_owned(),
            namespace: object.metadata.namespace.map(Cow::into_owned).unwrap_or_default(),
            name: object.metadata.name.into_owned(),
        };
        if key.to_string() != head.subject {
            return Err(bad(format!("its subject is {} but its object is {key}", head.subject)));
        }
        if object.metadata.resource_version.as_deref() != Some(seq.to_string().as_str()) {
            return Err(bad(format!(
                "its object's resourceVersion is {:?}, not its seq",
                object.metadata.resource_version.as_deref().unwrap_or("")
            )));
        }
        Ok(Some(Write { seq, key, removed: head.type_ == DELETED, object: Digest::of(raw.get().as_bytes()) }))
    }
}

/// The last write of a key that the log leaves in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Live {
    seq: u64,
    object: Digest,
    /// A stored resource with this key has been compared since it was last created.
    seen: bool,
}

/// What the stored resource is to be compared with, by [`Replay::stored`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expected {
    /// It is exactly what the log says (same canonical bytes as the object of its last write).
    Same,
    /// Its canonical bytes differ from the object of event `seq`, the key's last write: read that
    /// event and [`compare`] them to find the paths (or to find that only number spellings differ).
    Compare(u64),
}

/// The log replayed into the resources it leaves in place: for each live key, the event that
/// last wrote it. Memory is proportional to the live resources, not to the length of the log.
///
/// Feed it every resource write in seq order ([`Replay::apply`]), then each stored resource
/// ([`Replay::stored`]); what was never stored is [`Replay::unseen`]. The replay may be fed more
/// events between stored resources, as long as each stored resource is compared with the replay
/// at the head it was read at.
#[derive(Clone, Debug, Default)]
pub struct Replay {
    live: HashMap<ObjectKey, Live>,
}

impl Replay {
    /// An empty replay (an empty log leaves nothing in place).
    pub fn new() -> Self {
        Replay::default()
    }

    /// Apply the next write of the log.
    pub fn apply(&mut self, write: Write) {
        if write.removed {
            self.live.remove(&write.key);
            return;
        }
        let seen = self.live.get(&write.key).is_some_and(|l| l.seen);
        self.live.insert(write.key, Live { seq: write.seq, object: write.object, seen });
    }

    /// How many resources the log leaves in place.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// Whether the log leaves no resource in place.
    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// The event that last wrote `key`, if the log leaves it in place.
    pub fn last_write(&self, key: &ObjectKey) -> Option<u64> {
        self.live.get(key).map(|l| l.seq)
    }

    /// A stored resource, read when the replay was at the same head: what to compare it with, or
    /// why the log does not vouch for it.
    pub fn stored(&mut self, stored: &Resource) -> Result<Expected, Mismatch> {
        let key = stored.key();
        match self.live.get_mut(&key) {
            None => Err(Mismatch::Unwritten {
                key,
                resource_version: stored.resource_version(),
                reason: "no event leaves it in place (it was never written, or it was deleted)".into(),
            }),
            Some(live) => {
                live.seen = true;
                // A stored value that has no canonical form (it cannot happen for parsed JSON) is
                // compared field by field like any other difference.
                let digest = crate::canonical::digest(&stored.to_value()).ok();
                Ok(if digest == Some(live.object) { Expected::Same } else { Expected::Compare(live.seq) })
            }
        }
    }

    /// The live keys no stored resource was given for since they were last created, with the
    /// event that last wrote each, in key order.
    pub fn unseen(&self) -> Vec<(ObjectKey, u64)> {
        let mut out: Vec<(ObjectKey, u64)> =
            self.live.iter().filter(|(_, l)| !l.seen).map(|(k, l)| (k.clone(), l.seq)).collect();
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests;
