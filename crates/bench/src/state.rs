//! The state checks on a store of `--state-resources` resources, each created, given two status
//! writes, and each write preceded by a decision event (six events per resource, as admission
//! writes them): the startup check (`Store::check_stored`: per resource one point read of the
//! event its resourceVersion names and one indexed look for a later write) beside listing the
//! same resources, and `verify_state` (the chain verified and replayed, every resource compared)
//! beside `verify_chain` over the same log.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Result, ensure};
use domain::Resource;
use domain::chain::EventDraft;
use serde_json::json;
use sqlx::postgres::PgConnectOptions;
use storage::{Backend, ListQuery, Store};
use storage_postgres::{Options, PostgresBackend};
use storage_sqlite::SqliteBackend;

use crate::report::{Report, Row, median};
use crate::{Args, fresh_pg};

/// Resources written concurrently at once while populating.
const CHUNK: usize = 500;

fn decision(name: &str) -> EventDraft {
    EventDraft {
        type_: "admission.decision".into(),
        actor: "user:bench".into(),
        subject: format!("Task/bench/{name}"),
        data: json!({"verdict": "allow", "operation": "update", "policies": ["r5e:admins"]}),
    }
}

fn task(i: usize) -> Resource {
    let mut r = Resource::new(
        "Task",
        Some("bench"),
        &format!("t{i}"),
        json!({"nodeRef": {"name": format!("n{}", i / 10)}, "graphRef": {"name": "g"}, "step": "write",
               "authority": {"capabilities": ["fs.read", "fs.write"], "budgets": {"tool_calls": 100}}}),
    );
    r.metadata.labels = [("team".to_string(), format!("team-{}", i % 100))].into();
    r
}

async fn populate(store: &Store, n: usize) -> Result<()> {
    for start in (0..n).step_by(CHUNK) {
        let names: Vec<usize> = (start..(start + CHUNK).min(n)).collect();
        let writes = names.iter().map(|&i| async move {
            let name = format!("t{i}");
            store.events.append(decision(&name)).await?;
            let mut r = store.graph.create(task(i), "user:bench").await?;
            for phase in ["Running", "Succeeded"] {
                store.events.append(decision(&name)).await?;
                r.status = json!({"phase": phase, "attempts": 1, "message": format!("{phase} after review")});
                r = store.graph.update_status(r, "user:system:controller").await?;
            }
            anyhow::Ok(())
        });
        futures::future::try_join_all(writes).await?;
    }
    Ok(())
}

/// Every resource, a page at a time, as the check reads them.
async fn list_all(store: &Store) -> Result<usize> {
    let mut query = ListQuery { limit: Some(1000), ..ListQuery::default() };
    let mut count = 0;
    loop {
        let page = store.graph.list(query.clone(), None).await?;
        count += page.items.len();
        if page.continue_token.is_none() {
            return Ok(count);
        }
        query.after = page.items.last().map(Resource::key);
    }
}

async fn measure(args: &Args, label: &str, backend: Arc<dyn Backend>, report: &mut Report) -> Result<()> {
    let n = args.state_resources;
    eprintln!("state checks ({label}, {n} resources)");
    let store = Store::open(backend).await?;
    populate(&store, n).await?;
    let events = store.events.head().await?.seq as usize;
    let per_sec = |count: usize, d: std::time::Duration| count as f64 / d.as_secs_f64();

    let check = median(args.runs, |_| {
        let store = store.clone();
        async move {
            let start = Instant::now();
            let checked = store.check_stored().await?;
            ensure!(checked.mismatches.is_empty() && checked.resources as usize == n, "{checked:?}");
            Ok(start.elapsed())
        }
    })
    .await?;
    let list = median(args.runs, |_| {
        let store = store.clone();
        async move {
            let start = Instant::now();
            ensure!(list_all(&store).await? == n);
            Ok(start.elapsed())
        }
    })
    .await?;
    report.add(Row {
        what: format!("{label} startup state check, {n} resources (median {:.2} s)", check.as_secs_f64()),
        unit: "resources/s",
        ours: per_sec(n, check),
        baseline_name: "listing the same resources in the same pages".into(),
        baseline: per_sec(n, list),
    });

    let replay = median(args.runs, |_| {
        let store = store.clone();
        async move {
            let start = Instant::now();
            let r = store.verify_state().await?;
            ensure!(r.mismatches.is_empty() && r.resources as usize == n, "{:?}", r.mismatches);
            Ok(start.elapsed())
        }
    })
    .await?;
    let chain = median(args.runs, |_| {
        let store = store.clone();
        async move {
            let start = Instant::now();
            store.events.verify_chain().await?;
            Ok(start.elapsed())
        }
    })
    .await?;
    report.add(Row {
        what: format!("{label} verify --state, {n} resources, {events} events (median {:.2} s)", replay.as_secs_f64()),
        unit: "events/s",
        ours: per_sec(events, replay),
        baseline_name: "verify_chain over the same log (no state)".into(),
        baseline: per_sec(events, chain),
    });
    Ok(())
}

/// The state rows on SQLite, and on Postgres when there is a server.
pub async fn run(args: &Args, dir: &std::path::Path, pg: Option<&PgConnectOptions>, report: &mut Report) -> Result<()> {
    measure(args, "SQLite", Arc::new(SqliteBackend::open(&dir.join("state.db")).await?), report).await?;
    if let Some(admin) = pg {
        let options = fresh_pg(admin).await?;
        measure(args, "Postgres", Arc::new(PostgresBackend::open_with(options, Options::default()).await?), report)
            .await?;
    }
    Ok(())
}
