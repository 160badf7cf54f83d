//! What only Postgres does: the database itself refuses changes to events, the application role
//! cannot touch them, label selectors use the GIN index, and streams survive lost notifications.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use domain::chain::EventDraft;
use futures::StreamExt;
use r5e_storage_postgres::{Options, PostgresBackend};
use serde_json::json;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use storage::{ListQuery, Store};

/// Says, once per run, whether the Postgres cases ran (its output is always shown; see
/// `.config/nextest.toml`).
#[test]
fn postgres_availability() {
    let line = match r5e_storage_postgres::testing::admin_options() {
        Some(_) => "postgres: the Postgres cases run against the configured server\n",
        None => {
            "postgres: NOT RUN: no server configured (set R5E_TEST_DATABASE_URL or run under `pg_virtualenv`); the Postgres cases returned early\n"
        }
    };
    // Straight to the process's stderr, past the test harness's capture.
    let _ = std::io::stderr().write_all(line.as_bytes());
}

fn draft(i: u64) -> EventDraft {
    EventDraft {
        type_: "test.event".into(),
        actor: "user:test".into(),
        subject: "Thing/default/x".into(),
        data: json!({"i": i}),
    }
}

async fn store(options: &PgConnectOptions, o: Options, poll: Duration) -> Store {
    let backend = PostgresBackend::open_with(options.clone(), o).await.unwrap();
    Store::open_with_poll(Arc::new(backend), poll).await.unwrap()
}

#[tokio::test]
async fn the_database_refuses_update_delete_and_truncate_on_events() {
    let Some(options) = r5e_storage_postgres::testing::fresh_database().await else { return };
    let s = store(&options, Options::default(), Duration::from_millis(100)).await;
    s.events.append_all((1..=3).map(draft).collect()).await.unwrap();
    let pool = PgPoolOptions::new().max_connections(1).connect_with(options.clone()).await.unwrap();
    for sql in
        ["UPDATE events SET type = 'forged' WHERE seq = 2", "DELETE FROM events WHERE seq = 3", "TRUNCATE events"]
    {
        let err = sqlx::query(sql).execute(&pool).await.expect_err(sql).to_string();
        assert!(err.contains("the event log is append-only"), "{sql}: {err}");
    }
    assert_eq!(s.events.verify_chain().await.unwrap().seq, 3, "nothing changed");
}

