//! Replicas: three `r5e serve` processes on one Postgres database, with the CAS and the sessions'
//! token key in the database, the controllers' shards divided between them. One of them is killed with SIGKILL while it runs a session; the
//! other two finish the work, every artifact is readable through any of them, and the chain and
//! the stored state verify.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `r5e` against the server whose data directory is `data` (its kubeconfig names server and
/// token).
fn r5e_in(data: &Path, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_r5e"));
    c.args(args).env("R5E_DATA_DIR", data).env_remove("R5E_SERVER").env_remove("R5E_TOKEN");
    c.env_remove("R5E_DATABASE_URL").env_remove("R5E_CAS").output().unwrap()
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// Poll `what` every 100 ms until it gives something, for at most `limit`.
fn wait_for<T>(limit: Duration, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

struct Replica {
    server: common::Server,
    data: PathBuf,
    work: PathBuf,
}

fn replica(dir: &Path, i: usize, url: &str, root: &Path) -> Replica {
    let (data, work) = (dir.join(format!("data-{i}")), dir.join(format!("work-{i}")));
    let args = [
        "--database-url",
        url,
        "--cas",
        "database",
        "--lease-seconds",
        "2",
        "--base-dir",
        root.to_str().unwrap(),
        "--work-dir",
        work.to_str().unwrap(),
    ];
    let server = common::start_with(&data, true, &args);
    Replica { server, data, work }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_the_work_and_finish_what_a_killed_one_started() {
    let Some(url) = storage_postgres::testing::fresh_database_url().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("quickstart");
    common::copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart"), &root);
    // The writer takes a second before it starts, so that a replica can be killed mid-session.
    let agents = std::fs::read_to_string(root.join("10-agents.yaml")).unwrap();
    let slow = agents.replace(
        "    program: python3\n    args: [agents/writer.py]\n",
        "    program: sh\n    args: [-c, \"sleep 1 && exec python3 agents/writer.py\"]\n",
    );
    assert_ne!(slow, agents, "the writer's Harness is where this test expects it");
    std::fs::write(root.join("10-agents.yaml"), slow).unwrap();

    let mut replicas: Vec<Replica> = (0..3).map(|i| replica(dir.path(), i, &url, &root)).collect();
    // The controllers' shards are divided between the three: every shard held once, by a live
    // replica, and each replica holding some.
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let pids: Vec<u32> = replicas.iter().map(|r| r.server.child.id()).collect();
    let spread = wait_for_shards(&pool, &pids, 3).await;
    assert_eq!(spread.iter().sum::<usize>(), runtime::shards::SHARDS as usize, "{spread:?}");
    let applied = r5e_in(&replicas[0].data, &["apply", "-f", root.to_str().unwrap()]);
    assert!(applied.status.success(), "{}", text(&applied.stderr));

    // Wait until some replica runs a session, then kill that replica.
    let observer = replicas[2].data.clone();
    let (victim, session) = wait_for(Duration::from_secs(60), "a running session", || {
        let list = json_of(&r5e_in(&observer, &["get", "agentsessions", "-o", "json"]));
        list["items"].as_array()?.iter().find_map(|s| {
            let holder = s.pointer("/status/lease/holder")?.as_str()?;
            let running = s.pointer("/status/phase")? == "Running";
            let pid = holder.strip_prefix("r5e-")?.split('-').next()?.parse::<u32>().ok()?;
            let at = replicas.iter().position(|r| r.server.child.id() == pid)?;
            running.then(|| (at, s["metadata"]["name"].as_str().unwrap().to_string()))
        })
    });
    let killed = replicas.remove(victim);
    let mut server = killed.server;
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    // The two left take the dead one's shards between them.
    let pids: Vec<u32> = replicas.iter().map(|r| r.server.child.id()).collect();
    wait_for_shards(&pool, &pids, 2).await;

    // The others finish the work: the session the killed one held is Degraded, and its Task tried
    // again on a live replica.
    let survivor = replicas[0].data.clone();
    let phase = wait_for(Duration::from_secs(120), "the Graph to finish", || {
        let g = json_of(&r5e_in(&survivor, &["get", "graph", "release-notes", "-o", "json"]));
        let phase = g.pointer("/status/phase")?.as_str()?.to_string();
        matches!(phase.as_str(), "Succeeded" | "Failed").then_some(phase)
    });
    assert_eq!(phase, "Succeeded");
    let cut = json_of(&r5e_in(&survivor, &["get", "agentsession", &session, "-o", "json"]));
    assert_eq!(cut.pointer("/status/phase").and_then(Value::as_str), Some("Degraded"), "{cut:#}");
    let pid = server.child.id().to_string();
    let failure = cut.pointer("/status/failure").and_then(Value::as_str).unwrap_or_default();
    assert!(failure.contains(&format!("(r5e-{pid}-")), "{failure}");

    // Every artifact, whoever stored it, is readable through every live replica and from the
    // database directly.
    for r in &replicas {
        let artifacts = json_of(&r5e_in(&r.data, &["get", "artifacts", "-o", "json"]));
        let items = artifacts["items"].as_array().unwrap();
        assert!(items.len() >= 6, "{artifacts:#}");
        for a in items {
            let digest = a.pointer("/spec/digest").and_then(Value::as_str).unwrap();
            let got = Command::new(env!("CARGO_BIN_EXE_r5e"))
                .args(["cas", "get", digest, "--cas", "database", "--database-url", &url, "--data-dir"])
                .arg(&r.data)
                .output()
                .unwrap();
            assert!(got.status.success(), "{digest}: {}", text(&got.stderr));
            let size = a.pointer("/spec/size").and_then(Value::as_u64).unwrap();
            assert_eq!(got.stdout.len() as u64, size, "{digest}");
        }
    }
    // One key signs every replica's session tokens.
    let keys: Vec<String> = replicas
        .iter()
        .map(|r| {
            let out = Command::new(env!("CARGO_BIN_EXE_r5e"))
                .args(["token", "public-key", "--database-url", &url, "--data-dir"])
                .arg(&r.data)
                .output()
                .unwrap();
            text(&out.stdout)
        })
        .collect();
    assert!(keys[0].starts_with("ed25519/") && keys.iter().all(|k| k == &keys[0]), "{keys:?}");
    // The chain and the stored state verify, and the killed replica left no process behind.
    let verify = Command::new(env!("CARGO_BIN_EXE_r5e"))
        .args(["audit", "verify", "--state", "--database-url", &url, "--data-dir"])
        .arg(&survivor)
        .output()
        .unwrap();
    assert!(verify.status.success(), "{}\n{}", text(&verify.stdout), text(&verify.stderr));
    let ps = Command::new("ps").args(["-eo", "args"]).output().unwrap();
    let work = killed.work.to_str().unwrap();
    assert!(!text(&ps.stdout).lines().any(|l| l.contains(work)), "{}", text(&ps.stdout));
}

/// Wait until the shard leases are held, unlapsed, by exactly the processes `pids` (each holding
/// at least one, `members` of them in all) and nobody else; how many each holds.
async fn wait_for_shards(pool: &sqlx::PgPool, pids: &[u32], members: usize) -> Vec<usize> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT holder, count(*) FROM leases WHERE name LIKE 'shard/%' \
             AND expires_ms > (extract(epoch FROM clock_timestamp()) * 1000)::bigint GROUP BY holder ORDER BY holder",
        )
        .fetch_all(pool)
        .await
        .unwrap();
        let by_pid: Vec<(Option<u32>, usize)> = rows
            .iter()
            .map(|(h, n)| (h.strip_prefix("r5e-").and_then(|r| r.split('-').next()?.parse().ok()), *n as usize))
            .collect();
        let total: usize = by_pid.iter().map(|(_, n)| n).sum();
        let ours = by_pid.iter().all(|(pid, _)| pid.is_some_and(|p| pids.contains(&p)));
        if ours && by_pid.len() == members && total == runtime::shards::SHARDS as usize {
            return by_pid.into_iter().map(|(_, n)| n).collect();
        }
        assert!(Instant::now() < deadline, "the shards are not divided between {pids:?}: {rows:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
