//! The `model` harness: r5e's own tool-calling loop. The model sees the session envelope as its
//! instructions, the declared Tools, and built-in tools through which it produces what any
//! harness produces (artifacts, a verdict, a decline, new Nodes, a reflection). Each built-in
//! call becomes the same protocol message a subprocess would print, so the session runner
//! treats both kinds alike. A reply without tool calls ends the session.

use std::collections::{BTreeMap, HashMap, VecDeque};

use domain::kinds::agents::ModelPrice;
use domain::kinds::task::SessionRole;
use serde_json::{Value, json};

use super::providers::{ChatMessage, ChatReply, ChatRequest, Provider, ToolCall, ToolSpec};
use super::{Fault, Harness};
use crate::protocol::{AgentMessage, Envelope, HostMessage, Outcome};

/// Where a model loop keeps each reply before it uses it, so that a session resumed by another
/// process replays the turns already answered instead of asking (and paying for) them again.
#[async_trait::async_trait]
pub trait Journal: Send + Sync + std::fmt::Debug {
    /// The reply recorded for turn `step` (counted from 1), if there is one.
    fn recorded(&self, step: u32) -> Option<ChatReply>;
    /// Record the reply to turn `step`; the loop uses a reply only once it is recorded.
    async fn record(&self, step: u32, reply: &ChatReply) -> Result<(), String>;
}

/// Turns allowed when the Harness does not say.
pub const DEFAULT_MAX_TURNS: u32 = 20;

/// A session's model loop.
#[derive(Debug)]
pub struct ModelLoop {
    provider: Box<dyn Provider>,
    request: ChatRequest,
    pending: VecDeque<AgentMessage>,
    /// Calls forwarded to r5e (tools, new Nodes) whose results the model is owed.
    outstanding: HashMap<String, String>,
    turns: u32,
    max_turns: u32,
    limits: Spending,
    tokens: u64,
    cost: u64,
    ended: bool,
    journal: Option<Box<dyn Journal>>,
    /// Turns answered from the journal rather than by the provider.
    replayed: u32,
}

/// What a model loop may spend: the session's `tokens` and `cost_micros` budgets (absent means
/// unlimited), and the model's price, without which cost cannot be counted.
#[derive(Debug, Clone, Copy, Default)]
pub struct Spending {
    /// The `tokens` budget.
    pub tokens: Option<u64>,
    /// The `cost_micros` budget.
    pub cost_micros: Option<u64>,
    /// The model's price.
    pub price: Option<ModelPrice>,
}

fn builtin(name: &str, description: &str, properties: Value, required: &[&str]) -> ToolSpec {
    ToolSpec {
        name: name.into(),
        description: description.into(),
        input_schema: json!({"type": "object", "properties": properties, "required": required}),
    }
}

fn builtins(role: SessionRole) -> Vec<ToolSpec> {
    let text = json!({"type": "string"});
    let mut out = vec![
        builtin(
            "reflect",
            "Record your reflection on this session. Required before you finish.",
            json!({"wentWell": text, "wentBadly": text, "couldImprove": text}),
            &["wentWell", "wentBadly", "couldImprove"],
        ),
        builtin(
            "decline",
            "Decline the task with a structured reason instead of doing it.",
            json!({"reason": {"type": "string", "enum": ["Impossible", "Unsafe", "OutOfScope", "NeedsSplitting", "InsufficientAuthority"]}, "message": text}),
            &["reason", "message"],
        ),
    ];
    match role {
        SessionRole::Producer => out.push(builtin(
            "submit_artifact",
            "Submit an output of your work. It will be reviewed by an independent reviewer.",
            json!({"name": text, "content": text, "mediaType": text}),
            &["name", "content"],
        )),
        SessionRole::Reviewer => out.push(builtin(
            "submit_verdict",
            "Give your verdict on the artifact under review.",
            json!({"verdict": {"type": "string", "enum": ["Approve", "Reject"]}, "comments": text}),
            &["verdict", "comments"],
        )),
        SessionRole::Orchestrator => out.push(builtin(
            "create_node",
            "Create a new Node (a smaller piece of the work) in this session's Graph.",
            json!({"name": text, "node": {"type": "object"}}),
            &["name", "node"],
        )),
    }
    out
}

fn system_prompt(env: &Envelope) -> String {
    let mut s = format!(
        "You are agent `{}` in a governed work system, acting as {:?} on task `{}` (step `{}`) of node `{}`.\n\n\
         Instructions: {}\n\nNode: {}\n",
        env.session.agent,
        env.session.role,
        env.task.name,
        env.task.step,
        env.task.node,
        env.task.instructions,
        env.task.description
    );
    for g in &env.guidelines {
        s.push_str(&format!("\nGuideline `{}` ({}): {}\n", g.name, g.digest, g.content));
    }
    s.push_str(
        "\nProduce everything through the tools. Before you finish, call `reflect`. \
         Finish by replying without calling any tool.",
    );
    s
}

