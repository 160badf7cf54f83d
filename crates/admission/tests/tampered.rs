//! Admission never uses a Policy that the event log does not vouch for. A Policy row changed in
//! the database behind r5e's back (forbid turned into permit) makes the policy set broken as soon
//! as it is rebuilt: every request is refused, naming the Policy and what to do. Restoring the
//! row restores admission at once. On SQLite and on Postgres, where a superuser can UPDATE the
//! resources table.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use r5e_admission::{Admission, Error, Identity, Operation, Stage};
use serde_json::{Value, json};
use storage::Store;

type Sql = Box<dyn Fn(&'static str) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// How a test reaches one store: open a new handle (a new process), and run SQL on its database.
struct Database {
    open: Box<dyn Fn() -> Pin<Box<dyn Future<Output = Store> + Send>> + Send + Sync>,
    sql: Sql,
    /// Turn the forbid of Policy `default/no-prod` into a permit, and back.
    tamper: &'static str,
    restore: &'static str,
}

fn admin() -> Identity {
    Identity::user("root", &["admins"])
}

fn resource(kind: &str, name: &str, labels: Value, spec: Value) -> Value {
    json!({"apiVersion": "r5e.ai/v1alpha1", "kind": kind,
           "metadata": {"name": name, "namespace": "default", "labels": labels}, "spec": spec})
}

fn graph(name: &str, env: &str) -> Value {
    resource("Graph", name, json!({"env": env}), json!({"description": "d", "authority": {"capabilities": []}}))
}

const NO_PROD: &str = "forbid(principal, action, resource) when { resource has labels && resource.labels has \"env\" && resource.labels[\"env\"] == \"prod\" };";

fn policy_reason(e: Error) -> String {
    match e {
        Error::Forbidden { stage: Stage::Policy, reason } => reason,
        other => panic!("expected a refusal by the policy stage, got {other:?}"),
    }
}

async fn a_tampered_policy_fails_closed(db: Database) {
    let running = Admission::new((db.open)().await);
    let written =
        running.create(&admin(), resource("Policy", "no-prod", json!({}), json!({"cedar": NO_PROD}))).await.unwrap();
    let seq = written.resource_version().unwrap();
    policy_reason(running.create(&admin(), graph("p1", "prod")).await.unwrap_err());
    running.create(&admin(), graph("d1", "dev")).await.unwrap();

    (db.sql)(db.tamper).await;
    let stored = running.store().graph.get(&written.key()).await.unwrap();
    assert!(stored.spec["cedar"].as_str().unwrap().starts_with("permit("), "the row was changed: {stored:?}");

    // A new process (a restart) builds its set from the changed row: it refuses every request.
    let fresh = Admission::new((db.open)().await);
    let want = format!("Policy/default/no-prod differs from event {seq}, which wrote it last, at spec.cedar");
    for request in [graph("p2", "prod"), graph("d2", "dev")] {
        let reason = policy_reason(fresh.create(&admin(), request).await.unwrap_err());
        assert!(reason.contains(&want), "{reason}");
        assert!(reason.contains("r5e audit verify --state"), "{reason}");
    }
    let review = fresh.review(&admin(), Operation::Create, graph("d3", "dev")).await;
    assert!(matches!(review.outcome, Err(Error::Forbidden { stage: Stage::Policy, .. })), "{review:?}");
    let key = domain::ObjectKey::new("Graph", "default", "");
    assert!(fresh.authorize_request(&admin(), policy::Action::List, &key).await.is_err());

    // The running process still enforces the set it built from the row the log vouches for (the
    // forbid holds), and once its Policies change it rebuilds and fails closed too.
    policy_reason(running.create(&admin(), graph("p3", "prod")).await.unwrap_err());
    running
        .create(
            &admin(),
            resource(
                "Policy",
                "other",
                json!({}),
                json!({"cedar": "permit(principal, action, resource) when { false };"}),
            ),
        )
        .await
        .unwrap();
    let reason = policy_reason(running.create(&admin(), graph("d4", "dev")).await.unwrap_err());
    assert!(reason.contains(&want), "{reason}");

    // Restoring the row restores admission at once, in both processes, and the forbid holds.
    (db.sql)(db.restore).await;
    for (n, admission) in [&fresh, &running].into_iter().enumerate() {
        admission.create(&admin(), graph(&format!("restored-{n}"), "dev")).await.unwrap();
        policy_reason(admission.create(&admin(), graph("p4", "prod")).await.unwrap_err());
    }
}

#[tokio::test]
async fn a_tampered_policy_fails_closed_on_sqlite() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let path = dir.path().join("r5e.db");
    let open_path = path.clone();
    let sql_path = path.clone();
    a_tampered_policy_fails_closed(Database {
        open: Box::new(move || {
            let path = open_path.clone();
            Box::pin(async move {
                let backend = storage_sqlite::SqliteBackend::open(&path).await.unwrap();
                Store::open(Arc::new(backend)).await.unwrap()
            })
        }),
        sql: Box::new(move |sql| {
            let path = sql_path.clone();
            Box::pin(async move {
                let backend = storage_sqlite::SqliteBackend::open(&path).await.unwrap();
                let done = sqlx::query(sql).execute(backend.pool()).await.unwrap();
                assert_eq!(done.rows_affected(), 1, "{sql}");
            })
        }),
        tamper: "UPDATE resources SET body = replace(body, '\"cedar\":\"forbid(', '\"cedar\":\"permit(') \
                 WHERE kind = 'Policy' AND name = 'no-prod'",
        restore: "UPDATE resources SET body = replace(body, '\"cedar\":\"permit(', '\"cedar\":\"forbid(') \
                  WHERE kind = 'Policy' AND name = 'no-prod'",
    })
    .await;
    drop(dir);
}

#[tokio::test]
async fn a_tampered_policy_fails_closed_on_postgres() {
    let Some(options) = storage_postgres::testing::fresh_database().await else { return };
    let open_options = options.clone();
    a_tampered_policy_fails_closed(Database {
        open: Box::new(move || {
            let options = open_options.clone();
            Box::pin(async move {
                let backend =
                    storage_postgres::PostgresBackend::open_with(options, storage_postgres::Options::default())
                        .await
                        .unwrap();
                Store::open(Arc::new(backend)).await.unwrap()
            })
        }),
        sql: Box::new(move |sql| {
            let options = options.clone();
            Box::pin(async move {
                let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect_with(options).await.unwrap();
                let done = sqlx::query(sql).execute(&pool).await.unwrap();
                assert_eq!(done.rows_affected(), 1, "{sql}");
            })
        }),
        tamper: "UPDATE resources SET body = jsonb_set(body, '{spec,cedar}', \
                 to_jsonb(replace(body #>> '{spec,cedar}', 'forbid(', 'permit('))) \
                 WHERE kind = 'Policy' AND name = 'no-prod'",
        restore: "UPDATE resources SET body = jsonb_set(body, '{spec,cedar}', \
                  to_jsonb(replace(body #>> '{spec,cedar}', 'permit(', 'forbid('))) \
                  WHERE kind = 'Policy' AND name = 'no-prod'",
    })
    .await;
}
