//! The live plane dies and comes back: `r5e run` on the quickstart is killed with SIGKILL at a
//! random point, then run again on the same data directory (and `r5e serve`, while it runs a
//! session, then started again). The work must finish, the chain and
//! the stored state must verify, and no harness process may outlive the killed run.
//!
//! Each test kills at `R5E_KILL_POINTS` points (default 10; `scripts/kill-loop.sh` runs 100),
//! chosen from `R5E_KILL_SEED` (default: the clock, printed so that a failure can be replayed).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

mod common;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A small generator of kill points (xorshift), enough to spread them and replay them.
struct Points(u64);

impl Points {
    fn next_below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

fn seed(offset: u64) -> u64 {
    let seed = std::env::var("R5E_KILL_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    eprintln!("kill points from R5E_KILL_SEED={seed}");
    (seed ^ offset) | 1
}

fn points() -> usize {
    std::env::var("R5E_KILL_POINTS").ok().and_then(|s| s.parse().ok()).unwrap_or(10)
}

fn r5e_run(root: &Path, data: &Path, work: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_r5e"));
    // The default lease (30 s): a restart on the same machine sees that the killed process is
    // gone and does not wait for its leases to lapse.
    c.args(["run", root.to_str().unwrap(), "--timeout", "120", "--data-dir"])
        .arg(data)
        .arg("--work-dir")
        .arg(work)
        .env_remove("R5E_DATA_DIR")
        .env_remove("R5E_DATABASE_URL");
    c
}

/// Processes whose command line names `dir` (harnesses, keepers and tools of a run under it).
fn left_in(dir: &Path) -> Vec<String> {
    let ps = Command::new("ps").args(["-eo", "pid,args"]).output().unwrap();
    let needle = dir.to_str().unwrap();
    text(&ps.stdout).lines().filter(|l| l.contains(needle)).map(str::to_string).collect()
}

/// Sessions started so far: each gets a workspace `<work>/<namespace>/<session>`.
fn sessions_started(work: &Path) -> usize {
    std::fs::read_dir(work.join("default")).map(|d| d.count()).unwrap_or(0)
}

/// Kill `r5e run` `delay` after its `after`-th session started (or after `delay`, for 0), run it
/// again, and check what is left. True when the kill cut a session off (the restart found it
/// Degraded and its Task tried again).
fn kill_and_restart(after: usize, delay: Duration) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let (root, data, work) = (dir.path().join("quickstart"), dir.path().join("data"), dir.path().join("work"));
    common::copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart"), &root);
    let mut first = r5e_run(&root, &data, &work).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    // The kill point: a moment after the chosen session started (unless the run ended first).
    while sessions_started(&work) < after && first.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(delay);
    let _ = first.kill();
    first.wait().unwrap();

    let out = r5e_run(&root, &data, &work).output().unwrap();
    let stdout = text(&out.stdout);
    let context = format!("killed {delay:?} after session {after} started\n{stdout}\n{}", text(&out.stderr));
    assert!(out.status.success(), "{context}");
    assert!(stdout.contains("graph release-notes: Succeeded (2 of 2 nodes succeeded)"), "{context}");
    let verify = Command::new(env!("CARGO_BIN_EXE_r5e"))
        .args(["audit", "verify", "--state", "--data-dir"])
        .arg(&data)
        .env_remove("R5E_DATABASE_URL")
        .output()
        .unwrap();
    assert!(verify.status.success(), "{context}\n{}\n{}", text(&verify.stdout), text(&verify.stderr));
    let left = left_in(dir.path());
    assert!(left.is_empty(), "{context}\nleft over: {left:?}");
    let cut = stdout.contains("the process running it (r5e-");
    assert!(!cut || stdout.contains(") is gone; the session was not run on"), "{context}");
    cut
}

/// Kill points: up to 400 ms after the start of the run or of one of its four sessions (two
/// writers, two reviewers), so that they fall from applying the manifests to reviewing the last
/// output; some must cut a session off, or the loop proved little.
fn kill_loop(offset: u64) {
    let mut points_gen = Points(seed(offset));
    let n = points();
    let cut = (0..n)
        .filter(|_| {
            let after = points_gen.next_below(5) as usize;
            kill_and_restart(after, Duration::from_millis(points_gen.next_below(400)))
        })
        .count();
    eprintln!("{cut} of {n} kills cut a session off");
    assert!(n < 5 || cut > 0, "no kill landed while a session ran");
}

#[test]
fn kill_9_of_r5e_run_at_random_points_then_a_restart_finishes_the_work() {
    kill_loop(0);
}

#[test]
fn kill_9_of_r5e_run_at_other_random_points_then_a_restart_finishes_the_work() {
    kill_loop(0x9e37_79b9_7f4a_7c15);
}

/// `r5e` against the server whose data directory is `data`.
fn remote(data: &Path, args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_r5e"))
        .args(args)
        .env("R5E_DATA_DIR", data)
        .env_remove("R5E_SERVER")
        .env_remove("R5E_TOKEN")
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

/// Poll `probe` every 50 ms until it gives something, for at most a minute.
fn wait_for<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Kill `r5e serve` while it runs a session, start it again on the same store, and check that the
/// work finishes there.
fn serve_killed_mid_session(database: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let (root, data, work) = (dir.path().join("quickstart"), dir.path().join("data"), dir.path().join("work"));
    common::copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart"), &root);
    let mut args = vec!["--base-dir", root.to_str().unwrap(), "--work-dir", work.to_str().unwrap()];
    if let Some(url) = database {
        args.extend(["--database-url", url]);
    }
    let mut first = common::start_with(&data, true, &args);
    let applied = Command::new(env!("CARGO_BIN_EXE_r5e"))
        .args(["apply", "-f", root.to_str().unwrap()])
        .env("R5E_DATA_DIR", &data)
        .output()
        .unwrap();
    assert!(applied.status.success(), "{}", text(&applied.stderr));
    let session = wait_for("a running session", || {
        let list = remote(&data, &["get", "agentsessions", "-o", "json"]);
        list["items"].as_array()?.iter().find_map(|s| {
            (s.pointer("/status/phase")? == "Running").then(|| s["metadata"]["name"].as_str().unwrap().to_string())
        })
    });
    first.child.kill().unwrap();
    first.child.wait().unwrap();

    let _second = common::start_with(&data, true, &args);
    let phase = wait_for("the Graph to finish", || {
        let g = remote(&data, &["get", "graph", "release-notes", "-o", "json"]);
        let phase = g.pointer("/status/phase")?.as_str()?.to_string();
        matches!(phase.as_str(), "Succeeded" | "Failed").then_some(phase)
    });
    assert_eq!(phase, "Succeeded");
    let cut = remote(&data, &["get", "agentsession", &session, "-o", "json"]);
    let failure = cut.pointer("/status/failure").and_then(|f| f.as_str()).unwrap_or_default();
    // The session finished before the kill landed, or the restart saw its process gone.
    assert!(cut.pointer("/status/phase") == Some(&"Succeeded".into()) || failure.contains(") is gone;"), "{cut:#}");
    let mut verify = vec!["audit", "verify", "--state", "--data-dir", data.to_str().unwrap()];
    if let Some(url) = database {
        verify.extend(["--database-url", url]);
    }
    let out = Command::new(env!("CARGO_BIN_EXE_r5e")).args(&verify).output().unwrap();
    assert!(out.status.success(), "{}\n{}", text(&out.stdout), text(&out.stderr));
    // Nothing of the killed server is left (the running one names the work dir in its own
    // arguments, and runs nothing now).
    let left: Vec<String> = left_in(&work).into_iter().filter(|l| !l.contains(" serve ")).collect();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_r5e_serve_mid_session_then_a_restart_finishes_the_work() {
    serve_killed_mid_session(None);
    if let Some(url) = storage_postgres::testing::fresh_database_url().await {
        serve_killed_mid_session(Some(&url));
    }
}

/// The writer of the first attempt at `notes` starts a process of its own in a new session
/// (out of its process group, as a daemon would), notes that it did, and waits; every other
/// session is the quickstart's writer.
const LEAVER: &str = r##"
import json, os, runpy, subprocess, sys, time
here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
line = sys.stdin.readline()
env = json.loads(line)
if env["task"]["node"] == "notes" and env["session"]["attempt"] == 1:
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", "MARK"], start_new_session=True,
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    open(os.path.join(env["workspace"], "left"), "w").write("started")
    time.sleep(60)
    sys.exit(0)
class Replay:
    def __init__(self): self.first = [line]
    def readline(self): return self.first.pop() if self.first else sys.__stdin__.readline()
sys.stdin = Replay()
runpy.run_path(os.path.join(here, "writer.py"), run_name="__main__")
"##;

/// `pid ppid args` of every process.
fn processes() -> Vec<(u32, u32, String)> {
    let ps = Command::new("ps").args(["-eo", "pid=,ppid=,args="]).output().unwrap();
    text(&ps.stdout)
        .lines()
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            let pid = parts.next()?.parse().ok()?;
            let ppid = parts.next()?.parse().ok()?;
            Some((pid, ppid, parts.collect::<Vec<_>>().join(" ")))
        })
        .collect()
}

#[test]
fn processes_a_killed_keeper_left_are_ended_at_the_next_start_and_recorded_on_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let (root, data, work) = (dir.path().join("quickstart"), dir.path().join("data"), dir.path().join("work"));
    common::copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart"), &root);
    let mark = format!("stray-of-{}", dir.path().file_name().unwrap().to_string_lossy());
    std::fs::write(root.join("agents/leaver.py"), LEAVER.replace("MARK", &mark)).unwrap();
    let agents = std::fs::read_to_string(root.join("10-agents.yaml")).unwrap();
    let leaving = agents.replace("args: [agents/writer.py]", "args: [agents/leaver.py]");
    assert_ne!(leaving, agents);
    std::fs::write(root.join("10-agents.yaml"), leaving).unwrap();

