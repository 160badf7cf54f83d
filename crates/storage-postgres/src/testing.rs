//! Test databases (feature `testing`): each test gets a fresh database on the server named by `R5E_TEST_DATABASE_URL`
//! (or `DATABASE_URL`), or by the `PG*` environment variables (as `pg_virtualenv` sets them).
//! Without any, the Postgres tests return early, and `postgres_availability` says so once; with
//! `R5E_REQUIRE_POSTGRES=1` (as CI sets it) a missing server fails every test instead.

use sqlx::postgres::PgConnectOptions;

/// How to reach the test server as an administrator, if one is configured.
pub fn admin_options() -> Option<PgConnectOptions> {
    let url = std::env::var("R5E_TEST_DATABASE_URL").or_else(|_| std::env::var("DATABASE_URL")).ok();
    let options = match url {
        Some(url) => Some(url.parse().expect("the test database URL parses")),
        None if std::env::var_os("PGHOST").is_some() => Some(PgConnectOptions::new()),
        None => None,
    };
    if options.is_none() && std::env::var("R5E_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
        panic!("R5E_REQUIRE_POSTGRES=1 but no Postgres is configured: set R5E_TEST_DATABASE_URL or the PG* variables");
    }
    options
}

/// A fresh, empty database for one test.
pub async fn fresh_database() -> Option<PgConnectOptions> {
    let admin = admin_options()?;
    let name = format!("r5e_test_{}", uuid::Uuid::now_v7().simple());
    Some(crate::create_database(&admin, &name).await.expect("the test database is created"))
}

/// A fresh, empty database for one test, as a `postgres://` URL (for tests that run the binary).
pub async fn fresh_database_url() -> Option<String> {
    let options = fresh_database().await?;
    let user = options.get_username().to_string();
    let password = std::env::var("PGPASSWORD").ok();
    let from_url = std::env::var("R5E_TEST_DATABASE_URL").or_else(|_| std::env::var("DATABASE_URL")).ok();
    let database = options.get_database().expect("a fresh database has a name");
    Some(match from_url {
        // Same server and credentials as the configured URL, another database.
        Some(url) => {
            let (base, query) = url.split_once('?').map_or((url.as_str(), None), |(b, q)| (b, Some(q)));
            let scheme_end = base.find("://").map_or(0, |i| i + 3);
            let server = base[scheme_end..].find('/').map_or(base, |i| &base[..scheme_end + i]);
            match query {
                Some(q) => format!("{server}/{database}?{q}"),
                None => format!("{server}/{database}"),
            }
        }
        None => {
            let auth = match password {
                Some(p) => format!("{user}:{p}@"),
                None => format!("{user}@"),
            };
            format!("postgres://{auth}{}:{}/{database}", options.get_host(), options.get_port())
        }
    })
}
