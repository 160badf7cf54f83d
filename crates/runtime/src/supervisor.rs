//! The supervisor: runs the execution plane's long-lived tasks and starts again whichever
//! fails or panics, with backoff, until it is told to stop.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How long a task may take to end after the stop signal before it is aborted.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// A set of supervised tasks sharing one stop signal.
#[derive(Debug)]
pub struct Supervisor {
    stop: CancellationToken,
    tasks: JoinSet<()>,
}

impl Supervisor {
    /// A supervisor whose tasks end when `stop` is cancelled.
    pub fn new(stop: CancellationToken) -> Supervisor {
        Supervisor { stop, tasks: JoinSet::new() }
    }

    /// Run `start(stop)` under supervision: whenever the future it returns ends with an error
    /// or panics before the stop signal, start it again after a backoff (100 ms doubling to
    /// 10 s, reset after a run that lasted a minute). The future is given the stop signal and
    /// should end soon after it fires; shutdown waits for it.
    pub fn spawn<F, Fut>(&mut self, name: &'static str, start: F)
    where
        F: Fn(CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = crate::Result<()>> + Send + 'static,
    {
        let stop = self.stop.clone();
        self.tasks.spawn(async move {
            let mut backoff = Duration::from_millis(100);
            loop {
                let began = tokio::time::Instant::now();
                let mut run = tokio::spawn(start(stop.child_token()));
                let why = tokio::select! {
                    _ = stop.cancelled() => {
                        // Give it a moment to wind down, then stop it outright.
                        if tokio::time::timeout(STOP_GRACE, &mut run).await.is_err() {
                            run.abort();
                        }
                        return;
                    }
                    joined = &mut run => match joined {
                        Ok(Ok(())) if stop.is_cancelled() => return,
                        Ok(Ok(())) => "it returned".to_string(),
                        Ok(Err(e)) => e.to_string(),
                        Err(e) if e.is_panic() => "it panicked".to_string(),
                        Err(e) => e.to_string(),
                    },
                };
                if began.elapsed() > Duration::from_secs(60) {
                    backoff = Duration::from_millis(100);
                }
                tracing::warn!(task = name, reason = %why, restart_in = ?backoff, "supervised task stopped; restarting it");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        });
    }

    /// Signal every task to stop and wait until they have.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        while self.tasks.join_next().await.is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(start_paused = true)]
    async fn a_task_that_fails_or_panics_is_started_again() {
        let stop = CancellationToken::new();
        let mut sup = Supervisor::new(stop.clone());
        let starts = Arc::new(AtomicU32::new(0));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let counter = starts.clone();
        sup.spawn("flaky", move |_stop| {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            let tx = tx.clone();
            async move {
                tx.send(n).unwrap();
                match n {
                    1 => Err(crate::Error::Invalid("first run fails".into())),
                    2 => panic!("second run panics"),
                    _ => std::future::pending().await,
                }
            }
        });
        for expected in 1..=3 {
            assert_eq!(rx.recv().await, Some(expected));
        }
        sup.shutdown().await;
        assert_eq!(starts.load(Ordering::SeqCst), 3);
    }
}
