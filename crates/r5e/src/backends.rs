//! The composition root: which concrete backend serves each storage contract. Nothing else in
//! the workspace names a backend.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use storage::{Backend, Cas, FsCas, Store};
use storage_postgres::PostgresBackend;
use storage_sqlite::SqliteBackend;

use crate::DataDir;

/// The database file inside a data directory.
pub const DB_FILE: &str = "r5e.db";

/// Open the store: Postgres when a database URL is given, otherwise the embedded SQLite
/// database in the data directory (created if needed).
pub async fn open_store(data: &DataDir) -> Result<Store> {
    let backend: Arc<dyn Backend> = match &data.database_url {
        Some(url) => Arc::new(PostgresBackend::open(url).await.context("cannot open the Postgres store")?),
        None => Arc::new(
            SqliteBackend::open(&data.data_dir.join(DB_FILE))
                .await
                .with_context(|| format!("cannot open the store in {}", data.data_dir.display()))?,
        ),
    };
    Ok(Store::open(backend).await?)
}

/// Open the store for a command that only reads: the embedded database must already exist.
pub async fn open_existing_store(data: &DataDir) -> Result<Store> {
    if data.database_url.is_none() && !data.data_dir.join(DB_FILE).exists() {
        bail!(
            "no r5e data in {}: pass --data-dir (or R5E_DATA_DIR) pointing at a data directory, or --database-url",
            data.data_dir.display()
        );
    }
    open_store(data).await
}

/// Open (creating if needed) the blob store in `data_dir`.
pub fn open_cas(data_dir: &Path) -> Result<Cas> {
    Ok(Cas::new(Arc::new(FsCas::open(data_dir)?)))
}