fn first_message(env: &Envelope) -> String {
    let mut s = String::new();
    if !env.parameters.is_empty() {
        s.push_str(&format!("Parameters: {}\n", Value::Object(env.parameters.clone())));
    }
    for d in &env.inputs {
        s.push_str(&format!("\nInput `{}` ({}):\n{}\n", d.name, d.digest, d.content.as_deref().unwrap_or("(binary)")));
    }
    if let Some(r) = &env.review {
        s.push_str(&format!(
            "\nReview artifact `{}` ({}):\n{}\n",
            r.name,
            r.digest,
            r.content.as_deref().unwrap_or("(binary)")
        ));
    }
    if s.is_empty() { "Begin.".into() } else { s }
}

impl ModelLoop {
    /// A loop over `provider`, at most `max_turns` turns, within the session's budgets.
    pub fn new(provider: Box<dyn Provider>, max_turns: u32, limits: Spending) -> ModelLoop {
        ModelLoop {
            provider,
            request: ChatRequest { system: String::new(), messages: Vec::new(), tools: Vec::new(), max_tokens: 4096 },
            pending: VecDeque::new(),
            outstanding: HashMap::new(),
            turns: 0,
            max_turns,
            limits,
            tokens: 0,
            cost: 0,
            ended: false,
            journal: None,
            replayed: 0,
        }
    }

    /// Keep every reply in `journal` before using it, and take the replies it already holds
    /// instead of asking the provider.
    pub fn with_journal(mut self, journal: Box<dyn Journal>) -> ModelLoop {
        self.journal = Some(journal);
        self
    }

    fn answer(&mut self, id: &str, content: String, is_error: bool) {
        self.outstanding.remove(id);
        self.request.messages.push(ChatMessage::ToolResult { call_id: id.to_string(), content, is_error });
    }

    /// Turn one model tool call into protocol messages (or an error answered to the model).
    fn take_call(&mut self, call: ToolCall) {
        let as_message = |type_: &str, extra: Value| -> Result<AgentMessage, String> {
            let mut v = json!({"type": type_});
            if let (Some(m), Value::Object(args)) = (v.as_object_mut(), extra) {
                m.extend(args);
            }
            serde_json::from_value(v).map_err(|e| format!("invalid arguments for `{}`: {e}", call.name))
        };
        let args = call.arguments.clone();
        let offered = |name: &str| self.request.tools.iter().any(|t| t.name == name);
        if !offered(&call.name) {
            let error = format!("`{}` is not one of the tools offered to this session", call.name);
            return self.answer(&call.id, error, true);
        }
        let parsed = match call.name.as_str() {
            "submit_artifact" => as_message("artifact", args),
            "submit_verdict" => as_message("verdict", args),
            "decline" => as_message("decline", args),
            "reflect" => as_message("reflection", args),
            "create_node" => {
                let mut args = args;
                if let Some(m) = args.as_object_mut() {
                    m.insert("id".into(), json!(call.id));
                }
                as_message("create_node", args)
            }
            tool => Ok(AgentMessage::ToolCall { id: call.id.clone(), tool: tool.to_string(), arguments: args }),
        };
        match parsed {
            Ok(m @ (AgentMessage::ToolCall { .. } | AgentMessage::CreateNode { .. })) => {
                self.outstanding.insert(call.id.clone(), call.name.clone());
                self.pending.push_back(m);
            }
            Ok(m) => {
                self.pending.push_back(m);
                self.answer(&call.id, "recorded".into(), false);
            }
            Err(e) => self.answer(&call.id, e, true),
        }
    }
}

#[async_trait::async_trait]
impl Harness for ModelLoop {
    async fn send(&mut self, message: &HostMessage) -> Result<(), Fault> {
        match message {
            HostMessage::Session(env) => {
                self.request.system = system_prompt(env);
                self.request.tools = builtins(env.session.role);
                self.request.tools.extend(env.tools.iter().map(|t| ToolSpec {
                    name: t.name.clone(),
                    description: t.description.clone(),
                    input_schema: if t.input_schema.is_null() {
                        json!({"type": "object"})
                    } else {
                        t.input_schema.clone()
                    },
                }));
                self.request.messages.push(ChatMessage::User(first_message(env)));
            }
            HostMessage::ToolResult { id, ok, result, error } => {
                let content = match (ok, result, error) {
                    (true, Some(r), _) => r.as_str().map(str::to_string).unwrap_or_else(|| r.to_string()),
                    (true, None, _) => "ok".into(),
                    (false, _, e) => e.clone().unwrap_or_else(|| "refused".into()),
                };
                self.answer(id, content, !ok);
            }
            HostMessage::NodeResult { id, ok, name, error } => {
                let content = match ok {
                    true => format!("created node `{}`", name.as_deref().unwrap_or_default()),
                    false => error.clone().unwrap_or_else(|| "refused".into()),
                };
                self.answer(id, content, !ok);
            }
            HostMessage::Reflect { reason } => {
                self.ended = false;
                self.request.messages.push(ChatMessage::User(format!("{reason}. Call `reflect` now, then finish.")));
            }
        }
        Ok(())
    }

