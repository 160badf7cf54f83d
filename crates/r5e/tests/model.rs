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

/// A chat-completions server whose model submits an artifact, then reflects, then finishes.
async fn completions(State(seen): State<Seen>, headers: HeaderMap, Json(body): Json<Value>) -> Json<Value> {
    let auth = headers.get("authorization").map(|v| v.to_str().unwrap().to_string());
    seen.lock().unwrap().push((auth, body.clone()));
    let answered = body["messages"].as_array().unwrap().iter().filter(|m| m["role"] == "tool").count();
    let call = |name: &str, args: Value| {
        json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": format!("call_{answered}"), "type": "function",
             "function": {"name": name, "arguments": args.to_string()}}]})
    };
    let message = match answered {
        0 => call(
            "submit_artifact",
            json!({"name": "explanation.txt", "content": "It admits, runs, reviews and records agent work."}),
        ),
        1 => call("reflect", json!({"wentWell": "Short", "wentBadly": "Generic", "couldImprove": "Give an example"})),
        _ => json!({"role": "assistant", "content": "Finished."}),
    };
    Json(json!({"id": "chatcmpl-1", "object": "chat.completion", "model": body["model"],
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150}}))
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
