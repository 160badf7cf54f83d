//! Group commit: one task per store takes every entry waiting in its queue, commits them to the
//! backend in one transaction, and answers each writer. Writers never take a lock per event;
//! while one batch commits, the next one gathers.
//!
//! The sequencer also keeps the store's write health: the error of the last commit when it
//! failed, cleared by the next commit that succeeds or by a probe of the backend
//! ([`Sequencer::check_writable`]), so that readiness turns back on once writes work again even
//! if nobody writes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};

use crate::events::LogBackend;
use crate::write::{Committed, Entry};
use crate::{Error, Result};

/// Most entries committed in one transaction.
const MAX_BATCH: usize = 4096;

/// Least time between two probes of a store whose writes fail: a readiness check that anyone may
/// call costs at most one small write per interval.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

type Reply = oneshot::Sender<Result<Vec<Result<Committed>>>>;

struct Request {
    entries: Vec<Entry>,
    reply: Reply,
}

/// The sending side of the sequencer; cloning it shares the same queue and task.
#[derive(Clone, Debug)]
pub(crate) struct Sequencer {
    queue: mpsc::Sender<Request>,
    head: watch::Receiver<u64>,
    shared: Arc<Shared>,
}

/// How much group commit is happening: committed transactions and the entries they carried.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Transactions committed.
    pub batches: u64,
    /// Entries committed in them (events appended).
    pub entries: u64,
}

/// What the sequencer task and its handles share: the commit counters and the write health.
#[derive(Debug, Default)]
struct Shared {
    batches: AtomicU64,
    entries: AtomicU64,
    health: Health,
}

/// Whether writes are working, as far as the last commit or probe knows.
#[derive(Debug, Default)]
struct Health {
    state: Mutex<Outcome>,
    /// When a probe last ran; held while one runs, so probes never overlap.
    last_probe: tokio::sync::Mutex<Option<Instant>>,
}

#[derive(Debug, Default)]
struct Outcome {
    /// The error of the last commit, if it failed.
    failure: Option<Error>,
    /// Commits finished so far, failed or not: a probe clears `failure` only if no commit
    /// finished while it ran, so it never hides a newer failure.
    commits: u64,
}

impl Health {
    fn record(&self, failure: Option<Error>) {
        let mut state = self.state.lock().expect("health lock");
        state.failure = failure;
        state.commits += 1;
    }

    fn failure(&self) -> Option<(Error, u64)> {
        let state = self.state.lock().expect("health lock");
        state.failure.clone().map(|f| (f, state.commits))
    }
}

/// The error readiness reports while writes fail.
fn unwritable(failure: &Error) -> Error {
    let cause = match failure {
        Error::Unavailable(m) => m.clone(),
        other => other.to_string(),
    };
    Error::Unavailable(format!(
        "writes are failing ({cause}); free space or repair the database, and writes resume by themselves"
    ))
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request").field("entries", &self.entries.len()).finish()
    }
}

impl Sequencer {
    /// Start the sequencer task for `backend`; `initial_head` is the last seq already stored.
    pub(crate) fn start(backend: Arc<dyn LogBackend>, initial_head: u64) -> Self {
        let (queue, rx) = mpsc::channel(MAX_BATCH);
        let (head_tx, head) = watch::channel(initial_head);
        let shared = Arc::new(Shared::default());
        tokio::spawn(run(backend, rx, head_tx, shared.clone()));
        Sequencer { queue, head, shared }
    }

