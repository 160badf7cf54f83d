//! The Event Log contract: `append`, `query`, `verify_chain`, `stream`. There is no update and no
//! delete: append-only holds because nothing here can express anything else.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use domain::chain::{ChainHead, Event, EventDraft, Verifier};
use futures::Stream;
use tokio::sync::watch;

use crate::sequencer::Sequencer;
use crate::write::{Committed, Entry};
use crate::{Error, Result};

/// How many events are read per page when verifying or streaming.
const PAGE: usize = 2048;

/// A backend that stores the chain.
///
/// Contract:
/// - `commit` applies a batch atomically, in order, in ONE transaction: it takes the database's
///   write lock, reads the chain head and the stored versions of the keys the batch mutates
///   ([`crate::mutated_keys`]) under it (so writers in other processes link onto the same chain),
///   and hands them to [`crate::plan`], which checks preconditions and seals the entries; an entry
///   whose precondition fails gets its error and consumes no seq. The backend writes the planned
///   events and rows. Either the whole batch is durable when `commit` returns `Ok`, or nothing is
///   (`Err`, usually [`Error::Unavailable`]).
/// - `read` returns stored events in seq order, exactly the bytes that were committed.
/// - `count` counts what `read` would return without a limit.
/// - `read_at` and `next_by_subject` are batched point reads (a few statements for any number of
///   seqs or subjects), for checks that look up one event per resource.
/// - `head` returns the last seq and hash ([`ChainHead::GENESIS`] when empty).
/// - `probe` makes a small durable write that changes nothing the store holds (no event, no
///   resource) and returns its error if it fails: readiness calls it after a failed commit to
///   learn when writes work again (space freed on a full disk), so it must fail whenever a commit
///   would fail for lack of space or a read-only database, and be cheap.
/// - A failed `commit` or `probe` leaves the backend as usable as before: the next call starts
///   clean (no transaction left open on a connection).
#[async_trait]
pub trait LogBackend: Send + Sync + 'static {
    /// Commit a batch of entries (see the trait docs).
    async fn commit(&self, batch: Vec<Entry>) -> Result<Vec<Result<Committed>>>;
    /// Stored events matching `query`, in ascending seq order, at most `query.limit`.
    async fn read(&self, query: &EventQuery) -> Result<Vec<StoredEvent>>;
    /// How many stored events match `query` (its `limit` aside).
    async fn count(&self, query: &EventQuery) -> Result<u64>;
    /// The stored events at `seqs` (each at most once; a seq with no event is left out), in
    /// ascending seq order.
    async fn read_at(&self, seqs: &[u64]) -> Result<Vec<StoredEvent>>;
    /// For each `(subject, after)` of `starts`, in the same order: the seq of the first event
    /// about `subject` with `after < seq <= to_seq` whose type is one of `types`, if there is one.
    async fn next_by_subject(
        &self,
        starts: &[(String, u64)],
        types: &[String],
        to_seq: u64,
    ) -> Result<Vec<Option<u64>>>;
    /// The current head of the chain.
    async fn head(&self) -> Result<ChainHead>;
    /// Check that a write can be made durable now (see the trait docs).
    async fn probe(&self) -> Result<()>;
    /// A wake-up for commits made through other handles or processes (the highest seq heard
    /// of), if the backend has one. Only a hint: streams always re-read by seq, and poll.
    fn wakeups(&self) -> Option<watch::Receiver<u64>>;
}

/// A filter over the log. All set fields must match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventQuery {
    /// Smallest seq to return (inclusive); default 1.
    pub from_seq: Option<u64>,
    /// Largest seq to return (inclusive).
    pub to_seq: Option<u64>,
    /// Only these event types (any of them).
    pub types: Vec<String>,
    /// Only this subject.
    pub subject: Option<String>,
    /// At most this many events.
    pub limit: Option<usize>,
}

