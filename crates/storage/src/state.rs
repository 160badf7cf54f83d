//! The state check: whether Graph Storage holds what the event log says it does. The rules are
//! pure and live in [`domain::state`]; this module reads the rows and the events for them, in
//! pages, so memory stays proportional to one page plus the live resources, however long the
//! log is.
//!
//! Two depths:
//! - [`Store::check_written`] and [`Store::check_stored`]: each stored resource against the event
//!   its resourceVersion names, plus one indexed look for a later write of its key. Point reads,
//!   so the cost follows the number of resources, not the length of the log (startup, policies).
//! - [`Store::verify_state`]: the whole chain verified and replayed, and every stored resource
//!   compared with the replay; this also finds rows that were removed or put back.

use domain::chain::{ChainError, ChainHead, Event, Verifier};
use domain::state::{self, Expected, Mismatch, Replay, WRITE_TYPES, Write};
use domain::{ObjectKey, Resource};
use futures::{StreamExt, TryStreamExt};

use crate::{Error, EventQuery, ListQuery, Result, Store};

/// Resources read per page.
const RESOURCE_PAGE: usize = 1000;
/// Events read per page when replaying.
const EVENT_PAGE: usize = 2048;
/// Point reads in flight at once.
const IN_FLIGHT: usize = 8;
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
    /// vouch for. This trusts the links between events: `verify_state` checks those too.
    pub async fn check_written(&self, resources: &[Resource], head: u64) -> Result<Vec<Mismatch>> {
        // The futures are made before they are polled, so that no closure is held across an await
        // (which would keep the returned future from being `Send` for every lifetime).
        let checks: Vec<_> = resources.iter().map(|r| self.check_one(r, head)).collect();
        let found: Vec<Option<Mismatch>> = futures::stream::iter(checks).buffered(IN_FLIGHT).try_collect().await?;
        Ok(found.into_iter().flatten().collect())
    }

    /// [`Store::check_written`] over every stored resource, a page at a time.
    pub async fn check_stored(&self) -> Result<StoredCheck> {
        let mut out = StoredCheck::default();
        let mut after = None;
        loop {
            let page =
                self.graph.list(ListQuery { after, limit: Some(RESOURCE_PAGE), ..Default::default() }, None).await?;
            out.resources += page.items.len() as u64;
            out.mismatches.extend(self.check_written(&page.items, page.resource_version).await?);
            if page.continue_token.is_none() {
                return Ok(out);
            }
            after = page.items.last().map(Resource::key);
        }
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
        Err(Error::Conflict(format!(
            "{key} kept changing while it was checked; run the check again when fewer writes are going on"
        )))
    }

    /// Compare stored resources with the events that last wrote their keys (known writes, from a
    /// verified replay), field by field.
    async fn compare(&self, pairs: Vec<(&Resource, u64)>) -> Result<Vec<Mismatch>> {
        let compares: Vec<_> = pairs.into_iter().map(|(stored, seq)| self.compare_one(stored, seq)).collect();
        let found: Vec<Option<Mismatch>> = futures::stream::iter(compares).buffered(IN_FLIGHT).try_collect().await?;
        Ok(found.into_iter().flatten().collect())
    }

    async fn compare_one(&self, stored: &Resource, seq: u64) -> Result<Option<Mismatch>> {
        let event = self.event_at(seq).await?;
        Ok(match event.as_ref().and_then(|e| e.data.get("object")) {
            Some(object) => state::compare(stored, seq, object),
            None => Some(Mismatch::Event { seq, reason: "it has no `data.object`".into() }),
        })
    }

    async fn check_one(&self, stored: &Resource, head: u64) -> Result<Option<Mismatch>> {
        let Some(rv) = stored.resource_version() else {
            return Ok(state::check_written(stored, None));
        };
        let event = match self.event_at(rv).await {
            Ok(e) => e,
            Err(Error::ChainBroken(e)) => return Ok(Some(Mismatch::Event { seq: rv, reason: e.reason })),
            Err(e) => return Err(e),
        };
        if let Some(m) = state::check_written(stored, event.as_ref()) {
            return Ok(Some(m));
        }
        if rv < head {
            let later = EventQuery {
                from_seq: Some(rv + 1),
                to_seq: Some(head),
                types: WRITE_TYPES.map(str::to_string).to_vec(),
                subject: Some(stored.key().to_string()),
                limit: Some(1),
            };
            if let Some(e) = self.events.query_raw(&later).await?.first() {
                return Ok(Some(Mismatch::Stale { key: stored.key(), resource_version: rv, later: e.seq }));
            }
        }
        Ok(None)
    }

    /// Event `seq`, if the log has it, checked on its own: canonical, at its seq, and its hash
    /// matching its contents ([`Error::ChainBroken`] if not).
    async fn event_at(&self, seq: u64) -> Result<Option<Event>> {
        let query = EventQuery { from_seq: Some(seq), to_seq: Some(seq), limit: Some(1), ..Default::default() };
        let Some(stored) = self.events.query_raw(&query).await?.pop().filter(|e| e.seq == seq && seq > 0) else {
            return Ok(None);
        };
        let event = stored.event()?;
        Verifier::resume(ChainHead { seq: seq - 1, hash: event.prev_hash }).check(&stored.bytes)?;
        Ok(Some(event))
    }
}