#[tokio::test]
async fn the_application_role_can_append_but_never_change_events() {
    let Some(options) = r5e_storage_postgres::testing::fresh_database().await else { return };
    // The owner migrates; the application logs in as a member of r5e_app.
    let owner = store(&options, Options::default(), Duration::from_millis(100)).await;
    owner.events.append(draft(1)).await.unwrap();
    let admin = PgPoolOptions::new().max_connections(1).connect_with(options.clone()).await.unwrap();
    let role = format!("r5e_app_test_{}", uuid::Uuid::now_v7().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE ROLE {role} LOGIN PASSWORD 'app-secret' IN ROLE r5e_app")))
        .execute(&admin)
        .await
        .unwrap();
    let app_options = options.clone().username(&role).password("app-secret");
    let app = store(&app_options, Options::default(), Duration::from_millis(100)).await;
    app.events.append(draft(2)).await.unwrap();
    app.graph.create(domain::Resource::new("Graph", Some("default"), "g", json!({})), "user:app").await.unwrap();

    let pool = PgPoolOptions::new().max_connections(1).connect_with(app_options).await.unwrap();
    // Even with the triggers gone, the role's privileges refuse the change.
    sqlx::query("ALTER TABLE events DISABLE TRIGGER USER").execute(&admin).await.unwrap();
    for sql in
        ["UPDATE events SET type = 'forged' WHERE seq = 1", "DELETE FROM events WHERE seq = 1", "TRUNCATE events"]
    {
        let err = sqlx::query(sql).execute(&pool).await.expect_err(sql).to_string();
        assert!(err.contains("permission denied"), "{sql}: {err}");
    }
    sqlx::query("ALTER TABLE events ENABLE TRIGGER USER").execute(&admin).await.unwrap();
    assert_eq!(owner.events.verify_chain().await.unwrap().seq, 3);
}

#[tokio::test]
async fn label_selectors_use_the_gin_index_on_100k_resources() {
    let Some(options) = r5e_storage_postgres::testing::fresh_database().await else { return };
    let backend = PostgresBackend::open_with(options.clone(), Options::default()).await.unwrap();
    // Rows written directly: this test is about the query plan, not the write path.
    sqlx::query(
        "INSERT INTO resources (kind, namespace, name, uid, resource_version, labels, body) \
         SELECT 'Agent', 'default', 'a' || i, 'uid-' || i, i, \
                jsonb_build_object('team', 'team-' || (i % 1000), 'tier', CASE WHEN i % 2 = 0 THEN 'gold' ELSE 'silver' END), \
                jsonb_build_object('apiVersion', 'r5e.ai/v1alpha1', 'kind', 'Agent', 'metadata', jsonb_build_object('name', 'a' || i, 'namespace', 'default')) \
         FROM generate_series(1, 100000) AS i",
    )
    .execute(backend.pool())
    .await
    .unwrap();
    sqlx::query("ANALYZE resources").execute(backend.pool()).await.unwrap();
    for selector in ["team=team-7", "team in (team-7,team-8)", "team=team-7,tier=gold"] {
        let query = ListQuery { selector: selector.parse().unwrap(), ..Default::default() };
        let plan = backend.explain_list(&query).await.unwrap();
        assert!(plan.contains("Bitmap Index Scan on resources_labels"), "`{selector}` does not use the index:\n{plan}");
    }
    let store = Store::open(Arc::new(backend)).await.unwrap();
    let hits =
        store.graph.query_by_labels(&"team=team-7,tier=silver".parse().unwrap(), Some("Agent"), None).await.unwrap();
    assert_eq!(hits.len(), 100);
}

#[tokio::test]
async fn a_stream_misses_nothing_when_notifications_are_lost() {
    let Some(options) = r5e_storage_postgres::testing::fresh_database().await else { return };
    let reader = store(&options, Options::default(), Duration::from_millis(200)).await;
    let mut stream = reader.events.stream(0);
    // A writer that never notifies: the reader still gets every event, by seq, through polling.
    let silent = store(&options, Options { notify: false, ..Options::default() }, Duration::from_millis(200)).await;
    silent.events.append_all((1..=5).map(draft).collect()).await.unwrap();
    for want in 1..=5 {
        let e =
            tokio::time::timeout(Duration::from_secs(10), stream.next()).await.expect("delivered").unwrap().unwrap();
        assert_eq!(e.seq, want);
    }
}

#[tokio::test]
async fn a_notification_wakes_a_stream_in_another_process_at_once() {
    let Some(options) = r5e_storage_postgres::testing::fresh_database().await else { return };
    // Polling once an hour: only LISTEN/NOTIFY can deliver within the deadline.
    let reader = store(&options, Options::default(), Duration::from_secs(3600)).await;
    let mut stream = reader.events.stream(0);
    let writer = store(&options, Options::default(), Duration::from_secs(3600)).await;
    // The reader's LISTEN may still be starting; wait for it by appending until one arrives.
    let first = tokio::time::timeout(Duration::from_secs(20), async {
        let mut i = 0;
        loop {
            i += 1;
            writer.events.append(draft(i)).await.unwrap();
            if let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(500), stream.next()).await {
                return e.unwrap();
            }
        }
    })
    .await
    .expect("a notification arrives");
    assert_eq!(first.seq, 1);
    let head = writer.events.append(draft(99)).await.unwrap().seq;
    let mut last = first.seq;
    while last < head {
        last = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("woken by NOTIFY")
            .unwrap()
            .unwrap()
            .seq;
    }
    assert_eq!(last, head);
}

#[tokio::test]
async fn a_writer_whose_head_is_stale_relinks_under_the_lock() {
    let Some(options) = r5e_storage_postgres::testing::fresh_database().await else { return };
    let a = store(&options, Options::default(), Duration::from_millis(100)).await;
    let b = store(&options, Options::default(), Duration::from_millis(100)).await;
    assert_eq!(a.events.append(draft(1)).await.unwrap().seq, 1);
    assert_eq!(b.events.append(draft(2)).await.unwrap().seq, 2);
    // `a` still believes the head is seq 1: its one-statement append must write nothing, and the
    // batch must then go through the lock and link onto seq 2.
    let e = a.events.append_all(vec![draft(3), draft(4)]).await.unwrap();
    assert_eq!((e[0].seq, e[1].seq), (3, 4));
    assert_eq!(a.events.verify_chain().await.unwrap().seq, 4);
    let pool = PgPoolOptions::new().max_connections(1).connect_with(options).await.unwrap();
    let (seq, hash): (i64, String) = sqlx::query_as("SELECT seq, hash FROM chain_head").fetch_one(&pool).await.unwrap();
    assert_eq!((seq as u64, hash), (4, e[1].hash.to_string()));
}