/// An event as stored: its seq and its canonical bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEvent {
    /// Its position on the chain.
    pub seq: u64,
    /// The canonical bytes, `hash` included.
    pub bytes: Vec<u8>,
}

impl StoredEvent {
    /// Parse the stored bytes.
    pub fn event(&self) -> Result<Event> {
        serde_json::from_slice(&self.bytes)
            .map_err(|e| Error::Corrupt(format!("event {} cannot be parsed: {e}", self.seq)))
    }
}

/// A stream of events in seq order.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<Event>> + Send>>;

/// The Event Log handle.
#[derive(Clone)]
pub struct EventLog {
    backend: Arc<dyn LogBackend>,
    sequencer: Sequencer,
    /// How long a stream waits without a local wake-up before it looks again (a change committed
    /// by another process has no local wake-up).
    poll: Duration,
}

impl std::fmt::Debug for EventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLog").finish_non_exhaustive()
    }
}

impl EventLog {
    pub(crate) fn new(backend: Arc<dyn LogBackend>, sequencer: Sequencer, poll: Duration) -> Self {
        EventLog { backend, sequencer, poll }
    }

    /// Append one event and return it as sealed on the chain.
    pub async fn append(&self, draft: EventDraft) -> Result<Event> {
        let mut out = self.append_all(vec![draft]).await?;
        Ok(out.remove(0))
    }

    /// Append several events, contiguous and in order, atomically.
    pub async fn append_all(&self, drafts: Vec<EventDraft>) -> Result<Vec<Event>> {
        let entries = drafts.into_iter().map(|draft| Entry { draft, mutation: None }).collect();
        self.sequencer.commit(entries).await?.into_iter().map(|r| r.map(|c| c.event)).collect()
    }

    /// Events matching `query`, in seq order.
    pub async fn query(&self, query: &EventQuery) -> Result<Vec<Event>> {
        self.backend.read(query).await?.iter().map(StoredEvent::event).collect()
    }

    /// Stored bytes of the events matching `query` (for export).
    pub async fn query_raw(&self, query: &EventQuery) -> Result<Vec<StoredEvent>> {
        self.backend.read(query).await
    }

    /// How many events match `query` (its `limit` aside).
    pub async fn count(&self, query: &EventQuery) -> Result<u64> {
        self.backend.count(query).await
    }

    /// Stored bytes of the events at `seqs` (those that exist, each once), in seq order, in a few
    /// statements however many there are.
    pub async fn query_at(&self, seqs: &[u64]) -> Result<Vec<StoredEvent>> {
        // Seqs are stored as signed 64-bit integers; larger ones cannot exist.
        let mut seqs: Vec<u64> = seqs.iter().copied().filter(|s| (1..=i64::MAX as u64).contains(s)).collect();
        seqs.sort_unstable();
        seqs.dedup();
        if seqs.is_empty() {
            return Ok(Vec::new());
        }
        self.backend.read_at(&seqs).await
    }

    /// For each `(subject, after)`, in order: the seq of the first event about `subject` after
    /// `after` and at most `to_seq` whose type is one of `types` (as many [`EventLog::query`]s with
    /// `limit` 1, in a few statements).
    pub async fn next_by_subject(
        &self,
        starts: &[(String, u64)],
        types: &[String],
        to_seq: u64,
    ) -> Result<Vec<Option<u64>>> {
        if starts.is_empty() {
            return Ok(Vec::new());
        }
        let to_seq = to_seq.min(i64::MAX as u64);
        let starts: Vec<(String, u64)> = starts.iter().map(|(s, a)| (s.clone(), (*a).min(to_seq))).collect();
        self.backend.next_by_subject(&starts, types, to_seq).await
    }

    /// How many transactions and events this handle's sequencer has committed (group commit at
    /// work shows as far fewer batches than entries).
    pub fn stats(&self) -> crate::sequencer::CommitStats {
        self.sequencer.stats()
    }

