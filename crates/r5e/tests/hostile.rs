//! A hostile harness (`tests/harnesses/hostile.py`) tries to get around the sandbox, one attack
//! per test, through the real binary (`r5e run`), on the embedded store and on Postgres. Each
//! test checks the effect (what the harness could have taken or changed), not only what the
//! harness says it reached, and that the audit chain still verifies afterwards.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn harnesses() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/harnesses").canonicalize().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The secret planted where only the server may read it.
const SECRET: &str = "the-admin-token-a-harness-must-never-see";

/// One run of an attack.
struct Attack {
    _dir: tempfile::TempDir,
    data: PathBuf,
    work: PathBuf,
    out: Output,
    /// The store flags (`--database-url ...`) of the run, for `r5e audit verify`.
    store: Vec<String>,
}

impl Attack {
    fn stdout(&self) -> String {
        text(&self.out.stdout)
    }

    /// What the harness reported (`findings.json`), read from the CAS.
    fn findings(&self) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        for entry in walk(&self.data.join("blobs")) {
            let Ok(bytes) = std::fs::read(&entry) else { continue };
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes)
                && v.get("attack").is_some()
            {
                out.push(v);
            }
        }
        out
    }

    /// The harness reported at least once, and reached nothing.
    fn assert_contained(&self) {
        let findings = self.findings();
        assert!(!findings.is_empty(), "the harness never reported:\n{}\n{}", self.stdout(), text(&self.out.stderr));
        for f in &findings {
            assert_eq!(f["reached"], serde_json::json!([]), "the attack got through: {f:#}");
        }
    }

    /// No stored byte (artifact, transcript) holds `secret`.
    fn assert_nothing_holds(&self, secret: &str) {
        for entry in walk(&self.data.join("blobs")) {
            let bytes = std::fs::read(&entry).unwrap_or_default();
            assert!(!text(&bytes).contains(secret), "{} holds the secret", entry.display());
        }
    }

    /// The run's events of type `kind`, one JSON object a line.
    fn audit_log(&self, kind: &str) -> String {
        let mut args = vec!["audit", "log", "--type", kind, "-o", "json", "--limit", "1000", "--data-dir"];
        let data = self.data.display().to_string();
        args.push(&data);
        args.extend(self.store.iter().map(String::as_str));
        text(&Command::new(env!("CARGO_BIN_EXE_r5e")).args(&args).output().unwrap().stdout)
    }

    fn assert_chain_verifies(&self) {
        let mut args = vec!["audit".to_string(), "verify".into(), "--state".into(), "--data-dir".into()];
        args.push(self.data.display().to_string());
        args.extend(self.store.iter().cloned());
        let out = Command::new(env!("CARGO_BIN_EXE_r5e")).args(&args).output().unwrap();
        assert!(out.status.success(), "{}\n{}", text(&out.stdout), text(&out.stderr));
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out
}

/// Run `attack` with the Graph's `budgets` (YAML flow map) and the extra Harness `env`, on the
/// embedded store, or on Postgres when `database` is given.
fn run_attack(attack: &str, budgets: &str, env: &[(&str, String)], database: Option<&str>) -> Attack {
    run_attack_with(attack, budgets, env, "[]", database)
}

/// [`run_attack`], the Harness naming `secrets` (a YAML flow list; `DATA` stands for the data
/// directory).
fn run_attack_with(
    attack: &str,
    budgets: &str,
    env: &[(&str, String)],
    secrets: &str,
    database: Option<&str>,
) -> Attack {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("manifests");
    let data = dir.path().join("data");
    let work = dir.path().join("work");
    std::fs::create_dir_all(&data).unwrap();
    // What the server keeps: a token, and another session's workspace.
    std::fs::write(data.join("admin.token"), SECRET).unwrap();
    std::fs::create_dir_all(work.join("default/victim")).unwrap();
    std::fs::write(work.join("default/victim/secret.txt"), SECRET).unwrap();
    let data_path = data.canonicalize().unwrap().display().to_string();
    let mut harness_env = format!("ATTACK: {attack}, TARGET_DATA: \"{data_path}\"");
    for (k, v) in env {
        harness_env.push_str(&format!(", {k}: \"{v}\""));
    }
    hostile_work(&root, "hostile.py", &harness_env, budgets, &secrets.replace("DATA", &data_path));
    let mut store = Vec::new();
    if let Some(url) = database {
        store = vec!["--database-url".to_string(), url.to_string()];
    }
    let out = Command::new(env!("CARGO_BIN_EXE_r5e"))
        .args(["run", root.to_str().unwrap(), "--timeout", "120", "--data-dir"])
        .arg(&data)
        .arg("--work-dir")
        .arg(&work)
        .args(&store)
        .env_remove("R5E_DATA_DIR")
        .env_remove("R5E_DATABASE_URL")
        .env("R5E_TEST_SERVER_SECRET", SECRET)
        .env("R5E_TEST_GIVEN_SECRET", "a-secret-the-harness-was-given")
        .output()
        .expect("r5e runs");
    Attack { _dir: dir, data, work, out, store }
}

