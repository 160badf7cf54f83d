//! State the chain does not vouch for, through the real binary: rows of the `resources` table
//! changed behind r5e's back (a Policy's forbid turned into permit or removed, a row made up)
//! pass `r5e audit verify`, which checks only the chain, but `r5e audit verify --state` names
//! each of them and exits 1, and `r5e serve` and `r5e run` refuse to start. A clean store passes
//! all of them.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What a command printed and how it ended.
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// Run `r5e args`, killing it (and failing) if it has not ended within a minute: a server that
/// should have refused to start would otherwise serve forever.
fn r5e(args: &[&str]) -> Ran {
    let mut child = Command::new(env!("CARGO_BIN_EXE_r5e"))
        .args(args)
        .env_remove("R5E_DATA_DIR")
        .env_remove("R5E_DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let stdout = std::thread::spawn(move || {
        let mut s = String::new();
        out.read_to_string(&mut s).unwrap();
        s
    });
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        err.read_to_string(&mut s).unwrap();
        s
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("r5e {args:?} did not end within a minute: {}", stderr.join().unwrap());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ran { code: status.code(), stdout: stdout.join().unwrap(), stderr: stderr.join().unwrap() }
}

/// The quickstart run to completion in `data` (`store` adds `--database-url`).
fn quickstart(data: &Path, store: &[&str]) {
    let example = repo().join("examples/quickstart");
    let ran = r5e(&[&["run", example.to_str().unwrap(), "--data-dir", data.to_str().unwrap()], store].concat());
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
}

/// Turn the forbid of the quickstart's Policy `no-prod-writes` into a permit, or back.
const TAMPER_SQLITE: &str = "UPDATE resources SET body = replace(body, '\"cedar\":\"forbid(', '\"cedar\":\"permit(') \
                             WHERE kind = 'Policy' AND name = 'no-prod-writes'";
const RESTORE_SQLITE: &str = "UPDATE resources SET body = replace(body, '\"cedar\":\"permit(', '\"cedar\":\"forbid(') \
                              WHERE kind = 'Policy' AND name = 'no-prod-writes'";

