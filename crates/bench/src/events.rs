//! Event appends (1 and 16 writers) on each backend against plain inserts of the same rows, and
//! `verify_chain` against `sha256sum` over the same bytes.

use std::cell::RefCell;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use domain::chain::EventDraft;
use serde_json::json;
use sqlx::postgres::PgConnectOptions;
use storage::{Backend, EventQuery, Store};
use storage_postgres::{Options, PostgresBackend};
use storage_sqlite::SqliteBackend;

use crate::report::{Report, Row, median, time_command};
use crate::{Args, fresh_pg, raw};

/// A decision-sized event.
pub fn draft(i: usize) -> EventDraft {
    EventDraft {
        type_: "bench.event".into(),
        actor: "user:bench".into(),
        subject: format!("Task/bench/t{}", i % 100),
        data: json!({"i": i, "note": "a short payload of the size a decision event carries"}),
    }
}

/// Append `n` events from `writers` concurrent tasks; returns the elapsed time.
async fn append(store: &Store, n: usize, writers: usize) -> Result<Duration> {
    let before = store.events.stats();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in (w..n).step_by(writers) {
                store.events.append(draft(i)).await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let elapsed = start.elapsed();
    let after = store.events.stats();
    eprintln!(
        "    {writers} writers: {:.1} events per commit",
        (after.entries - before.entries) as f64 / (after.batches - before.batches).max(1) as f64
    );
    Ok(elapsed)
}

pub(crate) async fn sealed_rows(store: &Store) -> Result<Vec<raw::Row>> {
    Ok(store
        .events
        .query_raw(&EventQuery::default())
        .await?
        .into_iter()
        .map(|s| {
            let e = s.event().expect("stored events parse");
            (s.seq as i64, e.type_, e.subject, e.hash.to_string(), s.bytes)
        })
        .collect())
}

pub(crate) fn events_per_sec(n: usize, t: Duration) -> f64 {
    n as f64 / t.as_secs_f64()
}

fn writers_label(writers: usize) -> String {
    format!("{writers} writer{}", if writers > 1 { "s" } else { "" })
}

/// Appends on SQLite against plain inserts of the rows r5e wrote.
pub async fn sqlite(args: &Args, dir: &Path, report: &mut Report) -> Result<()> {
    eprintln!("event log (SQLite)");
    for writers in [1, 16] {
        let n = if writers == 1 { args.events / 4 } else { args.events };
        let rows = RefCell::new(Vec::new());
        let ours = median(args.runs, |i| {
            let path = dir.join(format!("append-{writers}-{i}.db"));
            let rows = &rows;
            async move {
                let store = Store::open(Arc::new(SqliteBackend::open(&path).await?)).await?;
                let t = append(&store, n, writers).await?;
                let sealed = sealed_rows(&store).await?;
                *rows.borrow_mut() = sealed;
                Ok(t)
            }
        })
        .await?;
        let rows = rows.into_inner();
        for per_tx in if writers == 1 { vec![1] } else { vec![writers, 256] } {
            let baseline = median(args.runs, |i| {
                let path = dir.join(format!("raw-{writers}-{per_tx}-{i}.db"));
                let rows = &rows;
                async move { raw::sqlite_insert(&path, rows, per_tx).await }
            })
            .await?;
            report.add(Row {
                what: format!("SQLite event append, {}", writers_label(writers)),
                unit: "events/s",
                ours: events_per_sec(n, ours),
                baseline_name: format!("plain SQLite insert of the same rows, {per_tx} per transaction"),
                baseline: events_per_sec(n, baseline),
            });
        }
    }
    Ok(())
}

/// Appends on Postgres against a plain batched insert of the same rows with the same hashing.
pub async fn postgres(args: &Args, admin: &PgConnectOptions, report: &mut Report) -> Result<()> {
    eprintln!("event log (Postgres)");
    for writers in [1, 16] {
        let n = if writers == 1 { args.events / 4 } else { args.events };
        let ours = median(args.runs, |_| async move {
            let options = fresh_pg(admin).await?;
            let backend: Arc<dyn Backend> = Arc::new(PostgresBackend::open_with(options, Options::default()).await?);
            let store = Store::open(backend).await?;
            append(&store, n, writers).await
        })
        .await?;
        let drafts: Vec<EventDraft> = (0..n).map(draft).collect();
        for per_tx in if writers == 1 { vec![1] } else { vec![writers, 256] } {
            let drafts = &drafts;
            let baseline = median(args.runs, |_| async move {
                let options = fresh_pg(admin).await?;
                raw::postgres_insert(&options, drafts, per_tx).await
            })
            .await?;
            report.add(Row {
                what: format!("Postgres event append, {}", writers_label(writers)),
                unit: "events/s",
                ours: events_per_sec(n, ours),
                baseline_name: format!("plain batched insert, same rows and hashing, {per_tx} per transaction"),
                baseline: events_per_sec(n, baseline),
            });
        }
    }
    Ok(())
}

/// `verify_chain` over a long chain, against `sha256sum` over the same stored bytes.
pub async fn verify(args: &Args, dir: &Path, report: &mut Report) -> Result<()> {
    eprintln!("verify_chain (SQLite)");
    let store = Store::open(Arc::new(SqliteBackend::open(&dir.join("verify.db")).await?)).await?;
    let batch: Vec<EventDraft> = (0..1000).map(draft).collect();
    for _ in 0..args.verify_events / 1000 {
        store.events.append_all(batch.clone()).await?;
    }
    let export = dir.join("verify.jsonl");
    let mut bytes = Vec::new();
    for s in store.events.query_raw(&EventQuery::default()).await? {
        bytes.extend_from_slice(&s.bytes);
        bytes.push(b'\n');
    }
    std::fs::write(&export, &bytes)?;
    let count = store.events.head().await?.seq as usize;
    let ours = median(args.runs, |_| {
        let store = store.clone();
        async move {
            let start = Instant::now();
            store.events.verify_chain().await?;
            Ok(start.elapsed())
        }
    })
    .await?;
    let file = vec![export.display().to_string()];
    let baseline = median(args.runs, |_| {
        let file = file.clone();
        async move { time_command("sha256sum", &file) }
    })
    .await?;
    report.add(Row {
        what: format!("verify_chain, {count} events of {} bytes", bytes.len() / count.max(1)),
        unit: "events/s",
        ours: events_per_sec(count, ours),
        baseline_name: "sha256sum over the same bytes (one hash, no parsing)".into(),
        baseline: events_per_sec(count, baseline),
    });
    Ok(())
}
