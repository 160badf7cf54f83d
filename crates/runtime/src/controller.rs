//! Controllers in the kube-runtime style: a reconciler is handed keys, re-reads durable state
//! and acts idempotently. Events from the log are only wake-ups; a full resync catches anything
//! a wake-up missed. Each controller has a work queue that holds a key at most once, never runs
//! one key twice at a time (a key woken while running runs again after), and requeues failures
//! with exponential backoff.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use domain::{ObjectKey, Resource};
use futures::StreamExt;
use storage::{ListQuery, Store};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::shards::Shards;

/// What to do after a reconcile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Nothing until something changes.
    Done,
    /// Look again after this long (a retry timer, a lease to watch).
    After(Duration),
}

/// One controller: the kind it owns, which keys a change wakes, and how to reconcile a key.
#[async_trait::async_trait]
pub trait Reconciler: Send + Sync + 'static {
    /// The kind whose objects it reconciles.
    fn kind(&self) -> &'static str;
    /// How many keys it reconciles at once.
    fn workers(&self) -> usize {
        1
    }
    /// The keys of its kind to reconcile because `changed` was written.
    async fn wakes(&self, changed: &Resource) -> Vec<ObjectKey>;
    /// Bring the world in line with `key`'s spec; safe to call any number of times.
    async fn reconcile(&self, key: &ObjectKey) -> Result<Next>;
}

#[derive(Default)]
struct State {
    ready: VecDeque<ObjectKey>,
    queued: HashSet<ObjectKey>,
    running: HashSet<ObjectKey>,
    dirty: HashSet<ObjectKey>,
    delayed: BTreeMap<(Instant, u64), ObjectKey>,
    counter: u64,
    failures: HashMap<ObjectKey, u32>,
}

/// A deduplicating work queue with delayed requeues.
#[derive(Default)]
pub struct Queue {
    state: Mutex<State>,
    notify: Notify,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").finish_non_exhaustive()
    }
}

impl Queue {
    /// Queue `key` now (a no-op if it is already queued; run again after if it is running).
    pub fn add(&self, key: ObjectKey) {
        let mut s = self.state.lock().expect("queue lock");
        Self::push(&mut s, key);
        drop(s);
        self.notify.notify_one();
    }

    fn push(s: &mut State, key: ObjectKey) {
        if s.running.contains(&key) {
            s.dirty.insert(key);
        } else if s.queued.insert(key.clone()) {
            s.ready.push_back(key);
        }
    }

    /// Queue `key` after `delay`.
    pub fn add_after(&self, key: ObjectKey, delay: Duration) {
        let mut s = self.state.lock().expect("queue lock");
        s.counter += 1;
        let n = s.counter;
        s.delayed.insert((Instant::now() + delay, n), key);
        drop(s);
        self.notify.notify_one();
    }

