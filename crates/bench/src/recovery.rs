//! Recovery after kill -9: `n` producing sessions in flight when their process died, as the store
//! holds them then (Running, leased by a holder that renews no more), and a new execution plane
//! started on the store. Measured: the time from its start until every session is adopted
//! (leased by the new process, `resumed` raised), on the embedded SQLite store. Baseline: the
//! same number of status writes straight into Graph Storage, 64 at a time, on the same file:
//! the floor under one conditional write per adoption.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use admission::{Admission, Identity};
use anyhow::{Result, bail};
use chrono::Utc;
use domain::kinds::task::{AgentSessionStatus, Lease, SessionPhase};
use domain::{ObjectKey, Resource};
use futures::StreamExt;
use serde_json::json;
use storage::{Cas, FsCas, ListQuery, Store};
use storage_sqlite::SqliteBackend;

use crate::Args;
use crate::events::events_per_sec;
use crate::report::{Report, Row, median};

/// Every session of the store.
async fn sessions(store: &Store) -> Result<Vec<Resource>> {
    let mut all = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let query = ListQuery { kind: Some("AgentSession".into()), ..Default::default() };
        let page = store.graph.list(query, token.as_deref()).await?;
        all.extend(page.items);
        match page.continue_token {
            Some(t) => token = Some(t),
            None => return Ok(all),
        }
    }
}

/// The store as a kill -9 leaves it with `n` sessions running: the work set up, its producing
/// sessions created by the controllers (none run: no session worker), then each set Running
/// under a lease of a process that is gone and whose lease has lapsed.
async fn crashed(dir: &Path, n: usize) -> Result<(Store, Arc<Admission>)> {
    std::fs::create_dir_all(dir)?;
    let store = Store::open(Arc::new(SqliteBackend::open(&dir.join("r5e.db")).await?)).await?;
    let admission = Arc::new(Admission::new(store.clone()));
    crate::work::setup_with(&admission, n, n + 64).await?;
    let cas = Cas::new(Arc::new(FsCas::open(dir)?));
    let config =
        runtime::Config { session_workers: 0, ..runtime::Config::new(dir.to_path_buf(), dir.join("sessions")) };
    let rt = runtime::Runtime::start(runtime::Context::new(admission.clone(), cas, config));
    let deadline = Instant::now() + Duration::from_secs(600);
    while sessions(&store).await?.len() < n {
        if Instant::now() > deadline {
            bail!("the controllers did not create {n} sessions within 600 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    rt.stop().await;
    let who = Identity::user(runtime::context::CONTROLLER, &["admins"]);
    let dead = Utc::now() - chrono::Duration::seconds(60);
    for s in sessions(&store).await? {
        let mut status: AgentSessionStatus = serde_json::from_value(s.status.clone()).unwrap_or_default();
        status.phase = Some(SessionPhase::Running);
        status.started_at = Some(dead);
        status.lease = Some(Lease {
            holder: "r5e-killed".into(),
            acquired_at: dead,
            renewed_at: dead,
            expires_at: dead + chrono::Duration::seconds(30),
            process: None,
        });
        let mut updated = s.clone();
        updated.status = serde_json::to_value(&status)?;
        admission.update_status(&who, serde_json::to_value(&updated)?).await?;
    }
    Ok((store, admission))
}

/// Start a new execution plane on the crashed store; the time until all `n` sessions are its.
async fn adopt(dir: &Path, store: &Store, admission: Arc<Admission>, n: usize) -> Result<Duration> {
    let cas = Cas::new(Arc::new(FsCas::open(dir)?));
    let config =
        runtime::Config { session_workers: n + 64, ..runtime::Config::new(dir.to_path_buf(), dir.join("sessions")) };
    let holder = config.holder.clone();
    let mut events = store.events.stream(store.events.head().await?.seq);
    let start = Instant::now();
    let rt = runtime::Runtime::start(runtime::Context::new(admission, cas, config));
    let mut adopted: HashSet<ObjectKey> = HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    while adopted.len() < n {
        let Ok(Some(event)) = tokio::time::timeout_at(deadline, events.next()).await else {
            bail!("only {} of {n} sessions were adopted within 300 s", adopted.len());
        };
        let object = &event?.data["object"];
        if object["kind"] == "AgentSession"
            && object["status"]["resumed"].as_u64().unwrap_or(0) >= 1
            && object["status"]["lease"]["holder"] == json!(holder)
        {
            let r: Resource = serde_json::from_value(object.clone())?;
            adopted.insert(r.key());
        }
    }
    let elapsed = start.elapsed();
    rt.stop().await;
    Ok(elapsed)
}

/// `n` status writes straight into Graph Storage, 64 at a time, on the store of `dir`.
async fn status_writes(dir: &Path, n: usize) -> Result<Duration> {
    std::fs::create_dir_all(dir)?;
    let store = Store::open(Arc::new(SqliteBackend::open(&dir.join("raw.db")).await?)).await?;
    let mut made = Vec::new();
    for i in 0..n {
        let r = Resource::new("Graph", Some("bench"), &format!("g-{i}"), json!({"description": "d"}));
        made.push(store.graph.create(r, "user:bench").await?);
    }
    let start = Instant::now();
    let writes = futures::stream::iter(made.into_iter().map(|mut r| {
        let graph = store.graph.clone();
        async move {
            r.status = json!({"phase": "Running"});
            graph.update_status(r, "user:bench").await
        }
    }))
    .buffer_unordered(64);
    let outcomes: Vec<_> = writes.collect().await;
    let elapsed = start.elapsed();
    for o in outcomes {
        o?;
    }
    Ok(elapsed)
}

/// The recovery row.
pub async fn run(args: &Args, dir: &Path, report: &mut Report) -> Result<()> {
    let n = args.recovery_sessions;
    eprintln!("recovery of {n} in-flight sessions after kill -9 (SQLite)");
    let ours = median(args.runs.min(3), |i| {
        let dir = dir.join(format!("recovery-{i}"));
        async move {
            let (store, admission) = crashed(&dir, n).await?;
            let t = adopt(&dir, &store, admission, n).await?;
            eprintln!("  adopted {n} sessions in {:.2} s", t.as_secs_f64());
            Ok(t)
        }
    })
    .await?;
    let baseline = median(args.runs, |i| {
        let dir = dir.join(format!("recovery-raw-{i}"));
        async move { status_writes(&dir, n).await }
    })
    .await?;
    report.add(Row {
        what: format!("adopting {n} in-flight sessions after kill -9 ({:.2} s for all)", ours.as_secs_f64()),
        unit: "sessions/s",
        ours: events_per_sec(n, ours),
        baseline_name: format!("{n} status writes straight into Graph Storage, 64 at a time"),
        baseline: events_per_sec(n, baseline),
    });
    Ok(())
}