    let mut first = r5e_run(&root, &data, &work).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let session = wait_for("the stray to start", || {
        std::fs::read_dir(work.join("default"))
            .ok()?
            .flatten()
            .find_map(|e| e.path().join("left").exists().then(|| e.file_name().to_string_lossy().into_owned()))
    });
    let stray = wait_for("the stray's pid", || processes().into_iter().find(|p| p.2.contains(&mark)).map(|p| p.0));
    let cgroups = std::fs::read_to_string(format!("/proc/{stray}/cgroup")).unwrap_or_default();
    if !cgroups.contains("/r5e/") {
        // This host gives r5e no cgroups: nothing can find such a process (docs/security.md).
        eprintln!("skipped: harnesses get no cgroup here\n{cgroups}");
        let _ = first.kill();
        let _ = first.wait();
        let _ = Command::new("kill").args(["-9", &stray.to_string()]).status();
        return;
    }
    // The keeper dies first, then r5e: nobody is left to end the stray.
    let r5e = first.id();
    let keepers: Vec<String> = processes()
        .into_iter()
        .filter(|p| p.1 == r5e && p.2.contains("sandbox-exec"))
        .map(|p| p.0.to_string())
        .collect();
    assert!(!keepers.is_empty(), "no keeper under r5e: {:?}", processes());
    let mut kill = Command::new("kill");
    kill.arg("-9").args(&keepers).arg(r5e.to_string());
    assert!(kill.status().unwrap().success());
    first.wait().unwrap();
    assert!(processes().iter().any(|p| p.0 == stray), "the stray must outlive its keeper for this test");

    let out = r5e_run(&root, &data, &work).output().unwrap();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(!processes().iter().any(|p| p.2.contains(&mark)), "the stray is still running");
    // Any r5e that starts on this machine ends every stray whose maker is gone; when the tests
    // run in parallel another one may have ended this stray first, and it cannot record it on a
    // session of another store.
    if !stderr.contains("harness process(es) an earlier r5e process left running") {
        eprintln!("the stray was ended by another r5e start on this machine; not checking the record");
        return;
    }

    let _server = common::start(&data, true);
    let s = remote(&data, &["get", "agentsession", &session, "-o", "json"]);
    let conditions = s.pointer("/status/conditions").and_then(|c| c.as_array()).cloned().unwrap_or_default();
    let ended = conditions.iter().find(|c| c["type"] == "LeftoverProcessesEnded").unwrap_or_else(|| panic!("{s:#}"));
    let message = ended["message"].as_str().unwrap_or_default();
    assert!(message.contains(&stray.to_string()), "{message}");
}
