//! A `command` harness that declares `resume`, cut off by a kill -9 of `r5e run` while one of its
//! tool calls runs, and taken up by the next `r5e run`: the harness is told what was recorded
//! and accepts; its output sent again is not recorded twice, the call that had finished is
//! answered from the record, and the call that was running is not made again. A harness that
//! refuses leaves the session Degraded with its reason, and the Task's next attempt finishes the
//! work.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The writer: every session but the first attempt at the `notes` Node is the quickstart's
/// writer. That one sends the same notes, counts their words, then calls `slow` (which waits to
/// be killed). Resumed, it answers as `resume-mode` in its directory says, sends the same notes
/// again, makes both calls again with the same ids and arguments, reflects and finishes; its
/// transcript shows what it was told and answered.
const WRITER: &str = r##"
import json, os, runpy, sys
here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
line = sys.stdin.readline()
env = json.loads(line)
resume = env.get("resume")
cut = env["task"]["node"] == "notes" and env["session"]["attempt"] == 1
if not cut and resume is None:
    class Replay:
        def __init__(self): self.first = [line]
        def readline(self): return self.first.pop() if self.first else sys.__stdin__.readline()
    sys.stdin = Replay()
    runpy.run_path(os.path.join(here, "writer.py"), run_name="__main__")
    sys.exit(0)
from writer import note_line
def send(m): print(json.dumps(m), flush=True)
def recv(): return json.loads(sys.stdin.readline())
if resume is not None:
    mode = open(os.path.join(here, "resume-mode")).read().strip()
    if mode != "accept":
        send({"type": "resume", "accept": False, "reason": "this writer cannot take it up"})
        sys.exit(0)
    send({"type": "resume", "accept": True})
p = env["parameters"]
lines = [note_line(c) for c in p.get("changes", [])]
notes = f"# Release notes for {p.get('version')}\n\n" + "\n".join(lines) + "\n"
send({"type": "artifact", "name": "notes.md", "content": notes})
send({"type": "tool_call", "id": "c1", "tool": "word-count", "arguments": {"text": notes}})
recv()
send({"type": "tool_call", "id": "c2", "tool": "slow", "arguments": {"workspace": env["workspace"]}})
recv()
send({"type": "reflection", "wentWell": "wrote", "wentBadly": "was cut off", "couldImprove": "nothing"})
send({"type": "done", "outcome": "Succeeded"})
"##;

/// The slow tool: notes that it started in the calling session's workspace, then waits.
const SLOW: &str = r#"
import json, os, sys, time
args = json.load(sys.stdin)
with open(os.path.join(args["workspace"], "slow-started"), "a") as f:
    f.write("started\n")
time.sleep(60)
print(json.dumps({"slept": True}))
"#;

const SLOW_TOOL: &str = "---
apiVersion: r5e.ai/v1alpha1
kind: Tool
metadata:
  name: slow
spec:
  description: Takes its time
  capability: text.analyse
  inputSchema:
    type: object
    properties:
      workspace: {type: string}
  command:
    program: python3
    args: [tools/slow.py]
    timeoutSeconds: 120
";

fn fixture(dir: &Path, mode: &str) -> PathBuf {
    let root = dir.join("quickstart");
    common::copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart"), &root);
    std::fs::write(root.join("agents/resumable.py"), WRITER).unwrap();
    std::fs::write(root.join("agents/resume-mode"), mode).unwrap();
    std::fs::write(root.join("tools/slow.py"), SLOW).unwrap();
    let agents = std::fs::read_to_string(root.join("10-agents.yaml")).unwrap();
    let resumable = agents.replace(
        "    program: python3\n    args: [agents/writer.py]\n",
        "    program: python3\n    args: [agents/resumable.py]\n    resume: true\n",
    );
    assert_ne!(resumable, agents, "the writer's Harness is where this test expects it");
    std::fs::write(root.join("10-agents.yaml"), resumable).unwrap();
    let governance = std::fs::read_to_string(root.join("00-governance.yaml")).unwrap();
    std::fs::write(root.join("00-governance.yaml"), governance + SLOW_TOOL).unwrap();
    let work = std::fs::read_to_string(root.join("20-work.yaml")).unwrap();
    let tools = work.replace("toolRefs: [{name: word-count}]", "toolRefs: [{name: word-count}, {name: slow}]");
    assert_ne!(tools, work, "the write step's tools are where this test expects them");
    std::fs::write(root.join("20-work.yaml"), tools).unwrap();
    root
}

