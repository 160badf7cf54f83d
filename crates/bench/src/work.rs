//! Governed work items per second: Nodes whose one step is done by a scripted model, reviewed by
//! another (independent) scripted model, both reflecting, all through admission, the
//! controllers, the CAS and the audit chain of an embedded SQLite store. The baseline is the
//! floor under it: the same event rows the run wrote, inserted with plain SQL one per
//! transaction (every r5e write is its own durable transaction too).

use std::cell::Cell;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use admission::{Admission, Identity};
use anyhow::{Result, bail};
use futures::StreamExt;
use serde_json::{Value, json};
use storage::{Cas, FsCas, Store};
use storage_sqlite::SqliteBackend;

use crate::Args;
use crate::events::{events_per_sec, sealed_rows};
use crate::raw;
use crate::report::{Report, Row, median};

fn manifest(kind: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "r5e.ai/v1alpha1", "kind": kind, "metadata": {"name": name, "namespace": "bench"}, "spec": spec})
}

fn scripted(model: &str, calls: Value) -> Value {
    json!({"type": "model", "model": {"provider": "scripted", "model": model,
           "script": [{"toolCalls": calls}, {"text": "done"}]}})
}

fn reflect() -> Value {
    json!({"name": "reflect", "arguments": {"wentWell": "fast", "wentBadly": "nothing", "couldImprove": "nothing"}})
}

/// The agents and `n` Nodes of one run, applied before the clock starts.
pub(crate) async fn setup(admission: &Admission, n: usize) -> Result<()> {
    setup_with(admission, n, 64).await
}

/// [`setup`], each agent allowed `sessions` sessions at once.
pub(crate) async fn setup_with(admission: &Admission, n: usize, sessions: usize) -> Result<()> {
    let who = Identity::user("bench", &["admins"]);
    let writer = scripted(
        "writer-v1",
        json!([{"name": "submit_artifact", "arguments": {"name": "out.txt", "content": "the work"}}, reflect()]),
    );
    let reviewer =
        scripted("reviewer-v1", json!([{"name": "submit_verdict", "arguments": {"verdict": "Approve"}}, reflect()]));
    let mut docs = vec![
        manifest("Harness", "writer", writer),
        manifest("Harness", "reviewer", reviewer),
        // Scripted models stand in for two different providers, so the review is independent.
        manifest(
            "Agent",
            "writer",
            json!({"role": "Task", "harnessRef": {"name": "writer"}, "maxConcurrentSessions": sessions,
                   "capabilities": ["work"], "model": {"provider": "sim-a", "name": "writer-v1"}}),
        ),
        manifest(
            "Agent",
            "reviewer",
            json!({"role": "Reviewer", "harnessRef": {"name": "reviewer"}, "maxConcurrentSessions": sessions,
                   "model": {"provider": "sim-b", "name": "reviewer-v1"}}),
        ),
        manifest("Graph", "g", json!({"authority": {"capabilities": ["work"]}})),
    ];
    for i in 0..n {
        docs.push(manifest("Node", &format!("n{i}"), json!({"graphRef": {"name": "g"}, "description": "do it"})));
    }
    for d in docs {
        admission.create(&who, d).await?;
    }
    Ok(())
}

