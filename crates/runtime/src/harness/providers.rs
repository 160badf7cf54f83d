//! Model providers: one model turn over OpenAI-compatible chat completions, the Anthropic messages API, or a
//! deterministic script for tests and offline examples.
//!
//! The conversation is provider-neutral ([`ChatRequest`], [`ChatMessage`]); each provider translates it to its
//! own wire format and its answer back into a [`ChatReply`].

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use domain::kinds::agents::ModelIdentity;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// A tool the model may call, as offered to it.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolSpec {
    /// The name the model calls the tool by.
    pub name: String,
    /// What the tool does, for the model.
    pub description: String,
    /// The JSON Schema of the tool's arguments.
    pub input_schema: Value,
}

/// One call the model asked for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The provider's id of the call, echoed back with its result.
    pub id: String,
    /// The tool called.
    pub name: String,
    /// The arguments, a JSON object.
    pub arguments: Value,
}

/// One message of the conversation, provider-neutral.
#[derive(Clone, Debug, PartialEq)]
pub enum ChatMessage {
    /// What the user (or the harness speaking for it) says.
    User(String),
    /// A turn of the model: its text and the tools it called.
    Assistant {
        /// The text of the turn, possibly empty.
        text: String,
        /// The tools called in the turn.
        tool_calls: Vec<ToolCall>,
    },
    /// The result of one tool call.
    ToolResult {
        /// The id of the call this answers.
        call_id: String,
        /// What the tool returned.
        content: String,
        /// Whether the tool failed.
        is_error: bool,
    },
}

/// Everything a provider needs for one model turn.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatRequest {
    /// The system prompt.
    pub system: String,
    /// The conversation so far, oldest first.
    pub messages: Vec<ChatMessage>,
    /// The tools offered.
    pub tools: Vec<ToolSpec>,
    /// The most tokens the model may produce in this turn.
    pub max_tokens: u32,
}

/// Tokens spent on one turn, as the provider counted them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens read.
    pub input_tokens: u64,
    /// Tokens written.
    pub output_tokens: u64,
}

/// The model's answer to one turn (as a session's journal records it, too).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatReply {
    /// The text of the answer, possibly empty.
    pub text: String,
    /// The tools the model called; none means the model is done.
    pub tool_calls: Vec<ToolCall>,
    /// What the turn cost.
    pub usage: Usage,
}

/// Why a model turn failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The provider refused the request.
    #[error("the provider answered HTTP {status}: {body}")]
    Http {
        /// The HTTP status.
        status: u16,
        /// The start of the answer's body.
        body: String,
    },
    /// The request did not reach the provider, or its answer did not come back.
    #[error("cannot reach the provider at {endpoint}: {message}")]
    Unreachable {
        /// The URL called.
        endpoint: String,
        /// What went wrong.
        message: String,
    },
    /// The answer is not what the provider's protocol promises.
    #[error("the provider's answer does not follow its protocol: {0}")]
    Malformed(String),
    /// The API key is configured to come from an environment variable that is not set.
    #[error("environment variable `{0}` holding the API key is not set")]
    MissingKey(String),
    /// A scripted provider was asked for more replies than its script has.
    #[error("the script has no reply left (it gave {0}); end the script with a reply that calls no tool")]
    ScriptExhausted(usize),
    /// A script does not have the expected shape.
    #[error("the script is not valid: {0}")]
    BadScript(String),
}

/// A source of model turns.
#[async_trait::async_trait]
pub trait Provider: Send + Sync + fmt::Debug {
    /// One model turn.
    async fn complete(&self, request: &ChatRequest) -> Result<ChatReply, Error>;
    /// Who serves the model, for provenance.
    fn identity(&self) -> ModelIdentity;
}

/// An API key that never shows in `Debug` output or logs.
#[derive(Clone)]
struct ApiKey(String);

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// HTTP statuses that mean "try again shortly" (529 is Anthropic's "overloaded").
const RETRY_STATUSES: [u16; 5] = [429, 500, 502, 503, 529];
/// How many times a request is repeated after its first try.
const MAX_RETRIES: u32 = 2;
/// The longest `retry-after` honoured.
const MAX_RETRY_WAIT_SECS: f64 = 5.0;
/// How much of an error body is kept in [`Error::Http`].
const ERROR_BODY_CHARS: usize = 500;

