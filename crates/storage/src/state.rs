//! The state check: whether Graph Storage holds what the event log says it does. The rules are
//! pure and live in [`domain::state`]; this module reads the rows and the events for them, in
//! pages, so memory stays proportional to one page plus the live resources, however long the
//! log is.
//!
//! Two depths:
//! - [`Store::check_written`] and [`Store::check_stored`]: each stored resource against the event
//!   its resourceVersion names, plus one indexed look for a later write of its key, batched per
//!   page of resources. The cost follows the number of resources, not the length of the log
//!   (startup, policies).
//! - [`Store::verify_state`]: the whole chain verified and replayed, and every stored resource
//!   compared with the replay; this also finds rows that were removed or put back.

use std::collections::{BTreeMap, HashMap, HashSet};

use domain::chain::{ChainError, ChainHead, Event, Verifier};
use domain::state::{self, Expected, Mismatch, Replay, WRITE_TYPES, Write};
use domain::{ObjectKey, Resource};

use crate::{Error, EventQuery, ListQuery, Result, Store, StoredEvent};

/// Resources read per page.
const RESOURCE_PAGE: usize = 1000;
/// Events read per page when replaying.
const EVENT_PAGE: usize = 2048;
/// How many times a resource the pages did not show is read again, waiting for a moment when
/// nothing is written, before the check gives up on a store that is too busy.
const SETTLE_ATTEMPTS: usize = 20;

/// What [`Store::verify_state`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateReport {
    /// The head of the verified chain.
    pub head: ChainHead,
    /// How many stored resources were compared.
    pub resources: u64,
    /// How many resources the log leaves in place at `head`.
    pub live: u64,
    /// Every difference between the stored resources and the log.
    pub mismatches: Vec<Mismatch>,
}

/// What [`Store::check_stored`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoredCheck {
    /// How many stored resources were checked.
    pub resources: u64,
    /// Each one the log does not vouch for.
    pub mismatches: Vec<Mismatch>,
}

/// The chain and the replay, advanced together.
struct Pass {
    verifier: Verifier,
    replay: Replay,
    mismatches: Vec<Mismatch>,
}

impl Store {
    /// Check each of `resources`, read from Graph Storage when the chain head was `head`, against
    /// the event its resourceVersion names ([`domain::state::check_written`]): that event must be
    /// intact on its own (canonical, its hash matching its contents) and must have written
    /// exactly this resource; and no later event up to `head` may have written its key (a
    /// rolled-back or resurrected row). Returns one [`Mismatch`] per resource the log does not
    /// vouch for, in the order of `resources`. Two batched reads of the log, however many
    /// resources. This trusts the links between events: `verify_state` checks those too.
    pub async fn check_written(&self, resources: &[Resource], head: u64) -> Result<Vec<Mismatch>> {
        let seqs: Vec<u64> = resources.iter().filter_map(Resource::resource_version).collect();
        let events: HashMap<u64, StoredEvent> =
            self.events.query_at(&seqs).await?.into_iter().map(|e| (e.seq, e)).collect();
        let mut found: Vec<Option<Mismatch>> = Vec::with_capacity(resources.len());
        // The resources their own event vouches for, to look for a later write of: (index, start).
        let mut vouched: Vec<(usize, (String, u64))> = Vec::new();
        for (i, stored) in resources.iter().enumerate() {
            let rv = stored.resource_version();
            let event = match rv.and_then(|rv| events.get(&rv)).map(intact) {
                None => None,
                Some(Ok(event)) => Some(event),
                Some(Err(m)) => {
                    found.push(Some(m));
                    continue;
                }
            };
            let mismatch = state::check_written(stored, event.as_ref());
            if let (None, Some(rv)) = (&mismatch, rv)
                && rv < head
            {
                vouched.push((i, (stored.key().to_string(), rv)));
            }
            found.push(mismatch);
        }
        let starts: Vec<(String, u64)> = vouched.iter().map(|(_, start)| start.clone()).collect();
        let types = WRITE_TYPES.map(str::to_string);
        let later = self.events.next_by_subject(&starts, &types, head).await?;
        for ((i, (_, rv)), later) in vouched.into_iter().zip(later) {
            if let Some(later) = later {
                found[i] = Some(Mismatch::Stale { key: resources[i].key(), resource_version: rv, later });
            }
        }
        Ok(found.into_iter().flatten().collect())
    }

