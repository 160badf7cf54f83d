//! The storage conformance suite on the Postgres backend.

use std::sync::Arc;

use async_trait::async_trait;
use domain::ObjectKey;
use r5e_storage_postgres::{Options, PostgresBackend};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use storage::Backend;
use storage::conformance::{Fixture, RowEdit};

struct Postgres {
    options: PgConnectOptions,
}

async fn postgres() -> Option<Postgres> {
    Some(Postgres { options: r5e_storage_postgres::testing::fresh_database().await? })
}

#[async_trait]
impl Fixture for Postgres {
    async fn open(&self) -> Arc<dyn Backend> {
        Arc::new(PostgresBackend::open_with(self.options.clone(), Options::default()).await.unwrap())
    }

    async fn tamper(&self, edit: RowEdit) {
        let pool = PgPoolOptions::new().max_connections(1).connect_with(self.options.clone()).await.unwrap();
        let rows: Vec<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT seq, body FROM events ORDER BY seq").fetch_all(&pool).await.unwrap();
        let rows = edit(rows.into_iter().map(|(s, b)| (s as u64, b)).collect());
        // A superuser can switch the append-only triggers off; the chain still tells.
        let mut tx = pool.begin().await.unwrap();
        for sql in ["ALTER TABLE events DISABLE TRIGGER USER", "DELETE FROM events"] {
            sqlx::query(sql).execute(&mut *tx).await.unwrap();
        }
        for (seq, body) in rows {
            sqlx::query("INSERT INTO events (seq, type, subject, hash, body) VALUES ($1, 'x', 'x', 'x', $2)")
                .bind(seq as i64)
                .bind(body)
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        sqlx::query("ALTER TABLE events ENABLE TRIGGER USER").execute(&mut *tx).await.unwrap();
        tx.commit().await.unwrap();
    }

    /// A full disk is every change to `chain_head` (which each commit makes) failing with the
    /// error Postgres raises when it cannot extend a file: SQLSTATE 53100, `disk_full`.
    async fn fill_disk(&self, full: bool) {
        let pool = PgPoolOptions::new().max_connections(1).connect_with(self.options.clone()).await.unwrap();
        let sql: &[&str] = match full {
            true => &[
                "CREATE FUNCTION test_disk_full() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
                 RAISE EXCEPTION 'could not extend file: No space left on device' USING ERRCODE = 'disk_full'; END $$",
                "CREATE TRIGGER test_disk_full BEFORE UPDATE ON chain_head \
                 FOR EACH STATEMENT EXECUTE FUNCTION test_disk_full()",
            ],
            false => &["DROP TRIGGER test_disk_full ON chain_head", "DROP FUNCTION test_disk_full()"],
        };
        for s in sql {
            sqlx::query(*s).execute(&pool).await.unwrap();
        }
    }

    async fn set_row(&self, key: &ObjectKey, body: Option<serde_json::Value>) {
        let pool = PgPoolOptions::new().max_connections(1).connect_with(self.options.clone()).await.unwrap();
        sqlx::query("DELETE FROM resources WHERE kind = $1 AND namespace = $2 AND name = $3")
            .bind(&key.kind)
            .bind(&key.namespace)
            .bind(&key.name)
            .execute(&pool)
            .await
            .unwrap();
        let Some(body) = body else { return };
        let text = |p: &str| body.pointer(p).and_then(|v| v.as_str()).unwrap_or_default().to_string();
        sqlx::query(
            "INSERT INTO resources (kind, namespace, name, uid, resource_version, labels, body) \
             VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb)",
        )
        .bind(&key.kind)
        .bind(&key.namespace)
        .bind(&key.name)
        .bind(text("/metadata/uid"))
        .bind(text("/metadata/resourceVersion").parse::<i64>().unwrap_or(0))
        .bind(body.pointer("/metadata/labels").cloned().unwrap_or(serde_json::json!({})).to_string())
        .bind(body.to_string())
        .execute(&pool)
        .await
        .unwrap();
    }
}

storage::graph_and_log_conformance!(postgres());

/// The CAS in the database, on a fresh database per case.
struct Blobs {
    options: PgConnectOptions,
}

async fn blobs() -> Option<Blobs> {
    Some(Blobs { options: r5e_storage_postgres::testing::fresh_database().await? })
}

#[async_trait]
impl storage::conformance::CasFixture for Blobs {
    async fn open(&self) -> Arc<dyn storage::CasBackend> {
        let backend = PostgresBackend::open_with(self.options.clone(), Options::default()).await.unwrap();
        Arc::new(backend.cas())
    }

    async fn corrupt(&self, digest: &domain::Digest, bytes: &[u8]) {
        let pool = PgPoolOptions::new().max_connections(1).connect_with(self.options.clone()).await.unwrap();
        sqlx::query("UPDATE blobs SET bytes = $2 WHERE digest = $1")
            .bind(digest.to_string())
            .bind(bytes)
            .execute(&pool)
            .await
            .unwrap();
    }
}

storage::cas_conformance!(blobs());

#[tokio::test]
async fn racing_processes_end_with_one_shared_key() {
    let Some(options) = r5e_storage_postgres::testing::fresh_database().await else { return };
    let backend = PostgresBackend::open_with(options, Options::default()).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..8u8 {
        let pool = backend.pool().clone();
        tasks.push(tokio::spawn(async move {
            r5e_storage_postgres::shared_key(&pool, "session", || vec![i; 32]).await.unwrap()
        }));
    }
    let mut keys = Vec::new();
    for t in tasks {
        keys.push(t.await.unwrap());
    }
    assert!(keys.iter().all(|k| k == &keys[0]), "{keys:?}");
    let again = r5e_storage_postgres::shared_key(backend.pool(), "session", || vec![9; 32]).await.unwrap();
    assert_eq!(again, keys[0], "a key once made is never replaced");
}
