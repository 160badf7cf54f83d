//! Postgres restarted under a running `r5e serve`: writes made while it is down fail with a clear
//! error, the server stays up and reconnects, every write it acknowledged is still there, the
//! chain and the stored state verify, and governed work runs again afterwards.
//!
//! The test runs a Postgres cluster of its own (it must stop and start it), from the server
//! binaries installed on this machine; without them it is skipped, unless
//! `R5E_REQUIRE_POSTGRES=1`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A Postgres cluster in a directory of its own, on a port of its own; stopped when dropped.
struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// Run its tools as the `postgres` user (initdb refuses to run as root).
    as_postgres: bool,
}

impl Cluster {
    fn start() -> Option<Cluster> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("bin"))
            .filter(|b| b.join("initdb").exists())
            .max();
        let Some(bin) = bin else {
            let required = std::env::var("R5E_REQUIRE_POSTGRES").is_ok_and(|v| v == "1");
            assert!(!required, "R5E_REQUIRE_POSTGRES=1 but no Postgres server binaries are installed");
            return None;
        };
        let uid = Command::new("id").arg("-u").output().unwrap();
        let as_postgres = text(&uid.stdout).trim() == "0";
        let dir = tempfile::tempdir().unwrap();
        if as_postgres {
            let chown = Command::new("chown").args(["postgres"]).arg(dir.path()).status().unwrap();
            assert!(chown.success());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let c = Cluster { dir, bin, port, as_postgres };
        let init = c.tool("initdb", &["-A", "trust", "-U", "postgres", "-D", &c.data()]);
        assert!(init.status.success(), "initdb: {}", text(&init.stderr));
        c.up();
        Some(c)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").to_str().unwrap().to_string()
    }

    fn tool(&self, name: &str, args: &[&str]) -> Output {
        let program = self.bin.join(name);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        };
        command.args(args).output().unwrap()
    }

    fn up(&self) {
        let options =
            format!("-k {} -p {} -c listen_addresses=127.0.0.1 -c fsync=off", self.dir.path().display(), self.port);
        let log = self.dir.path().join("log");
        let out =
            self.tool("pg_ctl", &["-D", &self.data(), "-o", &options, "-l", log.to_str().unwrap(), "-w", "start"]);
        assert!(
            out.status.success(),
            "pg_ctl start: {}{}",
            text(&out.stderr),
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }

    fn down(&self) {
        let out = self.tool("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"]);
        assert!(out.status.success(), "pg_ctl stop: {}", text(&out.stderr));
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.tool("pg_ctl", &["-D", &self.data(), "-m", "immediate", "-w", "stop"]);
    }
}

fn r5e_in(data: &Path, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_r5e"));
    c.args(args).env("R5E_DATA_DIR", data).env_remove("R5E_SERVER").env_remove("R5E_TOKEN");
    c.env_remove("R5E_DATABASE_URL").env_remove("R5E_CAS").output().unwrap()
}

/// Apply one Graph named `name` through the server: acknowledged, or why not.
fn write_graph(data: &Path, dir: &Path, name: &str) -> Result<(), String> {
    let file = dir.join(format!("{name}.yaml"));
    let manifest = format!(
        "apiVersion: r5e.ai/v1alpha1\nkind: Graph\nmetadata:\n  name: {name}\nspec:\n  description: written across a restart\n  authority: {{capabilities: [text.analyse]}}\n"
    );
    std::fs::write(&file, manifest).unwrap();
    let out = r5e_in(data, &["apply", "-f", file.to_str().unwrap()]);
    if out.status.success() { Ok(()) } else { Err(text(&out.stderr)) }
}