/// Run the work of `n` Nodes to completion; returns the time taken and the store.
async fn one_run(dir: &Path, n: usize) -> Result<(Duration, Store)> {
    std::fs::create_dir_all(dir)?;
    let store = Store::open(Arc::new(SqliteBackend::open(&dir.join("r5e.db")).await?)).await?;
    let admission = Arc::new(Admission::new(store.clone()));
    setup(&admission, n).await?;
    let cas = Cas::new(Arc::new(FsCas::open(dir)?));
    let config = runtime::Config::new(dir.to_path_buf(), dir.join("sessions"));
    let ctx = runtime::Context::new(admission, cas, config);
    let after = store.events.head().await?.seq;
    let mut events = store.events.stream(after);
    let start = Instant::now();
    let rt = runtime::Runtime::start(ctx);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    loop {
        let Ok(Some(event)) = tokio::time::timeout_at(deadline, events.next()).await else {
            bail!("the work did not finish within 600 s");
        };
        let object = &event?.data["object"];
        if object["kind"] == "Graph" {
            match object["status"]["phase"].as_str() {
                Some("Succeeded") => break,
                Some("Failed" | "Blocked") => {
                    let n0 = store.graph.get(&domain::ObjectKey::new("Node", "bench", "n0")).await?;
                    bail!("the benchmark work ended {}; n0: {}", object["status"], n0.status)
                }
                _ => {}
            }
        }
    }
    let elapsed = start.elapsed();
    rt.stop().await;
    let stats = store.events.stats();
    eprintln!(
        "  {} events in {} commits ({:.1} a commit)",
        stats.entries,
        stats.batches,
        stats.entries as f64 / stats.batches.max(1) as f64
    );
    Ok((elapsed, store))
}

pub async fn run(args: &Args, dir: &Path, report: &mut Report) -> Result<()> {
    eprintln!("governed work items (SQLite, scripted provider)");
    let n = args.work_items;
    let rows = Cell::new(Vec::new());
    let written = Cell::new(0usize);
    let ours = median(args.runs.min(3), |i| {
        let dir = dir.join(format!("work-{i}"));
        let (rows, written) = (&rows, &written);
        async move {
            let (t, store) = one_run(&dir, n).await?;
            let all = sealed_rows(&store).await?;
            let setup_events = all.iter().position(|r| r.1 == "resource.updated").unwrap_or(0);
            written.set(all.len() - setup_events);
            rows.set(all[setup_events..].to_vec());
            Ok(t)
        }
    })
    .await?;
    let rows = rows.into_inner();
    let baseline = median(args.runs, |i| {
        let path = dir.join(format!("work-raw-{i}.db"));
        let rows = &rows;
        async move { raw::sqlite_insert(&path, rows, 1).await }
    })
    .await?;
    report.add(Row {
        what: format!("governed work items ({n} Nodes: task, session, artifact, independent review, 2 reflections)"),
        unit: "items/s",
        ours: events_per_sec(n, ours),
        baseline_name: format!("plain SQLite insert of the {} event rows they wrote, 1 per transaction", written.get()),
        baseline: events_per_sec(n, baseline),
    });
    Ok(())
}

