//! The Postgres backend: Graph Storage (resources as JSONB, labels under a GIN index, traversal
//! as a recursive query) and the Event Log (canonical bytes as `bytea` in an append-only table
//! the database itself protects), for production and for several r5e processes sharing one
//! truth.
//!
//! The database can also hold the CAS (`cas.rs`, the `blobs` table) and the keys every process
//! must share (`shared_key`), so that replicas need no shared disk.
//!
//! Writers serialise on the one-row `chain_head` table, so any number of processes extend one
//! unbroken chain; a batch of plain appends is a single conditional statement (`log.rs`).
//! Commits send `NOTIFY r5e_events` as a wake-up hint for streams in other processes; readers
//! always resume by seq, so a lost notification delays nothing past the poll interval.

mod cas;
mod graph;
mod leases;
mod log;
mod selector_sql;
#[cfg(feature = "testing")]
pub mod testing;

use std::sync::Arc;

pub use cas::{PostgresCas, shared_key};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{Executor, PgPool};
use storage::{Error, Result};
use tokio::sync::watch;

/// The channel commits notify on.
const CHANNEL: &str = "r5e_events";

/// The Postgres backend.
#[derive(Clone, Debug)]
pub struct PostgresBackend {
    pool: PgPool,
    notify: bool,
    head: Arc<log::HeadCache>,
    wakeups: Option<watch::Receiver<u64>>,
    _listener: Option<Arc<ListenerTask>>,
}

/// Stops the LISTEN task when the last handle goes.
#[derive(Debug)]
struct ListenerTask(tokio::task::JoinHandle<()>);

impl Drop for ListenerTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How to open the backend.
#[derive(Clone, Debug)]
pub struct Options {
    /// Most connections in the pool.
    pub max_connections: u32,
    /// How long to wait for a connection before giving up with `Unavailable`.
    pub connect_timeout: std::time::Duration,
    /// Apply migrations at open if the schema is behind (needs the owner's privileges).
    pub migrate: bool,
    /// Send a notification on each commit (turn off only to test that streams do not need it).
    pub notify: bool,
    /// LISTEN for other processes' commits (a wake-up for streams).
    pub listen: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_connections: 8,
            connect_timeout: std::time::Duration::from_secs(5),
            migrate: true,
            notify: true,
            listen: true,
        }
    }
}

pub(crate) fn db(e: sqlx::Error) -> Error {
    Error::unavailable(e)
}

impl PostgresBackend {
    /// Connect to `url` (a `postgres://` URL) with the default options.
    pub async fn open(url: &str) -> Result<PostgresBackend> {
        let options: PgConnectOptions =
            url.parse().map_err(|e| Error::Invalid(format!("database URL is not valid: {e}")))?;
        PostgresBackend::open_with(options, Options::default()).await
    }

    /// Connect with explicit connection options (e.g. from the `PG*` environment variables via
    /// `PgConnectOptions::new()`).
    pub async fn open_with(connect: PgConnectOptions, options: Options) -> Result<PostgresBackend> {
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.connect_timeout)
            .connect_with(connect)
            .await
            .map_err(|e| Error::Unavailable(format!("cannot connect to Postgres: {e}")))?;
        if options.migrate {
            migrate(&pool).await?;
        }
        let (wakeups, listener) = if options.listen {
            let (tx, rx) = watch::channel(0);
            let task = tokio::spawn(listen(pool.clone(), tx));
            (Some(rx), Some(Arc::new(ListenerTask(task))))
        } else {
            (None, None)
        };
        Ok(PostgresBackend { pool, notify: options.notify, head: Arc::default(), wakeups, _listener: listener })
    }

    /// The underlying pool (for tests and benchmarks that need raw SQL on the same database).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The CAS in this database (the `blobs` table), sharing this backend's pool.
    pub fn cas(&self) -> PostgresCas {
        PostgresCas::new(self.pool.clone())
    }
}

/// Apply the embedded migrations unless the schema is already current (so that an application
/// role without DDL privileges can open a migrated database).
async fn migrate(pool: &PgPool) -> Result<()> {
    let migrator = sqlx::migrate!("./migrations");
    let latest = migrator.iter().map(|m| m.version).max().unwrap_or(0);
    let applied: Option<i64> = sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
        .fetch_one(pool)
        .await
        .unwrap_or(None);
    if applied == Some(latest) {
        return Ok(());
    }
    migrator.run(pool).await.map_err(|e| Error::Unavailable(format!("cannot migrate the database: {e}")))
}

/// Forward `NOTIFY r5e_events` payloads (the committed head seq) to the wake-up channel. The
/// listener reconnects by itself after a dropped connection.
async fn listen(pool: PgPool, wake: watch::Sender<u64>) {
    let mut listener = match PgListener::connect_with(&pool).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "cannot LISTEN for commits; streams will poll");
            return;
        }
    };
    if let Err(e) = listener.listen(CHANNEL).await {
        tracing::warn!(error = %e, "cannot LISTEN for commits; streams will poll");
        return;
    }
    loop {
        match listener.recv().await {
            Ok(n) => {
                if let Ok(seq) = n.payload().parse::<u64>() {
                    wake.send_if_modified(|h| {
                        let newer = seq > *h;
                        if newer {
                            *h = seq;
                        }
                        newer
                    });
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "LISTEN connection lost; reconnecting");
                // Avoid a hot loop if the database is down; the next recv reconnects.
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
    }
}

/// Make a fresh, empty database named `name` next to the one `admin` points at (tests and
/// benchmarks).
pub async fn create_database(admin: &PgConnectOptions, name: &str) -> Result<PgConnectOptions> {
    let pool = PgPoolOptions::new().max_connections(1).connect_with(admin.clone()).await.map_err(db)?;
    pool.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\""))).await.map_err(db)?;
    pool.close().await;
    Ok(admin.clone().database(name))
}
