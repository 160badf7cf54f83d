//! The CAS on Postgres: blobs as `bytea` rows keyed by digest, so that every process on one
//! database reads every artifact without a shared disk. The handle (`storage::Cas`) computes and
//! checks digests; this only keeps bytes.

use async_trait::async_trait;
use domain::Digest;
use sqlx::PgPool;
use storage::{CasBackend, Error, Result};

use crate::db;

/// Blobs in the `blobs` table.
#[derive(Clone, Debug)]
pub struct PostgresCas {
    pool: PgPool,
}

impl PostgresCas {
    /// The CAS on the database behind `pool` (migrated by [`crate::PostgresBackend::open`]).
    pub fn new(pool: PgPool) -> PostgresCas {
        PostgresCas { pool }
    }
}

#[async_trait]
impl CasBackend for PostgresCas {
    async fn put(&self, digest: &Digest, bytes: Vec<u8>) -> Result<()> {
        // Replacing repairs a row whose bytes were changed; the same bytes again change nothing.
        sqlx::query(
            "INSERT INTO blobs (digest, bytes) VALUES ($1, $2) \
             ON CONFLICT (digest) DO UPDATE SET bytes = EXCLUDED.bytes WHERE blobs.bytes IS DISTINCT FROM EXCLUDED.bytes",
        )
        .bind(digest.to_string())
        .bind(bytes)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn get(&self, digest: &Digest) -> Result<Option<Vec<u8>>> {
        sqlx::query_scalar("SELECT bytes FROM blobs WHERE digest = $1")
            .bind(digest.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)
    }

    async fn contains(&self, digest: &Digest) -> Result<bool> {
        let found: Option<i32> = sqlx::query_scalar("SELECT 1 FROM blobs WHERE digest = $1")
            .bind(digest.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        Ok(found.is_some())
    }

    async fn remove(&self, digest: &Digest) -> Result<bool> {
        let done = sqlx::query("DELETE FROM blobs WHERE digest = $1")
            .bind(digest.to_string())
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(done.rows_affected() > 0)
    }

    async fn digests(&self) -> Result<Vec<Digest>> {
        let rows: Vec<String> =
            sqlx::query_scalar("SELECT digest FROM blobs ORDER BY digest").fetch_all(&self.pool).await.map_err(db)?;
        rows.iter()
            .map(|d| d.parse().map_err(|e| Error::Corrupt(format!("the blobs table holds `{d}`, not a digest: {e}"))))
            .collect()
    }
}

/// The key named `name` that every process on this database shares: the stored one, or, if
/// there is none yet, `make()`'s, stored first. Two processes racing both end with the same key.
pub async fn shared_key(pool: &PgPool, name: &str, make: impl FnOnce() -> Vec<u8>) -> Result<Vec<u8>> {
    sqlx::query("INSERT INTO keys (name, material) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
        .bind(name)
        .bind(make())
        .execute(pool)
        .await
        .map_err(db)?;
    sqlx::query_scalar("SELECT material FROM keys WHERE name = $1").bind(name).fetch_one(pool).await.map_err(db)
}