#[test]
fn postgres_restarted_under_a_running_server_loses_nothing_acknowledged() {
    let Some(cluster) = Cluster::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("quickstart");
    common::copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart"), &root);
    let data = dir.path().join("data");
    let url = cluster.url();
    let args = ["--database-url", &url, "--base-dir", root.to_str().unwrap(), "--lease-seconds", "4"];
    let mut server = common::start_with(&data, true, &args);

    // A client writes one Graph after another, noting which the server acknowledged.
    let manifests = dir.path().join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::<(usize, bool)>::new()));
    let last_error = Arc::new(Mutex::new(String::new()));
    let writer = {
        let (stop, acked, data, manifests) = (stop.clone(), acked.clone(), data.clone(), manifests.clone());
        let last_error = last_error.clone();
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Acquire) {
                let written = write_graph(&data, &manifests, &format!("g-{i}"));
                if let Err(e) = &written {
                    *last_error.lock().unwrap() = e.clone();
                }
                acked.lock().unwrap().push((i, written.is_ok()));
                i += 1;
            }
        })
    };
    let acknowledged = |since: usize| acked.lock().unwrap().iter().filter(|(i, ok)| *ok && *i >= since).count();
    let wait = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !done() {
            assert!(Instant::now() < deadline, "gave up waiting for {what}: {}", last_error.lock().unwrap());
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait("writes before the restart", &|| acknowledged(0) >= 5);

    cluster.down();
    let down_from = acked.lock().unwrap().len();
    wait("a write refused while Postgres is down", &|| acked.lock().unwrap()[down_from..].iter().any(|(_, ok)| !ok));
    cluster.up();
    let up_from = acked.lock().unwrap().len();
    wait("writes after the restart", &|| acknowledged(up_from) >= 5);
    stop.store(true, Ordering::Release);
    writer.join().unwrap();
    assert!(server.child.try_wait().unwrap().is_none(), "the server died: {}", server.stderr.lock().unwrap());

    // Every acknowledged write is stored.
    let list = r5e_in(&data, &["get", "graphs", "-o", "json"]);
    assert!(list.status.success(), "{}", text(&list.stderr));
    let listed: Value = serde_json::from_slice(&list.stdout).unwrap();
    let names: Vec<&str> =
        listed["items"].as_array().unwrap().iter().filter_map(|g| g["metadata"]["name"].as_str()).collect();
    let outcomes = acked.lock().unwrap().clone();
    for (i, ok) in &outcomes {
        if *ok {
            assert!(names.contains(&format!("g-{i}").as_str()), "g-{i} was acknowledged and is gone: {names:?}");
        }
    }
    assert!(outcomes.iter().any(|(_, ok)| !ok), "some write must have met the restart");
    // A refused write says why, plainly.
    let refusal = last_error.lock().unwrap().clone();
    eprintln!("a write refused while Postgres was down: {refusal}");
    assert!(refusal.contains("503"), "{refusal}");

    // Governed work runs through the reconnected server: controllers, streams and sessions.
    let applied = r5e_in(&data, &["apply", "-f", root.to_str().unwrap()]);
    assert!(applied.status.success(), "{}", text(&applied.stderr));
    let deadline = Instant::now() + Duration::from_secs(120);
    let phase = loop {
        let g = r5e_in(&data, &["get", "graph", "release-notes", "-o", "json"]);
        let g: Value = serde_json::from_slice(&g.stdout).unwrap_or(Value::Null);
        let phase = g.pointer("/status/phase").and_then(Value::as_str).unwrap_or_default().to_string();
        if matches!(phase.as_str(), "Succeeded" | "Failed") {
            break phase;
        }
        assert!(Instant::now() < deadline, "the Graph did not finish after the restart: {g:#}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(phase, "Succeeded", "{}", server.stderr.lock().unwrap());

    let verify = Command::new(env!("CARGO_BIN_EXE_r5e"))
        .args(["audit", "verify", "--state", "--database-url", &url, "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(verify.status.success(), "{}\n{}", text(&verify.stdout), text(&verify.stderr));
    server.child.kill().unwrap();
    server.child.wait().unwrap();
}
