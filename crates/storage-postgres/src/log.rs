//! The Event Log on Postgres. Writers serialise on the `chain_head` row. A batch of plain appends
//! from a writer that knows the head is one statement: move the head from the known value and
//! insert the events only if that worked (if another process moved the head first, nothing is
//! written and the batch goes the locked way). Every other batch locks the head row, reads it,
//! checks preconditions, and writes events and graph rows in one transaction.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use domain::Digest;
use domain::chain::{ChainHead, EventDraft};
use sqlx::{Connection, Postgres, QueryBuilder, Row};
use storage::{Committed, Entry, Error, EventQuery, LogBackend, Plan, Prepared, Result, StoredEvent};
use tokio::sync::watch;

use crate::{CHANNEL, PostgresBackend, db, graph};

pub(crate) type Tx<'c> = sqlx::Transaction<'c, Postgres>;

/// The last head this process committed or read under the lock (a hint; the database decides).
#[derive(Debug, Default)]
pub(crate) struct HeadCache(Mutex<Option<ChainHead>>);

impl HeadCache {
    fn get(&self) -> Option<ChainHead> {
        *self.0.lock().expect("head cache lock")
    }
    fn set(&self, head: Option<ChainHead>) {
        *self.0.lock().expect("head cache lock") = head;
    }
}

fn parse_head(seq: i64, hash: &str) -> Result<ChainHead> {
    let hash = hash.parse::<Digest>().map_err(|e| Error::Corrupt(format!("stored head hash: {e}")))?;
    Ok(ChainHead { seq: seq as u64, hash })
}

/// The last stored event (for readers; writers use the `chain_head` row).
pub(crate) async fn read_head(tx: &mut Tx<'_>) -> Result<ChainHead> {
    let row = sqlx::query("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut **tx)
        .await
        .map_err(db)?;
    match row {
        None => Ok(ChainHead::GENESIS),
        Some(row) => parse_head(row.get(0), row.get(1)),
    }
}

/// The event columns of a planned batch, as arrays for `UNNEST`.
#[derive(Default)]
struct EventColumns {
    seqs: Vec<i64>,
    types: Vec<String>,
    subjects: Vec<String>,
    hashes: Vec<String>,
    bodies: Vec<Vec<u8>>,
}

impl EventColumns {
    fn of(prepared: &[Prepared]) -> Self {
        let mut c = EventColumns::default();
        for p in prepared {
            let e = &p.sealed.event;
            c.seqs.push(e.seq as i64);
            c.types.push(e.type_.clone());
            c.subjects.push(e.subject.clone());
            c.hashes.push(e.hash.to_string());
            c.bodies.push(p.sealed.bytes.clone());
        }
        c
    }
}

/// Insert the events, move `chain_head` from `from` to the new head, and notify, as ONE
/// statement that writes nothing unless the head was still `from`. Returns whether it wrote.
async fn append_if_head_is<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    from: ChainHead,
    plan: &Plan,
    notify: bool,
) -> Result<bool> {
    let c = EventColumns::of(&plan.prepared);
    let sql = format!(
        "WITH moved AS (UPDATE chain_head SET seq = $6, hash = $7 WHERE seq = $8 AND hash = $9 RETURNING seq), \
              ins AS (INSERT INTO events (seq, type, subject, hash, body) \
                      SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bytea[]) \
                      WHERE EXISTS (SELECT 1 FROM moved)) \
         SELECT {} FROM moved",
        if notify { format!("pg_notify('{CHANNEL}', seq::text)::text") } else { "''".to_string() }
    );
    let moved = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(c.seqs)
        .bind(c.types)
        .bind(c.subjects)
        .bind(c.hashes)
        .bind(c.bodies)
        .bind(plan.head.seq as i64)
        .bind(plan.head.hash.to_string())
        .bind(from.seq as i64)
        .bind(from.hash.to_string())
        .fetch_optional(executor)
        .await
        .map_err(db)?;
    Ok(moved.is_some())
}

impl PostgresBackend {
    /// The locked way: take the head row, plan against it, write everything in one transaction.
    /// A connection whose commit failed is closed rather than returned to the pool, so that
    /// whatever state the failure left it in (a transaction the server already ended, a broken
    /// socket) never reaches the next write.
    async fn commit_locked(&self, batch: Vec<Entry>) -> Result<Vec<Result<Committed>>> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        let outcome = self.commit_locked_on(&mut conn, batch).await;
        if let Err(e) = &outcome {
            tracing::debug!(error = %e, "a write failed; its connection is closed");
            conn.close_on_drop();
        }
        outcome
    }

    async fn commit_locked_on(
        &self,
        conn: &mut sqlx::PgConnection,
        batch: Vec<Entry>,
    ) -> Result<Vec<Result<Committed>>> {
        let mut tx = conn.begin().await.map_err(db)?;
        // The row lock serialises writers; in READ COMMITTED each later statement sees every
        // commit made before the lock was granted.
        let row = sqlx::query("SELECT seq, hash FROM chain_head FOR UPDATE").fetch_one(&mut *tx).await.map_err(db)?;
        let head = parse_head(row.get(0), row.get(1))?;
        let versions = graph::versions(&mut tx, &storage::mutated_keys(&batch)).await?;
        let plan = storage::plan(head, batch, versions);
        if !plan.prepared.is_empty() {
            let wrote = append_if_head_is(&mut *tx, head, &plan, self.notify).await?;
            if !wrote {
                return Err(Error::Corrupt("the chain head moved while its row was locked".into()));
            }
            graph::apply(&mut tx, &plan.prepared).await?;
        }
        tx.commit().await.map_err(db)?;
        self.head.set(Some(plan.head));
        Ok(plan.results)
    }
}