    /// Commit `entries` in order, in one transaction with whatever else is waiting. The outer
    /// error means nothing was committed; the inner results say, per entry, whether its
    /// precondition held.
    pub(crate) async fn commit(&self, entries: Vec<Entry>) -> Result<Vec<Result<Committed>>> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Request { entries, reply })
            .await
            .map_err(|_| Error::Unavailable("the event sequencer has stopped".into()))?;
        answer.await.map_err(|_| Error::Unavailable("the event sequencer stopped before answering".into()))?
    }

    /// The highest seq committed through this sequencer (a wake-up for local streams).
    pub(crate) fn head(&self) -> watch::Receiver<u64> {
        self.head.clone()
    }

    /// Transactions and entries committed through this sequencer so far.
    pub(crate) fn stats(&self) -> CommitStats {
        CommitStats {
            batches: self.shared.batches.load(Ordering::Relaxed),
            entries: self.shared.entries.load(Ordering::Relaxed),
        }
    }

    /// The error of the last commit, if it failed and nothing has succeeded since.
    pub(crate) fn write_failure(&self) -> Option<Error> {
        self.shared.health.failure().map(|(f, _)| f)
    }

    /// `Ok` while writes work. After a failed commit, probe `backend` (at most once per
    /// [`PROBE_INTERVAL`], one probe at a time) and stay failed until a probe or a commit
    /// succeeds.
    pub(crate) async fn check_writable(&self, backend: &dyn LogBackend) -> Result<()> {
        if self.shared.health.failure().is_none() {
            return Ok(());
        }
        let mut last = self.shared.health.last_probe.lock().await;
        // Another probe, or a commit, may have settled it while this one waited.
        let Some((failure, commits)) = self.shared.health.failure() else { return Ok(()) };
        if last.is_some_and(|at| at.elapsed() < PROBE_INTERVAL) {
            return Err(unwritable(&failure));
        }
        *last = Some(Instant::now());
        let probed = backend.probe().await;
        let mut state = self.shared.health.state.lock().expect("health lock");
        if state.commits != commits {
            // A commit finished meanwhile: its outcome is newer than the probe's.
            return state.failure.as_ref().map_or(Ok(()), |f| Err(unwritable(f)));
        }
        match probed {
            Ok(()) => {
                tracing::info!("writes work again");
                state.failure = None;
                Ok(())
            }
            Err(e) => {
                let err = unwritable(&e);
                state.failure = Some(e);
                Err(err)
            }
        }
    }
}

async fn run(
    backend: Arc<dyn LogBackend>,
    mut rx: mpsc::Receiver<Request>,
    head: watch::Sender<u64>,
    shared: Arc<Shared>,
) {
    while let Some(first) = rx.recv().await {
        // Let writers that were just answered queue their next entries before the batch closes:
        // one scheduler turn costs microseconds and roughly doubles the batch under load.
        tokio::task::yield_now().await;
        let mut requests = vec![first];
        let mut count = requests[0].entries.len();
        while count < MAX_BATCH {
            match rx.try_recv() {
                Ok(r) => {
                    count += r.entries.len();
                    requests.push(r);
                }
                Err(_) => break,
            }
        }
        let sizes: Vec<usize> = requests.iter().map(|r| r.entries.len()).collect();
        let mut replies = Vec::with_capacity(requests.len());
        let mut batch = Vec::with_capacity(count);
        for r in requests {
            batch.extend(r.entries);
            replies.push(r.reply);
        }
        match backend.commit(batch).await {
            Ok(results) => {
                shared.health.record(None);
                let written = results.iter().filter(|r| r.is_ok()).count() as u64;
                shared.batches.fetch_add(1, Ordering::Relaxed);
                shared.entries.fetch_add(written, Ordering::Relaxed);
                if let Some(last) = results.iter().rev().find_map(|r| r.as_ref().ok()) {
                    head.send_if_modified(|h| {
                        let newer = last.event.seq > *h;
                        if newer {
                            *h = last.event.seq;
                        }
                        newer
                    });
                }
                let mut results = results.into_iter();
                for (reply, n) in replies.into_iter().zip(sizes) {
                    let _ = reply.send(Ok(results.by_ref().take(n).collect()));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, entries = count, "batch commit failed; nothing was written");
                shared.health.record(Some(e.clone()));
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}