/// Run the work of `n` Nodes with `replicas` execution planes on one Postgres database, each with
/// its own connection pool, admission, CAS handle (the database CAS) and lease holder, as
/// separate `r5e serve` processes would have; returns the time taken and the first one's store.
async fn one_replicated_run(
    admin: &sqlx::postgres::PgConnectOptions,
    dir: &Path,
    n: usize,
    replicas: usize,
) -> Result<(Duration, Store)> {
    let options = crate::fresh_pg(admin).await?;
    let mut planes = Vec::new();
    for r in 0..replicas {
        let backend =
            storage_postgres::PostgresBackend::open_with(options.clone(), storage_postgres::Options::default()).await?;
        let cas = Cas::new(Arc::new(backend.cas()));
        let store = Store::open(Arc::new(backend)).await?;
        let work = dir.join(format!("sessions-{r}"));
        planes.push((store, cas, work));
    }
    let first = planes[0].0.clone();
    setup(&Admission::new(first.clone()), n).await?;
    let after = first.events.head().await?.seq;
    let mut events = first.events.stream(after);
    let cpu = (cpu_seconds(|comm| comm == "postgres"), cpu_seconds(|comm| comm == "r5e-bench"));
    let start = Instant::now();
    let mut running = Vec::new();
    for (store, cas, work) in planes {
        let config = runtime::Config::new(dir.to_path_buf(), work);
        running.push(runtime::Runtime::start(runtime::Context::new(Arc::new(Admission::new(store)), cas, config)));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    loop {
        let Ok(Some(event)) = tokio::time::timeout_at(deadline, events.next()).await else {
            bail!("the replicated work did not finish within 600 s");
        };
        let object = &event?.data["object"];
        if object["kind"] == "Graph" {
            match object["status"]["phase"].as_str() {
                Some("Succeeded") => break,
                Some("Failed" | "Blocked") => bail!("the replicated work ended {}", object["status"]),
                _ => {}
            }
        }
    }
    let elapsed = start.elapsed();
    let (postgres, bench) =
        (cpu_seconds(|comm| comm == "postgres") - cpu.0, cpu_seconds(|comm| comm == "r5e-bench") - cpu.1);
    let events = first.events.head().await?.seq - after;
    eprintln!(
        "  {replicas} replica(s): {:.0} events/s on the chain; CPU over {:.1} s: Postgres {:.2} cores, r5e {:.2} cores (of {})",
        events as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64(),
        postgres / elapsed.as_secs_f64(),
        bench / elapsed.as_secs_f64(),
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    for rt in running {
        rt.stop().await;
    }
    Ok((elapsed, first))
}

/// CPU seconds used so far by the processes of this machine whose command name passes `name`
/// (user and system time from `/proc/<pid>/stat`, at the usual 100 ticks a second).
fn cpu_seconds(name: impl Fn(&str) -> bool) -> f64 {
    let mut ticks = 0u64;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // `pid (comm) state ppid ...`: comm may hold spaces, so split at the last ')'.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        if !name(&stat[open + 1..close]) {
            continue;
        }
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        // utime and stime are fields 14 and 15 of the line, 12 and 13 after the state.
        let used = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
        ticks += used(11) + used(12);
    }
    ticks as f64 / 100.0
}

/// Governed work items per second on one Postgres with 1, 2 and 3 replicas, beside the same event
/// rows inserted into Postgres with plain SQL, one per transaction.
pub async fn replicas(
    args: &Args,
    admin: &sqlx::postgres::PgConnectOptions,
    dir: &Path,
    report: &mut Report,
) -> Result<()> {
    let n = args.work_items;
    for replicas in 1..=3 {
        eprintln!("governed work items (Postgres, {replicas} replica(s))");
        let drafts = Cell::new(Vec::new());
        let ours = median(args.runs.min(3), |i| {
            let dir = dir.join(format!("replicas-{replicas}-{i}"));
            let drafts = &drafts;
            async move {
                std::fs::create_dir_all(&dir)?;
                let (t, store) = one_replicated_run(admin, &dir, n, replicas).await?;
                let all = store.events.query_raw(&storage::EventQuery::default()).await?;
                let events: Vec<domain::chain::Event> = all.iter().map(|s| s.event()).collect::<Result<_, _>>()?;
                let setup_events = events.iter().position(|e| e.type_ == "resource.updated").unwrap_or(0);
                drafts.set(
                    events[setup_events..]
                        .iter()
                        .map(|e| domain::chain::EventDraft {
                            type_: e.type_.clone(),
                            actor: e.actor.clone(),
                            subject: e.subject.clone(),
                            data: e.data.clone(),
                        })
                        .collect(),
                );
                Ok(t)
            }
        })
        .await?;
        let drafts = drafts.into_inner();
        let baseline = median(args.runs, |_| {
            let drafts = &drafts;
            async move { raw::postgres_insert(&crate::fresh_pg(admin).await?, drafts, 1).await }
        })
        .await?;
        report.add(Row {
            what: format!("governed work items on one Postgres, {replicas} replica(s) ({n} Nodes, database CAS)"),
            unit: "items/s",
            ours: events_per_sec(n, ours),
            baseline_name: format!(
                "plain Postgres insert of the {} event rows they wrote, 1 per transaction",
                drafts.len()
            ),
            baseline: events_per_sec(n, baseline),
        });
    }
    Ok(())
}
