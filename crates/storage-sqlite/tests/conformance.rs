//! The storage conformance suite on the SQLite backend, and the filesystem CAS.

use std::sync::Arc;

use async_trait::async_trait;
use domain::{Digest, ObjectKey};
use r5e_storage_sqlite::SqliteBackend;
use storage::conformance::{CasFixture, Fixture, RowEdit};
use storage::{Backend, CasBackend, FsCas};

struct Sqlite {
    dir: tempfile::TempDir,
    /// Every backend opened, so that a full disk reaches all of them.
    opened: std::sync::Mutex<Vec<SqliteBackend>>,
}

impl Sqlite {
    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("r5e.db")
    }
}

async fn sqlite() -> Option<Sqlite> {
    Some(Sqlite { dir: tempfile::tempdir().unwrap(), opened: Default::default() })
}

#[async_trait]
impl Fixture for Sqlite {
    async fn open(&self) -> Arc<dyn Backend> {
        let backend = SqliteBackend::open(&self.path()).await.unwrap();
        self.opened.lock().unwrap().push(backend.clone());
        Arc::new(backend)
    }

    /// A full disk is the file capped at the size it has now.
    async fn fill_disk(&self, full: bool) {
        let opened: Vec<SqliteBackend> = self.opened.lock().unwrap().clone();
        let pages = match full {
            true => {
                let pool = opened[0].pool();
                Some(sqlx::query_scalar::<_, i64>("PRAGMA page_count").fetch_one(pool).await.unwrap() as u64)
            }
            false => None,
        };
        for backend in opened {
            backend.set_max_pages(pages).await;
        }
    }

    async fn tamper(&self, edit: RowEdit) {
        let backend = SqliteBackend::open(&self.path()).await.unwrap();
        let pool = backend.pool();
        let rows: Vec<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT seq, body FROM events ORDER BY seq").fetch_all(pool).await.unwrap();
        let rows = edit(rows.into_iter().map(|(s, b)| (s as u64, b)).collect());
        // Someone with the file in hand can drop the append-only triggers; the chain still tells.
        let mut tx = pool.begin().await.unwrap();
        for sql in ["DROP TRIGGER events_no_update", "DROP TRIGGER events_no_delete", "DELETE FROM events"] {
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
        tx.commit().await.unwrap();
    }

    async fn set_row(&self, key: &ObjectKey, body: Option<serde_json::Value>) {
        let backend = SqliteBackend::open(&self.path()).await.unwrap();
        let pool = backend.pool();
        sqlx::query("DELETE FROM resources WHERE kind = $1 AND namespace = $2 AND name = $3")
            .bind(&key.kind)
            .bind(&key.namespace)
            .bind(&key.name)
            .execute(pool)
            .await
            .unwrap();
        let Some(body) = body else { return };
        let text = |p: &str| body.pointer(p).and_then(|v| v.as_str()).unwrap_or_default().to_string();
        sqlx::query(
            "INSERT INTO resources (kind, namespace, name, uid, resource_version, body) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&key.kind)
        .bind(&key.namespace)
        .bind(&key.name)
        .bind(text("/metadata/uid"))
        .bind(text("/metadata/resourceVersion").parse::<i64>().unwrap_or(0))
        .bind(body.to_string())
        .execute(pool)
        .await
        .unwrap();
    }
}

storage::graph_and_log_conformance!(sqlite());

struct Files {
    dir: tempfile::TempDir,
}

async fn files() -> Option<Files> {
    Some(Files { dir: tempfile::tempdir().unwrap() })
}

#[async_trait]
impl CasFixture for Files {
    async fn open(&self) -> Arc<dyn CasBackend> {
        Arc::new(FsCas::open(self.dir.path()).unwrap())
    }

    async fn corrupt(&self, digest: &Digest, bytes: &[u8]) {
        std::fs::write(self.dir.path().join("blobs/sha256").join(digest.hex()), bytes).unwrap();
    }
}

storage::cas_conformance!(files());
