//! The raw baselines: the same rows written with plain SQL, with nothing of r5e around them.

use std::time::{Duration, Instant};

use anyhow::Result;
use chrono::Utc;
use domain::chain::{self, ChainHead, EventDraft};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Connection, SqliteConnection};

/// A sealed event row: seq, type, subject, hash, canonical bytes.
pub type Row = (i64, String, String, String, Vec<u8>);

/// Insert already-sealed rows into a fresh SQLite file with the same table shape and durability
/// settings as r5e's, `per_tx` rows per transaction, each transaction's rows in multi-row
/// statements.
pub async fn sqlite_insert(path: &std::path::Path, rows: &[Row], per_tx: usize) -> Result<Duration> {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full);
    let mut conn = SqliteConnection::connect_with(&options).await?;
    sqlx::query(
        "CREATE TABLE events (seq INTEGER PRIMARY KEY, type TEXT NOT NULL, subject TEXT NOT NULL, \
         hash TEXT NOT NULL, body BLOB NOT NULL)",
    )
    .execute(&mut conn)
    .await?;
    let start = Instant::now();
    for chunk in rows.chunks(per_tx) {
        let mut tx = conn.begin().await?;
        // One multi-row statement per 500 rows, as r5e writes a batch.
        for part in chunk.chunks(500) {
            let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new("INSERT INTO events (seq, type, subject, hash, body) ");
            q.push_values(part, |mut b, (seq, type_, subject, hash, body)| {
                b.push_bind(*seq).push_bind(type_.clone()).push_bind(subject.clone());
                b.push_bind(hash.clone()).push_bind(body.clone());
            });
            q.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
    }
    Ok(start.elapsed())
}

/// Seal `drafts` into a hash chain and insert them into a fresh Postgres table of the same shape,
/// `per_tx` rows per transaction, each transaction one multi-row statement: the same hash work
/// and the same rows as r5e, with ideal batching and nothing else.
pub async fn postgres_insert(options: &PgConnectOptions, drafts: &[EventDraft], per_tx: usize) -> Result<Duration> {
    let pool = PgPoolOptions::new().max_connections(1).connect_with(options.clone()).await?;
    sqlx::query(
        "CREATE TABLE events (seq BIGINT PRIMARY KEY, type TEXT NOT NULL, subject TEXT NOT NULL, \
         hash TEXT NOT NULL, body BYTEA NOT NULL)",
    )
    .execute(&pool)
    .await?;
    let start = Instant::now();
    let mut head = ChainHead::GENESIS;
    for chunk in drafts.chunks(per_tx) {
        let (mut seqs, mut types, mut subjects, mut hashes, mut bodies) = (vec![], vec![], vec![], vec![], vec![]);
        for d in chunk {
            let sealed = chain::seal(&head, d.clone(), Utc::now())?;
            head = ChainHead { seq: sealed.event.seq, hash: sealed.event.hash };
            seqs.push(sealed.event.seq as i64);
            types.push(sealed.event.type_);
            subjects.push(sealed.event.subject);
            hashes.push(sealed.event.hash.to_string());
            bodies.push(sealed.bytes);
        }
        // One statement per batch, committed on its own: the fewest round trips there are.
        sqlx::query(
            "INSERT INTO events (seq, type, subject, hash, body) \
             SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bytea[])",
        )
        .bind(seqs)
        .bind(types)
        .bind(subjects)
        .bind(hashes)
        .bind(bodies)
        .execute(&pool)
        .await?;
    }
    let t = start.elapsed();
    pool.close().await;
    Ok(t)
}

/// Write each blob durably the way the filesystem CAS does (temporary file, fsync, rename,
/// directory fsync) under a precomputed name, without hashing: the floor for `store`.
pub fn durable_writes(dir: &std::path::Path, blobs: &[Vec<u8>]) -> Result<Duration> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let start = Instant::now();
    for (i, b) in blobs.iter().enumerate() {
        let tmp = dir.join(format!("{i}.tmp"));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(b)?;
        f.sync_all()?;
        std::fs::rename(&tmp, dir.join(i.to_string()))?;
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(start.elapsed())
}
