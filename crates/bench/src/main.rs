//! `r5e-bench`: measures the storage contracts and prints one table, each figure beside a raw
//! baseline measured in the same run on the same data (a plain SQL insert of the same rows,
//! `sha256sum` over the same files, the same SQL without r5e around it), with the ratio. Every
//! figure is the median of several runs. Run it through `scripts/bench`, which builds it in
//! release mode and gives it a throw-away Postgres cluster when `pg_virtualenv` is available.

mod api;
mod cas;
mod events;
mod raw;
mod reads;
mod recovery;
mod report;
mod security;
mod state;
mod work;

use clap::Parser;
use sqlx::postgres::PgConnectOptions;

/// Benchmark the storage contracts against raw baselines.
#[derive(Debug, Parser)]
struct Args {
    /// Repetitions per measurement; the median is reported.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Events per append measurement with 16 writers (a quarter of that with 1 writer).
    #[arg(long, default_value_t = 20_000)]
    events: usize,
    /// Events in the chain that `verify_chain` checks.
    #[arg(long, default_value_t = 200_000)]
    verify_events: usize,
    /// Nodes in the governed work benchmark.
    #[arg(long, default_value_t = 200)]
    work_items: usize,
    /// Run only the governed work benchmark.
    #[arg(long)]
    work_only: bool,
    /// Run only the governed work benchmark with 1, 2 and 3 replicas on Postgres.
    #[arg(long)]
    replicas_only: bool,
    /// Sessions in flight at the kill in the recovery benchmark.
    #[arg(long, default_value_t = 1000)]
    recovery_sessions: usize,
    /// Run only the recovery benchmark (adopting in-flight sessions after kill -9).
    #[arg(long)]
    recovery_only: bool,
    /// Resources in the store the state checks run on.
    #[arg(long, default_value_t = 10_000)]
    state_resources: usize,
    /// Run only the state checks (the startup check and `verify --state`).
    #[arg(long)]
    state_only: bool,
    /// Run only the rows of governance against hostile agents (session tokens, sandbox start).
    #[arg(long)]
    security_only: bool,
    /// Skip the largest cases (the 256 MiB blob, 1M resources) for a quick run.
    #[arg(long)]
    quick: bool,
    /// Skip Postgres even if a server is configured.
    #[arg(long)]
    no_postgres: bool,
    /// Where to put the scratch files (defaults to a temporary directory).
    #[arg(long)]
    scratch: Option<std::path::PathBuf>,
}

/// The Postgres server to benchmark on, from `R5E_BENCH_DATABASE_URL` or the `PG*` variables.
fn postgres(args: &Args) -> Option<PgConnectOptions> {
    if args.no_postgres {
        return None;
    }
    match std::env::var("R5E_BENCH_DATABASE_URL") {
        Ok(url) => Some(url.parse().expect("R5E_BENCH_DATABASE_URL parses")),
        Err(_) if std::env::var_os("PGHOST").is_some() => Some(PgConnectOptions::new()),
        Err(_) => None,
    }
}

/// A fresh database on the benchmark server.
pub(crate) async fn fresh_pg(admin: &PgConnectOptions) -> anyhow::Result<PgConnectOptions> {
    let name = format!("r5e_bench_{}", uuid::Uuid::now_v7().simple());
    let options = storage_postgres::create_database(admin, &name).await?;
    // Creating a database writes a lot of WAL; settle it so the timing that follows does not pay.
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect_with(options.clone()).await?;
    if let Err(e) = sqlx::query("CHECKPOINT").execute(&pool).await {
        eprintln!("  (no CHECKPOINT before timing: {e})");
    }
    pool.close().await;
    Ok(options)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let scratch = match &args.scratch {
        Some(p) => tempfile::tempdir_in(p)?,
        None => tempfile::tempdir()?,
    };
    let pg = postgres(&args);
    let mut report = report::Report::default();
    if args.work_only {
        work::run(&args, scratch.path(), &mut report).await?;
        report.print();
        return Ok(());
    }
    if args.replicas_only {
        let Some(admin) = &pg else { anyhow::bail!("--replicas-only needs a Postgres server") };
        work::replicas(&args, admin, scratch.path(), &mut report).await?;
        report.print();
        return Ok(());
    }
    if args.recovery_only {
        recovery::run(&args, scratch.path(), &mut report).await?;
        report.print();
        return Ok(());
    }
    if args.security_only {
        security::tokens(&args, &mut report).await?;
        security::sandbox_start(&args, scratch.path(), &mut report).await?;
        report.print();
        return Ok(());
    }
    if args.state_only {
        state::run(&args, scratch.path(), pg.as_ref(), &mut report).await?;
        report.print();
        return Ok(());
    }
    events::sqlite(&args, scratch.path(), &mut report).await?;
    match &pg {
        Some(admin) => {
            let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect_with(admin.clone()).await?;
            let settings: Vec<(String, String)> = sqlx::query_as(
                "SELECT name, setting FROM pg_settings WHERE name IN ('server_version', 'fsync', 'synchronous_commit') ORDER BY name",
            )
            .fetch_all(&pool)
            .await?;
            pool.close().await;
            eprintln!("postgres: {}", settings.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", "));
            events::postgres(&args, admin, &mut report).await?;
            reads::postgres(&args, admin, &mut report).await?;
        }
        None => eprintln!(
            "postgres: no server (set R5E_BENCH_DATABASE_URL or run under pg_virtualenv); its rows are left out"
        ),
    }
    let sqlite_dir = scratch.path().to_path_buf();
    let counter = std::sync::atomic::AtomicUsize::new(0);
    let open_sqlite = || {
        let path = sqlite_dir.join(format!("api-{}.db", counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed)));
        async move {
            let b: std::sync::Arc<dyn storage::Backend> =
                std::sync::Arc::new(storage_sqlite::SqliteBackend::open(&path).await?);
            anyhow::Ok(b)
        }
    };
    api::stages(&args, open_sqlite(), &mut report).await?;
    api::creates(&args, "SQLite", open_sqlite, &mut report).await?;
    if let Some(admin) = &pg {
        let open_pg = || async move {
            let options = fresh_pg(admin).await?;
            let b: std::sync::Arc<dyn storage::Backend> = std::sync::Arc::new(
                storage_postgres::PostgresBackend::open_with(options, storage_postgres::Options::default()).await?,
            );
            anyhow::Ok(b)
        };
        api::creates(&args, "Postgres", open_pg, &mut report).await?;
    }
    work::run(&args, scratch.path(), &mut report).await?;
    recovery::run(&args, scratch.path(), &mut report).await?;
    if let Some(admin) = &pg {
        work::replicas(&args, admin, scratch.path(), &mut report).await?;
    }
    events::verify(&args, scratch.path(), &mut report).await?;
    state::run(&args, scratch.path(), pg.as_ref(), &mut report).await?;
    cas::run(&args, scratch.path(), &mut report).await?;
    security::tokens(&args, &mut report).await?;
    security::sandbox_start(&args, scratch.path(), &mut report).await?;
    report.print();
    Ok(())
}
