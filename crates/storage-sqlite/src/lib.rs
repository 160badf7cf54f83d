//! The embedded backend: Graph Storage and the Event Log in one SQLite file (WAL mode, full
//! fsync), the default when r5e runs with no database configured.
//!
//! Writes come only through [`storage::LogBackend::commit`], which runs each batch in one
//! `BEGIN IMMEDIATE` transaction: it takes SQLite's write lock first, reads the chain head under
//! it, and writes every event with its resource rows, so several processes on one file still
//! build one chain.
//!
//! Writes go through one connection of their own, apart from the pool that serves reads. A
//! write that fails throws that connection away and the next one opens a fresh one: SQLite may
//! roll back a transaction by itself on some errors (`database or disk is full`), after which a
//! connection kept as it was would still count itself inside a transaction and refuse every
//! later `BEGIN`.

mod selector_sql;

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use domain::chain::ChainHead;
use domain::{Digest, ObjectKey, Resource};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, QueryBuilder, Row, Sqlite, SqliteConnection, SqlitePool};
use storage::{
    Committed, Direction, Entry, Error, EventQuery, GraphBackend, Hit, ListQuery, LogBackend, Result, StoredEvent,
    TraverseQuery, Write,
};

/// The SQLite backend.
#[derive(Clone, Debug)]
pub struct SqliteBackend {
    pool: SqlitePool,
    writer: Arc<tokio::sync::Mutex<Writer>>,
}

/// The connection that writes, opened when first needed and again after a failed write.
struct Writer {
    options: SqliteConnectOptions,
    conn: Option<SqliteConnection>,
    /// A cap on the file's size in pages (SQLite's `max_page_count`), set by tests to make the
    /// disk look full.
    max_pages: Option<u64>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").field("open", &self.conn.is_some()).field("max_pages", &self.max_pages).finish()
    }
}

impl Writer {
    /// The open connection, or a new one. Whoever takes it gives it back only if it is clean.
    async fn take(&mut self) -> Result<SqliteConnection> {
        if let Some(conn) = self.conn.take() {
            return Ok(conn);
        }
        let mut conn = self.options.connect().await.map_err(db)?;
        if let Some(pages) = self.max_pages {
            sqlx::query(sqlx::AssertSqlSafe(format!("PRAGMA max_page_count = {pages}")))
                .execute(&mut conn)
                .await
                .map_err(db)?;
        }
        Ok(conn)
    }

    /// Keep `conn` for the next write if the last one succeeded; otherwise drop it (closing it
    /// rolls back whatever SQLite left open) so that the next write starts on a fresh one.
    fn give_back<T>(&mut self, conn: SqliteConnection, outcome: &Result<T>) {
        match outcome {
            Ok(_) => self.conn = Some(conn),
            Err(e) => tracing::debug!(error = %e, "a write failed; its connection is closed"),
        }
    }
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
            .connect_with(options.clone())
            .await
            .map_err(|e| Error::Unavailable(format!("cannot open {}: {e}", path.display())))?;
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .map_err(|e| Error::Unavailable(format!("cannot migrate {}: {e}", path.display())))?;
        let writer = Writer { options, conn: None, max_pages: None };
        Ok(SqliteBackend { pool, writer: Arc::new(tokio::sync::Mutex::new(writer)) })
    }

    /// The underlying pool (for tests and benchmarks that need raw SQL on the same file).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Cap the database file at `pages` pages for this handle's writes (`None`: no cap): a write
    /// that needs more fails with `database or disk is full`, as on a full disk. For tests that
    /// need a full disk; a cap below the file's size holds it at its size.
    pub async fn set_max_pages(&self, pages: Option<u64>) {
        let mut writer = self.writer.lock().await;
        writer.max_pages = pages;
        // The next write opens a connection with the new cap.
        writer.conn = None;
    }
}

type Tx<'c> = sqlx::Transaction<'c, Sqlite>;

async fn read_head(tx: &mut Tx<'_>) -> Result<ChainHead> {
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

/// Rows per multi-row statement, well under SQLite's limit on bound parameters.
const ROWS_PER_STATEMENT: usize = 500;

/// The stored resourceVersion of each of `keys` (`None`: absent), in one query per chunk.
async fn stored_versions(tx: &mut Tx<'_>, keys: &[ObjectKey]) -> Result<HashMap<ObjectKey, Option<u64>>> {
    let mut versions: HashMap<ObjectKey, Option<u64>> = keys.iter().map(|k| (k.clone(), None)).collect();
    for chunk in keys.chunks(ROWS_PER_STATEMENT) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "SELECT kind, namespace, name, resource_version FROM resources WHERE (kind, namespace, name) IN (VALUES ",
        );
        let mut rows = q.separated(", ");
        for k in chunk {
            rows.push("(").push_bind_unseparated(&k.kind).push_unseparated(", ");
            rows.push_bind_unseparated(&k.namespace).push_unseparated(", ").push_bind_unseparated(&k.name);
            rows.push_unseparated(")");
        }
        q.push(")");
        for row in q.build().fetch_all(&mut **tx).await.map_err(db)? {
            let key = ObjectKey { kind: row.get(0), namespace: row.get(1), name: row.get(2) };
            versions.insert(key, Some(row.get::<i64, _>(3) as u64));
        }
    }
    Ok(versions)
}

