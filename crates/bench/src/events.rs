//! Event appends (1 and 16 writers) against plain SQLite inserts of the same rows, and
//! `verify_chain` against `sha256sum` over the same bytes.

use std::cell::RefCell;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use domain::chain::EventDraft;
use serde_json::json;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Connection, SqliteConnection};
use storage::{EventQuery, Store};
use storage_sqlite::SqliteBackend;

use crate::Args;
use crate::report::{Report, Row, median, time_command};

fn draft(i: usize) -> EventDraft {
    EventDraft {
        type_: "bench.event".into(),
        actor: "user:bench".into(),
        subject: format!("Task/bench/t{}", i % 100),
        data: json!({"i": i, "note": "a short payload of the size a decision event carries"}),
    }
}

async fn fresh_store(dir: &Path, name: &str) -> Result<(Store, SqliteBackend)> {
    let backend = SqliteBackend::open(&dir.join(name)).await?;
    Ok((Store::open(Arc::new(backend.clone())).await?, backend))
}

/// Append `n` events from `writers` concurrent tasks; returns the elapsed time.
async fn append(store: &Store, n: usize, writers: usize) -> Result<Duration> {
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
    Ok(start.elapsed())
}

/// The same rows, already sealed, inserted with plain SQL into a table of the same shape, with
/// the same durability settings, `per_tx` rows per transaction.
async fn raw_insert(
    dir: &Path,
    name: &str,
    rows: &[(i64, String, String, String, Vec<u8>)],
    per_tx: usize,
) -> Result<Duration> {
    let options = SqliteConnectOptions::new()
        .filename(dir.join(name))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full);
    let mut conn = SqliteConnection::connect_with(&options).await?;
    sqlx::query("CREATE TABLE events (seq INTEGER PRIMARY KEY, type TEXT NOT NULL, subject TEXT NOT NULL, hash TEXT NOT NULL, body BLOB NOT NULL)")
        .execute(&mut conn)
        .await?;
    let start = Instant::now();
    for chunk in rows.chunks(per_tx) {
        let mut tx = conn.begin().await?;
        for (seq, type_, subject, hash, body) in chunk {
            sqlx::query("INSERT INTO events (seq, type, subject, hash, body) VALUES ($1, $2, $3, $4, $5)")
                .bind(seq)
                .bind(type_)
                .bind(subject)
                .bind(hash)
                .bind(body.as_slice())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
    }
    Ok(start.elapsed())
}

async fn sealed_rows(store: &Store) -> Result<Vec<(i64, String, String, String, Vec<u8>)>> {
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

pub async fn run(args: &Args, dir: &Path, report: &mut Report) -> Result<()> {
    eprintln!("event log (SQLite)");
    for (writers, per_tx, label) in [(1, 1, "1 row per transaction"), (16, 256, "256 rows per transaction")] {
        let n = if writers == 1 { args.events / 4 } else { args.events };
        let sealed = RefCell::new(Vec::new());
        let ours = median(args.runs, |i| {
            let dir = dir.to_path_buf();
            let sealed = &sealed;
            async move {
                let (store, _) = fresh_store(&dir, &format!("append-{writers}-{i}.db")).await?;
                let t = append(&store, n, writers).await?;
                let rows = sealed_rows(&store).await?;
                *sealed.borrow_mut() = rows;
                Ok(t)
            }
        })
        .await?;
        let rows = &sealed.into_inner();
        let raw = median(args.runs, |i| {
            let dir = dir.to_path_buf();
            async move { raw_insert(&dir, &format!("raw-{writers}-{i}.db"), rows, per_tx).await }
        })
        .await?;
        report.add(Row {
            what: format!("event append, {writers} writer{}", if writers > 1 { "s" } else { "" }),
            unit: "events/s",
            ours: n as f64 / ours.as_secs_f64(),
            baseline_name: format!("plain SQLite insert of the same rows, {label}"),
            baseline: n as f64 / raw.as_secs_f64(),
        });
    }

    // verify_chain over a long chain, against sha256sum over the same stored bytes.
    let (store, _) = fresh_store(dir, "verify.db").await?;
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
    let count = store.events.head().await?.seq as f64;
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
    let raw = median(args.runs, |_| {
        let file = file.clone();
        async move { time_command("sha256sum", &file) }
    })
    .await?;
    report.add(Row {
        what: format!("verify_chain, {} events of {} bytes", count as u64, bytes.len() / count as usize),
        unit: "events/s",
        ours: count / ours.as_secs_f64(),
        baseline_name: "sha256sum over the same bytes (one hash, no parsing)".into(),
        baseline: count / raw.as_secs_f64(),
    });
    Ok(())
}
