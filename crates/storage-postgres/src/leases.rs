//! Leases on Postgres (the `leases` table). Expiry is by the database server's clock, so that
//! replicas whose clocks differ agree on when a lease has lapsed.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::Row;
use storage::{Lease, LeaseBackend, Result};

use crate::{PostgresBackend, db};

/// The database's clock in milliseconds since the Unix epoch.
const NOW_MS: &str = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint";

#[async_trait]
impl LeaseBackend for PostgresBackend {
    async fn acquire(
        &self,
        name: &str,
        holder: &str,
        process: Option<&str>,
        ttl: Duration,
        take_from: Option<&str>,
    ) -> Result<bool> {
        // The new expiry minus the ttl is "now" for the WHERE, read once from the server's clock.
        let sql = format!(
            "INSERT INTO leases (name, holder, process, expires_ms) VALUES ($1, $2, $3, {NOW_MS} + $4) \
             ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, process = EXCLUDED.process, \
             expires_ms = EXCLUDED.expires_ms \
             WHERE leases.holder = EXCLUDED.holder OR leases.expires_ms <= EXCLUDED.expires_ms - $4 \
             OR leases.holder = $5"
        );
        let done = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(name)
            .bind(holder)
            .bind(process)
            .bind(ttl.as_millis() as i64)
            .bind(take_from)
            .execute(self.pool())
            .await
            .map_err(db)?;
        Ok(done.rows_affected() == 1)
    }

    async fn release(&self, name: &str, holder: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(self.pool())
            .await
            .map_err(db)?;
        Ok(done.rows_affected() == 1)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Lease>> {
        let sql = format!(
            "SELECT name, holder, process, expires_ms - {NOW_MS} FROM leases \
             WHERE left(name, length($1)) = $1 ORDER BY name"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(prefix).fetch_all(self.pool()).await.map_err(db)?;
        Ok(rows
            .into_iter()
            .map(|row| Lease {
                name: row.get(0),
                holder: row.get(1),
                process: row.get(2),
                remaining: storage::remaining_ms(row.get::<i64, _>(3)),
            })
            .collect())
    }
}