    /// The error of the last commit through this handle's sequencer, if it failed and nothing
    /// has succeeded since (a full disk, a database that went read-only).
    pub fn write_failure(&self) -> Option<Error> {
        self.sequencer.write_failure()
    }

    /// `Ok` while writes work as far as this process knows. After a failed commit it probes the
    /// backend with a small write that changes nothing (at most once a second, so callers may
    /// ask often) and answers [`Error::Unavailable`] until a probe or a commit succeeds: a
    /// readiness check that turns ready again by itself once space is back.
    pub async fn check_writable(&self) -> Result<()> {
        self.sequencer.check_writable(self.backend.as_ref()).await
    }

    /// The current head: last seq (= number of events) and its hash.
    pub async fn head(&self) -> Result<ChainHead> {
        self.backend.head().await
    }

    /// Verify the whole chain from seq 1: every event's bytes canonical, its seq contiguous, its
    /// `prev_hash` linked and its `hash` correct. Returns the verified head, or
    /// [`Error::ChainBroken`] naming the first bad seq.
    pub async fn verify_chain(&self) -> Result<ChainHead> {
        let mut verifier = Verifier::new();
        loop {
            let from = verifier.head().seq + 1;
            let page = self
                .backend
                .read(&EventQuery { from_seq: Some(from), limit: Some(PAGE), ..Default::default() })
                .await?;
            if page.is_empty() {
                return Ok(verifier.head());
            }
            for stored in &page {
                verifier.check(&stored.bytes)?;
            }
        }
    }

    /// Every event with seq greater than `after`, then each new one as it is committed. The stream
    /// resumes by seq, so it never misses or repeats an event, whichever process wrote it; a
    /// local commit wakes it at once, a commit by another process on the backend's wake-up (if
    /// it has one) or within the poll interval.
    /// After an error the stream ends.
    pub fn stream(&self, after: u64) -> EventStream {
        let state = Some(Tail {
            backend: self.backend.clone(),
            wake: self.sequencer.head(),
            remote: self.backend.wakeups(),
            poll: self.poll,
            last: after,
            buffered: VecDeque::new(),
        });
        Box::pin(futures::stream::unfold(state, |state| async move {
            let mut tail = state?;
            match tail.next().await {
                Ok(event) => Some((Ok(event), Some(tail))),
                Err(e) => Some((Err(e), None)),
            }
        }))
    }
}

/// The state behind [`EventLog::stream`].
struct Tail {
    backend: Arc<dyn LogBackend>,
    wake: watch::Receiver<u64>,
    remote: Option<watch::Receiver<u64>>,
    poll: Duration,
    last: u64,
    buffered: VecDeque<Event>,
}

impl Tail {
    /// Until a local commit, a remote wake-up, or the poll interval, whichever comes first.
    async fn wait(&mut self) {
        let local = async {
            if self.wake.changed().await.is_err() {
                // The local sequencer is gone: only the other signals are left.
                std::future::pending::<()>().await;
            }
        };
        let remote = async {
            let heard = match &mut self.remote {
                Some(r) => r.changed().await.is_ok(),
                None => false,
            };
            if !heard {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            _ = local => {}
            _ = remote => {}
            _ = tokio::time::sleep(self.poll) => {}
        }
    }

    /// The next event after `last`: from the buffer, else from a fresh page, else after waiting.
    async fn next(&mut self) -> Result<Event> {
        loop {
            if let Some(event) = self.buffered.pop_front() {
                self.last = event.seq;
                return Ok(event);
            }
            // Mark the wake-ups as seen before reading, so a commit after the read still wakes us.
            self.wake.borrow_and_update();
            if let Some(r) = &mut self.remote {
                r.borrow_and_update();
            }
            let page = self
                .backend
                .read(&EventQuery { from_seq: Some(self.last + 1), limit: Some(PAGE), ..Default::default() })
                .await?;
            if page.is_empty() {
                self.wait().await;
            }
            for stored in page {
                self.buffered.push_back(stored.event()?);
            }
        }
    }
}