    async fn next(&mut self) -> Result<Option<AgentMessage>, Fault> {
        if let Some(m) = self.pending.pop_front() {
            return Ok(Some(m));
        }
        if self.ended {
            return Ok(None);
        }
        if !self.outstanding.is_empty() {
            return Err(Fault::Io("the model loop was asked to go on before its calls were answered".into()));
        }
        if self.turns >= self.max_turns {
            self.ended = true;
            let message = format!("the model used all {} turns without finishing", self.max_turns);
            return Ok(Some(AgentMessage::Done { outcome: Outcome::Failed, message }));
        }
        // Checked before the spend: a call is made only with budget left, and asks for no more
        // output than is left, so only its input can go past the budget.
        if let Some(message) = self.spent() {
            self.ended = true;
            return Ok(Some(AgentMessage::Done { outcome: Outcome::Failed, message }));
        }
        if let Some(limit) = self.limits.tokens {
            self.request.max_tokens =
                self.request.max_tokens.min(u32::try_from(limit - self.tokens).unwrap_or(u32::MAX));
        }
        if let (Some(limit), Some(price)) = (self.limits.cost_micros, self.limits.price) {
            let affordable = price.output_for(limit - self.cost).max(1);
            self.request.max_tokens = self.request.max_tokens.min(u32::try_from(affordable).unwrap_or(u32::MAX));
        }
        self.turns += 1;
        let step = self.turns;
        let reply = match self.journal.as_ref().and_then(|j| j.recorded(step)) {
            Some(reply) => {
                self.replayed += 1;
                reply
            }
            None => {
                let reply = self.provider.complete(&self.request).await.map_err(|e| Fault::Provider(e.to_string()))?;
                if let Some(journal) = &self.journal {
                    journal.record(step, &reply).await.map_err(|e| {
                        Fault::Io(format!(
                            "the model's reply to turn {step} could not be recorded, so it is not used: {e}"
                        ))
                    })?;
                }
                reply
            }
        };
        let (input, output) = (reply.usage.input_tokens, reply.usage.output_tokens);
        self.tokens = self.tokens.saturating_add(input.saturating_add(output));
        if let Some(price) = self.limits.price {
            self.cost = self.cost.saturating_add(price.cost(input, output));
        }
        if let Some(message) = self.overspent() {
            self.ended = true;
            return Ok(Some(AgentMessage::Done { outcome: Outcome::Failed, message }));
        }
        self.request
            .messages
            .push(ChatMessage::Assistant { text: reply.text.clone(), tool_calls: reply.tool_calls.clone() });
        if reply.tool_calls.is_empty() {
            self.ended = true;
            return Ok(Some(AgentMessage::Done { outcome: Outcome::Succeeded, message: reply.text }));
        }
        for call in reply.tool_calls {
            self.take_call(call);
        }
        match self.pending.pop_front() {
            Some(m) => Ok(Some(m)),
            // Every call was answered with an error: give the model its turn to correct itself.
            None => self.next().await,
        }
    }

    async fn finish(&mut self) -> String {
        match self.replayed {
            0 => format!("the model loop ended after {} turns", self.turns),
            n => format!("the model loop ended after {} turns, {n} of them replayed from the journal", self.turns),
        }
    }

    fn usage(&self) -> BTreeMap<String, u64> {
        let mut usage = BTreeMap::from([("tokens".to_string(), self.tokens)]);
        if self.limits.price.is_some() {
            usage.insert(crate::budgets::COST_MICROS.to_string(), self.cost);
        }
        usage
    }
}

impl ModelLoop {
    /// Why no further call may be made: a budget with nothing left.
    fn spent(&self) -> Option<String> {
        match (self.limits.tokens, self.limits.cost_micros) {
            (Some(limit), _) if self.tokens >= limit => {
                Some(format!("budget `tokens` of {limit} is spent ({} used)", self.tokens))
            }
            (_, Some(limit)) if self.cost >= limit => {
                Some(format!("budget `cost_micros` of {limit} is spent ({} used)", self.cost))
            }
            _ => None,
        }
    }

