//! Group commit: one task per store takes every entry waiting in its queue, commits them to the
//! backend in one transaction, and answers each writer. Writers never take a lock per event;
//! while one batch commits, the next one gathers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot, watch};

use crate::events::LogBackend;
use crate::write::{Committed, Entry};
use crate::{Error, Result};

/// Most entries committed in one transaction.
const MAX_BATCH: usize = 4096;

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
    counters: Arc<Counters>,
}

/// How much group commit is happening: committed transactions and the entries they carried.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Transactions committed.
    pub batches: u64,
    /// Entries committed in them (events appended).
    pub entries: u64,
}

#[derive(Debug, Default)]
struct Counters {
    batches: AtomicU64,
    entries: AtomicU64,
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
        let counters = Arc::new(Counters::default());
        tokio::spawn(run(backend, rx, head_tx, counters.clone()));
        Sequencer { queue, head, counters }
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
            batches: self.counters.batches.load(Ordering::Relaxed),
            entries: self.counters.entries.load(Ordering::Relaxed),
        }
    }
}

async fn run(
    backend: Arc<dyn LogBackend>,
    mut rx: mpsc::Receiver<Request>,
    head: watch::Sender<u64>,
    counters: Arc<Counters>,
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
                let written = results.iter().filter(|r| r.is_ok()).count() as u64;
                counters.batches.fetch_add(1, Ordering::Relaxed);
                counters.entries.fetch_add(written, Ordering::Relaxed);
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
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}