    /// The next key to reconcile, waiting for one.
    pub async fn take(&self) -> ObjectKey {
        loop {
            let notified = self.notify.notified();
            let next_due = {
                let mut s = self.state.lock().expect("queue lock");
                let now = Instant::now();
                while let Some(entry) = s.delayed.first_entry() {
                    if entry.key().0 > now {
                        break;
                    }
                    let key = entry.remove();
                    Self::push(&mut s, key);
                }
                if let Some(key) = s.ready.pop_front() {
                    s.queued.remove(&key);
                    s.running.insert(key.clone());
                    let more = !s.ready.is_empty();
                    drop(s);
                    if more {
                        self.notify.notify_one();
                    }
                    return key;
                }
                s.delayed.keys().next().map(|(at, _)| *at)
            };
            match next_due {
                Some(at) => {
                    tokio::select! {
                        _ = notified => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// `key` is reconciled: run it again if it was woken meanwhile, and record how it went.
    fn done(&self, key: &ObjectKey, outcome: &Result<Next>) -> Option<Duration> {
        let mut s = self.state.lock().expect("queue lock");
        s.running.remove(key);
        let retry = match outcome {
            Ok(_) => {
                s.failures.remove(key);
                None
            }
            Err(_) => {
                let n = s.failures.entry(key.clone()).or_insert(0);
                *n = (*n + 1).min(10);
                Some(Duration::from_millis(100 * (1 << *n)).min(Duration::from_secs(30)))
            }
        };
        if s.dirty.remove(key) {
            Self::push(&mut s, key.clone());
        }
        drop(s);
        self.notify.notify_one();
        retry
    }
}

/// Run `reconcilers` until `stop` is cancelled: their workers, the wake-ups from the event
/// log, and a full resync every `resync` and whenever this process gains a shard. A key is
/// reconciled only while this process holds its shard. Returns an error if the event stream fails (the
/// supervisor then starts it again, and the resync at start repairs what was missed).
pub async fn run(
    store: Store,
    reconcilers: Vec<Arc<dyn Reconciler>>,
    shards: Arc<Shards>,
    resync: Duration,
    stop: CancellationToken,
) -> Result<()> {
    let mut gains = shards.gains();
    let head = store.events.head().await?.seq;
    let queues: Vec<Arc<Queue>> = reconcilers.iter().map(|_| Arc::new(Queue::default())).collect();
    let mut workers = tokio::task::JoinSet::new();
    for (r, q) in reconcilers.iter().zip(&queues) {
        for _ in 0..r.workers().max(1) {
            let (r, q, stop, shards) = (r.clone(), q.clone(), stop.clone(), shards.clone());
            workers.spawn(async move {
                loop {
                    let key = tokio::select! {
                        _ = stop.cancelled() => return,
                        k = q.take() => k,
                    };
                    // Another process reconciles it; a shard gained later brings it back.
                    if !shards.owns(&key) {
                        q.done(&key, &Ok(Next::Done));
                        continue;
                    }
                    let outcome = r.reconcile(&key).await;
                    if let Err(e) = &outcome {
                        tracing::warn!(key = %key, error = %e, "reconcile failed; it will be retried");
                    }
                    let retry = q.done(&key, &outcome);
                    match (outcome, retry) {
                        (_, Some(delay)) | (Ok(Next::After(delay)), None) => q.add_after(key, delay),
                        (Ok(Next::Done), None) | (Err(_), None) => {}
                    }
                }
            });
        }
    }
    let resync_all = || async {
        for (r, q) in reconcilers.iter().zip(&queues) {
            let mut token: Option<String> = None;
            loop {
                let query = ListQuery { kind: Some(r.kind().to_string()), ..Default::default() };
                let page = store.graph.list(query, token.as_deref()).await?;
                for item in &page.items {
                    q.add(item.key());
                }
                match page.continue_token {
                    Some(t) => token = Some(t),
                    None => break,
                }
            }
        }
        Ok::<(), crate::Error>(())
    };
    resync_all().await?;
    let mut events = store.events.stream(head);
    let mut ticker = tokio::time::interval_at(Instant::now() + resync, resync);
    let outcome = loop {
        tokio::select! {
            _ = stop.cancelled() => break Ok(()),
            _ = ticker.tick() => {
                if let Err(e) = resync_all().await {
                    break Err(e);
                }
            }
            Ok(()) = gains.changed() => {
                if let Err(e) = resync_all().await {
                    break Err(e);
                }
            }
            event = events.next() => {
                let event = match event {
                    Some(Ok(e)) => e,
                    Some(Err(e)) => break Err(e.into()),
                    None => break Ok(()),
                };
                let Some(object) = event.data.get("object") else { continue };
                let Ok(changed) = serde_json::from_value::<Resource>(object.clone()) else { continue };
                for (r, q) in reconcilers.iter().zip(&queues) {
                    for key in r.wakes(&changed).await {
                        q.add(key);
                    }
                }
            }
        }
    };
    workers.abort_all();
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> ObjectKey {
        ObjectKey::new("Task", "default", name)
    }

    #[tokio::test]
    async fn a_key_is_queued_once_and_rerun_if_woken_while_running() {
        let q = Queue::default();
        q.add(key("a"));
        q.add(key("a"));
        q.add(key("b"));
        assert_eq!(q.take().await, key("a"));
        q.add(key("a")); // woken while running
        assert_eq!(q.take().await, key("b"));
        assert_eq!(q.done(&key("a"), &Ok(Next::Done)), None);
        assert_eq!(q.take().await, key("a"));
        let s = q.state.lock().unwrap();
        assert!(s.ready.is_empty() && s.queued.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn failures_back_off_and_delayed_keys_arrive_when_due() {
        let q = Queue::default();
        let failed: Result<Next> = Err(crate::Error::Invalid("x".into()));
        q.add(key("a"));
        let k = q.take().await;
        assert_eq!(q.done(&k, &failed), Some(Duration::from_millis(200)));
        q.add(key("a"));
        let k = q.take().await;
        assert_eq!(q.done(&k, &failed), Some(Duration::from_millis(400)));
        q.add(key("a"));
        let k = q.take().await;
        assert_eq!(q.done(&k, &Ok(Next::Done)), None, "success resets the backoff");
        let start = Instant::now();
        q.add_after(key("late"), Duration::from_secs(5));
        assert_eq!(q.take().await, key("late"));
        assert!(Instant::now() - start >= Duration::from_secs(5));
    }
}