/// Run `attack` on the embedded store and (when a server is configured) on Postgres, and check
/// each run with `check`.
async fn on_both_stores(attack: &str, budgets: &str, env: &[(&str, String)], check: impl Fn(&Attack)) {
    let embedded = run_attack(attack, budgets, env, None);
    check(&embedded);
    embedded.assert_chain_verifies();
    if let Some(url) = storage_postgres::testing::fresh_database_url().await {
        let pg = run_attack(attack, budgets, env, Some(&url));
        check(&pg);
        pg.assert_chain_verifies();
    }
}

const BUDGETS: &str = "{tool_calls: 5}";

#[tokio::test]
async fn read_the_admin_token() {
    on_both_stores("read-admin-token", BUDGETS, &[], |a| {
        a.assert_contained();
        a.assert_nothing_holds(SECRET);
    })
    .await;
}

#[tokio::test]
async fn read_the_database() {
    // On Postgres there is no database file: the attack finds nothing, which is also contained.
    on_both_stores("read-database", BUDGETS, &[], |a| a.assert_contained()).await;
}

#[tokio::test]
async fn read_the_cas() {
    on_both_stores("read-cas", BUDGETS, &[], |a| a.assert_contained()).await;
}

#[tokio::test]
async fn read_another_sessions_workspace() {
    on_both_stores("read-another-workspace", BUDGETS, &[], |a| {
        a.assert_contained();
        a.assert_nothing_holds(SECRET);
        assert!(a.work.join("default/victim/secret.txt").exists());
    })
    .await;
}

#[tokio::test]
async fn read_the_servers_environment() {
    on_both_stores("read-server-environment", BUDGETS, &[], |a| {
        a.assert_contained();
        a.assert_nothing_holds(SECRET);
    })
    .await;
}

#[tokio::test]
async fn write_to_the_data_directory() {
    on_both_stores("write-data-dir", BUDGETS, &[], |a| {
        a.assert_contained();
        assert!(!a.data.join("planted").exists(), "the harness planted a file in the data directory");
    })
    .await;
}

#[tokio::test]
async fn follow_a_symlink_out_of_the_workspace() {
    on_both_stores("follow-a-symlink-out", BUDGETS, &[], |a| {
        a.assert_contained();
        a.assert_nothing_holds(SECRET);
    })
    .await;
}

#[tokio::test]
async fn climb_out_of_the_workspace_with_dotdot() {
    on_both_stores("climb-out-with-dotdot", BUDGETS, &[], |a| {
        a.assert_contained();
        a.assert_nothing_holds(SECRET);
    })
    .await;
}

#[tokio::test]
async fn use_a_descriptor_inherited_from_the_server() {
    on_both_stores("read-inherited-descriptors", BUDGETS, &[], |a| a.assert_contained()).await;
}

#[tokio::test]
async fn forge_lineage_or_model_identity() {
    on_both_stores("forge-provenance", BUDGETS, &[], |a| {
        a.assert_contained();
        assert!(a.stdout().contains("is not a protocol message"), "{}", a.stdout());
        let log = a.audit_log("resource.created");
        assert!(!log.contains("mallory-prime") && !log.contains("oracle") && !log.contains("forged.txt"), "{log}");
        // What it did produce names who really produced it.
        let findings = log
            .lines()
            .find(|l| l.contains("\"subject\":\"Artifact/default/n-attack-a1-out-1\""))
            .unwrap_or_else(|| panic!("no findings artifact: {log}"));
        assert!(findings.contains("\"agent\":{\"name\":\"hostile\"}"), "{findings}");
        assert!(findings.contains("\"provider\":\"mallory\""), "{findings}");
    })
    .await;
}