    /// [`Store::check_written`] over every stored resource, a page at a time, and a count of the
    /// resources the log leaves in place (creates minus deletes, counted on the events' type
    /// index) against the stored ones: a row that passes its check is a live resource, so when
    /// every row passes, fewer rows than the log counts means rows were removed
    /// ([`Mismatch::MissingRows`]). (A row that fails is reported itself, and may hide a removed
    /// one from the count; the replay of `verify_state` names every one.)
    /// Resources written while the pages were read are checked one by one instead. Memory: one
    /// key per stored resource.
    pub async fn check_stored(&self) -> Result<StoredCheck> {
        let mut out = StoredCheck::default();
        let mut listed: HashSet<ObjectKey> = HashSet::new();
        let mut heads: Option<(u64, u64)> = None;
        let mut after = None;
        loop {
            let page =
                self.graph.list(ListQuery { after, limit: Some(RESOURCE_PAGE), ..Default::default() }, None).await?;
            heads = Some((heads.map_or(page.resource_version, |(first, _)| first), page.resource_version));
            out.resources += page.items.len() as u64;
            out.mismatches.extend(self.check_written(&page.items, page.resource_version).await?);
            listed.extend(page.items.iter().map(Resource::key));
            if page.continue_token.is_none() {
                break;
            }
            after = page.items.last().map(Resource::key);
        }
        // Keys written while the pages were read may have been listed before or after their
        // write: leave them out of the count and check each alone. The others did not change.
        let (first, last) = heads.expect("at least one page is read");
        let written = self.writes_between(first, last).await?;
        let live = self.live_count(last).await?.saturating_sub(written.values().filter(|w| w.live).count() as u64);
        let counted = listed.iter().filter(|k| !written.contains_key(*k)).count() as u64;
        if counted < live {
            out.mismatches.push(Mismatch::MissingRows { count: live - counted, head: last });
        }
        for key in written.keys() {
            out.mismatches.extend(self.check_key(key, first).await?);
        }
        Ok(out)
    }

    /// How many resources the log leaves in place at `head`: creates minus deletes.
    async fn live_count(&self, head: u64) -> Result<u64> {
        let count = |type_: &str| {
            let query = EventQuery { types: vec![type_.to_string()], to_seq: Some(head), ..EventQuery::default() };
            async move { self.events.count(&query).await }
        };
        let (created, deleted) = (count(state::CREATED).await?, count(state::DELETED).await?);
        created.checked_sub(deleted).ok_or_else(|| {
            Error::Corrupt(format!("the log deletes more resources ({deleted}) than it creates ({created})"))
        })
    }

    /// The keys written by events after `from` up to `to`, and whether each is in place at `to`.
    async fn writes_between(&self, from: u64, to: u64) -> Result<BTreeMap<ObjectKey, LastWrite>> {
        let mut out = BTreeMap::new();
        let mut next = from + 1;
        while next <= to {
            let query = EventQuery {
                from_seq: Some(next),
                to_seq: Some(to),
                types: WRITE_TYPES.map(str::to_string).to_vec(),
                limit: Some(EVENT_PAGE),
                ..EventQuery::default()
            };
            let page = self.events.query_raw(&query).await?;
            let Some(end) = page.last().map(|e| e.seq) else { break };
            for stored in page {
                match Write::parse(stored.seq, &stored.bytes) {
                    Ok(Some(w)) => drop(out.insert(w.key, LastWrite { live: !w.removed })),
                    Ok(None) => {}
                    Err(m) => return Err(Error::Corrupt(m.to_string())),
                }
            }
            next = end + 1;
        }
        Ok(out)
    }

    /// Check one key alone: read it between two reads of the head until they agree, then check
    /// the row (if any) against its event, or its absence against the log's last write of it
    /// (which is after `since`).
    async fn check_key(&self, key: &ObjectKey, since: u64) -> Result<Vec<Mismatch>> {
        for _ in 0..SETTLE_ATTEMPTS {
            let before = self.events.head().await?.seq;
            let stored = match self.graph.get(key).await {
                Ok(r) => Some(r),
                Err(Error::NotFound(_)) => None,
                Err(e) => return Err(e),
            };
            if self.events.head().await?.seq != before {
                continue;
            }
            if let Some(stored) = stored {
                return self.check_written(&[stored], before).await;
            }
            let writes = EventQuery {
                from_seq: Some(since + 1),
                to_seq: Some(before),
                types: WRITE_TYPES.map(str::to_string).to_vec(),
                subject: Some(key.to_string()),
                ..EventQuery::default()
            };
            let last = self.events.query(&writes).await?.pop();
            return Ok(match last {
                Some(e) if e.type_ != state::DELETED => vec![Mismatch::Missing { key: key.clone(), seq: e.seq }],
                _ => Vec::new(),
            });
        }
        Err(unsettled(key))
    }

    /// Verify the whole chain and replay it into the resources it leaves in place, comparing every
    /// stored resource with the event that last wrote its key: a resource stored but not left in
    /// place by the log, one the log leaves in place but that is not stored, and one that differs
    /// (with the field paths) are each a [`Mismatch`]. A broken chain is
    /// [`Error::ChainBroken`]: state cannot be checked against a log that does not verify.
    ///
    /// Safe on a store that is being written: each page of resources is compared with the replay
    /// at exactly the head the page was read at, and a resource the pages did not show is read
    /// alone between two reads of the head that agree. Reads the log once, in pages; holds one
    /// page and a digest per live resource in memory.
    pub async fn verify_state(&self) -> Result<StateReport> {
        let mut pass = Pass { verifier: Verifier::new(), replay: Replay::new(), mismatches: Vec::new() };
        let mut resources = 0;
        let mut after = None;
        loop {
            let page =
                self.graph.list(ListQuery { after, limit: Some(RESOURCE_PAGE), ..Default::default() }, None).await?;
            self.replay_to(&mut pass, page.resource_version).await?;
            resources += page.items.len() as u64;
            let mut compare = Vec::new();
            for stored in &page.items {
                match pass.replay.stored(stored) {
                    Ok(Expected::Same) => {}
                    Ok(Expected::Compare(seq)) => compare.push((stored, seq)),
                    Err(m) => pass.mismatches.push(m),
                }
            }
            pass.mismatches.extend(self.compare(compare).await?);
            if page.continue_token.is_none() {
                break;
            }
            after = page.items.last().map(Resource::key);
        }
        for (key, _) in pass.replay.unseen() {
            resources += self.settle(&mut pass, &key).await? as u64;
        }
        let head = self.events.head().await?;
        self.replay_to(&mut pass, head.seq).await?;
        Ok(StateReport {
            head: pass.verifier.head(),
            resources,
            live: pass.replay.len() as u64,
            mismatches: pass.mismatches,
        })
    }

