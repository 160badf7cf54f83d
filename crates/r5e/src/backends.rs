//! The composition root: which concrete backend serves each storage contract. Nothing else in
//! the workspace names a backend.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use storage::{Cas, FsCas, Store};
use storage_sqlite::SqliteBackend;

/// The database file inside a data directory.
pub const DB_FILE: &str = "r5e.db";

/// Open (creating if needed) the embedded store in `data_dir`.
pub async fn open_store(data_dir: &Path) -> Result<Store> {
    let backend = SqliteBackend::open(&data_dir.join(DB_FILE))
        .await
        .with_context(|| format!("cannot open the store in {}", data_dir.display()))?;
    Ok(Store::open(Arc::new(backend)).await?)
}

/// Open the embedded store in `data_dir`, which must already hold one (for read-only commands).
pub async fn open_existing_store(data_dir: &Path) -> Result<Store> {
    if !data_dir.join(DB_FILE).exists() {
        bail!("no r5e data in {}: pass --data-dir (or R5E_DATA_DIR) pointing at a data directory", data_dir.display());
    }
    open_store(data_dir).await
}

/// Open (creating if needed) the blob store in `data_dir`.
pub fn open_cas(data_dir: &Path) -> Result<Cas> {
    Ok(Cas::new(Arc::new(FsCas::open(data_dir)?)))
}