/// ` WHERE ...` for the seq range, types and subject of `query` (not its limit).
fn push_filter(q: &mut QueryBuilder<Postgres>, query: &EventQuery) {
    q.push(" WHERE seq >= ").push_bind(query.from_seq.unwrap_or(1) as i64);
    if let Some(to) = query.to_seq {
        q.push(" AND seq <= ").push_bind(to as i64);
    }
    if !query.types.is_empty() {
        q.push(" AND type = ANY(").push_bind(query.types.clone()).push(")");
    }
    if let Some(s) = &query.subject {
        q.push(" AND subject = ").push_bind(s.clone());
    }
}

#[async_trait]
impl LogBackend for PostgresBackend {
    async fn commit(&self, batch: Vec<Entry>) -> Result<Vec<Result<Committed>>> {
        let plain = batch.iter().all(|e| e.mutation.is_none());
        let (true, Some(head)) = (plain, self.head.get()) else {
            return self.commit_locked(batch).await;
        };
        let plan = storage::plan(head, batch, HashMap::new());
        if plan.prepared.is_empty() {
            return Ok(plan.results);
        }
        if append_if_head_is(&self.pool, head, &plan, self.notify).await? {
            self.head.set(Some(plan.head));
            return Ok(plan.results);
        }
        // Another process moved the head: seal the same drafts again under the lock.
        let drafts = plan.prepared.into_iter().map(|p| {
            let e = p.sealed.event;
            Entry {
                draft: EventDraft { type_: e.type_, actor: e.actor, subject: e.subject, data: e.data },
                mutation: None,
            }
        });
        self.commit_locked(drafts.collect()).await
    }

    async fn read(&self, query: &EventQuery) -> Result<Vec<StoredEvent>> {
        let mut q = QueryBuilder::<Postgres>::new("SELECT seq, body FROM events");
        push_filter(&mut q, query);
        q.push(" ORDER BY seq");
        if let Some(limit) = query.limit {
            q.push(" LIMIT ").push_bind(limit as i64);
        }
        let rows = q.build().fetch_all(&self.pool).await.map_err(db)?;
        Ok(rows.into_iter().map(|r| StoredEvent { seq: r.get::<i64, _>(0) as u64, bytes: r.get(1) }).collect())
    }

    async fn count(&self, query: &EventQuery) -> Result<u64> {
        let mut q = QueryBuilder::<Postgres>::new("SELECT COUNT(*) FROM events");
        push_filter(&mut q, query);
        let row = q.build().fetch_one(&self.pool).await.map_err(db)?;
        Ok(row.get::<i64, _>(0) as u64)
    }

    async fn read_at(&self, seqs: &[u64]) -> Result<Vec<StoredEvent>> {
        let seqs: Vec<i64> = seqs.iter().map(|s| *s as i64).collect();
        let rows = sqlx::query("SELECT seq, body FROM events WHERE seq = ANY($1) ORDER BY seq")
            .bind(seqs)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        Ok(rows.into_iter().map(|r| StoredEvent { seq: r.get::<i64, _>(0) as u64, bytes: r.get(1) }).collect())
    }

    async fn next_by_subject(
        &self,
        starts: &[(String, u64)],
        types: &[String],
        to_seq: u64,
    ) -> Result<Vec<Option<u64>>> {
        let subjects: Vec<&str> = starts.iter().map(|(s, _)| s.as_str()).collect();
        let afters: Vec<i64> = starts.iter().map(|(_, a)| *a as i64).collect();
        // One indexed seek on (subject, seq) per start, in a correlated subquery.
        let rows = sqlx::query(
            "SELECT (SELECT e.seq FROM events e WHERE e.subject = u.subject AND e.seq > u.after AND e.seq <= $3 \
                     AND (cardinality($4::text[]) = 0 OR e.type = ANY($4)) ORDER BY e.seq LIMIT 1) \
             FROM UNNEST($1::text[], $2::bigint[]) WITH ORDINALITY AS u(subject, after, i) ORDER BY u.i",
        )
        .bind(subjects)
        .bind(afters)
        .bind(to_seq as i64)
        .bind(types)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows.into_iter().map(|r| r.get::<Option<i64>, _>(0).map(|s| s as u64)).collect())
    }

    async fn head(&self) -> Result<ChainHead> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let head = read_head(&mut tx).await?;
        tx.commit().await.map_err(db)?;
        Ok(head)
    }

    /// Rewrite the `chain_head` row with the values it has: every commit updates that row, so
    /// this needs what a commit needs (the row lock, room for a new row version, a WAL flush)
    /// and changes nothing.
    async fn probe(&self) -> Result<()> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        let outcome = async {
            let mut tx = conn.begin().await.map_err(db)?;
            sqlx::query("UPDATE chain_head SET seq = seq, hash = hash").execute(&mut *tx).await.map_err(db)?;
            tx.commit().await.map_err(db)
        }
        .await;
        if outcome.is_err() {
            conn.close_on_drop();
        }
        outcome
    }

    fn wakeups(&self) -> Option<watch::Receiver<u64>> {
        self.wakeups.clone()
    }
}