/// POSTs `body` as JSON, retrying on overload, and returns the answer's JSON.
async fn post_json(
    client: &reqwest::Client,
    url: &str,
    headers: &[(&'static str, String)],
    body: &Value,
) -> Result<Value, Error> {
    let unreachable =
        |error: reqwest::Error| Error::Unreachable { endpoint: url.to_owned(), message: describe(&error) };
    let mut retries = 0;
    loop {
        let mut builder = client.post(url).json(body);
        for (name, value) in headers {
            builder = builder.header(*name, value.as_str());
        }
        let response = builder.send().await.map_err(unreachable)?;
        let status = response.status().as_u16();
        if RETRY_STATUSES.contains(&status) && retries < MAX_RETRIES {
            let wait = retry_wait(response.headers(), retries);
            retries += 1;
            tracing::warn!(url, status, retry = retries, ?wait, "provider busy; retrying");
            tokio::time::sleep(wait).await;
            continue;
        }
        let text = response.text().await.map_err(unreachable)?;
        if !(200..300).contains(&status) {
            return Err(Error::Http { status, body: text.chars().take(ERROR_BODY_CHARS).collect() });
        }
        return serde_json::from_str(&text).map_err(|e| malformed(format!("the body is not JSON ({e})")));
    }
}

/// How long to wait before retry number `retries` (0-based): the `retry-after` seconds, capped, or 200 ms doubling.
fn retry_wait(headers: &reqwest::header::HeaderMap, retries: u32) -> Duration {
    let asked = headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<f64>().ok())
        .filter(|secs| secs.is_finite() && *secs >= 0.0);
    match asked {
        Some(secs) => Duration::from_secs_f64(secs.min(MAX_RETRY_WAIT_SECS)),
        None => Duration::from_millis(200 << retries),
    }
}

/// A transport error with its chain of causes, which is where the useful part ("connection refused") is.
fn describe(error: &reqwest::Error) -> String {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = std::error::Error::source(cause);
    }
    message
}

fn malformed(what: impl Into<String>) -> Error {
    Error::Malformed(what.into())
}

fn str_field<'a>(value: &'a Value, key: &str, what: &str) -> Result<&'a str, Error> {
    value.get(key).and_then(Value::as_str).ok_or_else(|| malformed(format!("{what} has no string `{key}`")))
}

fn identity(provider: &str, model: &str) -> ModelIdentity {
    ModelIdentity { provider: provider.to_owned(), name: model.to_owned(), version: None }
}

/// The public OpenAI API.
const OPENAI_ENDPOINT: &str = "https://api.openai.com/v1";
/// The public Anthropic API.
const ANTHROPIC_ENDPOINT: &str = "https://api.anthropic.com";
/// The Anthropic API version sent in `anthropic-version`.
const ANTHROPIC_VERSION: &str = "2023-06-01";

/// A model behind an OpenAI-compatible chat completions API (OpenAI itself, or a local server).
#[derive(Debug)]
pub struct OpenAi {
    client: reqwest::Client,
    endpoint: String,
    model: String,
    api_key: Option<ApiKey>,
}

impl OpenAi {
    /// A client of `model` at `endpoint` (the API base URL, e.g. `http://localhost:8000/v1`; absent means
    /// OpenAI's), sending `api_key` as a bearer token when given.
    pub fn new(client: reqwest::Client, endpoint: Option<&str>, model: &str, api_key: Option<String>) -> OpenAi {
        let endpoint = endpoint.unwrap_or(OPENAI_ENDPOINT).trim_end_matches('/').to_owned();
        OpenAi { client, endpoint, model: model.to_owned(), api_key: api_key.map(ApiKey) }
    }
}

