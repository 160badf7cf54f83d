//! The `model` harness end to end: `r5e run` on examples/model-openai, with its writer pointed
//! at a local HTTP server that speaks OpenAI chat completions (as a real endpoint would, tool
//! calls included), and its reviewer on the scripted provider.

use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};

type Seen = Arc<Mutex<Vec<(Option<String>, Value)>>>;

/// The reply of a chat-completions server whose model makes the tool calls of `turns` one turn
/// each, in order (the turn is the number of tool results in the request), then finishes.
fn scripted_reply(body: &Value, turns: &[(&str, Value)]) -> Json<Value> {
    let answered = body["messages"].as_array().unwrap().iter().filter(|m| m["role"] == "tool").count();
    let message = match turns.get(answered) {
        Some((name, args)) => json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": format!("call_{answered}"), "type": "function",
             "function": {"name": name, "arguments": args.to_string()}}]}),
        None => json!({"role": "assistant", "content": "Finished."}),
    };
    Json(json!({"id": "chatcmpl-1", "object": "chat.completion", "model": body["model"],
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150}}))
}

/// A chat-completions server whose model submits an artifact, then reflects, then finishes.
async fn completions(State(seen): State<Seen>, headers: HeaderMap, Json(body): Json<Value>) -> Json<Value> {
    let auth = headers.get("authorization").map(|v| v.to_str().unwrap().to_string());
    seen.lock().unwrap().push((auth, body.clone()));
    let explanation = json!({"name": "explanation.txt", "content": "It admits, runs, reviews and records agent work."});
    let reflection = json!({"wentWell": "Short", "wentBadly": "Generic", "couldImprove": "Give an example"});
    scripted_reply(&body, &[("submit_artifact", explanation), ("reflect", reflection)])
}

/// Run examples/model-openai with its writer pointed at a local chat-completions server, the
/// manifest first changed by `edit`: what r5e printed, what the server was sent, and the data dir.
async fn run_example(edit: impl Fn(String) -> String) -> (std::process::Output, Seen, tempfile::TempDir) {
    let seen: Seen = Arc::default();
    let app = Router::new().route("/v1/chat/completions", post(completions)).with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/model-openai/work.yaml");
    let manifest = std::fs::read_to_string(example)
        .unwrap()
        .replace("https://api.openai.com/v1", &format!("http://127.0.0.1:{port}/v1"));
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    std::fs::write(work.join("work.yaml"), edit(manifest)).unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_r5e"))
        .args(["run", work.to_str().unwrap(), "--timeout", "60", "--data-dir"])
        .arg(dir.path().join("data"))
        .env("OPENAI_API_KEY", "test-key-123")
        .env_remove("R5E_DATABASE_URL")
        .output()
        .await
        .unwrap();
    (out, seen, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_model_harness_works_against_an_openai_compatible_server() {
    let (out, seen, _dir) = run_example(|m| m).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("graph explain: Succeeded"), "{stdout}");
    assert!(stdout.contains("reviews:     1 approving, 0 rejecting; outputs 1 approved"), "{stdout}");
    assert!(stdout.contains("reflections: 2 given, 0 missing"), "{stdout}");

    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3, "three model turns");
    let (auth, first) = &seen[0];
    assert_eq!(auth.as_deref(), Some("Bearer test-key-123"));
    assert_eq!(first["model"], "gpt-4o-mini");
    let system = first["messages"][0]["content"].as_str().unwrap();
    assert!(system.contains("Use plain words. No more than three sentences."), "the guideline is given: {system}");
    let tools: Vec<&str> =
        first["tools"].as_array().unwrap().iter().map(|t| t["function"]["name"].as_str().unwrap()).collect();
    assert!(
        tools.contains(&"submit_artifact") && tools.contains(&"reflect") && tools.contains(&"decline"),
        "{tools:?}"
    );
    assert!(!tools.contains(&"submit_verdict"), "a producer is not offered the verdict tool: {tools:?}");
    // The tool result went back in the protocol's shape.
    let last = seen[2].1["messages"].as_array().unwrap();
    assert!(last.iter().any(|m| m["role"] == "tool" && m["tool_call_id"] == "call_0"), "{last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cost_budget_is_charged_at_the_harness_price_and_ends_the_session() {
    // 10 micros a token, in or out: each turn of the server (120 + 30 tokens) costs 1,500.
    let priced = |m: String| {
        m.replace(
            "    maxTurns: 8\n",
            "    maxTurns: 8\n    price: {inputPerMillionTokens: 10000000, outputPerMillionTokens: 10000000}\n",
        )
        .replace(
            "    model: checklist-v1\n",
            "    model: checklist-v1\n    price: {inputPerMillionTokens: 0, outputPerMillionTokens: 0}\n",
        )
        .replace(
            "budgets: {tokens: 20000, tool_calls: 10}",
            "budgets: {tokens: 20000, tool_calls: 10, cost_micros: 2000}",
        )
    };
    let (out, seen, dir) = run_example(priced).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("budget `cost_micros` of 2000 is spent: the session used 3000"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // In each attempt (the Task tries three times, each session with its own budget), the first
    // turn could buy 200 output tokens, the second only the 50 that 500 micros pay for; there was
    // no third.
    let asked: Vec<u64> = seen.lock().unwrap().iter().map(|(_, body)| body["max_tokens"].as_u64().unwrap()).collect();
    assert_eq!(asked, [200, 50].repeat(3));
    let sessions = std::process::Command::new(env!("CARGO_BIN_EXE_r5e"))
        .args(["audit", "log", "--type", "resource.updated", "-o", "json", "--limit", "1000", "--data-dir"])
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&sessions.stdout);
    assert!(log.contains("\"cost_micros\":3000"), "the spend is on the session's status: {log}");

    // A Harness without a price cannot be held to the budget: the session does not start.
    let unpriced = |m: String| m.replace("budgets: {tokens: 20000, tool_calls: 10}", "budgets: {cost_micros: 2000}");
    let (out, seen, _dir) = run_example(unpriced).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("names no `price`, so its cost cannot be counted"), "{stdout}");
    assert!(seen.lock().unwrap().is_empty(), "nothing was paid for");
}