/// Remove the rows of `keys` from `table`, in one statement per chunk.
async fn delete_keys(tx: &mut Tx<'_>, table: &str, keys: &[&ObjectKey]) -> Result<()> {
    for chunk in keys.chunks(ROWS_PER_STATEMENT) {
        let mut q =
            QueryBuilder::<Sqlite>::new(format!("DELETE FROM {table} WHERE (kind, namespace, name) IN (VALUES "));
        let mut rows = q.separated(", ");
        for k in chunk {
            rows.push("(").push_bind_unseparated(&k.kind).push_unseparated(", ");
            rows.push_bind_unseparated(&k.namespace).push_unseparated(", ").push_bind_unseparated(&k.name);
            rows.push_unseparated(")");
        }
        q.push(")");
        q.build().execute(&mut **tx).await.map_err(db)?;
    }
    Ok(())
}

/// Insert `rows` into `insert` (`INSERT ... (columns) VALUES`), one statement per chunk, each row
/// bound by `bind`.
async fn insert_rows<T>(
    tx: &mut Tx<'_>,
    insert: &str,
    rows: &[T],
    bind: impl Fn(&mut sqlx::query_builder::Separated<'_, Sqlite, &'static str>, &T),
) -> Result<()> {
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut q = QueryBuilder::<Sqlite>::new(insert);
        q.push_values(chunk, |mut b, row| bind(&mut b, row));
        q.build().execute(&mut **tx).await.map_err(db)?;
    }
    Ok(())
}

/// Write the graph rows of a batch: every key it touches loses its rows, then each key's final
/// state (the last write to it in the batch) is inserted, with its labels and edges. A few
/// multi-row statements per batch, however many entries it has.
async fn write_graph_rows(tx: &mut Tx<'_>, prepared: &[storage::Prepared]) -> Result<()> {
    let mut last: HashMap<ObjectKey, &Write> = HashMap::new();
    let mut order: Vec<ObjectKey> = Vec::new();
    for w in prepared.iter().filter_map(|p| p.write.as_ref()) {
        let key = match w {
            Write::Put { object, .. } | Write::Remove { object } => object.key(),
        };
        if last.insert(key.clone(), w).is_none() {
            order.push(key);
        }
    }
    if order.is_empty() {
        return Ok(());
    }
    let keys: Vec<&ObjectKey> = order.iter().collect();
    for table in ["resources", "labels", "edges"] {
        delete_keys(tx, table, &keys).await?;
    }
    let mut resources = Vec::new();
    let mut labels = Vec::new();
    let mut edges = Vec::new();
    for key in &order {
        let Write::Put { object, references } = last[key] else { continue };
        let body = serde_json::to_string(object).map_err(|e| Error::Invalid(e.to_string()))?;
        resources.push((key, object.metadata.uid.clone().unwrap_or_default(), object.resource_version(), body));
        labels.extend(object.metadata.labels.iter().map(|(k, v)| (key, k, v)));
        edges.extend(references.iter().map(|r| (key, r)));
    }
    insert_rows(
        tx,
        "INSERT INTO resources (kind, namespace, name, uid, resource_version, body) ",
        &resources,
        |b, (key, uid, version, body)| {
            b.push_bind(key.kind.clone()).push_bind(key.namespace.clone()).push_bind(key.name.clone());
            b.push_bind(uid.clone()).push_bind(version.unwrap_or_default() as i64).push_bind(body.clone());
        },
    )
    .await?;
    insert_rows(tx, "INSERT INTO labels (kind, namespace, name, key, value) ", &labels, |b, (key, k, v)| {
        b.push_bind(key.kind.clone()).push_bind(key.namespace.clone()).push_bind(key.name.clone());
        b.push_bind((*k).clone()).push_bind((*v).clone());
    })
    .await?;
    insert_rows(
        tx,
        "INSERT OR IGNORE INTO edges (kind, namespace, name, edge, to_kind, to_namespace, to_name) ",
        &edges,
        |b, (key, r)| {
            b.push_bind(key.kind.clone()).push_bind(key.namespace.clone()).push_bind(key.name.clone());
            b.push_bind(r.edge.clone());
            b.push_bind(r.target.kind.clone()).push_bind(r.target.namespace.clone()).push_bind(r.target.name.clone());
        },
    )
    .await
}