#[async_trait::async_trait]
impl Provider for OpenAi {
    async fn complete(&self, request: &ChatRequest) -> Result<ChatReply, Error> {
        let url = format!("{}/chat/completions", self.endpoint);
        let headers: Vec<_> = self.api_key.iter().map(|key| ("authorization", format!("Bearer {}", key.0))).collect();
        let answer = post_json(&self.client, &url, &headers, &openai_body(&self.model, request)).await?;
        openai_reply(&answer)
    }

    fn identity(&self) -> ModelIdentity {
        identity("openai", &self.model)
    }
}

fn openai_body(model: &str, request: &ChatRequest) -> Value {
    let mut messages = vec![json!({"role": "system", "content": request.system})];
    for message in &request.messages {
        messages.push(match message {
            ChatMessage::User(text) => json!({"role": "user", "content": text}),
            ChatMessage::Assistant { text, tool_calls } => {
                let content = if text.is_empty() { Value::Null } else { json!(text) };
                let mut turn = json!({"role": "assistant", "content": content});
                if !tool_calls.is_empty() {
                    let calls = tool_calls.iter().map(|call| {
                        json!({
                            "id": call.id,
                            "type": "function",
                            "function": {"name": call.name, "arguments": call.arguments.to_string()},
                        })
                    });
                    turn["tool_calls"] = Value::Array(calls.collect());
                }
                turn
            }
            // The protocol has no error flag on tool results, so a failure says so in its content.
            ChatMessage::ToolResult { call_id, content, is_error } => {
                let content = if *is_error { format!("error: {content}") } else { content.clone() };
                json!({"role": "tool", "tool_call_id": call_id, "content": content})
            }
        });
    }
    let mut body = json!({"model": model, "max_tokens": request.max_tokens, "messages": messages});
    if !request.tools.is_empty() {
        let tools = request.tools.iter().map(|tool| {
            json!({
                "type": "function",
                "function": {"name": tool.name, "description": tool.description, "parameters": tool.input_schema},
            })
        });
        body["tools"] = Value::Array(tools.collect());
    }
    body
}

fn openai_reply(answer: &Value) -> Result<ChatReply, Error> {
    let message = answer
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|choices| choices.first())
        .and_then(|choice| choice.get("message"))
        .ok_or_else(|| malformed("the answer has no `choices[0].message`"))?;
    let text = match message.get("content") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(text)) => text.clone(),
        Some(other) => return Err(malformed(format!("`content` is not a string: {other}"))),
    };
    let mut tool_calls = Vec::new();
    if let Some(calls) = message.get("tool_calls").filter(|calls| !calls.is_null()) {
        let calls = calls.as_array().ok_or_else(|| malformed("`tool_calls` is not an array"))?;
        for call in calls {
            let id = str_field(call, "id", "a tool call")?;
            let function = call.get("function").ok_or_else(|| malformed("a tool call has no `function`"))?;
            let name = str_field(function, "name", "a tool call's `function`")?;
            let arguments = match function.get("arguments") {
                None | Some(Value::Null) => json!({}),
                Some(Value::String(text)) if text.trim().is_empty() => json!({}),
                Some(Value::String(text)) => serde_json::from_str(text)
                    .map_err(|e| malformed(format!("the arguments of tool `{name}` are not JSON ({e}): {text}")))?,
                // Some compatible servers send the object itself.
                Some(object @ Value::Object(_)) => object.clone(),
                Some(other) => return Err(malformed(format!("the arguments of tool `{name}` are {other}"))),
            };
            tool_calls.push(ToolCall { id: id.to_owned(), name: name.to_owned(), arguments });
        }
    }
    let usage = Usage {
        input_tokens: answer["usage"]["prompt_tokens"].as_u64().unwrap_or(0),
        output_tokens: answer["usage"]["completion_tokens"].as_u64().unwrap_or(0),
    };
    Ok(ChatReply { text, tool_calls, usage })
}

/// A model behind the Anthropic messages API.
#[derive(Debug)]
pub struct Anthropic {
    client: reqwest::Client,
    endpoint: String,
    model: String,
    api_key: Option<ApiKey>,
}