#[tokio::test]
async fn signal_or_kill_the_server() {
    on_both_stores("signal-the-server", BUDGETS, &[], |a| {
        a.assert_contained();
        assert!(a.stdout().contains("audit chain verified"), "the run did not finish: {}", a.stdout());
    })
    .await;
}

#[tokio::test]
async fn connect_to_a_port_it_was_not_given() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    on_both_stores("connect-elsewhere", BUDGETS, &[("TARGET_PORT", port.clone())], |a| a.assert_contained()).await;
    assert!(listener.accept().is_err(), "a harness connected to the listener");
}

#[tokio::test]
async fn fork_processes_that_outlive_the_session() {
    let marker = format!("r5e-stray-{}", std::process::id());
    on_both_stores("fork-processes-that-outlive-the-session", BUDGETS, &[("MARKER", marker.clone())], |a| {
        a.assert_contained();
        let ps = Command::new("pgrep").args(["-f", &marker]).output().unwrap();
        assert!(ps.stdout.is_empty(), "processes outlived their session: {}", text(&ps.stdout));
    })
    .await;
}

#[tokio::test]
async fn fork_bomb() {
    on_both_stores("fork-bomb", "{tool_calls: 5, processes: 40}", &[], |a| {
        a.assert_contained();
        let notes = a.findings()[0]["notes"].to_string();
        assert!(notes.contains("started"), "{notes}");
    })
    .await;
}

#[tokio::test]
async fn exhaust_memory() {
    // 4 GiB asked for against a budget of 512 MiB: refused or killed, and the run goes on.
    on_both_stores("exhaust-memory", "{tool_calls: 5, memory_bytes: 536870912}", &[], |a| {
        let findings = a.findings();
        for f in &findings {
            assert_eq!(f["reached"], serde_json::json!([]), "{f:#}");
        }
        assert!(a.stdout().contains("audit chain verified"), "{}", a.stdout());
    })
    .await;
}

#[tokio::test]
async fn write_a_file_beyond_its_budget() {
    on_both_stores("write-a-huge-file", "{tool_calls: 5, file_bytes: 1048576}", &[], |a| {
        a.assert_contained();
        let huge = walk(&a.work).into_iter().find(|p| p.ends_with("huge")).expect("the file was started");
        assert!(std::fs::metadata(huge).unwrap().len() <= 1 << 20);
    })
    .await;
}

#[tokio::test]
async fn flood_the_output() {
    on_both_stores("flood-output", BUDGETS, &[], |a| {
        let stdout = a.stdout();
        assert!(stdout.contains("harness printed more than its limit of 1048576 bytes"), "{stdout}");
        assert!(stdout.contains("audit chain verified"), "{stdout}");
    })
    .await;
}

#[test]
fn run_unconfined_where_policy_forbids_it() {
    // `sandbox: none` is a field policy sees: here a Policy forbids it, and the Harness that asks
    // for it is refused at admission.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("manifests");
    common::copy_dir(&repo().join("examples/quickstart"), &root);
    std::fs::write(
        root.join("05-no-unconfined.yaml"),
        "apiVersion: r5e.ai/v1alpha1
kind: Policy
metadata: {name: harnesses-stay-confined}
spec:
  cedar: |
    forbid(principal, action, resource is r5e::Harness)
      when { resource.spec has sandbox && resource.spec.sandbox == \"none\" };
---
apiVersion: r5e.ai/v1alpha1
kind: Harness
metadata: {name: escapee}
spec: {type: command, sandbox: none, command: {program: sh, args: [-c, 'cat /etc/hostname']}}
",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_r5e"))
        .args(["run", root.to_str().unwrap(), "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--work-dir")
        .arg(dir.path().join("work"))
        .env_remove("R5E_DATA_DIR")
        .env_remove("R5E_DATABASE_URL")
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    let refused = stdout.lines().find(|l| l.contains("default/escapee")).unwrap_or_default();
    assert!(refused.contains("refused"), "{stdout}");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("forbidden by default/harnesses-stay-confined"), "the refusal names the policy: {stderr}");
    assert!(!out.status.success(), "a run with a refused manifest does not start the work");
}