/// ` WHERE ...` for the seq range, types and subject of `query` (not its limit).
fn push_filter(q: &mut QueryBuilder<Sqlite>, query: &EventQuery) {
    q.push(" WHERE seq >= ").push_bind(query.from_seq.unwrap_or(1) as i64);
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
}

/// The resource of a row selected as `kind, namespace, name, body, ...`.
fn resource_of(row: &sqlx::sqlite::SqliteRow) -> Result<Resource> {
    let key = ObjectKey { kind: row.get(0), namespace: row.get(1), name: row.get(2) };
    storage::parse_row(&key, row.get(3))
}

/// Commit `batch` on `conn` in one `BEGIN IMMEDIATE` transaction.
async fn write_batch(conn: &mut SqliteConnection, batch: Vec<Entry>) -> Result<Vec<Result<Committed>>> {
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
    let head = read_head(&mut tx).await?;
    let versions = stored_versions(&mut tx, &storage::mutated_keys(&batch)).await?;
    let plan = storage::plan(head, batch, versions);
    insert_rows(&mut tx, "INSERT INTO events (seq, type, subject, hash, body) ", &plan.prepared, |b, p| {
        let event = &p.sealed.event;
        b.push_bind(event.seq as i64).push_bind(event.type_.clone()).push_bind(event.subject.clone());
        b.push_bind(event.hash.to_string()).push_bind(p.sealed.bytes.clone());
    })
    .await?;
    write_graph_rows(&mut tx, &plan.prepared).await?;
    tx.commit().await.map_err(db)?;
    Ok(plan.results)
}

/// A write that needs new pages and leaves nothing behind: a scratch table with a page of data,
/// created and dropped in one committed transaction. It fails as a commit would on a full disk
/// (or a cap on the file's size) and needs the same write lock.
async fn write_probe(conn: &mut SqliteConnection) -> Result<()> {
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
    for sql in [
        "CREATE TABLE IF NOT EXISTS write_probe (pad BLOB)",
        "INSERT INTO write_probe (pad) VALUES (zeroblob(4096))",
        "DROP TABLE write_probe",
    ] {
        sqlx::query(sql).execute(&mut *tx).await.map_err(db)?;
    }
    tx.commit().await.map_err(db)
}

#[async_trait]
impl LogBackend for SqliteBackend {
    async fn commit(&self, batch: Vec<Entry>) -> Result<Vec<Result<Committed>>> {
        let mut writer = self.writer.lock().await;
        let mut conn = writer.take().await?;
        let outcome = write_batch(&mut conn, batch).await;
        writer.give_back(conn, &outcome);
        outcome
    }

    async fn probe(&self) -> Result<()> {
        let mut writer = self.writer.lock().await;
        let mut conn = writer.take().await?;
        let outcome = write_probe(&mut conn).await;
        writer.give_back(conn, &outcome);
        outcome
    }

    async fn read(&self, query: &EventQuery) -> Result<Vec<StoredEvent>> {
        let mut q = QueryBuilder::<Sqlite>::new("SELECT seq, body FROM events");
        push_filter(&mut q, query);
        q.push(" ORDER BY seq LIMIT ").push_bind(query.limit.map_or(-1, |l| l as i64));
        let rows = q.build().fetch_all(&self.pool).await.map_err(db)?;
        Ok(rows.into_iter().map(|r| StoredEvent { seq: r.get::<i64, _>(0) as u64, bytes: r.get(1) }).collect())
    }

    async fn count(&self, query: &EventQuery) -> Result<u64> {
        let mut q = QueryBuilder::<Sqlite>::new("SELECT COUNT(*) FROM events");
        push_filter(&mut q, query);
        let row = q.build().fetch_one(&self.pool).await.map_err(db)?;
        Ok(row.get::<i64, _>(0) as u64)
    }

    async fn read_at(&self, seqs: &[u64]) -> Result<Vec<StoredEvent>> {
        let mut out = Vec::with_capacity(seqs.len());
        for chunk in seqs.chunks(ROWS_PER_STATEMENT) {
            let mut q = QueryBuilder::<Sqlite>::new("SELECT seq, body FROM events WHERE seq IN (");
            let mut list = q.separated(", ");
            for seq in chunk {
                list.push_bind(*seq as i64);
            }
            q.push(")");
            let rows = q.build().fetch_all(&self.pool).await.map_err(db)?;
            out.extend(rows.into_iter().map(|r| StoredEvent { seq: r.get::<i64, _>(0) as u64, bytes: r.get(1) }));
        }
        out.sort_by_key(|e| e.seq);
        out.dedup_by_key(|e| e.seq);
        Ok(out)
    }