impl Anthropic {
    /// A client of `model` at `endpoint` (the base URL, without `/v1`; absent means Anthropic's), sending
    /// `api_key` as `x-api-key` when given.
    pub fn new(client: reqwest::Client, endpoint: Option<&str>, model: &str, api_key: Option<String>) -> Anthropic {
        let endpoint = endpoint.unwrap_or(ANTHROPIC_ENDPOINT).trim_end_matches('/').to_owned();
        Anthropic { client, endpoint, model: model.to_owned(), api_key: api_key.map(ApiKey) }
    }
}

#[async_trait::async_trait]
impl Provider for Anthropic {
    async fn complete(&self, request: &ChatRequest) -> Result<ChatReply, Error> {
        let url = format!("{}/v1/messages", self.endpoint);
        let mut headers = vec![("anthropic-version", ANTHROPIC_VERSION.to_owned())];
        headers.extend(self.api_key.iter().map(|key| ("x-api-key", key.0.clone())));
        let answer = post_json(&self.client, &url, &headers, &anthropic_body(&self.model, request)).await?;
        anthropic_reply(&answer)
    }

    fn identity(&self) -> ModelIdentity {
        identity("anthropic", &self.model)
    }
}

fn anthropic_body(model: &str, request: &ChatRequest) -> Value {
    let mut messages: Vec<Value> = Vec::new();
    for message in &request.messages {
        match message {
            ChatMessage::User(text) if ends_with_user(&messages) => {
                push_user_block(&mut messages, json!({"type": "text", "text": text}));
            }
            ChatMessage::User(text) => messages.push(json!({"role": "user", "content": text})),
            ChatMessage::Assistant { text, tool_calls } => {
                let mut blocks = Vec::new();
                if !text.is_empty() {
                    blocks.push(json!({"type": "text", "text": text}));
                }
                for call in tool_calls {
                    blocks.push(json!({"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments}));
                }
                messages.push(json!({"role": "assistant", "content": blocks}));
            }
            ChatMessage::ToolResult { call_id, content, is_error } => {
                let block =
                    json!({"type": "tool_result", "tool_use_id": call_id, "content": content, "is_error": is_error});
                push_user_block(&mut messages, block);
            }
        }
    }
    let mut body = json!({
        "model": model,
        "max_tokens": request.max_tokens,
        "system": request.system,
        "messages": messages,
    });
    if !request.tools.is_empty() {
        let tools = request
            .tools
            .iter()
            .map(|tool| json!({"name": tool.name, "description": tool.description, "input_schema": tool.input_schema}));
        body["tools"] = Value::Array(tools.collect());
    }
    body
}

fn ends_with_user(messages: &[Value]) -> bool {
    messages.last().is_some_and(|last| last["role"] == "user")
}

/// Adds `block` to the last message when it is the user's (the API wants roles to alternate), else starts one.
fn push_user_block(messages: &mut Vec<Value>, block: Value) {
    if !ends_with_user(messages) {
        messages.push(json!({"role": "user", "content": []}));
    }
    if let Some(last) = messages.last_mut() {
        let content = &mut last["content"];
        if !content.is_array() {
            // A plain-text user message becomes its text block.
            let text = content.take();
            *content = json!([{"type": "text", "text": text}]);
        }
        if let Value::Array(blocks) = content {
            blocks.push(block);
        }
    }
}

fn anthropic_reply(answer: &Value) -> Result<ChatReply, Error> {
    let blocks = answer
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed("the answer has no `content` array"))?;
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for block in blocks {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(str_field(block, "text", "a text block")?),
            Some("tool_use") => {
                let id = str_field(block, "id", "a tool_use block")?;
                let name = str_field(block, "name", "a tool_use block")?;
                let arguments = block.get("input").cloned().unwrap_or_else(|| json!({}));
                tool_calls.push(ToolCall { id: id.to_owned(), name: name.to_owned(), arguments });
            }
            // Other blocks (thinking, for one) carry nothing the harness uses.
            _ => {}
        }
    }
    let usage = Usage {
        input_tokens: answer["usage"]["input_tokens"].as_u64().unwrap_or(0),
        output_tokens: answer["usage"]["output_tokens"].as_u64().unwrap_or(0),
    };
    Ok(ChatReply { text, tool_calls, usage })
}

/// A deterministic model that gives the replies of a script in order, for tests and offline examples.
#[derive(Debug)]
pub struct Scripted {
    model: String,
    replies: Vec<ScriptReply>,
    next: AtomicUsize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ScriptReply {
    #[serde(default)]
    text: String,
    #[serde(default)]
    tool_calls: Vec<ScriptCall>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScriptCall {
    name: String,
    #[serde(default = "empty_object")]
    arguments: Value,
}

fn empty_object() -> Value {
    json!({})
}

impl Scripted {
    /// A model named `model` that plays `script`: a JSON array of replies, each
    /// `{"text": "...", "toolCalls": [{"name": "...", "arguments": {...}}]}` (both keys optional).
    pub fn new(model: &str, script: &Value) -> Result<Scripted, Error> {
        let items = script.as_array().ok_or_else(|| Error::BadScript("it is not a JSON array of replies".into()))?;
        let mut replies = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            if !item.is_object() {
                return Err(Error::BadScript(format!("reply {index} is not an object")));
            }
            let reply: ScriptReply =
                serde_json::from_value(item.clone()).map_err(|e| Error::BadScript(format!("reply {index}: {e}")))?;
            if let Some(call) = reply.tool_calls.iter().find(|call| !call.arguments.is_object()) {
                let name = &call.name;
                return Err(Error::BadScript(format!("reply {index}: the arguments of `{name}` are not an object")));
            }
            replies.push(reply);
        }
        Ok(Scripted { model: model.to_owned(), replies, next: AtomicUsize::new(0) })
    }
}

#[async_trait::async_trait]
impl Provider for Scripted {
    async fn complete(&self, request: &ChatRequest) -> Result<ChatReply, Error> {
        let turn = self.next.fetch_add(1, Ordering::SeqCst);
        let reply = self.replies.get(turn).ok_or_else(|| Error::ScriptExhausted(self.replies.len()))?;
        let tool_calls: Vec<ToolCall> = reply
            .tool_calls
            .iter()
            .enumerate()
            .map(|(index, call)| ToolCall {
                id: format!("call-{turn}-{index}"),
                name: call.name.clone(),
                arguments: call.arguments.clone(),
            })
            .collect();
        let read = chars(&request.system) + request.messages.iter().map(message_chars).sum::<usize>();
        let written =
            chars(&reply.text) + tool_calls.iter().map(|call| chars(&call.arguments.to_string())).sum::<usize>();
        let usage = Usage { input_tokens: (read / 4) as u64, output_tokens: (written / 4) as u64 };
        Ok(ChatReply { text: reply.text.clone(), tool_calls, usage })
    }

    fn identity(&self) -> ModelIdentity {
        identity("scripted", &self.model)
    }
}

fn chars(text: &str) -> usize {
    text.chars().count()
}

fn message_chars(message: &ChatMessage) -> usize {
    match message {
        ChatMessage::User(text) => chars(text),
        ChatMessage::Assistant { text, tool_calls } => {
            chars(text) + tool_calls.iter().map(|call| chars(&call.arguments.to_string())).sum::<usize>()
        }
        ChatMessage::ToolResult { content, .. } => chars(content),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, VecDeque};
    use std::sync::{Arc, Mutex};

    use axum::extract::State;
    use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
    use axum::response::{IntoResponse, Response};
    use axum::{Json, Router, routing::post};

    use super::*;

    /// One request the fake provider received.
    #[derive(Clone, Debug)]
    struct Seen {
        headers: HashMap<String, String>,
        body: Value,
    }

    /// One answer the fake provider will give.
    struct Canned {
        status: u16,
        body: String,
        retry_after: Option<&'static str>,
    }

    fn ok(body: Value) -> Canned {
        Canned { status: 200, body: body.to_string(), retry_after: None }
    }

    fn status(status: u16, body: &str) -> Canned {
        Canned { status, body: body.to_owned(), retry_after: None }
    }

    #[derive(Clone)]
    struct Fake {
        seen: Arc<Mutex<Vec<Seen>>>,
        answers: Arc<Mutex<VecDeque<Canned>>>,
    }

    impl Fake {
        fn seen(&self) -> Vec<Seen> {
            self.seen.lock().unwrap().clone()
        }
    }

    async fn answer(State(fake): State<Fake>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
        let headers =
            headers.iter().map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or_default().to_owned())).collect();
        fake.seen.lock().unwrap().push(Seen { headers, body });
        let canned = fake.answers.lock().unwrap().pop_front().unwrap_or_else(|| status(418, "no answer left"));
        let mut response = (StatusCode::from_u16(canned.status).unwrap(), canned.body).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(secs) = canned.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static(secs));
        }
        response
    }

    /// Serves `answers` in order on `path`; returns the base URL and the record of requests.
    async fn serve(path: &str, answers: Vec<Canned>) -> (String, Fake) {
        let fake = Fake { seen: Arc::default(), answers: Arc::new(Mutex::new(answers.into())) };
        let router = Router::new().route(path, post(answer)).with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        (format!("http://{address}"), fake)
    }

    fn openai(base: &str) -> OpenAi {
        OpenAi::new(reqwest::Client::new(), Some(&format!("{base}/")), "gpt-test", Some("sk-test".into()))
    }

    /// A conversation with every kind of message: two tool calls, their results, then a user nudge.
    fn conversation() -> ChatRequest {
        let call =
            |id: &str, path: &str| ToolCall { id: id.into(), name: "ls".into(), arguments: json!({"path": path}) };
        let result = |id: &str, content: &str, is_error| ChatMessage::ToolResult {
            call_id: id.into(),
            content: content.into(),
            is_error,
        };
        ChatRequest {
            system: "You are terse.".into(),
            messages: vec![
                ChatMessage::User("list the files".into()),
                ChatMessage::Assistant {
                    text: "Looking.".into(),
                    tool_calls: vec![call("c1", "."), call("c2", "src")],
                },
                result("c1", "README.md", false),
                result("c2", "no such directory", true),
                ChatMessage::User("be quick".into()),
            ],
            tools: vec![ToolSpec {
                name: "ls".into(),
                description: "List a directory.".into(),
                input_schema: json!({"type": "object", "properties": {"path": {"type": "string"}}}),
            }],
            max_tokens: 256,
        }
    }

    fn openai_tool_answer(arguments: &str) -> Value {
        json!({
            "id": "chatcmpl-1",
            "model": "gpt-test-2025",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant",
                "content": null,
                "tool_calls": [{
                    "id": "call_9",
                    "type": "function",
                    "function": {"name": "cat", "arguments": arguments},
                }],
            }}],
            "usage": {"prompt_tokens": 42, "completion_tokens": 7, "total_tokens": 49},
        })
    }

    #[tokio::test]
    async fn openai_speaks_chat_completions() {
        let (base, fake) = serve("/chat/completions", vec![ok(openai_tool_answer(r#"{"path":"README.md"}"#))]).await;
        let provider = openai(&base);
        let reply = provider.complete(&conversation()).await.unwrap();

        let seen = fake.seen();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].headers["authorization"], "Bearer sk-test");
        let body = &seen[0].body;
        assert_eq!(body["model"], "gpt-test");
        assert_eq!(body["max_tokens"], 256);
        assert_eq!(body["tools"][0]["type"], "function");
        assert_eq!(body["tools"][0]["function"]["name"], "ls");
        assert_eq!(body["tools"][0]["function"]["parameters"]["type"], "object");
        let messages = body["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 6);
        assert_eq!(messages[0], json!({"role": "system", "content": "You are terse."}));
        assert_eq!(messages[1], json!({"role": "user", "content": "list the files"}));
        assert_eq!(messages[2]["role"], "assistant");
        assert_eq!(messages[2]["content"], "Looking.");
        let call = &messages[2]["tool_calls"][1];
        assert_eq!(call["id"], "c2");
        assert_eq!(call["type"], "function");
        let arguments = call["function"]["arguments"].as_str().expect("arguments travel as a string");
        assert_eq!(serde_json::from_str::<Value>(arguments).unwrap(), json!({"path": "src"}));
        assert_eq!(messages[3], json!({"role": "tool", "tool_call_id": "c1", "content": "README.md"}));
        assert_eq!(messages[4], json!({"role": "tool", "tool_call_id": "c2", "content": "error: no such directory"}));
        assert_eq!(messages[5], json!({"role": "user", "content": "be quick"}));

        assert_eq!(reply.text, "");
        assert_eq!(
            reply.tool_calls,
            vec![ToolCall { id: "call_9".into(), name: "cat".into(), arguments: json!({"path": "README.md"}) }]
        );
        assert_eq!(reply.usage, Usage { input_tokens: 42, output_tokens: 7 });
        assert_eq!(provider.identity(), identity("openai", "gpt-test"));
    }

    #[tokio::test]
    async fn openai_retries_when_busy_and_not_otherwise() {
        let busy = Canned { status: 503, body: "overloaded".into(), retry_after: Some("0") };
        let answer = json!({"choices": [{"message": {"role": "assistant", "content": "done"}}]});
        let (base, fake) = serve("/chat/completions", vec![busy, ok(answer)]).await;
        let reply = openai(&base).complete(&conversation()).await.unwrap();
        assert_eq!(reply.text, "done");
        assert_eq!(reply.usage, Usage::default());
        assert_eq!(fake.seen().len(), 2);

        let (base, fake) = serve("/chat/completions", vec![status(401, "invalid key"), ok(json!({}))]).await;
        let error = openai(&base).complete(&conversation()).await.unwrap_err();
        assert_eq!(error, Error::Http { status: 401, body: "invalid key".into() });
        assert_eq!(fake.seen().len(), 1);

        let busy = || Canned { status: 429, body: "x".repeat(2000), retry_after: Some("0") };
        let (base, fake) = serve("/chat/completions", vec![busy(), busy(), busy(), busy()]).await;
        let error = openai(&base).complete(&conversation()).await.unwrap_err();
        assert!(matches!(&error, Error::Http { status: 429, body } if body.len() == 500), "{error:?}");
        assert_eq!(fake.seen().len(), 3);
    }

    #[tokio::test]
    async fn openai_rejects_answers_off_protocol() {
        let answers = vec![ok(openai_tool_answer("{not json")), status(200, "<html>"), ok(json!({"choices": []}))];
        let (base, _fake) = serve("/chat/completions", answers).await;
        let provider = openai(&base);
        let error = provider.complete(&conversation()).await.unwrap_err();
        assert!(matches!(&error, Error::Malformed(m) if m.contains("`cat`")), "{error:?}");
        let error = provider.complete(&conversation()).await.unwrap_err();
        assert!(matches!(&error, Error::Malformed(m) if m.contains("not JSON")), "{error:?}");
        let error = provider.complete(&conversation()).await.unwrap_err();
        assert!(matches!(&error, Error::Malformed(m) if m.contains("choices")), "{error:?}");
    }

    #[tokio::test]
    async fn anthropic_speaks_messages() {
        let answer = json!({
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Reading it."},
                {"type": "tool_use", "id": "toolu_1", "name": "cat", "input": {"path": "README.md"}},
            ],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 30, "output_tokens": 12},
        });
        let (base, fake) = serve("/v1/messages", vec![ok(answer)]).await;
        let provider = Anthropic::new(reqwest::Client::new(), Some(&base), "claude-test", Some("ak-test".into()));
        let reply = provider.complete(&conversation()).await.unwrap();

        let seen = fake.seen();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].headers["x-api-key"], "ak-test");
        assert_eq!(seen[0].headers["anthropic-version"], "2023-06-01");
        assert_eq!(seen[0].headers["content-type"], "application/json");
        let body = &seen[0].body;
        assert_eq!(body["system"], "You are terse.");
        assert_eq!(body["max_tokens"], 256);
        assert_eq!(body["tools"][0]["input_schema"]["type"], "object");
        let messages = body["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 3, "roles alternate: {messages:?}");
        assert_eq!(messages[0], json!({"role": "user", "content": "list the files"}));
        assert_eq!(messages[1]["role"], "assistant");
        assert_eq!(messages[1]["content"][0], json!({"type": "text", "text": "Looking."}));
        assert_eq!(
            messages[1]["content"][2],
            json!({"type": "tool_use", "id": "c2", "name": "ls", "input": {"path": "src"}})
        );
        assert_eq!(
            messages[2],
            json!({"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "c1", "content": "README.md", "is_error": false},
                {"type": "tool_result", "tool_use_id": "c2", "content": "no such directory", "is_error": true},
                {"type": "text", "text": "be quick"},
            ]})
        );

        assert_eq!(reply.text, "Reading it.");
        assert_eq!(
            reply.tool_calls,
            vec![ToolCall { id: "toolu_1".into(), name: "cat".into(), arguments: json!({"path": "README.md"}) }]
        );
        assert_eq!(reply.usage, Usage { input_tokens: 30, output_tokens: 12 });
        assert_eq!(provider.identity(), identity("anthropic", "claude-test"));
    }

    #[tokio::test]
    async fn an_endpoint_nobody_listens_on_is_unreachable() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        let error = openai(&format!("http://{address}")).complete(&conversation()).await.unwrap_err();
        assert!(matches!(&error, Error::Unreachable { endpoint, .. } if endpoint.contains(&address.to_string())));
    }

    #[tokio::test]
    async fn api_keys_stay_out_of_debug_output() {
        let provider = openai("http://localhost");
        let anthropic = Anthropic::new(reqwest::Client::new(), None, "claude", Some("ak-test".into()));
        let printed = format!("{provider:?} {anthropic:?}");
        assert!(!printed.contains("sk-test") && !printed.contains("ak-test"), "{printed}");
        assert!(printed.contains("<redacted>"));
    }

    #[tokio::test]
    async fn scripted_replies_in_order_then_runs_out() {
        let script = json!([
            {"text": "let me look", "toolCalls": [{"name": "ls", "arguments": {"path": "."}}, {"name": "pwd"}]},
            {"text": "done"},
        ]);
        let provider = Scripted::new("demo", &script).unwrap();
        let request = ChatRequest { system: "12345678".into(), messages: vec![], tools: vec![], max_tokens: 10 };

        let first = provider.complete(&request).await.unwrap();
        assert_eq!(first.text, "let me look");
        let ids: Vec<_> = first.tool_calls.iter().map(|call| call.id.as_str()).collect();
        assert_eq!(ids, ["call-0-0", "call-0-1"]);
        assert_eq!(first.tool_calls[0].arguments, json!({"path": "."}));
        assert_eq!(first.tool_calls[1].arguments, json!({}));
        // 11 chars of text, 12 of `{"path":"."}`, 2 of `{}`.
        assert_eq!(first.usage, Usage { input_tokens: 2, output_tokens: 6 });

        let second = provider.complete(&request).await.unwrap();
        assert_eq!((second.text.as_str(), second.tool_calls.len()), ("done", 0));
        assert_eq!(provider.complete(&request).await.unwrap_err(), Error::ScriptExhausted(2));
        assert_eq!(provider.identity(), identity("scripted", "demo"));
    }

    #[test]
    fn scripted_rejects_bad_scripts() {
        let bad = |script: Value| match Scripted::new("demo", &script) {
            Err(Error::BadScript(message)) => message,
            other => panic!("expected a bad script, got {other:?}"),
        };
        assert!(bad(json!({"text": "hi"})).contains("array"));
        assert!(bad(json!([{}, "hi"])).contains("reply 1"));
        assert!(bad(json!([{"text": "hi", "tools": []}])).contains("reply 0"));
        assert!(bad(json!([{"toolCalls": [{"name": "ls", "arguments": [1]}]}])).contains("`ls`"));
        assert!(bad(json!([{"toolCalls": [{"arguments": {}}]}])).contains("reply 0"));
    }
}