fn r5e_run(root: &Path, data: &Path, work: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_r5e"));
    c.args(["run", root.to_str().unwrap(), "--timeout", "120", "--data-dir"])
        .arg(data)
        .arg("--work-dir")
        .arg(work)
        .env_remove("R5E_DATA_DIR")
        .env_remove("R5E_DATABASE_URL");
    c
}

fn r5e(data: &Path, args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_r5e"))
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .env_remove("R5E_DATA_DIR")
        .env_remove("R5E_DATABASE_URL")
        .env_remove("R5E_SERVER")
        .output()
        .unwrap();
    assert!(out.status.success(), "r5e {args:?}: {}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every event on the chain.
fn events(data: &Path) -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_r5e"))
        .args(["audit", "export", "--data-dir"])
        .arg(data)
        .env_remove("R5E_DATABASE_URL")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Run, kill -9 while the `slow` call of the first writer runs, run again; the name of the
/// session that was cut off, and the second run's output.
fn cut_and_rerun(dir: &Path, root: &Path) -> (String, String) {
    let (data, work) = (dir.join("data"), dir.join("work"));
    let mut first = r5e_run(root, &data, &work).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let session = loop {
        let started =
            std::fs::read_dir(work.join("default")).into_iter().flatten().flatten().find_map(|e| {
                e.path().join("slow-started").exists().then(|| e.file_name().to_string_lossy().into_owned())
            });
        if let Some(s) = started {
            break s;
        }
        assert!(first.try_wait().unwrap().is_none(), "the run ended before the slow call started");
        assert!(Instant::now() < deadline, "the slow call never started");
        std::thread::sleep(Duration::from_millis(20));
    };
    first.kill().unwrap();
    first.wait().unwrap();
    let out = r5e_run(root, &data, &work).output().unwrap();
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    (session, stdout)
}

#[test]
fn a_resumable_command_harness_takes_its_session_up_and_nothing_is_done_twice() {
    let dir = tempfile::tempdir().unwrap();
    let root = fixture(dir.path(), "accept");
    let (session, stdout) = cut_and_rerun(dir.path(), &root);
    let data = dir.path().join("data");
    let _server = common::start(&data, true);
    assert!(stdout.contains("graph release-notes: Succeeded (2 of 2 nodes succeeded)"), "{stdout}");

    let s = r5e(&data, &["get", "agentsession", &session, "-o", "json"]);
    assert_eq!(s.pointer("/status/phase"), Some(&Value::from("Succeeded")), "{s:#}");
    assert_eq!(s.pointer("/status/resumed"), Some(&Value::from(1)), "{s:#}");

    // One Artifact per output: the notes sent again were not recorded again.
    let artifacts = r5e(&data, &["get", "artifacts", "-l", &format!("r5e.ai/session={session}"), "-o", "json"]);
    let items = artifacts["items"].as_array().unwrap();
    let of_type = |t: &str| items.iter().filter(|a| a.pointer("/spec/artifactType") == Some(&Value::from(t))).count();
    assert_eq!((of_type("Output"), of_type("Reflection"), of_type("Transcript")), (1, 1, 1), "{artifacts:#}");

    // What the harness was told and answered on resuming, from its transcript.
    let transcript =
        items.iter().find(|a| a.pointer("/spec/artifactType") == Some(&Value::from("Transcript"))).unwrap();
    let digest = transcript.pointer("/spec/digest").and_then(Value::as_str).unwrap();
    let got = Command::new(env!("CARGO_BIN_EXE_r5e"))
        .args(["cas", "get", digest, "--data-dir"])
        .arg(&data)
        .env_remove("R5E_DATABASE_URL")
        .output()
        .unwrap();
    let lines: Vec<Value> = text(&got.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let messages: Vec<&Value> = lines.iter().map(|l| &l["message"]).collect();
    let resume = &messages[0]["resume"];
    assert_eq!(resume["resumed"], 1, "{resume:#}");
    assert_eq!(resume["artifacts"][0]["name"], "notes.md", "{resume:#}");
    assert_eq!(resume["artifacts"][0]["type"], "Output", "{resume:#}");
    assert_eq!(resume["toolCalls"], serde_json::json!([{"id": "c1", "tool": "word-count", "ok": true}]));
    let answer = |id: &str| messages.iter().find(|m| m["type"] == "tool_result" && m["id"] == id).copied().unwrap();
    assert_eq!(answer("c1")["ok"], true, "{messages:#?}");
    assert!(answer("c1")["result"]["words"].as_u64().is_some_and(|w| w > 0), "{messages:#?}");
    assert_eq!(answer("c2")["ok"], false, "{messages:#?}");
    let error = answer("c2")["error"].as_str().unwrap_or_default();
    assert!(error.contains("running when the session's process died"), "{error}");

    // Each call ran once: one record of c1, and c2 started once and never again.
    let started = std::fs::read_to_string(dir.path().join("work/default").join(&session).join("slow-started")).unwrap();
    assert_eq!(started.lines().count(), 1, "the slow tool ran again");
    let chain = events(&data);
    let of = |type_: &str, call: &str| {
        chain
            .iter()
            .filter(|e| {
                e["type"] == type_
                    && e["data"]["callId"] == call
                    && e["data"]["session"].as_str().is_some_and(|s| s.ends_with(&session))
            })
            .count()
    };
    assert_eq!((of("tool.intent", "c1"), of("tool.call", "c1")), (1, 1));
    assert_eq!((of("tool.intent", "c2"), of("tool.call", "c2")), (1, 0));

    let verify = Command::new(env!("CARGO_BIN_EXE_r5e"))
        .args(["audit", "verify", "--state", "--data-dir"])
        .arg(&data)
        .env_remove("R5E_DATABASE_URL")
        .output()
        .unwrap();
    assert!(verify.status.success(), "{}\n{}", text(&verify.stdout), text(&verify.stderr));
}

#[test]
fn a_command_harness_that_refuses_to_resume_leaves_the_session_degraded_and_the_task_tries_again() {
    let dir = tempfile::tempdir().unwrap();
    let root = fixture(dir.path(), "refuse");
    let (session, stdout) = cut_and_rerun(dir.path(), &root);
    let data = dir.path().join("data");
    let _server = common::start(&data, true);
    assert!(stdout.contains("graph release-notes: Succeeded (2 of 2 nodes succeeded)"), "{stdout}");
    let s = r5e(&data, &["get", "agentsession", &session, "-o", "json"]);
    assert_eq!(s.pointer("/status/phase"), Some(&Value::from("Degraded")), "{s:#}");
    let failure = s.pointer("/status/failure").and_then(Value::as_str).unwrap_or_default();
    assert!(
        failure.contains("cannot be resumed: the harness refused to resume it: this writer cannot take it up"),
        "{failure}"
    );
    // Its output stays recorded (it was made), and a second attempt made the approved one.
    let task = s.pointer("/spec/taskRef/name").and_then(Value::as_str).unwrap();
    let sessions = r5e(&data, &["get", "agentsessions", "-l", &format!("r5e.ai/task={task}"), "-o", "json"]);
    let attempts: Vec<u64> = sessions["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s.pointer("/spec/role") == Some(&Value::from("Producer")))
        .filter_map(|s| s.pointer("/spec/attempt")?.as_u64())
        .collect();
    assert!(attempts.contains(&2), "{sessions:#}");
}