    async fn next_by_subject(
        &self,
        starts: &[(String, u64)],
        types: &[String],
        to_seq: u64,
    ) -> Result<Vec<Option<u64>>> {
        let mut out = Vec::with_capacity(starts.len());
        for chunk in starts.chunks(ROWS_PER_STATEMENT) {
            // One indexed seek on (subject, seq) per start, in a correlated subquery.
            let mut q = QueryBuilder::<Sqlite>::new("WITH v(i, subject, after) AS (VALUES ");
            let mut rows = q.separated(", ");
            for (i, (subject, after)) in chunk.iter().enumerate() {
                rows.push("(").push_bind_unseparated(i as i64).push_unseparated(", ");
                rows.push_bind_unseparated(subject.clone()).push_unseparated(", ");
                rows.push_bind_unseparated(*after as i64).push_unseparated(")");
            }
            q.push(
                ") SELECT (SELECT e.seq FROM events e WHERE e.subject = v.subject AND e.seq > v.after AND e.seq <= ",
            );
            q.push_bind(to_seq as i64);
            if !types.is_empty() {
                q.push(" AND e.type IN (");
                let mut list = q.separated(", ");
                for t in types {
                    list.push_bind(t.clone());
                }
                q.push(")");
            }
            q.push(" ORDER BY e.seq LIMIT 1) FROM v ORDER BY v.i");
            let found = q.build().fetch_all(&self.pool).await.map_err(db)?;
            out.extend(found.into_iter().map(|r| r.get::<Option<i64>, _>(0).map(|s| s as u64)));
        }
        Ok(out)
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
        body.as_deref().map(|b| storage::parse_row(key, b)).transpose()
    }

    async fn list(&self, query: &ListQuery) -> Result<(Vec<Resource>, u64)> {
        // One read transaction: the head and the rows come from the same snapshot.
        let mut tx = self.pool.begin().await.map_err(db)?;
        let head = read_head(&mut tx).await?;
        let mut q =
            QueryBuilder::<Sqlite>::new("SELECT r.kind, r.namespace, r.name, r.body FROM resources r WHERE 1 = 1");
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
        let items = rows.iter().map(resource_of).collect::<Result<Vec<_>>>()?;
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
            ") SELECT r.kind, r.namespace, r.name, r.body, MIN(w.depth) AS d FROM walk w JOIN resources r \
             ON r.kind = w.kind AND r.namespace = w.namespace AND r.name = w.name \
             WHERE w.depth > 0 GROUP BY r.kind, r.namespace, r.name ORDER BY d, r.kind, r.namespace, r.name",
        );
        let rows = q.build().fetch_all(&self.pool).await.map_err(db)?;
        let mut hits = Vec::with_capacity(rows.len());
        for row in rows {
            let resource = resource_of(&row)?;
            if resource.key() != *start {
                hits.push(Hit { resource, depth: row.get::<i64, _>(4) as u32 });
            }
        }
        Ok(hits)
    }
}

/// Milliseconds since the Unix epoch by this machine's clock: every process on one SQLite file
/// runs on one machine, so they share it.
fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

#[async_trait]
impl storage::LeaseBackend for SqliteBackend {
    async fn acquire(
        &self,
        name: &str,
        holder: &str,
        process: Option<&str>,
        ttl: Duration,
        take_from: Option<&str>,
    ) -> Result<bool> {
        let now = now_ms();
        // The upsert's WHERE decides whether an existing lease may be taken; a refused update
        // changes no row.
        let done = sqlx::query(
            "INSERT INTO leases (name, holder, process, expires_ms) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, process = excluded.process, \
             expires_ms = excluded.expires_ms \
             WHERE leases.holder = excluded.holder OR leases.expires_ms <= ?5 OR leases.holder = ?6",
        )
        .bind(name)
        .bind(holder)
        .bind(process)
        .bind(now + ttl.as_millis() as i64)
        .bind(now)
        .bind(take_from)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(done.rows_affected() == 1)
    }

    async fn release(&self, name: &str, holder: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM leases WHERE name = ?1 AND holder = ?2")
            .bind(name)
            .bind(holder)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(done.rows_affected() == 1)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<storage::Lease>> {
        let rows = sqlx::query(
            "SELECT name, holder, process, expires_ms FROM leases WHERE substr(name, 1, length(?1)) = ?1 ORDER BY name",
        )
        .bind(prefix)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let now = now_ms();
        Ok(rows
            .into_iter()
            .map(|row| storage::Lease {
                name: row.get(0),
                holder: row.get(1),
                process: row.get(2),
                remaining: storage::remaining_ms(row.get::<i64, _>(3) - now),
            })
            .collect())
    }
}