async fn sqlite(data: &Path, statements: &[&'static str]) {
    let url = format!("sqlite://{}", data.join("r5e.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    for sql in statements {
        let done = sqlx::query(*sql).execute(&pool).await.unwrap();
        assert_eq!(done.rows_affected(), 1, "{sql}");
    }
    pool.close().await;
}

/// The seq of the event that wrote the quickstart's `no-prod-writes` Policy.
fn no_prod_writes_seq(store: &[&str]) -> u64 {
    let ran =
        r5e(&[&["audit", "log", "--type", "resource.created", "--subject", "Policy/default/no-prod-writes"], store]
            .concat());
    let row = ran.stdout.lines().find(|l| l.contains("Policy/default/no-prod-writes")).expect("the Policy was created");
    row.split(|c: char| !c.is_ascii_digit()).find(|s| !s.is_empty()).unwrap().parse().unwrap()
}

/// `verify --state` passes and `serve` starts on a clean store.
fn assert_clean(data: &Path, store: &[&str]) {
    let ran = r5e(&[&["audit", "verify", "--state", "--data-dir", data.to_str().unwrap()], store].concat());
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(ran.stdout.starts_with("verified "), "{}", ran.stdout);
    assert!(ran.stdout.contains("stored resources are exactly what the log wrote"), "{}", ran.stdout);
}

/// What every refusal to start says.
fn assert_refuses_to_start(ran: &Ran, named: &str) {
    assert_eq!(ran.code, Some(2), "{}{}", ran.stdout, ran.stderr);
    assert!(ran.stderr.contains("refusing to start"), "{}", ran.stderr);
    assert!(ran.stderr.contains(named), "{}", ran.stderr);
    assert!(ran.stderr.contains("r5e audit verify --state"), "{}", ran.stderr);
    assert!(!ran.stderr.contains("r5e serving on"), "{}", ran.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_policy_row_is_named_and_stops_serve_and_run() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    quickstart(&data, &[]);
    assert_clean(&data, &[]);
    let seq = no_prod_writes_seq(&["--data-dir", d]);

    sqlite(&data, &[TAMPER_SQLITE]).await;
    // The chain alone still verifies: this is the gap.
    let chain = r5e(&["audit", "verify", "--data-dir", d]);
    assert_eq!(chain.code, Some(0), "{}", chain.stderr);

    let state = r5e(&["audit", "verify", "--state", "--data-dir", d]);
    assert_eq!(state.code, Some(1), "{}{}", state.stdout, state.stderr);
    let named = format!("Policy/default/no-prod-writes differs from event {seq}, which wrote it last, at spec.cedar");
    assert!(state.stderr.contains(&named), "{}", state.stderr);
    assert!(state.stderr.contains("state does not match the log: 1 difference(s)"), "{}", state.stderr);

    let serve = r5e(&["serve", "--data-dir", d, "--listen", "127.0.0.1:0", "--plain-http", "--no-controllers"]);
    assert_refuses_to_start(&serve, &named);
    assert!(!data.join("admin.token").exists(), "the server refused before it made anything");
    let example = repo().join("examples/quickstart");
    let run = r5e(&["run", example.to_str().unwrap(), "--data-dir", d]);
    assert_refuses_to_start(&run, &named);

    sqlite(&data, &[RESTORE_SQLITE]).await;
    assert_clean(&data, &[]);
    let server = common::start(&data, true);
    drop(server);
    let again = r5e(&["run", example.to_str().unwrap(), "--data-dir", d]);
    assert_eq!(again.code, Some(0), "{}", again.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_row_change_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    quickstart(&data, &[]);
    sqlite(
        &data,
        &[
            // A status the controllers never wrote.
            "UPDATE resources SET body = json_set(body, '$.status.phase', 'Failed') \
             WHERE kind = 'Graph' AND name = 'release-notes'",
            // A row removed.
            "DELETE FROM resources WHERE kind = 'Guideline' AND name = 'house-style'",
            // A row no event wrote, copied from a real one under another name.
            "INSERT INTO resources (kind, namespace, name, uid, resource_version, body) \
             SELECT kind, namespace, 'open-door', 'made-up-uid', resource_version, \
                    json_set(replace(body, 'forbid(', 'permit('), '$.metadata.name', 'open-door') \
             FROM resources WHERE kind = 'Policy' AND name = 'no-prod-writes'",
        ],
    )
    .await;
    let state = r5e(&["audit", "verify", "--state", "--data-dir", d]);
    assert_eq!(state.code, Some(1), "{}", state.stderr);
    for named in [
        "Graph/default/release-notes differs from event ",
        ", which wrote it last, at status.phase",
        "Guideline/default/house-style is missing: event ",
        "Policy/default/open-door is stored (resourceVersion ",
        "no event leaves it in place",
        "3 difference(s)",
    ] {
        assert!(state.stderr.contains(named), "{named}: {}", state.stderr);
    }
    // Startup checks each stored row against its own event: the edited and the made-up rows.
    let serve = r5e(&["serve", "--data-dir", d, "--listen", "127.0.0.1:0", "--plain-http", "--no-controllers"]);
    assert_refuses_to_start(&serve, "Graph/default/release-notes differs from event ");
    assert!(serve.stderr.contains("(2 problem(s) among 32 stored resources)"), "{}", serve.stderr);
    assert!(serve.stderr.contains("Policy/default/open-door is stored"), "{}", serve.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_policy_row_is_named_and_stops_serve() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    quickstart(&data, &[]);
    let seq = no_prod_writes_seq(&["--data-dir", d]);
    // Removing a forbid does what turning it into a permit does.
    sqlite(&data, &["DELETE FROM resources WHERE kind = 'Policy' AND name = 'no-prod-writes'"]).await;
    let state = r5e(&["audit", "verify", "--state", "--data-dir", d]);
    assert_eq!(state.code, Some(1), "{}", state.stderr);
    let named = format!("Policy/default/no-prod-writes is missing: event {seq} wrote it and no later event removed it");
    assert!(state.stderr.contains(&named), "{}", state.stderr);
    // Startup counts what it cannot name without a replay.
    let serve = r5e(&["serve", "--data-dir", d, "--listen", "127.0.0.1:0", "--plain-http", "--no-controllers"]);
    assert_refuses_to_start(&serve, "1 resource(s) that the log leaves in place at seq ");
    assert!(serve.stderr.contains("are not stored: their rows were removed outside r5e"), "{}", serve.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_policy_row_on_postgres() {
    let Some(url) = storage_postgres::testing::fresh_database_url().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let store = ["--database-url", url.as_str()];
    quickstart(&data, &store);
    let d = ["--data-dir", data.to_str().unwrap()];
    assert_clean(&data, &store);
    let seq = no_prod_writes_seq(&[&d[..], &store].concat());
    // A superuser can change the resources table.
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let tamper = |from: &str, to: &str| {
        format!(
            "UPDATE resources SET body = jsonb_set(body, '{{spec,cedar}}', \
             to_jsonb(replace(body #>> '{{spec,cedar}}', '{from}(', '{to}('))) \
             WHERE kind = 'Policy' AND name = 'no-prod-writes'"
        )
    };
    assert_eq!(
        sqlx::query(sqlx::AssertSqlSafe(tamper("forbid", "permit"))).execute(&pool).await.unwrap().rows_affected(),
        1
    );

    let state = r5e(&[&["audit", "verify", "--state"][..], &d, &store].concat());
    assert_eq!(state.code, Some(1), "{}", state.stderr);
    let named = format!("Policy/default/no-prod-writes differs from event {seq}, which wrote it last, at spec.cedar");
    assert!(state.stderr.contains(&named), "{}", state.stderr);
    let serve =
        r5e(&[&["serve", "--listen", "127.0.0.1:0", "--plain-http", "--no-controllers"][..], &d, &store].concat());
    assert_refuses_to_start(&serve, &named);

    assert_eq!(
        sqlx::query(sqlx::AssertSqlSafe(tamper("permit", "forbid"))).execute(&pool).await.unwrap().rows_affected(),
        1
    );
    assert_clean(&data, &store);
}