/// The chat-completions server, held at the second turn (the model's reflection) until `hold` is
/// cleared: it says so on `reached` and never answers that request.
#[derive(Clone)]
struct Held {
    seen: Seen,
    hold: Arc<std::sync::atomic::AtomicBool>,
    reached: Arc<tokio::sync::Notify>,
}

async fn held_completions(State(h): State<Held>, headers: HeaderMap, Json(body): Json<Value>) -> Json<Value> {
    let answered = body["messages"].as_array().unwrap().iter().filter(|m| m["role"] == "tool").count();
    let tool_first = body["tools"].as_array().unwrap().iter().any(|t| t["function"]["name"] == "stamp");
    let hold_at = if tool_first { 2 } else { 1 };
    if answered == hold_at && h.hold.load(std::sync::atomic::Ordering::SeqCst) {
        h.seen.lock().unwrap().push((None, body));
        h.reached.notify_one();
        return std::future::pending().await;
    }
    if tool_first {
        return stamping(State(h.seen), Json(body)).await;
    }
    completions(State(h.seen), headers, Json(body)).await
}

/// A chat-completions server whose model first calls the `stamp` Tool, then submits an
/// artifact, reflects and finishes.
async fn stamping(State(seen): State<Seen>, Json(body): Json<Value>) -> Json<Value> {
    seen.lock().unwrap().push((None, body.clone()));
    let explanation = json!({"name": "explanation.txt", "content": "Stamped and explained."});
    let reflection = json!({"wentWell": "Short", "wentBadly": "Generic", "couldImprove": "More"});
    scripted_reply(&body, &[("stamp", json!({})), ("submit_artifact", explanation), ("reflect", reflection)])
}

/// The Tool the stamping model calls, and what it needs to be called.
const STAMP: &str = r#"
---
apiVersion: r5e.ai/v1alpha1
kind: Capability
metadata: {name: text.stamp}
spec: {description: Stamp a text}
---
apiVersion: r5e.ai/v1alpha1
kind: Tool
metadata: {name: stamp}
spec:
  description: A stamp for the text
  capability: text.stamp
  command: {program: python3, args: ["-c", "import sys, json; json.load(sys.stdin); print(json.dumps({'stamp': 42}))"], timeoutSeconds: 20}