    /// Why the call just made ends the session: it went past a budget (by its input, or by the
    /// provider's own rounding), and was counted.
    fn overspent(&self) -> Option<String> {
        match (self.limits.tokens, self.limits.cost_micros) {
            (Some(limit), _) if self.tokens > limit => {
                Some(format!("budget `tokens` of {limit} is spent: the session used {}", self.tokens))
            }
            (_, Some(limit)) if self.cost > limit => {
                Some(format!("budget `cost_micros` of {limit} is spent: the session used {}", self.cost))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod budget_tests {
    use std::sync::Mutex;

    use super::*;
    use crate::harness::providers::{ChatReply, Error, Provider, ToolCall, Usage};

    /// A model that spends 600 tokens a turn and always calls a tool nobody offered, recording
    /// the output limit it was asked for.
    #[derive(Debug, Default)]
    struct Spender {
        asked: Mutex<Vec<u32>>,
    }

    #[async_trait::async_trait]
    impl Provider for Spender {
        async fn complete(&self, request: &ChatRequest) -> Result<ChatReply, Error> {
            self.asked.lock().unwrap().push(request.max_tokens);
            let call = ToolCall { id: "c".into(), name: "unoffered".into(), arguments: json!({}) };
            Ok(ChatReply {
                text: String::new(),
                tool_calls: vec![call],
                usage: Usage { input_tokens: 300, output_tokens: 300 },
            })
        }
        fn identity(&self) -> domain::kinds::agents::ModelIdentity {
            domain::kinds::agents::ModelIdentity { provider: "test".into(), name: "spender".into(), version: None }
        }
    }

    /// A handle on a [`Spender`] the test keeps.
    #[derive(Debug)]
    struct Shared(std::sync::Arc<Spender>);

    #[async_trait::async_trait]
    impl Provider for Shared {
        async fn complete(&self, request: &ChatRequest) -> Result<ChatReply, Error> {
            self.0.complete(request).await
        }
        fn identity(&self) -> domain::kinds::agents::ModelIdentity {
            self.0.identity()
        }
    }

    async fn spend_until_stopped(limits: Spending) -> (String, Vec<u32>, BTreeMap<String, u64>) {
        let spender = std::sync::Arc::new(Spender::default());
        let mut lp = ModelLoop::new(Box::new(Shared(spender.clone())), 100, limits);
        let Some(AgentMessage::Done { outcome, message }) = lp.next().await.unwrap() else { panic!("no end") };
        assert_eq!(outcome, Outcome::Failed);
        let asked = spender.asked.lock().unwrap().clone();
        (message, asked, lp.usage())
    }

    #[tokio::test]
    async fn the_tokens_budget_is_checked_before_each_call_and_bounds_what_is_asked() {
        let (message, asked, usage) = spend_until_stopped(Spending { tokens: Some(1000), ..Default::default() }).await;
        assert!(message.contains("budget `tokens` of 1000 is spent"), "{message}");
        // Two calls: 600 tokens, then one asked for at most the 400 left (which overshot by its
        // input, and was counted); no third.
        assert_eq!(asked, vec![1000, 400]);
        assert_eq!(usage["tokens"], 1200);
        assert!(!usage.contains_key("cost_micros"), "no price, no cost: {usage:?}");
    }

    #[tokio::test]
    async fn the_cost_budget_is_charged_at_the_models_price() {
        // 1 micro per input token and 2 per output token: each call of 300 + 300 costs 900.
        let price = ModelPrice { input_per_million_tokens: 1_000_000, output_per_million_tokens: 2_000_000 };
        let limits = Spending { cost_micros: Some(1500), price: Some(price), ..Default::default() };
        let (message, asked, usage) = spend_until_stopped(limits).await;
        assert!(message.contains("budget `cost_micros` of 1500 is spent: the session used 1800"), "{message}");
        // The first call may buy 750 output tokens; the second, with 600 left, 300.
        assert_eq!(asked, vec![750, 300]);
        assert_eq!(usage["cost_micros"], 1800);
        // With the budget spent exactly, no further call is made at all.
        let limits = Spending { cost_micros: Some(900), price: Some(price), ..Default::default() };
        let (message, asked, _) = spend_until_stopped(limits).await;
        assert!(message.contains("budget `cost_micros` of 900 is spent (900 used)"), "{message}");
        assert_eq!(asked, vec![450]);
    }

    #[test]
    fn a_price_rounds_up_and_never_overflows() {
        let price = ModelPrice { input_per_million_tokens: 3, output_per_million_tokens: 15 };
        assert_eq!(price.cost(1, 0), 1);
        assert_eq!(price.cost(0, 0), 0);
        assert_eq!(price.cost(1_000_000, 1_000_000), 18);
        let dear = ModelPrice { input_per_million_tokens: u64::MAX, output_per_million_tokens: u64::MAX };
        assert_eq!(dear.cost(u64::MAX, u64::MAX), u64::MAX);
        assert_eq!(ModelPrice::default().output_for(5), u64::MAX);
        assert_eq!(price.output_for(15), 1_000_000);
    }
}