/// The quickstart's governance and reviewer, a Tool with a hole (`file-reader`), and the Graph
/// `g` with `budgets` whose one Node is done by a harness running `script` (from
/// tests/harnesses) with `env` (a YAML flow map's entries) and `secrets` (a YAML flow list).
fn hostile_work(root: &Path, script: &str, env: &str, budgets: &str, secrets: &str) {
    common::copy_dir(&repo().join("examples/quickstart"), root);
    std::fs::remove_file(root.join("20-work.yaml")).unwrap();
    std::fs::copy(harnesses().join("file_reader.py"), root.join("tools/file_reader.py")).unwrap();
    let manifests = format!(
        "apiVersion: r5e.ai/v1alpha1
kind: Graph
metadata: {{name: g}}
spec:
  authority: {{capabilities: [notes.write, text.analyse], scope: [\"repo:notes/2.4/*\"], budgets: {budgets}}}
---
apiVersion: r5e.ai/v1alpha1
kind: Tool
metadata: {{name: file-reader}}
spec:
  description: Print a file
  capability: text.analyse
  inputSchema: {{type: object, properties: {{path: {{type: string}}}}, required: [path]}}
  command: {{program: python3, args: [tools/file_reader.py], timeoutSeconds: 10}}
---
apiVersion: r5e.ai/v1alpha1
kind: Tool
metadata: {{name: notes}}
spec:
  description: Print a file of the notes repository
  capability: text.analyse
  target: {{system: repo, argument: path}}
  inputSchema: {{type: object, properties: {{path: {{type: string}}}}, required: [path]}}
  command: {{program: python3, args: [tools/file_reader.py], timeoutSeconds: 10}}
---
apiVersion: r5e.ai/v1alpha1
kind: Harness
metadata: {{name: hostile}}
spec:
  type: command
  command: {{program: python3, args: [\"{script}\"], env: {{{env}}}, timeoutSeconds: 60, maxOutputBytes: 1048576, readPaths: [\"{dir}\"], secrets: {secrets}}}
---
apiVersion: r5e.ai/v1alpha1
kind: Agent
metadata: {{name: hostile, labels: {{r5e.ai/role: hostile}}}}
spec: {{role: Task, harnessRef: {{name: hostile}}, model: {{provider: mallory, name: m1}}, capabilities: [notes.write, text.analyse]}}
---
apiVersion: r5e.ai/v1alpha1
kind: Workflow
metadata: {{name: w}}
spec:
  steps:
    - name: attack
      agentSelector: {{matchLabels: {{r5e.ai/role: hostile}}}}
      review: {{reviewerSelector: {{matchLabels: {{r5e.ai/role: reviewer}}}}, maxRounds: 1}}
---
apiVersion: r5e.ai/v1alpha1
kind: Node
metadata: {{name: n}}
spec: {{graphRef: {{name: g}}, description: an attack, workflowRef: {{name: w}}, inputs: {{}}}}
",
        script = harnesses().join(script).display(),
        dir = harnesses().display(),
    );
    std::fs::write(root.join("20-work.yaml"), manifests).unwrap();
}

fn r5e_in(data: &Path, token: Option<&str>, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_r5e"));
    c.args(args).env("R5E_DATA_DIR", data).env_remove("R5E_SERVER").env_remove("R5E_DATABASE_URL");
    match token {
        Some(t) => c.env("R5E_TOKEN", t),
        None => c.env_remove("R5E_TOKEN"),
    };
    c.output().unwrap()
}

/// Wait until Graph `g` has finished (Succeeded or Failed).
fn wait_for_graph(data: &Path) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let out = r5e_in(data, None, &["get", "graph", "g", "-o", "json"]);
        let phase = serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .ok()
            .and_then(|v| v.pointer("/status/phase").and_then(|p| p.as_str()).map(str::to_string))
            .unwrap_or_default();
        if phase == "Succeeded" || phase == "Failed" {
            return phase;
        }
        assert!(std::time::Instant::now() < deadline, "the graph did not finish: {}", text(&out.stdout));
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

async fn api_attacks(database: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let (root, data) = (dir.path().join("manifests"), dir.path().join("data"));
    // A token for the same session, signed by a key that is not the server's.
    let forged = tokens::Issuer::generate()
        .mint(&tokens::Grant {
            namespace: "default".into(),
            session: "n-attack-a1".into(),
            uid: "made-up".into(),
            chain: vec![],
            reads: vec![("Task".into(), "n-attack".into())],
            creates: true,
            expires_at: chrono::Utc::now() + chrono::Duration::hours(1),
        })
        .unwrap()
        .token;
    hostile_work(&root, "api_client.py", &format!("FORGED_TOKEN: \"{forged}\""), BUDGETS, "[]");
    let mut args = vec!["--base-dir", root.to_str().unwrap()];
    if let Some(url) = database {
        args.extend(["--database-url", url]);
    }
    let server = common::start_with(&data, false, &args);
    let applied = r5e_in(&data, None, &["apply", "-f", root.to_str().unwrap()]);
    assert!(applied.status.success(), "{}", text(&applied.stderr));
    wait_for_graph(&data);
    let findings: Vec<serde_json::Value> = walk(&data.join("blobs"))
        .into_iter()
        .filter_map(|p| serde_json::from_slice::<serde_json::Value>(&std::fs::read(p).ok()?).ok())
        .filter(|v| v["attack"] == "api")
        .collect();
    assert!(!findings.is_empty(), "the harness never reported: {}", server.stderr.lock().unwrap());
    let f = &findings[0];
    let codes = &f["codes"];
    let expect = [
        ("read its own task", 200),
        ("read its own session", 200),
        ("read a policy", 403),
        ("list artifacts", 403),
        ("read another namespace", 403),
        ("create a node", 403),
        ("delete its own task", 403),
        ("approve itself", 403),
        ("no token", 401),
        ("garbage token", 401),
        ("tampered token", 401),
        ("forged token", 401),
    ];
    for (what, code) in expect {
        assert_eq!(codes[what], code, "{what}: {codes:#}");
    }
    // The session is over: its token no longer acts, though it is still signed and unexpired.
    let leaked = f["token"].as_str().unwrap();
    let after = r5e_in(&data, Some(leaked), &["get", "task", "n-attack"]);
    assert!(!after.status.success());
    assert!(text(&after.stderr).contains("no longer acts"), "{}", text(&after.stderr));
    // Offline, with the server's public key only: the leaked token is genuine, the forged one not.
    // (On Postgres the key is in the database.)
    let mut public_key = vec!["token", "public-key"];
    public_key.extend(database.iter().flat_map(|url| ["--database-url", *url]));
    let key = text(&r5e_in(&data, None, &public_key).stdout);
    assert!(key.starts_with("ed25519/"), "{key}");
    let valid = r5e_in(&data, None, &["token", "verify", leaked, "--public-key", key.trim()]);
    assert!(valid.status.success() && text(&valid.stdout).starts_with("valid"), "{}", text(&valid.stdout));
    let invalid = r5e_in(&data, None, &["token", "verify", &forged, "--public-key", key.trim()]);
    assert!(!invalid.status.success() && text(&invalid.stdout).starts_with("invalid"));
    let inspected = text(&r5e_in(&data, None, &["token", "inspect", leaked]).stdout);
    assert!(inspected.contains("session(\"default\", \"n-attack-a1\""), "{inspected}");
    assert!(inspected.contains("level(\"Graph/g\")") && inspected.contains("level(\"AgentSession/n-attack-a1\")"));
    // A token for it minted with the server's own key, but expired, is refused before that.
    let issuer = match database {
        None => tokens::Issuer::load_or_create(&data.join("session.key")).unwrap(),
        Some(url) => {
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            let key: Vec<u8> = sqlx::query_scalar("SELECT material FROM keys WHERE name = 'session-token'")
                .fetch_one(&pool)
                .await
                .unwrap();
            assert!(!data.join("session.key").exists(), "on Postgres the key is not in the data directory");
            tokens::Issuer::from_key_text(std::str::from_utf8(&key).unwrap()).unwrap()
        }
    };
    let expired = issuer
        .mint(&tokens::Grant {
            namespace: "default".into(),
            session: "n-attack-a1".into(),
            uid: "any".into(),
            chain: vec![],
            reads: vec![],
            creates: true,
            expires_at: chrono::Utc::now() - chrono::Duration::seconds(1),
        })
        .unwrap()
        .token;
    let out = r5e_in(&data, Some(&expired), &["get", "task", "n-attack"]);
    assert!(text(&out.stderr).contains("session token refused"), "{}", text(&out.stderr));
    // Every refusal of an authenticated session is on the chain, and the chain verifies.
    let url = server.url.as_str();
    let log = r5e_in(
        &data,
        None,
        &["audit", "log", "--type", "admission.decision", "-o", "json", "--limit", "1000", "--server", url],
    );
    let log = text(&log.stdout);
    let refusals =
        log.lines().filter(|l| l.contains("session:default/n-attack-a1") && l.contains("\"verdict\":\"deny\""));
    assert!(refusals.count() >= 6, "{log}");
    assert!(log.contains("does not allow this"), "{log}");
    let verify = r5e_in(&data, None, &["audit", "verify", "--server", url]);
    assert!(verify.status.success(), "{}", text(&verify.stderr));
}

#[test]
fn use_the_api_of_a_run_beyond_what_its_token_allows() {
    // `r5e run` serves the sessions an API of their own on loopback: the same checks hold there.
    let dir = tempfile::tempdir().unwrap();
    let (root, data) = (dir.path().join("manifests"), dir.path().join("data"));
    let forged = tokens::Issuer::generate()
        .mint(&tokens::Grant {
            namespace: "default".into(),
            session: "n-attack-a1".into(),
            uid: "made-up".into(),
            chain: vec![],
            reads: vec![],
            creates: true,
            expires_at: chrono::Utc::now() + chrono::Duration::hours(1),
        })
        .unwrap()
        .token;
    hostile_work(&root, "api_client.py", &format!("FORGED_TOKEN: \"{forged}\""), BUDGETS, "[]");
    let out = Command::new(env!("CARGO_BIN_EXE_r5e"))
        .args(["run", root.to_str().unwrap(), "--data-dir"])
        .arg(&data)
        .arg("--work-dir")
        .arg(dir.path().join("work"))
        .env_remove("R5E_DATA_DIR")
        .env_remove("R5E_DATABASE_URL")
        .output()
        .unwrap();
    let f = walk(&data.join("blobs"))
        .into_iter()
        .filter_map(|p| serde_json::from_slice::<serde_json::Value>(&std::fs::read(p).ok()?).ok())
        .find(|v| v["attack"] == "api")
        .unwrap_or_else(|| panic!("the harness never reported: {}\n{}", text(&out.stdout), text(&out.stderr)));
    let codes = &f["codes"];
    for (what, code) in [
        ("read its own task", 200),
        ("read a policy", 403),
        ("create a node", 403),
        ("delete its own task", 403),
        ("approve itself", 403),
        ("no token", 401),
        ("forged token", 401),
    ] {
        assert_eq!(codes[what], code, "{what}: {codes:#}");
    }
}

#[tokio::test]
async fn use_the_api_beyond_what_its_token_allows() {
    api_attacks(None).await;
    if let Some(url) = storage_postgres::testing::fresh_database_url().await {
        api_attacks(Some(&url)).await;
    }
}

/// The session ended Failed on its first attempt with a failure naming `budget`, and every
/// attempt was stopped the same way.
fn assert_ended_by_budget(a: &Attack, budget: &str) {
    let stdout = a.stdout();
    assert!(stdout.contains("3 failed"), "{stdout}");
    assert!(stdout.contains(budget), "the failure names the budget `{budget}`: {stdout}");
    assert!(a.findings().is_empty(), "the harness went on after its budget: {:?}", a.findings());
}

#[tokio::test]
async fn exceed_the_tool_calls_budget() {
    on_both_stores("exceed-tool-calls", "{tool_calls: 3}", &[], |a| {
        assert_ended_by_budget(a, "budget `tool_calls` of 3 is spent");
        assert!(a.stdout().contains("tool calls:  9 allowed, 3 refused"), "{}", a.stdout());
    })
    .await;
}

#[tokio::test]
async fn exceed_the_artifact_bytes_budget() {
    on_both_stores("exceed-artifact-bytes", "{tool_calls: 5, artifact_bytes: 10000}", &[], |a| {
        assert_ended_by_budget(a, "budget `artifact_bytes` of 10000 is spent");
        // Nothing of the refused artifact was stored; the transcripts were.
        for blob in walk(&a.data.join("blobs")) {
            let bytes = std::fs::read(&blob).unwrap();
            assert!(bytes.len() < 65536 || text(&bytes).contains("\"dir\""), "{} holds the artifact", blob.display());
        }
    })
    .await;
}

#[tokio::test]
async fn outlast_the_wall_seconds_budget() {
    on_both_stores("outlast-wall-time", "{tool_calls: 5, wall_seconds: 1}", &[], |a| {
        assert_ended_by_budget(a, "did not finish within 1 s (its budget `wall_seconds` of 1)");
    })
    .await;
}

#[test]
fn a_harness_gets_the_secrets_it_names_and_no_others() {
    let a = run_attack_with(
        "read-server-environment",
        BUDGETS,
        &[],
        "[{name: GIVEN, fromEnv: R5E_TEST_GIVEN_SECRET}]",
        None,
    );
    a.assert_contained();
    a.assert_nothing_holds(SECRET);
    let notes = a.findings()[0]["notes"].to_string();
    assert!(notes.contains("given: a-secret-the-harness-was-given"), "{notes}");
    // The session records the name, never the value.
    let log = Command::new(env!("CARGO_BIN_EXE_r5e"))
        .args(["audit", "log", "-o", "json", "--limit", "1000", "--data-dir"])
        .arg(&a.data)
        .output()
        .unwrap();
    let log = text(&log.stdout);
    assert!(log.contains("\"secrets\":[\"GIVEN\"]"), "{log}");
}

#[test]
fn name_a_secret_in_the_data_directory() {
    let a = run_attack_with("read-admin-token", BUDGETS, &[], "[{name: T, fromFile: DATA/admin.token}]", None);
    assert!(a.stdout().contains("is in a directory no harness may be given"), "{}", a.stdout());
    a.assert_nothing_holds(SECRET);
}

#[tokio::test]
async fn make_a_tool_read_the_data_directory() {
    // The Tool's program has a hole (it prints any file it is asked for); it runs confined, so the
    // hole reaches nothing the server keeps.
    on_both_stores("exploit-a-tool", BUDGETS, &[], |a| {
        a.assert_contained();
        a.assert_nothing_holds(SECRET);
        let notes = a.findings()[0]["notes"].to_string();
        assert!(notes.contains("Permission denied"), "the tool was refused by the kernel: {notes}");
    })
    .await;
}

#[tokio::test]
async fn touch_something_outside_its_scope() {
    // The notes Tool touches `repo:<path>`; the Graph's scope is `repo:notes/2.4/*`. A call in
    // scope reaches the program; one outside it, or climbing out with `..`, never does.
    on_both_stores("escape-scope", BUDGETS, &[], |a| {
        a.assert_contained();
        let answers: serde_json::Value = serde_json::from_str(a.findings()[0]["notes"][0].as_str().unwrap()).unwrap();
        let inside = answers["notes/2.4/changes.md"].as_str().unwrap();
        assert!(inside.contains("program failed") || inside == "ok", "the call in scope reached the program: {inside}");
        assert!(answers["secrets/key"].as_str().unwrap().contains("`repo:secrets/key` is outside the session's scope"));
        assert!(answers["notes/2.4/../../secrets/key"].as_str().unwrap().contains("is not plain"));
        assert!(answers["/etc/passwd"].as_str().unwrap().contains("is not plain"));
        // Each refusal is a tool.call event, allowed false, with its reason.
        let log = a.audit_log("tool.call");
        let refused = log.lines().filter(|l| {
            l.contains("\"allowed\":false") && (l.contains("outside the session's scope") || l.contains("is not plain"))
        });
        assert_eq!(refused.count(), 3, "{log}");
    })
    .await;
}

#[test]
fn start_more_sessions_than_the_task_may() {
    // Every attempt fails (past its artifact budget); the Task may start two sessions in all, so
    // the third attempt is never started and the Task fails naming its budget.
    let a = run_attack("exceed-artifact-bytes", "{tool_calls: 5, artifact_bytes: 10000, sessions: 2}", &[], None);
    let stdout = a.stdout();
    assert!(stdout.contains("sessions:    2 (2 producer): 2 failed"), "{stdout}");
    assert!(stdout.contains("the Task reached its budget: budget `sessions` of 2 is spent"), "{stdout}");
}
