//! The embedded backend: Graph Storage and the Event Log in one SQLite file (WAL mode, full
//! fsync), the default when r5e runs with no database configured.
//!
//! Writes come only through [`storage::LogBackend::commit`], which runs each batch in one
//! `BEGIN IMMEDIATE` transaction: it takes SQLite's write lock first, reads the chain head under
//! it, and writes every event with its resource rows, so several processes on one file still
//! build one chain.

mod selector_sql;

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use domain::chain::ChainHead;
use domain::{Digest, ObjectKey, Resource};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};
use storage::{
    Committed, Direction, Entry, Error, EventQuery, GraphBackend, Hit, ListQuery, LogBackend, Result, StoredEvent,
    TraverseQuery, Write,
};

/// The SQLite backend.
#[derive(Clone, Debug)]
pub struct SqliteBackend {
    pool: SqlitePool,
}

fn db(e: sqlx::Error) -> Error {
    Error::unavailable(e)
}

impl SqliteBackend {
    /// Open (creating if needed) the database file at `path` and apply migrations.
    pub async fn open(path: &Path) -> Result<SqliteBackend> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::Unavailable(format!("cannot create {}: {e}", dir.display())))?;
        }
        let options = SqliteConnectOptions::from_str("sqlite:")
            .map_err(db)?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|e| Error::Unavailable(format!("cannot open {}: {e}", path.display())))?;
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .map_err(|e| Error::Unavailable(format!("cannot migrate {}: {e}", path.display())))?;
        Ok(SqliteBackend { pool })
    }

    /// The underlying pool (for tests and benchmarks that need raw SQL on the same file).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

type Tx = sqlx::Transaction<'static, Sqlite>;