---
apiVersion: r5e.ai/v1alpha1
kind: Policy
metadata: {name: sessions-may-stamp}
spec:
  cedar: |
    permit(principal is r5e::Session, action == r5e::Action::"call_tool", resource is r5e::Tool);
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_session_cut_off_by_kill_9_is_resumed_without_asking_again() {
    resumed_after_kill_9(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_model_session_does_not_call_its_tools_again() {
    resumed_after_kill_9(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_whose_journal_was_tampered_with_is_not_resumed() {
    let (seen, data) = kill_mid_turn(false, |data| {
        // Change the recorded reply to turn 1 in the CAS.
        let log = std::process::Command::new(env!("CARGO_BIN_EXE_r5e"))
            .args(["audit", "log", "--type", "model.reply", "-o", "json", "--data-dir"])
            .arg(data)
            .output()
            .unwrap();
        let first: Value = serde_json::from_slice(log.stdout.split(|b| *b == b'\n').next().unwrap()).unwrap();
        let digest = first["data"]["digest"].as_str().unwrap().trim_start_matches("sha256:").to_string();
        std::fs::write(data.join("blobs/sha256").join(digest), br#"{"text":"","toolCalls":[],"usage":{}}"#).unwrap();
    })
    .await;
    let out = run_model_work(&data).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("what-is-r5e-work-a1: the session cannot be resumed: turn 1 of the journal"), "{stdout}");
    assert!(stdout.contains("graph explain: Succeeded"), "{stdout}");
    // The second attempt asked everything afresh.
    let turns = seen.lock().unwrap().len();
    assert_eq!(turns, 2 + 3, "{turns}");
    let _ = std::fs::remove_dir_all(data.parent().unwrap());
}

/// `r5e run` on the work written by [`kill_mid_turn`] in the data directory beside it.
fn run_model_work(data: &Path) -> tokio::process::Command {
    let work = data.parent().unwrap().join("work");
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_r5e"));
    c.args(["run", work.to_str().unwrap(), "--timeout", "60", "--data-dir"])
        .arg(data)
        .env("OPENAI_API_KEY", "test-key-123")
        .env_remove("R5E_DATABASE_URL")
        .kill_on_drop(true);
    c
}

/// Run the model example (with `with_tool`, its model first calls a Tool) and kill `r5e run`
/// while the model is asked the turn after the artifact; then `between(data dir)`, and let the
/// server answer everything from then on. What the server saw, and the data directory (kept
/// until the end of the test: it is leaked on purpose).
async fn kill_mid_turn(with_tool: bool, between: impl FnOnce(&Path)) -> (Seen, std::path::PathBuf) {
    let held = Held {
        seen: Arc::default(),
        hold: Arc::new(std::sync::atomic::AtomicBool::new(true)),
        reached: Arc::default(),
    };
    let app = Router::new().route("/v1/chat/completions", post(held_completions)).with_state(held.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let dir = tempfile::tempdir().unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/model-openai/work.yaml");
    let mut manifest = std::fs::read_to_string(example)
        .unwrap()
        .replace("https://api.openai.com/v1", &format!("http://127.0.0.1:{port}/v1"));
    if with_tool {
        manifest = manifest.replace("capabilities: [notes.write]", "capabilities: [notes.write, text.stamp]") + STAMP;
    }
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    std::fs::write(work.join("work.yaml"), manifest).unwrap();
    let data = dir.keep().join("data");
    let run = || run_model_work(&data);
    // The first run is killed while the model is answering its second turn: the first turn (the
    // artifact) was answered, recorded and acted on.
    let mut first = run().stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(60), held.reached.notified())
        .await
        .expect("the second turn was asked for");
    first.kill().await.unwrap();
    between(&data);
    held.hold.store(false, std::sync::atomic::Ordering::SeqCst);
    (held.seen, data)
}

/// Kill `r5e run` mid-turn (see [`kill_mid_turn`]), run it again, and check that the same
/// session was resumed without asking or calling anything again.
async fn resumed_after_kill_9(with_tool: bool) {
    let (seen, data) = kill_mid_turn(with_tool, |_| {}).await;
    let run = || run_model_work(&data);

    // The next run resumes the same session: turn 1 comes from the journal, turn 2 is asked again
    // (its answer was never received), turn 3 ends it.
    let out = run().output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("graph explain: Succeeded"), "{stdout}");
    assert!(!stdout.contains("degraded"), "{stdout}");
    let turns: Vec<usize> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|(_, b)| b["messages"].as_array().unwrap().iter().filter(|m| m["role"] == "tool").count())
        .collect();
    let expected: &[usize] = if with_tool { &[0, 1, 2, 2, 3] } else { &[0, 1, 1, 2] };
    assert_eq!(turns, expected, "no turn that was answered was asked again");

    let log = |kind: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_r5e"))
            .args(["audit", "log", "--type", kind, "-o", "json", "--limit", "1000", "--data-dir"])
            .arg(&data)
            .env_remove("R5E_DATABASE_URL")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let writer = "AgentSession/default/what-is-r5e-work-a1";
    let replies: Vec<u64> = log("model.reply")
        .lines()
        .filter(|l| l.contains(&format!("\"subject\":\"{writer}\"")))
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["data"]["step"].as_u64().unwrap())
        .collect();
    let expected: &[u64] = if with_tool { &[1, 2, 3, 4] } else { &[1, 2, 3] };
    assert_eq!(replies, expected, "each turn recorded once, before it was used");
    // The Tool was called once, by the first run; the resumed session got its recorded result.
    let calls = log("tool.call");
    assert_eq!(calls.lines().filter(|l| l.contains("\"allowed\":true")).count(), usize::from(with_tool), "{calls}");
    let created = log("resource.created");
    let outputs = created.lines().filter(|l| l.contains("\"subject\":\"Artifact/default/what-is-r5e-work-a1-out-1\""));
    assert_eq!(outputs.count(), 1, "the artifact of the replayed turn is not made twice");
    assert!(!created.contains("what-is-r5e-work-a2"), "no second attempt: {created}");
    assert!(log("resource.updated").contains("\"resumed\":1"), "the session says it was resumed");
    let verify = std::process::Command::new(env!("CARGO_BIN_EXE_r5e"))
        .args(["audit", "verify", "--state", "--data-dir"])
        .arg(&data)
        .env_remove("R5E_DATABASE_URL")
        .output()
        .unwrap();
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stderr));
    let _ = std::fs::remove_dir_all(data.parent().unwrap());
}
