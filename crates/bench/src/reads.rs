//! Read latency on Postgres with 100k and 1M resources: `query_by_labels` and a depth-5
//! `traverse`, each beside the same SQL run directly. Reported as queries per second of one
//! client (1 / median latency), so that higher is better in every row of the table.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use domain::ObjectKey;
use sqlx::PgPool;
use sqlx::postgres::PgConnectOptions;
use storage::{Direction, Store, TraverseQuery};
use storage_postgres::{Options, PostgresBackend};

use crate::report::{Report, Row};
use crate::{Args, fresh_pg};

/// Nodes `n1..nN` in namespace `bench`, each labelled with one of 1000 teams, each depending on
/// the previous Node and referencing one of N/1000 Graphs. Written with SQL directly: these
/// figures are about reads, and a million governed writes would only slow the benchmark down.
async fn populate(pool: &PgPool, n: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO resources (kind, namespace, name, uid, resource_version, labels, body) \
         SELECT 'Node', 'bench', 'n' || i, 'node-' || i, i, \
                jsonb_build_object('team', 'team-' || (i % 1000), 'tier', CASE WHEN i % 2 = 0 THEN 'gold' ELSE 'silver' END), \
                jsonb_build_object('apiVersion', 'r5e.ai/v1alpha1', 'kind', 'Node', \
                    'metadata', jsonb_build_object('name', 'n' || i, 'namespace', 'bench', 'resourceVersion', i::text), \
                    'spec', jsonb_build_object('graphRef', jsonb_build_object('name', 'g' || (i / 1000)), \
                                               'dependsOn', jsonb_build_array('n' || (i - 1)))) \
         FROM generate_series(1, $1) AS i",
    )
    .bind(n)
    .execute(pool)
    .await?;
    sqlx::query(
        "INSERT INTO resources (kind, namespace, name, uid, resource_version, labels, body) \
         SELECT 'Graph', 'bench', 'g' || j, 'graph-' || j, 0, '{}', \
                jsonb_build_object('apiVersion', 'r5e.ai/v1alpha1', 'kind', 'Graph', \
                    'metadata', jsonb_build_object('name', 'g' || j, 'namespace', 'bench')) \
         FROM generate_series(0, $1 / 1000) AS j",
    )
    .bind(n)
    .execute(pool)
    .await?;
    sqlx::query(
        "INSERT INTO edges SELECT 'Node', 'bench', 'n' || i, 'spec.dependsOn', 'Node', 'bench', 'n' || (i - 1) \
         FROM generate_series(2, $1) AS i",
    )
    .bind(n)
    .execute(pool)
    .await?;
    sqlx::query(
        "INSERT INTO edges SELECT 'Node', 'bench', 'n' || i, 'spec.graphRef', 'Graph', 'bench', 'g' || (i / 1000) \
         FROM generate_series(1, $1) AS i",
    )
    .bind(n)
    .execute(pool)
    .await?;
    sqlx::query("ANALYZE").execute(pool).await?;
    Ok(())
}

/// Median of `samples` timings of `f(i)`.
async fn median_latency<F, Fut>(samples: usize, mut f: F) -> Result<Duration>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let mut times = Vec::with_capacity(samples);
    for i in 0..samples {
        let start = Instant::now();
        f(i).await?;
        times.push(start.elapsed());
    }
    times.sort();
    Ok(times[samples / 2])
}

const RAW_TRAVERSE: &str = "WITH RECURSIVE walk(kind, namespace, name, depth) AS ( \
       SELECT 'Node'::text, 'bench'::text, $1::text, 0 \
       UNION SELECT e.to_kind, e.to_namespace, e.to_name, w.depth + 1 FROM walk w JOIN edges e \
             ON e.kind = w.kind AND e.namespace = w.namespace AND e.name = w.name WHERE w.depth < 5) \
     SELECT r.kind, r.namespace, r.name, r.body::text FROM (SELECT kind, namespace, name, MIN(depth) AS depth FROM walk WHERE depth > 0 \
             GROUP BY kind, namespace, name) d \
     JOIN resources r ON r.kind = d.kind AND r.namespace = d.namespace AND r.name = d.name";

pub async fn postgres(args: &Args, admin: &PgConnectOptions, report: &mut Report) -> Result<()> {
    let sizes: &[i64] = if args.quick { &[100_000] } else { &[100_000, 1_000_000] };
    for &n in sizes {
        eprintln!("reads on Postgres, {n} resources (populating)");
        let options = fresh_pg(admin).await?;
        let backend = PostgresBackend::open_with(options, Options::default()).await?;
        let pool = backend.pool().clone();
        populate(&pool, n).await?;
        let store = Store::open(Arc::new(backend)).await?;
        let samples = 50;
        let team = |i: usize| format!("team-{}", (i * 37) % 1000);

        let ours = median_latency(samples, |i| {
            let store = store.clone();
            let selector = format!("team={}", team(i)).parse().expect("selector parses");
            async move {
                let hits = store.graph.query_by_labels(&selector, Some("Node"), Some("bench")).await?;
                anyhow::ensure!(hits.len() as i64 >= n / 1000 - 1);
                Ok(())
            }
        })
        .await?;
        let raw = median_latency(samples, |i| {
            let pool = pool.clone();
            let filter = serde_json::json!({ "team": team(i) }).to_string();
            async move {
                let rows: Vec<(String, String, String, String)> = sqlx::query_as(
                    "SELECT kind, namespace, name, body::text FROM resources WHERE kind = 'Node' AND namespace = 'bench' \
                     AND labels @> $1::jsonb ORDER BY kind, namespace, name",
                )
                .bind(filter)
                .fetch_all(&pool)
                .await?;
                anyhow::ensure!(rows.len() as i64 >= n / 1000 - 1);
                Ok(())
            }
        })
        .await?;
        report.add(Row {
            what: format!("Postgres query_by_labels, {n} resources, {} hits (median {:.2} ms)", n / 1000, ms(ours)),
            unit: "queries/s",
            ours: 1.0 / ours.as_secs_f64(),
            baseline_name: "the same indexed SQL, run directly".into(),
            baseline: 1.0 / raw.as_secs_f64(),
        });

        let start = |i: usize| format!("n{}", 1000 + (i * 7919) % (n as usize - 1000));
        let ours = median_latency(samples, |i| {
            let store = store.clone();
            let key = ObjectKey::new("Node", "bench", &start(i));
            async move {
                let q = TraverseQuery { direction: Direction::Outgoing, edges: vec![], max_depth: 5 };
                let hits = store.graph.traverse(&key, &q).await?;
                anyhow::ensure!(hits.len() >= 6, "expected 5 Nodes and a Graph, got {}", hits.len());
                Ok(())
            }
        })
        .await?;
        let raw = median_latency(samples, |i| {
            let pool = pool.clone();
            let name = start(i);
            async move {
                let rows: Vec<(String, String, String, String)> =
                    sqlx::query_as(RAW_TRAVERSE).bind(name).fetch_all(&pool).await?;
                anyhow::ensure!(rows.len() >= 6);
                Ok(())
            }
        })
        .await?;
        report.add(Row {
            what: format!("Postgres traverse depth 5, {n} resources (median {:.2} ms)", ms(ours)),
            unit: "queries/s",
            ours: 1.0 / ours.as_secs_f64(),
            baseline_name: "the same recursive SQL, run directly".into(),
            baseline: 1.0 / raw.as_secs_f64(),
        });
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
