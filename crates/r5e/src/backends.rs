//! The composition root: which concrete backend serves each storage contract. Nothing else in
//! the workspace names a backend.

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use storage::{Backend, Cas, FsCas, Store};
use storage_postgres::PostgresBackend;
use storage_sqlite::SqliteBackend;

use crate::{CasChoice, DataDir};

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

/// Most resources a startup refusal names before it only counts them.
const NAMED: usize = 20;

/// Open the store for a command that acts on it (`serve`, `run`): as [`open_store`], then refuse
/// if any stored resource is not exactly what the event that wrote it recorded (one point read
/// per resource; see `Store::check_stored`), so that nothing is enforced or run from state the
/// chain does not vouch for.
pub async fn open_checked_store(data: &DataDir) -> Result<Store> {
    let store = open_store(data).await?;
    let checked = store.check_stored().await.context("cannot check the stored resources against the event log")?;
    if checked.mismatches.is_empty() {
        return Ok(store);
    }
    let mut named: Vec<String> = checked.mismatches.iter().take(NAMED).map(|m| format!("  {m}")).collect();
    if checked.mismatches.len() > NAMED {
        named.push(format!("  and {} more", checked.mismatches.len() - NAMED));
    }
    bail!(
        "refusing to start: the stored resources are not what the event log wrote ({} problem(s) among {} stored \
         resources):\n{}\nthe rows were changed outside r5e; run `r5e audit verify --state` with the same \
         --data-dir/--database-url to see every difference, and restore the rows before starting again",
        checked.mismatches.len(),
        checked.resources,
        named.join("\n")
    )
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

/// Open (creating if needed) the blob store `--cas` chooses: files in the data directory, or the
/// `blobs` table of the Postgres database.
pub async fn open_cas(data: &DataDir) -> Result<Cas> {
    match data.cas {
        CasChoice::Files => Ok(Cas::new(Arc::new(FsCas::open(&data.data_dir)?))),
        CasChoice::Database => Ok(Cas::new(Arc::new(postgres(data, "--cas database").await?.cas()))),
    }
}

/// A small pool on the Postgres database of `--database-url`, for a choice that needs it
/// (`what`): blobs and keys need no LISTEN connection and few connections.
async fn postgres(data: &DataDir, what: &str) -> Result<PostgresBackend> {
    let Some(url) = &data.database_url else {
        bail!("{what} needs --database-url (the blobs and keys are kept in that database)")
    };
    let connect = url.parse().context("the database URL is not valid")?;
    let options = storage_postgres::Options { max_connections: 4, listen: false, ..Default::default() };
    PostgresBackend::open_with(connect, options).await.context("cannot open the Postgres store")
}

/// The name of the sessions' token key among the keys a database keeps.
const SESSION_KEY: &str = "session-token";

/// The key that signs sessions' tokens. On Postgres it is kept in the database, so that every
/// process on it signs and checks with the same key (one made earlier in this data directory's
/// `session.key` is moved there the first time); otherwise it is `<data dir>/session.key`.
pub async fn session_issuer(data: &DataDir) -> Result<tokens::Issuer> {
    if data.database_url.is_none() {
        return crate::sessions::issuer(&data.data_dir);
    }
    let backend = postgres(data, "a shared session key").await?;
    let file = data.data_dir.join(crate::sessions::KEY_FILE);
    let local = std::fs::read_to_string(&file).ok();
    let make = || local.unwrap_or_else(|| tokens::Issuer::generate().key_text()).trim().as_bytes().to_vec();
    let text = storage_postgres::shared_key(backend.pool(), SESSION_KEY, make).await?;
    let text = String::from_utf8(text).context("the session key in the database is not text")?;
    Ok(tokens::Issuer::from_key_text(&text)?)
}