async fn read_head(tx: &mut Tx) -> Result<ChainHead> {
    let row = sqlx::query("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut **tx)
        .await
        .map_err(db)?;
    match row {
        None => Ok(ChainHead::GENESIS),
        Some(row) => {
            let hash: String = row.get(1);
            let hash = hash.parse::<Digest>().map_err(|e| Error::Corrupt(format!("stored head hash: {e}")))?;
            Ok(ChainHead { seq: row.get::<i64, _>(0) as u64, hash })
        }
    }
}

async fn stored_version(tx: &mut Tx, key: &ObjectKey) -> Result<Option<u64>> {
    let rv: Option<i64> =
        sqlx::query_scalar("SELECT resource_version FROM resources WHERE kind = $1 AND namespace = $2 AND name = $3")
            .bind(&key.kind)
            .bind(&key.namespace)
            .bind(&key.name)
            .fetch_optional(&mut **tx)
            .await
            .map_err(db)?;
    Ok(rv.map(|v| v as u64))
}

async fn delete_rows(tx: &mut Tx, key: &ObjectKey) -> Result<()> {
    for sql in [
        "DELETE FROM resources WHERE kind = $1 AND namespace = $2 AND name = $3",
        "DELETE FROM labels WHERE kind = $1 AND namespace = $2 AND name = $3",
        "DELETE FROM edges WHERE kind = $1 AND namespace = $2 AND name = $3",
    ] {
        sqlx::query(sql).bind(&key.kind).bind(&key.namespace).bind(&key.name).execute(&mut **tx).await.map_err(db)?;
    }
    Ok(())
}

async fn write_rows(tx: &mut Tx, write: &Write) -> Result<()> {
    match write {
        Write::Remove { object } => delete_rows(tx, &object.key()).await,
        Write::Put { object, references } => {
            let key = object.key();
            delete_rows(tx, &key).await?;
            let body = serde_json::to_string(object).map_err(|e| Error::Invalid(e.to_string()))?;
            sqlx::query("INSERT INTO resources (kind, namespace, name, uid, resource_version, body) VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(&key.kind)
                .bind(&key.namespace)
                .bind(&key.name)
                .bind(object.metadata.uid.as_deref().unwrap_or_default())
                .bind(object.resource_version().unwrap_or_default() as i64)
                .bind(body)
                .execute(&mut **tx)
                .await
                .map_err(db)?;
            for (k, v) in &object.metadata.labels {
                sqlx::query("INSERT INTO labels (kind, namespace, name, key, value) VALUES ($1, $2, $3, $4, $5)")
                    .bind(&key.kind)
                    .bind(&key.namespace)
                    .bind(&key.name)
                    .bind(k)
                    .bind(v)
                    .execute(&mut **tx)
                    .await
                    .map_err(db)?;
            }
            for r in references {
                sqlx::query(
                    "INSERT OR IGNORE INTO edges (kind, namespace, name, edge, to_kind, to_namespace, to_name) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&key.kind)
                .bind(&key.namespace)
                .bind(&key.name)
                .bind(&r.edge)
                .bind(&r.target.kind)
                .bind(&r.target.namespace)
                .bind(&r.target.name)
                .execute(&mut **tx)
                .await
                .map_err(db)?;
            }
            Ok(())
        }
    }
}

fn parse_resource(body: &str) -> Result<Resource> {
    serde_json::from_str(body).map_err(|e| Error::Corrupt(format!("stored resource cannot be parsed: {e}")))
}

#[async_trait]
impl LogBackend for SqliteBackend {
    async fn commit(&self, batch: Vec<Entry>) -> Result<Vec<Result<Committed>>> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
        let head = read_head(&mut tx).await?;
        let mut versions = HashMap::new();
        for key in storage::mutated_keys(&batch) {
            let v = stored_version(&mut tx, &key).await?;
            versions.insert(key, v);
        }
        let plan = storage::plan(head, batch, versions);
        for p in &plan.prepared {
            let event = &p.sealed.event;
            sqlx::query("INSERT INTO events (seq, type, subject, hash, body) VALUES ($1, $2, $3, $4, $5)")
                .bind(event.seq as i64)
                .bind(&event.type_)
                .bind(&event.subject)
                .bind(event.hash.to_string())
                .bind(p.sealed.bytes.as_slice())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            if let Some(write) = &p.write {
                write_rows(&mut tx, write).await?;
            }
        }
        tx.commit().await.map_err(db)?;
        Ok(plan.results)
    }

    async fn read(&self, query: &EventQuery) -> Result<Vec<StoredEvent>> {
        let mut q = QueryBuilder::<Sqlite>::new("SELECT seq, body FROM events WHERE seq >= ");
        q.push_bind(query.from_seq.unwrap_or(1) as i64);
        if let Some(to) = query.to_seq {
            q.push(" AND seq <= ").push_bind(to as i64);
        }
        if !query.types.is_empty() {
            q.push(" AND type IN (");
            let mut list = q.separated(", ");
            for t in &query.types {
                list.push_bind(t.clone());
            }
            q.push(")");
        }
        if let Some(s) = &query.subject {
            q.push(" AND subject = ").push_bind(s.clone());
        }
        q.push(" ORDER BY seq LIMIT ").push_bind(query.limit.map_or(-1, |l| l as i64));
        let rows = q.build().fetch_all(&self.pool).await.map_err(db)?;
        Ok(rows.into_iter().map(|r| StoredEvent { seq: r.get::<i64, _>(0) as u64, bytes: r.get(1) }).collect())
    }

    async fn head(&self) -> Result<ChainHead> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let head = read_head(&mut tx).await?;
        tx.commit().await.map_err(db)?;
        Ok(head)
    }

    fn wakeups(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        // One process per file is the norm; other processes are picked up by polling.
        None
    }
}

#[async_trait]
impl GraphBackend for SqliteBackend {
    async fn get(&self, key: &ObjectKey) -> Result<Option<Resource>> {
        let body: Option<String> =
            sqlx::query_scalar("SELECT body FROM resources WHERE kind = $1 AND namespace = $2 AND name = $3")
                .bind(&key.kind)
                .bind(&key.namespace)
                .bind(&key.name)
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
        body.as_deref().map(parse_resource).transpose()
    }

    async fn list(&self, query: &ListQuery) -> Result<(Vec<Resource>, u64)> {
        // One read transaction: the head and the rows come from the same snapshot.
        let mut tx = self.pool.begin().await.map_err(db)?;
        let head = read_head(&mut tx).await?;
        let mut q = QueryBuilder::<Sqlite>::new("SELECT r.body FROM resources r WHERE 1 = 1");
        if let Some(kind) = &query.kind {
            q.push(" AND r.kind = ").push_bind(kind.clone());
        }
        if let Some(ns) = &query.namespace {
            q.push(" AND r.namespace = ").push_bind(ns.clone());
        }
        if let Some(after) = &query.after {
            q.push(" AND (r.kind, r.namespace, r.name) > (");
            q.push_bind(after.kind.clone())
                .push(", ")
                .push_bind(after.namespace.clone())
                .push(", ")
                .push_bind(after.name.clone());
            q.push(")");
        }
        selector_sql::push(&mut q, &query.selector);
        q.push(" ORDER BY r.kind, r.namespace, r.name LIMIT ").push_bind(query.limit.map_or(-1, |l| l as i64));
        let rows = q.build().fetch_all(&mut *tx).await.map_err(db)?;
        tx.commit().await.map_err(db)?;
        let items = rows.iter().map(|r| parse_resource(r.get(0))).collect::<Result<Vec<_>>>()?;
        Ok((items, head.seq))
    }

    async fn traverse(&self, start: &ObjectKey, query: &TraverseQuery) -> Result<Vec<Hit>> {
        let mut q = QueryBuilder::<Sqlite>::new("WITH RECURSIVE walk(kind, namespace, name, depth) AS (SELECT ");
        q.push_bind(start.kind.clone())
            .push(", ")
            .push_bind(start.namespace.clone())
            .push(", ")
            .push_bind(start.name.clone());
        q.push(", 0");
        let steps: &[(&str, &str)] = match query.direction {
            Direction::Outgoing => &[("e.to_", "e.")],
            Direction::Incoming => &[("e.", "e.to_")],
            Direction::Both => &[("e.to_", "e."), ("e.", "e.to_")],
        };
        for (next, from) in steps {
            q.push(format!(
                " UNION SELECT {next}kind, {next}namespace, {next}name, w.depth + 1 FROM walk w JOIN edges e \
                 ON {from}kind = w.kind AND {from}namespace = w.namespace AND {from}name = w.name WHERE w.depth < "
            ));
            q.push_bind(query.max_depth as i64);
            if !query.edges.is_empty() {
                q.push(" AND e.edge IN (");
                let mut list = q.separated(", ");
                for e in &query.edges {
                    list.push_bind(e.clone());
                }
                q.push(")");
            }
        }
        q.push(
            ") SELECT r.body, MIN(w.depth) AS d FROM walk w JOIN resources r \
             ON r.kind = w.kind AND r.namespace = w.namespace AND r.name = w.name \
             WHERE w.depth > 0 GROUP BY r.kind, r.namespace, r.name ORDER BY d, r.kind, r.namespace, r.name",
        );
        let rows = q.build().fetch_all(&self.pool).await.map_err(db)?;
        let mut hits = Vec::with_capacity(rows.len());
        for row in rows {
            let resource = parse_resource(row.get(0))?;
            if resource.key() != *start {
                hits.push(Hit { resource, depth: row.get::<i64, _>(1) as u32 });
            }
        }
        Ok(hits)
    }
}