    /// Verify and replay the chain up to `head`.
    async fn replay_to(&self, pass: &mut Pass, head: u64) -> Result<()> {
        if pass.verifier.head().seq > head {
            return Err(Error::Conflict(format!(
                "the chain head went back from {} to {head} during the check; run it again",
                pass.verifier.head().seq
            )));
        }
        while pass.verifier.head().seq < head {
            let from = pass.verifier.head().seq + 1;
            let query =
                EventQuery { from_seq: Some(from), to_seq: Some(head), limit: Some(EVENT_PAGE), ..Default::default() };
            let page = self.events.query_raw(&query).await?;
            if page.is_empty() {
                return Err(
                    ChainError { seq: from, reason: format!("the log ends before its head, seq {head}") }.into()
                );
            }
            for stored in page {
                pass.verifier.check(&stored.bytes)?;
                match Write::parse(stored.seq, &stored.bytes) {
                    Ok(Some(write)) => pass.replay.apply(write),
                    Ok(None) => {}
                    Err(m) => pass.mismatches.push(m),
                }
            }
        }
        Ok(())
    }

    /// Check one live key that no page showed (it is missing, or was created after its page was
    /// read): read it between two reads of the head, until they agree, and compare it with the
    /// replay at that head. Returns whether it is stored.
    async fn settle(&self, pass: &mut Pass, key: &ObjectKey) -> Result<bool> {
        for _ in 0..SETTLE_ATTEMPTS {
            let before = self.events.head().await?.seq;
            let stored = match self.graph.get(key).await {
                Ok(r) => Some(r),
                Err(Error::NotFound(_)) => None,
                Err(e) => return Err(e),
            };
            if self.events.head().await?.seq != before {
                continue;
            }
            self.replay_to(pass, before).await?;
            let found = stored.is_some();
            match (stored, pass.replay.last_write(key)) {
                (None, None) => {}
                (None, Some(seq)) => pass.mismatches.push(Mismatch::Missing { key: key.clone(), seq }),
                (Some(stored), _) => match pass.replay.stored(&stored) {
                    Ok(Expected::Same) => {}
                    Ok(Expected::Compare(seq)) => pass.mismatches.extend(self.compare(vec![(&stored, seq)]).await?),
                    Err(m) => pass.mismatches.push(m),
                },
            }
            return Ok(found);
        }
        Err(unsettled(key))
    }

    /// Compare stored resources with the events that last wrote their keys (known writes, from a
    /// verified replay), field by field.
    async fn compare(&self, pairs: Vec<(&Resource, u64)>) -> Result<Vec<Mismatch>> {
        let seqs: Vec<u64> = pairs.iter().map(|(_, seq)| *seq).collect();
        let events: HashMap<u64, StoredEvent> =
            self.events.query_at(&seqs).await?.into_iter().map(|e| (e.seq, e)).collect();
        let mut found = Vec::new();
        for (stored, seq) in pairs {
            let event = events.get(&seq).map(StoredEvent::event).transpose()?;
            found.extend(match event.as_ref().and_then(|e| e.data.get("object")) {
                Some(object) => state::compare(stored, seq, object),
                None => Some(Mismatch::Event { seq, reason: "it has no `data.object`".into() }),
            });
        }
        Ok(found)
    }
}

fn unsettled(key: &ObjectKey) -> Error {
    Error::Conflict(format!(
        "{key} kept changing while it was checked; run the check again when fewer writes are going on"
    ))
}

/// The last write of a key in a stretch of the log.
struct LastWrite {
    /// Whether it leaves the key in place (not a deletion).
    live: bool,
}

/// A stored event checked on its own: canonical, at its seq, and its hash matching its contents.
fn intact(stored: &StoredEvent) -> Result<Event, Mismatch> {
    let bad = |reason: String| Mismatch::Event { seq: stored.seq, reason };
    let event = stored.event().map_err(|e| bad(e.to_string()))?;
    Verifier::resume(ChainHead { seq: stored.seq.saturating_sub(1), hash: event.prev_hash })
        .check(&stored.bytes)
        .map_err(|e| bad(e.reason))?;
    Ok(event)
}
