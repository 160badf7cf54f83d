//! The Event Log on Postgres: one transaction per batch under the chain lock, events inserted in
//! bulk, the graph rows of the same batch written beside them, and a notification on commit.

use async_trait::async_trait;
use domain::Digest;
use domain::chain::ChainHead;
use sqlx::{Postgres, QueryBuilder, Row};
use storage::{Committed, Entry, Error, EventQuery, LogBackend, Result, StoredEvent};
use tokio::sync::watch;

use crate::{CHANNEL, PostgresBackend, db, graph};

/// The advisory lock that serialises writers on the chain (any constant unique to r5e).
const CHAIN_LOCK: i64 = 0x7235_6500_0000_0001;

pub(crate) type Tx = sqlx::Transaction<'static, Postgres>;

pub(crate) async fn read_head(tx: &mut Tx) -> Result<ChainHead> {
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

#[async_trait]
impl LogBackend for PostgresBackend {
    async fn commit(&self, batch: Vec<Entry>) -> Result<Vec<Result<Committed>>> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(CHAIN_LOCK).execute(&mut *tx).await.map_err(db)?;
        let head = read_head(&mut tx).await?;
        let versions = graph::versions(&mut tx, &storage::mutated_keys(&batch)).await?;
        let plan = storage::plan(head, batch, versions);
        if let Some(last) = plan.prepared.last() {
            let n = plan.prepared.len();
            let (mut seqs, mut types, mut subjects, mut hashes, mut bodies) = (
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
                Vec::with_capacity(n),
            );
            for p in &plan.prepared {
                let e = &p.sealed.event;
                seqs.push(e.seq as i64);
                types.push(e.type_.clone());
                subjects.push(e.subject.clone());
                hashes.push(e.hash.to_string());
                bodies.push(p.sealed.bytes.clone());
            }
            sqlx::query(
                "INSERT INTO events (seq, type, subject, hash, body) \
                 SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bytea[])",
            )
            .bind(seqs)
            .bind(types)
            .bind(subjects)
            .bind(hashes)
            .bind(bodies)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            graph::apply(&mut tx, &plan.prepared).await?;
            if self.notify {
                sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(CHANNEL)
                    .bind(last.sealed.event.seq.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
            }
        }
        tx.commit().await.map_err(db)?;
        Ok(plan.results)
    }

    async fn read(&self, query: &EventQuery) -> Result<Vec<StoredEvent>> {
        let mut q = QueryBuilder::<Postgres>::new("SELECT seq, body FROM events WHERE seq >= ");
        q.push_bind(query.from_seq.unwrap_or(1) as i64);
        if let Some(to) = query.to_seq {
            q.push(" AND seq <= ").push_bind(to as i64);
        }
        if !query.types.is_empty() {
            q.push(" AND type = ANY(").push_bind(query.types.clone()).push(")");
        }
        if let Some(s) = &query.subject {
            q.push(" AND subject = ").push_bind(s.clone());
        }
        q.push(" ORDER BY seq");
        if let Some(limit) = query.limit {
            q.push(" LIMIT ").push_bind(limit as i64);
        }
        let rows = q.build().fetch_all(&self.pool).await.map_err(db)?;
        Ok(rows.into_iter().map(|r| StoredEvent { seq: r.get::<i64, _>(0) as u64, bytes: r.get(1) }).collect())
    }

    async fn head(&self) -> Result<ChainHead> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let head = read_head(&mut tx).await?;
        tx.commit().await.map_err(db)?;
        Ok(head)
    }

    fn wakeups(&self) -> Option<watch::Receiver<u64>> {
        self.wakeups.clone()
    }
}
